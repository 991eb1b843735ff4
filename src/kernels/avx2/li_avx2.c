/*
 * li_avx2.c - the AVX2 lightning-indexer scoring kernels (fia_li_kernels_avx2): float, and int8
 * on vpmaddwd (AVX2 has no int8 dot product; see score_i8 below). Contract: src/kernels/li_kernels.h. Compiled with -mavx2 -mfma
 * -mf16c.
 *
 * score_f32: heads along the lanes in blocks of 16 (2 ymm), keys along the rows: a micro-tile of
 *   6 keys x 2 ymm = 12 accumulators, 2 query loads and 6 broadcasts per dimension (15 of the 16
 *   ymm registers). Each head block adds sum_h w_h * max(acc_h, 0) of its heads to out[j] (the
 *   first block stores), lanes beyond nh zeroed by a lane mask. max(x, 0) gives 0 for NaN x.
 * keys_to_u8: 32 bytes per step (xor 0x80), the row tail and the 0x80 padding scalar.
 */
#include <immintrin.h>

#include "core/convert.h"
#include "kernels/registry.h"

#define LI_AI static inline __attribute__((always_inline))

enum { LI_MR = 6 };

static inline float li_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

LI_AI void li_tile_avx2(const int MR, int64_t d, const float *k, int64_t ldk, const float *qt,
                        int64_t ldq, const float *w, __m256 m0, __m256 m1, int first,
                        float *out) {
    __m256 acc0[LI_MR], acc1[LI_MR];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (int64_t c = 0; c < d; c++) {
        const __m256 q0 = _mm256_loadu_ps(qt + c * ldq), q1 = _mm256_loadu_ps(qt + c * ldq + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 b = _mm256_broadcast_ss(k + r * ldk + c);
            acc0[r] = _mm256_fmadd_ps(b, q0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(b, q1, acc1[r]);
        }
    }
    const __m256 zero = _mm256_setzero_ps();
    const __m256 w0 = _mm256_and_ps(m0, _mm256_loadu_ps(w)), w1 = _mm256_and_ps(m1, _mm256_loadu_ps(w + 8));
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        /* max(acc, 0) with acc first: a NaN acc gives 0 (maxps returns the second operand). */
        __m256 s = _mm256_mul_ps(w0, _mm256_and_ps(m0, _mm256_max_ps(acc0[r], zero)));
        s = _mm256_fmadd_ps(w1, _mm256_and_ps(m1, _mm256_max_ps(acc1[r], zero)), s);
        const float t = li_hsum256(s);
        out[r] = first ? t : out[r] + t;
    }
}

static void li_block_avx2(int64_t n, int64_t d, const float *k, int64_t ldk, const float *qt,
                          int64_t ldq, const float *w, __m256 m0, __m256 m1, int first,
                          float *out) {
    int64_t j = 0;
    for (; j + LI_MR <= n; j += LI_MR)
        li_tile_avx2(LI_MR, d, k + j * ldk, ldk, qt, ldq, w, m0, m1, first, out + j);
    k += j * ldk;
    out += j;
    switch (n - j) {
    case 1: li_tile_avx2(1, d, k, ldk, qt, ldq, w, m0, m1, first, out); break;
    case 2: li_tile_avx2(2, d, k, ldk, qt, ldq, w, m0, m1, first, out); break;
    case 3: li_tile_avx2(3, d, k, ldk, qt, ldq, w, m0, m1, first, out); break;
    case 4: li_tile_avx2(4, d, k, ldk, qt, ldq, w, m0, m1, first, out); break;
    case 5: li_tile_avx2(5, d, k, ldk, qt, ldq, w, m0, m1, first, out); break;
    default: break;
    }
}

void fia_li_score_f32__avx2_6x16(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                              const float *qt, int64_t ldq, const float *w, float *out) {
    if (n <= 0) return;
    for (int64_t h0 = 0; h0 < nh; h0 += 16) {
        const int64_t left = nh - h0;
        __m256i lanes0 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256i lanes1 = _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15);
        const __m256i lim = _mm256_set1_epi32((int)(left < 16 ? left : 16));
        const __m256 m0 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, lanes0));
        const __m256 m1 = _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, lanes1));
        li_block_avx2(n, d, k, ldk, qt + h0, ldq, w + h0, m0, m1, h0 == 0, out);
    }
}

/* Keys to fp32: 8 elements per step (F16C / a 16-bit shift), scalar tail. */
void fia_li_keys_to_f32__avx2_u8(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                                float *dst, int64_t ldk) {
    const int bf = dt == FIA_DTYPE_BFLOAT16;
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *r = rows[j];
        float *o = dst + j * ldk;
        int64_t c = 0;
        for (; c + 8 <= d; c += 8) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(r + c));
            _mm256_storeu_ps(o + c, bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                                       : _mm256_cvtph_ps(h));
        }
        if (c < d) fia_li_keys_to_f32__scalar(1, d - c, (const void *const[]){r + c}, dt, o + c, ldk);
    }
}

/* ---- score_i8 (no VNNI on AVX2): vpmaddwd on 16-bit widened values, exact in int32 ------------
 * Per key and group of 4 heads, one ymm of 8 int32 lanes (head, pair of dims): vpmaddwd of the
 * query's 4 heads x 4 dims (int8 widened to int16) with the key's 4 dims (uint8 widened,
 * broadcast to the 4 heads) adds q.k of dims (0,1) and (2,3) of each head into two lanes; the
 * lanes of a head are added at the end. Products (<= 255 x 128) and pair sums fit int16 x int16
 * -> int32 exactly, so the integer dot product is the scalar one, and the float epilogue runs in
 * the scalar kernel's order (heads in order): results are bitwise the scalar kernel's. */

/* acc[g] += q groups [g0, g0 + G) of dims 4 c4 .. 4 c4 + 3 times the key's 4 dims kw */
#define LI_I8_GROUP(g)                                                                         \
    a##g = _mm256_add_epi32(a##g, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(      \
                                     (const __m128i *)(qc + (g) * 16))), kw));

static void li_i8_key8(int64_t d4, const uint8_t *kj, const int8_t *qp, int64_t ldq, int64_t g0,
                       int32_t *dots) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
            a7 = a0;
    for (int64_t c4 = 0; c4 < d4; c4++) {
        int32_t k4;
        __builtin_memcpy(&k4, kj + c4 * 4, 4);
        const __m256i kw = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(k4)));
        const int8_t *qc = qp + (c4 * ldq + g0 * 4) * 4;
        LI_I8_GROUP(0) LI_I8_GROUP(1) LI_I8_GROUP(2) LI_I8_GROUP(3)
        LI_I8_GROUP(4) LI_I8_GROUP(5) LI_I8_GROUP(6) LI_I8_GROUP(7)
    }
    const __m256i s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3);
    const __m256i s45 = _mm256_hadd_epi32(a4, a5), s67 = _mm256_hadd_epi32(a6, a7);
    /* hadd(a, b) lanes: a01 a23 b01 b23 | a45 a67 b45 b67 (pairs summed): heads of a: 0 1, of
     * b: 0 1, then a: 2 3, b: 2 3 */
    int32_t t[4][8];
    _mm256_storeu_si256((__m256i *)t[0], s01);
    _mm256_storeu_si256((__m256i *)t[1], s23);
    _mm256_storeu_si256((__m256i *)t[2], s45);
    _mm256_storeu_si256((__m256i *)t[3], s67);
    for (int i = 0; i < 4; i++) {
        int32_t *d = dots + i * 8; /* groups 2i (heads 0-3) and 2i + 1 (heads 4-7) */
        d[0] = t[i][0], d[1] = t[i][1], d[2] = t[i][4], d[3] = t[i][5];
        d[4] = t[i][2], d[5] = t[i][3], d[6] = t[i][6], d[7] = t[i][7];
    }
}

static void li_i8_key4(int64_t d4, const uint8_t *kj, const int8_t *qp, int64_t ldq, int64_t g0,
                       int32_t *dots) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t c4 = 0; c4 < d4; c4++) {
        int32_t k4;
        __builtin_memcpy(&k4, kj + c4 * 4, 4);
        const __m256i kw = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(k4)));
        const int8_t *qc = qp + (c4 * ldq + g0 * 4) * 4;
        LI_I8_GROUP(0) LI_I8_GROUP(1) LI_I8_GROUP(2) LI_I8_GROUP(3)
    }
    const __m256i s01 = _mm256_hadd_epi32(a0, a1), s23 = _mm256_hadd_epi32(a2, a3);
    int32_t t[2][8];
    _mm256_storeu_si256((__m256i *)t[0], s01);
    _mm256_storeu_si256((__m256i *)t[1], s23);
    for (int i = 0; i < 2; i++) {
        int32_t *d = dots + i * 8;
        d[0] = t[i][0], d[1] = t[i][1], d[2] = t[i][4], d[3] = t[i][5];
        d[4] = t[i][2], d[5] = t[i][3], d[6] = t[i][6], d[7] = t[i][7];
    }
}
#undef LI_I8_GROUP

void fia_li_score_i8__avx2_8x4(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                               const int8_t *qp, int64_t ldq, const int32_t *qbias, const float *ws,
                               const float *sk, int f16, float *out) {
    const int64_t groups = (nh + 3) / 4; /* ldq >= 4 groups, a multiple of 16 heads */
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *kj = ku + j * ldk;
        int32_t dots[FIA_LI_MAX_HEADS + 16];
        int64_t g = 0;
        for (; g + 8 <= groups; g += 8) li_i8_key8(d4, kj, qp, ldq, g, dots + g * 4);
        for (; g < groups; g += 4) li_i8_key4(d4, kj, qp, ldq, g, dots + g * 4);
        float s = 0.0f;
        for (int64_t h = 0; h < nh; h++) {
            const int32_t dot = dots[h] - qbias[h];
            float r = (float)(dot > 0 ? dot : 0);
            if (f16) r = fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(r * (1.0f / 1024.0f)));
            /* product and sum as two statements: never contracted into an FMA (clang contracts
             * within an expression; the scalar kernel has no FMA), so bitwise the scalar order */
            const float t = ws[h] * r;
            s += t;
        }
        out[j] = sk[j] * s;
    }
}

/* int8 keys to uint8 + 128: 32 bytes per step, the row tail and the padding to 4 * d4 (0x80,
 * a zero key) through a 32-byte buffer, so only rows[j][0 .. d-1] is read. */
void fia_li_keys_to_u8__avx2_u32(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                                 uint8_t *dst, int64_t ldk) {
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    const int64_t full = d / 32 * 32, w = 4 * d4;
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *r = rows[j];
        uint8_t *o = dst + j * ldk;
        int64_t c = 0;
        for (; c < full; c += 32)
            _mm256_storeu_si256((__m256i *)(o + c),
                                _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(r + c)), bias));
        for (; c < d; c++) o[c] = r[c] ^ 0x80u;
        for (; c < w; c++) o[c] = 0x80u;
    }
}
