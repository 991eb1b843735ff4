/*
 * limits.h - every size limit of the operators, defined once (the public headers' contract
 * text quotes the same numbers: include/fia/attention.h, include/fia/sparse.h), and the work-item
 * cost model every scheduler balances with.
 */
#ifndef FIA_CORE_LIMITS_H
#define FIA_CORE_LIMITS_H

#include <stdint.h>

enum {
    FIA_MAX_BATCH = 65536,     /* B of every operator */
    FIA_MAX_BLOCK_SIZE = 1024, /* tokens per block of a paged cache */
    FIA_MAX_HEADS = 256,       /* N1, N2 of dense fused_infer_attention_score */
    FIA_MAX_LATENT_HEADS = 128, /* N1 of MLA and sparse_flash_attention (DeepSeek latent heads) */
    FIA_MAX_HEAD_DIM = 1024,   /* D, Dv of dense attention and SmallQ (the NPU: 512; any value up
                                * to it, no alignment: 576, the MLA absorbed width, included) */
    FIA_MAX_LI_HEAD_DIM = 512, /* D of the lightning indexer */
    FIA_MAX_SPARSE_BLOCK = 128, /* sparse_block_size of sparse_flash_attention */
    FIA_MAX_TOPK = 8192        /* sparse_count of the lightning indexer */
};

/* The longest sequence (kv length, cache capacity) any operator accepts, and the default of
 * pre_tokens / next_tokens (no band limit). */
#define FIA_MAX_LEN (INT64_C(2147483647))
/* The most work items one plan may hold. */
#define FIA_MAX_ITEMS (INT64_C(1) << 24)

/* The work-item cost model (FlashMLA's): the work, plus a fixed overhead per query row (state
 * setup, normalisation, output) and per item (scheduling, the first tile's misses). Items are
 * handed out largest cost first. */
enum { FIA_COST_PER_ROW = 16, FIA_COST_PER_ITEM = 64 };

/* The cost of an item of rows query rows each reading keys keys. */
static inline int64_t fia_cost_tile(int64_t rows, int64_t keys) {
    return rows * keys + rows * FIA_COST_PER_ROW + FIA_COST_PER_ITEM;
}

#endif /* FIA_CORE_LIMITS_H */
