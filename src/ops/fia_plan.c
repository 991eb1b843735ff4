/*
 * fia_plan.c - fused_infer_attention_score, dense path: validation and scheduling (the plan
 * phase). The public entry (fia.c) dispatches here when neither query_rope nor key_rope is set.
 *
 * validate: every tensor, shape, dtype, length, block id and parameter is checked against the
 *           contract in fia.h before anything else happens; the first violation is reported.
 * plan:     per-batch actual lengths, the copied block table, the mask geometry, then the work
 *           list (see fia_internal.h for the decomposition) and the workspace layout.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/limits.h"
#include "core/status.h"
#include "core/params.h"
#include "core/tensor.h"
#include "kernels/gqa_amx.h"
#include "ops/fia_internal.h"
#include "sched/tensor_spec.h"

enum {
    FIA_KV_TILE = 64,     /* keys per K/V tile */
    FIA_KV_TILE_AMX = 128, /* keys per K/V tile of plans with AMX prefill tiles */
    FIA_KV_CHUNK = 2048,  /* keys per split-KV chunk (a multiple of FIA_KV_TILE) */
    FIA_SPLIT_TILE_BYTES = 512 * 1024, /* K+V bytes of one step of a split item, current + next */
    FIA_TILE_ROWS = 256,  /* target query rows per tile */
    FIA_MERGE_MIN_ROWS = 4 /* rows per merge task at least */
};
#define FIA_BAND_LIMIT (INT64_C(1) << 40)


/* Full-form mask: [S1m, S2m], [B|1, S1m, S2m], [B|1, 1, S1m, S2m]; decode also [B, S2m]. */
static fia_status fia_parse_full_mask(fia_attn_plan *p, const fia_tensor *m, bool decode,
                                      int64_t max_sq, int64_t max_skv) {
    const int64_t *sh = m->shape, *st = m->strides;
    int64_t mb = 1, s1 = 0, s2 = 0;
    switch (m->ndim) {
    case 2:
        if (decode && sh[0] == p->B && max_sq <= 1) {
            mb = p->B; /* [B, S2m]: one row per batch */
            s1 = 1;
            p->mask_s_b = st[0];
            p->mask_s_i = 0;
        } else {
            s1 = sh[0];
            p->mask_s_b = 0;
            p->mask_s_i = st[0];
        }
        s2 = sh[1];
        p->mask_s_j = st[1];
        break;
    case 3:
        mb = sh[0];
        s1 = sh[1];
        s2 = sh[2];
        p->mask_s_b = st[0];
        p->mask_s_i = st[1];
        p->mask_s_j = st[2];
        break;
    case 4:
        if (sh[1] != 1)
            return FIA_INVALID("atten_mask dim 1 is %lld, must be 1 ([B, 1, S1, S2])",
                               (long long)sh[1]);
        mb = sh[0];
        s1 = sh[2];
        s2 = sh[3];
        p->mask_s_b = st[0];
        p->mask_s_i = st[2];
        p->mask_s_j = st[3];
        break;
    default:
        return FIA_INVALID("atten_mask has %d dims, expected 2, 3 or 4", (int)m->ndim);
    }
    if (mb != 1 && mb != p->B)
        return FIA_INVALID("atten_mask dim 0 is %lld, batch is %lld (or use 1)", (long long)mb,
                           (long long)p->B);
    if (mb == 1) p->mask_s_b = 0;
    if (s1 < max_sq)
        return FIA_INVALID("atten_mask query dim is %lld, the longest query is %lld",
                           (long long)s1, (long long)max_sq);
    if (s2 < max_skv)
        return FIA_INVALID("atten_mask key dim is %lld, the longest kv is %lld", (long long)s2,
                           (long long)max_skv);
    p->mask = fia_tensor_ptr(m);
    return FIA_STATUS_SUCCESS;
}

static fia_status fia_parse_antiquant(fia_attn_plan *p, const fia_tensor *scale,
                                      const fia_tensor *offset, int32_t mode, int64_t max_skv) {
    const int64_t *sh = scale->shape;
    if (!fia_dtype_is_float(scale->dtype))
        return FIA_INVALID("antiquant_scale dtype is %s, must be a float dtype",
                           fia_dtype_name(scale->dtype));
    if (scale->ndim < 1 || sh[0] != 2)
        return FIA_INVALID("antiquant_scale dim 0 is %lld, must be 2 (K and V)",
                           scale->ndim < 1 ? -1LL : (long long)sh[0]);
    if (mode == 0) {
        if (scale->ndim == 1) {
            p->aq = FIA_AQ_TENSOR;
        } else {
            if (p->D != p->Dv)
                return FIA_INVALID("per-channel antiquant needs equal key and value head dims, "
                                   "got %lld and %lld", (long long)p->D, (long long)p->Dv);
            const bool ok = (scale->ndim == 4 && sh[1] == p->N2 && sh[2] == 1 && sh[3] == p->D) ||
                            (scale->ndim == 3 && sh[1] == p->N2 && sh[2] == p->D) ||
                            (scale->ndim == 2 && sh[1] == p->N2 * p->D);
            if (!ok)
                return FIA_INVALID("antiquant_scale (mode 0) must be [2], [2, %lld, 1, %lld], "
                                   "[2, %lld, %lld] or [2, %lld]; it has %d dims, dim 1 is %lld",
                                   (long long)p->N2, (long long)p->D, (long long)p->N2,
                                   (long long)p->D, (long long)(p->N2 * p->D), (int)scale->ndim,
                                   scale->ndim > 1 ? (long long)sh[1] : -1LL);
            p->aq = FIA_AQ_CHANNEL;
        }
    } else if (mode == 1) {
        if (scale->ndim != 3)
            return FIA_INVALID("antiquant_scale (mode 1, per token) must be [2, B, S2], it has %d "
                               "dims", (int)scale->ndim);
        if (sh[1] != p->B)
            return FIA_INVALID("antiquant_scale dim 1 is %lld, batch is %lld", (long long)sh[1],
                               (long long)p->B);
        if (sh[2] < max_skv)
            return FIA_INVALID("antiquant_scale dim 2 is %lld, the longest kv is %lld",
                               (long long)sh[2], (long long)max_skv);
        p->aq = FIA_AQ_TOKEN;
    } else {
        return FIA_INVALID("antiquant_mode is %d, must be 0 (per channel) or 1 (per token)",
                           (int)mode);
    }
    p->aq_scale = *scale;
    memset(&p->aq_offset, 0, sizeof p->aq_offset);
    if (offset) {
        if (!fia_dtype_is_float(offset->dtype))
            return FIA_INVALID("antiquant_offset dtype is %s, must be a float dtype",
                               fia_dtype_name(offset->dtype));
        if (offset->ndim != scale->ndim)
            return FIA_INVALID("antiquant_offset has %d dims, antiquant_scale has %d",
                               (int)offset->ndim, (int)scale->ndim);
        for (int32_t i = 0; i < scale->ndim; i++)
            if (offset->shape[i] != sh[i])
                return FIA_INVALID("antiquant_offset dim %d is %lld, antiquant_scale has %lld",
                                   (int)i, (long long)offset->shape[i], (long long)sh[i]);
        p->aq_offset = *offset;
    }
    return FIA_STATUS_SUCCESS;
}

static void fia_attn_destroy(fia_plan *plan) {
    fia_attn_plan *p = (fia_attn_plan *)plan;
    free(p->block_table);
    free(p->batches);
    fia_worklist_free(&p->work);
    free(p);
}

/* Visible key range of query positions [q0, q0 + qn) of batch bi (lo, hi are monotonic in the
 * position for every mode, so the first row gives the low end and the last the high end). */
static void fia_tile_kv_range(const fia_attn_plan *p, const fia_batch *bi, int64_t q0, int64_t qn,
                              int64_t *kv0, int64_t *kv1) {
    int64_t lo, hi, unused;
    fia_row_range(p, bi, q0, &lo, &unused);
    fia_row_range(p, bi, q0 + qn - 1, &unused, &hi);
    *kv0 = lo;
    *kv1 = hi + 1 > lo ? hi + 1 : lo;
}

/* Whether request b is split along its keys (its query fits one tile and sees more than one
 * chunk); *kv0 / *kv1 is then its key range. Depends on the request alone. */
static bool fia_request_split(const fia_attn_plan *p, const fia_batch *bi, int64_t *kv0,
                              int64_t *kv1) {
    if (bi->sq < 1 || bi->sq > p->tile_pos) return false;
    fia_tile_kv_range(p, bi, 0, bi->sq, kv0, kv1);
    return *kv1 - *kv0 > p->kv_chunk;
}

/* Estimated makespan of items of the given costs on threads workers taking the largest first
 * (the order fia_worklist_sort gives them); sorts costs. */
static int fia_cost_desc(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x > y ? -1 : x < y;
}
static int64_t fia_makespan(int64_t *costs, int64_t n, int64_t *load, int64_t threads) {
    qsort(costs, (size_t)n, sizeof *costs, fia_cost_desc);
    for (int64_t t = 0; t < threads; t++) load[t] = 0;
    int64_t span = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t t = 1; t < threads; t++)
            if (load[t] < load[best]) best = t;
        load[best] += costs[i];
        if (load[best] > span) span = load[best];
    }
    return span;
}

/* KV heads per split item. Token-major caches (BSH, BSND, TND, BnBsH) keep the rows of all KV
 * heads of a token together, so one item takes several heads of a chunk and reads memory
 * sequentially: at most as many as keep one step (this tile and the prefetched next one) within
 * FIA_SPLIT_TILE_BYTES of L2. Fewer heads per item make more, smaller items (balance) but read
 * each token's row in parts, which streams slower (GQA 32/8 decode kv4k, two threads: items of
 * 2 of the 8 heads took 1.24x the time of whole rows, 4 heads 1.12x): the block is the one whose
 * items, taken largest first by the threads, finish first when an item of a partial row is
 * charged FIA_PART_ROW_COST / 16 of its keys; ties go to the larger block.
 * Head-major caches (BNSD, BnNBsD) take one head per item. The choice never changes a result:
 * every head is computed the same way whichever item holds it. */
enum { FIA_PART_ROW_COST = 18, FIA_BLOCK_PLAN_ITEMS = 1 << 14 };
static int64_t fia_split_head_block(const fia_attn_plan *p) {
    if (!p->token_major) return 1;
    const int64_t step_bytes = 2 * p->kv_tile * (p->D * p->k.esize + p->Dv * p->v.esize);
    int64_t cap = FIA_SPLIT_TILE_BYTES / step_bytes;
    cap = cap < 1 ? 1 : cap > p->N2 ? p->N2 : cap;
    int64_t chunks = 0;
    for (int64_t b = 0; b < p->B; b++) {
        int64_t kv0, kv1;
        if (fia_request_split(p, &p->batches[b], &kv0, &kv1))
            chunks += (kv1 - 1) / p->kv_chunk - kv0 / p->kv_chunk + 1;
    }
    const int64_t threads = p->num_threads < 1 ? 1 : p->num_threads;
    /* many items balance whatever the block; a single thread needs no balance */
    if (chunks == 0 || threads == 1 || chunks * p->N2 > FIA_BLOCK_PLAN_ITEMS) return cap;
    int64_t *costs = malloc((size_t)(chunks * p->N2 + threads) * sizeof *costs);
    if (!costs) return cap;
    int64_t *load = costs + chunks * p->N2;
    int64_t best = cap, best_span = INT64_MAX;
    for (int64_t hb = cap;; hb = (hb + 1) / 2) {
        int64_t n = 0;
        for (int64_t b = 0; b < p->B; b++) {
            int64_t kv0, kv1;
            if (!fia_request_split(p, &p->batches[b], &kv0, &kv1)) continue;
            for (int64_t c = kv0 / p->kv_chunk; c <= (kv1 - 1) / p->kv_chunk; c++) {
                const int64_t a = c * p->kv_chunk > kv0 ? c * p->kv_chunk : kv0;
                const int64_t e = (c + 1) * p->kv_chunk < kv1 ? (c + 1) * p->kv_chunk : kv1;
                for (int64_t n2 = 0; n2 < p->N2; n2 += hb) {
                    const int64_t nh = p->N2 - n2 < hb ? p->N2 - n2 : hb;
                    costs[n++] = (e - a) * nh * (nh < p->N2 ? FIA_PART_ROW_COST : 16);
                }
            }
        }
        const int64_t span = fia_makespan(costs, n, load, threads);
        if (span < best_span) {
            best_span = span;
            best = hb;
        }
        if (hb == 1) break;
    }
    free(costs);
    return best;
}

/* Builds the work list from the batches: a request whose query fits one tile and sees more than
 * one chunk becomes split groups of hb kv heads; every other request one item per (kv head,
 * query tile); rows past the actual query length (and, TND, past the last batch) a ZERO item. */
static fia_status fia_attn_schedule(fia_attn_plan *p) {
    const int64_t tp = p->tile_pos, hb = fia_split_head_block(p);
    /* Heads per item on the heads path (fia_heads_path): as many as keep one decode step
     * (kv_tile / 2 keys, fia_exec.c) of K and V, this one and the prefetched next, within
     * FIA_SPLIT_TILE_BYTES of L2, and at most the score tile's rows. D 128 f16: 16 heads
     * (MHA 32/32 decode, two threads, busy machine: kv64k 67 ms against 72 ms for items of
     * 8 heads read head by head and 76-78 ms for all 32 heads per item). */
    const int64_t threads = p->num_threads < 1 ? 1 : p->num_threads;
    const int64_t row_step = 2 * (p->kv_tile / 2) * (p->D * p->k.esize + p->Dv * p->v.esize);
    int64_t heads_block = FIA_SPLIT_TILE_BYTES / row_step;
    if (heads_block > p->N2) heads_block = p->N2;
    if (heads_block > p->tile_rows) heads_block = p->tile_rows;
    if (heads_block < 1) heads_block = 1;
    int64_t tile_block = (p->N2 + threads - 1) / threads;
    if (tile_block > heads_block) tile_block = heads_block;
    fia_worklist *wl = &p->work;
    p->state_rows = p->tile_rows;
    for (int pass = 0; pass < 2; pass++) {
        fia_worklist_begin(wl, pass);
        for (int64_t b = 0; b < p->B; b++) {
            const fia_batch *bi = &p->batches[b];
            int64_t kv0, kv1;
            if (fia_request_split(p, bi, &kv0, &kv1)) {
                const int64_t rows = bi->sq * p->G;
                /* MHA decode rows on the heads kernels read token rows in heads_block parts */
                const int64_t hbr = fia_heads_path(p, rows) ? heads_block : hb;
                for (int64_t n2 = 0; n2 < p->N2; n2 += hbr) {
                    const int64_t nh = p->N2 - n2 < hbr ? p->N2 - n2 : hbr;
                    if (nh * rows > p->state_rows) p->state_rows = nh * rows;
                    fia_worklist_split(wl, b, n2, nh, 0, bi->sq, kv0, kv1, p->kv_chunk, rows, p->Dv);
                }
            } else {
                const int64_t ntiles = (bi->sq + tp - 1) / tp;
                /* one head per item, or for MHA decode rows on the heads kernels (one tile)
                 * blocks of about N2 / threads heads (at most heads_block): each item reads
                 * a large part of every token row */
                const int64_t tb = ntiles == 1 && fia_heads_path(p, bi->sq * p->G) ? tile_block : 1;
                for (int64_t n2 = 0; n2 < p->N2; n2 += tb)
                    for (int64_t t = 0; t < ntiles; t++) {
                        const int64_t q0 = t * tp, qn = bi->sq - q0 < tp ? bi->sq - q0 : tp;
                        const int64_t nh = p->N2 - n2 < tb ? p->N2 - n2 : tb;
                        if (nh * qn * p->G > p->state_rows) p->state_rows = nh * qn * p->G;
                        fia_tile_kv_range(p, bi, q0, qn, &kv0, &kv1);
                        fia_worklist_tile(wl, b, n2, nh, q0, qn, kv0, kv1, qn * p->G);
                    }
            }
            const int64_t rows_alloc = !p->tnd ? p->S1 : b + 1 == p->B ? p->S1 - bi->q_tok0 : bi->sq;
            if (rows_alloc > bi->sq)
                fia_worklist_zero(wl, b, bi->sq, rows_alloc - bi->sq, (rows_alloc - bi->sq) * p->N1);
            FIA_TRY(fia_worklist_check(wl));
        }
        FIA_TRY(fia_worklist_end(wl));
    }
    fia_worklist_sort(wl);
    /* Merge tasks: a few groups (a decode request of whole-row items is one) are merged in row
     * blocks, about two per thread, at least FIA_MERGE_MIN_ROWS rows each. */
    int64_t min_rows = INT64_MAX;
    for (int64_t g = 0; g < wl->num_groups; g++) {
        const int64_t r = wl->groups[g].qn * p->G * wl->groups[g].nh;
        if (r < min_rows) min_rows = r;
    }
    int64_t split = wl->num_groups ? (2 * p->num_threads + wl->num_groups - 1) / wl->num_groups : 1;
    if (wl->num_groups && split > min_rows / FIA_MERGE_MIN_ROWS) split = min_rows / FIA_MERGE_MIN_ROWS;
    p->merge_split = split < 1 ? 1 : split;
    return FIA_STATUS_SUCCESS;
}

/* The tensors of the dense path (softmax_lse: checked when softmax_lse_flag is set). */
#define FIA_T(m) offsetof(fia_fused_infer_attention_score_tensors, m)
static const fia_tensor_spec fia_dense_tensors[] = {
    {"query", FIA_T(query), FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, FIA_DT_FLOAT,
     "float16, bfloat16 or float32", -1, 0, NULL},
    {"key", FIA_T(key), FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, FIA_DT_FLOAT | FIA_DT(INT8),
     "float16, bfloat16, float32 or int8", -1, 0, NULL},
    {"value", FIA_T(value), FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, 0, NULL, 1, 0, NULL},
    {"attention_out", FIA_T(attention_out), FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, 0, NULL, 0,
     0, NULL},
    {"atten_mask", FIA_T(atten_mask), 0, 0, NULL, -1, 0, NULL},
    {"block_table", FIA_T(block_table), 0, 0, NULL, -1, 0, NULL},
    {"antiquant_scale", FIA_T(antiquant_scale), 0, 0, NULL, -1, 0, NULL},
    {"antiquant_offset", FIA_T(antiquant_offset), 0, 0, NULL, -1, 0, NULL},
};
#undef FIA_T

/* Key and value: a paged cache (block_table given) or dense views in in_layout; fills p->k, p->v,
 * p->D / p->Dv, the paged flags and, dense, *kv_S; paged, *blocks. */
static fia_status fia_attn_parse_kv(fia_attn_plan *p, const fia_fused_infer_attention_score_tensors *t,
                                    const fia_fused_infer_attention_score_params *prm,
                                    fia_layout in_layout, const fia_dims *qdp, int64_t *kv_S_out,
                                    int64_t *blocks_out) {
    const fia_dims qd = *qdp;
    const int64_t N2 = p->N2, B = p->B;
    const bool tnd = p->tnd;
    int64_t kv_S = 0, blocks = 0;
    p->paged = t->block_table != NULL;
    p->token_major = p->paged ? t->key->ndim == 3
                              : in_layout != FIA_LAYOUT_BNSD && in_layout != FIA_LAYOUT_NTD;
    if (p->paged) {
        const int64_t bs = prm->block_size;
        if (bs < 1 || bs > FIA_MAX_BLOCK_SIZE)
            return FIA_INVALID("block_size is %lld, must be 1..%d with a block_table", (long long)bs,
                               FIA_MAX_BLOCK_SIZE);
        p->pages.block_size = bs;
        int64_t kblocks, vblocks;
        FIA_TRY(fia_seq_parse_paged(t->key, "key", N2, bs, &p->k, &kblocks, &p->D));
        if (p->D != qd.D)
            return FIA_INVALID("key head dim is %lld, query has %lld", (long long)p->D, (long long)qd.D);
        FIA_TRY(fia_seq_parse_paged(t->value, "value", N2, bs, &p->v, &vblocks, &p->Dv));
        if (t->value->ndim != t->key->ndim)
            return FIA_INVALID("value has %d dims, key has %d", (int)t->value->ndim, (int)t->key->ndim);
        if (vblocks != kblocks)
            return FIA_INVALID("value dim 0 (blocks) is %lld, key has %lld", (long long)vblocks,
                               (long long)kblocks);
        blocks = kblocks;
    } else {
        fia_dims kd, vd;
        FIA_TRY(fia_seq_parse(t->key, "key", in_layout, N2, &p->k, &kd));
        FIA_TRY(fia_seq_parse(t->value, "value", in_layout, N2, &p->v, &vd));
        if (kd.D != qd.D)
            return FIA_INVALID("key head dim is %lld, query has %lld", (long long)kd.D, (long long)qd.D);
        if (!tnd && kd.B != B)
            return FIA_INVALID("key dim 0 (batch) is %lld, query has %lld", (long long)kd.B, (long long)B);
        if (!tnd && vd.B != B)
            return FIA_INVALID("value dim 0 (batch) is %lld, query has %lld", (long long)vd.B, (long long)B);
        if (vd.S != kd.S)
            return FIA_INVALID("value sequence dim is %lld, key has %lld", (long long)vd.S, (long long)kd.S);
        p->Dv = vd.D;
        kv_S = kd.S;
    }
    if (p->Dv < 1 || p->Dv > FIA_MAX_HEAD_DIM)
        return FIA_INVALID("value head dim is %lld, must be 1..%d", (long long)p->Dv, FIA_MAX_HEAD_DIM);

    *kv_S_out = kv_S;
    *blocks_out = blocks;
    return FIA_STATUS_SUCCESS;
}

/* The mask geometry: sparse_mode, the atten_mask form it takes, the band (pre/next tokens). */
static fia_status fia_attn_parse_mask(fia_attn_plan *p, const fia_fused_infer_attention_score_tensors *t,
                                      const fia_fused_infer_attention_score_params *prm,
                                      bool decode, int64_t max_sq, int64_t max_skv) {
    const int32_t mode = prm->sparse_mode;
    if (mode >= 5 && mode <= 9)
        return FIA_UNSUPPORTED("sparse_mode %d is not supported (0..4 are)", (int)mode);
    if (mode < 0 || mode > 9) return FIA_INVALID("sparse_mode is %d, must be 0..4", (int)mode);
    const fia_tensor *m = t->atten_mask;
    if (m && m->dtype != FIA_DTYPE_BOOL && m->dtype != FIA_DTYPE_INT8 && m->dtype != FIA_DTYPE_UINT8)
        return FIA_INVALID("atten_mask dtype is %s, must be bool, int8 or uint8",
                           fia_dtype_name(m->dtype));
    const int64_t lim = FIA_BAND_LIMIT;
    p->pre = prm->pre_tokens > lim ? lim : prm->pre_tokens < -lim ? -lim : prm->pre_tokens;
    p->next = prm->next_tokens > lim ? lim : prm->next_tokens < -lim ? -lim : prm->next_tokens;
    p->vis = FIA_VIS_ALL;
    if (decode) {
        if (m && !(mode >= 2 && fia_is_compressed_mask(m)))
            FIA_TRY(fia_parse_full_mask(p, m, true, max_sq, max_skv));
    } else if (mode == 0) {
        if (m) {
            FIA_TRY(fia_parse_full_mask(p, m, false, max_sq, max_skv));
            p->vis = FIA_VIS_BAND_TOP_LEFT;
        }
    } else if (mode == 1) {
        if (!m) return FIA_INVALID("atten_mask is required with sparse_mode 1");
        FIA_TRY(fia_parse_full_mask(p, m, false, max_sq, max_skv));
    } else {
        if (m && !fia_is_compressed_mask(m))
            return FIA_INVALID("atten_mask must be the compressed [2048, 2048] form with "
                               "sparse_mode %d (it has %d dims, last %lld)", (int)mode,
                               (int)m->ndim, m->ndim ? (long long)m->shape[m->ndim - 1] : 0LL);
        p->vis = mode == 2 ? FIA_VIS_CAUSAL_TOP_LEFT
                 : mode == 3 ? FIA_VIS_CAUSAL_BOTTOM_RIGHT : FIA_VIS_BAND_BOTTOM_RIGHT;
    }

    return FIA_STATUS_SUCCESS;
}

/* num_heads, num_key_value_heads (0: num_heads), scale. */
static fia_status fia_attn_check_heads(fia_attn_plan *p,
                                       const fia_fused_infer_attention_score_params *prm) {
    const int64_t N1 = prm->num_heads;
    const int64_t N2 = prm->num_key_value_heads == 0 ? N1 : prm->num_key_value_heads;
    if (N1 < 1 || N1 > FIA_MAX_HEADS)
        return FIA_INVALID("num_heads is %lld, must be 1..%d", (long long)N1, FIA_MAX_HEADS);
    if (N2 < 1 || N2 > FIA_MAX_HEADS)
        return FIA_INVALID("num_key_value_heads is %lld, must be 0..%d", (long long)N2, FIA_MAX_HEADS);
    if (N1 % N2 != 0)
        return FIA_INVALID("num_heads %lld is not a multiple of num_key_value_heads %lld",
                           (long long)N1, (long long)N2);
    if (!isfinite(prm->scale)) return FIA_INVALID("scale is not finite");
    p->N1 = N1;
    p->N2 = N2;
    p->G = N1 / N2;
    p->scale = (float)prm->scale;
    return FIA_STATUS_SUCCESS;
}

/* input_layout: the query's and the output's layouts, p->tnd (the token-packed layouts, TND,
 * NTD and their input_output pairs, share TND's rules). */
static fia_status fia_attn_layouts(fia_attn_plan *p, fia_layout layout, fia_layout *in_layout,
                                   fia_layout *out_layout) {
    if (layout == FIA_LAYOUT_PA_BSND || layout == FIA_LAYOUT_PA_NZ)
        return FIA_UNSUPPORTED("input_layout %s is not supported by fused_infer_attention_score "
                               "yet", fia_layout_name(layout));
    if ((unsigned)layout > FIA_LAYOUT_NTD_TND)
        return FIA_INVALID("input_layout is %d, unknown", (int)layout);
    p->tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_NTD ||
             layout == FIA_LAYOUT_TND_NTD || layout == FIA_LAYOUT_NTD_TND;
    *in_layout = layout == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BNSD
                 : layout == FIA_LAYOUT_TND_NTD ? FIA_LAYOUT_TND
                 : layout == FIA_LAYOUT_NTD_TND ? FIA_LAYOUT_NTD : layout;
    *out_layout = layout == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND
                  : layout == FIA_LAYOUT_TND_NTD ? FIA_LAYOUT_NTD
                  : layout == FIA_LAYOUT_NTD_TND ? FIA_LAYOUT_TND : layout;
    return FIA_STATUS_SUCCESS;
}

static fia_status fia_attn_validate(fia_attn_plan *p,
                                    const fia_fused_infer_attention_score_tensors *t,
                                    const fia_fused_infer_attention_score_params *prm) {
    if (t->dequant_scale_query || t->dequant_scale_key || t->dequant_scale_value)
        return FIA_UNSUPPORTED("dequant_scale_query/key/value (full int8 quant) are supported "
                               "only with MLA (query_rope and key_rope given)");
    FIA_TRY(fia_tensor_spec_check(t, fia_dense_tensors, FIA_SPEC_COUNT(fia_dense_tensors)));
    if (prm->softmax_lse_flag) {
        if (!t->softmax_lse) return FIA_INVALID("softmax_lse is NULL but softmax_lse_flag is set");
        FIA_TRY(fia_tensor_check(t->softmax_lse, "softmax_lse", false));
    }
    FIA_TRY(fia_tensor_spec_dtypes(t, fia_dense_tensors, FIA_SPEC_COUNT(fia_dense_tensors)));
    const fia_dtype kt = t->key->dtype;
    if (kt == FIA_DTYPE_INT8 && !t->antiquant_scale)
        return FIA_INVALID("antiquant_scale is required with int8 key and value");
    if (kt != FIA_DTYPE_INT8 && (t->antiquant_scale || t->antiquant_offset))
        return FIA_INVALID("antiquant_scale/offset given but key is %s, not int8", fia_dtype_name(kt));

    fia_layout in_layout = prm->input_layout, out_layout = in_layout;
    FIA_TRY(fia_attn_check_heads(p, prm));
    FIA_TRY(fia_attn_layouts(p, prm->input_layout, &in_layout, &out_layout));
    const bool tnd = p->tnd;
    const int64_t N1 = p->N1;

    /* query */
    fia_dims qd;
    FIA_TRY(fia_seq_parse(t->query, "query", in_layout, N1, &p->q, &qd));
    if (qd.D < 1 || qd.D > FIA_MAX_HEAD_DIM)
        return FIA_INVALID("query head dim is %lld, must be 1..%d", (long long)qd.D, FIA_MAX_HEAD_DIM);
    p->D = qd.D;
    p->S1 = qd.S;
    FIA_TRY(fia_parse_batch_count(tnd, prm->actual_seq_lengths, prm->actual_seq_lengths_count,
                                  "actual_seq_lengths", "TND", qd.B, FIA_MAX_BATCH, &p->B));
    if (!tnd && qd.S < 1) return FIA_INVALID("query sequence dim is 0");
    const int64_t B = p->B;
    const bool decode = !tnd && qd.S == 1;

    /* key / value */
    int64_t kv_S = 0, blocks = 0;
    FIA_TRY(fia_attn_parse_kv(p, t, prm, in_layout, &qd, &kv_S, &blocks));
    /* lengths and the block table */
    FIA_TRY(fia_parse_batches(t, prm, B, tnd, qd.S, kv_S, p->pages.block_size, blocks,
                              &p->batches, &p->block_table, &p->pages.cols));
    p->pages.table = p->block_table;
    int64_t max_sq = 0, max_skv = 0;
    for (int64_t b = 0; b < B; b++) {
        if (p->batches[b].sq > max_sq) max_sq = p->batches[b].sq;
        if (p->batches[b].skv > max_skv) max_skv = p->batches[b].skv;
    }
    if (max_skv > FIA_MAX_LEN)
        return FIA_INVALID("kv length %lld is too long", (long long)max_skv);

    FIA_TRY(fia_attn_parse_mask(p, t, prm, decode, max_sq, max_skv));

    /* antiquant */
    if (kt == FIA_DTYPE_INT8)
        FIA_TRY(fia_parse_antiquant(p, t->antiquant_scale, t->antiquant_offset,
                                    prm->antiquant_mode, max_skv));

    /* outputs */
    fia_dims od;
    FIA_TRY(fia_seq_parse(t->attention_out, "attention_out", out_layout, N1, &p->o, &od));
    if (od.D != p->Dv)
        return FIA_INVALID("attention_out head dim is %lld, value has %lld", (long long)od.D,
                           (long long)p->Dv);
    FIA_TRY(fia_check_out_dims(&od, &qd, tnd, B));
    p->lse = NULL;
    if (prm->softmax_lse_flag)
        FIA_TRY(fia_parse_lse(t->softmax_lse, tnd, B, N1, qd.S, "num_heads",
                              tnd ? "query T" : "query S", &p->lse, &p->lse_s_b, &p->lse_s_t,
                              &p->lse_s_h));
    return FIA_STATUS_SUCCESS;
}

fia_status fia_dense_plan(fia_context *ctx, const fia_fused_infer_attention_score_tensors *t,
                          const fia_fused_infer_attention_score_params *prm, fia_plan **plan) {
    fia_attn_plan *p = calloc(1, sizeof *p);
    if (!p) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "plan: out of memory");
    p->base.ctx = ctx;
    p->base.execute = fia_attn_execute;
    p->base.destroy = fia_attn_destroy;
    p->kern = &ctx->kernels.core;
    p->num_threads = ctx->num_threads;
    fia_status st = fia_attn_validate(p, t, prm);
    if (st == FIA_STATUS_SUCCESS) {
        /* bf16 Q, K, V with a GEMM-sized tile somewhere (16+ rows per kv head: a batch of
         * sq G >= 16 has one, its first tile): those tiles run on AMX bf16 (fia_exec.c), with
         * steps of FIA_KV_TILE_AMX keys */
        bool amx = ctx->amx_bf16 && p->aq == FIA_AQ_NONE && p->q.dtype == FIA_DTYPE_BFLOAT16 &&
                   p->k.dtype == FIA_DTYPE_BFLOAT16 && p->v.dtype == FIA_DTYPE_BFLOAT16 &&
                   fia_amx_gqa_fits(p->D, p->Dv);
        bool big = false;
        for (int64_t b = 0; b < p->B && amx && !big; b++) big = p->batches[b].sq * p->G >= 16;
        p->kv_tile = amx && big ? FIA_KV_TILE_AMX : FIA_KV_TILE;
        p->kv_chunk = FIA_KV_CHUNK;
        p->tile_pos = p->G >= FIA_TILE_ROWS ? 1 : FIA_TILE_ROWS / p->G;
        p->tile_rows = p->tile_pos * p->G;
        p->dp = (p->D + 15) / 16 * 16;
        p->dvp = (p->Dv + 15) / 16 * 16;
        st = fia_attn_schedule(p);
        for (int64_t i = 0; st == FIA_STATUS_SUCCESS && amx && big && i < p->work.num_items && !p->amx; i++) {
            const fia_work_item *it = &p->work.items[i];
            p->amx = it->kind == FIA_WORK_TILE && it->qn * p->G >= 16;
        }
        if (p->amx) p->base.unit = "amx_bf16";
    }
    if (st != FIA_STATUS_SUCCESS) {
        fia_attn_destroy(&p->base);
        return st;
    }
    p->base.workspace_bytes = fia_attn_workspace_layout(p, NULL, NULL, NULL) + FIA_WORKSPACE_ALIGN;
    if (ctx->verbose)
        fprintf(stderr, "fia: fused_infer_attention_score: B=%lld N1=%lld N2=%lld D=%lld Dv=%lld "
                "items=%lld split-groups=%lld workspace=%zu kernels=%s%s\n", (long long)p->B,
                (long long)p->N1, (long long)p->N2, (long long)p->D, (long long)p->Dv,
                (long long)p->work.num_items, (long long)p->work.num_groups, p->base.workspace_bytes,
                p->kern->name, p->amx ? " (prefill tiles: amx bf16)" : "");
    *plan = &p->base;
    return FIA_STATUS_SUCCESS;
}
