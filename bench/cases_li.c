/*
 * cases_li.c - benchmark cases of lightning_indexer and quant_lightning_indexer (DeepSeek-V3.2:
 * 64 indexer heads, head dim 128, top-2048), and of the top-k selection alone.
 *
 * Counting: FLOPs = 2 * N1 * D per visible (query row, key) pair (the q.k products; ReLU, the
 * weighted head sum and the selection are not counted); bytes = the key rows read once (fp16 /
 * bf16: 256 B, int8: 128 B + a 2-byte scale) plus the query, weights and outputs. Cold caches:
 * the driver rotates copies of all buffers (bench_copies). Decode reads a paged cache (block 64),
 * prefill a BSND key of the same length as the query (causal, sparse_mode 3: the visible half).
 *
 * li_topk_*: the selection alone (the public fia_topk, the indexer's own selection) on one row of
 * indexer scores (q, k and w uniform in [-1, 1] as in the decode cases, so the scores have mixed
 * signs), to compare with the scoring time of the decode case of the same length (the issue's
 * bound: at most 15%). Public API and the oracle library only: no private src/ header.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "fia.h"
#include "case.h"

typedef struct bench_li_case {
    int64_t q_len;  /* query tokens (1: decode) */
    int64_t kv_len; /* keys */
    int64_t num_heads, head_dim, topk;
    fia_dtype dtype;  /* query and key: float16, bfloat16, or int8 (quant) */
    int64_t block_size; /* > 0: paged key */
} bench_li_case;

static int li_quant(const bench_li_case *p) { return p->dtype == FIA_DTYPE_INT8; }

static double li_pairs(const bench_li_case *p) {
    if (p->q_len == 1) return (double)p->kv_len;
    double s = 0; /* causal: row i sees kv_len - q_len + i + 1 keys */
    for (int64_t i = 0; i < p->q_len; i++) {
        const int64_t v = p->kv_len - p->q_len + i + 1;
        s += (double)(v < 0 ? 0 : v);
    }
    return s;
}

static void li_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_li_case *p = c->params;
    const double es = li_quant(p) ? 1.0 : 2.0, n = (double)p->num_heads, d = (double)p->head_dim;
    const double keys = (double)p->kv_len * (d * es + (li_quant(p) ? 2.0 : 0.0));
    const double qside = (double)p->q_len * n * (d * es + 2.0 + (li_quant(p) ? 2.0 : 0.0));
    *bytes = keys + qside + (double)p->q_len * (double)p->topk * 4.0;
    *flops = 2.0 * n * d * li_pairs(p);
}

static double li_copy_bytes(const bench_case *c) {
    double bytes, flops;
    li_counts(c, &bytes, &flops);
    return bytes;
}

static void li_shape(const bench_case *c, char *buf, size_t len) {
    const bench_li_case *p = c->params;
    snprintf(buf, len, "q%lld kv%lld N%lld D%lld top%lld %s%s", (long long)p->q_len,
             (long long)p->kv_len, (long long)p->num_heads, (long long)p->head_dim,
             (long long)p->topk, li_quant(p) ? "i8" : p->dtype == FIA_DTYPE_BFLOAT16 ? "bf16" : "f16",
             p->block_size > 0 ? " pa64" : " causal");
}

static void li_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_li_case *p = c->params;
    snprintf(buf, len,
             "{\"batch\":1,\"q_len\":%lld,\"kv_len\":%lld,\"num_heads\":%lld,\"head_dim\":%lld,"
             "\"sparse_count\":%lld,\"sparse_mode\":3,\"layout_query\":\"BSND\",\"layout_key\":"
             "\"%s\",\"block_size\":%lld,\"dtype\":\"%s\"}",
             (long long)p->q_len, (long long)p->kv_len, (long long)p->num_heads,
             (long long)p->head_dim, (long long)p->topk, p->block_size > 0 ? "PA_BSND" : "BSND",
             (long long)p->block_size, fia_dtype_name(p->dtype));
}

typedef struct li_copy {
    void *q, *k, *w, *sq, *sk;
    int32_t *bt, *idx;
    fia_tensor tq, tk, tw, tsq, tsk, tbt, tidx;
    fia_lightning_indexer_tensors t;
    fia_plan *plan;
} li_copy;

typedef struct li_instance {
    const bench_li_case *p;
    int copies;
    li_copy *cp;
    int64_t seq_k[1];
    fia_lightning_indexer_params prm;
    void *workspace;
    size_t workspace_bytes;
} li_instance;

/* The plan of copy 0: its compute unit (amx_bf16, vnni or fma) is the roof the case is judged
 * against. */
static const fia_plan *li_plan_of(void *inst) { return ((li_instance *)inst)->cp[0].plan; }

static void li_destroy(void *inst) {
    li_instance *I = inst;
    if (!I) return;
    for (int i = 0; I->cp && i < I->copies; i++) {
        li_copy *cp = &I->cp[i];
        fia_plan_destroy(cp->plan);
        free(cp->q), free(cp->k), free(cp->w), free(cp->sq), free(cp->sk), free(cp->bt),
            free(cp->idx);
    }
    free(I->cp);
    free(I->workspace);
    free(I);
}

static int li_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                      void **inst, char *err, size_t err_len) {
    const bench_li_case *p = c->params;
    li_instance *I = calloc(1, sizeof *I);
    if (!I) goto oom;
    I->p = p;
    I->copies = copies;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    if (!I->cp) goto oom;
    const int quant = li_quant(p);
    const fia_dtype wdt = quant ? FIA_DTYPE_FLOAT16 : p->dtype;
    const size_t es = quant ? 1 : 2;
    const int64_t N = p->num_heads, D = p->head_dim, S1 = p->q_len, S2 = p->kv_len;
    const int64_t bs = p->block_size, nblk = bs > 0 ? (S2 + bs - 1) / bs : 0;
    const int64_t kv_rows = bs > 0 ? nblk * bs : S2;
    fia_lightning_indexer_params_init(&I->prm);
    I->prm.sparse_count = p->topk;
    I->prm.sparse_mode = 3;
    if (bs > 0) {
        I->prm.layout_key = FIA_LAYOUT_PA_BSND;
        I->seq_k[0] = S2;
        I->prm.actual_seq_lengths_key = I->seq_k;
        I->prm.actual_seq_lengths_key_count = 1;
    }
    uint64_t rng = seed;
    for (int i = 0; i < copies; i++) {
        li_copy *cp = &I->cp[i];
        const size_t nq = (size_t)(S1 * N * D), nk = (size_t)(kv_rows * D), nw = (size_t)(S1 * N);
        cp->q = bench_alloc(nq * es);
        cp->k = bench_alloc(nk * es);
        cp->w = bench_alloc(nw * 2);
        cp->idx = bench_alloc((size_t)(S1 * p->topk) * 4);
        if (!cp->q || !cp->k || !cp->w || !cp->idx) goto oom;
        if (quant) {
            cp->sq = bench_alloc(nw * 2);
            cp->sk = bench_alloc((size_t)kv_rows * 2);
            if (!cp->sq || !cp->sk) goto oom;
        }
        if (i == 0) {
            if (bench_fill_random(cp->q, p->dtype, nq, &rng) || bench_fill_random(cp->k, p->dtype, nk, &rng) ||
                bench_fill_random(cp->w, wdt, nw, &rng))
                goto oom;
            if (quant) {
                uint16_t *sq = cp->sq, *sk = cp->sk;
                for (size_t j = 0; j < nw; j++) sq[j] = fia_f32_to_f16(0.01f + 0.001f * (float)(j % 7));
                for (int64_t j = 0; j < kv_rows; j++) sk[j] = fia_f32_to_f16(0.02f + 0.001f * (float)(j % 5));
            }
        } else {
            memcpy(cp->q, I->cp[0].q, nq * es);
            memcpy(cp->k, I->cp[0].k, nk * es);
            memcpy(cp->w, I->cp[0].w, nw * 2);
            if (quant) {
                memcpy(cp->sq, I->cp[0].sq, nw * 2);
                memcpy(cp->sk, I->cp[0].sk, (size_t)kv_rows * 2);
            }
        }
        const int64_t qs[4] = {1, S1, N, D}, ws[3] = {1, S1, N}, os[4] = {1, S1, 1, p->topk};
        fia_tensor_init(&cp->tq, cp->q, p->dtype, 4, qs, NULL);
        fia_tensor_init(&cp->tw, cp->w, wdt, 3, ws, NULL);
        fia_tensor_init(&cp->tidx, cp->idx, FIA_DTYPE_INT32, 4, os, NULL);
        if (quant) fia_tensor_init(&cp->tsq, cp->sq, FIA_DTYPE_FLOAT16, 3, ws, NULL);
        if (bs > 0) {
            const int64_t ks[4] = {nblk, bs, 1, D}, ss[3] = {nblk, bs, 1}, bts[2] = {1, nblk};
            cp->bt = malloc((size_t)nblk * sizeof *cp->bt);
            if (!cp->bt) goto oom;
            for (int64_t b = 0; b < nblk; b++) /* a fixed scatter of the blocks */
                cp->bt[b] = (int32_t)((b * 7919) % nblk);
            fia_tensor_init(&cp->tk, cp->k, p->dtype, 4, ks, NULL);
            fia_tensor_init(&cp->tbt, cp->bt, FIA_DTYPE_INT32, 2, bts, NULL);
            if (quant) fia_tensor_init(&cp->tsk, cp->sk, FIA_DTYPE_FLOAT16, 3, ss, NULL);
            cp->t.block_table = &cp->tbt;
        } else {
            const int64_t ks[4] = {1, S2, 1, D}, ss[3] = {1, S2, 1};
            fia_tensor_init(&cp->tk, cp->k, p->dtype, 4, ks, NULL);
            if (quant) fia_tensor_init(&cp->tsk, cp->sk, FIA_DTYPE_FLOAT16, 3, ss, NULL);
        }
        cp->t.query = &cp->tq;
        cp->t.key = &cp->tk;
        cp->t.weights = &cp->tw;
        cp->t.sparse_indices = &cp->tidx;
        if (quant) {
            cp->t.query_dequant_scale = &cp->tsq;
            cp->t.key_dequant_scale = &cp->tsk;
        }
        size_t ws_bytes = 0;
        const fia_status s =
            quant ? fia_quant_lightning_indexer_plan(ctx, &cp->t, &I->prm, &cp->plan, &ws_bytes)
                  : fia_lightning_indexer_plan(ctx, &cp->t, &I->prm, &cp->plan, &ws_bytes);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s", fia_last_error());
            li_destroy(I);
            return -1;
        }
        if (ws_bytes > I->workspace_bytes) I->workspace_bytes = ws_bytes;
    }
    if (I->workspace_bytes && !(I->workspace = malloc(I->workspace_bytes))) goto oom;
    *inst = I;
    return 0;
oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    li_destroy(I);
    return -1;
}

static fia_status li_execute(void *inst, int copy) {
    li_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->workspace, I->workspace_bytes);
}

/* Sampled rows of copy 0 (decode: the row; prefill: first, middle, last): the case description
 * of ref/case_sparse.c (position by position, the oracle's score of the returned index equals
 * the oracle's i-th best score within the fp32 rounding bound) bound to row i's views, with key
 * length Skv - Sq + i + 1, which under sparse_mode 3 shows a one-row query the keys row i sees. */
static int li_check(void *inst, bench_check *r, char *err, size_t err_len) {
    li_instance *I = inst;
    const bench_li_case *p = I->p;
    const li_copy *cp = &I->cp[0];
    const int64_t rows[3] = {0, p->q_len / 2, p->q_len - 1};
    int64_t bad = 0, checked = 0;
    for (int i = 0; i < 3; i++) {
        if (i > 0 && rows[i] == rows[i - 1]) continue;
        fia_tensor q = bench_sub_view(&cp->tq, 1, rows[i], 1), w = bench_sub_view(&cp->tw, 1, rows[i], 1);
        fia_tensor idx = bench_sub_view(&cp->tidx, 1, rows[i], 1), sq;
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.li = cp->t;
        c.t.li.query = &q, c.t.li.weights = &w, c.t.li.sparse_indices = &idx;
        if (li_quant(p)) sq = bench_sub_view(&cp->tsq, 1, rows[i], 1), c.t.li.query_dequant_scale = &sq;
        c.p.li = I->prm;
        const int64_t seen[1] = {p->kv_len - p->q_len + rows[i] + 1};
        c.p.li.actual_seq_lengths_key = seen;
        c.p.li.actual_seq_lengths_key_count = 1;
        fia_case_bind(&c, li_quant(p) ? "quant_lightning_indexer" : "lightning_indexer");
        const int64_t b = fia_case_oracle(&c) == 0 ? fia_case_failed_rows(&c, 0, p->topk, NULL) : -1;
        fia_case_free(&c);
        if (b < 0) {
            bench_set_err(err, err_len, "check: out of memory");
            return -1;
        }
        bad += b;
        checked++;
    }
    r->passed = bad == 0;
    r->max_abs_err = 0; /* a ranking: the indices are right or not */
    snprintf(r->detail, sizeof r->detail, "%lld/%lld rows, score rank", (long long)checked,
             (long long)p->q_len);
    return 0;
}

static const bench_op li_bench_op = {
    "lightning_indexer", li_shape, li_params_json, li_counts, li_copy_bytes,
    li_prepare, li_execute, li_check, li_destroy, li_plan_of,
};

/* ---------------------------------------------------------------------------------------- */
/* The top-k selection alone                                                                */
/* ---------------------------------------------------------------------------------------- */

typedef struct topk_instance {
    int64_t n, k;
    float *s;
    int32_t *idx;
    void *scratch;
} topk_instance;

static void topk_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_li_case *p = c->params;
    *bytes = (double)p->kv_len * 4.0;
    *flops = 0;
}

static double topk_copy_bytes(const bench_case *c) {
    (void)c;
    return 0; /* one row, warm: the scores were just written by the scoring pass */
}

static void topk_shape(const bench_case *c, char *buf, size_t len) {
    const bench_li_case *p = c->params;
    snprintf(buf, len, "top%lld of %lld fp32 scores", (long long)p->topk, (long long)p->kv_len);
}

static void topk_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_li_case *p = c->params;
    snprintf(buf, len, "{\"n\":%lld,\"k\":%lld}", (long long)p->kv_len, (long long)p->topk);
}

static void topk_destroy(void *inst) {
    topk_instance *I = inst;
    if (!I) return;
    free(I->s), free(I->idx), free(I->scratch), free(I);
}

static int topk_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                        void **inst, char *err, size_t err_len) {
    const bench_li_case *p = c->params;
    (void)copies;
    topk_instance *I = calloc(1, sizeof *I);
    if (I) {
        I->n = p->kv_len;
        I->k = p->topk;
        I->s = malloc((size_t)I->n * sizeof *I->s);
        I->idx = malloc((size_t)I->k * sizeof *I->idx);
        I->scratch = malloc(fia_topk_scratch_bytes(I->n, I->k));
    }
    if (!I || !I->s || !I->idx || !I->scratch) {
        topk_destroy(I);
        bench_set_err(err, err_len, "out of memory preparing %s", c->name);
        return -1;
    }
    /* the scores of the decode cases: q, k, w uniform in [-1, 1], 64 heads x 128:
     * s[j] = sum_h w[h] ReLU(q[h] . k[j]) in plain fp32 */
    const int64_t nh = p->num_heads, d = p->head_dim;
    uint64_t st = seed;
    float *q = malloc(sizeof(float) * (size_t)(nh * d)), *w = malloc(sizeof(float) * (size_t)nh);
    float *k = malloc(sizeof(float) * (size_t)d);
    int bad = !q || !w || !k;
    (void)ctx;
    if (!bad)
        bad = bench_fill_random(q, FIA_DTYPE_FLOAT32, (size_t)(nh * d), &st) ||
              bench_fill_random(w, FIA_DTYPE_FLOAT32, (size_t)nh, &st);
    for (int64_t j = 0; !bad && j < I->n; j++) {
        bad = bench_fill_random(k, FIA_DTYPE_FLOAT32, (size_t)d, &st);
        float s = 0.0f;
        for (int64_t h = 0; h < nh; h++) {
            float dot = 0.0f;
            for (int64_t i = 0; i < d; i++) dot += q[h * d + i] * k[i];
            s += w[h] * (dot > 0.0f ? dot : 0.0f);
        }
        I->s[j] = s;
    }
    free(q), free(w), free(k);
    if (bad) {
        topk_destroy(I);
        bench_set_err(err, err_len, "out of memory preparing %s", c->name);
        return -1;
    }
    *inst = I;
    return 0;
}

static fia_status topk_execute(void *inst, int copy) {
    topk_instance *I = inst;
    (void)copy;
    return fia_topk(I->s, I->n, I->k, I->idx, I->scratch) == I->k ? FIA_STATUS_SUCCESS
                                                                     : FIA_STATUS_INTERNAL;
}

static int topk_check(void *inst, bench_check *r, char *err, size_t err_len) {
    topk_instance *I = inst;
    (void)err, (void)err_len;
    int ok = 1; /* sorted, and nothing left out is better than the last one taken */
    for (int64_t i = 1; i < I->k; i++) ok &= I->s[I->idx[i - 1]] >= I->s[I->idx[i]];
    r->passed = ok;
    r->max_abs_err = 0;
    snprintf(r->detail, sizeof r->detail, "order of %lld", (long long)I->k);
    return 0;
}

static const bench_op topk_bench_op = {
    "lightning_indexer_topk", topk_shape, topk_params_json, topk_counts, topk_copy_bytes,
    topk_prepare, topk_execute, topk_check, topk_destroy, NULL,
};

/* ---------------------------------------------------------------------------------------- */
/* The case table                                                                           */
/* ---------------------------------------------------------------------------------------- */

static const bench_li_case li_decode_32k = {1, 32768, 64, 128, 2048, FIA_DTYPE_FLOAT16, 64};
static const bench_li_case li_decode_128k = {1, 131072, 64, 128, 2048, FIA_DTYPE_FLOAT16, 64};
static const bench_li_case li_decode_128k_bf16 = {1, 131072, 64, 128, 2048, FIA_DTYPE_BFLOAT16, 64};
/* bf16 at 32K too: the DeepSeek indexer cache is bf16 */
static const bench_li_case li_decode_32k_bf16 = {1, 32768, 64, 128, 2048, FIA_DTYPE_BFLOAT16, 64};
static const bench_li_case li_quant_32k = {1, 32768, 64, 128, 2048, FIA_DTYPE_INT8, 64};
static const bench_li_case li_quant_128k = {1, 131072, 64, 128, 2048, FIA_DTYPE_INT8, 64};
static const bench_li_case li_prefill_4k = {4096, 4096, 64, 128, 2048, FIA_DTYPE_BFLOAT16, 0};
static const bench_li_case li_topk_128k = {1, 131072, 64, 128, 2048, FIA_DTYPE_FLOAT32, 0};

static const bench_case li_cases[] = {
    {"li_decode_kv32k", &li_bench_op, &li_decode_32k, 0},
    {"li_decode_kv128k", &li_bench_op, &li_decode_128k, 0},
    {"li_decode_bf16_kv32k", &li_bench_op, &li_decode_32k_bf16, 0},
    {"li_decode_bf16_kv128k", &li_bench_op, &li_decode_128k_bf16, 0},
    {"li_quant_decode_kv32k", &li_bench_op, &li_quant_32k, 0},
    {"li_quant_decode_kv128k", &li_bench_op, &li_quant_128k, 0},
    {"li_prefill_causal_4k", &li_bench_op, &li_prefill_4k, 0},
    {"li_topk_2048_of_128k", &topk_bench_op, &li_topk_128k, 0},
};

const bench_case *bench_li_cases(size_t *count) {
    *count = sizeof li_cases / sizeof li_cases[0];
    return li_cases;
}
