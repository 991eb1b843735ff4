/*
 * fia_common.c - the validation pieces of fused_infer_attention_score shared by its dense path
 * (fia_plan.c) and its MLA path (fia_mla.c): tensor dims and addressing per layout, the
 * per-batch lengths with the paged block table, and the output's dims.
 */
#include "core/status.h"
#include "core/tensor.h"
#include "ops/fia_internal.h"
#include "ops/validate.h"

fia_status fia_parse_batches(const fia_fused_infer_attention_score_tensors *t,
                             const fia_fused_infer_attention_score_params *prm, int64_t B,
                             bool tnd, int64_t qS, int64_t kv_S, int64_t block_size,
                             int64_t blocks, fia_batch **batches, int32_t **table, int64_t *cols) {
    const fia_lengths_args a = {
        prm->actual_seq_lengths, prm->actual_seq_lengths_kv, prm->actual_seq_lengths_count,
        prm->actual_seq_lengths_kv_count, "actual_seq_lengths", tnd, tnd,
        !tnd && qS == 1 /* decode: one query row per batch whatever the lengths say */, qS, kv_S,
        tnd ? "query dim 0 (T)" : "query sequence dim", tnd ? "key dim 0 (T)" : "key sequence dim",
        t->block_table, block_size, blocks, "the cache"};
    return fia_parse_batch_lengths(&a, B, batches, table, cols);
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
