/*
 * scatter.c - scatter_update and scatter_nd_update (fia/cache.h): validation, plan, the
 * execute-time index check (the plan's check callback: every index is read and checked before
 * anything is written) and a serial execute that copies the rows in entry order (later entries
 * win). Paged targets (PA_BSND, PA_NZ) are addressed through sched/kv_addr.h, the addressing the
 * attention operators read the same caches with.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/chain_common.h"
#include "sched/kv_addr.h"
#include "sched/tensor_spec.h"

/* Reads index element at element offset off of an int32 / int64 tensor. */
static inline int64_t sc_index(const fia_tensor *t, int64_t off) {
    const char *p = (const char *)fia_tensor_ptr(t);
    if (t->dtype == FIA_DTYPE_INT32) {
        int32_t v;
        memcpy(&v, p + off * 4, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, p + off * 8, 8);
    return v;
}

/* Copies a block of shape[0..nd) elements of es bytes between two strided views. */
static void sc_copy(char *dst, const int64_t *ds, const char *src, const int64_t *ss,
                    const int64_t *shape, int32_t nd, int64_t es) {
    if (nd == 0) {
        memcpy(dst, src, (size_t)es);
        return;
    }
    if (nd == 1) {
        if (ds[0] == 1 && ss[0] == 1) memcpy(dst, src, (size_t)(shape[0] * es));
        else
            for (int64_t i = 0; i < shape[0]; i++) memcpy(dst + i * ds[0] * es, src + i * ss[0] * es, (size_t)es);
        return;
    }
    for (int64_t i = 0; i < shape[0]; i++)
        sc_copy(dst + i * ds[0] * es, ds + 1, src + i * ss[0] * es, ss + 1, shape + 1, nd - 1, es);
}

/* The tensor tables (sched/tensor_spec.h): the target, the updates, the int32 / int64 indices. */
#define SC_INDICES(type) \
    {"indices", offsetof(type, indices), FIA_SPEC_REQUIRED, FIA_DT(INT32) | FIA_DT(INT64), \
     "int32 or int64", -1, 0, NULL}
static const fia_tensor_spec nd_spec[] = {
    {"input", offsetof(fia_scatter_nd_update_tensors, input), FIA_SPEC_REQUIRED, 0, NULL, -1, 0, NULL},
    {"updates", offsetof(fia_scatter_nd_update_tensors, updates), FIA_SPEC_REQUIRED, 0, NULL, -1, 0,
     NULL},
    SC_INDICES(fia_scatter_nd_update_tensors),
};
static const fia_tensor_spec su_spec[] = {
    {"data", offsetof(fia_scatter_update_tensors, data), FIA_SPEC_REQUIRED, 0, NULL, -1, 0, NULL},
    {"updates", offsetof(fia_scatter_update_tensors, updates), FIA_SPEC_REQUIRED, 0, NULL, -1, 0,
     NULL},
    SC_INDICES(fia_scatter_update_tensors),
};
#undef SC_INDICES

/* ------------------------------------------------------------------------------------------ */
/* scatter_nd_update                                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct nd_plan {
    fia_plan base;
    fia_layout mode;
    fia_tensor in, idx, upd;
    int32_t a;         /* index components */
    int32_t lead;      /* indices dims before the last */
    int64_t K;         /* index tuples */
    bool empty;        /* the rows are empty: nothing to write (the indices are still checked) */
    int64_t es;
    int64_t block_size, blocks, slots;
    int shift;
    fia_kv_view v;     /* paged modes */
    int64_t D;         /* PA_NZ row width */
} nd_plan;

void fia_scatter_nd_update_params_init(fia_scatter_nd_update_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->cache_mode = FIA_LAYOUT_BSND;
}

/* Element offset of component j of index tuple i. */
static inline int64_t nd_comp_off(const nd_plan *p, int64_t i, int32_t j) {
    int64_t c[FIA_MAX_DIMS];
    chain_unravel(p->idx.shape, p->lead, i, c);
    return chain_off(&p->idx, c, p->lead) + j * p->idx.strides[p->lead];
}

static fia_status nd_check(fia_plan *plan) {
    const nd_plan *p = (const nd_plan *)plan;
    for (int64_t i = 0; i < p->K; i++)
        for (int32_t j = 0; j < p->a; j++) {
            const int64_t v = sc_index(&p->idx, nd_comp_off(p, i, j));
            const int64_t lim = p->mode == FIA_LAYOUT_BSND ? p->in.shape[j] : p->slots;
            if (v < 0 || v >= lim)
                return FIA_INVALID("indices entry %lld component %d is %lld, out of range [0, %lld)%s",
                                   (long long)i, (int)j, (long long)v, (long long)lim,
                                   p->mode == FIA_LAYOUT_BSND ? "" : " (slots of the paged cache)");
        }
    return FIA_STATUS_SUCCESS;
}

static void nd_execute(fia_plan *plan, void *ws) {
    (void)ws;
    const nd_plan *p = (const nd_plan *)plan;
    char *in = fia_tensor_ptr(&p->in);
    const char *up = fia_tensor_ptr(&p->upd);
    const int64_t es = p->es;
    const int32_t und = p->upd.ndim;
    if (p->empty) return;
    for (int64_t i = 0; i < p->K; i++) {
        int64_t c[FIA_MAX_DIMS];
        chain_unravel(p->upd.shape, p->lead, i, c);
        const char *src = up + chain_off(&p->upd, c, p->lead) * es;
        if (p->mode == FIA_LAYOUT_BSND) {
            int64_t off = 0;
            for (int32_t j = 0; j < p->a; j++) off += sc_index(&p->idx, nd_comp_off(p, i, j)) * p->in.strides[j];
            sc_copy(in + off * es, p->in.strides + p->a, src, p->upd.strides + p->lead,
                    p->in.shape + p->a, p->in.ndim - p->a, es);
            continue;
        }
        const fia_kv_slot s = fia_kv_slot_of(sc_index(&p->idx, nd_comp_off(p, i, 0)), p->block_size, p->shift);
        if (p->mode == FIA_LAYOUT_PA_BSND) {
            sc_copy(in + fia_kv_row_off(&p->v, s, 0) * es, p->in.strides + 2, src,
                    p->upd.strides + p->lead, p->in.shape + 2, p->in.ndim - 2, es);
            continue;
        }
        /* PA_NZ: D values in chunks of w */
        const int64_t sd = p->upd.strides[und - 1];
        for (int64_t d0 = 0; d0 < p->D; d0 += p->v.w)
            sc_copy(in + fia_kv_elem_off(&p->v, s, d0) * es, (const int64_t[]){1}, src + d0 * sd * es,
                    &sd, &p->v.w, 1, es);
    }
}

/* A paged target (PA_BSND [blocks, block_size, N, D] / [blocks, block_size, D], PA_NZ
 * [blocks, 1, D / w, block_size, w]) written through flat slots: its geometry, and the row
 * shape every entry writes into row[*rnd]. */
static fia_status nd_paged_row(nd_plan *p, const fia_tensor *in, const fia_tensor *up,
                               fia_layout mode, int64_t *row, int32_t *rnd) {
    if (p->a != 1)
        return FIA_INVALID("indices last dim is %d, must be 1 (flat slots) with cache_mode %s",
                           (int)p->a, fia_layout_name(mode));
    p->blocks = in->shape[0];
    if (mode == FIA_LAYOUT_PA_BSND) {
        if (in->ndim != 3 && in->ndim != 4)
            return FIA_INVALID("input has %d dims, a PA_BSND cache is [blocks, block_size, N, "
                               "D] or [blocks, block_size, D]", (int)in->ndim);
        p->block_size = in->shape[1];
        for (int32_t d = 2; d < in->ndim; d++) row[(*rnd)++] = in->shape[d];
        p->v.s_blk = in->strides[0];
        p->v.s_t = in->strides[1];
        FIA_TRY(chain_check_out_lead(in, "input", in->ndim));
    } else {
        const int64_t w = 32 / (int64_t)fia_dtype_size(in->dtype);
        if (in->ndim != 5 || in->shape[1] != 1 || in->shape[4] != w)
            return FIA_INVALID("input must be a PA_NZ cache [blocks, 1, D / %lld, block_size, "
                               "%lld]; it has %d dims", (long long)w, (long long)w, (int)in->ndim);
        if (in->strides[4] != 1 || (in->shape[3] > 1 && in->strides[3] != w))
            return FIA_UNSUPPORTED("input (PA_NZ) dims 3 and 4 strides are %lld and %lld, must "
                                   "be %lld and 1", (long long)in->strides[3],
                                   (long long)in->strides[4], (long long)w);
        FIA_TRY(chain_check_out_lead(in, "input", 3));
        p->block_size = in->shape[3];
        p->D = in->shape[2] * w;
        p->v.s_blk = in->strides[0];
        p->v.s_c = in->strides[2];
        p->v.w = w;
        /* updates row: [D] or [1, D] */
        const int32_t ur = up->ndim - p->lead;
        if (ur == 2 && up->ndim >= 2 && up->shape[up->ndim - 2] == 1) row[(*rnd)++] = 1;
        row[(*rnd)++] = p->D;
    }
    p->shift = fia_kv_shift(p->block_size);
    p->slots = p->blocks * p->block_size;
    return FIA_STATUS_SUCCESS;
}

static fia_status nd_validate(nd_plan *p, const fia_scatter_nd_update_tensors *t, fia_layout mode) {
    FIA_TRY(fia_tensor_spec_check(t, nd_spec, FIA_SPEC_COUNT(nd_spec)));
    FIA_TRY(fia_tensor_spec_dtypes(t, nd_spec, FIA_SPEC_COUNT(nd_spec)));
    const fia_tensor *in = t->input, *ix = t->indices, *up = t->updates;
    if (in->ndim < 1) return FIA_INVALID("input has 0 dims, needs 1..8");
    if (up->dtype != in->dtype)
        return FIA_INVALID("updates dtype is %s, must be input's (%s)", fia_dtype_name(up->dtype),
                           fia_dtype_name(in->dtype));
    if (ix->ndim < 2) return FIA_INVALID("indices has %d dims, needs at least 2 ([..., a])", (int)ix->ndim);
    p->lead = ix->ndim - 1;
    p->a = (int32_t)ix->shape[p->lead];
    if (mode != FIA_LAYOUT_BSND && mode != FIA_LAYOUT_PA_BSND && mode != FIA_LAYOUT_PA_NZ)
        return FIA_INVALID("cache_mode is %s, must be BSND (plain), PA_BSND or PA_NZ",
                           fia_layout_name(mode));
    p->mode = mode;
    /* the row shape every entry writes, and the input's dims it covers */
    int64_t row[FIA_MAX_DIMS];
    int32_t rnd = 0;
    if (mode == FIA_LAYOUT_BSND) {
        if (p->a < 1 || p->a > in->ndim)
            return FIA_INVALID("indices last dim (a) is %d, must be 1..%d (input's dims)", (int)p->a,
                               (int)in->ndim);
        for (int32_t d = p->a; d < in->ndim; d++) row[rnd++] = in->shape[d];
        FIA_TRY(chain_check_out_lead(in, "input", in->ndim));
    } else {
        FIA_TRY(nd_paged_row(p, in, up, mode, row, &rnd));
    }
    /* updates = indices.shape[:-1] + row */
    if (up->ndim != p->lead + rnd)
        return FIA_INVALID("updates has %d dims, must have %d (indices.shape[:-1] + the row)",
                           (int)up->ndim, (int)(p->lead + rnd));
    for (int32_t d = 0; d < up->ndim; d++) {
        const int64_t want = d < p->lead ? ix->shape[d] : row[d - p->lead];
        if (up->shape[d] != want)
            return FIA_INVALID("updates dim %d is %lld, must be %lld (%s)", (int)d,
                               (long long)up->shape[d], (long long)want,
                               d < p->lead ? "indices" : "input's row");
    }
    p->K = chain_prod(ix->shape, 0, p->lead);
    for (int32_t d = 0; d < rnd; d++)
        if (row[d] == 0) p->empty = true;
    p->es = (int64_t)fia_dtype_size(in->dtype);
    p->in = *in;
    p->idx = *ix;
    p->upd = *up;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_scatter_nd_update_plan(fia_context *ctx, const fia_scatter_nd_update_tensors *t,
                                      const fia_scatter_nd_update_params *prm, fia_plan **plan,
                                      size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_scatter_nd_update_params v;
    fia_scatter_nd_update_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v, "fia_scatter_nd_update_params_init"));
    nd_plan *p = chain_plan_new(ctx, sizeof *p, nd_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    return chain_plan_done(&p->base, nd_validate(p, t, v.cache_mode), nd_check, plan,
                           workspace_bytes);
}

fia_status fia_scatter_nd_update(fia_context *ctx, const fia_scatter_nd_update_tensors *t,
                                 const fia_scatter_nd_update_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_scatter_nd_update_plan, ctx, t, prm);
}

/* ------------------------------------------------------------------------------------------ */
/* scatter_update                                                                              */
/* ------------------------------------------------------------------------------------------ */

typedef struct su_plan {
    fia_plan base;
    fia_tensor data, idx, upd;
    int32_t axis;
    bool pairs;   /* indices [K, 2] */
    int64_t K, es;
    bool empty;   /* updates are empty: nothing to write (the indices are still checked) */
} su_plan;

void fia_scatter_update_params_init(fia_scatter_update_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->axis = -2;
}

/* Batch and start position of entry k. */
static inline void su_entry(const su_plan *p, int64_t k, int64_t *b, int64_t *pos) {
    if (p->pairs) {
        *b = sc_index(&p->idx, k * p->idx.strides[0]);
        *pos = sc_index(&p->idx, k * p->idx.strides[0] + p->idx.strides[1]);
    } else {
        *b = k;
        *pos = sc_index(&p->idx, k * p->idx.strides[0]);
    }
}

static fia_status su_check(fia_plan *plan) {
    const su_plan *p = (const su_plan *)plan;
    const int64_t S = p->data.shape[p->axis], u = p->upd.shape[p->axis];
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b, pos;
        su_entry(p, k, &b, &pos);
        if (b < 0 || b >= p->data.shape[0])
            return FIA_INVALID("indices entry %lld: batch %lld is out of range [0, %lld) (data dim 0)",
                               (long long)k, (long long)b, (long long)p->data.shape[0]);
        if (pos < 0 || pos > S - u)
            return FIA_INVALID("indices entry %lld: position %lld with %lld updates along axis %d "
                               "leaves data dim %d (%lld)", (long long)k, (long long)pos,
                               (long long)u, (int)p->axis, (int)p->axis, (long long)S);
    }
    return FIA_STATUS_SUCCESS;
}

static void su_execute(fia_plan *plan, void *ws) {
    (void)ws;
    const su_plan *p = (const su_plan *)plan;
    char *data = fia_tensor_ptr(&p->data);
    const char *up = fia_tensor_ptr(&p->upd);
    if (p->empty) return;
    for (int64_t k = 0; k < p->K; k++) {
        int64_t b, pos;
        su_entry(p, k, &b, &pos);
        char *dst = data + (b * p->data.strides[0] + pos * p->data.strides[p->axis]) * p->es;
        sc_copy(dst, p->data.strides + 1, up + k * p->upd.strides[0] * p->es, p->upd.strides + 1,
                p->upd.shape + 1, p->upd.ndim - 1, p->es);
    }
}

static fia_status su_validate(su_plan *p, const fia_scatter_update_tensors *t, int64_t axis) {
    FIA_TRY(fia_tensor_spec_check(t, su_spec, FIA_SPEC_COUNT(su_spec)));
    FIA_TRY(fia_tensor_spec_dtypes(t, su_spec, FIA_SPEC_COUNT(su_spec)));
    const fia_tensor *d = t->data, *ix = t->indices, *up = t->updates;
    if (d->ndim < 2) return FIA_INVALID("data has %d dims, needs 2..8", (int)d->ndim);
    if (up->dtype != d->dtype)
        return FIA_INVALID("updates dtype is %s, must be data's (%s)", fia_dtype_name(up->dtype),
                           fia_dtype_name(d->dtype));
    if (up->ndim != d->ndim)
        return FIA_INVALID("updates has %d dims, data has %d", (int)up->ndim, (int)d->ndim);
    if (axis < -d->ndim || axis >= d->ndim)
        return FIA_INVALID("axis is %lld, must be in [%d, %d)", (long long)axis, -(int)d->ndim, (int)d->ndim);
    p->axis = (int32_t)(axis < 0 ? axis + d->ndim : axis);
    if (p->axis == 0) return FIA_INVALID("axis is 0 (data dim 0 is the batch), must be another dim");
    if (ix->ndim == 1) {
        p->pairs = false;
        if (ix->shape[0] != d->shape[0])
            return FIA_INVALID("indices dim 0 is %lld, must be data dim 0 (%lld): one start per batch",
                               (long long)ix->shape[0], (long long)d->shape[0]);
    } else if (ix->ndim == 2) {
        p->pairs = true;
        if (ix->shape[1] != 2)
            return FIA_INVALID("indices dim 1 is %lld, must be 2 ((batch, position) pairs)",
                               (long long)ix->shape[1]);
    } else {
        return FIA_INVALID("indices has %d dims, must have 1 or 2", (int)ix->ndim);
    }
    p->K = ix->shape[0];
    if (up->shape[0] != p->K)
        return FIA_INVALID("updates dim 0 is %lld, indices has %lld entries", (long long)up->shape[0],
                           (long long)p->K);
    for (int32_t k = 1; k < d->ndim; k++) {
        if (k == p->axis) {
            if (up->shape[k] > d->shape[k])
                return FIA_INVALID("updates dim %d (axis) is %lld, more than data's %lld", (int)k,
                                   (long long)up->shape[k], (long long)d->shape[k]);
        } else if (up->shape[k] != d->shape[k]) {
            return FIA_INVALID("updates dim %d is %lld, must be data's %lld", (int)k,
                               (long long)up->shape[k], (long long)d->shape[k]);
        }
    }
    FIA_TRY(chain_check_out_lead(d, "data", d->ndim));
    p->empty = fia_tensor_numel(up) == 0; /* nothing to write; the indices are still checked */
    p->es = (int64_t)fia_dtype_size(d->dtype);
    p->data = *d;
    p->idx = *ix;
    p->upd = *up;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_scatter_update_plan(fia_context *ctx, const fia_scatter_update_tensors *t,
                                   const fia_scatter_update_params *prm, fia_plan **plan,
                                   size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_scatter_update_params v;
    fia_scatter_update_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v, "fia_scatter_update_params_init"));
    su_plan *p = chain_plan_new(ctx, sizeof *p, su_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    return chain_plan_done(&p->base, su_validate(p, t, v.axis), su_check, plan, workspace_bytes);
}

fia_status fia_scatter_update(fia_context *ctx, const fia_scatter_update_tensors *t,
                              const fia_scatter_update_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_scatter_update_plan, ctx, t, prm);
}
