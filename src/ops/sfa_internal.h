/*
 * sfa_internal.h - the plan of sparse_flash_attention / kv_quant_sparse_flash_attention, shared by
 * its validation and scheduling half (sparse_flash_attention.c) and its execution half
 * (sfa_exec.c). Nothing else uses it. The work decomposition is described at the top of
 * sparse_flash_attention.c.
 */
#ifndef FIA_OPS_SFA_INTERNAL_H
#define FIA_OPS_SFA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/plan.h"
#include "core/limits.h"
#include "fia.h"
#include "kernels/kernels.h"
#include "kernels/sfa_kernels.h"

enum {
    SFA_DN = 512,  /* k_nope / value / output width */
    SFA_DR = 64,   /* rope width */
    SFA_DK = 576,  /* logit width: nope + rope */
    SFA_LDV = 528, /* leading dim of the V panel and the O state (512 padded against aliasing) */
    SFA_TILE = 64,            /* selected tokens per K/V tile */
    SFA_SLICE_TOKENS = 512,   /* nominal tokens per slice */
    SFA_MIN_HEAD_BLOCK = 16   /* head blocks are split down to this many heads at most */
};
#define SFA_MAX_PARTIAL_BYTES (INT64_C(256) << 20)
/* Split items rescan the entries before their slice for the -1: at most this many reads. */
#define SFA_MAX_PRESCAN (INT64_C(1) << 24)

/* Addressing of a [batch, token, head, dim] view (elements, unit innermost stride): element
 * (b, t, h, d) is at base + b*s_b + t*s_t + h*s_h + d; paged caches use s_blk for the block. */
typedef struct sfa_seq {
    const char *base;
    fia_dtype dtype;
    int64_t esize;
    int64_t s_b, s_t, s_h, s_blk;
} sfa_seq;

typedef struct sfa_batch {
    int64_t sq, skv;
    int64_t kv_tok0; /* TND kv: first token of the batch */
} sfa_batch;

/* One output row (query token). */
typedef struct sfa_row {
    int32_t b;
    int32_t active; /* nonzero: has index entries and a positive threshold */
    int64_t t;      /* token coordinate in the query / output / indices / lse view */
    int64_t i;      /* position within the batch */
    int64_t thr;    /* visible bound: tokens < thr may be selected */
} sfa_row;

typedef struct sfa_item {
    int64_t row;
    int32_t h0, nh;
    int32_t s0, s1;  /* slices [s0, s1) */
    int32_t group;   /* -1: writes the output; else its partial goes to slot group*nslices+s0 */
    int32_t zero;    /* writes 0 / +inf for every head of the row */
    int64_t cost;
} sfa_item;

typedef struct sfa_group {
    int64_t row;
    int32_t h0, nh;
} sfa_group;

typedef struct sfa_plan {
    fia_plan base;
    const fia_kernels *kern;
    const fia_sfa_kernels *skern;
    bool c8;
    bool amx;            /* bf16 query and cache on AMX tiles (kernels/amx.h, sfa_exec.c) */
    int64_t B, N1, K, sbs, nslices, slice_entries;
    float scale;

    sfa_seq q, qr, k, kr, o; /* qr / kr unused for C8 (the rope is inside the row) */
    const char *idx;
    int64_t idx_s_b, idx_s_t, idx_s_e;
    float *lse;
    int64_t lse_s_b, lse_s_t, lse_s_h;
    float *smax, *ssum; /* softmax_max / softmax_sum (NULL: not written) */
    int64_t smax_s_b, smax_s_t, smax_s_h, ssum_s_b, ssum_s_t, ssum_s_h;
    const float *sinks; /* NULL: none; else element h * sinks_s is head h's sink */
    int64_t sinks_s;

    bool paged;
    int64_t block_size, bt_cols;
    int bs_shift;        /* log2(block_size) when a power of two, else -1 */
    int32_t *block_table;

    sfa_batch *batches;
    sfa_row *rows;
    int64_t num_rows;
    sfa_item *items;
    int64_t num_items;
    sfa_group *groups;
    int64_t num_groups;
    int64_t head_block;
    int64_t num_threads;
    size_t scratch_bytes;
    int64_t partial_floats;
} sfa_plan;

/* Per-thread scratch. */
typedef struct sfa_scratch {
    float *q;            /* head_block x SFA_DK, pre-scaled */
    float *kt;           /* SFA_DK x SFA_TILE: K^T panel */
    float *vp;           /* SFA_TILE x SFA_LDV: V panel (k_nope in fp32) */
    float *rp;           /* SFA_TILE x SFA_DR: rope rows */
    float *s;            /* head_block x SFA_TILE */
    float *o, *m, *l, *alpha;       /* slice state */
    float *ao, *am, *al;            /* the row's merged state */
    const void **nope[2], **rope[2]; /* row pointers of the current and the next tile */
    bool ended;                      /* the last slice run met the row's -1 */
    uint16_t *qt;                    /* AMX: the packed query of the head block */
    void *amx;                       /* AMX: kernel scratch */
} sfa_scratch;

/* Sizes (ws == NULL) or carves one thread's scratch; returns its bytes. */
size_t fia_sfa_scratch_carve(const sfa_plan *p, char *base, sfa_scratch *s);
/* Sizes (ws == NULL) or lays out the workspace: num_threads scratch areas, then the split
 * partials. Returns the bytes used. */
size_t fia_sfa_workspace_layout(const sfa_plan *p, void *ws, float **partials);
/* Runs the plan (sfa_exec.c). */
void fia_sfa_execute(fia_plan *plan, void *workspace);

#endif /* FIA_OPS_SFA_INTERNAL_H */
