/*
 * i8gemm_avx2.c - the AVX2 int8 GEMM kernels (the i8 family of registry.inc for CPUs without
 * AVX-512 VNNI: Zen 2/3, Haswell..Cascade Lake under FIA_ISA=avx2).
 *
 * Contract and packed-B format: src/kernels/i8gemm.h. Every result is bit identical to the
 * scalar kernels: packs byte for byte, the integer dot exactly (wrapping int32, as the scalar
 * uint32 sums), and the epilogue in the scalar order x = (float)dot, x *= scale,
 * c = beta * c + x as a separate multiply and add (no FMA; the file is C11, so gcc does not
 * contract). Compiled with -mavx2 -mfma -mf16c. No allocation, no global mutable state.
 *
 * gemm: AVX2 has no u8 x s8 -> int32 dot (vpdpbusd); vpmaddubsw sums two u8 x s8 products in
 *   int16 with saturation (255 * -128 * 2 does not fit), so the integer part is formed without
 *   it: the B bytes are sign-extended to int16 (vpmovsxbw, 4 columns x 4 depth per ymm), the 4
 *   A bytes of a group are zero-extended to int16 and broadcast (vpbroadcastd + vpshufb), and
 *   vpmaddwd gives per column two exact int32 partial sums (depth 0+1 and 2+3) that a vpaddd
 *   accumulates; a vphaddd + vpermq joins the partials once per tile.
 *   Micro-tile: MR <= 4 rows x 8 columns (half a 16-column panel: 32 bytes of each 64-byte
 *   group): 8 accumulators + 2 B + 1 A ymm. Per group and tile: 2 vpmovsxbw, MR x (broadcast,
 *   vpshufb, 2 vpmaddwd, 2 vpaddd). Loop order: row blocks (m split into near-equal blocks of
 *   <= 4 rows; one out-of-line function per row count), then the 8-column halves, then the
 *   groups with the tile in registers. A k tail (k % 4) is one more group whose A dword is
 *   assembled from the valid bytes only; the pack's zero padding covers B. The last half of a
 *   ragged n stores (and, with row_beta, loads) through vpmaskmovd masks.
 * pack_b_nk: 16 rows x 32 bytes at a time (the k tail copied into a zeroed 32-byte buffer, rows
 *   past n zero), two 8 x 8 dword transposes give 8 groups; column sums with vpmaddubsw(ones,
 *   group) (two s8 per int16: exact) and vpmaddwd(ones16).
 * pack_b_kn: 4 depth rows x 32 columns at a time (the n tail through a zeroed buffer): byte and
 *   word unpacks interleave the 4 rows per column, vperm2i128 puts 16 columns in order; column
 *   sums as above.
 * s8_to_u8_offset: 32-byte xor with 0x80, scalar tail.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))
#define FIA_UNROLL _Pragma("GCC unroll 16")

enum { I8_MR = 4 };
#define I8_REP4(X) X(0) X(1) X(2) X(3)

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* lanes 0..r-1 set (0 <= r <= 8) */
static inline __m256i tail_mask8(int64_t r) {
    static const int32_t tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(tab + 8 - r));
}

/* The last k % 4 A bytes of a row as one broadcast dword (zero-extended; reads only rem bytes). */
static inline __m256i tail_a(const uint8_t *p, int64_t rem) {
    uint32_t v = 0;
    memcpy(&v, p, (size_t)rem);
    return _mm256_set1_epi32((int32_t)v);
}

/* ------------------------------------------------------------------------------------------ */
/* gemm                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* One micro-tile: MR rows x 8 columns; nc (1..8) columns valid. b: the half's bytes in group 0
 * (groups 64 bytes apart); cs: its 8 column sums. */
FIA_AI void i8_tile(const int MR, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b,
                    const int8_t *cs, float *c, int64_t ldc, const float *row_scale,
                    const float *row_beta, int32_t a_offset, int64_t nc) {
    /* zero-extends bytes 0..3 of each 128-bit lane to 4 int16, twice per lane */
    const __m256i widen = _mm256_setr_epi8(0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1,
                                           0, -1, 1, -1, 2, -1, 3, -1, 0, -1, 1, -1, 2, -1, 3, -1);
    __m256i lo[I8_MR], hi[I8_MR];
#define ROW_ZERO(i)                                                                           \
    if ((i) < MR) lo[i] = hi[i] = _mm256_setzero_si256();
    I8_REP4(ROW_ZERO)
#undef ROW_ZERO
    const int64_t k4f = k / 4, krem = k % 4;
    const int8_t *bp = b;
    const uint8_t *ap = a;
#define ROW_DP(i)                                                                             \
    if ((i) < MR) {                                                                           \
        const __m256i ai = _mm256_shuffle_epi8(AI(i), widen);                                 \
        lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(ai, b0));                           \
        hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(ai, b1));                           \
    }
#define LOAD_B()                                                                              \
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bp));           \
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(bp + 16)));
    for (int64_t g = 0; g < k4f; g++) {
        LOAD_B()
#define AI(i) _mm256_set1_epi32(load_i32(ap + (i) * lda))
        I8_REP4(ROW_DP)
#undef AI
        ap += 4;
        bp += 64;
    }
    if (krem) {
        LOAD_B()
#define AI(i) tail_a(ap + (i) * lda, krem)
        I8_REP4(ROW_DP)
#undef AI
    }
#undef LOAD_B
#undef ROW_DP

    const __m256i corr =
        _mm256_mullo_epi32(_mm256_set1_epi32(a_offset), _mm256_loadu_si256((const __m256i *)cs));
    const __m256i mt = tail_mask8(nc);
#define ROW_OUT(i)                                                                            \
    if ((i) < MR) {                                                                           \
        /* lanes: [c0 c1 c4 c5 | c2 c3 c6 c7] -> c0..c7 */                                    \
        const __m256i h = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[i], hi[i]),          \
                                                   _MM_SHUFFLE(3, 1, 2, 0));                  \
        __m256 x = _mm256_cvtepi32_ps(_mm256_sub_epi32(h, corr));                             \
        if (row_scale) x = _mm256_mul_ps(x, _mm256_set1_ps(row_scale[i]));                    \
        float *cv = c + (i) * ldc;                                                            \
        if (nc == 8) {                                                                        \
            if (row_beta)                                                                     \
                x = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(row_beta[i]), _mm256_loadu_ps(cv)), \
                                  x);                                                         \
            _mm256_storeu_ps(cv, x);                                                          \
        } else {                                                                              \
            if (row_beta)                                                                     \
                x = _mm256_add_ps(                                                            \
                    _mm256_mul_ps(_mm256_set1_ps(row_beta[i]), _mm256_maskload_ps(cv, mt)), x); \
            _mm256_maskstore_ps(cv, mt, x);                                                   \
        }                                                                                     \
    }
    I8_REP4(ROW_OUT)
#undef ROW_OUT
}

/* All 8-column halves of one row block of MR rows. */
FIA_AI void i8_rows(const int MR, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                    const int8_t *b, float *c, int64_t ldc, const float *row_scale,
                    const float *row_beta, int32_t a_offset) {
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    for (int64_t j = 0; j < n; j += 8) {
        const int8_t *panel = b + (j / 16) * pb;
        const int64_t half = (j / 8) % 2;
        const int64_t nc = n - j < 8 ? n - j : 8;
        i8_tile(MR, k, a, lda, panel + 32 * half, panel + 64 * k4 + 32 * half, c + j, ldc,
                row_scale, row_beta, a_offset, nc);
    }
}

#define I8_ROWS_FN(R)                                                                         \
    static __attribute__((noinline)) void i8_rows_##R(                                        \
        int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b, float *c,       \
        int64_t ldc, const float *row_scale, const float *row_beta, int32_t a_offset) {       \
        i8_rows(R, n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset);                   \
    }
I8_ROWS_FN(1)
I8_ROWS_FN(2)
I8_ROWS_FN(3)
I8_ROWS_FN(4)

void fia_i8_gemm__avx2_4x8(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                           const void *packed, float *c, int64_t ldc, const float *row_scale,
                           const float *row_beta, int32_t a_offset) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int8_t *b = (const int8_t *)packed;
    const int64_t nb = (m + I8_MR - 1) / I8_MR;
    const int64_t base = m / nb, extra = m % nb;
    for (int64_t blk = 0; blk < nb; blk++) {
        const int rows = (int)(base + (blk < extra ? 1 : 0));
        switch (rows) {
        case 1: i8_rows_1(n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset); break;
        case 2: i8_rows_2(n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset); break;
        case 3: i8_rows_3(n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset); break;
        default: i8_rows_4(n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset); break;
        }
        a += rows * lda;
        c += rows * ldc;
        if (row_scale) row_scale += rows;
        if (row_beta) row_beta += rows;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* packing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Column sums of one group vector (8 columns x 4 s8 depth bytes) added to acc. */
static inline __m256i colsum_add(__m256i acc, __m256i g) {
    const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), g); /* |sum of 2| <= 256 */
    return _mm256_add_epi32(acc, _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

/* In-register 8 x 8 dword transpose: r[i] element e -> r[e] element i. */
FIA_AI void transpose8x8_epi32(__m256i r[8]) {
    __m256i t[8], u[8];
    FIA_UNROLL
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    FIA_UNROLL
    for (int q = 0; q < 2; q++) {
        u[4 * q + 0] = _mm256_unpacklo_epi64(t[4 * q + 0], t[4 * q + 2]);
        u[4 * q + 1] = _mm256_unpackhi_epi64(t[4 * q + 0], t[4 * q + 2]);
        u[4 * q + 2] = _mm256_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm256_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    FIA_UNROLL
    for (int e = 0; e < 4; e++) {
        r[e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x20);
        r[4 + e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x31);
    }
}

void fia_i8_pack_b_nk__avx2(const int8_t *const *rows, int64_t n, int64_t k, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    int8_t *out = (int8_t *)packed;
    for (int64_t p = 0; p * 16 < n; p++) {
        int8_t *panel = out + p * pb;
        const int64_t nr = n - 16 * p < 16 ? n - 16 * p : 16;
        __m256i cs0 = _mm256_setzero_si256(), cs1 = cs0;
        for (int64_t t0 = 0; t0 < k; t0 += 32) {
            const int64_t len = k - t0 < 32 ? k - t0 : 32;
            __m256i r0[8], r1[8];
            FIA_UNROLL
            for (int i = 0; i < 16; i++) {
                __m256i v = _mm256_setzero_si256();
                if (i < nr) {
                    const int8_t *src = rows[16 * p + i] + t0;
                    if (len == 32) {
                        v = _mm256_loadu_si256((const __m256i *)src);
                    } else {
                        int8_t buf[32] = {0};
                        memcpy(buf, src, (size_t)len);
                        v = _mm256_loadu_si256((const __m256i *)buf);
                    }
                }
                if (i < 8)
                    r0[i] = v;
                else
                    r1[i - 8] = v;
            }
            transpose8x8_epi32(r0);
            transpose8x8_epi32(r1);
            const int64_t ng = (len + 3) / 4;
            int8_t *dst = panel + 16 * t0; /* group t0 / 4, 64 bytes each */
            FIA_UNROLL
            for (int g = 0; g < 8; g++) {
                if (g < ng) {
                    _mm256_storeu_si256((__m256i *)(dst + 64 * g), r0[g]);
                    _mm256_storeu_si256((__m256i *)(dst + 64 * g + 32), r1[g]);
                }
                cs0 = colsum_add(cs0, r0[g]);
                cs1 = colsum_add(cs1, r1[g]);
            }
        }
        _mm256_storeu_si256((__m256i *)(panel + 64 * k4), cs0);
        _mm256_storeu_si256((__m256i *)(panel + 64 * k4 + 32), cs1);
    }
}

/* 32 bytes of row + j0 (cols valid ones, the rest zero), reading only the valid bytes. */
static inline __m256i load_cols(const int8_t *src, int64_t cols) {
    if (cols >= 32) return _mm256_loadu_si256((const __m256i *)src);
    int8_t buf[32] = {0};
    memcpy(buf, src, (size_t)cols);
    return _mm256_loadu_si256((const __m256i *)buf);
}

void fia_i8_pack_b_kn__avx2(const int8_t *const *rows, int64_t k, int64_t n, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    const __m256i zero = _mm256_setzero_si256();
    int8_t *out = (int8_t *)packed;
    for (int64_t j0 = 0; j0 < n; j0 += 32) {
        const int64_t cols = n - j0 < 32 ? n - j0 : 32;
        const int two = cols > 16;
        int8_t *panel = out + (j0 / 16) * pb;
        __m256i cs0 = zero, cs1 = zero, cs2 = zero, cs3 = zero;
        int8_t *dst = panel;
        for (int64_t g = 0; g < k4; g++, dst += 64) {
            const int8_t *const *rp = rows + 4 * g;
            const int64_t left = k - 4 * g; /* >= 1 */
            const __m256i r0 = load_cols(rp[0] + j0, cols);
            const __m256i r1 = left > 1 ? load_cols(rp[1] + j0, cols) : zero;
            const __m256i r2 = left > 2 ? load_cols(rp[2] + j0, cols) : zero;
            const __m256i r3 = left > 3 ? load_cols(rp[3] + j0, cols) : zero;
            const __m256i lo01 = _mm256_unpacklo_epi8(r0, r1), hi01 = _mm256_unpackhi_epi8(r0, r1);
            const __m256i lo23 = _mm256_unpacklo_epi8(r2, r3), hi23 = _mm256_unpackhi_epi8(r2, r3);
            /* q0 = [c0-3 | c16-19], q1 = [c4-7 | c20-23], q2 = [c8-11 | c24-27], q3 = [c12-15 | c28-31] */
            const __m256i q0 = _mm256_unpacklo_epi16(lo01, lo23);
            const __m256i q1 = _mm256_unpackhi_epi16(lo01, lo23);
            const __m256i q2 = _mm256_unpacklo_epi16(hi01, hi23);
            const __m256i q3 = _mm256_unpackhi_epi16(hi01, hi23);
            const __m256i o0 = _mm256_permute2x128_si256(q0, q1, 0x20); /* panel 0, c0-7 */
            const __m256i o1 = _mm256_permute2x128_si256(q2, q3, 0x20); /* panel 0, c8-15 */
            const __m256i o2 = _mm256_permute2x128_si256(q0, q1, 0x31); /* panel 1, c16-23 */
            const __m256i o3 = _mm256_permute2x128_si256(q2, q3, 0x31); /* panel 1, c24-31 */
            _mm256_storeu_si256((__m256i *)dst, o0);
            _mm256_storeu_si256((__m256i *)(dst + 32), o1);
            cs0 = colsum_add(cs0, o0);
            cs1 = colsum_add(cs1, o1);
            if (two) {
                _mm256_storeu_si256((__m256i *)(dst + pb), o2);
                _mm256_storeu_si256((__m256i *)(dst + pb + 32), o3);
                cs2 = colsum_add(cs2, o2);
                cs3 = colsum_add(cs3, o3);
            }
        }
        dst = panel + 64 * k4;
        _mm256_storeu_si256((__m256i *)dst, cs0);
        _mm256_storeu_si256((__m256i *)(dst + 32), cs1);
        if (two) {
            _mm256_storeu_si256((__m256i *)(dst + pb), cs2);
            _mm256_storeu_si256((__m256i *)(dst + pb + 32), cs3);
        }
    }
}

void fia_i8_s8_to_u8_offset__avx2_u32(const int8_t *src, uint8_t *dst, int64_t n) {
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm256_storeu_si256((__m256i *)(dst + i),
                            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(src + i)), x80));
    for (; i < n; i++) dst[i] = (uint8_t)((uint8_t)src[i] ^ 0x80u);
}
