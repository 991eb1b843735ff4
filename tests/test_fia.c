/*
 * test_fia.c - FusedInferAttentionScore against the double-precision oracle (tests/ref).
 *
 *   test_fia [seed]          FIA_TEST_CASES=N sets the number of random cases (default 300)
 *                            FIA_TEST_ONLY=i runs random case i only (with the same seed)
 *
 * Sections: oracle self-checks (hand-computed), seeded random cases over every layout / sparse
 * mode / dtype / cache form, edge cases, determinism (threads and batch composition),
 * plan/execute behaviour, invalid input. Every case runs under every ISA the CPU has (scalar,
 * AVX2, AVX-512), each against the oracle.
 *
 * Tolerances (every element; inputs uniform in [-1, 1], the oracle reads their exact values):
 *   float16 / bfloat16 out: |got - want| <= 1e-3 + 5e-3 |want|  (rounding the output alone costs
 *                           up to 2^-11 resp. 2^-8 relative).
 *   float32 out:            |got - want| <= 1e-6 + 1e-5 |want|. The library accumulates in fp32:
 *                           a score carries ~sqrt(D) ulp of error, which moves each softmax weight
 *                           by that relative amount, so an output that averages many v in [-1, 1]
 *                           is off by ~1e-7 absolute however small the output itself is: a pure
 *                           rtol of 1e-5 fails honest results near 0, an atol of 1e-6 does not.
 *                           Measured worst absolute error, 28 seeds x 1500 random cases plus the
 *                           edge cases, all three ISAs: 4.4e-7 (printed at the end of each run).
 *   softmax_lse:            |got - want| <= 1e-5 + 1e-5 |want|, +inf exact: 1e-5 relative to
 *                           max(1, |lse|). lse is ~0 when one visible key scores ~0, where a
 *                           relative bound means nothing. Measured worst: 7.1e-7.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fia.h"
#include "ref/ref_fia.h"
#include "test_util.h"

#define FP32_ATOL 1e-6
#define FP32_RTOL 1e-5
#define HALF_ATOL 1e-3
#define HALF_RTOL 5e-3
#define LSE_ATOL 1e-5
#define LSE_RTOL 1e-5

#define MAXB 16

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static fia_context *g_ctx[3]; /* one per available ISA, 2 threads */
static fia_isa g_isa[3];
static int g_nctx;

static void open_contexts(void) {
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        fia_context_options o = {2, levels[i]};
        fia_context *ctx = NULL;
        fia_status st = fia_context_create(&o, &ctx);
        if (st == FIA_STATUS_UNSUPPORTED_ISA) {
            printf("isa %s: not available on this CPU, skipped\n", fia_isa_name(levels[i]));
            continue;
        }
        if (!tu_check(st == FIA_STATUS_SUCCESS, "context isa %s: %s (%s)", fia_isa_name(levels[i]),
                      fia_status_string(st), fia_last_error()))
            continue;
        g_ctx[g_nctx] = ctx;
        g_isa[g_nctx++] = levels[i];
    }
    printf("testing ISAs:");
    for (int i = 0; i < g_nctx; i++) printf(" %s", fia_isa_name(g_isa[i]));
    printf("\n");
}

/* ------------------------------------------------------------------------------------------ */
/* A case and the tensors built from it                                                       */
/* ------------------------------------------------------------------------------------------ */

enum { MASK_NONE, MASK_2D, MASK_3D, MASK_3D1, MASK_4D, MASK_4D1, MASK_DEC, MASK_C2, MASK_C3, MASK_C4 };
static const char *const mask_names[] = {"none", "[S1,S2]", "[B,S1,S2]", "[1,S1,S2]", "[B,1,S1,S2]",
                                         "[1,1,S1,S2]", "[B,S2]", "c[2048,2048]", "c[1,2048,2048]",
                                         "c[1,1,2048,2048]"};
enum { LEN_NULL, LEN_B, LEN_BCAST, LEN_MORE }; /* forms of the length arrays */
/* antiquant shapes: mode 0: AQ_T [2], AQ_C4 [2,N2,1,D], AQ_C3 [2,N2,D], AQ_C2 [2,N2*D];
 * mode 1: AQ_TOK [2,B,S2s] */
enum { AQ_T = 1, AQ_C4, AQ_C3, AQ_C2, AQ_TOK };

typedef struct fcase {
    fia_layout layout;
    fia_dtype qdt, kvdt; /* kvdt INT8: antiquant */
    int64_t B, N1, N2, S1, S2, D, Dv; /* S1 / S2: the dense S dims (unused for TND) */
    int64_t qlen[MAXB], kvlen[MAXB];
    int qform, kvform;
    int n2_zero; /* pass num_key_value_heads = 0 (means N1); needs N1 == N2 */
    int paged;   /* 0, 3 (BnBsH), 4 (BnNBsD) */
    int64_t bs, extra_blocks, table_pad;
    int sparse_mode;
    int64_t pre, next;
    int mask;
    fia_dtype mask_dt;
    double mask_p;       /* probability that a mask element is set */
    int masked_rows;     /* rows fully masked in the full mask */
    int64_t mask_pad[2]; /* extra rows / cols of a full mask */
    int aq_shape, aq_off;
    fia_dtype aq_dt;
    int lse;
    int strided; /* padded outer strides on query, out and a dense key / value */
    int64_t tnd_pad; /* TND: rows of the query / key beyond the last cumulative length */
    int poison;      /* NaN in every q / k / v element outside the actual lengths */
    int cmask_junk;  /* the compressed mask holds random bytes (its contents are not read) */
    double scale;
} fcase;

static int is_decode(const fcase *c) { return c->layout != FIA_LAYOUT_TND && c->S1 == 1; }

static void fcase_desc(const fcase *c, char *s, size_t n) {
    int w = snprintf(s, n, "%s q=%s kv=%s B=%lld N1=%lld N2=%lld%s S1=%lld S2=%lld D=%lld Dv=%lld mode=%d "
                     "pre=%lld next=%lld mask=%s(p=%.2f rows=%d) lse=%d strided=%d scale=%.4f",
                     fia_layout_name(c->layout), fia_dtype_name(c->qdt), fia_dtype_name(c->kvdt),
                     (long long)c->B, (long long)c->N1, (long long)c->N2, c->n2_zero ? "(0)" : "",
                     (long long)c->S1, (long long)c->S2, (long long)c->D, (long long)c->Dv,
                     c->sparse_mode, (long long)c->pre, (long long)c->next, mask_names[c->mask],
                     c->mask_p, c->masked_rows, c->lse, c->strided, c->scale);
    if (c->paged && w > 0 && (size_t)w < n)
        w += snprintf(s + w, n - (size_t)w, " paged%d bs=%lld", c->paged, (long long)c->bs);
    if (c->kvdt == FIA_DTYPE_INT8 && w > 0 && (size_t)w < n)
        w += snprintf(s + w, n - (size_t)w, " aq_mode=%d shape=%d off=%d aq_dt=%s",
                      c->aq_shape == AQ_TOK, c->aq_shape, c->aq_off, fia_dtype_name(c->aq_dt));
    if (w > 0 && (size_t)w < n) w += snprintf(s + w, n - (size_t)w, " qlen(f%d)=", c->qform);
    for (int64_t b = 0; b < c->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(s + w, n - (size_t)w, "%s%lld", b ? "," : "", (long long)c->qlen[b]);
    if (w > 0 && (size_t)w < n) w += snprintf(s + w, n - (size_t)w, " kvlen(f%d)=", c->kvform);
    for (int64_t b = 0; b < c->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(s + w, n - (size_t)w, "%s%lld", b ? "," : "", (long long)c->kvlen[b]);
}

/* Makes the lengths agree with their forms and the decode rule. */
static void fcase_normalize(fcase *c) {
    const int tnd = c->layout == FIA_LAYOUT_TND;
    if (tnd) c->qform = c->kvform = LEN_B; /* cumulative, count B */
    if (c->paged && c->kvform == LEN_NULL) c->kvform = LEN_B;
    for (int64_t b = 0; b < c->B; b++) {
        if (is_decode(c)) c->qlen[b] = 1;
        if (!tnd && c->qform == LEN_NULL) c->qlen[b] = c->S1;
        if (!tnd && c->qform == LEN_BCAST) c->qlen[b] = c->qlen[0];
        if (!tnd && !c->paged && c->kvform == LEN_NULL) c->kvlen[b] = c->S2;
        if (!tnd && c->kvform == LEN_BCAST) c->kvlen[b] = c->kvlen[0];
        if (c->paged && tnd && c->kvform == LEN_BCAST) c->kvform = LEN_B;
    }
    if (c->N1 != c->N2) c->n2_zero = 0;
}

static int64_t maxv(const int64_t *v, int64_t n) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    return m;
}

static int64_t sumv(const int64_t *v, int64_t n) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    return s;
}

typedef struct fbuf {
    tu_tensor q, k, v, out, lse, mask, bt, aqs, aqo;
    int64_t qlens[MAXB + 2], kvlens[MAXB + 2];
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_tensors t;
} fbuf;

static uint8_t *g_cmask;      /* the compressed mask triu(ones, 1) [2048, 2048], shared */
static uint8_t *g_cmask_junk; /* random bytes of the same shape */

static int32_t dense_shape(fia_layout l, int64_t B, int64_t S, int64_t N, int64_t D, int64_t *sh) {
    switch (l) {
    case FIA_LAYOUT_BSH: sh[0] = B, sh[1] = S, sh[2] = N * D; return 3;
    case FIA_LAYOUT_BSND: sh[0] = B, sh[1] = S, sh[2] = N, sh[3] = D; return 4;
    case FIA_LAYOUT_TND: sh[0] = S, sh[1] = N, sh[2] = D; return 3;
    default: sh[0] = B, sh[1] = N, sh[2] = S, sh[3] = D; return 4;
    }
}

static void random_pad(tu_rng *r, int64_t *pad) {
    for (int i = 0; i < FIA_MAX_DIMS; i++) pad[i] = tu_int(r, 0, 3);
}

static void fbuf_free(fbuf *f) {
    tu_free(&f->q), tu_free(&f->k), tu_free(&f->v), tu_free(&f->out), tu_free(&f->lse);
    tu_free(&f->mask), tu_free(&f->bt), tu_free(&f->aqs), tu_free(&f->aqo);
}

/* Builds every tensor of case c with random contents. Returns 0, -1 on allocation failure. */
static int fbuild(const fcase *c, tu_rng *r, fbuf *f) {
    memset(f, 0, sizeof *f);
    const int tnd = c->layout == FIA_LAYOUT_TND;
    const int64_t B = c->B, maxq = maxv(c->qlen, B), maxkv = maxv(c->kvlen, B);
    const int64_t S1 = tnd ? sumv(c->qlen, B) + c->tnd_pad : c->S1;
    const int64_t S2 = tnd ? sumv(c->kvlen, B) + c->tnd_pad : c->S2;
    int64_t sh[FIA_MAX_DIMS], pad[FIA_MAX_DIMS];
    int32_t nd;
    int rc = 0;

    random_pad(r, pad);
    nd = dense_shape(c->layout, B, S1, c->N1, c->D, sh);
    rc |= tu_alloc(&f->q, c->qdt, nd, sh, c->strided ? pad : NULL, 0);
    tu_fill_uniform(&f->q.t, r, -1.0, 1.0);
    nd = dense_shape(c->layout == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND : c->layout, B, S1, c->N1,
                     c->Dv, sh);
    random_pad(r, pad);
    rc |= tu_alloc(&f->out, c->qdt, nd, sh, c->strided ? pad : NULL, 0xff);
    if (c->lse) {
        if (tnd) sh[0] = S1, sh[1] = c->N1, sh[2] = 1, nd = 3;
        else sh[0] = B, sh[1] = c->N1, sh[2] = S1, sh[3] = 1, nd = 4;
        rc |= tu_alloc(&f->lse, FIA_DTYPE_FLOAT32, nd, sh, NULL, 0xff);
    }

    const int quant = c->kvdt == FIA_DTYPE_INT8;
    const double klo = quant ? -120.0 : -1.0, khi = quant ? 121.0 : 1.0;
    if (c->paged) {
        int64_t need = 0;
        for (int64_t b = 0; b < B; b++) need += (c->kvlen[b] + c->bs - 1) / c->bs;
        const int64_t nblocks = need + c->extra_blocks > 0 ? need + c->extra_blocks : 1;
        const int64_t maxb = (maxkv + c->bs - 1) / c->bs + c->table_pad > 0
                                 ? (maxkv + c->bs - 1) / c->bs + c->table_pad : 1;
        const int64_t bsh[2] = {B, maxb};
        rc |= tu_alloc(&f->bt, FIA_DTYPE_INT32, 2, bsh, NULL, 0xff); /* -1 padding */
        int64_t *perm = malloc(sizeof(int64_t) * (size_t)nblocks);
        if (!perm || rc) {
            free(perm);
            return -1;
        }
        for (int64_t i = 0; i < nblocks; i++) perm[i] = i;
        for (int64_t i = nblocks - 1; i > 0; i--) { /* shuffled block ids */
            const int64_t j = tu_int(r, 0, i), tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
        int64_t next_id = 0;
        for (int64_t b = 0; b < B; b++)
            for (int64_t p = 0; p < (c->kvlen[b] + c->bs - 1) / c->bs; p++)
                ((int32_t *)f->bt.buf)[b * maxb + p] = (int32_t)perm[next_id++];
        free(perm);
        for (int side = 0; side < 2; side++) {
            const int64_t d = side ? c->Dv : c->D;
            if (c->paged == 3) sh[0] = nblocks, sh[1] = c->bs, sh[2] = c->N2 * d, nd = 3;
            else sh[0] = nblocks, sh[1] = c->N2, sh[2] = c->bs, sh[3] = d, nd = 4;
            tu_tensor *kv = side ? &f->v : &f->k;
            rc |= tu_alloc(kv, c->kvdt, nd, sh, NULL, 0);
            if (!rc) tu_fill_uniform(&kv->t, r, klo, khi);
        }
    } else {
        for (int side = 0; side < 2; side++) {
            tu_tensor *kv = side ? &f->v : &f->k;
            nd = dense_shape(c->layout, B, S2, c->N2, side ? c->Dv : c->D, sh);
            random_pad(r, pad);
            rc |= tu_alloc(kv, c->kvdt, nd, sh, c->strided ? pad : NULL, 0);
            if (!rc) tu_fill_uniform(&kv->t, r, klo, khi);
        }
    }
    if (rc) return -1;

    /* Mask. */
    if (c->mask >= MASK_C2) {
        const int64_t s3[3] = {1, 2048, 2048}, s4[4] = {1, 1, 2048, 2048};
        uint8_t *cm = c->cmask_junk ? g_cmask_junk : g_cmask;
        if (c->mask == MASK_C2) fia_tensor_init(&f->mask.t, cm, c->mask_dt, 2, s3 + 1, NULL);
        if (c->mask == MASK_C3) fia_tensor_init(&f->mask.t, cm, c->mask_dt, 3, s3, NULL);
        if (c->mask == MASK_C4) fia_tensor_init(&f->mask.t, cm, c->mask_dt, 4, s4, NULL);
    } else if (c->mask != MASK_NONE) {
        const int64_t rows = maxq + c->mask_pad[0], cols = maxkv + c->mask_pad[1];
        switch (c->mask) {
        case MASK_2D: sh[0] = rows, sh[1] = cols, nd = 2; break;
        case MASK_3D: sh[0] = B, sh[1] = rows, sh[2] = cols, nd = 3; break;
        case MASK_3D1: sh[0] = 1, sh[1] = rows, sh[2] = cols, nd = 3; break;
        case MASK_4D: sh[0] = B, sh[1] = 1, sh[2] = rows, sh[3] = cols, nd = 4; break;
        case MASK_4D1: sh[0] = 1, sh[1] = 1, sh[2] = rows, sh[3] = cols, nd = 4; break;
        default: sh[0] = B, sh[1] = cols, nd = 2; break; /* MASK_DEC */
        }
        if (tu_alloc(&f->mask, c->mask_dt, nd, sh, NULL, 0)) return -1;
        uint8_t *m = f->mask.buf;
        const int64_t n = (int64_t)f->mask.bytes, row_len = sh[nd - 1];
        for (int64_t i = 0; i < n; i++)
            if (tu_chance(r, c->mask_p))
                m[i] = c->mask_dt == FIA_DTYPE_BOOL ? 1 : (uint8_t)TU_PICK(r, ((const int[]){1, 2, 127, 255}));
        for (int k = 0; k < c->masked_rows && n > 0 && row_len > 0; k++) { /* whole rows masked */
            const int64_t row = tu_int(r, 0, n / row_len - 1);
            memset(m + row * row_len, 1, (size_t)row_len);
        }
    }

    /* Antiquant. */
    if (quant) {
        const int64_t s2s = maxkv + c->mask_pad[1];
        switch (c->aq_shape) {
        case AQ_T: sh[0] = 2, nd = 1; break;
        case AQ_C4: sh[0] = 2, sh[1] = c->N2, sh[2] = 1, sh[3] = c->D, nd = 4; break;
        case AQ_C3: sh[0] = 2, sh[1] = c->N2, sh[2] = c->D, nd = 3; break;
        case AQ_C2: sh[0] = 2, sh[1] = c->N2 * c->D, nd = 2; break;
        default: sh[0] = 2, sh[1] = B, sh[2] = s2s, nd = 3; break;
        }
        if (tu_alloc(&f->aqs, c->aq_dt, nd, sh, NULL, 0)) return -1;
        tu_fill_uniform(&f->aqs.t, r, 0.004, 0.012);
        if (c->aq_off) {
            if (tu_alloc(&f->aqo, c->aq_dt, nd, sh, NULL, 0)) return -1;
            for (int64_t i = 0; i < tu_numel(&f->aqo.t); i++) /* integers: exact in any dtype */
                tu_store(&f->aqo.t, i, floor(tu_uniform(r, -8.0, 9.0)));
        }
    }

    /* Lengths and params. */
    fia_fused_infer_attention_score_params *p = &f->p;
    fia_fused_infer_attention_score_params_init(p);
    p->num_heads = c->N1;
    p->num_key_value_heads = c->n2_zero ? 0 : c->N2;
    p->scale = c->scale;
    p->pre_tokens = c->pre;
    p->next_tokens = c->next;
    p->input_layout = c->layout;
    p->sparse_mode = c->sparse_mode;
    p->block_size = c->paged ? c->bs : 0;
    p->antiquant_mode = c->aq_shape == AQ_TOK;
    p->inner_precise = (int32_t)tu_int(r, 0, 1);
    p->softmax_lse_flag = c->lse;
    int64_t acc = 0;
    for (int64_t b = 0; b < B; b++) f->qlens[b] = tnd ? (acc += c->qlen[b]) : c->qlen[b];
    acc = 0;
    for (int64_t b = 0; b < B; b++) f->kvlens[b] = tnd && !c->paged ? (acc += c->kvlen[b]) : c->kvlen[b];
    f->qlens[B] = f->kvlens[B] = 1000000007; /* garbage beyond B: must be ignored */
    f->qlens[B + 1] = f->kvlens[B + 1] = -5;
    if (c->qform != LEN_NULL) {
        p->actual_seq_lengths = f->qlens;
        p->actual_seq_lengths_count = c->qform == LEN_BCAST ? 1 : c->qform == LEN_MORE ? B + 2 : B;
    }
    if (c->kvform != LEN_NULL) {
        p->actual_seq_lengths_kv = f->kvlens;
        p->actual_seq_lengths_kv_count = c->kvform == LEN_BCAST ? 1 : c->kvform == LEN_MORE ? B + 2 : B;
    }

    fia_fused_infer_attention_score_tensors *t = &f->t;
    memset(t, 0, sizeof *t);
    t->query = &f->q.t, t->key = &f->k.t, t->value = &f->v.t;
    t->atten_mask = c->mask != MASK_NONE ? &f->mask.t : NULL;
    t->block_table = c->paged ? &f->bt.t : NULL;
    t->antiquant_scale = quant ? &f->aqs.t : NULL;
    t->antiquant_offset = quant && c->aq_off ? &f->aqo.t : NULL;
    t->attention_out = &f->out.t;
    t->softmax_lse = c->lse ? &f->lse.t : NULL;
    return 0;
}

/* Resets the outputs (and their stride gaps) to the 0xff sentinel (NaN in every float dtype). */
static void reset_outputs(fbuf *f) {
    memset(f->out.buf, 0xff, f->out.bytes);
    if (f->lse.buf) memset(f->lse.buf, 0xff, f->lse.bytes);
}

/* Nonzero when every byte of the out buffer outside the view still holds the sentinel. */
static int gaps_untouched(const tu_tensor *tt) {
    const size_t es = fia_dtype_size(tt->t.dtype);
    const int64_t n = tu_numel(&tt->t), cap = (int64_t)(tt->bytes / es);
    uint8_t *in_view = calloc((size_t)cap + 1, 1);
    int ok = 1;
    if (!in_view) return 1;
    for (int64_t i = 0; i < n; i++) in_view[tu_offset(&tt->t, i)] = 1;
    for (int64_t e = 0; e < cap && ok; e++)
        if (!in_view[e])
            for (size_t b = 0; b < es; b++) ok &= ((const uint8_t *)tt->buf)[e * (int64_t)es + (int64_t)b] == 0xff;
    free(in_view);
    return ok;
}

/* Runs the call on ctx: one-shot or plan + execute. */
static fia_status run_fia(fia_context *ctx, fbuf *f, int oneshot) {
    if (oneshot) return fia_fused_infer_attention_score(ctx, &f->t, &f->p);
    fia_plan *plan = NULL;
    size_t ws = 0;
    fia_status st = fia_fused_infer_attention_score_plan(ctx, &f->t, &f->p, &plan, &ws);
    if (st != FIA_STATUS_SUCCESS) return st;
    void *w = ws ? malloc(ws) : NULL;
    st = ws && !w ? FIA_STATUS_OUT_OF_MEMORY : fia_plan_execute(plan, w, ws);
    free(w);
    fia_plan_destroy(plan);
    return st;
}

static double g_max_err_fp32, g_max_err_lse; /* worst absolute errors seen (reported) */

static void track_errors(const fbuf *f, const double *out_ref, const double *lse_ref) {
    if (f->out.t.dtype == FIA_DTYPE_FLOAT32)
        for (int64_t i = 0; i < tu_numel(&f->out.t); i++) {
            const double e = fabs(fia_ref_load(&f->out.t, i) - out_ref[i]);
            if (e > g_max_err_fp32) g_max_err_fp32 = e;
        }
    if (lse_ref && f->lse.buf)
        for (int64_t i = 0; i < tu_numel(&f->lse.t); i++)
            if (!isinf(lse_ref[i])) {
                const double e = fabs(fia_ref_load(&f->lse.t, i) - lse_ref[i]) / fmax(1.0, fabs(lse_ref[i]));
                if (e > g_max_err_lse) g_max_err_lse = e;
            }
}

/* Compares the outputs of f with the oracle. Returns the number of bad elements. */
static int64_t compare_outputs(const fbuf *f, const double *out_ref, const double *lse_ref) {
    const int half = f->out.t.dtype != FIA_DTYPE_FLOAT32;
    int64_t bad = fia_ref_compare("attention_out", &f->out.t, out_ref, half ? HALF_ATOL : FP32_ATOL,
                                  half ? HALF_RTOL : FP32_RTOL);
    if (lse_ref && f->lse.buf) bad += fia_ref_compare("softmax_lse", &f->lse.t, lse_ref, LSE_ATOL, LSE_RTOL);
    track_errors(f, out_ref, lse_ref);
    return bad;
}

/* Batch and position of logical element i of a dense q / k / v tensor (TND: b = -1, s = the
 * packed token). */
static void dense_pos(const fia_tensor *t, fia_layout l, int64_t i, int64_t *b, int64_t *s) {
    int64_t c[FIA_MAX_DIMS];
    for (int32_t d = t->ndim - 1; d >= 0; d--) c[d] = i % t->shape[d], i /= t->shape[d];
    if (l == FIA_LAYOUT_TND) *b = -1, *s = c[0];
    else if (l == FIA_LAYOUT_BNSD || l == FIA_LAYOUT_BNSD_BSND) *b = c[0], *s = c[2];
    else *b = c[0], *s = c[1];
}

/* Writes NaN into every float q / k / v element that no batch may read: query rows beyond a
 * batch's length, keys / values beyond a batch's kv length, paged rows no table entry within the
 * lengths points to. The library must never let them reach an output. */
static void poison(const fcase *c, fbuf *f) {
    const int tnd = c->layout == FIA_LAYOUT_TND;
    const int64_t B = c->B, tq = sumv(c->qlen, B), tkv = sumv(c->kvlen, B);
    for (int64_t i = 0; i < tu_numel(&f->q.t); i++) {
        int64_t b, s;
        dense_pos(&f->q.t, c->layout, i, &b, &s);
        if (tnd ? s >= tq : s >= c->qlen[b]) tu_store(&f->q.t, i, NAN);
    }
    if (c->kvdt == FIA_DTYPE_INT8) return;
    uint8_t *used = NULL;
    if (c->paged) {
        const int64_t nb = f->k.t.shape[0], maxb = f->bt.t.shape[1];
        used = calloc((size_t)(nb * c->bs), 1);
        if (!used) return;
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < c->kvlen[b]; t++) used[((int32_t *)f->bt.buf)[b * maxb + t / c->bs] * c->bs + t % c->bs] = 1;
    }
    for (int side = 0; side < 2; side++) {
        const fia_tensor *t = side ? &f->v.t : &f->k.t;
        for (int64_t i = 0; i < tu_numel(t); i++) {
            int64_t b, s, cc[FIA_MAX_DIMS] = {0}, j = i;
            int dead;
            if (c->paged) {
                for (int32_t d = t->ndim - 1; d >= 0; d--) cc[d] = j % t->shape[d], j /= t->shape[d];
                dead = !used[cc[0] * c->bs + (t->ndim == 3 ? cc[1] : cc[2])];
            } else {
                dense_pos(t, c->layout, i, &b, &s);
                dead = tnd ? s >= tkv : s >= c->kvlen[b];
            }
            if (dead) tu_store(t, i, NAN);
        }
    }
    free(used);
}

static int64_t g_cases_run;

/* Builds case c from seed, runs the oracle, then the library under every ISA context, and
 * checks each against the oracle. Returns the number of failed checks. */
static int run_case(const fcase *c0, uint64_t seed, const char *label) {
    fcase c = *c0;
    fcase_normalize(&c);
    tu_rng r = tu_rng_make(seed);
    fbuf f;
    char desc[1024];
    fcase_desc(&c, desc, sizeof desc);
    int fails = 0;
    if (fbuild(&c, &r, &f) != 0) {
        tu_check(0, "%s: cannot build case (%s)", label, desc);
        fbuf_free(&f);
        return 1;
    }
    if (c.poison) poison(&c, &f);
    const int64_t nout = tu_numel(&f.out.t), nlse = c.lse ? tu_numel(&f.lse.t) : 0;
    double *out_ref = malloc(sizeof(double) * (size_t)(nout + 1));
    double *lse_ref = c.lse ? malloc(sizeof(double) * (size_t)(nlse + 1)) : NULL;
    if (!out_ref || (c.lse && !lse_ref) ||
        fia_ref_fused_infer_attention_score(&f.t, &f.p, out_ref, lse_ref) != 0) {
        tu_check(0, "%s: oracle failed (%s)", label, desc);
        fails++;
        goto done;
    }
    g_cases_run++;
    for (int i = 0; i < g_nctx; i++) {
        reset_outputs(&f);
        const fia_status st = run_fia(g_ctx[i], &f, (int)(seed >> 7) & 1);
        int ok = st == FIA_STATUS_SUCCESS;
        if (!ok) {
            fprintf(stderr, "  status %s: %s\n", fia_status_string(st), fia_last_error());
        } else {
            ok = compare_outputs(&f, out_ref, lse_ref) == 0;
            if (c.strided && !gaps_untouched(&f.out)) {
                fprintf(stderr, "  attention_out: bytes outside the view were written\n");
                ok = 0;
            }
        }
        if (!tu_check(ok, "%s [%s] seed %llu: %s", label, fia_isa_name(g_isa[i]),
                      (unsigned long long)seed, desc))
            fails++;
    }
done:
    free(out_ref);
    free(lse_ref);
    fbuf_free(&f);
    return fails;
}

/* A plain case: full lengths, sparse_mode 0, no mask, torch_npu default pre/next. */
static fcase base_case(fia_layout layout, fia_dtype dt, int64_t B, int64_t N1, int64_t N2, int64_t S1,
                       int64_t S2, int64_t D, int64_t Dv) {
    fcase c;
    memset(&c, 0, sizeof c);
    c.layout = layout, c.qdt = c.kvdt = dt;
    c.B = B, c.N1 = N1, c.N2 = N2, c.S1 = S1, c.S2 = S2, c.D = D, c.Dv = Dv;
    for (int64_t b = 0; b < MAXB; b++) c.qlen[b] = S1, c.kvlen[b] = S2;
    c.qform = c.kvform = layout == FIA_LAYOUT_TND ? LEN_B : LEN_NULL;
    c.pre = c.next = 2147483647;
    c.mask_dt = FIA_DTYPE_BOOL;
    c.scale = 1.0 / sqrt((double)D);
    c.poison = 1;
    return c;
}

static void set_lens(fcase *c, const int64_t *q, const int64_t *kv) {
    for (int64_t b = 0; b < c->B; b++) {
        if (q) c->qlen[b] = q[b];
        if (kv) c->kvlen[b] = kv[b];
    }
    if (q && c->layout != FIA_LAYOUT_TND) c->qform = LEN_B;
    if (kv) c->kvform = LEN_B;
}

static void set_paged(fcase *c, int form, int64_t bs) {
    c->paged = form, c->bs = bs, c->extra_blocks = 2, c->table_pad = 1;
    if (c->kvform == LEN_NULL) c->kvform = LEN_B;
}

static void set_quant(fcase *c, int shape, int off, fia_dtype aq_dt) {
    c->kvdt = FIA_DTYPE_INT8, c->aq_shape = shape, c->aq_off = off, c->aq_dt = aq_dt;
}

static int64_t pick_window(tu_rng *r, int64_t span) {
    switch (tu_int(r, 0, 9)) {
    case 0: return 2147483647;
    case 1: return INT64_MAX;
    case 2: return -tu_int(r, 1, span + 2);
    case 3: return tu_chance(r, 0.5) ? INT64_MIN : -INT64_MAX;
    default: return tu_int(r, -2, span + 2);
    }
}

/* Random case idx: the layout, query dtype and sparse mode cycle with idx so that every
 * combination appears within 75 cases; the rest is drawn from r. */
static void gen_random_case(tu_rng *r, int idx, fcase *c) {
    static const fia_layout layouts[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD,
                                          FIA_LAYOUT_TND, FIA_LAYOUT_BNSD_BSND};
    static const fia_dtype qdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    static const int64_t groups[] = {1, 1, 2, 4, 8}, kvheads[] = {1, 1, 2, 3};
    static const int64_t dims[] = {1, 3, 8, 16, 16, 32, 32, 40, 64, 72, 128};
    static const int64_t vdims[] = {8, 16, 24, 64, 128};
    static const int64_t bss[] = {1, 4, 16, 32, 128};
    static const fia_dtype mdts[] = {FIA_DTYPE_BOOL, FIA_DTYPE_INT8, FIA_DTYPE_UINT8};
    static const fia_dtype aqdts[] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    static const double mps[] = {0.0, 0.1, 0.3, 0.7};
    const fia_layout layout = layouts[idx % 5];
    const int64_t G = TU_PICK(r, groups), N2 = TU_PICK(r, kvheads), D = TU_PICK(r, dims);
    const int decode = layout != FIA_LAYOUT_TND && tu_chance(r, 0.3);
    const int64_t S1 = decode ? 1 : tu_int(r, 1, tu_chance(r, 0.15) ? 80 : 24);
    const int64_t S2 = tu_int(r, 1, tu_chance(r, 0.15) ? 160 : 48);
    *c = base_case(layout, qdts[(idx / 5) % 3], tu_int(r, 1, 4), N2 * G, N2, S1, S2, D,
                   tu_chance(r, 0.7) ? D : TU_PICK(r, vdims));
    c->sparse_mode = (idx / 15) % 5;
    c->n2_zero = G == 1 && tu_chance(r, 0.5);
    for (int64_t b = 0; b < c->B; b++) {
        if (layout == FIA_LAYOUT_TND) {
            c->qlen[b] = tu_int(r, 0, tu_chance(r, 0.15) ? 60 : 20);
            c->kvlen[b] = tu_int(r, 0, tu_chance(r, 0.15) ? 120 : 40);
        } else {
            c->qlen[b] = tu_chance(r, 0.5) ? S1 : tu_int(r, 0, S1);
            c->kvlen[b] = tu_chance(r, 0.4) ? S2 : tu_int(r, 0, S2);
        }
        if (tu_chance(r, 0.08)) c->kvlen[b] = 0;
    }
    if (layout != FIA_LAYOUT_TND) c->qform = (int)tu_int(r, 0, 3), c->kvform = (int)tu_int(r, 0, 3);
    if (tu_chance(r, 0.35)) {
        set_paged(c, tu_chance(r, 0.5) ? 3 : 4, TU_PICK(r, bss));
        c->extra_blocks = tu_int(r, 0, 3), c->table_pad = tu_int(r, 0, 2);
        if (tu_chance(r, 0.3)) c->kvform = LEN_BCAST;
    }
    c->mask_dt = TU_PICK(r, mdts);
    c->mask_p = TU_PICK(r, mps);
    c->masked_rows = tu_chance(r, 0.2) ? (int)tu_int(r, 1, 2) : 0;
    c->mask_pad[0] = tu_int(r, 0, 2), c->mask_pad[1] = tu_int(r, 0, 3);
    const int64_t span = S2 > 24 ? S2 : 24;
    switch (c->sparse_mode) {
    case 0:
        if (tu_chance(r, 0.5)) c->mask = (int)tu_int(r, MASK_2D, decode && c->B > 1 ? MASK_DEC : MASK_4D1);
        if (tu_chance(r, 0.7)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    case 1:
        c->mask = (int)tu_int(r, MASK_2D, decode && c->B > 1 ? MASK_DEC : MASK_4D1);
        if (tu_chance(r, 0.5)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    default:
        c->mask = (int)tu_int(r, MASK_C2, MASK_C4);
        /* decode ignores the mode: a full-form mask is then a full mask and applies */
        if (decode && tu_chance(r, 0.25)) c->mask = (int)tu_int(r, MASK_2D, c->B > 1 ? MASK_DEC : MASK_4D1);
        if (c->sparse_mode == 4 || tu_chance(r, 0.3)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    }
    if (tu_chance(r, 0.25)) {
        const int shape = (int)tu_int(r, AQ_T, AQ_TOK);
        set_quant(c, shape, tu_chance(r, 0.5), TU_PICK(r, aqdts));
        if (shape != AQ_T && shape != AQ_TOK) c->Dv = c->D;
    }
    c->lse = tu_chance(r, 0.5);
    c->strided = tu_chance(r, 0.2);
    c->poison = tu_chance(r, 0.5);
    c->cmask_junk = tu_chance(r, 0.3);
    if (layout == FIA_LAYOUT_TND && tu_chance(r, 0.2)) c->tnd_pad = tu_int(r, 1, 3);
    c->scale *= tu_uniform(r, 0.5, 2.0);
    /* a 2-D decode mask with B rows would read as [B, S2]: keep the [S1, S2] form distinct */
    if (decode && c->mask == MASK_2D && c->B > 1 && 1 + c->mask_pad[0] == c->B) c->mask_pad[0]++;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_random(uint64_t seed) {
    const long n = tu_env_long("FIA_TEST_CASES", 300), only = tu_env_long("FIA_TEST_ONLY", -1);
    const int64_t before = g_cases_run;
    const double t0 = now_s();
    int bad = 0;
    for (long i = 0; i < n; i++) {
        if (only >= 0 && i != only) continue;
        const uint64_t cs = tu_mix(seed ^ (0x100000000ull * (uint64_t)(i + 1)));
        tu_rng r = tu_rng_make(cs);
        fcase c;
        gen_random_case(&r, (int)i, &c);
        char label[64];
        snprintf(label, sizeof label, "random #%ld", i);
        bad += run_case(&c, cs, label) != 0;
    }
    printf("random: %lld cases (FIA_TEST_CASES=%ld), %d failing, %.1f s\n",
           (long long)(g_cases_run - before), n, bad, now_s() - t0);
}

static void test_edges(uint64_t seed) {
    const int64_t before = g_cases_run;
    const double t0 = now_s();
    int k = 0;
    char label[128];
#define EDGE(c, what) (snprintf(label, sizeof label, "edge %d %s", k, what), run_case(&(c), seed + (uint64_t)(k++), label))
    const fia_layout L[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND,
                             FIA_LAYOUT_BNSD_BSND};
    fcase c;

    /* KV length 0 and 1, in every layout, dense and paged. */
    for (int l = 0; l < 5; l++) {
        const int64_t q[3] = {4, 0, 3}, kv[3] = {0, 1, 6};
        c = base_case(L[l], FIA_DTYPE_FLOAT16, 3, 4, 2, 5, 6, 16, 16);
        set_lens(&c, L[l] == FIA_LAYOUT_TND ? q : NULL, kv);
        c.lse = 1;
        EDGE(c, "kv length 0/1");
        set_paged(&c, l % 2 ? 3 : 4, 4);
        EDGE(c, "kv length 0/1 paged");
        c = base_case(L[l], FIA_DTYPE_FLOAT32, 3, 2, 1, L[l] == FIA_LAYOUT_TND ? 0 : 1, 6, 8, 8);
        set_lens(&c, L[l] == FIA_LAYOUT_TND ? (const int64_t[]){1, 2, 3} : NULL, kv);
        c.lse = 1;
        EDGE(c, "decode kv length 0/1");
    }
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 2, 2, 2, 3, 0, 16, 16);
    c.lse = 1;
    EDGE(c, "key tensor with S2 = 0");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 2, 2, 1, 0, 16, 16);
    c.lse = 1;
    EDGE(c, "decode key tensor with S2 = 0");

    /* S1 > S2 under mode 3 (the first S1 - S2 rows see nothing), and under mode 4. */
    for (int l = 0; l < 5; l++) {
        c = base_case(L[l], FIA_DTYPE_FLOAT32, 2, 2, 1, 20, 5, 32, 32);
        set_lens(&c, (const int64_t[]){20, 12}, (const int64_t[]){5, 3});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "mode 3 S1 > S2");
        c.sparse_mode = 4, c.pre = 2, c.next = 0, c.mask = MASK_C4;
        EDGE(c, "mode 4 S1 > S2");
    }

    /* Rows with nothing visible. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 4, 2, 6, 9, 16, 16);
    c.sparse_mode = 1, c.mask = MASK_3D, c.mask_p = 0.3, c.masked_rows = 3, c.lse = 1;
    EDGE(c, "mode 1 fully masked rows");
    c.mask_p = 1.0;
    EDGE(c, "mode 1 everything masked");
    c.sparse_mode = 0, c.mask = MASK_2D, c.mask_p = 0.0, c.masked_rows = 0, c.pre = -3, c.next = -5;
    EDGE(c, "mode 0 empty window");
    c.sparse_mode = 4, c.mask = MASK_C2, c.pre = INT64_MIN, c.next = INT64_MAX;
    EDGE(c, "mode 4 pre = INT64_MIN");
    c.pre = INT64_MAX, c.next = INT64_MIN;
    EDGE(c, "mode 4 next = INT64_MIN");
    c.pre = -2, c.next = 1;
    EDGE(c, "mode 4 negative pre");
    c.sparse_mode = 0, c.mask = MASK_2D, c.pre = INT64_MAX, c.next = INT64_MAX;
    EDGE(c, "mode 0 pre/next INT64_MAX");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 3, 2, 1, 1, 12, 16, 16);
    c.mask = MASK_DEC, c.mask_p = 0.5, c.masked_rows = 1, c.lse = 1;
    set_lens(&c, NULL, (const int64_t[]){12, 5, 9});
    EDGE(c, "decode [B, S2] mask with a fully masked batch");
    c.sparse_mode = 3, c.mask = MASK_C3, c.masked_rows = 0;
    EDGE(c, "decode ignores mode 3 (compressed mask not applied)");
    c.sparse_mode = 4, c.pre = -1, c.next = -1;
    EDGE(c, "decode ignores mode 4 pre/next");
    c.mask = MASK_4D, c.mask_p = 0.5;
    EDGE(c, "decode, mode 4, full-form mask applies");
    c.sparse_mode = 0, c.mask = MASK_NONE, c.pre = 0, c.next = 0;
    EDGE(c, "mode 0 without mask ignores pre/next");

    /* Partial last page, block sizes 16 and 512, both cache forms. */
    for (int form = 3; form <= 4; form++) {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 4, 2, 1, 40, 32, 32);
        set_lens(&c, NULL, (const int64_t[]){37, 16, 1});
        set_paged(&c, form, 16);
        c.lse = 1;
        EDGE(c, "paged bs 16 decode, partial page");
        c.S1 = 7, c.sparse_mode = 3, c.mask = MASK_C2;
        set_lens(&c, (const int64_t[]){7, 3, 1}, NULL);
        EDGE(c, "paged bs 16 prefill, partial page");
        c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 2, 2, 1, 1, 700, 16, 16);
        set_lens(&c, NULL, (const int64_t[]){600, 513});
        set_paged(&c, form, 512);
        EDGE(c, "paged bs 512 decode");
        c.S1 = 5, c.sparse_mode = 3, c.mask = MASK_C2;
        EDGE(c, "paged bs 512 prefill");
    }

    /* Head dims. */
    const int64_t hd[4] = {1, 3, 72, 192};
    for (int i = 0; i < 4; i++) {
        c = base_case(L[i], i % 2 ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16, 2, 2, 1, 9, 33, hd[i], 128);
        if (L[i] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){9, 4}, (const int64_t[]){33, 20});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "head dim D with Dv 128, prefill");
        c = base_case(L[(i + 1) % 5 == 3 ? 4 : (i + 1) % 5], FIA_DTYPE_FLOAT32, 2, 4, 2, 1, 33, hd[i], 128);
        EDGE(c, "head dim D with Dv 128, decode");
    }
    for (int64_t d = 256; d <= 512; d *= 2) {
        c = base_case(FIA_LAYOUT_BSND, d == 256 ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT32, 1, 2, 1, 6, 40, d, d);
        c.sparse_mode = 2, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "head dim 256/512 prefill");
        c.S1 = 1;
        set_paged(&c, 4, 16);
        EDGE(c, "head dim 256/512 decode paged");
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 2, 2, 1, 50, d, d);
        set_quant(&c, AQ_C3, 1, FIA_DTYPE_FLOAT32);
        EDGE(c, "head dim 256/512 decode antiquant");
    }

    /* GQA ratios 1, 2, 4, 8 and MQA. */
    const int64_t n1s[5] = {4, 4, 8, 16, 16}, n2s[5] = {4, 2, 2, 2, 1};
    for (int i = 0; i < 5; i++) {
        c = base_case(L[i], FIA_DTYPE_FLOAT16, 2, n1s[i], n2s[i], 5, 17, 32, 32);
        if (L[i] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){5, 2}, (const int64_t[]){17, 11});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "GQA prefill");
        if (L[i] != FIA_LAYOUT_TND) {
            c.S1 = 1, c.mask = MASK_NONE;
            set_paged(&c, 3 + i % 2, 8);
            EDGE(c, "GQA decode paged");
        }
    }

    /* Antiquant: every scale shape, with and without offset, every scale dtype. */
    for (int shape = AQ_T; shape <= AQ_TOK; shape++)
        for (int off = 0; off <= 1; off++) {
            const fia_dtype adt = shape % 3 == 0 ? FIA_DTYPE_FLOAT32 : shape % 3 == 1 ? FIA_DTYPE_FLOAT16 : FIA_DTYPE_BFLOAT16;
            c = base_case(FIA_LAYOUT_BSH, off ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 30, 32, 32);
            set_lens(&c, NULL, (const int64_t[]){30, 13});
            set_quant(&c, shape, off, adt);
            EDGE(c, "antiquant decode");
            set_paged(&c, 4 - off, 8);
            EDGE(c, "antiquant decode paged");
            c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 2, 1, 6, 20, 16, 16);
            set_quant(&c, shape, off, adt);
            c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
            EDGE(c, "antiquant prefill fp32 query");
        }

    /* Length forms: broadcast count 1, count > B, NULL; query shorter than S1. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 2, 1, 8, 12, 16, 16);
    c.qform = LEN_BCAST, c.kvform = LEN_MORE, c.qlen[0] = 5;
    set_lens(&c, NULL, (const int64_t[]){12, 0, 7});
    c.kvform = LEN_MORE, c.lse = 1;
    EDGE(c, "lengths broadcast / count > B");
    c.qform = LEN_MORE;
    set_lens(&c, (const int64_t[]){8, 3, 0}, NULL);
    c.qform = LEN_MORE, c.kvform = LEN_BCAST, c.kvlen[0] = 9;
    EDGE(c, "lengths count > B / broadcast");

    /* Modes 2-4 without the compressed mask: either accepted (then it must be right) or
     * rejected as INVALID_ARGUMENT; both read the contract. Checked in test_bad_input. */

    /* Long decode: split-KV. */
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 8, 2, 1, 3000, 128, 128);
    set_lens(&c, NULL, (const int64_t[]){3000, 2111});
    c.lse = 1;
    EDGE(c, "long decode fp16");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 1, 8, 1, 1, 4000, 64, 64);
    set_paged(&c, 4, 128);
    c.lse = 1;
    EDGE(c, "long decode bf16 MQA paged");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 4, 4, 1, 2500, 64, 64);
    c.lse = 1;
    EDGE(c, "long decode fp32");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 1, 1, 3000, 128, 128);
    set_lens(&c, NULL, (const int64_t[]){3000, 1500});
    set_paged(&c, 3, 64);
    set_quant(&c, AQ_TOK, 1, FIA_DTYPE_FLOAT32);
    EDGE(c, "long decode int8 per-token paged");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 4, 2, 0, 0, 64, 64);
    set_lens(&c, (const int64_t[]){1, 1}, (const int64_t[]){2600, 3});
    c.lse = 1;
    EDGE(c, "TND one-token queries, long kv");

    /* Split-KV boundaries: kv tile 64, chunk 512; query tile = 256 / G positions. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 9, 4, 2, 1, 1100, 32, 32);
    set_lens(&c, NULL, (const int64_t[]){63, 64, 65, 511, 512, 513, 1023, 1024, 1025});
    c.lse = 1;
    EDGE(c, "decode kv lengths at tile / chunk boundaries");
    set_paged(&c, 3, 64);
    EDGE(c, "decode kv lengths at tile / chunk boundaries, paged");
    const int64_t tq[4][3] = {{8, 1, 32}, {8, 1, 33}, {6, 2, 85}, {6, 2, 86}}; /* N1, N2, S1 */
    for (int i = 0; i < 4; i++) {
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, tq[i][0], tq[i][1], tq[i][2], 1300, 16, 16);
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "query rows at the tile boundary, long kv, causal");
    }
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 256, 1, 1, 700, 8, 8);
    c.lse = 1;
    EDGE(c, "256 query heads on one kv head (G 256), decode");
    c.S1 = 3, c.sparse_mode = 3, c.mask = MASK_C2;
    EDGE(c, "G 256, S1 3");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 1, 256, 256, 2, 70, 8, 8);
    EDGE(c, "256 kv heads");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 64, 1, 0, 0, 16, 16);
    set_lens(&c, (const int64_t[]){1, 5}, (const int64_t[]){900, 5});
    c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "G 64 TND");
    /* Chunks in which a row sees nothing (the partial state is empty and must merge away). */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 2, 1, 2, 1600, 16, 16);
    c.mask = MASK_3D, c.mask_p = 0.995, c.lse = 1;
    EDGE(c, "long kv, sparse mask: chunks with nothing visible");
    c.mask_p = 0.9995;
    EDGE(c, "long kv, almost everything masked");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 3, 4, 1, 1, 1800, 32, 32);
    c.mask = MASK_DEC, c.mask_p = 0.99, c.lse = 1;
    EDGE(c, "decode [B, S2] mask, long kv");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 2, 8, 2000, 16, 16);
    c.sparse_mode = 4, c.pre = 100, c.next = 50, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "band at the end of a long kv");
    c.pre = 1200, c.next = -600;
    EDGE(c, "band in the middle of a long kv (negative next)");
    c.sparse_mode = 0, c.mask = MASK_2D, c.mask_p = 0.0, c.pre = -900, c.next = 1500;
    EDGE(c, "mode 0 window ahead of the diagonal (negative pre)");
    /* Many requests. */
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, MAXB, 4, 2, 1, 700, 16, 16);
    for (int64_t b = 0; b < MAXB; b++) c.kvlen[b] = (b * 157) % 701;
    c.kvform = LEN_B, c.lse = 1;
    set_paged(&c, 4, 16);
    EDGE(c, "16 decode requests, paged bs 16");
    /* TND rows beyond the last cumulative length: no batch owns them; 0 / +inf as rows beyond
     * a batch's query length (fia.h does not say; a NaN there would escape into the model). */
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 2, 1, 0, 0, 16, 16);
    set_lens(&c, (const int64_t[]){3, 2}, (const int64_t[]){4, 6});
    c.tnd_pad = 3, c.lse = 1;
    EDGE(c, "TND with trailing rows");

    /* Long prefill: several query and kv tiles, causal tile skipping. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 4, 2, 300, 300, 64, 64);
    c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "prefill 300 causal fp16");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_BFLOAT16, 2, 2, 1, 0, 0, 64, 64);
    set_lens(&c, (const int64_t[]){200, 120}, (const int64_t[]){200, 260});
    c.sparse_mode = 3, c.mask = MASK_C3, c.lse = 1;
    EDGE(c, "prefill TND causal bf16");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 2, 256, 384, 32, 32);
    c.sparse_mode = 4, c.pre = 64, c.next = 16, c.mask = MASK_C4, c.lse = 1;
    EDGE(c, "prefill band fp32");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 4, 4, 256, 256, 64, 64);
    c.sparse_mode = 2, c.mask = MASK_C2;
    EDGE(c, "prefill 256 mode 2");
    c = base_case(FIA_LAYOUT_BNSD_BSND, FIA_DTYPE_FLOAT32, 1, 2, 1, 200, 200, 16, 16);
    c.lse = 1;
    EDGE(c, "prefill 200 full attention fp32");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 2, 1, 160, 200, 32, 32);
    c.mask = MASK_2D, c.mask_p = 0.2, c.pre = 40, c.next = 0;
    EDGE(c, "prefill mode 0 mask + window");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 4, 2, 200, 600, 64, 64);
    set_paged(&c, 4, 128);
    set_quant(&c, AQ_C4, 1, FIA_DTYPE_FLOAT16);
    c.sparse_mode = 3, c.mask = MASK_C2;
    EDGE(c, "prefill paged antiquant causal");
#undef EDGE
    printf("edge: %lld cases, %.1f s\n", (long long)(g_cases_run - before), now_s() - t0);
}

/* ------------------------------------------------------------------------------------------ */
/* Oracle self-checks (hand-computed expectations; no library call)                           */
/* ------------------------------------------------------------------------------------------ */

/* Logical index of (b, n, s, d) in a dense layout whose S dim is S (T for TND). */
static int64_t dense_index(fia_layout l, int64_t b, int64_t n, int64_t s, int64_t d, int64_t N,
                           int64_t S, int64_t D) {
    if (l == FIA_LAYOUT_TND) return (s * N + n) * D + d;
    if (l == FIA_LAYOUT_BNSD) return ((b * N + n) * S + s) * D + d;
    return ((b * S + s) * N + n) * D + d; /* BSH, BSND, and the BSND out of BNSD_BSND */
}

static int oracle(fbuf *f, double **out, double **lse) {
    *out = malloc(sizeof(double) * (size_t)(tu_numel(&f->out.t) + 1));
    *lse = f->lse.buf ? malloc(sizeof(double) * (size_t)(tu_numel(&f->lse.t) + 1)) : NULL;
    if (!*out || (f->lse.buf && !*lse)) return -1;
    return fia_ref_fused_infer_attention_score(&f->t, &f->p, *out, *lse);
}

static int same_doubles(const double *a, const double *b, int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || fabs(a[i] - b[i]) <= tol)) return 0;
    return 1;
}

static void test_oracle_self(uint64_t seed) {
    tu_rng r = tu_rng_make(seed ^ 0x5e1f);
    fbuf f, g;
    double *o1, *l1, *o2, *l2;
    fcase c;

    /* One key: out = v, lse = scale * q.k. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 1, 1, 1, 1, 4, 3);
    c.lse = 1, c.scale = 0.7;
    fbuild(&c, &r, &f);
    int ok = oracle(&f, &o1, &l1) == 0;
    double dot = 0;
    for (int d = 0; d < 4; d++) dot += fia_ref_load(&f.q.t, d) * fia_ref_load(&f.k.t, d);
    for (int d = 0; d < 3 && ok; d++) ok = o1[d] == fia_ref_load(&f.v.t, d);
    tu_check(ok && fabs(l1[0] - 0.7 * dot) < 1e-15, "oracle: one key gives out = v, lse = s");
    free(o1), free(l1), fbuf_free(&f);

    /* Equal scores (q = 0): out = mean of the visible v, lse = log(n). */
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT16, 2, 2, 1, 3, 5, 8, 6);
    set_lens(&c, NULL, (const int64_t[]){5, 2});
    c.lse = 1;
    fbuild(&c, &r, &f);
    memset(f.q.buf, 0, f.q.bytes);
    ok = oracle(&f, &o1, &l1) == 0;
    for (int64_t b = 0; b < 2 && ok; b++)
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 3; i++) {
                const int64_t n = b ? 2 : 5;
                ok &= fabs(l1[(b * 2 + h) * 3 + i] - log((double)n)) < 1e-14;
                for (int64_t d = 0; d < 6; d++) {
                    double m = 0;
                    for (int64_t j = 0; j < n; j++) m += fia_ref_load(&f.v.t, dense_index(FIA_LAYOUT_BNSD, b, 0, j, d, 1, 5, 6));
                    ok &= fabs(o1[dense_index(FIA_LAYOUT_BNSD, b, h, i, d, 2, 3, 6)] - m / (double)n) < 1e-14;
                }
            }
    tu_check(ok, "oracle: equal scores give the mean of v and lse = log(n)");
    free(o1), free(l1), fbuf_free(&f);

    /* A fully masked row (mode 1): 0 / +inf; the other rows are finite. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 1, 1, 3, 4, 4, 4);
    c.sparse_mode = 1, c.mask = MASK_2D, c.lse = 1;
    fbuild(&c, &r, &f);
    memset((uint8_t *)f.mask.buf + 4, 1, 4); /* row 1 */
    ok = oracle(&f, &o1, &l1) == 0 && isinf(l1[1]) && !isinf(l1[0]) && !isinf(l1[2]);
    for (int d = 0; d < 4 && ok; d++) ok = o1[4 + d] == 0.0;
    tu_check(ok, "oracle: a masked row gives 0 / +inf");
    free(o1), free(l1), fbuf_free(&f);

    /* Paged (both forms) equals the same cache laid out densely. */
    for (int form = 3; form <= 4; form++) {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 2, 4, 2, 3, 13, 8, 5);
        set_lens(&c, NULL, (const int64_t[]){13, 7});
        set_paged(&c, form, 4);
        c.lse = 1, c.sparse_mode = 3, c.mask = MASK_C2;
        fbuild(&c, &r, &f);
        fcase cd = c;
        cd.paged = 0;
        fbuild(&cd, &r, &g);
        memcpy(g.q.buf, f.q.buf, f.q.bytes);
        for (int side = 0; side < 2; side++) {
            const tu_tensor *src = side ? &f.v : &f.k, *dst = side ? &g.v : &g.k;
            const int64_t nd = side ? 5 : 8;
            for (int64_t b = 0; b < 2; b++)
                for (int64_t t = 0; t < c.kvlen[b]; t++)
                    for (int64_t n = 0; n < 2; n++)
                        for (int64_t d = 0; d < nd; d++) {
                            const int64_t blk = ((int32_t *)f.bt.buf)[b * f.bt.t.shape[1] + t / 4];
                            const int64_t li = form == 3 ? (blk * 4 + t % 4) * 2 * nd + n * nd + d
                                                         : ((blk * 2 + n) * 4 + t % 4) * nd + d;
                            tu_store(&dst->t, dense_index(FIA_LAYOUT_BSND, b, n, t, d, 2, 13, nd),
                                     fia_ref_load(&src->t, li));
                        }
        }
        ok = oracle(&f, &o1, &l1) == 0 && oracle(&g, &o2, &l2) == 0 &&
             same_doubles(o1, o2, tu_numel(&f.out.t), 0) && same_doubles(l1, l2, tu_numel(&f.lse.t), 0);
        tu_check(ok, "oracle: paged cache (%s) equals the dense cache", form == 3 ? "BnBsH" : "BnNBsD");
        free(o1), free(l1), free(o2), free(l2), fbuf_free(&f), fbuf_free(&g);
    }

    /* Antiquant equals the float computation on dequantized values (exact: power-of-two
     * scales, integer offsets). */
    for (int shape = AQ_T; shape <= AQ_TOK; shape++) {
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 9, 8, 8);
        set_lens(&c, NULL, (const int64_t[]){9, 4});
        set_quant(&c, shape, 1, FIA_DTYPE_FLOAT32);
        c.lse = 1;
        fbuild(&c, &r, &f);
        for (int64_t i = 0; i < tu_numel(&f.aqs.t); i++) tu_store(&f.aqs.t, i, ldexp(1.0, -(int)tu_int(&r, 5, 8)));
        fcase cf = c;
        cf.kvdt = FIA_DTYPE_FLOAT32;
        fbuild(&cf, &r, &g);
        memcpy(g.q.buf, f.q.buf, f.q.bytes);
        for (int side = 0; side < 2; side++)
            for (int64_t b = 0; b < 2; b++)
                for (int64_t t = 0; t < 9; t++)
                    for (int64_t n = 0; n < 2; n++)
                        for (int64_t d = 0; d < 8; d++) {
                            const int64_t li = dense_index(FIA_LAYOUT_BSH, b, n, t, d, 2, 9, 8);
                            const double x = fia_ref_load(side ? &f.v.t : &f.k.t, li);
                            int64_t ai;
                            switch (shape) {
                            case AQ_T: ai = side; break;
                            case AQ_TOK: ai = (side * 2 + b) * f.aqs.t.shape[2] + t; break;
                            default: ai = (side * 2 + n) * 8 + d; break; /* every per-channel form */
                            }
                            tu_store(side ? &g.v.t : &g.k.t, li,
                                     (x + fia_ref_load(&f.aqo.t, ai)) * fia_ref_load(&f.aqs.t, ai));
                        }
        ok = oracle(&f, &o1, &l1) == 0 && oracle(&g, &o2, &l2) == 0 &&
             same_doubles(o1, o2, tu_numel(&f.out.t), 0) && same_doubles(l1, l2, tu_numel(&f.lse.t), 0);
        tu_check(ok, "oracle: antiquant shape %d equals the dequantized float computation", shape);
        free(o1), free(l1), free(o2), free(l2), fbuf_free(&f), fbuf_free(&g);
    }

    /* Every layout holds the same data (B = 1) and gives the same result. */
    {
        const fia_layout L[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND,
                                 FIA_LAYOUT_BNSD_BSND};
        double *first = NULL, *first_lse = NULL;
        ok = 1;
        for (int l = 0; l < 5; l++) {
            c = base_case(L[l], FIA_DTYPE_FLOAT32, 1, 4, 2, 5, 7, 6, 3);
            if (L[l] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){5}, (const int64_t[]){7});
            c.lse = 1, c.sparse_mode = 3, c.mask = MASK_C2;
            tu_rng r2 = tu_rng_make(seed);
            fbuild(&c, &r2, &f);
            const fia_layout ql = L[l] == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BNSD : L[l];
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 7; s++)
                    for (int64_t d = 0; d < 6; d++) {
                        if (s < 5) tu_store(&f.q.t, dense_index(ql, 0, n, s, d, 4, 5, 6), sin((double)(n * 100 + s * 10 + d)));
                        if (n < 2) tu_store(&f.k.t, dense_index(ql, 0, n, s, d, 2, 7, 6), cos((double)(n * 77 + s * 7 + d)));
                        if (n < 2 && d < 3) tu_store(&f.v.t, dense_index(ql, 0, n, s, d, 2, 7, 3), sin((double)(n * 31 + s * 3 + d) + 0.5));
                    }
            if (oracle(&f, &o1, &l1) != 0) ok = 0;
            /* normalize to BNSD order */
            const fia_layout ol = L[l] == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND : L[l];
            double *o = malloc(sizeof(double) * 60);
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 5; s++)
                    for (int64_t d = 0; d < 3; d++)
                        o[(n * 5 + s) * 3 + d] = o1[dense_index(ol, 0, n, s, d, 4, 5, 3)];
            double lse_bnsd[20];
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 5; s++)
                    lse_bnsd[n * 5 + s] = L[l] == FIA_LAYOUT_TND ? l1[s * 4 + n] : l1[n * 5 + s];
            if (!first) {
                first = o;
                first_lse = malloc(sizeof lse_bnsd);
                memcpy(first_lse, lse_bnsd, sizeof lse_bnsd);
            } else {
                ok &= same_doubles(first, o, 60, 0) && same_doubles(first_lse, lse_bnsd, 20, 0);
                free(o);
            }
            free(o1), free(l1), fbuf_free(&f);
        }
        tu_check(ok, "oracle: every layout gives the same result");
        free(first), free(first_lse);
    }

    /* Mode identities: 3 == 2 when Sq == Skv; 4 with (pre, next) = (max, 0) == 3; mode 0 with a
     * zero mask and pre = next = 0 sees only the diagonal (out row i = v_i). */
    {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 2, 1, 6, 9, 4, 4);
        set_lens(&c, (const int64_t[]){6, 4}, (const int64_t[]){6, 9});
        c.lse = 1, c.mask = MASK_C2;
        double *o[4], *l[4];
        const int modes[4] = {2, 3, 4, 0};
        for (int m = 0; m < 4; m++) {
            tu_rng r2 = tu_rng_make(seed + 3);
            fcase cm = c;
            cm.sparse_mode = modes[m];
            if (modes[m] == 4) cm.pre = INT64_MAX, cm.next = 0;
            if (modes[m] == 0) cm.mask = MASK_2D, cm.mask_p = 0, cm.pre = 0, cm.next = 0;
            fbuild(&cm, &r2, &f);
            oracle(&f, &o[m], &l[m]);
            if (m == 3) {
                ok = 1;
                for (int64_t b = 0; b < 2; b++)
                    for (int64_t i = 0; i < cm.qlen[b]; i++)
                        for (int64_t d = 0; d < 4; d++)
                            ok &= o[3][dense_index(FIA_LAYOUT_BSND, b, 1, i, d, 2, 6, 4)] ==
                                  fia_ref_load(&f.v.t, dense_index(FIA_LAYOUT_BSND, b, 0, i, d, 1, 9, 4));
                tu_check(ok, "oracle: mode 0 with pre = next = 0 sees the diagonal only");
            }
            fbuf_free(&f);
        }
        /* batch 0 has Sq == Skv: modes 2 and 3 agree there; modes 3 and 4(max, 0) agree everywhere */
        ok = same_doubles(o[0], o[1], 6 * 2 * 4, 0) && same_doubles(o[1], o[2], 2 * 6 * 2 * 4, 0) &&
             same_doubles(l[1], l[2], 2 * 2 * 6, 0);
        tu_check(ok, "oracle: mode 3 == mode 2 (Sq == Skv), mode 4 (max, 0) == mode 3");
        for (int m = 0; m < 4; m++) free(o[m]), free(l[m]);
    }

    /* fia_ref_compare: +inf exact, NaN never passes, the tolerance bound is inclusive. */
    {
        float vals[4] = {INFINITY, NAN, 1.5f, 2.0f};
        const double want[4] = {INFINITY, 0.0, 1.25, 2.0};
        fia_tensor t;
        fia_tensor_init(&t, vals, FIA_DTYPE_FLOAT32, 1, (const int64_t[]){4}, NULL);
        ok = fia_ref_compare(NULL, &t, want, 0.25, 0.0) == 1; /* only the NaN */
        vals[0] = 1e30f;
        ok &= fia_ref_compare(NULL, &t, want, 0.25, 0.0) == 2;
        tu_check(ok, "oracle: fia_ref_compare rules");
    }
    printf("oracle self-checks done\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Determinism: threads and batch composition                                                 */
/* ------------------------------------------------------------------------------------------ */

static void coords_of(const fia_tensor *t, int64_t i, int64_t *c) {
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        c[d] = i % t->shape[d];
        i /= t->shape[d];
    }
}

static int64_t offset_of(const fia_tensor *t, const int64_t *c) {
    int64_t o = 0;
    for (int32_t d = 0; d < t->ndim; d++) o += c[d] * t->strides[d];
    return o;
}

/* Copies batch b of src into batch 0 of dst (same layout, dims of dst <= those of src). With
 * cmp set, compares instead and returns 1 when bitwise equal. */
static int batch_slice(const fia_tensor *dst, const fia_tensor *src, int64_t b, int cmp) {
    const size_t es = fia_dtype_size(dst->dtype);
    int64_t c[FIA_MAX_DIMS];
    for (int64_t i = 0; i < tu_numel(dst); i++) {
        coords_of(dst, i, c);
        char *pd = (char *)dst->data + offset_of(dst, c) * (int64_t)es;
        c[0] = b;
        const char *ps = (const char *)src->data + offset_of(src, c) * (int64_t)es;
        if (!cmp) memcpy(pd, ps, es);
        else if (memcmp(pd, ps, es) != 0) return 0;
    }
    return 1;
}

typedef struct dscen {
    const char *name;
    fcase c;
    int64_t rb; /* the request checked alone */
} dscen;

static void test_determinism(uint64_t seed) {
    const double t0 = now_s();
    dscen sc[4];
    sc[0].name = "decode S1=1 long kv, paged";
    sc[0].c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 4, 8, 2, 1, 2600, 128, 128);
    set_lens(&sc[0].c, NULL, (const int64_t[]){700, 2500, 31, 1800});
    set_paged(&sc[0].c, 3, 128); /* token-major: the heads per split item depend on the threads */
    sc[0].rb = 1;
    sc[1].name = "decode S1=1 long kv, dense int8";
    sc[1].c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 3, 4, 1, 1, 3000, 64, 64);
    set_lens(&sc[1].c, NULL, (const int64_t[]){3000, 1200, 5});
    set_quant(&sc[1].c, AQ_C3, 1, FIA_DTYPE_FLOAT32);
    sc[1].rb = 0;
    sc[2].name = "small-S1 decode S1=4";
    sc[2].c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 3, 4, 1, 4, 1600, 64, 64);
    set_lens(&sc[2].c, (const int64_t[]){2, 4, 3}, (const int64_t[]){900, 1500, 77});
    sc[2].c.sparse_mode = 3, sc[2].c.mask = MASK_C2;
    sc[2].rb = 1;
    sc[3].name = "prefill";
    sc[3].c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 3, 4, 2, 160, 200, 64, 64);
    set_lens(&sc[3].c, (const int64_t[]){90, 160, 33}, (const int64_t[]){90, 160, 200});
    sc[3].c.sparse_mode = 3, sc[3].c.mask = MASK_C2;
    sc[3].rb = 1;
    const int threads[3] = {1, 2, 7};
    int checks = 0;
    for (int s = 0; s < 4; s++) {
        fcase c = sc[s].c;
        c.lse = 1;
        fcase_normalize(&c);
        tu_rng r = tu_rng_make(seed + 1000 + (uint64_t)s);
        fbuf f, a;
        fbuild(&c, &r, &f);
        /* The request alone: B = 1, its own lengths, the same data. */
        const int64_t rb = sc[s].rb, sq = c.qlen[rb], skv = c.kvlen[rb];
        fcase ca = c;
        ca.B = 1, ca.qlen[0] = sq, ca.kvlen[0] = skv;
        ca.qform = ca.S1 == 1 ? LEN_NULL : LEN_B, ca.kvform = LEN_B;
        if (ca.S1 > 1) ca.S1 = sq;
        if (!ca.paged) ca.S2 = skv;
        fbuild(&ca, &r, &a);
        batch_slice(&a.q.t, &f.q.t, rb, 0);
        if (c.paged) {
            a.t.key = &f.k.t, a.t.value = &f.v.t; /* the same pool, one row of the table */
            batch_slice(&a.bt.t, &f.bt.t, rb, 0);
            /* the alone table is shorter only if the pool row has -1 beyond it: both fine */
        } else {
            batch_slice(&a.k.t, &f.k.t, rb, 0);
            batch_slice(&a.v.t, &f.v.t, rb, 0);
        }
        if (c.kvdt == FIA_DTYPE_INT8) memcpy(a.aqs.buf, f.aqs.buf, f.aqs.bytes), memcpy(a.aqo.buf, f.aqo.buf, f.aqo.bytes);
        double *o_ref, *l_ref;
        oracle(&f, &o_ref, &l_ref);
        for (int i = 0; i < g_nctx; i++) {
            void *out1 = malloc(f.out.bytes), *lse1 = malloc(f.lse.bytes);
            int ok_threads = 1, ok_alone = 1, ok_ref = 1;
            for (int t = 0; t < 3; t++) {
                fia_context_options o = {threads[t], g_isa[i]};
                fia_context *ctx = NULL;
                if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) {
                    tu_check(0, "determinism: context %d threads: %s", threads[t], fia_last_error());
                    continue;
                }
                reset_outputs(&f);
                reset_outputs(&a);
                const fia_status st1 = run_fia(ctx, &f, t == 1), st2 = run_fia(ctx, &a, t != 1);
                if (st1 != FIA_STATUS_SUCCESS || st2 != FIA_STATUS_SUCCESS) {
                    tu_check(0, "determinism %s: %s / %s: %s", sc[s].name, fia_status_string(st1),
                             fia_status_string(st2), fia_last_error());
                    fia_context_destroy(ctx);
                    ok_threads = ok_alone = 0;
                    continue;
                }
                if (t == 0) {
                    memcpy(out1, f.out.buf, f.out.bytes), memcpy(lse1, f.lse.buf, f.lse.bytes);
                    ok_ref = compare_outputs(&f, o_ref, l_ref) == 0;
                } else {
                    ok_threads &= memcmp(out1, f.out.buf, f.out.bytes) == 0 && memcmp(lse1, f.lse.buf, f.lse.bytes) == 0;
                }
                ok_alone &= batch_slice(&a.out.t, &f.out.t, rb, 1) && batch_slice(&a.lse.t, &f.lse.t, rb, 1);
                fia_context_destroy(ctx);
            }
            tu_check(ok_ref, "determinism %s [%s]: batch matches the oracle", sc[s].name, fia_isa_name(g_isa[i]));
            tu_check(ok_threads, "determinism %s [%s]: 1, 2, 7 threads bitwise identical", sc[s].name, fia_isa_name(g_isa[i]));
            tu_check(ok_alone, "determinism %s [%s]: request alone == request %lld of the batch (bitwise)",
                     sc[s].name, fia_isa_name(g_isa[i]), (long long)rb);
            checks += 3;
            free(out1), free(lse1);
        }
        free(o_ref), free(l_ref);
        fbuf_free(&f), fbuf_free(&a);
    }
    printf("determinism: 4 scenarios, %d checks, %.1f s\n", checks, now_s() - t0);
}

/* ------------------------------------------------------------------------------------------ */
/* Plan / execute                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int all_sentinel(const tu_tensor *tt) {
    for (size_t i = 0; i < tt->bytes; i++)
        if (((const uint8_t *)tt->buf)[i] != 0xff) return 0;
    return 1;
}

typedef struct exec_arg {
    fia_plan *plan;
    void *ws;
    size_t bytes;
    fia_status st;
} exec_arg;

static void *exec_thread(void *p) {
    exec_arg *a = p;
    a->st = fia_plan_execute(a->plan, a->ws, a->bytes);
    return NULL;
}

static void test_plan_execute(uint64_t seed) {
    fcase cs[3];
    cs[0] = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 8, 1, 1, 3000, 64, 64); /* split-KV */
    cs[1] = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 2, 4, 2, 70, 90, 32, 32);
    cs[1].sparse_mode = 3, cs[1].mask = MASK_C2;
    cs[2] = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 1, 1, 1500, 16, 16);
    set_paged(&cs[2], 3, 16);
    set_quant(&cs[2], AQ_TOK, 1, FIA_DTYPE_FLOAT16);
    int saw_workspace = 0;
    for (int s = 0; s < 3; s++) {
        fcase c = cs[s];
        c.lse = 1;
        fcase_normalize(&c);
        tu_rng r = tu_rng_make(seed + 2000 + (uint64_t)s);
        fbuf f;
        fbuild(&c, &r, &f);
        for (int i = 0; i < g_nctx; i++) {
            const char *isa = fia_isa_name(g_isa[i]);
            fia_plan *plan = NULL;
            size_t ws = 0;
            fia_status st = fia_fused_infer_attention_score_plan(g_ctx[i], &f.t, &f.p, &plan, &ws);
            if (!tu_check(st == FIA_STATUS_SUCCESS, "plan/execute case %d [%s]: plan %s: %s", s, isa,
                          fia_status_string(st), fia_last_error()))
                continue;
            tu_check(fia_plan_workspace_size(plan) == ws, "plan %d [%s]: fia_plan_workspace_size %zu == %zu", s,
                     isa, fia_plan_workspace_size(plan), ws);
            saw_workspace |= ws > 0;
            void *w = malloc(ws + 64);
            /* too small: WORKSPACE_TOO_SMALL, nothing written */
            if (ws > 0) {
                reset_outputs(&f);
                st = fia_plan_execute(plan, w, ws - 1);
                tu_check(st == FIA_STATUS_WORKSPACE_TOO_SMALL && all_sentinel(&f.out) && all_sentinel(&f.lse),
                         "plan %d [%s]: execute with ws - 1 bytes gives %s and writes nothing", s, isa,
                         fia_status_string(st));
                st = fia_plan_execute(plan, NULL, 0);
                tu_check(st == FIA_STATUS_WORKSPACE_TOO_SMALL && all_sentinel(&f.out),
                         "plan %d [%s]: execute with no workspace gives %s", s, isa, fia_status_string(st));
            }
            /* twice: identical; misaligned workspace is fine */
            reset_outputs(&f);
            st = fia_plan_execute(plan, w, ws);
            void *out1 = malloc(f.out.bytes), *lse1 = malloc(f.lse.bytes);
            memcpy(out1, f.out.buf, f.out.bytes), memcpy(lse1, f.lse.buf, f.lse.bytes);
            reset_outputs(&f);
            const fia_status st2 = fia_plan_execute(plan, (char *)w + 3, ws);
            tu_check(st == FIA_STATUS_SUCCESS && st2 == FIA_STATUS_SUCCESS &&
                         memcmp(out1, f.out.buf, f.out.bytes) == 0 && memcmp(lse1, f.lse.buf, f.lse.bytes) == 0,
                     "plan %d [%s]: re-running a plan (misaligned workspace) is bitwise identical", s, isa);
            /* one-shot == plan + execute */
            reset_outputs(&f);
            st = fia_fused_infer_attention_score(g_ctx[i], &f.t, &f.p);
            tu_check(st == FIA_STATUS_SUCCESS && memcmp(out1, f.out.buf, f.out.bytes) == 0 &&
                         memcmp(lse1, f.lse.buf, f.lse.bytes) == 0,
                     "plan %d [%s]: one-shot equals plan + execute", s, isa);
            /* executed from another thread */
            reset_outputs(&f);
            exec_arg ea = {plan, w, ws, FIA_STATUS_INTERNAL};
            pthread_t th;
            if (pthread_create(&th, NULL, exec_thread, &ea) == 0) {
                pthread_join(th, NULL);
                tu_check(ea.st == FIA_STATUS_SUCCESS && memcmp(out1, f.out.buf, f.out.bytes) == 0,
                         "plan %d [%s]: execute from another thread", s, isa);
            }
            /* inputs rewritten in place: the plan reads the new contents */
            tu_fill_uniform(&f.q.t, &r, -1.0, 1.0);
            tu_fill_uniform(&f.v.t, &r, c.kvdt == FIA_DTYPE_INT8 ? -120.0 : -1.0, c.kvdt == FIA_DTYPE_INT8 ? 121.0 : 1.0);
            reset_outputs(&f);
            st = fia_plan_execute(plan, w, ws);
            double *o_ref, *l_ref;
            oracle(&f, &o_ref, &l_ref);
            tu_check(st == FIA_STATUS_SUCCESS && compare_outputs(&f, o_ref, l_ref) == 0,
                     "plan %d [%s]: re-run after rewriting the inputs matches the oracle", s, isa);
            free(o_ref), free(l_ref), free(out1), free(lse1), free(w);
            fia_plan_destroy(plan);
            /* workspace_bytes may be NULL */
            plan = NULL;
            st = fia_fused_infer_attention_score_plan(g_ctx[i], &f.t, &f.p, &plan, NULL);
            tu_check(st == FIA_STATUS_SUCCESS && plan, "plan %d [%s]: workspace_bytes NULL", s, isa);
            fia_plan_destroy(plan);
        }
        fbuf_free(&f);
    }
    if (!saw_workspace) printf("plan/execute: no plan asked for a workspace: WORKSPACE_TOO_SMALL untested\n");
    tu_check(fia_plan_execute(NULL, NULL, 0) == FIA_STATUS_INVALID_ARGUMENT, "execute(NULL plan) is INVALID_ARGUMENT");
    fia_plan_destroy(NULL);
    printf("plan/execute: 3 plans per ISA done\n");
}

/* Two threads calling the same context at once (serialized by the context). */
typedef struct conc_arg {
    fbuf *f;
    fia_context *ctx;
    int ok;
    double *o_ref, *l_ref;
} conc_arg;

static void *conc_thread(void *p) {
    conc_arg *a = p;
    a->ok = 1;
    for (int k = 0; k < 4; k++) {
        reset_outputs(a->f);
        a->ok &= run_fia(a->ctx, a->f, k & 1) == FIA_STATUS_SUCCESS;
        a->ok &= fia_ref_compare("concurrent out", &a->f->out.t, a->o_ref,
                                 a->f->out.t.dtype == FIA_DTYPE_FLOAT32 ? FP32_ATOL : HALF_ATOL,
                                 a->f->out.t.dtype == FIA_DTYPE_FLOAT32 ? FP32_RTOL : HALF_RTOL) == 0;
    }
    return NULL;
}

static void test_concurrency(uint64_t seed) {
    if (g_nctx == 0) return;
    fcase c[2];
    c[0] = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 1200, 64, 64);
    c[1] = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 2, 1, 64, 64, 32, 32);
    fbuf f[2];
    conc_arg a[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        tu_rng r = tu_rng_make(seed + 3000 + (uint64_t)i);
        fcase_normalize(&c[i]);
        fbuild(&c[i], &r, &f[i]);
        a[i].f = &f[i], a[i].ctx = g_ctx[g_nctx - 1];
        oracle(&f[i], &a[i].o_ref, &a[i].l_ref);
    }
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, conc_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        tu_check(a[i].ok, "concurrent calls on one context: thread %d", i);
        free(a[i].o_ref), free(a[i].l_ref), fbuf_free(&f[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Invalid input                                                                              */
/* ------------------------------------------------------------------------------------------ */

enum { BAD_INV = 1, BAD_UNSUP = 2, BAD_EITHER = 3 };

#define MAX_EXTRA 64
static tu_tensor g_extra[MAX_EXTRA];
static int g_nextra;
static int g_plan_sentinel;
static int g_bad_calls;

/* A sentinel-filled tensor for a mutation; strides NULL: compact. Negative strides: data points
 * where every element stays inside the buffer. */
static fia_tensor *mk(fia_dtype dt, int32_t nd, const int64_t *shape, const int64_t *strides) {
    if (g_nextra == MAX_EXTRA) abort(); /* raise MAX_EXTRA */
    tu_tensor *x = &g_extra[g_nextra++];
    int64_t st[FIA_MAX_DIMS], lo = 0, hi = 0, s = 1;
    int empty = 0;
    for (int32_t i = 0; i < nd; i++) empty |= shape[i] == 0;
    for (int32_t i = nd - 1; i >= 0; i--) {
        st[i] = strides ? strides[i] : s;
        s *= shape[i];
        if (shape[i] > 0 && !empty) {
            if (st[i] < 0) lo += st[i] * (shape[i] - 1);
            else hi += st[i] * (shape[i] - 1);
        }
    }
    const size_t es = fia_dtype_size(dt) ? fia_dtype_size(dt) : 1;
    x->bytes = (size_t)(hi - lo + 1) * es;
    x->buf = malloc(x->bytes);
    memset(x->buf, 0xff, x->bytes);
    x->t.data = (char *)x->buf - lo * (int64_t)es;
    x->t.dtype = dt, x->t.ndim = nd;
    for (int32_t i = 0; i < nd; i++) x->t.shape[i] = shape[i], x->t.strides[i] = st[i];
    return &x->t;
}

static int contains_any(const char *msg, const char *names) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", names);
    for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|"))
        if (strstr(msg, tok)) return 1;
    return 0;
}

static void expect_bad(fbuf *f, const fia_fused_infer_attention_score_tensors *t,
                       const fia_fused_infer_attention_score_params *p, const char *what,
                       const char *names, int flags) {
    fia_context *ctx = g_ctx[0];
    reset_outputs(f);
    fia_plan *plan = (fia_plan *)&g_plan_sentinel;
    size_t ws = 777;
    const fia_status st = fia_fused_infer_attention_score_plan(ctx, t, p, &plan, &ws);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fia_last_error());
    const fia_status st2 = fia_fused_infer_attention_score(ctx, t, p);
    const int status_ok = ((flags & BAD_INV) && st == FIA_STATUS_INVALID_ARGUMENT) ||
                          ((flags & BAD_UNSUP) && st == FIA_STATUS_UNSUPPORTED);
    const int name_ok = msg[0] && (!names || contains_any(msg, names));
    int untouched = all_sentinel(&f->out) && (!f->lse.buf || all_sentinel(&f->lse)) &&
                    plan == (fia_plan *)&g_plan_sentinel && ws == 777;
    for (int i = 0; i < g_nextra; i++) untouched &= all_sentinel(&g_extra[i]);
    tu_check(status_ok && st2 == st && name_ok && untouched,
             "bad input '%s': plan %s, one-shot %s (want %s), message \"%s\" (should name %s)%s", what,
             fia_status_string(st), fia_status_string(st2),
             flags == BAD_INV ? "INVALID_ARGUMENT" : flags == BAD_UNSUP ? "UNSUPPORTED" : "INVALID or UNSUPPORTED",
             msg, names ? names : "anything", untouched ? "" : "; an output / input / *plan was written");
    if (getenv("FIA_TEST_VERBOSE")) printf("  %-45s %s: %s\n", what, fia_status_string(st), msg);
    if (st == FIA_STATUS_SUCCESS && plan != (fia_plan *)&g_plan_sentinel) fia_plan_destroy(plan);
    g_bad_calls++;
}

#define BAD(base, what, names, flags, ...)                                                         \
    do {                                                                                           \
        fia_fused_infer_attention_score_tensors t = (base)->t;                                     \
        fia_fused_infer_attention_score_params p = (base)->p;                                      \
        __VA_ARGS__;                                                                               \
        (void)t, (void)p;                                                                          \
        expect_bad((base), &t, &p, what, names, flags);                                            \
    } while (0)

static void test_bad_input(uint64_t seed) {
    if (g_nctx == 0) return;
    tu_rng r = tu_rng_make(seed + 4000);
    fbuf fa, fp, ft, fh;
    fcase c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 4, 2, 3, 10, 16, 16);
    set_lens(&c, (const int64_t[]){3, 2, 1}, (const int64_t[]){10, 5, 7});
    c.mask = MASK_2D, c.lse = 1;
    fbuild(&c, &r, &fa);
    fcase cp = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 20, 16, 16);
    set_lens(&cp, NULL, (const int64_t[]){20, 7});
    set_paged(&cp, 3, 16);
    set_quant(&cp, AQ_C3, 1, FIA_DTYPE_FLOAT32);
    cp.lse = 1;
    fbuild(&cp, &r, &fp);
    fcase ct = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 2, 1, 0, 0, 8, 8);
    set_lens(&ct, (const int64_t[]){3, 2}, (const int64_t[]){4, 6});
    fbuild(&ct, &r, &ft);
    fcase ch = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 1, 1, 1, 2, 513, 513);
    fbuild(&ch, &r, &fh);

    /* Each base must be valid first. */
    fbuf *bases[4] = {&fa, &fp, &ft, &fh};
    for (int i = 0; i < 3; i++) {
        reset_outputs(bases[i]);
        const fia_status st = run_fia(g_ctx[0], bases[i], 0);
        tu_check(st == FIA_STATUS_SUCCESS, "bad input: base %d is valid (%s: %s)", i, fia_status_string(st), fia_last_error());
    }

    /* Shapes and head counts. */
    BAD(&fa, "key head dim 32, query 16", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 32}, NULL));
    BAD(&fa, "value S 9, key 10", "value", BAD_INV, t.value = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 9, 2, 16}, NULL));
    BAD(&fa, "key rank 3 in BSND", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 3, (const int64_t[]){3, 10, 32}, NULL));
    BAD(&fa, "key batch 2, query 3", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){2, 10, 2, 16}, NULL));
    BAD(&fa, "N1 % N2 != 0", "num_key_value_heads|num_heads|key", BAD_INV, p.num_key_value_heads = 3);
    BAD(&fa, "num_heads 8, query has 4", "num_heads|query", BAD_INV, p.num_heads = 8);
    BAD(&fa, "num_heads 0", "num_heads", BAD_INV, p.num_heads = 0);
    BAD(&fa, "num_heads -4", "num_heads", BAD_INV, p.num_heads = -4);
    BAD(&fa, "num_key_value_heads -2", "num_key_value_heads", BAD_INV, p.num_key_value_heads = -2);
    BAD(&fa, "num_heads 512 > 256", "num_heads|query", BAD_INV, p.num_heads = 512,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 512, 16}, NULL));
    BAD(&fh, "head dim 513", "query|key|value|head", BAD_INV, (void)0);
    BAD(&fa, "value head dim 513", "value", BAD_INV, t.value = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 513}, NULL));
    BAD(&fa, "attention_out shape", "attention_out", BAD_INV,
        t.attention_out = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 8}, NULL));
    BAD(&fa, "attention_out dtype", "attention_out", BAD_INV,
        t.attention_out = mk(FIA_DTYPE_FLOAT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL));
    BAD(&fa, "layout 42", "input_layout|layout", BAD_INV, p.input_layout = (fia_layout)42);
    BAD(&fa, "layout -1", "input_layout|layout", BAD_INV, p.input_layout = (fia_layout)-1);
    BAD(&fa, "reserved layout NTD", "input_layout|layout|NTD", BAD_EITHER, p.input_layout = FIA_LAYOUT_NTD);
    BAD(&fa, "reserved layout PA_BSND", "input_layout|layout|PA_BSND", BAD_EITHER, p.input_layout = FIA_LAYOUT_PA_BSND);
    /* dtypes */
    BAD(&fa, "query int32", "query", BAD_INV, t.query = mk(FIA_DTYPE_INT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        t.attention_out = mk(FIA_DTYPE_INT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL));
    BAD(&fa, "query dtype 99", "query", BAD_INV, t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        g_extra[g_nextra - 1].t.dtype = (fia_dtype)99);
    BAD(&fa, "value bfloat16, key float16", "value|key", BAD_INV,
        t.value = mk(FIA_DTYPE_BFLOAT16, 4, (const int64_t[]){3, 10, 2, 16}, NULL));
    BAD(&fa, "key uint8", "key", BAD_INV, t.key = mk(FIA_DTYPE_UINT8, 4, (const int64_t[]){3, 10, 2, 16}, NULL),
        t.value = mk(FIA_DTYPE_UINT8, 4, (const int64_t[]){3, 10, 2, 16}, NULL));
    /* NULL tensors */
    BAD(&fa, "NULL query", "query", BAD_INV, t.query = NULL);
    BAD(&fa, "NULL key", "key", BAD_INV, t.key = NULL);
    BAD(&fa, "NULL value", "value", BAD_INV, t.value = NULL);
    BAD(&fa, "NULL attention_out", "attention_out", BAD_INV, t.attention_out = NULL);
    BAD(&fa, "NULL query data", "query", BAD_INV, t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        g_extra[g_nextra - 1].t.data = NULL);
    /* strides */
    BAD(&fa, "query innermost stride 2", "query", BAD_UNSUP,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){384, 128, 32, 2}));
    BAD(&fa, "query innermost stride 0", "query", BAD_UNSUP,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){64, 16, 4, 0}));
    BAD(&fa, "key negative stride", "key", BAD_EITHER,
        t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 16}, (const int64_t[]){320, -32, 16, 1}));
    BAD(&fa, "attention_out negative stride", "attention_out", BAD_EITHER,
        t.attention_out = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){-192, 64, 16, 1}));
    /* MLA ropes are reserved */
    BAD(&fa, "query_rope given", "query_rope|rope", BAD_UNSUP, t.query_rope = fa.t.query);
    BAD(&fa, "key_rope given", "key_rope|rope", BAD_UNSUP, t.key_rope = fa.t.key);
    /* lengths */
    BAD(&fa, "actual_seq_lengths 4 > S1 3", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){4, 2, 1});
    BAD(&fa, "actual_seq_lengths negative", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, -1, 1});
    BAD(&fa, "actual_seq_lengths count 2 < B 3", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths_count = 2);
    BAD(&fa, "actual_seq_lengths count -1", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths_count = -1);
    BAD(&fa, "actual_seq_lengths_kv 11 > S2 10", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){11, 5, 7});
    BAD(&fa, "actual_seq_lengths_kv negative", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){10, -2, 7});
    BAD(&fa, "actual_seq_lengths_kv INT64_MAX", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){10, INT64_MAX, 7});
    BAD(&fa, "actual_seq_lengths_kv count 2 < B 3", "actual_seq_lengths_kv", BAD_INV, p.actual_seq_lengths_kv_count = 2);
    BAD(&ft, "TND decreasing actual_seq_lengths", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, 2});
    BAD(&ft, "TND actual_seq_lengths beyond T1", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, 6});
    BAD(&ft, "TND without actual_seq_lengths", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = NULL,
        p.actual_seq_lengths_count = 0);
    BAD(&ft, "TND decreasing actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){4, 3});
    BAD(&ft, "TND actual_seq_lengths_kv beyond T2", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){4, 11});
    BAD(&ft, "TND without actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV, p.actual_seq_lengths_kv = NULL,
        p.actual_seq_lengths_kv_count = 0);
    /* masks and sparse modes */
    BAD(&fa, "atten_mask S2m 9 < longest kv 10", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){3, 9}, NULL));
    BAD(&fa, "atten_mask S1m 2 < longest query 3", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){2, 10}, NULL));
    BAD(&fa, "atten_mask batch 2 (B 3)", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 3, (const int64_t[]){2, 3, 10}, NULL));
    BAD(&fa, "atten_mask float16", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_FLOAT16, 2, (const int64_t[]){3, 10}, NULL));
    BAD(&fa, "atten_mask rank 1", "atten_mask", BAD_INV, t.atten_mask = mk(FIA_DTYPE_BOOL, 1, (const int64_t[]){30}, NULL));
    BAD(&fa, "sparse_mode 1 without atten_mask", "atten_mask|sparse_mode", BAD_INV, p.sparse_mode = 1, t.atten_mask = NULL);
    BAD(&fa, "sparse_mode 5", "sparse_mode", BAD_UNSUP, p.sparse_mode = 5);
    BAD(&fa, "sparse_mode 9 (tree mask)", "sparse_mode", BAD_UNSUP, p.sparse_mode = 9);
    BAD(&fa, "sparse_mode -1", "sparse_mode", BAD_INV, p.sparse_mode = -1);
    BAD(&fa, "sparse_mode 10", "sparse_mode", BAD_EITHER, p.sparse_mode = 10);
    BAD(&fa, "sparse_mode 3, compressed mask [1024, 1024]", "atten_mask", BAD_INV, p.sparse_mode = 3,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){1024, 1024}, NULL));
    BAD(&fa, "sparse_mode 2, compressed mask [2, 2048, 2048]", "atten_mask", BAD_INV, p.sparse_mode = 2,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 3, (const int64_t[]){2, 2048, 2048}, NULL));
    /* softmax_lse */
    BAD(&fa, "softmax_lse missing with softmax_lse_flag", "softmax_lse", BAD_INV, t.softmax_lse = NULL);
    BAD(&fa, "softmax_lse float16", "softmax_lse", BAD_INV,
        t.softmax_lse = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 4, 3, 1}, NULL));
    BAD(&fa, "softmax_lse shape", "softmax_lse", BAD_INV,
        t.softmax_lse = mk(FIA_DTYPE_FLOAT32, 4, (const int64_t[]){3, 4, 4, 1}, NULL));
    /* paged cache */
    const int64_t nblocks = fp.k.t.shape[0], maxb = fp.bt.t.shape[1];
    int32_t *bt = fp.bt.buf;
    const int32_t saved0 = bt[0], saved1 = bt[maxb];
    bt[0] = (int32_t)nblocks;
    BAD(&fp, "block id == blocks", "block_table", BAD_INV, (void)0);
    bt[0] = saved0, bt[maxb] = -1;
    BAD(&fp, "block id -1 within the kv length", "block_table", BAD_INV, (void)0);
    bt[maxb] = INT32_MIN;
    BAD(&fp, "block id INT32_MIN", "block_table", BAD_INV, (void)0);
    bt[maxb] = saved1;
    BAD(&fp, "block_table int64", "block_table", BAD_INV, t.block_table = mk(FIA_DTYPE_INT64, 2, (const int64_t[]){2, maxb}, NULL));
    BAD(&fp, "block_table batch 1 (B 2)", "block_table", BAD_INV, t.block_table = mk(FIA_DTYPE_INT32, 2, (const int64_t[]){1, maxb}, NULL));
    BAD(&fp, "kv length beyond the block table", "actual_seq_lengths_kv|block_table", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){20, 16 * maxb + 1});
    BAD(&fp, "paged cache without actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = NULL, p.actual_seq_lengths_kv_count = 0);
    BAD(&fp, "block_size 32, key has 16", "block_size|key", BAD_INV, p.block_size = 32);
    BAD(&fp, "block_size 0", "block_size", BAD_INV, p.block_size = 0);
    BAD(&fp, "block_size 2048 > 1024", "block_size", BAD_INV, p.block_size = 2048,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){1, 2048, 32}, NULL),
        t.value = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){1, 2048, 32}, NULL));
    BAD(&fp, "paged key H 48 != N2 * D 32", "key", BAD_INV,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){nblocks, 16, 48}, NULL));
    BAD(&fp, "paged key rank 2", "key", BAD_INV, t.key = mk(FIA_DTYPE_INT8, 2, (const int64_t[]){nblocks * 16, 32}, NULL));
    /* found by fuzz_fia_plan: an empty BnBsH cache with a huge innermost stride (UBSan: signed
     * overflow computing the head stride at plan time) */
    BAD(&fp, "empty paged value, innermost stride 2^61 + 3", "value|key|block_table", BAD_EITHER,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){0, 16, 32}, NULL),
        t.value = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){0, 16, 32}, (const int64_t[]){512, 32, (INT64_C(1) << 61) + 3}));
    /* antiquant */
    BAD(&fp, "int8 key without antiquant_scale", "antiquant_scale", BAD_INV, t.antiquant_scale = NULL);
    BAD(&fp, "antiquant_scale [2, N2, D + 1]", "antiquant_scale", BAD_INV,
        t.antiquant_scale = mk(FIA_DTYPE_FLOAT32, 3, (const int64_t[]){2, 2, 17}, NULL));
    BAD(&fp, "antiquant_scale [3]", "antiquant_scale", BAD_INV, t.antiquant_scale = mk(FIA_DTYPE_FLOAT32, 1, (const int64_t[]){3}, NULL));
    BAD(&fp, "antiquant_scale int32", "antiquant_scale", BAD_INV,
        t.antiquant_scale = mk(FIA_DTYPE_INT32, 3, (const int64_t[]){2, 2, 16}, NULL));
    BAD(&fp, "antiquant_offset [2, N2 + 1, D]", "antiquant_offset", BAD_INV,
        t.antiquant_offset = mk(FIA_DTYPE_FLOAT32, 3, (const int64_t[]){2, 3, 16}, NULL));
    BAD(&fp, "antiquant_mode 1 with S2s 16 < kv 20", "antiquant_scale|antiquant_mode", BAD_INV, p.antiquant_mode = 1);
    BAD(&fp, "antiquant_mode 2", "antiquant_mode", BAD_EITHER, p.antiquant_mode = 2);
    BAD(&fp, "int8 key, float16 value", "value|key", BAD_INV,
        t.value = mk(FIA_DTYPE_FLOAT16, 3, (const int64_t[]){nblocks, 16, 32}, NULL));
    BAD(&fp, "int8 key, int8 query", "query", BAD_INV, t.query = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){2, 1, 64}, NULL),
        t.attention_out = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){2, 1, 64}, NULL));

    /* NULL ctx / tensors / params / plan pointer. */
    {
        fia_plan *plan = (fia_plan *)&g_plan_sentinel;
        size_t ws = 777;
        reset_outputs(&fa);
        int ok = fia_fused_infer_attention_score_plan(NULL, &fa.t, &fa.p, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], NULL, &fa.p, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], &fa.t, NULL, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], &fa.t, &fa.p, NULL, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(NULL, &fa.t, &fa.p) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(g_ctx[0], NULL, &fa.p) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(g_ctx[0], &fa.t, NULL) == FIA_STATUS_INVALID_ARGUMENT;
        tu_check(ok && fia_last_error()[0] && plan == (fia_plan *)&g_plan_sentinel && ws == 777 && all_sentinel(&fa.out),
                 "bad input: NULL ctx / tensors / params / plan pointer are INVALID_ARGUMENT");
        g_bad_calls += 7;
    }

    /* Modes 2-4 without the compressed mask: fia.h describes the compressed form but does not
     * say it is required; accept a rejection (INVALID_ARGUMENT) or a correct result. */
    for (int mode = 2; mode <= 4; mode++) {
        fcase cm = c;
        cm.sparse_mode = mode, cm.mask = MASK_NONE, cm.pre = 3, cm.next = 1;
        fcase_normalize(&cm);
        fbuf fm;
        fbuild(&cm, &r, &fm);
        double *o, *l;
        oracle(&fm, &o, &l);
        reset_outputs(&fm);
        const fia_status st = run_fia(g_ctx[0], &fm, 0);
        tu_check((st == FIA_STATUS_INVALID_ARGUMENT && all_sentinel(&fm.out)) ||
                     (st == FIA_STATUS_SUCCESS && compare_outputs(&fm, o, l) == 0),
                 "sparse_mode %d without a mask: %s (%s)", mode, fia_status_string(st), fia_last_error());
        if (mode == 2) printf("sparse_mode 2-4 without a mask: the library answers %s\n", fia_status_string(st));
        free(o), free(l), fbuf_free(&fm);
    }

    for (int i = 0; i < g_nextra; i++) tu_free(&g_extra[i]);
    g_nextra = 0;
    for (int i = 0; i < 4; i++) fbuf_free(bases[i]);
    printf("bad input: %d invalid calls\n", g_bad_calls);
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20250611, "test_fia");
    const double t0 = now_s();
    g_cmask = malloc(2048 * 2048);
    g_cmask_junk = malloc(2048 * 2048);
    tu_rng junk = tu_rng_make(seed);
    for (int64_t i = 0; i < 2048; i++)
        for (int64_t j = 0; j < 2048; j++) g_cmask[i * 2048 + j] = j > i, g_cmask_junk[i * 2048 + j] = (uint8_t)tu_next(&junk);
    test_oracle_self(seed);
    open_contexts();
    if (g_nctx > 0) {
        test_random(seed);
        if (tu_env_long("FIA_TEST_ONLY", -1) < 0) {
            test_edges(seed);
            test_determinism(seed);
            test_plan_execute(seed);
            test_concurrency(seed);
            test_bad_input(seed);
        }
    }
    printf("worst fp32 out error %.3g (tolerance %g + %g rel), worst lse error %.3g (relative to max(1, |lse|))\n",
           g_max_err_fp32, FP32_ATOL, FP32_RTOL, g_max_err_lse);
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    free(g_cmask), free(g_cmask_junk);
    printf("total %.1f s\n", now_s() - t0);
    return tu_summary();
}
