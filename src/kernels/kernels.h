/*
 * kernels.h - the core kernel table: the only code that differs between ISAs.
 *
 * Every kernel is declared once in registry.inc with the CPU features it needs and its tile; a
 * context fills its fia_kernels table slot by slot from the registry (registry.h), the scalar
 * kernel of each slot being the fallback and the reference every other variant is tested
 * against (tests/test_kernels.c). Operators (src/ops) are ISA-free and call kernels through the
 * table only.
 *
 * Common rules for every kernel:
 *   - Sizes are >= 0; a size of 0 is a no-op (gemm with k == 0 still applies row_scale / zero).
 *   - Any size works: tails are handled inside (masks or scalar loops), never by reading or
 *     writing past the last element named by the sizes and leading dimensions.
 *   - Pointers need only their natural alignment; leading dimensions are in elements.
 *   - No allocation, no global state: kernels may run concurrently on disjoint data.
 */
#ifndef FIA_KERNELS_H
#define FIA_KERNELS_H

#include <stdint.h>
#include <string.h>

#include "fia.h"

/* The kernel signatures (one typedef per slot: the registry declares every kernel with it). */
typedef void fia_core_gemm_f32_fn(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                  const float *b, int64_t ldb, float *c, int64_t ldc,
                                  const float *row_scale);
typedef void fia_core_f16_to_f32_fn(const uint16_t *src, float *dst, int64_t n);
typedef void fia_core_bf16_to_f32_fn(const uint16_t *src, float *dst, int64_t n);
typedef void fia_core_i8_to_f32_fn(const int8_t *src, float *dst, int64_t n);
typedef void fia_core_f32_to_f16_fn(const float *src, uint16_t *dst, int64_t n);
typedef void fia_core_f32_to_bf16_fn(const float *src, uint16_t *dst, int64_t n);
typedef void fia_core_transpose_f32_fn(const float *src, int64_t lds, float *dst, int64_t ldd,
                                       int64_t rows, int64_t cols);
typedef void fia_core_softmax_tile_fn(float *s, int64_t lds, int64_t m, int64_t n, float *row_max,
                                      float *row_sum, float *alpha);
typedef void fia_core_gemm_f32_acc_fn(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                      const float *b, int64_t ldb, float *c, int64_t ldc,
                                      const int32_t *row_exp);
typedef void fia_core_softmax_tile_amla_fn(float *s, int64_t lds, int64_t m, int64_t n,
                                           float *row_max, float *row_sum, int32_t *row_e,
                                           int32_t *row_exp);
typedef void fia_core_qk_rows_fn(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                                 const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                                 const void *const *pf, int64_t npf);
typedef void fia_core_pv_rows_fn(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                 const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                                 const float *row_scale, const void *const *pf, int64_t npf);
typedef void fia_core_qk_heads_fn(int64_t nh, int64_t n, int64_t d, const float *q, int64_t ldq,
                                  const void *const *krows, int64_t hs, fia_dtype dt, float *s,
                                  int64_t lds, const void *const *pf, int64_t npf);
typedef void fia_core_pv_heads_fn(int64_t nh, int64_t n, int64_t dv, const float *p, int64_t ldp,
                                  const void *const *vrows, int64_t hs, fia_dtype dt, float *o,
                                  int64_t ldo, const float *row_scale, const void *const *pf,
                                  int64_t npf);
typedef float fia_core_p_to_u8_fn(const float *p, int64_t n, uint8_t *q);
typedef void fia_core_gemm_bf16b_fn(int64_t m, int64_t n, int64_t k, const float *a,
                                    int64_t lda, const uint16_t *packed, float *c, int64_t ldc);

typedef struct fia_kernels {
    const char *name;  /* the highest CPU feature its kernels use: "scalar", "avx2", ... */
    uint32_t features; /* the FIA_CPU_* bits its kernels use (registry.h) */

    /* C[m x n] = (row_scale ? diag(row_scale) . C : 0) + A[m x k] . B[k x n]
     * A, B, C row-major with leading dims lda, ldb, ldc. When row_scale is NULL, C is
     * overwritten and its old contents are never read (they may be NaN garbage).
     * Used for S = Q.K^T (B = a transposed K panel [D x Nk]) and O = alpha.O + P.V
     * (B = a V panel [Nk x Dv]). */
    fia_core_gemm_f32_fn *gemm_f32;

    /* Element conversions dst[i] = convert(src[i]), i < n. f32 -> f16 / bf16 round to nearest
     * even; NaN stays NaN; f16 overflow gives inf. */
    fia_core_f16_to_f32_fn *f16_to_f32;
    fia_core_bf16_to_f32_fn *bf16_to_f32;
    fia_core_i8_to_f32_fn *i8_to_f32;
    fia_core_f32_to_f16_fn *f32_to_f16;
    fia_core_f32_to_bf16_fn *f32_to_bf16;

    /* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols. */
    fia_core_transpose_f32_fn *transpose_f32;

    /* One online-softmax step over a score tile S[m x n] (leading dim lds), -inf = masked.
     * For every row r < m, with mx = max(row_max[r], max_j S[r][j]):
     *   mx == -inf (nothing visible yet): S[r][j] = 0 for all j, alpha[r] = 1, row_max[r] and
     *                                     row_sum[r] unchanged;
     *   otherwise: alpha[r] = exp(row_max[r] - mx) (0 when row_max[r] == -inf),
     *              S[r][j] = exp(S[r][j] - mx) (0 for -inf),
     *              row_sum[r] = row_sum[r] * alpha[r] + sum_j S[r][j], row_max[r] = mx.
     * exp must be accurate to a few ulp of float over [-inf, 0]. */
    fia_core_softmax_tile_fn *softmax_tile;

    /* C[m x n] = (row_exp ? C . 2^row_exp[r] : C) + A[m x k] . B[k x n]: C is always read.
     * The power-of-two rescale is AMLA's integer add of row_exp[r] << 23 to the fp32 bits
     * (row_exp[r] in [-255, 0]); an element whose result would leave the normal range (zero,
     * denormals, or too large a shift) becomes +-0, inf and NaN stay as they are. */
    fia_core_gemm_f32_acc_fn *gemm_f32_acc;

    /* The AMLA form of softmax_tile (the same row max; probabilities relative to a power of
     * two instead of the max). Per row r, with mx = max(row_max[r], max_j S[r][j]):
     *   mx == -inf: S[r][j] = 0, row_exp[r] = 0, state unchanged;
     *   otherwise e = round(-mx / ln2) (|e| clamped to 2^30), c = exp(mx + e ln2) in
     *     [2^-1/2, 2^1/2]; S[r][j] = exp(S[r][j] - mx) * c  (= exp(S) 2^e, never above 2^1/2);
     *     row_exp[r] = max(e - row_e[r], -255) when row_max[r] > -inf, else -255 (the row's
     *     accumulator is zeroed by gemm_f32_acc); row_sum[r] = row_sum[r] 2^row_exp[r] +
     *     sum_j S[r][j]; row_max[r] = mx, row_e[r] = e.
     * The state (m, l) = (-row_e ln2, row_sum) is then an ordinary softmax state (see
     * softmax_state.h) of the accumulator, exact up to fp32 rounding. */
    fia_core_softmax_tile_amla_fn *softmax_tile_amla;

    /* Decode kernels reading K/V rows in place (no packing), rows given by pointers so paged
     * caches need no copy; dt is FLOAT16, BFLOAT16, FLOAT32 or INT8 (the raw integer values,
     * widened to fp32 in registers: antiquant scales and offsets are folded in by the caller).
     * qk_rows: S[r][j] = sum_{c<d} Q[r][c] * K_j[c]            (r < m, j < n; K_j = krows[j])
     * pv_rows: O[r][c] = (row_scale ? row_scale[r] * O[r][c] : 0) + sum_{j<n} P[r][j] * V_j[c]
     *          (r < m, c < dv; with row_scale NULL, O is never read).
     * pf: npf row pointers (same dtype and length) of the next tile, which the kernel prefetches
     *     spread over its own loop so that memory traffic overlaps the compute (pf may be NULL
     *     when npf is 0; the scalar table ignores it). */
    fia_core_qk_rows_fn *qk_rows;
    fia_core_pv_rows_fn *pv_rows;

    /* qk_rows / pv_rows for nh heads of one query row each (MHA decode), reading the rows in
     * token order: key j's row pointer krows[j] (vrows[j]) addresses head 0, head h lies hs
     * elements further (token-major caches: all heads of a token in one row), and every key's
     * heads are read before the next key's (one call reads nh heads' part of each token row
     * once, instead of nh calls each reading d elements of every row).
     * qk_heads: S[h][j] = sum_{c<d} Q[h][c] * K_{j,h}[c]             (h < nh, j < n)
     * pv_heads: O[h][c] = (row_scale ? row_scale[h] * O[h][c] : 0) + sum_{j<n} P[h][j] V_{j,h}[c]
     * with Q[h] = q + h ldq, S[h] = s + h lds, P[h] = p + h ldp, O[h] = o + h ldo. Every value
     * has the bits the same table's qk_rows / pv_rows give with m = 1 for head h alone (the
     * operators choose between the two freely). pf: npf token rows of the next tile (the same
     * nh heads), prefetched as the kernel reads. Optional: NULL where no kernel is faster than
     * qk_rows / pv_rows head by head. */
    fia_core_qk_heads_fn *qk_heads;
    fia_core_pv_heads_fn *pv_heads;

    /* The int8 MLA decode's cast of a P row (softmax_tile output, NaN-free or not) to u8 codes:
     *   mx = max(0, p[j] for j < n) as the loop mx = p[j] > mx ? p[j] : mx (NaNs skipped);
     *   mx > 0:  f = 255 / mx, x = p[j] * f + 0.5 (an fp32 multiply, then an fp32 add: no
     *            FMA), q[j] = x >= 1 ? (uint8_t)trunc(min(x, 255)) : 0 (NaN -> 0); returns mx;
     *   else:    q[j] = 0 for j < n; returns 0.
     * Every variant is bit-exact with the scalar kernel. */
    fia_core_p_to_u8_fn *p_to_u8;

    /* C[m x n] = A[m x k] . B[k x n]: fp32 A (leading dim lda) and C (ldc; only written, never
     * read), bfloat16 B in the panel pack below (fia_bf16b_pack). Each sum runs over k in order
     * from 0 in fp32 (the SIMD variants with FMA: within fp32 rounding of the scalar kernel).
     * The MLA prolog's small-m (decode) projections where the GEMM library has no bf16 matmul
     * (oneDNN 2.6 on AVX2 CPUs): the weights stream at 2 bytes per element instead of being
     * widened to fp32. k == 0: C = 0. */
    fia_core_gemm_bf16b_fn *gemm_bf16b;
} fia_kernels;

/* The B pack of gemm_bf16b: panels of 16 columns (the last one zero-padded), panel p starting at
 * element 16 k p, its depth row t at + 16 t holding column 16p + i at 2i and column 16p + 8 + i
 * at 2i + 1 (i < 8), so that the 8 dwords of a row hold columns 0..7 in their low halves and
 * 8..15 in their high halves (two bf16 -> fp32 widenings without a shuffle). */
static inline int64_t fia_bf16b_pack_elems(int64_t n, int64_t k) { return (n + 15) / 16 * 16 * k; }

static inline int64_t fia_bf16b_index(int64_t k, int64_t t, int64_t j) {
    const int64_t c = j % 16;
    return (j / 16) * 16 * k + 16 * t + (c < 8 ? 2 * c : 2 * (c - 8) + 1);
}

/* Packs B [k x n] (bfloat16, row stride ldb >= n) into fia_bf16b_pack_elems(n, k) elements. */
static inline void fia_bf16b_pack(const uint16_t *b, int64_t ldb, int64_t k, int64_t n,
                                  uint16_t *packed) {
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        uint16_t *pp = packed + j0 * k;
        for (int64_t t = 0; t < k; t++) {
            const uint16_t *br = b + t * ldb + j0;
            uint16_t *d = pp + 16 * t;
            for (int64_t i = 0; i < 8; i++) {
                d[2 * i] = j0 + i < n ? br[i] : 0;
                d[2 * i + 1] = j0 + 8 + i < n ? br[8 + i] : 0;
            }
        }
    }
}

/* Converts n elements of a row of dtype dt (float16, bfloat16, int8 or float32) to fp32 with the
 * table's conversion kernels, and back (float16, bfloat16 or float32): the one dtype dispatch
 * every operator uses for its rows. */
static inline void fia_kernels_to_f32(const fia_kernels *k, const void *src, fia_dtype dt,
                                      float *dst, int64_t n) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16: k->f16_to_f32((const uint16_t *)src, dst, n); break;
    case FIA_DTYPE_BFLOAT16: k->bf16_to_f32((const uint16_t *)src, dst, n); break;
    case FIA_DTYPE_INT8: k->i8_to_f32((const int8_t *)src, dst, n); break;
    default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

static inline void fia_kernels_from_f32(const fia_kernels *k, const float *src, fia_dtype dt,
                                        void *dst, int64_t n) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16: k->f32_to_f16(src, (uint16_t *)dst, n); break;
    case FIA_DTYPE_BFLOAT16: k->f32_to_bf16(src, (uint16_t *)dst, n); break;
    default: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* c[j] = c[j] . 2^e (j < n) by the exponent-bit add of gemm_f32_acc. */
void fia_exp_rescale_scalar(float *c, int64_t n, int32_t e);

#endif /* FIA_KERNELS_H */
