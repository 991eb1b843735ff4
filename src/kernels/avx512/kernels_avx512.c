/*
 * kernels_avx512.c - the AVX-512 kernel table (fia_kernels_avx512, name "avx512").
 *
 * Contract: src/kernels/kernels.h; results match the scalar table (bit-exact for conversions and
 * transpose, within fp32 rounding for gemm / softmax). Compiled with -mavx512f -mavx512bw
 * -mavx512dq -mavx512vl -mfma -mf16c; the context selects this table only when the
 * CPU has AVX-512 F/BW/DQ/VL (plus FMA/F16C). No allocation, no global mutable state.
 * qk_rows / pv_rows come from rows_avx512.c.
 *
 * gemm_f32: register-blocked, no packing. Micro-tile of up to GEMM_MR = 12 rows x 32 columns:
 *   24 zmm accumulators (2 per row), 2 zmm for the current B row and 1 for the broadcast A
 *   element (vbroadcastss from memory, shared by the row's two FMAs; with one column vector the
 *   broadcast folds into the FMA as {1to16}): 27 of the 32 zmm registers.
 *   Loop order: row blocks (m split into ceil(m/12) blocks of near-equal size, 1..12 rows; each
 *   row count has its own out-of-line function in which the row count is a compile-time
 *   constant and the row loop is spelled out), then column blocks of 32 (in the last block,
 *   1..32 wide, only the last column vector is masked), then k innermost with the C tile held in
 *   registers: C is loaded and scaled by row_scale once before the k loop and stored once after
 *   it. With row_scale == NULL the tile starts at zero and C is never read. B rows are read
 *   straight from B (ldb stride), A straight from A (lda stride); any lda / ldb / ldc >= the
 *   row length, any alignment of float.
 *   Measured on Zen 4 (1 zmm FMA / cycle, ~117 GFLOP/s fp32 peak at the clock seen):
 *   ~113 GFLOP/s for 64x64x128 and 64x128x64 with row_scale, cache-resident.
 * f16/bf16/i8 <-> f32: 16 elements per step, tails with masked loads/stores. f16 uses F16C
 *   (vcvtph2ps / vcvtps2ph, round to nearest even); f16 NaN inputs are patched so the fp32 NaN
 *   keeps the f16 quiet bit exactly like fia_cvt_f16_to_f32 (the hardware would set it). bf16
 *   is integer arithmetic, bit identical to fia_cvt_f32_to_bf16 (no AVX512-BF16 instructions,
 *   whose conversion flushes denormals).
 * transpose_f32: 16x16 register transpose (unpack / shufps / shuf_f32x4, 64 shuffles); edge
 *   blocks use the same code with masked loads and stores.
 * softmax_tile: vector row max, vector expf (Cody-Waite range reduction with a two-constant
 *   ln2, degree-7 polynomial, scale by 2^n with vscalefps so results down to the denormal range
 *   are right and -inf gives 0; under 1 ulp over [-87.3, 0] in the tests), fp32 vector row sums;
 *   row tails masked. Groups of 4-8 rows reduce their row maxima and sums together and compute
 *   their rescale factors in one e^x (softmax_rows8), with the bits of the per-row code.
 */
#include <immintrin.h>
#include <math.h>

#include "core/convert.h"
#include "kernels/amla.h"
#include "kernels/avx512/exp_avx512.h"
#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))
#define FIA_UNROLL _Pragma("GCC unroll 16")

enum { GEMM_MR = 12, GEMM_NR = 32 };
#define GEMM_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static inline __mmask16 tail_mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* ------------------------------------------------------------------------------------------ */
/* gemm_f32                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* How a micro-tile starts: from zero (gemm_f32 without row_scale), from C scaled per row
 * (gemm_f32), from C (gemm_f32_acc without row_exp) or from C times 2^row_exp (gemm_f32_acc). */
enum { GEMM_ZERO = 0, GEMM_SCALE = 1, GEMM_ACC = 2, GEMM_EXP = 3 };


/* One micro-tile: MR rows (compile-time after inlining) x NV zmm columns. The first NV-1
 * column vectors are always full; the last one is full when FULL, else masked by mt. */
FIA_AI void gemm_tile(const int MR, const int NV, const int FULL, int64_t k, const float *a,
                      int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc, int mode,
                      const void *rs, __mmask16 mt) {
    /* Row loops are spelled out (GEMM_REP12) rather than left to the unroller, so that every
     * accumulator index is a constant and the tile lives in registers with gcc and clang. */
    __m512 acc0[GEMM_MR], acc1[GEMM_MR];
    if (mode == GEMM_SCALE || mode == GEMM_ACC || mode == GEMM_EXP) {
        const float *row_scale = rs;
        const int32_t *row_exp = rs;
#define ROW_LOAD(i)                                                                           \
    if ((i) < MR) {                                                                           \
        const float *ci = c + (i) * ldc;                                                      \
        __m512 x0 = NV > 1 || FULL ? _mm512_loadu_ps(ci) : _mm512_maskz_loadu_ps(mt, ci);     \
        __m512 x1 = _mm512_setzero_ps();                                                      \
        if (NV > 1) x1 = FULL ? _mm512_loadu_ps(ci + 16) : _mm512_maskz_loadu_ps(mt, ci + 16); \
        if (mode == GEMM_SCALE) {                                                             \
            const __m512 sc = _mm512_set1_ps(row_scale[i]);                                   \
            x0 = _mm512_mul_ps(sc, x0);                                                       \
            if (NV > 1) x1 = _mm512_mul_ps(sc, x1);                                           \
        } else if (mode == GEMM_EXP && row_exp[i] != 0) {                                     \
            const __m512i sh = _mm512_set1_epi32(row_exp[i] * (1 << 23));                     \
            x0 = fia_avx512_exp_add16(x0, sh);                                                \
            if (NV > 1) x1 = fia_avx512_exp_add16(x1, sh);                                    \
        }                                                                                     \
        acc0[i] = x0;                                                                         \
        if (NV > 1) acc1[i] = x1;                                                             \
    }
        GEMM_REP12(ROW_LOAD)
#undef ROW_LOAD
    } else {
#define ROW_ZERO(i)                                                                           \
    if ((i) < MR) {                                                                           \
        acc0[i] = _mm512_setzero_ps();                                                        \
        if (NV > 1) acc1[i] = _mm512_setzero_ps();                                            \
    }
        GEMM_REP12(ROW_ZERO)
#undef ROW_ZERO
    }

    for (int64_t p = 0; p < k; p++) {
        __m512 b0, b1 = _mm512_setzero_ps();
        if (NV > 1) {
            b0 = _mm512_loadu_ps(b);
            b1 = FULL ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(mt, b + 16);
        } else {
            b0 = FULL ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(mt, b);
        }
#define ROW_FMA(i)                                                                            \
    if ((i) < MR) {                                                                           \
        const __m512 ai = _mm512_set1_ps(a[(i) * lda]);                                       \
        acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);                                           \
        if (NV > 1) acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);                               \
    }
        GEMM_REP12(ROW_FMA)
#undef ROW_FMA
        a++;
        b += ldb;
    }

#define ROW_STORE(i)                                                                          \
    if ((i) < MR) {                                                                           \
        float *ci = c + (i) * ldc;                                                            \
        if (NV > 1) {                                                                         \
            _mm512_storeu_ps(ci, acc0[i]);                                                    \
            if (FULL)                                                                         \
                _mm512_storeu_ps(ci + 16, acc1[i]);                                           \
            else                                                                              \
                _mm512_mask_storeu_ps(ci + 16, mt, acc1[i]);                                  \
        } else if (FULL) {                                                                    \
            _mm512_storeu_ps(ci, acc0[i]);                                                    \
        } else {                                                                              \
            _mm512_mask_storeu_ps(ci, mt, acc0[i]);                                           \
        }                                                                                     \
    }
    GEMM_REP12(ROW_STORE)
#undef ROW_STORE
}

/* All column blocks of one row block of MR rows. */
FIA_AI void gemm_rows(const int MR, int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *b, int64_t ldb, float *c, int64_t ldc, int mode,
                      const void *rs) {
    int64_t j = 0;
    for (; j + GEMM_NR <= n; j += GEMM_NR)
        gemm_tile(MR, 2, 1, k, a, lda, b + j, ldb, c + j, ldc, mode, rs, 0xffff);
    const int64_t rem = n - j;
    if (rem > 16)
        gemm_tile(MR, 2, 0, k, a, lda, b + j, ldb, c + j, ldc, mode, rs, tail_mask16(rem - 16));
    else if (rem > 0)
        gemm_tile(MR, 1, 0, k, a, lda, b + j, ldb, c + j, ldc, mode, rs, tail_mask16(rem));
}

/* One out-of-line function per row count: keeps each function small (compile time, notably
 * under ASan, stays linear) while the row loop inside is fully unrolled. */
#define GEMM_ROWS_FN(R)                                                                       \
    static __attribute__((noinline)) void gemm_rows_##R(                                      \
        int64_t n, int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,       \
        float *c, int64_t ldc, int mode, const void *rs) {                                    \
        gemm_rows(R, n, k, a, lda, b, ldb, c, ldc, mode, rs);                                 \
    }
GEMM_ROWS_FN(1)
GEMM_ROWS_FN(2)
GEMM_ROWS_FN(3)
GEMM_ROWS_FN(4)
GEMM_ROWS_FN(5)
GEMM_ROWS_FN(6)
GEMM_ROWS_FN(7)
GEMM_ROWS_FN(8)
GEMM_ROWS_FN(9)
GEMM_ROWS_FN(10)
GEMM_ROWS_FN(11)
GEMM_ROWS_FN(12)

#define GEMM_CASE(R)                                                                          \
    case R:                                                                                   \
        gemm_rows_##R(n, k, a, lda, b, ldb, c, ldc, mode, rs);                                \
        break;

static void gemm_any_avx512(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const float *b, int64_t ldb, float *c, int64_t ldc, int mode,
                            const float *rs) {
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
            GEMM_CASE(7)
            GEMM_CASE(8)
            GEMM_CASE(9)
            GEMM_CASE(10)
            GEMM_CASE(11)
            GEMM_CASE(12)
        default: break;
        }
        a += rows * lda;
        c += rows * ldc;
        if (rs) rs += rows; /* floats or int32s: both 4 bytes */
    }
}

void fia_gemm_f32__avx512_12x32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const float *b, int64_t ldb, float *c, int64_t ldc,
                            const float *row_scale) {
    gemm_any_avx512(m, n, k, a, lda, b, ldb, c, ldc, row_scale ? GEMM_SCALE : GEMM_ZERO,
                    row_scale);
}

void fia_gemm_f32_acc__avx512_12x32(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                const float *b, int64_t ldb, float *c, int64_t ldc,
                                const int32_t *row_exp) {
    gemm_any_avx512(m, n, k, a, lda, b, ldb, c, ldc, row_exp ? GEMM_EXP : GEMM_ACC,
                    (const float *)(const void *)row_exp);
}

/* ------------------------------------------------------------------------------------------ */
/* conversions                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* 16 f16 (in a ymm) -> 16 f32, NaNs keep the f16 quiet bit (like fia_cvt_f16_to_f32). */
FIA_AI __m512 cvt16_f16_f32(__m256i h) {
    const __m512 f = _mm512_cvtph_ps(h);
    const __mmask16 nan = _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q);
    if (nan) {
        const __m512i w = _mm512_cvtepu16_epi32(h);
        const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x8000)), 16);
        const __m512i mant = _mm512_slli_epi32(_mm512_and_si512(w, _mm512_set1_epi32(0x3ff)), 13);
        const __m512i bits =
            _mm512_or_si512(_mm512_or_si512(sign, mant), _mm512_set1_epi32(0x7f800000));
        return _mm512_mask_mov_ps(f, nan, _mm512_castsi512_ps(bits));
    }
    return f;
}

void fia_f16_to_f32__avx512_f16c_u16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, cvt16_f16_f32(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 mk = tail_mask16(n - i);
        const __m256i h = _mm256_maskz_loadu_epi16(mk, src + i);
        _mm512_mask_storeu_ps(dst + i, mk, cvt16_f16_f32(h));
    }
}

FIA_AI __m512 cvt16_bf16_f32(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void fia_bf16_to_f32__avx512_shift_u16(const uint16_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, cvt16_bf16_f32(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        const __mmask16 mk = tail_mask16(n - i);
        _mm512_mask_storeu_ps(dst + i, mk, cvt16_bf16_f32(_mm256_maskz_loadu_epi16(mk, src + i)));
    }
}

void fia_i8_to_f32__avx512_u16(const int8_t *src, float *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
        _mm512_storeu_ps(dst + i, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)));
    }
    if (i < n) {
        const __mmask16 mk = tail_mask16(n - i);
        const __m128i v = _mm_maskz_loadu_epi8(mk, src + i);
        _mm512_mask_storeu_ps(dst + i, mk, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)));
    }
}

FIA_AI __m256i cvt16_f32_f16(__m512 f) {
    /* Hardware NaN handling (quiet bit set, payload truncated) equals fia_cvt_f32_to_f16. */
    return _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

void fia_f32_to_f16__avx512_f16c_u16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), cvt16_f32_f16(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 mk = tail_mask16(n - i);
        _mm256_mask_storeu_epi16(dst + i, mk, cvt16_f32_f16(_mm512_maskz_loadu_ps(mk, src + i)));
    }
}

/* Same arithmetic as fia_cvt_f32_to_bf16: NaN -> (u >> 16) | 0x40, else round to nearest even. */
FIA_AI __m256i cvt16_f32_bf16(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r =
        _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    __m512i hi = _mm512_srli_epi32(r, 16);
    hi = _mm512_mask_mov_epi32(
        hi, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(hi);
}

void fia_f32_to_bf16__avx512_rne_u16(const float *src, uint16_t *dst, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), cvt16_f32_bf16(_mm512_loadu_ps(src + i)));
    if (i < n) {
        const __mmask16 mk = tail_mask16(n - i);
        _mm256_mask_storeu_epi16(dst + i, mk, cvt16_f32_bf16(_mm512_maskz_loadu_ps(mk, src + i)));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* transpose_f32                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Transposes one block of nr x nc (<= 16 x 16) elements; FULL: nr == nc == 16 (no masks). */
FIA_AI void transpose_block16(const int FULL, const float *src, int64_t lds, float *dst,
                              int64_t ldd, int nr, int nc) {
    __m512 r[16], t[16];
    const __mmask16 cm = tail_mask16(nc), rm = tail_mask16(nr);
    FIA_UNROLL
    for (int i = 0; i < 16; i++) {
        if (FULL)
            r[i] = _mm512_loadu_ps(src + i * lds);
        else
            r[i] = i < nr ? _mm512_maskz_loadu_ps(cm, src + i * lds) : _mm512_setzero_ps();
    }
    /* t[2g], t[2g+1]: rows 2g, 2g+1 interleaved (lane l: columns 4l, 4l+1 / 4l+2, 4l+3). */
    FIA_UNROLL
    for (int g = 0; g < 8; g++) {
        t[2 * g] = _mm512_unpacklo_ps(r[2 * g], r[2 * g + 1]);
        t[2 * g + 1] = _mm512_unpackhi_ps(r[2 * g], r[2 * g + 1]);
    }
    /* r[4q + c], lane l: rows 4q..4q+3 of column 4l + c. */
    FIA_UNROLL
    for (int q = 0; q < 4; q++) {
        r[4 * q + 0] = _mm512_shuffle_ps(t[4 * q + 0], t[4 * q + 2], 0x44);
        r[4 * q + 1] = _mm512_shuffle_ps(t[4 * q + 0], t[4 * q + 2], 0xee);
        r[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        r[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    /* Gather lane l of r[c], r[4+c], r[8+c], r[12+c] -> column 4l + c, stored right away. */
    FIA_UNROLL
    for (int cc = 0; cc < 4; cc++) {
        const __m512 a0 = _mm512_shuffle_f32x4(r[cc], r[4 + cc], 0x88);
        const __m512 a1 = _mm512_shuffle_f32x4(r[cc], r[4 + cc], 0xdd);
        const __m512 b0 = _mm512_shuffle_f32x4(r[8 + cc], r[12 + cc], 0x88);
        const __m512 b1 = _mm512_shuffle_f32x4(r[8 + cc], r[12 + cc], 0xdd);
        const __m512 o[4] = {_mm512_shuffle_f32x4(a0, b0, 0x88), _mm512_shuffle_f32x4(a1, b1, 0x88),
                             _mm512_shuffle_f32x4(a0, b0, 0xdd), _mm512_shuffle_f32x4(a1, b1, 0xdd)};
        FIA_UNROLL
        for (int q = 0; q < 4; q++) { /* o[q] is column 4q + cc */
            const int j = 4 * q + cc;
            if (FULL)
                _mm512_storeu_ps(dst + j * ldd, o[q]);
            else if (j < nc)
                _mm512_mask_storeu_ps(dst + j * ldd, rm, o[q]);
        }
    }
}

/* Out of line: keeps the 32 row / column addresses local to one block (inlined into the block
 * loops, gcc turns them into 32 induction variables spilled to the stack). */
static __attribute__((noinline)) void transpose_full16(const float *src, int64_t lds, float *dst,
                                                       int64_t ldd) {
    transpose_block16(1, src, lds, dst, ldd, 16, 16);
}

static __attribute__((noinline)) void transpose_edge16(const float *src, int64_t lds, float *dst,
                                                       int64_t ldd, int nr, int nc) {
    transpose_block16(0, src, lds, dst, ldd, nr, nc);
}

void fia_transpose_f32__avx512_16x16(const float *src, int64_t lds, float *dst, int64_t ldd,
                                 int64_t rows, int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
        const int nr = (int)(rows - r0 < 16 ? rows - r0 : 16);
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            const int nc = (int)(cols - c0 < 16 ? cols - c0 : 16);
            const float *s = src + r0 * lds + c0;
            float *d = dst + c0 * ldd + r0;
            if (nr == 16 && nc == 16)
                transpose_full16(s, lds, d, ldd);
            else
                transpose_edge16(s, lds, d, ldd, nr, nc);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* softmax_tile                                                                               */
/* ------------------------------------------------------------------------------------------ */


/* One row's lane-wise max over n scores (nfull = n rounded down to 16, tm = the tail's mask),
 * two accumulators; NaN scores are skipped like the scalar "s > mx ? s : mx". */
FIA_AI __m512 row_max_lanes(const float *sr, int64_t nfull, __mmask16 tm) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 vm0 = ninf, vm1 = ninf;
    int64_t j = 0;
    for (; j + 32 <= nfull; j += 32) {
        vm0 = _mm512_max_ps(_mm512_loadu_ps(sr + j), vm0);
        vm1 = _mm512_max_ps(_mm512_loadu_ps(sr + j + 16), vm1);
    }
    if (j < nfull) vm0 = _mm512_max_ps(_mm512_loadu_ps(sr + j), vm0);
    if (tm) vm1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, tm, sr + nfull), vm1);
    return _mm512_max_ps(vm0, vm1);
}

/* softmax_tile and its AMLA form (amla: probabilities times c = exp(mx + e ln2), the
 * accumulator rescale as an exponent delta, see kernels.h). */
FIA_AI void softmax_rows(const int amla, float *s, int64_t lds, int64_t m, int64_t n,
                         float *row_max, float *row_sum, float *alpha, int32_t *row_e,
                         int32_t *row_exp) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const int64_t nfull = n & ~(int64_t)15;
    const __mmask16 tm = tail_mask16(n - nfull);
    for (int64_t r = 0; r < m; r++) {
        float *sr = s + r * lds;
        int64_t j;
        float mx = _mm512_reduce_max_ps(row_max_lanes(sr, nfull, tm)); /* row max */
        const float old = row_max[r];
        if (old > mx) mx = old;

        if (mx == -INFINITY) {
            const __m512 z = _mm512_setzero_ps();
            for (j = 0; j < nfull; j += 16) _mm512_storeu_ps(sr + j, z);
            if (tm) _mm512_mask_storeu_ps(sr + nfull, tm, z);
            if (amla) row_exp[r] = 0;
            else alpha[r] = 1.0f;
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
            al = _mm512_cvtss_f32(fia_avx512_exp16(_mm512_set1_ps(old - mx)));
        }
        const __m512 vmx = _mm512_set1_ps(mx), vc = _mm512_set1_ps(cf);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
#define SM_EXP(x)                                                                          \
    (amla ? _mm512_mul_ps(fia_avx512_exp16(_mm512_sub_ps((x), vmx)), vc)                      \
          : fia_avx512_exp16(_mm512_sub_ps((x), vmx)))
        j = 0;
        for (; j + 32 <= nfull; j += 32) {
            const __m512 e0 = SM_EXP(_mm512_loadu_ps(sr + j));
            const __m512 e1 = SM_EXP(_mm512_loadu_ps(sr + j + 16));
            _mm512_storeu_ps(sr + j, e0);
            _mm512_storeu_ps(sr + j + 16, e1);
            acc0 = _mm512_add_ps(acc0, e0);
            acc1 = _mm512_add_ps(acc1, e1);
        }
        if (j < nfull) {
            const __m512 e0 = SM_EXP(_mm512_loadu_ps(sr + j));
            _mm512_storeu_ps(sr + j, e0);
            acc0 = _mm512_add_ps(acc0, e0);
        }
        if (tm) {
            const __m512 e1 = SM_EXP(_mm512_mask_loadu_ps(ninf, tm, sr + nfull));
            _mm512_mask_storeu_ps(sr + nfull, tm, e1);
            acc1 = _mm512_add_ps(acc1, _mm512_maskz_mov_ps(tm, e1));
        }
#undef SM_EXP
        const float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
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

/* The horizontal reductions of 8 row vectors at once: lane r (< 8) of the result is op over
 * the 16 lanes of a[r], in exactly the order and operand order of gcc's _mm512_reduce_max_ps /
 * _mm512_reduce_add_ps (256-bit halves hi op lo, then the 128-bit halves hi op lo, then lanes
 * (0 op 2, 1 op 3), then lane 0 op lane 1), so every row's value has the bits the per-row
 * reduction gives (for max, +-0 included). */
#define SM_REDUCE8(name, op)                                                                   \
    FIA_AI __m512 name(const __m512 *a) {                                                      \
        const __m512 b01 = op(_mm512_shuffle_f32x4(a[0], a[1], 0xEE),                          \
                              _mm512_shuffle_f32x4(a[0], a[1], 0x44));                         \
        const __m512 b23 = op(_mm512_shuffle_f32x4(a[2], a[3], 0xEE),                          \
                              _mm512_shuffle_f32x4(a[2], a[3], 0x44));                         \
        const __m512 b45 = op(_mm512_shuffle_f32x4(a[4], a[5], 0xEE),                          \
                              _mm512_shuffle_f32x4(a[4], a[5], 0x44));                         \
        const __m512 b67 = op(_mm512_shuffle_f32x4(a[6], a[7], 0xEE),                          \
                              _mm512_shuffle_f32x4(a[6], a[7], 0x44));                         \
        const __m512 c0 = op(_mm512_shuffle_f32x4(b01, b23, 0xDD),                             \
                             _mm512_shuffle_f32x4(b01, b23, 0x88));                            \
        const __m512 c1 = op(_mm512_shuffle_f32x4(b45, b67, 0xDD),                             \
                             _mm512_shuffle_f32x4(b45, b67, 0x88));                            \
        const __m512 d = op(_mm512_shuffle_ps(c0, c1, 0x44), _mm512_shuffle_ps(c0, c1, 0xEE)); \
        const __m512 e = op(d, _mm512_permute_ps(d, 0xB1));                                    \
        return _mm512_permutexvar_ps(                                                          \
            _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 14, 10, 6, 2, 12, 8, 4, 0), e);            \
    }
SM_REDUCE8(sm_reduce8_max, _mm512_max_ps)
SM_REDUCE8(sm_reduce8_add, _mm512_add_ps)
#undef SM_REDUCE8

/* softmax_tile for up to 8 rows (g), the per-row steps vectorised across the rows: the row
 * maxima reduced together, one e^x for the 8 rescale factors, the sums reduced together and
 * the state updated in one vector; the rows' latency chains (reduce, exp, reduce) overlap
 * instead of running one after another. The same operations per row as softmax_rows (same
 * bits). Returns false, having written nothing, when a row's max is -inf (softmax_rows
 * handles those rows). */
FIA_AI bool softmax_rows8(float *s, int64_t lds, int64_t g, int64_t n, float *row_max,
                          float *row_sum, float *alpha) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const int64_t nfull = n & ~(int64_t)15;
    const __mmask16 tm = tail_mask16(n - nfull), gm = tail_mask16(g);
    __m512 v[8];
    for (int64_t r = 0; r < 8; r++) {
        if (r >= g) {
            v[r] = ninf;
            continue;
        }
        const float *sr = s + r * lds;
        v[r] = row_max_lanes(sr, nfull, tm);
    }
    const __m512 old = _mm512_mask_loadu_ps(ninf, gm, row_max);
    const __m512 mx = _mm512_max_ps(old, sm_reduce8_max(v)); /* old > mx ? old : mx */
    if (_mm512_mask_cmp_ps_mask(gm, mx, ninf, _CMP_EQ_OQ)) return false;
    /* alpha = e^(old - mx), 0 where old == -inf */
    const __m512 al = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(old, ninf, _CMP_NEQ_UQ),
                                          fia_avx512_exp16(_mm512_sub_ps(old, mx)));
    float mxs[16] __attribute__((aligned(64)));
    _mm512_store_ps(mxs, mx);
    for (int64_t r = 0; r < 8; r++) {
        if (r >= g) {
            v[r] = _mm512_setzero_ps();
            continue;
        }
        float *sr = s + r * lds;
        const __m512 vmx = _mm512_set1_ps(mxs[r]);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int64_t j = 0;
        for (; j + 32 <= nfull; j += 32) {
            const __m512 e0 = fia_avx512_exp16(_mm512_sub_ps(_mm512_loadu_ps(sr + j), vmx));
            const __m512 e1 = fia_avx512_exp16(_mm512_sub_ps(_mm512_loadu_ps(sr + j + 16), vmx));
            _mm512_storeu_ps(sr + j, e0);
            _mm512_storeu_ps(sr + j + 16, e1);
            acc0 = _mm512_add_ps(acc0, e0);
            acc1 = _mm512_add_ps(acc1, e1);
        }
        if (j < nfull) {
            const __m512 e0 = fia_avx512_exp16(_mm512_sub_ps(_mm512_loadu_ps(sr + j), vmx));
            _mm512_storeu_ps(sr + j, e0);
            acc0 = _mm512_add_ps(acc0, e0);
        }
        if (tm) {
            const __m512 e1 =
                fia_avx512_exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(ninf, tm, sr + nfull), vmx));
            _mm512_mask_storeu_ps(sr + nfull, tm, e1);
            acc1 = _mm512_add_ps(acc1, _mm512_maskz_mov_ps(tm, e1));
        }
        v[r] = _mm512_add_ps(acc0, acc1);
    }
    const __m512 sum = sm_reduce8_add(v);
    /* row_sum * alpha + sum: a multiply then an add, as the scalar expression (no contraction) */
    const __m512 ls = _mm512_maskz_loadu_ps(gm, row_sum);
    _mm512_mask_storeu_ps(row_sum, gm, _mm512_add_ps(_mm512_mul_ps(ls, al), sum));
    _mm512_mask_storeu_ps(alpha, gm, al);
    _mm512_mask_storeu_ps(row_max, gm, mx);
    return true;
}

void fia_softmax_tile__avx512_expcw_u16(float *s, int64_t lds, int64_t m, int64_t n, float *row_max,
                                float *row_sum, float *alpha) {
    for (int64_t r0 = 0; r0 < m; r0 += 8) {
        const int64_t g = m - r0 < 8 ? m - r0 : 8;
        /* 1-3 rows: the per-row code (SmallQ q2, one thread in L2: the 8-lane reductions cost
         * more than they save) */
        if (g < 4 || !softmax_rows8(s + r0 * lds, lds, g, n, row_max + r0, row_sum + r0, alpha + r0))
            softmax_rows(0, s + r0 * lds, lds, g, n, row_max + r0, row_sum + r0, alpha + r0, NULL,
                         NULL);
    }
}

void fia_softmax_tile_amla__avx512_expcw_u16(float *s, int64_t lds, int64_t m, int64_t n,
                                     float *row_max, float *row_sum, int32_t *row_e,
                                     int32_t *row_exp) {
    softmax_rows(1, s, lds, m, n, row_max, row_sum, NULL, row_e, row_exp);
}


/* p_to_u8: vmaxps is p > mx ? p : mx (NaN p skipped) and vminps x < 255 ? x : 255, exactly the
 * scalar selects; the code is vmulps then vaddps (no FMA), vcvttps2dq (truncation), zeroed
 * where x >= 1 fails (NaN included), narrowed by vpmovdb. Tails masked (zero lanes: 0 for the
 * max, not stored). Max order does not matter: every lane is +0 or a positive number. */
float fia_p_to_u8__avx512_u32(const float *p, int64_t n, uint8_t *q) {
    __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(p + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(p + j + 16), m1);
    }
    for (; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
        m0 = _mm512_max_ps(_mm512_maskz_loadu_ps(k, p + j), m0);
    }
    const float mx = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    if (!(mx > 0.0f)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const __m512 f = _mm512_set1_ps(255.0f / mx), half = _mm512_set1_ps(0.5f),
                 one = _mm512_set1_ps(1.0f), top = _mm512_set1_ps(255.0f);
    for (j = 0; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
        const __m512 x = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), f), half);
        const __mmask16 ge = _mm512_cmp_ps_mask(x, one, _CMP_GE_OQ);
        const __m512i c = _mm512_maskz_cvttps_epi32(ge, _mm512_min_ps(x, top));
        _mm512_mask_cvtepi32_storeu_epi8(q + j, k, c);
    }
    return mx;
}
