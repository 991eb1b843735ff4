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
