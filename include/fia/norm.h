/*
 * fia/norm.h - rms_norm and add_rms_norm (torch_npu npu_rms_norm / npu_add_rms_norm): the
 * pre-attention normalization of the DeepSeek-V3.2 / GLM-5 layer.
 */
#ifndef FIA_NORM_H
#define FIA_NORM_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parameters of rms_norm and add_rms_norm. Call fia_rms_norm_params_init() first. */
typedef struct fia_rms_norm_params {
    uint32_t struct_size; /* sizeof the struct: set by _params_init */
    double epsilon;       /* added to the mean square, finite and >= 0 (default 1e-6) */
} fia_rms_norm_params;

FIA_API void fia_rms_norm_params_init(fia_rms_norm_params *p);

/* Tensors of rms_norm. rstd may be NULL (not written). */
typedef struct fia_rms_norm_tensors {
    const fia_tensor *x;     /* [..., trailing dims], float32 / float16 / bfloat16 */
    const fia_tensor *gamma; /* the trailing dims of x (1..ndim(x) dims), x's dtype or float32 */
    fia_tensor *y;           /* output: x's shape and dtype */
    fia_tensor *rstd;        /* output, float32: x's leading dims, then a 1 per gamma dim */
} fia_rms_norm_tensors;

/*
 * fia_rms_norm_plan - y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + epsilon), the mean over
 * the trailing dims that gamma has (e.g. x [2, 3, 4, 8] with gamma [8] normalizes rows of 8 and
 * writes rstd [2, 3, 4, 1]; gamma [4, 8] gives rows of 32 and rstd [2, 3, 1, 1]).
 *
 * Computation: fp32 (the sum of squares accumulated in fp32 lanes, in an order fixed by the
 * ISA, never by the thread count), y rounded once to x's dtype (round to nearest even).
 * Layout: the normalized trailing dims of x, y and gamma must be compact (contiguous rows);
 *   the leading dims of x may have any strides >= 0, those of y and rstd must not be 0 where
 *   the dim is > 1. y may be the same view as x (in place).
 * Returns FIA_STATUS_INVALID_ARGUMENT for a shape, dtype or epsilon that breaks these rules
 *   (the message names the tensor, the dim and both values), FIA_STATUS_UNSUPPORTED for
 *   non-compact rows or negative strides, FIA_STATUS_OUT_OF_MEMORY.
 * Memory: *plan is allocated (fia_plan_destroy); the workspace is 0 bytes. Tensors are read and
 *   written at execute time at the addresses given here. *plan and *workspace_bytes are written
 *   only on success; workspace_bytes may be NULL.
 */
FIA_API fia_status fia_rms_norm_plan(fia_context *ctx, const fia_rms_norm_tensors *tensors,
                                     const fia_rms_norm_params *params, fia_plan **plan,
                                     size_t *workspace_bytes);
/* One-shot form. */
FIA_API fia_status fia_rms_norm(fia_context *ctx, const fia_rms_norm_tensors *tensors,
                                const fia_rms_norm_params *params);

/* Tensors of add_rms_norm. rstd and x may be NULL (not written). */
typedef struct fia_add_rms_norm_tensors {
    const fia_tensor *x1;    /* [..., trailing dims], float32 / float16 / bfloat16 */
    const fia_tensor *x2;    /* x1's shape and dtype */
    const fia_tensor *gamma; /* the trailing dims of x1, x1's dtype or float32 */
    fia_tensor *y;           /* output: x1's shape and dtype */
    fia_tensor *rstd;        /* output, float32: x1's leading dims, then a 1 per gamma dim */
    fia_tensor *x;           /* output: x1 + x2, x1's shape and dtype */
} fia_add_rms_norm_tensors;

/*
 * fia_add_rms_norm_plan - x = x1 + x2 (added in fp32 and rounded to x1's dtype, as the golden
 * adds in the input dtype), then y and rstd as rms_norm of that rounded x. The rules of
 * fia_rms_norm_plan apply to every tensor (x2 and x like x1, x like y). y or x may be the same
 * view as x1 or x2 (the residual update in place).
 * Returns, memory: as fia_rms_norm_plan.
 */
FIA_API fia_status fia_add_rms_norm_plan(fia_context *ctx, const fia_add_rms_norm_tensors *tensors,
                                         const fia_rms_norm_params *params, fia_plan **plan,
                                         size_t *workspace_bytes);
/* One-shot form. */
FIA_API fia_status fia_add_rms_norm(fia_context *ctx, const fia_add_rms_norm_tensors *tensors,
                                    const fia_rms_norm_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_NORM_H */
