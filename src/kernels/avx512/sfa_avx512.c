/*
 * sfa_avx512.c - the AVX-512 table of sparse flash attention kernels (sfa_kernels.h).
 *
 * c8_rows_to_f32: per row, 32 steps of 16 int8 -> int32 -> fp32 (vpmovsxbd, vcvtdq2ps) times the
 * tile's broadcast scale (one vmulps: bit-exact with the scalar table), rounded to the query
 * dtype when asked (bf16: the integer round-to-nearest-even; fp16: vcvtps2ph), then 4 steps of
 * 16 bf16
 * widened by a 16-bit shift. Unaligned loads; rows any alignment.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/sfa_kernels.h"

/* x rounded to bfloat16 (nearest even; a NaN keeps its top bits, made quiet) and widened. */
static inline __m512 round_bf16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    const __m512i nan = _mm512_or_si512(u, _mm512_set1_epi32(0x00400000));
    const __mmask16 isnan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512i v = _mm512_mask_blend_epi32(isnan, r, nan);
    return _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xffff0000u)));
}

static inline __m512 round_to(__m512 x, fia_dtype round) {
    if (round == FIA_DTYPE_BFLOAT16) return round_bf16(x);
    if (round == FIA_DTYPE_FLOAT16)
        return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return x;
}

static void c8_rows_to_f32_avx512(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                  float *rope, int64_t ldr, fia_dtype round) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int t = 0; t < 4; t++) {
            const __m512 s = _mm512_set1_ps(sc[t]);
            for (int c = t * FIA_C8_TILE; c < (t + 1) * FIA_C8_TILE; c += 16) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(r + c));
                _mm512_storeu_ps(dn + c, round_to(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), s),
                                                  round));
            }
        }
        for (int c = 0; c < FIA_C8_ROPE; c += 16) {
            const __m256i h = _mm256_loadu_si256((const __m256i *)(r + FIA_C8_NOPE + 2 * c));
            _mm512_storeu_ps(dr + c, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
        }
    }
}

static void round_scaled_avx512(float *x, int64_t n, float c, float inv, fia_dtype round) {
    const __m512 vc = _mm512_set1_ps(c), vi = _mm512_set1_ps(inv);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        _mm512_mask_storeu_ps(x + j, m, _mm512_mul_ps(round_to(_mm512_mul_ps(v, vc), round), vi));
    }
}

const fia_sfa_kernels fia_sfa_kernels_avx512 = {
    .name = "avx512",
    .c8_rows_to_f32 = c8_rows_to_f32_avx512,
    .round_scaled = round_scaled_avx512,
};
