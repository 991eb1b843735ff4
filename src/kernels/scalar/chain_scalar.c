/*
 * chain_scalar.c - the scalar chain kernels of chain_kernels.h (the reference): chain_rows.inc with
 * one-lane "vectors".
 */
#include <math.h>

#include "kernels/chain_kernels.h"

/* The int32 forms of the quantization fast path (chain_rows.inc quant_impl): out of range or
 * NaN gives INT32_MIN, as the x86 conversions do. */
static inline int32_t cv1_cvt_i(float v) {
    return fabsf(v) < 2147483648.0f ? (int32_t)rintf(v) : INT32_MIN;
}
static inline int8_t cv1_sat_i8(int32_t i) { return (int8_t)(i < -128 ? -128 : i > 127 ? 127 : i); }

#define CV_W 1
#define CV_ISA_NAME "scalar"
#define CV_NAME(x) x##_scalar
#define CV_K(slot) fia_chain_##slot##__scalar
#define cv_f float
#define cv_load(p, dt) s_ld_scalar((p), (dt), 0)
#define cv_store(p, dt, v) s_st_scalar((p), (dt), 0, (v))
#define cv_set1(f) (f)
#define cv_add(a, b) ((a) + (b))
#define cv_sub(a, b) ((a) - (b))
#define cv_mul(a, b) ((a) * (b))
#define cv_div(a, b) ((a) / (b))
#define cv_abs(a) fabsf(a)
#define cv_max(a, b) s_max_scalar((a), (b))
#define cv_min(a, b) s_min_scalar((a), (b))
#define cv_rint(a) rintf(a)
#define cv_any_ngt(a, b) (!((a) > (b)))
#define cv_hsum(a) (a)
#define cv_hmax(a) (a)
#define cv_store_i8(y, v) (*(y) = (int8_t)(v))
#define cv_i int32_t
#define cv_cvt_i(v) cv1_cvt_i(v)
#define cv_i2f(i) ((float)(i))
#define cv_store_i8_i(y, i) (*(y) = cv1_sat_i8(i))
#define cv_stream_i8_i(y, i) (*(y) = cv1_sat_i8(i))

#include "kernels/chain_rows.inc"
