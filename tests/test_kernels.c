/*
 * test_kernels.c - every core kernel variant the CPU runs (kernels/registry.inc) against the scalar
 * kernels, and the registry itself (every line this CPU runs is reachable and chosen by its own
 * feature mask).
 *
 *   gemm_f32:      random shapes covering every row / column / k tail, padded leading dims,
 *                  row_scale NULL (C pre-filled with NaN garbage) and non-NULL; tolerance
 *                  1e-5 * sum_p |a_ip b_pj| (+ |row_scale c|); canaries in C's padding.
 *   conversions:   bit-exact: all 65536 f16 / bf16 inputs, all 256 int8, f32 -> f16 / bf16 on
 *                  specials, every f16 rounding boundary (+-1 ulp), random bit patterns; every
 *                  length 0..70 at odd offsets with exactly sized buffers and output canaries.
 *   transpose_f32: exact on odd shapes, canaries in dst padding.
 *   qk_rows / pv_rows: f32 / f16 / bf16 / int8 rows, each its own exactly sized allocation, every
 *                  head-dim / row tail, padded leading dims with canaries, 1e-5 * sum |x y|.
 *   qk_heads / pv_heads: bit-exact against the same table's qk_rows / pv_rows head by head.
 *   softmax_tile:  1e-6 relative of scalar (libm expf), -inf entries, fully -inf rows,
 *                  row_max = -inf starts, large spreads (underflow), canaries in the lds padding
 *                  and in the row after the last; plus the vector expf's ulp error over
 *                  [-87.3, 0] (must be <= 2 ulp).
 *   gemm_bf16b:    the bf16 B pack (fia_bf16b_pack) and the scalar kernel against a double
 *                  product of the unpacked B (1e-5 * sum |a b|), every variant against scalar
 *                  the same way: every m 1..20, n 1..70 and 256, k 0..130 and 1536, padded
 *                  lda / ldb / ldc, C pre-filled with NaN, canaries in C's padding.
 *   p_to_u8:       bit-exact codes and returned max: lengths 1..1000 (every vector tail), random
 *                  rows in [0, 1], rows at the rounding ties (x = p * 255 / mx + 0.5 exactly an
 *                  integer, 1 and 255 included, +-1 ulp around them), all-zero rows, negative
 *                  and NaN entries; exactly sized input, output canaries on both sides.
 *
 * Usage: test_kernels [seed]. Prints the seed first and "N passed, N failed" last.
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "kernel_variants.h"
#include "test_util.h"

#define CANARY_BITS 0x7fa5a5a5u /* a NaN pattern no kernel produces */

static float canary(void) { return fia_bits_f32(CANARY_BITS); }
static int is_canary(float f) { return fia_f32_bits(f) == CANARY_BITS; }

static float *alloc_f32(int64_t n) { return (float *)malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

static float rnd_f32(tu_rng *r, double lo, double hi) { return (float)tu_uniform(r, lo, hi); }

/* ------------------------------------------------------------------------------------------ */
/* gemm                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* One gemm case; returns 1 on pass. */
static int gemm_case(const fia_kernels *kt, tu_rng *rng, int64_t m, int64_t n, int64_t k,
                     int with_scale) {
    const int64_t lda = k + tu_int(rng, 0, 3), ldb = n + tu_int(rng, 0, 5);
    const int64_t ldc = n + tu_int(rng, 0, 5);
    /* Exactly sized: the last row ends at the last element the sizes name. */
    const int64_t na = m > 0 && k > 0 ? (m - 1) * lda + k : 0;
    const int64_t nb = k > 0 && n > 0 ? (k - 1) * ldb + n : 0;
    const int64_t nc = m * ldc; /* full last row: its padding holds canaries */
    float *a = alloc_f32(na), *b = alloc_f32(nb), *c0 = alloc_f32(nc), *cr = alloc_f32(nc),
          *cg = alloc_f32(nc), *rs = (float *)calloc((size_t)(m > 0 ? m : 1), sizeof(float));
    for (int64_t i = 0; i < na; i++) a[i] = (i % lda) < k ? rnd_f32(rng, -1, 1) : NAN;
    for (int64_t i = 0; i < nb; i++) b[i] = (i % ldb) < n ? rnd_f32(rng, -1, 1) : NAN;
    for (int64_t i = 0; i < nc; i++) {
        const int inside = (i % ldc) < n;
        c0[i] = inside ? (with_scale ? rnd_f32(rng, -2, 2) : NAN) : canary();
    }
    for (int64_t i = 0; i < m; i++) {
        const int pick = (int)tu_int(rng, 0, 5);
        rs[i] = pick == 0 ? 0.0f : pick == 1 ? 1.0f : rnd_f32(rng, -1.5, 1.5);
    }
    memcpy(cr, c0, (size_t)nc * sizeof(float));
    memcpy(cg, c0, (size_t)nc * sizeof(float));
    tu_scalar_kernels()->core.gemm_f32(m, n, k, a, lda, b, ldb, cr, ldc, with_scale ? rs : NULL);
    kt->gemm_f32(m, n, k, a, lda, b, ldb, cg, ldc, with_scale ? rs : NULL);

    int ok = 1;
    double worst = 0.0;
    int64_t wi = -1, wj = -1;
    for (int64_t i = 0; i < m && ok; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            const float got = cg[i * ldc + j], want = cr[i * ldc + j];
            if (j >= n) {
                if (!is_canary(got)) {
                    ok = 0;
                    wi = i, wj = j;
                    break;
                }
                continue;
            }
            double mag = with_scale ? fabs((double)rs[i] * c0[i * ldc + j]) : 0.0;
            for (int64_t p = 0; p < k; p++) mag += fabs((double)a[i * lda + p] * b[p * ldb + j]);
            const double err = fabs((double)got - (double)want);
            if (!(err <= 1e-5 * mag + 1e-30)) {
                ok = 0;
                wi = i, wj = j;
                worst = err;
                break;
            }
        }
    }
    tu_check(ok, "%s gemm m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " lda=%" PRId64 " ldb=%" PRId64
                 " ldc=%" PRId64 " scale=%d: mismatch at (%" PRId64 ",%" PRId64 ") err %g",
             kt->name, m, n, k, lda, ldb, ldc, with_scale, wi, wj, worst);
    free(a), free(b), free(c0), free(cr), free(cg), free(rs);
    return ok;
}

static void test_gemm(const fia_kernels *kt, tu_rng *rng) {
    static const int64_t ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 64};
    static const int64_t ns_big[] = {128, 512};
    /* every m with random n, k */
    for (size_t t = 0; t < sizeof ms / sizeof ms[0]; t++)
        for (int s = 0; s < 2; s++) gemm_case(kt, rng, ms[t], tu_int(rng, 1, 70), tu_int(rng, 0, 130), s);
    /* every n 1..70 plus 128 / 512 with random m, k */
    for (int64_t n = 1; n <= 72; n++) {
        const int64_t nn = n <= 70 ? n : ns_big[n - 71];
        for (int s = 0; s < 2; s++)
            gemm_case(kt, rng, tu_int(rng, 1, 20), nn, tu_int(rng, 0, nn > 70 ? 70 : 130), s);
    }
    /* every k 0..130 plus 512 with random m, n */
    for (int64_t k = 0; k <= 131; k++) {
        const int64_t kk = k <= 130 ? k : 512;
        gemm_case(kt, rng, tu_int(rng, 1, 20), tu_int(rng, 1, 70), kk, (int)(k & 1));
    }
    /* the shapes the operators use */
    gemm_case(kt, rng, 64, 64, 128, 0); /* S = Q.K^T */
    gemm_case(kt, rng, 64, 128, 64, 1); /* O = alpha.O + P.V */
    gemm_case(kt, rng, 64, 512, 64, 1);
    gemm_case(kt, rng, 17, 64, 512, 0);
    /* zero sizes are no-ops */
    {
        float c[4] = {1, 2, 3, 4}, a = 1, b = 1;
        kt->gemm_f32(0, 2, 1, &a, 1, &b, 2, c, 2, NULL);
        kt->gemm_f32(2, 0, 1, &a, 1, &b, 0, c, 2, NULL);
        tu_check(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4, "%s gemm: zero size wrote C",
                 kt->name);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* qk_rows / pv_rows (decode kernels reading K/V rows in place through row pointers)           */
/* ------------------------------------------------------------------------------------------ */

/* n rows of `len` elements of dtype dt, each its own exactly sized allocation; vals gets the
 * fp32 value of every element (row-major n x len). */
static void **make_rows(tu_rng *rng, int64_t n, int64_t len, fia_dtype dt, float *vals) {
    void **rows = (void **)malloc((size_t)(n > 0 ? n : 1) * sizeof(void *));
    const size_t es = dt == FIA_DTYPE_FLOAT32 ? 4 : dt == FIA_DTYPE_INT8 ? 1 : 2;
    for (int64_t j = 0; j < n; j++) {
        rows[j] = malloc((size_t)(len > 0 ? len : 1) * es);
        for (int64_t c = 0; c < len; c++) {
            const float x = rnd_f32(rng, -1, 1);
            float v = x;
            if (dt == FIA_DTYPE_FLOAT16) {
                const uint16_t h = fia_cvt_f32_to_f16(x);
                ((uint16_t *)rows[j])[c] = h;
                v = fia_cvt_f16_to_f32(h);
            } else if (dt == FIA_DTYPE_BFLOAT16) {
                const uint16_t h = fia_cvt_f32_to_bf16(x);
                ((uint16_t *)rows[j])[c] = h;
                v = fia_cvt_bf16_to_f32(h);
            } else if (dt == FIA_DTYPE_INT8) {
                const int8_t i8 = (int8_t)tu_int(rng, -128, 127);
                ((int8_t *)rows[j])[c] = i8;
                v = (float)i8;
            } else {
                ((float *)rows[j])[c] = x;
            }
            vals[j * len + c] = v;
        }
    }
    return rows;
}

static void free_rows(void **rows, int64_t n) {
    for (int64_t j = 0; j < n; j++) free(rows[j]);
    free(rows);
}

static void qk_rows_case(const fia_kernels *kt, tu_rng *rng, int64_t m, int64_t n, int64_t d,
                         fia_dtype dt) {
    const int64_t ldq = d + tu_int(rng, 0, 3), lds = n + tu_int(rng, 0, 3);
    const int64_t nq = m > 0 && d > 0 ? (m - 1) * ldq + d : 0, ns = m * lds;
    float *q = alloc_f32(nq), *kv = alloc_f32(n * d), *sr = alloc_f32(ns), *sg = alloc_f32(ns);
    for (int64_t i = 0; i < nq; i++) q[i] = (i % ldq) < d ? rnd_f32(rng, -1, 1) : NAN;
    void **kr = make_rows(rng, n, d, dt, kv);
    for (int64_t i = 0; i < ns; i++) sr[i] = sg[i] = (i % lds) < n ? NAN : canary();
    /* prefetch list: none, or the rows themselves */
    const int64_t npf = tu_chance(rng, 0.5) ? n : 0;
    const void *const *pf = npf ? (const void *const *)kr : NULL;
    tu_scalar_kernels()->core.qk_rows(m, n, d, q, ldq, (const void *const *)kr, dt, sr, lds, pf, npf);
    kt->qk_rows(m, n, d, q, ldq, (const void *const *)kr, dt, sg, lds, pf, npf);
    int ok = 1;
    int64_t wr = -1, wj = -1;
    for (int64_t r = 0; r < m && ok; r++)
        for (int64_t j = 0; j < lds && ok; j++) {
            const float got = sg[r * lds + j], want = sr[r * lds + j];
            if (j >= n) {
                ok = is_canary(got);
            } else {
                double mag = 0.0;
                for (int64_t c = 0; c < d; c++) mag += fabs((double)q[r * ldq + c] * kv[j * d + c]);
                ok = fabs((double)got - (double)want) <= 1e-5 * mag + 1e-30;
            }
            if (!ok) wr = r, wj = j;
        }
    tu_check(ok, "%s qk_rows m=%" PRId64 " n=%" PRId64 " d=%" PRId64 " dt=%d: mismatch at (%" PRId64
                 ",%" PRId64 ")",
             kt->name, m, n, d, (int)dt, wr, wj);
    free_rows(kr, n);
    free(q), free(kv), free(sr), free(sg);
}

static void pv_rows_case(const fia_kernels *kt, tu_rng *rng, int64_t m, int64_t n, int64_t dv,
                         fia_dtype dt, int with_scale) {
    const int64_t ldp = n + tu_int(rng, 0, 3), ldo = dv + tu_int(rng, 0, 3);
    const int64_t np = m > 0 && n > 0 ? (m - 1) * ldp + n : 0, no = m * ldo;
    float *p = alloc_f32(np), *vv = alloc_f32(n * dv), *o0 = alloc_f32(no), *orf = alloc_f32(no),
          *og = alloc_f32(no), *rs = (float *)calloc((size_t)(m > 0 ? m : 1), sizeof(float));
    for (int64_t i = 0; i < np; i++) p[i] = (i % ldp) < n ? rnd_f32(rng, 0, 1) : NAN;
    void **vr = make_rows(rng, n, dv, dt, vv);
    for (int64_t i = 0; i < no; i++)
        o0[i] = (i % ldo) < dv ? (with_scale ? rnd_f32(rng, -2, 2) : NAN) : canary();
    for (int64_t r = 0; r < m; r++) rs[r] = tu_chance(rng, 0.2) ? 0.0f : rnd_f32(rng, 0, 1);
    memcpy(orf, o0, (size_t)no * sizeof(float));
    memcpy(og, o0, (size_t)no * sizeof(float));
    const int64_t npf = tu_chance(rng, 0.5) ? n : 0;
    const void *const *pf = npf ? (const void *const *)vr : NULL;
    tu_scalar_kernels()->core.pv_rows(m, n, dv, p, ldp, (const void *const *)vr, dt, orf, ldo,
                               with_scale ? rs : NULL, pf, npf);
    kt->pv_rows(m, n, dv, p, ldp, (const void *const *)vr, dt, og, ldo, with_scale ? rs : NULL,
                pf, npf);
    int ok = 1;
    int64_t wr = -1, wc = -1;
    for (int64_t r = 0; r < m && ok; r++)
        for (int64_t c = 0; c < ldo && ok; c++) {
            const float got = og[r * ldo + c], want = orf[r * ldo + c];
            if (c >= dv) {
                ok = is_canary(got);
            } else {
                double mag = with_scale ? fabs((double)rs[r] * o0[r * ldo + c]) : 0.0;
                for (int64_t j = 0; j < n; j++) mag += fabs((double)p[r * ldp + j] * vv[j * dv + c]);
                ok = fabs((double)got - (double)want) <= 1e-5 * mag + 1e-30;
            }
            if (!ok) wr = r, wc = c;
        }
    tu_check(ok, "%s pv_rows m=%" PRId64 " n=%" PRId64 " dv=%" PRId64 " dt=%d scale=%d: mismatch at (%" PRId64
                 ",%" PRId64 ")",
             kt->name, m, n, dv, (int)dt, with_scale, wr, wc);
    free_rows(vr, n);
    free(p), free(vv), free(o0), free(orf), free(og), free(rs);
}

static void test_rows(const fia_kernels *kt, tu_rng *rng) {
    static const fia_dtype dts[] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16,
                                    FIA_DTYPE_INT8};
    static const int64_t dims[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70, 96, 128, 130, 256};
    for (size_t t = 0; t < sizeof dts / sizeof dts[0]; t++) {
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
            qk_rows_case(kt, rng, tu_int(rng, 1, 9), tu_int(rng, 1, 40), dims[i], dts[t]);
            pv_rows_case(kt, rng, tu_int(rng, 1, 9), tu_int(rng, 1, 40), dims[i], dts[t], (int)(i & 1));
        }
        for (int64_t m = 1; m <= 9; m++) {
            qk_rows_case(kt, rng, m, tu_int(rng, 1, 40), tu_int(rng, 1, 130), dts[t]);
            pv_rows_case(kt, rng, m, tu_int(rng, 1, 40), tu_int(rng, 1, 130), dts[t], (int)(m & 1));
        }
        for (int64_t n = 1; n <= 20; n++) {
            qk_rows_case(kt, rng, tu_int(rng, 1, 9), n, tu_int(rng, 1, 130), dts[t]);
            pv_rows_case(kt, rng, tu_int(rng, 1, 9), n, tu_int(rng, 1, 130), dts[t], (int)(n & 1));
        }
        qk_rows_case(kt, rng, 4, 64, 128, dts[t]);
        pv_rows_case(kt, rng, 4, 64, 128, dts[t], 1);
        for (int64_t m = 8; m <= 17; m++) /* the 8-row P.V blocks, with 4-, 3-, 2- and 1-row rests */
            pv_rows_case(kt, rng, m, tu_int(rng, 1, 70), m & 1 ? tu_int(rng, 1, 130) : 128, dts[t],
                         (int)(m >> 1 & 1));
        pv_rows_case(kt, rng, 3, 0, 20, dts[t], 0); /* no rows: O = 0 */
    }
}

static int same_f32(const float *x, const float *y, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++)
        if (fia_f32_bits(x[i]) != fia_f32_bits(y[i])) {
            *at = i;
            return 0;
        }
    return 1;
}

/* qk_heads / pv_heads (NULL in tables without them): bit-exact against the same table's
 * qk_rows / pv_rows with m = 1, head by head, on n token rows of nh heads hs >= d elements
 * apart (each row exactly sized), padded leading dims with canaries, prefetch lists none or
 * the rows themselves. */
static void qk_heads_case(const fia_kernels *kt, tu_rng *rng, int64_t nh, int64_t n, int64_t d,
                          fia_dtype dt) {
    const int64_t hs = d + tu_int(rng, 0, 3), len = (nh - 1) * hs + d;
    const int64_t ldq = d + tu_int(rng, 0, 3), lds = n + tu_int(rng, 0, 3), ns = nh * lds;
    const size_t es = (size_t)fia_dtype_size(dt);
    float *q = alloc_f32(nh * ldq), *kv = alloc_f32(n * len), *sr = alloc_f32(ns),
          *sg = alloc_f32(ns);
    for (int64_t i = 0; i < nh * ldq; i++) q[i] = (i % ldq) < d ? rnd_f32(rng, -1, 1) : NAN;
    void **kr = make_rows(rng, n, len, dt, kv);
    const void **kh = (const void **)malloc((size_t)(n > 0 ? n : 1) * sizeof(void *));
    for (int64_t i = 0; i < ns; i++) sr[i] = sg[i] = (i % lds) < n ? NAN : canary();
    for (int64_t h = 0; h < nh; h++) {
        for (int64_t j = 0; j < n; j++) kh[j] = (const char *)kr[j] + (size_t)(h * hs) * es;
        kt->qk_rows(1, n, d, q + h * ldq, ldq, kh, dt, sr + h * lds, lds, NULL, 0);
    }
    const int64_t npf = tu_chance(rng, 0.5) ? n : 0;
    kt->qk_heads(nh, n, d, q, ldq, (const void *const *)kr, hs, dt, sg, lds,
                 npf ? (const void *const *)kr : NULL, npf);
    int64_t at = -1;
    const int ok = same_f32(sg, sr, ns, &at);
    tu_check(ok, "%s qk_heads nh=%" PRId64 " n=%" PRId64 " d=%" PRId64 " hs=%" PRId64
                 " dt=%d: not qk_rows' bits at (%" PRId64 ",%" PRId64 ")",
             kt->name, nh, n, d, hs, (int)dt, ok ? 0 : at / lds, ok ? 0 : at % lds);
    free_rows(kr, n);
    free(kh), free(q), free(kv), free(sr), free(sg);
}

static void pv_heads_case(const fia_kernels *kt, tu_rng *rng, int64_t nh, int64_t n, int64_t dv,
                          fia_dtype dt, int with_scale) {
    const int64_t hs = dv + tu_int(rng, 0, 3), len = (nh - 1) * hs + dv;
    const int64_t ldp = n + tu_int(rng, 0, 3), ldo = dv + tu_int(rng, 0, 3), no = nh * ldo;
    const size_t es = (size_t)fia_dtype_size(dt);
    float *p = alloc_f32(nh * ldp), *vv = alloc_f32(n * len), *orf = alloc_f32(no),
          *og = alloc_f32(no), *rs = alloc_f32(nh);
    for (int64_t i = 0; i < nh * ldp; i++) p[i] = (i % ldp) < n ? rnd_f32(rng, 0, 1) : NAN;
    void **vr = make_rows(rng, n, len, dt, vv);
    const void **vh = (const void **)malloc((size_t)(n > 0 ? n : 1) * sizeof(void *));
    for (int64_t i = 0; i < no; i++)
        orf[i] = og[i] = (i % ldo) < dv ? (with_scale ? rnd_f32(rng, -2, 2) : NAN) : canary();
    for (int64_t h = 0; h < nh; h++) rs[h] = tu_chance(rng, 0.2) ? 0.0f : rnd_f32(rng, 0, 1);
    for (int64_t h = 0; h < nh; h++) {
        for (int64_t j = 0; j < n; j++) vh[j] = (const char *)vr[j] + (size_t)(h * hs) * es;
        kt->pv_rows(1, n, dv, p + h * ldp, ldp, vh, dt, orf + h * ldo, ldo,
                    with_scale ? rs + h : NULL, NULL, 0);
    }
    const int64_t npf = tu_chance(rng, 0.5) ? n : 0;
    kt->pv_heads(nh, n, dv, p, ldp, (const void *const *)vr, hs, dt, og, ldo,
                 with_scale ? rs : NULL, npf ? (const void *const *)vr : NULL, npf);
    int64_t at = -1;
    const int ok = same_f32(og, orf, no, &at);
    tu_check(ok, "%s pv_heads nh=%" PRId64 " n=%" PRId64 " dv=%" PRId64 " hs=%" PRId64
                 " dt=%d scale=%d: not pv_rows' bits at (%" PRId64 ",%" PRId64 ")",
             kt->name, nh, n, dv, hs, (int)dt, with_scale, ok ? 0 : at / ldo, ok ? 0 : at % ldo);
    free_rows(vr, n);
    free(vh), free(p), free(vv), free(orf), free(og), free(rs);
}

static void test_heads(const fia_kernels *kt, tu_rng *rng) {
    if (!kt->qk_heads && !kt->pv_heads) return;
    tu_check(kt->qk_heads && kt->pv_heads, "%s: qk_heads and pv_heads come together", kt->name);
    static const fia_dtype dts[] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16,
                                    FIA_DTYPE_INT8};
    static const int64_t dims[] = {1, 3, 8, 15, 16, 17, 31, 32, 33, 64, 65, 100, 128, 256};
    for (size_t t = 0; t < sizeof dts / sizeof dts[0]; t++)
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
            /* heads x keys: every count of pairs mod 16, 32 heads of decode among them */
            const int64_t nh = i % 3 == 0 ? 32 : tu_int(rng, 1, 40), n = tu_int(rng, 0, 40);
            qk_heads_case(kt, rng, nh, n, dims[i], dts[t]);
            pv_heads_case(kt, rng, nh, n, dims[i], dts[t], (int)(i & 1));
        }
}

/* ------------------------------------------------------------------------------------------ */
/* conversions                                                                                */
/* ------------------------------------------------------------------------------------------ */

typedef void (*cvt_u16_f32)(const uint16_t *, float *, int64_t);
typedef void (*cvt_f32_u16)(const float *, uint16_t *, int64_t);

static int same_u16(const uint16_t *x, const uint16_t *y, int64_t n, int64_t *at) {
    for (int64_t i = 0; i < n; i++)
        if (x[i] != y[i]) {
            *at = i;
            return 0;
        }
    return 1;
}

/* u16 -> f32 over all 65536 inputs, then every length 0..70 at an odd offset with exactly
 * sized source buffers and output canaries. */
static void check_u16_to_f32(const char *what, const fia_kernels *kt, cvt_u16_f32 got_fn,
                             cvt_u16_f32 ref_fn) {
    const int64_t N = 65536;
    uint16_t *src = (uint16_t *)malloc((size_t)N * 2);
    float *want = alloc_f32(N), *got = alloc_f32(N);
    for (int64_t i = 0; i < N; i++) src[i] = (uint16_t)i;
    ref_fn(src, want, N);
    got_fn(src, got, N);
    int64_t at = -1;
    const int ok = same_f32(got, want, N, &at);
    tu_check(ok, "%s %s: all inputs: input 0x%04x gives 0x%08x, scalar 0x%08x", kt->name, what,
             ok ? 0 : src[at], ok ? 0 : fia_f32_bits(got[at]), ok ? 0 : fia_f32_bits(want[at]));
    int tails_ok = 1;
    for (int64_t n = 0; n <= 70 && tails_ok; n++) {
        const int64_t off = (n * 7919) % 60000 + 1;
        uint16_t *s = (uint16_t *)malloc((size_t)(n ? n : 1) * 2);
        memcpy(s, src + off, (size_t)n * 2);
        float *g = alloc_f32(n + 20);
        for (int64_t i = 0; i < n + 20; i++) g[i] = canary();
        got_fn(s, g + 1, n);
        tails_ok = is_canary(g[0]) && same_f32(g + 1, want + off, n, &at);
        for (int64_t i = n + 1; i < n + 20; i++) tails_ok = tails_ok && is_canary(g[i]);
        tu_check(tails_ok, "%s %s: length %" PRId64 " wrong or wrote out of bounds", kt->name, what, n);
        free(s), free(g);
    }
    free(src), free(want), free(got);
}

static void check_f32_to_u16(const char *what, const fia_kernels *kt, cvt_f32_u16 got_fn,
                             cvt_f32_u16 ref_fn, const float *src, int64_t n) {
    uint16_t *want = (uint16_t *)malloc((size_t)n * 2), *got = (uint16_t *)malloc((size_t)n * 2);
    ref_fn(src, want, n);
    got_fn(src, got, n);
    int64_t at = -1;
    const int ok = same_u16(got, want, n, &at);
    tu_check(ok, "%s %s (%" PRId64 " values): input 0x%08x gives 0x%04x, scalar 0x%04x", kt->name,
             what, n, ok ? 0 : fia_f32_bits(src[at]), ok ? 0 : got[at], ok ? 0 : want[at]);
    int tails_ok = 1;
    for (int64_t len = 0; len <= 70 && tails_ok && len <= n; len++) {
        const int64_t off = n > 71 ? (len * 7919) % (n - 71) + 1 : 0;
        float *s = alloc_f32(len);
        memcpy(s, src + off, (size_t)len * sizeof(float));
        uint16_t *g = (uint16_t *)malloc((size_t)(len + 20) * 2);
        for (int64_t i = 0; i < len + 20; i++) g[i] = 0xa5a5;
        got_fn(s, g + 1, len);
        tails_ok = g[0] == 0xa5a5 && same_u16(g + 1, want + off, len, &at);
        for (int64_t i = len + 1; i < len + 20; i++) tails_ok = tails_ok && g[i] == 0xa5a5;
        tu_check(tails_ok, "%s %s: length %" PRId64 " wrong or wrote out of bounds", kt->name, what,
                 len);
        free(s), free(g);
    }
    free(want), free(got);
}

static void test_conversions(const fia_kernels *kt, tu_rng *rng) {
    check_u16_to_f32("f16_to_f32", kt, kt->f16_to_f32, tu_scalar_kernels()->core.f16_to_f32);
    check_u16_to_f32("bf16_to_f32", kt, kt->bf16_to_f32, tu_scalar_kernels()->core.bf16_to_f32);

    /* i8: all 256 values, every length 0..70 */
    {
        int8_t all[256];
        float want[256], got[256];
        for (int i = 0; i < 256; i++) all[i] = (int8_t)(i - 128);
        tu_scalar_kernels()->core.i8_to_f32(all, want, 256);
        kt->i8_to_f32(all, got, 256);
        int64_t at = -1;
        tu_check(same_f32(got, want, 256, &at), "%s i8_to_f32: all values", kt->name);
        for (int64_t n = 0; n <= 70; n++) {
            int8_t *s = (int8_t *)malloc((size_t)(n ? n : 1));
            const int64_t off = (3 * n) % (256 - n);
            memcpy(s, all + off, (size_t)n);
            float *g = alloc_f32(n + 20);
            for (int64_t i = 0; i < n + 20; i++) g[i] = canary();
            kt->i8_to_f32(s, g + 1, n);
            int ok = is_canary(g[0]) && same_f32(g + 1, want + off, n, &at);
            for (int64_t i = n + 1; i < n + 20; i++) ok = ok && is_canary(g[i]);
            tu_check(ok, "%s i8_to_f32: length %" PRId64, kt->name, n);
            free(s), free(g);
        }
    }

    /* f32 -> f16 / bf16 inputs: specials, every f16 value and rounding boundary +-1 ulp, random
     * bit patterns, random values in the f16 range. */
    static const uint32_t specials[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00000u,
        0x7f800001u, 0xff800001u, 0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7fa00000u,
        0x00000001u, 0x80000001u, 0x007fffffu, 0x00400000u, 0x00800000u, 0x7f7fffffu,
        0xff7fffffu, 0x477fe000u /* 65504 */, 0x477fefffu /* 65519.99 */, 0x477ff000u /* 65520 */,
        0xc77ff000u, 0x47800000u /* 65536 */, 0x33000000u /* 2^-25 */, 0x33000001u,
        0x32ffffffu, 0x33800000u /* 2^-24 */, 0x337fffffu, 0x33c00000u /* 1.5 * 2^-24 */,
        0x38800000u /* 2^-14 */, 0x387fffffu, 0x387fc000u, 0x387fe000u, 0x3f800000u,
        0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f800fffu, 0x3f801000u, 0x3f803000u,
        0x4f800000u, 0x7f7f8000u /* bf16 overflow tie */, 0x7f7f7fffu, 0x7f7fc000u};
    const int64_t nspec = (int64_t)(sizeof specials / sizeof specials[0]);
    const int64_t nb = 65536 * 6, nr = 1 << 18;
    const int64_t total = nspec + nb + nr;
    float *vals = alloc_f32(total);
    int64_t q = 0;
    for (int64_t i = 0; i < nspec; i++) vals[q++] = fia_bits_f32(specials[i]);
    for (uint32_t h = 0; h < 65536; h++) {
        /* f16 value h as f32, and the f32 midpoint to the next f16 value (a rounding tie). */
        const uint32_t v = fia_f32_bits(fia_cvt_f16_to_f32((uint16_t)h));
        const uint32_t nx = fia_f32_bits(fia_cvt_f16_to_f32((uint16_t)(h + 1)));
        const float mid = (float)(((double)fia_bits_f32(v) + (double)fia_bits_f32(nx)) * 0.5);
        const uint32_t mb = fia_f32_bits(mid);
        vals[q++] = fia_bits_f32(v);
        vals[q++] = fia_bits_f32(v + 1);
        vals[q++] = fia_bits_f32(v - 1);
        vals[q++] = mid;
        vals[q++] = fia_bits_f32(mb + 1);
        vals[q++] = fia_bits_f32(mb - 1);
    }
    for (int64_t i = 0; i < nr; i++) {
        const uint64_t x = tu_next(rng);
        vals[q++] = (i & 1) ? fia_bits_f32((uint32_t)x) : (float)tu_uniform(rng, -70000.0, 70000.0) *
                                                              (float)ldexp(1.0, (int)(x % 40) - 30);
    }
    check_f32_to_u16("f32_to_f16", kt, kt->f32_to_f16, tu_scalar_kernels()->core.f32_to_f16, vals, total);
    check_f32_to_u16("f32_to_bf16", kt, kt->f32_to_bf16, tu_scalar_kernels()->core.f32_to_bf16, vals, total);
    free(vals);
}

/* ------------------------------------------------------------------------------------------ */
/* transpose                                                                                  */
/* ------------------------------------------------------------------------------------------ */

static void transpose_case(const fia_kernels *kt, tu_rng *rng, int64_t rows, int64_t cols) {
    const int64_t lds = cols + tu_int(rng, 0, 3), ldd = rows + tu_int(rng, 0, 3);
    const int64_t ns = rows > 0 && cols > 0 ? (rows - 1) * lds + cols : 0;
    const int64_t nd = cols * ldd;
    float *s = alloc_f32(ns), *d = alloc_f32(nd);
    for (int64_t i = 0; i < ns; i++) s[i] = (i % lds) < cols ? rnd_f32(rng, -100, 100) : NAN;
    for (int64_t i = 0; i < nd; i++) d[i] = canary();
    kt->transpose_f32(s, lds, d, ldd, rows, cols);
    int ok = 1;
    for (int64_t c = 0; c < cols && ok; c++)
        for (int64_t r = 0; r < ldd && ok; r++) {
            const float g = d[c * ldd + r];
            ok = r < rows ? fia_f32_bits(g) == fia_f32_bits(s[r * lds + c]) : is_canary(g);
        }
    tu_check(ok, "%s transpose rows=%" PRId64 " cols=%" PRId64 " lds=%" PRId64 " ldd=%" PRId64,
             kt->name, rows, cols, lds, ldd);
    free(s), free(d);
}

static void test_transpose(const fia_kernels *kt, tu_rng *rng) {
    for (int64_t r = 1; r <= 35; r += 2)
        for (int64_t c = 1; c <= 35; c += 3) transpose_case(kt, rng, r, c);
    static const int64_t sh[][2] = {{16, 16}, {8, 8}, {32, 48}, {64, 64}, {100, 37}, {37, 100},
                                    {1, 129}, {129, 1}, {17, 16}, {16, 17}, {0, 5}, {5, 0}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) transpose_case(kt, rng, sh[i][0], sh[i][1]);
}

/* ------------------------------------------------------------------------------------------ */
/* softmax_tile                                                                               */
/* ------------------------------------------------------------------------------------------ */

static int close_rel(float got, float want, double rel) {
    if (isnan(want)) return isnan(got);
    if (got == want) return 1;
    return fabs((double)got - (double)want) <= rel * fabs((double)want) + 1e-44;
}

/* kind: 0 random scores in [-20, 20] with some -inf; 1 wide spread (down to -110: underflow). */
static void softmax_case(const fia_kernels *kt, tu_rng *rng, int64_t m, int64_t n, int kind) {
    const int64_t lds = n + tu_int(rng, 0, 4);
    const int64_t ns = (m + 1) * lds; /* one extra row of canaries after the last */
    float *s0 = alloc_f32(ns), *sr = alloc_f32(ns), *sg = alloc_f32(ns);
    float st0[3][24], str[3][24], stg[3][24]; /* row_max, row_sum, alpha; canaries after m */
    for (int64_t i = 0; i < ns; i++) {
        const int64_t r = i / lds, j = i % lds;
        if (r >= m || j >= n) {
            s0[i] = canary();
            continue;
        }
        s0[i] = kind == 0 ? rnd_f32(rng, -20, 20) : rnd_f32(rng, -110, 0);
        if (tu_chance(rng, 0.1)) s0[i] = -INFINITY;
    }
    for (int t = 0; t < 3; t++)
        for (int64_t r = 0; r < 24; r++) st0[t][r] = canary();
    for (int64_t r = 0; r < m; r++) {
        const int pick = (int)tu_int(rng, 0, 5);
        if (pick == 0) /* fully masked row */
            for (int64_t j = 0; j < n; j++) s0[r * lds + j] = -INFINITY;
        const int start = (int)tu_int(rng, 0, 3); /* row_max start: -inf, below, above, at */
        st0[0][r] = start == 0 ? -INFINITY : start == 1 ? rnd_f32(rng, -30, 0)
                  : start == 2 ? rnd_f32(rng, 10, 25) : 20.0f;
        st0[1][r] = start == 0 ? 0.0f : rnd_f32(rng, 0.5, 50);
        st0[2][r] = NAN; /* alpha is output only */
    }
    memcpy(sr, s0, (size_t)ns * sizeof(float));
    memcpy(sg, s0, (size_t)ns * sizeof(float));
    memcpy(str, st0, sizeof st0);
    memcpy(stg, st0, sizeof st0);
    tu_scalar_kernels()->core.softmax_tile(sr, lds, m, n, str[0], str[1], str[2]);
    kt->softmax_tile(sg, lds, m, n, stg[0], stg[1], stg[2]);

    int ok = 1;
    const char *what = "";
    int64_t wr = -1, wj = -1;
    for (int64_t i = 0; i < ns && ok; i++) {
        const int64_t r = i / lds, j = i % lds;
        if (r >= m || j >= n) {
            if (!is_canary(sg[i])) ok = 0, what = "wrote padding / past last row";
        } else if (!close_rel(sg[i], sr[i], 1e-6)) {
            ok = 0, what = "score";
        }
        if (!ok) wr = r, wj = j;
    }
    /* row_sum: each term is within ~2 ulp; the summation order differs from the scalar loop */
    const double sum_tol = 1e-6 + 8e-8 * sqrt((double)n);
    for (int64_t r = 0; r < 24 && ok; r++) {
        wr = r;
        if (r >= m) {
            if (!is_canary(stg[0][r]) || !is_canary(stg[1][r]) || !is_canary(stg[2][r]))
                ok = 0, what = "wrote row state past m";
            continue;
        }
        if (fia_f32_bits(stg[0][r]) != fia_f32_bits(str[0][r])) ok = 0, what = "row_max";
        else if (!close_rel(stg[2][r], str[2][r], 1e-6)) ok = 0, what = "alpha";
        else if (!close_rel(stg[1][r], str[1][r], sum_tol)) ok = 0, what = "row_sum";
    }
    tu_check(ok, "%s softmax_tile m=%" PRId64 " n=%" PRId64 " lds=%" PRId64 " kind=%d: %s (row %" PRId64
                 " col %" PRId64 ")",
             kt->name, m, n, lds, kind, what, wr, wj);
    free(s0), free(sr), free(sg);
}

/* The vector expf through softmax_tile (row_max 0, one score 0): e^x for x in [-87.3, 0] must
 * be within 2 ulp of the correctly rounded value. */
static void test_exp_ulp(const fia_kernels *kt, tu_rng *rng) {
    const int64_t n = 1024, rows = 256;
    float *s = alloc_f32(n), *x = alloc_f32(n);
    double worst = 0.0;
    float worst_x = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t j = 0; j < n; j++) {
            float v = r < rows / 2 ? -(float)tu_uniform(rng, 0.0, 87.3) /* uniform */
                                   : -(float)ldexp(tu_unit(rng) + 0.5, (int)tu_int(rng, -24, 6));
            if (v < -87.3f) v = -87.3f;
            x[j] = s[j] = v;
        }
        s[0] = x[0] = 0.0f;
        float mx = 0.0f, sum = 0.0f, al = 0.0f;
        kt->softmax_tile(s, n, 1, n, &mx, &sum, &al);
        for (int64_t j = 0; j < n; j++) {
            const double e = exp((double)x[j]);
            const float want = (float)e;
            const double ulp = ldexp(1.0, ilogb(want) - 23);
            const double err = fabs((double)s[j] - e) / ulp;
            if (err > worst) worst = err, worst_x = x[j];
        }
    }
    printf("%s: vector expf max error %.3f ulp (at x = %.9g)\n", kt->name, worst, (double)worst_x);
    tu_check(worst <= 2.0, "%s expf error %.3f ulp at x = %.9g", kt->name, worst, (double)worst_x);
    free(s), free(x);
}

static void test_softmax(const fia_kernels *kt, tu_rng *rng) {
    static const int64_t ns[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 70, 128, 200, 512};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int kind = 0; kind < 2; kind++) softmax_case(kt, rng, tu_int(rng, 1, 20), ns[i], kind);
    for (int t = 0; t < 40; t++) softmax_case(kt, rng, tu_int(rng, 1, 20), tu_int(rng, 1, 80), t & 1);
    softmax_case(kt, rng, 0, 16, 0);
    test_exp_ulp(kt, rng);
}

/* ------------------------------------------------------------------------------------------ */
/* p_to_u8                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* kind 0: random [0, 1]; 1: ties (mx 255: x = p + 0.5, p = k + 0.5 and +-1 ulp); 2: ties at mx 1
 * (p = (k - 0.5) / 255 rounded, +-1 ulp); 3: all zero; 4: random with -0, negatives and NaNs;
 * 5: random [0, 1e-3] (tiny maxima); 6: a random max mx and p within 3 ulp of (k - 0.5) / f,
 * f = 255 / mx, so that p * f lands next to the integer boundaries of x (an FMA shows here). */
static void p_to_u8_case(const fia_kernels *kt, tu_rng *rng, int64_t n, int kind) {
    float *p = alloc_f32(n);
    for (int64_t j = 0; j < n; j++) {
        float v = rnd_f32(rng, 0, 1);
        const int k = tu_int(rng, 0, 255), d = tu_int(rng, -1, 1);
        if (kind == 1) v = nextafterf((float)k - 0.5f, d < 0 ? 0.0f : d > 0 ? 1e9f : (float)k - 0.5f);
        if (kind == 1 && v < 0.0f) v = 0.0f;
        if (kind == 2) {
            v = ((float)k - 0.5f) / 255.0f;
            v = d ? nextafterf(v, d < 0 ? 0.0f : 2.0f) : v;
            if (v < 0.0f || v > 1.0f) v = 0.0f;
        }
        if (kind == 3) v = 0.0f;
        if (kind == 4 && tu_int(rng, 0, 7) == 0) {
            const int w = tu_int(rng, 0, 2);
            v = w == 0 ? -0.0f : w == 1 ? -v : NAN;
        }
        if (kind == 5) v *= 1e-3f;
        p[j] = v;
    }
    if (kind == 6) {
        const float mx = rnd_f32(rng, 0.01, 1), f = 255.0f / mx;
        for (int64_t j = 0; j < n; j++) {
            float v = ((float)tu_int(rng, 1, 255) - 0.5f) / f;
            for (int s = (int)tu_int(rng, -3, 3); s != 0; s += s < 0 ? 1 : -1)
                v = nextafterf(v, s < 0 ? 0.0f : 2.0f);
            p[j] = v < mx ? v : mx;
        }
        p[tu_int(rng, 0, (int)n - 1)] = mx;
    }
    if (kind == 1) p[tu_int(rng, 0, (int)n - 1)] = 255.0f; /* mx exactly 255: f = 1 */
    if (kind == 2) p[tu_int(rng, 0, (int)n - 1)] = 1.0f;
    uint8_t *want = (uint8_t *)malloc((size_t)n + 32), *got = (uint8_t *)malloc((size_t)n + 32);
    memset(want, 0xa5, (size_t)n + 32), memset(got, 0xa5, (size_t)n + 32);
    const float mw = tu_scalar_kernels()->core.p_to_u8(p, n, want + 16);
    const float mg = kt->p_to_u8(p, n, got + 16);
    int at = -1;
    for (int64_t j = 0; j < n + 32 && at < 0; j++)
        if (got[j] != want[j]) at = (int)j;
    tu_check(at < 0 && fia_f32_bits(mg) == fia_f32_bits(mw),
             "%s p_to_u8 (n %" PRId64 ", kind %d): max 0x%08x vs 0x%08x, first difference at "
             "byte %d (%d vs %d, canaries at 0..15 and n+16..)",
             kt->name, n, kind, fia_f32_bits(mg), fia_f32_bits(mw), at - 16, at >= 0 ? got[at] : 0,
             at >= 0 ? want[at] : 0);
    free(p), free(want), free(got);
}

static void test_p_to_u8(const fia_kernels *kt, tu_rng *rng) {
    static const int64_t ns[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 512, 1000};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int kind = 0; kind < 7; kind++) p_to_u8_case(kt, rng, ns[i], kind);
    for (int t = 0; t < 200; t++) p_to_u8_case(kt, rng, tu_int(rng, 1, 300), t % 7);
}

/* ------------------------------------------------------------------------------------------ */

/* Every registry line this CPU runs is the kernel of its slot in the set built from exactly its
 * own features (else a later line with fewer needs hides it: dead code). */
static void test_registry(void) {
    const uint32_t cpu = fia_cpu_features();
    size_t runnable = 0;
    for (size_t i = 0; i < fia_kernel_registry_size; i++) {
        const fia_kernel_info *k = &fia_kernel_registry[i];
        if (k->features & ~cpu) continue;
        fia_kernel_set set;
        fia_kernel_set_build(&set, k->features);
        tu_check(fia_kernel_set_uses(&set, i), "registry: %s.%s %s is not chosen by its features",
                 k->family, k->slot, k->name);
        runnable++;
    }
    printf("registry: %zu kernels, %zu run on this CPU (features up to %s)\n",
           fia_kernel_registry_size, runnable, fia_cpu_feature_name(cpu));
}

/* One gemm_bf16b case: the pack of a random bf16 B, then scalar and kt (C pre-filled with NaN,
 * canaries past n in each row), each against the double product within 1e-5 sum |a b|. */
static int bf16b_case(const fia_kernels *kt, tu_rng *rng, int64_t m, int64_t n, int64_t k) {
    const int64_t lda = k + tu_int(rng, 0, 3), ldb = n + tu_int(rng, 0, 3),
                  ldc = n + tu_int(rng, 0, 5);
    float *a = alloc_f32(m * lda), *cr = alloc_f32(m * ldc), *cg = alloc_f32(m * ldc);
    uint16_t *b = (uint16_t *)malloc((size_t)(k * ldb > 0 ? k * ldb : 1) * 2);
    const int64_t pe = fia_bf16b_pack_elems(n, k);
    uint16_t *pk = (uint16_t *)malloc((size_t)(pe > 0 ? pe : 1) * 2);
    for (int64_t i = 0; i < m * lda; i++) a[i] = (i % lda) < k ? rnd_f32(rng, -1, 1) : NAN;
    for (int64_t i = 0; i < k * ldb; i++)
        b[i] = (i % ldb) < n ? fia_cvt_f32_to_bf16(rnd_f32(rng, -1, 1)) : 0x7fc1;
    for (int64_t i = 0; i < m * ldc; i++) cr[i] = cg[i] = (i % ldc) < n ? NAN : canary();
    fia_bf16b_pack(b, ldb, k, n, pk);
    tu_scalar_kernels()->core.gemm_bf16b(m, n, k, a, lda, pk, cr, ldc);
    kt->gemm_bf16b(m, n, k, a, lda, pk, cg, ldc);
    int ok = 1;
    for (int64_t i = 0; i < m && ok; i++)
        for (int64_t j = 0; j < ldc && ok; j++) {
            if (j >= n) {
                ok = is_canary(cr[i * ldc + j]) && is_canary(cg[i * ldc + j]);
                if (!ok)
                    tu_check(0, "%s gemm_bf16b m=%" PRId64 " n=%" PRId64 " k=%" PRId64
                                ": C padding (%" PRId64 ",%" PRId64 ") written",
                             kt->name, m, n, k, i, j);
                continue;
            }
            double ref = 0.0, mag = 0.0;
            for (int64_t t = 0; t < k; t++) {
                const double x = (double)a[i * lda + t] * fia_cvt_bf16_to_f32(b[t * ldb + j]);
                ref += x;
                mag += fabs(x);
            }
            ok = fabs(cr[i * ldc + j] - ref) <= 1e-5 * mag + 1e-30 &&
                 fabs(cg[i * ldc + j] - ref) <= 1e-5 * mag + 1e-30;
            if (!ok)
                tu_check(0, "%s gemm_bf16b m=%" PRId64 " n=%" PRId64 " k=%" PRId64
                            ": (%" PRId64 ",%" PRId64 ") scalar %g, %s %g, double %g",
                         kt->name, m, n, k, i, j, (double)cr[i * ldc + j], kt->name,
                         (double)cg[i * ldc + j], ref);
        }
    if (ok) tu_check(1, "gemm_bf16b");
    free(a), free(b), free(pk), free(cr), free(cg);
    return ok;
}

static void test_gemm_bf16b(const fia_kernels *kt, tu_rng *rng) {
    for (int64_t m = 1; m <= 20; m++)
        bf16b_case(kt, rng, m, tu_int(rng, 1, 70), tu_int(rng, 0, 130));
    for (int64_t n = 1; n <= 71; n++)
        bf16b_case(kt, rng, tu_int(rng, 1, 9), n <= 70 ? n : 256, tu_int(rng, 0, 130));
    for (int64_t k = 0; k <= 131; k++)
        bf16b_case(kt, rng, tu_int(rng, 1, 9), tu_int(rng, 1, 40), k <= 130 ? k : 1536);
    bf16b_case(kt, rng, 8, 256, 1536); /* a prolog tile at decode */
    {
        float c[4] = {1, 2, 3, 4}, a = 1;
        uint16_t b = 0x3f80;
        kt->gemm_bf16b(0, 2, 1, &a, 1, &b, c, 2);
        kt->gemm_bf16b(2, 0, 1, &a, 1, &b, c, 2);
        tu_check(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4,
                 "%s gemm_bf16b: zero size wrote C", kt->name);
    }
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20240611, "test_kernels");
    test_registry();
    tu_kernel_variant v[16];
    const int nv = TU_KERNEL_VARIANTS(core, v, 16);
    for (int t = 0; t < nv; t++) {
        const fia_kernels *kt = &v[t].set.core;
        tu_rng rng = tu_rng_make(seed + 1000003u * (uint64_t)t);
        test_gemm(kt, &rng);
        test_conversions(kt, &rng);
        test_transpose(kt, &rng);
        test_softmax(kt, &rng);
        test_rows(kt, &rng);
        test_heads(kt, &rng);
        test_p_to_u8(kt, &rng);
        test_gemm_bf16b(kt, &rng);
        printf("%s: done\n", kt->name);
        fflush(stdout);
    }
    return tu_summary();
}
