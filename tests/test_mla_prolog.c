/*
 * test_mla_prolog.c - mla_prolog_v3 against the double-precision oracle (tests/ref/ref_prolog.c).
 *
 * Sections: seeded random small cases over every supported mode (PA_BSND 3-D / 4-D and PA_NZ caches with
 * negative and shuffled cache indices, BSND, TND, token_x 2-D / 3-D, query_norm_flag, scales),
 * run on every ISA context and on 1 and 2 threads (outputs bitwise identical across them);
 * DeepSeek-V3.2 and GLM-5 shapes at T = 2; edge cases (T = 1, odd He, every cache index
 * negative, T = 0, block size 1024); errors (nothing written, message names the argument).
 * Tolerance: |fia - oracle| <= 1e-3 + 5e-3 |oracle| per element, the oracle rounding to bf16 at
 * the contract golden's points.
 */
#include "ref_prolog.h"
#include "test_util.h"

enum { HCKV = 512, DR = 64 };

static fia_context *g_ctx[4];
static const char *g_ctx_name[4];
static int g_nctx;

typedef struct pcase {
    int64_t B, S;     /* token_x [B, S, He] when three_d, else [T = B*S, He] */
    int three_d;
    int64_t He, Hcq, N, D;
    fia_layout mode;  /* PA_BSND, BSND, TND */
    int64_t blocks, bs;
    int cache4d;
    int qnorm;
    double aq, akv;
    double neg_frac;  /* share of negative cache indices */
    int kvq, qq;      /* kv_cache_quant_mode, query_quant_mode */
    double clip;      /* mode 3: k_nope_clip_alpha (0: NULL) */
    int zero_tile;    /* mode 3: gamma_ckv zero over tile 1, so that tile is all zero */
    int wq;           /* weight_quant_mode */
    int smooth;       /* weight_quant_mode >= 1: pass smooth_scales_cq */
} pcase;

typedef struct pbufs {
    tu_tensor x, wdq, wuq, wuk, wdkv, gcq, gckv, sin, cos, kv, kr, ci, qo, qr, qn;
    tu_tensor qsckv, qsckr, alpha, dqn, dsx, dswdq, dswuq, dswdkv, smooth, dqnorm;
    fia_mla_prolog_v3_tensors t;
    fia_mla_prolog_v3_params prm;
} pbufs;

static int64_t ntok(const pcase *c) { return c->B * c->S; }
static int paged(const pcase *c) {
    return c->mode == FIA_LAYOUT_PA_BSND || c->mode == FIA_LAYOUT_PA_NZ;
}

/* A PA_NZ cache [blocks, 1, W / c, bs, c] (c = 32 bytes of elements) gathered into row-major
 * [blocks * bs, W] (bytes moved as they are, so untouched 0x55 bytes stay 0x55). */
static void nz_to_rows(const tu_tensor *nz, int64_t W, unsigned char *rows) {
    const int64_t blocks = nz->t.shape[0], bs = nz->t.shape[3];
    const int64_t es = (int64_t)fia_dtype_size(nz->t.dtype), c = 32 / es;
    const unsigned char *src = nz->buf;
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t r = 0; r < bs; r++)
            for (int64_t d = 0; d < W; d++)
                memcpy(rows + ((b * bs + r) * W + d) * es,
                       src + (b * W * bs + (d / c) * bs * c + r * c + d % c) * es, (size_t)es);
}

static void free_bufs(pbufs *b) {
    tu_tensor *all[] = {&b->x, &b->wdq, &b->wuq, &b->wuk, &b->wdkv, &b->gcq, &b->gckv, &b->sin,
                        &b->cos, &b->kv, &b->kr, &b->ci, &b->qo, &b->qr, &b->qn,
                        &b->qsckv, &b->qsckr, &b->alpha, &b->dqn, &b->dsx, &b->dswdq,
                        &b->dswuq, &b->dswdkv, &b->smooth, &b->dqnorm};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tu_free(all[i]);
}

/* Token-major shape: [T, rest...] or [B, S, rest...]. */
static int tok_alloc(tu_tensor *tt, const pcase *c, fia_dtype dt, int nrest, const int64_t *rest,
                     unsigned char fill) {
    int64_t sh[6];
    int n = 0;
    if (c->three_d) {
        sh[n++] = c->B;
        sh[n++] = c->S;
    } else {
        sh[n++] = ntok(c);
    }
    for (int i = 0; i < nrest; i++) sh[n++] = rest[i];
    return tu_alloc(tt, dt, n, sh, NULL, fill);
}

static int make_bufs(pbufs *b, const pcase *c, tu_rng *r) {
    memset(b, 0, sizeof *b);
    const int64_t T = ntok(c), W = c->N * (c->D + DR);
    const int64_t he[1] = {c->He}, dr[1] = {DR}, qo[2] = {c->N, HCKV}, qr[2] = {c->N, DR},
                  hcq[1] = {c->Hcq};
    int e = 0;
    const fia_dtype w2 = c->wq == 2 ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const fia_dtype w1 = c->wq ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    e |= tok_alloc(&b->x, c, w2, 1, he, 0);
    e |= tu_alloc(&b->wdq, w2, 2, (int64_t[]){c->He, c->Hcq}, NULL, 0);
    e |= tu_alloc(&b->wuq, w1, 2, (int64_t[]){c->Hcq, W}, NULL, 0);
    if (c->wq) {
        e |= tu_alloc(&b->dswuq, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, W}, NULL, 0);
        if (c->smooth) e |= tu_alloc(&b->smooth, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, c->Hcq}, NULL, 0);
        if (c->qnorm) e |= tu_alloc(&b->dqnorm, FIA_DTYPE_FLOAT32, 2, (int64_t[]){T, 1}, NULL, 0);
    }
    if (c->wq == 2) {
        e |= tu_alloc(&b->dsx, FIA_DTYPE_FLOAT32, 2, (int64_t[]){T, 1}, NULL, 0);
        e |= tu_alloc(&b->dswdq, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, c->Hcq}, NULL, 0);
        e |= tu_alloc(&b->dswdkv, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, HCKV + DR}, NULL, 0);
    }
    e |= tu_alloc(&b->wuk, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){c->N, c->D, HCKV}, NULL, 0);
    e |= tu_alloc(&b->wdkv, w2, 2, (int64_t[]){c->He, HCKV + DR}, NULL, 0);
    e |= tu_alloc(&b->gcq, FIA_DTYPE_BFLOAT16, 1, (int64_t[]){c->Hcq}, NULL, 0);
    e |= tu_alloc(&b->gckv, FIA_DTYPE_BFLOAT16, 1, (int64_t[]){HCKV}, NULL, 0);
    e |= tok_alloc(&b->sin, c, FIA_DTYPE_BFLOAT16, 1, dr, 0);
    e |= tok_alloc(&b->cos, c, FIA_DTYPE_BFLOAT16, 1, dr, 0);
    e |= tok_alloc(&b->qo, c, c->qq ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16, 2, qo, 0);
    e |= tok_alloc(&b->qr, c, FIA_DTYPE_BFLOAT16, 2, qr, 0);
    if (c->qnorm) e |= tok_alloc(&b->qn, c, w1, 1, hcq, 0);
    if (c->qq) e |= tok_alloc(&b->dqn, c, FIA_DTYPE_FLOAT32, 2, (int64_t[]){c->N, 1}, 0);
    /* cache rows: kv (mode 3: the 656-byte row) and kr (mode 3: a dummy, never written) */
    const fia_dtype kvdt = c->kvq ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const fia_dtype krdt = c->kvq == 2 ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const int64_t KW = c->kvq == 3 ? 656 : HCKV;
    const int64_t kc = 32 / (int64_t)fia_dtype_size(kvdt), rc = 32 / (int64_t)fia_dtype_size(krdt);
    if (c->mode == FIA_LAYOUT_PA_NZ) {
        e |= tu_alloc(&b->kv, kvdt, 5, (int64_t[]){c->blocks, 1, KW / kc, c->bs, kc}, NULL, 0x55);
        e |= tu_alloc(&b->kr, krdt, 5, (int64_t[]){c->blocks, 1, DR / rc, c->bs, rc}, NULL, 0x55);
        e |= tok_alloc(&b->ci, c, FIA_DTYPE_INT64, 0, NULL, 0);
    } else if (c->mode == FIA_LAYOUT_PA_BSND) {
        if (c->cache4d) {
            e |= tu_alloc(&b->kv, kvdt, 4, (int64_t[]){c->blocks, c->bs, 1, KW}, NULL, 0x55);
            e |= tu_alloc(&b->kr, krdt, 4, (int64_t[]){c->blocks, c->bs, 1, DR}, NULL, 0x55);
        } else {
            e |= tu_alloc(&b->kv, kvdt, 3, (int64_t[]){c->blocks, c->bs, KW}, NULL, 0x55);
            e |= tu_alloc(&b->kr, krdt, 3, (int64_t[]){c->blocks, c->bs, DR}, NULL, 0x55);
        }
        e |= tok_alloc(&b->ci, c, FIA_DTYPE_INT64, 0, NULL, 0);
    } else {
        const int64_t kv1[2] = {1, KW}, kr1[2] = {1, DR};
        e |= tok_alloc(&b->kv, c, kvdt, 2, kv1, 0x55);
        e |= tok_alloc(&b->kr, c, krdt, 2, kr1, 0x55);
    }
    if (c->kvq == 1) e |= tu_alloc(&b->qsckv, FIA_DTYPE_FLOAT32, 1, (int64_t[]){1}, NULL, 0);
    if (c->kvq == 2) {
        e |= tu_alloc(&b->qsckv, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, HCKV}, NULL, 0);
        e |= tu_alloc(&b->qsckr, FIA_DTYPE_FLOAT32, 2, (int64_t[]){1, DR}, NULL, 0);
    }
    if (c->kvq == 3 && c->clip > 0)
        e |= tu_alloc(&b->alpha, FIA_DTYPE_FLOAT32, 1, (int64_t[]){1}, NULL, 0);
    if (e) return -1;
    if (c->wq == 2) { /* int8 x and weights with their scales: the same value ranges */
        tu_fill_uniform(&b->x.t, r, -127, 128);
        tu_fill_uniform(&b->wdq.t, r, -127, 128);
        tu_fill_uniform(&b->dsx.t, r, 0.5 / 127, 1.5 / 127);
        tu_fill_uniform(&b->dswdq.t, r, 0.5 / 127 / sqrt((double)c->He), 1.5 / 127 / sqrt((double)c->He));
        tu_fill_uniform(&b->dswdkv.t, r, 0.5 / 127 / sqrt((double)c->He), 1.5 / 127 / sqrt((double)c->He));
    } else {
        tu_fill_uniform(&b->x.t, r, -1, 1);
        tu_fill_uniform(&b->wdq.t, r, -1.0 / sqrt((double)c->He), 1.0 / sqrt((double)c->He));
    }
    if (c->wq) {
        tu_fill_uniform(&b->wuq.t, r, -127, 128);
        tu_fill_uniform(&b->dswuq.t, r, 0.5 / 127 / sqrt((double)c->Hcq), 1.5 / 127 / sqrt((double)c->Hcq));
        if (c->smooth) tu_fill_uniform(&b->smooth.t, r, 0.5, 1.5);
    } else {
        tu_fill_uniform(&b->wuq.t, r, -1.0 / sqrt((double)c->Hcq), 1.0 / sqrt((double)c->Hcq));
    }
    tu_fill_uniform(&b->wuk.t, r, -1.0 / sqrt((double)c->D), 1.0 / sqrt((double)c->D));
    if (c->wq == 2)
        tu_fill_uniform(&b->wdkv.t, r, -127, 128);
    else
        tu_fill_uniform(&b->wdkv.t, r, -1.0 / sqrt((double)c->He), 1.0 / sqrt((double)c->He));
    tu_fill_uniform(&b->gcq.t, r, 0.5, 1.5);
    tu_fill_uniform(&b->gckv.t, r, 0.5, 1.5);
    if (c->zero_tile)
        for (int64_t i = 128; i < 256; i++) tu_store(&b->gckv.t, i, 0.0);
    if (c->kvq == 1) tu_store(&b->qsckv.t, 0, tu_uniform(r, 15, 40));
    if (c->kvq == 2) {
        tu_fill_uniform(&b->qsckv.t, r, 10, 40);
        tu_fill_uniform(&b->qsckr.t, r, 20, 120);
    }
    if (b->alpha.buf) tu_store(&b->alpha.t, 0, c->clip);
    /* cos/sin of random angles */
    for (int64_t i = 0; i < T * DR / 2; i++) {
        const double a = tu_uniform(r, -3.14159, 3.14159);
        const int64_t tt = i / (DR / 2), j = i % (DR / 2);
        tu_store(&b->cos.t, tt * DR + j, cos(a));
        tu_store(&b->cos.t, tt * DR + j + DR / 2, cos(a));
        tu_store(&b->sin.t, tt * DR + j, sin(a));
        tu_store(&b->sin.t, tt * DR + j + DR / 2, sin(a));
    }
    if (paged(c)) {
        /* distinct slots, shuffled; some negative */
        const int64_t slots = c->blocks * c->bs;
        int64_t *perm = malloc(sizeof(int64_t) * (size_t)slots);
        if (!perm) return -1;
        for (int64_t i = 0; i < slots; i++) perm[i] = i;
        for (int64_t i = slots - 1; i > 0; i--) {
            const int64_t j = tu_int(r, 0, i), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        for (int64_t i = 0; i < T; i++)
            tu_store(&b->ci.t, i, tu_chance(r, c->neg_frac) ? -1 - tu_int(r, 0, 5) : (double)perm[i]);
        free(perm);
    }
    fia_mla_prolog_v3_params_init(&b->prm);
    b->prm.cache_mode = c->mode;
    b->prm.query_norm_flag = c->qnorm;
    b->prm.qc_qr_scale = c->aq;
    b->prm.kc_scale = c->akv;
    b->prm.kv_cache_quant_mode = c->kvq;
    b->prm.weight_quant_mode = c->wq;
    b->prm.query_quant_mode = c->qq;
    b->prm.ckvkr_repo_mode = b->prm.quant_scale_repo_mode = c->kvq == 3;
    fia_mla_prolog_v3_tensors *t = &b->t;
    memset(t, 0, sizeof *t);
    t->token_x = &b->x.t;
    t->weight_dq = &b->wdq.t;
    t->weight_uq_qr = &b->wuq.t;
    t->weight_uk = &b->wuk.t;
    t->weight_dkv_kr = &b->wdkv.t;
    t->rmsnorm_gamma_cq = &b->gcq.t;
    t->rmsnorm_gamma_ckv = &b->gckv.t;
    t->rope_sin = &b->sin.t;
    t->rope_cos = &b->cos.t;
    t->kv_cache = &b->kv.t;
    t->kr_cache = &b->kr.t;
    t->cache_index = paged(c) ? &b->ci.t : NULL;
    t->query_out = &b->qo.t;
    t->query_rope_out = &b->qr.t;
    t->query_norm = c->qnorm ? &b->qn.t : NULL;
    t->quant_scale_ckv = b->qsckv.buf ? &b->qsckv.t : NULL;
    t->quant_scale_ckr = b->qsckr.buf ? &b->qsckr.t : NULL;
    t->k_nope_clip_alpha = b->alpha.buf ? &b->alpha.t : NULL;
    t->dequant_scale_q_nope = b->dqn.buf ? &b->dqn.t : NULL;
    t->dequant_scale_x = b->dsx.buf ? &b->dsx.t : NULL;
    t->dequant_scale_w_dq = b->dswdq.buf ? &b->dswdq.t : NULL;
    t->dequant_scale_w_uq_qr = b->dswuq.buf ? &b->dswuq.t : NULL;
    t->dequant_scale_w_dkv_kr = b->dswdkv.buf ? &b->dswdkv.t : NULL;
    t->smooth_scales_cq = b->smooth.buf ? &b->smooth.t : NULL;
    t->dequant_scale_q_norm = b->dqnorm.buf ? &b->dqnorm.t : NULL;
    return 0;
}

static double ld(const fia_tensor *t, int64_t off) {
    uint16_t h;
    memcpy(&h, (const char *)t->data + off * 2, 2);
    return fia_bf16_to_f32(h);
}

/* Compares n compact values with the oracle (tolerance 1e-3 + 5e-3 |ref| + slack); returns
 * the failures (first few printed). slack may be NULL. */
static int64_t cmp_block(const char *what, const fia_tensor *t, int64_t off0, const double *want,
                         const double *slack, int64_t n, const char *desc) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = ld(t, off0 + i);
        if (!(fabs(g - want[i]) <= 1e-3 + 5e-3 * fabs(want[i]) + (slack ? slack[i] : 0.0))) {
            if (bad < 3 && desc)
                fprintf(stderr, "  %s[%lld]: fia %.6g oracle %.6g (%s)\n", what,
                        (long long)i, g, want[i], desc);
            bad++;
        }
    }
    return bad;
}

static int64_t g_close, g_total; /* counts of the comparison with the all-double oracle */

/* Checks one context's outputs against the oracle (o), and the untouched cache bytes.
 * exact: o is the all-double oracle without slack: only count the elements within tolerance
 * (g_close / g_total, printed at the end). */
static void check_outputs(const pcase *c, pbufs *b, const ref_prolog_out *o, const char *desc,
                          int exact) {
    const int64_t T = ntok(c);
    int64_t bad = 0;
    const char *cdesc = exact ? NULL : desc; /* NULL: cmp_block prints nothing */
    bad += cmp_block("query_out", &b->qo.t, 0, o->qo, o->sqo, T * c->N * HCKV, cdesc);
    bad += cmp_block("query_rope_out", &b->qr.t, 0, o->qr, o->sqr, T * c->N * DR, cdesc);
    if (c->qnorm) bad += cmp_block("query_norm", &b->qn.t, 0, o->qn, o->sqn, T * c->Hcq, cdesc);
    /* caches: expected rows, everything else untouched (PA_NZ: gathered into rows first) */
    const int64_t rows = paged(c) ? c->blocks * c->bs : T;
    tu_tensor kvr = b->kv, krr = b->kr; /* views only; buffers replaced for PA_NZ */
    unsigned char *nzbuf = NULL;
    if (c->mode == FIA_LAYOUT_PA_NZ) {
        nzbuf = malloc(b->kv.bytes + b->kr.bytes);
        nz_to_rows(&b->kv, HCKV, nzbuf);
        nz_to_rows(&b->kr, DR, nzbuf + b->kv.bytes);
        kvr.t.data = nzbuf;
        krr.t.data = nzbuf + b->kv.bytes;
    }
    int64_t *owner = malloc(sizeof(int64_t) * (size_t)(rows ? rows : 1));
    for (int64_t i = 0; i < rows; i++) owner[i] = -1;
    for (int64_t tt = 0; tt < T; tt++) {
        int64_t s = tt;
        if (paged(c)) {
            int64_t v;
            memcpy(&v, (char *)b->ci.t.data + tu_offset(&b->ci.t, tt) * 8, 8);
            s = v;
        }
        if (s >= 0) owner[s] = tt;
    }
    int64_t untouched_bad = 0;
    for (int64_t s = 0; s < rows; s++) {
        if (owner[s] >= 0) {
            bad += cmp_block("kv_cache", &kvr.t, s * HCKV, o->kv + owner[s] * HCKV,
                             o->skv ? o->skv + owner[s] * HCKV : NULL, HCKV, cdesc);
            bad += cmp_block("kr_cache", &krr.t, s * DR, o->kr + owner[s] * DR,
                             o->skr ? o->skr + owner[s] * DR : NULL, DR, cdesc);
        } else {
            for (int64_t j = 0; j < HCKV * 2; j++)
                untouched_bad += ((unsigned char *)kvr.t.data)[s * HCKV * 2 + j] != 0x55;
            for (int64_t j = 0; j < DR * 2; j++)
                untouched_bad += ((unsigned char *)krr.t.data)[s * DR * 2 + j] != 0x55;
        }
    }
    free(owner);
    free(nzbuf);
    if (exact) {
        int64_t total = T * c->N * (HCKV + DR) + (c->qnorm ? T * c->Hcq : 0);
        for (int64_t tt = 0; tt < T; tt++) {
            int64_t s = tt;
            if (paged(c)) {
                memcpy(&s, (char *)b->ci.t.data + tu_offset(&b->ci.t, tt) * 8, 8);
            }
            if (s >= 0) total += HCKV + DR;
        }
        g_close += total - bad;
        g_total += total;
        tu_check(untouched_bad == 0, "cache bytes written outside the slots: %s", desc);
        return; /* informational: the golden's bf16 intermediates move ~5% of elements past
                 * the tolerance of exact math; main() prints the share */
    }
    tu_check(bad == 0, "%lld elements off the oracle: %s", (long long)bad, desc);
    tu_check(untouched_bad == 0, "%lld cache bytes written outside the indexed slots: %s",
             (long long)untouched_bad, desc);
}

/* An int8 result against the real value the contract rounds: exact, or one off where the
 * value sits within `slack` (in quantization steps) of a rounding tie. Returns 1 when off. */
static int i8_off(int got, double real, double slack) {
    const double r = fmin(fmax(real, -128.0), 127.0);
    const double want = fmin(fmax(rint(real), -128.0), 127.0);
    if (got == (int)want) return 0;
    return !(fabs(got - want) == 1.0 && fabs(got - r) <= 0.5 + 1e-4 + slack);
}

static int64_t g_i8_total, g_i8_exact; /* int8 elements compared, and equal to rint(oracle) */

/* The quantized modes: caches per kv_cache_quant_mode, query_out / dequant_scale_q_nope /
 * query_rope_out per query_quant_mode, untouched bytes, against the oracle o and its quantized
 * form q. */
static void check_quant(const pcase *c, pbufs *b, const ref_prolog_out *o,
                        const ref_prolog_quant *q, const char *desc) {
    const int64_t T = ntok(c), N = c->N;
    int64_t bad = 0, untouched_bad = 0;
    if (c->qq) {
        const int8_t *qo = b->qo.buf;
        const float *dq = b->dqn.buf;
        const double qs0 = ((const float *)b->qsckv.buf)[0];
        for (int64_t i = 0; i < T * N; i++) {
            double smax = 0.0, amax = 0.0;
            for (int j = 0; j < HCKV; j++) {
                smax = fmax(smax, o->sqo[i * HCKV + j]);
                amax = fmax(amax, fabs(o->qo[i * HCKV + j]));
            }
            const double s = q->qs[i], ds = (1e-3 + 5e-3 * amax + smax) / 127.0;
            if (!(fabs(dq[i] - s) <= ds)) {
                if (bad < 3) fprintf(stderr, "  dequant_scale_q_nope[%lld]: %g oracle %g (%s)\n",
                                     (long long)i, (double)dq[i], s, desc);
                bad++;
            }
            for (int j = 0; j < HCKV; j++) {
                const double ref = o->qo[i * HCKV + j];
                const double tol = s > 0 ? (1e-3 + 5e-3 * fabs(ref) + o->sqo[i * HCKV + j]) / s : 0;
                g_i8_total++;
                g_i8_exact += qo[i * HCKV + j] == (int)fmin(fmax(rint(q->qoq[i * HCKV + j]), -128), 127);
                if (i8_off(qo[i * HCKV + j], q->qoq[i * HCKV + j], tol)) {
                    if (bad < 3) fprintf(stderr, "  query_out[%lld]: %d oracle %.4f (%s)\n",
                                         (long long)(i * HCKV + j), qo[i * HCKV + j],
                                         q->qoq[i * HCKV + j], desc);
                    bad++;
                }
            }
            for (int d = 0; d < DR; d++) {
                const double ref = q->qrq[i * DR + d];
                const double g = ld(&b->qr.t, i * DR + d);
                const double tol = 1e-3 + 5e-3 * fabs(ref) +
                                   (s > 0 ? (fabs(ref) * ds + o->sqr[i * DR + d] * qs0) / s : 0);
                if (!(fabs(g - ref) <= tol)) {
                    if (bad < 3) fprintf(stderr, "  query_rope_out[%lld]: %g oracle %g (%s)\n",
                                         (long long)(i * DR + d), g, ref, desc);
                    bad++;
                }
            }
        }
    } else {
        bad += cmp_block("query_out", &b->qo.t, 0, o->qo, o->sqo, T * N * HCKV, desc);
        bad += cmp_block("query_rope_out", &b->qr.t, 0, o->qr, o->sqr, T * N * DR, desc);
    }
    if (c->qnorm && !c->wq)
        bad += cmp_block("query_norm", &b->qn.t, 0, o->qn, o->sqn, T * c->Hcq, desc);
    if (c->qnorm && c->wq) { /* int8 query_norm and its per-token scale */
        const int8_t *qn = b->qn.buf;
        const float *sc = b->dqnorm.buf;
        for (int64_t tt = 0; tt < T; tt++) {
            if (!(fabs(sc[tt] - o->qns[tt]) <= (1e-5 + o->sqns[tt]) * o->qns[tt])) {
                if (bad < 3) fprintf(stderr, "  dequant_scale_q_norm[%lld]: %g oracle %g (%s)\n",
                                     (long long)tt, (double)sc[tt], o->qns[tt], desc);
                bad++;
            }
            for (int64_t j = 0; j < c->Hcq; j++) {
                g_i8_total++;
                g_i8_exact += qn[tt * c->Hcq + j] == (int)fmin(fmax(rint(o->qn[tt * c->Hcq + j]), -128), 127);
                if (i8_off(qn[tt * c->Hcq + j], o->qn[tt * c->Hcq + j],
                           1e-4 + o->sqn[tt * c->Hcq + j])) {
                    if (bad < 3) fprintf(stderr, "  query_norm[%lld]: %d oracle %.4f (%s)\n",
                                         (long long)(tt * c->Hcq + j), qn[tt * c->Hcq + j],
                                         o->qn[tt * c->Hcq + j], desc);
                    bad++;
                }
            }
        }
    }
    /* cache rows */
    const int64_t rows = paged(c) ? c->blocks * c->bs : T;
    const int64_t kvb = b->kv.bytes / (size_t)(rows ? rows : 1), krb = b->kr.bytes / (size_t)(rows ? rows : 1);
    unsigned char *kvr = b->kv.buf, *krr = b->kr.buf, *nzbuf = NULL;
    if (c->mode == FIA_LAYOUT_PA_NZ) {
        nzbuf = malloc(b->kv.bytes + b->kr.bytes);
        nz_to_rows(&b->kv, kvb / (int64_t)fia_dtype_size(b->kv.t.dtype), nzbuf);
        nz_to_rows(&b->kr, DR, nzbuf + b->kv.bytes);
        kvr = nzbuf;
        krr = nzbuf + b->kv.bytes;
    }
    int64_t *owner = malloc(sizeof(int64_t) * (size_t)(rows ? rows : 1));
    for (int64_t i = 0; i < rows; i++) owner[i] = -1;
    for (int64_t tt = 0; tt < T; tt++) {
        int64_t sl = tt;
        if (paged(c)) memcpy(&sl, (char *)b->ci.t.data + tu_offset(&b->ci.t, tt) * 8, 8);
        if (sl >= 0) owner[sl] = tt;
    }
    const float *qsckv = b->qsckv.buf, *qsckr = b->qsckr.buf;
    for (int64_t sl = 0; sl < rows; sl++) {
        const int64_t tt = owner[sl];
        const int8_t *kv = (const int8_t *)(kvr + sl * kvb);
        if (tt < 0 || c->kvq == 3) /* mode 3: the kr cache is never written */
            for (int64_t j = 0; j < krb; j++) untouched_bad += krr[sl * krb + j] != 0x55;
        if (tt < 0) {
            for (int64_t j = 0; j < kvb; j++) untouched_bad += kvr[sl * kvb + j] != 0x55;
            continue;
        }
        const double *skv = o->skv + tt * HCKV;
        if (c->kvq == 0) { /* bf16 rows */
            tu_tensor kvt = b->kv, krt = b->kr;
            kvt.t.data = kvr;
            krt.t.data = krr;
            bad += cmp_block("kv_cache", &kvt.t, sl * HCKV, o->kv + tt * HCKV, skv, HCKV, desc);
            bad += cmp_block("kr_cache", &krt.t, sl * DR, o->kr + tt * DR, o->skr + tt * DR, DR, desc);
            continue;
        }
        for (int j = 0; j < HCKV; j++) {
            double unit = c->kvq == 1 ? qsckv[0] : c->kvq == 2 ? qsckv[j] : 0;
            if (c->kvq == 3) unit = 1.0 / q->kscale[tt * 4 + j / 128];
            g_i8_total++;
            g_i8_exact += kv[j] == (int)fmin(fmax(rint(q->kvq[tt * HCKV + j]), -128), 127);
            if (i8_off(kv[j], q->kvq[tt * HCKV + j], skv[j] * fabs(unit))) {
                if (bad < 3) fprintf(stderr, "  kv_cache row %lld [%d]: %d oracle %.4f (%s)\n",
                                     (long long)sl, j, kv[j], q->kvq[tt * HCKV + j], desc);
                bad++;
            }
        }
        if (c->kvq == 3) {
            tu_tensor rope = b->kv; /* the bf16 rope at bytes 512.. of the row */
            rope.t.data = kvr + sl * kvb + 512;
            bad += cmp_block("kv_cache rope", &rope.t, 0, o->kr + tt * DR, o->skr + tt * DR, DR, desc);
            for (int i = 0; i < 4; i++) {
                float sc;
                memcpy(&sc, kvr + sl * kvb + 640 + i * 4, 4);
                double smax = 0.0;
                for (int j = 0; j < 128; j++) smax = fmax(smax, skv[i * 128 + j]);
                const double want = q->kscale[tt * 4 + i];
                const double a = c->clip > 0 ? c->clip : 1.0;
                if (!(fabs(sc - want) <= 1e-5 * want + smax * a / 127.0)) {
                    if (bad < 3) fprintf(stderr, "  kv_cache row %lld scale %d: %g oracle %g (%s)\n",
                                         (long long)sl, i, (double)sc, want, desc);
                    bad++;
                }
            }
        } else if (c->kvq == 2) {
            const int8_t *kr = (const int8_t *)(krr + sl * krb);
            for (int d = 0; d < DR; d++) {
                g_i8_total++;
                g_i8_exact += kr[d] == (int)fmin(fmax(rint(q->krq[tt * DR + d]), -128), 127);
                if (i8_off(kr[d], q->krq[tt * DR + d],
                           (o->skr[tt * DR + d] + 1e-6 * fabs(o->kr[tt * DR + d])) * qsckr[d])) {
                    if (bad < 3) fprintf(stderr, "  kr_cache row %lld [%d]: %d oracle %.4f (%s)\n",
                                         (long long)sl, d, kr[d], q->krq[tt * DR + d], desc);
                    bad++;
                }
            }
        } else {
            tu_tensor kr = b->kr;
            kr.t.data = krr;
            bad += cmp_block("kr_cache", &kr.t, sl * DR, o->kr + tt * DR, o->skr + tt * DR, DR, desc);
        }
    }
    free(owner);
    free(nzbuf);
    tu_check(bad == 0, "%lld elements off the oracle: %s", (long long)bad, desc);
    tu_check(untouched_bad == 0, "%lld cache bytes written outside the indexed slots: %s",
             (long long)untouched_bad, desc);
}

static void reset_outputs(pbufs *b) {
    memset(b->kv.buf, 0x55, b->kv.bytes);
    memset(b->kr.buf, 0x55, b->kr.bytes);
    memset(b->qo.buf, 0, b->qo.bytes);
    if (b->dqn.buf) memset(b->dqn.buf, 0, b->dqn.bytes);
    memset(b->qr.buf, 0, b->qr.bytes);
    if (b->qn.buf) memset(b->qn.buf, 0, b->qn.bytes);
}

typedef struct snap {
    void *kv, *kr, *qo, *qr;
} snap;

static void run_planned(const pcase *c, pbufs *b, const ref_prolog_out *golden,
                        const ref_prolog_quant *quant, const char *desc, int nctx);

static void run_case(const pcase *c, uint64_t seed, int nctx) {
    char desc[256];
    snprintf(desc, sizeof desc,
             "seed %llu T %lld (%s) He %lld Hcq %lld N %lld D %lld %s%s bs %lld qnorm %d "
             "aq %.2f akv %.2f kvq %d qq %d clip %.2f wq %d smooth %d",
             (unsigned long long)seed, (long long)ntok(c), c->three_d ? "B,S" : "T",
             (long long)c->He, (long long)c->Hcq, (long long)c->N, (long long)c->D,
             fia_layout_name(c->mode), c->cache4d ? "-4d" : "", (long long)c->bs, c->qnorm,
             c->aq, c->akv, c->kvq, c->qq, c->clip, c->wq, c->smooth);
    tu_rng r = tu_rng_make(seed);
    pbufs b;
    if (make_bufs(&b, c, &r) != 0) {
        tu_check(0, "allocation failed: %s", desc);
        free_bufs(&b);
        return;
    }
    const int64_t T = ntok(c);
    double *qo = malloc(sizeof(double) * (size_t)(T * c->N * HCKV + 1));
    double *qr = malloc(sizeof(double) * (size_t)(T * c->N * DR + 1));
    double *qn = malloc(sizeof(double) * (size_t)(T * c->Hcq + 1));
    double *kv = malloc(sizeof(double) * (size_t)(T * HCKV + 1));
    double *kr = malloc(sizeof(double) * (size_t)(T * DR + 1));
    double *go = malloc(sizeof(double) * (size_t)(T * c->N * HCKV + 1));
    double *gr = malloc(sizeof(double) * (size_t)(T * c->N * DR + 1));
    double *gn = malloc(sizeof(double) * (size_t)(T * c->Hcq + 1));
    double *gv = malloc(sizeof(double) * (size_t)(T * HCKV + 1));
    double *gk = malloc(sizeof(double) * (size_t)(T * DR + 1));
    double *sqo = malloc(sizeof(double) * (size_t)(T * c->N * HCKV + 1));
    double *sqr = malloc(sizeof(double) * (size_t)(T * c->N * DR + 1));
    double *sqn = malloc(sizeof(double) * (size_t)(T * c->Hcq + 1));
    double *skv = malloc(sizeof(double) * (size_t)(T * HCKV + 1));
    double *skr = malloc(sizeof(double) * (size_t)(T * DR + 1));
    double *qns = malloc(sizeof(double) * (size_t)(T + 1));
    double *sqns = malloc(sizeof(double) * (size_t)(T + 1));
    const ref_prolog_out golden = {qo, qr, qn, kv, kr, sqo, sqr, sqn, skv, skr, qns, sqns};
    const ref_prolog_out exact = {go, gr, gn, gv, gk, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    double *kvq = malloc(sizeof(double) * (size_t)(T * HCKV + 1));
    double *ksc = malloc(sizeof(double) * (size_t)(T * 4 + 1));
    double *krq = malloc(sizeof(double) * (size_t)(T * DR + 1));
    double *qsv = malloc(sizeof(double) * (size_t)(T * c->N + 1));
    double *qoq = malloc(sizeof(double) * (size_t)(T * c->N * HCKV + 1));
    double *qrq = malloc(sizeof(double) * (size_t)(T * c->N * DR + 1));
    const ref_prolog_quant quant = {kvq, ksc, krq, qsv, qoq, qrq};
    const int quantized = c->kvq || c->qq || c->wq;
    if (fia_ref_mla_prolog_v3(&b.t, &b.prm, 2, &golden) != 0 ||
        fia_ref_mla_prolog_v3(&b.t, &b.prm, 0, &exact) != 0 ||
        (quantized && fia_ref_mla_prolog_v3_quant(&b.t, &b.prm, &golden, &quant) != 0))
        tu_check(0, "oracle");
    snap first = {0};
    for (int k = 0; k < nctx; k++) {
        reset_outputs(&b);
        const fia_status st = fia_mla_prolog_v3(g_ctx[k], &b.t, &b.prm);
        char d2[320];
        snprintf(d2, sizeof d2, "%s ctx %s", desc, g_ctx_name[k]);
        if (!tu_check(st == FIA_STATUS_SUCCESS, "status %s (%s): %s", fia_status_string(st),
                      fia_last_error(), d2))
            continue;
        if (quantized)
            check_quant(c, &b, &golden, &quant, d2);
        else
            check_outputs(c, &b, &golden, d2, 0);
        if (k == 0) {
            if (!quantized) check_outputs(c, &b, &exact, d2, 1);
            first.kv = malloc(b.kv.bytes);
            first.kr = malloc(b.kr.bytes);
            first.qo = malloc(b.qo.bytes);
            first.qr = malloc(b.qr.bytes);
            memcpy(first.kv, b.kv.buf, b.kv.bytes);
            memcpy(first.kr, b.kr.buf, b.kr.bytes);
            memcpy(first.qo, b.qo.buf, b.qo.bytes);
            memcpy(first.qr, b.qr.buf, b.qr.bytes);
        } else if (first.kv) {
            tu_check(!memcmp(first.kv, b.kv.buf, b.kv.bytes) &&
                         !memcmp(first.kr, b.kr.buf, b.kr.bytes) &&
                         !memcmp(first.qo, b.qo.buf, b.qo.bytes) &&
                         !memcmp(first.qr, b.qr.buf, b.qr.bytes),
                     "outputs differ bitwise from ctx %s: %s", g_ctx_name[0], d2);
        }
    }
    free(first.kv);
    free(first.kr);
    free(first.qo);
    free(first.qr);
    run_planned(c, &b, &golden, quantized ? &quant : NULL, desc, nctx);
    free(qns);
    free(sqns);
    free(kvq);
    free(ksc);
    free(krq);
    free(qsv);
    free(qoq);
    free(qrq);
    free(qo);
    free(qr);
    free(qn);
    free(kv);
    free(kr);
    free(sqo);
    free(sqr);
    free(sqn);
    free(skv);
    free(skr);
    free(go);
    free(gr);
    free(gn);
    free(gv);
    free(gk);
    free_bufs(&b);
}

/* The plan path (prepack_weights = 1: the weights packed at plan time): within tolerance of the
 * oracle, bitwise identical across contexts (ISA levels, 1 and 2 threads), and the weights'
 * values captured at plan time: on the first context the weight buffers are scribbled over
 * between plan and execute, and the outputs still follow the planned weights. */
static void run_planned(const pcase *c, pbufs *b, const ref_prolog_out *golden,
                        const ref_prolog_quant *quant, const char *desc, int nctx) {
    tu_tensor *w[4] = {&b->wdq, &b->wuq, &b->wuk, &b->wdkv};
    unsigned char *first[4] = {NULL, NULL, NULL, NULL};
    tu_tensor *o[4] = {&b->kv, &b->kr, &b->qo, &b->qr};
    for (int k = 0; k < nctx; k++) {
        char d2[340];
        snprintf(d2, sizeof d2, "%s ctx %s (plan, packed weights)", desc, g_ctx_name[k]);
        reset_outputs(b);
        fia_plan *plan = NULL;
        size_t ws = 0;
        fia_status st = fia_mla_prolog_v3_plan(g_ctx[k], &b->t, &b->prm, &plan, &ws);
        if (!tu_check(st == FIA_STATUS_SUCCESS, "plan %s (%s): %s", fia_status_string(st),
                      fia_last_error(), d2))
            continue;
        unsigned char *saved[4] = {NULL, NULL, NULL, NULL};
        if (k == 0)
            for (int i = 0; i < 4; i++) {
                saved[i] = malloc(w[i]->bytes ? w[i]->bytes : 1);
                if (saved[i]) {
                    memcpy(saved[i], w[i]->buf, w[i]->bytes);
                    memset(w[i]->buf, 0x7f, w[i]->bytes); /* bf16 0x7f7f: huge values */
                }
            }
        void *wsb = malloc(ws ? ws : 1);
        st = wsb ? fia_plan_execute(plan, wsb, ws) : FIA_STATUS_OUT_OF_MEMORY;
        free(wsb);
        fia_plan_destroy(plan);
        for (int i = 0; i < 4; i++)
            if (saved[i]) {
                memcpy(w[i]->buf, saved[i], w[i]->bytes);
                free(saved[i]);
            }
        if (!tu_check(st == FIA_STATUS_SUCCESS, "execute %s: %s", fia_status_string(st), d2))
            continue;
        if (quant)
            check_quant(c, b, golden, quant, d2);
        else
            check_outputs(c, b, golden, d2, 0);
        if (k == 0) {
            for (int i = 0; i < 4; i++) {
                first[i] = malloc(o[i]->bytes ? o[i]->bytes : 1);
                if (first[i]) memcpy(first[i], o[i]->buf, o[i]->bytes);
            }
        } else {
            int same = 1;
            for (int i = 0; i < 4; i++)
                if (first[i] && memcmp(first[i], o[i]->buf, o[i]->bytes) != 0) same = 0;
            tu_check(same, "outputs differ bitwise from ctx %s: %s", g_ctx_name[0], d2);
        }
    }
    for (int i = 0; i < 4; i++) free(first[i]);
}

static pcase random_case(tu_rng *r) {
    pcase c;
    memset(&c, 0, sizeof c);
    const fia_layout modes[] = {FIA_LAYOUT_PA_BSND, FIA_LAYOUT_PA_BSND, FIA_LAYOUT_PA_NZ,
                                FIA_LAYOUT_BSND, FIA_LAYOUT_TND};
    c.mode = TU_PICK(r, modes);
    c.three_d = c.mode == FIA_LAYOUT_BSND ? 1 : c.mode == FIA_LAYOUT_TND ? 0 : (int)tu_int(r, 0, 1);
    c.B = c.three_d ? tu_int(r, 1, 3) : 1;
    c.S = tu_int(r, 1, 6);
    const int64_t hes[] = {1, 31, 64, 97, 128};
    const int64_t hcqs[] = {8, 24, 48, 64};
    const int64_t ns[] = {1, 2, 4, 8};
    const int64_t ds[] = {8, 16, 24, 32};
    c.He = TU_PICK(r, hes);
    c.Hcq = TU_PICK(r, hcqs);
    c.N = TU_PICK(r, ns);
    c.D = TU_PICK(r, ds);
    const int64_t bss[] = {1, 16, 32, 128};
    c.bs = TU_PICK(r, bss);
    c.blocks = (ntok(&c) + c.bs - 1) / c.bs + tu_int(r, 0, 2);
    c.cache4d = (int)tu_int(r, 0, 1);
    c.qnorm = (int)tu_int(r, 0, 1);
    c.aq = tu_chance(r, 0.5) ? 1.0 : tu_uniform(r, 0.25, 2.0);
    c.akv = tu_chance(r, 0.5) ? 1.0 : tu_uniform(r, 0.25, 2.0);
    c.neg_frac = tu_chance(r, 0.3) ? 0.3 : 0.0;
    const int kvqs[] = {0, 0, 1, 2, 3, 3};
    c.kvq = TU_PICK(r, kvqs);
    if (c.kvq == 3 && c.mode == FIA_LAYOUT_PA_NZ) c.mode = FIA_LAYOUT_PA_BSND;
    c.qq = c.kvq == 1 && tu_chance(r, 0.6);
    c.clip = c.kvq != 3 ? 0.0 : tu_chance(r, 0.3) ? 0.0 : tu_chance(r, 0.5) ? 1.0 : tu_uniform(r, 0.5, 1.0);
    c.zero_tile = c.kvq == 3 && tu_chance(r, 0.25);
    const int wqs[] = {0, 0, 1, 2};
    c.wq = TU_PICK(r, wqs);
    c.smooth = c.wq && tu_chance(r, 0.5);
    return c;
}

/* ---- errors: nothing written, the message names the argument -------------------------- */

static int msg_has(const char *s) { return strstr(fia_last_error(), s) != NULL; }

static void test_errors(uint64_t seed) {
    pcase c = {1, 4, 0, 64, 32, 2, 16, FIA_LAYOUT_PA_BSND, 2, 16, 1, 1, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
    tu_rng r = tu_rng_make(seed);
    pbufs b;
    if (make_bufs(&b, &c, &r) != 0) {
        tu_check(0, "errors: allocation");
        free_bufs(&b);
        return;
    }
    fia_context *ctx = g_ctx[0];
    reset_outputs(&b);
    void *kv0 = malloc(b.kv.bytes);
    memcpy(kv0, b.kv.buf, b.kv.bytes);
    /* out-of-range cache index: INVALID, nothing written */
    int64_t saved;
    memcpy(&saved, (char *)b.ci.buf + 16, 8);
    const int64_t big = c.blocks * c.bs;
    memcpy((char *)b.ci.buf + 16, &big, 8);
    fia_status st = fia_mla_prolog_v3(ctx, &b.t, &b.prm);
    tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("cache_index[2]"),
             "index out of range: %s %s", fia_status_string(st), fia_last_error());
    tu_check(!memcmp(kv0, b.kv.buf, b.kv.bytes), "cache written on a failed call");
    memcpy((char *)b.ci.buf + 16, &saved, 8);
    /* modes: unsupported or inconsistent ones name the argument */
    struct {
        int32_t wq, kvq, qq, repo;
        fia_status st;
        const char *name;
    } modes[] = {{1, 0, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "dequant_scale_w_uq_qr is NULL"},
                 {2, 0, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "dequant_scale_x is NULL"},
                 {3, 0, 0, 0, FIA_STATUS_UNSUPPORTED, "weight_quant_mode"},
                 {6, 0, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "weight_quant_mode"},
                 {0, 4, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "kv_cache_quant_mode"},
                 {0, 1, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "quant_scale_ckv is NULL"},
                 {0, 2, 0, 0, FIA_STATUS_INVALID_ARGUMENT, "quant_scale_ckv is NULL"},
                 {0, 3, 0, 0, FIA_STATUS_UNSUPPORTED, "kv_cache_quant_mode 3"},
                 {0, 0, 1, 0, FIA_STATUS_INVALID_ARGUMENT, "query_quant_mode"},
                 {0, 0, 2, 0, FIA_STATUS_INVALID_ARGUMENT, "query_quant_mode"},
                 {0, 0, 0, 1, FIA_STATUS_INVALID_ARGUMENT, "ckvkr_repo_mode"}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        fia_mla_prolog_v3_params p = b.prm;
        p.weight_quant_mode = modes[i].wq;
        p.kv_cache_quant_mode = modes[i].kvq;
        p.query_quant_mode = modes[i].qq;
        p.ckvkr_repo_mode = p.quant_scale_repo_mode = modes[i].repo;
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == modes[i].st && msg_has(modes[i].name), "modes %d %d %d %d: %s %s",
                 (int)modes[i].wq, (int)modes[i].kvq, (int)modes[i].qq, (int)modes[i].repo,
                 fia_status_string(st), fia_last_error());
    }
    {
        fia_mla_prolog_v3_tensors t = b.t;
        t.k_nope_clip_alpha = &b.gcq.t; /* given without kv_cache_quant_mode 3 */
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("k_nope_clip_alpha is given"),
                 "clip alpha without mode 3: %s %s", fia_status_string(st), fia_last_error());
    }
    {
        fia_mla_prolog_v3_params p = b.prm;
        p.cache_mode = FIA_LAYOUT_PA_NZ; /* with PA_BSND-shaped caches */
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("kv_cache has 4 dims: a PA_NZ"),
                 "PA_NZ shapes: %s %s", fia_status_string(st), fia_last_error());
    }
    {
        fia_mla_prolog_v3_tensors t = b.t;
        t.smooth_scales_cq = &b.gcq.t;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("smooth_scales_cq is given"),
                 "smooth: %s %s",
                 fia_status_string(st), fia_last_error());
    }
    /* shape errors name the tensor */
    {
        fia_tensor w = b.wdq.t;
        w.shape[0] = c.He + 1;
        fia_mla_prolog_v3_tensors t = b.t;
        t.weight_dq = &w;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("weight_dq dim 0"),
                 "weight_dq He: %s %s", fia_status_string(st), fia_last_error());
        fia_tensor kr = b.kr.t;
        kr.shape[3] = 32;
        t = b.t;
        t.kr_cache = &kr;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("kr_cache dim 3"),
                 "kr_cache width: %s %s", fia_status_string(st), fia_last_error());
        t = b.t;
        t.cache_index = NULL;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("cache_index"),
                 "cache_index NULL: %s %s", fia_status_string(st), fia_last_error());
        t = b.t;
        t.query_norm = NULL;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("query_norm"),
                 "query_norm NULL: %s %s", fia_status_string(st), fia_last_error());
        fia_tensor qo = b.qo.t;
        qo.shape[1] = c.N + 1;
        t = b.t;
        t.query_out = &qo;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("query_out dim 1"),
                 "query_out N: %s %s", fia_status_string(st), fia_last_error());
    }
    /* an innermost stride other than 1 (here 0: the view stays inside its buffer) is refused
     * for every tensor read or written as dense rows, the weights included (the gemms read a
     * weight row as dense: a stride-0 weight_uk was once read past its end) */
    {
        void *qo0 = malloc(b.qo.bytes);
        memcpy(qo0, b.qo.buf, b.qo.bytes);
#define DENSE(f) {offsetof(fia_mla_prolog_v3_tensors, f), #f}
        static const struct {
            size_t off; /* of the tensor pointer in fia_mla_prolog_v3_tensors */
            const char *name;
        } dense[] = {DENSE(token_x),       DENSE(weight_dq),      DENSE(weight_uq_qr),
                     DENSE(weight_uk),     DENSE(weight_dkv_kr),  DENSE(rope_sin),
                     DENSE(rope_cos),      DENSE(kv_cache),       DENSE(kr_cache),
                     DENSE(query_out),     DENSE(query_rope_out)};
#undef DENSE
        for (size_t i = 0; i < sizeof dense / sizeof dense[0]; i++) {
            fia_mla_prolog_v3_tensors t = b.t;
            const fia_tensor *orig;
            memcpy(&orig, (char *)&t + dense[i].off, sizeof orig);
            fia_tensor v = *orig;
            v.strides[v.ndim - 1] = 0;
            const fia_tensor *pv = &v;
            memcpy((char *)&t + dense[i].off, &pv, sizeof pv);
            st = fia_mla_prolog_v3(ctx, &t, &b.prm);
            tu_check(st == FIA_STATUS_UNSUPPORTED && msg_has(dense[i].name) &&
                         msg_has("innermost stride"),
                     "%s innermost stride 0: %s %s", dense[i].name, fia_status_string(st),
                     fia_last_error());
        }
        tu_check(!memcmp(qo0, b.qo.buf, b.qo.bytes), "query_out written by a failed call");
        free(qo0);
    }
    tu_check(!memcmp(kv0, b.kv.buf, b.kv.bytes), "cache written by a failed call");
    /* params struct not initialised */
    {
        fia_mla_prolog_v3_params p = b.prm;
        p.struct_size = 3;
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT, "struct_size 3: %s", fia_status_string(st));
    }
    /* plan / execute / workspace */
    {
        fia_plan *plan = NULL;
        size_t ws = 0;
        st = fia_mla_prolog_v3_plan(ctx, &b.t, &b.prm, &plan, &ws);
        if (tu_check(st == FIA_STATUS_SUCCESS && plan, "plan: %s", fia_last_error())) {
            tu_check(fia_plan_execute(plan, NULL, 0) == (ws ? FIA_STATUS_WORKSPACE_TOO_SMALL
                                                            : FIA_STATUS_SUCCESS),
                     "small workspace");
            void *w = malloc(ws);
            tu_check(fia_plan_execute(plan, w, ws) == FIA_STATUS_SUCCESS, "execute");
            tu_check(fia_plan_execute(plan, w, ws) == FIA_STATUS_SUCCESS, "re-execute");
            free(w);
            fia_plan_destroy(plan);
        }
    }
    free(kv0);
    free_bufs(&b);
}

/* The quantized modes' bad input: each call fails naming the tensor and dim, and no cache
 * byte changes. */
static void test_errors_quant(uint64_t seed) {
    pcase c = {1, 4, 0, 64, 32, 2, 16, FIA_LAYOUT_PA_BSND, 2, 16, 1, 0, 1.0, 1.0, 0.0,
               3, 0, 0.9, 0, 0, 0};
    tu_rng r = tu_rng_make(seed);
    pbufs b;
    if (make_bufs(&b, &c, &r) != 0) {
        tu_check(0, "errors (quant): allocation");
        free_bufs(&b);
        return;
    }
    fia_context *ctx = g_ctx[0];
    reset_outputs(&b);
    unsigned char *kv0 = malloc(b.kv.bytes);
    memcpy(kv0, b.kv.buf, b.kv.bytes);
    fia_status st;
    /* an out-of-range cache index after valid ones: nothing written */
    {
        int64_t saved;
        memcpy(&saved, (char *)b.ci.buf + 24, 8);
        const int64_t big = c.blocks * c.bs + 3;
        memcpy((char *)b.ci.buf + 24, &big, 8);
        st = fia_mla_prolog_v3(ctx, &b.t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("cache_index[3]"),
                 "C8 index out of range: %s %s", fia_status_string(st), fia_last_error());
        memcpy((char *)b.ci.buf + 24, &saved, 8);
    }
    /* kv_cache: bf16 dtype, 512 wide */
    {
        fia_tensor kv = b.kv.t;
        kv.dtype = FIA_DTYPE_BFLOAT16;
        kv.shape[3] = 328;
        fia_mla_prolog_v3_tensors t = b.t;
        t.kv_cache = &kv;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("kv_cache dtype"),
                 "C8 kv dtype: %s %s", fia_status_string(st), fia_last_error());
        kv = b.kv.t;
        kv.shape[3] = 512;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("kv_cache dim 3"),
                 "C8 kv width: %s %s", fia_status_string(st), fia_last_error());
    }
    /* clip alpha <= 0, wrong shape; tile size; PA_NZ */
    {
        float *a = b.alpha.buf;
        a[0] = 0.0f;
        st = fia_mla_prolog_v3(ctx, &b.t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("k_nope_clip_alpha"),
                 "alpha 0: %s %s", fia_status_string(st), fia_last_error());
        a[0] = 0.9f;
        fia_mla_prolog_v3_tensors t = b.t;
        t.k_nope_clip_alpha = &b.gckv.t;
        st = fia_mla_prolog_v3(ctx, &t, &b.prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("k_nope_clip_alpha dtype"),
                 "alpha dtype: %s %s", fia_status_string(st), fia_last_error());
        fia_mla_prolog_v3_params p = b.prm;
        p.tile_size = 64;
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("tile_size"), "tile 64: %s %s",
                 fia_status_string(st), fia_last_error());
        p = b.prm;
        p.cache_mode = FIA_LAYOUT_PA_NZ;
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == FIA_STATUS_UNSUPPORTED && msg_has("PA_NZ"), "C8 PA_NZ: %s %s",
                 fia_status_string(st), fia_last_error());
        p = b.prm;
        p.quant_scale_repo_mode = 0;
        st = fia_mla_prolog_v3(ctx, &b.t, &p);
        tu_check(st == FIA_STATUS_UNSUPPORTED && msg_has("quant_scale_repo_mode"),
                 "C8 separate scales: %s %s", fia_status_string(st), fia_last_error());
    }
    /* mode 1 / query quant: scale shapes and dtypes */
    {
        fia_mla_prolog_v3_params p = b.prm;
        p.kv_cache_quant_mode = 2;
        p.ckvkr_repo_mode = p.quant_scale_repo_mode = 0;
        fia_mla_prolog_v3_tensors t = b.t;
        t.k_nope_clip_alpha = NULL;
        t.quant_scale_ckv = &b.alpha.t; /* [1]: mode 2 needs [1, 512] */
        t.quant_scale_ckr = &b.alpha.t;
        t.kr_cache = &b.kv.t; /* an int8 kr (mode 2); the scale's shape fails first */
        st = fia_mla_prolog_v3(ctx, &t, &p);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("quant_scale_ckv dim 0 is 1"),
                 "mode 2 scale shape: %s %s", fia_status_string(st), fia_last_error());
        p.kv_cache_quant_mode = 1;
        p.query_quant_mode = 1;
        t.quant_scale_ckr = NULL;
        st = fia_mla_prolog_v3(ctx, &t, &p);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && msg_has("dequant_scale_q_nope is NULL"),
                 "qq without scale output: %s %s", fia_status_string(st), fia_last_error());
    }
    tu_check(!memcmp(kv0, b.kv.buf, b.kv.bytes), "C8 cache written by a failed call");
    free(kv0);
    free_bufs(&b);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_mla_prolog");
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        fia_context_options o = {2, levels[i]};
        fia_context *ctx = NULL;
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) continue;
        g_ctx_name[g_nctx] = fia_isa_name(levels[i]);
        g_ctx[g_nctx++] = ctx;
    }
    {
        fia_context_options o = {1, FIA_ISA_AUTO};
        fia_context *ctx = NULL;
        if (fia_context_create(&o, &ctx) == FIA_STATUS_SUCCESS) {
            g_ctx_name[g_nctx] = "auto-1thread";
            g_ctx[g_nctx++] = ctx;
        }
    }
    printf("contexts:");
    for (int i = 0; i < g_nctx; i++) printf(" %s", g_ctx_name[i]);
    printf("\n");
    /* without oneDNN the operator must say so, and nothing else is tested */
    {
        pcase c = {1, 1, 0, 16, 8, 1, 8, FIA_LAYOUT_TND, 0, 0, 0, 0, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        tu_rng r = tu_rng_make(seed);
        pbufs b;
        if (make_bufs(&b, &c, &r) == 0) {
            const fia_status st = fia_mla_prolog_v3(g_ctx[0], &b.t, &b.prm);
            if (st == FIA_STATUS_UNSUPPORTED && msg_has("oneDNN")) {
                printf("built without oneDNN: %s\n", fia_last_error());
                tu_check(1, "unsupported without oneDNN");
                free_bufs(&b);
                return tu_summary();
            }
        }
        free_bufs(&b);
    }
    tu_rng r = tu_rng_make(seed);
    const long n_random = tu_env_long("FIA_TEST_CASES", 40);
    for (long i = 0; i < n_random; i++) {
        pcase c = random_case(&r);
        run_case(&c, tu_next(&r), g_nctx);
    }
    /* edge cases */
    {
        pcase c = {1, 1, 0, 1, 8, 1, 8, FIA_LAYOUT_PA_BSND, 1, 1024, 1, 0, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&c, seed + 1, g_nctx); /* T = 1, He = 1, the largest block size */
        pcase odd = {2, 3, 1, 33, 24, 4, 16, FIA_LAYOUT_PA_BSND, 4, 16, 0, 1, 0.7, 1.3, 1.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&odd, seed + 2, g_nctx); /* every cache index negative */
        pcase zero = {0, 4, 1, 16, 8, 2, 8, FIA_LAYOUT_PA_BSND, 1, 16, 1, 1, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&zero, seed + 3, g_nctx); /* T = 0: nothing written */
        pcase big_t = {1, 600, 0, 64, 48, 2, 16, FIA_LAYOUT_PA_BSND, 40, 16, 1, 0, 1.0, 1.0, 0.1, 0, 0, 0.0, 0, 0, 0};
        run_case(&big_t, seed + 4, g_nctx); /* more tokens than one gemm row tile */
        pcase wide = {1, 1100, 0, 40, 24, 2, 8, FIA_LAYOUT_PA_BSND, 70, 16, 0, 0, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&wide, seed + 9, g_nctx); /* the prefill tiling of a plan (T >= 1024, a row tail) */
        pcase nz = {2, 5, 1, 40, 24, 4, 16, FIA_LAYOUT_PA_NZ, 1, 1024, 0, 1, 1.0, 1.0, 0.2, 0, 0, 0.0, 0, 0, 0};
        run_case(&nz, seed + 8, g_nctx); /* PA_NZ, the largest block size */
    }
    /* quantized modes: the C8 row with the largest block size, an all-zero tile, every index
     * negative, positional caches; int8 caches in PA_NZ; the int8 query */
    {
        pcase c8 = {2, 3, 1, 40, 24, 4, 16, FIA_LAYOUT_PA_BSND, 1, 1024, 1, 1, 1.0, 1.0, 0.0,
                    3, 0, 0.9, 1, 0, 0};
        run_case(&c8, seed + 11, g_nctx);
        pcase c8neg = {1, 5, 0, 33, 16, 2, 8, FIA_LAYOUT_PA_BSND, 2, 16, 0, 0, 1.0, 1.0, 1.0,
                       3, 0, 1.0, 0, 0, 0};
        run_case(&c8neg, seed + 12, g_nctx);
        pcase c8tnd = {1, 7, 0, 64, 32, 2, 16, FIA_LAYOUT_TND, 0, 0, 0, 1, 1.3, 0.8, 0.0,
                       3, 0, 0.0, 1, 0, 0};
        run_case(&c8tnd, seed + 13, g_nctx);
        pcase c8bsnd = {2, 3, 1, 64, 32, 2, 16, FIA_LAYOUT_BSND, 0, 0, 0, 0, 1.0, 1.0, 0.0,
                        3, 0, 0.6, 0, 0, 0};
        run_case(&c8bsnd, seed + 14, g_nctx);
        pcase nz1 = {2, 4, 1, 48, 32, 4, 24, FIA_LAYOUT_PA_NZ, 2, 16, 0, 1, 1.0, 1.0, 0.2,
                     1, 1, 0.0, 0, 0, 0};
        run_case(&nz1, seed + 15, g_nctx);
        pcase nz2 = {1, 6, 0, 48, 32, 2, 16, FIA_LAYOUT_PA_NZ, 1, 128, 0, 0, 1.0, 1.2, 0.2,
                     2, 0, 0.0, 0, 0, 0};
        run_case(&nz2, seed + 16, g_nctx);
        pcase ds8 = {1, 2, 0, 7168, 1536, 128, 128, FIA_LAYOUT_PA_BSND, 2, 128, 1, 1, 1.0, 1.0,
                     0.0, 3, 0, 1.0, 0, 0, 0};
        run_case(&ds8, seed + 17, g_nctx);
        /* int8 weights: W_UQ_QR only with the C8 cache (the recipes' DeepSeek-V3.2 C8 call),
         * and the full int8 form with per-tensor kv and the int8 query */
        pcase w1 = {1, 5, 0, 64, 48, 4, 16, FIA_LAYOUT_PA_BSND, 2, 16, 1, 1, 1.0, 1.0, 0.2,
                    3, 0, 1.0, 0, 1, 1};
        run_case(&w1, seed + 18, g_nctx);
        pcase w2 = {2, 3, 1, 80, 32, 2, 24, FIA_LAYOUT_PA_BSND, 1, 16, 0, 1, 1.2, 0.9, 0.0,
                    1, 1, 0.0, 0, 2, 1};
        run_case(&w2, seed + 19, g_nctx);
        pcase ds_w1 = {1, 2, 0, 7168, 1536, 128, 128, FIA_LAYOUT_PA_BSND, 2, 128, 1, 1, 1.0,
                       1.0, 0.0, 3, 0, 1.0, 0, 1, 1};
        run_case(&ds_w1, seed + 20, g_nctx);
    }
    /* model shapes at small T (one context plus the 1-thread one for determinism) */
    {
        pcase ds = {1, 2, 0, 7168, 1536, 128, 128, FIA_LAYOUT_PA_BSND, 2, 128, 1, 1, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&ds, seed + 5, g_nctx);
        pcase glm = {1, 2, 1, 6144, 2048, 64, 192, FIA_LAYOUT_PA_BSND, 1, 64, 0, 1, 1.0, 1.0, 0.0, 0, 0, 0.0, 0, 0, 0};
        run_case(&glm, seed + 6, g_nctx);
    }
    test_errors(seed + 7);
    test_errors_quant(seed + 9);
    printf("int8 outputs equal to rint(oracle): %lld of %lld (the rest one off at a rounding "
           "tie)\n", (long long)g_i8_exact, (long long)g_i8_total);
    printf("against the all-double oracle (no bf16 intermediates): %lld of %lld "
           "elements within 1e-3 + 5e-3 |ref| (%.4f%%)\n", (long long)g_close, (long long)g_total,
           g_total ? 100.0 * (double)g_close / (double)g_total : 100.0);
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    return tu_summary();
}
