/*
 * worklist.c - the work-list builder shared by the attention operators (see worklist.h).
 */
#include <stdlib.h>

#include "core/status.h"
#include "sched/worklist.h"

void fia_worklist_begin(fia_worklist *wl, int pass) {
    wl->pass = pass;
    wl->num_items = 0;
    wl->num_groups = 0;
    wl->partial_floats = 0;
}

static void fia_worklist_add(fia_worklist *wl, fia_work_item it) {
    if (wl->pass) wl->items[wl->num_items] = it;
    wl->num_items++;
}

void fia_worklist_tile(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                       int64_t qn, int64_t kv0, int64_t kv1, int64_t rows) {
    fia_worklist_add(wl, (fia_work_item){FIA_WORK_TILE, (int32_t)b, (int32_t)h0, (int32_t)nh, -1,
                                         0, q0, qn, kv0, kv1, nh * fia_cost_tile(rows, kv1 - kv0)});
}

int64_t fia_worklist_split(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                           int64_t qn, int64_t kv0, int64_t kv1, int64_t chunk, int64_t rows,
                           int64_t dv) {
    const int64_t c0 = kv0 / chunk, c1 = (kv1 - 1) / chunk, g = wl->num_groups;
    if (wl->pass)
        wl->groups[g] = (fia_work_group){(int32_t)b, (int32_t)h0, (int32_t)nh,
                                         (int32_t)(c1 - c0 + 1), q0, qn, wl->partial_floats};
    for (int64_t c = c0; c <= c1; c++) {
        const int64_t a = c * chunk > kv0 ? c * chunk : kv0;
        const int64_t e = (c + 1) * chunk < kv1 ? (c + 1) * chunk : kv1;
        fia_worklist_add(wl, (fia_work_item){FIA_WORK_TILE, (int32_t)b, (int32_t)h0, (int32_t)nh,
                                             (int32_t)g, (int32_t)(c - c0), q0, qn, a, e,
                                             nh * fia_cost_tile(rows, e - a)});
    }
    wl->partial_floats += (c1 - c0 + 1) * nh * rows * (dv + 2);
    wl->num_groups++;
    return g;
}

void fia_worklist_chunks(fia_worklist *wl, int64_t b, int64_t h0, int64_t nh, int64_t q0,
                         int64_t qn, int64_t kv0, int64_t kv1, int64_t chunk, int64_t rows) {
    for (int64_t c = kv0 / chunk; c <= (kv1 - 1) / chunk; c++) {
        const int64_t a = c * chunk > kv0 ? c * chunk : kv0;
        const int64_t e = (c + 1) * chunk < kv1 ? (c + 1) * chunk : kv1;
        fia_worklist_add(wl, (fia_work_item){FIA_WORK_TILE, (int32_t)b, (int32_t)h0, (int32_t)nh,
                                             -1, (int32_t)c, q0, qn, a, e,
                                             nh * fia_cost_tile(rows, e - a)});
    }
}

void fia_worklist_zero(fia_worklist *wl, int64_t b, int64_t q0, int64_t qn, int64_t cost) {
    fia_worklist_add(wl, (fia_work_item){FIA_WORK_ZERO, (int32_t)b, 0, 0, -1, 0, q0, qn, 0, 0,
                                         cost});
}

fia_status fia_worklist_check(const fia_worklist *wl) {
    if (wl->num_items > FIA_MAX_ITEMS)
        return FIA_UNSUPPORTED("the call needs more than %lld work items",
                               (long long)FIA_MAX_ITEMS);
    return FIA_STATUS_SUCCESS;
}

fia_status fia_worklist_end(fia_worklist *wl) {
    FIA_TRY(fia_worklist_check(wl));
    if (wl->pass) return FIA_STATUS_SUCCESS;
    const int64_t ni = wl->num_items, ng = wl->num_groups;
    wl->items = malloc((size_t)(ni ? ni : 1) * sizeof *wl->items);
    wl->groups = malloc((size_t)(ng ? ng : 1) * sizeof *wl->groups);
    if (!wl->items || !wl->groups)
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: cannot allocate %lld work items",
                         (long long)ni);
    return FIA_STATUS_SUCCESS;
}

static int fia_work_item_cmp(const void *a, const void *b) {
    const fia_work_item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    if (x->kv0 != y->kv0) return x->kv0 < y->kv0 ? -1 : 1;
    if (x->h0 != y->h0) return x->h0 < y->h0 ? -1 : 1;
    return x->q0 < y->q0 ? -1 : x->q0 > y->q0;
}

void fia_worklist_sort_range(fia_worklist *wl, int64_t i0, int64_t i1) {
    if (i1 > i0) qsort(wl->items + i0, (size_t)(i1 - i0), sizeof *wl->items, fia_work_item_cmp);
}

void fia_worklist_sort(fia_worklist *wl) { fia_worklist_sort_range(wl, 0, wl->num_items); }

void fia_worklist_free(fia_worklist *wl) {
    free(wl->items);
    free(wl->groups);
    wl->items = NULL;
    wl->groups = NULL;
}
