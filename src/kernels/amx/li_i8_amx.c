/*
 * li_i8_amx.c - the quant lightning indexer's int8 scoring on AMX tiles (contract:
 * kernels/li_kernels.h, slot score_i8).
 *
 * Per group of 16 keys: the int32 dot products C[key][head] = sum_c ku[key][c] * q[head][c] on
 * tiles (tdpbusd: u8 keys x s8 query, exact int32 sums): tiles 0-3 C (16 keys x 16 heads each,
 * up to 64 heads), tile 4 A = 16 key rows x 64 bytes read in place at stride ldk, tiles 5, 6 B =
 * the packed query block of 16 groups x 16 heads x 4 bytes (qp is already the B tile layout:
 * rows ldq * 4 bytes apart), over the full 64-byte blocks of the 4 d4 key bytes. A last group of
 * fewer than 16 keys reconfigures the tiles to its row count. The tiles go to a 16 x 64 int32
 * stage; then per key, on AVX-512: the groups past the last full block (d4 % 16) are added with
 * vpdpbusd, and the VNNI kernel's epilogue follows, the same code (kernels/li_i8_epilogue.h:
 * minus qbias, ReLU in int32, fp32, the f16 rounding point, times ws summed over the head
 * vectors in order, one horizontal add, times sk). The integer part is exact in any order, so the scores are bitwise
 * those of the VNNI kernel (avx512vnni/li_vnni.c).
 * Fewer than 16 groups (d4 < 16), fewer than 16 keys or at most 16 heads run the VNNI kernel
 * itself (no faster on tiles: per call, 48 keys x 64 heads x 128 dims 2.45k cycles vs VNNI
 * 3.08k, 16 keys 0.91k vs 1.02k, but 5 keys 0.61k vs 0.31k and 16 heads 0.99k vs 0.97k).
 * Compiled with the AMX flags plus avx512vnni (target attribute); registered with
 * FIA_CPU_AVX512 | FIA_CPU_AVX512VNNI | FIA_CPU_AMX_INT8 (the AMX bit includes the OS permission
 * for the tile data).
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/amx/amx_tiles.h"
#include "kernels/li_i8_epilogue.h"
#include "kernels/registry.h"

#define LI_AI static inline __attribute__((always_inline))
#define LI_VNNI __attribute__((target("avx512vnni")))

/* Tiles 0-3 (C) and 4 (A) get m rows, 5 and 6 (B) 16 rows; 64 bytes a row. */
static void li_amx_config(int m) {
    fia_amx_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 7; i++) c.colsb[i] = 64, c.rows[i] = (uint8_t)(i < 5 ? m : 16);
    _tile_loadconfig(&c);
}

/* The tile products of one group of keys (rows configured to its count) into the stage st. */
LI_AI void li_amx_tiles(const int NV, int64_t ndb, const uint8_t *k, int64_t ldk,
                        const int8_t *qp, int64_t ldq, int32_t *st) {
    const int64_t qstride = ldq * 4;
    _tile_zero(0);
    if (NV > 1) _tile_zero(1);
    if (NV > 2) _tile_zero(2);
    if (NV > 3) _tile_zero(3);
    FIA_AMX_KEYS_X_HEADS(_tile_dpbusd, NV, k, ldk, qp, qstride, ndb);
    _tile_stored(0, st, 256);
    if (NV > 1) _tile_stored(1, st + 16, 256);
    if (NV > 2) _tile_stored(2, st + 32, 256);
    if (NV > 3) _tile_stored(3, st + 48, 256);
}

/* The epilogue of one group of m keys from its stage: the depth tail, then the VNNI kernel's
 * arithmetic. */
LI_AI LI_VNNI void li_amx_epilogue(const int F16, const int NV, int64_t m, int64_t d4, int64_t ndb,
                                   const uint8_t *k, int64_t ldk, const int8_t *qp, int64_t ldq,
                                   const int32_t *qbias, const float *ws, const float *sk,
                                   __mmask16 mlast, float *out, const int32_t *st) {
    const int64_t qstride = ldq * 4;

    /* the VNNI kernel's epilogue (kernels/li_i8_epilogue.h), value for value */
    const __m512i zero = _mm512_setzero_si512();
    const fia_li_i8_epi epi = fia_li_i8_epi_init(NV, qbias, ws, mlast);
    for (int64_t j = 0; j < m; j++) {
        const int32_t *sj = st + 64 * j;
        __m512i a0 = _mm512_loadu_si512((const void *)sj);
        __m512i a1 = NV > 1 ? _mm512_loadu_si512((const void *)(sj + 16)) : zero;
        __m512i a2 = NV > 2 ? _mm512_loadu_si512((const void *)(sj + 32)) : zero;
        __m512i a3 = NV > 3 ? _mm512_loadu_si512((const void *)(sj + 48)) : zero;
        for (int64_t c4 = 16 * ndb; c4 < d4; c4++) {
            const int8_t *qc = qp + c4 * qstride;
            int32_t kd;
            memcpy(&kd, k + j * ldk + c4 * 4, 4);
            const __m512i b = _mm512_set1_epi32(kd);
            a0 = _mm512_dpbusd_epi32(a0, b, _mm512_loadu_si512((const void *)qc));
            if (NV > 1) a1 = _mm512_dpbusd_epi32(a1, b, _mm512_loadu_si512((const void *)(qc + 64)));
            if (NV > 2) a2 = _mm512_dpbusd_epi32(a2, b, _mm512_loadu_si512((const void *)(qc + 128)));
            if (NV > 3) a3 = _mm512_dpbusd_epi32(a3, b, _mm512_loadu_si512((const void *)(qc + 192)));
        }
        out[j] = fia_li_i8_score(F16, NV, &epi, a0, a1, a2, a3, sk[j]);
    }
}

/* The groups of 16 keys, the epilogue one group behind the tiles (two stages): the AVX-512
 * epilogue of group i - 1 runs while the tile unit computes group i. */
LI_AI LI_VNNI void li_amx_rows(const int F16, const int NV, int64_t n, int64_t d4,
                               const uint8_t *ku, int64_t ldk, const int8_t *qp, int64_t ldq,
                               const int32_t *qbias, const float *ws, const float *sk,
                               __mmask16 mlast, float *out) {
    _Alignas(64) int32_t st[2][16 * 64];
    const int64_t ndb = d4 / 16, ng = (n + 15) / 16;
    int cfg = -1;
    for (int64_t g = 0; g <= ng; g++) {
        if (g < ng) {
            const int m = n - 16 * g < 16 ? (int)(n - 16 * g) : 16;
            if (m != cfg) li_amx_config(m), cfg = m;
            li_amx_tiles(NV, ndb, ku + 16 * g * ldk, ldk, qp, ldq, st[g & 1]);
        }
        if (g > 0) {
            const int64_t j0 = 16 * (g - 1), m = n - j0 < 16 ? n - j0 : 16;
            li_amx_epilogue(F16, NV, m, d4, ndb, ku + j0 * ldk, ldk, qp, ldq, qbias, ws, sk + j0,
                            mlast, out + j0, st[(g - 1) & 1]);
        }
    }
    _tile_release();
}

#define LI_AMX_ROWS(NAME, NV)                                                                     \
    static __attribute__((noinline)) LI_VNNI void NAME(                                           \
        int f16, int64_t n, int64_t d4, const uint8_t *k, int64_t ldk, const int8_t *qp,         \
        int64_t ldq, const int32_t *qbias, const float *ws, const float *sk, __mmask16 m,        \
        float *out) {                                                                             \
        if (f16) li_amx_rows(1, NV, n, d4, k, ldk, qp, ldq, qbias, ws, sk, m, out);               \
        else li_amx_rows(0, NV, n, d4, k, ldk, qp, ldq, qbias, ws, sk, m, out);                   \
    }
LI_AMX_ROWS(li_amx_nv1, 1)
LI_AMX_ROWS(li_amx_nv2, 2)
LI_AMX_ROWS(li_amx_nv3, 3)
LI_AMX_ROWS(li_amx_nv4, 4)
#undef LI_AMX_ROWS

void fia_li_score_i8__amx_16x64(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                                const int8_t *qp, int64_t ldq, const int32_t *qbias,
                                const float *ws, const float *sk, int f16, float *out) {
    if (n <= 0) return;
    if (d4 < 16 || n < 16 || nh <= 16) {
        fia_li_score_i8__avx512vnni_12x64(n, d4, nh, ku, ldk, qp, ldq, qbias, ws, sk, f16, out);
        return;
    }
    const int64_t nv = (nh + 15) / 16;
    const int64_t last = nh - 16 * (nv - 1);
    const __mmask16 m = last >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << last) - 1u);
    switch (nv) {
    case 1: li_amx_nv1(f16, n, d4, ku, ldk, qp, ldq, qbias, ws, sk, m, out); break;
    case 2: li_amx_nv2(f16, n, d4, ku, ldk, qp, ldq, qbias, ws, sk, m, out); break;
    case 3: li_amx_nv3(f16, n, d4, ku, ldk, qp, ldq, qbias, ws, sk, m, out); break;
    default: li_amx_nv4(f16, n, d4, ku, ldk, qp, ldq, qbias, ws, sk, m, out); break;
    }
}
