/*
 * mla_prolog.c - mla_prolog_v3 (include/fia/prolog.h): validation, planning and execution of
 * the bf16-weight path (weight_quant_mode 0) with bf16 or int8 caches (kv_cache_quant_mode 0-3,
 * mode 3 the 656-byte C8 row) and the int8 query (query_quant_mode 1), for PA_BSND, PA_NZ, BSND
 * and TND caches.
 *
 * Execution, five pool runs over fixed tasks (none depends on the thread count):
 *   1. x . W_DQ -> cq and x . W_DKV_KR -> kvkr (fp32 results), tiles of the tiled gemms;
 *   2. per token: RMSNorm of c_q (-> cqn16, query_norm) and of c_kv (-> kv cache), RoPE of
 *      k_r (-> kr cache);
 *   3. cqn16 . W_UQ_QR -> qcqr (fp32);
 *   4. per token: q_c to bf16, RoPE of every head's q_r -> query_rope_out;
 *   5. per head and row tile: q_c . W_UK[n] -> query_out (bf16, straight into the output).
 * The per-token steps run the chain row kernels of the context (ctx->kernels.chain:
 * rms_norm_row, rope_row in the interleave-half form) on the projections rounded to bf16 (the
 * golden's rounding point), and the cache rows land through the shared addressing of
 * sched/kv_addr.h (the one the attention readers use).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/convert.h"
#include "core/params.h"
#include "core/plan.h"
#include "core/status.h"
#include "core/tensor.h"
#include "kernels/sfa_kernels.h"
#include "ops/prolog/gemm.h"
#include "sched/kv_addr.h"
#include "sched/tensor_spec.h"

enum {
    PRO_HCKV = 512,
    PRO_DR = 64,
    PRO_MAX_HEADS = 128,
    PRO_MAX_BLOCK = 1024,
    PRO_MC = 512,     /* rows (tokens) per gemm tile */
    PRO_NC = 256,     /* columns per gemm tile */
    /* packed weights and at least PRO_WIDE_T tokens (compute-bound): the down and up
     * projections run in row tiles of PRO_WIDE_MC tokens over the full width, so that C is
     * dense (oneDNN's blocked matmul writes it in place, no copy) and B is walked once per
     * row tile; decode keeps the column tiles (many tasks stream the weights in parallel) */
    PRO_WIDE_T = 1024,
    PRO_WIDE_MC = 256,
    /* packed weights and 2..PRO_WT_MAX_T tokens (decode): the bf16 down and up projections
     * run transposed (gemm.h desc.wt, W^T . x^T): oneDNN then streams the weight rows as its
     * large A at 14-15 GB/s per thread where its AMX kernel on a packed B at M = 2..16
     * streamed 11-12 (single-thread oneDNN probe, 0.8 GB of weights, this machine). T = 1
     * keeps the packed-B path (its AVX-512 kernel streams as fast there) */
    PRO_WT_MAX_T = 16
};

/* A row-addressed tensor: row r of the flattened leading dims at base + r * rs (elements),
 * plus an optional second stride (heads). */
typedef struct pro_rows {
    char *base;
    fia_dtype dt;
    int64_t rs, hs;
} pro_rows;

typedef struct pro_plan {
    fia_plan base;
    int64_t T, He, Hcq, N, D, W; /* W = N * (D + Dr) */
    int32_t num_threads;
    float eps_cq, eps_ckv, alpha_q, alpha_kv;
    bool paged, qnorm;
    pro_rows x, sin, cos, qo, qro, qn;
    const uint16_t *wdq, *wuq, *wuk, *wdkv;
    int64_t wuk_sn;               /* head stride of W_UK */
    int64_t ld_dq, ld_uq, ld_uk, ld_dkv; /* row strides of the weights */
    float *gcq, *gckv;            /* gammas as float (copied at plan time: they are weights
                                   * read once per row; copying keeps execute simple) */
    const fia_kernels *core;      /* the context's kernels (f32 -> bf16) */
    const fia_chain_kernels *chain; /* RMSNorm and RoPE rows */
    /* caches */
    char *kv, *kr;
    fia_kv_view kvv, krv;         /* kv_addr.h views (PA_NZ: w = 16 elements; dense: s_t) */
    int64_t block_size, blocks;
    int block_shift;              /* fia_kv_shift(block_size) */
    uint16_t *row_kv, *row_kr;    /* PA_NZ: per-thread row buffers (plan-owned) */
    int64_t *slot;                /* paged: cache_index copy; positional: NULL */
    /* quantized caches and query (kv_cache_quant_mode 1-3, query_quant_mode 1) */
    int32_t kvq, qq;              /* the two modes */
    size_t kv_es, kr_es;          /* element sizes of the caches (2 bf16, 1 int8) */
    int64_t kv_w;                 /* kv row width in its elements: 512, or 656 (mode 3) */
    float clip_alpha;             /* mode 3: k_nope_clip_alpha[0] (copied at plan time) */
    float qs_ckv[PRO_HCKV];       /* modes 1 (broadcast) and 2: quant_scale_ckv */
    float qs_ckr[PRO_DR];         /* mode 2: quant_scale_ckr */
    pro_rows dqn;                 /* query_quant_mode 1: dequant_scale_q_nope [T, N, 1] */
    int64_t tok[2];               /* token_x's leading dims ([T] or [B, S]) */
    int tok_dims;
    /* int8 weights (weight_quant_mode 1: W_UQ_QR; 2: also x, W_DQ, W_DKV_KR) */
    int32_t wq;
    float *smooth;                /* [Hcq] smooth_scales_cq (1 where absent) */
    float *dq_uq, *dq_dq, *dq_dkv; /* per-column dequant scales of the int8 weights */
    float *dsx;                   /* [T] dequant_scale_x */
    int64_t *dqnorm_off;          /* [T] element offsets into dequant_scale_q_norm */
    char *dqnorm;
    fia_tgemm g_dq, g_dkv, g_uq, g_uk;
    bool packed;                  /* the gemms run on weights packed at plan time */
    size_t scratch_bytes;         /* per thread */
} pro_plan;

/* Workspace. The projections land in fp32 (cq, qcqr, kvkr) and are rounded to bf16 where
 * they are read, at the contract golden's rounding points: x . W_DQ, cq . W_UQ_QR and
 * x . W_DKV_KR (as a bf16 matmul output would be), then the normalized c_q (cqn) and q_c (qc),
 * which feed the next bf16 gemm. */
typedef struct pro_ws {
    float *cq, *qcqr, *kvkr;
    uint16_t *cqn, *qc;
    uint16_t *qob;                /* query_quant_mode 1: bf16 q_nope [T, N, 512] before quant */
    float *sq;                    /* weight_quant_mode >= 1: per-token scale of the int8 cq */
    char *scratch;
} pro_ws;

/* ---- per-row steps ----------------------------------------------------------------------- */

/* y = bf16(alpha * x / sqrt(mean(x^2) + eps) * gamma) of the fp32 row x rounded to bf16 (in
 * xb, n elements): the chain's rms_norm_row. */
static void prolog_norm(const pro_plan *p, const float *x, int64_t n, const float *gamma,
                        float eps, float alpha, uint16_t *xb, uint16_t *y) {
    p->core->f32_to_bf16(x, xb, n);
    p->chain->rms_norm_row(xb, NULL, FIA_DTYPE_BFLOAT16, gamma, FIA_DTYPE_FLOAT32, n, eps, alpha,
                           y, FIA_DTYPE_BFLOAT16, NULL);
}

/* The MLA interleave-half RoPE of the 64-wide fp32 row x rounded to bf16, with token t's
 * cos / sin: x' = [x[0::2], x[1::2]], y = x' * cos + [-x'[32:], x'[:32]] * sin (y: ydt). */
static void prolog_rope_dt(const pro_plan *p, int64_t t, const float *x, void *y, fia_dtype ydt) {
    const size_t es = fia_dtype_size(p->sin.dt);
    uint16_t xb[PRO_DR];
    p->core->f32_to_bf16(x, xb, PRO_DR);
    p->chain->rope_row(xb, FIA_DTYPE_BFLOAT16, p->cos.base + (size_t)(t * p->cos.rs) * es,
                       p->sin.base + (size_t)(t * p->sin.rs) * es, p->sin.dt, PRO_DR,
                       FIA_ROPE_INTERLEAVE_HALF, y, ydt);
}

static void prolog_rope(const pro_plan *p, int64_t t, const float *x, uint16_t *y) {
    prolog_rope_dt(p, t, x, y, FIA_DTYPE_BFLOAT16);
}

/* sat_int8(rint(v)) (NaN: 0), the contract's int8 store. */
static int8_t pro_sat_i8(float v) {
    if (v != v) return 0;
    v = rintf(v);
    return (int8_t)(v > 127.0f ? 127.0f : v < -128.0f ? -128.0f : v);
}

/* Writes w elements (es bytes each) of row src to cache slot s through its kv_addr.h view
 * (NZ: in chunks of v->w elements). */
static void pro_put(char *base, const fia_kv_view *v, size_t es, fia_kv_slot s, const void *src,
                    int64_t w) {
    const char *from = src;
    if (!v->w) {
        memcpy(base + (size_t)fia_kv_row_off(v, s, 0) * es, from, (size_t)w * es);
        return;
    }
    for (int64_t d = 0; d < w; d += v->w)
        memcpy(base + (size_t)fia_kv_elem_off(v, s, d) * es, from + (size_t)d * es,
               (size_t)v->w * es);
}

/* Per-thread scratch of stage_norm (no gemm runs then): the bf16 input row, the fp32
 * normalized latent and rope rows, and the two composed cache rows. */
enum { PRO_SC_RF = PRO_DR * 4, PRO_SC_RKV = 704, PRO_SC_RKR = 128 };
static size_t pro_sc_xb(const pro_plan *p) {
    return ((size_t)(p->Hcq > PRO_HCKV ? p->Hcq : PRO_HCKV) * 2 + 63) / 64 * 64;
}
static size_t pro_sc_yf(const pro_plan *p) { return pro_sc_xb(p) * 2; }

/* The quantized cache rows of token t (kv_cache_quant_mode 1, 2, 3) from its fp32 latent
 * row kvkr (c_kv | k_r), written to slot s:
 *   1, 2: kv[c] = sat_int8(rint(y[c] * quant_scale_ckv[c]))  (1: one scale for every c);
 *         kr: bf16 rope (1), sat_int8(rint(rope[d] * quant_scale_ckr[d])) (2);
 *   3:    per 128-tile i: amax = max(max|y|, 1e-8) * k_nope_clip_alpha, y clipped to
 *         [-amax, amax], scale_i = amax / 127, kv[c] = sat_int8(rint(y[c] / scale_i)); the
 *         656-byte row int8[512] | bf16 rope[64] | fp32 scale[4] (kr_cache is not written);
 * with y = bf16(kvkr[:512]) normalized (fp32, kc_scale applied), all in fp32. */
static void pro_kv_quant(const pro_plan *p, int64_t t, const float *kvkr, char *sc,
                         fia_kv_slot s) {
    uint16_t *xb = (uint16_t *)sc;
    float *yf = (float *)(sc + pro_sc_xb(p));
    float *rf = (float *)(sc + pro_sc_xb(p) + pro_sc_yf(p));
    int8_t *rkv = (int8_t *)(rf + PRO_DR);
    char *rkr = (char *)rkv + PRO_SC_RKV;
    p->core->f32_to_bf16(kvkr, xb, PRO_HCKV);
    p->chain->rms_norm_row(xb, NULL, FIA_DTYPE_BFLOAT16, p->gckv, FIA_DTYPE_FLOAT32, PRO_HCKV,
                           p->eps_ckv, p->alpha_kv, yf, FIA_DTYPE_FLOAT32, NULL);
    if (p->kvq == 3) {
        for (int i = 0; i < FIA_C8_NOPE / FIA_C8_TILE; i++) {
            float *x = yf + i * FIA_C8_TILE;
            float amax = p->chain->absmax_row(x, FIA_DTYPE_FLOAT32, NULL, FIA_DTYPE_FLOAT32,
                                              FIA_C8_TILE);
            if (!(amax >= 1e-8f)) amax = 1e-8f;
            amax *= p->clip_alpha;
            for (int c = 0; c < FIA_C8_TILE; c++) x[c] = fminf(fmaxf(x[c], -amax), amax);
            const float scale = amax / 127.0f;
            p->chain->quant_row_i8(x, FIA_DTYPE_FLOAT32, NULL, FIA_DTYPE_FLOAT32, FIA_C8_TILE,
                                   scale, rkv + i * FIA_C8_TILE);
            memcpy((char *)rkv + FIA_C8_NOPE + FIA_C8_ROPE * 2 + i * 4, &scale, 4);
        }
        prolog_rope(p, t, kvkr + PRO_HCKV, (uint16_t *)(rkv + FIA_C8_NOPE));
        pro_put(p->kv, &p->kvv, 1, s, rkv, FIA_C8_ROW_BYTES);
        return;
    }
    for (int c = 0; c < PRO_HCKV; c++) rkv[c] = pro_sat_i8(yf[c] * p->qs_ckv[c]);
    pro_put(p->kv, &p->kvv, 1, s, rkv, PRO_HCKV);
    if (p->kvq == 2) {
        prolog_rope_dt(p, t, kvkr + PRO_HCKV, rf, FIA_DTYPE_FLOAT32);
        for (int d = 0; d < PRO_DR; d++) ((int8_t *)rkr)[d] = pro_sat_i8(rf[d] * p->qs_ckr[d]);
    } else {
        prolog_rope(p, t, kvkr + PRO_HCKV, (uint16_t *)rkr);
    }
    pro_put(p->kr, &p->krv, p->kr_es, s, rkr, PRO_DR);
}

/* x[j] = (float)int32 x[j] * a * b[j] in place (the int32 sums of an int8 gemm, dequantized in
 * the golden's order: the per-token scale, then the per-column one). */
static void pro_dequant_row(float *x, int64_t n, float a, const float *b) {
    for (int64_t j = 0; j < n; j++) {
        int32_t v;
        memcpy(&v, &x[j], 4);
        x[j] = (float)v * a * b[j];
    }
}

/* ---- execution ------------------------------------------------------------------------------ */

typedef struct pro_run {
    pro_plan *p;
    pro_ws w;
} pro_run;

static char *slot_scratch(const pro_run *r, int32_t tid) {
    return r->w.scratch + (size_t)tid * r->p->scratch_bytes;
}

/* One tile of a projection: on the plan's packed copy of the weights (batch matrix bi), or on
 * the caller's plain weights b (the one-shot form: packed per tile as it runs). */
static void pro_tile(const pro_run *r, fia_tgemm *g, int64_t task, int32_t tid, const void *a,
                     const void *b, int64_t bi, void *c) {
    if (g->packed[0]) /* packed at plan time (every gemm of a packed plan) */
        fia_tgemm_run_packed(g, task, tid, a, bi, c, slot_scratch(r, tid));
    else
        fia_tgemm_run_task(g, task, tid, a, b, c, slot_scratch(r, tid));
}

static void stage_down(void *arg, int64_t task, int32_t tid) {
    pro_run *r = arg;
    pro_plan *p = r->p;
    const int64_t n1 = fia_tgemm_tasks(&p->g_dq);
    /* weight_quant_mode 2: int8 x, W_DQ, W_DKV_KR, int32 sums into the fp32 buffers */
    if (task < n1)
        pro_tile(r, &p->g_dq, task, tid, p->x.base, p->wdq, 0, r->w.cq);
    else
        pro_tile(r, &p->g_dkv, task - n1, tid, p->x.base, p->wdkv, 0, r->w.kvkr);
}

static void stage_norm(void *arg, int64_t t, int32_t tid) {
    pro_run *r = arg;
    pro_plan *p = r->p;
    uint16_t *cqn = r->w.cqn + t * p->Hcq;
    uint16_t *xb = (uint16_t *)slot_scratch(r, tid); /* no gemm runs in this stage */
    if (p->wq == 2) { /* dequantize the int32 sums in place: sum * dequant_scale_x * w scale */
        pro_dequant_row(r->w.cq + t * p->Hcq, p->Hcq, p->dsx[t], p->dq_dq);
        pro_dequant_row(r->w.kvkr + t * (PRO_HCKV + PRO_DR), PRO_HCKV + PRO_DR, p->dsx[t],
                        p->dq_dkv);
    }
    if (p->wq == 0) {
        prolog_norm(p, r->w.cq + t * p->Hcq, p->Hcq, p->gcq, p->eps_cq, p->alpha_q, xb, cqn);
        if (p->qnorm) memcpy(p->qn.base + (size_t)(t * p->qn.rs) * 2, cqn, (size_t)p->Hcq * 2);
    } else {
        /* the normalized c_q in fp32 (from c_q rounded to bf16 with int8 W_UQ_QR only, as the
         * golden), then its dynamic per-token int8 quant with the smooth scales */
        float *yf = (float *)((char *)xb + pro_sc_xb(p));
        const float *cq = r->w.cq + t * p->Hcq;
        if (p->wq == 1) {
            p->core->f32_to_bf16(cq, xb, p->Hcq);
            p->chain->rms_norm_row(xb, NULL, FIA_DTYPE_BFLOAT16, p->gcq, FIA_DTYPE_FLOAT32,
                                   p->Hcq, p->eps_cq, p->alpha_q, yf, FIA_DTYPE_FLOAT32, NULL);
        } else {
            p->chain->rms_norm_row(cq, NULL, FIA_DTYPE_FLOAT32, p->gcq, FIA_DTYPE_FLOAT32,
                                   p->Hcq, p->eps_cq, p->alpha_q, yf, FIA_DTYPE_FLOAT32, NULL);
        }
        const float sq = p->chain->absmax_row(yf, FIA_DTYPE_FLOAT32, p->smooth,
                                              FIA_DTYPE_FLOAT32, p->Hcq) / 127.0f;
        int8_t *qi = (int8_t *)r->w.cqn + t * p->Hcq;
        p->chain->quant_row_i8(yf, FIA_DTYPE_FLOAT32, p->smooth, FIA_DTYPE_FLOAT32, p->Hcq, sq,
                               qi);
        r->w.sq[t] = sq;
        if (p->qnorm) {
            memcpy(p->qn.base + (size_t)(t * p->qn.rs), qi, (size_t)p->Hcq);
            memcpy(p->dqnorm + (size_t)p->dqnorm_off[t] * 4, &sq, 4);
        }
    }
    fia_kv_slot s = {0, t}; /* positional caches: row t */
    if (p->paged) {
        if (p->slot[t] < 0) return; /* a negative cache_index: no write */
        s = fia_kv_slot_of(p->slot[t], p->block_size, p->block_shift);
    }
    const float *kvkr = r->w.kvkr + t * (PRO_HCKV + PRO_DR);
    if (p->kvq != 0) {
        pro_kv_quant(p, t, kvkr, slot_scratch(r, tid), s);
        return;
    }
    const bool nz = p->kvv.w != 0;
    uint16_t *dkv = nz ? p->row_kv + (size_t)tid * PRO_HCKV
                       : (uint16_t *)p->kv + fia_kv_row_off(&p->kvv, s, 0);
    uint16_t *dkr = nz ? p->row_kr + (size_t)tid * PRO_DR
                       : (uint16_t *)p->kr + fia_kv_row_off(&p->krv, s, 0);
    prolog_norm(p, kvkr, PRO_HCKV, p->gckv, p->eps_ckv, p->alpha_kv, xb, dkv);
    prolog_rope(p, t, kvkr + PRO_HCKV, dkr);
    if (nz) { /* PA_NZ: the row in chunks of w elements (kv_addr.h, as the readers find it) */
        for (int64_t d = 0; d < PRO_HCKV; d += p->kvv.w)
            memcpy((uint16_t *)p->kv + fia_kv_elem_off(&p->kvv, s, d), dkv + d, (size_t)p->kvv.w * 2);
        for (int64_t d = 0; d < PRO_DR; d += p->krv.w)
            memcpy((uint16_t *)p->kr + fia_kv_elem_off(&p->krv, s, d), dkr + d, (size_t)p->krv.w * 2);
    }
}

static void stage_up(void *arg, int64_t task, int32_t tid) {
    pro_run *r = arg;
    pro_plan *p = r->p;
    pro_tile(r, &p->g_uq, task, tid, r->w.cqn, p->wuq, 0, r->w.qcqr); /* int8 with wq */
}

/* Per token: q_c of every head to bf16 (the W_UK gemm's input), RoPE of every q_r. */
/* Per token: q_c of every head to bf16 (the W_UK gemm's input), RoPE of every q_r. */
static void stage_split(void *arg, int64_t t, int32_t tid) {
    (void)tid;
    pro_run *r = arg;
    pro_plan *p = r->p;
    const int64_t dd = p->D + PRO_DR;
    if (p->wq) pro_dequant_row(r->w.qcqr + t * p->W, p->W, r->w.sq[t], p->dq_uq);
    const float *q = r->w.qcqr + t * p->W;
    uint16_t *qc = r->w.qc + t * p->N * p->D;
    for (int64_t n = 0; n < p->N; n++) {
        /* (rounding q_c once is the golden's rounding of cq . W_UQ_QR) */
        p->core->f32_to_bf16(q + n * dd, qc + n * p->D, p->D);
        prolog_rope(p, t, q + n * dd + p->D, (uint16_t *)p->qro.base + t * p->qro.rs + n * p->qro.hs);
    }
}

static void stage_heads(void *arg, int64_t task, int32_t tid) {
    pro_run *r = arg;
    pro_plan *p = r->p;
    const int64_t per_head = fia_tgemm_tasks(&p->g_uk);
    const int64_t n = task / per_head;
    uint16_t *c = p->qq ? r->w.qob + n * PRO_HCKV : (uint16_t *)p->qo.base + n * p->qo.hs;
    pro_tile(r, &p->g_uk, task % per_head, tid, r->w.qc + n * p->D, p->wuk + n * p->wuk_sn, n,
             c);
}

/* query_quant_mode 1, per token and head: s = max|q_nope| / 127 (q_nope the bf16 W_UK output),
 * query_out = sat_int8(rint(q_nope / s)), dequant_scale_q_nope = s, and query_rope_out
 * rescaled in place to bf16(q_rope * quant_scale_ckv / s), so that the rope and nope logits
 * share one scale (0 where s is 0: an all-zero q_nope). */
static void stage_qquant(void *arg, int64_t t, int32_t tid) {
    (void)tid;
    pro_run *r = arg;
    pro_plan *p = r->p;
    for (int64_t n = 0; n < p->N; n++) {
        const uint16_t *src = r->w.qob + (t * p->N + n) * PRO_HCKV;
        const float s = p->chain->absmax_row(src, FIA_DTYPE_BFLOAT16, NULL, FIA_DTYPE_FLOAT32,
                                             PRO_HCKV) / 127.0f;
        p->chain->quant_row_i8(src, FIA_DTYPE_BFLOAT16, NULL, FIA_DTYPE_FLOAT32, PRO_HCKV, s,
                               (int8_t *)p->qo.base + t * p->qo.rs + n * p->qo.hs);
        memcpy(p->dqn.base + (size_t)(t * p->dqn.rs + n * p->dqn.hs) * 4, &s, 4);
        uint16_t *qr = (uint16_t *)p->qro.base + t * p->qro.rs + n * p->qro.hs;
        for (int d = 0; d < PRO_DR; d++) {
            const float v = fia_cvt_bf16_to_f32(qr[d]) * p->qs_ckv[0];
            qr[d] = fia_cvt_f32_to_bf16(s > 0.0f ? v / s : 0.0f);
        }
    }
}

static size_t pro_layout(const pro_plan *p, char *base, pro_ws *w) {
    fia_arena a = {base, 0};
    w->cq = fia_arena_take(&a, (size_t)(p->T * p->Hcq) * 4);
    w->cqn = fia_arena_take(&a, (size_t)(p->T * p->Hcq) * 2);
    w->qcqr = fia_arena_take(&a, (size_t)(p->T * p->W) * 4);
    w->qc = fia_arena_take(&a, (size_t)(p->T * p->N * p->D) * 2);
    w->kvkr = fia_arena_take(&a, (size_t)(p->T * (PRO_HCKV + PRO_DR)) * 4);
    w->qob = p->qq ? fia_arena_take(&a, (size_t)(p->T * p->N * PRO_HCKV) * 2) : NULL;
    w->sq = p->wq ? fia_arena_take(&a, (size_t)p->T * 4) : NULL;
    w->scratch = fia_arena_take(&a, p->scratch_bytes * (size_t)p->num_threads);
    return a.used;
}

static void pro_execute(fia_plan *plan, void *workspace) {
    pro_plan *p = (pro_plan *)plan;
    if (p->T == 0) return;
    pro_run r = {p, {0}};
    pro_layout(p, workspace, &r.w);
    fia_pool *pool = p->base.ctx->pool;
    fia_pool_run(pool, fia_tgemm_tasks(&p->g_dq) + fia_tgemm_tasks(&p->g_dkv), stage_down, &r);
    fia_pool_run(pool, p->T, stage_norm, &r);
    fia_pool_run(pool, fia_tgemm_tasks(&p->g_uq), stage_up, &r);
    fia_pool_run(pool, p->T, stage_split, &r);
    fia_pool_run(pool, p->N * fia_tgemm_tasks(&p->g_uk), stage_heads, &r);
    if (p->qq) fia_pool_run(pool, p->T, stage_qquant, &r);
}

static void pro_destroy(fia_plan *plan) {
    pro_plan *p = (pro_plan *)plan;
    fia_tgemm_free(&p->g_dq);
    fia_tgemm_free(&p->g_dkv);
    fia_tgemm_free(&p->g_uq);
    fia_tgemm_free(&p->g_uk);
    free(p->gcq);
    free(p->gckv);
    free(p->slot);
    free(p->row_kv);
    free(p->row_kr);
    free(p->smooth);
    free(p->dq_uq);
    free(p->dq_dq);
    free(p->dq_dkv);
    free(p->dsx);
    free(p->dqnorm_off);
    free(p);
}

/* ---- validation ----------------------------------------------------------------------------- */

void fia_mla_prolog_v3_params_init(fia_mla_prolog_v3_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->rmsnorm_epsilon_cq = 1e-5;
    p->rmsnorm_epsilon_ckv = 1e-5;
    p->cache_mode = FIA_LAYOUT_PA_BSND;
    p->tile_size = 128;
    p->qc_qr_scale = 1.0;
    p->kc_scale = 1.0;
    p->prepack_weights = 1;
}

static fia_status need(const fia_tensor *t, const char *name, fia_dtype dt) {
    if (!t) return FIA_INVALID("%s is NULL", name);
    FIA_TRY(fia_tensor_check(t, name, true));
    if (dt != (fia_dtype)-1 && t->dtype != dt)
        return FIA_INVALID("%s dtype is %s, must be %s", name, fia_dtype_name(t->dtype),
                           fia_dtype_name(dt));
    return FIA_STATUS_SUCCESS;
}

/* A tensor whose leading dims are the tokens ([T, ...] or [B, S, ...], `tok_dims` of them,
 * matching token_x) followed by `inner` trailing dims of sizes inner_shape. Sets the token
 * stride (the leading dims must flatten to one stride) and the stride of trailing dim 0 when
 * there are two trailing dims. */
static fia_status token_rows(const fia_tensor *t, const char *name, const int64_t *tok_shape,
                             int tok_dims, const int64_t *inner_shape, int inner,
                             pro_rows *r) {
    FIA_TRY(fia_tensor_check_ndim(t, name, tok_dims + inner));
    for (int i = 0; i < tok_dims; i++)
        if (t->shape[i] != tok_shape[i])
            return FIA_INVALID("%s dim %d is %lld, token_x has %lld", name, i,
                               (long long)t->shape[i], (long long)tok_shape[i]);
    for (int i = 0; i < inner; i++)
        if (t->shape[tok_dims + i] != inner_shape[i])
            return FIA_INVALID("%s dim %d is %lld, must be %lld", name, tok_dims + i,
                               (long long)t->shape[tok_dims + i], (long long)inner_shape[i]);
    int64_t rs = t->strides[tok_dims - 1];
    if (tok_dims == 2) {
        const int64_t B = t->shape[0], S = t->shape[1];
        if (S == 1) rs = t->strides[0];
        else if (B > 1 && t->strides[0] != S * t->strides[1])
            return FIA_UNSUPPORTED("%s: dim 0 stride %lld is not dim 1 size x stride (%lld); "
                                   "the [B, S] tokens must flatten to one stride", name,
                                   (long long)t->strides[0],
                                   (long long)(S * t->strides[1]));
    }
    r->base = fia_tensor_ptr(t);
    r->dt = t->dtype;
    r->rs = rs;
    r->hs = inner == 2 ? t->strides[tok_dims] : 0;
    return FIA_STATUS_SUCCESS;
}

static fia_status weight2(const fia_tensor *t, const char *name, fia_dtype dt, int64_t rows,
                          int64_t cols) {
    FIA_TRY(need(t, name, dt));
    FIA_TRY(fia_tensor_check_ndim(t, name, 2));
    FIA_TRY(fia_tensor_check_dim(t, name, 0, rows, "required"));
    return fia_tensor_check_dim(t, name, 1, cols, "required");
}

static fia_status gamma_copy(const fia_tensor *t, const char *name, int64_t n, float **out) {
    FIA_TRY(need(t, name, FIA_DTYPE_BFLOAT16));
    FIA_TRY(fia_tensor_check_ndim(t, name, 1));
    FIA_TRY(fia_tensor_check_dim(t, name, 0, n, "required"));
    float *g = malloc((size_t)n * sizeof *g);
    if (!g) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    const uint16_t *src = fia_tensor_ptr(t);
    for (int64_t i = 0; i < n; i++) g[i] = fia_cvt_bf16_to_f32(src[i * t->strides[0]]);
    *out = g;
    return FIA_STATUS_SUCCESS;
}

/* A paged cache [blocks, block_size, 1, width] or [blocks, block_size, width] (PA_BSND), or
 * [blocks, 1, width / c, block_size, c] (PA_NZ: 32-byte chunks, c = 16 bf16 or 32 int8) of
 * dtype dt: its kv_addr.h view. */
static fia_status paged_cache(const fia_tensor *t, const char *name, int64_t width, bool nz,
                              fia_dtype dt, int64_t *blocks, int64_t *bs, fia_kv_view *v) {
    FIA_TRY(need(t, name, dt));
    memset(v, 0, sizeof *v);
    if (nz) {
        const int64_t c = 32 / (int64_t)fia_dtype_size(dt);
        if (t->ndim != 5)
            return FIA_INVALID("%s has %d dims: a PA_NZ cache is [blocks, 1, %lld, block_size, "
                               "%lld]", name, (int)t->ndim, (long long)(width / c), (long long)c);
        FIA_TRY(fia_tensor_check_dim(t, name, 1, 1, "the one KV head"));
        FIA_TRY(fia_tensor_check_dim(t, name, 2, width / c, "width / chunk"));
        FIA_TRY(fia_tensor_check_dim(t, name, 4, c, "the NZ chunk (32 bytes)"));
        if (t->shape[3] > 1 && t->strides[3] != c)
            return FIA_UNSUPPORTED("%s (PA_NZ) dim 3 stride is %lld, must be %lld (rows of a "
                                   "chunk adjacent)", name, (long long)t->strides[3], (long long)c);
        *blocks = t->shape[0];
        *bs = t->shape[3];
        v->s_blk = t->strides[0];
        v->s_c = t->strides[2];
        v->s_t = v->w = c;
        return FIA_STATUS_SUCCESS;
    }
    if (t->ndim == 4) {
        FIA_TRY(fia_tensor_check_dim(t, name, 2, 1, "the one KV head"));
        FIA_TRY(fia_tensor_check_dim(t, name, 3, width, "required"));
    } else if (t->ndim == 3) {
        FIA_TRY(fia_tensor_check_dim(t, name, 2, width, "required"));
    } else {
        return FIA_INVALID("%s has %d dims: a PA_BSND cache is [blocks, block_size, 1, %lld] "
                           "or [blocks, block_size, %lld]", name, (int)t->ndim,
                           (long long)width, (long long)width);
    }
    *blocks = t->shape[0];
    *bs = t->shape[1];
    v->s_blk = t->strides[0];
    v->s_t = t->strides[1];
    return FIA_STATUS_SUCCESS;
}

/* A float32 vector of n values shaped [n], [1, n] (n = 1 also: [], [1, 1]), copied to out. */
static fia_status f32_vec(const fia_tensor *t, const char *name, int64_t n, float *out) {
    FIA_TRY(need(t, name, FIA_DTYPE_FLOAT32));
    int64_t idx[FIA_MAX_DIMS] = {0};
    for (int d = 0; d + 1 < t->ndim; d++)
        if (t->shape[d] != 1)
            return FIA_INVALID("%s dim %d is %lld, must be 1 (shape [%lld] or [1, %lld])", name,
                               d, (long long)t->shape[d], (long long)n, (long long)n);
    const int64_t got = t->ndim ? t->shape[t->ndim - 1] : 1;
    if (got != n)
        return FIA_INVALID("%s dim %d is %lld, must be %lld", name, t->ndim ? t->ndim - 1 : 0,
                           (long long)got, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (t->ndim) idx[t->ndim - 1] = i;
        memcpy(&out[i], fia_tensor_elem(t, idx), 4);
        if (!isfinite(out[i]))
            return FIA_INVALID("%s[%lld] is %g, must be finite", name, (long long)i,
                               (double)out[i]);
    }
    return FIA_STATUS_SUCCESS;
}

/* A per-token tensor of T values in any shape with T elements (e.g. [T, 1], [B, S, 1]):
 * the element offset of each token's value. */
static fia_status tok_offsets(const fia_tensor *t, const char *name, int64_t T, int64_t *off) {
    FIA_TRY(need(t, name, FIA_DTYPE_FLOAT32));
    const int64_t n = fia_tensor_numel(t);
    if (n != T)
        return FIA_INVALID("%s has %lld elements (shape [T, 1]), must be T = %lld", name,
                           (long long)n, (long long)T);
    for (int64_t i = 0; i < T; i++) {
        int64_t rest = i, o = 0;
        for (int d = t->ndim - 1; d >= 0; d--) {
            o += (rest % t->shape[d]) * t->strides[d];
            rest /= t->shape[d];
        }
        off[i] = o;
    }
    return FIA_STATUS_SUCCESS;
}

static fia_status pro_alloc_f32(float **out, int64_t n) {
    *out = malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
    return *out ? FIA_STATUS_SUCCESS : fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
}

/* The int8-weight scales (weight_quant_mode 1, 2), copied; after the shapes are known. */
static fia_status pro_weight_scales(pro_plan *p, const fia_mla_prolog_v3_tensors *t) {
    if (!p->wq) return FIA_STATUS_SUCCESS;
    FIA_TRY(pro_alloc_f32(&p->smooth, p->Hcq));
    FIA_TRY(pro_alloc_f32(&p->dq_uq, p->W));
    FIA_TRY(f32_vec(t->dequant_scale_w_uq_qr, "dequant_scale_w_uq_qr", p->W, p->dq_uq));
    if (t->smooth_scales_cq && fia_tensor_numel(t->smooth_scales_cq) == 1 && p->Hcq > 1) {
        FIA_TRY(f32_vec(t->smooth_scales_cq, "smooth_scales_cq", 1, p->smooth));
        for (int64_t j = 1; j < p->Hcq; j++) p->smooth[j] = p->smooth[0];
    } else if (t->smooth_scales_cq) {
        FIA_TRY(f32_vec(t->smooth_scales_cq, "smooth_scales_cq", p->Hcq, p->smooth));
    } else {
        for (int64_t j = 0; j < p->Hcq; j++) p->smooth[j] = 1.0f;
    }
    if (p->qnorm) {
        p->dqnorm_off = malloc((size_t)(p->T ? p->T : 1) * sizeof *p->dqnorm_off);
        if (!p->dqnorm_off) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
        FIA_TRY(tok_offsets(t->dequant_scale_q_norm, "dequant_scale_q_norm", p->T,
                            p->dqnorm_off));
        p->dqnorm = fia_tensor_ptr(t->dequant_scale_q_norm);
    }
    if (p->wq != 2) return FIA_STATUS_SUCCESS;
    FIA_TRY(pro_alloc_f32(&p->dq_dq, p->Hcq));
    FIA_TRY(pro_alloc_f32(&p->dq_dkv, PRO_HCKV + PRO_DR));
    FIA_TRY(pro_alloc_f32(&p->dsx, p->T));
    FIA_TRY(f32_vec(t->dequant_scale_w_dq, "dequant_scale_w_dq", p->Hcq, p->dq_dq));
    FIA_TRY(f32_vec(t->dequant_scale_w_dkv_kr, "dequant_scale_w_dkv_kr", PRO_HCKV + PRO_DR,
                    p->dq_dkv));
    int64_t *off = malloc((size_t)(p->T ? p->T : 1) * sizeof *off);
    if (!off) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    fia_status st = tok_offsets(t->dequant_scale_x, "dequant_scale_x", p->T, off);
    for (int64_t i = 0; st == FIA_STATUS_SUCCESS && i < p->T; i++) {
        memcpy(&p->dsx[i], (const char *)fia_tensor_ptr(t->dequant_scale_x) + off[i] * 4, 4);
        if (!isfinite(p->dsx[i]))
            st = FIA_INVALID("dequant_scale_x[%lld] is %g, must be finite", (long long)i,
                             (double)p->dsx[i]);
    }
    free(off);
    return st;
}

/* The modes (before any tensor): what fia does not implement is UNSUPPORTED, a combination
 * the contract does not define INVALID, naming the parameter. */
static fia_status pro_modes(pro_plan *p, const fia_mla_prolog_v3_params *prm) {
    p->wq = prm->weight_quant_mode;
    p->kvq = prm->kv_cache_quant_mode;
    p->qq = prm->query_quant_mode;
    if (prm->cache_mode != FIA_LAYOUT_PA_BSND && prm->cache_mode != FIA_LAYOUT_PA_NZ &&
        prm->cache_mode != FIA_LAYOUT_BSND && prm->cache_mode != FIA_LAYOUT_TND)
        return FIA_INVALID("cache_mode is %s, must be PA_BSND, PA_NZ, BSND or TND",
                           fia_layout_name(prm->cache_mode));
    if (p->wq < 0 || p->wq > 5)
        return FIA_INVALID("weight_quant_mode is %d, must be 0..5", (int)p->wq);
    if (p->wq > 2)
        return FIA_UNSUPPORTED("weight_quant_mode %d (the Ascend 950 fp8 / hif8 forms) is not "
                               "implemented (0, 1, 2 are)", (int)p->wq);
    if (p->kvq < 0 || p->kvq > 3)
        return FIA_INVALID("kv_cache_quant_mode is %d, must be 0..3", (int)p->kvq);
    if (p->qq < 0 || p->qq > 1)
        return FIA_INVALID("query_quant_mode is %d, must be 0 or 1", (int)p->qq);
    if (p->qq == 1 && p->kvq != 1)
        return FIA_INVALID("query_quant_mode 1 needs kv_cache_quant_mode 1 (the query rope is "
                           "rescaled by the per-tensor quant_scale_ckv); kv_cache_quant_mode is "
                           "%d", (int)p->kvq);
    const int32_t ckr = prm->ckvkr_repo_mode, qsr = prm->quant_scale_repo_mode;
    if ((ckr != 0 && ckr != 1) || (qsr != 0 && qsr != 1))
        return FIA_INVALID("ckvkr_repo_mode / quant_scale_repo_mode are %d / %d, must be 0 or 1",
                           (int)ckr, (int)qsr);
    if (p->kvq == 3) {
        if (ckr != 1 || qsr != 1)
            return FIA_UNSUPPORTED("kv_cache_quant_mode 3 is implemented for the combined "
                                   "656-byte row only (ckvkr_repo_mode 1 and "
                                   "quant_scale_repo_mode 1); they are %d and %d", (int)ckr,
                                   (int)qsr);
        if (prm->tile_size != FIA_C8_TILE)
            return FIA_INVALID("tile_size is %lld, must be 128 with kv_cache_quant_mode 3 (4 "
                               "tiles of the 512-wide latent)", (long long)prm->tile_size);
        if (prm->cache_mode == FIA_LAYOUT_PA_NZ)
            return FIA_UNSUPPORTED("cache_mode PA_NZ with kv_cache_quant_mode 3: the 656-byte "
                                   "row is not a whole number of 32-byte NZ chunks");
    } else if (ckr != 0 || qsr != 0) {
        return FIA_INVALID("ckvkr_repo_mode / quant_scale_repo_mode are %d / %d: the combined "
                           "row needs kv_cache_quant_mode 3 (it is %d)", (int)ckr, (int)qsr,
                           (int)p->kvq);
    }
    if (!(prm->rmsnorm_epsilon_cq > 0) || !(prm->rmsnorm_epsilon_ckv > 0))
        return FIA_INVALID("rmsnorm_epsilon_cq / _ckv are %g / %g, must be > 0",
                           prm->rmsnorm_epsilon_cq, prm->rmsnorm_epsilon_ckv);
    if (!isfinite(prm->qc_qr_scale) || !isfinite(prm->kc_scale))
        return FIA_INVALID("qc_qr_scale / kc_scale are %g / %g, must be finite",
                           prm->qc_qr_scale, prm->kc_scale);
    p->paged = prm->cache_mode == FIA_LAYOUT_PA_BSND || prm->cache_mode == FIA_LAYOUT_PA_NZ;
    p->qnorm = prm->query_norm_flag != 0;
    p->kv_es = p->kvq ? 1 : 2;
    p->kr_es = p->kvq == 2 ? 1 : 2;
    p->kv_w = p->kvq == 3 ? FIA_C8_ROW_BYTES : PRO_HCKV;
    return FIA_STATUS_SUCCESS;
}

/* ---- the tensor table (sched/tensor_spec.h): presence, views and dtypes per mode ---------- */

enum { /* the call's conditions (pro_conds) */
    C_XBF = 1u << 0,  /* weight_quant_mode 0, 1: bf16 token_x, W_DQ, W_DKV_KR */
    C_W2 = 1u << 1,   /* weight_quant_mode 2 */
    C_UQBF = 1u << 2, /* weight_quant_mode 0: bf16 W_UQ_QR */
    C_WQ = 1u << 3,   /* weight_quant_mode 1, 2 */
    C_QN = 1u << 4,   /* query_norm_flag */
    C_QNBF = 1u << 5, /* query_norm_flag, weight_quant_mode 0 */
    C_QNWQ = 1u << 6, /* query_norm_flag, weight_quant_mode 1, 2 */
    C_QOBF = 1u << 7, /* query_quant_mode 0 */
    C_QOI8 = 1u << 8, /* query_quant_mode 1 */
    C_KVBF = 1u << 9, /* kv_cache_quant_mode 0 */
    C_KVI8 = 1u << 10, /* kv_cache_quant_mode 1-3 */
    C_KR = 1u << 11,  /* kv_cache_quant_mode 0-2: a kr cache */
    C_KRBF = 1u << 12, /* kv_cache_quant_mode 0, 1 */
    C_KRI8 = 1u << 13, /* kv_cache_quant_mode 2 */
    C_QSKV = 1u << 14, /* kv_cache_quant_mode 1, 2 */
    C_C8 = 1u << 15,  /* kv_cache_quant_mode 3 */
    C_PAGED = 1u << 16 /* cache_mode PA_BSND, PA_NZ */
};

static uint32_t pro_conds(const pro_plan *p) {
    uint32_t c = p->wq < 2 ? C_XBF : C_W2;
    c |= p->wq ? C_WQ : C_UQBF;
    if (p->qnorm) c |= C_QN | (p->wq ? C_QNWQ : C_QNBF);
    c |= p->qq ? C_QOI8 : C_QOBF;
    c |= p->kvq ? C_KVI8 : C_KVBF;
    if (p->kvq != 3) c |= C_KR | (p->kvq == 2 ? C_KRI8 : C_KRBF);
    if (p->kvq == 1 || p->kvq == 2) c |= C_QSKV;
    if (p->kvq == 3) c |= C_C8;
    if (p->paged) c |= C_PAGED;
    return c;
}

#define PT(f) offsetof(fia_mla_prolog_v3_tensors, f)
/* The prolog reads and writes its tensors' rows as dense (prolog.h: other innermost strides are
 * FIA_STATUS_UNSUPPORTED), all but cache_index, which is read element by element. */
#define REQ (FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT)
#define ONLY (FIA_SPEC_REQUIRED | FIA_SPEC_ONLY_WHEN | FIA_SPEC_INNER_UNIT)
#define OPT (FIA_SPEC_ONLY_WHEN | FIA_SPEC_INNER_UNIT) /* may be NULL in its mode */
#define BF FIA_DT(BFLOAT16)
#define I8 FIA_DT(INT8)
#define F32 FIA_DT(FLOAT32)
static const fia_tensor_spec pro_spec[] = {
    {"token_x", PT(token_x), REQ, 0, NULL, -1, 0, NULL},
    {"token_x", PT(token_x), 0, BF, "bfloat16 (weight_quant_mode 0, 1)", -1, C_XBF, NULL},
    {"token_x", PT(token_x), 0, I8, "int8 (weight_quant_mode 2)", -1, C_W2, NULL},
    {"weight_dq", PT(weight_dq), REQ, 0, NULL, -1, 0, NULL},
    {"weight_dq", PT(weight_dq), 0, BF, "bfloat16 (weight_quant_mode 0, 1)", -1, C_XBF, NULL},
    {"weight_dq", PT(weight_dq), 0, I8, "int8 (weight_quant_mode 2)", -1, C_W2, NULL},
    {"weight_uq_qr", PT(weight_uq_qr), REQ, 0, NULL, -1, 0, NULL},
    {"weight_uq_qr", PT(weight_uq_qr), 0, BF, "bfloat16 (weight_quant_mode 0)", -1, C_UQBF, NULL},
    {"weight_uq_qr", PT(weight_uq_qr), 0, I8, "int8 (weight_quant_mode 1, 2)", -1, C_WQ, NULL},
    {"weight_uk", PT(weight_uk), REQ, BF, "bfloat16", -1, 0, NULL},
    {"weight_dkv_kr", PT(weight_dkv_kr), REQ, 0, NULL, -1, 0, NULL},
    {"weight_dkv_kr", PT(weight_dkv_kr), 0, BF, "bfloat16 (weight_quant_mode 0, 1)", -1, C_XBF,
     NULL},
    {"weight_dkv_kr", PT(weight_dkv_kr), 0, I8, "int8 (weight_quant_mode 2)", -1, C_W2, NULL},
    {"rmsnorm_gamma_cq", PT(rmsnorm_gamma_cq), REQ, BF, "bfloat16", -1, 0, NULL},
    {"rmsnorm_gamma_ckv", PT(rmsnorm_gamma_ckv), REQ, BF, "bfloat16", -1, 0, NULL},
    {"rope_sin", PT(rope_sin), REQ, FIA_DT_FLOAT, "float16, bfloat16 or float32", -1, 0, NULL},
    {"rope_cos", PT(rope_cos), REQ, 0, NULL, 15, 0, NULL},
    {"kv_cache", PT(kv_cache), REQ, 0, NULL, -1, 0, NULL},
    {"kv_cache", PT(kv_cache), 0, BF, "bfloat16 (kv_cache_quant_mode 0)", -1, C_KVBF, NULL},
    {"kv_cache", PT(kv_cache), 0, I8, "int8 (kv_cache_quant_mode 1-3)", -1, C_KVI8, NULL},
    {"kr_cache", PT(kr_cache), REQ, 0, NULL, -1, C_KR, "kv_cache_quant_mode is 0, 1 or 2"},
    {"kr_cache", PT(kr_cache), 0, BF, "bfloat16 (kv_cache_quant_mode 0, 1)", -1, C_KRBF, NULL},
    {"kr_cache", PT(kr_cache), 0, I8, "int8 (kv_cache_quant_mode 2)", -1, C_KRI8, NULL},
    {"cache_index", PT(cache_index), FIA_SPEC_REQUIRED | FIA_SPEC_ONLY_WHEN, FIA_DT(INT64),
     "int64", -1, C_PAGED, "cache_mode is PA_BSND or PA_NZ"},
    {"dequant_scale_x", PT(dequant_scale_x), ONLY, F32, "float32", -1, C_W2,
     "weight_quant_mode is 2"},
    {"dequant_scale_w_dq", PT(dequant_scale_w_dq), ONLY, F32, "float32", -1, C_W2,
     "weight_quant_mode is 2"},
    {"dequant_scale_w_uq_qr", PT(dequant_scale_w_uq_qr), ONLY, F32, "float32", -1, C_WQ,
     "weight_quant_mode is 1 or 2"},
    {"dequant_scale_w_dkv_kr", PT(dequant_scale_w_dkv_kr), ONLY, F32, "float32", -1, C_W2,
     "weight_quant_mode is 2"},
    {"smooth_scales_cq", PT(smooth_scales_cq), OPT, F32, "float32", -1, C_WQ,
     "weight_quant_mode is 1 or 2"},
    {"quant_scale_ckv", PT(quant_scale_ckv), ONLY, F32, "float32", -1, C_QSKV,
     "kv_cache_quant_mode is 1 or 2"},
    {"quant_scale_ckr", PT(quant_scale_ckr), ONLY, F32, "float32", -1, C_KRI8,
     "kv_cache_quant_mode is 2"},
    {"k_nope_clip_alpha", PT(k_nope_clip_alpha), OPT, F32, "float32", -1, C_C8,
     "kv_cache_quant_mode is 3"},
    {"query_out", PT(query_out), REQ, 0, NULL, -1, 0, NULL},
    {"query_out", PT(query_out), 0, BF, "bfloat16 (query_quant_mode 0)", -1, C_QOBF, NULL},
    {"query_out", PT(query_out), 0, I8, "int8 (query_quant_mode 1)", -1, C_QOI8, NULL},
    {"query_rope_out", PT(query_rope_out), REQ, BF, "bfloat16", -1, 0, NULL},
    {"dequant_scale_q_nope", PT(dequant_scale_q_nope), ONLY, F32, "float32", -1, C_QOI8,
     "query_quant_mode is 1"},
    {"query_norm", PT(query_norm), REQ, 0, NULL, -1, C_QN, "query_norm_flag is set"},
    {"query_norm", PT(query_norm), 0, BF, "bfloat16 (weight_quant_mode 0)", -1, C_QNBF, NULL},
    {"query_norm", PT(query_norm), 0, I8, "int8 (weight_quant_mode 1, 2)", -1, C_QNWQ, NULL},
    {"dequant_scale_q_norm", PT(dequant_scale_q_norm), ONLY, F32, "float32", -1, C_QNWQ,
     "query_norm_flag is set with weight_quant_mode 1 or 2"},
};
#undef PT
#undef REQ
#undef ONLY
#undef OPT
#undef BF
#undef I8
#undef F32

/* The per-token scale tensors of the int8 weights, then the kv quant scales (copied). */
static fia_status pro_scales(pro_plan *p, const fia_mla_prolog_v3_tensors *t) {
    FIA_TRY(pro_weight_scales(p, t));
    if (p->kvq == 1) {
        FIA_TRY(f32_vec(t->quant_scale_ckv, "quant_scale_ckv", 1, p->qs_ckv));
        for (int c = 1; c < PRO_HCKV; c++) p->qs_ckv[c] = p->qs_ckv[0];
    } else if (p->kvq == 2) {
        FIA_TRY(f32_vec(t->quant_scale_ckv, "quant_scale_ckv", PRO_HCKV, p->qs_ckv));
        FIA_TRY(f32_vec(t->quant_scale_ckr, "quant_scale_ckr", PRO_DR, p->qs_ckr));
    } else if (p->kvq == 3) {
        p->clip_alpha = 1.0f; /* k_nope_clip_alpha NULL: no clipping */
        if (t->k_nope_clip_alpha) {
            FIA_TRY(f32_vec(t->k_nope_clip_alpha, "k_nope_clip_alpha", 1, &p->clip_alpha));
            if (!(p->clip_alpha > 0.0f))
                return FIA_INVALID("k_nope_clip_alpha[0] is %g, must be > 0",
                                   (double)p->clip_alpha);
        }
    }
    return FIA_STATUS_SUCCESS;
}

/* token_x, the weights and gammas, the rope tables: the dims T, He, Hcq, N, D. */
static fia_status pro_inputs(pro_plan *p, const fia_mla_prolog_v3_tensors *t) {
    const fia_tensor *x = t->token_x;
    if (x->ndim != 2 && x->ndim != 3)
        return FIA_INVALID("token_x has %d dims, must be [T, He] or [B, S, He]", (int)x->ndim);
    p->tok_dims = x->ndim - 1;
    p->tok[0] = x->shape[0];
    p->tok[1] = p->tok_dims == 2 ? x->shape[1] : 0;
    p->T = p->tok_dims == 2 ? p->tok[0] * p->tok[1] : p->tok[0];
    p->He = x->shape[x->ndim - 1];
    if (p->He < 1) return FIA_INVALID("token_x dim %d (He) is 0, must be >= 1", x->ndim - 1);
    int64_t he1[1] = {p->He}, dr1[1] = {PRO_DR};
    FIA_TRY(token_rows(x, "token_x", p->tok, p->tok_dims, he1, 1, &p->x));
    FIA_TRY(fia_tensor_check_ndim(t->weight_dq, "weight_dq", 2));
    p->Hcq = t->weight_dq->shape[1];
    FIA_TRY(fia_tensor_check_dim(t->weight_dq, "weight_dq", 0, p->He, "token_x's He"));
    if (p->Hcq < 1) return FIA_INVALID("weight_dq dim 1 (Hcq) is 0, must be >= 1");
    FIA_TRY(fia_tensor_check_ndim(t->weight_uk, "weight_uk", 3));
    p->N = t->weight_uk->shape[0];
    p->D = t->weight_uk->shape[1];
    if (p->N < 1 || p->N > PRO_MAX_HEADS)
        return FIA_INVALID("weight_uk dim 0 (N) is %lld, must be 1..%d", (long long)p->N,
                           PRO_MAX_HEADS);
    if (p->D < 1) return FIA_INVALID("weight_uk dim 1 (D) is 0, must be >= 1");
    FIA_TRY(fia_tensor_check_dim(t->weight_uk, "weight_uk", 2, PRO_HCKV, "Hckv"));
    p->W = p->N * (p->D + PRO_DR);
    FIA_TRY(weight2(t->weight_uq_qr, "weight_uq_qr", t->weight_uq_qr->dtype, p->Hcq, p->W));
    FIA_TRY(weight2(t->weight_dkv_kr, "weight_dkv_kr", t->weight_dkv_kr->dtype, p->He,
                    PRO_HCKV + PRO_DR));
    p->wuk_sn = t->weight_uk->strides[0];
    p->ld_dq = t->weight_dq->strides[0];
    p->ld_uq = t->weight_uq_qr->strides[0];
    p->ld_uk = t->weight_uk->strides[1];
    p->ld_dkv = t->weight_dkv_kr->strides[0];
    p->wdq = fia_tensor_ptr(t->weight_dq);
    p->wuq = fia_tensor_ptr(t->weight_uq_qr);
    p->wuk = fia_tensor_ptr(t->weight_uk);
    p->wdkv = fia_tensor_ptr(t->weight_dkv_kr);
    FIA_TRY(gamma_copy(t->rmsnorm_gamma_cq, "rmsnorm_gamma_cq", p->Hcq, &p->gcq));
    FIA_TRY(gamma_copy(t->rmsnorm_gamma_ckv, "rmsnorm_gamma_ckv", PRO_HCKV, &p->gckv));
    FIA_TRY(token_rows(t->rope_sin, "rope_sin", p->tok, p->tok_dims, dr1, 1, &p->sin));
    return token_rows(t->rope_cos, "rope_cos", p->tok, p->tok_dims, dr1, 1, &p->cos);
}

/* query_out, query_rope_out, dequant_scale_q_nope, query_norm: their token rows. */
static fia_status pro_outputs(pro_plan *p, const fia_mla_prolog_v3_tensors *t) {
    int64_t qo_in[2] = {p->N, PRO_HCKV}, qr_in[2] = {p->N, PRO_DR}, qn_in[1] = {p->Hcq};
    FIA_TRY(token_rows(t->query_out, "query_out", p->tok, p->tok_dims, qo_in, 2, &p->qo));
    FIA_TRY(token_rows(t->query_rope_out, "query_rope_out", p->tok, p->tok_dims, qr_in, 2,
                       &p->qro));
    if (p->qq) { /* [T, N, 1] / [B, S, N, 1], or [B * S, N, 1] with token_x [B, S, He] */
        const fia_tensor *dq = t->dequant_scale_q_nope;
        int64_t dq_in[2] = {p->N, 1}, flat[1] = {p->T};
        if (p->tok_dims == 2 && dq->ndim == 3)
            FIA_TRY(token_rows(dq, "dequant_scale_q_nope", flat, 1, dq_in, 2, &p->dqn));
        else
            FIA_TRY(token_rows(dq, "dequant_scale_q_nope", p->tok, p->tok_dims, dq_in, 2,
                               &p->dqn));
    }
    if (p->qnorm)
        FIA_TRY(token_rows(t->query_norm, "query_norm", p->tok, p->tok_dims, qn_in, 1, &p->qn));
    return FIA_STATUS_SUCCESS;
}

/* cache_index: copied and checked now, so that nothing is written on a bad index. */
static fia_status pro_cache_index(pro_plan *p, const fia_tensor *ci) {
    if (ci->ndim != p->tok_dims)
        return FIA_INVALID("cache_index has %d dims, must be %d (token_x's leading dims)",
                           (int)ci->ndim, (int)p->tok_dims);
    for (int i = 0; i < p->tok_dims; i++)
        if (ci->shape[i] != p->tok[i])
            return FIA_INVALID("cache_index dim %d is %lld, token_x has %lld", i,
                               (long long)ci->shape[i], (long long)p->tok[i]);
    p->slot = malloc((size_t)(p->T ? p->T : 1) * sizeof *p->slot);
    if (!p->slot) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    const int64_t slots = p->blocks * p->block_size, S = p->tok[1];
    for (int64_t i = 0; i < p->T; i++) {
        int64_t idx[2] = {p->tok_dims == 2 ? i / S : i, p->tok_dims == 2 ? i % S : 0};
        int64_t v;
        memcpy(&v, fia_tensor_elem(ci, idx), sizeof v);
        if (v >= slots)
            return FIA_INVALID("cache_index[%lld] is %lld, must be < blocks x block_size "
                               "(%lld x %lld = %lld) or negative (no write)", (long long)i,
                               (long long)v, (long long)p->blocks, (long long)p->block_size,
                               (long long)slots);
        p->slot[i] = v;
    }
    return FIA_STATUS_SUCCESS;
}

/* The caches: paged (block geometry, the index copy) or positional (token rows). */
static fia_status pro_caches(pro_plan *p, const fia_mla_prolog_v3_tensors *t, fia_layout mode) {
    /* (kv_cache_quant_mode 3: kr_cache is not read nor written: the rope is in the kv row) */
    const bool use_kr = p->kvq != 3;
    const fia_dtype kvdt = t->kv_cache->dtype, krdt = use_kr ? t->kr_cache->dtype : kvdt;
    if (p->paged) {
        const bool nz = mode == FIA_LAYOUT_PA_NZ;
        int64_t kb, kbs, rb, rbs;
        FIA_TRY(paged_cache(t->kv_cache, "kv_cache", p->kv_w, nz, kvdt, &kb, &kbs, &p->kvv));
        rb = kb;
        rbs = kbs;
        if (use_kr)
            FIA_TRY(paged_cache(t->kr_cache, "kr_cache", PRO_DR, nz, krdt, &rb, &rbs, &p->krv));
        if (rb != kb || rbs != kbs)
            return FIA_INVALID("kr_cache is [%lld blocks, %lld], kv_cache [%lld, %lld]: they "
                               "must match", (long long)rb, (long long)rbs, (long long)kb,
                               (long long)kbs);
        if (kbs < 1 || kbs > PRO_MAX_BLOCK)
            return FIA_INVALID("kv_cache dim 1 (block_size) is %lld, must be 1..%d",
                               (long long)kbs, PRO_MAX_BLOCK);
        p->blocks = kb;
        p->block_size = kbs;
        p->block_shift = fia_kv_shift(kbs);
        if (nz && p->kvq == 0) {
            p->row_kv = malloc((size_t)p->num_threads * PRO_HCKV * 2);
            p->row_kr = malloc((size_t)p->num_threads * PRO_DR * 2);
            if (!p->row_kv || !p->row_kr)
                return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
        }
        FIA_TRY(pro_cache_index(p, t->cache_index));
        p->kv = fia_tensor_ptr(t->kv_cache);
        p->kr = use_kr ? fia_tensor_ptr(t->kr_cache) : NULL;
        return FIA_STATUS_SUCCESS;
    }
    /* BSND: [B, S, 1, W] with token_x [B, S, He]; TND: [T, 1, W] with token_x [T, He] */
    const bool bsnd = mode == FIA_LAYOUT_BSND;
    if (bsnd != (p->tok_dims == 2))
        return FIA_INVALID("cache_mode %s needs token_x %s; token_x has %d dims",
                           bsnd ? "BSND" : "TND", bsnd ? "[B, S, He]" : "[T, He]",
                           (int)p->tok_dims + 1);
    int64_t kv_in[2] = {1, p->kv_w}, kr_in[2] = {1, PRO_DR};
    pro_rows kv, kr = {0};
    FIA_TRY(token_rows(t->kv_cache, "kv_cache", p->tok, p->tok_dims, kv_in, 2, &kv));
    if (use_kr) FIA_TRY(token_rows(t->kr_cache, "kr_cache", p->tok, p->tok_dims, kr_in, 2, &kr));
    p->kv = kv.base;
    p->kr = kr.base;
    p->kvv = (fia_kv_view){0, kv.rs, 0, 0, 0};
    p->krv = (fia_kv_view){0, kr.rs, 0, 0, 0};
    return FIA_STATUS_SUCCESS;
}

/* The whole validation: modes, the tensor table, then the shape algebra. */
static fia_status pro_validate(pro_plan *p, const fia_mla_prolog_v3_tensors *t,
                               const fia_mla_prolog_v3_params *prm) {
    FIA_TRY(pro_modes(p, prm));
    if (t->actual_seq_len)
        return FIA_UNSUPPORTED("actual_seq_len is given: the PA_BLK cache modes that read it "
                               "are not implemented (pass NULL)");
    const uint32_t conds = pro_conds(p);
    FIA_TRY(fia_tensor_spec_check_when(t, pro_spec, FIA_SPEC_COUNT(pro_spec), conds));
    FIA_TRY(fia_tensor_spec_dtypes_when(t, pro_spec, FIA_SPEC_COUNT(pro_spec), conds));
    FIA_TRY(pro_inputs(p, t));
    FIA_TRY(pro_outputs(p, t));
    FIA_TRY(pro_scales(p, t));
    return pro_caches(p, t, prm->cache_mode);
}

static fia_status pro_gemms(pro_plan *p) {
    const int32_t slots = p->num_threads;
    const int64_t T = p->T;
    const bool pk = p->packed;
    /* a packed plan packs every weight, the int8 ones (weight_quant_mode 1: W_UQ_QR; 2: also
     * W_DQ, W_DKV_KR) in the pack of fia's int8 kernels, which the plan keeps (prolog.h: the
     * weights' values are captured at plan time) */
    const bool wide = pk && T >= PRO_WIDE_T;
    const int64_t mc = wide ? PRO_WIDE_MC : PRO_MC;
    fia_gemm_desc d;
    const fia_dtype down_c = p->wq == 2 ? FIA_DTYPE_INT32 : FIA_DTYPE_FLOAT32;
    const fia_dtype up_c = p->wq ? FIA_DTYPE_INT32 : FIA_DTYPE_FLOAT32;
    const bool wt = T >= 2 && T <= PRO_WT_MAX_T;
    const bool wt_down = wt && pk && down_c == FIA_DTYPE_FLOAT32;
    const bool wt_up = wt && pk && up_c == FIA_DTYPE_FLOAT32;
    /* the int8 gemms run on fia's exact int8 kernels, the bf16 ones at decode sizes on its
     * gemm_bf16b where the library has no bf16 matmul (gemm.h) */
    const fia_i8_kernels *i8 = &p->base.ctx->kernels.i8;
    const fia_kernels *core = &p->base.ctx->kernels.core;
    d = (fia_gemm_desc){T, p->Hcq, p->He, p->x.rs, p->ld_dq, p->Hcq, down_c, pk, wt_down, i8, core};
    FIA_TRY(fia_tgemm_plan(&p->g_dq, &d, mc, wide ? p->Hcq : PRO_NC, slots));
    d = (fia_gemm_desc){T, PRO_HCKV + PRO_DR, p->He, p->x.rs, p->ld_dkv, PRO_HCKV + PRO_DR,
                        down_c, pk, wt_down, i8, core};
    FIA_TRY(fia_tgemm_plan(&p->g_dkv, &d, mc, wide ? PRO_HCKV + PRO_DR : PRO_NC, slots));
    d = (fia_gemm_desc){T, p->W, p->Hcq, p->Hcq, p->ld_uq, p->W, up_c, pk, wt_up, i8, core};
    FIA_TRY(fia_tgemm_plan(&p->g_uq, &d, mc, wide ? p->W : PRO_NC, slots));
    d = (fia_gemm_desc){T, PRO_HCKV, p->D, p->N * p->D, p->ld_uk,
                        p->qq ? p->N * PRO_HCKV : p->qo.rs, FIA_DTYPE_BFLOAT16, pk, false, NULL,
                        core};
    FIA_TRY(fia_tgemm_plan(&p->g_uk, &d, PRO_MC, PRO_HCKV, slots));
    if (pk) { /* the weights' values, captured now (prolog.h) */
        FIA_TRY(fia_tgemm_pack(&p->g_dq, p->wdq, 1, 0));
        FIA_TRY(fia_tgemm_pack(&p->g_dkv, p->wdkv, 1, 0));
        FIA_TRY(fia_tgemm_pack(&p->g_uq, p->wuq, 1, 0));
        FIA_TRY(fia_tgemm_pack(&p->g_uk, p->wuk, p->N, p->wuk_sn));
    }
    const fia_tgemm *g[4] = {&p->g_dq, &p->g_dkv, &p->g_uq, &p->g_uk};
    for (int i = 0; i < 4; i++)
        if (g[i]->scratch_bytes > p->scratch_bytes) p->scratch_bytes = g[i]->scratch_bytes;
    /* stage_norm's bf16 row (no gemm runs then) */
    const size_t row = pro_sc_xb(p) + pro_sc_yf(p) + PRO_SC_RF + PRO_SC_RKV + PRO_SC_RKR;
    if (row > p->scratch_bytes) p->scratch_bytes = row;
    p->scratch_bytes = (p->scratch_bytes + 63) / 64 * 64;
    return FIA_STATUS_SUCCESS;
}

static fia_status pro_plan_make(fia_context *ctx, const fia_mla_prolog_v3_tensors *t,
                                const fia_mla_prolog_v3_params *prm, bool one_shot,
                                fia_plan **plan, size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_mla_prolog_v3_params prm_v;
    fia_mla_prolog_v3_params_init(&prm_v);
    FIA_TRY(fia_params_import(&prm_v, sizeof prm_v, prm, sizeof prm_v,
                              "fia_mla_prolog_v3_params_init"));
    prm = &prm_v;
    if (prm->prepack_weights != 0 && prm->prepack_weights != 1)
        return FIA_INVALID("prepack_weights is %d, must be 0 or 1", (int)prm->prepack_weights);
    const char *why = NULL;
    if (!fia_gemm_available(&why)) return FIA_UNSUPPORTED("mla_prolog_v3: %s", why);
    pro_plan *p = calloc(1, sizeof *p);
    if (!p) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    p->base.ctx = ctx;
    p->base.execute = pro_execute;
    p->base.destroy = pro_destroy;
    /* the projections run on oneDNN's bf16 matmul: AMX tiles where usable, else AVX512-BF16 */
    p->base.unit = ctx->amx_bf16 ? "amx_bf16" : ctx->bf16dp ? "bf16dp" : "fma";
    p->num_threads = ctx->num_threads;
    p->core = &ctx->kernels.core;
    p->chain = &ctx->kernels.chain;
    p->eps_cq = (float)prm->rmsnorm_epsilon_cq;
    p->eps_ckv = (float)prm->rmsnorm_epsilon_ckv;
    p->alpha_q = (float)prm->qc_qr_scale;
    p->alpha_kv = (float)prm->kc_scale;
    /* a plan run once gains nothing from packing: the library packs per tile instead */
    p->packed = prm->prepack_weights != 0 && !one_shot;
    fia_status st = pro_validate(p, t, prm);
    if (st == FIA_STATUS_SUCCESS && p->T > 0) st = pro_gemms(p);
    if (st != FIA_STATUS_SUCCESS) {
        pro_destroy(&p->base);
        return st;
    }
    pro_ws w;
    p->base.workspace_bytes = pro_layout(p, NULL, &w) + FIA_WORKSPACE_ALIGN;
    /* no bf16 matmul in oneDNN here: its fp32 one on widened operands (gemm.h) */
    if (p->T > 0 && fia_gemm_widened(p->g_uk.g[0])) p->base.unit = "fma";
    if (ctx->verbose)
        fprintf(stderr, "fia: mla_prolog_v3: T=%lld He=%lld Hcq=%lld N=%lld D=%lld %s "
                "workspace=%zu gemm=%s weights=%s\n", (long long)p->T, (long long)p->He,
                (long long)p->Hcq, (long long)p->N, (long long)p->D,
                fia_layout_name(prm->cache_mode), p->base.workspace_bytes,
                p->T > 0 ? fia_gemm_impl(p->g_uq.g[0]) : "-",
                p->packed ? "packed at plan time" : "plain (packed per call)");
    *plan = &p->base;
    if (workspace_bytes) *workspace_bytes = p->base.workspace_bytes;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_mla_prolog_v3_plan(fia_context *ctx, const fia_mla_prolog_v3_tensors *t,
                                  const fia_mla_prolog_v3_params *prm, fia_plan **plan,
                                  size_t *workspace_bytes) {
    return pro_plan_make(ctx, t, prm, false, plan, workspace_bytes);
}

fia_status fia_mla_prolog_v3(fia_context *ctx, const fia_mla_prolog_v3_tensors *t,
                             const fia_mla_prolog_v3_params *prm) {
    fia_plan *plan = NULL;
    FIA_TRY(pro_plan_make(ctx, t, prm, true, &plan, NULL));
    return fia_plan_run_once(plan);
}
