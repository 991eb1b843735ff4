/*
 * i8gemm_vnni.c - the AVX-512 VNNI int8 GEMM table (fia_i8_kernels_vnni, name "vnni").
 *
 * Contract and packed-B format: src/kernels/i8gemm.h; results match the scalar table (packs
 * byte-identical, integer parts exact, epilogue within one FMA rounding). Compiled with
 * -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mf16c -mavx512vnni; call it only when
 * ctx->vnni. No allocation, no global mutable state.
 *
 * gemm: register-blocked micro-tile of MR rows x NV zmm (16 columns each) int32 accumulators.
 *   MR x NV is 6 x 4 (24 accumulators + 4 B vectors + 1 broadcast A = 29 zmm) when n > 32, and
 *   up to 12 x 2 (24 + 2 + 1) when n <= 32, so narrow key tiles keep 24 independent vpdpbusd
 *   chains. Per 4-deep group: NV zmm loads of B (one per panel, the panels of a block are
 *   panel_bytes apart), one vpbroadcastd of 4 A bytes per row, MR x NV vpdpbusd.
 *   Loop order: row blocks (m split into near-equal blocks of <= MR rows; one out-of-line
 *   function per row count with the rows spelled out), then column blocks of NV panels (the last
 *   one 1..NV panels wide, its last vector stored with a mask), then the k4 groups with the
 *   tile in registers; the A block (MR x k bytes) stays in L1 while B streams from L1/L2.
 *   A k tail (k % 4 != 0) is one extra group whose A bytes are assembled from the k % 4 valid
 *   bytes (never reading past a[r*lda + k - 1]); the pack's zero padding covers B.
 *   Epilogue per vector: dot = acc - a_offset * colsum (the product formed once per tile),
 *   x = cvt(dot) [* row_scale], c = fma(row_beta, c, x) or c = x; C is read only with
 *   row_beta. (Starting the accumulators at -a_offset * colsum instead made gcc 12 spill.)
 *   Measured on Zen 4 (one zmm vpdpbusd per cycle = 473 GOPS int8 peak at 3.69 GHz, 4x the fp32
 *   FMA peak; one core, cache-resident, best of many runs, gcc 12 -O2): 128x64x512 458 GOPS
 *   (97%), 128x512x64 with row_beta 398-412 (84-87%), 64x256x128 433 (92%), 128x32x576 447
 *   (95%), 128x512x32 347 (73%). Packing a 64 x 512 tile: nk 0.7 us, kn 0.6 us.
 * pack_b_nk: 16 rows x 64 bytes at a time (masked byte loads for the k tail, zero vectors for
 *   the rows past n), a 16 x 16 dword transpose (unpack 32 / unpack 64 / 2 x shuf_i32x4, 64
 *   shuffles) gives 16 groups; column sums accumulate with vpdpbusd(ones, group).
 * pack_b_kn: 4 depth rows x 64 columns at a time (masked loads for the n tail): unpack 8 and
 *   unpack 16 build the 4-byte interleave inside each 128-bit lane, a 4 x 4 lane transpose
 *   (8 shuf_i32x4) yields one group for each of the 4 panels; column sums as above.
 * s8_to_u8_offset: 64-byte xor with 0x80, masked tail.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))
#define FIA_UNROLL _Pragma("GCC unroll 16")

enum { I8_MR_WIDE = 6, I8_MR_NARROW = 12, I8_NV_WIDE = 4, I8_NV_NARROW = 2 };
#define I8_REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static inline __mmask16 tail_mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

static inline __mmask64 tail_mask64(int64_t n) {
    return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
}

static inline int32_t load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The last k % 4 A bytes of a row as one broadcast dword (zero-extended; reads only rem bytes). */
static inline __m512i tail_a(const uint8_t *p, int64_t rem) {
    uint32_t v = 0;
    memcpy(&v, p, (size_t)rem);
    return _mm512_set1_epi32((int32_t)v);
}

/* ------------------------------------------------------------------------------------------ */
/* gemm                                                                                       */
/* ------------------------------------------------------------------------------------------ */

/* One micro-tile: MR rows x NV panels (compile-time after inlining). The last vector is stored
 * with mask mt (all ones when the block is full). b points at the first panel's group 0. */
FIA_AI void i8_tile(const int MR, const int NV, int64_t k, const uint8_t *a, int64_t lda,
                    const int8_t *b, int64_t pb, float *c, int64_t ldc, const float *row_scale,
                    const float *row_beta, int32_t a_offset, __mmask16 mt) {
    __m512i acc0[I8_MR_NARROW], acc1[I8_MR_NARROW], acc2[I8_MR_NARROW], acc3[I8_MR_NARROW];
#define ROW_ZERO(i)                                                                           \
    if ((i) < MR) {                                                                           \
        acc0[i] = _mm512_setzero_si512();                                                     \
        if (NV > 1) acc1[i] = _mm512_setzero_si512();                                         \
        if (NV > 2) acc2[i] = _mm512_setzero_si512();                                         \
        if (NV > 3) acc3[i] = _mm512_setzero_si512();                                         \
    }
    I8_REP12(ROW_ZERO)
#undef ROW_ZERO

    const int64_t k4f = k / 4, krem = k % 4;
    const int8_t *bp = b;
    const uint8_t *ap = a;
#define ROW_DP(i)                                                                             \
    if ((i) < MR) {                                                                           \
        const __m512i ai = AI(i);                                                             \
        acc0[i] = _mm512_dpbusd_epi32(acc0[i], ai, b0);                                       \
        if (NV > 1) acc1[i] = _mm512_dpbusd_epi32(acc1[i], ai, b1);                           \
        if (NV > 2) acc2[i] = _mm512_dpbusd_epi32(acc2[i], ai, b2);                           \
        if (NV > 3) acc3[i] = _mm512_dpbusd_epi32(acc3[i], ai, b3);                           \
    }
#define LOAD_B()                                                                              \
    const __m512i b0 = _mm512_loadu_si512(bp);                                                \
    const __m512i b1 = NV > 1 ? _mm512_loadu_si512(bp + pb) : _mm512_setzero_si512();         \
    const __m512i b2 = NV > 2 ? _mm512_loadu_si512(bp + 2 * pb) : _mm512_setzero_si512();     \
    const __m512i b3 = NV > 3 ? _mm512_loadu_si512(bp + 3 * pb) : _mm512_setzero_si512();
    for (int64_t g = 0; g < k4f; g++) {
        LOAD_B()
#define AI(i) _mm512_set1_epi32(load_i32(ap + (i) * lda))
        I8_REP12(ROW_DP)
#undef AI
        ap += 4;
        bp += 64;
    }
    if (krem) {
        LOAD_B()
#define AI(i) tail_a(ap + (i) * lda, krem)
        I8_REP12(ROW_DP)
#undef AI
    }
#undef LOAD_B
#undef ROW_DP

    /* Epilogue: dot = acc - a_offset * colsum. */
    __m512i corr0 = _mm512_setzero_si512(), corr1 = corr0, corr2 = corr0, corr3 = corr0;
    if (a_offset) {
        const int8_t *cs = b + 64 * ((k + 3) / 4);
        const __m512i off = _mm512_set1_epi32(a_offset);
        corr0 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs));
        if (NV > 1) corr1 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs + pb));
        if (NV > 2) corr2 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs + 2 * pb));
        if (NV > 3) corr3 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs + 3 * pb));
    }
#define OUT_VEC(i, v, accv, corrv)                                                            \
    {                                                                                         \
        __m512 x = _mm512_cvtepi32_ps(_mm512_sub_epi32(accv[i], corrv));                      \
        if (row_scale) x = _mm512_mul_ps(x, _mm512_set1_ps(row_scale[i]));                   \
        float *cv = c + (i) * ldc + 16 * (v);                                                 \
        if ((v) == NV - 1) {                                                                  \
            if (row_beta)                                                                     \
                x = _mm512_fmadd_ps(_mm512_set1_ps(row_beta[i]), _mm512_maskz_loadu_ps(mt, cv), \
                                    x);                                                       \
            _mm512_mask_storeu_ps(cv, mt, x);                                                 \
        } else {                                                                              \
            if (row_beta) x = _mm512_fmadd_ps(_mm512_set1_ps(row_beta[i]), _mm512_loadu_ps(cv), x); \
            _mm512_storeu_ps(cv, x);                                                          \
        }                                                                                     \
    }
#define ROW_OUT(i)                                                                            \
    if ((i) < MR) {                                                                           \
        OUT_VEC(i, 0, acc0, corr0)                                                            \
        if (NV > 1) OUT_VEC(i, 1, acc1, corr1)                                                \
        if (NV > 2) OUT_VEC(i, 2, acc2, corr2)                                                \
        if (NV > 3) OUT_VEC(i, 3, acc3, corr3)                                                \
    }
    I8_REP12(ROW_OUT)
#undef ROW_OUT
#undef OUT_VEC
}

/* All column blocks of one row block of MR rows; NVMAX panels per block. */
FIA_AI void i8_rows(const int MR, const int NVMAX, int64_t n, int64_t k, const uint8_t *a,
                    int64_t lda, const int8_t *b, float *c, int64_t ldc, const float *row_scale,
                    const float *row_beta, int32_t a_offset) {
    const int64_t pb = 64 * ((k + 3) / 4) + 64;
    int64_t j = 0;
    for (; j + 16 * NVMAX <= n; j += 16 * NVMAX, b += NVMAX * pb)
        i8_tile(MR, NVMAX, k, a, lda, b, pb, c + j, ldc, row_scale, row_beta, a_offset, 0xffff);
    const int64_t rem = n - j;
    if (rem <= 0) return;
    const __mmask16 mt = tail_mask16(rem - 16 * ((rem - 1) / 16));
    switch ((rem + 15) / 16) {
    case 1: i8_tile(MR, 1, k, a, lda, b, pb, c + j, ldc, row_scale, row_beta, a_offset, mt); break;
    case 2:
        if (NVMAX >= 2)
            i8_tile(MR, 2, k, a, lda, b, pb, c + j, ldc, row_scale, row_beta, a_offset, mt);
        break;
    case 3:
        if (NVMAX >= 3)
            i8_tile(MR, 3, k, a, lda, b, pb, c + j, ldc, row_scale, row_beta, a_offset, mt);
        break;
    case 4:
        if (NVMAX >= 4)
            i8_tile(MR, 4, k, a, lda, b, pb, c + j, ldc, row_scale, row_beta, a_offset, mt);
        break;
    default: break;
    }
}

/* One out-of-line function per row count: rows 1..6 use 4 panels per block, 7..12 use 2. */
#define I8_ROWS_FN(R)                                                                         \
    static __attribute__((noinline)) void i8_rows_##R(                                        \
        int64_t n, int64_t k, const uint8_t *a, int64_t lda, const int8_t *b, float *c,       \
        int64_t ldc, const float *row_scale, const float *row_beta, int32_t a_offset) {       \
        i8_rows(R, (R) <= I8_MR_WIDE ? I8_NV_WIDE : I8_NV_NARROW, n, k, a, lda, b, c, ldc,    \
                row_scale, row_beta, a_offset);                                               \
    }
I8_ROWS_FN(1)
I8_ROWS_FN(2)
I8_ROWS_FN(3)
I8_ROWS_FN(4)
I8_ROWS_FN(5)
I8_ROWS_FN(6)
I8_ROWS_FN(7)
I8_ROWS_FN(8)
I8_ROWS_FN(9)
I8_ROWS_FN(10)
I8_ROWS_FN(11)
I8_ROWS_FN(12)

#define I8_CASE(R)                                                                            \
    case R: i8_rows_##R(n, k, a, lda, b, c, ldc, row_scale, row_beta, a_offset); break;

/* Rows [0, m) of columns [0, n) (b, c already offset to the first column), row-block outer. */
static void gemm_row_blocks(int64_t m, int64_t n, int64_t k, int64_t mr, const uint8_t *a,
                            int64_t lda, const int8_t *b, float *c, int64_t ldc,
                            const float *row_scale, const float *row_beta, int32_t a_offset) {
    const int64_t nb = (m + mr - 1) / mr;
    const int64_t base = m / nb, extra = m % nb;
    for (int64_t blk = 0; blk < nb; blk++) {
        const int rows = (int)(base + (blk < extra ? 1 : 0));
        switch (rows) {
            I8_CASE(1)
            I8_CASE(2)
            I8_CASE(3)
            I8_CASE(4)
            I8_CASE(5)
            I8_CASE(6)
            I8_CASE(7)
            I8_CASE(8)
            I8_CASE(9)
            I8_CASE(10)
            I8_CASE(11)
            I8_CASE(12)
        default: break;
        }
        a += rows * lda;
        c += rows * ldc;
        if (row_scale) row_scale += rows;
        if (row_beta) row_beta += rows;
    }
}

void fia_i8_gemm__avx512vnni_6x64(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                      const void *packed, float *c, int64_t ldc, const float *row_scale,
                      const float *row_beta, int32_t a_offset) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int8_t *b = (const int8_t *)packed;
    /* Narrow B (<= 2 panels): taller row blocks keep 24 accumulators busy. */
    if (n <= 16 * I8_NV_NARROW) {
        gemm_row_blocks(m, n, k, I8_MR_NARROW, a, lda, b, c, ldc, row_scale, row_beta, a_offset);
        return;
    }
    /* Wide B: row blocks outside (the A block stays in L1, B streams from L1/L2, C is written
     * row-contiguously). Column-block-outer order was measured slower for 128 x 512 x 64
     * (C rows then stream from L2 in 256-byte pieces). */
    gemm_row_blocks(m, n, k, I8_MR_WIDE, a, lda, b, c, ldc, row_scale, row_beta, a_offset);
}

/* ------------------------------------------------------------------------------------------ */
/* packing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* In-register 16 x 16 dword transpose: r[i] element e -> r[e] element i. */
FIA_AI void transpose16x16_epi32(__m512i r[16]) {
    __m512i t[16], u[16];
    FIA_UNROLL
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4q + e] (q = row quad, e < 4): element e of each 128-bit lane of rows 4q..4q+3 */
    FIA_UNROLL
    for (int q = 0; q < 4; q++) {
        u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q + 0], t[4 * q + 2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q + 0], t[4 * q + 2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    FIA_UNROLL
    for (int e = 0; e < 4; e++) {
        const __m512i s0 = _mm512_shuffle_i32x4(u[e], u[4 + e], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i s1 = _mm512_shuffle_i32x4(u[e], u[4 + e], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i s2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i s3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], _MM_SHUFFLE(3, 1, 3, 1));
        r[e] = _mm512_shuffle_i32x4(s0, s2, _MM_SHUFFLE(2, 0, 2, 0));     /* lane 0 */
        r[4 + e] = _mm512_shuffle_i32x4(s1, s3, _MM_SHUFFLE(2, 0, 2, 0)); /* lane 1 */
        r[8 + e] = _mm512_shuffle_i32x4(s0, s2, _MM_SHUFFLE(3, 1, 3, 1)); /* lane 2 */
        r[12 + e] = _mm512_shuffle_i32x4(s1, s3, _MM_SHUFFLE(3, 1, 3, 1)); /* lane 3 */
    }
}

void fia_i8_pack_b_nk__avx512vnni(const int8_t *const *rows, int64_t n, int64_t k, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    const __m512i ones = _mm512_set1_epi8(1);
    int8_t *out = (int8_t *)packed;
    for (int64_t p = 0; p * 16 < n; p++) {
        int8_t *panel = out + p * pb;
        const int64_t nr = n - 16 * p < 16 ? n - 16 * p : 16;
        __m512i cs = _mm512_setzero_si512();
        for (int64_t t0 = 0; t0 < k; t0 += 64) {
            const int64_t len = k - t0 < 64 ? k - t0 : 64;
            const __mmask64 km = tail_mask64(len);
            __m512i r[16];
            FIA_UNROLL
            for (int i = 0; i < 16; i++)
                r[i] = i < nr ? _mm512_maskz_loadu_epi8(km, rows[16 * p + i] + t0)
                              : _mm512_setzero_si512();
            transpose16x16_epi32(r);
            const int64_t ng = (len + 3) / 4;
            int8_t *dst = panel + 16 * t0; /* group t0 / 4, 64 bytes each */
            FIA_UNROLL
            for (int g = 0; g < 16; g++) {
                if (g < ng) _mm512_storeu_si512(dst + 64 * g, r[g]);
                cs = _mm512_dpbusd_epi32(cs, ones, r[g]);
            }
        }
        _mm512_storeu_si512(panel + 64 * k4, cs);
    }
}

void fia_i8_pack_b_kn__avx512vnni(const int8_t *const *rows, int64_t k, int64_t n, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    const __m512i ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    int8_t *out = (int8_t *)packed;
    for (int64_t j0 = 0; j0 < n; j0 += 64) {
        const int64_t cols = n - j0 < 64 ? n - j0 : 64;
        const int np = (int)((cols + 15) / 16);
        const __mmask64 nm = tail_mask64(cols);
        int8_t *panel = out + (j0 / 16) * pb;
        __m512i cs0 = zero, cs1 = zero, cs2 = zero, cs3 = zero;
        int8_t *dst = panel;
        for (int64_t g = 0; g < k4; g++, dst += 64) {
            const int8_t *const *rp = rows + 4 * g;
            const int64_t left = k - 4 * g; /* >= 1 */
            const __m512i r0 = _mm512_maskz_loadu_epi8(nm, rp[0] + j0);
            const __m512i r1 = left > 1 ? _mm512_maskz_loadu_epi8(nm, rp[1] + j0) : zero;
            const __m512i r2 = left > 2 ? _mm512_maskz_loadu_epi8(nm, rp[2] + j0) : zero;
            const __m512i r3 = left > 3 ? _mm512_maskz_loadu_epi8(nm, rp[3] + j0) : zero;
            const __m512i lo01 = _mm512_unpacklo_epi8(r0, r1);
            const __m512i hi01 = _mm512_unpackhi_epi8(r0, r1);
            const __m512i lo23 = _mm512_unpacklo_epi8(r2, r3);
            const __m512i hi23 = _mm512_unpackhi_epi8(r2, r3);
            /* qx, lane L: columns 16L + 4x .. +3, each as 4 depth bytes */
            const __m512i q0 = _mm512_unpacklo_epi16(lo01, lo23);
            const __m512i q1 = _mm512_unpackhi_epi16(lo01, lo23);
            const __m512i q2 = _mm512_unpacklo_epi16(hi01, hi23);
            const __m512i q3 = _mm512_unpackhi_epi16(hi01, hi23);
            const __m512i s0 = _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(2, 0, 2, 0));
            const __m512i s1 = _mm512_shuffle_i32x4(q0, q1, _MM_SHUFFLE(3, 1, 3, 1));
            const __m512i s2 = _mm512_shuffle_i32x4(q2, q3, _MM_SHUFFLE(2, 0, 2, 0));
            const __m512i s3 = _mm512_shuffle_i32x4(q2, q3, _MM_SHUFFLE(3, 1, 3, 1));
            const __m512i o0 = _mm512_shuffle_i32x4(s0, s2, _MM_SHUFFLE(2, 0, 2, 0));
            const __m512i o1 = _mm512_shuffle_i32x4(s1, s3, _MM_SHUFFLE(2, 0, 2, 0));
            const __m512i o2 = _mm512_shuffle_i32x4(s0, s2, _MM_SHUFFLE(3, 1, 3, 1));
            const __m512i o3 = _mm512_shuffle_i32x4(s1, s3, _MM_SHUFFLE(3, 1, 3, 1));
            _mm512_storeu_si512(dst, o0);
            cs0 = _mm512_dpbusd_epi32(cs0, ones, o0);
            if (np > 1) _mm512_storeu_si512(dst + pb, o1);
            cs1 = _mm512_dpbusd_epi32(cs1, ones, o1);
            if (np > 2) _mm512_storeu_si512(dst + 2 * pb, o2);
            cs2 = _mm512_dpbusd_epi32(cs2, ones, o2);
            if (np > 3) _mm512_storeu_si512(dst + 3 * pb, o3);
            cs3 = _mm512_dpbusd_epi32(cs3, ones, o3);
        }
        dst = panel + 64 * k4;
        _mm512_storeu_si512(dst, cs0);
        if (np > 1) _mm512_storeu_si512(dst + pb, cs1);
        if (np > 2) _mm512_storeu_si512(dst + 2 * pb, cs2);
        if (np > 3) _mm512_storeu_si512(dst + 3 * pb, cs3);
    }
}

void fia_i8_s8_to_u8_offset__avx512vnni_u64(const int8_t *src, uint8_t *dst, int64_t n) {
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        _mm512_storeu_si512(dst + i, _mm512_xor_si512(_mm512_loadu_si512(src + i), x80));
    if (i < n) {
        const __mmask64 m = tail_mask64(n - i);
        _mm512_mask_storeu_epi8(dst + i, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + i), x80));
    }
}

