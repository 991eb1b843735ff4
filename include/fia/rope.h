/*
 * fia/rope.h - rotary position embedding: rotary_mul (torch_npu npu_rotary_mul, half and
 * interleave forms) and interleave_rope (npu_interleave_rope, the MLA k_rope form).
 */
#ifndef FIA_ROPE_H
#define FIA_ROPE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* rotary_mode of rotary_mul (the torch_npu strings "half" and "interleave"). */
typedef enum fia_rotary_mode {
    FIA_ROTARY_MODE_HALF = 0,      /* rotate(x) = cat(-x[D/2:], x[:D/2]) */
    FIA_ROTARY_MODE_INTERLEAVE = 1 /* rotate(x)[2j] = -x[2j+1], rotate(x)[2j+1] = x[2j] */
} fia_rotary_mode;

/* The longest rotated dim D (rotary_mul requires D < 896; interleave_rope accepts the same). */
#define FIA_ROTARY_MAX_D 895

typedef struct fia_rotary_mul_params {
    uint32_t struct_size;        /* sizeof the struct: set by _params_init */
    fia_rotary_mode rotary_mode; /* default FIA_ROTARY_MODE_HALF */
} fia_rotary_mul_params;

FIA_API void fia_rotary_mul_params_init(fia_rotary_mul_params *p);

/* Tensors of rotary_mul and interleave_rope. */
typedef struct fia_rotary_mul_tensors {
    const fia_tensor *x;   /* [..., D], float32 / float16 / bfloat16 (any layout: BNSD, BSND,
                            * SBND, TND are all "leading dims, then D") */
    const fia_tensor *cos; /* r1: x's ndim, each dim x's or 1 (broadcast), last dim D; x's dtype */
    const fia_tensor *sin; /* r2: as cos */
    fia_tensor *y;         /* output: x's shape and dtype */
} fia_rotary_mul_tensors;

/*
 * fia_rotary_mul_plan - y = x * cos + rotate(x) * sin over the last dim D (even, 2..895), with
 * rotate as rotary_mode says; cos and sin broadcast over their size-1 dims (e.g. x [B, N, S, D]
 * with cos [1, 1, S, D] or [B, 1, S, D]; x [T, N, D] with cos [T, 1, D]).
 *
 * Computation: fp32 (no fused multiply-add), y rounded once to x's dtype.
 * Layout: the last dim of x, cos, sin and y is contiguous; the other dims of x, cos and sin may
 *   have any strides >= 0; y's other dims must not have a zero stride where the dim is > 1.
 *   y may be the same view as x.
 * Returns FIA_STATUS_INVALID_ARGUMENT (the message names the tensor, the dim and both values),
 *   FIA_STATUS_UNSUPPORTED for a non-contiguous last dim or negative strides,
 *   FIA_STATUS_OUT_OF_MEMORY. Memory: as fia_rms_norm_plan (no workspace).
 */
FIA_API fia_status fia_rotary_mul_plan(fia_context *ctx, const fia_rotary_mul_tensors *tensors,
                                       const fia_rotary_mul_params *params, fia_plan **plan,
                                       size_t *workspace_bytes);
FIA_API fia_status fia_rotary_mul(fia_context *ctx, const fia_rotary_mul_tensors *tensors,
                                  const fia_rotary_mul_params *params);

typedef struct fia_interleave_rope_params {
    uint32_t struct_size; /* sizeof the struct: set by _params_init (no other field yet) */
} fia_interleave_rope_params;

FIA_API void fia_interleave_rope_params_init(fia_interleave_rope_params *p);

/*
 * fia_interleave_rope_plan - the MLA k_rope form: q = cat(x[..., 0::2], x[..., 1::2]) (evens
 * first), y = q * cos + rotate_half(q) * sin. The torch_npu contract is x [B, N, S, 64] with
 * cos / sin [B, 1, S or 1, 64]; fia accepts any shape rotary_mul accepts (D even, 2..895) with
 * the same broadcasting, layout rules, returns and memory.
 */
FIA_API fia_status fia_interleave_rope_plan(fia_context *ctx,
                                            const fia_rotary_mul_tensors *tensors,
                                            const fia_interleave_rope_params *params,
                                            fia_plan **plan, size_t *workspace_bytes);
FIA_API fia_status fia_interleave_rope(fia_context *ctx, const fia_rotary_mul_tensors *tensors,
                                       const fia_interleave_rope_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_ROPE_H */
