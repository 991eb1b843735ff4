/*
 * sfa_avx2.c - the AVX2 table of sparse flash attention kernels (sfa_kernels.h).
 *
 * c8_rows_to_f32: per row, 64 steps of 8 int8 -> int32 -> fp32 times the tile's broadcast scale
 * (one vmulps: bit-exact with the scalar table), then 8 steps of 8 bf16 widened by a shift.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/sfa_kernels.h"

/* x rounded to bfloat16 (nearest even; a NaN keeps its top bits, made quiet) and widened. */
static inline __m256 round_bf16(__m256 x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i nan = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    const __m256 isnan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const __m256i v = _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(nan), isnan));
    return _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
}

static inline __m256 round_to(__m256 x, fia_dtype round) {
    if (round == FIA_DTYPE_BFLOAT16) return round_bf16(x);
    if (round == FIA_DTYPE_FLOAT16)
        return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return x;
}

static void c8_rows_to_f32_avx2(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                float *rope, int64_t ldr, fia_dtype round) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int t = 0; t < 4; t++) {
            const __m256 s = _mm256_set1_ps(sc[t]);
            for (int c = t * FIA_C8_TILE; c < (t + 1) * FIA_C8_TILE; c += 8) {
                const __m128i v = _mm_loadl_epi64((const __m128i *)(r + c));
                _mm256_storeu_ps(dn + c, round_to(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), s),
                                                  round));
            }
        }
        for (int c = 0; c < FIA_C8_ROPE; c += 8) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(r + FIA_C8_NOPE + 2 * c));
            _mm256_storeu_ps(dr + c, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
        }
    }
}

static void round_scaled_avx2(float *x, int64_t n, float c, float inv, fia_dtype round) {
    const __m256 vc = _mm256_set1_ps(c), vi = _mm256_set1_ps(inv);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(x + j, _mm256_mul_ps(round_to(_mm256_mul_ps(_mm256_loadu_ps(x + j), vc), round), vi));
    if (j < n) { /* the tail through a scratch vector */
        float t[8] = {0};
        memcpy(t, x + j, (size_t)(n - j) * sizeof(float));
        _mm256_storeu_ps(t, _mm256_mul_ps(round_to(_mm256_mul_ps(_mm256_loadu_ps(t), vc), round), vi));
        memcpy(x + j, t, (size_t)(n - j) * sizeof(float));
    }
}

const fia_sfa_kernels fia_sfa_kernels_avx2 = {
    .name = "avx2",
    .c8_rows_to_f32 = c8_rows_to_f32_avx2,
    .round_scaled = round_scaled_avx2,
};
