/*
 * gather_selection_kv_cache.c - gather_selection_kv_cache (fia/cache.h): validation, plan, the
 * execute-time check (lengths and every block id the walk will use, before anything is written)
 * and a row-parallel execute. One row is (b, s, h): its top-k entries are walked in order, each
 * valid entry copies up to sbs token rows from the full cache (located through the full block
 * table) to the next sbs selection slots (through the row's selection block table), both with
 * sched/kv_addr.h, the addressing the attention operators read these caches with.
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

typedef struct gs_cache {
    char *base;
    fia_kv_view v;
    int64_t blocks, block_size, width;
    int shift;
} gs_cache;

typedef struct gs_plan {
    fia_plan base;
    gs_cache skv, srope, fkv, frope;
    bool rope;
    int64_t es;
    int64_t B, S, H, K, sbs;
    int64_t smax, fmax; /* block table columns */
    fia_tensor stable, status, topk, ftable, kvlen, qlen, out;
} gs_plan;

void fia_gather_selection_kv_cache_params_init(fia_gather_selection_kv_cache_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->selection_topk_block_size = 64;
}

static inline int32_t gs_i32(const fia_tensor *t, int64_t off) {
    int32_t v;
    memcpy(&v, (const char *)fia_tensor_ptr(t) + off * 4, 4);
    return v;
}

/* Element offsets of [.., i] of the topk / status views (rows r = (b S + s) H + h). */
static inline int64_t gs_row_off(const fia_tensor *t, int64_t r, int64_t H, int64_t S) {
    const int64_t h = r % H, bs = r / H;
    if (t->ndim == 4) return (bs / S) * t->strides[0] + (bs % S) * t->strides[1] + h * t->strides[2];
    return bs * t->strides[0] + h * t->strides[1];
}

/* The effective kv length of row r (<= 0: skipped). */
static inline int64_t gs_kv(const gs_plan *p, int64_t r) {
    const int64_t b = r / (p->S * p->H), s = (r / p->H) % p->S;
    int64_t kv = gs_i32(&p->kvlen, b * p->kvlen.strides[0]);
    const int64_t q = gs_i32(&p->qlen, b * p->qlen.strides[0]);
    if (s < q) kv -= q - 1 - s;
    return kv;
}

static fia_status gs_check(fia_plan *plan) {
    const gs_plan *p = (const gs_plan *)plan;
    for (int64_t b = 0; b < p->B; b++) {
        const int64_t q = gs_i32(&p->qlen, b * p->qlen.strides[0]);
        const int64_t kv = gs_i32(&p->kvlen, b * p->kvlen.strides[0]);
        if (q < 0 || q > p->S)
            return FIA_INVALID("full_q_actual_seq[%lld] is %lld, must be in [0, %lld] (S)",
                               (long long)b, (long long)q, (long long)p->S);
        if (kv < 0 || kv > p->fmax * p->fkv.block_size)
            return FIA_INVALID("full_kv_actual_seq[%lld] is %lld, must be in [0, %lld] (the full "
                               "block table's capacity)", (long long)b, (long long)kv,
                               (long long)(p->fmax * p->fkv.block_size));
    }
    const int64_t rows = p->B * p->S * p->H;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t kv = gs_kv(p, r);
        if (kv <= 0) continue;
        const int64_t b = r / (p->S * p->H), n = (kv + p->sbs - 1) / p->sbs;
        const int64_t to = gs_row_off(&p->topk, r, p->H, p->S);
        int64_t v = 0;
        for (int64_t i = 0; i < p->K; i++) {
            const int64_t e = gs_i32(&p->topk, to + i * p->topk.strides[p->topk.ndim - 1]);
            if (e < 0) break;
            if (e >= n) continue;
            /* the full blocks of tokens [e sbs, ...) and the selection block of slot v */
            const int64_t fcol = e * p->sbs / p->fkv.block_size;
            const int64_t fb = gs_i32(&p->ftable, b * p->ftable.strides[0] + fcol * p->ftable.strides[1]);
            if (fb < 0 || fb >= p->fkv.blocks)
                return FIA_INVALID("full_kv_block_table[%lld][%lld] is %lld, the full cache has "
                                   "%lld blocks", (long long)b, (long long)fcol, (long long)fb,
                                   (long long)p->fkv.blocks);
            const int64_t scol = v * p->sbs / p->skv.block_size;
            if (scol >= p->smax)
                return FIA_INVALID("row %lld gathers %lld tokens, its selection_kv_block_table row "
                                   "holds %lld blocks of %lld", (long long)r,
                                   (long long)((v + 1) * p->sbs), (long long)p->smax,
                                   (long long)p->skv.block_size);
            const int64_t sb = gs_i32(&p->stable, r * p->stable.strides[0] + scol * p->stable.strides[1]);
            if (sb < 0 || sb >= p->skv.blocks)
                return FIA_INVALID("selection_kv_block_table[%lld][%lld] is %lld, the selection "
                                   "cache has %lld blocks", (long long)r, (long long)scol,
                                   (long long)sb, (long long)p->skv.blocks);
            v++;
        }
    }
    return FIA_STATUS_SUCCESS;
}

static inline void gs_copy_row(const gs_cache *dst, fia_kv_slot ds, const gs_cache *src,
                               fia_kv_slot ss, int64_t es) {
    memcpy(dst->base + fia_kv_row_off(&dst->v, ds, 0) * es,
           src->base + fia_kv_row_off(&src->v, ss, 0) * es, (size_t)(src->width * es));
}

static void gs_task(void *arg, int64_t r, int32_t tid) {
    (void)tid;
    const gs_plan *p = arg;
    const int64_t kv = gs_kv(p, r);
    int32_t *out = (int32_t *)fia_tensor_ptr(&p->out) + r * p->out.strides[0];
    if (kv <= 0) {
        *out = 0;
        return;
    }
    const int64_t b = r / (p->S * p->H), n = (kv + p->sbs - 1) / p->sbs;
    const int64_t last = kv - (n - 1) * p->sbs;
    const int64_t to = gs_row_off(&p->topk, r, p->H, p->S);
    int32_t *st = (int32_t *)fia_tensor_ptr(&p->status) + gs_row_off(&p->status, r, p->H, p->S);
    const int64_t sst = p->status.strides[p->status.ndim - 1];
    const int32_t *ftab = (const int32_t *)fia_tensor_ptr(&p->ftable);
    const int32_t *stab = (const int32_t *)fia_tensor_ptr(&p->stable);
    int64_t v = 0, total = 0;
    for (int64_t i = 0; i < p->K; i++) {
        const int64_t e = gs_i32(&p->topk, to + i * p->topk.strides[p->topk.ndim - 1]);
        if (e < 0) break;
        if (e >= n) continue;
        const int64_t len = e == n - 1 ? last : p->sbs;
        for (int64_t j = 0; j < len; j++) {
            /* block tables may be strided: locate through their (row, column) strides */
            const int64_t ft = e * p->sbs + j, stok = v * p->sbs + j;
            const int64_t fcol = ft / p->fkv.block_size, scol = stok / p->skv.block_size;
            const fia_kv_slot fs = {ftab[b * p->ftable.strides[0] + fcol * p->ftable.strides[1]],
                                    ft - fcol * p->fkv.block_size};
            const fia_kv_slot ss = {stab[r * p->stable.strides[0] + scol * p->stable.strides[1]],
                                    stok - scol * p->skv.block_size};
            gs_copy_row(&p->skv, ss, &p->fkv, fs, p->es);
            if (p->rope) gs_copy_row(&p->srope, ss, &p->frope, fs, p->es);
        }
        st[v * sst] = (int32_t)e;
        total += len;
        v++;
    }
    for (int64_t i = v; i < p->K; i++) st[i * sst] = -1;
    st[p->K * sst] = (int32_t)total;
    *out = (int32_t)total;
}

static void gs_execute(fia_plan *plan, void *ws) {
    (void)ws;
    gs_plan *p = (gs_plan *)plan;
    chain_run(plan->ctx, p->B * p->S * p->H, gs_task, p);
}

/* The tensor table (sched/tensor_spec.h): presence, views, dtypes; the ropes only when both
 * are non-empty (GS_ROPE). */
enum { GS_ROPE = 1 };
#define GT(m) offsetof(fia_gather_selection_kv_cache_tensors, m)
#define GS_CACHE FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, \
    FIA_DT(FLOAT16) | FIA_DT(BFLOAT16) | FIA_DT(INT8), "float16, bfloat16 or int8", -1
#define GS_I32(m) {#m, GT(m), FIA_SPEC_REQUIRED, FIA_DT(INT32), "int32", -1, 0, NULL}
static const fia_tensor_spec gs_spec[] = {
    {"selection_kv_cache", GT(selection_kv_cache), GS_CACHE, 0, NULL},
    {"full_kv_cache", GT(full_kv_cache), GS_CACHE, 0, NULL},
    {"selection_k_rope", GT(selection_k_rope), GS_CACHE, GS_ROPE, NULL},
    {"full_k_rope", GT(full_k_rope), GS_CACHE, GS_ROPE, NULL},
    GS_I32(selection_topk_indices), GS_I32(selection_kv_block_status),
    GS_I32(full_kv_actual_seq), GS_I32(full_q_actual_seq), GS_I32(full_kv_block_table),
    GS_I32(selection_kv_block_table), GS_I32(selection_kv_actual_seq),
};
#undef GS_I32
#undef GS_CACHE
#undef GT

/* A [blocks, block_size, W] or [blocks, block_size, 1, W] cache (checked by the table). */
static fia_status gs_parse_cache(const fia_tensor *t, const char *name, gs_cache *c, bool out) {
    if (t->ndim != 3 && !(t->ndim == 4 && t->shape[2] == 1))
        return FIA_INVALID("%s has %d dims, must be [blocks, block_size, W] or [blocks, "
                           "block_size, 1, W]", name, (int)t->ndim);
    if (t->shape[1] < 1)
        return FIA_INVALID("%s dim 1 (block_size) is %lld, must be at least 1", name,
                           (long long)t->shape[1]);
    if (out) FIA_TRY(chain_check_out_lead(t, name, 2));
    memset(c, 0, sizeof *c);
    c->base = fia_tensor_ptr(t);
    c->blocks = t->shape[0];
    c->block_size = t->shape[1];
    c->width = t->shape[t->ndim - 1];
    c->v.s_blk = t->strides[0];
    c->v.s_t = t->strides[1];
    c->shift = fia_kv_shift(c->block_size);
    return FIA_STATUS_SUCCESS;
}

/* The kv caches and (p->rope) the rope caches: one dtype, matching rows and geometry. */
static fia_status gs_parse_caches(gs_plan *p, const fia_gather_selection_kv_cache_tensors *t) {
    FIA_TRY(gs_parse_cache(t->selection_kv_cache, "selection_kv_cache", &p->skv, true));
    FIA_TRY(gs_parse_cache(t->full_kv_cache, "full_kv_cache", &p->fkv, false));
    const fia_dtype dt = t->full_kv_cache->dtype;
    if (t->selection_kv_cache->dtype != dt)
        return FIA_INVALID("selection_kv_cache dtype is %s, full_kv_cache is %s",
                           fia_dtype_name(t->selection_kv_cache->dtype), fia_dtype_name(dt));
    if (p->skv.width != p->fkv.width)
        return FIA_INVALID("selection_kv_cache row is %lld wide, full_kv_cache's is %lld",
                           (long long)p->skv.width, (long long)p->fkv.width);
    p->es = (int64_t)fia_dtype_size(dt);
    if (!p->rope) return FIA_STATUS_SUCCESS;
    const fia_tensor *sr = t->selection_k_rope, *fr = t->full_k_rope;
    FIA_TRY(gs_parse_cache(sr, "selection_k_rope", &p->srope, true));
    FIA_TRY(gs_parse_cache(fr, "full_k_rope", &p->frope, false));
    if (sr->dtype != dt || fr->dtype != dt)
        return FIA_INVALID("selection_k_rope / full_k_rope dtypes are %s / %s, must be the kv "
                           "caches' %s", fia_dtype_name(sr->dtype), fia_dtype_name(fr->dtype),
                           fia_dtype_name(dt));
    if (p->srope.width != p->frope.width)
        return FIA_INVALID("selection_k_rope row is %lld wide, full_k_rope's is %lld",
                           (long long)p->srope.width, (long long)p->frope.width);
    if (p->srope.blocks != p->skv.blocks || p->srope.block_size != p->skv.block_size)
        return FIA_INVALID("selection_k_rope is [%lld, %lld, ..], selection_kv_cache [%lld, %lld, ..]",
                           (long long)p->srope.blocks, (long long)p->srope.block_size,
                           (long long)p->skv.blocks, (long long)p->skv.block_size);
    if (p->frope.blocks != p->fkv.blocks || p->frope.block_size != p->fkv.block_size)
        return FIA_INVALID("full_k_rope is [%lld, %lld, ..], full_kv_cache [%lld, %lld, ..]",
                           (long long)p->frope.blocks, (long long)p->frope.block_size,
                           (long long)p->fkv.blocks, (long long)p->fkv.block_size);
    return FIA_STATUS_SUCCESS;
}

/* The ranks of the int32 tensors (0: any), in the table's order after the indices. */
static fia_status gs_check_ranks(const fia_gather_selection_kv_cache_tensors *t) {
    const fia_tensor *v[6] = {t->selection_kv_block_status, t->full_kv_actual_seq,
                              t->full_q_actual_seq, t->full_kv_block_table,
                              t->selection_kv_block_table, t->selection_kv_actual_seq};
    const int32_t nd[6] = {t->selection_topk_indices->ndim, 1, 1, 2, 2, 1};
    for (int i = 0; i < 6; i++)
        if (v[i]->ndim != nd[i])
            return FIA_INVALID("%s has %d dims, must have %d", gs_spec[5 + i].name, (int)v[i]->ndim,
                               (int)nd[i]);
    return FIA_STATUS_SUCCESS;
}

/* B from the lengths; S, H, K from the indices [B, S, H, K] / [B * S, H, K]; the status. */
static fia_status gs_parse_rows(gs_plan *p, const fia_gather_selection_kv_cache_tensors *t) {
    const fia_tensor *ix = t->selection_topk_indices, *st = t->selection_kv_block_status;
    p->B = t->full_kv_actual_seq->shape[0];
    if (p->B < 1) return FIA_INVALID("full_kv_actual_seq dim 0 (B) is %lld, must be >= 1", (long long)p->B);
    FIA_TRY(fia_tensor_check_dim(t->full_q_actual_seq, "full_q_actual_seq", 0, p->B, "B (full_kv_actual_seq)"));
    FIA_TRY(fia_tensor_check_dim(t->full_kv_block_table, "full_kv_block_table", 0, p->B, "B (full_kv_actual_seq)"));
    if (ix->ndim == 4) {
        FIA_TRY(fia_tensor_check_dim(ix, "selection_topk_indices", 0, p->B, "B"));
        p->S = ix->shape[1];
        p->H = ix->shape[2];
    } else if (ix->ndim == 3) {
        if (ix->shape[0] % p->B != 0)
            return FIA_INVALID("selection_topk_indices dim 0 (T) is %lld, must be a multiple of B "
                               "(%lld)", (long long)ix->shape[0], (long long)p->B);
        p->S = ix->shape[0] / p->B;
        p->H = ix->shape[1];
    } else {
        return FIA_INVALID("selection_topk_indices has %d dims, must be [B, S, H, K] or [B * S, H, K]",
                           (int)ix->ndim);
    }
    p->K = ix->shape[ix->ndim - 1];
    if (p->H != 1) return FIA_INVALID("selection_topk_indices head dim (H) is %lld, must be 1", (long long)p->H);
    if (p->K > FIA_GATHER_SELECTION_MAX_TOPK)
        return FIA_INVALID("selection_topk_indices last dim (K) is %lld, must be <= %d",
                           (long long)p->K, FIA_GATHER_SELECTION_MAX_TOPK);
    for (int32_t d = 0; d < ix->ndim; d++) {
        const int64_t want = d == ix->ndim - 1 ? p->K + 1 : ix->shape[d];
        if (st->shape[d] != want)
            return FIA_INVALID("selection_kv_block_status dim %d is %lld, must be %lld%s", (int)d,
                               (long long)st->shape[d], (long long)want,
                               d == ix->ndim - 1 ? " (K + 1)" : " (the indices')");
    }
    FIA_TRY(chain_check_out_lead(st, "selection_kv_block_status", st->ndim));
    const int64_t rows = p->B * p->S * p->H;
    FIA_TRY(fia_tensor_check_dim(t->selection_kv_block_table, "selection_kv_block_table", 0, rows, "B * S * H"));
    FIA_TRY(fia_tensor_check_dim(t->selection_kv_actual_seq, "selection_kv_actual_seq", 0, rows, "B * S * H"));
    return chain_check_out_lead(t->selection_kv_actual_seq, "selection_kv_actual_seq", 1);
}

static fia_status gs_validate(gs_plan *p, const fia_gather_selection_kv_cache_tensors *t, int64_t sbs) {
    /* rope: both empty, or both caches like the kv ones */
    const fia_tensor *sr = t->selection_k_rope, *fr = t->full_k_rope;
    const bool sr_empty = !sr || fia_tensor_numel(sr) == 0, fr_empty = !fr || fia_tensor_numel(fr) == 0;
    if (sr_empty != fr_empty)
        return FIA_INVALID("selection_k_rope is %s but full_k_rope is %s: both or neither",
                           sr_empty ? "empty" : "given", fr_empty ? "empty" : "given");
    p->rope = !sr_empty;
    const uint32_t conds = p->rope ? GS_ROPE : 0;
    FIA_TRY(fia_tensor_spec_check_when(t, gs_spec, FIA_SPEC_COUNT(gs_spec), conds));
    FIA_TRY(fia_tensor_spec_dtypes_when(t, gs_spec, FIA_SPEC_COUNT(gs_spec), conds));
    FIA_TRY(gs_parse_caches(p, t));
    FIA_TRY(gs_check_ranks(t));
    FIA_TRY(gs_parse_rows(p, t));
    if (sbs < 1) return FIA_INVALID("selection_topk_block_size is %lld, must be >= 1", (long long)sbs);
    if (p->K > 32 && sbs != 1)
        return FIA_INVALID("selection_topk_block_size is %lld, must be 1 when K (%lld) > 32",
                           (long long)sbs, (long long)p->K);
    if (p->fkv.block_size % sbs || p->skv.block_size % sbs)
        return FIA_INVALID("selection_topk_block_size %lld must divide both block sizes (full %lld, "
                           "selection %lld)", (long long)sbs, (long long)p->fkv.block_size,
                           (long long)p->skv.block_size);
    p->sbs = sbs;
    p->smax = t->selection_kv_block_table->shape[1];
    p->fmax = t->full_kv_block_table->shape[1];
    p->stable = *t->selection_kv_block_table;
    p->status = *t->selection_kv_block_status;
    p->topk = *t->selection_topk_indices;
    p->ftable = *t->full_kv_block_table;
    p->kvlen = *t->full_kv_actual_seq;
    p->qlen = *t->full_q_actual_seq;
    p->out = *t->selection_kv_actual_seq;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_gather_selection_kv_cache_plan(fia_context *ctx,
                                              const fia_gather_selection_kv_cache_tensors *t,
                                              const fia_gather_selection_kv_cache_params *prm,
                                              fia_plan **plan, size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_gather_selection_kv_cache_params v;
    fia_gather_selection_kv_cache_params_init(&v);
    FIA_TRY(fia_params_import(&v, sizeof v, prm, sizeof v,
                              "fia_gather_selection_kv_cache_params_init"));
    gs_plan *p = chain_plan_new(ctx, sizeof *p, gs_execute);
    if (!p) return FIA_STATUS_OUT_OF_MEMORY;
    return chain_plan_done(&p->base, gs_validate(p, t, v.selection_topk_block_size), gs_check,
                           plan, workspace_bytes);
}

fia_status fia_gather_selection_kv_cache(fia_context *ctx,
                                         const fia_gather_selection_kv_cache_tensors *t,
                                         const fia_gather_selection_kv_cache_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_gather_selection_kv_cache_plan, ctx, t, prm);
}
