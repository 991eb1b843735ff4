/*
 * lightning_indexer.c - lightning_indexer and quant_lightning_indexer: validation, plan and
 * execution on the shared framework (the top-k selection is in li_topk.c, the decomposition in
 * li_internal.h).
 *
 * validate: the tensor tables (sched/tensor_spec.h), then parameters, query, key, lengths and
 *           block ids, outputs and (quant) the signs of the scales that will be read, in that
 *           order; the first violation is reported.
 * plan:     rows -> waves with their scoring items (sched/worklist.h), and the workspace layout:
 *           one scratch area per thread (core/plan.h's fia_thread_scratch), then the scores.
 * execute:  per wave, pool pass 1 scores (block, key chunk) items: the block's query rows are
 *           prepared once per thread (fp32 transposed heads, or packed int8 heads with their
 *           bias), then key tiles of FIA_LI_KEY_TILE tokens, addressed through sched/kvcache.h,
 *           are converted once (fp32 rows, or uint8 rows re-biased by 128) and scored against
 *           every row of the block by the registry's kernels (src/kernels/li_kernels.h), with
 *           each row's causal bound applied by shortening its tile; pass 2 selects each row's
 *           top k and writes the output row.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/convert.h"
#include "core/params.h"
#include "core/status.h"
#include "core/tensor.h"
#include "ops/li_internal.h"
#include "ops/validate.h"
#include "sched/tensor_spec.h"

enum {
    LI_WAVE_FLOATS = 4 << 20, /* 16 MiB of scores per wave (at least one block) */
    LI_RETURN_VALUE = 1u      /* tensor-table condition: return_value is set */
};
#define LI_MAX_ROWS (INT64_C(1) << 28)

void fia_lightning_indexer_params_init(fia_lightning_indexer_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->layout_query = FIA_LAYOUT_BSND;
    p->layout_key = FIA_LAYOUT_BSND;
    p->sparse_count = 2048;
    p->sparse_mode = 3;
    p->pre_tokens = INT64_MAX;
    p->next_tokens = INT64_MAX;
}

/* ------------------------------------------------------------------------------------------ */
/* Addressing (sched/kvcache.h)                                                               */
/* ------------------------------------------------------------------------------------------ */

/* A [b, token, head] view of t with these element strides. */
static fia_seq li_seq(const fia_tensor *t, int64_t s_b, int64_t s_t, int64_t s_h) {
    fia_seq s;
    memset(&s, 0, sizeof s);
    s.base = fia_tensor_ptr(t);
    s.dtype = t->dtype;
    s.esize = (int64_t)fia_dtype_size(t->dtype);
    s.s_b = s_b;
    s.s_t = s_t;
    s.s_h = s_h;
    return s;
}

/* Element (b, token t, head h) of a query-side view (or slot h of an output row). */
static inline char *li_at(const fia_seq *s, int64_t b, int64_t t, int64_t h) {
    return s->base + fia_seq_dense_off(s, b, t, h) * s->esize;
}

/* Rows of key tokens [j0, j0 + n) of batch b of a key-side view, n = min(tile, kv1 - j0). */
static inline int64_t li_key_rows(const fia_li_plan *p, const fia_seq *s, int64_t b, int64_t j0,
                                  int64_t kv1, const void **rows) {
    const int64_t n = kv1 - j0 < FIA_LI_KEY_TILE ? kv1 - j0 : FIA_LI_KEY_TILE;
    if (n > 0) fia_seq_row_ptrs(s, &p->pages, b, p->kv_tok0[b], 0, j0, n, rows);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define LI_T(m) offsetof(fia_lightning_indexer_tensors, m)
#define LI_REQ (FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT)
#define LI_INDICES {"sparse_indices", LI_T(sparse_indices), FIA_SPEC_REQUIRED, FIA_DT(INT32), \
                    "int32", -1, 0, NULL}
#define LI_VALUES {"sparse_values", LI_T(sparse_values), FIA_SPEC_REQUIRED, FIA_DT_FLOAT, \
                   "float32, float16 or bfloat16", -1, LI_RETURN_VALUE, "return_value is set"}
#define LI_BLOCK_TABLE {"block_table", LI_T(block_table), 0, 0, NULL, -1, 0, NULL}
static const fia_tensor_spec li_float_tensors[] = {
    {"query", LI_T(query), LI_REQ, FIA_DT(FLOAT16) | FIA_DT(BFLOAT16), "float16 or bfloat16", -1,
     0, NULL},
    {"key", LI_T(key), LI_REQ, 0, NULL, 0, 0, NULL},
    {"weights", LI_T(weights), FIA_SPEC_REQUIRED | FIA_SPEC_SAME_OR, FIA_DT(FLOAT32), "float32", 0,
     0, NULL},
    LI_INDICES, LI_VALUES, LI_BLOCK_TABLE,
};
static const fia_tensor_spec li_quant_tensors[] = {
    {"query", LI_T(query), LI_REQ, FIA_DT(INT8), "int8", -1, 0, NULL},
    {"key", LI_T(key), LI_REQ, FIA_DT(INT8), "int8", -1, 0, NULL},
    {"weights", LI_T(weights), FIA_SPEC_REQUIRED, FIA_DT_FLOAT, "float16 (or bfloat16, float32)",
     -1, 0, NULL},
    LI_INDICES,
    {"query_dequant_scale", LI_T(query_dequant_scale), FIA_SPEC_REQUIRED, FIA_DT_FLOAT,
     "a float dtype", -1, 0, NULL},
    {"key_dequant_scale", LI_T(key_dequant_scale), FIA_SPEC_REQUIRED, FIA_DT_FLOAT,
     "a float dtype", -1, 0, NULL},
    LI_VALUES, LI_BLOCK_TABLE,
};
#undef LI_BLOCK_TABLE
#undef LI_VALUES
#undef LI_INDICES
#undef LI_REQ
#undef LI_T

typedef struct li_lens {
    int64_t *q_len, *kv_len, *q_tok0; /* [B] each */
} li_lens;

/* The tensor tables, the quant modes and exact_ranking. */
static fia_status li_check_tensors(const fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                                   const fia_lightning_indexer_params *prm) {
    if (!p->quant && (t->query_dequant_scale || t->key_dequant_scale))
        return FIA_INVALID("query/key_dequant_scale given to lightning_indexer (they belong to "
                           "quant_lightning_indexer)");
    const fia_tensor_spec *spec = p->quant ? li_quant_tensors : li_float_tensors;
    const size_t n = p->quant ? FIA_SPEC_COUNT(li_quant_tensors) : FIA_SPEC_COUNT(li_float_tensors);
    const uint32_t conds = prm->return_value ? LI_RETURN_VALUE : 0u;
    FIA_TRY(fia_tensor_spec_check_when(t, spec, n, conds));
    FIA_TRY(fia_tensor_spec_dtypes_when(t, spec, n, conds));
    if (p->quant && prm->query_quant_mode != 0)
        return FIA_INVALID("query_quant_mode is %d, must be 0", (int)prm->query_quant_mode);
    if (p->quant && prm->key_quant_mode != 0)
        return FIA_INVALID("key_quant_mode is %d, must be 0", (int)prm->key_quant_mode);
    if (prm->exact_ranking != 0 && prm->exact_ranking != 1)
        return FIA_INVALID("exact_ranking is %d, must be 0 or 1", (int)prm->exact_ranking);
    return FIA_STATUS_SUCCESS;
}

/* sparse_count, sparse_mode, pre/next_tokens, the layouts and the block table's presence. */
static fia_status li_check_params(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                                  const fia_lightning_indexer_params *prm) {
    if (prm->sparse_count < 1 || prm->sparse_count > FIA_MAX_TOPK)
        return FIA_INVALID("sparse_count is %lld, must be 1..%d", (long long)prm->sparse_count,
                           FIA_MAX_TOPK);
    if (prm->sparse_mode != 0 && prm->sparse_mode != 3)
        return FIA_INVALID("sparse_mode is %d, must be 0 or 3", (int)prm->sparse_mode);
    if (prm->pre_tokens != INT64_MAX || prm->next_tokens != INT64_MAX)
        return FIA_INVALID("pre_tokens / next_tokens are %lld / %lld: %s accepts only the "
                           "default 2^63-1", (long long)prm->pre_tokens,
                           (long long)prm->next_tokens,
                           p->quant ? "quant_lightning_indexer" : "lightning_indexer");
    const fia_layout lq = prm->layout_query, lk = prm->layout_key;
    if (lq != FIA_LAYOUT_BSND && lq != FIA_LAYOUT_TND)
        return FIA_INVALID("layout_query is %s, must be BSND or TND", fia_layout_name(lq));
    if (lk != FIA_LAYOUT_BSND && lk != FIA_LAYOUT_TND && lk != FIA_LAYOUT_PA_BSND)
        return FIA_INVALID("layout_key is %s, must be BSND, TND or PA_BSND", fia_layout_name(lk));
    const bool paged = lk == FIA_LAYOUT_PA_BSND;
    if (paged && !t->block_table)
        return FIA_INVALID("block_table is required with layout_key PA_BSND");
    if (!paged && t->block_table)
        return FIA_INVALID("block_table given but layout_key is %s, not PA_BSND",
                           fia_layout_name(lk));
    p->K = prm->sparse_count;
    p->tnd = lq == FIA_LAYOUT_TND;
    return FIA_STATUS_SUCCESS;
}

/* The query (heads, head dim, batch) and the [B, S1, N1] / [T1, N1] weights and query scale. */
static fia_status li_parse_query(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                                 const fia_lightning_indexer_params *prm) {
    const fia_tensor *q = t->query;
    const bool tnd = p->tnd;
    if (q->ndim != (tnd ? 3 : 4))
        return FIA_INVALID("query has %d dims, layout %s needs %d", (int)q->ndim,
                           fia_layout_name(prm->layout_query), tnd ? 3 : 4);
    const int64_t N1 = q->shape[q->ndim - 2], D = q->shape[q->ndim - 1];
    const int64_t S1 = tnd ? q->shape[0] : q->shape[1];
    if (N1 < 1 || N1 > FIA_LI_MAX_HEADS)
        return FIA_INVALID("query dim %d (heads) is %lld, must be 1..%d", (int)q->ndim - 2,
                           (long long)N1, FIA_LI_MAX_HEADS);
    if (D < 1 || D > FIA_MAX_LI_HEAD_DIM)
        return FIA_INVALID("query dim %d (head dim) is %lld, must be 1..%d", (int)q->ndim - 1,
                           (long long)D, FIA_MAX_LI_HEAD_DIM);
    FIA_TRY(fia_parse_batch_count(tnd, prm->actual_seq_lengths_query,
                                  prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                  "layout_query TND", q->shape[0], FIA_MAX_BATCH, &p->B));
    p->N1 = N1;
    p->D = D;
    p->S1 = S1;
    fia_dims qd;
    FIA_TRY(fia_seq_parse(q, "query", prm->layout_query, N1, &p->q, &qd));
    const int64_t rows_total = tnd ? S1 : p->B * S1;
    if (rows_total > LI_MAX_ROWS)
        return FIA_UNSUPPORTED("%lld query rows, at most %lld are supported",
                               (long long)rows_total, (long long)LI_MAX_ROWS);
    const int64_t want[3] = {p->B, S1, N1};
    static const char *const what[3] = {"batch", "the query's S1", "heads"};
    static const char *const what_t[2] = {"the query's T1", "heads"};
    const fia_tensor *ws[2] = {t->weights, p->quant ? t->query_dequant_scale : NULL};
    static const char *const names[2] = {"weights", "query_dequant_scale"};
    fia_seq *views[2] = {&p->w, &p->sq};
    for (int i = 0; i < 2; i++) {
        const fia_tensor *x = ws[i];
        if (!x) continue;
        FIA_TRY(fia_tensor_check_shape(x, names[i], tnd ? 2 : 3, tnd ? want + 1 : want,
                                       tnd ? what_t : what));
        *views[i] = tnd ? li_seq(x, 0, x->strides[0], x->strides[1])
                        : li_seq(x, x->strides[0], x->strides[1], x->strides[2]);
    }
    return FIA_STATUS_SUCCESS;
}

/* The key (BSND [B, S2, 1, D], TND [T2, 1, D], PA_BSND [blocks, block_size, 1, D]) and its
 * scale (the key's shape without the head dim); *S2 and *blocks as the layout has them. */
static fia_status li_parse_key(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                               fia_layout lk, int64_t *S2, int64_t *blocks) {
    const fia_tensor *k = t->key;
    const bool paged = lk == FIA_LAYOUT_PA_BSND;
    if (lk == FIA_LAYOUT_TND && k->ndim != 3)
        return FIA_INVALID("key has %d dims, layout TND needs 3 ([T2, 1, D])", (int)k->ndim);
    if (lk != FIA_LAYOUT_TND && k->ndim != 4)
        return FIA_INVALID("key has %d dims, layout %s needs 4", (int)k->ndim, fia_layout_name(lk));
    *S2 = lk == FIA_LAYOUT_TND ? k->shape[0] : paged ? 0 : k->shape[1];
    *blocks = paged ? k->shape[0] : 0;
    if (paged && (k->shape[1] < 1 || k->shape[1] > FIA_MAX_BLOCK_SIZE))
        return FIA_INVALID("key dim 1 (block_size) is %lld, must be 1..%d",
                           (long long)k->shape[1], FIA_MAX_BLOCK_SIZE);
    if (lk == FIA_LAYOUT_BSND && k->shape[0] != p->B)
        return FIA_INVALID("key dim 0 (batch) is %lld, query has %lld", (long long)k->shape[0],
                           (long long)p->B);
    if (k->shape[k->ndim - 2] != 1)
        return FIA_INVALID("key dim %d (heads) is %lld, must be 1 (one key head)",
                           (int)k->ndim - 2, (long long)k->shape[k->ndim - 2]);
    if (k->shape[k->ndim - 1] != p->D)
        return FIA_INVALID("key dim %d (head dim) is %lld, query has %lld", (int)k->ndim - 1,
                           (long long)k->shape[k->ndim - 1], (long long)p->D);
    if (paged) {
        p->k = li_seq(k, 0, k->strides[1], k->strides[2]);
        p->k.s_blk = k->strides[0];
        p->pages.block_size = k->shape[1];
    } else {
        fia_dims kd;
        FIA_TRY(fia_seq_parse(k, "key", lk, 1, &p->k, &kd));
    }
    if (!p->quant) return FIA_STATUS_SUCCESS;
    const fia_tensor *s = t->key_dequant_scale;
    static const char *const what_b[3] = {"the key's batch", "the key's S2", "required"};
    static const char *const what_p[3] = {"the key's blocks", "block_size", "required"};
    static const char *const what_t[2] = {"the key's T2", "required"};
    if (lk == FIA_LAYOUT_TND) {
        const int64_t want[2] = {*S2, 1};
        FIA_TRY(fia_tensor_check_shape(s, "key_dequant_scale", 2, want, what_t));
        p->sk = li_seq(s, 0, s->strides[0], 0);
        return FIA_STATUS_SUCCESS;
    }
    const int64_t want[3] = {k->shape[0], k->shape[1], 1};
    FIA_TRY(fia_tensor_check_shape(s, "key_dequant_scale", 3, want, paged ? what_p : what_b));
    p->sk = li_seq(s, paged ? 0 : s->strides[0], s->strides[1], 0);
    if (paged) p->sk.s_blk = s->strides[0];
    return FIA_STATUS_SUCCESS;
}

/* Query and key lengths (into L), the key's first tokens and the copied block table. */
static fia_status li_parse_lengths(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                                   const fia_lightning_indexer_params *prm, li_lens *L,
                                   int64_t S2, int64_t blocks) {
    const int64_t B = p->B;
    int64_t *buf = malloc((size_t)B * 3 * sizeof *buf);
    p->kv_tok0 = malloc((size_t)B * sizeof *p->kv_tok0);
    if (!buf || !p->kv_tok0) {
        free(buf);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    L->q_len = buf;
    L->kv_len = buf + B;
    L->q_tok0 = buf + 2 * B;
    FIA_TRY(fia_parse_seq_lengths(prm->actual_seq_lengths_query,
                                  prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                  B, p->tnd, p->S1, p->tnd ? "query dim 0 (T1)" : "query dim 1 (S1)",
                                  NULL, L->q_len, L->q_tok0));
    const int64_t *kl = prm->actual_seq_lengths_key;
    const int64_t kc = kl ? prm->actual_seq_lengths_key_count : 0;
    const fia_layout lk = prm->layout_key;
    if (lk == FIA_LAYOUT_PA_BSND) {
        FIA_TRY(fia_check_block_table(t->block_table, B));
        FIA_TRY(fia_parse_seq_lengths(kl, kc, "actual_seq_lengths_key", B, false,
                                      fia_block_table_capacity(t->block_table, p->pages.block_size),
                                      "block_table columns x block_size",
                                      "with a paged key (PA_BSND)", L->kv_len, p->kv_tok0));
    } else {
        const bool ktnd = lk == FIA_LAYOUT_TND;
        FIA_TRY(fia_parse_seq_lengths(kl, kc, "actual_seq_lengths_key", B, ktnd, S2,
                                      ktnd ? "key dim 0 (T2)" : "key dim 1 (S2)", NULL, L->kv_len,
                                      p->kv_tok0));
    }
    for (int64_t b = 0; b < B; b++)
        if (L->kv_len[b] > FIA_MAX_LEN)
            return FIA_INVALID("key length %lld is too long", (long long)L->kv_len[b]);
    if (lk != FIA_LAYOUT_PA_BSND) return FIA_STATUS_SUCCESS;
    int32_t *table = NULL;
    int64_t cols = 0;
    const fia_status st = fia_copy_block_table(t->block_table, B, L->kv_len, p->pages.block_size,
                                               blocks, "key", &table, &cols);
    fia_pages_init(&p->pages, table, cols, p->pages.block_size);
    return st;
}

/* sparse_indices and sparse_values: [B, S1, 1, k] or [T1, 1, k]. */
static fia_status li_parse_outputs(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                                   const fia_lightning_indexer_params *prm) {
    const int64_t want4[4] = {p->B, p->S1, 1, p->K}, want3[3] = {p->S1, 1, p->K};
    static const char *const what4[4] = {"batch", "the query's S1", "required", "sparse_count"};
    static const char *const what3[3] = {"the query's T1", "required", "sparse_count"};
    const fia_tensor *outs[2] = {t->sparse_indices, prm->return_value ? t->sparse_values : NULL};
    static const char *const names[2] = {"sparse_indices", "sparse_values"};
    fia_seq *views[2] = {&p->oi, &p->ov};
    for (int i = 0; i < 2; i++) {
        const fia_tensor *o = outs[i];
        if (!o) continue;
        if (p->tnd) FIA_TRY(fia_tensor_check_shape(o, names[i], 3, want3, what3));
        else FIA_TRY(fia_tensor_check_shape(o, names[i], 4, want4, what4));
        *views[i] = p->tnd ? li_seq(o, 0, o->strides[0], o->strides[2])
                           : li_seq(o, o->strides[0], o->strides[1], o->strides[3]);
    }
    return FIA_STATUS_SUCCESS;
}

static fia_status li_validate(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, li_lens *L) {
    int64_t S2 = 0, blocks = 0;
    FIA_TRY(li_check_tensors(p, t, prm));
    FIA_TRY(li_check_params(p, t, prm));
    FIA_TRY(li_parse_query(p, t, prm));
    FIA_TRY(li_parse_key(p, t, prm->layout_key, &S2, &blocks));
    FIA_TRY(li_parse_lengths(p, t, prm, L, S2, blocks));
    return li_parse_outputs(p, t, prm);
}

/* Quant: every scale that will be read must be >= 0 (and not NaN). */
static fia_status li_check_scales(const fia_li_plan *p) {
    for (int64_t r = 0; r < p->num_rows; r++) {
        const fia_li_row *row = &p->rows[r];
        for (int64_t h = 0; row->vis > 0 && h < p->N1; h++) {
            const float s = fia_load_float(li_at(&p->sq, row->b, row->tok, h), p->sq.dtype);
            if (!(s >= 0.0f))
                return FIA_INVALID("query_dequant_scale at query row %lld, head %lld is %g: "
                                   "scales must be >= 0", (long long)r, (long long)h, (double)s);
        }
    }
    /* the longest visible range per batch */
    for (int64_t r = 0, b = -1, vmax = 0; r <= p->num_rows; r++) {
        const int64_t rb = r < p->num_rows ? p->rows[r].b : -2;
        if (rb != b) {
            for (int64_t j0 = 0; b >= 0 && j0 < vmax; j0 += FIA_LI_KEY_TILE) {
                const void *rows[FIA_LI_KEY_TILE];
                const int64_t n = li_key_rows(p, &p->sk, b, j0, vmax, rows);
                for (int64_t j = 0; j < n; j++) {
                    const float s = fia_load_float(rows[j], p->sk.dtype);
                    if (!(s >= 0.0f))
                        return FIA_INVALID("key_dequant_scale of batch %lld, key token %lld is "
                                           "%g: scales must be >= 0", (long long)b,
                                           (long long)(j0 + j), (double)s);
                }
            }
            b = rb;
            vmax = 0;
        }
        if (r < p->num_rows && p->rows[r].vis > vmax) vmax = p->rows[r].vis;
    }
    return FIA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan: rows, waves, items                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Visible keys of row i of a batch with lengths q_len, kv_len (sparse_mode 0 or 3): the shared
 * visibility rule (sched/kvcache.h), whose range starts at key 0 for both modes. */
static int64_t li_visible(int32_t mode, int64_t i, int64_t q_len, int64_t kv_len) {
    const fia_batch bi = {q_len, kv_len, 0, 0};
    int64_t lo, hi;
    fia_vis_range(mode == 3 ? FIA_VIS_CAUSAL_BOTTOM_RIGHT : FIA_VIS_ALL, 0, 0, &bi, i, &lo, &hi);
    return hi + 1 > lo ? hi + 1 : 0;
}

static fia_status li_make_rows(fia_li_plan *p, const li_lens *L, int32_t mode) {
    const int64_t B = p->B, S1 = p->S1, nrows = p->tnd ? S1 : B * S1;
    p->num_rows = nrows;
    p->rows = calloc((size_t)(nrows ? nrows : 1), sizeof *p->rows);
    if (!p->rows) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    if (p->tnd) {
        int64_t r = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < L->q_len[b]; i++, r++)
                p->rows[r] = (fia_li_row){b, r, li_visible(mode, i, L->q_len[b], L->kv_len[b]), 0};
        for (; r < nrows; r++) p->rows[r] = (fia_li_row){-1, r, 0, 0};
    } else {
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S1; i++)
                p->rows[b * S1 + i] = (fia_li_row){
                    b, i, i < L->q_len[b] ? li_visible(mode, i, L->q_len[b], L->kv_len[b]) : 0, 0};
    }
    p->max_vis = 0;
    for (int64_t r = 0; r < nrows; r++)
        if (p->rows[r].vis > p->max_vis) p->max_vis = p->rows[r].vis;
    return FIA_STATUS_SUCCESS;
}

/* Rows of the block that starts at row r (0: row r sees nothing). */
static int64_t li_block_rows(const fia_li_plan *p, int64_t r) {
    if (r >= p->num_rows || p->rows[r].vis == 0) return 0;
    int64_t n = 1;
    while (n < FIA_LI_BLOCK_ROWS && r + n < p->num_rows && p->rows[r + n].vis > 0 &&
           p->rows[r + n].b == p->rows[r].b)
        n++;
    return n;
}

static int64_t li_score_floats(const fia_li_row *row) { return (row->vis + 15) / 16 * 16; }

/* Blocks -> scoring items (fia_worklist_chunks) grouped into waves: pass 0 counts, pass 1 fills. */
static fia_status li_schedule(fia_li_plan *p) {
    fia_worklist *wl = &p->work;
    for (int pass = 0; pass < 2; pass++) {
        int64_t nw = 0, used = 0, row0 = 0, item0 = 0;
        fia_worklist_begin(wl, pass);
        p->score_floats = 0;
        for (int64_t r = 0; r <= p->num_rows;) {
            const int64_t n = li_block_rows(p, r);
            int64_t need = 0;
            for (int64_t i = 0; i < n; i++) need += li_score_floats(&p->rows[r + i]);
            /* close the wave before a block that does not fit, and at the end */
            if (r == p->num_rows || (n > 0 && used > 0 && used + need > LI_WAVE_FLOATS)) {
                if (pass) p->waves[nw] = (fia_li_wave){row0, r, item0, wl->num_items};
                if (used > p->score_floats) p->score_floats = used;
                nw++;
                row0 = r;
                item0 = wl->num_items;
                used = 0;
                if (r == p->num_rows) break;
            }
            if (n == 0) {
                r++;
                continue;
            }
            for (int64_t i = 0; i < n; i++) {
                if (pass) p->rows[r + i].off = used;
                used += li_score_floats(&p->rows[r + i]);
            }
            fia_worklist_chunks(wl, p->rows[r].b, 0, 1, r, n, 0, p->rows[r + n - 1].vis,
                                FIA_LI_CHUNK, n);
            FIA_TRY(fia_worklist_check(wl));
            r += n;
        }
        FIA_TRY(fia_worklist_end(wl));
        if (!pass) {
            p->num_waves = nw;
            p->waves = malloc((size_t)nw * sizeof *p->waves);
            if (!p->waves) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
        }
    }
    /* most expensive items of a wave first (the pool hands tasks out in index order) */
    for (int64_t w = 0; w < p->num_waves; w++)
        fia_worklist_sort_range(wl, p->waves[w].item0, p->waves[w].item1);
    return FIA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Workspace: one scratch area per thread (fia_thread_scratch), then the scores               */
/* ------------------------------------------------------------------------------------------ */

typedef struct li_scratch {
    int64_t *prepared; /* the first row of the block whose query rows qt / qp hold (-1: none) */
    /* scoring (pass 1) */
    float *qt;      /* float: [BLOCK_ROWS][D][ldq] */
    int8_t *qp;     /* int8:  [BLOCK_ROWS][d4][ldq][4] */
    int32_t *qbias; /* int8:  [BLOCK_ROWS][ldq] */
    float *w;       /* [BLOCK_ROWS][ldq]: weights (int8: weights x query scale) */
    float *kt;      /* float: [KEY_TILE][ldk] */
    float *qrow;    /* float: [N1][D], a query row before its transposition */
    uint8_t *ku;    /* int8:  [KEY_TILE][ldk] */
    float *sk;      /* int8:  [KEY_TILE] */
    uint16_t *qb;   /* bf16:  [BLOCK_ROWS][dpad / 2][ldq][2] */
    void *amx;      /* bf16:  FIA_LI_BF16_SCRATCH(D) */
    /* selection (pass 2), overlaying the scoring scratch */
    void *topk;
    int32_t *idx; /* [K] */
} li_scratch;

/* Carves one thread's scratch from base (NULL: sizing only); returns its bytes. */
static size_t li_scratch_carve(const fia_li_plan *p, char *base, li_scratch *out) {
    fia_arena a = {base, 0};
    const size_t BR = FIA_LI_BLOCK_ROWS, KT = FIA_LI_KEY_TILE;
    li_scratch s;
    memset(&s, 0, sizeof s);
    s.prepared = fia_arena_take(&a, sizeof(int64_t));
    const size_t start = a.used;
    if (p->quant) {
        s.qp = fia_arena_take(&a, BR * (size_t)(p->d4 * p->ldq * 4));
        s.qbias = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(int32_t));
        s.w = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(float));
        s.ku = fia_arena_take(&a, KT * (size_t)p->ldk);
        s.sk = fia_arena_take(&a, KT * sizeof(float));
    } else if (p->bf16) {
        s.qb = fia_arena_take(&a, BR * (size_t)(p->dpad * p->ldq) * sizeof(uint16_t));
        s.w = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(float));
        s.amx = fia_arena_take(&a, FIA_LI_BF16_SCRATCH(p->D));
    } else {
        s.qt = fia_arena_take(&a, BR * (size_t)(p->D * p->ldq) * sizeof(float));
        s.w = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(float));
        s.kt = fia_arena_take(&a, KT * (size_t)p->ldk * sizeof(float));
        s.qrow = fia_arena_take(&a, (size_t)(p->N1 * p->D) * sizeof(float));
    }
    const size_t pass1 = a.used;
    a.used = start;
    s.topk = fia_arena_take(&a, fia_li_topk_scratch_bytes(p->max_vis, p->K));
    s.idx = fia_arena_take(&a, (size_t)p->K * sizeof(int32_t));
    if (a.used < pass1) a.used = pass1;
    if (out) *out = s;
    return a.used;
}

/* Lays out (ws NULL: sizes) the thread areas and the score buffer; returns the bytes used. */
static size_t li_workspace_layout(const fia_li_plan *p, char *ws, float **scores) {
    fia_arena a = {ws, 0};
    fia_arena_take(&a, li_scratch_carve(p, NULL, NULL) * (size_t)p->num_threads);
    float *s = fia_arena_take(&a, (size_t)p->score_floats * sizeof(float));
    if (scores) *scores = s;
    return a.used;
}

/* ------------------------------------------------------------------------------------------ */
/* Execute                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct li_run {
    const fia_li_plan *p;
    const fia_li_wave *wave;
    char *ws;
    size_t per_thread;
    float *scores;
} li_run;

static li_scratch li_scratch_of(const li_run *run, int32_t tid) {
    li_scratch s;
    li_scratch_carve(run->p, fia_thread_scratch(run->ws, run->per_thread, tid), &s);
    return s;
}

/* Prefetches rows[0..n) (bytes each) into L2: the hardware prefetcher loses the stream at every
 * block of a paged cache. */
static inline void li_prefetch_rows(const void *const *rows, int64_t n, int64_t bytes) {
    for (int64_t j = 0; j < n; j++)
        for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch((const char *)rows[j] + o, 0, 2);
}

/* Float: the block's query rows, heads transposed to fp32 [D][ldq], zero pad columns. */
static void li_prepare_f32(const fia_li_plan *p, const fia_work_item *it, li_scratch *s) {
    const fia_li_row *rows = p->rows + it->q0;
    const int64_t D = p->D, ldq = p->ldq, N1 = p->N1;
    void (*cvt)(const uint16_t *, float *, int64_t) =
        p->q.dtype == FIA_DTYPE_BFLOAT16 ? p->kern->bf16_to_f32 : p->kern->f16_to_f32;
    for (int64_t r = 0; r < it->qn; r++) {
        float *qt = s->qt + r * D * ldq, *w = s->w + r * ldq;
        for (int64_t h = 0; h < N1; h++) {
            cvt((const uint16_t *)li_at(&p->q, it->b, rows[r].tok, h), s->qrow + h * D, D);
            w[h] = fia_load_float(li_at(&p->w, it->b, rows[r].tok, h), p->w.dtype);
        }
        p->kern->transpose_f32(s->qrow, D, qt, ldq, N1, D);
        for (int64_t h = N1; h < ldq; h++) {
            for (int64_t c = 0; c < D; c++) qt[c * ldq + h] = 0.0f;
            w[h] = 0.0f;
        }
    }
}

/* bf16 (AMX): the block's query rows in the pair layout [dpad / 2][ldq][2], zero padded. */
static void li_prepare_bf16(const fia_li_plan *p, const fia_work_item *it, li_scratch *s) {
    const fia_li_row *rows = p->rows + it->q0;
    const int64_t D = p->D, ldq = p->ldq;
    for (int64_t r = 0; r < it->qn; r++) {
        uint16_t *qb = s->qb + r * p->dpad * ldq;
        float *w = s->w + r * ldq;
        memset(qb, 0, (size_t)(p->dpad * ldq) * sizeof *qb);
        for (int64_t h = 0; h < ldq; h++) w[h] = 0.0f;
        for (int64_t h = 0; h < p->N1; h++) {
            const char *q = li_at(&p->q, it->b, rows[r].tok, h);
            for (int64_t c = 0; c < D; c++) memcpy(qb + ((c / 2) * ldq + h) * 2 + c % 2, q + 2 * c, 2);
            w[h] = fia_load_float(li_at(&p->w, it->b, rows[r].tok, h), p->w.dtype);
        }
    }
}

/* Int8: the block's query rows packed [d4][ldq][4] with their bias and head factors. */
static void li_prepare_i8(const fia_li_plan *p, const fia_work_item *it, li_scratch *s) {
    const fia_li_row *rows = p->rows + it->q0;
    const int64_t D = p->D, d4 = p->d4, ldq = p->ldq, N1 = p->N1, b = it->b;
    for (int64_t r = 0; r < it->qn; r++) {
        int8_t *qp = s->qp + r * d4 * ldq * 4;
        int32_t *qb = s->qbias + r * ldq;
        float *w = s->w + r * ldq;
        memset(qp, 0, (size_t)(d4 * ldq * 4));
        for (int64_t h = 0; h < ldq; h++) {
            qb[h] = 0;
            w[h] = 0.0f;
        }
        for (int64_t h = 0; h < N1; h++) {
            const int8_t *qh = (const int8_t *)li_at(&p->q, b, rows[r].tok, h);
            int32_t sum = 0;
            for (int64_t c = 0; c < D; c++) {
                qp[((c / 4) * ldq + h) * 4 + c % 4] = qh[c];
                sum += qh[c];
            }
            qb[h] = 128 * sum; /* the uint8 re-bias of the keys (li_kernels.h) */
            w[h] = fia_load_float(li_at(&p->w, b, rows[r].tok, h), p->w.dtype) *
                   fia_load_float(li_at(&p->sq, b, rows[r].tok, h), p->sq.dtype);
            /* the contract's first rounding point: w * sq cast to fp16; the fp16 path scores
             * at the golden's scale (dot / 1024), and 1024 w~ (exact: a power of two) restores
             * the formula's scale */
            if (!p->exact) w[h] = 1024.0f * fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(w[h]));
        }
    }
}

/* sk[j] = the key scales of the rows at rows[0..n), as fp32. */
static void li_load_scales(const fia_li_plan *p, const void *const *rows, int64_t n, float *sk) {
    if (p->sk.dtype == FIA_DTYPE_FLOAT16) {
        for (int64_t j = 0; j < n; j++) {
            uint16_t h;
            memcpy(&h, rows[j], 2);
            sk[j] = fia_cvt_f16_to_f32(h);
        }
    } else {
        for (int64_t j = 0; j < n; j++) sk[j] = fia_load_float(rows[j], p->sk.dtype);
    }
}

/* The tile of keys [j0, j0 + n) at rows, in the form the path's kernel reads: fp32 rows, or
 * uint8 rows with their scales (bf16 reads the rows in place). */
static void li_convert_tile(const fia_li_plan *p, li_scratch *s, int64_t b, int64_t j0,
                            int64_t kv1, int64_t n, const void *const *rows) {
    if (p->quant) {
        const void *scp[FIA_LI_KEY_TILE];
        p->lik->keys_to_u8(n, p->D, p->d4, rows, s->ku, p->ldk);
        li_key_rows(p, &p->sk, b, j0, kv1, scp);
        li_load_scales(p, scp, n, s->sk);
    } else if (!p->bf16) {
        p->lik->keys_to_f32(n, p->D, rows, p->k.dtype, s->kt, p->ldk);
    }
}

/* Scores of row r of the block (prepared) for the first m keys of the converted tile. */
static void li_score_row(const fia_li_plan *p, const li_scratch *s, int64_t r, int64_t m,
                         const void *const *rows, float *out) {
    const int64_t D = p->D, ldq = p->ldq, N1 = p->N1;
    if (p->quant)
        p->lik->score_i8(m, p->d4, N1, s->ku, p->ldk, s->qp + r * p->d4 * ldq * 4, ldq,
                         s->qbias + r * ldq, s->w + r * ldq, s->sk, !p->exact, out);
    else if (p->bf16)
        p->lik->score_bf16(m, D, N1, rows, s->qb + r * p->dpad * ldq, ldq, s->w + r * ldq, out,
                           s->amx);
    else
        p->lik->score_f32(m, D, N1, s->kt, p->ldk, s->qt + r * D * ldq, ldq, s->w + r * ldq, out);
}

/* Pass 1: one (block, key chunk) item. The block's query rows are prepared unless this thread's
 * last item did; tiles of keys are converted once and scored against every row of the block,
 * each row's causal bound applied by shortening its tile, the next tile's rows prefetched. */
static void li_score_item(const fia_li_plan *p, const fia_work_item *it, float *scores,
                          li_scratch *s) {
    const fia_li_row *rows = p->rows + it->q0;
    const int64_t b = it->b, row_bytes = p->k.esize * p->D;
    if (*s->prepared != it->q0) {
        if (p->quant) li_prepare_i8(p, it, s);
        else if (p->bf16) li_prepare_bf16(p, it, s);
        else li_prepare_f32(p, it, s);
    }
    *s->prepared = it->q0;
    const void *rowp[2][FIA_LI_KEY_TILE];
    int cur = 0;
    int64_t n = li_key_rows(p, &p->k, b, it->kv0, it->kv1, rowp[0]);
    for (int64_t j0 = it->kv0; j0 < it->kv1; cur ^= 1) {
        li_convert_tile(p, s, b, j0, it->kv1, n, rowp[cur]);
        const int64_t next = li_key_rows(p, &p->k, b, j0 + n, it->kv1, rowp[cur ^ 1]);
        li_prefetch_rows(rowp[cur ^ 1], next, row_bytes);
        for (int64_t r = 0; r < it->qn; r++) {
            const int64_t end = rows[r].vis < j0 + n ? rows[r].vis : j0 + n;
            if (end > j0) li_score_row(p, s, r, end - j0, rowp[cur], scores + rows[r].off + j0);
        }
        j0 += n;
        n = next;
    }
}

static void li_score_task(void *arg, int64_t task, int32_t tid) {
    const li_run *run = arg;
    const fia_li_plan *p = run->p;
    li_scratch s = li_scratch_of(run, tid);
    const fia_work_item *it = &p->work.items[run->wave->item0 + task];
    li_score_item(p, it, run->scores, &s);
}

/* sparse_values slot i of a row at ov: fp32, or rounded to fp16 / bf16 (nearest even). */
static inline void li_store_value(const fia_li_plan *p, char *ov, int64_t i, float v) {
    char *dst = ov + i * p->ov.s_h * p->ov.esize;
    if (p->ov.dtype == FIA_DTYPE_FLOAT32) {
        memcpy(dst, &v, sizeof v);
    } else {
        const uint16_t h = p->ov.dtype == FIA_DTYPE_FLOAT16 ? fia_cvt_f32_to_f16(v)
                                                             : fia_cvt_f32_to_bf16(v);
        memcpy(dst, &h, sizeof h);
    }
}

/* Pass 2: one output row. */
static void li_select_task(void *arg, int64_t task, int32_t tid) {
    const li_run *run = arg;
    const fia_li_plan *p = run->p;
    const fia_li_row *row = &p->rows[run->wave->row0 + task];
    const int64_t b = row->b < 0 ? 0 : row->b;
    int32_t *oi = (int32_t *)li_at(&p->oi, b, row->tok, 0);
    char *ov = p->ov.base ? li_at(&p->ov, b, row->tok, 0) : NULL;
    int64_t cnt = 0;
    const float *sc = run->scores + row->off;
    if (row->vis > 0) {
        const li_scratch s = li_scratch_of(run, tid);
        cnt = fia_li_topk(sc, row->vis, p->K, s.idx, s.topk);
        for (int64_t i = 0; i < cnt; i++) oi[i * p->oi.s_h] = s.idx[i];
        if (ov)
            for (int64_t i = 0; i < cnt; i++) li_store_value(p, ov, i, sc[s.idx[i]]);
    }
    for (int64_t i = cnt; i < p->K; i++) oi[i * p->oi.s_h] = -1;
    if (ov)
        for (int64_t i = cnt; i < p->K; i++) li_store_value(p, ov, i, -INFINITY);
}

static void li_execute(fia_plan *plan, void *workspace) {
    const fia_li_plan *p = (const fia_li_plan *)plan;
    li_run run = {p, NULL, workspace, li_scratch_carve(p, NULL, NULL), NULL};
    li_workspace_layout(p, workspace, &run.scores);
    for (int64_t w = 0; w < p->num_waves; w++) {
        run.wave = &p->waves[w];
        for (int32_t t = 0; t < p->num_threads; t++) *li_scratch_of(&run, t).prepared = -1;
        if (run.wave->item1 > run.wave->item0)
            fia_pool_run(plan->ctx->pool, run.wave->item1 - run.wave->item0, li_score_task, &run);
        if (run.wave->row1 > run.wave->row0)
            fia_pool_run(plan->ctx->pool, run.wave->row1 - run.wave->row0, li_select_task, &run);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                               */
/* ------------------------------------------------------------------------------------------ */

static void li_destroy(fia_plan *plan) {
    fia_li_plan *p = (fia_li_plan *)plan;
    free((void *)p->pages.table);
    free(p->kv_tok0);
    free(p->rows);
    free(p->waves);
    fia_worklist_free(&p->work);
    free(p);
}

static fia_status li_plan(fia_context *ctx, const fia_lightning_indexer_tensors *t,
                          const fia_lightning_indexer_params *prm, fia_plan **plan,
                          size_t *workspace_bytes, bool quant) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_lightning_indexer_params prm_v;
    fia_lightning_indexer_params_init(&prm_v);
    FIA_TRY(fia_params_import(&prm_v, sizeof prm_v, prm, sizeof prm_v,
                              "fia_lightning_indexer_params_init"));
    prm = &prm_v;
    fia_li_plan *p = calloc(1, sizeof *p);
    if (!p) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    p->base.ctx = ctx;
    p->base.execute = li_execute;
    p->base.destroy = li_destroy;
    p->kern = &ctx->kernels.core;
    p->lik = &ctx->kernels.li;
    p->quant = quant;
    p->exact = prm->exact_ranking != 0;
    p->num_threads = ctx->num_threads;
    li_lens L = {NULL, NULL, NULL};
    fia_status st = li_validate(p, t, prm, &L);
    if (st == FIA_STATUS_SUCCESS) {
        p->ldq = (p->N1 + FIA_LI_HEAD_PAD - 1) / FIA_LI_HEAD_PAD * FIA_LI_HEAD_PAD;
        p->d4 = (p->D + 3) / 4;
        p->ldk = quant ? (4 * p->d4 + 63) / 64 * 64 : (p->D + 15) / 16 * 16;
        if (quant && p->ldk < p->D) p->ldk = p->D;
        p->dpad = (p->D + 31) / 32 * 32;
        p->bf16 = !quant && p->q.dtype == FIA_DTYPE_BFLOAT16 && p->lik->score_bf16 != NULL;
        p->base.unit = p->bf16                                         ? "amx_bf16"
                       : quant && (p->lik->features & FIA_CPU_AMX_INT8)   ? "amx_int8"
                       : quant && (p->lik->features & FIA_CPU_AVX512VNNI) ? "vnni"
                                                                          : "fma";
        st = li_make_rows(p, &L, prm->sparse_mode);
    }
    if (st == FIA_STATUS_SUCCESS) st = li_schedule(p);
    if (st == FIA_STATUS_SUCCESS && quant) st = li_check_scales(p);
    free(L.q_len);
    if (st != FIA_STATUS_SUCCESS) {
        li_destroy(&p->base);
        return st;
    }
    p->base.workspace_bytes = li_workspace_layout(p, NULL, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: %s: B=%lld N1=%lld D=%lld k=%lld rows=%lld items=%lld waves=%lld "
                "workspace=%zu kernels=%s\n",
                quant ? "quant_lightning_indexer" : "lightning_indexer", (long long)p->B,
                (long long)p->N1, (long long)p->D, (long long)p->K, (long long)p->num_rows,
                (long long)p->work.num_items, (long long)p->num_waves, p->base.workspace_bytes,
                p->lik->name);
    *plan = &p->base;
    if (workspace_bytes) *workspace_bytes = p->base.workspace_bytes;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_lightning_indexer_plan(fia_context *ctx, const fia_lightning_indexer_tensors *t,
                                      const fia_lightning_indexer_params *prm, fia_plan **plan,
                                      size_t *workspace_bytes) {
    return li_plan(ctx, t, prm, plan, workspace_bytes, false);
}

fia_status fia_lightning_indexer(fia_context *ctx, const fia_lightning_indexer_tensors *t,
                                 const fia_lightning_indexer_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_lightning_indexer_plan, ctx, t, prm);
}

fia_status fia_quant_lightning_indexer_plan(fia_context *ctx,
                                            const fia_lightning_indexer_tensors *t,
                                            const fia_lightning_indexer_params *prm,
                                            fia_plan **plan, size_t *workspace_bytes) {
    return li_plan(ctx, t, prm, plan, workspace_bytes, true);
}

fia_status fia_quant_lightning_indexer(fia_context *ctx, const fia_lightning_indexer_tensors *t,
                                       const fia_lightning_indexer_params *prm) {
    FIA_PLAN_RUN_ONCE(fia_quant_lightning_indexer_plan, ctx, t, prm);
}
