/*
 * test_amla.c - the AMLA kernels (kernels.h: gemm_f32_acc, softmax_tile_amla) of every table the
 * CPU runs:
 *   - the scalar exponent add against ldexpf wherever the result is a normal float, and its
 *     flush to +-0 / inf-NaN passthrough elsewhere;
 *   - gemm_f32_acc (row_exp NULL and per-row shifts 0, -1, -7, -126, -255, with zeros,
 *     denormals, infinities in C) against the scalar table: 1e-5 * sum |a b| + |shifted c|;
 *   - softmax_tile_amla against the scalar table (1e-6 relative), -inf rows, -inf starts, huge
 *     max jumps; and its state identity: (m, l) = (-e ln2, row_sum) is the ordinary softmax
 *     state of the same scores (compared with softmax_tile).
 * Usage: test_amla [seed].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/convert.h"
#include "kernel_variants.h"
#include "test_util.h"

static void test_exp_add(tu_rng *r) {
    int bad = 0;
    for (int i = 0; i < 200000 && !bad; i++) {
        float x = (float)tu_uniform(r, -1, 1) * ldexpf(1.0f, (int)tu_int(r, -140, 120));
        if (i % 97 == 0) x = 0.0f;
        const int32_t e = -(int32_t)tu_int(r, 0, 255);
        float y = x;
        fia_exp_rescale_scalar(&y, 1, e);
        const float want = ldexpf(x, e);
        const int normal_in = fpclassify(x) == FP_NORMAL, normal_out = fpclassify(want) == FP_NORMAL;
        if (normal_in && normal_out) bad = y != want;
        else bad = !(y == 0.0f || y == want) || signbit(y) != signbit(x);
        if (bad) tu_check(0, "exp add: x %a e %d got %a want %a", x, e, y, want);
    }
    float sp[3] = {INFINITY, -INFINITY, NAN};
    fia_exp_rescale_scalar(sp, 3, -5);
    tu_check(sp[0] == INFINITY && sp[1] == -INFINITY && isnan(sp[2]), "exp add keeps inf / NaN");
    tu_check(!bad, "exp add matches ldexpf on normal results");
}

static void gemm_acc_case(const fia_kernels *kt, tu_rng *r, int64_t m, int64_t n, int64_t k,
                          int with_exp) {
    const int64_t lda = k + 1, ldb = n + 2, ldc = n + 3;
    float *a = malloc(sizeof(float) * (size_t)(m * lda + 1));
    float *b = malloc(sizeof(float) * (size_t)(k * ldb + 1));
    float *c0 = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    float *cr = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    float *cg = malloc(sizeof(float) * (size_t)(m * ldc + 1));
    int32_t *ex = calloc((size_t)(m + 1), sizeof(int32_t));
    static const int32_t shifts[] = {0, -1, -7, -126, -255, -3};
    for (int64_t i = 0; i < m * lda; i++) a[i] = (float)tu_uniform(r, -1, 1);
    for (int64_t i = 0; i < k * ldb; i++) b[i] = (float)tu_uniform(r, -1, 1);
    for (int64_t i = 0; i < m * ldc; i++) {
        const int pick = (int)tu_int(r, 0, 20);
        c0[i] = pick == 0 ? 0.0f : pick == 1 ? 1e-40f : pick == 2 ? -3e-39f
              : (float)tu_uniform(r, -4, 4) * ldexpf(1.0f, (int)tu_int(r, -20, 20));
    }
    for (int64_t i = 0; i < m; i++) ex[i] = TU_PICK(r, shifts);
    memcpy(cr, c0, sizeof(float) * (size_t)(m * ldc));
    memcpy(cg, c0, sizeof(float) * (size_t)(m * ldc));
    tu_scalar_kernels()->core.gemm_f32_acc(m, n, k, a, lda, b, ldb, cr, ldc, with_exp ? ex : NULL);
    kt->gemm_f32_acc(m, n, k, a, lda, b, ldb, cg, ldc, with_exp ? ex : NULL);
    int ok = 1;
    for (int64_t i = 0; i < m && ok; i++)
        for (int64_t j = 0; j < ldc && ok; j++) {
            const float got = cg[i * ldc + j], want = cr[i * ldc + j];
            if (j >= n) {
                ok = fia_f32_bits(got) == fia_f32_bits(c0[i * ldc + j]);
                continue;
            }
            float shifted = c0[i * ldc + j];
            if (with_exp) fia_exp_rescale_scalar(&shifted, 1, ex[i]);
            double mag = fabs((double)shifted);
            for (int64_t p = 0; p < k; p++) mag += fabs((double)a[i * lda + p] * b[p * ldb + j]);
            ok = fabs((double)got - (double)want) <= 1e-5 * mag + 1e-30;
            if (!ok)
                tu_check(0, "%s gemm_f32_acc m=%lld n=%lld k=%lld exp=%d: (%lld,%lld) got %a want %a",
                         kt->name, (long long)m, (long long)n, (long long)k, with_exp,
                         (long long)i, (long long)j, got, want);
        }
    if (ok) tu_check(1, "");
    free(a), free(b), free(c0), free(cr), free(cg), free(ex);
}

static void softmax_amla_case(const fia_kernels *kt, tu_rng *r, int64_t m, int64_t n) {
    const int64_t lds = n + 2;
    float *s0 = malloc(sizeof(float) * (size_t)(m * lds)), *sr = malloc(sizeof(float) * (size_t)(m * lds));
    float *sg = malloc(sizeof(float) * (size_t)(m * lds)), *sp = malloc(sizeof(float) * (size_t)(m * lds));
    float mx0[32] = {0}, l0[32] = {0}, mr[32], lr[32], mg[32], lg[32], mp[32], lp[32], al[32];
    int32_t e0[32] = {0}, er[32], eg[32], xr[32], xg[32];
    for (int64_t i = 0; i < m * lds; i++) {
        s0[i] = (float)tu_uniform(r, -30, 30);
        if (tu_chance(r, 0.1)) s0[i] = -INFINITY;
    }
    for (int64_t i = 0; i < m; i++) {
        const int start = (int)tu_int(r, 0, 3);
        if (start == 3) /* fully masked row */
            for (int64_t j = 0; j < n; j++) s0[i * lds + j] = -INFINITY;
        mx0[i] = start == 0 ? -INFINITY : (float)tu_uniform(r, -400, 40);
        e0[i] = 0;
        l0[i] = start == 0 ? 0.0f : (float)tu_uniform(r, 0.5, 9);
        if (mx0[i] != -INFINITY) {
            /* a consistent previous state: e of the old max */
            e0[i] = (int32_t)nearbyint(-(double)mx0[i] / 0.69314718055994530942);
        }
    }
    memcpy(sr, s0, sizeof(float) * (size_t)(m * lds));
    memcpy(sg, s0, sizeof(float) * (size_t)(m * lds));
    memcpy(sp, s0, sizeof(float) * (size_t)(m * lds));
    memcpy(mr, mx0, sizeof mr), memcpy(mg, mx0, sizeof mg), memcpy(mp, mx0, sizeof mp);
    memcpy(lr, l0, sizeof lr), memcpy(lg, l0, sizeof lg);
    memcpy(er, e0, sizeof er), memcpy(eg, e0, sizeof eg);
    tu_scalar_kernels()->core.softmax_tile_amla(sr, lds, m, n, mr, lr, er, xr);
    kt->softmax_tile_amla(sg, lds, m, n, mg, lg, eg, xg);
    int ok = 1;
    for (int64_t i = 0; i < m && ok; i++) {
        ok = fia_f32_bits(mr[i]) == fia_f32_bits(mg[i]) && er[i] == eg[i] && xr[i] == xg[i] &&
             fabs((double)lr[i] - lg[i]) <= 1e-6 * fabs((double)lr[i]) + 1e-6;
        for (int64_t j = 0; j < n && ok; j++) {
            const float x = sr[i * lds + j], y = sg[i * lds + j];
            ok = x == y || fabs((double)x - y) <= 1e-6 * fabs((double)x) + 1e-44;
        }
        if (!ok)
            tu_check(0, "%s softmax_tile_amla m=%lld n=%lld row %lld: max %g/%g e %d/%d shift %d/%d "
                     "sum %g/%g", kt->name, (long long)m, (long long)n, (long long)i, mr[i], mg[i],
                     er[i], eg[i], xr[i], xg[i], lr[i], lg[i]);
    }
    /* the state identity: AMLA's (-e ln2, l) vs softmax_tile's (m, l) on a fresh row */
    for (int64_t i = 0; i < m && ok; i++) {
        mp[i] = -INFINITY;
        lp[i] = 0.0f;
    }
    float mq[32], lq[32];
    int32_t eq[32], xq[32];
    for (int64_t i = 0; i < m; i++) mq[i] = -INFINITY, lq[i] = 0.0f, eq[i] = 0;
    memcpy(sp, s0, sizeof(float) * (size_t)(m * lds));
    tu_scalar_kernels()->core.softmax_tile(sp, lds, m, n, mp, lp, al);
    memcpy(sg, s0, sizeof(float) * (size_t)(m * lds));
    kt->softmax_tile_amla(sg, lds, m, n, mq, lq, eq, xq);
    for (int64_t i = 0; i < m && ok; i++) {
        if (mp[i] == -INFINITY) {
            ok = mq[i] == -INFINITY;
            continue;
        }
        const double lse_plain = mp[i] + log((double)lp[i]);
        const double lse_amla = -eq[i] * 0.69314718055994530942 + log((double)lq[i]);
        ok = fabs(lse_plain - lse_amla) <= 1e-5 * (1.0 + fabs(lse_plain));
        if (!ok) tu_check(0, "%s amla state: lse %.9g vs %.9g", kt->name, lse_amla, lse_plain);
    }
    if (ok) tu_check(1, "");
    free(s0), free(sr), free(sg), free(sp);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261121, "test_amla");
    tu_rng r = tu_rng_make(seed);
    test_exp_add(&r);
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int li = 0; li < 3; li++) {
        fia_context_options o = {1, levels[li]};
        fia_context *ctx = NULL;
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) {
            printf("%s: not available, skipped\n", fia_isa_name(levels[li]));
            continue;
        }
        const fia_kernels *kt = &ctx->kernels.core;
        for (int t = 0; t < 60; t++)
            gemm_acc_case(kt, &r, tu_int(&r, 1, 30), tu_int(&r, 1, 70), tu_int(&r, 0, 80), t & 1);
        gemm_acc_case(kt, &r, 128, 512, 32, 1);
        gemm_acc_case(kt, &r, 128, 512, 32, 0);
        for (int t = 0; t < 60; t++) softmax_amla_case(kt, &r, tu_int(&r, 1, 32), tu_int(&r, 1, 70));
        fia_context_destroy(ctx);
    }
    return tu_summary();
}
