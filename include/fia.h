/*
 * fia.h - fused LLM-inference attention operators for CPUs (C11).
 *
 * fia implements, with the semantics of the Ascend CANN operators that serve DeepSeek, Llama and
 * Qwen models, the attention operator family on x86-64 CPUs (AVX-512 and AVX2 kernels, and a
 * portable scalar path). This is the one public header.
 *
 * How a call works
 *   1. Create a context once: it detects the CPU, picks the kernels and starts the thread pool.
 *   2. Plan an operator: fia_<op>_plan() validates every tensor and parameter, builds the
 *      schedule (work list, split-KV decisions) and returns the workspace size it needs.
 *   3. Execute the plan as often as needed: fia_plan_execute() never allocates, reads the inputs
 *      at the addresses given at plan time and writes the outputs there.
 *   A one-shot fia_<op>() wraps the three steps (it allocates and frees the workspace).
 *
 * Errors
 *   Every entry point that can fail returns a fia_status. On failure nothing is written to any
 *   output tensor, and fia_last_error() returns a message of the calling thread that names the
 *   tensor, the dimension and both values ("key dim 3 is 100, query has 128"). The library never
 *   aborts and never reads outside the tensors it is given, whatever the input.
 *
 * Threads
 *   A context owns one persistent thread pool. A context runs one call at a time: concurrent
 *   calls on the same context are serialized. Use one context per calling thread to run calls in
 *   parallel. Plans are immutable after planning and may be executed from any thread.
 *
 * Determinism
 *   Split points are fixed in token space and merges run in a fixed order, so an output is
 *   bitwise identical for any thread count and whatever other requests share the batch. Results
 *   differ between ISAs (scalar, AVX2, AVX-512) within the documented tolerances.
 *
 * Environment
 *   FIA_ISA=scalar|avx2|avx512  forces a kernel level (an unavailable level is an error).
 *   FIA_NUM_THREADS=N            default thread count of a new context.
 *   FIA_VERBOSE=1                prints the CPU features and kernels chosen to stderr.
 */
#ifndef FIA_H
#define FIA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FIA_API
#else
#define FIA_API __attribute__((visibility("default")))
#endif

/* ------------------------------------------------------------------------------------------ */
/* Version                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define FIA_VERSION_MAJOR 0
#define FIA_VERSION_MINOR 1
#define FIA_VERSION_PATCH 0
#define FIA_VERSION_NUMBER (FIA_VERSION_MAJOR * 10000 + FIA_VERSION_MINOR * 100 + FIA_VERSION_PATCH)

/* Returns FIA_VERSION_NUMBER of the library actually linked. */
FIA_API unsigned fia_version_number(void);
/* Returns "MAJOR.MINOR.PATCH" of the library actually linked (static storage). */
FIA_API const char *fia_version_string(void);

/* ------------------------------------------------------------------------------------------ */
/* Status                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The values are fixed and will not change. */
typedef enum fia_status {
    FIA_STATUS_SUCCESS = 0,
    FIA_STATUS_INVALID_ARGUMENT = 1,    /* a tensor, shape, dtype, stride or value breaks the contract */
    FIA_STATUS_UNSUPPORTED = 2,         /* allowed by the operator contract, not implemented by fia */
    FIA_STATUS_OUT_OF_MEMORY = 3,       /* an allocation failed (plan, context or one-shot call) */
    FIA_STATUS_WORKSPACE_TOO_SMALL = 4, /* fia_plan_execute got fewer bytes than the plan asked for */
    FIA_STATUS_UNSUPPORTED_ISA = 5,     /* FIA_ISA or the options ask for an ISA this CPU lacks */
    FIA_STATUS_INTERNAL = 6             /* a bug in fia: please report it */
} fia_status;

/* Returns the name of a status ("FIA_STATUS_INVALID_ARGUMENT"); "FIA_STATUS_UNKNOWN" otherwise. */
FIA_API const char *fia_status_string(fia_status status);

/* Returns the message of the last failed call made by the calling thread ("" if none). The string
 * stays valid until the next fia call on this thread. */
FIA_API const char *fia_last_error(void);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* The values are fixed. BFLOAT16 is stored as the upper 16 bits of an IEEE float32. */
typedef enum fia_dtype {
    FIA_DTYPE_FLOAT32 = 0,
    FIA_DTYPE_FLOAT16 = 1,
    FIA_DTYPE_BFLOAT16 = 2,
    FIA_DTYPE_INT8 = 3,
    FIA_DTYPE_UINT8 = 4,
    FIA_DTYPE_BOOL = 5, /* one byte, nonzero is true */
    FIA_DTYPE_INT32 = 6,
    FIA_DTYPE_INT64 = 7
} fia_dtype;

/* Returns the size of one element in bytes, 0 for an unknown dtype. */
FIA_API size_t fia_dtype_size(fia_dtype dtype);
/* Returns "float16", "bfloat16", ... ("unknown" for an unknown dtype). */
FIA_API const char *fia_dtype_name(fia_dtype dtype);

#define FIA_MAX_DIMS 8

/* A strided view of memory the caller owns. It maps one-to-one onto DLPack's DLTensor (data +
 * byte_offset, dtype, ndim, shape, strides): strides count elements, not bytes, as in DLPack.
 * fia reads inputs and writes outputs through the view at execute time and never frees them.
 * Operators require the innermost stride of their main tensors to be 1 and all strides >= 0;
 * each operator says which tensors may have other strides. */
typedef struct fia_tensor {
    void *data;
    fia_dtype dtype;
    int32_t ndim; /* 0..FIA_MAX_DIMS */
    int64_t shape[FIA_MAX_DIMS];
    int64_t strides[FIA_MAX_DIMS]; /* in elements */
} fia_tensor;

/* Fills *t. strides == NULL gives compact row-major strides (DLPack's NULL strides).
 * Returns FIA_STATUS_INVALID_ARGUMENT (and leaves *t untouched) for t == NULL, ndim outside
 * 0..FIA_MAX_DIMS, a negative dim, an unknown dtype or shape == NULL with ndim > 0. */
FIA_API fia_status fia_tensor_init(fia_tensor *t, void *data, fia_dtype dtype, int32_t ndim,
                                   const int64_t *shape, const int64_t *strides);

/* Number of elements (product of the shape; 1 for ndim 0). */
FIA_API int64_t fia_tensor_numel(const fia_tensor *t);

/* fp16/bf16 <-> fp32 conversions with round-to-nearest-even (NaN stays NaN). */
FIA_API float fia_f16_to_f32(uint16_t h);
FIA_API uint16_t fia_f32_to_f16(float f);
FIA_API float fia_bf16_to_f32(uint16_t b);
FIA_API uint16_t fia_f32_to_bf16(float f);

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef enum fia_isa {
    FIA_ISA_AUTO = 0, /* FIA_ISA if set, else the best level this CPU runs */
    FIA_ISA_SCALAR = 1,
    FIA_ISA_AVX2 = 2,   /* AVX2 + FMA + F16C */
    FIA_ISA_AVX512 = 3  /* AVX-512 F/BW/DQ/VL + FMA + F16C */
} fia_isa;

/* Returns "auto", "scalar", "avx2", "avx512" ("unknown" otherwise). */
FIA_API const char *fia_isa_name(fia_isa isa);

typedef struct fia_context_options {
    int32_t num_threads; /* 0: FIA_NUM_THREADS if set, else the number of online CPUs */
    fia_isa isa;         /* FIA_ISA_AUTO: FIA_ISA if set, else the best */
} fia_context_options;

typedef struct fia_context fia_context;

/* Creates a context: detects the CPU once, picks the kernel table and starts num_threads - 1
 * worker threads (the calling thread is the last worker).
 * options: NULL for the defaults. Returns FIA_STATUS_UNSUPPORTED_ISA when the requested level is
 * not available on this CPU, FIA_STATUS_INVALID_ARGUMENT for a negative or > 1024 thread count
 * or a bad FIA_ISA / FIA_NUM_THREADS value, FIA_STATUS_OUT_OF_MEMORY when a thread or
 * allocation fails. *ctx is set only on success. */
FIA_API fia_status fia_context_create(const fia_context_options *options, fia_context **ctx);

/* Stops the threads and frees the context. Plans made with it must be destroyed first. NULL is
 * a no-op. */
FIA_API void fia_context_destroy(fia_context *ctx);

/* The kernel level and thread count the context uses. */
FIA_API fia_isa fia_context_isa(const fia_context *ctx);
FIA_API int32_t fia_context_num_threads(const fia_context *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Plans                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct fia_plan fia_plan;

/* The workspace size in bytes the plan needs (also returned by the plan function). */
FIA_API size_t fia_plan_workspace_size(const fia_plan *plan);

/* Runs a plan on the context it was made with. workspace: at least fia_plan_workspace_size()
 * bytes, any alignment, owned by the caller, not shared with a concurrent execute; may be NULL
 * when the size is 0. Never allocates. Reads the inputs and writes the outputs at the addresses
 * given at plan time, so a plan can be re-run after the caller rewrites input contents in place.
 * Returns FIA_STATUS_WORKSPACE_TOO_SMALL (nothing written) when workspace_bytes is too small,
 * FIA_STATUS_INVALID_ARGUMENT for a NULL plan. */
FIA_API fia_status fia_plan_execute(fia_plan *plan, void *workspace, size_t workspace_bytes);

/* Frees a plan. NULL is a no-op. */
FIA_API void fia_plan_destroy(fia_plan *plan);

/* ------------------------------------------------------------------------------------------ */
/* fused_infer_attention_score (FIA)                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Layouts of query / key / value / attention_out (torch_npu input_layout strings). */
typedef enum fia_layout {
    FIA_LAYOUT_BSH = 0,       /* [B, S, N*D] */
    FIA_LAYOUT_BSND = 1,      /* [B, S, N, D] */
    FIA_LAYOUT_BNSD = 2,      /* [B, N, S, D] */
    FIA_LAYOUT_TND = 3,       /* [T, N, D], sequences packed along T (cumulative lengths) */
    FIA_LAYOUT_BNSD_BSND = 4, /* inputs BNSD, attention_out BSND */
    FIA_LAYOUT_NTD = 5,       /* reserved */
    FIA_LAYOUT_TND_NTD = 6,   /* inputs TND, attention_out [N, T, D] (MLA) */
    FIA_LAYOUT_PA_BSND = 7,   /* reserved: paged [blocks, block_size, N, D] (MLA, indexer, SFA) */
    FIA_LAYOUT_PA_NZ = 8      /* reserved: paged FRACTAL_NZ */
} fia_layout;

/* Parses "BSH", "BSND", ... into *layout. Returns FIA_STATUS_INVALID_ARGUMENT for an unknown
 * name. */
FIA_API fia_status fia_layout_parse(const char *name, fia_layout *layout);
/* Returns "BSH", "BSND", ... ("unknown" otherwise). */
FIA_API const char *fia_layout_name(fia_layout layout);

/* Parameters, named after the torch_npu keywords of npu_fused_infer_attention_score. Call
 * fia_fused_infer_attention_score_params_init() first: it sets the torch_npu defaults. */
typedef struct fia_fused_infer_attention_score_params {
    int64_t num_heads;           /* N1 >= 1 (default 1: set it) */
    int64_t num_key_value_heads; /* N2, divides N1; 0 means N1 (default 0) */
    double scale;                /* multiplies Q.K^T (default 1.0: set it) */
    int64_t pre_tokens;          /* default 2147483647 */
    int64_t next_tokens;         /* default 2147483647 */
    fia_layout input_layout;     /* default BSH */
    int32_t sparse_mode;         /* 0..4 (default 0) */
    int64_t block_size;          /* paged cache block size (used when block_table is given) */
    int32_t antiquant_mode;      /* 0 per-channel (incl. per-tensor), 1 per-token (default 0) */
    int32_t inner_precise;       /* accepted and ignored: fia always accumulates in fp32 */
    int32_t softmax_lse_flag;    /* nonzero: write softmax_lse (default 0) */
    int32_t mla_rescale;         /* MLA only: how the output accumulator is rescaled when a
                                  * row's max grows; FIA_MLA_RESCALE_* (default 0) */
    /* Per-batch query lengths (int64, copied at plan time). NULL: the full S of every batch.
     * Non-TND: count 1 broadcasts to every batch, count >= B uses the first B values. TND:
     * cumulative sums, non-decreasing, count = B (required). Ignored for decode (query S = 1,
     * non-TND), as in the contract. */
    const int64_t *actual_seq_lengths;
    int64_t actual_seq_lengths_count;
    /* Per-batch KV lengths, same rules; cumulative for TND without paging; per batch (not
     * cumulative) and required with a paged cache. */
    const int64_t *actual_seq_lengths_kv;
    int64_t actual_seq_lengths_kv_count;
} fia_fused_infer_attention_score_params;

/* MLA output rescale variants (params.mla_rescale). Both give the same result to fp32
 * rounding; DEFAULT picks the faster on this machine (measured: MULTIPLY, see README). */
enum {
    FIA_MLA_RESCALE_DEFAULT = 0,
    FIA_MLA_RESCALE_MULTIPLY = 1, /* O = exp(m_old - m_new) . O, a vector multiply */
    FIA_MLA_RESCALE_AMLA = 2      /* AMLA: probabilities relative to 2^-e, O rescaled by an
                                   * integer add of (e_new - e_old) << 23 to its fp32 bits */
};

/* Sets the torch_npu defaults listed above. */
FIA_API void fia_fused_infer_attention_score_params_init(fia_fused_infer_attention_score_params *p);

/* Tensors of one call. Optional tensors are NULL when absent. */
typedef struct fia_fused_infer_attention_score_tensors {
    const fia_tensor *query;            /* see the shape lines below */
    const fia_tensor *key;
    const fia_tensor *value;
    const fia_tensor *atten_mask;       /* optional */
    const fia_tensor *block_table;      /* optional: turns the paged KV cache on */
    const fia_tensor *antiquant_scale;  /* required iff key/value are int8 */
    const fia_tensor *antiquant_offset; /* optional, int8 key/value only */
    const fia_tensor *query_rope;       /* MLA: turns the MLA path on (with key_rope) */
    const fia_tensor *key_rope;         /* MLA */
    fia_tensor *attention_out;          /* output */
    fia_tensor *softmax_lse;            /* output, required iff softmax_lse_flag */
    const fia_tensor *dequant_scale_query; /* MLA int8: fp32 per token and head */
    const fia_tensor *dequant_scale_key;   /* MLA int8: fp32, one value */
    const fia_tensor *dequant_scale_value; /* MLA int8: fp32, one value */
} fia_fused_infer_attention_score_tensors;

/*
 * fia_fused_infer_attention_score_plan - validates a FusedInferAttentionScore call and plans it.
 *
 *   out = softmax(scale * Q.K^T + mask) . V      per batch b, query head h, kv head h / (N1/N2)
 *
 * Shapes (N1 = num_heads, N2 = num_key_value_heads, D = key head dim, Dv = value head dim):
 *   query:          BSH [B, S1, N1*D]   BSND [B, S1, N1, D]   BNSD / BNSD_BSND [B, N1, S1, D]
 *                   TND [T1, N1, D]
 *   key, value:     same layout as query with S2 / T2 and N2 (value with Dv), or, with
 *                   block_table, a paged cache: BnBsH [blocks, block_size, N2*D] (3-D) or
 *                   BnNBsD [blocks, N2, block_size, D] (4-D); value the same with Dv.
 *   attention_out:  the query's shape with Dv (BNSD_BSND: [B, S1, N1, Dv]); query dtype.
 *   softmax_lse:    float32 [B, N1, S1, 1], TND [T1, N1, 1]. lse = max + log(sum exp(s - max))
 *                   over the visible scores s = scale * q.k; +inf for a row that sees no key.
 *   block_table:    int32 [B, max_blocks]: token t of batch b is row t % block_size of block
 *                   block_table[b][t / block_size]. Ids used by the lengths must lie in
 *                   [0, blocks); entries beyond them are never read (-1 padding is fine).
 *                   block_size: 1..1024 (a superset of the NPU's limits).
 *   atten_mask:     bool/int8/uint8, nonzero = masked.
 *                   full form: [S1, S2m], [B|1, S1, S2m], [B|1, 1, S1, S2m] with S1 >= the
 *                   longest query and S2m >= the longest kv; for decode also [B, S2m].
 *                   compressed form (sparse_mode 2, 3, 4): [2048, 2048], [1, 2048, 2048] or
 *                   [1, 1, 2048, 2048]; its shape is checked, its contents are taken to be
 *                   triu(ones, 1) as the contract requires and are not read.
 *   antiquant_scale / _offset (int8 key and value, float query): index 0 is K, 1 is V.
 *                   antiquant_mode 0: [2] (per tensor), [2, N2, 1, D], [2, N2, D], [2, N2*D]
 *                   (per channel; needs D == Dv); mode 1: [2, B, S2s] (per token, S2s >= the
 *                   longest kv). Any float dtype. K = (k + offset) * scale.
 * dtypes: query float16/bfloat16/float32; key and value the same dtype: a float dtype or int8.
 * Head dims D, Dv: 1..512. N1, N2 <= 256, N1 % N2 == 0. B <= 65536.
 *
 * Visibility of key j to query row i (0-based within the batch, Sq / Skv the actual lengths):
 *   sparse_mode 0  no mask: all keys. full mask: -pre_tokens <= j - i <= next_tokens and
 *                  mask[i][j] == 0.
 *   sparse_mode 1  mask[i][j] == 0 (mask required; pre/next ignored).
 *   sparse_mode 2  j <= i.
 *   sparse_mode 3  j <= i + (Skv - Sq).
 *   sparse_mode 4  -pre_tokens <= j - i - (Skv - Sq) <= next_tokens.
 *   Decode (non-TND query with S1 = 1): sparse_mode, pre_tokens and next_tokens are ignored as
 *   in the contract; a full mask still applies, a compressed one is ignored.
 *   A row that sees no key outputs 0 (lse +inf), and so do the rows beyond a batch's actual
 *   query length, and every row of a batch with kv length 0.
 *
 * MLA (DeepSeek absorbed attention; on when query_rope and key_rope are given):
 *   query:          [B, S1, N, 512] BSND, [B, S1, N*512] BSH, [B, N, S1, 512] BNSD, [T, N, 512]
 *                   TND and TND_NTD (output [N, T, 512]); N = num_heads 1..128.
 *   query_rope:     the query's shape with 64 (BSH: N*64); the query's dtype (int8 form: fp16 or
 *                   bf16).
 *   key = value:    the latent cache, one head of 512 (num_key_value_heads 0 or 1):
 *                   without block_table in the query's layout with S2 / T2 ([B, S2, 1, 512],
 *                   [B, S2, 512], [B, 1, S2, 512], [T2, 1, 512]); with block_table a paged
 *                   cache PA_BSND [blocks, block_size, 1, 512] (also [blocks, block_size, 512])
 *                   or PA_NZ [blocks, 1, 512/16, block_size, 16] (int8: 512/32 and 32), read
 *                   in place. value must have key's shape and dtype; its rows are read as V
 *                   (pass the same tensor as key, as the contract does: then each row is read
 *                   from memory once and used as K and V).
 *   key_rope:       the cache of 64 in key's layout (PA_NZ: [blocks, 1, 4, block_size, 16]).
 *   score = scale . (q_nope . k_nope + q_rope . k_rope), out = softmax(score) . v, 512 wide.
 *   sparse_mode 0 (every key; no atten_mask) or 3 (j <= i + Skv - Sq; atten_mask optional,
 *   the compressed form, not read). block_size: a multiple of 16, at most 1024.
 *   float form: query, query_rope, key, value, key_rope float16, bfloat16 or float32 (query
 *     and ropes one dtype, the cache one dtype); out in the query dtype.
 *   int8 form (key int8): query int8 [.., N, 512], dequant_scale_query fp32 [B, S1, N] or
 *     [B, S1, N, 1] (TND: [T, N] or [T, N, 1]), key/value int8, dequant_scale_key and
 *     dequant_scale_value fp32 with one element, query_rope and key_rope fp16 or bf16, out
 *     bfloat16 or float16. The formula is the one above on the dequantized values
 *     q_nope = q8 . sq[t, h], k_nope = k8 . sk, v = v8 . sv. Q.K^T runs as an int8 dot product
 *     (VNNI when the CPU has it) in int32; P.V runs in int8 too: each row of P (values in
 *     [0, 1] relative to the running max) is quantized to u8 with its own scale (max / 255),
 *     accumulated in int32 and rescaled in fp32.
 *   softmax_lse works as for the dense path. mla_rescale picks the rescale variant (float form;
 *   the int8 form multiplies).
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT for anything that breaks the rules above (the message
 *   names the tensor, the dim and the values), FIA_STATUS_UNSUPPORTED for contract features
 *   fia does not implement (sparse_mode 5..9, MLA with sparse modes other than 0 and 3 or head
 *   dims other than 512 + 64, non-unit innermost strides, negative strides),
 *   FIA_STATUS_OUT_OF_MEMORY.
 * Memory: *plan is allocated and owned by the caller (fia_plan_destroy). The lengths, the block
 *   table and the antiquant scale shapes are copied and checked at plan time: rewriting the
 *   block table afterwards needs a new plan. Tensor contents are read at execute time.
 * *plan and *workspace_bytes are written only on success. workspace_bytes may be NULL.
 */
FIA_API fia_status fia_fused_infer_attention_score_plan(
    fia_context *ctx, const fia_fused_infer_attention_score_tensors *tensors,
    const fia_fused_infer_attention_score_params *params, fia_plan **plan,
    size_t *workspace_bytes);

/* One-shot form: plan, allocate the workspace, execute, free. Same contract as the plan plus
 * fia_plan_execute. */
FIA_API fia_status fia_fused_infer_attention_score(
    fia_context *ctx, const fia_fused_infer_attention_score_tensors *tensors,
    const fia_fused_infer_attention_score_params *params);

/* ------------------------------------------------------------------------------------------ */
/* smallq_flash_attention (the SmallQ decode operator)                                        */
/* ------------------------------------------------------------------------------------------ */

/*
 * fia_smallq_flash_attention_get_workspace_size - validates a SmallQ flash attention call (decode,
 * multi-token prediction, speculative decoding: a few query tokens against a long KV) and plans
 * it. The pair mirrors aclnnSmallqFlashAttentionGetWorkspaceSize / aclnnSmallqFlashAttention.
 *
 *   O = softmax(Q . K^T / sqrt(headDim)) . V     per head, no mask
 *
 * Shapes (all float16, each a 3-D view with a unit innermost stride, other strides free):
 *   Q: [numHeads, qLen, headDim]    K, V: [numHeads, kvLen, headDim]    O: [numHeads, qLen, headDim]
 *   numHeads, qLen, kvLen >= 1; headDim 1..512 with no alignment requirement. Accumulation is
 *   fp32; O is rounded to float16 once. Writes never touch memory outside O's rows, so heads
 *   packed back to back are safe.
 * It runs on FIA's decode path (the query tile of a head stays resident, K/V stream in tiles
 * with the next tile prefetched, the KV length is split across threads with the log-sum-exp
 * merge), so results are bitwise identical for any thread count.
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT (message names Q, K, V or O, the dim and both values) for
 *   any other shape, dtype or a NULL argument; FIA_STATUS_UNSUPPORTED for headDim > 512 or
 *   non-unit innermost strides; FIA_STATUS_OUT_OF_MEMORY.
 * *executor (a plan: re-runnable, freed with fia_plan_destroy) and *workspace_size are written
 *   only on success.
 */
FIA_API fia_status fia_smallq_flash_attention_get_workspace_size(
    fia_context *ctx, const fia_tensor *q, const fia_tensor *k, const fia_tensor *v,
    fia_tensor *o, uint64_t *workspace_size, fia_plan **executor);

/* Runs a SmallQ executor: fia_plan_execute under the aclnn-style name. The executor stays valid
 * (run it again or destroy it with fia_plan_destroy). */
FIA_API fia_status fia_smallq_flash_attention(void *workspace, uint64_t workspace_size,
                                              fia_plan *executor);

/* ------------------------------------------------------------------------------------------ */
/* sparse_flash_attention (SFA) and kv_quant_sparse_flash_attention (C8)                      */
/* ------------------------------------------------------------------------------------------ */

/* Parameters, named after the torch_npu keywords of npu_sparse_flash_attention. Call
 * fia_sparse_flash_attention_params_init() first: it sets the defaults listed here. */
typedef struct fia_sparse_flash_attention_params {
    double scale_value;          /* multiplies the logits (default 1.0: set it) */
    int64_t sparse_block_size;   /* tokens per index entry: a power of two 1..128 (default 1) */
    fia_layout layout_query;     /* BSND or TND (default BSND) */
    fia_layout layout_kv;        /* BSND, TND or PA_BSND (default BSND) */
    int32_t sparse_mode;         /* 0 (no causal bound) or 3 (right-down causal, default) */
    int32_t attention_mode;      /* must be 2 (MLA-absorb); the default here is 2 */
    int32_t return_softmax_lse;  /* nonzero: write softmax_lse (default 0) */
    /* Query lengths (int64, copied at plan time). BSND: per batch, NULL = S1 for every batch,
     * count 1 broadcasts, count >= B uses the first B. TND: cumulative, count = B (required). */
    const int64_t *actual_seq_lengths_query;
    int64_t actual_seq_lengths_query_count;
    /* KV lengths: BSND per batch (NULL = S2), TND cumulative (required), PA_BSND per batch
     * (required, not cumulative). Same count rules. */
    const int64_t *actual_seq_lengths_kv;
    int64_t actual_seq_lengths_kv_count;
} fia_sparse_flash_attention_params;

/* Sets the defaults listed above. */
FIA_API void fia_sparse_flash_attention_params_init(fia_sparse_flash_attention_params *p);

/* Tensors of one call. Optional tensors are NULL when absent. */
typedef struct fia_sparse_flash_attention_tensors {
    const fia_tensor *query;          /* q_nope, see the shape lines below */
    const fia_tensor *key;            /* the latent cache (k_nope) */
    const fia_tensor *value;          /* NULL, or the same view as key (values are k_nope) */
    const fia_tensor *sparse_indices; /* int32 */
    const fia_tensor *block_table;    /* required iff layout_kv is PA_BSND */
    const fia_tensor *query_rope;
    const fia_tensor *key_rope;
    fia_tensor *attention_out;        /* output */
    fia_tensor *softmax_lse;          /* output, required iff return_softmax_lse */
} fia_sparse_flash_attention_tensors;

/*
 * fia_sparse_flash_attention_plan - validates a sparse flash attention call (DeepSeek-V3.2 /
 * GLM-5 DSA: attention over the top-k tokens the lightning indexer selected) and plans it.
 *
 *   For query row i of batch b and head h, with the selected token set T(b, i):
 *   s_t = scale_value * ([q_nope, q_rope] . [k_nope_t, k_rope_t])      (576-wide dot product)
 *   out = sum_{t in T} softmax(s)_t * k_nope_t                         (attention_mode 2)
 *
 * Shapes (N1 = query heads, 1..128; the cache has one head; B from the query, or from the
 * query lengths for TND):
 *   query:           BSND [B, S1, N1, 512]   TND [T1, N1, 512]
 *   query_rope:      the query's shape with 64
 *   key:             BSND [B, S2, 1, 512]    TND [T2, 1, 512]
 *                    PA_BSND [blocks, block_size, 1, 512] with block_table
 *   key_rope:        the key's shape with 64
 *   value:           NULL or the same view as key (data, dtype, shape and strides): the values
 *                    are k_nope, read once from the key rows. Anything else is invalid.
 *   sparse_indices:  int32, BSND query [B, S1, 1, K], TND query [T1, 1, K]; K >= 0
 *   block_table:     int32 [B, >= ceil(max kv length / block_size)]: token t of batch b is row
 *                    t % block_size of block block_table[b][t / block_size]. Ids used by the
 *                    kv lengths must lie in [0, blocks); entries beyond them are never read.
 *                    block_size (key dim 1): 1..1024, a multiple of sparse_block_size.
 *   attention_out:   the query's shape (512 wide), query dtype.
 *   softmax_lse:     float32 [B, N1, S1, 1], TND [T1, N1, 1]: max + log(sum exp(s - max)) over
 *                    the selected tokens; +inf for a row with no valid token.
 * dtypes: query, query_rope, key, key_rope float16 or bfloat16, all the same.
 *
 * Selection of row i (0-based within its batch; Sq, Skv the actual lengths):
 *   threshold = Skv (sparse_mode 0), or Skv - Sq + i + 1 clamped to <= Skv (sparse_mode 3).
 *   Entries of sparse_indices[b, i, 0, :] are read in order; the first -1 ends the list. An
 *   entry e >= 0 selects tokens [e * sbs, min((e + 1) * sbs, threshold)) (sbs =
 *   sparse_block_size); an entry whose first token is at or beyond the threshold selects
 *   nothing and is skipped, and so is any value < -1 (invalid, never dereferenced). A
 *   duplicated entry counts as often as it appears (as the golden). A row with no valid token
 *   outputs 0 (lse +inf), and so do rows beyond a batch's actual query length.
 *
 * Computation: fp32 accumulation, the scale folded into the query. Each row's entries are cut
 * into fixed slices (in entry space, never by thread count) whose partial softmax states are
 * merged in slice order, so results are bitwise identical for any thread count and batch.
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT for anything that breaks the rules above (the message
 *   names the tensor, the dim and the values), FIA_STATUS_UNSUPPORTED for non-unit innermost
 *   or negative strides, FIA_STATUS_OUT_OF_MEMORY.
 * Memory: *plan is allocated and owned by the caller (fia_plan_destroy). Lengths and the block
 *   table are copied and checked at plan time; sparse_indices and the other tensors are read
 *   at execute time (indices are untrusted: checked one by one as above).
 * *plan and *workspace_bytes are written only on success. workspace_bytes may be NULL.
 */
FIA_API fia_status fia_sparse_flash_attention_plan(fia_context *ctx,
                                                   const fia_sparse_flash_attention_tensors *tensors,
                                                   const fia_sparse_flash_attention_params *params,
                                                   fia_plan **plan, size_t *workspace_bytes);

/* One-shot form: plan, allocate the workspace, execute, free. */
FIA_API fia_status fia_sparse_flash_attention(fia_context *ctx,
                                              const fia_sparse_flash_attention_tensors *tensors,
                                              const fia_sparse_flash_attention_params *params);

/* Parameters of npu_kv_quant_sparse_flash_attention: those of sparse_flash_attention plus the
 * quantization flags, which must have the values set by the init function (the C8 form). */
typedef struct fia_kv_quant_sparse_flash_attention_params {
    fia_sparse_flash_attention_params base; /* the same fields and rules */
    int32_t key_quant_mode;       /* must be 2 (per tile) */
    int32_t value_quant_mode;     /* must be 2 */
    int32_t quant_scale_repo_mode; /* must be 1 (scales inside the row) */
    int64_t tile_size;            /* must be 128 */
    int64_t rope_head_dim;        /* must be 64 */
} fia_kv_quant_sparse_flash_attention_params;

/* Sets the sparse_flash_attention defaults and the only accepted quant flags (2, 2, 1, 128,
 * 64). */
FIA_API void fia_kv_quant_sparse_flash_attention_params_init(
    fia_kv_quant_sparse_flash_attention_params *p);

typedef struct fia_kv_quant_sparse_flash_attention_tensors {
    const fia_tensor *query;          /* [q_nope, q_rope], 576 wide */
    const fia_tensor *key;            /* int8 656-byte rows */
    const fia_tensor *value;          /* NULL, or the same view as key */
    const fia_tensor *sparse_indices; /* int32 */
    const fia_tensor *block_table;    /* required iff layout_kv is PA_BSND */
    fia_tensor *attention_out;        /* output, 512 wide */
    fia_tensor *softmax_lse;          /* output, required iff return_softmax_lse */
} fia_kv_quant_sparse_flash_attention_tensors;

/*
 * fia_kv_quant_sparse_flash_attention_plan - sparse flash attention over the C8 latent cache.
 *
 * Each cached token is one 656-byte int8 row: bytes [0, 512) the int8 latent k_nope, bytes
 * [512, 640) 64 bfloat16 k_rope values, bytes [640, 656) 4 float32 scales (little endian), one
 * per 128-value tile: k_nope[c] = int8[c] * scale[c / 128]. The logits and the output are those
 * of fia_sparse_flash_attention_plan on the dequantized row (values = dequantized k_nope).
 *
 * Shapes:
 *   query:          BSND [B, S1, N1, 576]   TND [T1, N1, 576]   ([q_nope 512, q_rope 64])
 *   key:            int8 BSND [B, S2, 1, 656]   TND [T2, 1, 656]
 *                   PA_BSND [blocks, block_size, 1, 656] with block_table
 *   value:          NULL or the same view as key.
 *   attention_out:  the query's shape with 512; query dtype (float16 or bfloat16).
 *   sparse_indices, block_table, softmax_lse, lengths, selection rules: as sparse_flash_attention
 *   (sparse_block_size 1..128, a superset of the NPU's 1..16 for this form).
 * Returns, memory, determinism: as fia_sparse_flash_attention_plan.
 */
FIA_API fia_status fia_kv_quant_sparse_flash_attention_plan(
    fia_context *ctx, const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params, fia_plan **plan,
    size_t *workspace_bytes);

/* One-shot form: plan, allocate the workspace, execute, free. */
FIA_API fia_status fia_kv_quant_sparse_flash_attention(
    fia_context *ctx, const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params);

/* ------------------------------------------------------------------------------------------ */
/* lightning_indexer (LI) and quant_lightning_indexer (LI quant, "A8C8")                      */
/* ------------------------------------------------------------------------------------------ */

/* Parameters, named after the torch_npu keywords of npu_lightning_indexer. Call
 * fia_lightning_indexer_params_init() first: it sets the defaults listed here. */
typedef struct fia_lightning_indexer_params {
    fia_layout layout_query; /* BSND or TND (default BSND) */
    fia_layout layout_key;   /* BSND, TND or PA_BSND (default BSND) */
    int64_t sparse_count;    /* k: 1..8192 (default 2048) */
    int32_t sparse_mode;     /* 0 (all keys) or 3 (right-down causal, default) */
    int64_t pre_tokens;      /* accepted only at the default INT64_MAX */
    int64_t next_tokens;     /* accepted only at the default INT64_MAX */
    int32_t return_value;    /* nonzero: write sparse_values (default 0) */
    /* Query lengths (int64, copied at plan time). BSND: per batch, NULL = S1 for every batch,
     * count 1 broadcasts, count >= B uses the first B. TND: cumulative, count = B (required). */
    const int64_t *actual_seq_lengths_query;
    int64_t actual_seq_lengths_query_count;
    /* Key lengths: BSND per batch (NULL = S2), TND cumulative (required), PA_BSND per batch
     * (required, not cumulative). Same count rules. */
    const int64_t *actual_seq_lengths_key;
    int64_t actual_seq_lengths_key_count;
    /* quant_lightning_indexer only (ignored by lightning_indexer): 0 = per-token(-head)
     * symmetric int8, the only mode (default 0). */
    int32_t query_quant_mode;
    int32_t key_quant_mode;
} fia_lightning_indexer_params;

/* Sets the defaults listed above. */
FIA_API void fia_lightning_indexer_params_init(fia_lightning_indexer_params *p);

/* Tensors of one call. Optional tensors are NULL when absent. */
typedef struct fia_lightning_indexer_tensors {
    const fia_tensor *query;
    const fia_tensor *key;
    const fia_tensor *weights;
    const fia_tensor *query_dequant_scale; /* quant_lightning_indexer only (else NULL) */
    const fia_tensor *key_dequant_scale;   /* quant_lightning_indexer only (else NULL) */
    const fia_tensor *block_table;         /* required iff layout_key is PA_BSND */
    fia_tensor *sparse_indices;            /* output, int32 */
    fia_tensor *sparse_values;             /* output, float32, required iff return_value */
} fia_lightning_indexer_tensors;

/*
 * fia_lightning_indexer_plan - validates a lightning indexer call (DeepSeek-V3.2 / GLM-5 DSA:
 * which k cached tokens each query token attends to) and plans it.
 *
 *   score[t, j] = sum_h w[t, h] * ReLU(q[t, h] . k[j])       over the N1 query heads
 *   sparse_indices[t, :] = the k visible keys j of highest score, by descending score
 *
 * Shapes (N1 = query heads, 1..64; D = head dim, 1..512, 128 in the models; one key head
 * shared by every query head; B from the query, or from the query lengths for TND):
 *   query:           BSND [B, S1, N1, D]   TND [T1, N1, D]
 *   key:             BSND [B, S2, 1, D]    TND [T2, 1, D]
 *                    PA_BSND [blocks, block_size, 1, D] with block_table
 *   weights:         BSND query [B, S1, N1]   TND query [T1, N1]
 *   block_table:     int32 [B, >= ceil(max key length / block_size)]: token t of batch b is row
 *                    t % block_size of block block_table[b][t / block_size]. Ids used by the key
 *                    lengths must lie in [0, blocks); entries beyond them are never read.
 *                    block_size (key dim 1): 1..1024.
 *   sparse_indices:  int32, BSND query [B, S1, 1, k], TND query [T1, 1, k]
 *   sparse_values:   float32, the shape of sparse_indices
 * dtypes: query and key float16 or bfloat16, the same; weights the query dtype or float32.
 * Any non-negative strides, except a unit innermost stride for query and key.
 *
 * Visibility of key j to query row i (0-based within the batch; Sq, Skv the actual lengths):
 *   sparse_mode 0  all j < Skv.       sparse_mode 3  j <= (Skv - Sq) + i (and j < Skv).
 * Output row i lists the visible keys (logical positions 0..Skv-1 within the batch, not cache
 * slots) by descending score; equal scores keep the lower index first; slots beyond the number
 * of visible keys hold -1 (sparse_values -inf there). Rows beyond a batch's query length (BSND),
 * beyond the last cumulative length (TND), rows of a batch with key length 0 and rows that see no
 * key (Sq > Skv under sparse_mode 3) are all -1.
 * Numerics: q, k and w are converted to fp32 exactly; each dot product is accumulated in fp32
 *   (order unspecified: it differs between ISAs), ReLU(NaN) is 0, the head sum is fp32.
 *   sparse_values holds these fp32 scores. In the ranking -0 equals +0 and a NaN score ranks
 *   below every number (below -inf); among NaNs the lower index comes first. The ranking is a
 *   pure function of the scores, so the indices are bitwise identical for any thread count.
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT for anything that breaks the rules above (the message
 *   names the tensor, the dim and the values; k outside 1..8192, a bad block id, non-default
 *   pre/next_tokens), FIA_STATUS_UNSUPPORTED for negative strides or non-unit innermost strides
 *   of query or key, FIA_STATUS_OUT_OF_MEMORY.
 * Memory: *plan is allocated and owned by the caller (fia_plan_destroy). The lengths and the
 *   block table are copied and checked at plan time; tensor contents are read at execute time.
 *   The workspace holds the scores of a wave of query rows (at most ~16 MiB, or one block of
 *   8 rows of the longest key length when that is more) plus per-thread scratch.
 * *plan and *workspace_bytes are written only on success. workspace_bytes may be NULL.
 */
FIA_API fia_status fia_lightning_indexer_plan(fia_context *ctx,
                                              const fia_lightning_indexer_tensors *tensors,
                                              const fia_lightning_indexer_params *params,
                                              fia_plan **plan, size_t *workspace_bytes);

/* One-shot form: plan, allocate the workspace, execute, free. */
FIA_API fia_status fia_lightning_indexer(fia_context *ctx,
                                         const fia_lightning_indexer_tensors *tensors,
                                         const fia_lightning_indexer_params *params);

/*
 * fia_quant_lightning_indexer_plan - the int8 ("A8C8") lightning indexer: the same contract as
 * fia_lightning_indexer_plan (shapes, layouts, visibility, ordering, -1 padding, outputs) with
 *
 *   score[t, j] = sum_h w[t, h] * sq[t, h] * sk[j] * ReLU(q[t, h] . k[j])
 *
 * where q . k is the exact int32 dot product of the int8 vectors (VNNI on AVX-512 VNNI CPUs).
 * Shapes and dtypes:
 *   query:                int8, as above           key: int8, as above (BSND, TND or PA_BSND)
 *   weights:              float16 (bfloat16 and float32 also accepted), the weights' shape above
 *   query_dequant_scale:  sq, per token and head: the weights' shape; any float dtype
 *   key_dequant_scale:    sk, per token, laid out like the key without its head dim: BSND
 *                         [B, S2, 1], TND [T2, 1], PA_BSND [blocks, block_size, 1] (paged with
 *                         the same block table); any float dtype
 *   query_quant_mode, key_quant_mode: 0.
 * Numerics: w * sq is formed in fp32 per head, ReLU of the int32 dot is converted to fp32 and
 *   summed over heads in fp32, then multiplied by sk. The NPU golden's division of the dot by
 *   1024 and its fp16 rounding of intermediate values are not reproduced (they do not change the
 *   ranking except through rounding).
 * Every scale must be >= 0 (the formula's ReLU factoring needs it): the scales that the call
 *   will read (all of sq for the valid query rows, sk of the visible key tokens) are checked at
 *   plan time, and a negative or NaN one is FIA_STATUS_INVALID_ARGUMENT naming the tensor and the
 *   position. A plan re-run after the caller rewrites the scales is not re-checked: negative
 *   scales then give indices in an unspecified (but memory-safe) order.
 * Returns, memory and threads: as fia_lightning_indexer_plan.
 */
FIA_API fia_status fia_quant_lightning_indexer_plan(fia_context *ctx,
                                                    const fia_lightning_indexer_tensors *tensors,
                                                    const fia_lightning_indexer_params *params,
                                                    fia_plan **plan, size_t *workspace_bytes);

/* One-shot form of the quant indexer. */
FIA_API fia_status fia_quant_lightning_indexer(fia_context *ctx,
                                               const fia_lightning_indexer_tensors *tensors,
                                               const fia_lightning_indexer_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_H */
