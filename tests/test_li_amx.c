/*
 * test_li_amx.c - the lightning indexer's bf16 scoring slot (li.score_bf16, AMX tiles) against
 * the scalar fp32 kernel on the same values (bf16 widens to fp32 exactly), for every variant of
 * the li family this CPU runs (registry.inc); on a CPU without AMX bf16 the slot is empty and
 * the test says so.
 *
 * Checks per variant with the slot: scores within the fp32 rounding bound of the scalar kernel
 * (2e-5 of the sum of |terms|, as the float kernels), keys read in place (rows at a constant
 * stride, d a multiple of 32) and through the zero-padded stage give the same bits, and a key's
 * score does not depend on how the keys are grouped into calls.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "kernel_variants.h"
#include "test_util.h"

static uint16_t bf(tu_rng *rng) { return fia_cvt_f32_to_bf16((float)tu_uniform(rng, -1, 1)); }

static void test_variant(const fia_li_kernels *kt, tu_rng *rng) {
    int bad = 0, bad_stage = 0, bad_split = 0;
    for (int rep = 0; rep < 80; rep++) {
        const int64_t n = tu_int(rng, 1, 70), nh = rep < 4 ? 64 : tu_int(rng, 1, 64);
        const int64_t d = rep % 3 == 0 ? 128 : tu_int(rng, 1, 200);
        const int64_t ldq = (nh + 15) / 16 * 16, dpad = (d + 31) / 32 * 32;
        const int64_t ldk = d + (rep % 2 ? 0 : tu_int(rng, 1, 9)); /* constant stride rows */
        uint16_t *k = malloc(sizeof(uint16_t) * (size_t)(n * ldk));
        uint16_t *qp = calloc((size_t)(dpad * ldq), sizeof(uint16_t));
        float *kf = malloc(sizeof(float) * (size_t)(n * d)), *qt = calloc((size_t)(d * ldq), 4);
        float *w = calloc((size_t)ldq, sizeof(float));
        float *o1 = malloc(sizeof(float) * (size_t)n), *o2 = malloc(sizeof(float) * (size_t)n);
        float *o3 = malloc(sizeof(float) * (size_t)n);
        const void **rows = malloc(sizeof(void *) * (size_t)n);
        const void **copy = malloc(sizeof(void *) * (size_t)n);
        void *scratch = aligned_alloc(64, (FIA_LI_BF16_SCRATCH(d) + 63) / 64 * 64);
        for (int64_t j = 0; j < n; j++) {
            for (int64_t c = 0; c < ldk; c++) k[j * ldk + c] = bf(rng);
            for (int64_t c = 0; c < d; c++) kf[j * d + c] = fia_cvt_bf16_to_f32(k[j * ldk + c]);
            rows[j] = k + j * ldk;
            uint16_t *cp = malloc(sizeof(uint16_t) * (size_t)d); /* scattered rows */
            memcpy(cp, rows[j], sizeof(uint16_t) * (size_t)d);
            copy[j] = cp;
        }
        for (int64_t h = 0; h < nh; h++) {
            w[h] = (float)tu_uniform(rng, -1, 1);
            for (int64_t c = 0; c < d; c++) {
                const uint16_t x = bf(rng);
                qp[((c / 2) * ldq + h) * 2 + c % 2] = x;
                qt[c * ldq + h] = fia_cvt_bf16_to_f32(x);
            }
        }
        tu_scalar_kernels()->li.score_f32(n, d, nh, kf, d, qt, ldq, w, o1);
        kt->score_bf16(n, d, nh, rows, qp, ldq, w, o2, scratch);
        for (int64_t j = 0; j < n; j++) {
            double mag = 0;
            for (int64_t h = 0; h < nh; h++) {
                double a = 0;
                for (int64_t c = 0; c < d; c++) a += fabs((double)qt[c * ldq + h] * kf[j * d + c]);
                mag += fabs(w[h]) * a;
            }
            if (!(fabs((double)o1[j] - o2[j]) <= 2e-5 * mag + 1e-30)) bad++;
        }
        kt->score_bf16(n, d, nh, copy, qp, ldq, w, o3, scratch);
        bad_stage += memcmp(o2, o3, sizeof(float) * (size_t)n) != 0;
        const int64_t a = tu_int(rng, 0, n);
        if (a > 0) kt->score_bf16(a, d, nh, rows, qp, ldq, w, o3, scratch);
        if (n > a) kt->score_bf16(n - a, d, nh, rows + a, qp, ldq, w, o3 + a, scratch);
        bad_split += memcmp(o2, o3, sizeof(float) * (size_t)n) != 0;
        for (int64_t j = 0; j < n; j++) free((void *)copy[j]);
        free(k), free(qp), free(kf), free(qt), free(w), free(o1), free(o2), free(o3);
        free(rows), free(copy), free(scratch);
    }
    tu_check(bad == 0, "%s score_bf16 vs scalar score_f32: %d scores beyond the bound", kt->name,
             bad);
    tu_check(bad_stage == 0, "%s score_bf16: in place vs staged keys differ in %d cases",
             kt->name, bad_stage);
    tu_check(bad_split == 0, "%s score_bf16: grouping of keys changes %d cases", kt->name,
             bad_split);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_li_amx");
    tu_rng rng = tu_rng_make(seed);
    tu_kernel_variant v[16];
    const int nv = TU_KERNEL_VARIANTS(li, v, 16);
    int tested = 0;
    tu_check(tu_scalar_kernels()->li.score_bf16 == NULL, "no scalar score_bf16 (the slot is AMX only)");
    for (int i = 0; i < nv; i++) {
        if (!v[i].set.li.score_bf16) continue;
        test_variant(&v[i].set.li, &rng);
        tested++;
    }
    if (!tested) printf("li.score_bf16: no AMX bf16 on this CPU/OS: not exercised\n");
    return tu_summary();
}
