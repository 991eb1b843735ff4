/*
 * sfa_avx512.c - the AVX-512 table of sparse flash attention kernels (sfa_kernels.h).
 *
 * c8_rows_to_f32: per row, 32 steps of 16 int8 -> int32 -> fp32 (vpmovsxbd, vcvtdq2ps) times the
 * tile's broadcast scale (one vmulps: bit-exact with the scalar table), then 4 steps of 16 bf16
 * widened by a 16-bit shift. Unaligned loads; rows any alignment.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/registry.h"

void fia_sfa_c8_rows_to_f32__avx512_u16(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                  float *rope, int64_t ldr) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int t = 0; t < 4; t++) {
            const __m512 s = _mm512_set1_ps(sc[t]);
            for (int c = t * FIA_C8_TILE; c < (t + 1) * FIA_C8_TILE; c += 16) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(r + c));
                _mm512_storeu_ps(dn + c, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), s));
            }
        }
        for (int c = 0; c < FIA_C8_ROPE; c += 16) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(r + FIA_C8_NOPE + 2 * c));
            _mm512_storeu_ps(dr + c, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
        }
    }
}

