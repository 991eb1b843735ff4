/*
 * chain_kernels.h - the row kernels of the attention-chain helper operators (rms_norm,
 * add_rms_norm, rotary_mul, interleave_rope, dynamic_quant), callable from any operator (the MLA
 * prolog uses them on its own rows): the chain family of registry.inc, one kernel per slot and
 * ISA (scalar, avx2, avx512, avx512bf16 for the bf16 stores); a context's table is
 * ctx->kernels.chain. The scalar kernels are the reference the other variants are tested
 * against.
 *
 * Every row kernel reads and writes rows of n (or d) elements of dtype float32, float16 or
 * bfloat16 (int8 for quantized outputs), contiguous, any alignment; computes in fp32; converts
 * outputs with round to nearest even. No allocation, no state: kernels run concurrently on
 * disjoint rows. Every variant computes the same fp32 operations in the same order (the RMSNorm
 * sum of squares in the fixed order of chain_rows.inc, no FMA contraction), so results are
 * bitwise the same on every ISA (the one exception: the AVX512-BF16 stores flush bf16 results
 * below the smallest normal to zero); the int8 quantization of a given fp32 value and scale is
 * exact on every ISA (one fp32 division, round half to even, saturation).
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

/* The kernel signatures (one typedef per slot: the registry declares every kernel with it). */
typedef float fia_chain_rms_norm_row_fn(const void *x1, const void *x2, fia_dtype xdt,
                                        const void *gamma, fia_dtype gdt, int64_t n, float eps,
                                        float alpha, void *y, fia_dtype ydt, void *xsum);
typedef void fia_chain_rope_row_fn(const void *x, fia_dtype xdt, const void *cos, const void *sin,
                                   fia_dtype cdt, int64_t d, fia_rope_mode mode, void *y,
                                   fia_dtype ydt);
typedef float fia_chain_absmax_row_fn(const void *x, fia_dtype xdt, const void *s, fia_dtype sdt,
                                      int64_t n);
typedef void fia_chain_quant_row_i8_fn(const void *x, fia_dtype xdt, const void *s, fia_dtype sdt,
                                       int64_t n, float scale, int8_t *y);
typedef void fia_chain_absmax_cols_fn(const void *x, fia_dtype xdt, float s, int64_t n, float *acc);
typedef void fia_chain_quant_cols_i8_fn(const void *x, fia_dtype xdt, float s, const float *scale,
                                        int64_t n, int8_t *y);
typedef fia_chain_rms_norm_row_fn fia_chain_rms_norm_row_nt_fn;
typedef fia_chain_rope_row_fn fia_chain_rope_row_nt_fn;
typedef fia_chain_quant_row_i8_fn fia_chain_quant_row_i8_nt_fn;
typedef void fia_chain_stream_fence_fn(void);
typedef float fia_chain_quant_row_i8_next_fn(const void *x, fia_dtype xdt, const void *s,
                                             fia_dtype sdt, int64_t n, float scale, int8_t *y,
                                             int nt, const void *xn, const void *sn);

typedef struct fia_chain_kernels {
    const char *name;  /* the highest CPU feature its kernels use: "scalar", "avx2", ... */
    uint32_t features; /* the FIA_CPU_* bits its kernels use (registry.h) */

    /* RMSNorm of one row of n elements:
     *   x = x1 (+ x2: the sum in fp32 rounded to xdt, written to xsum when xsum != NULL)
     *   rstd = 1 / sqrt(mean(x^2) + eps),  y = x * rstd * gamma * alpha  (ydt)
     * x2, xsum may be NULL; gamma has gdt (float32 or xdt). Returns rstd. n >= 1. */
    fia_chain_rms_norm_row_fn *rms_norm_row;

    /* One RoPE row of d (even, <= FIA_ROPE_MAX_D) elements: y = q * cos + rotate(q) * sin,
     * q = x (or its de-interleave for FIA_ROPE_INTERLEAVE_HALF); cos, sin have dtype cdt. */
    fia_chain_rope_row_fn *rope_row;

    /* max_i |x[i] * s[i]| (s NULL: 1), the products in fp32. NaN inputs propagate. */
    fia_chain_absmax_row_fn *absmax_row;

    /* y[i] = sat_int8(rint(x[i] * s[i] / scale)) (s NULL: 1; round half to even; scale == 0 or
     * not finite: y = 0). */
    fia_chain_quant_row_i8_fn *quant_row_i8;

    /* Column forms (per-channel quantization) on one row: acc[i] = max(acc[i], |x[i] * s|) and
     * y[i] = sat_int8(rint(x[i] * s / scale[i])) (scale[i] == 0 or not finite: 0). */
    fia_chain_absmax_cols_fn *absmax_cols;
    fia_chain_quant_cols_i8_fn *quant_cols_i8;

    /* The same results as rms_norm_row, rope_row and quant_row_i8, written with non-temporal
     * (streaming) stores where the output is aligned: for outputs far larger than the caches,
     * which nobody reads right away (the operators use them above FIA_CHAIN_STREAM_BYTES of
     * output). The caller runs stream_fence() (an sfence) after its last _nt call of a task,
     * before the results are handed to another thread. */
    fia_chain_rms_norm_row_nt_fn *rms_norm_row_nt;
    fia_chain_rope_row_nt_fn *rope_row_nt;
    fia_chain_quant_row_i8_nt_fn *quant_row_i8_nt;
    fia_chain_stream_fence_fn *stream_fence;

    /* quant_row_i8 (nt: quant_row_i8_nt) of row x, then returns absmax_row of the next row xn
     * (smoothing row sn; xn NULL: returns 0): the same results as those two calls, the next
     * row's loads overlapping this row's arithmetic where the kernel can (AVX-512, bf16 without
     * smoothing). */
    fia_chain_quant_row_i8_next_fn *quant_row_i8_next;
} fia_chain_kernels;

/* Output size from which the chain operators use the streaming-store kernels. */
#define FIA_CHAIN_STREAM_BYTES (INT64_C(32) << 20)

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
