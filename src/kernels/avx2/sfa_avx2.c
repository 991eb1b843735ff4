/*
 * sfa_avx2.c - the AVX2 table of sparse flash attention kernels (sfa_kernels.h).
 *
 * c8_rows_to_f32: per row, 64 steps of 8 int8 -> int32 -> fp32 times the tile's broadcast scale
 * (one vmulps: bit-exact with the scalar table), then 8 steps of 8 bf16 widened by a shift.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/registry.h"

void fia_sfa_c8_rows_to_f32__avx2_u8(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                float *rope, int64_t ldr) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int t = 0; t < 4; t++) {
            const __m256 s = _mm256_set1_ps(sc[t]);
            for (int c = t * FIA_C8_TILE; c < (t + 1) * FIA_C8_TILE; c += 8) {
                const __m128i v = _mm_loadl_epi64((const __m128i *)(r + c));
                _mm256_storeu_ps(dn + c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), s));
            }
        }
        for (int c = 0; c < FIA_C8_ROPE; c += 8) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(r + FIA_C8_NOPE + 2 * c));
            _mm256_storeu_ps(dr + c, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
        }
    }
}

