/*
 * i8gemm_amx.c - the int8 GEMM on AMX tiles (slot i8.gemm; contract and packed-B format:
 * kernels/i8gemm.h). The packs are the VNNI table's (registry.inc lists no AMX packer): a
 * panel's 16 consecutive 64-byte groups (16 columns x 4 depth bytes each) are exactly one B tile
 * of 64 depth bytes (16 rows x 64 bytes, stride 64), so the tiles read the pack in place.
 *
 * gemm: row blocks of up to 32 rows (two A tiles of up to 16 rows each, read in place at stride
 *   lda: 16 rows x 64 depth bytes), column blocks of 2 panels (two B tiles), four int32 C tiles
 *   (2 x 2 blocks of 16 x 16), tdpbusd (u8 A x s8 B, exact int32 sums) over the full 64-deep
 *   blocks of k. Tile registers: 0-3 C, 4-5 A, 6-7 B; a row block of fewer than 32 rows
 *   reconfigures the tiles to its row counts (tile rows; at most two configurations per call).
 *   The C tiles go to a 32 x 32 int32 stage; then, per row and 16-column vector, on AVX-512:
 *   the depth past the last full 64-byte block (k % 64 bytes: up to 15 groups, the last one
 *   possibly partial) is added with vpdpbusd from the pack's groups and A's bytes (the partial
 *   group assembled from the k % 4 valid bytes: nothing past a[r*lda + k - 1] is read), then
 *   the VNNI table's epilogue, operation for operation: dot = acc - a_offset * colsum,
 *   x = cvt(dot) [* row_scale], c = fma(row_beta, c, x) or c = x (masked on the last columns).
 *   The integer part is exact in any order, so the results are bitwise the VNNI table's (and
 *   the scalar table's when row_beta is NULL).
 *   Shapes with no full 64-deep block (k < 64), a single row, or up to 6 rows with one 64-deep
 *   block run the VNNI kernel itself (measured no faster on tiles: 128 x 64 x 512 6.3k cycles
 *   vs VNNI 24.7k, 128 x 512 x 64 with row_beta 22k vs 34k, 16 x 512 x 64 3.3k vs 4.3k, but
 *   4 x 512 x 64 1.26k vs 1.13k).
 *   With a single 64-deep block the A tiles of a row block are loaded once, by its first column
 *   block.
 * Compiled with the AMX flags plus avx512vnni (the target attribute FIA_VNNI: vpdpbusd for the
 * depth tail); registered with FIA_CPU_AVX512 | FIA_CPU_AVX512VNNI | FIA_CPU_AMX_INT8 (the
 * context's AMX bits include the OS permission for the tile data; FIA_AMX=0 drops them, and the
 * VNNI table runs).
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/amx/amx_tiles.h"
#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))
#define FIA_VNNI __attribute__((target("avx512vnni")))

static inline __mmask16 tail_mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* Tiles 0, 1 (C) and 4 (A) get ra rows, tiles 2, 3 (C) and 5 (A) rb rows (unused when 0),
 * tiles 6, 7 (B) 16 rows; 64 bytes a row. */
static void i8_amx_config(int ra, int rb) {
    fia_amx_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    const int rows[8] = {ra, ra, rb, rb, ra, rb, 16, 16};
    for (int i = 0; i < 8; i++)
        if (rows[i]) c.colsb[i] = 64, c.rows[i] = (uint8_t)rows[i];
    _tile_loadconfig(&c);
}

/* The 4 A bytes of group g of a row (zero-extended past k; reads only bytes < k). */
FIA_AI int32_t a_group(const uint8_t *row, int64_t g, int64_t k) {
    uint32_t v = 0;
    const int64_t left = k - 4 * g;
    memcpy(&v, row + 4 * g, (size_t)(left < 4 ? left : 4));
    return (int32_t)v;
}

/* Epilogue of one row block x column block: rows rows of the stage st (32 int32 a row), NV
 * vectors of 16 columns; kt groups of depth from g0 on are added first. */
FIA_AI FIA_VNNI void i8_amx_epilogue(const int NV, const int SS, int64_t rows, const int32_t *st,
                                     const uint8_t *a, int64_t lda, int64_t k, int64_t g0,
                                     const int8_t *b, int64_t pb, int64_t ncols, float *c,
                                     int64_t ldc, const float *row_scale, const float *row_beta,
                                     int32_t a_offset) {
    const int64_t k4 = (k + 3) / 4;
    __m512i corr0 = _mm512_setzero_si512(), corr1 = corr0;
    if (a_offset) {
        const int8_t *cs = b + 64 * k4;
        const __m512i off = _mm512_set1_epi32(a_offset);
        corr0 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs));
        if (NV > 1) corr1 = _mm512_mullo_epi32(off, _mm512_loadu_si512(cs + pb));
    }
    const __mmask16 m0 = tail_mask16(ncols), m1 = NV > 1 ? tail_mask16(ncols - 16) : 0;
    for (int64_t r = 0; r < rows; r++) {
        __m512i acc0 = _mm512_loadu_si512(st + SS * r);
        __m512i acc1 = NV > 1 ? _mm512_loadu_si512(st + SS * r + 16) : acc0;
        const uint8_t *ar = a + r * lda;
        for (int64_t g = g0; g < k4; g++) {
            const __m512i ag = _mm512_set1_epi32(a_group(ar, g, k));
            acc0 = _mm512_dpbusd_epi32(acc0, ag, _mm512_loadu_si512(b + 64 * g));
            if (NV > 1) acc1 = _mm512_dpbusd_epi32(acc1, ag, _mm512_loadu_si512(b + pb + 64 * g));
        }
#define OUT_VEC(v, accv, corrv, mt)                                                           \
    {                                                                                         \
        __m512 x = _mm512_cvtepi32_ps(_mm512_sub_epi32(accv, corrv));                          \
        if (row_scale) x = _mm512_mul_ps(x, _mm512_set1_ps(row_scale[r]));                    \
        float *cv = c + r * ldc + 16 * (v);                                                   \
        if ((v) == NV - 1) {                                                                  \
            if (row_beta)                                                                     \
                x = _mm512_fmadd_ps(_mm512_set1_ps(row_beta[r]), _mm512_maskz_loadu_ps(mt, cv), \
                                    x);                                                       \
            _mm512_mask_storeu_ps(cv, mt, x);                                                 \
        } else {                                                                              \
            if (row_beta) x = _mm512_fmadd_ps(_mm512_set1_ps(row_beta[r]), _mm512_loadu_ps(cv), x); \
            _mm512_storeu_ps(cv, x);                                                          \
        }                                                                                     \
    }
        OUT_VEC(0, acc0, corr0, m0)
        if (NV > 1) OUT_VEC(1, acc1, corr1, m1)
#undef OUT_VEC
    }
}

/* One row block (ra + rb rows, rb may be 0) x one column block of NV panels: the tile
 * products over nkb full 64-deep blocks, the stage, the epilogue. */
FIA_AI FIA_VNNI void i8_amx_block(const int RB, const int NV, int64_t rows, int64_t nkb,
                                  const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
                                  int64_t pb, int64_t ncols, float *c, int64_t ldc,
                                  const float *row_scale, const float *row_beta,
                                  int32_t a_offset, int32_t *st, int a_loaded) {
    _tile_zero(0);
    if (NV > 1) _tile_zero(1);
    if (RB) {
        _tile_zero(2);
        if (NV > 1) _tile_zero(3);
    }
    const uint8_t *a1 = a + 16 * lda;
    for (int64_t kb = 0; kb < nkb; kb++) {
        if (nkb > 1 || !a_loaded) _tile_loadd(4, a + 64 * kb, lda);
        _tile_loadd(6, b + 1024 * kb, 64);
        if (RB && (nkb > 1 || !a_loaded)) _tile_loadd(5, a1 + 64 * kb, lda);
        if (NV > 1) _tile_loadd(7, b + pb + 1024 * kb, 64);
        _tile_dpbusd(0, 4, 6);
        if (NV > 1) _tile_dpbusd(1, 4, 7);
        if (RB) {
            _tile_dpbusd(2, 5, 6);
            if (NV > 1) _tile_dpbusd(3, 5, 7);
        }
    }
    _tile_stored(0, st, 128);
    if (NV > 1) _tile_stored(1, st + 16, 128);
    if (RB) {
        _tile_stored(2, st + 512, 128);
        if (NV > 1) _tile_stored(3, st + 528, 128);
    }
    i8_amx_epilogue(NV, 32, rows, st, a, lda, k, 16 * nkb, b, pb, ncols, c, ldc, row_scale, row_beta,
                    a_offset);
}

/* All column blocks of one row block. */
FIA_AI FIA_VNNI void i8_amx_rows(const int RB, int64_t rows, int64_t n, int64_t nkb,
                                 const uint8_t *a, int64_t lda, int64_t k, const int8_t *b,
                                 int64_t pb, float *c, int64_t ldc, const float *row_scale,
                                 const float *row_beta, int32_t a_offset, int32_t *st) {
    int64_t j = 0;
    for (; j + 32 <= n; j += 32, b += 2 * pb)
        i8_amx_block(RB, 2, rows, nkb, a, lda, k, b, pb, n - j, c + j, ldc, row_scale, row_beta,
                     a_offset, st, j > 0);
    if (j < n) {
        if (n - j > 16)
            i8_amx_block(RB, 2, rows, nkb, a, lda, k, b, pb, n - j, c + j, ldc, row_scale,
                         row_beta, a_offset, st, j > 0);
        else
            i8_amx_block(RB, 1, rows, nkb, a, lda, k, b, pb, n - j, c + j, ldc, row_scale,
                         row_beta, a_offset, st, j > 0);
    }
}

static __attribute__((noinline)) FIA_VNNI void i8_amx_rows1(int64_t rows, int64_t n, int64_t nkb,
                                                            const uint8_t *a, int64_t lda, int64_t k,
                                                            const int8_t *b, int64_t pb, float *c,
                                                            int64_t ldc, const float *row_scale,
                                                            const float *row_beta,
                                                            int32_t a_offset, int32_t *st) {
    i8_amx_rows(0, rows, n, nkb, a, lda, k, b, pb, c, ldc, row_scale, row_beta, a_offset, st);
}

static __attribute__((noinline)) FIA_VNNI void i8_amx_rows2(int64_t rows, int64_t n, int64_t nkb,
                                                            const uint8_t *a, int64_t lda, int64_t k,
                                                            const int8_t *b, int64_t pb, float *c,
                                                            int64_t ldc, const float *row_scale,
                                                            const float *row_beta,
                                                            int32_t a_offset, int32_t *st) {
    i8_amx_rows(1, rows, n, nkb, a, lda, k, b, pb, c, ldc, row_scale, row_beta, a_offset, st);
}

void fia_i8_gemm__amx_32x32(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                            const void *packed, float *c, int64_t ldc, const float *row_scale,
                            const float *row_beta, int32_t a_offset) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int64_t nkb = k / 64;
    if (nkb == 0 || m == 1 || (nkb == 1 && m <= 6)) {
        fia_i8_gemm__avx512vnni_6x64(m, n, k, a, lda, packed, c, ldc, row_scale, row_beta,
                                     a_offset);
        return;
    }
    const int8_t *b = (const int8_t *)packed;
    const int64_t pb = 64 * ((k + 3) / 4) + 64;
    _Alignas(64) int32_t st[32 * 32];
    int cra = -1, crb = -1;
    for (int64_t r0 = 0; r0 < m; r0 += 32) {
        const int64_t rows = m - r0 < 32 ? m - r0 : 32;
        const int ra = rows < 16 ? (int)rows : 16, rb = (int)rows - ra;
        if (ra != cra || rb != crb) i8_amx_config(ra, rb), cra = ra, crb = rb;
        const float *rs = row_scale ? row_scale + r0 : NULL, *rbeta = row_beta ? row_beta + r0 : NULL;
        if (rb)
            i8_amx_rows2(rows, n, nkb, a + r0 * lda, lda, k, b, pb, c + r0 * ldc, ldc, rs, rbeta,
                         a_offset, st);
        else
            i8_amx_rows1(rows, n, nkb, a + r0 * lda, lda, k, b, pb, c + r0 * ldc, ldc, rs, rbeta,
                         a_offset, st);
    }
    _tile_release();
}
