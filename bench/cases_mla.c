/*
 * cases_mla.c - benchmark cases of the MLA path of fused_infer_attention_score (DeepSeek
 * absorbed attention: 128 heads, query 512 + 64 rope, one latent cache of 512 + 64 that is both
 * K and V), decode with one query token per request against a paged cache.
 *
 * FLOPs counted: 2 . N . (576 + 512) per query token per cached token (Q.K^T over 576, P.V over
 * 512). Bytes: the latent and rope rows read once, plus the query and the output.
 * The check runs the oracle (ref/ref_mla.c) on 4 of the heads (a head's output depends
 * only on its own query rows, so a call with a sub-view of the heads gives the same rows).
 */
#define _POSIX_C_SOURCE 200809L

#include "cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_mla.h"
#include "tolerance.h"

enum { MLA_DN = 512, MLA_DR = 64 };

typedef struct bench_mla_case {
    int64_t batch, num_heads, kv_len, block_size;
    fia_dtype dtype;   /* BFLOAT16, or INT8 for the int8 form (bf16 ropes, bf16 output) */
    int nz;            /* PA_NZ cache, else PA_BSND */
    int32_t rescale;   /* FIA_MLA_RESCALE_* */
} bench_mla_case;

static void mla_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_mla_case *p = c->params;
    const double kv = (double)p->batch * (double)p->kv_len;
    const double row = p->dtype == FIA_DTYPE_INT8 ? MLA_DN + 2.0 * MLA_DR : 2.0 * (MLA_DN + MLA_DR);
    const double rows = (double)p->batch * (double)p->num_heads;
    *bytes = kv * row + rows * (row + 2.0 * MLA_DN);
    *flops = kv * (double)p->num_heads * 2.0 * (MLA_DN + MLA_DR + MLA_DN);
}

static int64_t mla_blocks(const bench_mla_case *p) {
    return p->batch * ((p->kv_len + p->block_size - 1) / p->block_size);
}

static double mla_copy_bytes(const bench_case *c) {
    const bench_mla_case *p = c->params;
    const double slots = (double)mla_blocks(p) * (double)p->block_size;
    const double es = p->dtype == FIA_DTYPE_INT8 ? 1.0 : 2.0;
    return slots * (MLA_DN * es + MLA_DR * 2.0) +
           (double)(p->batch * p->num_heads) * (MLA_DN * es + MLA_DR * 2.0 + MLA_DN * 2.0);
}

static void mla_shape(const bench_case *c, char *buf, size_t len) {
    const bench_mla_case *p = c->params;
    snprintf(buf, len, "B%lld q1 kv%lld N%lld 512+64 %s %s%lld%s", (long long)p->batch,
             (long long)p->kv_len, (long long)p->num_heads,
             p->dtype == FIA_DTYPE_INT8 ? "i8" : "bf16", p->nz ? "PA_NZ" : "PA_BSND",
             (long long)p->block_size, p->rescale == FIA_MLA_RESCALE_AMLA ? " AMLA" : "");
}

static void mla_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_mla_case *p = c->params;
    snprintf(buf, len,
             "{\"batch\":%lld,\"num_heads\":%lld,\"q_len\":1,\"kv_len\":%lld,\"mla\":true,"
             "\"latent_dim\":512,\"rope_dim\":64,\"dtype\":\"%s\",\"cache_layout\":\"%s\","
             "\"block_size\":%lld,\"mla_rescale\":\"%s\"}",
             (long long)p->batch, (long long)p->num_heads, (long long)p->kv_len,
             p->dtype == FIA_DTYPE_INT8 ? "int8" : "bfloat16", p->nz ? "PA_NZ" : "PA_BSND",
             (long long)p->block_size,
             p->rescale == FIA_MLA_RESCALE_AMLA ? "amla" : "multiply");
}

typedef struct mla_copy {
    void *q, *qr, *k, *kr, *out, *sq;
    fia_tensor tq, tqr, tk, tkr, tout, tsq;
    fia_plan *plan;
} mla_copy;

typedef struct mla_instance {
    const bench_mla_case *p;
    int copies;
    mla_copy *cp;
    int32_t *bt;
    fia_tensor tbt;
    float scales[2];
    fia_tensor tsk, tsv;
    int64_t *kv_lens;
    fia_fused_infer_attention_score_params params;
    void *workspace;
    size_t workspace_bytes;
} mla_instance;

static void mla_destroy(void *inst) {
    mla_instance *I = inst;
    if (I == NULL) return;
    if (I->cp != NULL) {
        for (int i = 0; i < I->copies; i++) {
            mla_copy *c = &I->cp[i];
            fia_plan_destroy(c->plan);
            free(c->q);
            free(c->qr);
            free(c->k);
            free(c->kr);
            free(c->out);
            free(c->sq);
        }
        free(I->cp);
    }
    free(I->bt);
    free(I->kv_lens);
    free(I->workspace);
    free(I);
}

static fia_fused_infer_attention_score_tensors mla_tensors_of(mla_instance *I, int copy) {
    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    mla_copy *c = &I->cp[copy];
    t.query = &c->tq;
    t.query_rope = &c->tqr;
    t.key = &c->tk;
    t.value = &c->tk;
    t.key_rope = &c->tkr;
    t.attention_out = &c->tout;
    t.block_table = &I->tbt;
    if (I->p->dtype == FIA_DTYPE_INT8) {
        t.dequant_scale_query = &c->tsq;
        t.dequant_scale_key = &I->tsk;
        t.dequant_scale_value = &I->tsv;
    }
    return t;
}

/* Cache view: PA_BSND [blocks, bs, 1, w] or PA_NZ [blocks, 1, w / cw, bs, cw]. */
static void mla_cache_view(const bench_mla_case *p, void *data, fia_dtype dt, int64_t w,
                           fia_tensor *t) {
    const int64_t blocks = mla_blocks(p), bs = p->block_size;
    if (p->nz) {
        const int64_t cw = dt == FIA_DTYPE_INT8 ? 32 : 16;
        const int64_t sh[5] = {blocks, 1, w / cw, bs, cw};
        fia_tensor_init(t, data, dt, 5, sh, NULL);
    } else {
        const int64_t sh[4] = {blocks, bs, 1, w};
        fia_tensor_init(t, data, dt, 4, sh, NULL);
    }
}

static int mla_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                       void **inst, char *err, size_t err_len) {
    const bench_mla_case *p = c->params;
    mla_instance *I = calloc(1, sizeof *I);
    if (I == NULL) {
        bench_set_err(err, err_len, "out of memory");
        return -1;
    }
    *inst = I;
    I->p = p;
    I->copies = copies;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    const int64_t B = p->batch, N = p->num_heads, bs = p->block_size, blocks = mla_blocks(p);
    const int64_t per = (p->kv_len + bs - 1) / bs;
    I->bt = malloc((size_t)(B * per) * sizeof *I->bt);
    I->kv_lens = malloc((size_t)B * sizeof *I->kv_lens);
    if (I->cp == NULL || I->bt == NULL || I->kv_lens == NULL) goto oom;
    /* each request's blocks in a shuffled order, as a serving engine's allocator leaves them */
    uint64_t st = seed;
    for (int64_t i = 0; i < B * per; i++) I->bt[i] = (int32_t)i;
    for (int64_t i = B * per - 1; i > 0; i--) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        const int64_t j = (int64_t)((st >> 33) % (uint64_t)(i + 1));
        const int32_t x = I->bt[i];
        I->bt[i] = I->bt[j];
        I->bt[j] = x;
    }
    const int64_t btsh[2] = {B, per};
    fia_tensor_init(&I->tbt, I->bt, FIA_DTYPE_INT32, 2, btsh, NULL);
    for (int64_t b = 0; b < B; b++) I->kv_lens[b] = p->kv_len;
    I->scales[0] = 1.0f / 127;
    I->scales[1] = 1.0f / 127;
    const int64_t one = 1;
    fia_tensor_init(&I->tsk, &I->scales[0], FIA_DTYPE_FLOAT32, 1, &one, NULL);
    fia_tensor_init(&I->tsv, &I->scales[1], FIA_DTYPE_FLOAT32, 1, &one, NULL);

    const int quant = p->dtype == FIA_DTYPE_INT8;
    const fia_dtype qdt = quant ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16;
    const size_t qes = fia_dtype_size(qdt);
    for (int i = 0; i < copies; i++) {
        mla_copy *cp = &I->cp[i];
        const size_t slots = (size_t)(blocks * bs);
        cp->q = bench_alloc((size_t)(B * N * MLA_DN) * qes);
        cp->qr = bench_alloc((size_t)(B * N * MLA_DR) * 2);
        cp->out = bench_alloc((size_t)(B * N * MLA_DN) * 2);
        cp->k = bench_alloc(slots * MLA_DN * qes);
        cp->kr = bench_alloc(slots * MLA_DR * 2);
        cp->sq = bench_alloc((size_t)(B * N) * sizeof(float));
        if (!cp->q || !cp->qr || !cp->out || !cp->k || !cp->kr || !cp->sq) goto oom;
        if (bench_fill_random(cp->q, qdt, (size_t)(B * N * MLA_DN), &st) ||
            bench_fill_random(cp->qr, FIA_DTYPE_BFLOAT16, (size_t)(B * N * MLA_DR), &st) ||
            bench_fill_random(cp->k, qdt, slots * MLA_DN, &st) ||
            bench_fill_random(cp->kr, FIA_DTYPE_BFLOAT16, slots * MLA_DR, &st))
            goto oom;
        for (int64_t j = 0; j < B * N; j++) ((float *)cp->sq)[j] = 1.0f / 127;
        const int64_t qsh[4] = {B, 1, N, MLA_DN}, rsh[4] = {B, 1, N, MLA_DR}, ssh[3] = {B, 1, N};
        fia_tensor_init(&cp->tq, cp->q, qdt, 4, qsh, NULL);
        fia_tensor_init(&cp->tqr, cp->qr, FIA_DTYPE_BFLOAT16, 4, rsh, NULL);
        fia_tensor_init(&cp->tout, cp->out, FIA_DTYPE_BFLOAT16, 4, qsh, NULL);
        fia_tensor_init(&cp->tsq, cp->sq, FIA_DTYPE_FLOAT32, 3, ssh, NULL);
        mla_cache_view(p, cp->k, qdt, MLA_DN, &cp->tk);
        mla_cache_view(p, cp->kr, FIA_DTYPE_BFLOAT16, MLA_DR, &cp->tkr);
    }
    fia_fused_infer_attention_score_params *prm = &I->params;
    fia_fused_infer_attention_score_params_init(prm);
    prm->num_heads = N;
    prm->num_key_value_heads = 1;
    prm->scale = 0.1352; /* DeepSeek: 192^-0.5 . mscale^2 */
    prm->input_layout = FIA_LAYOUT_BSND;
    prm->block_size = bs;
    prm->actual_seq_lengths_kv = I->kv_lens;
    prm->actual_seq_lengths_kv_count = B;
    prm->mla_rescale = p->rescale;
    for (int i = 0; i < copies; i++) {
        fia_fused_infer_attention_score_tensors t = mla_tensors_of(I, i);
        size_t ws = 0;
        const fia_status s = fia_fused_infer_attention_score_plan(ctx, &t, prm, &I->cp[i].plan, &ws);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s", fia_last_error());
            return -1;
        }
        if (ws > I->workspace_bytes) I->workspace_bytes = ws;
    }
    I->workspace = bench_alloc(I->workspace_bytes ? I->workspace_bytes : 64);
    if (I->workspace == NULL) goto oom;
    return 0;
oom:
    bench_set_err(err, err_len, "out of memory");
    return -1;
}

static fia_status mla_execute(void *inst, int copy) {
    mla_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->workspace, I->workspace_bytes);
}

static const fia_plan *mla_plan_of(void *inst) {
    mla_instance *I = inst;
    return I->cp[0].plan;
}

static int mla_check(void *inst, bench_check *r, char *err, size_t err_len) {
    mla_instance *I = inst;
    const bench_mla_case *p = I->p;
    mla_copy *cp = &I->cp[0];
    const int quant = p->dtype == FIA_DTYPE_INT8;
    const fia_ref_tolerance *tol = fia_ref_tolerance_of(
        quant ? "fused_infer_attention_score/mla_int8" : "fused_infer_attention_score/mla", "attention_out",
        FIA_DTYPE_BFLOAT16);
    fia_ref_check chk = FIA_REF_CHECK_INIT;
    const int64_t first[2] = {0, p->num_heads - 2};
    for (int part = 0; part < 2; part++) {
        fia_fused_infer_attention_score_tensors t = mla_tensors_of(I, 0);
        const int64_t h0 = first[part];
        fia_tensor q = bench_sub_view(&cp->tq, 2, h0, 2), qr = bench_sub_view(&cp->tqr, 2, h0, 2);
        fia_tensor o = bench_sub_view(&cp->tout, 2, h0, 2), sq = bench_sub_view(&cp->tsq, 2, h0, 2);
        t.query = &q;
        t.query_rope = &qr;
        t.attention_out = &o;
        if (quant) t.dequant_scale_query = &sq;
        fia_fused_infer_attention_score_params prm = I->params;
        prm.num_heads = 2;
        const int64_t n = fia_tensor_numel(&o);
        double *want = malloc((size_t)n * sizeof *want);
        if (want == NULL || fia_ref_mla(&t, &prm, want, NULL) != 0) {
            free(want);
            bench_set_err(err, err_len, "check: the oracle cannot run this call");
            return -1;
        }
        fia_ref_check_tensor(&o, want, NULL, tol, &chk);
        free(want);
    }
    r->passed = chk.failures == 0;
    r->max_abs_err = chk.max_abs_err;
    snprintf(r->detail, sizeof r->detail, "4/%lld heads x B%lld", (long long)p->num_heads,
             (long long)p->batch);
    return 0;
}

static const bench_op mla_bench_op = {
    "fused_infer_attention_score", mla_shape, mla_params_json, mla_counts, mla_copy_bytes,
    mla_prepare, mla_execute, mla_check, mla_destroy, mla_plan_of,
};

#define BF16 FIA_DTYPE_BFLOAT16
#define I8 FIA_DTYPE_INT8
#define MUL FIA_MLA_RESCALE_MULTIPLY
#define AMLA FIA_MLA_RESCALE_AMLA

/* DeepSeek-V3 decode: 128 heads, batch 1 and 4, 4K / 16K / 32K context. */
static const bench_mla_case b1_4k = {1, 128, 4096, 64, BF16, 0, MUL};
static const bench_mla_case b1_16k = {1, 128, 16384, 64, BF16, 0, MUL};
static const bench_mla_case b1_32k = {1, 128, 32768, 64, BF16, 0, MUL};
static const bench_mla_case b4_4k = {4, 128, 4096, 64, BF16, 0, MUL};
static const bench_mla_case b4_16k = {4, 128, 16384, 64, BF16, 0, MUL};
static const bench_mla_case b4_32k = {4, 128, 32768, 64, BF16, 0, MUL};
static const bench_mla_case b1_16k_nz = {1, 128, 16384, 128, BF16, 1, MUL};
static const bench_mla_case b1_16k_amla = {1, 128, 16384, 64, BF16, 0, AMLA};
static const bench_mla_case b4_16k_amla = {4, 128, 16384, 64, BF16, 0, AMLA};
static const bench_mla_case b1_16k_i8 = {1, 128, 16384, 64, I8, 0, MUL};
static const bench_mla_case b4_16k_i8 = {4, 128, 16384, 64, I8, 0, MUL};
static const bench_mla_case b4_32k_i8 = {4, 128, 32768, 64, I8, 0, MUL};

static const bench_case cases[] = {
    {"mla_decode_b1_kv4k", &mla_bench_op, &b1_4k, 0},
    {"mla_decode_b1_kv16k", &mla_bench_op, &b1_16k, 1},
    {"mla_decode_b1_kv32k", &mla_bench_op, &b1_32k, 0},
    {"mla_decode_b4_kv4k", &mla_bench_op, &b4_4k, 0},
    {"mla_decode_b4_kv16k", &mla_bench_op, &b4_16k, 0},
    {"mla_decode_b4_kv32k", &mla_bench_op, &b4_32k, 0},
    {"mla_decode_b1_kv16k_nz", &mla_bench_op, &b1_16k_nz, 0},
    {"mla_decode_b1_kv16k_amla", &mla_bench_op, &b1_16k_amla, 0},
    {"mla_decode_b4_kv16k_amla", &mla_bench_op, &b4_16k_amla, 0},
    {"mla_decode_b1_kv16k_int8", &mla_bench_op, &b1_16k_i8, 1},
    {"mla_decode_b4_kv16k_int8", &mla_bench_op, &b4_16k_i8, 0},
    {"mla_decode_b4_kv32k_int8", &mla_bench_op, &b4_32k_i8, 0},
};

const bench_case *bench_mla_cases(size_t *count) {
    *count = sizeof cases / sizeof cases[0];
    return cases;
}
