/*
 * cases_chain.c - benchmark cases of the attention-chain helper operators: rms_norm,
 * add_rms_norm, rotary_mul (half) and dynamic_quant (per token) on [4096, 7168] bf16 (the
 * DeepSeek-V3.2 hidden size; rotary_mul as 56 heads of 128 with cos / sin per token), and
 * scatter_nd_update of one 128-wide bf16 row into a 128K-row paged indexer cache (decode).
 *
 * Counting: bytes = every tensor byte read once plus every byte written (rms_norm: x + y + rstd;
 * add_rms_norm: x1 + x2 + y + x + rstd; rotary_mul: x + y + cos + sin; dynamic_quant: x (2 B) +
 * y (1 B) + scale; scatter_nd_update: the row read and written). FLOPs are not counted (these
 * are bandwidth-bound). Cold caches: the driver rotates copies of every buffer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "case.h"
#include "cases.h"

enum { CH_RMS, CH_ADD_RMS, CH_ROPE, CH_QUANT, CH_SCATTER };

typedef struct bench_chain_case {
    int kind;
    int64_t T, H; /* rows and row width (rope: H = heads x 128; scatter: T = cache rows) */
} bench_chain_case;

enum { CH_ROPE_D = 128 };

static double ch_counts_bytes(const bench_chain_case *p) {
    const double n = (double)p->T * (double)p->H;
    switch (p->kind) {
    case CH_RMS: return n * 4.0 + (double)p->T * 4.0 + (double)p->H * 2.0;
    case CH_ADD_RMS: return n * 8.0 + (double)p->T * 4.0 + (double)p->H * 2.0;
    case CH_ROPE: return n * 4.0 + (double)p->T * CH_ROPE_D * 4.0;
    case CH_QUANT: return n * 3.0 + (double)p->T * 4.0;
    default: return (double)p->H * 2.0 * 2.0 + 8.0;
    }
}

static void ch_counts(const bench_case *c, double *bytes, double *flops) {
    *bytes = ch_counts_bytes(c->params);
    *flops = 0;
}

static double ch_copy_bytes(const bench_case *c) {
    const bench_chain_case *p = c->params;
    if (p->kind == CH_SCATTER) return (double)p->T * (double)p->H * 2.0; /* the cache */
    return ch_counts_bytes(p);
}

static const char *ch_name(int kind) {
    static const char *const n[] = {"rms_norm", "add_rms_norm", "rotary_mul", "dynamic_quant",
                                    "scatter_nd_update"};
    return n[kind];
}

static void ch_shape(const bench_case *c, char *buf, size_t len) {
    const bench_chain_case *p = c->params;
    if (p->kind == CH_SCATTER)
        snprintf(buf, len, "1 row of %lld bf16 into %lld rows (PA_BSND, block 64)", (long long)p->H,
                 (long long)p->T);
    else if (p->kind == CH_ROPE)
        snprintf(buf, len, "[%lld, %lld, %d] bf16 half, cos/sin [%lld, 1, %d]", (long long)p->T,
                 (long long)(p->H / CH_ROPE_D), CH_ROPE_D, (long long)p->T, CH_ROPE_D);
    else
        snprintf(buf, len, "[%lld, %lld] bf16%s", (long long)p->T, (long long)p->H,
                 p->kind == CH_QUANT ? " -> int8 per token" : "");
}

static void ch_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_chain_case *p = c->params;
    snprintf(buf, len, "{\"op\":\"%s\",\"rows\":%lld,\"width\":%lld,\"dtype\":\"bfloat16\"}",
             ch_name(p->kind), (long long)p->T, (long long)p->H);
}

typedef struct ch_copy {
    void *a, *b, *c, *d, *e; /* per kind: inputs then outputs */
    fia_tensor ta, tb, tc, td, te, tf;
    fia_plan *plan;
    int64_t slot[1];
} ch_copy;

typedef struct ch_instance {
    const bench_chain_case *p;
    int copies;
    ch_copy *cp;
    void *gamma;
    fia_tensor tg;
    void *ws;
    size_t ws_bytes;
} ch_instance;

static void ch_destroy(void *inst) {
    ch_instance *I = inst;
    if (!I) return;
    for (int i = 0; I->cp && i < I->copies; i++) {
        ch_copy *cp = &I->cp[i];
        fia_plan_destroy(cp->plan);
        free(cp->a), free(cp->b), free(cp->c), free(cp->d), free(cp->e);
    }
    free(I->cp), free(I->gamma), free(I->ws), free(I);
}

static int ch_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed, void **inst,
                      char *err, size_t err_len) {
    const bench_chain_case *p = c->params;
    ch_instance *I = calloc(1, sizeof *I);
    if (!I) goto oom;
    I->p = p;
    I->copies = copies;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    if (!I->cp) goto oom;
    const fia_dtype bf = FIA_DTYPE_BFLOAT16;
    const int64_t T = p->T, H = p->H, n = T * H;
    uint64_t rng = seed;
    I->gamma = malloc((size_t)H * 2);
    if (!I->gamma || bench_fill_random(I->gamma, bf, (size_t)H, &rng)) goto oom;
    const int64_t gs[1] = {H};
    fia_tensor_init(&I->tg, I->gamma, bf, 1, gs, NULL);
    for (int i = 0; i < copies; i++) {
        ch_copy *cp = &I->cp[i];
        const int64_t s2[2] = {T, H}, r2[2] = {T, 1}, t1[1] = {T};
        fia_status st = FIA_STATUS_SUCCESS;
        size_t wsb = 0;
        switch (p->kind) {
        case CH_RMS:
        case CH_ADD_RMS: {
            cp->a = bench_alloc((size_t)n * 2), cp->b = bench_alloc((size_t)n * 2);
            cp->c = bench_alloc((size_t)n * 2), cp->d = bench_alloc((size_t)T * 4);
            cp->e = p->kind == CH_ADD_RMS ? bench_alloc((size_t)n * 2) : NULL;
            if (!cp->a || !cp->b || !cp->c || !cp->d || (p->kind == CH_ADD_RMS && !cp->e)) goto oom;
            if (bench_fill_random(cp->a, bf, (size_t)n, &rng) || bench_fill_random(cp->b, bf, (size_t)n, &rng)) goto oom;
            fia_tensor_init(&cp->ta, cp->a, bf, 2, s2, NULL);
            fia_tensor_init(&cp->tb, cp->b, bf, 2, s2, NULL);
            fia_tensor_init(&cp->tc, cp->c, bf, 2, s2, NULL);
            fia_tensor_init(&cp->td, cp->d, FIA_DTYPE_FLOAT32, 2, r2, NULL);
            fia_rms_norm_params prm;
            fia_rms_norm_params_init(&prm);
            if (p->kind == CH_RMS) {
                fia_rms_norm_tensors t = {&cp->ta, &I->tg, &cp->tc, &cp->td};
                st = fia_rms_norm_plan(ctx, &t, &prm, &cp->plan, &wsb);
            } else {
                fia_tensor_init(&cp->te, cp->e, bf, 2, s2, NULL);
                fia_add_rms_norm_tensors t = {&cp->ta, &cp->tb, &I->tg, &cp->tc, &cp->td, &cp->te};
                st = fia_add_rms_norm_plan(ctx, &t, &prm, &cp->plan, &wsb);
            }
            break;
        }
        case CH_ROPE: {
            const int64_t N = H / CH_ROPE_D, xs[3] = {T, N, CH_ROPE_D}, cs[3] = {T, 1, CH_ROPE_D};
            cp->a = bench_alloc((size_t)n * 2), cp->b = bench_alloc((size_t)T * CH_ROPE_D * 2);
            cp->c = bench_alloc((size_t)T * CH_ROPE_D * 2), cp->d = bench_alloc((size_t)n * 2);
            if (!cp->a || !cp->b || !cp->c || !cp->d) goto oom;
            if (bench_fill_random(cp->a, bf, (size_t)n, &rng) ||
                bench_fill_random(cp->b, bf, (size_t)(T * CH_ROPE_D), &rng) ||
                bench_fill_random(cp->c, bf, (size_t)(T * CH_ROPE_D), &rng))
                goto oom;
            fia_tensor_init(&cp->ta, cp->a, bf, 3, xs, NULL);
            fia_tensor_init(&cp->tb, cp->b, bf, 3, cs, NULL);
            fia_tensor_init(&cp->tc, cp->c, bf, 3, cs, NULL);
            fia_tensor_init(&cp->td, cp->d, bf, 3, xs, NULL);
            fia_rotary_mul_params prm;
            fia_rotary_mul_params_init(&prm);
            fia_rotary_mul_tensors t = {&cp->ta, &cp->tb, &cp->tc, &cp->td};
            st = fia_rotary_mul_plan(ctx, &t, &prm, &cp->plan, &wsb);
            break;
        }
        case CH_QUANT: {
            cp->a = bench_alloc((size_t)n * 2), cp->b = bench_alloc((size_t)n), cp->c = bench_alloc((size_t)T * 4);
            if (!cp->a || !cp->b || !cp->c || bench_fill_random(cp->a, bf, (size_t)n, &rng)) goto oom;
            fia_tensor_init(&cp->ta, cp->a, bf, 2, s2, NULL);
            fia_tensor_init(&cp->tb, cp->b, FIA_DTYPE_INT8, 2, s2, NULL);
            fia_tensor_init(&cp->tc, cp->c, FIA_DTYPE_FLOAT32, 1, t1, NULL);
            fia_dynamic_quant_params prm;
            fia_dynamic_quant_params_init(&prm);
            fia_dynamic_quant_tensors t = {&cp->ta, NULL, NULL, &cp->tb, &cp->tc};
            st = fia_dynamic_quant_plan(ctx, &t, &prm, &cp->plan, &wsb);
            break;
        }
        default: { /* scatter: cache [T / 64, 64, 1, H], one row, slot in the middle */
            const int64_t cs[4] = {T / 64, 64, 1, H}, is[2] = {1, 1}, us[3] = {1, 1, H};
            cp->a = bench_alloc((size_t)n * 2), cp->b = malloc((size_t)H * 2);
            if (!cp->a || !cp->b) goto oom;
            memset(cp->a, 0, (size_t)n * 2);
            if (bench_fill_random(cp->b, bf, (size_t)H, &rng)) goto oom;
            cp->slot[0] = T / 2 + 7;
            fia_tensor_init(&cp->ta, cp->a, bf, 4, cs, NULL);
            fia_tensor_init(&cp->tb, cp->slot, FIA_DTYPE_INT64, 2, is, NULL);
            fia_tensor_init(&cp->tc, cp->b, bf, 3, us, NULL);
            fia_scatter_nd_update_params prm;
            fia_scatter_nd_update_params_init(&prm);
            prm.cache_mode = FIA_LAYOUT_PA_BSND;
            fia_scatter_nd_update_tensors t = {&cp->ta, &cp->tb, &cp->tc};
            st = fia_scatter_nd_update_plan(ctx, &t, &prm, &cp->plan, &wsb);
            break;
        }
        }
        if (st != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s", fia_last_error());
            ch_destroy(I);
            return -1;
        }
        if (wsb > I->ws_bytes) I->ws_bytes = wsb;
    }
    if (I->ws_bytes && !(I->ws = malloc(I->ws_bytes))) goto oom;
    *inst = I;
    return 0;
oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    ch_destroy(I);
    return -1;
}

static fia_status ch_execute(void *inst, int copy) {
    ch_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->ws, I->ws_bytes);
}

/* Rows 0, T/2 and T-1 of copy 0 against the oracle through the operator's case description
 * (ref/case.h) on row views, at the tolerance table's rows (the scatter: the written row). */
static int ch_check(void *inst, bench_check *r, char *err, size_t err_len) {
    ch_instance *I = inst;
    const bench_chain_case *p = I->p;
    ch_copy *cp = &I->cp[0];
    const int64_t rows[3] = {0, p->T / 2, p->T - 1};
    int64_t bad = 0;
    double worst = 0;
    for (int i = 0; i < 3 && p->kind != CH_SCATTER; i++) {
        fia_tensor xa = bench_sub_view(&cp->ta, 0, rows[i], 1), xb = bench_sub_view(&cp->tb, 0, rows[i], 1);
        fia_tensor xc = bench_sub_view(&cp->tc, 0, rows[i], 1), xd = bench_sub_view(&cp->td, 0, rows[i], 1);
        fia_case c;
        memset(&c, 0, sizeof c);
        const char *op = ch_name(p->kind);
        if (p->kind == CH_RMS) {
            const fia_rms_norm_tensors t = {&xa, &I->tg, &xc, NULL};
            c.t.rms_norm = t;
            fia_rms_norm_params_init(&c.p.rms_norm);
        } else if (p->kind == CH_ADD_RMS) {
            const fia_add_rms_norm_tensors t = {&xa, &xb, &I->tg, &xc, NULL, NULL};
            c.t.add_rms_norm = t;
            fia_rms_norm_params_init(&c.p.rms_norm);
        } else if (p->kind == CH_ROPE) {
            const fia_rotary_mul_tensors t = {&xa, &xb, &xc, &xd};
            c.t.rope = t;
            fia_rotary_mul_params_init(&c.p.rotary_mul);
        } else {
            const int64_t one[1] = {1};
            fia_tensor sc;
            fia_tensor_init(&sc, (float *)cp->c + rows[i], FIA_DTYPE_FLOAT32, 1, one, NULL);
            xc = sc;
            const fia_dynamic_quant_tensors t = {&xa, NULL, NULL, &xb, &xc};
            c.t.dynamic_quant = t;
            fia_dynamic_quant_params_init(&c.p.dynamic_quant);
        }
        fia_case_bind(&c, op);
        if (fia_case_oracle(&c) != 0) {
            fia_case_free(&c);
            bench_set_err(err, err_len, "check: out of memory");
            return -1;
        }
        fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
        bad += fia_case_check(&c, 0, each);
        if (each[0].max_abs_err > worst) worst = each[0].max_abs_err; /* the main output's */
        fia_case_free(&c);
    }
    if (p->kind == CH_SCATTER) {
        const int64_t slot = cp->slot[0];
        bad = memcmp((const char *)cp->a + slot * p->H * 2, cp->b, (size_t)p->H * 2) != 0;
    }
    r->passed = bad == 0;
    r->max_abs_err = worst;
    snprintf(r->detail, sizeof r->detail, "%s", p->kind == CH_SCATTER ? "the written row" : "3 rows");
    return 0;
}

static const bench_op ch_bench_op = {
    "chain", ch_shape, ch_params_json, ch_counts, ch_copy_bytes, ch_prepare, ch_execute,
    ch_check, ch_destroy, NULL,
};

static const bench_chain_case rms_4k = {CH_RMS, 4096, 7168};
static const bench_chain_case add_rms_4k = {CH_ADD_RMS, 4096, 7168};
static const bench_chain_case rope_4k = {CH_ROPE, 4096, 7168};
static const bench_chain_case quant_4k = {CH_QUANT, 4096, 7168};
static const bench_chain_case scatter_128k = {CH_SCATTER, 131072, 128};

static const bench_case chain_cases[] = {
    {"rms_norm_4096x7168_bf16", &ch_bench_op, &rms_4k, 0},
    {"add_rms_norm_4096x7168_bf16", &ch_bench_op, &add_rms_4k, 0},
    {"rotary_mul_4096x56x128_bf16", &ch_bench_op, &rope_4k, 0},
    {"dynamic_quant_4096x7168_bf16", &ch_bench_op, &quant_4k, 0},
    {"scatter_nd_update_1row_128k", &ch_bench_op, &scatter_128k, 0},
};

const bench_case *bench_chain_cases(size_t *count) {
    *count = sizeof chain_cases / sizeof chain_cases[0];
    return chain_cases;
}
