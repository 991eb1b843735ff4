/*
 * chain_kernels.h - the row kernels of the attention-chain helper operators (rms_norm,
 * add_rms_norm, rotary_mul, interleave_rope, dynamic_quant), callable from any operator (the MLA
 * prolog uses them on its own rows). One const table per ISA (scalar, avx2, avx512) with the same
 * contract; fia_chain_kernels_for() picks the table of a context's ISA. The scalar table is the
 * reference the other ISAs are tested against.
 *
 * Every row kernel reads and writes rows of n (or d) elements of dtype float32, float16 or
 * bfloat16 (int8 for quantized outputs), contiguous, any alignment; computes in fp32; converts
 * outputs with round to nearest even. No allocation, no state: kernels run concurrently on
 * disjoint rows. Results of different ISAs agree within fp32 rounding (sums are accumulated in
 * a different order); the int8 quantization of a given fp32 value and scale is exact on every
 * ISA (one fp32 division, round half to even, saturation).
 */
#ifndef FIA_KERNELS_CHAIN_KERNELS_H
#define FIA_KERNELS_CHAIN_KERNELS_H

#include <stdint.h>

#include "fia.h"

/* The longest rope row (npu_rotary_mul: D < 896; interleave_rope: D = 64). */
enum { FIA_ROPE_MAX_D = 1024 };

/* RoPE forms of rope_row. */
typedef enum fia_rope_mode {
    FIA_ROPE_HALF = 0,            /* rotate = cat(-x[h:], x[:h]), h = d / 2 */
    FIA_ROPE_INTERLEAVE = 1,      /* rotate pairs: (-x[2j+1], x[2j]) */
    FIA_ROPE_INTERLEAVE_HALF = 2  /* q = cat(x[0::2], x[1::2]), then the half form on q */
} fia_rope_mode;

typedef struct fia_chain_kernels {
    const char *name; /* "scalar", "avx2", "avx512" */

    /* RMSNorm of one row of n elements:
     *   x = x1 (+ x2: the sum in fp32 rounded to xdt, written to xsum when xsum != NULL)
     *   rstd = 1 / sqrt(mean(x^2) + eps),  y = x * rstd * gamma * alpha  (ydt)
     * x2, xsum may be NULL; gamma has gdt (float32 or xdt). Returns rstd. n >= 1. */
    float (*rms_norm_row)(const void *x1, const void *x2, fia_dtype xdt, const void *gamma,
                          fia_dtype gdt, int64_t n, float eps, float alpha, void *y,
                          fia_dtype ydt, void *xsum);

    /* One RoPE row of d (even, <= FIA_ROPE_MAX_D) elements: y = q * cos + rotate(q) * sin,
     * q = x (or its de-interleave for FIA_ROPE_INTERLEAVE_HALF); cos, sin have dtype cdt. */
    void (*rope_row)(const void *x, fia_dtype xdt, const void *cos, const void *sin,
                     fia_dtype cdt, int64_t d, fia_rope_mode mode, void *y, fia_dtype ydt);

    /* max_i |x[i] * s[i]| (s NULL: 1), the products in fp32. NaN inputs propagate. */
    float (*absmax_row)(const void *x, fia_dtype xdt, const void *s, fia_dtype sdt, int64_t n);

    /* y[i] = sat_int8(rint(x[i] * s[i] / scale)) (s NULL: 1; round half to even; scale == 0 or
     * not finite: y = 0). */
    void (*quant_row_i8)(const void *x, fia_dtype xdt, const void *s, fia_dtype sdt, int64_t n,
                         float scale, int8_t *y);

    /* Column forms (per-channel quantization) on one row: acc[i] = max(acc[i], |x[i] * s|) and
     * y[i] = sat_int8(rint(x[i] * s / scale[i])) (scale[i] == 0 or not finite: 0). */
    void (*absmax_cols)(const void *x, fia_dtype xdt, float s, int64_t n, float *acc);
    void (*quant_cols_i8)(const void *x, fia_dtype xdt, float s, const float *scale, int64_t n,
                          int8_t *y);

    /* The same results as rms_norm_row, rope_row and quant_row_i8, written with non-temporal
     * (streaming) stores where the output is aligned: for outputs far larger than the caches,
     * which nobody reads right away (the operators use them above FIA_CHAIN_STREAM_BYTES of
     * output). The caller runs stream_fence() (an sfence) after its last _nt call of a task,
     * before the results are handed to another thread. */
    float (*rms_norm_row_nt)(const void *x1, const void *x2, fia_dtype xdt, const void *gamma,
                             fia_dtype gdt, int64_t n, float eps, float alpha, void *y,
                             fia_dtype ydt, void *xsum);
    void (*rope_row_nt)(const void *x, fia_dtype xdt, const void *cos, const void *sin,
                        fia_dtype cdt, int64_t d, fia_rope_mode mode, void *y, fia_dtype ydt);
    void (*quant_row_i8_nt)(const void *x, fia_dtype xdt, const void *s, fia_dtype sdt,
                            int64_t n, float scale, int8_t *y);
    void (*stream_fence)(void);
} fia_chain_kernels;

/* Output size from which the chain operators use the streaming-store kernels. */
#define FIA_CHAIN_STREAM_BYTES (INT64_C(32) << 20)

extern const fia_chain_kernels fia_chain_kernels_scalar;
extern const fia_chain_kernels fia_chain_kernels_avx2;
extern const fia_chain_kernels fia_chain_kernels_avx512;
extern const fia_chain_kernels fia_chain_kernels_avx512bf16; /* AVX-512 + AVX512-BF16 stores */

/* The table for a context's ISA level (scalar for anything unknown); for AVX-512, the
 * AVX512-BF16 form when the CPU has it. */
const fia_chain_kernels *fia_chain_kernels_for(fia_isa isa);

/* Per-token symmetric int8 quantization of one row, as dynamic_quant does it:
 * scale = max|x * s| / dst_max (fp32), y = sat_int8(rint(x * s / scale)). Returns scale. */
static inline float fia_chain_quant_row_i8(const fia_chain_kernels *k, const void *x,
                                           fia_dtype xdt, const void *s, fia_dtype sdt,
                                           int64_t n, float dst_max, int8_t *y) {
    const float scale = k->absmax_row(x, xdt, s, sdt, n) / dst_max;
    k->quant_row_i8(x, xdt, s, sdt, n, scale, y);
    return scale;
}

#endif /* FIA_KERNELS_CHAIN_KERNELS_H */
