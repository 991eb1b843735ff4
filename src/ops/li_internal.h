/*
 * li_internal.h - the lightning indexer's plan (lightning_indexer.c) and its top-k selection
 * (li_topk.c).
 *
 * Work decomposition
 *   rows    every output row (query token) in output order, with its batch, position and number
 *           of visible keys (0 for padding rows and rows that see nothing).
 *   blocks  up to FIA_LI_BLOCK_ROWS consecutive rows of one batch that see keys: a key tile is
 *           converted once and scored against every row of the block (prefill reuse).
 *   waves   consecutive rows whose scores fit the workspace's score buffer together. Each wave
 *           runs two pool passes: (1) scoring items = (block, key chunk of FIA_LI_CHUNK tokens,
 *           fixed in token space) write disjoint score ranges; (2) one selection item per row
 *           picks its top k and writes the output row. Scores do not depend on the tiling, and
 *           selection is a pure function of a row's scores, so results are bitwise identical for
 *           any thread count.
 */
#ifndef FIA_OPS_LI_INTERNAL_H
#define FIA_OPS_LI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/plan.h"
#include "fia.h"
#include "kernels/kernels.h"
#include "kernels/li_kernels.h"

enum {
    FIA_LI_BLOCK_ROWS = 8,  /* query rows sharing a converted key tile */
    FIA_LI_KEY_TILE = 48,   /* keys per converted tile (a multiple of the kernels' 6, 8, 12) */
    FIA_LI_CHUNK = 4096,    /* keys per scoring item (split points fixed in token space) */
    FIA_LI_MAX_K = 8192
};

typedef struct fia_li_row {
    int64_t b;     /* batch (-1: a TND row beyond the last query length) */
    int64_t tok;   /* query token along the query's S1 (BSND) or T1 (TND) dim */
    int64_t vis;   /* visible keys: 0..vis-1 */
    int64_t off;   /* offset of its scores in the wave's score buffer */
} fia_li_row;

typedef struct fia_li_block {
    int64_t row0, nrows; /* rows [row0, row0 + nrows), one batch, vis > 0, non-decreasing vis */
} fia_li_block;

typedef struct fia_li_item {
    int64_t block;
    int64_t kv0, kv1; /* keys [kv0, kv1) */
    int64_t cost;     /* (row, key) pairs scored, plus a fixed overhead */
} fia_li_item;

typedef struct fia_li_wave {
    int64_t row0, row1;   /* rows */
    int64_t item0, item1; /* scoring items */
} fia_li_wave;

/* Addressing of a [batch, token, head] or paged tensor: element offset of (b, t, h) is
 * b * s_b + t * s_t + h * s_h for token-packed forms; paged forms use the block table. */
typedef struct fia_li_view {
    const char *base;
    fia_dtype dtype;
    int64_t esize;
    int64_t s_b, s_t, s_h; /* s_b = 0 for TND (tokens packed) */
    int64_t s_blk;         /* paged: stride of a block (s_t is then the row stride) */
} fia_li_view;

typedef struct fia_li_plan {
    fia_plan base;
    const fia_kernels *kern;
    const fia_li_kernels *lik;
    bool quant;
    bool exact;          /* quant: exact_ranking (no fp16 rounding points) */
    int64_t B, N1, D, K; /* K = sparse_count */
    int64_t S1;          /* query dim S1 (BSND) or T1 (TND) */
    bool tnd;            /* query layout TND */
    int64_t ldq;         /* N1 rounded up to FIA_LI_HEAD_PAD */
    int64_t d4;          /* ceil(D / 4) (int8) */
    int64_t ldk;         /* fp32 key tile row: D rounded up to 16; int8: 4 d4 rounded to 64 */
    int32_t num_threads;

    fia_li_view q, w, sq;     /* query [tok, h, :], weights [tok, h], query scale [tok, h] */
    fia_li_view k, sk;        /* key and key scale (token-packed or paged) */
    bool paged;
    int64_t block_size;
    int64_t bt_cols;
    int32_t *block_table;     /* [B x bt_cols], copied */
    int64_t *kv_tok0;         /* [B] first key token of each batch (TND; else 0) */

    int32_t *out_idx;         /* sparse_indices data */
    int64_t oi_s_b, oi_s_t, oi_s_k; /* element strides: batch (0 for TND), token, slot */
    char *out_val;            /* sparse_values data or NULL */
    fia_dtype ov_dtype;       /* float32, float16 or bfloat16 */
    int64_t ov_s_b, ov_s_t, ov_s_k;

    fia_li_row *rows;
    int64_t num_rows;
    fia_li_block *blocks;
    int64_t num_blocks;
    fia_li_item *items;
    int64_t num_items;
    fia_li_wave *waves;
    int64_t num_waves;
    int64_t max_vis;          /* the longest visible length of any row */
    int64_t score_floats;     /* the score buffer (largest wave) */
} fia_li_plan;

/* Top-k selection (li_topk.c). Picks count = min(k, n) indices of s[0..n) ordered by descending
 * score, equal scores by ascending index, NaN below everything, -0 == +0, into idx[0..count).
 * scratch: fia_li_topk_scratch_bytes(n_max, k) bytes, 8-byte aligned. Returns count. */
size_t fia_li_topk_scratch_bytes(int64_t n_max, int64_t k);
int64_t fia_li_topk(const float *s, int64_t n, int64_t k, int32_t *idx, void *scratch);

#endif /* FIA_OPS_LI_INTERNAL_H */
