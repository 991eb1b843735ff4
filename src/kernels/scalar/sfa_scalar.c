/*
 * sfa_scalar.c - the portable table of sparse flash attention kernels (sfa_kernels.h), plain C,
 * and the per-ISA table lookup.
 */
#include <string.h>

#include "core/convert.h"
#include "kernels/sfa_kernels.h"

static void c8_rows_to_f32_scalar(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                                  float *rope, int64_t ldr, fia_dtype round) {
    for (int64_t j = 0; j < n; j++) {
        const unsigned char *r = rows[j];
        float sc[4];
        memcpy(sc, r + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sc);
        float *dn = nope + j * ldn, *dr = rope + j * ldr;
        for (int c = 0; c < FIA_C8_NOPE; c++) {
            const float x = (float)(int8_t)r[c] * sc[c / FIA_C8_TILE];
            dn[c] = round == FIA_DTYPE_BFLOAT16 ? fia_cvt_bf16_to_f32(fia_cvt_f32_to_bf16(x))
                    : round == FIA_DTYPE_FLOAT16 ? fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(x))
                                                 : x;
        }
        for (int c = 0; c < FIA_C8_ROPE; c++) {
            uint16_t h;
            memcpy(&h, r + FIA_C8_NOPE + 2 * c, sizeof h);
            dr[c] = fia_cvt_bf16_to_f32(h);
        }
    }
}

static void round_scaled_scalar(float *x, int64_t n, float c, float inv, fia_dtype round) {
    for (int64_t j = 0; j < n; j++) {
        const float v = x[j] * c;
        x[j] = (round == FIA_DTYPE_BFLOAT16 ? fia_cvt_bf16_to_f32(fia_cvt_f32_to_bf16(v))
                : round == FIA_DTYPE_FLOAT16 ? fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(v))
                                             : v) * inv;
    }
}

const fia_sfa_kernels fia_sfa_kernels_scalar = {
    .name = "scalar",
    .c8_rows_to_f32 = c8_rows_to_f32_scalar,
    .round_scaled = round_scaled_scalar,
};

const fia_sfa_kernels *fia_sfa_kernels_for(fia_isa isa) {
    switch (isa) {
    case FIA_ISA_AVX512: return &fia_sfa_kernels_avx512;
    case FIA_ISA_AVX2: return &fia_sfa_kernels_avx2;
    default: return &fia_sfa_kernels_scalar;
    }
}
