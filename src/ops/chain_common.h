/*
 * chain_common.h - what the elementwise chain operators (rms_norm, add_rms_norm, rotary_mul,
 * interleave_rope, dynamic_quant) share: tensors seen as rows over their leading dims (with
 * broadcasting of size-1 dims), the compact-row and shape checks, and the row-chunk task split.
 * Validation is written with validate.h / core/tensor.h style helpers so it can move onto the
 * shared operator framework later; the limits are the named constants below.
 */
#ifndef FIA_OPS_CHAIN_COMMON_H
#define FIA_OPS_CHAIN_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "core/plan.h"
#include "fia.h"
#include "kernels/chain_kernels.h"

/* Elements per task of a row-parallel pass (rows are never split). */
#define CHAIN_TASK_ELEMS (INT64_C(1) << 15)
/* The most rows any chain operator accepts (row counts and offsets stay far from overflow). */
#define CHAIN_MAX_ROWS (INT64_C(1) << 40)

/* Checks a float (f32 / f16 / bf16) tensor: fia_tensor_check, dtype, 1..FIA_MAX_DIMS dims. */
fia_status chain_check_float(const fia_tensor *t, const char *name);

/* Requires t to have ref's shape (ndim and every dim); ref_name names ref in the message. */
fia_status chain_check_same_shape(const fia_tensor *t, const char *name, const fia_tensor *ref,
                                  const char *ref_name);

/* Requires the last `tail` dims of t to be compact (a contiguous block per leading index):
 * FIA_STATUS_UNSUPPORTED otherwise. */
fia_status chain_check_compact_tail(const fia_tensor *t, const char *name, int32_t tail);

/* Requires an output's leading dims (the first `lead`) to have nonzero strides where the dim
 * is > 1 (distinct rows never share memory through a zero stride). */
fia_status chain_check_out_lead(const fia_tensor *t, const char *name, int32_t lead);

/* Product of the first `lead` dims of shape. */
int64_t chain_prod(const int64_t *shape, int32_t from, int32_t to);

/* The index of row r over the first `lead` dims of shape (row-major). */
static inline void chain_unravel(const int64_t *shape, int32_t lead, int64_t r, int64_t *idx) {
    for (int32_t d = lead - 1; d >= 0; d--) {
        const int64_t n = shape[d] > 0 ? shape[d] : 1;
        idx[d] = r % n;
        r /= n;
    }
}

/* Advances idx to the next row (row-major odometer): no division per row. */
static inline void chain_next(const int64_t *shape, int32_t lead, int64_t *idx) {
    for (int32_t d = lead - 1; d >= 0; d--) {
        if (++idx[d] < shape[d]) return;
        idx[d] = 0;
    }
}

/* Element offset of idx[0..lead) in t, reading a size-1 dim of t as broadcast (index 0).
 * t's first `lead` dims are aligned with idx (t->ndim >= lead). */
static inline int64_t chain_off(const fia_tensor *t, const int64_t *idx, int32_t lead) {
    int64_t off = 0;
    for (int32_t d = 0; d < lead; d++)
        if (t->shape[d] != 1) off += idx[d] * t->strides[d];
    return off;
}

/* Rows per task so that a task holds about CHAIN_TASK_ELEMS elements (at least 1 row). */
static inline int64_t chain_rows_per_task(int64_t row_elems) {
    const int64_t r = CHAIN_TASK_ELEMS / (row_elems > 0 ? row_elems : 1);
    return r > 0 ? r : 1;
}

/* Allocates and fills the base of a chain plan of `bytes` bytes (zeroed); NULL when out of
 * memory (error set). */
void *chain_plan_new(fia_context *ctx, size_t bytes, void (*execute)(fia_plan *, void *));

/* Hands out a chain plan p after its validation status st: on failure frees p and returns st;
 * else sets its check callback (NULL: none), *plan and (when non-NULL) *workspace_bytes. */
fia_status chain_plan_done(fia_plan *p, fia_status st, fia_status (*check)(fia_plan *),
                           fia_plan **plan, size_t *workspace_bytes);

/* Runs fn(arg, task, tid) for every task on the context's pool. */
void chain_run(fia_context *ctx, int64_t tasks, void (*fn)(void *, int64_t, int32_t), void *arg);

#endif /* FIA_OPS_CHAIN_COMMON_H */
