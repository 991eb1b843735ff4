/*
 * norm.c - rms_norm and add_rms_norm (fia/norm.h): validation, plan, and a row-parallel execute
 * over the chain row kernel rms_norm_row (kernels/chain_kernels.h).
 *
 * A row is the block of the trailing dims gamma covers (compact); rows are indexed over the
 * leading dims of x1 (row-major) and split into tasks of about CHAIN_TASK_ELEMS elements. Each
 * row is computed by one kernel call, so results do not depend on the thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/chain_common.h"

typedef struct norm_plan {
    fia_plan base;
    const fia_chain_kernels *k;
    fia_tensor x1, x2, gamma, y, rstd, x; /* x2 / rstd / x: ndim 0 when absent */
    bool has_x2, has_rstd, has_x;
    int32_t lead;  /* leading dims */
    int64_t rows, n, rows_per_task;
    float eps;
    bool stream; /* outputs above FIA_CHAIN_STREAM_BYTES: streaming stores */
} norm_plan;

void fia_rms_norm_params_init(fia_rms_norm_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->epsilon = 1e-6;
}

static void norm_task(void *arg, int64_t task, int32_t tid) {
    (void)tid;
    const norm_plan *p = arg;
    const int64_t r0 = task * p->rows_per_task;
    const int64_t r1 = r0 + p->rows_per_task < p->rows ? r0 + p->rows_per_task : p->rows;
    const fia_dtype dt = p->x1.dtype;
    const int64_t es = (int64_t)fia_dtype_size(dt);
    const void *g = fia_tensor_ptr(&p->gamma);
    int64_t idx[FIA_MAX_DIMS];
    chain_unravel(p->x1.shape, p->lead, r0, idx);
    for (int64_t r = r0; r < r1; r++, chain_next(p->x1.shape, p->lead, idx)) {
        const char *a = (const char *)fia_tensor_ptr(&p->x1) + chain_off(&p->x1, idx, p->lead) * es;
        const char *b = p->has_x2 ? (const char *)fia_tensor_ptr(&p->x2) +
                                        chain_off(&p->x2, idx, p->lead) * es
                                  : NULL;
        char *y = (char *)fia_tensor_ptr(&p->y) + chain_off(&p->y, idx, p->lead) * es;
        char *xs = p->has_x ? (char *)fia_tensor_ptr(&p->x) + chain_off(&p->x, idx, p->lead) * es
                            : NULL;
        const float rstd = (p->stream ? p->k->rms_norm_row_nt : p->k->rms_norm_row)(
            a, b, dt, g, p->gamma.dtype, p->n, p->eps, 1.0f, y, dt, xs);
        if (p->has_rstd)
            *((float *)fia_tensor_ptr(&p->rstd) + chain_off(&p->rstd, idx, p->lead)) = rstd;
    }
    if (p->stream) p->k->stream_fence();
}

static void norm_execute(fia_plan *plan, void *ws) {
    (void)ws;
    norm_plan *p = (norm_plan *)plan;
    chain_run(plan->ctx, (p->rows + p->rows_per_task - 1) / p->rows_per_task, norm_task, p);
}

/* A float tensor with x1's shape and dtype, compact over the normalized dims. */
static fia_status norm_check_like(const fia_tensor *t, const char *name, const fia_tensor *x1,
                                  const char *x1_name, int32_t g, bool output) {
    FIA_TRY(chain_check_float(t, name));
    FIA_TRY(chain_check_same_shape(t, name, x1, x1_name));
    if (t->dtype != x1->dtype)
        return FIA_INVALID("%s dtype is %s, must be %s's (%s)", name, fia_dtype_name(t->dtype),
                           x1_name, fia_dtype_name(x1->dtype));
    FIA_TRY(chain_check_compact_tail(t, name, g));
    if (output) FIA_TRY(chain_check_out_lead(t, name, x1->ndim - g));
    return FIA_STATUS_SUCCESS;
}

static fia_status norm_validate(norm_plan *p, const fia_tensor *x1, const char *x1_name,
                                const fia_tensor *x2, const fia_tensor *gamma, fia_tensor *y,
                                fia_tensor *rstd, fia_tensor *x, double eps) {
    if (!x1) return FIA_INVALID("%s is NULL", x1_name);
    if (!gamma) return FIA_INVALID("gamma is NULL");
    if (!y) return FIA_INVALID("y is NULL");
    FIA_TRY(chain_check_float(x1, x1_name));
    FIA_TRY(chain_check_float(gamma, "gamma"));
    const int32_t g = gamma->ndim;
    if (g > x1->ndim)
        return FIA_INVALID("gamma has %d dims, %s has only %d", (int)g, x1_name, (int)x1->ndim);
    for (int32_t d = 0; d < g; d++) {
        const int32_t xd = x1->ndim - g + d;
        if (gamma->shape[d] != x1->shape[xd])
            return FIA_INVALID("gamma dim %d is %lld, %s dim %d is %lld (gamma covers the "
                               "trailing dims)", (int)d, (long long)gamma->shape[d], x1_name,
                               (int)xd, (long long)x1->shape[xd]);
    }
    if (gamma->dtype != x1->dtype && gamma->dtype != FIA_DTYPE_FLOAT32)
        return FIA_INVALID("gamma dtype is %s, must be %s's (%s) or float32",
                           fia_dtype_name(gamma->dtype), x1_name, fia_dtype_name(x1->dtype));
    FIA_TRY(chain_check_compact_tail(x1, x1_name, g));
    FIA_TRY(chain_check_compact_tail(gamma, "gamma", g));
    if (x2) FIA_TRY(norm_check_like(x2, "x2", x1, x1_name, g, false));
    FIA_TRY(norm_check_like(y, "y", x1, x1_name, g, true));
    if (x) FIA_TRY(norm_check_like(x, "x", x1, x1_name, g, true));
    const int32_t lead = x1->ndim - g;
    if (rstd) {
        FIA_TRY(fia_tensor_check(rstd, "rstd", false));
        if (rstd->dtype != FIA_DTYPE_FLOAT32)
            return FIA_INVALID("rstd dtype is %s, must be float32", fia_dtype_name(rstd->dtype));
        if (rstd->ndim != x1->ndim)
            return FIA_INVALID("rstd has %d dims, must have %s's %d", (int)rstd->ndim, x1_name,
                               (int)x1->ndim);
        for (int32_t d = 0; d < x1->ndim; d++) {
            const int64_t want = d < lead ? x1->shape[d] : 1;
            if (rstd->shape[d] != want)
                return FIA_INVALID("rstd dim %d is %lld, must be %lld (%s)", (int)d,
                                   (long long)rstd->shape[d], (long long)want,
                                   d < lead ? "a leading dim of the input" : "1 over gamma");
        }
        FIA_TRY(chain_check_out_lead(rstd, "rstd", lead));
    }
    if (!(eps >= 0.0) || !isfinite(eps))
        return FIA_INVALID("epsilon is %g, must be finite and >= 0", eps);
    p->lead = lead;
    p->n = chain_prod(x1->shape, lead, x1->ndim);
    p->rows = chain_prod(x1->shape, 0, lead);
    if (p->n == 0) p->rows = 0; /* empty rows: nothing to normalize */
    p->x1 = *x1;
    if (x2) p->x2 = *x2;
    p->gamma = *gamma;
    p->y = *y;
    if (rstd) p->rstd = *rstd;
    if (x) p->x = *x;
    p->has_x2 = x2 != NULL;
    p->has_rstd = rstd != NULL;
    p->has_x = x != NULL;
    p->eps = (float)eps;
    p->rows_per_task = chain_rows_per_task(p->n);
    p->stream = p->rows * p->n * (int64_t)fia_dtype_size(x1->dtype) > FIA_CHAIN_STREAM_BYTES;
    return FIA_STATUS_SUCCESS;
}

static fia_status norm_plan_common(fia_context *ctx, const fia_tensor *x1, const char *x1_name,
                                   const fia_tensor *x2, const fia_tensor *gamma, fia_tensor *y,
                                   fia_tensor *rstd, fia_tensor *x,
                                   const fia_rms_norm_params *prm, fia_plan **plan,
                                   size_t *workspace_bytes) {
    fia_error_clear();
    if (!ctx) return FIA_INVALID("context is NULL");
    if (!prm) return FIA_INVALID("params is NULL");
    if (!plan) return FIA_INVALID("plan is NULL");
    fia_rms_norm_params prm_v;
    fia_rms_norm_params_init(&prm_v);
    FIA_TRY(fia_params_import(&prm_v, sizeof prm_v, prm, sizeof prm_v, "fia_rms_norm_params_init"));
    norm_plan *p = chain_plan_new(ctx, sizeof *p, norm_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    p->k = &ctx->kernels.chain;
    return chain_plan_done(&p->base,
                           norm_validate(p, x1, x1_name, x2, gamma, y, rstd, x, prm_v.epsilon),
                           NULL, plan, workspace_bytes);
}

fia_status fia_rms_norm_plan(fia_context *ctx, const fia_rms_norm_tensors *t,
                             const fia_rms_norm_params *prm, fia_plan **plan,
                             size_t *workspace_bytes) {
    fia_error_clear();
    if (!t) return FIA_INVALID("tensors is NULL");
    return norm_plan_common(ctx, t->x, "x", NULL, t->gamma, t->y, t->rstd, NULL, prm, plan,
                            workspace_bytes);
}

fia_status fia_rms_norm(fia_context *ctx, const fia_rms_norm_tensors *t,
                        const fia_rms_norm_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_rms_norm_plan, ctx, t, prm);
}

fia_status fia_add_rms_norm_plan(fia_context *ctx, const fia_add_rms_norm_tensors *t,
                                 const fia_rms_norm_params *prm, fia_plan **plan,
                                 size_t *workspace_bytes) {
    fia_error_clear();
    if (!t) return FIA_INVALID("tensors is NULL");
    if (!t->x2) return FIA_INVALID("x2 is NULL");
    return norm_plan_common(ctx, t->x1, "x1", t->x2, t->gamma, t->y, t->rstd, t->x, prm, plan,
                            workspace_bytes);
}

fia_status fia_add_rms_norm(fia_context *ctx, const fia_add_rms_norm_tensors *t,
                            const fia_rms_norm_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_add_rms_norm_plan, ctx, t, prm);
}
