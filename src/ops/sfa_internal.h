/*
 * sfa_internal.h - the plan of sparse_flash_attention / kv_quant_sparse_flash_attention, shared by
 * its validation and scheduling half (sparse_flash_attention.c) and its execution half
 * (sfa_exec.c). Nothing else uses it. The work decomposition is described at the top of
 * sparse_flash_attention.c; items, split groups, partial slots, the merge, the per-thread scratch
 * and the cache addressing are the shared framework's (src/sched/).
 */
#ifndef FIA_OPS_SFA_INTERNAL_H
#define FIA_OPS_SFA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/limits.h"
#include "core/plan.h"
#include "fia.h"
#include "kernels/kernels.h"
#include "kernels/sfa_kernels.h"
#include "sched/kvcache.h"
#include "sched/worklist.h"

enum {
    SFA_DN = 512,  /* k_nope / value / output width */
    SFA_DR = 64,   /* rope width */
    SFA_DK = 576,  /* logit width: nope + rope */
    SFA_LDV = 528, /* leading dim of the V panel and the O state (512 padded against aliasing) */
    SFA_TILE = 64,            /* selected tokens per K/V tile */
    SFA_SLICE_TOKENS = 512,   /* nominal tokens per slice */
    SFA_MIN_HEAD_BLOCK = 16,  /* head blocks are split down to this many heads at most */
    SFA_MERGE_HEADS = 16      /* heads per merge task */
};
#define SFA_MAX_PARTIAL_BYTES (INT64_C(256) << 20)
/* Split items rescan the entries before their slice for the -1: at most this many reads. */
#define SFA_MAX_PRESCAN (INT64_C(1) << 24)

/* A float32 output with one value per (batch, token, head): softmax_lse / _max / _sum. */
typedef struct sfa_vals {
    float *data; /* NULL: not written */
    int64_t s_b, s_t, s_h;
} sfa_vals;

typedef struct sfa_plan {
    fia_plan base;
    const fia_kernels *kern;
    const fia_sfa_kernels *skern;
    bool c8;
    bool amx;    /* bf16 query and cache on AMX tiles (kernels/amx.h, sfa_exec.c) */
    fia_vis vis; /* sparse_mode 0: all keys, 3: causal bottom-right (sched/kvcache.h) */
    bool tnd;    /* layout_query TND */
    int64_t B, N1, K, sbs, nslices, slice_entries, num_rows, head_block, num_threads;
    float scale;

    fia_seq q, qr, k, kr, o; /* qr / kr unused for C8 (the rope is inside the row) */
    const char *idx;
    int64_t idx_s_b, idx_s_t, idx_s_e;
    sfa_vals lse, smax, ssum;
    const float *sinks; /* NULL: none; else element h * sinks_s is head h's sink */
    int64_t sinks_s;

    fia_pages pages;      /* the block table (table NULL: dense caches) */
    fia_kv_view kv, krv;  /* k / kr slot addressing (fia_seq_kv_view) */
    int32_t *block_table; /* owned copy behind pages.table */
    fia_batch *batches;
    /* items: b, head block [h0, h0 + nh), query position q0 (qn 1; ZERO items: qn rows), index
     * entries [kv0, kv1); split groups: one per (row, head block), a chunk per slice */
    fia_worklist work;
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
    /* AMX C8 (sfa_exec.c sfa_step_amx_c8): per head, the running max before the step, the
     * power-of-two exponent k of the accumulator (o holds the state's o times c = e^(m - k ln2)),
     * 1 / c, and per padded row the step's accumulator factor and P scale */
    float *c8_mold, *c8_inv, *c8_f, *c8_c;
    double *c8_k;
} sfa_scratch;

/* Sizes (base == NULL) or carves one thread's scratch; returns its bytes. */
size_t fia_sfa_scratch_carve(const sfa_plan *p, char *base, sfa_scratch *s);
/* Sizes (ws == NULL) or lays out the workspace: num_threads scratch areas (core/plan.h
 * fia_thread_scratch), then the split partials (sched/splitkv.h). Returns the bytes used. */
size_t fia_sfa_workspace_layout(const sfa_plan *p, void *ws, float **partials);
/* Runs the plan (sfa_exec.c). */
void fia_sfa_execute(fia_plan *plan, void *workspace);

#endif /* FIA_OPS_SFA_INTERNAL_H */
