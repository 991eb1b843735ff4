/*
 * sparse_flash_attention.c - sparse_flash_attention (SFA) and kv_quant_sparse_flash_attention
 * (C8): attention of every query head over the top-k tokens the indexer selected from the MLA
 * latent cache (contract in fia.h).
 *
 * validate: every tensor, shape, dtype, length, block id and parameter is checked before anything
 *           else happens; the first violation is reported. Lengths and the block table are
 *           copied. sparse_indices are read at execute time only, checked entry by entry.
 * plan:     one row per query token (the output rows); each row's K index entries are cut into
 *           fixed slices of SFA_SLICE_TOKENS / sparse_block_size entries (fixed in entry space).
 *           A work item (sched/worklist.h: b, the row's position q0, a head block, index entries
 *           [kv0, kv1)) is either one slice (decode with few rows: a split group whose chunks
 *           are the slices; the partial states go to the group's slots and the merge pass of
 *           sched/splitkv.h folds them in slice order) or all slices of the row (merged inside
 *           the item, in the same order and with the same arithmetic). Each slice starts from an empty softmax state and the merge is
 *           a left fold over the slices, so the output is bitwise the same whichever form the
 *           schedule picks, whatever the thread count or the other rows of the batch. Head
 *           blocks never change a result either (every kernel computes a row independently of
 *           the rows beside it).
 * execute:  (sfa_exec.c) per item, the query tile [heads x 576] is packed once in fp32 with the
 *           scale folded in. A slice streams its selected tokens in tiles of SFA_TILE: the
 *           entries are checked against the visible bound before any address is formed, the
 *           rows are gathered by pointer (paged or not), the next tile's rows are prefetched
 *           while the current one is packed, each row is converted (C8: dequantized) once into
 *           an fp32 V panel [tile x 512] and a rope panel, both transposed into one K^T panel
 *           [576 x tile]; then S = Q.K^T (gemm_f32), the online-softmax step, O = alpha.O + P.V
 *           (gemm_f32).
 * Nothing in execute allocates.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/sfa_internal.h"
#include "ops/validate.h"
#include "sched/tensor_spec.h"

static void sfa_destroy(fia_plan *plan) {
    sfa_plan *p = (sfa_plan *)plan;
    if (!p) return;
    free(p->block_table);
    free(p->batches);
    fia_worklist_free(&p->work);
    free(p);
}

/* ---- validation -------------------------------------------------------------------------- */

/* The common part of both operators' tensors. */
typedef struct sfa_tensors {
    const fia_tensor *query, *query_rope, *key, *key_rope, *value, *sparse_indices, *block_table;
    fia_tensor *attention_out, *softmax_lse, *softmax_max, *softmax_sum;
    const fia_tensor *sinks;
} sfa_tensors;

/* Conditions of the tables: the bf16 / fp16 form (separate rope tensors), the C8 form, and
 * return_softmax_lse (the softmax outputs are read). */
enum { SFA_ROPE = 1, SFA_C8 = 2, SFA_LSE = 4 };
enum { S_Q, S_K, S_K8, S_V, S_IDX, S_OUT, S_QR, S_KR, S_BT, S_LSE, S_MAX, S_SUM, S_SINKS };
#define SFA_T(m) offsetof(sfa_tensors, m)
#define SFA_REQ (FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT)
#define SFA_ROPE_WHAT "the rope is required (dim 64)"
static const fia_tensor_spec sfa_spec[] = {
    [S_Q] = {"query", SFA_T(query), SFA_REQ, FIA_DT(FLOAT16) | FIA_DT(BFLOAT16),
             "float16 or bfloat16", -1, 0, NULL},
    [S_K] = {"key", SFA_T(key), SFA_REQ, 0, NULL, S_Q, SFA_ROPE, NULL},
    [S_K8] = {"key", SFA_T(key), SFA_REQ, FIA_DT(INT8), "int8 (656-byte C8 rows)", -1, SFA_C8, NULL},
    [S_V] = {"value", SFA_T(value), FIA_SPEC_INNER_UNIT, 0, NULL, -1, 0, NULL},
    [S_IDX] = {"sparse_indices", SFA_T(sparse_indices), FIA_SPEC_REQUIRED, FIA_DT(INT32), "int32",
               -1, 0, NULL},
    [S_OUT] = {"attention_out", SFA_T(attention_out), SFA_REQ, 0, NULL, S_Q, 0, NULL},
    [S_QR] = {"query_rope", SFA_T(query_rope), SFA_REQ, 0, NULL, S_Q, SFA_ROPE, SFA_ROPE_WHAT},
    [S_KR] = {"key_rope", SFA_T(key_rope), SFA_REQ, 0, NULL, S_Q, SFA_ROPE, SFA_ROPE_WHAT},
    [S_BT] = {"block_table", SFA_T(block_table), 0, 0, NULL, -1, 0, NULL},
    [S_LSE] = {"softmax_lse", SFA_T(softmax_lse), 0, FIA_DT(FLOAT32), "float32", -1, SFA_LSE, NULL},
    [S_MAX] = {"softmax_max", SFA_T(softmax_max), 0, FIA_DT(FLOAT32), "float32", -1, SFA_LSE, NULL},
    [S_SUM] = {"softmax_sum", SFA_T(softmax_sum), 0, FIA_DT(FLOAT32), "float32", -1, SFA_LSE, NULL},
    [S_SINKS] = {"sinks", SFA_T(sinks), 0, FIA_DT(FLOAT32), "float32", -1, 0, NULL},
};
#undef SFA_ROPE_WHAT
#undef SFA_REQ
#undef SFA_T

/* Shapes against the query ([B, S1, N1, 512|576] or [T1, N1, ..]; dims counted from the end):
 * the ropes and the output share its batch and tokens, key_rope the key's; sparse_indices
 * [B, S1, 1, K] / [T1, 1, K]; softmax_max / _sum [B, 1, S1, N1] / [1, T1, N1]; sinks [N1]. */
#define SFA_EQ(a, ad, b, bd, when) {FIA_DIM_EQ, a, ad, b, bd, 0, NULL, when}
#define SFA_ONE(a, ad, when) {FIA_DIM_CONST, a, ad, 0, 0, 1, "one kv head", when}
#define SFA_RANK(a, when) {FIA_RANK_EQ, a, 0, S_Q, 0, 0, NULL, when}
static const fia_dim_rule sfa_rules[] = {
    SFA_EQ(S_QR, -4, S_Q, -4, SFA_ROPE), SFA_EQ(S_QR, -3, S_Q, -3, SFA_ROPE),
    SFA_EQ(S_KR, -4, S_K, -4, SFA_ROPE), SFA_EQ(S_KR, -3, S_K, -3, SFA_ROPE),
    SFA_RANK(S_IDX, 0), SFA_EQ(S_IDX, -4, S_Q, -4, 0), SFA_EQ(S_IDX, -3, S_Q, -3, 0),
    SFA_ONE(S_IDX, -2, 0),
    SFA_EQ(S_OUT, -4, S_Q, -4, 0), SFA_EQ(S_OUT, -3, S_Q, -3, 0),
    SFA_RANK(S_MAX, SFA_LSE), SFA_ONE(S_MAX, -3, SFA_LSE), SFA_EQ(S_MAX, -4, S_Q, -4, SFA_LSE),
    SFA_EQ(S_MAX, -2, S_Q, -3, SFA_LSE), SFA_EQ(S_MAX, -1, S_Q, -2, SFA_LSE),
    SFA_RANK(S_SUM, SFA_LSE), SFA_ONE(S_SUM, -3, SFA_LSE), SFA_EQ(S_SUM, -4, S_Q, -4, SFA_LSE),
    SFA_EQ(S_SUM, -2, S_Q, -3, SFA_LSE), SFA_EQ(S_SUM, -1, S_Q, -2, SFA_LSE),
    {FIA_RANK_CONST, S_SINKS, 0, 0, 0, 1, "[N1]", 0}, SFA_EQ(S_SINKS, 0, S_Q, -2, 0),
};
#undef SFA_RANK
#undef SFA_ONE
#undef SFA_EQ

static bool sfa_same_view(const fia_tensor *a, const fia_tensor *b) {
    if (fia_tensor_ptr(a) != fia_tensor_ptr(b) || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return false;
    return true;
}

/* The tensor table (NULLs, views, dtypes) and the softmax outputs' combinations. */
static fia_status sfa_check_tensors(const sfa_tensors *t, uint32_t conds) {
    FIA_TRY(fia_tensor_spec_check_when(t, sfa_spec, FIA_SPEC_COUNT(sfa_spec), conds));
    if (conds & SFA_LSE) {
        if (!t->softmax_lse && !t->softmax_max && !t->softmax_sum)
            return FIA_INVALID("softmax_lse, softmax_max and softmax_sum are NULL but "
                               "return_softmax_lse is set (pass softmax_lse, or softmax_max and "
                               "softmax_sum, or all three)");
        if (!t->softmax_max != !t->softmax_sum)
            return FIA_INVALID("%s is NULL but %s is given: softmax_max and softmax_sum go together",
                               t->softmax_max ? "softmax_sum" : "softmax_max",
                               t->softmax_max ? "softmax_max" : "softmax_sum");
    }
    FIA_TRY(fia_tensor_spec_dtypes_when(t, sfa_spec, FIA_SPEC_COUNT(sfa_spec), conds));
    if (t->value && !sfa_same_view(t->value, t->key))
        return FIA_INVALID("value must be NULL or the same view as key (attention_mode 2 takes "
                           "the values from the key rows)");
    return FIA_STATUS_SUCCESS;
}

static fia_status sfa_check_params(sfa_plan *p, const fia_sparse_flash_attention_params *prm) {
    if (prm->attention_mode != 2)
        return FIA_INVALID("attention_mode is %d, must be 2 (MLA-absorb: values are k_nope)",
                           (int)prm->attention_mode);
    if (prm->sparse_mode != 0 && prm->sparse_mode != 3)
        return FIA_INVALID("sparse_mode is %d, must be 0 or 3", (int)prm->sparse_mode);
    const int64_t sbs = prm->sparse_block_size;
    if (sbs < 1 || sbs > FIA_MAX_SPARSE_BLOCK || (sbs & (sbs - 1)) != 0)
        return FIA_INVALID("sparse_block_size is %lld, must be a power of two 1..%d",
                           (long long)sbs, FIA_MAX_SPARSE_BLOCK);
    if (!isfinite(prm->scale_value)) return FIA_INVALID("scale_value is not finite");
    if (prm->layout_query != FIA_LAYOUT_BSND && prm->layout_query != FIA_LAYOUT_TND)
        return FIA_INVALID("layout_query is %s, must be BSND or TND",
                           fia_layout_name(prm->layout_query));
    if (prm->layout_kv != FIA_LAYOUT_BSND && prm->layout_kv != FIA_LAYOUT_TND &&
        prm->layout_kv != FIA_LAYOUT_PA_BSND)
        return FIA_INVALID("layout_kv is %s, must be BSND, TND or PA_BSND",
                           fia_layout_name(prm->layout_kv));
    p->sbs = sbs;
    p->scale = (float)prm->scale_value;
    p->vis = prm->sparse_mode == 3 ? FIA_VIS_CAUSAL_BOTTOM_RIGHT : FIA_VIS_ALL;
    return FIA_STATUS_SUCCESS;
}

/* A view in layout (sched/kvcache.h fia_seq_parse) with `heads` heads of width dim. */
static fia_status sfa_parse_view(const fia_tensor *t, const char *name, fia_layout layout,
                                 int64_t heads, int64_t dim, fia_seq *s, fia_dims *d) {
    FIA_TRY(fia_seq_parse(t, name, layout, heads, s, d));
    return fia_tensor_check_dim(t, name, t->ndim - 1, dim, "required");
}

/* query (any 1..FIA_MAX_LATENT_HEADS heads) and query_rope; the batch count. */
static fia_status sfa_parse_query(sfa_plan *p, const sfa_tensors *t,
                                  const fia_sparse_flash_attention_params *prm, fia_dims *qd) {
    const fia_tensor *q = t->query;
    const int32_t nd = prm->layout_query == FIA_LAYOUT_TND ? 3 : 4;
    FIA_TRY(fia_tensor_check_ndim(q, "query", nd));
    p->N1 = q->shape[nd - 2];
    if (p->N1 < 1 || p->N1 > FIA_MAX_LATENT_HEADS)
        return FIA_INVALID("query dim %d (heads) is %lld, must be 1..%d", (int)nd - 2,
                           (long long)p->N1, FIA_MAX_LATENT_HEADS);
    FIA_TRY(sfa_parse_view(q, "query", prm->layout_query, p->N1, p->c8 ? SFA_DK : SFA_DN, &p->q,
                           qd));
    if (!p->c8) {
        fia_dims rd;
        FIA_TRY(sfa_parse_view(t->query_rope, "query_rope", prm->layout_query, p->N1, SFA_DR,
                               &p->qr, &rd));
    }
    return fia_parse_batch_count(nd == 3, prm->actual_seq_lengths_query,
                                 prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                 "layout_query TND", qd->B, FIA_MAX_BATCH, &p->B);
}

/* key (and key_rope): dense in layout_kv or paged PA_BSND [blocks, block_size, 1, D]; *kd: its
 * dims (paged: blocks and block_size). */
static fia_status sfa_parse_kv(sfa_plan *p, const sfa_tensors *t,
                               const fia_sparse_flash_attention_params *prm, fia_dims *kd) {
    const bool paged = prm->layout_kv == FIA_LAYOUT_PA_BSND;
    FIA_TRY(sfa_parse_view(t->key, "key", prm->layout_kv, 1, p->c8 ? FIA_C8_ROW_BYTES : SFA_DN,
                           &p->k, kd));
    if (paged && kd->S % p->sbs != 0)
        return FIA_INVALID("sparse_block_size %lld does not divide block_size %lld",
                           (long long)p->sbs, (long long)kd->S);
    if (!p->c8) {
        fia_dims rd;
        FIA_TRY(sfa_parse_view(t->key_rope, "key_rope", prm->layout_kv, 1, SFA_DR, &p->kr, &rd));
    }
    if (paged && !t->block_table)
        return FIA_INVALID("block_table is required with layout_kv PA_BSND");
    if (!paged && t->block_table)
        return FIA_INVALID("block_table is given but layout_kv is %s (PA_BSND needs it)",
                           fia_layout_name(prm->layout_kv));
    if (prm->layout_kv == FIA_LAYOUT_BSND && kd->B != p->B)
        return FIA_INVALID("key dim 0 (batch) is %lld, query has %lld", (long long)kd->B,
                           (long long)p->B);
    return FIA_STATUS_SUCCESS;
}

/* The per-batch query and kv lengths into p->batches; paged, the block table (validated
 * against them and copied). */
static fia_status sfa_parse_lengths(sfa_plan *p, const sfa_tensors *t,
                                    const fia_sparse_flash_attention_params *prm,
                                    const fia_dims *qd, const fia_dims *kd) {
    const bool qtnd = prm->layout_query == FIA_LAYOUT_TND, ktnd = prm->layout_kv == FIA_LAYOUT_TND;
    const fia_lengths_args a = {
        prm->actual_seq_lengths_query, prm->actual_seq_lengths_kv,
        prm->actual_seq_lengths_query_count, prm->actual_seq_lengths_kv_count,
        "actual_seq_lengths_query", qtnd, ktnd, false, qd->S, kd->S,
        qtnd ? "query dim 0 (T)" : "query dim 1 (S1)", ktnd ? "key dim 0 (T)" : "key dim 1 (S2)",
        t->block_table, kd->S, kd->B, "key"};
    int64_t cols = 0;
    FIA_TRY(fia_parse_batch_lengths(&a, p->B, &p->batches, &p->block_table, &cols));
    if (t->block_table) fia_pages_init(&p->pages, p->block_table, cols, kd->S);
    p->kv = fia_seq_kv_view(&p->k, &p->pages);
    p->krv = fia_seq_kv_view(&p->kr, &p->pages);
    return FIA_STATUS_SUCCESS;
}

/* A float32 [.., S, N] softmax output (the shapes were checked by sfa_rules). */
static sfa_vals sfa_vals_of(fia_tensor *v, bool tnd) {
    const int32_t nd = v->ndim;
    const sfa_vals r = {fia_tensor_ptr(v), tnd ? 0 : v->strides[0], v->strides[nd - 2],
                        v->strides[nd - 1]};
    return r;
}

/* sparse_indices, attention_out and the softmax outputs; sinks. */
static fia_status sfa_parse_outputs(sfa_plan *p, const sfa_tensors *t,
                                    const fia_sparse_flash_attention_params *prm,
                                    const fia_dims *qd) {
    const bool qtnd = p->tnd = prm->layout_query == FIA_LAYOUT_TND;
    const fia_tensor *ix = t->sparse_indices;
    const int32_t nd = ix->ndim;
    p->idx = fia_tensor_ptr(ix);
    p->K = ix->shape[nd - 1];
    p->idx_s_b = qtnd ? 0 : ix->strides[0];
    p->idx_s_t = ix->strides[nd - 3];
    p->idx_s_e = ix->strides[nd - 1];
    fia_dims od;
    FIA_TRY(sfa_parse_view(t->attention_out, "attention_out", prm->layout_query, p->N1, SFA_DN,
                           &p->o, &od));
    if (prm->return_softmax_lse && t->softmax_lse)
        FIA_TRY(fia_parse_lse(t->softmax_lse, qtnd, p->B, p->N1, qd->S, "the query heads",
                              qtnd ? "query T1" : "query S1", &p->lse.data, &p->lse.s_b,
                              &p->lse.s_t, &p->lse.s_h));
    if (prm->return_softmax_lse && t->softmax_max) {
        p->smax = sfa_vals_of(t->softmax_max, qtnd);
        p->ssum = sfa_vals_of(t->softmax_sum, qtnd);
    }
    if (t->sinks) {
        p->sinks = fia_tensor_ptr(t->sinks);
        p->sinks_s = t->sinks->strides[0];
    }
    p->num_rows = qd->S * (qtnd ? 1 : p->B);
    /* every row becomes at least one work item: the same cap, before scheduling */
    if (p->num_rows > FIA_MAX_ITEMS)
        return FIA_UNSUPPORTED("query has %lld rows (batch x S1 or T), at most %lld",
                               (long long)p->num_rows, (long long)FIA_MAX_ITEMS);
    return FIA_STATUS_SUCCESS;
}

static fia_status sfa_validate(sfa_plan *p, const sfa_tensors *t,
                               const fia_sparse_flash_attention_params *prm) {
    const uint32_t conds = (p->c8 ? SFA_C8 : SFA_ROPE) | (prm->return_softmax_lse ? SFA_LSE : 0);
    FIA_TRY(sfa_check_tensors(t, conds));
    FIA_TRY(sfa_check_params(p, prm));
    fia_dims qd, kd;
    FIA_TRY(sfa_parse_query(p, t, prm, &qd));
    FIA_TRY(sfa_parse_kv(p, t, prm, &kd));
    FIA_TRY(fia_tensor_spec_dims(t, sfa_spec, sfa_rules, FIA_SPEC_COUNT(sfa_rules), conds,
                                 NULL));
    FIA_TRY(sfa_parse_lengths(p, t, prm, &qd, &kd));
    return sfa_parse_outputs(p, t, prm, &qd);
}

/* ---- scheduling -------------------------------------------------------------------------- */

/* The first query position of batch b that sees a token (positions before it output 0; the
 * visible bound never decreases along the positions). */
static int64_t sfa_first_visible(const sfa_plan *p, const fia_batch *bi) {
    if (p->nslices == 0) return bi->sq;
    int64_t i = 0, lo, hi;
    for (; i < bi->sq; i++) {
        fia_vis_range(p->vis, 0, 0, bi, i, &lo, &hi);
        if (hi >= 0) break;
    }
    return i;
}

/* Head blocks: all heads, halved while the rows and slices leave threads idle. Split (one item
 * per slice, partials merged afterwards) when there are few (row, head block) pairs, as long as
 * the partials stay within SFA_MAX_PARTIAL_BYTES. */
static bool sfa_pick_blocks(sfa_plan *p) {
    const int64_t T = p->num_threads;
    int64_t nact = 0;
    for (int64_t b = 0; b < p->B; b++) nact += p->batches[b].sq - sfa_first_visible(p, &p->batches[b]);
    int64_t hb = p->N1;
    while (hb > SFA_MIN_HEAD_BLOCK && nact * ((p->N1 + hb - 1) / hb) * p->nslices < 2 * T)
        hb = (hb + 1) / 2;
    p->head_block = hb;
    const int64_t pairs = nact * ((p->N1 + hb - 1) / hb);
    return p->nslices > 1 && pairs < 4 * T &&
           pairs * p->nslices * hb * (SFA_DN + 2) * 4 <= SFA_MAX_PARTIAL_BYTES &&
           p->K * p->nslices <= SFA_MAX_PRESCAN;
}

static fia_status sfa_schedule(sfa_plan *p) {
    p->slice_entries = SFA_SLICE_TOKENS / p->sbs > 0 ? SFA_SLICE_TOKENS / p->sbs : 1;
    p->nslices = p->K > 0 ? (p->K + p->slice_entries - 1) / p->slice_entries : 0;
    const bool split = sfa_pick_blocks(p);
    const int64_t hb = p->head_block, N1 = p->N1, K = p->K;
    fia_worklist *wl = &p->work;
    for (int pass = 0; pass < 2; pass++) {
        fia_worklist_begin(wl, pass);
        for (int64_t b = 0; b < p->B; b++) {
            const fia_batch *bi = &p->batches[b];
            const int64_t n0 = sfa_first_visible(p, bi);
            if (n0 > 0) fia_worklist_zero(wl, b, 0, n0, n0 * N1);
            for (int64_t i = n0; i < bi->sq; i++)
                for (int64_t h0 = 0; h0 < N1; h0 += hb) {
                    const int64_t nh = N1 - h0 < hb ? N1 - h0 : hb;
                    if (split) fia_worklist_split(wl, b, h0, nh, i, 1, 0, K, p->slice_entries, 1, SFA_DN);
                    else fia_worklist_tile(wl, b, h0, nh, i, 1, 0, K, 1);
                }
            /* rows past the length: BSND up to S1, TND the last batch up to T */
            const int64_t rows = !p->tnd ? p->num_rows / p->B
                                 : b + 1 < p->B ? bi->sq : p->num_rows - bi->q_tok0;
            if (rows > bi->sq) fia_worklist_zero(wl, b, bi->sq, rows - bi->sq, (rows - bi->sq) * N1);
            FIA_TRY(fia_worklist_check(wl));
        }
        FIA_TRY(fia_worklist_end(wl));
    }
    fia_worklist_sort(wl);
    return FIA_STATUS_SUCCESS;
}

/* ---- entry points ------------------------------------------------------------------------ */

static fia_status sfa_plan_common(fia_context *ctx, const sfa_tensors *t,
                                  const fia_sparse_flash_attention_params *prm, bool c8,
                                  fia_plan **plan, size_t *workspace_bytes) {
    sfa_plan *p = calloc(1, sizeof *p);
    if (!p) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    p->base.ctx = ctx;
    p->base.execute = fia_sfa_execute;
    p->base.destroy = sfa_destroy;
    p->kern = &ctx->kernels.core;
    p->skern = &ctx->kernels.sfa;
    p->num_threads = ctx->num_threads;
    p->c8 = c8;
    fia_status st = sfa_validate(p, t, prm);
    if (st == FIA_STATUS_SUCCESS) st = sfa_schedule(p);
    /* AMX (sfa_exec.c): bf16 query and cache; C8 with a bf16 query (its rows cast to bf16) */
    p->amx = st == FIA_STATUS_SUCCESS && ctx->amx_bf16 && p->q.dtype == FIA_DTYPE_BFLOAT16 &&
             (c8 || (p->qr.dtype == FIA_DTYPE_BFLOAT16 && p->k.dtype == FIA_DTYPE_BFLOAT16 &&
                    p->kr.dtype == FIA_DTYPE_BFLOAT16));
    p->base.unit = p->amx ? "amx_bf16" : "fma";
    if (st != FIA_STATUS_SUCCESS) {
        sfa_destroy(&p->base);
        return st;
    }
    p->base.workspace_bytes = fia_sfa_workspace_layout(p, NULL, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: %ssparse_flash_attention: B=%lld rows=%lld N1=%lld K=%lld sbs=%lld "
                "slices=%lld head_block=%lld items=%lld merge-groups=%lld workspace=%zu "
                "kernels=%s%s\n", c8 ? "kv_quant_" : "", (long long)p->B, (long long)p->num_rows,
                (long long)p->N1, (long long)p->K, (long long)p->sbs, (long long)p->nslices,
                (long long)p->head_block, (long long)p->work.num_items,
                (long long)p->work.num_groups, p->base.workspace_bytes, p->kern->name,
                p->amx ? " + amx bf16" : "");
    *plan = &p->base;
    if (workspace_bytes) *workspace_bytes = p->base.workspace_bytes;
    return FIA_STATUS_SUCCESS;
}

void fia_sparse_flash_attention_params_init(fia_sparse_flash_attention_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->scale_value = 1.0;
    p->sparse_block_size = 1;
    p->layout_query = FIA_LAYOUT_BSND;
    p->layout_kv = FIA_LAYOUT_BSND;
    p->sparse_mode = 3;
    p->attention_mode = 2;
}

void fia_kv_quant_sparse_flash_attention_params_init(fia_kv_quant_sparse_flash_attention_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    fia_sparse_flash_attention_params_init(&p->base);
    p->key_quant_mode = 2;
    p->value_quant_mode = 2;
    p->quant_scale_repo_mode = 1;
    p->tile_size = 128;
    p->rope_head_dim = 64;
}

fia_status fia_sparse_flash_attention_plan(fia_context *ctx,
                                           const fia_sparse_flash_attention_tensors *tensors,
                                           const fia_sparse_flash_attention_params *params,
                                           fia_plan **plan, size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, tensors, params, plan));
    fia_sparse_flash_attention_params prm;
    fia_sparse_flash_attention_params_init(&prm);
    FIA_TRY(fia_params_import(&prm, sizeof prm, params, sizeof prm,
                              "fia_sparse_flash_attention_params_init"));
    params = &prm;
    const sfa_tensors t = {tensors->query, tensors->query_rope, tensors->key, tensors->key_rope,
                           tensors->value, tensors->sparse_indices, tensors->block_table,
                           tensors->attention_out, tensors->softmax_lse, tensors->softmax_max,
                           tensors->softmax_sum, tensors->sinks};
    return sfa_plan_common(ctx, &t, params, false, plan, workspace_bytes);
}

fia_status fia_sparse_flash_attention(fia_context *ctx,
                                      const fia_sparse_flash_attention_tensors *tensors,
                                      const fia_sparse_flash_attention_params *params) {
    fia_plan *plan = NULL;
    FIA_TRY(fia_sparse_flash_attention_plan(ctx, tensors, params, &plan, NULL));
    return fia_plan_run_once(plan);
}

fia_status fia_kv_quant_sparse_flash_attention_plan(
    fia_context *ctx, const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params, fia_plan **plan,
    size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, tensors, params, plan));
    fia_kv_quant_sparse_flash_attention_params prm;
    fia_kv_quant_sparse_flash_attention_params_init(&prm);
    FIA_TRY(fia_params_import(&prm, sizeof prm, params, sizeof prm,
                              "fia_kv_quant_sparse_flash_attention_params_init"));
    FIA_TRY(fia_params_import(&prm.base, sizeof prm.base, &params->base, sizeof prm.base,
                              "fia_kv_quant_sparse_flash_attention_params_init"));
    params = &prm;
    if (params->key_quant_mode != 2)
        return FIA_INVALID("key_quant_mode is %d, must be 2 (per-tile)", (int)params->key_quant_mode);
    if (params->value_quant_mode != 2)
        return FIA_INVALID("value_quant_mode is %d, must be 2 (per-tile)",
                           (int)params->value_quant_mode);
    if (params->quant_scale_repo_mode != 1)
        return FIA_INVALID("quant_scale_repo_mode is %d, must be 1 (scales inside the row)",
                           (int)params->quant_scale_repo_mode);
    if (params->tile_size != FIA_C8_TILE)
        return FIA_INVALID("tile_size is %lld, must be %d", (long long)params->tile_size,
                           FIA_C8_TILE);
    if (params->rope_head_dim != SFA_DR)
        return FIA_INVALID("rope_head_dim is %lld, must be %d", (long long)params->rope_head_dim,
                           SFA_DR);
    const sfa_tensors t = {tensors->query, NULL, tensors->key, NULL, tensors->value,
                           tensors->sparse_indices, tensors->block_table, tensors->attention_out,
                           tensors->softmax_lse, tensors->softmax_max, tensors->softmax_sum,
                           tensors->sinks};
    return sfa_plan_common(ctx, &t, &params->base, true, plan, workspace_bytes);
}

fia_status fia_kv_quant_sparse_flash_attention(
    fia_context *ctx, const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params) {
    fia_plan *plan = NULL;
    FIA_TRY(fia_kv_quant_sparse_flash_attention_plan(ctx, tensors, params, &plan, NULL));
    return fia_plan_run_once(plan);
}
