/*
 * kernels_avx2.c - the AVX2 kernel table (fia_kernels_avx2, name "avx2").
 *
 * Contract: src/kernels/kernels.h; results match the scalar table (bit-exact for conversions and
 * transpose, within fp32 rounding for gemm / softmax). Compiled with -mavx2 -mfma -mf16c; the
 * context selects this table only when the CPU has AVX2, FMA and F16C. No allocation, no global
 * mutable state (the only static data is a const mask table). qk_rows / pv_rows come from
 * rows_avx2.c.
 *
 * gemm_f32: register-blocked, no packing. Micro-tile of up to GEMM_MR = 6 rows x 16 columns:
 *   12 ymm accumulators (2 per row), 2 ymm for the current B row, 1 ymm for the broadcast A
 *   element (vbroadcastss from memory): 15 of the 16 ymm registers. Loop order: row blocks
 *   (m split into ceil(m/6) blocks of near-equal size, 1..6 rows; each row count has its own
 *   out-of-line function in which the row count is a compile-time constant and the row loop is
 *   spelled out), then column blocks of 16 (in the last block, 1..16 wide, only the last column
 *   vector goes through vmaskmovps loads / stores), then k innermost with the C tile held in
 *   registers: C is loaded and scaled by row_scale once before the k loop and stored once after
 *   it. With row_scale == NULL the tile starts at zero and C is never read. A and B are read in
 *   place; any leading dims >= the row length, any alignment of float.
 *   Measured on Zen 4 (2 ymm FMA / cycle, ~117 GFLOP/s fp32 peak at the clock seen):
 *   ~108-110 GFLOP/s for 64x64x128 and 64x128x64 with row_scale, cache-resident.
 * f16/bf16/i8 <-> f32: 8 elements per step, scalar tails (core/convert.h). f16 uses F16C
 *   (round to nearest even); f16 NaN inputs are patched so the fp32 NaN keeps the f16 quiet bit
 *   exactly like fia_cvt_f16_to_f32. bf16 is integer arithmetic, bit identical to
 *   fia_cvt_f32_to_bf16.
 * transpose_f32: 8x8 register transpose (unpack / shufps / vperm2f128); edges scalar.
 * softmax_tile: vector row max, vector expf (Cody-Waite range reduction with a two-constant
 *   ln2, degree-7 polynomial, scale by 2^n as two exponent-built factors so denormal results are
 *   right and -inf gives 0; under 1 ulp over [-87.3, 0] in the tests), fp32 vector row sums;
 *   row tails use vmaskmovps. softmax_tile_amla: the same rows, probabilities times the AMLA
 *   factor c and the exponent delta of kernels/amla.h (one template, as in the AVX-512 table).
 * gemm_bf16b: tiles of up to 4 rows x one 16-column panel of the bf16 pack (kernels.h): per
 *   depth row one 32-byte load, a shift and an and widen the 16 bf16 to two fp32 vectors
 *   (columns 0..7 and 8..15, as the pack interleaves them), then per row a broadcast and two
 *   FMAs into its two accumulators. Loop order: panels, then row blocks (m split as gemm_f32,
 *   into blocks of 1..4 rows), so a panel (32 bytes per depth row) is read from memory once and
 *   from cache by the other row blocks. Ragged last panel: vmaskmovps stores.
 */
#include <immintrin.h>
#include <math.h>

#include "core/convert.h"
#include "kernels/amla.h"
#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))
#define FIA_UNROLL _Pragma("GCC unroll 16")

enum { GEMM_MR = 6, GEMM_NR = 16 };
#define GEMM_REP6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* tail_mask8(r) = lanes 0..r-1 set, for 0 <= r <= 8. */
static const int32_t mask_table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

static inline __m256i tail_mask8(int64_t r) {
    return _mm256_loadu_si256((const __m256i *)(mask_table + 8 - r));
}

static inline float hmax8(__m256 v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

static inline float hsum8(__m256 v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* ------------------------------------------------------------------------------------------ */
/* gemm_f32                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* One micro-tile: MR rows (compile-time after inlining) x NV ymm columns. The first NV-1
 * column vectors are always full; the last one is full when FULL, else masked by mt. */
FIA_AI void gemm_tile(const int MR, const int NV, const int FULL, int64_t k, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc,
                      const float *row_scale, __m256i mt) {
    /* Row loops are spelled out (GEMM_REP6) rather than left to the unroller, so that every
     * accumulator index is a constant and the tile lives in registers with gcc and clang. */
    __m256 acc0[GEMM_MR], acc1[GEMM_MR];
    if (row_scale) {
#define ROW_INIT(i)                                                                           \
    if ((i) < MR) {                                                                           \
        const __m256 s = _mm256_set1_ps(row_scale[i]);                                        \
        const float *ci = c + (i) * ldc;                                                      \
        if (NV > 1) {                                                                         \
            acc0[i] = _mm256_mul_ps(s, _mm256_loadu_ps(ci));                                  \
            acc1[i] = _mm256_mul_ps(s, FULL ? _mm256_loadu_ps(ci + 8)                         \
                                            : _mm256_maskload_ps(ci + 8, mt));                \
        } else {                                                                              \
            acc0[i] = _mm256_mul_ps(s, FULL ? _mm256_loadu_ps(ci) : _mm256_maskload_ps(ci, mt)); \
        }                                                                                     \
    }
        GEMM_REP6(ROW_INIT)
#undef ROW_INIT
    } else {
#define ROW_ZERO(i)                                                                           \
    if ((i) < MR) {                                                                           \
        acc0[i] = _mm256_setzero_ps();                                                        \
        if (NV > 1) acc1[i] = _mm256_setzero_ps();                                            \
    }
        GEMM_REP6(ROW_ZERO)
#undef ROW_ZERO
    }

    for (int64_t p = 0; p < k; p++) {
        __m256 b0, b1 = _mm256_setzero_ps();
        if (NV > 1) {
            b0 = _mm256_loadu_ps(b);
            b1 = FULL ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, mt);
        } else {
            b0 = FULL ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, mt);
        }
#define ROW_FMA(i)                                                                            \
    if ((i) < MR) {                                                                           \
        const __m256 ai = _mm256_broadcast_ss(a + (i) * lda);                                 \
        acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);                                           \
        if (NV > 1) acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);                               \
    }
        GEMM_REP6(ROW_FMA)
#undef ROW_FMA
        a++;
        b += ldb;
    }

#define ROW_STORE(i)                                                                          \
    if ((i) < MR) {                                                                           \
        float *ci = c + (i) * ldc;                                                            \
        if (NV > 1) {                                                                         \
            _mm256_storeu_ps(ci, acc0[i]);                                                    \
            if (FULL)                                                                         \
                _mm256_storeu_ps(ci + 8, acc1[i]);                                            \
            else                                                                              \
                _mm256_maskstore_ps(ci + 8, mt, acc1[i]);                                     \
        } else if (FULL) {                                                                    \
            _mm256_storeu_ps(ci, acc0[i]);                                                    \
        } else {                                                                              \
            _mm256_maskstore_ps(ci, mt, acc0[i]);                                             \
        }                                                                                     \
    }
    GEMM_REP6(ROW_STORE)
#undef ROW_STORE
}

/* All column blocks of one row block of MR rows. */
FIA_AI void gemm_rows(const int MR, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc,
                      const float *row_scale) {
    const __m256i ones = _mm256_set1_epi32(-1);
    int64_t j = 0;
    for (; j + GEMM_NR <= n; j += GEMM_NR)
        gemm_tile(MR, 2, 1, k, a, lda, b + j, ldb, c + j, ldc, row_scale, ones);
    const int64_t rem = n - j;
    if (rem > 8)
        gemm_tile(MR, 2, 0, k, a, lda, b + j, ldb, c + j, ldc, row_scale, tail_mask8(rem - 8));
    else if (rem > 0)
        gemm_tile(MR, 1, 0, k, a, lda, b + j, ldb, c + j, ldc, row_scale, tail_mask8(rem));
}

/* One out-of-line function per row count: keeps each function small (compile time, notably
 * under ASan, stays linear) while the row loop inside is fully unrolled. */
#define GEMM_ROWS_FN(R)                                                                       \
    static __attribute__((noinline)) void gemm_rows_##R(                                      \
        int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,       \
        float *c, int64_t ldc, const float *row_scale) {                                      \
        gemm_rows(R, n, k, a, lda, b, ldb, c, ldc, row_scale);                                \
    }
GEMM_ROWS_FN(1)
GEMM_ROWS_FN(2)
GEMM_ROWS_FN(3)
GEMM_ROWS_FN(4)
GEMM_ROWS_FN(5)
GEMM_ROWS_FN(6)

#define GEMM_CASE(R)                                                                          \
    case R:                                                                                   \
        gemm_rows_##R(n, k, a, lda, b, ldb, c, ldc, row_scale);                               \
        break;

void fia_gemm_f32__avx2_6x16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                          const float *b, int64_t ldb, float *c, int64_t ldc,
                          const float *row_scale) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    /* Split m into nb blocks of near-equal size (<= GEMM_MR rows each). */
    const int64_t nb = (m + GEMM_MR - 1) / GEMM_MR;
    const int64_t base = m / nb, extra = m % nb;
    for (int64_t blk = 0; blk < nb; blk++) {
        const int rows = (int)(base + (blk < extra ? 1 : 0));
        switch (rows) {
            GEMM_CASE(1)
            GEMM_CASE(2)
            GEMM_CASE(3)
            GEMM_CASE(4)
            GEMM_CASE(5)
            GEMM_CASE(6)
        default: break;
        }
        a += rows * lda;
        c += rows * ldc;
        if (row_scale) row_scale += rows;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* conversions                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* 8 f16 -> 8 f32, NaNs keep the f16 quiet bit (like fia_cvt_f16_to_f32). */
FIA_AI __m256 cvt8_f16_f32(__m128i h) {
    const __m256 f = _mm256_cvtph_ps(h);
    const __m256 nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
    if (_mm256_movemask_ps(nan)) {
        const __m256i w = _mm256_cvtepu16_epi32(h);
        const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x8000)), 16);
        const __m256i mant = _mm256_slli_epi32(_mm256_and_si256(w, _mm256_set1_epi32(0x3ff)), 13);
        const __m256i bits =
            _mm256_or_si256(_mm256_or_si256(sign, mant), _mm256_set1_epi32(0x7f800000));
        return _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), nan);
    }
    return f;
}

void fia_f16_to_f32__avx2_f16c_u8(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, cvt8_f16_f32(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = fia_cvt_f16_to_f32(src[i]);
}

void fia_bf16_to_f32__avx2_shift_u8(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; i++) dst[i] = fia_cvt_bf16_to_f32(src[i]);
}

void fia_i8_to_f32__avx2_u8(const int8_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i v = _mm_loadl_epi64((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)));
    }
    for (; i < n; i++) dst[i] = (float)src[i];
}

void fia_f32_to_f16__avx2_f16c_u8(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    /* Hardware NaN handling (quiet bit set, payload truncated) equals fia_cvt_f32_to_f16. */
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = fia_cvt_f32_to_f16(src[i]);
}

/* Same arithmetic as fia_cvt_f32_to_bf16: NaN -> (u >> 16) | 0x40, else round to nearest even. */
FIA_AI __m128i cvt8_f32_bf16(__m256 f) {
    const __m256i u = _mm256_castps_si256(f);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    const __m256i hi = _mm256_blendv_epi8(
        _mm256_srli_epi32(r, 16), _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)),
        nan);
    /* all values are <= 0xffff, so unsigned saturation packs them unchanged */
    return _mm_packus_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
}

void fia_f32_to_bf16__avx2_rne_u8(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), cvt8_f32_bf16(_mm256_loadu_ps(src + i)));
    for (; i < n; i++) dst[i] = fia_cvt_f32_to_bf16(src[i]);
}

/* ------------------------------------------------------------------------------------------ */
/* transpose_f32                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Out of line: keeps the 16 row / column addresses local to one block (inlined into the block
 * loops, gcc turns them into induction variables spilled to the stack). */
static __attribute__((noinline)) void transpose_block8(const float *src, int64_t lds, float *dst,
                                                       int64_t ldd) {
    __m256 r[8], t[8];
    FIA_UNROLL
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
    FIA_UNROLL
    for (int g = 0; g < 4; g++) {
        t[2 * g] = _mm256_unpacklo_ps(r[2 * g], r[2 * g + 1]);
        t[2 * g + 1] = _mm256_unpackhi_ps(r[2 * g], r[2 * g + 1]);
    }
    /* r[4q + c], lane l: rows 4q..4q+3 of column 4l + c. */
    FIA_UNROLL
    for (int q = 0; q < 2; q++) {
        r[4 * q + 0] = _mm256_shuffle_ps(t[4 * q + 0], t[4 * q + 2], 0x44);
        r[4 * q + 1] = _mm256_shuffle_ps(t[4 * q + 0], t[4 * q + 2], 0xee);
        r[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        r[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    FIA_UNROLL
    for (int cc = 0; cc < 4; cc++) {
        _mm256_storeu_ps(dst + cc * ldd, _mm256_permute2f128_ps(r[cc], r[4 + cc], 0x20));
        _mm256_storeu_ps(dst + (4 + cc) * ldd, _mm256_permute2f128_ps(r[cc], r[4 + cc], 0x31));
    }
}

void fia_transpose_f32__avx2_8x8(const float *src, int64_t lds, float *dst, int64_t ldd,
                               int64_t rows, int64_t cols) {
    const int64_t rows8 = rows & ~(int64_t)7, cols8 = cols & ~(int64_t)7;
    for (int64_t r0 = 0; r0 < rows8; r0 += 8) {
        for (int64_t c0 = 0; c0 < cols8; c0 += 8)
            transpose_block8(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
        for (int64_t r = r0; r < r0 + 8; r++) /* right edge: columns cols8..cols-1 */
            for (int64_t c = cols8; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
    }
    for (int64_t r = rows8; r < rows; r++) /* bottom edge: rows rows8..rows-1 */
        for (int64_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

/* ------------------------------------------------------------------------------------------ */
/* softmax_tile                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* e^x for 8 lanes. x = n*ln2 + r, |r| <= ln2/2 (ln2 split in two constants, FMA reduction),
 * e^r = 1 + r + r^2 * P(r) (Cephes expf coefficients), result = (e^r * 2^(n>>1)) * 2^(n-(n>>1))
 * with both factors normal, so denormal results round correctly and overflow gives inf. x is
 * clamped to [-120, 89] first (-inf -> 0, +inf -> inf); NaN propagates. */
FIA_AI __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-120.0f), x); /* NaN in x stays NaN (second operand) */
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    const __m256 r2 = _mm256_mul_ps(r, r);
    const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i e1 = _mm256_srai_epi32(ni, 1);
    const __m256i e2 = _mm256_sub_epi32(ni, e1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(e, s1), s2);
}

/* softmax_tile and its AMLA form (amla: probabilities times c = exp(mx + e ln2), the
 * accumulator rescale as an exponent delta, see kernels.h; c and e from fia_amla_reference as in
 * the scalar and AVX-512 kernels). */
FIA_AI void softmax_rows(const int amla, float *s, int64_t lds, int64_t m, int64_t n,
                         float *row_max, float *row_sum, float *alpha, int32_t *row_e,
                         int32_t *row_exp) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const int64_t nfull = n & ~(int64_t)7;
    const int64_t rem = n - nfull;
    const __m256i tm = tail_mask8(rem);
    for (int64_t r = 0; r < m; r++) {
        float *sr = s + r * lds;
        /* row max; NaN scores are skipped like the scalar "s > mx ? s : mx" */
        __m256 vm0 = ninf, vm1 = ninf;
        int64_t j = 0;
        for (; j + 16 <= nfull; j += 16) {
            vm0 = _mm256_max_ps(_mm256_loadu_ps(sr + j), vm0);
            vm1 = _mm256_max_ps(_mm256_loadu_ps(sr + j + 8), vm1);
        }
        if (j < nfull) vm0 = _mm256_max_ps(_mm256_loadu_ps(sr + j), vm0);
        if (rem) {
            const __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(sr + nfull, tm),
                                              _mm256_castsi256_ps(tm));
            vm1 = _mm256_max_ps(v, vm1);
        }
        float mx = hmax8(_mm256_max_ps(vm0, vm1));
        const float old = row_max[r];
        if (old > mx) mx = old;

        if (mx == -INFINITY) {
            const __m256 z = _mm256_setzero_ps();
            for (j = 0; j < nfull; j += 8) _mm256_storeu_ps(sr + j, z);
            if (rem) _mm256_maskstore_ps(sr + nfull, tm, z);
            if (amla)
                row_exp[r] = 0;
            else
                alpha[r] = 1.0f;
            continue;
        }
        float cf = 1.0f, al = 0.0f;
        int32_t e = 0, d = -255;
        if (amla) {
            fia_amla_reference(mx, &e, &cf);
            if (old != -INFINITY) {
                const int64_t dd = (int64_t)e - row_e[r];
                d = dd < -255 ? -255 : (int32_t)dd;
            }
        } else if (old != -INFINITY) {
            al = _mm256_cvtss_f32(exp8(_mm256_set1_ps(old - mx)));
        }
        const __m256 vmx = _mm256_set1_ps(mx), vc = _mm256_set1_ps(cf);
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
#define SM_EXP(x)                                                                          \
    (amla ? _mm256_mul_ps(exp8(_mm256_sub_ps((x), vmx)), vc) : exp8(_mm256_sub_ps((x), vmx)))
        j = 0;
        for (; j + 16 <= nfull; j += 16) {
            const __m256 e0 = SM_EXP(_mm256_loadu_ps(sr + j));
            const __m256 e1 = SM_EXP(_mm256_loadu_ps(sr + j + 8));
            _mm256_storeu_ps(sr + j, e0);
            _mm256_storeu_ps(sr + j + 8, e1);
            acc0 = _mm256_add_ps(acc0, e0);
            acc1 = _mm256_add_ps(acc1, e1);
        }
        if (j < nfull) {
            const __m256 e0 = SM_EXP(_mm256_loadu_ps(sr + j));
            _mm256_storeu_ps(sr + j, e0);
            acc0 = _mm256_add_ps(acc0, e0);
        }
        if (rem) {
            const __m256 v = _mm256_blendv_ps(ninf, _mm256_maskload_ps(sr + nfull, tm),
                                              _mm256_castsi256_ps(tm));
            const __m256 e1 = _mm256_and_ps(SM_EXP(v), _mm256_castsi256_ps(tm));
            _mm256_maskstore_ps(sr + nfull, tm, e1);
            acc1 = _mm256_add_ps(acc1, e1);
        }
#undef SM_EXP
        const float sum = hsum8(_mm256_add_ps(acc0, acc1));
        if (amla) {
            row_exp[r] = d;
            row_sum[r] = (old == -INFINITY ? 0.0f : ldexpf(row_sum[r], d)) + sum;
            row_e[r] = e;
        } else {
            alpha[r] = al;
            row_sum[r] = row_sum[r] * al + sum;
        }
        row_max[r] = mx;
    }
}

void fia_softmax_tile__avx2_expcw_u8(float *s, int64_t lds, int64_t m, int64_t n, float *row_max,
                              float *row_sum, float *alpha) {
    softmax_rows(0, s, lds, m, n, row_max, row_sum, alpha, NULL, NULL);
}

void fia_softmax_tile_amla__avx2_expcw_u8(float *s, int64_t lds, int64_t m, int64_t n,
                                          float *row_max, float *row_sum, int32_t *row_e,
                                          int32_t *row_exp) {
    softmax_rows(1, s, lds, m, n, row_max, row_sum, NULL, row_e, row_exp);
}

/* gemm_f32_acc: the exponent rescale as a scalar pass over C, then the GEMM with a unit row
 * scale (MLA runs on AVX-512 where it matters; this level only has to be right). */
void fia_gemm_f32_acc__avx2_6x16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                              const float *b, int64_t ldb, float *c, int64_t ldc,
                              const int32_t *row_exp) {
    enum { CHUNK = 64 };
    static const float ones[CHUNK] = {
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    if (row_exp)
        for (int64_t i = 0; i < m; i++) fia_exp_rescale_scalar(c + i * ldc, n, row_exp[i]);
    for (int64_t i = 0; i < m; i += CHUNK)
        fia_gemm_f32__avx2_6x16(m - i < CHUNK ? m - i : CHUNK, n, k, a + i * lda, lda, b, ldb, c + i * ldc,
                      ldc, ones);
}


/* p_to_u8: vmaxps is p > mx ? p : mx (NaN p skipped) and vminps x < 255 ? x : 255, exactly the
 * scalar selects; the code is vmulps then vaddps (no FMA), vcvttps2dq (truncation), zeroed
 * where x >= 1 fails (NaN included), narrowed by unsigned-saturating packs (codes are 0..255,
 * so exact). The tail goes through a zero-padded copy. Every max lane is +0 or positive. */
static inline __m128i p_to_u8_x8(__m256 v, __m256 f) {
    const __m256 x = _mm256_add_ps(_mm256_mul_ps(v, f), _mm256_set1_ps(0.5f));
    const __m256 ge = _mm256_cmp_ps(x, _mm256_set1_ps(1.0f), _CMP_GE_OQ);
    const __m256i t = _mm256_cvttps_epi32(_mm256_min_ps(x, _mm256_set1_ps(255.0f)));
    const __m256i c = _mm256_and_si256(t, _mm256_castps_si256(ge));
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
    return _mm_packus_epi16(w, w);
}

float fia_p_to_u8__avx2_u16(const float *p, int64_t n, uint8_t *q) {
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(p + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(p + j + 8), m1);
    }
    float tail[16] = {0};
    if (j < n) memcpy(tail, p + j, (size_t)(n - j) * sizeof(float));
    m0 = _mm256_max_ps(_mm256_loadu_ps(tail), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(tail + 8), m1);
    __m256 m = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float mx = _mm_cvtss_f32(h);
    if (!(mx > 0.0f)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const __m256 f = _mm256_set1_ps(255.0f / mx);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i a = p_to_u8_x8(_mm256_loadu_ps(p + i), f);
        const __m128i b = p_to_u8_x8(_mm256_loadu_ps(p + i + 8), f);
        _mm_storeu_si128((__m128i *)(q + i), _mm_unpacklo_epi64(a, b));
    }
    if (i < n) {
        uint8_t out[16];
        const __m128i a = p_to_u8_x8(_mm256_loadu_ps(tail), f);
        const __m128i b = p_to_u8_x8(_mm256_loadu_ps(tail + 8), f);
        _mm_storeu_si128((__m128i *)out, _mm_unpacklo_epi64(a, b));
        memcpy(q + i, out, (size_t)(n - i));
    }
    return mx;
}

/* ---- gemm_bf16b ---------------------------------------------------------------------------- */

enum { BF16B_MR = 4 };

/* One tile: MR rows x the 16 columns of panel bp (nc of them valid, 1..16). */
FIA_AI void bf16b_tile(const int MR, int64_t k, const float *a, int64_t lda, const uint16_t *bp,
                       float *c, int64_t ldc, int64_t nc) {
    __m256 lo[BF16B_MR], hi[BF16B_MR];
    FIA_UNROLL
    for (int r = 0; r < MR; r++) lo[r] = hi[r] = _mm256_setzero_ps();
    const __m256i high = _mm256_set1_epi32((int32_t)0xffff0000u);
    for (int64_t t = 0; t < k; t++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(bp + 16 * t));
        const __m256 b0 = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        const __m256 b1 = _mm256_castsi256_ps(_mm256_and_si256(v, high));
        FIA_UNROLL
        for (int r = 0; r < MR; r++) {
            const __m256 ar = _mm256_broadcast_ss(a + r * lda + t);
            lo[r] = _mm256_fmadd_ps(ar, b0, lo[r]);
            hi[r] = _mm256_fmadd_ps(ar, b1, hi[r]);
        }
    }
    FIA_UNROLL
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        if (nc == 16) {
            _mm256_storeu_ps(cr, lo[r]);
            _mm256_storeu_ps(cr + 8, hi[r]);
        } else if (nc > 8) {
            _mm256_storeu_ps(cr, lo[r]);
            _mm256_maskstore_ps(cr + 8, tail_mask8(nc - 8), hi[r]);
        } else {
            _mm256_maskstore_ps(cr, tail_mask8(nc), lo[r]);
        }
    }
}

#define BF16B_ROWS_FN(R)                                                                      \
    static __attribute__((noinline)) void bf16b_rows_##R(int64_t k, const float *a,           \
                                                         int64_t lda, const uint16_t *bp,     \
                                                         float *c, int64_t ldc, int64_t nc) { \
        bf16b_tile(R, k, a, lda, bp, c, ldc, nc);                                             \
    }
BF16B_ROWS_FN(1)
BF16B_ROWS_FN(2)
BF16B_ROWS_FN(3)
BF16B_ROWS_FN(4)

void fia_gemm_bf16b__avx2_4x16(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                               const uint16_t *packed, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int64_t nb = (m + BF16B_MR - 1) / BF16B_MR;
    const int64_t base = m / nb, extra = m % nb;
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const uint16_t *bp = packed + j0 * k;
        const int64_t nc = n - j0 < 16 ? n - j0 : 16;
        const float *ab = a;
        float *cb = c + j0;
        for (int64_t blk = 0; blk < nb; blk++) {
            const int rows = (int)(base + (blk < extra ? 1 : 0));
            switch (rows) {
            case 1: bf16b_rows_1(k, ab, lda, bp, cb, ldc, nc); break;
            case 2: bf16b_rows_2(k, ab, lda, bp, cb, ldc, nc); break;
            case 3: bf16b_rows_3(k, ab, lda, bp, cb, ldc, nc); break;
            default: bf16b_rows_4(k, ab, lda, bp, cb, ldc, nc); break;
            }
            ab += rows * lda;
            cb += rows * ldc;
        }
    }
}
