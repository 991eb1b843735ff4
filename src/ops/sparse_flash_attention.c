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
 *           A work item is (row, head block, slices): either one slice (decode with few rows:
 *           the partial states go to the workspace and a second phase merges them in slice
 *           order) or all slices of the row (merged inside the item, in the same order and with
 *           the same arithmetic). Each slice starts from an empty softmax state and the merge is
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
#include "core/status.h"
#include "core/params.h"
#include "core/tensor.h"
#include "sched/kv_addr.h"
#include "ops/sfa_internal.h"
#include "ops/validate.h"

static void sfa_destroy(fia_plan *plan) {
    sfa_plan *p = (sfa_plan *)plan;
    if (!p) return;
    free(p->block_table);
    free(p->batches);
    free(p->rows);
    free(p->items);
    free(p->groups);
    free(p);
}

/* ---- validation -------------------------------------------------------------------------- */

/* The common part of both operators' tensors. */
typedef struct sfa_tensors {
    const fia_tensor *query, *query_rope, *key, *key_rope, *value, *sparse_indices, *block_table;
    fia_tensor *attention_out, *softmax_lse, *softmax_max, *softmax_sum;
    const fia_tensor *sinks;
} sfa_tensors;

/* softmax_max / softmax_sum: float32 [B, 1, S, N] or (tnd) [1, S, N] (torch_npu's
 * [B, N2, S1, N1/N2] / [N2, T1, N1/N2] with one kv head). */
static fia_status sfa_parse_maxsum(const fia_tensor *l, const char *name, bool tnd, int64_t B,
                                   int64_t N, int64_t S, float **data, int64_t *s_b,
                                   int64_t *s_t, int64_t *s_h) {
    FIA_TRY(fia_tensor_check(l, name, false));
    if (l->dtype != FIA_DTYPE_FLOAT32)
        return FIA_INVALID("%s dtype is %s, must be float32", name, fia_dtype_name(l->dtype));
    const int o = tnd ? 0 : 1;
    FIA_TRY(fia_tensor_check_ndim(l, name, 3 + o));
    if (!tnd) FIA_TRY(fia_tensor_check_dim(l, name, 0, B, "query batch"));
    FIA_TRY(fia_tensor_check_dim(l, name, o, 1, "required (one kv head)"));
    FIA_TRY(fia_tensor_check_dim(l, name, o + 1, S, tnd ? "query T1" : "query S1"));
    FIA_TRY(fia_tensor_check_dim(l, name, o + 2, N, "the query heads (N1 / N2)"));
    *s_b = tnd ? 0 : l->strides[0];
    *s_t = l->strides[o + 1];
    *s_h = l->strides[o + 2];
    *data = fia_tensor_ptr(l);
    return FIA_STATUS_SUCCESS;
}

/* [B, S, N, D] (BSND) or [T, N, D] (TND) with N == heads (heads < 0: any 1..128) and D == dim.
 * Fills the addressing and the dims (B = -1 for TND). */
static fia_status sfa_parse_seq(const fia_tensor *t, const char *name, fia_layout layout,
                                int64_t heads, int64_t dim, sfa_seq *s, int64_t *B, int64_t *S,
                                int64_t *N) {
    memset(s, 0, sizeof *s);
    s->base = fia_tensor_ptr(t);
    s->dtype = t->dtype;
    s->esize = (int64_t)fia_dtype_size(t->dtype);
    const int64_t *sh = t->shape, *st = t->strides;
    int32_t nd;
    if (layout == FIA_LAYOUT_TND) {
        FIA_TRY(fia_tensor_check_ndim(t, name, 3));
        *B = -1;
        *S = sh[0];
        s->s_t = st[0];
        s->s_h = st[1];
        nd = 1;
    } else {
        FIA_TRY(fia_tensor_check_ndim(t, name, 4));
        *B = sh[0];
        *S = sh[1];
        s->s_b = st[0];
        s->s_t = st[1];
        s->s_h = st[2];
        nd = 2;
    }
    *N = sh[nd];
    if (heads >= 0) {
        FIA_TRY(fia_tensor_check_dim(t, name, nd, heads, heads == 1 ? "required (one kv head)"
                                                                    : "the query heads"));
    } else if (sh[nd] < 1 || sh[nd] > FIA_MAX_LATENT_HEADS) {
        return FIA_INVALID("%s dim %d (heads) is %lld, must be 1..%d", name, (int)nd,
                           (long long)sh[nd], FIA_MAX_LATENT_HEADS);
    }
    return fia_tensor_check_dim(t, name, nd + 1, dim, "required");
}

/* Paged [blocks, block_size, 1, dim]. */
static fia_status sfa_parse_paged(const fia_tensor *t, const char *name, int64_t dim, sfa_seq *s) {
    memset(s, 0, sizeof *s);
    s->base = fia_tensor_ptr(t);
    s->dtype = t->dtype;
    s->esize = (int64_t)fia_dtype_size(t->dtype);
    FIA_TRY(fia_tensor_check_ndim(t, name, 4));
    FIA_TRY(fia_tensor_check_dim(t, name, 2, 1, "required (one kv head)"));
    FIA_TRY(fia_tensor_check_dim(t, name, 3, dim, "required"));
    s->s_blk = t->strides[0];
    s->s_t = t->strides[1];
    return FIA_STATUS_SUCCESS;
}

static bool sfa_same_view(const fia_tensor *a, const fia_tensor *b) {
    if (fia_tensor_ptr(a) != fia_tensor_ptr(b) || a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i] || a->strides[i] != b->strides[i]) return false;
    return true;
}

static fia_status sfa_validate(sfa_plan *p, const sfa_tensors *t,
                               const fia_sparse_flash_attention_params *prm) {
    const bool c8 = p->c8;
    const int64_t qdim = c8 ? SFA_DK : SFA_DN;
    const int64_t kdim = c8 ? FIA_C8_ROW_BYTES : SFA_DN;
    if (!t->query) return FIA_INVALID("query is NULL");
    if (!t->key) return FIA_INVALID("key is NULL");
    if (!t->sparse_indices) return FIA_INVALID("sparse_indices is NULL");
    if (!t->attention_out) return FIA_INVALID("attention_out is NULL");
    if (!c8 && !t->query_rope) return FIA_INVALID("query_rope is NULL (required: rope dim 64)");
    if (!c8 && !t->key_rope) return FIA_INVALID("key_rope is NULL (required: rope dim 64)");
    FIA_TRY(fia_tensor_check(t->query, "query", true));
    FIA_TRY(fia_tensor_check(t->key, "key", true));
    if (t->value) FIA_TRY(fia_tensor_check(t->value, "value", true));
    FIA_TRY(fia_tensor_check(t->sparse_indices, "sparse_indices", false));
    FIA_TRY(fia_tensor_check(t->attention_out, "attention_out", true));
    if (!c8) {
        FIA_TRY(fia_tensor_check(t->query_rope, "query_rope", true));
        FIA_TRY(fia_tensor_check(t->key_rope, "key_rope", true));
    }
    if (t->block_table) FIA_TRY(fia_tensor_check(t->block_table, "block_table", false));
    if (prm->return_softmax_lse) {
        if (!t->softmax_lse && !t->softmax_max && !t->softmax_sum)
            return FIA_INVALID("softmax_lse, softmax_max and softmax_sum are NULL but "
                               "return_softmax_lse is set (pass softmax_lse, or softmax_max and "
                               "softmax_sum, or all three)");
        if (!t->softmax_max != !t->softmax_sum)
            return FIA_INVALID("%s is NULL but %s is given: softmax_max and softmax_sum go together",
                               t->softmax_max ? "softmax_sum" : "softmax_max",
                               t->softmax_max ? "softmax_max" : "softmax_sum");
        if (t->softmax_lse) FIA_TRY(fia_tensor_check(t->softmax_lse, "softmax_lse", false));
    }
    if (t->sinks) {
        FIA_TRY(fia_tensor_check(t->sinks, "sinks", false));
        if (t->sinks->dtype != FIA_DTYPE_FLOAT32)
            return FIA_INVALID("sinks dtype is %s, must be float32",
                               fia_dtype_name(t->sinks->dtype));
        if (t->sinks->ndim != 1)
            return FIA_INVALID("sinks has %d dims, must be 1 ([N1])", (int)t->sinks->ndim);
    }

    /* parameters */
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

    /* dtypes */
    const fia_dtype qt = t->query->dtype;
    if (qt != FIA_DTYPE_FLOAT16 && qt != FIA_DTYPE_BFLOAT16)
        return FIA_INVALID("query dtype is %s, must be float16 or bfloat16", fia_dtype_name(qt));
    if (c8) {
        if (t->key->dtype != FIA_DTYPE_INT8)
            return FIA_INVALID("key dtype is %s, must be int8 (656-byte C8 rows)",
                               fia_dtype_name(t->key->dtype));
    } else {
        if (t->key->dtype != qt)
            return FIA_INVALID("key dtype is %s, query is %s", fia_dtype_name(t->key->dtype),
                               fia_dtype_name(qt));
        if (t->query_rope->dtype != qt)
            return FIA_INVALID("query_rope dtype is %s, query is %s",
                               fia_dtype_name(t->query_rope->dtype), fia_dtype_name(qt));
        if (t->key_rope->dtype != qt)
            return FIA_INVALID("key_rope dtype is %s, query is %s",
                               fia_dtype_name(t->key_rope->dtype), fia_dtype_name(qt));
    }
    if (t->attention_out->dtype != qt)
        return FIA_INVALID("attention_out dtype is %s, query is %s",
                           fia_dtype_name(t->attention_out->dtype), fia_dtype_name(qt));
    if (t->sparse_indices->dtype != FIA_DTYPE_INT32)
        return FIA_INVALID("sparse_indices dtype is %s, must be int32",
                           fia_dtype_name(t->sparse_indices->dtype));
    if (t->value && !sfa_same_view(t->value, t->key))
        return FIA_INVALID("value must be NULL or the same view as key (attention_mode 2 takes "
                           "the values from the key rows)");

    /* query */
    const bool qtnd = prm->layout_query == FIA_LAYOUT_TND;
    int64_t qB, qS, N1;
    FIA_TRY(sfa_parse_seq(t->query, "query", prm->layout_query, -1, qdim, &p->q, &qB, &qS, &N1));
    p->N1 = N1;
    if (!c8) {
        int64_t b2, s2, n2;
        FIA_TRY(sfa_parse_seq(t->query_rope, "query_rope", prm->layout_query, N1, SFA_DR, &p->qr,
                              &b2, &s2, &n2));
        if (b2 != qB || s2 != qS)
            return FIA_INVALID("query_rope dims 0..%d are [%lld, %lld], query has [%lld, %lld]",
                               qtnd ? 0 : 1, (long long)b2, (long long)s2, (long long)qB,
                               (long long)qS);
    }
    int64_t B;
    FIA_TRY(fia_parse_batch_count(qtnd, prm->actual_seq_lengths_query,
                                  prm->actual_seq_lengths_query_count, "actual_seq_lengths_query",
                                  "layout_query TND", qB, FIA_MAX_BATCH, &B));
    p->B = B;

    /* key / key_rope */
    p->paged = prm->layout_kv == FIA_LAYOUT_PA_BSND;
    int64_t kv_S = 0, blocks = 0;
    if (p->paged) {
        FIA_TRY(sfa_parse_paged(t->key, "key", kdim, &p->k));
        blocks = t->key->shape[0];
        p->block_size = t->key->shape[1];
        if (p->block_size < 1 || p->block_size > FIA_MAX_BLOCK_SIZE)
            return FIA_INVALID("key dim 1 (block_size) is %lld, must be 1..%d",
                               (long long)p->block_size, FIA_MAX_BLOCK_SIZE);
        p->bs_shift = fia_kv_shift(p->block_size);
        if (p->block_size % sbs != 0)
            return FIA_INVALID("sparse_block_size %lld does not divide block_size %lld",
                               (long long)sbs, (long long)p->block_size);
        if (!c8) {
            FIA_TRY(sfa_parse_paged(t->key_rope, "key_rope", SFA_DR, &p->kr));
            if (t->key_rope->shape[0] != blocks || t->key_rope->shape[1] != p->block_size)
                return FIA_INVALID("key_rope dims 0..1 are [%lld, %lld], key has [%lld, %lld]",
                                   (long long)t->key_rope->shape[0],
                                   (long long)t->key_rope->shape[1], (long long)blocks,
                                   (long long)p->block_size);
        }
        if (!t->block_table) return FIA_INVALID("block_table is required with layout_kv PA_BSND");
    } else {
        if (t->block_table)
            return FIA_INVALID("block_table is given but layout_kv is %s (PA_BSND needs it)",
                               fia_layout_name(prm->layout_kv));
        int64_t kB, n;
        FIA_TRY(sfa_parse_seq(t->key, "key", prm->layout_kv, 1, kdim, &p->k, &kB, &kv_S, &n));
        if (prm->layout_kv == FIA_LAYOUT_BSND && kB != B)
            return FIA_INVALID("key dim 0 (batch) is %lld, query has %lld", (long long)kB,
                               (long long)B);
        if (!c8) {
            int64_t b2, s2;
            FIA_TRY(sfa_parse_seq(t->key_rope, "key_rope", prm->layout_kv, 1, SFA_DR, &p->kr, &b2,
                                  &s2, &n));
            if (b2 != kB || s2 != kv_S)
                return FIA_INVALID("key_rope dims are [%lld, %lld, ..], key has [%lld, %lld, ..]",
                                   (long long)b2, (long long)s2, (long long)kB, (long long)kv_S);
        }
    }

    /* lengths */
    p->batches = calloc((size_t)B, sizeof *p->batches);
    int64_t *tmp = malloc((size_t)B * 4 * sizeof *tmp);
    if (!p->batches || !tmp) {
        free(tmp);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    int64_t *qlen = tmp, *qstart = tmp + B, *klen = tmp + 2 * B, *kstart = tmp + 3 * B;
    fia_status st = fia_parse_seq_lengths(prm->actual_seq_lengths_query,
                                          prm->actual_seq_lengths_query_count,
                                          "actual_seq_lengths_query", B, qtnd, qS,
                                          qtnd ? "query dim 0 (T)" : "query dim 1 (S1)", NULL,
                                          qlen, qstart);
    if (st == FIA_STATUS_SUCCESS) {
        const int64_t *kv = prm->actual_seq_lengths_kv;
        const int64_t kc = kv ? prm->actual_seq_lengths_kv_count : 0;
        const bool ktnd = prm->layout_kv == FIA_LAYOUT_TND;
        if (p->paged && t->block_table->ndim != 2)
            st = FIA_INVALID("block_table has %d dims, expected 2 ([B, max_blocks])",
                             (int)t->block_table->ndim);
        else if (p->paged)
            st = fia_parse_seq_lengths(kv, kc, "actual_seq_lengths_kv", B, false,
                                       fia_block_table_capacity(t->block_table, p->block_size),
                                       "block_table columns x block_size", "here", klen, kstart);
        else
            st = fia_parse_seq_lengths(kv, kc, "actual_seq_lengths_kv", B, ktnd, kv_S,
                                       ktnd ? "key dim 0 (T)" : "key dim 1 (S2)", NULL, klen,
                                       kstart);
    }
    for (int64_t b = 0; st == FIA_STATUS_SUCCESS && b < B; b++) {
        p->batches[b].sq = qlen[b];
        p->batches[b].skv = klen[b];
        p->batches[b].kv_tok0 = kstart[b];
    }

    /* rows: one per output token */
    if (st == FIA_STATUS_SUCCESS) {
        p->num_rows = qtnd ? qS : B * qS;
        /* every row becomes at least one work item: the same cap, before allocating */
        if (p->num_rows > FIA_MAX_ITEMS)
            st = FIA_UNSUPPORTED("query has %lld rows (batch x S1 or T), at most %lld",
                                 (long long)p->num_rows, (long long)FIA_MAX_ITEMS);
    }
    if (st == FIA_STATUS_SUCCESS) {
        p->rows = malloc((size_t)(p->num_rows ? p->num_rows : 1) * sizeof *p->rows);
        if (!p->rows) st = fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    if (st == FIA_STATUS_SUCCESS) {
        /* TND: rows belong to the batch whose cumulative range holds them; rows past the last
         * length belong to none and output 0 */
        for (int64_t n = 0; n < p->num_rows; n++)
            p->rows[n] = (sfa_row){0, 0, qtnd ? n : n % qS, qtnd ? -1 : n % qS, 0};
        if (!qtnd)
            for (int64_t n = 0; n < p->num_rows; n++) p->rows[n].b = (int32_t)(n / qS);
        else
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < qlen[b]; i++) {
                    p->rows[qstart[b] + i].b = (int32_t)b;
                    p->rows[qstart[b] + i].i = i;
                }
        for (int64_t n = 0; n < p->num_rows; n++) {
            sfa_row *r = &p->rows[n];
            const int64_t b = r->b, i = r->i;
            if (i < 0 || i >= qlen[b]) continue;
            const int64_t skv = klen[b];
            int64_t thr = prm->sparse_mode == 3 ? skv - qlen[b] + i + 1 : skv;
            if (thr > skv) thr = skv;
            r->thr = thr;
            r->active = thr > 0;
        }
    }
    /* block table: validated and copied */
    if (st == FIA_STATUS_SUCCESS && p->paged)
        st = fia_copy_block_table(t->block_table, B, klen, p->block_size, blocks, "key",
                                  &p->block_table, &p->bt_cols);
    free(tmp);
    FIA_TRY(st);

    /* sparse_indices: [B, S1, 1, K] or [T1, 1, K] */
    const fia_tensor *ix = t->sparse_indices;
    p->idx = fia_tensor_ptr(ix);
    if (qtnd) {
        FIA_TRY(fia_tensor_check_ndim(ix, "sparse_indices", 3));
        FIA_TRY(fia_tensor_check_dim(ix, "sparse_indices", 0, qS, "query dim 0 (T1)"));
        FIA_TRY(fia_tensor_check_dim(ix, "sparse_indices", 1, 1, "required (one kv head)"));
        p->K = ix->shape[2];
        p->idx_s_b = 0;
        p->idx_s_t = ix->strides[0];
        p->idx_s_e = ix->strides[2];
    } else {
        FIA_TRY(fia_tensor_check_ndim(ix, "sparse_indices", 4));
        FIA_TRY(fia_tensor_check_dim(ix, "sparse_indices", 0, B, "query dim 0 (B)"));
        FIA_TRY(fia_tensor_check_dim(ix, "sparse_indices", 1, qS, "query dim 1 (S1)"));
        FIA_TRY(fia_tensor_check_dim(ix, "sparse_indices", 2, 1, "required (one kv head)"));
        p->K = ix->shape[3];
        p->idx_s_b = ix->strides[0];
        p->idx_s_t = ix->strides[1];
        p->idx_s_e = ix->strides[3];
    }

    /* outputs */
    int64_t oB, oS, oN;
    FIA_TRY(sfa_parse_seq(t->attention_out, "attention_out", prm->layout_query, N1, SFA_DN, &p->o,
                          &oB, &oS, &oN));
    if (oS != qS)
        return FIA_INVALID("attention_out dim %d is %lld, query has %lld", qtnd ? 0 : 1,
                           (long long)oS, (long long)qS);
    if (oB != qB)
        return FIA_INVALID("attention_out dim 0 is %lld, query has %lld", (long long)oB,
                           (long long)qB);
    p->lse = p->smax = p->ssum = NULL;
    if (prm->return_softmax_lse && t->softmax_lse)
        FIA_TRY(fia_parse_lse(t->softmax_lse, qtnd, B, N1, qS, "the query heads",
                              qtnd ? "query T1" : "query S1", &p->lse, &p->lse_s_b, &p->lse_s_t,
                              &p->lse_s_h));
    if (prm->return_softmax_lse && t->softmax_max) {
        FIA_TRY(sfa_parse_maxsum(t->softmax_max, "softmax_max", qtnd, B, N1, qS, &p->smax,
                                 &p->smax_s_b, &p->smax_s_t, &p->smax_s_h));
        FIA_TRY(sfa_parse_maxsum(t->softmax_sum, "softmax_sum", qtnd, B, N1, qS, &p->ssum,
                                 &p->ssum_s_b, &p->ssum_s_t, &p->ssum_s_h));
    }
    p->sinks = NULL;
    if (t->sinks) {
        FIA_TRY(fia_tensor_check_dim(t->sinks, "sinks", 0, N1, "the query heads"));
        p->sinks = fia_tensor_ptr(t->sinks);
        p->sinks_s = t->sinks->strides[0];
    }
    return FIA_STATUS_SUCCESS;
}

/* ---- scheduling -------------------------------------------------------------------------- */

static int sfa_item_cmp(const void *a, const void *b) {
    const sfa_item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    if (x->h0 != y->h0) return x->h0 < y->h0 ? -1 : 1;
    return x->s0 < y->s0 ? -1 : x->s0 > y->s0;
}

static fia_status sfa_schedule(sfa_plan *p) {
    const int64_t T = p->num_threads;
    p->slice_entries = SFA_SLICE_TOKENS / p->sbs > 0 ? SFA_SLICE_TOKENS / p->sbs : 1;
    p->nslices = p->K > 0 ? (p->K + p->slice_entries - 1) / p->slice_entries : 0;
    int64_t nact = 0;
    for (int64_t n = 0; n < p->num_rows; n++) {
        if (p->nslices == 0) p->rows[n].active = 0;
        nact += p->rows[n].active;
    }
    /* Head blocks: all heads, halved while the rows and slices leave threads idle. Splitting
     * into one item per slice (partials merged afterwards) when there are few (row, head
     * block) pairs, as long as the partials stay within SFA_MAX_PARTIAL_BYTES. */
    int64_t hb = p->N1;
    while (hb > SFA_MIN_HEAD_BLOCK && nact * ((p->N1 + hb - 1) / hb) * p->nslices < 2 * T)
        hb = (hb + 1) / 2;
    p->head_block = hb;
    const int64_t nhb = (p->N1 + hb - 1) / hb;
    const int64_t pairs = nact * nhb;
    const bool split = p->nslices > 1 && pairs < 4 * T &&
                       pairs * p->nslices * hb * (SFA_DN + 2) * 4 <= SFA_MAX_PARTIAL_BYTES &&
                       p->K * p->nslices <= SFA_MAX_PRESCAN;
    const int64_t ni = (p->num_rows - nact) + pairs * (split ? p->nslices : 1);
    if (ni > FIA_MAX_ITEMS)
        return FIA_UNSUPPORTED("the call needs %lld work items, more than %lld", (long long)ni,
                               (long long)FIA_MAX_ITEMS);
    p->items = malloc((size_t)(ni ? ni : 1) * sizeof *p->items);
    p->groups = malloc((size_t)(split && pairs ? pairs : 1) * sizeof *p->groups);
    if (!p->items || !p->groups) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    int64_t k = 0, g = 0;
    for (int64_t n = 0; n < p->num_rows; n++) {
        const sfa_row *r = &p->rows[n];
        if (!r->active) {
            p->items[k++] = (sfa_item){n, 0, (int32_t)p->N1, 0, 0, -1, 1, p->N1};
            continue;
        }
        const int64_t cap = p->K * p->sbs < r->thr ? p->K * p->sbs : r->thr;
        for (int64_t h0 = 0; h0 < p->N1; h0 += hb) {
            const int64_t nh = p->N1 - h0 < hb ? p->N1 - h0 : hb;
            if (split) {
                p->groups[g] = (sfa_group){n, (int32_t)h0, (int32_t)nh};
                const int64_t per = cap / p->nslices + 1;
                for (int64_t s = 0; s < p->nslices; s++)
                    p->items[k++] = (sfa_item){n, (int32_t)h0, (int32_t)nh, (int32_t)s,
                                               (int32_t)(s + 1), (int32_t)g, 0, nh * per + FIA_COST_PER_ITEM};
                g++;
            } else {
                p->items[k++] = (sfa_item){n, (int32_t)h0, (int32_t)nh, 0, (int32_t)p->nslices, -1,
                                           0, nh * cap + FIA_COST_PER_ITEM};
            }
        }
    }
    p->num_items = k;
    p->num_groups = g;
    p->partial_floats = g * p->nslices * hb * (SFA_DN + 2);
    qsort(p->items, (size_t)k, sizeof *p->items, sfa_item_cmp);
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
    /* AMX: bf16 query and cache (not C8), sfa_exec.c sfa_run_slice_amx */
    p->amx = st == FIA_STATUS_SUCCESS && ctx->amx_bf16 && !c8 &&
             p->q.dtype == FIA_DTYPE_BFLOAT16 && p->qr.dtype == FIA_DTYPE_BFLOAT16 &&
             p->k.dtype == FIA_DTYPE_BFLOAT16 && p->kr.dtype == FIA_DTYPE_BFLOAT16;
    p->base.unit = p->amx ? "amx_bf16" : "fma";
    if (st != FIA_STATUS_SUCCESS) {
        sfa_destroy(&p->base);
        return st;
    }
    p->scratch_bytes = fia_sfa_scratch_carve(p, NULL, NULL);
    p->base.workspace_bytes = fia_sfa_workspace_layout(p, NULL, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: %ssparse_flash_attention: B=%lld rows=%lld N1=%lld K=%lld sbs=%lld "
                "slices=%lld head_block=%lld items=%lld merge-groups=%lld workspace=%zu "
                "kernels=%s%s\n", c8 ? "kv_quant_" : "", (long long)p->B, (long long)p->num_rows,
                (long long)p->N1, (long long)p->K, (long long)p->sbs, (long long)p->nslices,
                (long long)p->head_block, (long long)p->num_items, (long long)p->num_groups,
                p->base.workspace_bytes, p->kern->name, p->amx ? " + amx bf16" : "");
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
