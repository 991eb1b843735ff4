/*
 * lightning_indexer.c - lightning_indexer and quant_lightning_indexer: validation, plan and
 * execution (the top-k selection is in li_topk.c, the decomposition in li_internal.h).
 *
 * validate: tensors, layouts, dtypes, lengths, block ids and (quant) the signs of the scales
 *           that will be read, in that order; the first violation is reported.
 * plan:     rows -> blocks -> waves with their scoring items, and the workspace layout.
 * execute:  per wave, pool pass 1 scores (block, key chunk) items: the block's query rows are
 *           prepared once per item (fp32 transposed heads, or packed int8 heads with their bias),
 *           then key tiles of FIA_LI_KEY_TILE tokens are converted once (fp32 rows, or uint8
 *           rows re-biased by 128) and scored against every row of the block by the ISA kernel
 *           (src/kernels/li_kernels.h), with each row's causal bound applied by shortening its
 *           tile; pass 2 selects each row's top k and writes the output row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/convert.h"
#include "core/status.h"
#include "core/params.h"
#include "core/tensor.h"
#include "sched/kv_addr.h"
#include "ops/li_internal.h"
#include "ops/validate.h"

enum {
    LI_WAVE_FLOATS = 4 << 20 /* 16 MiB of scores per wave (at least one block) */
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
/* Validation helpers                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* Requires the shape of t to be want[0..ndim) (what[i] names dim i). */
static fia_status li_check_shape(const fia_tensor *t, const char *name, int32_t ndim,
                                 const int64_t *want, const char *const *what) {
    if (t->ndim != ndim)
        return FIA_INVALID("%s has %d dims, expected %d", name, (int)t->ndim, (int)ndim);
    for (int32_t i = 0; i < ndim; i++)
        if (t->shape[i] != want[i])
            return FIA_INVALID("%s dim %d is %lld, %s is %lld", name, (int)i,
                               (long long)t->shape[i], what[i], (long long)want[i]);
    return FIA_STATUS_SUCCESS;
}

static fia_li_view li_view(const fia_tensor *t) {
    fia_li_view v;
    memset(&v, 0, sizeof v);
    v.base = fia_tensor_ptr(t);
    v.dtype = t->dtype;
    v.esize = (int64_t)fia_dtype_size(t->dtype);
    return v;
}

static void li_destroy(fia_plan *plan) {
    fia_li_plan *p = (fia_li_plan *)plan;
    free(p->block_table);
    free(p->kv_tok0);
    free(p->rows);
    free(p->blocks);
    free(p->items);
    free(p->waves);
    free(p);
}

/* Address of key-side element row j of batch b (key or key scale view). */
static inline const char *li_key_row(const fia_li_plan *p, const fia_li_view *v, int64_t b,
                                     int64_t j) {
    if (p->paged) {
        /* the paged addressing shared by every cache reader and writer (sched/kv_addr.h) */
        const fia_kv_slot s = fia_kv_locate(p->block_table, p->bt_cols, p->block_size, -1, b, j);
        const fia_kv_view kv = {v->s_blk, v->s_t, 0, 0, 0};
        return v->base + fia_kv_row_off(&kv, s, 0) * v->esize;
    }
    return v->base + (b * v->s_b + (p->kv_tok0[b] + j) * v->s_t) * v->esize;
}

/* Address of (b, token t, head h) of a query-side view. */
static inline const char *li_query_elem(const fia_li_view *v, int64_t b, int64_t t, int64_t h) {
    return v->base + (b * v->s_b + t * v->s_t + h * v->s_h) * v->esize;
}

/* ------------------------------------------------------------------------------------------ */
/* Validation                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct li_lens {
    int64_t *sq, *skv, *q_tok0; /* [B] each */
} li_lens;

static fia_status li_validate(fia_li_plan *p, const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, li_lens *L) {
    const bool quant = p->quant;
    const char *op = quant ? "quant_lightning_indexer" : "lightning_indexer";
    if (!t->query) return FIA_INVALID("query is NULL");
    if (!t->key) return FIA_INVALID("key is NULL");
    if (!t->weights) return FIA_INVALID("weights is NULL");
    if (!t->sparse_indices) return FIA_INVALID("sparse_indices is NULL");
    if (quant) {
        if (!t->query_dequant_scale) return FIA_INVALID("query_dequant_scale is NULL");
        if (!t->key_dequant_scale) return FIA_INVALID("key_dequant_scale is NULL");
    } else if (t->query_dequant_scale || t->key_dequant_scale) {
        return FIA_INVALID("query/key_dequant_scale given to lightning_indexer (they belong to "
                           "quant_lightning_indexer)");
    }
    if (prm->return_value && !t->sparse_values)
        return FIA_INVALID("sparse_values is NULL but return_value is set");
    FIA_TRY(fia_tensor_check(t->query, "query", true));
    FIA_TRY(fia_tensor_check(t->key, "key", true));
    FIA_TRY(fia_tensor_check(t->weights, "weights", false));
    FIA_TRY(fia_tensor_check(t->sparse_indices, "sparse_indices", false));
    if (prm->return_value) FIA_TRY(fia_tensor_check(t->sparse_values, "sparse_values", false));
    if (quant) {
        FIA_TRY(fia_tensor_check(t->query_dequant_scale, "query_dequant_scale", false));
        FIA_TRY(fia_tensor_check(t->key_dequant_scale, "key_dequant_scale", false));
    }
    if (t->block_table) FIA_TRY(fia_tensor_check(t->block_table, "block_table", false));

    /* dtypes */
    const fia_dtype qt = t->query->dtype, kt = t->key->dtype, wt = t->weights->dtype;
    if (quant) {
        if (qt != FIA_DTYPE_INT8)
            return FIA_INVALID("query dtype is %s, must be int8", fia_dtype_name(qt));
        if (kt != FIA_DTYPE_INT8)
            return FIA_INVALID("key dtype is %s, must be int8", fia_dtype_name(kt));
        if (!fia_dtype_is_float(wt))
            return FIA_INVALID("weights dtype is %s, must be float16 (or bfloat16, float32)",
                               fia_dtype_name(wt));
        if (!fia_dtype_is_float(t->query_dequant_scale->dtype))
            return FIA_INVALID("query_dequant_scale dtype is %s, must be a float dtype",
                               fia_dtype_name(t->query_dequant_scale->dtype));
        if (!fia_dtype_is_float(t->key_dequant_scale->dtype))
            return FIA_INVALID("key_dequant_scale dtype is %s, must be a float dtype",
                               fia_dtype_name(t->key_dequant_scale->dtype));
        if (prm->query_quant_mode != 0)
            return FIA_INVALID("query_quant_mode is %d, must be 0", (int)prm->query_quant_mode);
        if (prm->key_quant_mode != 0)
            return FIA_INVALID("key_quant_mode is %d, must be 0", (int)prm->key_quant_mode);
    } else {
        if (qt != FIA_DTYPE_FLOAT16 && qt != FIA_DTYPE_BFLOAT16)
            return FIA_INVALID("query dtype is %s, must be float16 or bfloat16",
                               fia_dtype_name(qt));
        if (kt != qt)
            return FIA_INVALID("key dtype is %s, query is %s", fia_dtype_name(kt),
                               fia_dtype_name(qt));
        if (wt != qt && wt != FIA_DTYPE_FLOAT32)
            return FIA_INVALID("weights dtype is %s, must be %s (the query's) or float32",
                               fia_dtype_name(wt), fia_dtype_name(qt));
    }
    if (t->sparse_indices->dtype != FIA_DTYPE_INT32)
        return FIA_INVALID("sparse_indices dtype is %s, must be int32",
                           fia_dtype_name(t->sparse_indices->dtype));
    if (prm->return_value && t->sparse_values->dtype != FIA_DTYPE_FLOAT32 &&
        t->sparse_values->dtype != FIA_DTYPE_FLOAT16 &&
        t->sparse_values->dtype != FIA_DTYPE_BFLOAT16)
        return FIA_INVALID("sparse_values dtype is %s, must be float32, float16 or bfloat16",
                           fia_dtype_name(t->sparse_values->dtype));
    if (prm->exact_ranking != 0 && prm->exact_ranking != 1)
        return FIA_INVALID("exact_ranking is %d, must be 0 or 1", (int)prm->exact_ranking);

    /* parameters */
    if (prm->sparse_count < 1 || prm->sparse_count > FIA_MAX_TOPK)
        return FIA_INVALID("sparse_count is %lld, must be 1..%d", (long long)prm->sparse_count,
                           FIA_MAX_TOPK);
    if (prm->sparse_mode != 0 && prm->sparse_mode != 3)
        return FIA_INVALID("sparse_mode is %d, must be 0 or 3", (int)prm->sparse_mode);
    if (prm->pre_tokens != INT64_MAX || prm->next_tokens != INT64_MAX)
        return FIA_INVALID("pre_tokens / next_tokens are %lld / %lld: %s accepts only the "
                           "default 2^63-1", (long long)prm->pre_tokens,
                           (long long)prm->next_tokens, op);
    const fia_layout lq = prm->layout_query, lk = prm->layout_key;
    if (lq != FIA_LAYOUT_BSND && lq != FIA_LAYOUT_TND)
        return FIA_INVALID("layout_query is %s, must be BSND or TND", fia_layout_name(lq));
    if (lk != FIA_LAYOUT_BSND && lk != FIA_LAYOUT_TND && lk != FIA_LAYOUT_PA_BSND)
        return FIA_INVALID("layout_key is %s, must be BSND, TND or PA_BSND", fia_layout_name(lk));
    p->paged = lk == FIA_LAYOUT_PA_BSND;
    if (p->paged && !t->block_table)
        return FIA_INVALID("block_table is required with layout_key PA_BSND");
    if (!p->paged && t->block_table)
        return FIA_INVALID("block_table given but layout_key is %s, not PA_BSND",
                           fia_layout_name(lk));
    p->K = prm->sparse_count;

    /* query: heads, head dim, batch */
    const fia_tensor *q = t->query;
    const bool qtnd = lq == FIA_LAYOUT_TND;
    if (q->ndim != (qtnd ? 3 : 4))
        return FIA_INVALID("query has %d dims, layout %s needs %d", (int)q->ndim,
                           fia_layout_name(lq), qtnd ? 3 : 4);
    const int64_t N1 = q->shape[q->ndim - 2], D = q->shape[q->ndim - 1];
    const int64_t S1 = qtnd ? q->shape[0] : q->shape[1];
    if (N1 < 1 || N1 > FIA_LI_MAX_HEADS)
        return FIA_INVALID("query dim %d (heads) is %lld, must be 1..%d", (int)q->ndim - 2,
                           (long long)N1, FIA_LI_MAX_HEADS);
    if (D < 1 || D > FIA_MAX_LI_HEAD_DIM)
        return FIA_INVALID("query dim %d (head dim) is %lld, must be 1..%d", (int)q->ndim - 1,
                           (long long)D, FIA_MAX_LI_HEAD_DIM);
    int64_t B;
    FIA_TRY(fia_parse_batch_count(qtnd, prm->actual_seq_lengths_query,
                                  prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                  "layout_query TND", q->shape[0], FIA_MAX_BATCH, &B));
    p->B = B;
    p->N1 = N1;
    p->D = D;
    p->q = li_view(q);
    p->q.s_b = qtnd ? 0 : q->strides[0];
    p->q.s_t = qtnd ? q->strides[0] : q->strides[1];
    p->q.s_h = q->strides[q->ndim - 2];
    const int64_t rows_total = qtnd ? S1 : B * S1;
    if (rows_total > LI_MAX_ROWS)
        return FIA_UNSUPPORTED("%lld query rows, at most %lld are supported",
                               (long long)rows_total, (long long)LI_MAX_ROWS);

    /* weights (and the query scale): [B, S1, N1] or [T1, N1] */
    {
        const int64_t want[3] = {B, S1, N1}, want_t[2] = {S1, N1};
        static const char *const what[3] = {"batch", "the query's S1", "heads"};
        static const char *const what_t[2] = {"the query's T1", "heads"};
        const fia_tensor *ws[2] = {t->weights, quant ? t->query_dequant_scale : NULL};
        static const char *const names[2] = {"weights", "query_dequant_scale"};
        fia_li_view *views[2] = {&p->w, &p->sq};
        for (int i = 0; i < 2; i++) {
            if (!ws[i]) continue;
            if (qtnd) FIA_TRY(li_check_shape(ws[i], names[i], 2, want_t, what_t));
            else FIA_TRY(li_check_shape(ws[i], names[i], 3, want, what));
            *views[i] = li_view(ws[i]);
            views[i]->s_b = qtnd ? 0 : ws[i]->strides[0];
            views[i]->s_t = qtnd ? ws[i]->strides[0] : ws[i]->strides[1];
            views[i]->s_h = ws[i]->strides[qtnd ? 1 : 2];
        }
    }

    /* key */
    const fia_tensor *k = t->key;
    int64_t S2 = 0, blocks = 0;
    p->k = li_view(k);
    if (lk == FIA_LAYOUT_TND) {
        if (k->ndim != 3)
            return FIA_INVALID("key has %d dims, layout TND needs 3 ([T2, 1, D])", (int)k->ndim);
        S2 = k->shape[0];
        p->k.s_t = k->strides[0];
    } else {
        if (k->ndim != 4)
            return FIA_INVALID("key has %d dims, layout %s needs 4", (int)k->ndim,
                               fia_layout_name(lk));
        if (p->paged) {
            blocks = k->shape[0];
            p->block_size = k->shape[1];
            if (p->block_size < 1 || p->block_size > FIA_MAX_BLOCK_SIZE)
                return FIA_INVALID("key dim 1 (block_size) is %lld, must be 1..%d",
                                   (long long)p->block_size, FIA_MAX_BLOCK_SIZE);
            p->k.s_blk = k->strides[0];
        } else {
            if (k->shape[0] != B)
                return FIA_INVALID("key dim 0 (batch) is %lld, query has %lld",
                                   (long long)k->shape[0], (long long)B);
            S2 = k->shape[1];
            p->k.s_b = k->strides[0];
        }
        p->k.s_t = k->strides[1];
    }
    if (k->shape[k->ndim - 2] != 1)
        return FIA_INVALID("key dim %d (heads) is %lld, must be 1 (one key head)",
                           (int)k->ndim - 2, (long long)k->shape[k->ndim - 2]);
    if (k->shape[k->ndim - 1] != D)
        return FIA_INVALID("key dim %d (head dim) is %lld, query has %lld", (int)k->ndim - 1,
                           (long long)k->shape[k->ndim - 1], (long long)D);

    /* key scale: the key's shape without the head dim */
    if (quant) {
        const fia_tensor *s = t->key_dequant_scale;
        int64_t want[3];
        static const char *const what_b[3] = {"the key's batch", "the key's S2", "required"};
        static const char *const what_p[3] = {"the key's blocks", "block_size", "required"};
        static const char *const what_t[2] = {"the key's T2", "required"};
        p->sk = li_view(s);
        if (lk == FIA_LAYOUT_TND) {
            want[0] = S2;
            want[1] = 1;
            FIA_TRY(li_check_shape(s, "key_dequant_scale", 2, want, what_t));
            p->sk.s_t = s->strides[0];
        } else {
            want[0] = k->shape[0];
            want[1] = k->shape[1];
            want[2] = 1;
            FIA_TRY(li_check_shape(s, "key_dequant_scale", 3, want, p->paged ? what_p : what_b));
            if (p->paged) p->sk.s_blk = s->strides[0];
            else p->sk.s_b = s->strides[0];
            p->sk.s_t = s->strides[1];
        }
    }

    /* lengths */
    int64_t *buf = malloc((size_t)B * 3 * sizeof *buf);
    p->kv_tok0 = malloc((size_t)B * sizeof *p->kv_tok0);
    if (!buf || !p->kv_tok0) {
        free(buf);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    L->sq = buf;
    L->skv = buf + B;
    L->q_tok0 = buf + 2 * B;
    FIA_TRY(fia_parse_seq_lengths(prm->actual_seq_lengths_query,
                                  prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                  B, qtnd, S1, qtnd ? "query dim 0 (T1)" : "query dim 1 (S1)",
                                  NULL, L->sq, L->q_tok0));
    const int64_t *kl = prm->actual_seq_lengths_key;
    const int64_t kc = kl ? prm->actual_seq_lengths_key_count : 0;
    if (p->paged) {
        FIA_TRY(fia_check_block_table(t->block_table, B));
        FIA_TRY(fia_parse_seq_lengths(kl, kc, "actual_seq_lengths_key", B, false,
                                      fia_block_table_capacity(t->block_table, p->block_size),
                                      "block_table columns x block_size",
                                      "with a paged key (PA_BSND)", L->skv, p->kv_tok0));
    } else {
        const bool ktnd = lk == FIA_LAYOUT_TND;
        FIA_TRY(fia_parse_seq_lengths(kl, kc, "actual_seq_lengths_key", B, ktnd, S2,
                                      ktnd ? "key dim 0 (T2)" : "key dim 1 (S2)", NULL, L->skv,
                                      p->kv_tok0));
    }
    for (int64_t b = 0; b < B; b++)
        if (L->skv[b] > FIA_MAX_LEN)
            return FIA_INVALID("key length %lld is too long", (long long)L->skv[b]);

    /* block table: validated and copied */
    if (p->paged)
        FIA_TRY(fia_copy_block_table(t->block_table, B, L->skv, p->block_size, blocks, "key",
                                     &p->block_table, &p->bt_cols));

    /* outputs: [B, S1, 1, k] or [T1, 1, k] */
    {
        const int64_t want4[4] = {B, S1, 1, p->K}, want3[3] = {S1, 1, p->K};
        static const char *const what4[4] = {"batch", "the query's S1", "required",
                                             "sparse_count"};
        static const char *const what3[3] = {"the query's T1", "required", "sparse_count"};
        fia_tensor *outs[2] = {t->sparse_indices, prm->return_value ? t->sparse_values : NULL};
        static const char *const names[2] = {"sparse_indices", "sparse_values"};
        for (int i = 0; i < 2; i++) {
            const fia_tensor *o = outs[i];
            if (!o) continue;
            if (qtnd) FIA_TRY(li_check_shape(o, names[i], 3, want3, what3));
            else FIA_TRY(li_check_shape(o, names[i], 4, want4, what4));
        }
        const fia_tensor *oi = t->sparse_indices;
        p->out_idx = fia_tensor_ptr(oi);
        p->oi_s_b = qtnd ? 0 : oi->strides[0];
        p->oi_s_t = qtnd ? oi->strides[0] : oi->strides[1];
        p->oi_s_k = oi->strides[oi->ndim - 1];
        if (prm->return_value) {
            const fia_tensor *ov = t->sparse_values;
            p->out_val = fia_tensor_ptr(ov);
            p->ov_dtype = ov->dtype;
            p->ov_s_b = qtnd ? 0 : ov->strides[0];
            p->ov_s_t = qtnd ? ov->strides[0] : ov->strides[1];
            p->ov_s_k = ov->strides[ov->ndim - 1];
        }
    }
    p->S1 = S1;
    p->tnd = qtnd;
    return FIA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan: rows, blocks, waves, items                                                           */
/* ------------------------------------------------------------------------------------------ */

/* Visible keys of row i of a batch with lengths sq, skv. */
static int64_t li_visible(int32_t mode, int64_t i, int64_t sq, int64_t skv) {
    if (mode == 0) return skv;
    const int64_t v = skv - sq + i + 1;
    return v < 0 ? 0 : v > skv ? skv : v;
}

static int li_item_cmp(const void *a, const void *b) {
    const fia_li_item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    if (x->block != y->block) return x->block < y->block ? -1 : 1;
    return x->kv0 < y->kv0 ? -1 : x->kv0 > y->kv0;
}

static fia_status li_schedule(fia_li_plan *p, const li_lens *L, int32_t mode) {
    const int64_t B = p->B, S1 = p->S1;
    const int64_t nrows = p->tnd ? S1 : B * S1;
    p->num_rows = nrows;
    p->rows = calloc((size_t)(nrows ? nrows : 1), sizeof *p->rows);
    if (!p->rows) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    if (p->tnd) {
        int64_t r = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < L->sq[b]; i++, r++)
                p->rows[r] = (fia_li_row){b, r, li_visible(mode, i, L->sq[b], L->skv[b]), 0};
        for (; r < nrows; r++) p->rows[r] = (fia_li_row){-1, r, 0, 0};
    } else {
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < S1; i++)
                p->rows[b * S1 + i] = (fia_li_row){
                    b, i, i < L->sq[b] ? li_visible(mode, i, L->sq[b], L->skv[b]) : 0, 0};
    }
    /* blocks */
    p->blocks = malloc((size_t)(nrows ? nrows : 1) * sizeof *p->blocks);
    if (!p->blocks) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    int64_t nb = 0;
    p->max_vis = 0;
    for (int64_t r = 0; r < nrows;) {
        const fia_li_row *row = &p->rows[r];
        if (row->vis > p->max_vis) p->max_vis = row->vis;
        if (row->vis == 0) {
            r++;
            continue;
        }
        int64_t n = 1;
        while (n < FIA_LI_BLOCK_ROWS && r + n < nrows && p->rows[r + n].vis > 0 &&
               p->rows[r + n].b == row->b) {
            if (p->rows[r + n].vis > p->max_vis) p->max_vis = p->rows[r + n].vis;
            n++;
        }
        p->blocks[nb++] = (fia_li_block){r, n};
        r += n;
    }
    p->num_blocks = nb;
    /* waves (pass 0 counts items and waves, pass 1 fills) */
    const int64_t budget = LI_WAVE_FLOATS;
    for (int pass = 0; pass < 2; pass++) {
        int64_t nw = 0, ni = 0, used = 0, wave_row0 = 0, wave_item0 = 0, bi = 0;
        p->score_floats = 0;
        for (int64_t r = 0; r <= nrows; r++) {
            const bool block_start = bi < nb && p->blocks[bi].row0 == r;
            int64_t need = 0;
            if (block_start) {
                const fia_li_block *bl = &p->blocks[bi];
                for (int64_t i = 0; i < bl->nrows; i++)
                    need += (p->rows[r + i].vis + 15) / 16 * 16;
            }
            /* close the wave before a block that does not fit, and at the end */
            if (r == nrows || (block_start && used > 0 && used + need > budget)) {
                if (pass) p->waves[nw] = (fia_li_wave){wave_row0, r, wave_item0, ni};
                if (used > p->score_floats) p->score_floats = used;
                nw++;
                wave_row0 = r;
                wave_item0 = ni;
                used = 0;
                if (r == nrows) break;
            }
            if (block_start) {
                const fia_li_block *bl = &p->blocks[bi];
                for (int64_t i = 0; i < bl->nrows; i++) {
                    if (pass) p->rows[r + i].off = used;
                    used += (p->rows[r + i].vis + 15) / 16 * 16;
                }
                const int64_t vmax = p->rows[r + bl->nrows - 1].vis;
                for (int64_t kv0 = 0; kv0 < vmax; kv0 += FIA_LI_CHUNK) {
                    const int64_t kv1 = kv0 + FIA_LI_CHUNK < vmax ? kv0 + FIA_LI_CHUNK : vmax;
                    if (pass) {
                        int64_t cost = FIA_COST_PER_ITEM;
                        for (int64_t i = 0; i < bl->nrows; i++) {
                            const int64_t v = p->rows[r + i].vis;
                            cost += (v < kv1 ? v : kv1) > kv0 ? (v < kv1 ? v : kv1) - kv0 : 0;
                        }
                        p->items[ni] = (fia_li_item){bi, kv0, kv1, cost};
                    }
                    ni++;
                }
                bi++;
            }
        }
        if (!pass) {
            p->num_waves = nw;
            p->num_items = ni;
            p->waves = malloc((size_t)nw * sizeof *p->waves);
            p->items = malloc((size_t)(ni ? ni : 1) * sizeof *p->items);
            if (!p->waves || !p->items)
                return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
        }
    }
    /* most expensive items of a wave first (the pool hands tasks out in index order) */
    for (int64_t w = 0; w < p->num_waves; w++)
        qsort(p->items + p->waves[w].item0, (size_t)(p->waves[w].item1 - p->waves[w].item0),
              sizeof *p->items, li_item_cmp);
    return FIA_STATUS_SUCCESS;
}

/* Quant: every scale that will be read must be >= 0 (and not NaN). */
static fia_status li_check_scales(const fia_li_plan *p) {
    for (int64_t r = 0; r < p->num_rows; r++) {
        const fia_li_row *row = &p->rows[r];
        if (row->vis == 0) continue;
        for (int64_t h = 0; h < p->N1; h++) {
            const float s = fia_load_float(li_query_elem(&p->sq, row->b, row->tok, h), p->sq.dtype);
            if (!(s >= 0.0f))
                return FIA_INVALID("query_dequant_scale at query row %lld, head %lld is %g: "
                                   "scales must be >= 0", (long long)r, (long long)h, (double)s);
        }
    }
    /* the longest visible range per batch */
    for (int64_t r = 0, b = -1, vmax = 0; r <= p->num_rows; r++) {
        const int64_t rb = r < p->num_rows ? p->rows[r].b : -2;
        if (rb != b) {
            for (int64_t j = 0; b >= 0 && j < vmax; j++) {
                const float s = fia_load_float(li_key_row(p, &p->sk, b, j), p->sk.dtype);
                if (!(s >= 0.0f))
                    return FIA_INVALID("key_dequant_scale of batch %lld, key token %lld is %g: "
                                       "scales must be >= 0", (long long)b, (long long)j,
                                       (double)s);
            }
            b = rb;
            vmax = 0;
        }
        if (r < p->num_rows && p->rows[r].vis > vmax) vmax = p->rows[r].vis;
    }
    return FIA_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Workspace                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct li_scratch {
    /* scoring (pass 1) */
    float *qt;      /* float: [BLOCK_ROWS][D][ldq] */
    int8_t *qp;     /* int8:  [BLOCK_ROWS][d4][ldq][4] */
    int32_t *qbias; /* int8:  [BLOCK_ROWS][ldq] */
    float *w;       /* [BLOCK_ROWS][ldq]: weights (int8: weights x query scale) */
    float *kt;      /* float: [KEY_TILE][ldk] */
    float *qrow;    /* float: [N1][D], a query row before its transposition */
    uint8_t *ku;    /* int8:  [KEY_TILE][ldk] */
    float *sk;      /* int8:  [KEY_TILE] */
    int64_t prepared; /* the block whose query rows qt / qp hold (-1: none), per wave */
    /* selection (pass 2) */
    void *topk;
    int32_t *idx; /* [K] */
} li_scratch;

/* Lays out (base == NULL: sizes) the score buffer, the per-thread scratch descriptors and one
 * scratch area per thread; with a base, fills *scores and *threads. Returns the bytes used. */
static size_t li_layout(const fia_li_plan *p, char *base, float **scores, li_scratch **threads) {
    fia_arena a = {base, 0};
    *scores = fia_arena_take(&a, (size_t)p->score_floats * sizeof(float));
    li_scratch *th = fia_arena_take(&a, (size_t)p->num_threads * sizeof(li_scratch));
    if (threads) *threads = th;
    const size_t BR = FIA_LI_BLOCK_ROWS, KT = FIA_LI_KEY_TILE;
    for (int32_t t = 0; t < p->num_threads; t++) {
        li_scratch s;
        memset(&s, 0, sizeof s);
        const size_t start = a.used;
        if (p->quant) {
            s.qp = fia_arena_take(&a, BR * (size_t)(p->d4 * p->ldq * 4));
            s.qbias = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(int32_t));
            s.w = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(float));
            s.ku = fia_arena_take(&a, KT * (size_t)p->ldk);
            s.sk = fia_arena_take(&a, KT * sizeof(float));
        } else {
            s.qt = fia_arena_take(&a, BR * (size_t)(p->D * p->ldq) * sizeof(float));
            s.w = fia_arena_take(&a, BR * (size_t)p->ldq * sizeof(float));
            s.kt = fia_arena_take(&a, KT * (size_t)p->ldk * sizeof(float));
            s.qrow = fia_arena_take(&a, (size_t)(p->N1 * p->D) * sizeof(float));
        }
        const size_t pass1 = a.used;
        a.used = start; /* the selection scratch overlays the scoring scratch */
        s.topk = fia_arena_take(&a, fia_li_topk_scratch_bytes(p->max_vis, p->K));
        s.idx = fia_arena_take(&a, (size_t)p->K * sizeof(int32_t));
        if (a.used < pass1) a.used = pass1;
        if (base) th[t] = s;
    }
    return a.used;
}

/* ------------------------------------------------------------------------------------------ */
/* Execute                                                                                    */
/* ------------------------------------------------------------------------------------------ */

typedef struct li_run {
    const fia_li_plan *p;
    const fia_li_wave *wave;
    float *scores;
    li_scratch *threads;
} li_run;

/* Prefetches the key rows of the next tile [j0, min(j0 + tile, kv1)) (bytes each) into L2: the
 * hardware prefetcher loses the stream at every block of a paged cache. */
static inline void li_prefetch_tile(const fia_li_plan *p, int64_t b, int64_t j0, int64_t kv1,
                                    int64_t bytes) {
    const int64_t end = j0 + FIA_LI_KEY_TILE < kv1 ? j0 + FIA_LI_KEY_TILE : kv1;
    for (int64_t j = j0; j < end; j++) {
        const char *r = li_key_row(p, &p->k, b, j);
        for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(r + o, 0, 2);
    }
}

/* Pass 1, float: one (block, key chunk) item. */
static void li_score_f32_item(const fia_li_plan *p, const fia_li_item *it, float *scores,
                              li_scratch *s) {
    const fia_li_block *bl = &p->blocks[it->block];
    const fia_li_row *rows = p->rows + bl->row0;
    const int64_t D = p->D, ldq = p->ldq, ldk = p->ldk, N1 = p->N1;
    const int64_t b = rows[0].b;
    void (*cvt)(const uint16_t *, float *, int64_t) =
        p->q.dtype == FIA_DTYPE_BFLOAT16 ? p->kern->bf16_to_f32 : p->kern->f16_to_f32;
    /* the block's query rows (unless this thread's last item prepared them): heads transposed
     * to fp32 [D][ldq], zero pad columns */
    for (int64_t r = 0; s->prepared != it->block && r < bl->nrows; r++) {
        float *qt = s->qt + r * D * ldq, *w = s->w + r * ldq;
        for (int64_t h = 0; h < N1; h++) {
            cvt((const uint16_t *)li_query_elem(&p->q, b, rows[r].tok, h), s->qrow + h * D, D);
            w[h] = fia_load_float(li_query_elem(&p->w, b, rows[r].tok, h), p->w.dtype);
        }
        p->kern->transpose_f32(s->qrow, D, qt, ldq, N1, D);
        for (int64_t h = N1; h < ldq; h++) {
            for (int64_t c = 0; c < D; c++) qt[c * ldq + h] = 0.0f;
            w[h] = 0.0f;
        }
    }
    s->prepared = it->block;
    const void *rowp[FIA_LI_KEY_TILE];
    for (int64_t j0 = it->kv0; j0 < it->kv1; j0 += FIA_LI_KEY_TILE) {
        const int64_t n = it->kv1 - j0 < FIA_LI_KEY_TILE ? it->kv1 - j0 : FIA_LI_KEY_TILE;
        for (int64_t j = 0; j < n; j++) rowp[j] = li_key_row(p, &p->k, b, j0 + j);
        p->lik->keys_to_f32(n, D, rowp, p->k.dtype, s->kt, ldk);
        li_prefetch_tile(p, b, j0 + n, it->kv1, p->k.esize * D);
        for (int64_t r = 0; r < bl->nrows; r++) {
            const int64_t end = rows[r].vis < j0 + n ? rows[r].vis : j0 + n;
            if (end <= j0) continue;
            p->lik->score_f32(end - j0, D, N1, s->kt, ldk, s->qt + r * D * ldq, ldq,
                              s->w + r * ldq, scores + rows[r].off + j0);
        }
    }
}

/* sk[j] = key scale of tokens j0 .. j0 + n - 1 of batch b, as fp32. */
static void li_load_scales(const fia_li_plan *p, int64_t b, int64_t j0, int64_t n, float *sk) {
    if (p->sk.dtype == FIA_DTYPE_FLOAT16) {
        for (int64_t j = 0; j < n; j++) {
            uint16_t h;
            memcpy(&h, li_key_row(p, &p->sk, b, j0 + j), 2);
            sk[j] = fia_cvt_f16_to_f32(h);
        }
    } else {
        for (int64_t j = 0; j < n; j++)
            sk[j] = fia_load_float(li_key_row(p, &p->sk, b, j0 + j), p->sk.dtype);
    }
}

/* Pass 1, int8: one (block, key chunk) item. */
static void li_score_i8_item(const fia_li_plan *p, const fia_li_item *it, float *scores,
                             li_scratch *s) {
    const fia_li_block *bl = &p->blocks[it->block];
    const fia_li_row *rows = p->rows + bl->row0;
    const int64_t D = p->D, d4 = p->d4, ldq = p->ldq, ldk = p->ldk, N1 = p->N1;
    const int64_t b = rows[0].b;
    for (int64_t r = 0; s->prepared != it->block && r < bl->nrows; r++) {
        int8_t *qp = s->qp + r * d4 * ldq * 4;
        int32_t *qb = s->qbias + r * ldq;
        float *w = s->w + r * ldq;
        memset(qp, 0, (size_t)(d4 * ldq * 4));
        for (int64_t h = 0; h < ldq; h++) {
            qb[h] = 0;
            w[h] = 0.0f;
        }
        for (int64_t h = 0; h < N1; h++) {
            const int8_t *qh = (const int8_t *)li_query_elem(&p->q, b, rows[r].tok, h);
            int32_t sum = 0;
            for (int64_t c = 0; c < D; c++) {
                qp[((c / 4) * ldq + h) * 4 + c % 4] = qh[c];
                sum += qh[c];
            }
            qb[h] = 128 * sum;
            w[h] = fia_load_float(li_query_elem(&p->w, b, rows[r].tok, h), p->w.dtype) *
                   fia_load_float(li_query_elem(&p->sq, b, rows[r].tok, h), p->sq.dtype);
            /* the contract's first rounding point: w * sq cast to fp16; the fp16 path scores
             * at the golden's scale (dot / 1024), and 1024 w~ (exact: a power of two) restores
             * the formula's scale */
            if (!p->exact) w[h] = 1024.0f * fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(w[h]));
        }
    }
    s->prepared = it->block;
    const void *rowp[FIA_LI_KEY_TILE];
    for (int64_t j0 = it->kv0; j0 < it->kv1; j0 += FIA_LI_KEY_TILE) {
        const int64_t n = it->kv1 - j0 < FIA_LI_KEY_TILE ? it->kv1 - j0 : FIA_LI_KEY_TILE;
        for (int64_t j = 0; j < n; j++) rowp[j] = li_key_row(p, &p->k, b, j0 + j);
        p->lik->keys_to_u8(n, D, d4, rowp, s->ku, ldk);
        li_load_scales(p, b, j0, n, s->sk);
        li_prefetch_tile(p, b, j0 + n, it->kv1, D);
        for (int64_t r = 0; r < bl->nrows; r++) {
            const int64_t end = rows[r].vis < j0 + n ? rows[r].vis : j0 + n;
            if (end <= j0) continue;
            p->lik->score_i8(end - j0, d4, N1, s->ku, ldk, s->qp + r * d4 * ldq * 4, ldq,
                             s->qbias + r * ldq, s->w + r * ldq, s->sk, !p->exact,
                             scores + rows[r].off + j0);
        }
    }
}

static void li_score_task(void *arg, int64_t task, int32_t tid) {
    const li_run *run = arg;
    const fia_li_plan *p = run->p;
    li_scratch *s = &run->threads[tid];
    const fia_li_item *it = &p->items[run->wave->item0 + task];
    if (p->quant) li_score_i8_item(p, it, run->scores, s);
    else li_score_f32_item(p, it, run->scores, s);
}

/* sparse_values slot i of a row at ov: fp32, or rounded to fp16 / bf16 (nearest even). */
static inline void li_store_value(const fia_li_plan *p, char *ov, int64_t i, float v) {
    char *dst = ov + i * p->ov_s_k * (int64_t)fia_dtype_size(p->ov_dtype);
    if (p->ov_dtype == FIA_DTYPE_FLOAT32) {
        memcpy(dst, &v, sizeof v);
    } else {
        const uint16_t h = p->ov_dtype == FIA_DTYPE_FLOAT16 ? fia_cvt_f32_to_f16(v)
                                                             : fia_cvt_f32_to_bf16(v);
        memcpy(dst, &h, sizeof h);
    }
}

/* Pass 2: one output row. */
static void li_select_task(void *arg, int64_t task, int32_t tid) {
    const li_run *run = arg;
    const fia_li_plan *p = run->p;
    const int64_t r = run->wave->row0 + task;
    const fia_li_row *row = &p->rows[r];
    const int64_t b = row->b < 0 ? 0 : row->b;
    int32_t *oi = p->out_idx + b * p->oi_s_b + row->tok * p->oi_s_t;
    char *ov = p->out_val ? p->out_val + (b * p->ov_s_b + row->tok * p->ov_s_t) *
                                              (int64_t)fia_dtype_size(p->ov_dtype)
                          : NULL;
    int64_t cnt = 0;
    const float *sc = run->scores + row->off;
    if (row->vis > 0) {
        const li_scratch *s = &run->threads[tid];
        cnt = fia_li_topk(sc, row->vis, p->K, s->idx, s->topk);
        for (int64_t i = 0; i < cnt; i++) oi[i * p->oi_s_k] = s->idx[i];
        if (ov)
            for (int64_t i = 0; i < cnt; i++) li_store_value(p, ov, i, sc[s->idx[i]]);
    }
    for (int64_t i = cnt; i < p->K; i++) oi[i * p->oi_s_k] = -1;
    if (ov)
        for (int64_t i = cnt; i < p->K; i++) li_store_value(p, ov, i, -INFINITY);
}

static void li_execute(fia_plan *plan, void *workspace) {
    fia_li_plan *p = (fia_li_plan *)plan;
    li_run run = {p, NULL, NULL, NULL};
    float *scores;
    li_scratch *threads;
    li_layout(p, workspace, &scores, &threads);
    run.scores = scores;
    run.threads = threads;
    for (int64_t w = 0; w < p->num_waves; w++) {
        run.wave = &p->waves[w];
        for (int32_t t = 0; t < p->num_threads; t++) threads[t].prepared = -1;
        if (run.wave->item1 > run.wave->item0)
            fia_pool_run(p->base.ctx->pool, run.wave->item1 - run.wave->item0, li_score_task, &run);
        if (run.wave->row1 > run.wave->row0)
            fia_pool_run(p->base.ctx->pool, run.wave->row1 - run.wave->row0, li_select_task, &run);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                               */
/* ------------------------------------------------------------------------------------------ */

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
        st = li_schedule(p, &L, prm->sparse_mode);
    }
    if (st == FIA_STATUS_SUCCESS && quant) st = li_check_scales(p);
    free(L.sq);
    if (st != FIA_STATUS_SUCCESS) {
        li_destroy(&p->base);
        return st;
    }
    float *scores;
    p->base.workspace_bytes = li_layout(p, NULL, &scores, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: %s: B=%lld N1=%lld D=%lld k=%lld rows=%lld blocks=%lld "
                "items=%lld waves=%lld workspace=%zu kernels=%s\n",
                quant ? "quant_lightning_indexer" : "lightning_indexer", (long long)p->B,
                (long long)p->N1, (long long)p->D, (long long)p->K, (long long)p->num_rows,
                (long long)p->num_blocks, (long long)p->num_items, (long long)p->num_waves,
                p->base.workspace_bytes, p->lik->name);
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
    fia_plan *plan = NULL;
    FIA_TRY(li_plan(ctx, t, prm, &plan, NULL, false));
    return fia_plan_run_once(plan);
}

fia_status fia_quant_lightning_indexer_plan(fia_context *ctx,
                                            const fia_lightning_indexer_tensors *t,
                                            const fia_lightning_indexer_params *prm,
                                            fia_plan **plan, size_t *workspace_bytes) {
    return li_plan(ctx, t, prm, plan, workspace_bytes, true);
}

fia_status fia_quant_lightning_indexer(fia_context *ctx, const fia_lightning_indexer_tensors *t,
                                       const fia_lightning_indexer_params *prm) {
    fia_plan *plan = NULL;
    FIA_TRY(li_plan(ctx, t, prm, &plan, NULL, true));
    return fia_plan_run_once(plan);
}
