/*
 * fia_exec.c - fused_infer_attention_score: execution of a plan (FlashAttention-2).
 *
 * Phase 1 runs the work items on the pool. A TILE item packs the query tiles of its KV heads
 * once (fp32, scale folded in) and streams its key range in steps aligned in token space, for
 * each head: S = Q.K^T, mask, online softmax, O = alpha.O + P.V, the next step's rows
 * prefetched meanwhile. Decode-sized tiles read K/V rows in place (qk_rows / pv_rows); larger
 * tiles (prefill) pack K into a transposed fp32 panel and V into fp32 rows and run GEMMs; int8
 * rows are dequantized while packed there; with bf16 Q, K and V on a CPU with AMX bf16 (p->amx)
 * those tiles run on AMX instead (kernels/gqa_amx.h: bf16 Q.K^T, the scale after the dot, the
 * softmax writing P as bf16 hi + lo parts for P.V, steps of 128 keys). Decode tiles read int8
 * rows raw with the dequantization folded around the kernels (see "antiquant on the row
 * path" below). The item then writes the normalised output (and lse) or, for a split
 * request, its partial state. A ZERO item writes 0 / +inf for rows no query position occupies.
 * Phase 2 merges the partials of each split request in chunk order (log-sum-exp rule).
 * Nothing here allocates; every buffer comes from the workspace laid out below.
 */
#include <math.h>
#include <string.h>

#include "core/context.h"
#include "core/tensor.h"
#include "kernels/gqa_amx.h"
#include "kernels/softmax_state.h"
#include "ops/fia_internal.h"
#include "sched/splitkv.h"

enum {
    FIA_GEMM_MIN_ROWS = 16,       /* query rows from which a tile packs K/V and runs GEMMs */
    FIA_ROW_WIDE_STEP_ROWS = 8,   /* row tiles of this many rows take whole-tile steps ... */
    FIA_ROW_STEP_BYTES = 32 << 10 /* ... when a step's K and V rows fit in this much (L1) */
};

typedef struct fia_exec {
    const fia_attn_plan *p;
    char *ws;
    const float *aq; /* [K|V][scale|offset][N2][D] (per channel) or 4 floats (per tensor) */
    float *partials;
    size_t scratch_bytes; /* per thread */
} fia_exec;

/* Keys per step of an item. Query tiles small enough for the row kernels (decode) stream K/V in
 * steps of half a tile, so that one step and the prefetched next one stay within L1; GEMM tiles
 * (prefill) take the whole tile, and so do row tiles when a whole tile of K and V rows fits
 * FIA_ROW_STEP_BYTES (D 128 fp16 / bf16: 64 keys, 32 KiB; the next step is prefetched into L2
 * only) and either the tile has 8 or more rows (SmallQ q8, GQA with 8+ rows per KV head) or the
 * cache is head-major (its items hold one kv head, whose rows are one stream): their per-step
 * costs (row pointers, the softmax's per-row reductions and rescale, O loaded and stored per
 * step) are paid half as often (SmallQ q8 kv1024 in cache, one thread: 9% faster; SmallQ q4
 * kv16k, two threads: 10.5 -> 10.0 ms). Token-major items of several heads, which prefetch one
 * head ahead, keep half steps below 8 rows (GQA 32/8 decode kv16k: 2.70 ms, 2.83-2.93 with
 * whole steps). It depends only on the item's rows and the plan, i.e. on the request, so
 * results stay independent of the schedule. */
static inline int64_t fia_item_step(const fia_attn_plan *p, const fia_work_item *it) {
    const int64_t rows = it->qn * p->G;
    if (rows >= FIA_GEMM_MIN_ROWS) return p->kv_tile;
    const int64_t row_bytes = p->D * p->k.esize + p->Dv * p->v.esize;
    if ((rows >= FIA_ROW_WIDE_STEP_ROWS || !p->token_major) &&
        p->kv_tile * row_bytes <= FIA_ROW_STEP_BYTES)
        return p->kv_tile;
    return p->kv_tile / 2;
}

/* Carves one thread's scratch from base (base == NULL: sizing only); returns its bytes. */
static size_t fia_scratch_carve(const fia_attn_plan *p, char *base, fia_scratch *s) {
    fia_arena a = {base, 0};
    const size_t f = sizeof(float);
    const int64_t rows = p->tile_rows, all = p->state_rows, nk = p->kv_tile;
    fia_scratch t;
    t.q = fia_arena_take(&a, (size_t)(all * p->dp) * f);
    t.kr = fia_arena_take(&a, (size_t)(nk * p->dp) * f);
    /* kt: the K^T panel of GEMM tiles; row-path antiquant items use it instead for their
     * per-row constants and per-token factors (fia_aq_rowbias / fia_aq_tokens). */
    int64_t kt_floats = p->dp * nk;
    const int64_t aq_floats = all + 4 * nk + FIA_GEMM_MIN_ROWS;
    if (p->aq != FIA_AQ_NONE && kt_floats < aq_floats) kt_floats = aq_floats;
    t.kt = fia_arena_take(&a, (size_t)kt_floats * f);
    t.vp = fia_arena_take(&a, (size_t)(nk * p->dvp) * f);
    const int64_t rows_pad = (rows + 15) / 16 * 16;
    t.s = fia_arena_take(&a, (size_t)((p->amx ? rows_pad : rows) * nk) * f);
    t.o = fia_arena_take(&a, (size_t)(all * p->dvp) * f);
    t.m = fia_arena_take(&a, (size_t)all * f);
    t.l = fia_arena_take(&a, (size_t)all * f);
    t.alpha = fia_arena_take(&a, (size_t)rows * f);
    t.kptr = fia_arena_take(&a, (size_t)nk * sizeof(void *));
    t.kpf = fia_arena_take(&a, (size_t)nk * sizeof(void *));
    t.vpf = fia_arena_take(&a, (size_t)nk * sizeof(void *));
    t.vptr = fia_arena_take(&a, (size_t)nk * sizeof(void *));
    t.lo = fia_arena_take(&a, (size_t)p->tile_pos * sizeof(int64_t));
    t.hi = fia_arena_take(&a, (size_t)p->tile_pos * sizeof(int64_t));
    t.qb = NULL;
    t.amx = NULL;
    if (p->amx) {
        /* AMX items have 16+ rows per head: their padding is at most 15 rows per 16 */
        t.qb = fia_arena_take(&a, (size_t)((2 * all + 16) * p->D) * sizeof(uint16_t));
        t.amx = fia_arena_take(&a, fia_amx_gqa_scratch_bytes(rows_pad, p->D, p->Dv, nk));
    }
    if (s) *s = t;
    return a.used;
}

static int64_t fia_aq_floats(const fia_attn_plan *p) {
    return p->aq == FIA_AQ_CHANNEL ? 4 * p->N2 * p->D : p->aq == FIA_AQ_TENSOR ? 4 : 0;
}

size_t fia_attn_workspace_layout(const fia_attn_plan *p, void *ws, float **aq_vectors,
                                 float **partials) {
    const size_t per_thread = fia_scratch_carve(p, NULL, NULL);
    fia_arena a = {ws, 0};
    fia_arena_take(&a, per_thread * (size_t)p->num_threads);
    float *aq = fia_arena_take(&a, (size_t)fia_aq_floats(p) * sizeof(float));
    float *part = fia_arena_take(&a, (size_t)p->work.partial_floats * sizeof(float));
    if (aq_vectors) *aq_vectors = aq;
    if (partials) *partials = part;
    return a.used;
}

/* ---- addressing -------------------------------------------------------------------------- */

static inline const char *fia_q_row(const fia_attn_plan *p, const fia_batch *bi, int64_t b,
                                    int64_t h, int64_t i) {
    const fia_seq *s = &p->q;
    return s->base + (b * s->s_b + (bi->q_tok0 + i) * s->s_t + h * s->s_h) * s->esize;
}

static inline char *fia_o_row(const fia_attn_plan *p, const fia_batch *bi, int64_t b, int64_t h,
                              int64_t i) {
    const fia_seq *s = &p->o;
    return s->base + (b * s->s_b + (bi->q_tok0 + i) * s->s_t + h * s->s_h) * s->esize;
}

/* ---- K / V packing ----------------------------------------------------------------------- */

/* Dequantizes one int8 row in place: which 0 = K, 1 = V. */
static void fia_dequant_row(const fia_attn_plan *p, const fia_exec *ex, int which, int64_t b,
                            int64_t n2, int64_t tok, float *restrict x, int64_t n) {
    float sc, off = 0.0f;
    switch (p->aq) {
    case FIA_AQ_CHANNEL: {
        const float *restrict vs = ex->aq + ((int64_t)which * 2 * p->N2 + n2) * p->D;
        const float *restrict vo = vs + p->N2 * p->D;
        for (int64_t d = 0; d < n; d++) x[d] = (x[d] + vo[d]) * vs[d];
        return;
    }
    case FIA_AQ_TENSOR:
        sc = ex->aq[which * 2];
        off = ex->aq[which * 2 + 1];
        break;
    case FIA_AQ_TOKEN: {
        const int64_t idx[3] = {which, b, tok};
        sc = fia_load_float(fia_tensor_elem(&p->aq_scale, idx), p->aq_scale.dtype);
        if (p->aq_offset.data)
            off = fia_load_float(fia_tensor_elem(&p->aq_offset, idx), p->aq_offset.dtype);
        break;
    }
    default: return;
    }
    for (int64_t d = 0; d < n; d++) x[d] = (x[d] + off) * sc;
}

/* Row pointers of keys [t0, t0 + n) of K or V (kv head n2 of batch b); n may be 0. */
static inline void fia_row_ptrs(const fia_attn_plan *p, int which, const fia_batch *bi, int64_t b,
                                int64_t n2, int64_t t0, int64_t n, const void **ptrs) {
    fia_seq_row_ptrs(which ? &p->v : &p->k, &p->pages, b, bi->kv_tok0, n2, t0, n, ptrs);
}

/* Converts (and dequantizes) n rows given by pointers to fp32 rows of stride ld, prefetching
 * row j of the next tile (pf, npf rows) into L2 as row j is packed. */
static void fia_pack_rows(const fia_attn_plan *p, const fia_exec *ex, int which, int64_t b,
                          int64_t n2, int64_t t0, int64_t n, const void *const *ptrs,
                          const void *const *pf, int64_t npf, float *dst, int64_t ld) {
    const fia_seq *s = which ? &p->v : &p->k;
    const int64_t dim = which ? p->Dv : p->D;
    const int64_t row_bytes = dim * s->esize;
    for (int64_t j = 0; j < n; j++) {
        if (j < npf)
            for (int64_t off = 0; off < row_bytes; off += 64)
                __builtin_prefetch((const char *)pf[j] + off, 0, 2);
        fia_kernels_to_f32(p->kern, ptrs[j], s->dtype, dst + j * ld, dim);
        if (p->aq != FIA_AQ_NONE) fia_dequant_row(p, ex, which, b, n2, t0 + j, dst + j * ld, dim);
    }
}

/* ---- antiquant on the row path ---------------------------------------------------------- */
/*
 * Decode tiles (fia_item_rows) pass the raw int8 rows to qk_rows / pv_rows, which widen them in
 * registers; the dequantization K = (k + o) s is folded algebraically instead:
 *   per channel / per tensor (s[c], o[c] of the kv head; per tensor: one value):
 *     S_j = sum_c q[c] s[c] k_j[c] + sum_c q[c] s[c] o[c]: the item's packed query rows take
 *     s once (q' = q s, fia_aq_fold_query) and every score of row r gets the row constant
 *     b[r] = q'.o added (so softmax_lse stays exact, not just the probabilities);
 *     O[c] = sum_j p_j (v_j[c] + o[c]) s[c] = s[c] (sum_j p_j v_j[c] + o[c] l): the state
 *     accumulates raw V and is mapped O <- s (O + o l) once when the item ends (fia_aq_finish),
 *     before the output is written or the partial stored. The map is linear in (O, l), so
 *     partials of a split request merge as before (the merge is a sum of exp-weighted (O, l)).
 *   per token (s_j, o_j of key j, the same for every head):
 *     S_j = s_j (q . k_j) + s_j o_j sum_c q[c]: the score column is scaled and the row's query
 *     sum b[r] times s_j o_j added after qk_rows;
 *     O = sum_j p_j s_j (v_j + o_j) = sum_j (p_j s_j) v_j + (sum_j p_j s_j o_j): after the
 *     softmax (which has updated the row sum l from the unscaled p) the probabilities are scaled
 *     by s_j in place, pv_rows accumulates raw V, and the scalar term is added to every channel.
 * Storage: s->kt (unused by row tiles) holds b[state_rows], the per-token factors
 * [s_k | s_k o_k | s_v | s_v o_v] x kv_tile of the current step and the scalar terms (< 16 rows).
 */

static inline bool fia_item_rows(const fia_attn_plan *p, const fia_work_item *it) {
    return it->qn * p->G < FIA_GEMM_MIN_ROWS;
}

static inline float *fia_aq_rowbias(const fia_scratch *s) { return s->kt; }
static inline float *fia_aq_tokens(const fia_attn_plan *p, const fia_scratch *s) {
    return s->kt + p->state_rows;
}

/* Per-channel (inc 1) or per-tensor (inc 0) scale and offset of K (which 0) or V of head n2. */
static inline void fia_aq_vectors(const fia_attn_plan *p, const fia_exec *ex, int which, int64_t n2,
                                  const float **sc, const float **of, int64_t *inc) {
    if (p->aq == FIA_AQ_CHANNEL) {
        *sc = ex->aq + ((int64_t)which * 2 * p->N2 + n2) * p->D;
        *of = *sc + p->N2 * p->D;
        *inc = 1;
    } else {
        *sc = ex->aq + which * 2;
        *of = *sc + 1;
        *inc = 0;
    }
}

/* Folds the K scale into the item's packed query rows and computes each row's constant b[r]:
 * q'.o (per channel / tensor) or sum_c q[c] (per token). */
static void fia_aq_fold_query(const fia_attn_plan *p, const fia_exec *ex, const fia_work_item *it,
                              fia_scratch *s) {
    const int64_t rows = it->qn * p->G, D = p->D;
    float *bias = fia_aq_rowbias(s);
    for (int64_t hh = 0; hh < it->nh; hh++) {
        const float *sc = NULL, *of = NULL;
        int64_t inc = 0;
        if (p->aq != FIA_AQ_TOKEN) fia_aq_vectors(p, ex, 0, it->h0 + hh, &sc, &of, &inc);
        for (int64_t r = 0; r < rows; r++) {
            float *q = s->q + (hh * rows + r) * p->dp;
            double b = 0.0;
            if (p->aq == FIA_AQ_TOKEN) {
                for (int64_t c = 0; c < D; c++) b += q[c];
            } else {
                for (int64_t c = 0; c < D; c++) {
                    q[c] *= sc[c * inc];
                    b += (double)q[c] * of[c * inc];
                }
            }
            bias[hh * rows + r] = (float)b;
        }
    }
}

/* n floats of a per-token tensor [2, B, S2s] at (w, b, t0 ..) (0 when the tensor is absent). */
static void fia_aq_load_tokens(const fia_tensor *t, int64_t w, int64_t b, int64_t t0, int64_t n,
                               float *dst) {
    if (!t->data) {
        memset(dst, 0, (size_t)n * sizeof(float));
        return;
    }
    const int64_t idx[3] = {w, b, t0};
    const char *src = fia_tensor_elem(t, idx);
    const int64_t step = t->strides[2] * (int64_t)fia_dtype_size(t->dtype);
    switch (t->dtype) {
    case FIA_DTYPE_FLOAT32:
        for (int64_t j = 0; j < n; j++) memcpy(&dst[j], src + j * step, sizeof(float));
        break;
    default:
        for (int64_t j = 0; j < n; j++) dst[j] = fia_load_float(src + j * step, t->dtype);
        break;
    }
}

/* The per-token factors of keys [t0, t0 + n) of batch b (one step, all heads). */
static void fia_aq_step_tokens(const fia_attn_plan *p, fia_scratch *s, int64_t b, int64_t t0,
                               int64_t n) {
    const int64_t nk = p->kv_tile;
    float *f = fia_aq_tokens(p, s);
    for (int w = 0; w < 2; w++) {
        float *sc = f + 2 * w * nk, *so = sc + nk;
        fia_aq_load_tokens(&p->aq_scale, w, b, t0, n, sc);
        fia_aq_load_tokens(&p->aq_offset, w, b, t0, n, so);
        for (int64_t j = 0; j < n; j++) so[j] *= sc[j];
    }
}

/* The scores of a row tile (rows x n, head hh of the item) from raw int8 K: adds the row
 * constants (per channel / tensor) or applies the per-token scale and offset term. */
static void fia_aq_scores(const fia_attn_plan *p, const fia_scratch *s, int64_t hh, int64_t rows,
                          int64_t n) {
    const int64_t nk = p->kv_tile;
    const float *bias = fia_aq_rowbias(s) + hh * rows;
    const bool off = p->aq_offset.data != NULL;
    if (p->aq != FIA_AQ_TOKEN) {
        if (!off) return;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < n; j++) s->s[r * nk + j] += bias[r];
        return;
    }
    const float *ks = fia_aq_tokens(p, s), *kso = ks + nk;
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s->s + r * nk;
        const float br = off ? bias[r] : 0.0f;
        for (int64_t j = 0; j < n; j++) sr[j] = sr[j] * ks[j] + br * kso[j];
    }
}

/* Per token, before P.V: P[r][j] *= s_j (in place, after the softmax took its row sums);
 * returns in t[r] the row's scalar term sum_j P[r][j] s_j o_j. */
static void fia_aq_probs(const fia_attn_plan *p, fia_scratch *s, int64_t rows, int64_t n,
                         float *t) {
    const int64_t nk = p->kv_tile;
    const float *vs = fia_aq_tokens(p, s) + 2 * nk, *vso = vs + nk;
    for (int64_t r = 0; r < rows; r++) {
        float *pr = s->s + r * nk, acc = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            acc += pr[j] * vso[j];
            pr[j] *= vs[j];
        }
        t[r] = acc;
    }
}

/* Per channel / tensor, at the end of an item: O <- s (O + o l) for every state row. */
static void fia_aq_finish(const fia_attn_plan *p, const fia_exec *ex, const fia_work_item *it,
                          fia_scratch *s) {
    const int64_t rows = it->qn * p->G, Dv = p->Dv;
    const bool off = p->aq_offset.data != NULL;
    for (int64_t hh = 0; hh < it->nh; hh++) {
        const float *sc, *of;
        int64_t inc;
        fia_aq_vectors(p, ex, 1, it->h0 + hh, &sc, &of, &inc);
        for (int64_t r = hh * rows; r < (hh + 1) * rows; r++) {
            float *o = s->o + r * p->dvp;
            const float l = s->l[r];
            if (off) {
                for (int64_t c = 0; c < Dv; c++) o[c] = (o[c] + of[c * inc] * l) * sc[c * inc];
            } else {
                for (int64_t c = 0; c < Dv; c++) o[c] *= sc[c * inc];
            }
        }
    }
}

/* ---- the tile -------------------------------------------------------------------------- */

/* Sets masked scores of the tile (keys [t0, t0 + n)) to -inf. Returns whether any score of the
 * tile stays visible. */
static bool fia_mask_tile(const fia_attn_plan *p, const fia_work_item *it, const fia_scratch *s,
                          int64_t t0, int64_t n) {
    const int64_t G = p->G, nk = p->kv_tile;
    bool any = false;
    for (int64_t pp = 0; pp < it->qn; pp++) {
        int64_t a = s->lo[pp] - t0, e = s->hi[pp] - t0 + 1; /* visible columns [a, e) */
        if (a < 0) a = 0;
        if (e > n) e = n;
        float *row0 = s->s + pp * G * nk;
        if (a >= e) {
            for (int64_t g = 0; g < G; g++)
                for (int64_t j = 0; j < n; j++) row0[g * nk + j] = -INFINITY;
            continue;
        }
        for (int64_t g = 0; g < G; g++) {
            float *r = row0 + g * nk;
            for (int64_t j = 0; j < a; j++) r[j] = -INFINITY;
            for (int64_t j = e; j < n; j++) r[j] = -INFINITY;
        }
        if (!p->mask) {
            any = true;
            continue;
        }
        const uint8_t *mrow = p->mask + it->b * p->mask_s_b + (it->q0 + pp) * p->mask_s_i;
        for (int64_t j = a; j < e; j++) {
            if (mrow[(t0 + j) * p->mask_s_j]) {
                for (int64_t g = 0; g < G; g++) row0[g * nk + j] = -INFINITY;
            } else {
                any = true;
            }
        }
    }
    return any;
}

static void fia_write_row(const fia_attn_plan *p, const fia_batch *bi, int64_t b, int64_t h,
                          int64_t i, const float *o, float lse) {
    fia_kernels_from_f32(p->kern, o, p->o.dtype, fia_o_row(p, bi, b, h, i), p->Dv);
    if (p->lse) p->lse[b * p->lse_s_b + (bi->q_tok0 + i) * p->lse_s_t + h * p->lse_s_h] = lse;
}

/* Row r of an item's or group's state (heads hh = r / rows, then position-major rows) names
 * query head (n2 + hh) * G + r % G at position q0 + (r % rows) / G. */
static void fia_write_state_row(const fia_attn_plan *p, int64_t b, int64_t n2, int64_t q0,
                                int64_t rows, int64_t r, float m, float l, float *o) {
    const int64_t hh = r / rows, rr = r % rows;
    const float lse = fia_softmax_state_finish(m, l, o, p->Dv);
    fia_write_row(p, &p->batches[b], b, (n2 + hh) * p->G + rr % p->G, q0 + rr / p->G, o, lse);
}

/* The next step's row pointers (computed for its prefetch) become the current ones. */
static inline void fia_swap_ptrs(fia_scratch *s) {
    const void **t = s->kptr;
    s->kptr = s->kpf;
    s->kpf = t;
    t = s->vptr;
    s->vptr = s->vpf;
    s->vpf = t;
}

/* The row pointers (s->kpf, s->vpf) of the rows the next call reads, for the kernels to
 * prefetch: keys [pt0, pt0 + nn) of kv head pn2 of this item (nn up to the item's step), or,
 * when the item has no keys from pt0 on, the first step of `next` (the item this thread runs
 * next, fia_worklist_next_tile) for its heads from next_hh, when it has `heads` of them.
 * Returns nn (0: nothing to prefetch). */
static int64_t fia_next_rows(const fia_attn_plan *p, const fia_work_item *it,
                             const fia_work_item *next, int64_t pn2, int64_t pt0, int64_t next_hh,
                             int64_t heads, fia_scratch *s) {
    const int64_t step = fia_item_step(p, it);
    if (pt0 < it->kv1) {
        const int64_t nn = it->kv1 - pt0 < step ? it->kv1 - pt0 : step;
        fia_row_ptrs(p, 0, &p->batches[it->b], it->b, pn2, pt0, nn, s->kpf);
        fia_row_ptrs(p, 1, &p->batches[it->b], it->b, pn2, pt0, nn, s->vpf);
        return nn;
    }
    if (!next || next_hh + heads > next->nh || next->kv1 <= next->kv0) return 0;
    const int64_t nstep = fia_item_step(p, next);
    const int64_t e = (next->kv0 / nstep + 1) * nstep;
    const int64_t nn = (e < next->kv1 ? e : next->kv1) - next->kv0;
    const fia_batch *nb = &p->batches[next->b];
    fia_row_ptrs(p, 0, nb, next->b, next->h0 + next_hh, next->kv0, nn, s->kpf);
    fia_row_ptrs(p, 1, nb, next->b, next->h0 + next_hh, next->kv0, nn, s->vpf);
    return nn;
}

/* One KV head of one tile: S = Q.K^T, mask, online softmax, O = alpha.O + P.V. Returns whether
 * any score of the tile was visible (the same for every head of the item).
 * *ptrs_ready: on entry, whether s->kptr / s->vptr already hold this call's row pointers (the
 * previous call of the item computed them as its prefetch pointers); on return, whether they
 * hold the next call's (the prefetch arrays are swapped in: row kernels only, whose next call
 * in the item reads the rows just prefetched; the caller clears it when it skips a step). */
static bool fia_tile_head(const fia_exec *ex, const fia_work_item *it, const fia_work_item *next,
                          fia_scratch *s, int64_t n2, int64_t hh, int64_t t0, int64_t n, bool first,
                          bool *ptrs_ready) {
    const fia_attn_plan *p = ex->p;
    const fia_kernels *k = p->kern;
    const fia_batch *bi = &p->batches[it->b];
    const int64_t b = it->b, D = p->D, Dv = p->Dv, dp = p->dp, dvp = p->dvp, nk = p->kv_tile;
    const int64_t rows = it->qn * p->G;
    const bool gemm_path = !fia_item_rows(p, it);
    const bool amx = gemm_path && p->amx;
    const bool quant = p->aq != FIA_AQ_NONE;
    const float *q = s->q + hh * rows * dp;
    float *o = s->o + hh * rows * dvp, *m = s->m + hh * rows, *l = s->l + hh * rows;

    /* The rows the next call reads, prefetched while this tile is computed. Row kernels on an
     * item of several KV heads run one head ahead: the next head's rows of this tile, and after
     * the last head the first head's rows of the next step (prefetching a whole step ahead
     * instead, the next step of this head, measured slower: GQA 32/8 decode 16K, one thread,
     * share of one core's read bandwidth: 0.44 without prefetch, 0.54 eight keys ahead, 0.70 a
     * step ahead, 0.80 one head ahead; two threads 2.96 -> 2.64 ms from a step to one head
     * ahead). After the item's last tile, the first tile of the item this thread runs next. */
    const bool ahead = !gemm_path && it->nh > 1;
    int64_t pn2 = n2, pt0 = t0 + n;
    if (ahead && hh + 1 < it->nh) {
        pn2 = n2 + 1;
        pt0 = t0;
    } else if (ahead) {
        pn2 = it->h0;
    }
    const bool ready = *ptrs_ready;
    /* The prefetched rows (keys from pt0 of head pn2, step-aligned) are the next call's. */
    *ptrs_ready = pt0 < it->kv1 && !gemm_path;
    const int64_t nn = fia_next_rows(p, it, next, pn2, pt0, ahead ? 0 : hh, 1, s);
    /* S = Q.K^T: small tiles (decode) read K rows in place, int8 ones raw with the dequant
     * folded around the kernel (the kernel prefetches the next tile); large tiles pack K once
     * into a transposed fp32 panel shared by all rows (GEMM), dequantizing int8 rows as they
     * are packed (the packing prefetches). */
    if (!ready) fia_row_ptrs(p, 0, bi, b, n2, t0, n, s->kptr);
    /* AMX: a positive scale is applied by the softmax after the mask (-inf stays -inf) */
    const float amx_scale = p->scale > 0.0f ? p->scale : 1.0f;
    if (amx) { /* bf16 Q and K on tiles, the scale after the dot product */
        fia_amx_gqa_qk(rows, n, D, s->qb + hh * ((rows + 15) / 16 * 16) * D, s->kptr,
                       p->scale > 0.0f ? 1.0f : p->scale, s->s, nk, s->kpf, nn, s->amx);
    } else if (gemm_path) {
        fia_pack_rows(p, ex, 0, b, n2, t0, n, s->kptr, s->kpf, nn, s->kr, dp);
        k->transpose_f32(s->kr, dp, s->kt, nk, n, D);
        k->gemm_f32(rows, n, D, q, dp, s->kt, nk, s->s, nk, NULL);
    } else {
        k->qk_rows(rows, n, D, q, dp, s->kptr, p->k.dtype, s->s, nk, s->kpf, nn);
        if (quant) fia_aq_scores(p, s, hh, rows, n);
    }
    if (!fia_mask_tile(p, it, s, t0, n)) {
        if (*ptrs_ready) fia_swap_ptrs(s);
        return false;
    }
    if (amx) fia_amx_gqa_softmax(rows, n, s->s, nk, amx_scale, m, l, s->alpha, s->amx);
    else k->softmax_tile(s->s, nk, rows, n, m, l, s->alpha);
    const float *scale = first ? NULL : s->alpha;
    if (!ready) fia_row_ptrs(p, 1, bi, b, n2, t0, n, s->vptr);
    if (amx) { /* P as two bf16 parts (hi + lo) and bf16 V on tiles */
        fia_amx_gqa_pv(rows, n, Dv, s->vptr, o, dvp, scale, s->vpf, nn, s->amx);
    } else if (gemm_path) {
        fia_pack_rows(p, ex, 1, b, n2, t0, n, s->vptr, s->vpf, nn, s->vp, dvp);
        k->gemm_f32(rows, Dv, n, s->s, nk, s->vp, dvp, o, dvp, scale);
    } else if (quant && p->aq == FIA_AQ_TOKEN) {
        float *t = fia_aq_tokens(p, s) + 4 * nk;
        fia_aq_probs(p, s, rows, n, t);
        k->pv_rows(rows, n, Dv, s->s, nk, s->vptr, p->v.dtype, o, dvp, scale, s->vpf, nn);
        if (p->aq_offset.data)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = 0; c < Dv; c++) o[r * dvp + c] += t[r];
    } else {
        k->pv_rows(rows, n, Dv, s->s, nk, s->vptr, p->v.dtype, o, dvp, scale, s->vpf, nn);
    }
    if (*ptrs_ready) fia_swap_ptrs(s);
    return true;
}

/* Whether the item runs its heads together (fia_tile_heads): MHA decode rows on the heads
 * kernels (fia_heads_path), more than one head, no more than the score tile's rows. */
static inline bool fia_item_heads(const fia_attn_plan *p, const fia_work_item *it) {
    return it->nh > 1 && it->nh <= p->tile_rows && fia_heads_path(p, it->qn * p->G);
}

/* All kv heads of an MHA decode item (fia_item_heads: one query row per head) in one pass over
 * the step's token rows: qk_heads fills the nh x n score block (row hh = head hh, the state's
 * row hh), each head's row masked as fia_tile_head masks it, one softmax_tile over the nh rows
 * (each row's softmax is the per-row one), pv_heads. The kernels read the rows in token order
 * with the bits of qk_rows / pv_rows head by head, so the result is fia_tile_head's for every
 * head. Row pointers are those of head h0 (the kernels step by the head stride); the next
 * step's are computed for the prefetch and then reused, as for one-head items. */
static bool fia_tile_heads(const fia_exec *ex, const fia_work_item *it, const fia_work_item *next,
                           fia_scratch *s, int64_t t0, int64_t n, bool first, bool *ptrs_ready) {
    const fia_attn_plan *p = ex->p;
    const fia_kernels *k = p->kern;
    const fia_batch *bi = &p->batches[it->b];
    const int64_t b = it->b, nh = it->nh, nk = p->kv_tile;

    const bool ready = *ptrs_ready;
    *ptrs_ready = t0 + n < it->kv1;
    /* the next step's rows, or the next item's first step when it has nh heads (the kernels
     * prefetch nh heads' parts of each row) */
    const int64_t nn = fia_next_rows(p, it, next, it->h0, t0 + n, 0, nh, s);
    if (!ready) fia_row_ptrs(p, 0, bi, b, it->h0, t0, n, s->kptr);
    k->qk_heads(nh, n, p->D, s->q, p->dp, s->kptr, p->k.s_h, p->k.dtype, s->s, nk, s->kpf, nn);
    /* fia_mask_tile masks the score rows at s->s: once per head row (the same keys each time) */
    fia_scratch hs = *s;
    bool any = false;
    for (int64_t hh = 0; hh < nh; hh++) {
        hs.s = s->s + hh * nk;
        any = fia_mask_tile(p, it, &hs, t0, n);
    }
    if (any) {
        k->softmax_tile(s->s, nk, nh, n, s->m, s->l, s->alpha);
        if (!ready) fia_row_ptrs(p, 1, bi, b, it->h0, t0, n, s->vptr);
        k->pv_heads(nh, n, p->Dv, s->s, nk, s->vptr, p->v.s_h, p->v.dtype, s->o, p->dvp,
                    first ? NULL : s->alpha, s->vpf, nn);
    }
    if (*ptrs_ready) fia_swap_ptrs(s);
    return any;
}

/* A TILE item: the query tile of kv heads [n2, n2 + nh) stays resident (packed, scale folded
 * in) while the item's key range streams through step by step, all heads per step. */
static void fia_run_tile(const fia_exec *ex, const fia_work_item *it, const fia_work_item *next,
                         fia_scratch *s) {
    const fia_attn_plan *p = ex->p;
    const int64_t b = it->b, G = p->G, D = p->D, Dv = p->Dv;
    const int64_t dp = p->dp, dvp = p->dvp, step = fia_item_step(p, it);
    const int64_t rows = it->qn * G, all = rows * it->nh;
    const fia_batch *bi = &p->batches[b];
    const float scale = p->scale; /* a local: stored through dst, p->scale would be reloaded */

    const bool amx = p->amx && !fia_item_rows(p, it);
    const int64_t rows_pad = (rows + 15) / 16 * 16;
    for (int64_t hh = 0; hh < it->nh && amx; hh++) { /* the bf16 rows as they are */
        uint16_t *qb = s->qb + hh * rows_pad * D;
        for (int64_t pp = 0; pp < it->qn; pp++)
            for (int64_t g = 0; g < G; g++)
                memcpy(qb + (pp * G + g) * D, fia_q_row(p, bi, b, (it->h0 + hh) * G + g, it->q0 + pp),
                       (size_t)D * sizeof(uint16_t));
        memset(qb + rows * D, 0, (size_t)((rows_pad - rows) * D) * sizeof(uint16_t));
    }
    for (int64_t hh = 0; hh < it->nh && !amx; hh++)
        for (int64_t pp = 0; pp < it->qn; pp++)
            for (int64_t g = 0; g < G; g++) {
                float *dst = s->q + (hh * rows + pp * G + g) * dp;
                const char *q = fia_q_row(p, bi, b, (it->h0 + hh) * G + g, it->q0 + pp);
                fia_kernels_to_f32(p->kern, q, p->q.dtype, dst, D);
                for (int64_t d = 0; d < D; d++) dst[d] *= scale;
            }
    const bool fold = p->aq != FIA_AQ_NONE && fia_item_rows(p, it);
    if (fold) fia_aq_fold_query(p, ex, it, s);
    for (int64_t pp = 0; pp < it->qn; pp++)
        fia_row_range(p, bi, it->q0 + pp, &s->lo[pp], &s->hi[pp]);
    for (int64_t r = 0; r < all; r++) {
        s->m[r] = -INFINITY;
        s->l[r] = 0.0f;
    }

    bool first = true, ptrs_ready = false;
    const bool heads = fia_item_heads(p, it);
    for (int64_t t0 = it->kv0; t0 < it->kv1;) {
        int64_t t1 = (t0 / step + 1) * step;
        if (t1 > it->kv1) t1 = it->kv1;
        bool visible = false;
        for (int64_t pp = 0; pp < it->qn && !visible; pp++)
            visible = s->lo[pp] <= s->hi[pp] && s->lo[pp] < t1 && s->hi[pp] >= t0;
        if (visible) {
            bool any = false;
            if (fold && p->aq == FIA_AQ_TOKEN) fia_aq_step_tokens(p, s, b, t0, t1 - t0);
            if (heads)
                any = fia_tile_heads(ex, it, next, s, t0, t1 - t0, first, &ptrs_ready);
            else
                for (int64_t hh = 0; hh < it->nh; hh++)
                    any = fia_tile_head(ex, it, next, s, it->h0 + hh, hh, t0, t1 - t0, first,
                                        &ptrs_ready);
            if (any) first = false;
        } else {
            ptrs_ready = false;
        }
        t0 = t1;
    }
    if (fold && p->aq != FIA_AQ_TOKEN && !first) fia_aq_finish(p, ex, it, s);

    if (it->group < 0) {
        for (int64_t r = 0; r < all; r++)
            fia_write_state_row(p, b, it->h0, it->q0, rows, r, first ? -INFINITY : s->m[r], s->l[r],
                                s->o + r * dvp);
        return;
    }
    fia_splitkv_store(ex->partials, &p->work.groups[it->group], it->chunk, all, Dv, first, s->m,
                      s->l, s->o, dvp);
}

static void fia_run_zero(const fia_exec *ex, const fia_work_item *it, fia_scratch *s) {
    const fia_attn_plan *p = ex->p;
    const fia_batch *bi = &p->batches[it->b];
    memset(s->o, 0, (size_t)p->Dv * sizeof(float));
    for (int64_t i = it->q0; i < it->q0 + it->qn; i++)
        for (int64_t h = 0; h < p->N1; h++) fia_write_row(p, bi, it->b, h, i, s->o, INFINITY);
}

typedef struct fia_merge_ctx {
    const fia_attn_plan *p;
    const fia_work_group *g;
} fia_merge_ctx;

static void fia_merge_write(const void *arg, int64_t r, float m, float l, float *o) {
    const fia_merge_ctx *c = arg;
    fia_write_state_row(c->p, c->g->b, c->g->h0, c->g->q0, c->g->qn * c->p->G, r, m, l, o);
}

static fia_scratch fia_scratch_of(const fia_exec *ex, int32_t tid) {
    fia_scratch s;
    fia_scratch_carve(ex->p, fia_thread_scratch(ex->ws, ex->scratch_bytes, tid), &s);
    return s;
}

static void fia_item_task(void *arg, int64_t task, int64_t next_task, int32_t tid) {
    const fia_exec *ex = arg;
    const fia_work_item *it = &ex->p->work.items[task];
    fia_scratch s = fia_scratch_of(ex, tid);
    if (it->kind == FIA_WORK_ZERO) fia_run_zero(ex, it, &s);
    else fia_run_tile(ex, it, fia_worklist_next_tile(&ex->p->work, task, next_task), &s);
}

/* Merge task: row block task % merge_split of group task / merge_split (so that the threads
 * share the merge of a few large groups, e.g. one decode request with whole-row items); every
 * row is merged the same way whichever task does it. */
static void fia_merge_task(void *arg, int64_t task, int32_t tid) {
    const fia_exec *ex = arg;
    const fia_attn_plan *p = ex->p;
    const int64_t split = p->merge_split, part = task % split;
    const fia_work_group *g = &p->work.groups[task / split];
    const fia_merge_ctx c = {p, g};
    const int64_t rows = g->qn * p->G * g->nh;
    fia_scratch s = fia_scratch_of(ex, tid);
    fia_splitkv_merge_rows(ex->partials, g, rows, p->Dv, rows * part / split,
                           rows * (part + 1) / split, s.o, fia_merge_write, &c);
}

/* Per-tensor / per-channel dequant vectors in fp32: [K|V][scale|offset][N2][D]. */
static void fia_prepare_antiquant(const fia_attn_plan *p, float *aq) {
    if (p->aq == FIA_AQ_TENSOR) {
        for (int64_t w = 0; w < 2; w++) {
            const int64_t idx[1] = {w};
            aq[w * 2] = fia_load_float(fia_tensor_elem(&p->aq_scale, idx), p->aq_scale.dtype);
            aq[w * 2 + 1] = p->aq_offset.data
                                ? fia_load_float(fia_tensor_elem(&p->aq_offset, idx), p->aq_offset.dtype)
                                : 0.0f;
        }
        return;
    }
    if (p->aq != FIA_AQ_CHANNEL) return;
    const int32_t nd = p->aq_scale.ndim;
    for (int64_t w = 0; w < 2; w++)
        for (int64_t n2 = 0; n2 < p->N2; n2++)
            for (int64_t d = 0; d < p->D; d++) {
                int64_t idx[4];
                if (nd == 4) { idx[0] = w; idx[1] = n2; idx[2] = 0; idx[3] = d; }
                else if (nd == 3) { idx[0] = w; idx[1] = n2; idx[2] = d; }
                else { idx[0] = w; idx[1] = n2 * p->D + d; }
                float *sc = aq + ((w * 2) * p->N2 + n2) * p->D + d;
                sc[0] = fia_load_float(fia_tensor_elem(&p->aq_scale, idx), p->aq_scale.dtype);
                sc[p->N2 * p->D] = p->aq_offset.data
                                       ? fia_load_float(fia_tensor_elem(&p->aq_offset, idx),
                                                        p->aq_offset.dtype)
                                       : 0.0f;
            }
}

void fia_attn_execute(fia_plan *plan, void *workspace) {
    const fia_attn_plan *p = (const fia_attn_plan *)plan;
    fia_exec ex = {p, workspace, NULL, NULL, fia_scratch_carve(p, NULL, NULL)};
    float *aq = NULL;
    fia_attn_workspace_layout(p, workspace, &aq, &ex.partials);
    fia_prepare_antiquant(p, aq);
    ex.aq = aq;
    fia_pool_run_ahead(plan->ctx->pool, p->work.num_items, fia_item_task, &ex);
    fia_pool_run(plan->ctx->pool, p->work.num_groups * p->merge_split, fia_merge_task, &ex);
}
