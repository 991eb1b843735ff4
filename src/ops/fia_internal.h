/*
 * fia_internal.h - the plan of fused_infer_attention_score, shared by its validation/scheduling
 * half (fia_plan.c) and its execution half (fia_exec.c). Nothing outside src/ops/fia_*.c uses it.
 *
 * Work decomposition (all decided at plan time from the actual lengths):
 *   - A query tile is G query heads (one GQA group, sharing one KV head) x up to tile_pos
 *     consecutive query positions of one batch: rows r = p * G + g. It stays resident (packed,
 *     pre-scaled fp32) while the visible K/V range streams through in steps of kv_tile tokens
 *     (half of that for decode-sized tiles, see fia_item_step).
 *   - Steps are aligned to multiples of their size in token space; a step nobody in the query
 *     tile can see is skipped.
 *   - A request whose query rows for one KV head fit in a single query tile (decode, speculative
 *     decode) is split along the KV length into chunks of kv_chunk tokens, also aligned in token
 *     space; the partial softmax states are merged in chunk order afterwards. Whether and where
 *     to split depends only on the request itself, never on the thread count or the batch, so
 *     results are bitwise reproducible.
 *     For token-major caches one split item covers several KV heads of a chunk (sequential
 *     reads); how many never changes a result.
 *   - Items are sorted by estimated cost (largest first) and handed out dynamically.
 */
#ifndef FIA_OPS_FIA_INTERNAL_H
#define FIA_OPS_FIA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/plan.h"
#include "fia.h"
#include "kernels/kernels.h"
#include "ops/validate.h"
#include "sched/kvcache.h"
#include "sched/worklist.h"


typedef enum fia_antiquant {
    FIA_AQ_NONE = 0,
    FIA_AQ_TENSOR,  /* one scale (and offset) for K, one for V */
    FIA_AQ_CHANNEL, /* per kv head and channel */
    FIA_AQ_TOKEN    /* per batch and token */
} fia_antiquant;

typedef struct fia_attn_plan {
    fia_plan base;
    const fia_kernels *kern;

    int64_t B, N1, N2, G, D, Dv;
    int64_t S1;          /* query S dim (non-TND) or T */
    bool tnd;
    float scale;

    fia_seq q, k, v, o;
    float *lse;          /* NULL when softmax_lse is off */
    int64_t lse_s_b, lse_s_t, lse_s_h;

    bool paged;
    bool token_major;    /* the rows of all kv heads of a token are adjacent (BSH/BSND/TND/BnBsH) */
    fia_pages pages;     /* the copied, validated block table (table NULL: dense) */
    int32_t *block_table; /* owned copy behind pages.table */

    fia_vis vis;
    int64_t pre, next;   /* clamped to +-2^40 */
    const uint8_t *mask; /* NULL: no mask tensor applies */
    int64_t mask_s_b, mask_s_i, mask_s_j;

    fia_antiquant aq;
    fia_tensor aq_scale, aq_offset; /* views (offset.data NULL when absent) */

    fia_batch *batches;
    fia_worklist work;   /* items (h0, nh: kv heads) and split groups */

    /* tiles and workspace layout */
    int64_t tile_pos;    /* query positions per tile */
    int64_t tile_rows;   /* max rows of a tile of one kv head: G * tile_pos */
    int64_t state_rows;  /* max rows of an item over all its kv heads */
    int64_t kv_tile;
    int64_t kv_chunk;
    int64_t dp, dvp;     /* D, Dv rounded up to 16 floats */
    int64_t num_threads;
    int64_t merge_split; /* merge tasks per split group (row blocks, fia_exec.c) */
    bool amx;            /* GEMM tiles on AMX bf16 (kernels/gqa_amx.h): bf16 Q, K, V, no
                          * antiquant, fia_amx_gqa_fits(D, Dv), the context's amx_bf16, and
                          * some item with GEMM-sized rows */
} fia_attn_plan;

/* Per-thread scratch, carved from the workspace. */
typedef struct fia_scratch {
    float *q;     /* state_rows x dp, pre-scaled */
    float *kr;    /* kv_tile x dp: K rows in fp32 */
    float *kt;    /* dp x kv_tile: K^T panel */
    float *vp;    /* kv_tile x dvp */
    float *s;     /* tile_rows (amx: rounded up to 16) x kv_tile */
    float *o;     /* state_rows x dvp */
    float *m, *l; /* state_rows */
    float *alpha; /* tile_rows */
    const void **kptr, **vptr; /* kv_tile row pointers */
    const void **kpf, **vpf;   /* row pointers of the next tile (prefetched) */
    int64_t *lo, *hi;     /* per query position of the tile */
    uint16_t *qb; /* amx: the item's bf16 query rows, per head rows rounded up to 16 x D */
    void *amx;    /* amx: kernels/gqa_amx.h scratch */
} fia_scratch;

/* Visible key range [lo, hi] of query position i of batch bi (sched/kvcache.h fia_vis_range). */
static inline void fia_row_range(const fia_attn_plan *p, const fia_batch *bi, int64_t i,
                                 int64_t *lo, int64_t *hi) {
    fia_vis_range(p->vis, p->pre, p->next, bi, i, lo, hi);
}

/* Whether tiles of `rows` query rows per kv head run all their kv heads at once through
 * qk_heads / pv_heads (fia_exec.c fia_tile_heads): MHA decode rows (one row per head) of a
 * token-major cache, no antiquant, and a kernel table that has the two kernels. Such items
 * read large parts of token rows, so the plan gives them many heads (fia_plan.c); the kernels give
 * every head the bits of the head-by-head path, so no result depends on the choice. */
static inline bool fia_heads_path(const fia_attn_plan *p, int64_t rows) {
    return rows == 1 && p->G == 1 && p->token_major && p->aq == FIA_AQ_NONE && p->kern->qk_heads &&
           p->kern->pv_heads;
}

/* ---- validation pieces shared by the dense path and MLA (fia_common.c) ---- */

/* Checks attention_out's batch (non-TND) and sequence dims against the query's. */
fia_status fia_check_out_dims(const fia_dims *od, const fia_dims *qd, bool tnd, int64_t B);
/* The per-batch lengths of both paths into a calloc'ed *batches[B] (set even on failure, for
 * the plan's destroy): query lengths (TND: cumulative actual_seq_lengths over qS tokens; decode,
 * qS == 1 without TND: 1 each; else per batch up to qS), kv lengths (paged, t->block_table set:
 * actual_seq_lengths_kv required, up to the table's capacity; TND: cumulative over kv_S; else
 * per batch up to kv_S). A paged cache's block table is then validated against the kv lengths
 * (ids in [0, blocks)) and copied into *table (B x *cols). Shared helpers: ops/validate.h. */
fia_status fia_parse_batches(const fia_fused_infer_attention_score_tensors *t,
                             const fia_fused_infer_attention_score_params *prm, int64_t B,
                             bool tnd, int64_t qS, int64_t kv_S, int64_t block_size,
                             int64_t blocks, fia_batch **batches, int32_t **table, int64_t *cols);

/* The two paths of fused_infer_attention_score, each planning from imported params (fia.c
 * dispatches): dense (fia_plan.c) and MLA (query_rope / key_rope given, fia_mla.c). */
fia_status fia_dense_plan(fia_context *ctx, const fia_fused_infer_attention_score_tensors *t,
                          const fia_fused_infer_attention_score_params *prm, fia_plan **plan);
fia_status fia_mla_plan(fia_context *ctx, const fia_fused_infer_attention_score_tensors *t,
                        const fia_fused_infer_attention_score_params *prm, fia_plan **plan);

/* Sizes (ws == NULL) or lays out the workspace: num_threads scratch areas, then the dequant
 * vectors, then the split partials. Returns the bytes used. */
size_t fia_attn_workspace_layout(const fia_attn_plan *p, void *ws, float **aq_vectors,
                                 float **partials);

/* Runs the plan (fia_exec.c). */
void fia_attn_execute(fia_plan *plan, void *workspace);

#endif /* FIA_OPS_FIA_INTERNAL_H */
