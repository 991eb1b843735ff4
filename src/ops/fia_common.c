/*
 * fia_common.c - the validation pieces of fused_infer_attention_score shared by its dense path
 * (fia_plan.c) and its MLA path (fia_mla.c): tensor dims and addressing per layout, the
 * per-batch lengths with the paged block table, and the output's dims.
 */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "ops/fia_internal.h"
#include "ops/validate.h"

/* Reads [B, S, N, D] of a tensor laid out as layout (BSH, BSND, BNSD, TND) with N heads and
 * fills its addressing. */
fia_status fia_parse_seq(const fia_tensor *t, const char *name, fia_layout layout,
                                int64_t heads, fia_seq *seq, fia_dims *dims) {
    const int64_t *sh = t->shape, *st = t->strides;
    memset(seq, 0, sizeof *seq);
    seq->base = fia_tensor_ptr(t);
    seq->dtype = t->dtype;
    seq->esize = (int64_t)fia_dtype_size(t->dtype);
    switch (layout) {
    case FIA_LAYOUT_BSH:
        FIA_TRY(fia_tensor_check_ndim(t, name, 3));
        if (sh[2] % heads != 0 || sh[2] == 0)
            return FIA_INVALID("%s dim 2 (H) is %lld, not a positive multiple of the %lld heads",
                               name, (long long)sh[2], (long long)heads);
        *dims = (fia_dims){sh[0], sh[1], heads, sh[2] / heads};
        seq->s_b = st[0];
        seq->s_t = st[1];
        seq->s_h = dims->D; /* the innermost stride is 1 wherever it matters */
        break;
    case FIA_LAYOUT_BSND:
        FIA_TRY(fia_tensor_check_ndim(t, name, 4));
        FIA_TRY(fia_tensor_check_dim(t, name, 2, heads, "the head count"));
        *dims = (fia_dims){sh[0], sh[1], sh[2], sh[3]};
        seq->s_b = st[0];
        seq->s_t = st[1];
        seq->s_h = st[2];
        break;
    case FIA_LAYOUT_BNSD:
        FIA_TRY(fia_tensor_check_ndim(t, name, 4));
        FIA_TRY(fia_tensor_check_dim(t, name, 1, heads, "the head count"));
        *dims = (fia_dims){sh[0], sh[2], sh[1], sh[3]};
        seq->s_b = st[0];
        seq->s_h = st[1];
        seq->s_t = st[2];
        break;
    case FIA_LAYOUT_TND:
        FIA_TRY(fia_tensor_check_ndim(t, name, 3));
        FIA_TRY(fia_tensor_check_dim(t, name, 1, heads, "the head count"));
        *dims = (fia_dims){0, sh[0], sh[1], sh[2]};
        seq->s_b = 0;
        seq->s_t = st[0];
        seq->s_h = st[1];
        break;
    default:
        return FIA_INVALID("%s layout %d is not a tensor layout", name, (int)layout);
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_parse_batches(const fia_fused_infer_attention_score_tensors *t,
                             const fia_fused_infer_attention_score_params *prm, int64_t B,
                             bool tnd, int64_t qS, int64_t kv_S, int64_t block_size,
                             int64_t blocks, fia_batch **batches, int32_t **table, int64_t *cols) {
    const bool paged = t->block_table != NULL;
    fia_batch *bt = calloc((size_t)B, sizeof *bt);
    *batches = bt;
    int64_t *tmp = malloc((size_t)B * 2 * sizeof *tmp);
    if (!bt || !tmp) {
        free(tmp);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    int64_t *len = tmp, *start = tmp + B;
    fia_status st = FIA_STATUS_SUCCESS;
    if (!tnd && qS == 1) { /* decode: one query row per batch whatever the lengths say */
        for (int64_t b = 0; b < B; b++) len[b] = 1, start[b] = 0;
    } else {
        st = fia_parse_seq_lengths(prm->actual_seq_lengths, prm->actual_seq_lengths_count,
                                   "actual_seq_lengths", B, tnd, qS,
                                   tnd ? "query dim 0 (T)" : "query sequence dim", NULL, len,
                                   start);
    }
    for (int64_t b = 0; st == FIA_STATUS_SUCCESS && b < B; b++) {
        bt[b].sq = len[b];
        bt[b].q_tok0 = start[b];
    }
    if (st == FIA_STATUS_SUCCESS) {
        const int64_t *kv = prm->actual_seq_lengths_kv;
        const int64_t kc = kv ? prm->actual_seq_lengths_kv_count : 0;
        if (paged)
            st = fia_parse_seq_lengths(kv, kc, "actual_seq_lengths_kv", B, false,
                                       fia_block_table_capacity(t->block_table, block_size),
                                       "block_table columns x block_size", "here", len, start);
        else
            st = fia_parse_seq_lengths(kv, kc, "actual_seq_lengths_kv", B, tnd, kv_S,
                                       tnd ? "key dim 0 (T)" : "key sequence dim", NULL, len,
                                       start);
        for (int64_t b = 0; st == FIA_STATUS_SUCCESS && b < B; b++) {
            bt[b].skv = len[b];
            bt[b].kv_tok0 = paged ? 0 : start[b];
        }
    }
    if (st == FIA_STATUS_SUCCESS && paged)
        st = fia_copy_block_table(t->block_table, B, len, block_size, blocks, "the cache", table,
                                  cols);
    free(tmp);
    return st;
}

fia_status fia_check_out_dims(const fia_dims *od, const fia_dims *qd, bool tnd, int64_t B) {
    if (!tnd && od->B != B)
        return FIA_INVALID("attention_out dim 0 (batch) is %lld, query has %lld", (long long)od->B,
                           (long long)B);
    if (od->S != qd->S)
        return FIA_INVALID("attention_out sequence dim is %lld, query has %lld", (long long)od->S,
                           (long long)qd->S);
    return FIA_STATUS_SUCCESS;
}
