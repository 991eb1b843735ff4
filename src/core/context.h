/* context.h - what a context holds: the ISA level, the CPU features it may use, the kernel set
 * built from them (kernels/registry.h) and the thread pool. */
#ifndef FIA_CORE_CONTEXT_H
#define FIA_CORE_CONTEXT_H

#include <stdbool.h>

#include "core/threadpool.h"
#include "fia.h"
#include "kernels/registry.h"

struct fia_context {
    fia_isa isa;
    uint32_t features;      /* FIA_CPU_* bits: the CPU's, capped by isa */
    fia_kernel_set kernels; /* every family's table, chosen from features */
    /* The direct-call bf16 / AMX paths of MLA and sparse attention (kernels/amx.h, bf16dp.h),
     * from features: */
    bool bf16dp;   /* AVX512-BF16 (vdpbf16ps) usable */
    /* bf16dp and faster than fp32 FMA for the bf16 Q.K^T paths: AMD (Zen 4/5 run vdpbf16ps at
     * twice the FMA's FLOP rate); not Intel, whose vdpbf16ps issues on one port (the FMA's FLOP
     * rate: measured 96 vs 150 GFLOP/s per core on an AMX Xeon for the MLA Q.K^T in cache).
     * FIA_BF16DP=1 / 0 at context creation forces it on / off (where bf16dp). */
    bool bf16dp_fast;
    bool amx_bf16; /* AMX bf16 tiles usable (with bf16dp); FIA_AMX=0 at creation: off */
    bool amx_int8; /* AMX int8 tiles usable; FIA_AMX=0: off */
    fia_pool *pool;
    int32_t num_threads;
    int verbose;
};

#endif /* FIA_CORE_CONTEXT_H */
