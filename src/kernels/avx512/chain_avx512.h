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

/* The rounded bf16 of each fp32 lane in its low 16 bits (round to nearest even; NaN kept quiet). */
CV_AI __m512i cv16_bf16_bits(__m512 f) {
    const __m512i u = _mm512_castps_si512(f);
    const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i h = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    return _mm512_mask_mov_epi32(h, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

/* The rounded bf16 of 16 fp32 lanes. */
CV_AI __m256i cv16_bf16(__m512 f) { return _mm512_cvtepi32_epi16(cv16_bf16_bits(f)); }

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

/* The int32 forms of the quantization fast path (chain_rows.inc quant_impl): conversion in the
 * current rounding mode, back to fp32, and the saturating int32 -> int8 stores. */
CV_AI void cv16_store_i8_i(int8_t *y, __m512i i) {
    _mm_storeu_si128((__m128i *)y, _mm512_cvtsepi32_epi8(i));
}

CV_AI void cv16_stream_i8_i(int8_t *y, __m512i i) {
    const __m128i q = _mm512_cvtsepi32_epi8(i);
    if ((uintptr_t)y % 16 == 0) _mm_stream_si128((__m128i *)y, q);
    else _mm_storeu_si128((__m128i *)y, q);
}

/* The largest of the 32 unsigned 16-bit lanes of m. */
CV_AI uint16_t cv16_hmax_epu16(__m512i m) {
    const __m256i h = _mm256_max_epu16(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
    const __m128i q = _mm_max_epu16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    /* max = 0xffff - min(0xffff - v) */
    const __m128i c = _mm_minpos_epu16(_mm_xor_si128(q, _mm_set1_epi16(-1)));
    return (uint16_t)(0xffffu - (uint16_t)_mm_cvtsi128_si32(c));
}

/* The largest 16-bit pattern with the sign cleared over the full 32-element blocks of a row of
 * n 16-bit floats; *done = the elements covered. */
CV_AI uint16_t cv16_absmax_bits16(const void *x, int64_t n, int64_t *done) {
    const __m512i mag = _mm512_set1_epi16(0x7fff);
    __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
    const uint16_t *p = x;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(p + i), mag));
        m1 = _mm512_max_epu16(m1, _mm512_and_si512(_mm512_loadu_si512(p + i + 32), mag));
    }
    if (i + 32 <= n) {
        m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(p + i), mag));
        i += 32;
    }
    *done = i;
    return cv16_hmax_epu16(_mm512_max_epu16(m0, m1));
}

CV_AI __m512 cv16_bf16_lo(__m512i v) {
    return _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), v));
}
CV_AI __m512 cv16_bf16_hi(__m512i v) {
    return _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), v));
}

/* The elementwise pass of a bf16 RMSNorm row with bf16 gamma and output (chain_rows.inc
 * rms_norm_impl without x2): y = x * rstd * gamma (* alpha), 32 elements per step read in the
 * unpack order of cv16_bf16_lo/hi below (the arithmetic is per element, so the order does not
 * change a bit); PACK2(lo, hi) turns the two fp32 vectors back into 32 bf16 in element order.
 * Prefetches the next row (nt) as the template does. Returns the elements done (n rounded down
 * to 32). */
#define CV16_RMS_BF16_PASS2(NAME, PACK2)                                                          \
    static inline int64_t NAME(const uint16_t *x, const uint16_t *g, int64_t n, float rstd,    \
                               float alpha, int scaled, uint16_t *y, int nt) {                    \
        const __m512 vr = _mm512_set1_ps(rstd), va = _mm512_set1_ps(alpha);                     \
        int64_t i = 0;                                                                            \
        for (; i + 32 <= n; i += 32) {                                                            \
            if (nt) __builtin_prefetch(x + n + i, 0, 2);                                          \
            const __m512i xv = _mm512_loadu_si512(x + i), gv = _mm512_loadu_si512(g + i);       \
            __m512 lo = _mm512_mul_ps(_mm512_mul_ps(cv16_bf16_lo(xv), vr), cv16_bf16_lo(gv));   \
            __m512 hi = _mm512_mul_ps(_mm512_mul_ps(cv16_bf16_hi(xv), vr), cv16_bf16_hi(gv));   \
            if (scaled) lo = _mm512_mul_ps(lo, va), hi = _mm512_mul_ps(hi, va);                  \
            const __m512i o = PACK2(lo, hi);                                                      \
            if (nt && (uintptr_t)(y + i) % 64 == 0) _mm512_stream_si512((void *)(y + i), o);     \
            else _mm512_storeu_si512(y + i, o);                                                   \
        }                                                                                         \
        return i;                                                                                 \
    }

/* vpackusdw undoes the unpack order lane by lane (values < 65536: no saturation). */
CV_AI __m512i cv16_pack2_bf16(__m512 lo, __m512 hi) {
    return _mm512_packus_epi32(cv16_bf16_bits(lo), cv16_bf16_bits(hi));
}

/* The bf16 quantization rows (chain_rows.inc quant_impl with a normal scale and inverse; x and
 * the optional smoothing row s in bf16): 64 elements per block, read as two 32-element vectors
 * whose bf16 halves vpunpck{l,h}wd place into fp32 lanes out of order (lane k of 128 bits: the
 * low unpack holds elements 8k..8k+3, the high one 8k+4..8k+7); vpackssdw of the two int32
 * results restores the order, vpacksswb and one vpermq make the 64 bytes. Every lane gets
 * i = cvt(x * s * inv) with the fast-path test of quant_impl; a block with a failing lane is
 * redone after its chunk (its failing vectors with the division: rint, clamp), from a list filled
 * without a branch (a mispredicted branch per failing block cost more than the redo). The blocks go
 * to a chunk buffer in L1 first, then to y with plain or (nt, aligned) streaming 64-byte stores.
 * Returns the elements done (n rounded down to 64). Results are the division's, bit for bit. */

/* Vector v (0..3) of the 64-element block at x (times s's): the unpack order above. */
CV_AI __m512 cv16_bf16_blockvec(const uint16_t *x, const uint16_t *s, int v) {
    const __m512i xv = _mm512_loadu_si512(x + (v / 2) * 32);
    __m512 a = v % 2 ? cv16_bf16_hi(xv) : cv16_bf16_lo(xv);
    if (s) {
        const __m512i sv = _mm512_loadu_si512(s + (v / 2) * 32);
        a = _mm512_mul_ps(a, v % 2 ? cv16_bf16_hi(sv) : cv16_bf16_lo(sv));
    }
    return a;
}

CV_AI __m512i cv16_pack64(__m512i q0, __m512i q1, __m512i q2, __m512i q3) {
    const __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(q0, q1), _mm512_packs_epi32(q2, q3));
    return _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), b);
}

/* The fast conversion of one vector; *good keeps its lane bits where it holds (a masked
 * compare: the AND over the vectors of a block costs nothing). */
CV_AI __m512i cv16_q_fast(__m512 a, __m512 vi, __mmask16 *good) {
    const __m512 p = _mm512_mul_ps(a, vi);
    const __m512i q = _mm512_cvtps_epi32(p);
    const __m512 f = _mm512_abs_ps(_mm512_sub_ps(p, _mm512_cvtepi32_ps(q)));
    *good = _mm512_mask_cmp_ps_mask(*good, f, _mm512_set1_ps(0.5f - 0x1p-13f), _CMP_LT_OQ);
    return q;
}

/* The division form: sat(rint(a / scale)) as quant_impl's vector loop computes it. */
CV_AI __m512i cv16_q_div(__m512 a, __m512 vs) {
    const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(a, vs),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtps_epi32(
        _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(-128.0f)), _mm512_set1_ps(127.0f)));
}

/* xn (optional, a bf16 row of n elements, no smoothing): while quantizing x, the loop also
 * takes the largest bit pattern with the sign cleared over xn's first (n rounded down to 64)
 * elements into *xn_bits, as cv16_absmax_bits16 does (the max of the next row of a per-token
 * quantization, whose loads then overlap this row's arithmetic instead of waiting alone on
 * memory after it); the next row is then prefetched a kilobyte ahead of those loads (into L1)
 * instead of the row after x. */
static inline int64_t cv16_quant_bf16_rows(const uint16_t *x, const uint16_t *s, int64_t n,
                                           float scale, float inv, int8_t *y, int nt,
                                           const uint16_t *xn, uint16_t *xn_bits) {
    enum { CH = 1024 };
    _Alignas(64) int8_t tmp[CH];
    int32_t bad[CH / 64];
    const __m512 vi = _mm512_set1_ps(inv), vs = _mm512_set1_ps(scale);
    const __m512i mag = _mm512_set1_epi16(0x7fff);
    __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
    int64_t i0 = 0;
    while (i0 + 64 <= n) {
        const int64_t m = n - i0 >= CH ? CH : (n - i0) / 64 * 64;
        const uint16_t *xc = x + i0, *sc = s ? s + i0 : NULL;
        int nb = 0;
        for (int32_t j = 0; j < m; j += 64) {
            const uint16_t *xp = xc + j, *sp = sc ? sc + j : NULL;
            if (xn) {
                const uint16_t *np = xn + i0 + j;
                __builtin_prefetch(np + 512, 0, 3);
                __builtin_prefetch(np + 512 + 32, 0, 3);
                m0 = _mm512_max_epu16(m0, _mm512_and_si512(_mm512_loadu_si512(np), mag));
                m1 = _mm512_max_epu16(m1, _mm512_and_si512(_mm512_loadu_si512(np + 32), mag));
            } else if (nt) {
                __builtin_prefetch(xp + n, 0, 2);
                __builtin_prefetch(xp + n + 32, 0, 2);
            }
            __mmask16 good = 0xffff;
            const __m512i q0 = cv16_q_fast(cv16_bf16_blockvec(xp, sp, 0), vi, &good);
            const __m512i q1 = cv16_q_fast(cv16_bf16_blockvec(xp, sp, 1), vi, &good);
            const __m512i q2 = cv16_q_fast(cv16_bf16_blockvec(xp, sp, 2), vi, &good);
            const __m512i q3 = cv16_q_fast(cv16_bf16_blockvec(xp, sp, 3), vi, &good);
            _mm512_store_si512(tmp + j, cv16_pack64(q0, q1, q2, q3));
            bad[nb] = j;
            nb += good != 0xffff;
        }
        for (int b = 0; b < nb; b++) { /* the failing blocks: their failing vectors divide */
            const int32_t j = bad[b];
            const uint16_t *xp = xc + j, *sp = sc ? sc + j : NULL;
            __m512i q[4];
            for (int v = 0; v < 4; v++) {
                const __m512 a = cv16_bf16_blockvec(xp, sp, v);
                __mmask16 good = 0xffff;
                q[v] = cv16_q_fast(a, vi, &good);
                if (good != 0xffff) q[v] = cv16_q_div(a, vs);
            }
            _mm512_store_si512(tmp + j, cv16_pack64(q[0], q[1], q[2], q[3]));
        }
        int8_t *yp = y + i0;
        for (int32_t j = 0; j < m; j += 64) {
            const __m512i v = _mm512_load_si512(tmp + j);
            if (nt && (uintptr_t)(yp + j) % 64 == 0) _mm512_stream_si512((void *)(yp + j), v);
            else _mm512_storeu_si512(yp + j, v);
        }
        i0 += m;
    }
    if (xn) *xn_bits = cv16_hmax_epu16(_mm512_max_epu16(m0, m1));
    return i0;
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
#define cv_i __m512i
#define cv_cvt_i(v) _mm512_cvtps_epi32(v)
#define cv_i2f(i) _mm512_cvtepi32_ps(i)
#define cv_store_i8_i(y, i) cv16_store_i8_i((y), (i))
#define cv_stream_i8_i(y, i) cv16_stream_i8_i((y), (i))
#define cv_absmax_bits16(x, n, done) cv16_absmax_bits16((x), (n), (done))
CV16_RMS_BF16_PASS2(cv16_rms_bf16_pass2, cv16_pack2_bf16)
#define cv_rms_bf16_pass2(x, g, n, rstd, alpha, scaled, y, nt) \
    cv16_rms_bf16_pass2((x), (g), (n), (rstd), (alpha), (scaled), (y), (nt))
#define cv_quant_bf16_rows(x, s, n, scale, inv, y, nt, xn, xn_bits) \
    cv16_quant_bf16_rows((x), (s), (n), (scale), (inv), (y), (nt), (xn), (xn_bits))

#endif /* FIA_KERNELS_AVX512_CHAIN_AVX512_H */
