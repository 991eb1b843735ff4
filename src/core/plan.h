/*
 * plan.h - the operator-independent part of a plan. Each operator embeds fia_plan as the first
 * member of its own plan struct and fills in the two callbacks.
 */
#ifndef FIA_CORE_PLAN_H
#define FIA_CORE_PLAN_H

#include <stddef.h>

#include "fia.h"

#define FIA_WORKSPACE_ALIGN 64

struct fia_plan {
    fia_context *ctx;
    size_t workspace_bytes; /* includes FIA_WORKSPACE_ALIGN slack for any caller alignment */
    /* Runs the plan on a FIA_WORKSPACE_ALIGN-aligned workspace. Must not fail. */
    void (*execute)(fia_plan *plan, void *workspace);
    void (*destroy)(fia_plan *plan);
    /* Optional (NULL when unused; plans are zero-initialised): validates the data the plan
     * reads at execute time (indices of a scatter, group boundaries) before anything is
     * written. A failure is returned by fia_plan_execute with nothing written. */
    fia_status (*check)(fia_plan *plan);
    /* The compute unit of the plan's fastest part (fia_plan_compute_unit; NULL means "fma"). */
    const char *unit;
};

/* Bump layout of a workspace: the same code sizes it (base == NULL) and lays it out. */
typedef struct fia_arena {
    char *base;
    size_t used;
} fia_arena;

/* Reserves bytes (rounded to FIA_WORKSPACE_ALIGN) and returns their address (NULL when sizing). */
static inline void *fia_arena_take(fia_arena *a, size_t bytes) {
    void *p = a->base ? a->base + a->used : NULL;
    a->used += (bytes + FIA_WORKSPACE_ALIGN - 1) / FIA_WORKSPACE_ALIGN * FIA_WORKSPACE_ALIGN;
    return p;
}

/* Per-thread scratch, one scheme for every operator: the workspace starts with num_threads
 * areas of per_thread bytes each (per_thread: what the operator's carve function, run with a
 * NULL arena base, reserves; computed once per execute), thread tid's area first. A thread
 * finds its area from its id alone, so no state is shared between threads. */
static inline char *fia_thread_scratch(void *workspace, size_t per_thread, int32_t tid) {
    return (char *)workspace + per_thread * (size_t)tid;
}

/* The checks every fia_<op>_plan entry point starts with: clears the thread's error, then
 * refuses a NULL context, tensors, params or plan (INVALID_ARGUMENT naming it). */
fia_status fia_plan_args(const fia_context *ctx, const void *tensors, const void *params,
                         fia_plan **plan);

/* Runs plan with a freshly allocated workspace and destroys it: the one-shot calls. */
fia_status fia_plan_run_once(fia_plan *plan);

/* The body of a one-shot call fia_<op>(ctx, t, prm): plans with plan_fn, runs the plan once. */
#define FIA_PLAN_RUN_ONCE(plan_fn, ctx, t, prm)                                                  \
    do {                                                                                         \
        fia_plan *once_plan_ = NULL;                                                             \
        FIA_TRY(plan_fn(ctx, t, prm, &once_plan_, NULL));                                        \
        return fia_plan_run_once(once_plan_);                                                    \
    } while (0)

#endif /* FIA_CORE_PLAN_H */
