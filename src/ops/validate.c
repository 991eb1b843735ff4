/*
 * validate.c - validation pieces shared by the operators (contracts in validate.h): batch
 * counts, sequence lengths, the block table and the softmax_lse output. Nothing here depends on
 * one operator's plan; each function reports the first violation and leaves the caller's
 * outputs untouched on failure (fia_copy_block_table frees what it allocated).
 */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "ops/validate.h"

enum { FIA_COMPRESSED_MASK = 2048 };

fia_status fia_parse_batch_count(bool tnd, const int64_t *v, int64_t count, const char *name,
                                 const char *tnd_what, int64_t qB, int64_t max_batch, int64_t *B) {
    if (tnd) {
        const int64_t c = v ? count : 0;
        if (c <= 0) return FIA_INVALID("%s (cumulative) is required with %s", name, tnd_what);
        if (c > max_batch)
            return FIA_INVALID("%s has %lld values, at most %d batches", name, (long long)c,
                               (int)max_batch);
        *B = c;
    } else {
        if (qB < 1 || qB > max_batch)
            return FIA_INVALID("query dim 0 (batch) is %lld, must be 1..%d", (long long)qB,
                               (int)max_batch);
        *B = qB;
    }
    return FIA_STATUS_SUCCESS;
}

/* Per-batch lengths (not cumulative), see fia_parse_seq_lengths. */
static fia_status fia_parse_lengths(const int64_t *v, int64_t count, const char *name, int64_t B,
                                    int64_t full, const char *full_what,
                                    const char *required_with, int64_t *out) {
    if (!v || count == 0) {
        if (required_with) return FIA_INVALID("%s is required %s", name, required_with);
        for (int64_t b = 0; b < B; b++) out[b] = full;
        return FIA_STATUS_SUCCESS;
    }
    if (count < 0) return FIA_INVALID("%s count is %lld", name, (long long)count);
    if (count != 1 && count < B)
        return FIA_INVALID("%s has %lld values, batch is %lld", name, (long long)count, (long long)B);
    for (int64_t b = 0; b < B; b++) {
        const int64_t x = v[count == 1 ? 0 : b];
        if (x < 0 || x > full)
            return FIA_INVALID("%s[%lld] is %lld, must be 0..%lld (%s)", name,
                               (long long)(count == 1 ? 0 : b), (long long)x, (long long)full,
                               full_what);
        out[b] = x;
    }
    return FIA_STATUS_SUCCESS;
}

/* Cumulative lengths (TND): count == B, non-decreasing, last <= total. */
static fia_status fia_parse_cumulative(const int64_t *v, int64_t count, const char *name,
                                       int64_t B, int64_t total, const char *total_what,
                                       int64_t *len, int64_t *start) {
    if (!v || count <= 0) return FIA_INVALID("%s (cumulative) is required with layout TND", name);
    if (count != B)
        return FIA_INVALID("%s has %lld values, batch is %lld", name, (long long)count, (long long)B);
    int64_t prev = 0;
    for (int64_t b = 0; b < B; b++) {
        if (v[b] < prev)
            return FIA_INVALID("%s[%lld] is %lld, less than the previous %lld: TND lengths are "
                               "cumulative", name, (long long)b, (long long)v[b], (long long)prev);
        if (v[b] > total)
            return FIA_INVALID("%s[%lld] is %lld, %s is %lld", name, (long long)b, (long long)v[b],
                               total_what, (long long)total);
        start[b] = prev;
        len[b] = v[b] - prev;
        prev = v[b];
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_parse_seq_lengths(const int64_t *v, int64_t count, const char *name, int64_t B,
                                 bool cumulative, int64_t full, const char *full_what,
                                 const char *required_with, int64_t *len, int64_t *start) {
    if (cumulative) return fia_parse_cumulative(v, count, name, B, full, full_what, len, start);
    FIA_TRY(fia_parse_lengths(v, count, name, B, full, full_what, required_with, len));
    if (start)
        for (int64_t b = 0; b < B; b++) start[b] = 0;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_parse_batch_lengths(const fia_lengths_args *a, int64_t B, fia_batch **batches,
                                   int32_t **table, int64_t *cols) {
    fia_batch *bt = calloc((size_t)B, sizeof *bt);
    *batches = bt;
    int64_t *tmp = malloc((size_t)B * 2 * sizeof *tmp);
    if (!bt || !tmp) {
        free(tmp);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    }
    int64_t *len = tmp, *start = tmp + B;
    const fia_tensor *tab = a->block_table;
    fia_status st = FIA_STATUS_SUCCESS;
    if (a->decode_one)
        for (int64_t b = 0; b < B; b++) len[b] = 1, start[b] = 0;
    else
        st = fia_parse_seq_lengths(a->q, a->q_count, a->q_name, B, a->q_tnd, a->q_full,
                                   a->q_what, NULL, len, start);
    for (int64_t b = 0; st == FIA_STATUS_SUCCESS && b < B; b++) bt[b].sq = len[b], bt[b].q_tok0 = start[b];
    const int64_t kc = a->kv ? a->kv_count : 0;
    if (st == FIA_STATUS_SUCCESS && tab && tab->ndim != 2)
        st = FIA_INVALID("block_table has %d dims, expected 2 ([B, max_blocks])", (int)tab->ndim);
    else if (st == FIA_STATUS_SUCCESS && tab)
        st = fia_parse_seq_lengths(a->kv, kc, "actual_seq_lengths_kv", B, false,
                                   fia_block_table_capacity(tab, a->block_size),
                                   "block_table columns x block_size", "here", len, start);
    else if (st == FIA_STATUS_SUCCESS)
        st = fia_parse_seq_lengths(a->kv, kc, "actual_seq_lengths_kv", B, a->kv_tnd, a->kv_full,
                                   a->kv_what, NULL, len, start);
    for (int64_t b = 0; st == FIA_STATUS_SUCCESS && b < B; b++) bt[b].skv = len[b], bt[b].kv_tok0 = start[b];
    if (st == FIA_STATUS_SUCCESS && tab)
        st = fia_copy_block_table(tab, B, len, a->block_size, a->blocks, a->cache_what, table, cols);
    free(tmp);
    return st;
}

int64_t fia_block_table_capacity(const fia_tensor *bt, int64_t block_size) {
    if (bt->ndim != 2) return 0;
    return bt->shape[1] > FIA_MAX_LEN / block_size ? FIA_MAX_LEN
                                                       : bt->shape[1] * block_size;
}

fia_status fia_check_block_table(const fia_tensor *bt, int64_t B) {
    if (bt->dtype != FIA_DTYPE_INT32)
        return FIA_INVALID("block_table dtype is %s, must be int32", fia_dtype_name(bt->dtype));
    FIA_TRY(fia_tensor_check_ndim(bt, "block_table", 2));
    if (bt->shape[0] < B)
        return FIA_INVALID("block_table dim 0 is %lld, batch is %lld", (long long)bt->shape[0],
                           (long long)B);
    return FIA_STATUS_SUCCESS;
}

fia_status fia_copy_block_table(const fia_tensor *bt, int64_t B, const int64_t *kv_len,
                                int64_t block_size, int64_t blocks, const char *cache_what,
                                int32_t **table, int64_t *cols) {
    FIA_TRY(fia_check_block_table(bt, B));
    int64_t max_len = 0;
    for (int64_t b = 0; b < B; b++) max_len = kv_len[b] > max_len ? kv_len[b] : max_len;
    int64_t nc = (max_len + block_size - 1) / block_size;
    if (nc < 1) nc = 1;
    if (B < 1 || block_size < 1) return FIA_INVALID("block table: batch %lld, block_size %lld",
                                                    (long long)B, (long long)block_size);
    int32_t *out = calloc((size_t)B * (size_t)nc, sizeof *out);
    if (!out) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    for (int64_t b = 0; b < B; b++) {
        const int64_t need = (kv_len[b] + block_size - 1) / block_size;
        for (int64_t c = 0; c < need; c++) {
            const int64_t idx[2] = {b, c};
            int32_t id;
            memcpy(&id, fia_tensor_elem(bt, idx), sizeof id);
            if (id < 0 || id >= blocks) {
                free(out);
                return FIA_INVALID("block_table[%lld][%lld] is %d, %s has %lld blocks",
                                   (long long)b, (long long)c, (int)id, cache_what,
                                   (long long)blocks);
            }
            out[b * nc + c] = id;
        }
    }
    *table = out;
    *cols = nc;
    return FIA_STATUS_SUCCESS;
}

bool fia_is_compressed_mask(const fia_tensor *m) {
    const int64_t C = FIA_COMPRESSED_MASK;
    const int64_t *s = m->shape;
    switch (m->ndim) {
    case 2: return s[0] == C && s[1] == C;
    case 3: return s[0] == 1 && s[1] == C && s[2] == C;
    case 4: return s[0] == 1 && s[1] == 1 && s[2] == C && s[3] == C;
    default: return false;
    }
}

fia_status fia_parse_lse(const fia_tensor *l, bool tnd, int64_t B, int64_t N, int64_t S,
                         const char *heads_what, const char *seq_what, float **data,
                         int64_t *s_b, int64_t *s_t, int64_t *s_h) {
    if (l->dtype != FIA_DTYPE_FLOAT32)
        return FIA_INVALID("softmax_lse dtype is %s, must be float32", fia_dtype_name(l->dtype));
    if (tnd) {
        FIA_TRY(fia_tensor_check_ndim(l, "softmax_lse", 3));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 0, S, seq_what));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 1, N, heads_what));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 2, 1, "required"));
        *s_b = 0;
        *s_t = l->strides[0];
        *s_h = l->strides[1];
    } else {
        FIA_TRY(fia_tensor_check_ndim(l, "softmax_lse", 4));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 0, B, "batch"));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 1, N, heads_what));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 2, S, seq_what));
        FIA_TRY(fia_tensor_check_dim(l, "softmax_lse", 3, 1, "required"));
        *s_b = l->strides[0];
        *s_h = l->strides[1];
        *s_t = l->strides[2];
    }
    *data = fia_tensor_ptr(l);
    return FIA_STATUS_SUCCESS;
}
