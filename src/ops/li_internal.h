/*
 * li_internal.h - the lightning indexer's plan (lightning_indexer.c) and its top-k selection
 * (li_topk.c).
 *
 * Work decomposition (on the shared framework: sched/worklist.h items, sched/kvcache.h
 * addressing, core/plan.h's per-thread scratch)
 *   rows    every output row (query token) in output order, with its batch, position and number
 *           of visible keys (0 for padding rows and rows that see nothing).
 *   items   one fia_work_item per (block, key chunk): a block is up to FIA_LI_BLOCK_ROWS
 *           consecutive rows of one batch that see keys (item rows [q0, q0 + qn)), so that a key
 *           tile is converted once and scored against every row of the block (prefill reuse);
 *           chunks of FIA_LI_CHUNK tokens are fixed in token space (fia_worklist_chunks).
 *   waves   consecutive rows whose scores fit the workspace's score buffer together. Each wave
 *           runs two pool passes: (1) its scoring items write disjoint score ranges; (2) one
 *           selection task per row picks its top k and writes the output row. Scores do not
 *           depend on the tiling, and selection is a pure function of a row's scores, so results
 *           are bitwise identical for any thread count.
 */
#ifndef FIA_OPS_LI_INTERNAL_H
#define FIA_OPS_LI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/plan.h"
#include "fia.h"
#include "kernels/kernels.h"
#include "kernels/li_kernels.h"
#include "sched/kvcache.h"
#include "sched/worklist.h"

enum {
    FIA_LI_BLOCK_ROWS = 8,  /* query rows sharing a converted key tile */
    FIA_LI_KEY_TILE = 48,   /* keys per converted tile (a multiple of the kernels' 6, 8, 12) */
    FIA_LI_CHUNK = 4096     /* keys per scoring item (split points fixed in token space) */
};

typedef struct fia_li_row {
    int64_t b;     /* batch (-1: a TND row beyond the last query length) */
    int64_t tok;   /* query token along the query's S1 (BSND) or T1 (TND) dim */
    int64_t vis;   /* visible keys: 0..vis-1 */
    int64_t off;   /* offset of its scores in the wave's score buffer */
} fia_li_row;

typedef struct fia_li_wave {
    int64_t row0, row1;   /* rows */
    int64_t item0, item1; /* scoring items */
} fia_li_wave;

typedef struct fia_li_plan {
    fia_plan base;
    const fia_kernels *kern;
    const fia_li_kernels *lik;
    bool quant;
    bool exact;          /* quant: exact_ranking (no fp16 rounding points) */
    bool tnd;            /* query layout TND */
    bool bf16;           /* bf16 query and key scored on AMX tiles (lik->score_bf16) */
    int64_t B, N1, D, K; /* K = sparse_count */
    int64_t S1;          /* query dim S1 (BSND) or T1 (TND) */
    int64_t ldq;         /* N1 rounded up to FIA_LI_HEAD_PAD */
    int64_t d4;          /* ceil(D / 4) (int8) */
    int64_t ldk;         /* fp32 key tile row: D rounded up to 16; int8: 4 d4 rounded to 64 */
    int64_t dpad;        /* bf16: D rounded up to 32 (the packed query's dims) */
    int32_t num_threads;

    fia_seq q, w, sq;    /* query [b, tok, h, :], weights and query scale [b, tok, h] */
    fia_seq k, sk;       /* key and key scale rows (head 0) */
    fia_pages pages;     /* the copied block table (table NULL: a dense key) */
    int64_t *kv_tok0;    /* [B] first key token of each batch (TND; else 0) */
    fia_seq oi, ov;      /* sparse_indices / sparse_values [b, tok, slot] (s_h: the slot stride);
                          * ov.base NULL: no values */

    fia_li_row *rows;
    int64_t num_rows;
    fia_worklist work;   /* scoring items (b, block rows [q0, q0 + qn), keys [kv0, kv1)) */
    fia_li_wave *waves;
    int64_t num_waves;
    int64_t max_vis;      /* the longest visible length of any row */
    int64_t score_floats; /* the score buffer (largest wave) */
} fia_li_plan;

/* Top-k selection (li_topk.c). Picks count = min(k, n) indices of s[0..n) ordered by descending
 * score, equal scores by ascending index, NaN below everything, -0 == +0, into idx[0..count).
 * scratch: fia_li_topk_scratch_bytes(n_max, k) bytes, 8-byte aligned. Returns count. */
size_t fia_li_topk_scratch_bytes(int64_t n_max, int64_t k);
int64_t fia_li_topk(const float *s, int64_t n, int64_t k, int32_t *idx, void *scratch);

#endif /* FIA_OPS_LI_INTERNAL_H */
