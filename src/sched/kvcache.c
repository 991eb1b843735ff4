/*
 * kvcache.c - the layout parsers and the row pointers of the cache addressing (kvcache.h).
 */
#include <string.h>

#include "core/limits.h"
#include "core/status.h"
#include "core/tensor.h"
#include "sched/kvcache.h"

void fia_seq_row_ptrs(const fia_seq *s, const fia_pages *pg, int64_t b, int64_t tok0, int64_t h,
                      int64_t t0, int64_t n, const void **ptrs) {
    for (int64_t j = 0; j < n;) {
        int64_t run;
        const char *row = s->base + fia_seq_offset(s, pg, b, tok0, h, t0 + j, &run) * s->esize;
        if (run > n - j) run = n - j;
        ptrs[j] = row;
        if (run > 1) {
            const int64_t step = s->s_t * s->esize;
            for (int64_t k = 1; k < run; k++) ptrs[j + k] = row + k * step;
        }
        j += run;
    }
}

/* Where the layouts other than BSH keep their dims: the rank, then the dim index of the batch
 * (PA_BSND: the blocks; -1: none, TND and NTD take it from the lengths), the tokens, the heads
 * and the head dim. A rank of 0: not a tensor layout. */
static const struct {
    int8_t nd, b, t, h, d;
} fia_seq_layouts[] = {
    [FIA_LAYOUT_BSND] = {4, 0, 1, 2, 3}, [FIA_LAYOUT_BNSD] = {4, 0, 2, 1, 3},
    [FIA_LAYOUT_PA_BSND] = {4, 0, 1, 2, 3}, [FIA_LAYOUT_TND] = {3, -1, 0, 1, 2},
    [FIA_LAYOUT_NTD] = {3, -1, 1, 0, 2},
};

/* Reads [B, S, N, D] of a tensor laid out as layout (BSH, BSND, BNSD, PA_BSND, TND, NTD) with N
 * heads and fills its addressing. */
fia_status fia_seq_parse(const fia_tensor *t, const char *name, fia_layout layout, int64_t heads,
                         fia_seq *seq, fia_dims *dims) {
    const int64_t *sh = t->shape, *st = t->strides;
    memset(seq, 0, sizeof *seq);
    seq->base = fia_tensor_ptr(t);
    seq->dtype = t->dtype;
    seq->esize = (int64_t)fia_dtype_size(t->dtype);
    if (layout == FIA_LAYOUT_BSH) {
        FIA_TRY(fia_tensor_check_ndim(t, name, 3));
        if (sh[2] % heads != 0 || sh[2] == 0)
            return FIA_INVALID("%s dim 2 (H) is %lld, not a positive multiple of the %lld heads",
                               name, (long long)sh[2], (long long)heads);
        *dims = (fia_dims){sh[0], sh[1], heads, sh[2] / heads};
        seq->s_b = st[0];
        seq->s_t = st[1];
        seq->s_h = dims->D; /* the innermost stride is 1 wherever it matters */
        return FIA_STATUS_SUCCESS;
    }
    const size_t n = sizeof fia_seq_layouts / sizeof fia_seq_layouts[0];
    if ((unsigned)layout >= n || fia_seq_layouts[layout].nd == 0)
        return FIA_INVALID("%s layout %d is not a tensor layout", name, (int)layout);
    const int b = fia_seq_layouts[layout].b, tk = fia_seq_layouts[layout].t;
    const int h = fia_seq_layouts[layout].h, d = fia_seq_layouts[layout].d;
    FIA_TRY(fia_tensor_check_ndim(t, name, fia_seq_layouts[layout].nd));
    FIA_TRY(fia_tensor_check_dim(t, name, h, heads, "the head count"));
    const bool paged = layout == FIA_LAYOUT_PA_BSND;
    if (paged && (sh[1] < 1 || sh[1] > FIA_MAX_BLOCK_SIZE))
        return FIA_INVALID("%s dim 1 (block_size) is %lld, must be 1..%d", name,
                           (long long)sh[1], FIA_MAX_BLOCK_SIZE);
    *dims = (fia_dims){b >= 0 ? sh[b] : 0, sh[tk], sh[h], sh[d]};
    *(paged ? &seq->s_blk : &seq->s_b) = b >= 0 ? st[b] : 0;
    seq->s_t = st[tk];
    seq->s_h = st[h];
    return FIA_STATUS_SUCCESS;
}

/* Paged cache: BnBsH [blocks, block_size, N2*D] or BnNBsD [blocks, N2, block_size, D]. */
fia_status fia_seq_parse_paged(const fia_tensor *t, const char *name, int64_t heads,
                               int64_t block_size, fia_seq *seq, int64_t *blocks, int64_t *dim) {
    const int64_t *sh = t->shape, *st = t->strides;
    memset(seq, 0, sizeof *seq);
    seq->base = fia_tensor_ptr(t);
    seq->dtype = t->dtype;
    seq->esize = (int64_t)fia_dtype_size(t->dtype);
    if (t->ndim == 3) {
        FIA_TRY(fia_tensor_check_dim(t, name, 1, block_size, "block_size"));
        if (sh[2] % heads != 0 || sh[2] == 0)
            return FIA_INVALID("%s dim 2 (H) is %lld, not a positive multiple of the %lld kv heads",
                               name, (long long)sh[2], (long long)heads);
        *dim = sh[2] / heads;
        seq->s_blk = st[0];
        seq->s_t = st[1];
        seq->s_h = *dim; /* the innermost stride is 1 wherever it matters */
    } else if (t->ndim == 4) {
        FIA_TRY(fia_tensor_check_dim(t, name, 1, heads, "num_key_value_heads"));
        FIA_TRY(fia_tensor_check_dim(t, name, 2, block_size, "block_size"));
        *dim = sh[3];
        seq->s_blk = st[0];
        seq->s_h = st[1];
        seq->s_t = st[2];
    } else {
        return FIA_INVALID("%s has %d dims: a paged cache is BnBsH (3 dims) or BnNBsD (4 dims)",
                           name, (int)t->ndim);
    }
    *blocks = sh[0];
    return FIA_STATUS_SUCCESS;
}
