/*
 * sfa_exec.c - sparse_flash_attention / kv_quant_sparse_flash_attention: execution of a plan
 * (see sparse_flash_attention.c for the decomposition and sfa_internal.h for the plan).
 *
 * Phase 1 runs the work items: per item, the query tile is packed once (fp32, scale folded in),
 * then each slice streams its selected tokens in tiles: entries checked, rows gathered by
 * pointer, the next tile prefetched as the current one is packed (C8 rows dequantized), K^T and
 * V panels built, S = Q.K^T, the online-softmax step, O = alpha.O + P.V. Whole-row items merge
 * their slices in order and write the output; split items write their slice's partial state.
 * Phase 2 merges the partials of split rows in slice order (sched/splitkv.h), SFA_MERGE_HEADS heads
 * per task.
 * With AMX (p->amx: a bf16 query) the tiles hold up to 128 tokens and run on AMX: bf16 caches
 * through the MLA step (kernels/amx.h), C8 rows dequantized and cast to bf16 into a staging block
 * (kernels/sfa_amx.h, sfa_step_amx_c8).
 * Nothing here allocates.
 */
#include <math.h>
#include <string.h>

#include "core/context.h"
#include "kernels/amx.h"
#include "kernels/sfa_amx.h"
#include "kernels/softmax_state.h"
#include "ops/sfa_internal.h"
#include "sched/splitkv.h"

/* ---- workspace --------------------------------------------------------------------------- */

/* Tokens per tile: SFA_TILE; the AMX steps take their most keys per step, FIA_SFA_AMX_KEYS (C8)
 * and FIA_AMX_MLA_STEP (bf16): their P . V reloads the accumulator once per step, so more keys
 * per step is less traffic per tile multiply. */
static inline int64_t sfa_tile_of(const sfa_plan *p) {
    return !p->amx ? SFA_TILE : p->c8 ? FIA_SFA_AMX_KEYS : FIA_AMX_MLA_STEP;
}

size_t fia_sfa_scratch_carve(const sfa_plan *p, char *base, sfa_scratch *s) {
    fia_arena a = {base, 0};
    const size_t f = sizeof(float), hb = (size_t)p->head_block;
    sfa_scratch t;
    t.q = fia_arena_take(&a, hb * SFA_DK * f);
    t.kt = fia_arena_take(&a, (size_t)SFA_DK * SFA_TILE * f);
    t.vp = fia_arena_take(&a, (size_t)SFA_TILE * SFA_LDV * f);
    t.rp = fia_arena_take(&a, (size_t)SFA_TILE * SFA_DR * f);
    const size_t tile = (size_t)sfa_tile_of(p);
    t.s = fia_arena_take(&a, hb * tile * f);
    /* AMX: o has whole 16-row blocks */
    t.o = fia_arena_take(&a, (p->amx ? (hb + 15) / 16 * 16 : hb) * SFA_LDV * f);
    t.m = fia_arena_take(&a, hb * f);
    t.l = fia_arena_take(&a, hb * f);
    t.alpha = fia_arena_take(&a, hb * f);
    t.ao = fia_arena_take(&a, hb * SFA_LDV * f);
    t.am = fia_arena_take(&a, hb * f);
    t.al = fia_arena_take(&a, hb * f);
    for (int i = 0; i < 2; i++) {
        t.nope[i] = fia_arena_take(&a, tile * sizeof(void *));
        t.rope[i] = fia_arena_take(&a, tile * sizeof(void *));
    }
    t.qt = NULL;
    t.amx = NULL;
    t.c8_mold = t.c8_inv = t.c8_f = t.c8_c = NULL;
    t.c8_k = NULL;
    if (p->amx) {
        const int64_t rp = (p->head_block + 15) / 16 * 16;
        t.qt = fia_arena_take(&a, (size_t)rp * SFA_DK * 2);
        t.amx = fia_arena_take(&a, p->c8 ? fia_sfa_amx_scratch_bytes(rp) : fia_amx_mla_scratch_bytes(rp));
        if (p->c8) {
            t.c8_mold = fia_arena_take(&a, hb * f);
            t.c8_inv = fia_arena_take(&a, hb * f);
            t.c8_f = fia_arena_take(&a, (size_t)rp * f);
            t.c8_c = fia_arena_take(&a, (size_t)rp * f);
            t.c8_k = fia_arena_take(&a, hb * sizeof(double));
        }
    }
    if (s) *s = t;
    return a.used;
}

size_t fia_sfa_workspace_layout(const sfa_plan *p, void *ws, float **partials) {
    return fia_splitkv_workspace(ws, fia_sfa_scratch_carve(p, NULL, NULL), p->num_threads,
                                 p->work.partial_floats, partials);
}

/* ---- execution --------------------------------------------------------------------------- */

typedef struct sfa_exec {
    const sfa_plan *p;
    char *ws;
    float *partials;
    size_t scratch_bytes; /* per thread */
} sfa_exec;

/* One output row: batch b, token coordinate t of the query / output / indices / lse views, and
 * thr, the visible bound (tokens < thr may be selected). */
typedef struct sfa_row {
    int64_t b, t, thr;
} sfa_row;

static sfa_row sfa_row_of(const sfa_plan *p, int64_t b, int64_t i) {
    const fia_batch *bi = &p->batches[b];
    int64_t lo, hi;
    fia_vis_range(p->vis, 0, 0, bi, i, &lo, &hi);
    const sfa_row r = {b, bi->q_tok0 + i, hi + 1};
    return r;
}

/* Where a slice stands in a row's index entries: entry e, token offset off within it. */
typedef struct sfa_cursor {
    int64_t e, e1;
    int64_t off;
    bool ended; /* met the -1 that ends the row */
} sfa_cursor;

static inline int32_t sfa_index(const sfa_plan *p, const sfa_row *r, int64_t e) {
    int32_t v;
    memcpy(&v, p->idx + (r->b * p->idx_s_b + r->t * p->idx_s_t + e * p->idx_s_e) * 4, sizeof v);
    return v;
}

/* Fills the row pointers of the next tile (at most sfa_tile_of tokens) from the cursor and
 * advances it. Every entry is checked before a token is formed: -1 ends the row (the cursor
 * jumps to the end), values < -1 and entries starting at or beyond the bound are skipped. A
 * token's slot (sched/kvcache.h: paged or dense, tok < the batch's kv length, so always inside
 * the cache) serves the nope and the rope view (their kv_addr.h views, kept in the plan). */
static int64_t sfa_gather(const sfa_plan *p, const sfa_row *r, sfa_cursor *c, const void **nope,
                          const void **rope) {
    int64_t n = 0;
    const int64_t sbs = p->sbs, thr = r->thr, tok0 = p->batches[r->b].kv_tok0, tile = sfa_tile_of(p);
    while (n < tile && c->e < c->e1) {
        const int32_t v = sfa_index(p, r, c->e);
        if (v == -1) {
            c->e = c->e1;
            c->ended = true;
            break;
        }
        const int64_t start = (int64_t)v * sbs;
        if (v < -1 || start >= thr) {
            c->e++;
            c->off = 0;
            continue;
        }
        const int64_t end = start + sbs < thr ? start + sbs : thr;
        int64_t tok = start + c->off;
        while (n < tile && tok < end) {
            const fia_kv_slot at = fia_seq_slot(&p->pages, r->b, tok0, tok);
            nope[n] = p->k.base + fia_kv_row_off(&p->kv, at, 0) * p->k.esize;
            if (!p->c8) rope[n] = p->kr.base + fia_kv_row_off(&p->krv, at, 0) * p->kr.esize;
            n++;
            tok++;
        }
        if (tok >= end) {
            c->e++;
            c->off = 0;
        } else {
            c->off = tok - start;
        }
    }
    return n;
}

static inline void sfa_prefetch(const void *row, int64_t bytes) {
    for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch((const char *)row + off, 0, 2);
}

/* Prefetches rows [j0, j1) of the next tile into L2. */
static inline void sfa_prefetch_rows(const sfa_plan *p, const sfa_scratch *s, int nxt, int64_t j0,
                                     int64_t j1) {
    const int64_t nbytes = p->c8 ? FIA_C8_ROW_BYTES : SFA_DN * p->k.esize;
    for (int64_t j = j0; j < j1; j++) {
        sfa_prefetch(s->nope[nxt][j], nbytes);
        if (!p->c8) sfa_prefetch(s->rope[nxt][j], SFA_DR * p->kr.esize);
    }
}

/* C8: P is cast to the query dtype before P.V; the running sum keeps the fp32 P. The tile holds
 * p = exp(s - m) for the slice's running max m, which is not the row's final max; so that the
 * rounding does not depend on m, p is rounded as exp(s - k ln2) = p * exp(m - k ln2) with k =
 * round(m / ln2) (a power-of-two multiple of exp(s - M) for any max M, and rounding commutes
 * with powers of two), then scaled back: every slice and thread rounds the same mantissas. */
static void sfa_round_p(const sfa_plan *p, sfa_scratch *s, int64_t nh, int64_t n) {
    static const double ln2 = 0.69314718055994530942;
    for (int64_t h = 0; h < nh; h++) {
        const float m = s->m[h];
        if (!(m > -INFINITY && m < INFINITY)) continue; /* nothing visible yet: the tile is 0 */
        const double kk = nearbyint((double)m / ln2), c = exp((double)m - kk * ln2);
        p->skern->round_scaled(s->s + h * SFA_TILE, n, (float)c, (float)(1.0 / c), p->q.dtype);
    }
}

/* Converts the n rows of the current tile into the V panel and the rope rows (row j of the next
 * tile, nn rows, is prefetched as row j is packed), then transposes both into the K^T panel. */
static void sfa_pack_tile(const sfa_plan *p, sfa_scratch *s, int cur, int64_t n, int64_t nn) {
    const fia_kernels *k = p->kern;
    const void **nope = s->nope[cur], **rope = s->rope[cur];
    for (int64_t j = 0; j < n; j++) {
        if (j < nn) sfa_prefetch_rows(p, s, cur ^ 1, j, j + 1);
        if (p->c8) {
            /* the contract casts the dequantized k_nope row to the query dtype: that rounded
             * row is K for Q.K^T and V for P.V */
            p->skern->c8_rows_to_f32(nope + j, 1, s->vp + j * SFA_LDV, SFA_LDV, s->rp + j * SFA_DR,
                                     SFA_DR, p->q.dtype);
        } else {
            fia_kernels_to_f32(k, nope[j], p->k.dtype, s->vp + j * SFA_LDV, SFA_DN);
            fia_kernels_to_f32(k, rope[j], p->kr.dtype, s->rp + j * SFA_DR, SFA_DR);
        }
    }
    if (nn > n) sfa_prefetch_rows(p, s, cur ^ 1, n, nn);
    k->transpose_f32(s->vp, SFA_LDV, s->kt, SFA_TILE, n, SFA_DN);
    k->transpose_f32(s->rp, SFA_DR, s->kt + SFA_DN * SFA_TILE, SFA_TILE, n, SFA_DR);
}

/* One tile of n gathered tokens on AMX tiles (bf16 query and cache, kernels/amx.h): every
 * gathered token is visible to every head, so the kernel's per-row key range is the whole tile.
 * Returns whether any score was visible. */
static bool sfa_step_amx(const sfa_plan *p, sfa_scratch *s, int cur, int64_t nh, int64_t n,
                         bool first) {
    int32_t ka[FIA_MAX_LATENT_HEADS], ke[FIA_MAX_LATENT_HEADS];
    for (int64_t h = 0; h < nh; h++) ka[h] = 0, ke[h] = (int32_t)n;
    const fia_amx_mla_args a = {nh, (nh + 15) / 16 * 16, n, (const uint16_t *const *)s->nope[cur],
                                (const uint16_t *const *)s->rope[cur], s->qt, ka, ke, p->scale,
                                first, false, s->m, s->l, s->o, SFA_LDV, s->amx};
    return fia_amx_mla_step(&a);
}

/* One tile of n gathered C8 tokens on AMX tiles (bf16 query, kernels/sfa_amx.h): the rows
 * dequantized and cast to bf16 (the contract's K and V), S = Q.K^T, the online-softmax step
 * (fia_kernels.softmax_tile: the same state as the fp32 path, the sum of the fp32 p), then P
 * rounded as sfa_round_p rounds it, R(p c) with c = e^(m - k ln2), k = round(m / ln2), and
 * O += R(p c).V on the tiles. The accumulator o of a head holds the state's o times c (the
 * rounded values summed as they are, not times 1 / c): when k changes the rescale
 * alpha c' / c is the power of two 2^(k - k'), exact; the slice's last step multiplies by
 * 1 / c. A head with nothing visible yet (m = -inf) starts from o = 0. */
static void sfa_step_amx_c8(const sfa_plan *p, sfa_scratch *s, int cur, int64_t nh, int64_t n,
                            int64_t nn, bool first) {
    static const double ln2 = 0.69314718055994530942;
    const int64_t rp = (nh + 15) / 16 * 16;
    const void *const *next = s->nope[cur ^ 1];
    fia_sfa_amx_c8_stage(s->nope[cur], n, rp, s->amx);
    fia_sfa_amx_scores(nh, rp, n, s->qt, p->scale, s->s, FIA_SFA_AMX_KEYS, next, nn, s->amx);
    memcpy(s->c8_mold, s->m, (size_t)nh * sizeof(float));
    p->kern->softmax_tile(s->s, FIA_SFA_AMX_KEYS, nh, n, s->m, s->l, s->alpha);
    for (int64_t h = 0; h < nh; h++) {
        const float m = s->m[h], m0 = s->c8_mold[h];
        double kk = 0.0, c = 1.0;
        if (m > -INFINITY && m < INFINITY) {
            kk = nearbyint((double)m / ln2);
            c = exp((double)m - kk * ln2);
        }
        float f;
        if (first || m0 == -INFINITY) f = 0.0f;                      /* a fresh state */
        else if (m0 < INFINITY && m > -INFINITY && m < INFINITY) f = (float)exp2(s->c8_k[h] - kk);
        else f = s->alpha[h];                                         /* NaN / inf rows */
        s->c8_f[h] = f;
        s->c8_c[h] = (float)c;
        s->c8_k[h] = kk;
        s->c8_inv[h] = (float)(1.0 / c);
    }
    for (int64_t h = nh; h < rp; h++) s->c8_f[h] = 0.0f, s->c8_c[h] = 0.0f;
    /* the slice's last step (no next tile) leaves o times 1 / c: the state's o */
    fia_sfa_amx_pv(nh, rp, n, s->s, FIA_SFA_AMX_KEYS, s->c8_c, s->c8_f, s->o, SFA_LDV,
                   nn == 0 ? s->c8_inv : NULL, next, nn, s->amx);
}

/* One tile of n gathered tokens in fp32: K^T and V panels, S = Q.K^T, the online-softmax step
 * (C8: P rounded), O = alpha.O + P.V. */
static void sfa_step_f32(const sfa_plan *p, sfa_scratch *s, int cur, int64_t nh, int64_t n,
                         int64_t nn, bool first) {
    const fia_kernels *k = p->kern;
    sfa_pack_tile(p, s, cur, n, nn);
    k->gemm_f32(nh, n, SFA_DK, s->q, SFA_DK, s->kt, SFA_TILE, s->s, SFA_TILE, NULL);
    k->softmax_tile(s->s, SFA_TILE, nh, n, s->m, s->l, s->alpha);
    if (p->c8) sfa_round_p(p, s, nh, n);
    k->gemm_f32(nh, SFA_DN, n, s->s, SFA_TILE, s->vp, SFA_LDV, s->o, SFA_LDV,
                first ? NULL : s->alpha);
}

/* The slice of index entries [e0, e1) of a row for heads [0, nh) of the packed query tile: the
 * state (o, m, l) of the slice's tokens from empty, its tiles streamed (the next tile's rows
 * gathered and prefetched while the current one computes). Returns whether the slice had any
 * token (else the state is the empty one and o is not written). */
static bool sfa_run_slice(const sfa_plan *p, const sfa_row *r, int64_t nh, int64_t e0, int64_t e1,
                          sfa_scratch *s) {
    sfa_cursor c = {e0, e1, 0, false};
    for (int64_t h = 0; h < nh; h++) {
        s->m[h] = -INFINITY;
        s->l[h] = 0.0f;
    }
    bool first = true;
    int cur = 0;
    int64_t n = sfa_gather(p, r, &c, s->nope[0], s->rope[0]);
    while (n > 0) {
        const int64_t nn = sfa_gather(p, r, &c, s->nope[cur ^ 1], s->rope[cur ^ 1]);
        if (p->amx && p->c8) {
            sfa_step_amx_c8(p, s, cur, nh, n, nn, first);
            first = false;
        } else if (p->amx) {
            sfa_prefetch_rows(p, s, cur ^ 1, 0, nn);
            if (sfa_step_amx(p, s, cur, nh, n, first)) first = false;
        } else {
            sfa_step_f32(p, s, cur, nh, n, nn, first);
            first = false;
        }
        cur ^= 1;
        n = nn;
    }
    s->ended = c.ended;
    return !first;
}

/* Packs the query rows of heads [h0, h0 + nh) of a row, fp32, scale folded in. */
static void sfa_pack_query(const sfa_plan *p, const sfa_row *r, int64_t h0, int64_t nh,
                           sfa_scratch *s) {
    if (p->amx && p->c8) { /* the 576 bf16 of each row, packed for the tiles */
        const uint16_t *q[FIA_MAX_LATENT_HEADS];
        for (int64_t h = 0; h < nh; h++)
            q[h] = (const uint16_t *)(const void *)fia_seq_row(&p->q, r->b, r->t, h0 + h);
        fia_sfa_amx_pack_q(nh, (nh + 15) / 16 * 16, q, s->qt);
        return;
    }
    if (p->amx) { /* bf16 rows as they are, packed for the tiles; the scale comes after the dot */
        const uint16_t *qn[FIA_MAX_LATENT_HEADS], *qr[FIA_MAX_LATENT_HEADS];
        for (int64_t h = 0; h < nh; h++) {
            qn[h] = (const uint16_t *)(const void *)fia_seq_row(&p->q, r->b, r->t, h0 + h);
            qr[h] = (const uint16_t *)(const void *)fia_seq_row(&p->qr, r->b, r->t, h0 + h);
        }
        fia_amx_mla_pack_q(nh, (nh + 15) / 16 * 16, qn, qr, s->qt);
        return;
    }
    for (int64_t h = 0; h < nh; h++) {
        float *dst = s->q + h * SFA_DK;
        const char *qrow = fia_seq_row(&p->q, r->b, r->t, h0 + h);
        if (p->c8) {
            fia_kernels_to_f32(p->kern, qrow, p->q.dtype, dst, SFA_DK);
        } else {
            fia_kernels_to_f32(p->kern, qrow, p->q.dtype, dst, SFA_DN);
            fia_kernels_to_f32(p->kern, fia_seq_row(&p->qr, r->b, r->t, h0 + h), p->qr.dtype,
                               dst + SFA_DN, SFA_DR);
        }
        for (int64_t d = 0; d < SFA_DK; d++) dst[d] *= p->scale;
    }
}

static inline void sfa_put(const sfa_vals *v, const sfa_row *r, int64_t h, float x) {
    if (v->data) v->data[r->b * v->s_b + r->t * v->s_t + h * v->s_h] = x;
}

/* Writes the output row of head h (and its softmax outputs) from the row's final state
 * (m, l, o unnormalised): the head's sink joins the state first (a logit with a zero value), o
 * is normalised in place. An empty state writes 0, lse +inf, max 0 and sum 0. */
static void sfa_write(const sfa_plan *p, const sfa_row *r, int64_t h, float *o, float m,
                      float l) {
    const bool any = m != -INFINITY && l > 0.0f;
    if (any && p->sinks) {
        const float sink = p->sinks[h * p->sinks_s];
        if (sink > m) {
            const float a = expf(m - sink);
            for (int64_t d = 0; d < SFA_DN; d++) o[d] *= a;
            l = l * a + 1.0f;
            m = sink;
        } else {
            l += expf(sink - m); /* -inf sink: adds 0; NaN propagates */
        }
    }
    const float lse = fia_softmax_state_finish(m, l, o, SFA_DN);
    fia_kernels_from_f32(p->kern, o, p->o.dtype, fia_seq_row(&p->o, r->b, r->t, h), SFA_DN);
    sfa_put(&p->lse, r, h, lse);
    sfa_put(&p->smax, r, h, any ? m : 0.0f);
    sfa_put(&p->ssum, r, h, any ? l : 0.0f);
}

/* A split item: one slice, its partial state to the group's slot (sched/splitkv.h). */
static void sfa_run_split(const sfa_exec *ex, const fia_work_item *it, const sfa_row *r,
                          sfa_scratch *s) {
    const sfa_plan *p = ex->p;
    /* a -1 in an earlier slice ended the row */
    bool ended = false;
    for (int64_t e = 0; e < it->kv0 && !ended; e++) ended = sfa_index(p, r, e) == -1;
    const bool any = !ended && sfa_run_slice(p, r, it->nh, it->kv0, it->kv1, s);
    fia_splitkv_store(ex->partials, &p->work.groups[it->group], it->chunk, it->nh, SFA_DN, !any,
                      s->m, s->l, s->o, SFA_LDV);
}

/* A whole-row item: its slices merged in order (the same fold as the merge pass). */
static void sfa_run_row(const sfa_plan *p, const fia_work_item *it, const sfa_row *r,
                        sfa_scratch *s) {
    const int64_t nh = it->nh;
    for (int64_t h = 0; h < nh; h++) {
        s->am[h] = -INFINITY;
        s->al[h] = 0.0f;
    }
    for (int64_t e0 = it->kv0; e0 < it->kv1; e0 += p->slice_entries) {
        const int64_t e1 = e0 + p->slice_entries < it->kv1 ? e0 + p->slice_entries : it->kv1;
        const bool any = sfa_run_slice(p, r, nh, e0, e1, s);
        if (any)
            for (int64_t h = 0; h < nh; h++)
                fia_softmax_state_merge(&s->am[h], &s->al[h], s->ao + h * SFA_LDV, s->m[h],
                                        s->l[h], s->o + h * SFA_LDV, SFA_DN);
        if (s->ended) break;
    }
    for (int64_t h = 0; h < nh; h++)
        sfa_write(p, r, it->h0 + h, s->ao + h * SFA_LDV, s->am[h], s->al[h]);
}

static sfa_scratch sfa_scratch_of(const sfa_exec *ex, int32_t tid) {
    sfa_scratch s;
    fia_sfa_scratch_carve(ex->p, fia_thread_scratch(ex->ws, ex->scratch_bytes, tid), &s);
    return s;
}

static void sfa_item_task(void *arg, int64_t task, int32_t tid) {
    const sfa_exec *ex = arg;
    const sfa_plan *p = ex->p;
    const fia_work_item *it = &p->work.items[task];
    sfa_scratch s = sfa_scratch_of(ex, tid);
    if (it->kind == FIA_WORK_ZERO) { /* rows that see nothing: 0, lse +inf */
        for (int64_t i = it->q0; i < it->q0 + it->qn; i++) {
            const sfa_row r = sfa_row_of(p, it->b, i);
            for (int64_t h = 0; h < p->N1; h++) sfa_write(p, &r, h, s.ao, -INFINITY, 0.0f);
        }
        return;
    }
    const sfa_row r = sfa_row_of(p, it->b, it->q0);
    sfa_pack_query(p, &r, it->h0, it->nh, &s);
    if (it->group >= 0) sfa_run_split(ex, it, &r, &s);
    else sfa_run_row(p, it, &r, &s);
}

typedef struct sfa_merge_ctx {
    const sfa_plan *p;
    const fia_work_group *g;
    sfa_row r;
} sfa_merge_ctx;

static void sfa_merge_write(const void *arg, int64_t h, float m, float l, float *o) {
    const sfa_merge_ctx *c = arg;
    sfa_write(c->p, &c->r, c->g->h0 + h, o, m, l);
}

/* Merge task: heads [16 c, 16 c + 16) of group task / chunks, slices merged in order. */
static void sfa_merge_task(void *arg, int64_t task, int32_t tid) {
    const sfa_exec *ex = arg;
    const sfa_plan *p = ex->p;
    const int64_t chunks = (p->head_block + SFA_MERGE_HEADS - 1) / SFA_MERGE_HEADS;
    const fia_work_group *g = &p->work.groups[task / chunks];
    const int64_t h0 = task % chunks * SFA_MERGE_HEADS;
    const int64_t h1 = h0 + SFA_MERGE_HEADS < g->nh ? h0 + SFA_MERGE_HEADS : g->nh;
    const sfa_merge_ctx c = {p, g, sfa_row_of(p, g->b, g->q0)};
    sfa_scratch s = sfa_scratch_of(ex, tid);
    fia_splitkv_merge_rows(ex->partials, g, g->nh, SFA_DN, h0, h1, s.ao, sfa_merge_write, &c);
}

void fia_sfa_execute(fia_plan *plan, void *workspace) {
    const sfa_plan *p = (const sfa_plan *)plan;
    sfa_exec ex = {p, workspace, NULL, fia_sfa_scratch_carve(p, NULL, NULL)};
    fia_sfa_workspace_layout(p, workspace, &ex.partials);
    fia_pool_run(plan->ctx->pool, p->work.num_items, sfa_item_task, &ex);
    const int64_t chunks = (p->head_block + SFA_MERGE_HEADS - 1) / SFA_MERGE_HEADS;
    if (p->work.num_groups)
        fia_pool_run(plan->ctx->pool, p->work.num_groups * chunks, sfa_merge_task, &ex);
}
