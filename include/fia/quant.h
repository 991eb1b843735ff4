/*
 * fia/quant.h - dynamic_quant (torch_npu npu_dynamic_quant): symmetric dynamic int8
 * quantization per token, per tensor or per channel, with optional smoothing scales and MoE
 * group boundaries; the C8 step of the DeepSeek-V3.2 indexer and of the MLA prolog.
 */
#ifndef FIA_QUANT_H
#define FIA_QUANT_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* quant_mode (the torch_npu strings "pertoken", "pertensor", "perchannel"). */
typedef enum fia_quant_mode {
    FIA_QUANT_MODE_PERTOKEN = 0,  /* one scale per row (the last dim) */
    FIA_QUANT_MODE_PERTENSOR = 1, /* one scale for the whole tensor */
    FIA_QUANT_MODE_PERCHANNEL = 2 /* one scale per column: the max over dim -2 */
} fia_quant_mode;

/* The largest smooth_scales group count (MoE experts) with group_index. */
#define FIA_DYNAMIC_QUANT_MAX_GROUPS 1024

typedef struct fia_dynamic_quant_params {
    uint32_t struct_size;      /* sizeof the struct: set by _params_init */
    fia_quant_mode quant_mode; /* default FIA_QUANT_MODE_PERTOKEN */
    fia_dtype dst_type;        /* FIA_DTYPE_INT8, the only output type (default). quint4x2
                                * (int4 packed 8 per int32) is FIA_STATUS_UNSUPPORTED. */
    double dst_type_max;       /* 0 (default): 127, the int8 maximum; else the DTYPE_MAX of the
                                * formula, in (0, 127] */
} fia_dynamic_quant_params;

FIA_API void fia_dynamic_quant_params_init(fia_dynamic_quant_params *p);

typedef struct fia_dynamic_quant_tensors {
    const fia_tensor *x;             /* [..., H], float32 / float16 / bfloat16 (>= 2 dims for
                                      * perchannel) */
    const fia_tensor *smooth_scales; /* NULL, or x's dtype or float32: pertoken / pertensor
                                      * [H]; perchannel [x.shape[-2]]; with group_index [E, H] */
    const fia_tensor *group_index;   /* NULL, or int32 [E] (pertoken only, needs a 2-D
                                      * smooth_scales): non-decreasing row boundaries, the last
                                      * equal to the number of rows */
    fia_tensor *y;                   /* output: int8, x's shape */
    fia_tensor *scale;               /* output: float32; pertoken x.shape[:-1] (a 1-D x: [] or
                                      * [1]); pertensor [1]; perchannel x's shape without dim -2 */
} fia_dynamic_quant_tensors;

/*
 * fia_dynamic_quant_plan - symmetric dynamic quantization:
 *   v = x * s           (s: the smoothing scale of the element, 1 without smooth_scales)
 *   scale = max |v| / DTYPE_MAX over the row (pertoken), the tensor (pertensor) or the column
 *           of dim -2 (perchannel); DTYPE_MAX = dst_type_max, or 127 when it is 0
 *   y = sat_int8(round(v / scale))
 * with group_index, rows [group_index[e - 1], group_index[e]) use smooth_scales[e] (row 0 of the
 * first group starts at 0).
 *
 * Rounding: round half to EVEN (ties go to the even integer). The contract's golden
 * (op-plugin test_npu_dynamic_quant.py) computes v / scale in fp32 and rounds with
 * torch.round, which rounds half to even; fia does the same: v and scale in fp32 (the max is
 * exact), one fp32 division per element, round half to even, saturation to [-128, 127].
 * A scale of 0 (an all-zero row) or a non-finite one (an infinite input) gives y = 0; NaN inputs
 * are ignored by the max and quantize to -128.
 * Layout: the last dim of x, y and smooth_scales is contiguous; other dims any strides >= 0
 *   (outputs: nonzero where the dim is > 1); perchannel needs scale's last dim contiguous.
 * Returns FIA_STATUS_INVALID_ARGUMENT for shapes, dtypes or parameters that break these rules
 *   (the message names the tensor, the dim and both values); fia_plan_execute returns
 *   FIA_STATUS_INVALID_ARGUMENT, with nothing written, when group_index (read at execute time)
 *   is not non-decreasing within [0, rows] or does not end at rows. FIA_STATUS_UNSUPPORTED for
 *   quint4x2 or non-contiguous rows, FIA_STATUS_OUT_OF_MEMORY.
 * Memory: *plan is allocated (fia_plan_destroy); the workspace holds one float per task
 *   (pertensor) and is 0 bytes otherwise. Results are bitwise identical for any thread count.
 */
FIA_API fia_status fia_dynamic_quant_plan(fia_context *ctx,
                                          const fia_dynamic_quant_tensors *tensors,
                                          const fia_dynamic_quant_params *params,
                                          fia_plan **plan, size_t *workspace_bytes);
FIA_API fia_status fia_dynamic_quant(fia_context *ctx, const fia_dynamic_quant_tensors *tensors,
                                     const fia_dynamic_quant_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_QUANT_H */
