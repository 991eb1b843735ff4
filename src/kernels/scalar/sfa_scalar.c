/*
 * sfa_scalar.c - the portable table of sparse flash attention kernels (sfa_kernels.h), plain C,
 * and the per-ISA table lookup.
 */
#include <string.h>

#include "core/convert.h"
#include "kernels/registry.h"

void fia_sfa_c8_rows_to_f32__scalar(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                  float *rope, int64_t ldr) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int c = 0; c < FIA_C8_NOPE; c++)
            dn[c] = (float)(int8_t)r[c] * sc[c / FIA_C8_TILE];
        for (int c = 0; c < FIA_C8_ROPE; c++) {
            uint16_t h;
            memcpy(&h, r + FIA_C8_NOPE + 2 * c, sizeof h);
            dr[c] = fia_cvt_bf16_to_f32(h);
        }
    }
}


