/*
 * chain_avx2.c - the AVX2 chain kernels of chain_kernels.h: chain_rows.inc over 8-lane fp32 vectors.
 * f16 through F16C, bf16 by integer arithmetic (round to nearest even, NaN kept quiet, as
 * core/convert.h). Compiled with -mavx2 -mfma -mf16c.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/chain_kernels.h"

#define CV_AI static inline __attribute__((always_inline))

CV_AI __m256 cv8_load(const void *p, fia_dtype dt) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    case FIA_DTYPE_BFLOAT16:
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    default: return _mm256_loadu_ps((const float *)p);
    }
}

CV_AI __m128i cv8_bf16(__m256 f) {
    const __m256i u = _mm256_castps_si256(f);
    const __m256i absu = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i nan = _mm256_cmpgt_epi32(absu, _mm256_set1_epi32(0x7f800000));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    const __m256i h = _mm256_blendv_epi8(r, q, nan);
    /* 8 x 32-bit values < 65536 -> 8 x 16-bit */
    return _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

CV_AI void cv8_store(void *p, fia_dtype dt, __m256 v) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16:
        _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    case FIA_DTYPE_BFLOAT16: _mm_storeu_si128((__m128i *)p, cv8_bf16(v)); break;
    default: _mm256_storeu_ps((float *)p, v); break;
    }
}

CV_AI float cv8_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CV_AI float cv8_hmax(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

CV_AI void cv8_store_i8(int8_t *y, __m256 v) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)y, _mm_packs_epi16(p16, p16));
}

/* Non-temporal forms: streamed when the destination is aligned to the vector width. */
CV_AI void cv8_stream(void *p, fia_dtype dt, __m256 v) {
    const uintptr_t a = (uintptr_t)p;
    switch (dt) {
    case FIA_DTYPE_FLOAT16:
        if (a % 16 == 0)
            _mm_stream_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        else cv8_store(p, dt, v);
        break;
    case FIA_DTYPE_BFLOAT16:
        if (a % 16 == 0) _mm_stream_si128((__m128i *)p, cv8_bf16(v));
        else cv8_store(p, dt, v);
        break;
    default:
        if (a % 32 == 0) _mm256_stream_ps((float *)p, v);
        else cv8_store(p, dt, v);
        break;
    }
}

CV_AI void cv8_stream_i8(int8_t *y, __m256 v) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    const __m128i p8 = _mm_packs_epi16(p16, p16);
    if ((uintptr_t)y % 8 == 0) _mm_stream_si64((long long *)y, _mm_cvtsi128_si64(p8));
    else _mm_storel_epi64((__m128i *)y, p8);
}

/* The int32 forms of the quantization fast path (chain_rows.inc quant_impl). */
CV_AI __m128i cv8_i8_i(__m256i i) {
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    return _mm_packs_epi16(p16, p16);
}

CV_AI void cv8_store_i8_i(int8_t *y, __m256i i) { _mm_storel_epi64((__m128i *)y, cv8_i8_i(i)); }

CV_AI void cv8_stream_i8_i(int8_t *y, __m256i i) {
    const __m128i p8 = cv8_i8_i(i);
    if ((uintptr_t)y % 8 == 0) _mm_stream_si64((long long *)y, _mm_cvtsi128_si64(p8));
    else _mm_storel_epi64((__m128i *)y, p8);
}

/* The largest 16-bit pattern with the sign cleared over the full 16-element blocks of a row of
 * n 16-bit floats; *done = the elements covered. */
CV_AI uint16_t cv8_absmax_bits16(const void *x, int64_t n, int64_t *done) {
    const __m256i mag = _mm256_set1_epi16(0x7fff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    const uint16_t *p = x;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + i)), mag));
        m1 = _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + i + 16)), mag));
    }
    if (i + 16 <= n) {
        m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + i)), mag));
        i += 16;
    }
    m0 = _mm256_max_epu16(m0, m1);
    const __m128i q = _mm_max_epu16(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
    const __m128i c = _mm_minpos_epu16(_mm_xor_si128(q, _mm_set1_epi16(-1)));
    *done = i;
    return (uint16_t)(0xffffu - (uint16_t)_mm_cvtsi128_si32(c));
}

#define cv_stream(p, dt, v) cv8_stream((p), (dt), (v))
#define cv_stream_i8(y, v) cv8_stream_i8((y), (v))
#define cv_sfence() _mm_sfence()

#define CV_W 8
#define CV_ISA_NAME "avx2"
#define CV_NAME(x) x##_avx2
#define CV_K(slot) fia_chain_##slot##__avx2_u8
#define cv_f __m256
#define cv_load(p, dt) cv8_load((p), (dt))
#define cv_store(p, dt, v) cv8_store((p), (dt), (v))
#define cv_set1(f) _mm256_set1_ps(f)
#define cv_add(a, b) _mm256_add_ps((a), (b))
#define cv_sub(a, b) _mm256_sub_ps((a), (b))
#define cv_mul(a, b) _mm256_mul_ps((a), (b))
#define cv_div(a, b) _mm256_div_ps((a), (b))
#define cv_abs(a) _mm256_and_ps((a), _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)))
#define cv_max(a, b) _mm256_max_ps((a), (b))
#define cv_min(a, b) _mm256_min_ps((a), (b))
#define cv_rint(a) _mm256_round_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define cv_any_ngt(a, b) (_mm256_movemask_ps(_mm256_cmp_ps((a), (b), _CMP_NGT_UQ)) != 0)
#define cv_hsum(a) cv8_hsum(a)
#define cv_hmax(a) cv8_hmax(a)
#define cv_swap_pairs(a) _mm256_permute_ps((a), 0xB1)
#define cv_pair_sign() _mm256_setr_ps(-1.f, 1.f, -1.f, 1.f, -1.f, 1.f, -1.f, 1.f)
#define cv_store_i8(y, v) cv8_store_i8((y), (v))
#define cv_i __m256i
#define cv_cvt_i(v) _mm256_cvtps_epi32(v)
#define cv_i2f(i) _mm256_cvtepi32_ps(i)
#define cv_store_i8_i(y, i) cv8_store_i8_i((y), (i))
#define cv_stream_i8_i(y, i) cv8_stream_i8_i((y), (i))
#define cv_absmax_bits16(x, n, done) cv8_absmax_bits16((x), (n), (done))

#include "kernels/chain_rows.inc"
