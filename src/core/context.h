/* context.h - what a context holds: the ISA level, its kernel table and the thread pool. */
#ifndef FIA_CORE_CONTEXT_H
#define FIA_CORE_CONTEXT_H

#include "core/threadpool.h"
#include "fia.h"
#include "kernels/kernels.h"

struct fia_context {
    fia_isa isa;
    const fia_kernels *kernels;
    fia_pool *pool;
    int32_t num_threads;
    int verbose;
};

#endif /* FIA_CORE_CONTEXT_H */
