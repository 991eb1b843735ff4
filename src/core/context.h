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
    fia_pool *pool;
    int32_t num_threads;
    int verbose;
};

#endif /* FIA_CORE_CONTEXT_H */
