/* chain_common.c - the shared checks and plan helpers of the chain operators (chain_common.h). */
#include <stdlib.h>

#include "core/context.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/chain_common.h"

fia_status chain_check_float(const fia_tensor *t, const char *name) {
    FIA_TRY(fia_tensor_check(t, name, false));
    if (!fia_dtype_is_float(t->dtype))
        return FIA_INVALID("%s dtype is %s, must be float32, float16 or bfloat16", name,
                           fia_dtype_name(t->dtype));
    if (t->ndim < 1) return FIA_INVALID("%s has 0 dims, needs at least 1", name);
    return FIA_STATUS_SUCCESS;
}

fia_status chain_check_same_shape(const fia_tensor *t, const char *name, const fia_tensor *ref,
                                  const char *ref_name) {
    if (t->ndim != ref->ndim)
        return FIA_INVALID("%s has %d dims, %s has %d", name, (int)t->ndim, ref_name,
                           (int)ref->ndim);
    for (int32_t d = 0; d < t->ndim; d++)
        if (t->shape[d] != ref->shape[d])
            return FIA_INVALID("%s dim %d is %lld, %s has %lld", name, (int)d,
                               (long long)t->shape[d], ref_name, (long long)ref->shape[d]);
    return FIA_STATUS_SUCCESS;
}

fia_status chain_check_compact_tail(const fia_tensor *t, const char *name, int32_t tail) {
    int64_t want = 1;
    for (int32_t d = t->ndim - 1; d >= t->ndim - tail && d >= 0; d--) {
        if (t->shape[d] > 1 && t->strides[d] != want)
            return FIA_UNSUPPORTED("%s dim %d stride is %lld, must be %lld (the normalized / "
                                   "rotated dims must be compact)", name, (int)d,
                                   (long long)t->strides[d], (long long)want);
        want *= t->shape[d];
    }
    return FIA_STATUS_SUCCESS;
}

fia_status chain_check_out_lead(const fia_tensor *t, const char *name, int32_t lead) {
    for (int32_t d = 0; d < lead; d++)
        if (t->shape[d] > 1 && t->strides[d] == 0)
            return FIA_INVALID("%s dim %d has stride 0 with %lld entries: an output cannot "
                               "broadcast", name, (int)d, (long long)t->shape[d]);
    return FIA_STATUS_SUCCESS;
}

int64_t chain_prod(const int64_t *shape, int32_t from, int32_t to) {
    int64_t p = 1;
    for (int32_t d = from; d < to; d++) p *= shape[d];
    return p;
}

static void chain_destroy(fia_plan *plan) { free(plan); }

void *chain_plan_new(fia_context *ctx, size_t bytes, void (*execute)(fia_plan *, void *)) {
    fia_plan *p = calloc(1, bytes);
    if (!p) {
        fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
        return NULL;
    }
    p->ctx = ctx;
    p->execute = execute;
    p->destroy = chain_destroy;
    return p;
}

fia_status chain_plan_done(fia_plan *p, fia_status st, fia_status (*check)(fia_plan *),
                           fia_plan **plan, size_t *workspace_bytes) {
    if (st != FIA_STATUS_SUCCESS) {
        free(p);
        return st;
    }
    p->check = check;
    *plan = p;
    if (workspace_bytes) *workspace_bytes = p->workspace_bytes;
    return FIA_STATUS_SUCCESS;
}

void chain_run(fia_context *ctx, int64_t tasks, void (*fn)(void *, int64_t, int32_t), void *arg) {
    if (tasks <= 0) return;
    if (tasks == 1) fn(arg, 0, 0);
    else fia_pool_run(ctx->pool, tasks, fn, arg);
}
