/*
 * li_i8_epilogue.h - the epilogue of the int8 lightning-indexer scoring kernels (contract:
 * kernels/li_kernels.h, slot score_i8), shared by the AVX-512 VNNI kernel
 * (avx512vnni/li_vnni.c) and the AMX one (amx/li_i8_amx.c) so their scores are bitwise equal.
 *
 * One key's score from its int32 dot products with the heads (up to 4 vectors of 16 heads):
 * minus qbias (the exact +128 bias), ReLU in int32, fp32 (f16: times 1/1024, vcvtps2ph /
 * vcvtph2ps, the contract's fp16 rounding point), times ws summed over the head vectors in
 * order (the last vector masked to nh), one horizontal add, times sk. Included only by files
 * built with AVX-512 (F16C in AVX-512F).
 */
#ifndef FIA_KERNELS_LI_I8_EPILOGUE_H
#define FIA_KERNELS_LI_I8_EPILOGUE_H

#include <immintrin.h>
#include <stdint.h>

/* The per-call constants: head weights (last vector masked) and qbias, NV vectors each. */
typedef struct fia_li_i8_epi {
    __m512 w0, w1, w2, w3;
    __m512i b0, b1, b2, b3;
} fia_li_i8_epi;

static inline __attribute__((always_inline)) fia_li_i8_epi
fia_li_i8_epi_init(const int NV, const int32_t *qbias, const float *ws, __mmask16 mlast) {
    const __m512i zero = _mm512_setzero_si512();
    fia_li_i8_epi e;
    e.w0 = NV > 1 ? _mm512_loadu_ps(ws) : _mm512_maskz_loadu_ps(mlast, ws);
    e.w1 = NV > 2 ? _mm512_loadu_ps(ws + 16)
                  : NV > 1 ? _mm512_maskz_loadu_ps(mlast, ws + 16) : _mm512_setzero_ps();
    e.w2 = NV > 3 ? _mm512_loadu_ps(ws + 32)
                  : NV > 2 ? _mm512_maskz_loadu_ps(mlast, ws + 32) : _mm512_setzero_ps();
    e.w3 = NV > 3 ? _mm512_maskz_loadu_ps(mlast, ws + 48) : _mm512_setzero_ps();
    e.b0 = _mm512_loadu_si512((const void *)qbias);
    e.b1 = NV > 1 ? _mm512_loadu_si512((const void *)(qbias + 16)) : zero;
    e.b2 = NV > 2 ? _mm512_loadu_si512((const void *)(qbias + 32)) : zero;
    e.b3 = NV > 3 ? _mm512_loadu_si512((const void *)(qbias + 48)) : zero;
    return e;
}

/* R(ReLU(a - bias)) of one head vector. */
static inline __attribute__((always_inline)) __m512 fia_li_i8_relu(const int F16, __m512i a,
                                                                   __m512i bias) {
    const __m512 x = _mm512_cvtepi32_ps(_mm512_max_epi32(_mm512_sub_epi32(a, bias),
                                                         _mm512_setzero_si512()));
    if (!F16) return x;
    /* F16: the contract's rounding point, fp16(ReLU(dot) / 1024) (vcvtps2ph, nearest even) */
    return _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_mul_ps(x, _mm512_set1_ps(1.0f / 1024.0f)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* sk * sum_h ws[h] R(ReLU(a[h] - qbias[h])) of one key, a0..a3 its NV accumulators. */
static inline __attribute__((always_inline)) float
fia_li_i8_score(const int F16, const int NV, const fia_li_i8_epi *e, __m512i a0, __m512i a1,
                __m512i a2, __m512i a3, float sk) {
    __m512 s = _mm512_mul_ps(e->w0, fia_li_i8_relu(F16, a0, e->b0));
    if (NV > 1) s = _mm512_fmadd_ps(e->w1, fia_li_i8_relu(F16, a1, e->b1), s);
    if (NV > 2) s = _mm512_fmadd_ps(e->w2, fia_li_i8_relu(F16, a2, e->b2), s);
    if (NV > 3) s = _mm512_fmadd_ps(e->w3, fia_li_i8_relu(F16, a3, e->b3), s);
    return sk * _mm512_reduce_add_ps(s);
}

#endif /* FIA_KERNELS_LI_I8_EPILOGUE_H */
