/*
 * sfa_kernels.h - the kernels of sparse flash attention that the shared table (kernels.h) does
 * not have: dequantization of C8 latent-cache rows. One const table per ISA (scalar, avx2,
 * avx512), the same contract for all; fia_sfa_kernels_for() picks the table of a context's ISA.
 * The scalar table is the reference every other ISA is tested against (bit-exact: the
 * dequantization is one fp32 multiply per value, the rope a bf16 widening).
 *
 * C8 row (656 bytes, any alignment): bytes [0, 512) int8 k_nope, [512, 640) 64 bfloat16 k_rope,
 * [640, 656) 4 float32 scales (little endian), scale t for k_nope values [128 t, 128 t + 128).
 */
#ifndef FIA_KERNELS_SFA_KERNELS_H
#define FIA_KERNELS_SFA_KERNELS_H

#include <stdint.h>

#include "fia.h"

enum { FIA_C8_ROW_BYTES = 656, FIA_C8_NOPE = 512, FIA_C8_ROPE = 64, FIA_C8_TILE = 128 };

typedef struct fia_sfa_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */
    /* Dequantizes n C8 rows given by pointers:
     *   nope[j * ldn + c] = R((float)int8_j[c] * scale_j[c / 128])   c < 512
     *   rope[j * ldr + c] = bf16_to_f32(rope_j[c])                    c < 64
     * R: with round FLOAT16 or BFLOAT16 the fp32 product rounded to that dtype (nearest even,
     * NaN stays NaN: the contract's cast of the dequantized row to the query dtype) and widened
     * back; any other dtype: the product itself. n >= 0; ldn >= 512, ldr >= 64 (floats). */
    void (*c8_rows_to_f32)(const void *const *rows, int64_t n, float *nope, int64_t ldn,
                           float *rope, int64_t ldr, fia_dtype round);
    /* x[j] = R(x[j] * c) * inv for j < n (R as above: round to FLOAT16 / BFLOAT16, else none;
     * two fp32 multiplies around it): the C8 cast of P, done on a max-independent scale. */
    void (*round_scaled)(float *x, int64_t n, float c, float inv, fia_dtype round);
} fia_sfa_kernels;

extern const fia_sfa_kernels fia_sfa_kernels_scalar;
extern const fia_sfa_kernels fia_sfa_kernels_avx2;
extern const fia_sfa_kernels fia_sfa_kernels_avx512;

/* The table for a context's ISA level (scalar for anything unknown). */
const fia_sfa_kernels *fia_sfa_kernels_for(fia_isa isa);

#endif /* FIA_KERNELS_SFA_KERNELS_H */
