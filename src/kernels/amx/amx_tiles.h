/*
 * amx_tiles.h - the tile configuration every AMX kernel of fia uses (included only by the
 * files of src/kernels/amx/, which are built with the AMX flags): palette 1, all eight tile
 * registers 16 rows x 64 bytes.
 */
#ifndef FIA_KERNELS_AMX_TILES_H
#define FIA_KERNELS_AMX_TILES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct fia_amx_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} fia_amx_tilecfg;

/* Loads the configuration (the thread's tile registers are then all zero). */
static inline void fia_amx_config(void) {
    fia_amx_tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) c.colsb[i] = 64, c.rows[i] = 16;
    _tile_loadconfig(&c);
}

/* Tiles 0..3 = the 2 x 2 block [A0; A1] . [B0 B1] over ndb 32-deep steps of bf16 pairs: A rows
 * (16 each) at a row stride of lda bytes, stepping 32 elements; B as packed 16 x 32 pair tiles
 * (64-byte rows), stepping 512 elements. two_a / two_b: whether A1 / B1 exist (tiles 2-3 / 1, 3
 * are then left untouched apart from zeroing). Uses tiles 4-7 for the operands. */
static inline __attribute__((always_inline)) void fia_amx_bf16_2x2(
    const uint16_t *a0, const uint16_t *a1, int64_t lda, const uint16_t *b0, const uint16_t *b1,
    int64_t ndb, int two_a, int two_b) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t db = 0; db < ndb; db++) {
        _tile_loadd(4, a0 + db * 32, lda);
        _tile_loadd(6, b0 + db * 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_b) {
            _tile_loadd(7, b1 + db * 512, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (two_a) {
            _tile_loadd(5, a1 + db * 32, lda);
            _tile_dpbf16ps(2, 5, 6);
            if (two_b) _tile_dpbf16ps(3, 5, 7);
        }
    }
}

/* Tiles 0..nv-1 (nv <= 4) += one block of 16 keys times up to four blocks of 16 heads, over
 * ndb 64-byte steps: the keys' A tile at a row stride of ldk bytes, the heads' B tiles qstride
 * bytes per row, 64 bytes apart, the next step 16 rows further. DP is the tile dot product of
 * the operands' type (_tile_dpbf16ps for bf16 pairs, _tile_dpbusd for u8 x s8 quads). Operand
 * tiles 4-6; the accumulators are neither zeroed nor stored here. A macro: the tile numbers of
 * the intrinsics must be constants. */
#define FIA_AMX_KEYS_X_HEADS(DP, nv, k, ldk, qp, qstride, ndb)                                \
    do {                                                                                       \
        for (int64_t db_ = 0; db_ < (ndb); db_++) {                                            \
            _tile_loadd(4, (k) + db_ * 64, (ldk));                                             \
            const char *q_ = (const char *)(qp) + db_ * 16 * (qstride);                        \
            _tile_loadd(5, q_, (qstride));                                                     \
            DP(0, 4, 5);                                                                       \
            if ((nv) > 1) {                                                                    \
                _tile_loadd(6, q_ + 64, (qstride));                                            \
                DP(1, 4, 6);                                                                   \
            }                                                                                  \
            if ((nv) > 2) {                                                                    \
                _tile_loadd(5, q_ + 128, (qstride));                                           \
                DP(2, 4, 5);                                                                   \
            }                                                                                  \
            if ((nv) > 3) {                                                                    \
                _tile_loadd(6, q_ + 192, (qstride));                                           \
                DP(3, 4, 6);                                                                   \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* 16 x 16 transpose of dwords (an S^T tile's store into S): r[i] lane c <- r[c] lane i. */
static inline __attribute__((always_inline)) void fia_amx_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    /* u[4 i + k] lane L holds column 4 L + k of rows 4 i .. 4 i + 3 */
    for (int k = 0; k < 4; k++) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0x44);
        const __m512i x1 = _mm512_shuffle_i32x4(u[k], u[4 + k], 0xEE);
        const __m512i y0 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0x44);
        const __m512i y1 = _mm512_shuffle_i32x4(u[8 + k], u[12 + k], 0xEE);
        r[k] = _mm512_shuffle_i32x4(x0, y0, 0x88);
        r[4 + k] = _mm512_shuffle_i32x4(x0, y0, 0xDD);
        r[8 + k] = _mm512_shuffle_i32x4(x1, y1, 0x88);
        r[12 + k] = _mm512_shuffle_i32x4(x1, y1, 0xDD);
    }
}

/* Carves a kernel's scratch: field of *s (when s is not NULL) at base + off, then off advances by
 * bytes rounded up to 64 (the tiles' alignment); with s NULL it only sizes. */
#define FIA_AMX_TAKE(s, base, off, field, type, bytes)                                          \
    do {                                                                                       \
        if (s) (s)->field = (type *)(void *)((base) + (off));                                  \
        (off) += ((size_t)(bytes) + 63) & ~(size_t)63;                                         \
    } while (0)

#endif /* FIA_KERNELS_AMX_TILES_H */
