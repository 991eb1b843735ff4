/*
 * qk_bf16.c - MLA Q.K^T on vdpbf16ps (contract: kernels/bf16dp.h). Register block: 8 query rows
 * x 32 keys (16 accumulators); per pair of dims, two K vectors (32 keys) and one broadcast query
 * pair per row. Each output is one lane's chain over the 288 pairs in order.
 */
#include <immintrin.h>

#include "kernels/bf16dp.h"

#define FIA_AI static inline __attribute__((always_inline))

static inline __m512bh qpair(const uint16_t *q, int64_t d2) {
    uint32_t a;
    __builtin_memcpy(&a, q + 2 * d2, sizeof a);
    return (__m512bh)_mm512_set1_epi32((int32_t)a);
}

/* 8 rows x 32 keys: 16 accumulators in registers */
static void qk_8rows(const uint16_t *q, int64_t ldq, const uint32_t *kt, const __m512 vs,
                     float *s, int64_t lds, __mmask16 m0, __mmask16 m1) {
#define ROW_DECL(i) __m512 a##i##0 = _mm512_setzero_ps(), a##i##1 = _mm512_setzero_ps();
    ROW_DECL(0) ROW_DECL(1) ROW_DECL(2) ROW_DECL(3) ROW_DECL(4) ROW_DECL(5) ROW_DECL(6) ROW_DECL(7)
    for (int64_t d2 = 0; d2 < FIA_BF16_MLA_D2; d2++) {
        const __m512bh k0 = (__m512bh)_mm512_loadu_si512(kt + d2 * FIA_BF16_KT_KEYS);
        const __m512bh k1 = (__m512bh)_mm512_loadu_si512(kt + d2 * FIA_BF16_KT_KEYS + 16);
#define ROW_DP(i)                                                                              \
    {                                                                                          \
        const __m512bh qa = qpair(q + (i) * ldq, d2);                                          \
        a##i##0 = _mm512_dpbf16_ps(a##i##0, qa, k0);                                           \
        a##i##1 = _mm512_dpbf16_ps(a##i##1, qa, k1);                                           \
    }
        ROW_DP(0) ROW_DP(1) ROW_DP(2) ROW_DP(3) ROW_DP(4) ROW_DP(5) ROW_DP(6) ROW_DP(7)
    }
#define ROW_ST(i)                                                                              \
    _mm512_mask_storeu_ps(s + (i) * lds, m0, _mm512_mul_ps(a##i##0, vs));                      \
    _mm512_mask_storeu_ps(s + (i) * lds + 16, m1, _mm512_mul_ps(a##i##1, vs));
    ROW_ST(0) ROW_ST(1) ROW_ST(2) ROW_ST(3) ROW_ST(4) ROW_ST(5) ROW_ST(6) ROW_ST(7)
#undef ROW_DECL
#undef ROW_DP
#undef ROW_ST
}

static void qk_1row(const uint16_t *q, const uint32_t *kt, const __m512 vs, float *s,
                    __mmask16 m0, __mmask16 m1) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (int64_t d2 = 0; d2 < FIA_BF16_MLA_D2; d2++) {
        const __m512bh qa = qpair(q, d2);
        a0 = _mm512_dpbf16_ps(a0, qa, (__m512bh)_mm512_loadu_si512(kt + d2 * FIA_BF16_KT_KEYS));
        a1 = _mm512_dpbf16_ps(a1, qa, (__m512bh)_mm512_loadu_si512(kt + d2 * FIA_BF16_KT_KEYS + 16));
    }
    _mm512_mask_storeu_ps(s, m0, _mm512_mul_ps(a0, vs));
    _mm512_mask_storeu_ps(s + 16, m1, _mm512_mul_ps(a1, vs));
}

void fia_bf16_qk_avx512bf16(int64_t m, int64_t n, const uint16_t *q, int64_t ldq,
                            const uint32_t *kt, float scale, float *s, int64_t lds) {
    const __m512 vs = _mm512_set1_ps(scale);
    const __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __mmask16 m1 = n >= 32 ? (__mmask16)0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
    int64_t r = 0;
    for (; r + 8 <= m; r += 8) qk_8rows(q + r * ldq, ldq, kt, vs, s + r * lds, lds, m0, m1);
    for (; r < m; r++) qk_1row(q + r * ldq, kt, vs, s + r * lds, m0, m1);
}
