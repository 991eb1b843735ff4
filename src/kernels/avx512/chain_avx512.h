/*
 * chain_avx512.h - the 16-lane fp32 vector vocabulary of chain_rows.inc for AVX-512 (f16
 * through F16C, bf16 by integer arithmetic: round to nearest even, NaN kept quiet, as
 * core/convert.h), shared by avx512/chain_avx512.c and avx512bf16/chain_avx512bf16.c (which
 * replaces the bf16 stores). The includer defines CV_NAME and CV_K, then includes chain_rows.inc.
 */
#ifndef FIA_KERNELS_AVX512_CHAIN_AVX512_H
#define FIA_KERNELS_AVX512_CHAIN_AVX512_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/chain_kernels.h"

#define CV_AI static inline __attribute__((always_inline))

CV_AI __m512 cv16_load(const void *p, fia_dtype dt) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    case FIA_DTYPE_BFLOAT16:
        return _mm512_castsi512_ps(
            _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
    default: return _mm512_loadu_ps((const float *)p);
    }
}

CV_AI __m256i cv16_bf16(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i h = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    h = _mm512_mask_mov_epi32(h, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    return _mm512_cvtepi32_epi16(h);
}

CV_AI void cv16_store(void *p, fia_dtype dt, __m512 v) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16:
        _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    case FIA_DTYPE_BFLOAT16: _mm256_storeu_si256((__m256i *)p, cv16_bf16(v)); break;
    default: _mm512_storeu_ps((float *)p, v); break;
    }
}

CV_AI float cv16_hsum(__m512 v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CV_AI float cv16_hmax(__m512 v) {
    const __m256 a = _mm256_max_ps(_mm512_castps512_ps256(v),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CV_AI void cv16_store_i8(int8_t *y, __m512 v) {
    _mm_storeu_si128((__m128i *)y, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
}

/* Non-temporal forms: streamed when the destination is aligned to the vector width. */
CV_AI void cv16_stream(void *p, fia_dtype dt, __m512 v) {
    const uintptr_t a = (uintptr_t)p;
    switch (dt) {
    case FIA_DTYPE_FLOAT16:
        if (a % 32 == 0)
            _mm256_stream_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        else cv16_store(p, dt, v);
        break;
    case FIA_DTYPE_BFLOAT16:
        if (a % 32 == 0) _mm256_stream_si256((__m256i *)p, cv16_bf16(v));
        else cv16_store(p, dt, v);
        break;
    default:
        if (a % 64 == 0) _mm512_stream_ps((float *)p, v);
        else cv16_store(p, dt, v);
        break;
    }
}

CV_AI void cv16_stream_i8(int8_t *y, __m512 v) {
    const __m128i q = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v));
    if ((uintptr_t)y % 16 == 0) _mm_stream_si128((__m128i *)y, q);
    else _mm_storeu_si128((__m128i *)y, q);
}

#define cv_stream(p, dt, v) cv16_stream((p), (dt), (v))
#define cv_stream_i8(y, v) cv16_stream_i8((y), (v))
#define cv_sfence() _mm_sfence()

#define CV_W 16
#define cv_f __m512
#define cv_load(p, dt) cv16_load((p), (dt))
#define cv_store(p, dt, v) cv16_store((p), (dt), (v))
#define cv_set1(f) _mm512_set1_ps(f)
#define cv_add(a, b) _mm512_add_ps((a), (b))
#define cv_sub(a, b) _mm512_sub_ps((a), (b))
#define cv_mul(a, b) _mm512_mul_ps((a), (b))
#define cv_div(a, b) _mm512_div_ps((a), (b))
#define cv_abs(a) _mm512_abs_ps(a)
#define cv_max(a, b) _mm512_max_ps((a), (b))
#define cv_min(a, b) _mm512_min_ps((a), (b))
#define cv_rint(a) _mm512_roundscale_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define cv_any_ngt(a, b) (_mm512_cmp_ps_mask((a), (b), _CMP_NGT_UQ) != 0) /* a lane !(a > b) */
#define cv_hsum(a) cv16_hsum(a)
#define cv_hmax(a) cv16_hmax(a)
#define cv_swap_pairs(a) _mm512_permute_ps((a), 0xB1)
#define cv_pair_sign()                                                                            \
    _mm512_setr_ps(-1.f, 1.f, -1.f, 1.f, -1.f, 1.f, -1.f, 1.f, -1.f, 1.f, -1.f, 1.f, -1.f, 1.f,  \
                   -1.f, 1.f)
#define cv_store_i8(y, v) cv16_store_i8((y), (v))

#endif /* FIA_KERNELS_AVX512_CHAIN_AVX512_H */
