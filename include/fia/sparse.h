/*
 * fia/sparse.h - the DeepSeek-V3.2 / GLM-5 sparse attention operators: sparse_flash_attention
 * (and its C8 form kv_quant_sparse_flash_attention), lightning_indexer (and its int8 form).
 */
#ifndef FIA_SPARSE_H
#define FIA_SPARSE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* sparse_flash_attention (SFA) and kv_quant_sparse_flash_attention (C8)                      */
/* ------------------------------------------------------------------------------------------ */

/* Parameters, named after the torch_npu keywords of npu_sparse_flash_attention. Call
 * fia_sparse_flash_attention_params_init() first: it sets the defaults listed here. */
typedef struct fia_sparse_flash_attention_params {
    uint32_t struct_size;        /* sizeof the struct: set by _params_init */
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
    fia_tensor *softmax_lse;          /* output (return_softmax_lse; see the rule below) */
    fia_tensor *softmax_max;          /* output, torch_npu's form (return_softmax_lse) */
    fia_tensor *softmax_sum;          /* output, with softmax_max */
    const fia_tensor *sinks;          /* optional: float32 [N1], one logit per head */
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
 *                    the selected tokens (and the sink); +inf for a row with no valid token.
 *   softmax_max:     float32 [B, 1, S1, N1] (BSND: [B, N2, S1, N1/N2]), TND [1, T1, N1]
 *                    ([N2, T1, N1/N2]), as torch_npu returns them: max = the largest logit of
 *                    the row (scale included; the sink counts as a logit),
 *   softmax_sum:     the shape of softmax_max: sum = sum exp(s - max) over the selected tokens
 *                    plus exp(sink - max), so that lse = max + log(sum).
 *                    A row with no valid token (and rows beyond a batch's query length) holds
 *                    max = 0 and sum = 0, as the NPU golden leaves them: a merge that weights
 *                    each part by sum * exp(max - M) gives such a row weight 0.
 *   sinks:           NULL, or float32 [N1] (any stride): the learnable sink of each head, a
 *                    logit with no value (torch_npu's sinks / the V2 operator):
 *                    out = sum_t exp(s_t - m) v_t / (sum_t exp(s_t - m) + exp(sink - m)).
 *                    A row with no valid token still outputs 0 (and the values above).
 * Softmax outputs: with return_softmax_lse set, pass softmax_lse, or softmax_max and
 *   softmax_sum, or all three (at least one form; max and sum go together); every one given is
 *   written. With return_softmax_lse 0 none of them is read or written.
 * dtypes: query, query_rope, key, key_rope float16 or bfloat16, all the same.
 *
 * Selection of row i (0-based within its batch; Sq, Skv the actual lengths):
 *   threshold = Skv (sparse_mode 0), or Skv - Sq + i + 1 clamped to <= Skv (sparse_mode 3).
 *   Entries of sparse_indices[b, i, 0, :] are read in order up to the first -1 (all K of them
 *   when there is none): an entry for a future token (at or beyond the threshold) placed before
 *   valid ones is skipped and the entries after it are still read (the recipes golden's rule;
 *   the NPU kernel reads only the first min(K, ceil(threshold / sbs)) entries, which agrees
 *   whenever the valid entries come first, as the lightning indexer writes them). The first -1
 *   ends the list. An
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
    uint32_t struct_size;                   /* sizeof the struct: set by _params_init */
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
    fia_tensor *softmax_lse;          /* output (return_softmax_lse), as sparse_flash_attention */
    fia_tensor *softmax_max;          /* output (return_softmax_lse), as sparse_flash_attention;  */
    fia_tensor *softmax_sum;          /* an fia extension: torch_npu's C8 op returns only out */
    const fia_tensor *sinks;          /* optional float32 [N1], as sparse_flash_attention */
} fia_kv_quant_sparse_flash_attention_tensors;

/*
 * fia_kv_quant_sparse_flash_attention_plan - sparse flash attention over the C8 latent cache.
 *
 * Each cached token is one 656-byte int8 row: bytes [0, 512) the int8 latent k_nope, bytes
 * [512, 640) 64 bfloat16 k_rope values, bytes [640, 656) 4 float32 scales (little endian), one
 * per 128-value tile. The contract's rounding points (npu_kv_quant_sparse_flash_attention's
 * golden) are kept, fp32 everywhere else:
 *   k_nope[c] = to_qdtype((float)int8[c] * scale[c / 128])   (fp32 product, then rounded to the
 *               query dtype, nearest even): this rounded row is K (with k_rope) for Q.K^T and V;
 *   P is rounded to the query dtype before P.V: fia rounds the unnormalised probabilities of
 *               its one-pass (flash) loop, exp(s - m), as exp(s - k ln2) with k = round(m / ln2),
 *               so the rounded mantissas do not depend on the running max m (rounding commutes
 *               with powers of two) nor on the thread count; the sum and the final division
 *               stay fp32. The Python golden rounds the normalised probabilities exp(s - M) / l,
 *               which no one-pass kernel can (the NPU kernel rounds exp(s - m) too): the two
 *               differ by at most one query-dtype ulp per probability.
 * Otherwise the logits and the output are those of fia_sparse_flash_attention_plan on the
 * dequantized row (values = the rounded k_nope). With a bfloat16 query on a CPU with AMX (and
 * FIA_AMX unset or 1), these casts make K, V and P bfloat16 values, so Q.K^T and P.V run on AMX
 * tiles with fp32 accumulation; the results differ from the vector path in the last bits only
 * (summation order), and AMX reads bf16 denormals (below 2^-126) as zero.
 *
 * Shapes:
 *   query:          BSND [B, S1, N1, 576]   TND [T1, N1, 576]   ([q_nope 512, q_rope 64])
 *   key:            int8 BSND [B, S2, 1, 656]   TND [T2, 1, 656]
 *                   PA_BSND [blocks, block_size, 1, 656] with block_table
 *   value:          NULL or the same view as key.
 *   attention_out:  the query's shape with 512; query dtype (float16 or bfloat16).
 *   sparse_indices, block_table, softmax_lse / softmax_max / softmax_sum, sinks, lengths,
 *   selection rules: as sparse_flash_attention (sparse_block_size 1..128, a superset of the
 *   NPU's 1..16 for this form).
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
    uint32_t struct_size;        /* sizeof the struct: set by _params_init */
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
    /* quant_lightning_indexer only: 0 (default) ranks by the contract's scores, with its fp16
     * rounding points; 1 ranks by the exact formula (fp32, no fp16 rounding). See the quant
     * indexer's Numerics below. */
    int32_t exact_ranking;
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
    fia_tensor *sparse_values;             /* output, required iff return_value: float32, or
                                            * float16 / bfloat16 (torch_npu returns the query
                                            * dtype); the tensor's dtype decides */
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
 *   sparse_values:   the shape of sparse_indices; float32, float16 or bfloat16 (torch_npu
 *                    returns the query dtype: pass that dtype to match it, float32 to keep
 *                    the fp32 scores); the scores are rounded to it (nearest even)
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
 *   sparse_values holds these fp32 scores (rounded to its dtype; the ranking always uses the
 *   fp32 scores). In the ranking -0 equals +0 and a NaN score ranks
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
 * Numerics (exact_ranking 0, the default): the contract's rounding points, in the order of the
 *   NPU kernel and its golden (op-plugin / cann-recipes test_npu_lightning_indexer_quant):
 *     w~[h]  = fp16(w[h] * sq[h])                  (the product in fp32, rounded to fp16)
 *     S'[h]  = fp16(ReLU(q[h] . k) / 1024)         (exact int32 dot, to fp32, / 1024, to fp16)
 *     score  = sk * sum_h (1024 w~[h]) * S'[h]   (fp32 products and head sum, order
 *                                                   unspecified; 1024 is exact and restores the
 *                                                   formula's scale, so sparse_values hold the
 *                                                   formula's magnitude)
 *   (fp16 rounding to nearest even; a w * sq beyond fp16's range becomes inf, as in the kernel).
 *   The fp16 steps create ties the exact formula does not have; they are broken by the lower
 *   index, as every tie. exact_ranking 1: w * sq in fp32, ReLU of the dot to fp32, fp32 head
 *   sum, times sk: the exact formula up to fp32 rounding (not the golden's ranking: on the
 *   golden's test shapes 0.5-26% of the positions differ).
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

/*
 * fia_topk - the indexer's top-k selection alone, on one row of fp32 scores: writes
 * count = min(k, n) indices of scores[0..n) into indices[0..count), by descending score; equal
 * scores keep the lower index first, -0 equals +0, NaN ranks below every number (among NaNs
 * the lower index first), exactly as sparse_indices ranks a row. Returns count, or -1 (with
 * fia_last_error) for a NULL buffer, n < 0, k < 1 or n, k beyond INT32_MAX.
 * scratch: fia_topk_scratch_bytes(n, k) bytes, 8-byte aligned; no allocation, no context;
 * calls on disjoint buffers may run concurrently. O(n) time (radix select) plus a sort of k.
 */
FIA_API size_t fia_topk_scratch_bytes(int64_t n, int64_t k);
FIA_API int64_t fia_topk(const float *scores, int64_t n, int64_t k, int32_t *indices,
                         void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* FIA_SPARSE_H */
