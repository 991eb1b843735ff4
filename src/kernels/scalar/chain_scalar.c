/*
 * chain_scalar.c - the scalar chain kernels of chain_kernels.h (the reference): chain_rows.inc with
 * one-lane "vectors".
 */
#include <math.h>

#include "kernels/chain_kernels.h"

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

#include "kernels/chain_rows.inc"
