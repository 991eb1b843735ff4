/*
 * splitkv.c - stores and merges the partial states of split groups (see splitkv.h).
 */
#include <math.h>
#include <string.h>

#include "kernels/softmax_state.h"
#include "sched/splitkv.h"

void fia_splitkv_store(float *partials, const fia_work_group *g, int32_t chunk, int64_t rows,
                       int64_t dv, bool empty, const float *m, const float *l, const float *o,
                       int64_t ldo) {
    float *slot = partials + g->partial + (int64_t)chunk * rows * (dv + 2);
    for (int64_t r = 0; r < rows; r++) {
        slot[r] = empty ? -INFINITY : m[r];
        slot[rows + r] = l[r];
        if (!empty) memcpy(slot + 2 * rows + r * dv, o + r * ldo, (size_t)dv * sizeof(float));
    }
}

void fia_splitkv_merge_rows(const float *partials, const fia_work_group *g, int64_t rows,
                            int64_t dv, int64_t r0, int64_t r1, float *o,
                            fia_splitkv_write_fn *write, const void *ctx) {
    const float *base = partials + g->partial;
    for (int64_t r = r0; r < r1; r++) {
        float m = -INFINITY, l = 0.0f;
        for (int32_t c = 0; c < g->nchunks; c++) {
            const float *slot = base + (int64_t)c * rows * (dv + 2);
            fia_softmax_state_merge(&m, &l, o, slot[r], slot[rows + r], slot + 2 * rows + r * dv,
                                    dv);
        }
        write(ctx, r, m, l, o);
    }
}
