/*
 * cases.c - the benchmark case table, the cold-cache timing driver, and the benchmark hooks of
 * fused_infer_attention_score and smallq_flash_attention (inputs filled with random values in
 * [-1, 1], one plan per buffer copy, one workspace, a sampled oracle check).
 */
#define _POSIX_C_SOURCE 200809L

#include "cases.h"
#include "roofline.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "case.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bench_set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (err == NULL || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------- */
/* Random fill                                                                              */
/* ---------------------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) on a grid of 2^16 levels. */
static float level_to_float(uint32_t level16) { return ((float)level16 - 32768.0f) / 32768.0f; }

/* Fills n elements of dtype with random values in [-1, 1] (int8: [-127, 127]). Returns -1 when
 * out of memory. */
int bench_fill_random(void *dst, fia_dtype dtype, size_t n, uint64_t *state) {
    if (dtype == FIA_DTYPE_FLOAT16 || dtype == FIA_DTYPE_BFLOAT16) {
        uint16_t *table = malloc(65536 * sizeof *table);
        if (table == NULL) return -1;
        for (uint32_t i = 0; i < 65536; i++)
            table[i] = dtype == FIA_DTYPE_FLOAT16 ? fia_f32_to_f16(level_to_float(i))
                                                  : fia_f32_to_bf16(level_to_float(i));
        uint16_t *d = dst;
        size_t i = 0;
        for (; i + 4 <= n; i += 4) {
            const uint64_t r = splitmix64(state);
            d[i] = table[r & 0xffff];
            d[i + 1] = table[(r >> 16) & 0xffff];
            d[i + 2] = table[(r >> 32) & 0xffff];
            d[i + 3] = table[r >> 48];
        }
        for (; i < n; i++) d[i] = table[splitmix64(state) & 0xffff];
        free(table);
    } else if (dtype == FIA_DTYPE_FLOAT32) {
        float *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = level_to_float((uint32_t)(splitmix64(state) >> 48));
    } else if (dtype == FIA_DTYPE_INT8) {
        int8_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int8_t)((int)(splitmix64(state) % 255u) - 127);
    } else {
        memset(dst, 0, n * fia_dtype_size(dtype));
    }
    return 0;
}

/* Buffers of 4 MiB and more are 2 MiB aligned and asked to be backed by transparent huge pages,
 * as serving engines allocate KV caches (the roofline probe's buffer gets the same treatment). */
void *bench_alloc(size_t bytes) {
    return roofline_alloc(bytes);
}

fia_tensor bench_sub_view(const fia_tensor *t, int axis, int64_t first, int64_t count) {
    fia_tensor s = *t;
    s.shape[axis] = count;
    s.data = (char *)t->data + (size_t)(first * t->strides[axis]) * fia_dtype_size(t->dtype);
    return s;
}

/* ---------------------------------------------------------------------------------------- */
/* fused_infer_attention_score                                                              */
/* ---------------------------------------------------------------------------------------- */

static int64_t fia_kv_len_of(const bench_fia_case *p, int64_t b) {
    return p->kv_lens != NULL ? p->kv_lens[b] : p->kv_len;
}

/* Keys visible to the rows of one batch (query length sq, kv length skv). */
static double fia_visible_pairs(const bench_fia_case *p, int64_t sq, int64_t skv) {
    if (sq == 1 || p->sparse_mode == 0) return (double)sq * (double)skv;
    double pairs = 0;
    for (int64_t i = 0; i < sq; i++) {
        int64_t n = i + skv - sq + 1; /* sparse_mode 3: j <= i + (skv - sq) */
        if (n > skv) n = skv;
        if (n > 0) pairs += (double)n;
    }
    return pairs;
}

static int64_t fia_blocks_of(const bench_fia_case *p, int64_t len) {
    return (len + p->block_size - 1) / p->block_size;
}

/* Total cache blocks (paged) or the S2 rows of every batch (dense). */
static int64_t fia_total_blocks(const bench_fia_case *p) {
    int64_t blocks = 0;
    for (int64_t b = 0; b < p->batch; b++) blocks += fia_blocks_of(p, fia_kv_len_of(p, b));
    return blocks;
}

static void fia_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_fia_case *p = c->params;
    const double qe = (double)fia_dtype_size(p->dtype);
    const double ke = (double)fia_dtype_size(p->kv_dtype);
    double kv = 0, pairs = 0;
    for (int64_t b = 0; b < p->batch; b++) {
        const int64_t skv = fia_kv_len_of(p, b);
        kv += (double)skv * (double)p->num_key_value_heads * (double)(p->head_dim + p->head_dim_v);
        pairs += fia_visible_pairs(p, p->q_len, skv);
    }
    const double rows = (double)p->batch * (double)p->q_len * (double)p->num_heads;
    *bytes = kv * ke + rows * (double)p->head_dim * qe + rows * (double)p->head_dim_v * qe;
    *flops = pairs * (double)p->num_heads * 2.0 * (double)(p->head_dim + p->head_dim_v);
}

/* Element counts of one copy's tensors. */
static void fia_sizes(const bench_fia_case *p, size_t *q, size_t *k, size_t *v, size_t *out) {
    const int64_t rows = p->batch * p->q_len * p->num_heads;
    int64_t kv_rows;
    if (p->block_size > 0)
        kv_rows = fia_total_blocks(p) * p->block_size * p->num_key_value_heads;
    else
        kv_rows = p->batch * p->kv_len * p->num_key_value_heads;
    *q = (size_t)(rows * p->head_dim);
    *out = (size_t)(rows * p->head_dim_v);
    *k = (size_t)(kv_rows * p->head_dim);
    *v = (size_t)(kv_rows * p->head_dim_v);
}

static double fia_copy_bytes(const bench_case *c) {
    const bench_fia_case *p = c->params;
    size_t q, k, v, out;
    fia_sizes(p, &q, &k, &v, &out);
    return (double)(q + out) * (double)fia_dtype_size(p->dtype) +
           (double)(k + v) * (double)fia_dtype_size(p->kv_dtype);
}

static const char *short_dtype(fia_dtype d) {
    switch (d) {
    case FIA_DTYPE_FLOAT16: return "f16";
    case FIA_DTYPE_BFLOAT16: return "bf16";
    case FIA_DTYPE_FLOAT32: return "f32";
    case FIA_DTYPE_INT8: return "i8";
    default: return fia_dtype_name(d);
    }
}

static void fia_shape(const bench_case *c, char *buf, size_t len) {
    const bench_fia_case *p = c->params;
    char kv[32];
    if (p->kv_dtype != p->dtype)
        snprintf(kv, sizeof kv, " kv %s", short_dtype(p->kv_dtype));
    else
        kv[0] = '\0';
    snprintf(buf, len, "B%lld q%lld kv%lld%s N%lld/%lld D%lld %s%s%s%s", (long long)p->batch,
             (long long)p->q_len, (long long)p->kv_len, p->kv_lens != NULL ? "*" : "",
             (long long)p->num_heads, (long long)p->num_key_value_heads,
             (long long)p->head_dim, short_dtype(p->dtype), kv,
             p->block_size > 0 ? " paged" : "", p->sparse_mode == 3 ? " causal" : "");
}

static void fia_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_fia_case *p = c->params;
    int n = snprintf(buf, len,
                     "{\"batch\":%lld,\"num_heads\":%lld,\"num_key_value_heads\":%lld,"
                     "\"head_dim\":%lld,\"head_dim_v\":%lld,\"q_len\":%lld,\"kv_len\":%lld,"
                     "\"dtype\":\"%s\",\"kv_dtype\":\"%s\",\"layout\":\"BSND\","
                     "\"sparse_mode\":%d,\"paged\":%s,\"block_size\":%lld",
                     (long long)p->batch, (long long)p->num_heads,
                     (long long)p->num_key_value_heads, (long long)p->head_dim,
                     (long long)p->head_dim_v, (long long)p->q_len, (long long)p->kv_len,
                     fia_dtype_name(p->dtype), fia_dtype_name(p->kv_dtype), (int)p->sparse_mode,
                     p->block_size > 0 ? "true" : "false", (long long)p->block_size);
    if (n < 0 || (size_t)n >= len) return;
    if (p->block_size > 0)
        n += snprintf(buf + n, len - (size_t)n, ",\"kv_cache_layout\":\"BnBsH\"");
    if (p->kv_dtype == FIA_DTYPE_INT8 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n,
                      ",\"antiquant_mode\":0,\"antiquant\":\"per_channel_scale_offset\"");
    if (p->kv_lens != NULL && (size_t)n < len) {
        n += snprintf(buf + n, len - (size_t)n, ",\"kv_lens\":[");
        for (int64_t b = 0; b < p->batch && (size_t)n < len; b++)
            n += snprintf(buf + n, len - (size_t)n, b == 0 ? "%lld" : ",%lld",
                          (long long)p->kv_lens[b]);
        if ((size_t)n < len) n += snprintf(buf + n, len - (size_t)n, "]");
    }
    if ((size_t)n < len) snprintf(buf + n, len - (size_t)n, "}");
}

typedef struct fia_copy {
    void *q, *k, *v, *out;
    fia_tensor tq, tk, tv, tout;
    fia_plan *plan;
} fia_copy;

typedef struct fia_instance {
    const bench_fia_case *p;
    int copies;
    fia_copy *cp;
    void *mask; /* compressed causal mask (sparse_mode 3) */
    fia_tensor tmask;
    int32_t *block_table;
    fia_tensor tbt;
    void *aq_scale, *aq_offset;
    fia_tensor tscale, toffset;
    int64_t *kv_lens; /* per batch, always materialised */
    fia_fused_infer_attention_score_params params;
    void *workspace;
    size_t workspace_bytes;
} fia_instance;

static void fia_destroy(void *inst) {
    fia_instance *I = inst;
    if (I == NULL) return;
    if (I->cp != NULL) {
        for (int i = 0; i < I->copies; i++) {
            fia_plan_destroy(I->cp[i].plan);
            free(I->cp[i].q);
            free(I->cp[i].k);
            free(I->cp[i].v);
            free(I->cp[i].out);
        }
        free(I->cp);
    }
    free(I->mask);
    free(I->block_table);
    free(I->aq_scale);
    free(I->aq_offset);
    free(I->kv_lens);
    free(I->workspace);
    free(I);
}

static fia_fused_infer_attention_score_tensors fia_tensors_of(fia_instance *I, int copy) {
    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    fia_copy *c = &I->cp[copy];
    t.query = &c->tq;
    t.key = &c->tk;
    t.value = &c->tv;
    t.attention_out = &c->tout;
    t.atten_mask = I->mask != NULL ? &I->tmask : NULL;
    t.block_table = I->block_table != NULL ? &I->tbt : NULL;
    t.antiquant_scale = I->aq_scale != NULL ? &I->tscale : NULL;
    t.antiquant_offset = I->aq_offset != NULL ? &I->toffset : NULL;
    return t;
}

static int fia_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                       void **inst, char *err, size_t err_len) {
    const bench_fia_case *p = c->params;
    fia_instance *I = calloc(1, sizeof *I);
    if (I == NULL) goto oom;
    I->p = p;
    I->copies = copies;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    I->kv_lens = malloc((size_t)p->batch * sizeof *I->kv_lens);
    if (I->cp == NULL || I->kv_lens == NULL) goto oom;
    for (int64_t b = 0; b < p->batch; b++) I->kv_lens[b] = fia_kv_len_of(p, b);

    fia_fused_infer_attention_score_params *prm = &I->params;
    fia_fused_infer_attention_score_params_init(prm);
    prm->num_heads = p->num_heads;
    prm->num_key_value_heads = p->num_key_value_heads;
    prm->scale = 1.0 / sqrt((double)p->head_dim);
    prm->input_layout = FIA_LAYOUT_BSND;
    prm->sparse_mode = p->sparse_mode;
    prm->block_size = p->block_size;
    if (p->kv_lens != NULL || p->block_size > 0) {
        prm->actual_seq_lengths_kv = I->kv_lens;
        prm->actual_seq_lengths_kv_count = p->batch;
    }

    uint64_t rng = seed;
    size_t nq, nk, nv, nout;
    fia_sizes(p, &nq, &nk, &nv, &nout);
    const size_t qe = fia_dtype_size(p->dtype), ke = fia_dtype_size(p->kv_dtype);
    const int64_t n1 = p->num_heads, n2 = p->num_key_value_heads;
    for (int i = 0; i < copies; i++) {
        fia_copy *cp = &I->cp[i];
        cp->q = bench_alloc(nq * qe);
        cp->k = bench_alloc(nk * ke);
        cp->v = bench_alloc(nv * ke);
        cp->out = bench_alloc(nout * qe);
        if (cp->q == NULL || cp->k == NULL || cp->v == NULL || cp->out == NULL) goto oom;
        if (i == 0) {
            if (bench_fill_random(cp->q, p->dtype, nq, &rng) != 0 ||
                bench_fill_random(cp->k, p->kv_dtype, nk, &rng) != 0 ||
                bench_fill_random(cp->v, p->kv_dtype, nv, &rng) != 0)
                goto oom;
        } else {
            /* Same values, different addresses: what matters for the caches. */
            memcpy(cp->q, I->cp[0].q, nq * qe);
            memcpy(cp->k, I->cp[0].k, nk * ke);
            memcpy(cp->v, I->cp[0].v, nv * ke);
        }
        memset(cp->out, 0, nout * qe);
        const int64_t qs[4] = {p->batch, p->q_len, n1, p->head_dim};
        const int64_t os[4] = {p->batch, p->q_len, n1, p->head_dim_v};
        fia_tensor_init(&cp->tq, cp->q, p->dtype, 4, qs, NULL);
        fia_tensor_init(&cp->tout, cp->out, p->dtype, 4, os, NULL);
        if (p->block_size > 0) {
            const int64_t blocks = fia_total_blocks(p);
            const int64_t ks[3] = {blocks, p->block_size, n2 * p->head_dim};
            const int64_t vs[3] = {blocks, p->block_size, n2 * p->head_dim_v};
            fia_tensor_init(&cp->tk, cp->k, p->kv_dtype, 3, ks, NULL);
            fia_tensor_init(&cp->tv, cp->v, p->kv_dtype, 3, vs, NULL);
        } else {
            const int64_t ks[4] = {p->batch, p->kv_len, n2, p->head_dim};
            const int64_t vs[4] = {p->batch, p->kv_len, n2, p->head_dim_v};
            fia_tensor_init(&cp->tk, cp->k, p->kv_dtype, 4, ks, NULL);
            fia_tensor_init(&cp->tv, cp->v, p->kv_dtype, 4, vs, NULL);
        }
    }

    /* The compressed causal mask: triu(ones, 1) of 2048 x 2048 (its contents are not read). */
    if (p->sparse_mode == 3 && p->q_len > 1) {
        const int64_t ms[2] = {2048, 2048};
        I->mask = bench_alloc(2048 * 2048);
        if (I->mask == NULL) goto oom;
        uint8_t *m = I->mask;
        for (int64_t i = 0; i < 2048; i++)
            for (int64_t j = 0; j < 2048; j++) m[i * 2048 + j] = j > i;
        fia_tensor_init(&I->tmask, I->mask, FIA_DTYPE_BOOL, 2, ms, NULL);
    }

    /* Paged cache: every batch's blocks, in a shuffled order, -1 beyond its length. */
    if (p->block_size > 0) {
        const int64_t max_blocks = fia_blocks_of(p, p->kv_len);
        const int64_t blocks = fia_total_blocks(p);
        I->block_table = malloc((size_t)(p->batch * max_blocks) * sizeof *I->block_table);
        int32_t *perm = malloc((size_t)blocks * sizeof *perm);
        if (I->block_table == NULL || perm == NULL) {
            free(perm);
            goto oom;
        }
        for (int64_t i = 0; i < blocks; i++) perm[i] = (int32_t)i;
        for (int64_t i = blocks - 1; i > 0; i--) {
            const int64_t j = (int64_t)(splitmix64(&rng) % (uint64_t)(i + 1));
            const int32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        int64_t next = 0;
        for (int64_t b = 0; b < p->batch; b++) {
            const int64_t nb = fia_blocks_of(p, I->kv_lens[b]);
            for (int64_t j = 0; j < max_blocks; j++)
                I->block_table[b * max_blocks + j] = j < nb ? perm[next++] : -1;
        }
        free(perm);
        const int64_t bs[2] = {p->batch, max_blocks};
        fia_tensor_init(&I->tbt, I->block_table, FIA_DTYPE_INT32, 2, bs, NULL);
    }

    /* int8 key/value: per-channel scale and offset [2, N2, 1, D] in the query dtype; the
     * dequantised values (k + offset) * scale stay within about [-1, 1]. */
    if (p->kv_dtype == FIA_DTYPE_INT8) {
        const size_t n = (size_t)(2 * n2 * p->head_dim);
        const int64_t ss[4] = {2, n2, 1, p->head_dim};
        I->aq_scale = bench_alloc(n * qe);
        I->aq_offset = bench_alloc(n * qe);
        float *tmp = malloc(2 * n * sizeof *tmp);
        if (I->aq_scale == NULL || I->aq_offset == NULL || tmp == NULL) {
            free(tmp);
            goto oom;
        }
        for (size_t i = 0; i < n; i++) {
            const double u = (double)(splitmix64(&rng) >> 11) * 0x1.0p-53;
            tmp[i] = (float)((0.5 + 0.5 * u) / 128.0);
            tmp[n + i] = (float)((double)(splitmix64(&rng) % 5u) - 2.0);
        }
        for (size_t i = 0; i < n; i++) {
            if (p->dtype == FIA_DTYPE_FLOAT16) {
                ((uint16_t *)I->aq_scale)[i] = fia_f32_to_f16(tmp[i]);
                ((uint16_t *)I->aq_offset)[i] = fia_f32_to_f16(tmp[n + i]);
            } else if (p->dtype == FIA_DTYPE_BFLOAT16) {
                ((uint16_t *)I->aq_scale)[i] = fia_f32_to_bf16(tmp[i]);
                ((uint16_t *)I->aq_offset)[i] = fia_f32_to_bf16(tmp[n + i]);
            } else {
                ((float *)I->aq_scale)[i] = tmp[i];
                ((float *)I->aq_offset)[i] = tmp[n + i];
            }
        }
        free(tmp);
        fia_tensor_init(&I->tscale, I->aq_scale, p->dtype, 4, ss, NULL);
        fia_tensor_init(&I->toffset, I->aq_offset, p->dtype, 4, ss, NULL);
    }

    /* One plan per copy (a plan binds addresses); one workspace for all of them. */
    for (int i = 0; i < copies; i++) {
        fia_fused_infer_attention_score_tensors t = fia_tensors_of(I, i);
        size_t ws = 0;
        const fia_status s = fia_fused_infer_attention_score_plan(ctx, &t, prm, &I->cp[i].plan,
                                                                  &ws);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "plan: %s", fia_last_error()[0] != '\0'
                                                  ? fia_last_error()
                                                  : fia_status_string(s));
            fia_destroy(I);
            return -1;
        }
        if (ws > I->workspace_bytes) I->workspace_bytes = ws;
    }
    if (I->workspace_bytes > 0 && (I->workspace = malloc(I->workspace_bytes)) == NULL) goto oom;
    *inst = I;
    return 0;

oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    fia_destroy(I);
    return -1;
}

static fia_status fia_execute(void *inst, int copy) {
    fia_instance *I = inst;
    return fia_plan_execute(I->cp[copy].plan, I->workspace, I->workspace_bytes);
}

/* Compares copy 0 with the oracle on reduced calls that give the same rows: the query heads of
 * the first and the last kv head, and for long queries (batch 1, dense cache) three blocks of
 * 16 rows with the keys they can see (sparse_mode 3 is bottom-right aligned, so rows [a, a+r)
 * with the first skv - sq + a + r keys form an equivalent call). */
static int fia_check(void *inst, bench_check *r, char *err, size_t err_len) {
    fia_instance *I = inst;
    const bench_fia_case *p = I->p;
    const fia_copy *cp = &I->cp[0];
    const int64_t n1 = p->num_heads, n2 = p->num_key_value_heads, g = n1 / n2;
    /* the dtype-wide row of ref/tolerance.h (as fia op --check applies) */
    const fia_ref_tolerance *tol = fia_ref_tolerance_of("fused_infer_attention_score", NULL, p->dtype);
    fia_ref_check chk = FIA_REF_CHECK_INIT;

    int64_t row_first[3] = {0, 0, 0}, row_count[3] = {p->q_len, 0, 0};
    int n_blocks = 1;
    const int sampled_rows = p->q_len > 64 && p->batch == 1 && p->block_size == 0 &&
                             p->kv_lens == NULL && (p->sparse_mode == 3 || p->sparse_mode == 0);
    double pairs = 0; /* (row, key) pairs the oracle computes per query head */
    if (sampled_rows) {
        n_blocks = 3;
        row_first[0] = 0;
        row_first[1] = p->q_len / 2 - 8;
        row_first[2] = p->q_len - 16;
        for (int i = 0; i < 3; i++) {
            row_count[i] = 16;
            pairs += 16.0 * (double)p->kv_len; /* an upper bound */
        }
    } else {
        for (int64_t b = 0; b < p->batch; b++)
            pairs += (double)p->q_len * (double)fia_kv_len_of(p, b);
    }
    /* Every kv head when the oracle's work is small (about a second), else the first and the
     * last. */
    const double cost = pairs * (double)n1 * (double)(p->head_dim + p->head_dim_v);
    const int all_groups = cost <= 1.5e9;
    const int64_t n_groups = all_groups ? n2 : n2 > 1 ? 2 : 1;
    int64_t rows_checked = 0;
    for (int64_t gi = 0; gi < n_groups; gi++) {
        const int64_t kvh = all_groups ? gi : gi == 0 ? 0 : n2 - 1;
        for (int bi = 0; bi < n_blocks; bi++) {
            fia_fused_infer_attention_score_params prm = I->params;
            prm.num_heads = g;
            prm.num_key_value_heads = 1;
            fia_tensor q = bench_sub_view(&cp->tq, 2, kvh * g, g);
            fia_tensor out = bench_sub_view(&cp->tout, 2, kvh * g, g);
            fia_tensor k, v, sc, of;
            if (p->block_size > 0) {
                k = bench_sub_view(&cp->tk, 2, kvh * p->head_dim, p->head_dim);
                v = bench_sub_view(&cp->tv, 2, kvh * p->head_dim_v, p->head_dim_v);
            } else {
                k = bench_sub_view(&cp->tk, 2, kvh, 1);
                v = bench_sub_view(&cp->tv, 2, kvh, 1);
            }
            if (sampled_rows) {
                const int64_t a = row_first[bi], rc = row_count[bi];
                int64_t skv = p->kv_len;
                if (p->sparse_mode == 3) {
                    skv = p->kv_len - p->q_len + a + rc;
                    if (skv > p->kv_len) skv = p->kv_len;
                    if (skv < 1) continue;
                }
                q = bench_sub_view(&q, 1, a, rc);
                out = bench_sub_view(&out, 1, a, rc);
                k = bench_sub_view(&k, 1, 0, skv);
                v = bench_sub_view(&v, 1, 0, skv);
            }
            fia_fused_infer_attention_score_tensors t = fia_tensors_of(I, 0);
            t.query = &q;
            t.key = &k;
            t.value = &v;
            t.attention_out = &out;
            if (I->aq_scale != NULL) {
                sc = bench_sub_view(&I->tscale, 1, kvh, 1);
                of = bench_sub_view(&I->toffset, 1, kvh, 1);
                t.antiquant_scale = &sc;
                t.antiquant_offset = &of;
            }
            /* the case description of ref/case.h on the reduced call (attention_out only) */
            fia_case fc;
            memset(&fc, 0, sizeof fc);
            fc.t.fia = t;
            fc.t.fia.softmax_lse = NULL;
            fc.p.fia = prm;
            fc.p.fia.softmax_lse_flag = 0;
            fia_case_bind(&fc, "fused_infer_attention_score");
            if (fia_case_oracle(&fc) != 0) {
                const int oom = fc.out[0].want == NULL;
                fia_case_free(&fc);
                bench_set_err(err, err_len, oom ? "check: out of memory" : "check: the oracle cannot run this call");
                return -1;
            }
            fia_ref_check_tensor(&out, fc.out[0].want, NULL, tol, &chk);
            fia_case_free(&fc);
            if (gi == 0) rows_checked += sampled_rows ? row_count[bi] : p->q_len;
        }
    }
    r->passed = chk.failures == 0;
    r->max_abs_err = chk.max_abs_err;
    snprintf(r->detail, sizeof r->detail, "%lld/%lld heads x %lld/%lld rows x B%lld",
             (long long)(n_groups * g), (long long)n1, (long long)rows_checked,
             (long long)p->q_len, (long long)p->batch);
    return 0;
}

/* The plan's compute unit (amx_bf16 for bf16 prefill tiles on AMX, else fma) picks the
 * roofline the case is judged against. */
static const fia_plan *fia_plan_of(void *inst) {
    fia_instance *I = inst;
    return I->cp[0].plan;
}

static const bench_op fia_bench_op = {
    "fused_infer_attention_score", fia_shape, fia_params_json, fia_counts, fia_copy_bytes,
    fia_prepare, fia_execute, fia_check, fia_destroy, fia_plan_of,
};

/* ---------------------------------------------------------------------------------------- */
/* smallq_flash_attention                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* Bytes: K and V read once, Q read and O written once; FLOPs: 2 * (D + D) per (query row, key)
 * pair and head (Q.K^T and P.V). */
static void smallq_counts(const bench_case *c, double *bytes, double *flops) {
    const bench_smallq_case *p = c->params;
    const double n = (double)p->num_heads, d = (double)p->head_dim;
    const double kv = 2.0 * n * (double)p->kv_len * d, qo = 2.0 * n * (double)p->q_len * d;
    *bytes = (kv + qo) * 2.0;
    *flops = 2.0 * (d + d) * n * (double)p->q_len * (double)p->kv_len;
}

static double smallq_copy_bytes(const bench_case *c) {
    double bytes, flops;
    smallq_counts(c, &bytes, &flops);
    return bytes;
}

static void smallq_shape(const bench_case *c, char *buf, size_t len) {
    const bench_smallq_case *p = c->params;
    snprintf(buf, len, "q%lld kv%lld N%lld D%lld f16", (long long)p->q_len, (long long)p->kv_len,
             (long long)p->num_heads, (long long)p->head_dim);
}

static void smallq_params_json(const bench_case *c, char *buf, size_t len) {
    const bench_smallq_case *p = c->params;
    snprintf(buf, len,
             "{\"batch\":1,\"num_heads\":%lld,\"num_key_value_heads\":%lld,\"head_dim\":%lld,"
             "\"head_dim_v\":%lld,\"q_len\":%lld,\"kv_len\":%lld,\"dtype\":\"float16\","
             "\"kv_dtype\":\"float16\",\"layout\":\"NSD\"}",
             (long long)p->num_heads, (long long)p->num_heads, (long long)p->head_dim,
             (long long)p->head_dim, (long long)p->q_len, (long long)p->kv_len);
}

typedef struct smallq_copy {
    void *q, *k, *v, *o;
    fia_tensor tq, tk, tv, to;
    fia_plan *executor;
} smallq_copy;

typedef struct smallq_instance {
    const bench_smallq_case *p;
    int copies;
    smallq_copy *cp;
    void *workspace;
    uint64_t workspace_bytes;
} smallq_instance;

static void smallq_destroy(void *inst) {
    smallq_instance *I = inst;
    if (I == NULL) return;
    if (I->cp != NULL) {
        for (int i = 0; i < I->copies; i++) {
            fia_plan_destroy(I->cp[i].executor);
            free(I->cp[i].q);
            free(I->cp[i].k);
            free(I->cp[i].v);
            free(I->cp[i].o);
        }
        free(I->cp);
    }
    free(I->workspace);
    free(I);
}

static int smallq_prepare(const bench_case *c, fia_context *ctx, int copies, uint64_t seed,
                          void **inst, char *err, size_t err_len) {
    const bench_smallq_case *p = c->params;
    smallq_instance *I = calloc(1, sizeof *I);
    if (I == NULL) goto oom;
    I->p = p;
    I->copies = copies;
    I->cp = calloc((size_t)copies, sizeof *I->cp);
    if (I->cp == NULL) goto oom;
    uint64_t rng = seed;
    const size_t nq = (size_t)(p->num_heads * p->q_len * p->head_dim);
    const size_t nkv = (size_t)(p->num_heads * p->kv_len * p->head_dim);
    const int64_t qs[3] = {p->num_heads, p->q_len, p->head_dim};
    const int64_t ks[3] = {p->num_heads, p->kv_len, p->head_dim};
    for (int i = 0; i < copies; i++) {
        smallq_copy *cp = &I->cp[i];
        cp->q = bench_alloc(nq * 2);
        cp->k = bench_alloc(nkv * 2);
        cp->v = bench_alloc(nkv * 2);
        cp->o = bench_alloc(nq * 2);
        if (cp->q == NULL || cp->k == NULL || cp->v == NULL || cp->o == NULL) goto oom;
        if (i == 0) {
            if (bench_fill_random(cp->q, FIA_DTYPE_FLOAT16, nq, &rng) != 0 ||
                bench_fill_random(cp->k, FIA_DTYPE_FLOAT16, nkv, &rng) != 0 ||
                bench_fill_random(cp->v, FIA_DTYPE_FLOAT16, nkv, &rng) != 0)
                goto oom;
        } else {
            /* Same values, different addresses: what matters for the caches. */
            memcpy(cp->q, I->cp[0].q, nq * 2);
            memcpy(cp->k, I->cp[0].k, nkv * 2);
            memcpy(cp->v, I->cp[0].v, nkv * 2);
        }
        memset(cp->o, 0, nq * 2);
        fia_tensor_init(&cp->tq, cp->q, FIA_DTYPE_FLOAT16, 3, qs, NULL);
        fia_tensor_init(&cp->tk, cp->k, FIA_DTYPE_FLOAT16, 3, ks, NULL);
        fia_tensor_init(&cp->tv, cp->v, FIA_DTYPE_FLOAT16, 3, ks, NULL);
        fia_tensor_init(&cp->to, cp->o, FIA_DTYPE_FLOAT16, 3, qs, NULL);
        /* One executor per copy (an executor binds addresses); one workspace for all. */
        uint64_t ws = 0;
        const fia_status s = fia_smallq_flash_attention_get_workspace_size(
            ctx, &cp->tq, &cp->tk, &cp->tv, &cp->to, &ws, &cp->executor);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "get_workspace_size: %s", fia_last_error()[0] != '\0'
                                                                ? fia_last_error()
                                                                : fia_status_string(s));
            smallq_destroy(I);
            return -1;
        }
        if (ws > I->workspace_bytes) I->workspace_bytes = ws;
    }
    if (I->workspace_bytes > 0 && (I->workspace = malloc((size_t)I->workspace_bytes)) == NULL)
        goto oom;
    *inst = I;
    return 0;

oom:
    bench_set_err(err, err_len, "out of memory preparing %s", c->name);
    smallq_destroy(I);
    return -1;
}

static fia_status smallq_execute(void *inst, int copy) {
    smallq_instance *I = inst;
    return fia_smallq_flash_attention(I->workspace, I->workspace_bytes, I->cp[copy].executor);
}

/* Compares four heads of copy 0 (the first, two inner ones, the last), every row, with the
 * oracle. */
static int smallq_check(void *inst, bench_check *r, char *err, size_t err_len) {
    smallq_instance *I = inst;
    const bench_smallq_case *p = I->p;
    const smallq_copy *cp = &I->cp[0];
    const int64_t n = p->num_heads;
    int64_t heads[4] = {0, n / 3, (2 * n) / 3, n - 1};
    int64_t count = 0;
    for (int i = 0; i < 4; i++) /* distinct, in order (n may be < 4) */
        if (count == 0 || heads[i] > heads[count - 1]) heads[count++] = heads[i];
    fia_ref_check chk = FIA_REF_CHECK_INIT;
    for (int64_t i = 0; i < count; i++) { /* the case description of ref/case.h, one head */
        fia_tensor q = bench_sub_view(&cp->tq, 0, heads[i], 1), k = bench_sub_view(&cp->tk, 0, heads[i], 1);
        fia_tensor v = bench_sub_view(&cp->tv, 0, heads[i], 1), o = bench_sub_view(&cp->to, 0, heads[i], 1);
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.smallq.q = &q, c.t.smallq.k = &k, c.t.smallq.v = &v, c.t.smallq.o = &o;
        fia_case_bind(&c, "smallq_flash_attention");
        if (fia_case_oracle(&c) != 0) {
            const int oom = c.out[0].want == NULL;
            fia_case_free(&c);
            bench_set_err(err, err_len, oom ? "check: out of memory" : "check: the oracle cannot run this call");
            return -1;
        }
        fia_ref_check_tensor(&o, c.out[0].want, NULL, fia_case_tolerance(&c, 0, 0), &chk);
        fia_case_free(&c);
    }
    r->passed = chk.failures == 0;
    r->max_abs_err = chk.max_abs_err;
    snprintf(r->detail, sizeof r->detail, "%lld/%lld heads x %lld/%lld rows", (long long)count,
             (long long)n, (long long)p->q_len, (long long)p->q_len);
    return 0;
}

static const bench_op smallq_bench_op = {
    "smallq_flash_attention", smallq_shape, smallq_params_json, smallq_counts, smallq_copy_bytes,
    smallq_prepare, smallq_execute, smallq_check, smallq_destroy, NULL,
};

/* ---------------------------------------------------------------------------------------- */
/* The case table                                                                           */
/* ---------------------------------------------------------------------------------------- */

#define F16 FIA_DTYPE_FLOAT16
#define BF16 FIA_DTYPE_BFLOAT16
#define I8 FIA_DTYPE_INT8

/* Llama-3.1-8B attention: 32 query heads, 8 kv heads, head dim 128. */
static const bench_fia_case gqa_decode_4k = {1, 32, 8, 128, 128, 1, 4096, NULL, F16, F16, 0, 0};
static const bench_fia_case gqa_decode_16k = {1, 32, 8, 128, 128, 1, 16384, NULL, F16, F16, 0, 0};
static const bench_fia_case mha_decode_16k = {1, 32, 32, 128, 128, 1, 16384, NULL, F16, F16, 0, 0};
static const bench_fia_case mha_decode_64k = {1, 32, 32, 128, 128, 1, 65536, NULL, F16, F16, 0, 0};
static const bench_fia_case gqa_prefill_2k = {1, 32, 8, 128, 128, 2048, 2048, NULL, F16, F16, 3, 0};
static const bench_fia_case gqa_prefill_2k_bf16 = {1, 32, 8, 128, 128, 2048, 2048, NULL, BF16,
                                                   BF16, 3, 0};
static const int64_t ragged_lens[8] = {4096, 1024, 3072, 2048, 3584, 512, 2560, 1536};
static const bench_fia_case gqa_decode_b8 = {8, 32, 8, 128, 128, 1, 4096, ragged_lens, F16, F16,
                                             0, 0};
static const bench_fia_case gqa_decode_paged = {1, 32, 8, 128, 128, 1, 16384, NULL, F16, F16, 0,
                                                128};
static const bench_fia_case gqa_decode_bf16 = {1, 32, 8, 128, 128, 1, 16384, NULL, BF16, BF16, 0,
                                               0};
static const bench_fia_case gqa_decode_int8 = {1, 32, 8, 128, 128, 1, 16384, NULL, F16, I8, 0, 0};

/* SmallQ (decode, multi-token prediction, speculative decoding): 32 heads, head dim 128, 16K
 * context, 1 to 8 query tokens. */
static const bench_smallq_case smallq_q1_16k = {32, 128, 1, 16384};
static const bench_smallq_case smallq_q2_16k = {32, 128, 2, 16384};
static const bench_smallq_case smallq_q4_16k = {32, 128, 4, 16384};
static const bench_smallq_case smallq_q8_16k = {32, 128, 8, 16384};

static const bench_case cases[] = {
    {"fia_prefill_causal_gqa_s2k", &fia_bench_op, &gqa_prefill_2k, 1},
    {"fia_prefill_causal_gqa_s2k_bf16", &fia_bench_op, &gqa_prefill_2k_bf16, 0},
    {"fia_decode_gqa_kv4k", &fia_bench_op, &gqa_decode_4k, 1},
    {"fia_decode_gqa_kv16k", &fia_bench_op, &gqa_decode_16k, 1},
    {"fia_decode_mha_kv16k", &fia_bench_op, &mha_decode_16k, 0},
    {"fia_decode_mha_kv64k", &fia_bench_op, &mha_decode_64k, 0},
    {"fia_decode_gqa_b8_ragged_kv4k", &fia_bench_op, &gqa_decode_b8, 0},
    {"fia_decode_gqa_paged128_kv16k", &fia_bench_op, &gqa_decode_paged, 0},
    {"fia_decode_gqa_bf16_kv16k", &fia_bench_op, &gqa_decode_bf16, 0},
    {"fia_decode_gqa_int8_kv16k", &fia_bench_op, &gqa_decode_int8, 0},
    {"smallq_q1_kv16k", &smallq_bench_op, &smallq_q1_16k, 1},
    {"smallq_q2_kv16k", &smallq_bench_op, &smallq_q2_16k, 1},
    {"smallq_q4_kv16k", &smallq_bench_op, &smallq_q4_16k, 1},
    {"smallq_q8_kv16k", &smallq_bench_op, &smallq_q8_16k, 1},
};

/* Every operator's case table, in the order `fia bench` lists them. */
typedef const bench_case *(*bench_table_fn)(size_t *count);

static const bench_case *fia_cases(size_t *count) {
    *count = sizeof cases / sizeof cases[0];
    return cases;
}

static const bench_table_fn tables[] = {
    fia_cases,
    bench_mla_cases,
    bench_sfa_cases,
    bench_li_cases,
    bench_chain_cases,
    bench_prolog_cases,
};

const bench_case *bench_cases(size_t *count) {
    enum { MAX_CASES = 128 };
    static bench_case all[MAX_CASES];
    static size_t n_all = 0;
    if (n_all == 0) {
        for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
            size_t n = 0;
            const bench_case *c = tables[t](&n);
            for (size_t i = 0; i < n && n_all < MAX_CASES; i++) all[n_all++] = c[i];
        }
    }
    *count = n_all;
    return all;
}

/* ---------------------------------------------------------------------------------------- */
/* The driver                                                                               */
/* ---------------------------------------------------------------------------------------- */

int bench_copies(const bench_case *c, size_t llc_bytes) {
    const double per_copy = c->op->copy_bytes(c);
    if (per_copy <= 0) return 1;
    const double n = floor(2.0 * (double)llc_bytes / per_copy) + 1.0;
    return n > 64 ? 64 : (int)n;
}

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t name_seed(const char *name) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = name; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The median of x[0, n) (n >= 1); sorts x. */
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, compare_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* A tiny SmallQ call on the bench's context, run untimed right before each timed run when a
 * probe separates the runs: the probe leaves the pool's workers asleep (and, in a VM, their
 * vCPUs halted), which back-to-back layers of a model never do; waking them costs tens to
 * hundreds of microseconds that would otherwise be charged to the run. */
typedef struct bench_waker {
    uint16_t q[2 * 16], k[2 * 16 * 16], v[2 * 16 * 16], o[2 * 16];
    fia_plan *plan;
    void *ws;
    uint64_t ws_size;
} bench_waker;

static void waker_init(bench_waker *w, fia_context *ctx) {
    memset(w, 0, sizeof *w);
    fia_tensor q, k, v, o;
    const int64_t sq[3] = {2, 1, 16}, sk[3] = {2, 16, 16};
    fia_tensor_init(&q, w->q, FIA_DTYPE_FLOAT16, 3, sq, NULL);
    fia_tensor_init(&o, w->o, FIA_DTYPE_FLOAT16, 3, sq, NULL);
    fia_tensor_init(&k, w->k, FIA_DTYPE_FLOAT16, 3, sk, NULL);
    fia_tensor_init(&v, w->v, FIA_DTYPE_FLOAT16, 3, sk, NULL);
    if (fia_smallq_flash_attention_get_workspace_size(ctx, &q, &k, &v, &o, &w->ws_size,
                                                      &w->plan) != FIA_STATUS_SUCCESS) {
        w->plan = NULL;
        return;
    }
    w->ws = w->ws_size ? malloc(w->ws_size) : NULL;
    if (w->ws_size && w->ws == NULL) {
        fia_plan_destroy(w->plan);
        w->plan = NULL;
    }
}

static void waker_run(bench_waker *w) {
    if (w->plan != NULL) fia_plan_execute(w->plan, w->ws, w->ws_size);
}

static void waker_free(bench_waker *w) {
    fia_plan_destroy(w->plan);
    free(w->ws);
}

int bench_run_case(const bench_case *c, fia_context *ctx, const roofline *rl, int reps,
                   double budget_s, roofline_probe *probe, bench_result *res, bench_check *check,
                   char *err, size_t err_len) {
    memset(res, 0, sizeof *res);
    const int copies = bench_copies(c, rl->llc_bytes);
    void *inst = NULL;
    if (c->op->prepare(c, ctx, copies, name_seed(c->name), &inst, err, err_len) != 0) return -1;

    /* Warm-up: one run per copy (page faults of outputs and workspace, code paths). */
    const double w0 = now_seconds();
    for (int i = 0; i < copies; i++) {
        const fia_status s = c->op->execute(inst, i);
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "execute: %s", fia_last_error()[0] != '\0'
                                                     ? fia_last_error()
                                                     : fia_status_string(s));
            c->op->destroy(inst);
            return -1;
        }
    }
    const double per_run = (now_seconds() - w0) / copies;
    /* The probe before the first run; its time counts against the budget of every run. */
    const double p0 = now_seconds();
    const double bw0 = probe != NULL ? roofline_probe_read(probe) : 0.0;
    const double cycle = per_run + (now_seconds() - p0);
    if (reps <= 0) {
        const double n = cycle > 0 ? budget_s / cycle : 1000;
        reps = n < 5 ? 5 : n > 1000 ? 1000 : (int)n;
    }
    double *times = malloc((size_t)reps * 3 * sizeof *times);
    if (times == NULL) {
        bench_set_err(err, err_len, "out of memory");
        c->op->destroy(inst);
        return -1;
    }
    double *bw = times + reps, *frac = times + 2 * reps;
    bench_waker waker;
    if (probe != NULL) waker_init(&waker, ctx);
    for (int r = 0; r < reps; r++) {
        const int copy = (r + 1) % copies; /* the warm-up ended with the last copy */
        if (probe != NULL) waker_run(&waker);
        const double t0 = now_seconds();
        const fia_status s = c->op->execute(inst, copy);
        times[r] = now_seconds() - t0;
        bw[r] = probe != NULL && s == FIA_STATUS_SUCCESS ? roofline_probe_read(probe) : 0.0;
        if (s != FIA_STATUS_SUCCESS) {
            bench_set_err(err, err_len, "execute: %s", fia_last_error());
            free(times);
            if (probe != NULL) waker_free(&waker);
            c->op->destroy(inst);
            return -1;
        }
    }
    if (probe != NULL) waker_free(&waker);
    c->op->counts(c, &res->bytes, &res->flops);
    /* Each run against the larger of the probes just before and just after it (strict: the
     * bandwidth the machine offered around the run, never the lower of the two). */
    int paired = probe != NULL && bw0 > 0;
    for (int r = 0; r < reps; r++) {
        const double around = r == 0 ? (bw0 > bw[0] ? bw0 : bw[0])
                                     : (bw[r - 1] > bw[r] ? bw[r - 1] : bw[r]);
        if (bw[r] <= 0 || times[r] <= 0) paired = 0;
        else frac[r] = res->bytes / times[r] * 1e-9 / around;
    }
    res->seconds = median(times, reps);
    if (paired) {
        res->read_gbps = median(bw, reps);
        res->mem_fraction = median(frac, reps);
    } else { /* no probe, or one failed: the bandwidth measured at start */
        res->read_gbps = rl->read_gbps;
        res->mem_fraction =
            rl->read_gbps > 0 ? res->bytes / res->seconds * 1e-9 / rl->read_gbps : 0.0;
    }
    res->min_seconds = times[0]; /* sorted by median() */
    res->fma_fraction =
        rl->fma_gflops > 0 ? res->flops / res->seconds * 1e-9 / rl->fma_gflops : 0.0;
    res->unit = "fma";
    if (c->op->plan != NULL) {
        const fia_plan *pl = c->op->plan(inst);
        if (pl != NULL) res->unit = fia_plan_compute_unit(pl);
    }
    res->unit_peak = roofline_unit_peak(rl, res->unit);
    if (!(res->unit_peak > 0)) { /* unit not probed: judged against fp32 FMA */
        res->unit = "fma";
        res->unit_peak = rl->fma_gflops;
    }
    res->unit_fraction = res->unit_peak > 0 ? res->flops / res->seconds * 1e-9 / res->unit_peak : 0.0;
    res->reps = reps;
    res->copies = copies;
    free(times);

    int rc = 0;
    if (check != NULL) {
        memset(check, 0, sizeof *check);
        rc = c->op->check(inst, check, err, err_len);
    }
    c->op->destroy(inst);
    return rc;
}
