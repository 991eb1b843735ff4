/*
 * splitkv.h - the partial softmax states of split groups (worklist.h) and the one merge pass
 * over them (softmax_state.h's merge, in chunk order).
 *
 * Slot layout: chunk c of a group whose items each hold rows state rows (all their heads) of dv
 * values lives at partials + group->partial + c * rows * (dv + 2) as [m[rows], l[rows],
 * o[rows x dv]], o unnormalised. An item that saw no key stores m = -inf and leaves o unwritten
 * (the merge never reads it).
 */
#ifndef FIA_SCHED_SPLITKV_H
#define FIA_SCHED_SPLITKV_H

#include <stdbool.h>
#include <stdint.h>

#include "core/plan.h"
#include "sched/worklist.h"

/* The workspace of an operator with per-thread scratch and split groups: num_threads areas of
 * per_thread bytes (thread tid's at fia_thread_scratch, core/plan.h), then the partial slots of
 * all groups (partial_floats). Sizes (ws == NULL) or lays it out; returns the bytes used. */
static inline size_t fia_splitkv_workspace(void *ws, size_t per_thread, int64_t num_threads,
                                           int64_t partial_floats, float **partials) {
    fia_arena a = {ws, 0};
    fia_arena_take(&a, per_thread * (size_t)num_threads);
    float *part = fia_arena_take(&a, (size_t)partial_floats * sizeof(float));
    if (partials) *partials = part;
    return a.used;
}

/* Stores one item's state: m[r], l[r] and the row r of o (leading dim ldo) for r < rows;
 * empty: nothing was visible. */
void fia_splitkv_store(float *partials, const fia_work_group *g, int32_t chunk, int64_t rows,
                       int64_t dv, bool empty, const float *m, const float *l, const float *o,
                       int64_t ldo);

/* Writes merged row r: (m, l) the state, o its dv unnormalised values (the callee may use o as
 * scratch, e.g. normalise it in place). */
typedef void fia_splitkv_write_fn(const void *ctx, int64_t r, float m, float l, float *o);

/* Merges the group's chunks row by row in chunk order and calls write for every row r of
 * [r0, r1) (of the rows of each slot); o: dv floats of scratch. Rows are independent, so one
 * group's rows may be merged by several tasks. */
void fia_splitkv_merge_rows(const float *partials, const fia_work_group *g, int64_t rows,
                            int64_t dv, int64_t r0, int64_t r1, float *o,
                            fia_splitkv_write_fn *write, const void *ctx);

/* All rows r < rows of the group. */
static inline void fia_splitkv_merge(const float *partials, const fia_work_group *g, int64_t rows,
                                     int64_t dv, float *o, fia_splitkv_write_fn *write,
                                     const void *ctx) {
    fia_splitkv_merge_rows(partials, g, rows, dv, 0, rows, o, write, ctx);
}

#endif /* FIA_SCHED_SPLITKV_H */
