/*
 * quant.c - dynamic_quant (fia/quant.h): validation, plan and execute over the chain kernels
 * absmax_row / quant_row_i8 (per token, per tensor) and absmax_cols / quant_cols_i8 (per
 * channel).
 *
 * pertoken:   row tasks; one absmax and one quantization pass per row (the max of the next row
 *             taken during the quantization of this one: quant_row_i8_next).
 * pertensor:  pass 1 row tasks write their max to the workspace, folded in task order (a max is
 *             exact, so any order gives the same scale); pass 2 quantizes.
 * perchannel: x seen as [L, R, H]; a task owns (l, a chunk of QUANT_COLS columns), takes the
 *             column maxima over the R rows, writes the scales and quantizes its columns.
 * group_index is read at execute time and checked by the plan's check callback first.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/chain_common.h"
#include "sched/tensor_spec.h"

enum { QUANT_COLS = 512 /* columns per perchannel task */ };

typedef struct quant_plan {
    fia_plan base;
    const fia_chain_kernels *k;
    fia_quant_mode mode;
    fia_tensor x, smooth, gidx, y, scale;
    bool has_smooth, has_gidx;
    int32_t lead;      /* x dims before the last */
    int64_t rows, H, R, L, E, rows_per_task, tasks;
    float dmax;
    bool stream; /* output above FIA_CHAIN_STREAM_BYTES: streaming stores */
} quant_plan;

/* One execution (the plan itself stays immutable). */
typedef struct quant_run {
    const quant_plan *p;
    float *maxes;       /* pertensor: per-task maxima (workspace) */
    float tensor_scale; /* pertensor: set between the passes */
} quant_run;

void fia_dynamic_quant_params_init(fia_dynamic_quant_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->quant_mode = FIA_QUANT_MODE_PERTOKEN;
    p->dst_type = FIA_DTYPE_INT8;
    p->dst_type_max = 0.0;
}

static inline int32_t quant_gidx(const quant_plan *p, int64_t e) {
    int32_t v;
    memcpy(&v, (const char *)fia_tensor_ptr(&p->gidx) + e * p->gidx.strides[0] * 4, 4);
    return v;
}

/* The smoothing row of row r (NULL without smooth_scales). */
static const void *quant_smooth_row(const quant_plan *p, int64_t r) {
    if (!p->has_smooth) return NULL;
    const char *s = fia_tensor_ptr(&p->smooth);
    const int64_t es = (int64_t)fia_dtype_size(p->smooth.dtype);
    if (!p->has_gidx) return s;
    int64_t lo = 0, hi = p->E - 1; /* the first e with group_index[e] > r (the last group caps) */
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (quant_gidx(p, mid) > r) hi = mid;
        else lo = mid + 1;
    }
    return s + lo * p->smooth.strides[0] * es;
}

static inline const char *quant_x_row(const quant_plan *p, const int64_t *idx) {
    return (const char *)fia_tensor_ptr(&p->x) +
           chain_off(&p->x, idx, p->lead) * (int64_t)fia_dtype_size(p->x.dtype);
}

/* pertoken: row r's max is taken while row r - 1 is quantized (quant_row_i8_next), so that
 * the next row's loads overlap the arithmetic of this one. */
static void quant_token_rows(const quant_plan *p, int64_t r0, int64_t r1, int64_t *idx) {
    int64_t nidx[FIA_MAX_DIMS];
    const void *x = quant_x_row(p, idx), *s = quant_smooth_row(p, r0);
    float m = p->k->absmax_row(x, p->x.dtype, s, p->smooth.dtype, p->H);
    for (int64_t r = r0; r < r1; r++) {
        const void *xn = NULL, *sn = NULL;
        if (r + 1 < r1) {
            memcpy(nidx, idx, sizeof nidx);
            chain_next(p->x.shape, p->lead, nidx);
            xn = quant_x_row(p, nidx);
            sn = quant_smooth_row(p, r + 1);
        }
        const float sc = m / p->dmax;
        int8_t *y = (int8_t *)fia_tensor_ptr(&p->y) + chain_off(&p->y, idx, p->lead);
        m = p->k->quant_row_i8_next(x, p->x.dtype, s, p->smooth.dtype, p->H, sc, y, p->stream,
                                    xn, sn);
        *((float *)fia_tensor_ptr(&p->scale) + chain_off(&p->scale, idx, p->lead)) = sc;
        if (xn) memcpy(idx, nidx, sizeof nidx);
        x = xn, s = sn;
    }
}

static void quant_token_task(void *arg, int64_t task, int32_t tid) {
    (void)tid;
    const quant_run *run = arg;
    const quant_plan *p = run->p;
    const int64_t r0 = task * p->rows_per_task;
    const int64_t r1 = r0 + p->rows_per_task < p->rows ? r0 + p->rows_per_task : p->rows;
    int64_t idx[FIA_MAX_DIMS];
    chain_unravel(p->x.shape, p->lead, r0, idx);
    if (p->mode == FIA_QUANT_MODE_PERTOKEN) {
        quant_token_rows(p, r0, r1, idx);
        if (p->stream) p->k->stream_fence();
        return;
    }
    for (int64_t r = r0; r < r1; r++, chain_next(p->x.shape, p->lead, idx)) { /* pertensor */
        const void *x = quant_x_row(p, idx), *s = quant_smooth_row(p, r);
        int8_t *y = (int8_t *)fia_tensor_ptr(&p->y) + chain_off(&p->y, idx, p->lead);
        (p->stream ? p->k->quant_row_i8_nt : p->k->quant_row_i8)(
            x, p->x.dtype, s, p->smooth.dtype, p->H, run->tensor_scale, y);
    }
    if (p->stream) p->k->stream_fence();
}

static void quant_max_task(void *arg, int64_t task, int32_t tid) {
    (void)tid;
    const quant_run *run = arg;
    const quant_plan *p = run->p;
    const int64_t r0 = task * p->rows_per_task;
    const int64_t r1 = r0 + p->rows_per_task < p->rows ? r0 + p->rows_per_task : p->rows;
    int64_t idx[FIA_MAX_DIMS];
    float m = 0.0f;
    chain_unravel(p->x.shape, p->lead, r0, idx);
    for (int64_t r = r0; r < r1; r++, chain_next(p->x.shape, p->lead, idx)) {
        const float v = p->k->absmax_row(quant_x_row(p, idx), p->x.dtype, quant_smooth_row(p, r),
                                         p->smooth.dtype, p->H);
        if (v > m) m = v;
    }
    run->maxes[task] = m;
}

static void quant_channel_task(void *arg, int64_t task, int32_t tid) {
    (void)tid;
    const quant_plan *p = arg;
    const int64_t chunks = (p->H + QUANT_COLS - 1) / QUANT_COLS;
    const int64_t l = task / chunks, c0 = (task % chunks) * QUANT_COLS;
    const int64_t n = p->H - c0 < QUANT_COLS ? p->H - c0 : QUANT_COLS;
    const int32_t lead2 = p->lead - 1; /* dims before dim -2 */
    const int64_t xes = (int64_t)fia_dtype_size(p->x.dtype);
    const int64_t ses = (int64_t)fia_dtype_size(p->smooth.dtype);
    int64_t idx[FIA_MAX_DIMS];
    chain_unravel(p->x.shape, lead2, l, idx);
    const char *xb = (const char *)fia_tensor_ptr(&p->x) + (chain_off(&p->x, idx, lead2) + c0) * xes;
    int8_t *yb = (int8_t *)fia_tensor_ptr(&p->y) + chain_off(&p->y, idx, lead2) + c0;
    const char *sm = p->has_smooth ? fia_tensor_ptr(&p->smooth) : NULL;
    float acc[QUANT_COLS];
    for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
    for (int64_t r = 0; r < p->R; r++) {
        const float s = sm ? fia_load_float(sm + r * p->smooth.strides[0] * ses, p->smooth.dtype) : 1.0f;
        p->k->absmax_cols(xb + r * p->x.strides[lead2] * xes, p->x.dtype, s, n, acc);
    }
    float *sc = (float *)fia_tensor_ptr(&p->scale) + chain_off(&p->scale, idx, lead2) + c0;
    for (int64_t j = 0; j < n; j++) acc[j] = acc[j] / p->dmax;
    memcpy(sc, acc, (size_t)n * sizeof(float));
    for (int64_t r = 0; r < p->R; r++) {
        const float s = sm ? fia_load_float(sm + r * p->smooth.strides[0] * ses, p->smooth.dtype) : 1.0f;
        p->k->quant_cols_i8(xb + r * p->x.strides[lead2] * xes, p->x.dtype, s, acc, n,
                            yb + r * p->y.strides[lead2]);
    }
}

static void quant_execute(fia_plan *plan, void *ws) {
    const quant_plan *p = (const quant_plan *)plan;
    fia_context *ctx = plan->ctx;
    if (p->mode == FIA_QUANT_MODE_PERCHANNEL) {
        chain_run(ctx, p->L * ((p->H + QUANT_COLS - 1) / QUANT_COLS), quant_channel_task,
                  (void *)p);
        return;
    }
    quant_run run = {p, ws, 0.0f};
    if (p->mode == FIA_QUANT_MODE_PERTENSOR) {
        chain_run(ctx, p->tasks, quant_max_task, &run);
        float m = 0.0f;
        for (int64_t t = 0; t < p->tasks; t++)
            if (run.maxes[t] > m) m = run.maxes[t];
        run.tensor_scale = m / p->dmax;
        *(float *)fia_tensor_ptr(&p->scale) = run.tensor_scale;
    }
    chain_run(ctx, p->tasks, quant_token_task, &run);
}

/* group_index: non-decreasing values in [0, rows], the last equal to rows. */
static fia_status quant_check(fia_plan *plan) {
    const quant_plan *p = (const quant_plan *)plan;
    if (!p->has_gidx) return FIA_STATUS_SUCCESS;
    int64_t prev = 0;
    for (int64_t e = 0; e < p->E; e++) {
        const int64_t v = quant_gidx(p, e);
        if (v < prev || v > p->rows)
            return FIA_INVALID("group_index[%lld] is %lld, must be in [%lld, %lld] (non-decreasing "
                               "row boundaries)", (long long)e, (long long)v, (long long)prev,
                               (long long)p->rows);
        prev = v;
    }
    if (prev != p->rows)
        return FIA_INVALID("group_index[%lld] (the last) is %lld, must equal the %lld rows of x",
                           (long long)(p->E - 1), (long long)prev, (long long)p->rows);
    return FIA_STATUS_SUCCESS;
}

/* scale's expected shape per mode into want[*nd]. */
static void quant_scale_shape(const quant_plan *p, const fia_tensor *x, int64_t *want, int32_t *nd) {
    if (p->mode == FIA_QUANT_MODE_PERTENSOR) {
        want[0] = 1;
        *nd = 1;
    } else if (p->mode == FIA_QUANT_MODE_PERTOKEN) {
        for (int32_t d = 0; d < x->ndim - 1; d++) want[d] = x->shape[d];
        *nd = x->ndim - 1;
    } else {
        int32_t k = 0;
        for (int32_t d = 0; d < x->ndim; d++)
            if (d != x->ndim - 2) want[k++] = x->shape[d];
        *nd = k;
    }
}

/* The tensor table (sched/tensor_spec.h): presence, views, dtypes. */
#define QT(m) offsetof(fia_dynamic_quant_tensors, m)
static const fia_tensor_spec quant_spec[] = {
    {"x", QT(x), FIA_SPEC_REQUIRED, FIA_DT_FLOAT, "float32, float16 or bfloat16", -1, 0, NULL},
    {"y", QT(y), FIA_SPEC_REQUIRED, FIA_DT(INT8), "int8", -1, 0, NULL},
    {"scale", QT(scale), FIA_SPEC_REQUIRED, FIA_DT(FLOAT32), "float32", -1, 0, NULL},
    {"smooth_scales", QT(smooth_scales), 0, FIA_DT_FLOAT, "float32, float16 or bfloat16", -1, 0,
     NULL},
    {"group_index", QT(group_index), 0, FIA_DT(INT32), "int32", -1, 0, NULL},
};
#undef QT

static fia_status quant_check_params(quant_plan *p, const fia_dynamic_quant_params *prm) {
    if (prm->quant_mode != FIA_QUANT_MODE_PERTOKEN && prm->quant_mode != FIA_QUANT_MODE_PERTENSOR &&
        prm->quant_mode != FIA_QUANT_MODE_PERCHANNEL)
        return FIA_INVALID("quant_mode is %d, must be 0 (pertoken), 1 (pertensor) or 2 "
                           "(perchannel)", (int)prm->quant_mode);
    if (prm->dst_type == FIA_DTYPE_INT32)
        return FIA_UNSUPPORTED("dst_type quint4x2 (int4 packed in int32) is not implemented; "
                               "use int8");
    if (prm->dst_type != FIA_DTYPE_INT8)
        return FIA_INVALID("dst_type is %s, must be int8", fia_dtype_name(prm->dst_type));
    if (!(prm->dst_type_max >= 0.0 && prm->dst_type_max <= 127.0))
        return FIA_INVALID("dst_type_max is %g, must be 0 (int8: 127) or in (0, 127]",
                           prm->dst_type_max);
    p->mode = prm->quant_mode;
    p->dmax = prm->dst_type_max > 0.0 ? (float)prm->dst_type_max : 127.0f;
    return FIA_STATUS_SUCCESS;
}

/* x and y (x's shape, int8): the row geometry. */
static fia_status quant_check_x(quant_plan *p, const fia_tensor *x, const fia_tensor *y) {
    if (x->ndim < 1) return FIA_INVALID("x has 0 dims, needs at least 1");
    if (p->mode == FIA_QUANT_MODE_PERCHANNEL && x->ndim < 2)
        return FIA_INVALID("x has %d dims, perchannel needs at least 2", (int)x->ndim);
    FIA_TRY(chain_check_compact_tail(x, "x", 1));
    FIA_TRY(chain_check_same_shape(y, "y", x, "x"));
    FIA_TRY(chain_check_compact_tail(y, "y", 1));
    FIA_TRY(chain_check_out_lead(y, "y", x->ndim - 1));
    p->lead = x->ndim - 1;
    p->H = x->shape[x->ndim - 1];
    p->rows = chain_prod(x->shape, 0, p->lead);
    p->R = x->ndim >= 2 ? x->shape[x->ndim - 2] : 1;
    p->L = x->ndim >= 2 ? chain_prod(x->shape, 0, x->ndim - 2) : 1;
    return FIA_STATUS_SUCCESS;
}

/* scale: the mode's shape ([] or [1] where one value). */
static fia_status quant_check_scale(const quant_plan *p, const fia_tensor *x, const fia_tensor *s) {
    int64_t want[FIA_MAX_DIMS];
    int32_t wnd;
    quant_scale_shape(p, x, want, &wnd);
    const bool scalar_ok = wnd == 0 || (p->mode == FIA_QUANT_MODE_PERTENSOR);
    if (scalar_ok && s->ndim <= 1 && fia_tensor_numel(s) == 1) return FIA_STATUS_SUCCESS;
    if (s->ndim != wnd)
        return FIA_INVALID("scale has %d dims, must have %d for this quant_mode", (int)s->ndim,
                           (int)wnd);
    for (int32_t d = 0; d < wnd; d++)
        if (s->shape[d] != want[d])
            return FIA_INVALID("scale dim %d is %lld, must be %lld", (int)d,
                               (long long)s->shape[d], (long long)want[d]);
    FIA_TRY(chain_check_out_lead(s, "scale", wnd));
    if (p->mode == FIA_QUANT_MODE_PERCHANNEL) FIA_TRY(chain_check_compact_tail(s, "scale", 1));
    return FIA_STATUS_SUCCESS;
}

/* smooth_scales [H] ([R] perchannel), or [E, H] with group_index [E]. */
static fia_status quant_check_smooth(quant_plan *p, const fia_tensor *x, const fia_tensor *sm,
                                     const fia_tensor *gi) {
    if (gi && !sm) return FIA_INVALID("group_index is given without smooth_scales");
    if (gi && p->mode != FIA_QUANT_MODE_PERTOKEN)
        return FIA_INVALID("group_index needs quant_mode pertoken (quant_mode is %d)",
                           (int)p->mode);
    if (!sm) return FIA_STATUS_SUCCESS;
    if (sm->ndim < 1) return FIA_INVALID("smooth_scales has 0 dims, needs at least 1");
    if (sm->dtype != x->dtype && sm->dtype != FIA_DTYPE_FLOAT32)
        return FIA_INVALID("smooth_scales dtype is %s, must be x's (%s) or float32",
                           fia_dtype_name(sm->dtype), fia_dtype_name(x->dtype));
    if (gi) {
        if (gi->ndim != 1) return FIA_INVALID("group_index has %d dims, must have 1", (int)gi->ndim);
        if (sm->ndim != 2)
            return FIA_INVALID("smooth_scales has %d dims, must be [E, H] with group_index",
                               (int)sm->ndim);
        p->E = sm->shape[0];
        if (p->E < 1 || p->E > FIA_DYNAMIC_QUANT_MAX_GROUPS)
            return FIA_INVALID("smooth_scales dim 0 (groups) is %lld, must be 1..%d",
                               (long long)p->E, FIA_DYNAMIC_QUANT_MAX_GROUPS);
        if (gi->shape[0] != p->E)
            return FIA_INVALID("group_index dim 0 is %lld, smooth_scales has %lld groups",
                               (long long)gi->shape[0], (long long)p->E);
        if (sm->shape[1] != p->H)
            return FIA_INVALID("smooth_scales dim 1 is %lld, x's last dim is %lld",
                               (long long)sm->shape[1], (long long)p->H);
    } else {
        const bool pc = p->mode == FIA_QUANT_MODE_PERCHANNEL;
        const int64_t need = pc ? p->R : p->H;
        if (sm->ndim != 1 || sm->shape[0] != need)
            return FIA_INVALID("smooth_scales must be 1-D [%lld] (%s); it has %d dims, dim 0 "
                               "%lld", (long long)need, pc ? "x dim -2" : "x's last dim",
                               (int)sm->ndim, (long long)sm->shape[0]);
    }
    if (p->mode != FIA_QUANT_MODE_PERCHANNEL)
        FIA_TRY(chain_check_compact_tail(sm, "smooth_scales", 1));
    return FIA_STATUS_SUCCESS;
}

static fia_status quant_validate(quant_plan *p, const fia_dynamic_quant_tensors *t,
                                 const fia_dynamic_quant_params *prm) {
    FIA_TRY(fia_tensor_spec_check(t, quant_spec, FIA_SPEC_COUNT(quant_spec)));
    FIA_TRY(quant_check_params(p, prm));
    FIA_TRY(fia_tensor_spec_dtypes(t, quant_spec, FIA_SPEC_COUNT(quant_spec)));
    FIA_TRY(quant_check_x(p, t->x, t->y));
    FIA_TRY(quant_check_scale(p, t->x, t->scale));
    FIA_TRY(quant_check_smooth(p, t->x, t->smooth_scales, t->group_index));
    if (t->smooth_scales) {
        p->smooth = *t->smooth_scales;
        p->has_smooth = true;
    }
    if (t->group_index) {
        p->gidx = *t->group_index;
        p->has_gidx = true;
    }
    p->x = *t->x;
    p->y = *t->y;
    p->scale = *t->scale;
    if (p->H == 0) p->rows = 0;
    /* streaming stores where x (the rows streamed through) is above FIA_CHAIN_STREAM_BYTES, as
     * rms_norm decides; there, tasks of 8x more rows, so that the next-row overlap of the
     * pertoken pass restarts less often (a task's first row waits alone on memory) */
    p->stream = p->rows * p->H * (int64_t)fia_dtype_size(t->x->dtype) > FIA_CHAIN_STREAM_BYTES;
    p->rows_per_task = chain_rows_per_task(p->H) * (p->stream ? 8 : 1);
    p->tasks = (p->rows + p->rows_per_task - 1) / p->rows_per_task;
    if (p->mode == FIA_QUANT_MODE_PERCHANNEL && (p->H == 0 || p->R == 0)) p->L = 0;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_dynamic_quant_plan(fia_context *ctx, const fia_dynamic_quant_tensors *t,
                                  const fia_dynamic_quant_params *prm, fia_plan **plan,
                                  size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_dynamic_quant_params v;
    fia_dynamic_quant_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v, "fia_dynamic_quant_params_init"));
    quant_plan *p = chain_plan_new(ctx, sizeof *p, quant_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    p->k = &ctx->kernels.chain;
    const fia_status st = quant_validate(p, t, &v);
    if (st == FIA_STATUS_SUCCESS && p->mode == FIA_QUANT_MODE_PERTENSOR) {
        fia_arena a = {NULL, 0};
        fia_arena_take(&a, (size_t)(p->tasks > 0 ? p->tasks : 1) * sizeof(float));
        p->base.workspace_bytes = a.used + FIA_WORKSPACE_ALIGN;
    }
    return chain_plan_done(&p->base, st, quant_check, plan, workspace_bytes);
}

fia_status fia_dynamic_quant(fia_context *ctx, const fia_dynamic_quant_tensors *t,
                             const fia_dynamic_quant_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_dynamic_quant_plan, ctx, t, prm);
}
