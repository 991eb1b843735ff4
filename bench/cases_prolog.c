/*
 * cases_prolog.c - benchmark cases of mla_prolog_v3 on DeepSeek-V3.2 dimensions (He 7168,
 * Hcq 1536, N 128, D 128) and GLM-5's (He 6144, Hcq 2048, N 64, D 192); bf16 weights, PA_BSND
 * caches of 128-token blocks: decode T = 1 and 8 (weight-streaming GEMVs) and prefill T = 2048
 * (compute-bound GEMMs); DeepSeek decode also with int8 weights (weight_quant_mode 1: W_UQ_QR;
 * 2: also token_x, W_DQ, W_DKV_KR; per-column dequant scales). Each copy keeps one plan (the
 * weights packed at plan time, as a decode loop that keeps its plan runs them).
 *
 * Counting: bytes = the four weight matrices (read once) + token_x + the outputs and cache rows
 * written; FLOPs = 2 T (He Hcq + Hcq N (D + 64) + N D 512 + He 576). Cold caches: every copy
 * has its own weights, inputs and outputs, rotated over more than twice the last-level cache.
 * The check compares token 0 (all heads, its cache rows) with the oracle.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "case.h"

typedef struct bench_prolog_case {
    int64_t T, He, Hcq, N, D;
    int32_t wq; /* weight_quant_mode: 0 bf16 weights, 1 int8 W_UQ_QR, 2 also int8 x, W_DQ, W_DKV */
} bench_prolog_case;

enum { PB_HCKV = 512, PB_DR = 64, PB_BS = 128 };

/* Bytes of the weights (int8 ones: 1 byte per element and their fp32 column scales). */
static double weight_bytes(const bench_prolog_case *p) {
    const double w8 = p->wq == 2 ? 1.0 : 2.0, u8 = p->wq ? 1.0 : 2.0;
    const double W = (double)(p->N * (p->D + PB_DR));
    return w8 * ((double)p->He * (double)p->Hcq + (double)p->He * (PB_HCKV + PB_DR)) +
           u8 * (double)p->Hcq * W + 2.0 * (double)(p->N * p->D * PB_HCKV) +
           (p->wq ? 4.0 * W : 0.0) + (p->wq == 2 ? 4.0 * (double)(p->Hcq + PB_HCKV + PB_DR) : 0.0);
}

static void pro_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_prolog_case *p = c->params;
    const double T = (double)p->T;
    *bytes = weight_bytes(p) + (p->wq == 2 ? 1.0 : 2.0) * T * (double)p->He +
             2.0 * T * (double)(p->N * (PB_HCKV + PB_DR) + PB_HCKV + PB_DR);
    *flops = 2.0 * T *
             ((double)p->He * (double)p->Hcq + (double)p->Hcq * (double)(p->N * (p->D + PB_DR)) +
              (double)(p->N * p->D * PB_HCKV) + (double)p->He * (PB_HCKV + PB_DR));
}

static double pro_copy_bytes(const bench_case *c) {
    double b, f;
    pro_counts(c, &b, &f);
    return b;
}

static void pro_shape(const bench_case *c, char *buf, size_t len) {
    const bench_prolog_case *p = c->params;
    snprintf(buf, len, "T%lld He%lld Hcq%lld N%lld D%lld %s pa%d", (long long)p->T,
             (long long)p->He, (long long)p->Hcq, (long long)p->N, (long long)p->D,
             p->wq == 2 ? "w8a8" : p->wq ? "bf16 uq-w8" : "bf16", PB_BS);
}

static void pro_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_prolog_case *p = c->params;
    snprintf(buf, len,
             "{\"T\":%lld,\"He\":%lld,\"Hcq\":%lld,\"N\":%lld,\"D\":%lld,\"cache_mode\":\"PA_BSND\","
             "\"block_size\":%d,\"weight_quant_mode\":%d,\"kv_cache_quant_mode\":0}",
             (long long)p->T, (long long)p->He, (long long)p->Hcq, (long long)p->N,
             (long long)p->D, PB_BS, (int)p->wq);
}

enum { PB_X, PB_WDQ, PB_WUQ, PB_WUK, PB_WDKV, PB_GCQ, PB_GCKV, PB_SIN, PB_COS, PB_KV, PB_KR,
       PB_CI, PB_QO, PB_QR, PB_DSX, PB_DSDQ, PB_DSUQ, PB_DSDKV, PB_COUNT };

typedef struct pro_copy {
    void *buf[PB_COUNT];
    fia_tensor t[PB_COUNT];
    fia_plan *plan;
} pro_copy;

typedef struct pro_instance {
    const bench_prolog_case *p;
    int copies;
    pro_copy *cp;
    fia_mla_prolog_v3_params prm;
    void *workspace;
    size_t workspace_bytes;
} pro_instance;

static void pro_destroy(void *inst) {
    pro_instance *I = inst;
    if (!I) return;
    for (int i = 0; I->cp && i < I->copies; i++) {
        fia_plan_destroy(I->cp[i].plan);
        for (int k = 0; k < PB_COUNT; k++) free(I->cp[i].buf[k]);
    }
    free(I->cp);
    free(I->workspace);
    free(I);
}

static void make_tensors(pro_instance *I, pro_copy *cp) {
    const bench_prolog_case *p = I->p;
    const int64_t blocks = (p->T + PB_BS - 1) / PB_BS, W = p->N * (p->D + PB_DR);
    const fia_dtype w8 = p->wq == 2 ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const fia_dtype u8 = p->wq ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const struct {
        fia_dtype dt;
        int nd;
        int64_t sh[4];
    } d[PB_COUNT] = {
        [PB_X] = {w8, 2, {p->T, p->He}},
        [PB_WDQ] = {w8, 2, {p->He, p->Hcq}},
        [PB_WUQ] = {u8, 2, {p->Hcq, W}},
        [PB_WUK] = {FIA_DTYPE_BFLOAT16, 3, {p->N, p->D, PB_HCKV}},
        [PB_WDKV] = {w8, 2, {p->He, PB_HCKV + PB_DR}},
        [PB_GCQ] = {FIA_DTYPE_BFLOAT16, 1, {p->Hcq}},
        [PB_GCKV] = {FIA_DTYPE_BFLOAT16, 1, {PB_HCKV}},
        [PB_SIN] = {FIA_DTYPE_BFLOAT16, 2, {p->T, PB_DR}},
        [PB_COS] = {FIA_DTYPE_BFLOAT16, 2, {p->T, PB_DR}},
        [PB_KV] = {FIA_DTYPE_BFLOAT16, 4, {blocks, PB_BS, 1, PB_HCKV}},
        [PB_KR] = {FIA_DTYPE_BFLOAT16, 4, {blocks, PB_BS, 1, PB_DR}},
        [PB_CI] = {FIA_DTYPE_INT64, 1, {p->T}},
        [PB_QO] = {FIA_DTYPE_BFLOAT16, 3, {p->T, p->N, PB_HCKV}},
        [PB_QR] = {FIA_DTYPE_BFLOAT16, 3, {p->T, p->N, PB_DR}},
        [PB_DSX] = {FIA_DTYPE_FLOAT32, 2, {p->T, 1}},
        [PB_DSDQ] = {FIA_DTYPE_FLOAT32, 2, {1, p->Hcq}},
        [PB_DSUQ] = {FIA_DTYPE_FLOAT32, 2, {1, W}},
        [PB_DSDKV] = {FIA_DTYPE_FLOAT32, 2, {1, PB_HCKV + PB_DR}},
    };
    for (int k = 0; k < PB_COUNT; k++) fia_tensor_init(&cp->t[k], cp->buf[k], d[k].dt, d[k].nd, d[k].sh, NULL);
}

static fia_mla_prolog_v3_tensors tensors_of(pro_copy *cp) {
    fia_mla_prolog_v3_tensors t;
    memset(&t, 0, sizeof t);
    t.token_x = &cp->t[PB_X];
    t.weight_dq = &cp->t[PB_WDQ];
    t.weight_uq_qr = &cp->t[PB_WUQ];
    t.weight_uk = &cp->t[PB_WUK];
    t.weight_dkv_kr = &cp->t[PB_WDKV];
    t.rmsnorm_gamma_cq = &cp->t[PB_GCQ];
    t.rmsnorm_gamma_ckv = &cp->t[PB_GCKV];
    t.rope_sin = &cp->t[PB_SIN];
    t.rope_cos = &cp->t[PB_COS];
    t.kv_cache = &cp->t[PB_KV];
    t.kr_cache = &cp->t[PB_KR];
    t.cache_index = &cp->t[PB_CI];
    t.query_out = &cp->t[PB_QO];
    t.query_rope_out = &cp->t[PB_QR];
    return t;
}

/* The int8 weights' dequant scales that the case's weight_quant_mode reads (NULL otherwise). */
static void scales_of(const pro_instance *I, pro_copy *cp, fia_mla_prolog_v3_tensors *t) {
    if (I->p->wq >= 1) t->dequant_scale_w_uq_qr = &cp->t[PB_DSUQ];
    if (I->p->wq == 2) {
        t->dequant_scale_x = &cp->t[PB_DSX];
        t->dequant_scale_w_dq = &cp->t[PB_DSDQ];
        t->dequant_scale_w_dkv_kr = &cp->t[PB_DSDKV];
    }
}

static int pro_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                       void **inst, char *err, size_t err_len) {
    const bench_prolog_case *p = c->params;
    pro_instance *I = calloc(1, sizeof *I);
    if (!I) goto oom;
    I->p = p;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    if (!I->cp) goto oom;
    I->copies = copies;
    fia_mla_prolog_v3_params_init(&I->prm);
    I->prm.weight_quant_mode = p->wq;
    uint64_t rng = seed;
    for (int i = 0; i < copies; i++) {
        pro_copy *cp = &I->cp[i];
        make_tensors(I, cp); /* shapes first (data NULL), then buffers of their size */
        for (int k = 0; k < PB_COUNT; k++) {
            const size_t n = (size_t)fia_tensor_numel(&cp->t[k]);
            const size_t es = fia_dtype_size(cp->t[k].dtype);
            cp->buf[k] = bench_alloc(n * es);
            if (!cp->buf[k]) goto oom;
            cp->t[k].data = cp->buf[k];
            if (k == PB_CI) {
                for (size_t j = 0; j < n; j++) ((int64_t *)cp->buf[k])[j] = (int64_t)j;
            } else if (k == PB_KV || k == PB_KR || k == PB_QO || k == PB_QR) {
                memset(cp->buf[k], 0, n * es);
            } else if (k >= PB_DSX) { /* dequant scales: set below */
            } else if (bench_fill_random(cp->buf[k], cp->t[k].dtype, n, &rng) != 0) {
                goto oom;
            }
        }
        /* weights ~ U(-1,1) / sqrt(fan-in) keep the activations O(1); int8 ones (U(-127,127))
         * carry that in their column scales 1 / (127 sqrt(fan-in)), an int8 x 1 / 127 */
        const struct {
            int k, ds;
            double fan;
        } sc[] = {{PB_WDQ, PB_DSDQ, (double)p->He}, {PB_WUQ, PB_DSUQ, (double)p->Hcq},
                  {PB_WUK, -1, (double)p->D}, {PB_WDKV, PB_DSDKV, (double)p->He}};
        for (size_t s = 0; s < sizeof sc / sizeof sc[0]; s++) {
            if (cp->t[sc[s].k].dtype == FIA_DTYPE_INT8) {
                float *ds = cp->buf[sc[s].ds];
                const size_t n = (size_t)fia_tensor_numel(&cp->t[sc[s].ds]);
                for (size_t j = 0; j < n; j++) ds[j] = (float)(1.0 / (127.0 * sqrt(sc[s].fan)));
                continue;
            }
            uint16_t *w = cp->buf[sc[s].k];
            const float f = 1.0f / sqrtf((float)sc[s].fan);
            const size_t n = (size_t)fia_tensor_numel(&cp->t[sc[s].k]);
            for (size_t j = 0; j < n; j++) w[j] = fia_f32_to_bf16(fia_bf16_to_f32(w[j]) * f);
        }
        float *dsx = cp->buf[PB_DSX];
        for (int64_t j = 0; j < p->T; j++) dsx[j] = 1.0f / 127.0f;
        fia_mla_prolog_v3_tensors t = tensors_of(cp);
        scales_of(I, cp, &t);
        size_t ws = 0;
        const fia_status s = fia_mla_prolog_v3_plan(ctx, &t, &I->prm, &cp->plan, &ws);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s",
                          fia_last_error()[0] ? fia_last_error() : fia_status_string(s));
            pro_destroy(I);
            return -1;
        }
        if (ws > I->workspace_bytes) I->workspace_bytes = ws;
    }
    if (I->workspace_bytes && !(I->workspace = malloc(I->workspace_bytes))) goto oom;
    *inst = I;
    return 0;
oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    pro_destroy(I);
    return -1;
}

static fia_status pro_execute(void *inst, int copy) {
    pro_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->workspace, I->workspace_bytes);
}

/* Token 0 of copy 0 (its outputs depend on its inputs only) against the oracle: the case
 * description of ref/case_prolog.c bound to token 0's views (its cache rows are the written
 * slots; the rest of the caches must be as they are). */
static int pro_check(void *inst, bench_check *r, char *err, size_t err_len) {
    pro_instance *I = inst;
    const bench_prolog_case *p = I->p;
    if (p->wq) { /* case_prolog.c describes the bf16 modes; test_mla_prolog checks the int8 ones */
        bench_set_err(err, err_len, "check: the case library's oracle has the bf16 weight mode "
                      "only (test_mla_prolog checks weight_quant_mode %d)", (int)p->wq);
        return -1;
    }
    pro_copy *cp = &I->cp[0];
    fia_mla_prolog_v3_tensors t = tensors_of(cp);
    fia_tensor x = bench_sub_view(t.token_x, 0, 0, 1), sn = bench_sub_view(t.rope_sin, 0, 0, 1),
               cs = bench_sub_view(t.rope_cos, 0, 0, 1), qo = bench_sub_view(t.query_out, 0, 0, 1),
               qr = bench_sub_view(t.query_rope_out, 0, 0, 1), ci = bench_sub_view(t.cache_index, 0, 0, 1);
    t.token_x = &x, t.rope_sin = &sn, t.rope_cos = &cs, t.query_out = &qo, t.query_rope_out = &qr;
    t.cache_index = &ci;
    fia_case c;
    memset(&c, 0, sizeof c);
    c.t.prolog = t;
    c.p.prolog = I->prm;
    fia_case_bind(&c, "mla_prolog_v3");
    fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
    const int rc = fia_case_oracle(&c); /* prepared now: the caches' snapshot is after the run */
    const int64_t bad = rc == 0 ? fia_case_check(&c, 0, each) : 0;
    const int oom = c.out[0].want == NULL;
    fia_case_free(&c);
    if (rc != 0) {
        bench_set_err(err, err_len, oom ? "check: out of memory" : "check: the oracle cannot run this call");
        return -1;
    }
    double worst = 0;
    for (int i = 0; i < c.n_out; i++)
        if (c.out[i].got && each[i].max_abs_err > worst) worst = each[i].max_abs_err;
    r->passed = bad == 0;
    r->max_abs_err = worst;
    snprintf(r->detail, sizeof r->detail, "token 0 of %lld, %lld heads + cache rows",
             (long long)p->T, (long long)p->N);
    return 0;
}

static const fia_plan *pro_plan_of(void *inst) { return ((pro_instance *)inst)->cp[0].plan; }

static const bench_op prolog_bench_op = {
    "mla_prolog_v3", pro_shape, pro_params_json, pro_counts, pro_copy_bytes,
    pro_prepare, pro_execute, pro_check, pro_destroy, pro_plan_of,
};

static const bench_prolog_case ds_t1 = {1, 7168, 1536, 128, 128, 0};
static const bench_prolog_case ds_t8 = {8, 7168, 1536, 128, 128, 0};
static const bench_prolog_case ds_t2048 = {2048, 7168, 1536, 128, 128, 0};
static const bench_prolog_case ds_t1_wq1 = {1, 7168, 1536, 128, 128, 1};
static const bench_prolog_case ds_t1_wq2 = {1, 7168, 1536, 128, 128, 2};
static const bench_prolog_case ds_t8_wq2 = {8, 7168, 1536, 128, 128, 2};
static const bench_prolog_case glm_t1 = {1, 6144, 2048, 64, 192, 0};
static const bench_prolog_case glm_t8 = {8, 6144, 2048, 64, 192, 0};
static const bench_prolog_case glm_t2048 = {2048, 6144, 2048, 64, 192, 0};

static const bench_case prolog_cases[] = {
    {"prolog_decode_t1", &prolog_bench_op, &ds_t1, 0},
    {"prolog_decode_t8", &prolog_bench_op, &ds_t8, 0},
    {"prolog_prefill_t2048", &prolog_bench_op, &ds_t2048, 0},
    {"prolog_decode_t1_wq1", &prolog_bench_op, &ds_t1_wq1, 0},
    {"prolog_decode_t1_wq2", &prolog_bench_op, &ds_t1_wq2, 0},
    {"prolog_decode_t8_wq2", &prolog_bench_op, &ds_t8_wq2, 0},
    {"prolog_glm5_decode_t1", &prolog_bench_op, &glm_t1, 0},
    {"prolog_glm5_decode_t8", &prolog_bench_op, &glm_t8, 0},
    {"prolog_glm5_prefill_t2048", &prolog_bench_op, &glm_t2048, 0},
};

const bench_case *bench_prolog_cases(size_t *count) {
    *count = sizeof prolog_cases / sizeof prolog_cases[0];
    return prolog_cases;
}
