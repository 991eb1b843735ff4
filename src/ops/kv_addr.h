/*
 * kv_addr.h - where a token's row lives in a KV / latent / indexer cache: the one addressing
 * shared by the readers (fused_infer_attention_score dense and MLA, lightning_indexer,
 * sparse_flash_attention) and the writers (scatter_update, scatter_nd_update,
 * gather_selection_kv_cache, the MLA prolog's cache write), so that a writer and a reader of
 * one cache can never disagree on an edge (NZ chunk width, block size, strides).
 *
 * A paged cache has blocks of block_size token rows:
 *   token tok of batch b    -> block block_table[b][tok / block_size], row tok % block_size
 *   flat slot (slot_mapping / cache_index) -> block slot / block_size, row slot % block_size
 * Element (head h, dim d) of row `row` of block blk is at element offset
 *   PA_BSND / BnBsH:  blk * s_blk + row * s_t + h * s_h + d
 *   PA_NZ (w > 0):    blk * s_blk + (d / w) * s_c + row * w + d % w   (w = 32 bytes of elements)
 * Dense caches use the batch stride as s_blk and the token's position as the row.
 */
#ifndef FIA_OPS_KV_ADDR_H
#define FIA_OPS_KV_ADDR_H

#include <stdint.h>

/* The strides of one cache view (elements). w == 0: rows are contiguous (BSND); w > 0: NZ. */
typedef struct fia_kv_view {
    int64_t s_blk, s_t, s_h, s_c, w;
} fia_kv_view;

typedef struct fia_kv_slot {
    int64_t blk, row;
} fia_kv_slot;

/* log2(block_size) when it is a power of two, else -1 (the shift of fia_kv_locate). */
static inline int fia_kv_shift(int64_t block_size) {
    if (block_size <= 0 || (block_size & (block_size - 1)) != 0) return -1;
    int s = 0;
    while ((INT64_C(1) << s) < block_size) s++;
    return s;
}

/* Block and row of token tok of batch b through a [B x cols] block table. */
static inline fia_kv_slot fia_kv_locate(const int32_t *table, int64_t cols, int64_t block_size,
                                        int shift, int64_t b, int64_t tok) {
    fia_kv_slot s;
    const int64_t col = shift >= 0 ? tok >> shift : tok / block_size;
    s.blk = table[b * cols + col];
    s.row = tok - col * block_size;
    return s;
}

/* Block and row of a flat slot (>= 0). */
static inline fia_kv_slot fia_kv_slot_of(int64_t slot, int64_t block_size, int shift) {
    fia_kv_slot s;
    s.blk = shift >= 0 ? slot >> shift : slot / block_size;
    s.row = slot - s.blk * block_size;
    return s;
}

/* Element offset of (row s, head h, dim 0): the start of the row (NZ: of its first chunk). */
static inline int64_t fia_kv_row_off(const fia_kv_view *v, fia_kv_slot s, int64_t h) {
    return s.blk * v->s_blk + s.row * (v->w ? v->w : v->s_t) + h * v->s_h;
}

/* Element offset of dim d of row s (head 0): NZ rows are split into chunks of w. */
static inline int64_t fia_kv_elem_off(const fia_kv_view *v, fia_kv_slot s, int64_t d) {
    if (!v->w) return s.blk * v->s_blk + s.row * v->s_t + d;
    return s.blk * v->s_blk + (d / v->w) * v->s_c + s.row * v->w + d % v->w;
}

#endif /* FIA_OPS_KV_ADDR_H */
