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
    fia_pool *pool;
    int32_t num_threads;
    int verbose;
};

#endif /* FIA_CORE_CONTEXT_H */
