/*
 * validate.h - validation pieces shared by the operators (fused_infer_attention_score dense and
 * MLA, sparse_flash_attention, lightning_indexer): batch counts, per-batch and cumulative
 * sequence lengths, the paged block table (validated and copied) and the softmax_lse output.
 *
 * Every function checks its inputs completely before it writes anything the caller keeps, and
 * reports the first violation through FIA_INVALID with the tensor or parameter name, the dim and
 * the values involved; the message wording is part of the operators' behaviour (tests look for
 * it), so callers pass the names and the "what" strings their contract uses.
 */
#ifndef FIA_OPS_VALIDATE_H
#define FIA_OPS_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/limits.h"
#include "fia.h"
#include "sched/kvcache.h"


/* Batch count. tnd: the number of cumulative lengths `name` (v, count), required ("%s
 * (cumulative) is required with <tnd_what>") and at most max_batch; else query dim 0, qB, in
 * 1..max_batch. */
fia_status fia_parse_batch_count(bool tnd, const int64_t *v, int64_t count, const char *name,
                                 const char *tnd_what, int64_t qB, int64_t max_batch, int64_t *B);

/* Lengths of B batches along a sequence dim of `full` tokens (full_what names it in messages).
 *   cumulative (TND): v required, count == B, non-decreasing, last <= full; len[b] is the
 *       difference of neighbours and start[b] the batch's first token.
 *   else per batch: v NULL or count 0 -> every length is full, unless required_with is non-NULL
 *       ("%s is required <required_with>"); count 1 broadcasts, count >= B uses the first B;
 *       each in 0..full; start[b] = 0 (start may be NULL). */
fia_status fia_parse_seq_lengths(const int64_t *v, int64_t count, const char *name, int64_t B,
                                 bool cumulative, int64_t full, const char *full_what,
                                 const char *required_with, int64_t *len, int64_t *start);

/* Where a call's lengths come from, for fia_parse_batch_lengths. */
typedef struct fia_lengths_args {
    const int64_t *q, *kv;    /* actual query / kv lengths (either may be NULL) */
    int64_t q_count, kv_count;
    const char *q_name;       /* the query lengths' parameter ("actual_seq_lengths_query") */
    bool q_tnd, kv_tnd;       /* cumulative (TND) */
    bool decode_one;          /* one query row per batch, whatever the query lengths say */
    int64_t q_full, kv_full;  /* the query's and (dense) the key's sequence dims */
    const char *q_what, *kv_what;  /* those dims in messages ("query dim 1 (S1)") */
    const fia_tensor *block_table; /* paged cache: its block table; NULL: dense */
    int64_t block_size, blocks;    /* paged: the cache's block size and block count */
    const char *cache_what;        /* the paged cache in messages ("key", "the cache") */
} fia_lengths_args;

/* The per-batch lengths into a calloc'ed *batches[B] (set even on failure, for the plan's
 * destroy): query lengths (decode_one: 1 each; else fia_parse_seq_lengths over q_full) and kv
 * lengths (paged: actual_seq_lengths_kv required, up to the block table's capacity, the table
 * 2-D; else over kv_full); a paged cache's block table is then validated against the kv lengths
 * (ids in [0, blocks)) and copied into *table (B x *cols). */
fia_status fia_parse_batch_lengths(const fia_lengths_args *a, int64_t B, fia_batch **batches,
                                   int32_t **table, int64_t *cols);

/* The longest kv length a block table can address: its columns x block_size (block_size >= 1),
 * at most FIA_MAX_LEN; 0 when the table is not 2-D. */
int64_t fia_block_table_capacity(const fia_tensor *bt, int64_t block_size);

/* The block table's own checks: int32, 2-D, dim 0 at least B. */
fia_status fia_check_block_table(const fia_tensor *bt, int64_t B);

/* Validates the block table (fia_check_block_table) against the blocks each batch's kv length
 * kv_len[b] uses (ids in [0, blocks); cache_what names the cache in the message: "key", "the
 * cache") and copies those entries into a calloc'ed B x *cols table (*cols >= 1, unused entries
 * 0). */
fia_status fia_copy_block_table(const fia_tensor *bt, int64_t B, const int64_t *kv_len,
                                int64_t block_size, int64_t blocks, const char *cache_what,
                                int32_t **table, int64_t *cols);

/* Whether a mask tensor has the compressed [2048, 2048] shape (2, 3 or 4 dims). */
bool fia_is_compressed_mask(const fia_tensor *m);

/* softmax_lse: float32, [S, N, 1] (tnd, S = the query's T) or [B, N, S, 1]; heads_what and
 * seq_what name N and S in messages. Fills the data pointer and the element strides along
 * batch (0 for tnd), token and head. */
fia_status fia_parse_lse(const fia_tensor *l, bool tnd, int64_t B, int64_t N, int64_t S,
                         const char *heads_what, const char *seq_what, float **data,
                         int64_t *s_b, int64_t *s_t, int64_t *s_h);

#endif /* FIA_OPS_VALIDATE_H */
