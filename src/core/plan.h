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

/* Runs plan with a freshly allocated workspace and destroys it: the one-shot calls. */
fia_status fia_plan_run_once(fia_plan *plan);

#endif /* FIA_CORE_PLAN_H */
