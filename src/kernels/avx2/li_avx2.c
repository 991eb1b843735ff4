/*
 * li_avx2.c - the AVX2 lightning-indexer float scoring kernel (fia_li_kernels_avx2; its int8
 * kernel is the scalar one). Contract: src/kernels/li_kernels.h. Compiled with -mavx2 -mfma
 * -mf16c.
 *
 * score_f32: heads along the lanes in blocks of 16 (2 ymm), keys along the rows: a micro-tile of
 *   6 keys x 2 ymm = 12 accumulators, 2 query loads and 6 broadcasts per dimension (15 of the 16
 *   ymm registers). Each head block adds sum_h w_h * max(acc_h, 0) of its heads to out[j] (the
 *   first block stores), lanes beyond nh zeroed by a lane mask. max(x, 0) gives 0 for NaN x.
 */
#include <immintrin.h>

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

