/*
 * chain_util.h - what the tests of the chain operators (test_norm, test_rope, test_quant,
 * test_cache) share: the contexts of contexts.h, the chain-kernel variants, and the element comparison against an oracle array under
 * a row of ref/tolerance.h (by default the dtype's: atol 1e-3 + rtol 5e-3 for fp16 / bf16,
 * 1e-5 + 1e-5 for fp32).
 */
#ifndef FIA_TESTS_CHAIN_UTIL_H
#define FIA_TESTS_CHAIN_UTIL_H

#include <math.h>

#include "contexts.h"
#include "kernel_variants.h"
#include "ref/tolerance.h"
#include "test_util.h"

/* Every chain-kernel variant this CPU runs (the registry's sets), the scalar one first, in *v;
 * returns how many (at most 16). */
static inline int chain_variants(const tu_kernel_variant **v) {
    static tu_kernel_variant vs[16];
    vs[0].set = *tu_scalar_kernels();
    const int n = 1 + TU_KERNEL_VARIANTS(chain, vs + 1, 15);
    printf("chain kernel variants:");
    for (int i = 0; i < n; i++) printf(" %s", vs[i].set.chain.name);
    printf("\n");
    *v = vs;
    return n;
}

/* Element i of a row of dtype dt (f32 / f16 / bf16) and the same row filled in [lo, hi]. */
static inline double cu_ld(const void *p, fia_dtype dt, int64_t i) {
    if (dt == FIA_DTYPE_FLOAT16) return fia_f16_to_f32(((const uint16_t *)p)[i]);
    if (dt == FIA_DTYPE_BFLOAT16) return fia_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
static inline void cu_fill(void *p, fia_dtype dt, int64_t n, tu_rng *r, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) {
        const float f = (float)tu_uniform(r, lo, hi);
        if (dt == FIA_DTYPE_FLOAT16) ((uint16_t *)p)[i] = fia_f32_to_f16(f);
        else if (dt == FIA_DTYPE_BFLOAT16) ((uint16_t *)p)[i] = fia_f32_to_bf16(f);
        else ((float *)p)[i] = f;
    }
}

/* Compares every element of got with want under the table row tol; returns the number of
 * mismatches (the first three printed). */
static inline int64_t cmp_row(const fia_tensor *got, const double *want, const fia_ref_tolerance *tol) {
    const int64_t n = tu_numel(got);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t c[FIA_MAX_DIMS], j = i;
        for (int32_t d = got->ndim - 1; d >= 0; d--) c[d] = j % got->shape[d], j /= got->shape[d];
        double g;
        int64_t off = 0;
        for (int32_t d = 0; d < got->ndim; d++) off += c[d] * got->strides[d];
        const char *p = (const char *)got->data + off * (int64_t)fia_dtype_size(got->dtype);
        if (got->dtype == FIA_DTYPE_FLOAT32) { float f; memcpy(&f, p, 4); g = f; }
        else { uint16_t h; memcpy(&h, p, 2); g = got->dtype == FIA_DTYPE_FLOAT16 ? fia_f16_to_f32(h) : fia_bf16_to_f32(h); }
        if (!fia_ref_tolerance_pass(tol, g, want[i], 0.0, NULL)) {
            if (bad < 3) fprintf(stderr, "  elem %lld: got %.6g want %.6g\n", (long long)i, g, want[i]);
            bad++;
        }
    }
    return bad;
}

/* The same under the default row of dtype tol_dt (an output of op whose only row is its dtype's). */
static inline int64_t cmp(const fia_tensor *got, const double *want, fia_dtype tol_dt) {
    return cmp_row(got, want, fia_ref_tolerance_of(NULL, NULL, tol_dt));
}

/* Nonzero when every byte of buf[0..n) is b (an output that a failed call must not touch). */
static inline int all_bytes(const void *buf, size_t n, unsigned char b) {
    const unsigned char *p = buf;
    for (size_t i = 0; i < n; i++)
        if (p[i] != b) return 0;
    return 1;
}

#endif /* FIA_TESTS_CHAIN_UTIL_H */
