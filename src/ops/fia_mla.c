/*
 * fia_mla.c - fused_infer_attention_score, the MLA path (DeepSeek absorbed attention): the query
 * is 512 + 64 (rope) wide per head, key = value = a 512-wide latent cache shared by every head
 * plus a 64-wide key rope; the output is 512 wide. Contract: include/fia.h ("MLA").
 *
 * Work decomposition (plan time, from the actual lengths only):
 *   - The rows of a tile are (query position, head) pairs, position-major, at most MLA_ROWS:
 *     all heads of up to MLA_ROWS / N consecutive positions of one request. The query tile is
 *     packed once (fp32, scale folded in; int8 form: u8 codes + fp32 rope) and stays resident.
 *   - The tile's visible keys stream in steps of p->step tokens aligned in token space. Each
 *     latent row is read from memory once per step, converted once into an fp32 row of 576
 *     (latent + rope) that serves as K (through a transposed panel) and, when value is the
 *     same tensor as key, as V (its first 512): S = Q.K^T (all heads are GEMM rows), mask,
 *     online softmax, O = alpha.O + P.V.
 *   - Split-KV: a tile that sees more than MLA_CHUNK keys is split into chunks aligned to
 *     multiples of MLA_CHUNK in token space; the partial (m, l, O) states are merged in chunk
 *     order (softmax_state.h). Where to split depends only on the request, so results are
 *     bitwise identical for any thread count and batch composition.
 *   - Items are sorted by cost (rows x keys plus a fixed overhead, as FlashMLA balances) and
 *     handed out dynamically; the next step's rows are prefetched while a step computes.
 *   - AMLA (mla_rescale): probabilities relative to a power of two, O rescaled by an integer add
 *     on its exponent bits (kernels.h gemm_f32_acc / softmax_tile_amla; on AMX the same
 *     numerics inside the step, kernels/amx.h).
 *   - AMX form (bf16 query and latent, value = key; PA_BSND, dense or PA_NZ, every rescale):
 *     kernels/amx.h steps of FIA_AMX_MLA_STEP keys on the rows in place (PA_NZ: each key block
 *     gathered from its 16-element chunks by the kernel); FIA_AMX=0 keeps the paths below.
 *   - int8 form: S = (scale.sq.sk) . (q8 . k8) [int8 GEMM] + scale . q_rope . k_rope [fp32];
 *     P quantized per row to u8 (scale max/255; kernel p_to_u8), O = alpha.O + (sv.max/255) .
 *     (p8 . v8) [int8 GEMM: VNNI, or AMX tiles where the CPU has AMX int8, the same exact
 *     integers].
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/limits.h"
#include "core/status.h"
#include "core/tensor.h"
#include "kernels/amx.h"
#include "kernels/bf16dp.h"
#include "kernels/i8gemm.h"
#include "kernels/softmax_state.h"
#include "ops/fia_internal.h"
#include "sched/splitkv.h"
#include "sched/tensor_spec.h"

enum {
    MLA_DN = 512,          /* latent (nope) width, also the output width */
    MLA_DR = 64,           /* rope width */
    MLA_DK = MLA_DN + MLA_DR,
    MLA_ROWS = 128,        /* query rows (positions x heads) per tile */
    MLA_MERGE_SPLIT = 8,   /* merge tasks per split group (row blocks) */
    MLA_STEP_FLOAT = 32,   /* keys per step, float form (one step's fp32 K rows, K^T panel,
                            * scores plus the resident Q and O tiles stay within L2) */
    MLA_STEP_INT8 = 64,    /* keys per step, int8 form (its tiles are 4x smaller; a deeper
                            * P.V keeps the int8 GEMM near its peak) */
    MLA_CHUNK = 1024,      /* keys per split-KV chunk (a multiple of both steps) */
    /* AMX, PA_NZ: the most 16-row chunk regions of one step (at most 2 T / 16 + 1 groups of 16
     * rows: T / 16 plus one per block, blocks being at least 16 rows; 36 chunks each) */
    MLA_NZ_REGIONS = (2 * FIA_AMX_MLA_STEP / 16 + 1) * (MLA_DK / 16)
};

typedef struct mla_plan {
    fia_plan base;
    const fia_kernels *kern;
    const fia_i8_kernels *i8;
    int64_t B, N, S1, num_threads;
    bool tnd, paged, quant, amla, v_is_k, causal;
    float scale;
    fia_seq q, qr, o;
    fia_seq k, kr, v;
    float *lse;
    int64_t lse_s_b, lse_s_t, lse_s_h;
    fia_pages pages;      /* the block table (table NULL: dense caches) */
    int32_t *block_table; /* owned copy behind pages.table */
    const char *sq;       /* int8 form: dequant_scale_query, fp32, (token, head) strides */
    int64_t sq_s_b, sq_s_t, sq_s_h;
    const float *sk, *sv; /* int8 form: the per-tensor scales (read at execute time) */
    fia_batch *batches;
    fia_worklist work;    /* items (h0 = 0, nh = 1: all heads) and split groups */
    int64_t pos_per_tile, rows_max;
    int64_t step;         /* keys per step: T_FLOAT, T_INT8 or FIA_AMX_MLA_STEP */
    bool amx;             /* bf16 query and latent on AMX tiles (kernels/amx.h) */
    bool p_bf16;          /* AMX: P rounded to bf16 (FIA_MLA_P_BF16=1, NPU numerics) */
    bool bf16qk;          /* no AMX: Q.K^T on vdpbf16ps from the bf16 rows (kernels/bf16dp.h) */
} mla_plan;

typedef struct mla_scratch {
    float *q;            /* rows x MLA_DK (float form) */
    uint8_t *q8;         /* rows x MLA_DN (int8 form, u8 codes) */
    float *qr;           /* rows x MLA_DR (int8 form: the rope part) */
    float *qs;           /* rows: scale . sq . sk */
    float *kr;           /* step x MLA_DK: K rows in fp32 (latent + rope) */
    float *kt;           /* MLA_DK x step: the transposed panel */
    float *vp;           /* step x MLA_DN: V rows when value is not key */
    float *s;            /* rows x step */
    float *o;            /* rows x MLA_DN */
    float *m, *l, *alpha, *ones, *ps;
    int32_t *e, *ex;
    float *tmp;          /* step x 32: NZ conversion */
    int8_t *k8;          /* step x MLA_DN: int8 rows gathered from NZ */
    void *kpack, *vpack; /* int8 packed panels */
    uint8_t *p8;         /* rows x step */
    const int8_t **kptr, **vptr;
    int64_t *lo, *hi;    /* per position of the tile */
    uint16_t *qt;        /* AMX: the packed query tile */
    const uint16_t **krow, **rrow, **qnp, **qrp; /* AMX: row pointers */
    const uint16_t **nkrow, **nrrow; /* AMX: rows of the next step (prefetched by the kernel) */
    const void **npf;    /* AMX, PA_NZ: the chunk regions of the next step (mla_nz_regions) */
    int32_t *ka, *ke;    /* AMX: visible keys of the step per row */
    void *amx;           /* AMX: kernel scratch */
    uint16_t *qb;        /* bf16qk: the query tile's bf16 rows (rows x 576) */
    uint32_t *ktb;       /* bf16qk: the packed key pairs */
} mla_scratch;

/* ---- workspace ---------------------------------------------------------------------------- */

static size_t mla_scratch_carve(const mla_plan *p, char *base, mla_scratch *out) {
    fia_arena a = {base, 0};
    const size_t f = sizeof(float);
    const int64_t R = p->rows_max, T = p->step;
    mla_scratch s;
    memset(&s, 0, sizeof s);
    if (p->quant) {
        s.q8 = fia_arena_take(&a, (size_t)(R * MLA_DN));
        s.qr = fia_arena_take(&a, (size_t)(R * MLA_DR) * f);
        s.qs = fia_arena_take(&a, (size_t)R * f);
        s.k8 = fia_arena_take(&a, (size_t)(T * MLA_DN));
        s.kpack = fia_arena_take(&a, p->i8->pack_bytes(T, MLA_DN));
        s.vpack = fia_arena_take(&a, p->i8->pack_bytes(MLA_DN, T));
        s.p8 = fia_arena_take(&a, (size_t)(R * T));
        s.ps = fia_arena_take(&a, (size_t)R * f);
        s.kptr = fia_arena_take(&a, (size_t)T * sizeof(void *));
        s.vptr = fia_arena_take(&a, (size_t)T * sizeof(void *));
    } else if (p->amx) {
        const size_t pp = sizeof(void *);
        s.qt = fia_arena_take(&a, (size_t)(R * MLA_DK) * 2);
        s.krow = fia_arena_take(&a, (size_t)T * pp);
        s.rrow = fia_arena_take(&a, (size_t)T * pp);
        s.nkrow = fia_arena_take(&a, (size_t)T * pp);
        s.nrrow = fia_arena_take(&a, (size_t)T * pp);
        s.qnp = fia_arena_take(&a, (size_t)R * pp);
        s.qrp = fia_arena_take(&a, (size_t)R * pp);
        s.ka = fia_arena_take(&a, (size_t)R * sizeof(int32_t));
        s.ke = fia_arena_take(&a, (size_t)R * sizeof(int32_t));
        s.amx = fia_arena_take(&a, fia_amx_mla_scratch_bytes(R));
        if (p->k.nz_w) s.npf = fia_arena_take(&a, (size_t)MLA_NZ_REGIONS * pp);
    } else if (p->bf16qk) {
        s.qb = fia_arena_take(&a, (size_t)(R * MLA_DK) * 2);
        s.krow = fia_arena_take(&a, (size_t)T * sizeof(void *));
        s.rrow = fia_arena_take(&a, (size_t)T * sizeof(void *));
        s.ktb = fia_arena_take(&a, (size_t)(FIA_BF16_MLA_D2 * FIA_BF16_KT_KEYS) * 4);
        if (!p->v_is_k) s.vp = fia_arena_take(&a, (size_t)(T * MLA_DN) * f);
    } else {
        s.q = fia_arena_take(&a, (size_t)(R * MLA_DK) * f);
        if (!p->v_is_k) s.vp = fia_arena_take(&a, (size_t)(T * MLA_DN) * f);
    }
    if (!p->amx) s.kr = fia_arena_take(&a, (size_t)(T * MLA_DK) * f);
    if (!p->amx && !p->bf16qk) s.kt = fia_arena_take(&a, (size_t)(MLA_DK * T) * f);
    s.s = fia_arena_take(&a, (size_t)(R * T) * f);
    s.o = fia_arena_take(&a, (size_t)(R * MLA_DN) * f);
    s.m = fia_arena_take(&a, (size_t)R * f);
    s.l = fia_arena_take(&a, (size_t)R * f);
    s.alpha = fia_arena_take(&a, (size_t)R * f);
    s.ones = fia_arena_take(&a, (size_t)R * f);
    s.e = fia_arena_take(&a, (size_t)R * sizeof(int32_t));
    s.ex = fia_arena_take(&a, (size_t)R * sizeof(int32_t));
    s.tmp = fia_arena_take(&a, (size_t)(T * 32) * f);
    s.lo = fia_arena_take(&a, (size_t)p->pos_per_tile * sizeof(int64_t));
    s.hi = fia_arena_take(&a, (size_t)p->pos_per_tile * sizeof(int64_t));
    if (out) *out = s;
    return a.used;
}

static size_t mla_workspace_layout(const mla_plan *p, void *ws, float **partials) {
    return fia_splitkv_workspace(ws, mla_scratch_carve(p, NULL, NULL), p->num_threads,
                                 p->work.partial_floats, partials);
}

/* ---- addressing and conversion ------------------------------------------------------------- */

/* Element offset of token tok of batch b in a cache and, for paged caches, the
 * number of tokens left in tok's block (dense: all). */
static inline int64_t mla_cache_off(const mla_plan *p, const fia_seq *c, int64_t b, int64_t tok,
                                    int64_t *run) {
    return fia_seq_offset(c, &p->pages, b, p->batches[b].kv_tok0, 0, tok, run);
}

/* Prefetches (into L2) the rows of tokens [t0, t0 + n) of batch b. */
static void mla_prefetch(const mla_plan *p, const fia_seq *c, int64_t b, int64_t t0, int64_t n) {
    for (int64_t j = 0; j < n;) {
        int64_t run;
        const int64_t off = mla_cache_off(p, c, b, t0 + j, &run);
        if (run > n - j) run = n - j;
        if (c->nz_w) {
            const int64_t bytes = run * c->nz_w * c->esize;
            for (int64_t ci = 0; ci < c->dim / c->nz_w; ci++) {
                const char *src = c->base + (off + ci * c->s_nz) * c->esize;
                for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(src + o, 0, 2);
            }
        } else {
            for (int64_t r = 0; r < run; r++) {
                const char *src = c->base + (off + r * c->s_t) * c->esize;
                for (int64_t o = 0; o < c->dim * c->esize; o += 64) __builtin_prefetch(src + o, 0, 2);
            }
        }
        j += run;
    }
}

/* Converts the rows of tokens [t0, t0 + n) of batch b to fp32: row j at dst + j ld. */
static void mla_load_rows(const mla_plan *p, const fia_seq *c, int64_t b, int64_t t0, int64_t n,
                          float *dst, int64_t ld, float *tmp) {
    const fia_kernels *k = p->kern;
    for (int64_t j = 0; j < n;) {
        int64_t run;
        const int64_t off = mla_cache_off(p, c, b, t0 + j, &run);
        if (run > n - j) run = n - j;
        if (c->nz_w) {
            /* NZ: chunk ci of `run` consecutive rows is contiguous (run x w elements) */
            for (int64_t ci = 0; ci < c->dim / c->nz_w; ci++) {
                fia_kernels_to_f32(k, c->base + (off + ci * c->s_nz) * c->esize, c->dtype, tmp,
                                   run * c->nz_w);
                for (int64_t r = 0; r < run; r++)
                    memcpy(dst + (j + r) * ld + ci * c->nz_w, tmp + r * c->nz_w,
                           (size_t)c->nz_w * sizeof(float));
            }
        } else {
            for (int64_t r = 0; r < run; r++)
                fia_kernels_to_f32(k, c->base + (off + r * c->s_t) * c->esize, c->dtype,
                                   dst + (j + r) * ld, c->dim);
        }
        j += run;
    }
}

/* int8 rows of tokens [t0, t0 + n): pointers into the cache, or (NZ) into rows gathered in buf. */
static void mla_int8_rows(const mla_plan *p, const fia_seq *c, int64_t b, int64_t t0, int64_t n,
                          const int8_t **ptrs, int8_t *buf) {
    for (int64_t j = 0; j < n;) {
        int64_t run;
        const int64_t off = mla_cache_off(p, c, b, t0 + j, &run);
        if (run > n - j) run = n - j;
        for (int64_t r = 0; r < run; r++) {
            if (c->nz_w) {
                int8_t *row = buf + (j + r) * MLA_DN;
                for (int64_t ci = 0; ci < MLA_DN / c->nz_w; ci++)
                    memcpy(row + ci * c->nz_w, c->base + off + ci * c->s_nz + r * c->nz_w, (size_t)c->nz_w);
                ptrs[j + r] = row;
            } else {
                ptrs[j + r] = (const int8_t *)c->base + off + r * c->s_t;
            }
        }
        j += run;
    }
}

static inline const char *mla_seq_row(const fia_seq *s, const fia_batch *bi, int64_t b, int64_t h,
                                      int64_t i) {
    return s->base + (b * s->s_b + (bi->q_tok0 + i) * s->s_t + h * s->s_h) * s->esize;
}

/* ---- one item ------------------------------------------------------------------------------ */

typedef struct mla_exec {
    const mla_plan *p;
    char *ws;
    float *partials;
    size_t scratch_bytes; /* per thread */
} mla_exec;

/* Visible keys [lo, hi] of query position i of batch bi. */
static inline void mla_row_range(const mla_plan *p, const fia_batch *bi, int64_t i, int64_t *lo,
                                 int64_t *hi) {
    fia_vis_range(p->causal ? FIA_VIS_CAUSAL_BOTTOM_RIGHT : FIA_VIS_ALL, 0, 0, bi, i, lo, hi);
}

/* Packs the query tile of positions [q0, q0 + qn) of batch b (all heads): rows r = pp N + h. */
static void mla_pack_query(const mla_plan *p, const fia_work_item *it, mla_scratch *s) {
    const fia_kernels *k = p->kern;
    const fia_batch *bi = &p->batches[it->b];
    const float sc = p->scale;
    const float skv = p->quant ? *p->sk : 1.0f;
    if (p->amx) { /* bf16 rows as they are; the scale is applied after the dot products */
        const int64_t rows = it->qn * p->N;
        for (int64_t r = 0; r < rows; r++) {
            s->qnp[r] = (const uint16_t *)mla_seq_row(&p->q, bi, it->b, r % p->N, it->q0 + r / p->N);
            s->qrp[r] = (const uint16_t *)mla_seq_row(&p->qr, bi, it->b, r % p->N, it->q0 + r / p->N);
        }
        fia_amx_mla_pack_q(rows, (rows + 15) / 16 * 16, s->qnp, s->qrp, s->qt);
        return;
    }
    if (p->bf16qk) { /* bf16 rows as they are; the scale is applied after the dot products */
        for (int64_t r = 0; r < it->qn * p->N; r++) {
            const int64_t h = r % p->N, i = it->q0 + r / p->N;
            memcpy(s->qb + r * MLA_DK, mla_seq_row(&p->q, bi, it->b, h, i), MLA_DN * 2);
            memcpy(s->qb + r * MLA_DK + MLA_DN, mla_seq_row(&p->qr, bi, it->b, h, i), MLA_DR * 2);
        }
        return;
    }
    for (int64_t pp = 0; pp < it->qn; pp++)
        for (int64_t h = 0; h < p->N; h++) {
            const int64_t r = pp * p->N + h, i = it->q0 + pp;
            const char *qn = mla_seq_row(&p->q, bi, it->b, h, i);
            const char *qr = mla_seq_row(&p->qr, bi, it->b, h, i);
            if (p->quant) {
                p->i8->s8_to_u8_offset((const int8_t *)qn, s->q8 + r * MLA_DN, MLA_DN);
                float *dst = s->qr + r * MLA_DR;
                fia_kernels_to_f32(k, qr, p->qr.dtype, dst, MLA_DR);
                for (int64_t d = 0; d < MLA_DR; d++) dst[d] *= sc;
                float sq;
                memcpy(&sq, p->sq + (it->b * p->sq_s_b + (bi->q_tok0 + i) * p->sq_s_t +
                                     h * p->sq_s_h) * (int64_t)sizeof(float), sizeof sq);
                s->qs[r] = sc * sq * skv;
            } else {
                float *dst = s->q + r * MLA_DK;
                fia_kernels_to_f32(k, qn, p->q.dtype, dst, MLA_DN);
                fia_kernels_to_f32(k, qr, p->qr.dtype, dst + MLA_DN, MLA_DR);
                for (int64_t d = 0; d < MLA_DK; d++) dst[d] *= sc;
            }
        }
}

/* Sets the scores of keys [t0, t0 + n) that a row cannot see to -inf; returns whether any
 * score stays visible. */
static bool mla_mask(const mla_plan *p, const fia_work_item *it, mla_scratch *s, int64_t t0, int64_t n) {
    bool any = false;
    for (int64_t pp = 0; pp < it->qn; pp++) {
        int64_t a = s->lo[pp] - t0, e = s->hi[pp] - t0 + 1;
        if (a < 0) a = 0;
        if (e > n) e = n;
        if (a < e) any = true;
        if (a == 0 && e == n) continue;
        for (int64_t h = 0; h < p->N; h++) {
            float *row = s->s + (pp * p->N + h) * p->step;
            for (int64_t j = 0; j < n; j++)
                if (j < a || j >= e) row[j] = -INFINITY;
        }
    }
    return any;
}

/* Row pointers of the bf16 latent and rope rows of tokens [t0, t0 + n) of batch b; PA_NZ: the
 * pointers of each row's first 16-element chunk (its chunk c lies c s_nz elements further). */
static void mla_bf16_rows_to(const mla_plan *p, int64_t b, int64_t t0, int64_t n,
                             const uint16_t **krow, const uint16_t **rrow) {
    const int64_t ks = fia_seq_row_step(&p->k), rs = fia_seq_row_step(&p->kr);
    for (int64_t j = 0; j < n;) {
        int64_t run, run2;
        const int64_t off = mla_cache_off(p, &p->k, b, t0 + j, &run);
        const int64_t off2 = mla_cache_off(p, &p->kr, b, t0 + j, &run2);
        if (run > n - j) run = n - j;
        for (int64_t r = 0; r < run; r++) {
            krow[j + r] = (const uint16_t *)p->k.base + off + r * ks;
            rrow[j + r] = (const uint16_t *)p->kr.base + off2 + r * rs;
        }
        j += run;
    }
}

/* PA_NZ (AMX): the 512-byte regions (16 rows of one 16-element chunk) that hold the latent and
 * rope rows of tokens [t0, t0 + n) of batch b, for the kernel's prefetch of the next step; at
 * most MLA_NZ_REGIONS. A region may reach past the last row (a prefetch only). */
static int64_t mla_nz_regions(const mla_plan *p, int64_t b, int64_t t0, int64_t n,
                              const void **out) {
    int64_t cnt = 0;
    for (int64_t j = 0; j < n;) {
        int64_t run, run2;
        const int64_t off = mla_cache_off(p, &p->k, b, t0 + j, &run);
        const int64_t off2 = mla_cache_off(p, &p->kr, b, t0 + j, &run2);
        if (run > n - j) run = n - j;
        for (int64_t g = 0; g < run; g += 16) {
            for (int64_t c = 0; c < MLA_DN / 16; c++)
                out[cnt++] = (const uint16_t *)p->k.base + off + c * p->k.s_nz + g * 16;
            for (int64_t c = 0; c < MLA_DR / 16; c++)
                out[cnt++] = (const uint16_t *)p->kr.base + off2 + c * p->kr.s_nz + g * 16;
        }
        j += run;
    }
    return cnt;
}

static void mla_bf16_rows(const mla_plan *p, int64_t b, int64_t t0, int64_t n, mla_scratch *s) {
    mla_bf16_rows_to(p, b, t0, n, s->krow, s->rrow);
}

/* Float form: one step of keys [t0, t0 + n). */
static bool mla_step_float(const mla_plan *p, const fia_work_item *it, mla_scratch *s, int64_t t0,
                           int64_t n, bool first) {
    const fia_kernels *k = p->kern;
    const int64_t rows = it->qn * p->N, b = it->b, T = p->step;
    mla_load_rows(p, &p->k, b, t0, n, s->kr, MLA_DK, s->tmp);
    if (p->bf16qk) { /* K from its bf16 rows; kr keeps the fp32 latent rows for P.V */
        mla_bf16_rows(p, b, t0, n, s);
        fia_bf16_pack_kt(n, s->krow, s->rrow, s->ktb);
        fia_bf16_qk_avx512bf16(rows, n, s->qb, MLA_DK, s->ktb, p->scale, s->s, T);
    } else {
        mla_load_rows(p, &p->kr, b, t0, n, s->kr + MLA_DN, MLA_DK, s->tmp);
        k->transpose_f32(s->kr, MLA_DK, s->kt, T, n, MLA_DK);
        k->gemm_f32(rows, n, MLA_DK, s->q, MLA_DK, s->kt, T, s->s, T, NULL);
    }
    if (!mla_mask(p, it, s, t0, n)) return false;

    const float *v = s->kr;
    int64_t ldv = MLA_DK;
    if (!p->v_is_k) {
        mla_load_rows(p, &p->v, b, t0, n, s->vp, MLA_DN, s->tmp);
        v = s->vp;
        ldv = MLA_DN;
    }
    if (p->amla) {
        k->softmax_tile_amla(s->s, T, rows, n, s->m, s->l, s->e, s->ex);
        if (first) {
            k->gemm_f32(rows, MLA_DN, n, s->s, T, v, ldv, s->o, MLA_DN, NULL);
        } else {
            bool shift = false;
            for (int64_t r = 0; r < rows && !shift; r++) shift = s->ex[r] != 0;
            k->gemm_f32_acc(rows, MLA_DN, n, s->s, T, v, ldv, s->o, MLA_DN,
                            shift ? s->ex : NULL);
        }
    } else {
        k->softmax_tile(s->s, T, rows, n, s->m, s->l, s->alpha);
        if (first) {
            k->gemm_f32(rows, MLA_DN, n, s->s, T, v, ldv, s->o, MLA_DN, NULL);
        } else {
            bool scale = false;
            for (int64_t r = 0; r < rows && !scale; r++) scale = s->alpha[r] != 1.0f;
            if (scale)
                k->gemm_f32(rows, MLA_DN, n, s->s, T, v, ldv, s->o, MLA_DN, s->alpha);
            else
                k->gemm_f32_acc(rows, MLA_DN, n, s->s, T, v, ldv, s->o, MLA_DN, NULL);
        }
    }
    return true;
}

/* AMX form (bf16 query and latent): one step of keys [t0, t0 + n), kernels/amx.h; the kernel
 * prefetches the rows of keys [nt0, nt0 + nn) of batch nb (the next step) between its tile
 * operations (PA_NZ: the 512-byte chunk regions that hold them). */
static bool mla_step_amx(const mla_plan *p, const fia_work_item *it, mla_scratch *s, int64_t t0,
                         int64_t n, bool first, int64_t nb, int64_t nt0, int64_t nn) {
    const int64_t rows = it->qn * p->N;
    mla_bf16_rows(p, it->b, t0, n, s);
    for (int64_t pp = 0; pp < it->qn; pp++) {
        int64_t a = s->lo[pp] - t0, e = s->hi[pp] - t0 + 1;
        if (a < 0) a = 0;
        if (e > n) e = n;
        if (e < a) e = a;
        for (int64_t h = 0; h < p->N; h++) {
            s->ka[pp * p->N + h] = (int32_t)a;
            s->ke[pp * p->N + h] = (int32_t)e;
        }
    }
    const fia_amx_mla_args args = {rows, (rows + 15) / 16 * 16, n, s->krow, s->rrow, s->qt,
                                   s->ka, s->ke, p->scale, first, p->p_bf16, s->m, s->l, s->o,
                                   MLA_DN, s->amx};
    const fia_amx_mla_ext x = {p->k.s_nz * p->k.esize, p->kr.s_nz * p->kr.esize, p->amla, s->e};
    if (nn <= 0) return fia_amx_mla_step_ext(&args, &x, NULL);
    if (p->k.nz_w) {
        const fia_amx_mla_next next = {{s->npf, NULL}, {16 * 32, 0},
                                       mla_nz_regions(p, nb, nt0, nn, s->npf)};
        return fia_amx_mla_step_ext(&args, &x, &next);
    }
    mla_bf16_rows_to(p, nb, nt0, nn, s->nkrow, s->nrrow);
    const fia_amx_mla_next next = {{(const void *const *)s->nkrow, (const void *const *)s->nrrow},
                                   {MLA_DN * 2, MLA_DR * 2}, nn};
    return fia_amx_mla_step_ext(&args, &x, &next);
}

/* int8 form: one step of keys [t0, t0 + n). */
static bool mla_step_int8(const mla_plan *p, const fia_work_item *it, mla_scratch *s, int64_t t0,
                          int64_t n, bool first) {
    const fia_kernels *k = p->kern;
    const fia_i8_kernels *i8 = p->i8;
    const int64_t rows = it->qn * p->N, b = it->b, T = p->step;
    /* rope part in fp32, then the int8 latent dot products added on top */
    mla_load_rows(p, &p->kr, b, t0, n, s->kr, MLA_DR, s->tmp);
    k->transpose_f32(s->kr, MLA_DR, s->kt, T, n, MLA_DR);
    k->gemm_f32(rows, n, MLA_DR, s->qr, MLA_DR, s->kt, T, s->s, T, NULL);
    mla_int8_rows(p, &p->k, b, t0, n, s->kptr, s->k8);
    i8->pack_b_nk(s->kptr, n, MLA_DN, s->kpack);
    i8->gemm(rows, n, MLA_DN, s->q8, MLA_DN, s->kpack, s->s, T, s->qs, s->ones, 128);
    if (!mla_mask(p, it, s, t0, n)) return false;
    k->softmax_tile(s->s, T, rows, n, s->m, s->l, s->alpha);

    /* P (in [0, 1] relative to the running max) to u8 codes with a per-row scale */
    const float sv = *p->sv;
    for (int64_t r = 0; r < rows; r++) {
        /* mx = 0 when the row has no positive probability (codes all 0) */
        const float mx = k->p_to_u8(s->s + r * T, n, s->p8 + r * T);
        s->ps[r] = mx > 0.0f ? sv * mx / 255.0f : 0.0f;
    }
    if (p->v_is_k) {
        memcpy(s->vptr, s->kptr, (size_t)n * sizeof *s->vptr);
    } else {
        mla_int8_rows(p, &p->v, b, t0, n, s->vptr, s->k8);
    }
    i8->pack_b_kn(s->vptr, n, MLA_DN, s->vpack);
    i8->gemm(rows, MLA_DN, n, s->p8, T, s->vpack, s->o, MLA_DN, s->ps,
             first ? NULL : s->alpha, 0);
    return true;
}

static void mla_write_row(const mla_plan *p, int64_t b, int64_t h, int64_t i, float m, float l,
                          float *o) {
    const fia_batch *bi = &p->batches[b];
    const float lse = fia_softmax_state_finish(m, l, o, MLA_DN);
    char *dst = (char *)mla_seq_row(&p->o, bi, b, h, i);
    fia_kernels_from_f32(p->kern, o, p->o.dtype, dst, MLA_DN);
    if (p->lse) p->lse[b * p->lse_s_b + (bi->q_tok0 + i) * p->lse_s_t + h * p->lse_s_h] = lse;
}

static void mla_run_tile(const mla_exec *ex, const fia_work_item *it, const fia_work_item *next,
                         mla_scratch *s) {
    const mla_plan *p = ex->p;
    const fia_batch *bi = &p->batches[it->b];
    const int64_t rows = it->qn * p->N, T = p->step;
    mla_pack_query(p, it, s);
    for (int64_t pp = 0; pp < it->qn; pp++) mla_row_range(p, bi, it->q0 + pp, &s->lo[pp], &s->hi[pp]);
    for (int64_t r = 0; r < rows; r++) {
        s->m[r] = -INFINITY;
        s->l[r] = 0.0f;
        s->e[r] = 0;
        s->ones[r] = 1.0f;
    }
    bool first = true;
    for (int64_t t0 = it->kv0; t0 < it->kv1;) {
        int64_t t1 = (t0 / T + 1) * T;
        if (t1 > it->kv1) t1 = it->kv1;
        /* the next step's rows (or the next item's first step) stream in meanwhile: prefetched
         * here, or by the AMX kernel between its tile operations */
        int64_t nb = it->b, nt0 = t1, nn = 0;
        if (t1 < it->kv1) {
            nn = it->kv1 - t1 < T ? it->kv1 - t1 : T;
        } else if (next) {
            const int64_t e = (next->kv0 / T + 1) * T;
            nb = next->b;
            nt0 = next->kv0;
            nn = (e < next->kv1 ? e : next->kv1) - next->kv0;
        }
        if (nn > 0 && !p->amx) {
            mla_prefetch(p, &p->k, nb, nt0, nn);
            mla_prefetch(p, &p->kr, nb, nt0, nn);
        }
        const bool any = p->quant ? mla_step_int8(p, it, s, t0, t1 - t0, first)
                         : p->amx ? mla_step_amx(p, it, s, t0, t1 - t0, first, nb, nt0, nn)
                                  : mla_step_float(p, it, s, t0, t1 - t0, first);
        if (any) first = false;
        t0 = t1;
    }
    /* AMLA: the accumulator is relative to 2^-e, i.e. a softmax state with m = -e ln2 */
    if (p->amla)
        for (int64_t r = 0; r < rows; r++)
            if (s->m[r] != -INFINITY) s->m[r] = -(float)s->e[r] * 0.69314718055994530942f;
    if (it->group < 0) {
        for (int64_t r = 0; r < rows; r++)
            mla_write_row(p, it->b, r % p->N, it->q0 + r / p->N, first ? -INFINITY : s->m[r],
                          s->l[r], s->o + r * MLA_DN);
        return;
    }
    fia_splitkv_store(ex->partials, &p->work.groups[it->group], it->chunk, rows, MLA_DN, first,
                      s->m, s->l, s->o, MLA_DN);
}

static void mla_run_zero(const mla_exec *ex, const fia_work_item *it, mla_scratch *s) {
    const mla_plan *p = ex->p;
    for (int64_t i = it->q0; i < it->q0 + it->qn; i++)
        for (int64_t h = 0; h < p->N; h++) mla_write_row(p, it->b, h, i, -INFINITY, 0.0f, s->o);
}

static mla_scratch mla_scratch_of(const mla_exec *ex, int32_t tid) {
    mla_scratch s;
    mla_scratch_carve(ex->p, fia_thread_scratch(ex->ws, ex->scratch_bytes, tid), &s);
    return s;
}

static void mla_item_task(void *arg, int64_t task, int64_t next_task, int32_t tid) {
    const mla_exec *ex = arg;
    const mla_plan *p = ex->p;
    const fia_work_item *it = &p->work.items[task];
    mla_scratch s = mla_scratch_of(ex, tid);
    if (it->kind == FIA_WORK_ZERO) mla_run_zero(ex, it, &s);
    else mla_run_tile(ex, it, fia_worklist_next_tile(&p->work, task, next_task), &s);
}

typedef struct mla_merge_ctx {
    const mla_plan *p;
    const fia_work_group *g;
} mla_merge_ctx;

static void mla_merge_write(const void *arg, int64_t r, float m, float l, float *o) {
    const mla_merge_ctx *c = arg;
    mla_write_row(c->p, c->g->b, r % c->p->N, c->g->q0 + r / c->p->N, m, l, o);
}

/* Merge task: row block task % MLA_MERGE_SPLIT of group task / MLA_MERGE_SPLIT, so that all
 * threads share the merge of a single group (decode of one request); every row is merged the
 * same way whichever task does it. */
static void mla_merge_task(void *arg, int64_t task, int32_t tid) {
    const mla_exec *ex = arg;
    const mla_merge_ctx c = {ex->p, &ex->p->work.groups[task / MLA_MERGE_SPLIT]};
    mla_scratch s = mla_scratch_of(ex, tid);
    const int64_t rows = c.g->qn * ex->p->N, part = task % MLA_MERGE_SPLIT;
    fia_splitkv_merge_rows(ex->partials, c.g, rows, MLA_DN, rows * part / MLA_MERGE_SPLIT,
                           rows * (part + 1) / MLA_MERGE_SPLIT, s.o, mla_merge_write, &c);
}

static void mla_execute(fia_plan *plan, void *workspace) {
    const mla_plan *p = (const mla_plan *)plan;
    mla_exec ex = {p, workspace, NULL, mla_scratch_carve(p, NULL, NULL)};
    mla_workspace_layout(p, workspace, &ex.partials);
    fia_pool_run_ahead(plan->ctx->pool, p->work.num_items, mla_item_task, &ex);
    fia_pool_run(plan->ctx->pool, p->work.num_groups * MLA_MERGE_SPLIT, mla_merge_task, &ex);
}

/* ---- schedule ------------------------------------------------------------------------------ */

/* The work list: one item per query tile, split into chunk groups where the tile sees more
 * than MLA_CHUNK keys; ZERO items for rows past the actual query length. */
static fia_status mla_schedule(mla_plan *p) {
    const int64_t tp = p->pos_per_tile, C = MLA_CHUNK;
    fia_worklist *wl = &p->work;
    for (int pass = 0; pass < 2; pass++) {
        fia_worklist_begin(wl, pass);
        for (int64_t b = 0; b < p->B; b++) {
            const fia_batch *bi = &p->batches[b];
            for (int64_t q0 = 0; q0 < bi->sq; q0 += tp) {
                const int64_t qn = bi->sq - q0 < tp ? bi->sq - q0 : tp, rows = qn * p->N;
                int64_t lo, hi, unused;
                mla_row_range(p, bi, q0, &lo, &unused);
                mla_row_range(p, bi, q0 + qn - 1, &unused, &hi);
                const int64_t kv0 = lo, kv1 = hi + 1 > lo ? hi + 1 : lo;
                if (kv1 - kv0 <= C) fia_worklist_tile(wl, b, 0, 1, q0, qn, kv0, kv1, rows);
                else fia_worklist_split(wl, b, 0, 1, q0, qn, kv0, kv1, C, rows, MLA_DN);
            }
            const int64_t rows_alloc = !p->tnd ? p->S1 : b + 1 == p->B ? p->S1 - bi->q_tok0 : bi->sq;
            if (rows_alloc > bi->sq)
                fia_worklist_zero(wl, b, bi->sq, rows_alloc - bi->sq, (rows_alloc - bi->sq) * p->N);
            FIA_TRY(fia_worklist_check(wl));
        }
        FIA_TRY(fia_worklist_end(wl));
    }
    fia_worklist_sort(wl);
    return FIA_STATUS_SUCCESS;
}

/* ---- validation ---------------------------------------------------------------------------- */

static void mla_destroy(fia_plan *plan) {
    mla_plan *p = (mla_plan *)plan;
    free(p->block_table);
    free(p->batches);
    fia_worklist_free(&p->work);
    free(p);
}

/* The latent / rope / value cache: dense in the query's layout, or paged (PA_BSND 4-D or 3-D,
 * PA_NZ 5-D). Checks the width `dim`; *blocks gets the block count (paged) or *seq the S2 / T2
 * (dense) and *batch the batch dim (dense non-TND). */
static fia_status mla_parse_cache(const mla_plan *p, const fia_tensor *t, const char *name,
                                  fia_layout in_layout, int64_t dim, fia_seq *c, int64_t *blocks,
                                  int64_t *seq, int64_t *batch) {
    memset(c, 0, sizeof *c);
    c->base = fia_tensor_ptr(t);
    c->dtype = t->dtype;
    c->esize = (int64_t)fia_dtype_size(t->dtype);
    c->dim = dim;
    const int64_t *sh = t->shape, *st = t->strides, bs = p->pages.block_size;
    if (!p->paged) {
        fia_seq s;
        fia_dims d;
        FIA_TRY(fia_seq_parse(t, name, in_layout, 1, &s, &d));
        if (d.D != dim)
            return FIA_INVALID("%s head dim is %lld, must be %lld", name, (long long)d.D,
                               (long long)dim);
        c->s_b = s.s_b;
        c->s_t = s.s_t;
        *seq = d.S;
        *batch = d.B;
        return FIA_STATUS_SUCCESS;
    }
    *blocks = sh[0];
    if (t->ndim == 5) {
        const int64_t w = 32 / c->esize;
        if (sh[1] != 1)
            return FIA_INVALID("%s (PA_NZ) dim 1 is %lld, must be 1", name, (long long)sh[1]);
        if (sh[2] != dim / w || sh[4] != w) /* dim / w, not sh[2] * w: dims may be huge */
            return FIA_INVALID("%s (PA_NZ) must be [blocks, 1, %lld, block_size, %lld]; dims 2 "
                               "and 4 are %lld and %lld", name, (long long)(dim / w), (long long)w,
                               (long long)sh[2], (long long)sh[4]);
        FIA_TRY(fia_tensor_check_dim(t, name, 3, bs, "block_size"));
        if (st[3] != w)
            return FIA_UNSUPPORTED("%s (PA_NZ) dim 3 stride is %lld, must be %lld (rows of a "
                                   "chunk adjacent)", name, (long long)st[3], (long long)w);
        c->nz_w = w;
        c->s_blk = st[0];
        c->s_nz = st[2];
        return FIA_STATUS_SUCCESS;
    }
    if (t->ndim == 4) {
        FIA_TRY(fia_tensor_check_dim(t, name, 1, bs, "block_size"));
        FIA_TRY(fia_tensor_check_dim(t, name, 2, 1, "the one latent head"));
        FIA_TRY(fia_tensor_check_dim(t, name, 3, dim, "required"));
    } else if (t->ndim == 3) {
        FIA_TRY(fia_tensor_check_dim(t, name, 1, bs, "block_size"));
        FIA_TRY(fia_tensor_check_dim(t, name, 2, dim, "required"));
    } else {
        return FIA_INVALID("%s has %d dims: a paged MLA cache is [blocks, block_size, 1, %lld] "
                           "(PA_BSND), [blocks, block_size, %lld] or 5-D PA_NZ", name,
                           (int)t->ndim, (long long)dim, (long long)dim);
    }
    c->s_blk = st[0];
    c->s_t = st[1];
    return FIA_STATUS_SUCCESS;
}

/* A per-tensor fp32 dequant scale (one element). */
static fia_status mla_scalar_scale(const fia_tensor *t, const char *name, const float **out) {
    if (!t) return FIA_INVALID("%s is required with an int8 key", name);
    FIA_TRY(fia_tensor_check(t, name, false));
    if (t->dtype != FIA_DTYPE_FLOAT32)
        return FIA_INVALID("%s dtype is %s, must be float32", name, fia_dtype_name(t->dtype));
    if (fia_tensor_numel(t) != 1)
        return FIA_INVALID("%s has %lld elements, must have 1 (per tensor)", name,
                           (long long)fia_tensor_numel(t));
    *out = fia_tensor_ptr(t);
    return FIA_STATUS_SUCCESS;
}

/* The tensors of the MLA path (dtypes depend on the form, checked below; dequant scales and
 * softmax_lse: when the form or the flag asks for them). */
#define MLA_T(m) offsetof(fia_fused_infer_attention_score_tensors, m)
#define MLA_REQ (FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT)
static const fia_tensor_spec mla_tensors[] = {
    {"query", MLA_T(query), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"query_rope", MLA_T(query_rope), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"key", MLA_T(key), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"key_rope", MLA_T(key_rope), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"value", MLA_T(value), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"attention_out", MLA_T(attention_out), MLA_REQ, 0, NULL, -1, 0, NULL},
    {"atten_mask", MLA_T(atten_mask), 0, 0, NULL, -1, 0, NULL},
    {"block_table", MLA_T(block_table), 0, 0, NULL, -1, 0, NULL},
};
#undef MLA_REQ
#undef MLA_T

/* The dtypes of the two forms: float (query, ropes, output alike; caches float) or int8
 * (int8 query and latent cache, fp16/bf16 ropes and output, fp32 dequant scales). */
static fia_status mla_check_dtypes(mla_plan *p, const fia_fused_infer_attention_score_tensors *t) {
    const fia_dtype qt = t->query->dtype, kt = t->key->dtype;
    p->quant = kt == FIA_DTYPE_INT8;
    if (p->quant) {
        if (qt != FIA_DTYPE_INT8)
            return FIA_INVALID("query dtype is %s: with an int8 key (MLA int8 form) query must "
                               "be int8", fia_dtype_name(qt));
        if (t->query_rope->dtype != FIA_DTYPE_FLOAT16 && t->query_rope->dtype != FIA_DTYPE_BFLOAT16)
            return FIA_INVALID("query_rope dtype is %s, must be float16 or bfloat16 (int8 form)",
                               fia_dtype_name(t->query_rope->dtype));
        if (t->key_rope->dtype != FIA_DTYPE_FLOAT16 && t->key_rope->dtype != FIA_DTYPE_BFLOAT16)
            return FIA_INVALID("key_rope dtype is %s, must be float16 or bfloat16 (int8 form)",
                               fia_dtype_name(t->key_rope->dtype));
        const fia_dtype ot = t->attention_out->dtype;
        if (ot != FIA_DTYPE_BFLOAT16 && ot != FIA_DTYPE_FLOAT16)
            return FIA_INVALID("attention_out dtype is %s, must be bfloat16 or float16 (int8 "
                               "form)", fia_dtype_name(ot));
        FIA_TRY(mla_scalar_scale(t->dequant_scale_key, "dequant_scale_key", &p->sk));
        FIA_TRY(mla_scalar_scale(t->dequant_scale_value, "dequant_scale_value", &p->sv));
        if (!t->dequant_scale_query)
            return FIA_INVALID("dequant_scale_query is required with an int8 query");
        FIA_TRY(fia_tensor_check(t->dequant_scale_query, "dequant_scale_query", false));
        if (t->dequant_scale_query->dtype != FIA_DTYPE_FLOAT32)
            return FIA_INVALID("dequant_scale_query dtype is %s, must be float32",
                               fia_dtype_name(t->dequant_scale_query->dtype));
    } else {
        if (!fia_dtype_is_float(qt))
            return FIA_INVALID("query dtype is %s, must be float16, bfloat16 or float32 (or int8 "
                               "with an int8 key)", fia_dtype_name(qt));
        if (!fia_dtype_is_float(kt))
            return FIA_INVALID("key dtype is %s, must be a float dtype or int8",
                               fia_dtype_name(kt));
        if (t->query_rope->dtype != qt)
            return FIA_INVALID("query_rope dtype is %s, query is %s",
                               fia_dtype_name(t->query_rope->dtype), fia_dtype_name(qt));
        if (t->key_rope->dtype != kt)
            return FIA_INVALID("key_rope dtype is %s, key is %s",
                               fia_dtype_name(t->key_rope->dtype), fia_dtype_name(kt));
        if (t->attention_out->dtype != qt)
            return FIA_INVALID("attention_out dtype is %s, query is %s",
                               fia_dtype_name(t->attention_out->dtype), fia_dtype_name(qt));
        if (t->dequant_scale_query || t->dequant_scale_key || t->dequant_scale_value)
            return FIA_INVALID("dequant_scale_query/key/value are given but key is %s, not int8",
                               fia_dtype_name(kt));
    }
    if (t->value->dtype != kt)
        return FIA_INVALID("value dtype is %s, key is %s", fia_dtype_name(t->value->dtype),
                           fia_dtype_name(kt));

    return FIA_STATUS_SUCCESS;
}

/* The latent cache (key, also read as value) and its rope: paged (PA_BSND, BnBsH, PA_NZ) or
 * dense in in_layout; *kS: the dense sequence dim, *kblocks: the paged block count. */
static fia_status mla_parse_caches(mla_plan *p, const fia_fused_infer_attention_score_tensors *t,
                                   const fia_fused_infer_attention_score_params *prm,
                                   fia_layout in_layout, int64_t *kS_out, int64_t *kblocks_out) {
    const int64_t B = p->B;
    p->paged = t->block_table != NULL;
    if (p->paged) {
        const int64_t bs = prm->block_size;
        if (bs < 16 || bs > FIA_MAX_BLOCK_SIZE || bs % 16 != 0)
            return FIA_INVALID("block_size is %lld, must be a multiple of 16 up to %d with MLA",
                               (long long)bs, FIA_MAX_BLOCK_SIZE);
        p->pages.block_size = bs;
    }
    int64_t kblocks = 0, rblocks = 0, vblocks = 0, kS = 0, rS = 0, vS = 0, kB = 0, rB = 0, vB = 0;
    FIA_TRY(mla_parse_cache(p, t->key, "key", in_layout, MLA_DN, &p->k, &kblocks, &kS, &kB));
    FIA_TRY(mla_parse_cache(p, t->key_rope, "key_rope", in_layout, MLA_DR, &p->kr, &rblocks, &rS,
                            &rB));
    FIA_TRY(mla_parse_cache(p, t->value, "value", in_layout, MLA_DN, &p->v, &vblocks, &vS, &vB));
    if (t->value->ndim != t->key->ndim)
        return FIA_INVALID("value has %d dims, key has %d", (int)t->value->ndim, (int)t->key->ndim);
    for (int32_t d = 0; d < t->key->ndim; d++)
        if (t->value->shape[d] != t->key->shape[d])
            return FIA_INVALID("value dim %d is %lld, key has %lld (value is the latent cache)",
                               (int)d, (long long)t->value->shape[d], (long long)t->key->shape[d]);
    p->v_is_k = fia_tensor_ptr(t->value) == fia_tensor_ptr(t->key) && !memcmp(t->value->strides, t->key->strides,
                                                           sizeof(int64_t) * (size_t)t->key->ndim);
    if (p->paged) {
        if (rblocks != kblocks)
            return FIA_INVALID("key_rope dim 0 (blocks) is %lld, key has %lld", (long long)rblocks,
                               (long long)kblocks);
    } else {
        if (!p->tnd && (kB != B || rB != B))
            return FIA_INVALID("key / key_rope dim 0 (batch) are %lld / %lld, query has %lld",
                               (long long)kB, (long long)rB, (long long)B);
        if (rS != kS)
            return FIA_INVALID("key_rope sequence dim is %lld, key has %lld", (long long)rS,
                               (long long)kS);
    }
    (void)vblocks, (void)vS, (void)vB;

    *kS_out = kS;
    *kblocks_out = kblocks;
    return FIA_STATUS_SUCCESS;
}

/* attention_out ([N, T, 512] for TND_NTD, else the query's layout) and softmax_lse. */
static fia_status mla_parse_outputs(mla_plan *p, const fia_fused_infer_attention_score_tensors *t,
                                    const fia_fused_infer_attention_score_params *prm,
                                    fia_layout layout, fia_layout in_layout, const fia_dims *qdp) {
    const fia_dims qd = *qdp;
    const int64_t N = p->N, B = p->B;
    if (layout == FIA_LAYOUT_TND_NTD) {
        const fia_tensor *o = t->attention_out;
        FIA_TRY(fia_tensor_check_ndim(o, "attention_out", 3));
        FIA_TRY(fia_tensor_check_dim(o, "attention_out", 0, N, "num_heads (TND_NTD: [N, T, 512])"));
        FIA_TRY(fia_tensor_check_dim(o, "attention_out", 1, qd.S, "query T"));
        FIA_TRY(fia_tensor_check_dim(o, "attention_out", 2, MLA_DN, "required"));
        memset(&p->o, 0, sizeof p->o);
        p->o.base = fia_tensor_ptr(o);
        p->o.dtype = o->dtype;
        p->o.esize = (int64_t)fia_dtype_size(o->dtype);
        p->o.s_h = o->strides[0];
        p->o.s_t = o->strides[1];
    } else {
        fia_dims od;
        FIA_TRY(fia_seq_parse(t->attention_out, "attention_out", in_layout, N, &p->o, &od));
        if (od.D != MLA_DN)
            return FIA_INVALID("attention_out head dim is %lld, must be 512", (long long)od.D);
        FIA_TRY(fia_check_out_dims(&od, &qd, p->tnd, B));
    }
    p->lse = NULL;
    if (prm->softmax_lse_flag)
        FIA_TRY(fia_parse_lse(t->softmax_lse, p->tnd, B, N, qd.S, "num_heads",
                              p->tnd ? "query T" : "query S", &p->lse, &p->lse_s_b, &p->lse_s_t,
                              &p->lse_s_h));
    return FIA_STATUS_SUCCESS;
}

/* sparse_mode (0 or 3) and the mask (compressed, with sparse_mode 3). */
static fia_status mla_check_mask(mla_plan *p, const fia_fused_infer_attention_score_tensors *t,
                                 int32_t mode) {
    if (mode != 0 && mode != 3) {
        if (mode < 0 || mode > 9) return FIA_INVALID("sparse_mode is %d, must be 0 or 3", (int)mode);
        return FIA_UNSUPPORTED("sparse_mode %d is not supported with MLA (0 and 3 are)", (int)mode);
    }
    p->causal = mode == 3;
    if (t->atten_mask) {
        if (mode == 0)
            return FIA_UNSUPPORTED("atten_mask with sparse_mode 0 is not supported with MLA");
        if (!fia_is_compressed_mask(t->atten_mask))
            return FIA_INVALID("atten_mask must be the compressed [2048, 2048] form with "
                               "sparse_mode 3");
    }
    return FIA_STATUS_SUCCESS;
}

/* The int8 query scale: [B, S1, N] / [B, S1, N, 1] (TND: [T, N] / [T, N, 1]). */
static fia_status mla_parse_query_scale(mla_plan *p, fia_context *ctx, const fia_tensor *s,
                                        const fia_dims *qd) {
    const int32_t base = p->tnd ? 2 : 3;
    const bool ok = (s->ndim == base || (s->ndim == base + 1 && s->shape[base] == 1)) &&
                    (p->tnd ? s->shape[0] == qd->S && s->shape[1] == p->N
                            : s->shape[0] == p->B && s->shape[1] == qd->S && s->shape[2] == p->N);
    if (!ok)
        return FIA_INVALID("dequant_scale_query must be %s (per token and head); it has %d "
                           "dims", p->tnd ? "[T, N] or [T, N, 1]" : "[B, S1, N] or [B, S1, N, 1]",
                           (int)s->ndim);
    p->sq = fia_tensor_ptr(s);
    p->sq_s_b = p->tnd ? 0 : s->strides[0];
    p->sq_s_t = p->tnd ? s->strides[0] : s->strides[1];
    p->sq_s_h = p->tnd ? s->strides[1] : s->strides[2];
    p->i8 = &ctx->kernels.i8;
    return FIA_STATUS_SUCCESS;
}

static fia_status mla_validate(mla_plan *p, fia_context *ctx,
                               const fia_fused_infer_attention_score_tensors *t,
                               const fia_fused_infer_attention_score_params *prm) {
    if (!t->query_rope) return FIA_INVALID("key_rope is given but query_rope is NULL");
    if (!t->key_rope) return FIA_INVALID("query_rope is given but key_rope is NULL");
    FIA_TRY(fia_tensor_spec_check(t, mla_tensors, FIA_SPEC_COUNT(mla_tensors)));
    if (t->antiquant_scale || t->antiquant_offset)
        return FIA_UNSUPPORTED("antiquant is not supported with MLA (use the int8 form with "
                               "dequant_scale_query/key/value)");
    if (prm->softmax_lse_flag) {
        if (!t->softmax_lse) return FIA_INVALID("softmax_lse is NULL but softmax_lse_flag is set");
        FIA_TRY(fia_tensor_check(t->softmax_lse, "softmax_lse", false));
    }

    FIA_TRY(mla_check_dtypes(p, t));

    /* heads, scale, rescale variant */
    const int64_t N = prm->num_heads;
    if (N < 1 || N > FIA_MAX_LATENT_HEADS)
        return FIA_INVALID("num_heads is %lld, must be 1..%d with MLA", (long long)N, FIA_MAX_LATENT_HEADS);
    if (prm->num_key_value_heads != 0 && prm->num_key_value_heads != 1)
        return FIA_INVALID("num_key_value_heads is %lld, must be 1 (or 0) with MLA: the latent "
                           "cache has one head", (long long)prm->num_key_value_heads);
    if (!isfinite(prm->scale)) return FIA_INVALID("scale is not finite");
    p->N = N;
    p->scale = (float)prm->scale;
    if (prm->mla_rescale < FIA_MLA_RESCALE_DEFAULT || prm->mla_rescale > FIA_MLA_RESCALE_AMLA)
        return FIA_INVALID("mla_rescale is %d, must be 0 (default), 1 (multiply) or 2 (AMLA)",
                           (int)prm->mla_rescale);
    p->amla = prm->mla_rescale == FIA_MLA_RESCALE_AMLA && !p->quant;

    /* layout and query */
    const fia_layout layout = prm->input_layout;
    if (layout != FIA_LAYOUT_BSH && layout != FIA_LAYOUT_BSND && layout != FIA_LAYOUT_BNSD &&
        layout != FIA_LAYOUT_TND && layout != FIA_LAYOUT_TND_NTD)
        return FIA_UNSUPPORTED("input_layout %s is not supported with MLA (BSH, BSND, BNSD, TND, "
                               "TND_NTD are)", fia_layout_name(layout));
    p->tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_TND_NTD;
    const fia_layout in_layout = p->tnd ? FIA_LAYOUT_TND : layout;
    fia_dims qd, rd;
    FIA_TRY(fia_seq_parse(t->query, "query", in_layout, N, &p->q, &qd));
    if (qd.D != MLA_DN)
        return FIA_UNSUPPORTED("query head dim is %lld: MLA supports 512 (+ 64 rope)",
                               (long long)qd.D);
    FIA_TRY(fia_seq_parse(t->query_rope, "query_rope", in_layout, N, &p->qr, &rd));
    if (rd.D != MLA_DR)
        return FIA_UNSUPPORTED("query_rope head dim is %lld: MLA supports 64", (long long)rd.D);
    if (rd.B != qd.B || rd.S != qd.S)
        return FIA_INVALID("query_rope dims 0/1 are %lld/%lld, query has %lld/%lld",
                           (long long)rd.B, (long long)rd.S, (long long)qd.B, (long long)qd.S);
    p->S1 = qd.S;
    FIA_TRY(fia_parse_batch_count(p->tnd, prm->actual_seq_lengths, prm->actual_seq_lengths_count,
                                  "actual_seq_lengths", "TND", qd.B, FIA_MAX_BATCH, &p->B));
    if (!p->tnd && qd.S < 1) return FIA_INVALID("query sequence dim is 0");
    const int64_t B = p->B;

    int64_t kS = 0, kblocks = 0;
    FIA_TRY(mla_parse_caches(p, t, prm, in_layout, &kS, &kblocks));

    /* lengths and the block table */
    FIA_TRY(fia_parse_batches(t, prm, B, p->tnd, qd.S, kS, p->pages.block_size, kblocks,
                              &p->batches, &p->block_table, &p->pages.cols));
    p->pages.table = p->block_table;

    FIA_TRY(mla_check_mask(p, t, prm->sparse_mode));
    if (p->quant) FIA_TRY(mla_parse_query_scale(p, ctx, t->dequant_scale_query, &qd));

    FIA_TRY(mla_parse_outputs(p, t, prm, layout, in_layout, &qd));
    return FIA_STATUS_SUCCESS;
}

fia_status fia_mla_plan(fia_context *ctx, const fia_fused_infer_attention_score_tensors *t,
                        const fia_fused_infer_attention_score_params *prm, fia_plan **plan) {
    mla_plan *p = calloc(1, sizeof *p);
    if (!p) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    p->base.ctx = ctx;
    p->base.execute = mla_execute;
    p->base.destroy = mla_destroy;
    p->kern = &ctx->kernels.core;
    p->num_threads = ctx->num_threads;
    fia_status st = mla_validate(p, ctx, t, prm);
    if (st == FIA_STATUS_SUCCESS) {
        /* AMX: bf16 query and latent cache (PA_BSND, PA_NZ or dense; the latent and its rope
         * both PA_NZ or neither, PA_NZ with nonzero chunk strides: the kernel reads a chunk
         * stride of 0 as rows stored whole, while a view may alias a row's chunks), value = key,
         * every rescale variant (AMLA's in the kernel) */
        p->amx = ctx->amx_bf16 && !p->quant && p->v_is_k &&
                 t->query->dtype == FIA_DTYPE_BFLOAT16 && t->key->dtype == FIA_DTYPE_BFLOAT16 &&
                 (p->k.nz_w == 0) == (p->kr.nz_w == 0) &&
                 (p->k.nz_w == 0 || (p->k.s_nz != 0 && p->kr.s_nz != 0));
        p->bf16qk = !p->amx && ctx->bf16dp_fast && !p->quant &&
                    t->query->dtype == FIA_DTYPE_BFLOAT16 && t->key->dtype == FIA_DTYPE_BFLOAT16 &&
                    p->k.nz_w == 0 && p->kr.nz_w == 0;
        const char *pb = getenv("FIA_MLA_P_BF16");
        p->p_bf16 = p->amx && pb && !strcmp(pb, "1");
        p->step = p->quant ? MLA_STEP_INT8 : p->amx ? FIA_AMX_MLA_STEP : MLA_STEP_FLOAT;
        p->pos_per_tile = MLA_ROWS / p->N;
        p->rows_max = p->pos_per_tile * p->N;
        if (p->amx) p->rows_max = (p->rows_max + 15) / 16 * 16;
        p->base.unit = p->amx                                           ? "amx_bf16"
                       : p->bf16qk                                      ? "bf16dp"
                       : p->quant && (p->i8->features & FIA_CPU_AMX_INT8) ? "amx_int8"
                       : p->quant && (ctx->features & FIA_CPU_AVX512VNNI) ? "vnni"
                                                                          : "fma";
        st = mla_schedule(p);
    }
    if (st != FIA_STATUS_SUCCESS) {
        mla_destroy(&p->base);
        return st;
    }
    p->base.workspace_bytes = mla_workspace_layout(p, NULL, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: fused_infer_attention_score (MLA%s%s): B=%lld N=%lld items=%lld "
                "split-groups=%lld workspace=%zu kernels=%s%s%s\n", p->quant ? ", int8" : "",
                p->amla ? ", AMLA" : "", (long long)p->B, (long long)p->N,
                (long long)p->work.num_items, (long long)p->work.num_groups, p->base.workspace_bytes,
                p->kern->name, p->quant ? " + int8 " : "", p->quant ? p->i8->name
                : p->amx ? (p->p_bf16 ? " (amx bf16, P in bf16)" : " (amx bf16)")
                : p->bf16qk ? " (bf16 dot product Q.K^T)" : "");
    *plan = &p->base;
    return FIA_STATUS_SUCCESS;
}
