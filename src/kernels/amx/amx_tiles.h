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

#endif /* FIA_KERNELS_AMX_TILES_H */
