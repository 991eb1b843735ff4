/*
 * fia/attention.h - fused_infer_attention_score (dense, paged, MLA) and smallq_flash_attention.
 */
#ifndef FIA_ATTENTION_H
#define FIA_ATTENTION_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* fused_infer_attention_score (FIA)                                                          */
/* ------------------------------------------------------------------------------------------ */


/* Parameters, named after the torch_npu keywords of npu_fused_infer_attention_score. Call
 * fia_fused_infer_attention_score_params_init() first: it sets the torch_npu defaults. */
typedef struct fia_fused_infer_attention_score_params {
    uint32_t struct_size;        /* sizeof the struct: set by _params_init */
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
 *                   TND / TND_NTD [T1, N1, D]   NTD / NTD_TND [N1, T1, D]
 *                   (the four token-packed layouts follow TND's rules: cumulative lengths,
 *                   count = B, no decode special case; "TND" below means any of them)
 *   key, value:     the query's input layout with S2 / T2 and N2 (value with Dv), or, with
 *                   block_table, a paged cache: BnBsH [blocks, block_size, N2*D] (3-D) or
 *                   BnNBsD [blocks, N2, block_size, D] (4-D); value the same with Dv.
 *   attention_out:  the query's shape with Dv (BNSD_BSND: [B, S1, N1, Dv]; TND_NTD:
 *                   [N1, T1, Dv]; NTD_TND: [T1, N1, Dv]); query dtype.
 *   softmax_lse:    float32 [B, N1, S1, 1]; every token-packed layout [T1, N1, 1]. lse = max + log(sum exp(s - max))
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
 * Head dims D, Dv: 1..1024, any value (the NPU: <= 512, aligned; 576, the MLA absorbed width,
 * works); above 1024 FIA_STATUS_INVALID_ARGUMENT. N1, N2 <= 256, N1 % N2 == 0. B <= 65536.
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
 *   numHeads, qLen, kvLen >= 1; headDim 1..1024 (576 included) with no alignment requirement. Accumulation is
 *   fp32; O is rounded to float16 once. Writes never touch memory outside O's rows, so heads
 *   packed back to back are safe.
 * It runs on FIA's decode path (the query tile of a head stays resident, K/V stream in tiles
 * with the next tile prefetched, the KV length is split across threads with the log-sum-exp
 * merge), so results are bitwise identical for any thread count.
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT (message names Q, K, V or O, the dim and both values) for
 *   any other shape, dtype or a NULL argument; FIA_STATUS_UNSUPPORTED for headDim > 1024 or
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

#ifdef __cplusplus
}
#endif

#endif /* FIA_ATTENTION_H */
