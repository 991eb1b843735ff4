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

#include "sched/worklist.h"

/* Stores one item's state: m[r], l[r] and the row r of o (leading dim ldo) for r < rows;
 * empty: nothing was visible. */
void fia_splitkv_store(float *partials, const fia_work_group *g, int32_t chunk, int64_t rows,
                       int64_t dv, bool empty, const float *m, const float *l, const float *o,
                       int64_t ldo);

/* Writes merged row r: (m, l) the state, o its dv unnormalised values (the callee may use o as
 * scratch, e.g. normalise it in place). */
typedef void fia_splitkv_write_fn(const void *ctx, int64_t r, float m, float l, float *o);

/* Merges the group's chunks row by row in chunk order and calls write for every row r < rows;
 * o: dv floats of scratch. */
void fia_splitkv_merge(const float *partials, const fia_work_group *g, int64_t rows, int64_t dv,
                       float *o, fia_splitkv_write_fn *write, const void *ctx);

/* The same for rows r0 <= r < r1 only (rows: the group's state rows, the slot layout), so that
 * several threads can merge one group: each row's merge is the same whoever does it. */
void fia_splitkv_merge_rows(const float *partials, const fia_work_group *g, int64_t rows,
                            int64_t r0, int64_t r1, int64_t dv, float *o,
                            fia_splitkv_write_fn *write, const void *ctx);

#endif /* FIA_SCHED_SPLITKV_H */
