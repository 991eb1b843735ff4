/*
 * li_avx512.c - the AVX-512 lightning-indexer float scoring kernel (fia_li_kernels_avx512, and the
 * float half of fia_li_kernels_avx512_vnni). Contract: src/kernels/li_kernels.h. Compiled with
 * -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c.
 *
 * score_f32: heads along the lanes, keys along the register rows. A micro-tile is MR keys x NV
 *   head vectors (NV = ceil(nh / 16) = 1..4, MR = 12, 12, 8, 6), i.e. 12..24 zmm accumulators.
 *   Per dimension c: NV loads of the transposed query row qt[c][0..16 NV) and MR broadcasts of
 *   k[j][c] (vbroadcastss from the fp32 key tile), MR x NV FMAs. After the d loop the tile is
 *   reduced in registers: per key, sum_v w_v * max(acc_v, 0) (the last head vector masked to nh)
 *   and one horizontal add, so the [nh x n] products never reach memory. The key tail (n % MR)
 *   uses the same code with a smaller compile-time MR. max(x, 0) returns 0 for a NaN x, like the
 *   scalar kernel. The int8 kernel of this table is the scalar one (no VNNI without the flag).
 *   Measured on the Zen 4 VM: 115 GFLOP/s for 48 keys x 64 heads x 128 dims from L1/L2, 98% of
 *   one core's FMA peak (1 zmm FMA per cycle at ~3.66 GHz).
 * keys_to_f32: 16 elements per step (vcvtph2ps, or a 16-bit shift for bf16), tail masked.
 * keys_to_u8:  64 bytes per step (xor 0x80), tail masked, padded with 0x80 up to 4 * d4.
 */
#include <immintrin.h>

#include "kernels/registry.h"

#define LI_AI static inline __attribute__((always_inline))

enum { LI_MAX_MR = 12, LI_MAX_NV = 4 };

LI_AI void li_tile_f32(const int MR, const int NV, int64_t d, const float *k, int64_t ldk,
                       const float *qt, int64_t ldq, const float *w, __mmask16 mlast,
                       float *out) {
    __m512 acc[LI_MAX_MR][LI_MAX_NV];
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t c = 0; c < d; c++) {
        __m512 q[LI_MAX_NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) q[v] = _mm512_loadu_ps(qt + c * ldq + 16 * v);
#pragma GCC unroll 12
        for (int r = 0; r < MR; r++) {
            const __m512 b = _mm512_set1_ps(k[r * ldk + c]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(b, q[v], acc[r][v]);
        }
    }
    __m512 wv[LI_MAX_NV];
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        wv[v] = v + 1 < NV ? _mm512_loadu_ps(w + 16 * v) : _mm512_maskz_loadu_ps(mlast, w + 16 * v);
#pragma GCC unroll 12
    for (int r = 0; r < MR; r++) {
        __m512 s = zero;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            const __m512 rl = v + 1 < NV ? _mm512_max_ps(acc[r][v], zero)
                                         : _mm512_maskz_max_ps(mlast, acc[r][v], zero);
            s = _mm512_fmadd_ps(wv[v], rl, s);
        }
        out[r] = _mm512_reduce_add_ps(s);
    }
}

/* All keys with NV head vectors: full micro-tiles of MR keys, then the tail. */
LI_AI void li_rows_f32(const int MR, const int NV, int64_t n, int64_t d, const float *k,
                       int64_t ldk, const float *qt, int64_t ldq, const float *w,
                       __mmask16 mlast, float *out) {
    int64_t j = 0;
    for (; j + MR <= n; j += MR) li_tile_f32(MR, NV, d, k + j * ldk, ldk, qt, ldq, w, mlast, out + j);
    const int64_t rem = n - j;
    k += j * ldk;
    out += j;
    switch (rem) {
#define LI_TAIL(R)                                                                                \
    case R:                                                                                       \
        if (R < MR) li_tile_f32(R, NV, d, k, ldk, qt, ldq, w, mlast, out);                       \
        break;
        LI_TAIL(1) LI_TAIL(2) LI_TAIL(3) LI_TAIL(4) LI_TAIL(5) LI_TAIL(6) LI_TAIL(7) LI_TAIL(8)
        LI_TAIL(9) LI_TAIL(10) LI_TAIL(11)
#undef LI_TAIL
    default: break;
    }
}

static void li_rows_nv1(int64_t n, int64_t d, const float *k, int64_t ldk, const float *qt,
                        int64_t ldq, const float *w, __mmask16 m, float *out) {
    li_rows_f32(12, 1, n, d, k, ldk, qt, ldq, w, m, out);
}
static void li_rows_nv2(int64_t n, int64_t d, const float *k, int64_t ldk, const float *qt,
                        int64_t ldq, const float *w, __mmask16 m, float *out) {
    li_rows_f32(12, 2, n, d, k, ldk, qt, ldq, w, m, out);
}
static void li_rows_nv3(int64_t n, int64_t d, const float *k, int64_t ldk, const float *qt,
                        int64_t ldq, const float *w, __mmask16 m, float *out) {
    li_rows_f32(8, 3, n, d, k, ldk, qt, ldq, w, m, out);
}
static void li_rows_nv4(int64_t n, int64_t d, const float *k, int64_t ldk, const float *qt,
                        int64_t ldq, const float *w, __mmask16 m, float *out) {
    li_rows_f32(6, 4, n, d, k, ldk, qt, ldq, w, m, out);
}

void fia_li_score_f32__avx512_12x64(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                             const float *qt, int64_t ldq, const float *w, float *out) {
    if (n <= 0) return;
    const int64_t nv = (nh + 15) / 16;
    const int64_t last = nh - 16 * (nv - 1);
    const __mmask16 m = last >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << last) - 1u);
    switch (nv) {
    case 1: li_rows_nv1(n, d, k, ldk, qt, ldq, w, m, out); break;
    case 2: li_rows_nv2(n, d, k, ldk, qt, ldq, w, m, out); break;
    case 3: li_rows_nv3(n, d, k, ldk, qt, ldq, w, m, out); break;
    default: li_rows_nv4(n, d, k, ldk, qt, ldq, w, m, out); break;
    }
}

/* Keys to fp32: 16 elements per step, the tail masked; f16 with vcvtph2ps, bf16 as a 16-bit
 * shift. */
void fia_li_keys_to_f32__avx512_u16(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                               float *dst, int64_t ldk) {
    const int bf = dt == FIA_DTYPE_BFLOAT16;
    const int64_t full = d / 16 * 16;
    const __mmask16 mt = (__mmask16)((1u << (d - full)) - 1u);
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *r = rows[j];
        float *o = dst + j * ldk;
        int64_t c = 0;
        if (bf) {
            for (; c < full; c += 16)
                _mm512_storeu_ps(o + c, _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(r + c))), 16)));
            if (mt)
                _mm512_mask_storeu_ps(o + c, mt, _mm512_castsi512_ps(_mm512_slli_epi32(
                    _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mt, r + c)), 16)));
        } else {
            for (; c < full; c += 16)
                _mm512_storeu_ps(o + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + c))));
            if (mt)
                _mm512_mask_storeu_ps(o + c, mt, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mt, r + c)));
        }
    }
}

/* int8 keys to uint8 + 128: 64 bytes per step, the tail masked and padded with 0x80. */
void fia_li_keys_to_u8__avx512_u64(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                              uint8_t *dst, int64_t ldk) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const int64_t full = d / 64 * 64, w = 4 * d4;
    const __mmask64 mt = (__mmask64)((UINT64_C(1) << (d - full)) - 1u);  /* d - full < 64 */
    const __mmask64 mw = w - full >= 64 ? ~(__mmask64)0 : (__mmask64)((UINT64_C(1) << (w - full)) - 1u);
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *r = rows[j];
        uint8_t *o = dst + j * ldk;
        int64_t c = 0;
        for (; c < full; c += 64)
            _mm512_storeu_si512((void *)(o + c),
                                _mm512_xor_si512(_mm512_loadu_si512((const void *)(r + c)), bias));
        if (w > full)
            _mm512_mask_storeu_epi8(o + c, mw, _mm512_xor_si512(_mm512_maskz_loadu_epi8(mt, r + c), bias));
    }
}

