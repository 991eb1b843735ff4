/* fia: the AVX-512 e^x of the softmax kernels and the AMLA exponent add, shared by the AVX-512
 * tile kernels and the AMX MLA step (one polynomial, so their probabilities agree bit for bit).
 * Include from a translation unit compiled with AVX-512F. */
#ifndef FIA_KERNELS_AVX512_EXP_AVX512_H
#define FIA_KERNELS_AVX512_EXP_AVX512_H

#include <immintrin.h>

/* e^x for 16 lanes. x = n*ln2 + r, |r| <= ln2/2 (ln2 split in two constants, FMA reduction),
 * e^r = 1 + r + r^2 * P(r) (Cephes expf coefficients), result = e^r * 2^n via vscalefps, which
 * rounds denormal results correctly and gives 0 / inf on under- / overflow. x is clamped to
 * [-120, 89] first (-inf -> 0, +inf -> inf); NaN propagates. */
static inline __attribute__((always_inline)) __m512 fia_avx512_exp16(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-120.0f), x); /* NaN in x stays NaN (second operand) */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 r2 = _mm512_mul_ps(r, r);
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(e, n);
}

/* x . 2^e for 16 floats, sh = e << 23 (e <= 0, e >= -255): the AMLA exponent add on |x|; results
 * that leave the normal range become +-0, inf / NaN lanes are kept. */
static inline __attribute__((always_inline)) __m512 fia_avx512_exp_add16(__m512 x, __m512i sh) {
    const __m512i bits = _mm512_castps_si512(x);
    const __m512i mag = _mm512_and_si512(bits, _mm512_set1_epi32(0x7fffffff));
    const __m512i r = _mm512_add_epi32(mag, sh);
    const __mmask16 keep = _mm512_cmpgt_epi32_mask(r, _mm512_set1_epi32(0x007fffff));
    const __mmask16 special = _mm512_cmpge_epi32_mask(mag, _mm512_set1_epi32(0x7f800000));
    const __m512i sign = _mm512_xor_si512(bits, mag);
    const __m512i out = _mm512_mask_or_epi32(sign, keep, sign, r);
    return _mm512_castsi512_ps(_mm512_mask_mov_epi32(out, special, bits));
}

#endif /* FIA_KERNELS_AVX512_EXP_AVX512_H */
