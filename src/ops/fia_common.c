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
