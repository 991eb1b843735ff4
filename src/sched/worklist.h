/*
 * worklist.h - the work list every attention operator schedules with: one item type, split
 * groups, the chunk builder, the cost order and the two-pass (count, then fill) construction.
 *
 * Determinism, proved here once: an item's key range and a group's chunk boundaries depend only
 * on the request (its lengths, the query tile and the chunk size, boundaries at multiples of the
 * chunk in token space), never on the thread count; the items of a group park their partial
 * softmax states in fixed slots (splitkv.h) and one merge task per group folds them in chunk
 * order. Which thread runs an item, and when, changes no bit of any output. The cost order
 * (largest first, ties by batch, first key, head block, first query row) only balances load.
 *
 * Use: for (pass = 0; pass < 2; pass++) { fia_worklist_begin(&wl, pass); ...add items...;
 * FIA_TRY(fia_worklist_check(&wl)) per request; FIA_TRY(fia_worklist_end(&wl)); } then
 * fia_worklist_sort(&wl). Pass 0 only counts; fia_worklist_end of pass 0 allocates.
 */
#ifndef FIA_SCHED_WORKLIST_H
#define FIA_SCHED_WORKLIST_H

#include <stdint.h>

#include "core/limits.h"
#include "fia.h"

typedef enum fia_work_kind {
    FIA_WORK_TILE = 0, /* attention over keys [kv0, kv1) of query rows [q0, q0 + qn) */
    FIA_WORK_ZERO = 1  /* rows [q0, q0 + qn) see nothing: output 0 (lse +inf) */
} fia_work_kind;

typedef struct fia_work_item {
    int32_t kind;
    int32_t b;        /* batch */
    int32_t h0, nh;   /* head block [h0, h0 + nh) (the operator says which heads) */
    int32_t group;    /* split group, -1 when the item writes the output itself */
    int32_t chunk;    /* index within the group */
    int64_t q0, qn;   /* query positions [q0, q0 + qn) */
    int64_t kv0, kv1; /* keys [kv0, kv1) */
    int64_t cost;
} fia_work_item;

typedef struct fia_work_group {
    int32_t b, h0, nh;
    int32_t nchunks;
    int64_t q0, qn;
    int64_t partial; /* offset (floats) of chunk 0's slot in the partial area (splitkv.h) */
} fia_work_group;

typedef struct fia_worklist {
    fia_work_item *items;
    fia_work_group *groups;
    int64_t num_items, num_groups;
    int64_t partial_floats; /* all groups' slots */
    int pass;               /* 0: count, 1: fill */
} fia_worklist;

/* The TILE item a worker runs after item `task`, for it to prefetch that item's first step:
 * item next_task when the pool told it (fia_pool_run_ahead, >= 0), else the list's next one;
 * NULL when there is none or it is not a TILE item. */
static inline const fia_work_item *fia_worklist_next_tile(const fia_worklist *wl, int64_t task,
                                                          int64_t next_task) {
    const int64_t nt = next_task >= 0 ? next_task : task + 1;
    return nt < wl->num_items && wl->items[nt].kind == FIA_WORK_TILE ? &wl->items[nt] : NULL;
}

/* Starts a pass (the lists of pass 1 were allocated by fia_worklist_end of pass 0). */
void fia_worklist_begin(fia_worklist *wl, int pass);

/* One item over keys [kv0, kv1) of heads [h0, h0 + nh), rows query rows per head. Cost:
 * nh x fia_cost_tile(rows, kv1 - kv0). */
void fia_worklist_tile(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                       int64_t qn, int64_t kv0, int64_t kv1, int64_t rows);

/* One split group over keys [kv0, kv1) (kv1 > kv0): one item per chunk of the token grid
 * [c * chunk, (c + 1) * chunk) the range touches, each parking a partial state of nh x rows rows
 * of dv values (splitkv.h). Returns the group's index. */
int64_t fia_worklist_split(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                           int64_t qn, int64_t kv0, int64_t kv1, int64_t chunk, int64_t rows,
                           int64_t dv);

/* Items over keys [kv0, kv1) (kv1 > kv0), one per chunk of the token grid [c * chunk,
 * (c + 1) * chunk) the range touches, each writing its own part of the output (no group, no
 * merge: operators whose items' results are disjoint in key space, e.g. the indexer's scores).
 * item.chunk is the grid index c; cost as fia_worklist_tile. */
void fia_worklist_chunks(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                         int64_t qn, int64_t kv0, int64_t kv1, int64_t chunk, int64_t rows);

/* Rows [q0, q0 + qn) of batch b (padding past the actual length). */
void fia_worklist_zero(fia_worklist *wl, int64_t b, int64_t q0, int64_t qn, int64_t cost);

/* FIA_STATUS_UNSUPPORTED once the list holds more than FIA_MAX_ITEMS items. */
fia_status fia_worklist_check(const fia_worklist *wl);

/* Ends a pass: after pass 0 allocates the lists (OUT_OF_MEMORY on failure). */
fia_status fia_worklist_end(fia_worklist *wl);

/* Largest cost first; ties in (batch, first key, head block, first query row) order, so that
 * threads working at the same time read neighbouring rows. A total order: the result does not
 * depend on qsort's algorithm. */
void fia_worklist_sort(fia_worklist *wl);

/* The same order over items [i0, i1) only (a phase that runs as one pool pass). */
void fia_worklist_sort_range(fia_worklist *wl, int64_t i0, int64_t i1);

void fia_worklist_free(fia_worklist *wl);

#endif /* FIA_SCHED_WORKLIST_H */
