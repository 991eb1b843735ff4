/* context.h - what a context holds: the ISA level, its kernel table and the thread pool. */
#ifndef FIA_CORE_CONTEXT_H
#define FIA_CORE_CONTEXT_H

#include <stdbool.h>

#include "core/threadpool.h"
#include "fia.h"
#include "kernels/kernels.h"

struct fia_context {
    fia_isa isa;
    const fia_kernels *kernels;
    bool vnni; /* AVX-512 VNNI (int8 dot products) usable: isa is AVX512 and the CPU has it */
    bool bf16dp; /* AVX512-BF16 (vdpbf16ps) usable: isa is AVX512 and the CPU has it */
    /* bf16dp and faster than fp32 FMA for the bf16 Q.K^T paths: AMD (Zen 4/5 run vdpbf16ps at
     * twice the FMA's FLOP rate); not Intel, whose vdpbf16ps issues on one port (the FMA's FLOP
     * rate: measured 96 vs 150 GFLOP/s per core on an AMX Xeon for the MLA Q.K^T in cache).
     * FIA_BF16DP=1 / 0 at context creation forces it on / off (where bf16dp). */
    bool bf16dp_fast;
    bool amx_bf16; /* AMX bf16 tiles usable (kernels/amx.h; also needs bf16dp), FIA_AMX=0: off */
    bool amx_int8; /* AMX int8 tiles usable */
    fia_pool *pool;
    int32_t num_threads;
    int verbose;
};

#endif /* FIA_CORE_CONTEXT_H */
