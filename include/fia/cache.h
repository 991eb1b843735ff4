/*
 * fia/cache.h - cache writes and gathers of the DeepSeek-V3.2 / GLM-5 chain: scatter_update
 * (torch_npu scatter_update_, prefill), scatter_nd_update (npu_scatter_nd_update_, decode) and
 * gather_selection_kv_cache (the cann-recipes-infer custom op for offloaded caches). All three
 * update caller tensors in place. Paged caches are addressed exactly as the attention operators
 * read them (token t of batch b: block block_table[b][t / block_size], row t % block_size; a
 * flat slot s: block s / block_size, row s % block_size; PA_NZ rows in 32-byte chunks).
 *
 * Indices are read at execute time and every one is checked before anything is written: an
 * out-of-range index makes fia_plan_execute (and the one-shot call) return
 * FIA_STATUS_INVALID_ARGUMENT naming the entry, with no element of any output changed.
 * The scatters run on the calling thread (they move a few rows), entries in order: when two
 * entries write the same element, the later one wins, whatever the thread count.
 */
#ifndef FIA_CACHE_H
#define FIA_CACHE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* scatter_update                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct fia_scatter_update_params {
    uint32_t struct_size; /* sizeof the struct: set by _params_init */
    int64_t axis;         /* the scattered dim of data, -ndim..ndim-1, not 0 (default -2) */
} fia_scatter_update_params;

FIA_API void fia_scatter_update_params_init(fia_scatter_update_params *p);

typedef struct fia_scatter_update_tensors {
    fia_tensor *data;          /* updated in place: 2..8 dims, any dtype; dim 0 is the batch */
    const fia_tensor *indices; /* int32 / int64: [B] (entry k starts at indices[k] in batch k,
                                * B = data dim 0) or [K, 2] ((batch, start) per entry) */
    const fia_tensor *updates; /* data's dtype and ndim; dim 0 = the entries (B or K), dim axis
                                * u <= data's, every other dim equal to data's */
} fia_scatter_update_tensors;

/*
 * fia_scatter_update_plan - for every entry k with batch b and start p:
 *   data[b, ..., p + j, ...] = updates[k, ..., j, ...]   (j < u along axis; all other dims)
 * the KV-cache append of the torch_npu callers (cache [B, S, H] or [B, N, S, D], key_states
 * [B, s, H] / [B, N, s, D], axis -2, indices = the write positions).
 * Execute-time checks: 0 <= b < data dim 0, 0 <= p and p + u <= data dim axis.
 * Strides: any >= 0 (data must not have a zero stride on a dim > 1).
 * Returns FIA_STATUS_INVALID_ARGUMENT (tensor, dim and both values named), FIA_STATUS_UNSUPPORTED
 *   for negative strides, FIA_STATUS_OUT_OF_MEMORY. No workspace.
 */
FIA_API fia_status fia_scatter_update_plan(fia_context *ctx, const fia_scatter_update_tensors *tensors,
                                           const fia_scatter_update_params *params,
                                           fia_plan **plan, size_t *workspace_bytes);
FIA_API fia_status fia_scatter_update(fia_context *ctx, const fia_scatter_update_tensors *tensors,
                                      const fia_scatter_update_params *params);

/* ------------------------------------------------------------------------------------------ */
/* scatter_nd_update                                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct fia_scatter_nd_update_params {
    uint32_t struct_size;  /* sizeof the struct: set by _params_init */
    /* How indices address input:
     *   FIA_LAYOUT_BSND (default): plain N-d (torch_npu): indices [..., a] index input's first a
     *     dims; updates = indices.shape[:-1] + input.shape[a:].
     *   FIA_LAYOUT_PA_BSND: input is a paged cache [blocks, block_size, N, D] or [blocks,
     *     block_size, D]; indices [..., 1] hold flat slots in [0, blocks * block_size) (the
     *     recipes' slot_mapping on cache.view(-1, D), without needing a flat view);
     *     updates = indices.shape[:-1] + input.shape[2:].
     *   FIA_LAYOUT_PA_NZ: input is [blocks, 1, D / w, block_size, w] (w = 32 bytes of elements,
     *     the MLA NZ cache); indices [..., 1] flat slots; updates = indices.shape[:-1] + [D] or
     *     + [1, D]. */
    fia_layout cache_mode;
} fia_scatter_nd_update_params;

FIA_API void fia_scatter_nd_update_params_init(fia_scatter_nd_update_params *p);

typedef struct fia_scatter_nd_update_tensors {
    fia_tensor *input;         /* updated in place: 1..8 dims, any dtype */
    const fia_tensor *indices; /* int32 / int64, >= 2 dims, last dim a in 1..input's ndim */
    const fia_tensor *updates; /* input's dtype, the shape above */
} fia_scatter_nd_update_tensors;

/*
 * fia_scatter_nd_update_plan - input[indices[i]] = updates[i] for every index tuple i (a row of
 * input.shape[a:] each). Execute-time checks: every index component within [0, dim) (negative
 * indices are out of range), slots within [0, blocks * block_size).
 * Strides: any >= 0 (input must not have a zero stride on a dim > 1; PA_NZ needs the NZ strides
 *   of the MLA cache: dim 4 stride 1, dim 3 stride w).
 * Returns, memory: as fia_scatter_update_plan.
 */
FIA_API fia_status fia_scatter_nd_update_plan(fia_context *ctx,
                                              const fia_scatter_nd_update_tensors *tensors,
                                              const fia_scatter_nd_update_params *params,
                                              fia_plan **plan, size_t *workspace_bytes);
FIA_API fia_status fia_scatter_nd_update(fia_context *ctx,
                                         const fia_scatter_nd_update_tensors *tensors,
                                         const fia_scatter_nd_update_params *params);

/* ------------------------------------------------------------------------------------------ */
/* gather_selection_kv_cache                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* The largest top-k of gather_selection_kv_cache. */
#define FIA_GATHER_SELECTION_MAX_TOPK 2048

typedef struct fia_gather_selection_kv_cache_params {
    uint32_t struct_size;              /* sizeof the struct: set by _params_init */
    int64_t selection_topk_block_size; /* tokens per top-k entry (default 64); 1 when K > 32 */
} fia_gather_selection_kv_cache_params;

FIA_API void fia_gather_selection_kv_cache_params_init(fia_gather_selection_kv_cache_params *p);

typedef struct fia_gather_selection_kv_cache_tensors {
    fia_tensor *selection_k_rope;           /* in place: [S_BLOCKS, BS_S, R] (or [.., 1, R]); may
                                             * be empty (numel 0: no rope, the C8 form) */
    fia_tensor *selection_kv_cache;         /* in place: [S_BLOCKS, BS_S, C] (or [.., 1, C]) */
    const fia_tensor *selection_kv_block_table; /* int32 [B * S * H, S_MAX_BLOCKS] */
    fia_tensor *selection_kv_block_status;  /* in place, int32 [B, S, H, K + 1] or [B * S, H, K + 1] */
    const fia_tensor *selection_topk_indices; /* int32 [B, S, H, K] or [B * S, H, K] */
    const fia_tensor *full_k_rope;          /* [F_BLOCKS, BS_F, R] (or [.., 1, R]); empty with an
                                             * empty selection_k_rope */
    const fia_tensor *full_kv_cache;        /* [F_BLOCKS, BS_F, C] (or [.., 1, C]) */
    const fia_tensor *full_kv_block_table;  /* int32 [B, F_MAX_BLOCKS] */
    const fia_tensor *full_kv_actual_seq;   /* int32 [B]: kv tokens of each batch */
    const fia_tensor *full_q_actual_seq;    /* int32 [B]: query tokens of each batch, <= S */
    fia_tensor *selection_kv_actual_seq;    /* output, int32 [B * S * H] */
} fia_gather_selection_kv_cache_tensors;

/*
 * fia_gather_selection_kv_cache_plan - gathers the top-k token blocks of a paged full cache into
 * a compact selection cache (KV offload), as the recipes' golden defines it. For batch b, query
 * position s and head h (H must be 1), with sbs = selection_topk_block_size:
 *   kv = full_kv_actual_seq[b] - (q - 1 - s) when s < q = full_q_actual_seq[b], else
 *        full_kv_actual_seq[b] (the MTP offset); kv <= 0: the row is skipped (its status is left
 *        as it is, its output length is 0).
 *   n = ceil(kv / sbs) blocks of sbs tokens, the last holding kv - (n - 1) sbs.
 *   The entries of selection_topk_indices[b, s, h, :] are read in order: a negative entry ends
 *   the list; an entry >= n is skipped; a valid entry e (duplicates included, gathered again) is
 *   copied, as the v-th valid one, from full tokens [e sbs, e sbs + len(e)) (through
 *   full_kv_block_table[b]) to selection tokens [v sbs, v sbs + len(e)) through row
 *   (b S + s) H + h of selection_kv_block_table, for both kv_cache and k_rope; status[v] = e.
 *   Then status[v..K) = -1, status[K] = the gathered token count, and
 *   selection_kv_actual_seq[row] = that count.
 * fia always gathers from the full cache: blocks already present in the selection cache from an
 * earlier call are not reused, which gives the same selection contents and status as the
 * golden (ops/ascendc/examples/test_npu_gather_selection_kv_cache.py, do_golden_all_host).
 * Constraints: K <= 2048; sbs >= 1 divides BS_F and BS_S; K > 32 needs sbs = 1; C, R and dtypes
 *   equal between the full and selection caches (float16, bfloat16 or int8). Distinct rows must
 *   use distinct selection blocks (rows run in parallel).
 * Execute-time checks (nothing written on failure): full_q_actual_seq in [0, S],
 *   full_kv_actual_seq in [0, F_MAX_BLOCKS BS_F], every block id used in range.
 * Returns, memory: as fia_scatter_update_plan (rows run on the context's threads).
 */
FIA_API fia_status fia_gather_selection_kv_cache_plan(
    fia_context *ctx, const fia_gather_selection_kv_cache_tensors *tensors,
    const fia_gather_selection_kv_cache_params *params, fia_plan **plan,
    size_t *workspace_bytes);
FIA_API fia_status fia_gather_selection_kv_cache(
    fia_context *ctx, const fia_gather_selection_kv_cache_tensors *tensors,
    const fia_gather_selection_kv_cache_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_CACHE_H */
