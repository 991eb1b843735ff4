/*
 * cases_sfa.c - benchmark cases of sparse_flash_attention and kv_quant_sparse_flash_attention
 * (C8): DeepSeek-V3.2 decode, 128 heads, top-k 2048 over a paged latent cache (block 64).
 *
 * Counting: FLOPs = 2 * N1 * (576 + 512) per selected token and query row (S = Q.K^T over 576,
 * O = P.V over 512); bytes = the selected rows read once (bf16: 1024 + 128 B, C8: 656 B) plus Q
 * and the output. Cold caches: every copy has its own query, output and random selection, and
 * copies rotate over as many full caches as fit in SFA_BENCH_CACHE_BYTES (all copies when the
 * cache is small), so a copy's rows are not in the last-level cache when it runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "case.h"

#define SFA_BENCH_CACHE_BYTES (INT64_C(512) << 20)

typedef struct bench_sfa_case {
    int64_t batch;
    int64_t num_heads;
    int64_t kv_len;     /* tokens per batch */
    int64_t topk;       /* selected tokens per query row */
    int64_t block_size; /* paged cache block */
    int c8;             /* 1: kv_quant_sparse_flash_attention on 656-byte rows */
} bench_sfa_case;

static int64_t row_bytes(const bench_sfa_case *p) { return p->c8 ? 656 : (512 + 64) * 2; }

static void sfa_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_sfa_case *p = c->params;
    const double sel = (double)(p->batch * p->topk), n = (double)p->num_heads;
    *bytes = sel * (double)row_bytes(p) + (double)p->batch * n * (576.0 + 512.0) * 2.0;
    *flops = 2.0 * n * (576.0 + 512.0) * sel;
}

static double sfa_copy_bytes(const bench_case *c) {
    double bytes, flops;
    sfa_counts(c, &bytes, &flops);
    return bytes;
}

static void sfa_shape(const bench_case *c, char *buf, size_t len) {
    const bench_sfa_case *p = c->params;
    snprintf(buf, len, "B%lld N%lld kv%lld top%lld pa%lld %s", (long long)p->batch,
             (long long)p->num_heads, (long long)p->kv_len, (long long)p->topk,
             (long long)p->block_size, p->c8 ? "c8" : "bf16");
}

static void sfa_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_sfa_case *p = c->params;
    snprintf(buf, len,
             "{\"batch\":%lld,\"num_heads\":%lld,\"kv_len\":%lld,\"topk\":%lld,\"block_size\":%lld,"
             "\"sparse_block_size\":1,\"layout_query\":\"BSND\",\"layout_kv\":\"PA_BSND\","
             "\"dtype\":\"bfloat16\",\"kv_dtype\":\"%s\"}",
             (long long)p->batch, (long long)p->num_heads, (long long)p->kv_len,
             (long long)p->topk, (long long)p->block_size, p->c8 ? "c8" : "bfloat16");
}

typedef struct sfa_cache {
    void *k, *kr;          /* nope (or C8 rows) and rope */
    int32_t *bt;
    fia_tensor tk, tkr, tbt;
} sfa_cache;

typedef struct sfa_copy {
    void *q, *qr, *o;
    int32_t *idx;
    fia_tensor tq, tqr, to, tidx;
    int cache;
    fia_plan *plan;
} sfa_copy;

typedef struct sfa_instance {
    const bench_sfa_case *p;
    int copies, ncache;
    sfa_cache *caches;
    sfa_copy *cp;
    int64_t *kvlens;
    fia_sparse_flash_attention_params prm;
    fia_kv_quant_sparse_flash_attention_params qprm;
    void *workspace;
    size_t workspace_bytes;
} sfa_instance;

static const fia_plan *sfa_plan_of(void *inst) { return ((sfa_instance *)inst)->cp[0].plan; }

static void sfa_destroy(void *inst) {
    sfa_instance *I = inst;
    if (!I) return;
    for (int i = 0; I->cp && i < I->copies; i++) {
        fia_plan_destroy(I->cp[i].plan);
        free(I->cp[i].q), free(I->cp[i].qr), free(I->cp[i].o), free(I->cp[i].idx);
    }
    for (int i = 0; I->caches && i < I->ncache; i++)
        free(I->caches[i].k), free(I->caches[i].kr), free(I->caches[i].bt);
    free(I->caches);
    free(I->cp);
    free(I->kvlens);
    free(I->workspace);
    free(I);
}

static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One cache: random rows (C8: int8 values, bf16 rope, scales ~1/100), a shuffled block table. */
static int fill_cache(const bench_sfa_case *p, sfa_cache *k, const sfa_cache *first,
                      uint64_t *rng) {
    const int64_t blocks = p->batch * p->kv_len / p->block_size;
    const int64_t rows = blocks * p->block_size;
    const size_t nb = (size_t)(rows * (p->c8 ? 656 : 512 * 2)), rb = (size_t)(rows * 128);
    k->k = bench_alloc(nb);
    k->kr = p->c8 ? NULL : bench_alloc(rb);
    k->bt = malloc((size_t)blocks * sizeof *k->bt);
    if (!k->k || (!p->c8 && !k->kr) || !k->bt) return -1;
    if (first) {
        memcpy(k->k, first->k, nb);
        if (!p->c8) memcpy(k->kr, first->kr, rb);
        memcpy(k->bt, first->bt, (size_t)blocks * sizeof *k->bt);
    } else if (p->c8) {
        if (bench_fill_random(k->k, FIA_DTYPE_INT8, nb, rng) != 0) return -1;
        for (int64_t r = 0; r < rows; r++) {
            unsigned char *row = (unsigned char *)k->k + r * 656;
            for (int d = 0; d < 64; d++) {
                const uint16_t h = fia_f32_to_bf16((float)((int64_t)(next_rand(rng) % 2001) - 1000) / 1000.0f);
                memcpy(row + 512 + 2 * d, &h, 2);
            }
            for (int t = 0; t < 4; t++) {
                const float sc = 0.004f + 0.008f * (float)(next_rand(rng) % 1000) / 1000.0f;
                memcpy(row + 640 + 4 * t, &sc, 4);
            }
        }
    } else {
        if (bench_fill_random(k->k, FIA_DTYPE_BFLOAT16, nb / 2, rng) != 0 ||
            bench_fill_random(k->kr, FIA_DTYPE_BFLOAT16, rb / 2, rng) != 0)
            return -1;
    }
    if (!first) {
        for (int64_t i = 0; i < blocks; i++) k->bt[i] = (int32_t)i;
        for (int64_t i = blocks - 1; i > 0; i--) {
            const int64_t j = (int64_t)(next_rand(rng) % (uint64_t)(i + 1));
            const int32_t t = k->bt[i];
            k->bt[i] = k->bt[j], k->bt[j] = t;
        }
    }
    const int64_t ks[4] = {blocks, p->block_size, 1, p->c8 ? 656 : 512};
    const int64_t rs[4] = {blocks, p->block_size, 1, 64};
    const int64_t bs[2] = {p->batch, p->kv_len / p->block_size};
    fia_tensor_init(&k->tk, k->k, p->c8 ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16, 4, ks, NULL);
    if (!p->c8) fia_tensor_init(&k->tkr, k->kr, FIA_DTYPE_BFLOAT16, 4, rs, NULL);
    fia_tensor_init(&k->tbt, k->bt, FIA_DTYPE_INT32, 2, bs, NULL);
    return 0;
}

static int sfa_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                       void **inst, char *err, size_t err_len) {
    const bench_sfa_case *p = c->params;
    sfa_instance *I = calloc(1, sizeof *I);
    if (!I) goto oom;
    I->p = p;
    const double cache_bytes = (double)(p->batch * p->kv_len) * (double)row_bytes(p);
    int64_t nc = (int64_t)((double)SFA_BENCH_CACHE_BYTES / cache_bytes);
    I->ncache = (int)(nc < 1 ? 1 : nc > copies ? copies : nc);
    I->caches = calloc((size_t)I->ncache, sizeof *I->caches);
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    I->kvlens = malloc((size_t)p->batch * sizeof *I->kvlens);
    if (!I->caches || !I->cp || !I->kvlens) goto oom;
    I->copies = copies;
    uint64_t rng = seed;
    for (int i = 0; i < I->ncache; i++)
        if (fill_cache(p, &I->caches[i], i ? &I->caches[0] : NULL, &rng) != 0) goto oom;
    for (int64_t b = 0; b < p->batch; b++) I->kvlens[b] = p->kv_len;
    fia_sparse_flash_attention_params *prm = &I->prm;
    fia_sparse_flash_attention_params_init(prm);
    prm->scale_value = 1.0 / 24.0;
    prm->layout_query = FIA_LAYOUT_BSND;
    prm->layout_kv = FIA_LAYOUT_PA_BSND;
    prm->sparse_mode = 3;
    prm->actual_seq_lengths_kv = I->kvlens;
    prm->actual_seq_lengths_kv_count = p->batch;
    fia_kv_quant_sparse_flash_attention_params_init(&I->qprm);
    I->qprm.base = *prm;

    const int64_t n1 = p->num_heads, dq = p->c8 ? 576 : 512;
    const size_t nq = (size_t)(p->batch * n1 * dq), nqr = (size_t)(p->batch * n1 * 64);
    const size_t no = (size_t)(p->batch * n1 * 512), ni = (size_t)(p->batch * p->topk);
    int32_t *perm = malloc((size_t)p->kv_len * sizeof *perm);
    if (!perm) goto oom;
    for (int i = 0; i < copies; i++) {
        sfa_copy *cp = &I->cp[i];
        cp->cache = i % I->ncache;
        cp->q = bench_alloc(nq * 2);
        cp->qr = p->c8 ? NULL : bench_alloc(nqr * 2);
        cp->o = bench_alloc(no * 2);
        cp->idx = malloc(ni * sizeof *cp->idx);
        if (!cp->q || (!p->c8 && !cp->qr) || !cp->o || !cp->idx) {
            free(perm);
            goto oom;
        }
        if (bench_fill_random(cp->q, FIA_DTYPE_BFLOAT16, nq, &rng) != 0 ||
            (!p->c8 && bench_fill_random(cp->qr, FIA_DTYPE_BFLOAT16, nqr, &rng) != 0)) {
            free(perm);
            goto oom;
        }
        memset(cp->o, 0, no * 2);
        /* a duplicate-free random selection per batch: the first topk of a partial shuffle */
        for (int64_t b = 0; b < p->batch; b++) {
            for (int64_t t = 0; t < p->kv_len; t++) perm[t] = (int32_t)t;
            for (int64_t k = 0; k < p->topk; k++) {
                const int64_t j = k + (int64_t)(next_rand(&rng) % (uint64_t)(p->kv_len - k));
                const int32_t t = perm[k];
                perm[k] = perm[j], perm[j] = t;
                cp->idx[b * p->topk + k] = perm[k];
            }
        }
        const int64_t qs[4] = {p->batch, 1, n1, dq}, rs[4] = {p->batch, 1, n1, 64};
        const int64_t os[4] = {p->batch, 1, n1, 512}, is[4] = {p->batch, 1, 1, p->topk};
        fia_tensor_init(&cp->tq, cp->q, FIA_DTYPE_BFLOAT16, 4, qs, NULL);
        if (!p->c8) fia_tensor_init(&cp->tqr, cp->qr, FIA_DTYPE_BFLOAT16, 4, rs, NULL);
        fia_tensor_init(&cp->to, cp->o, FIA_DTYPE_BFLOAT16, 4, os, NULL);
        fia_tensor_init(&cp->tidx, cp->idx, FIA_DTYPE_INT32, 4, is, NULL);
        const sfa_cache *k = &I->caches[cp->cache];
        size_t ws = 0;
        fia_status s;
        if (p->c8) {
            const fia_kv_quant_sparse_flash_attention_tensors t = {
                &cp->tq, &k->tk, NULL, &cp->tidx, &k->tbt, &cp->to, NULL, NULL, NULL, NULL};
            s = fia_kv_quant_sparse_flash_attention_plan(ctx, &t, &I->qprm, &cp->plan, &ws);
        } else {
            const fia_sparse_flash_attention_tensors t = {
                &cp->tq, &k->tk, NULL, &cp->tidx, &k->tbt, &cp->tqr, &k->tkr, &cp->to, NULL, NULL, NULL,
                NULL};
            s = fia_sparse_flash_attention_plan(ctx, &t, prm, &cp->plan, &ws);
        }
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s",
                          fia_last_error()[0] ? fia_last_error() : fia_status_string(s));
            free(perm);
            sfa_destroy(I);
            return -1;
        }
        if (ws > I->workspace_bytes) I->workspace_bytes = ws;
    }
    free(perm);
    if (I->workspace_bytes && !(I->workspace = malloc(I->workspace_bytes))) goto oom;
    *inst = I;
    return 0;
oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    sfa_destroy(I);
    return -1;
}

static fia_status sfa_execute(void *inst, int copy) {
    sfa_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->workspace, I->workspace_bytes);
}

/* Compares the first and the last query row of copy 0 (all heads) with the oracle: the case
 * description of ref/case_sparse.c bound to batch b's views (query, indices, output and its
 * block-table row; the kv length of the batch). */
static int sfa_check(void *inst, bench_check *r, char *err, size_t err_len) {
    sfa_instance *I = inst;
    const bench_sfa_case *p = I->p;
    const sfa_copy *cp = &I->cp[0];
    const sfa_cache *k = &I->caches[cp->cache];
    const int64_t rows[2] = {0, p->batch - 1}, nrows = p->batch > 1 ? 2 : 1;
    fia_ref_check chk = FIA_REF_CHECK_INIT;
    for (int64_t i = 0; i < nrows; i++) {
        const int64_t b = rows[i];
        fia_tensor q = bench_sub_view(&cp->tq, 0, b, 1), o = bench_sub_view(&cp->to, 0, b, 1);
        fia_tensor idx = bench_sub_view(&cp->tidx, 0, b, 1), bt = bench_sub_view(&k->tbt, 0, b, 1);
        fia_tensor qr = p->c8 ? q : bench_sub_view(&cp->tqr, 0, b, 1);
        fia_case c;
        memset(&c, 0, sizeof c);
        if (p->c8) {
            const fia_kv_quant_sparse_flash_attention_tensors t = {&q, &k->tk, NULL, &idx, &bt, &o,
                                                                   NULL, NULL, NULL, NULL};
            c.t.sfa_c8 = t, c.p.sfa_c8 = I->qprm;
            c.p.sfa_c8.base.actual_seq_lengths_kv = &I->kvlens[b];
            c.p.sfa_c8.base.actual_seq_lengths_kv_count = 1;
        } else {
            const fia_sparse_flash_attention_tensors t = {&q, &k->tk, NULL, &idx, &bt, &qr, &k->tkr, &o,
                                                          NULL, NULL, NULL, NULL};
            c.t.sfa = t, c.p.sfa = I->prm;
            c.p.sfa.actual_seq_lengths_kv = &I->kvlens[b];
            c.p.sfa.actual_seq_lengths_kv_count = 1;
        }
        fia_case_bind(&c, p->c8 ? "kv_quant_sparse_flash_attention" : "sparse_flash_attention");
        fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
        const int rc = fia_case_oracle(&c);
        if (rc == 0) fia_case_check(&c, 0, each);
        const int oom = c.out[0].want == NULL;
        fia_case_free(&c);
        if (rc != 0) {
            bench_set_err(err, err_len, oom ? "check: out of memory" : "check: the oracle cannot run this call");
            return -1;
        }
        chk.failures += each[0].failures;
        if (each[0].max_abs_err > chk.max_abs_err) chk.max_abs_err = each[0].max_abs_err;
    }
    r->passed = chk.failures == 0;
    r->max_abs_err = chk.max_abs_err;
    snprintf(r->detail, sizeof r->detail, "%lld/%lld rows x %lld heads", (long long)nrows,
             (long long)p->batch, (long long)p->num_heads);
    return 0;
}

static const bench_op sfa_bench_op = {
    "sparse_flash_attention", sfa_shape, sfa_params_json, sfa_counts, sfa_copy_bytes,
    sfa_prepare, sfa_execute, sfa_check, sfa_destroy, sfa_plan_of,
};
static const bench_op c8_bench_op = {
    "kv_quant_sparse_flash_attention", sfa_shape, sfa_params_json, sfa_counts, sfa_copy_bytes,
    sfa_prepare, sfa_execute, sfa_check, sfa_destroy, sfa_plan_of,
};

/* DeepSeek-V3.2 decode: 128 heads, top-k 2048, paged cache of 64-token blocks. */
static const bench_sfa_case b1_8k = {1, 128, 8192, 2048, 64, 0};
static const bench_sfa_case b1_32k = {1, 128, 32768, 2048, 64, 0};
static const bench_sfa_case b1_128k = {1, 128, 131072, 2048, 64, 0};
static const bench_sfa_case b4_32k = {4, 128, 32768, 2048, 64, 0};
static const bench_sfa_case c8_b1_32k = {1, 128, 32768, 2048, 64, 1};
static const bench_sfa_case c8_b4_32k = {4, 128, 32768, 2048, 64, 1};

static const bench_case sfa_cases[] = {
    {"sfa_decode_b1_kv8k", &sfa_bench_op, &b1_8k, 0},
    {"sfa_decode_b1_kv32k", &sfa_bench_op, &b1_32k, 0},
    {"sfa_decode_b1_kv128k", &sfa_bench_op, &b1_128k, 0},
    {"sfa_decode_b4_kv32k", &sfa_bench_op, &b4_32k, 0},
    {"sfa_c8_decode_b1_kv32k", &c8_bench_op, &c8_b1_32k, 0},
    {"sfa_c8_decode_b4_kv32k", &c8_bench_op, &c8_b4_32k, 0},
};

const bench_case *bench_sfa_cases(size_t *count) {
    *count = sizeof sfa_cases / sizeof sfa_cases[0];
    return sfa_cases;
}
