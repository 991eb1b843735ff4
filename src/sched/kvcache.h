/*
 * kvcache.h - where token t of batch b, head h lives, for every cache the attention operators
 * read and the cache writers write: dense [batch, token, head, dim] views (BSH, BSND, BNSD, TND),
 * paged caches (BnBsH, BnNBsD, PA_BSND: token t of batch b is row t % block_size of block
 * block_table[b][t / block_size]) and PA_NZ (rows inside a block in chunks of nz_w elements).
 *
 * One offset function answers the question for all of them, with the length of the run of
 * tokens that follow at a constant step (the rest of a block; all of a dense view), so that
 * callers look up the block table once per run, never per row.
 */
#ifndef FIA_SCHED_KVCACHE_H
#define FIA_SCHED_KVCACHE_H

#include <stdint.h>

#include "fia.h"
#include "sched/kv_addr.h"

/* Addressing of a [batch, token, head, dim] tensor with a unit dim stride (elements):
 *   dense:  (b, t, h, d) at base + b s_b + t s_t + h s_h + d;
 *   paged:  (blk, row, h, d) at base + blk s_blk + row s_t + h s_h + d;
 *   PA_NZ:  (blk, row, d) at base + blk s_blk + (d / nz_w) s_nz + row nz_w + d % nz_w. */
typedef struct fia_seq {
    char *base;
    fia_dtype dtype;
    int64_t esize;
    int64_t s_b, s_t, s_h, s_blk;
    int64_t nz_w, s_nz; /* PA_NZ: chunk width and chunk stride; 0 otherwise */
    int64_t dim;        /* values per row, where the parser knows it */
} fia_seq;

/* A paged cache's (copied, validated) block table; table NULL: the cache is dense. */
typedef struct fia_pages {
    const int32_t *table; /* B x cols */
    int64_t cols, block_size;
    int log2_bs; /* > 0: block_size is 1 << log2_bs (fia_pages_init); 0: locate by division */
} fia_pages;

/* The lengths of one batch (request) and where its tokens start in a TND view. */
typedef struct fia_batch {
    int64_t sq, skv;  /* actual query and kv lengths */
    int64_t q_tok0;   /* TND: first token of this batch in the query (else 0) */
    int64_t kv_tok0;  /* TND without paging: first kv token (else 0) */
} fia_batch;

/* How query rows see keys (the sparse_mode geometry of every attention operator). */
typedef enum fia_vis {
    FIA_VIS_ALL = 0,          /* every key (mask tensor may still apply) */
    FIA_VIS_BAND_TOP_LEFT,    /* sparse_mode 0 with a mask: i - pre <= j <= i + next */
    FIA_VIS_CAUSAL_TOP_LEFT,  /* sparse_mode 2: j <= i */
    FIA_VIS_CAUSAL_BOTTOM_RIGHT, /* sparse_mode 3: j <= i + skv - sq */
    FIA_VIS_BAND_BOTTOM_RIGHT /* sparse_mode 4 */
} fia_vis;

/* Visible key range [lo, hi] (inclusive, may be empty: lo > hi) of query position i of batch
 * bi: the sparse_mode geometry, written once for planning and execution of every operator.
 * Both ends are non-decreasing in i for every mode. */
static inline void fia_vis_range(fia_vis vis, int64_t pre, int64_t next, const fia_batch *bi,
                                 int64_t i, int64_t *lo, int64_t *hi) {
    const int64_t skv = bi->skv, sq = bi->sq;
    int64_t a = 0, e = skv - 1;
    switch (vis) {
    case FIA_VIS_ALL: break;
    case FIA_VIS_BAND_TOP_LEFT: a = i - pre; e = i + next; break;
    case FIA_VIS_CAUSAL_TOP_LEFT: e = i; break;
    case FIA_VIS_CAUSAL_BOTTOM_RIGHT: e = i + skv - sq; break;
    case FIA_VIS_BAND_BOTTOM_RIGHT: a = i + skv - sq - pre; e = i + skv - sq + next; break;
    }
    *lo = a < 0 ? 0 : a;
    *hi = e > skv - 1 ? skv - 1 : e;
}

static inline void fia_pages_init(fia_pages *pg, const int32_t *table, int64_t cols,
                                  int64_t block_size) {
    const int s = fia_kv_shift(block_size);
    pg->table = table;
    pg->cols = cols;
    pg->block_size = block_size;
    pg->log2_bs = s > 0 ? s : 0;
}

/* Element offset of head h of token tok of a dense view's batch b (tok: the token coordinate). */
static inline int64_t fia_seq_dense_off(const fia_seq *s, int64_t b, int64_t tok, int64_t h) {
    return b * s->s_b + tok * s->s_t + h * s->s_h;
}

/* Address of the row of head h of token tok of a dense view's batch b. */
static inline char *fia_seq_row(const fia_seq *s, int64_t b, int64_t tok, int64_t h) {
    return s->base + fia_seq_dense_off(s, b, tok, h) * s->esize;
}

/* Where token tok of batch b lives (tok0: the batch's first token in a dense TND view, else 0):
 * paged, its block and row through the block table (sched/kv_addr.h, the addressing every cache
 * reader and writer shares); dense, the batch and the token coordinate. One slot serves every
 * view of the same cache geometry (a latent cache and its rope). */
static inline fia_kv_slot fia_seq_slot(const fia_pages *pg, int64_t b, int64_t tok0,
                                       int64_t tok) {
    if (pg->table)
        return fia_kv_locate(pg->table, pg->cols, pg->block_size, pg->log2_bs ? pg->log2_bs : -1,
                             b, tok);
    const fia_kv_slot sl = {b, tok0 + tok};
    return sl;
}

/* The strides of the view s as sched/kv_addr.h addresses slots (dense: the batch is the block). */
static inline fia_kv_view fia_seq_kv_view(const fia_seq *s, const fia_pages *pg) {
    const fia_kv_view v = {pg->table ? s->s_blk : s->s_b, s->s_t, s->s_h, 0, s->nz_w};
    return v;
}

/* Element offset of head h of slot sl in the view s (fia_kv_row_off of fia_seq_kv_view: an
 * operator that addresses many slots may keep that view). */
static inline int64_t fia_seq_slot_off(const fia_seq *s, const fia_pages *pg, fia_kv_slot sl,
                                       int64_t h) {
    const fia_kv_view v = fia_seq_kv_view(s, pg);
    return fia_kv_row_off(&v, sl, h);
}

/* Element offset of head h of token tok of batch b and, in *run, how many tokens from tok on
 * follow at a constant step (row_step below). */
static inline int64_t fia_seq_offset(const fia_seq *s, const fia_pages *pg, int64_t b,
                                     int64_t tok0, int64_t h, int64_t tok, int64_t *run) {
    if (!pg->table) {
        *run = INT64_MAX;
        return fia_seq_dense_off(s, b, tok0 + tok, h);
    }
    const fia_kv_slot sl = fia_seq_slot(pg, b, tok0, tok);
    *run = pg->block_size - sl.row;
    return fia_seq_slot_off(s, pg, sl, h);
}

/* The element step between consecutive tokens of a run. */
static inline int64_t fia_seq_row_step(const fia_seq *s) { return s->nz_w ? s->nz_w : s->s_t; }

/* Pointers to the rows of tokens [t0, t0 + n) of head h of batch b (not PA_NZ, whose rows are
 * not contiguous); n may be 0. One offset computation (and block-table lookup) per run. Two or
 * more rows of a run lie in the validated view, so their byte step fits an int64; a single
 * row's token stride may be anything (a length-1 dim). */
void fia_seq_row_ptrs(const fia_seq *s, const fia_pages *pg, int64_t b, int64_t tok0, int64_t h,
                      int64_t t0, int64_t n, const void **ptrs);

/* Dims of a query/key/value/output tensor in its layout. */
typedef struct fia_dims {
    int64_t B, S, N, D; /* TND: B = 0 (from the lengths), S = T */
} fia_dims;

/* Reads [B, S, N, D] of a dense tensor laid out as layout (BSH, BSND, BNSD, TND, NTD) with
 * `heads` heads and fills its addressing. PA_BSND, a paged cache [blocks, block_size, N, D]:
 * dims {blocks, block_size (checked 1..FIA_MAX_BLOCK_SIZE), N, D} and s_blk for the block. */
fia_status fia_seq_parse(const fia_tensor *t, const char *name, fia_layout layout, int64_t heads,
                         fia_seq *seq, fia_dims *dims);

/* A paged cache BnBsH [blocks, block_size, heads * D] or BnNBsD [blocks, heads, block_size, D]:
 * its addressing, block count and D. */
fia_status fia_seq_parse_paged(const fia_tensor *t, const char *name, int64_t heads,
                               int64_t block_size, fia_seq *seq, int64_t *blocks, int64_t *dim);

#endif /* FIA_SCHED_KVCACHE_H */
