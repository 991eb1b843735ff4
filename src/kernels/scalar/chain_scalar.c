/*
 * chain_scalar.c - the scalar table of chain_kernels.h (the reference): chain_rows.inc with
 * one-lane "vectors".
 */
#include <math.h>

#include "kernels/chain_kernels.h"

#define CV_W 1
#define CV_ISA_NAME "scalar"
#define CV_NAME(x) x##_scalar
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
#define cv_hsum(a) (a)
#define cv_hmax(a) (a)
#define cv_store_i8(y, v) (*(y) = (int8_t)(v))

#include "kernels/chain_rows.inc"

const fia_chain_kernels *fia_chain_kernels_for(fia_isa isa) {
    switch (isa) {
    case FIA_ISA_AVX512:
        return __builtin_cpu_supports("avx512bf16") ? &fia_chain_kernels_avx512bf16
                                                    : &fia_chain_kernels_avx512;
    case FIA_ISA_AVX2: return &fia_chain_kernels_avx2;
    default: return &fia_chain_kernels_scalar;
    }
}
