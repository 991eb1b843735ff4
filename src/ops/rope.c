/*
 * rope.c - rotary_mul and interleave_rope (fia/rope.h): validation, plan, and a row-parallel
 * execute over the chain row kernel rope_row (kernels/chain_kernels.h). A row is the last dim;
 * cos / sin rows are found by broadcasting the row's leading index (size-1 dims read index 0).
 */
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/chain_common.h"

typedef struct rope_plan {
    fia_plan base;
    const fia_chain_kernels *k;
    fia_tensor x, cos, sin, y;
    fia_rope_mode mode;
    int32_t lead;
    int64_t rows, d, rows_per_task;
    bool stream; /* output above FIA_CHAIN_STREAM_BYTES: streaming stores */
} rope_plan;

void fia_rotary_mul_params_init(fia_rotary_mul_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->rotary_mode = FIA_ROTARY_MODE_HALF;
}

void fia_interleave_rope_params_init(fia_interleave_rope_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
}

static void rope_task(void *arg, int64_t task, int32_t tid) {
    (void)tid;
    const rope_plan *p = arg;
    const int64_t r0 = task * p->rows_per_task;
    const int64_t r1 = r0 + p->rows_per_task < p->rows ? r0 + p->rows_per_task : p->rows;
    const fia_dtype dt = p->x.dtype;
    const int64_t es = (int64_t)fia_dtype_size(dt);
    const char *xb = fia_tensor_ptr(&p->x), *cb = fia_tensor_ptr(&p->cos), *sb = fia_tensor_ptr(&p->sin);
    char *yb = fia_tensor_ptr(&p->y);
    int64_t idx[FIA_MAX_DIMS];
    chain_unravel(p->x.shape, p->lead, r0, idx);
    for (int64_t r = r0; r < r1; r++, chain_next(p->x.shape, p->lead, idx)) {
        (p->stream ? p->k->rope_row_nt : p->k->rope_row)(xb + chain_off(&p->x, idx, p->lead) * es, dt,
                       cb + chain_off(&p->cos, idx, p->lead) * es,
                       sb + chain_off(&p->sin, idx, p->lead) * es, dt, p->d, p->mode,
                       yb + chain_off(&p->y, idx, p->lead) * es, dt);
    }
    if (p->stream) p->k->stream_fence();
}

static void rope_execute(fia_plan *plan, void *ws) {
    (void)ws;
    rope_plan *p = (rope_plan *)plan;
    chain_run(plan->ctx, (p->rows + p->rows_per_task - 1) / p->rows_per_task, rope_task, p);
}

/* cos / sin: x's ndim and dtype, each dim x's or 1, last dim D, contiguous last dim. */
static fia_status rope_check_table(const fia_tensor *t, const char *name, const fia_tensor *x) {
    if (!t) return FIA_INVALID("%s is NULL", name);
    FIA_TRY(chain_check_float(t, name));
    if (t->dtype != x->dtype)
        return FIA_INVALID("%s dtype is %s, must be x's (%s)", name, fia_dtype_name(t->dtype),
                           fia_dtype_name(x->dtype));
    if (t->ndim != x->ndim)
        return FIA_INVALID("%s has %d dims, x has %d", name, (int)t->ndim, (int)x->ndim);
    for (int32_t d = 0; d < x->ndim; d++) {
        const bool last = d == x->ndim - 1;
        if (t->shape[d] != x->shape[d] && (last || t->shape[d] != 1))
            return FIA_INVALID("%s dim %d is %lld, must be x's %lld%s", name, (int)d,
                               (long long)t->shape[d], (long long)x->shape[d],
                               last ? "" : " or 1 (broadcast)");
    }
    return chain_check_compact_tail(t, name, 1);
}

static fia_status rope_plan_common(fia_context *ctx, const fia_rotary_mul_tensors *t,
                                   fia_rope_mode mode, fia_plan **plan, size_t *workspace_bytes) {
    if (!t->x) return FIA_INVALID("x is NULL");
    if (!t->y) return FIA_INVALID("y is NULL");
    const fia_tensor *x = t->x;
    FIA_TRY(chain_check_float(x, "x"));
    const int64_t D = x->shape[x->ndim - 1];
    if (D < 2 || D % 2 != 0 || D > FIA_ROTARY_MAX_D)
        return FIA_INVALID("x dim %d (D) is %lld, must be even and in 2..%d", (int)(x->ndim - 1),
                           (long long)D, FIA_ROTARY_MAX_D);
    FIA_TRY(chain_check_compact_tail(x, "x", 1));
    FIA_TRY(rope_check_table(t->cos, "cos", x));
    FIA_TRY(rope_check_table(t->sin, "sin", x));
    FIA_TRY(chain_check_float(t->y, "y"));
    FIA_TRY(chain_check_same_shape(t->y, "y", x, "x"));
    if (t->y->dtype != x->dtype)
        return FIA_INVALID("y dtype is %s, must be x's (%s)", fia_dtype_name(t->y->dtype),
                           fia_dtype_name(x->dtype));
    FIA_TRY(chain_check_compact_tail(t->y, "y", 1));
    FIA_TRY(chain_check_out_lead(t->y, "y", x->ndim - 1));
    rope_plan *p = chain_plan_new(ctx, sizeof *p, rope_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    p->k = &ctx->kernels.chain;
    p->x = *x;
    p->cos = *t->cos;
    p->sin = *t->sin;
    p->y = *t->y;
    p->mode = mode;
    p->lead = x->ndim - 1;
    p->d = D;
    p->rows = chain_prod(x->shape, 0, p->lead);
    p->rows_per_task = chain_rows_per_task(D);
    p->stream = p->rows * D * (int64_t)fia_dtype_size(x->dtype) > FIA_CHAIN_STREAM_BYTES;
    return chain_plan_done(&p->base, FIA_STATUS_SUCCESS, NULL, plan, workspace_bytes);
}

fia_status fia_rotary_mul_plan(fia_context *ctx, const fia_rotary_mul_tensors *t,
                               const fia_rotary_mul_params *prm, fia_plan **plan,
                               size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_rotary_mul_params v;
    fia_rotary_mul_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v, "fia_rotary_mul_params_init"));
    if (v.rotary_mode != FIA_ROTARY_MODE_HALF && v.rotary_mode != FIA_ROTARY_MODE_INTERLEAVE)
        return FIA_INVALID("rotary_mode is %d, must be 0 (half) or 1 (interleave)",
                           (int)v.rotary_mode);
    return rope_plan_common(ctx, t,
                            v.rotary_mode == FIA_ROTARY_MODE_HALF ? FIA_ROPE_HALF
                                                                  : FIA_ROPE_INTERLEAVE,
                            plan, workspace_bytes);
}

fia_status fia_rotary_mul(fia_context *ctx, const fia_rotary_mul_tensors *t,
                          const fia_rotary_mul_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_rotary_mul_plan, ctx, t, prm);
}

fia_status fia_interleave_rope_plan(fia_context *ctx, const fia_rotary_mul_tensors *t,
                                    const fia_interleave_rope_params *prm, fia_plan **plan,
                                    size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_interleave_rope_params v;
    fia_interleave_rope_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v, "fia_interleave_rope_params_init"));
    return rope_plan_common(ctx, t, FIA_ROPE_INTERLEAVE_HALF, plan, workspace_bytes);
}

fia_status fia_interleave_rope(fia_context *ctx, const fia_rotary_mul_tensors *t,
                               const fia_interleave_rope_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_interleave_rope_plan, ctx, t, prm);
}
