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
    /* The compute unit of the plan's fastest part, for the benchmark's roofline: "fma"
     * (NULL means fma), "bf16dp", "vnni", "amx_bf16" or "amx_int8". */
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

/* Runs plan with a freshly allocated workspace and destroys it: the one-shot calls. */
fia_status fia_plan_run_once(fia_plan *plan);

#endif /* FIA_CORE_PLAN_H */
