/*
 * fia_cases.h - the case machinery shared by the FusedInferAttentionScore tests (test_fia.c,
 * test_fia_api.c): one context per ISA the CPU has, a case description (fcase) and the tensors
 * built from it (fbuf, fbuild), the call (run_fia), the comparison with the double-precision
 * oracle (ref/) under the tolerances below, NaN poisoning of what no batch may read,
 * run_case (one case, oracle + every ISA), and the base_case / set_* helpers.
 *
 * Header-only, every function static inline, in the style of test_util.h. Its state (contexts,
 * the compressed masks, the worst-error and case counters) is static: each test executable has
 * its own copy. Include it from one .c file per executable, after defining _POSIX_C_SOURCE
 * 200809L (now_s uses clock_gettime).
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
#ifndef FIA_TEST_FIA_CASES_H
#define FIA_TEST_FIA_CASES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fia.h"
#include "ref/ref_fia.h"
#include "test_util.h"

/* the rows of ref/tolerance.h */
#define FIA_TOL_(out, dt) fia_ref_tolerance_of("fused_infer_attention_score", out, dt)
#define FP32_ATOL (FIA_TOL_("attention_out", FIA_DTYPE_FLOAT32)->atol)
#define FP32_RTOL (FIA_TOL_("attention_out", FIA_DTYPE_FLOAT32)->rtol)
#define HALF_ATOL (FIA_TOL_("attention_out", FIA_DTYPE_FLOAT16)->atol)
#define HALF_RTOL (FIA_TOL_("attention_out", FIA_DTYPE_FLOAT16)->rtol)
#define LSE_ATOL (FIA_TOL_("softmax_lse", FIA_DTYPE_FLOAT32)->atol)
#define LSE_RTOL (FIA_TOL_("softmax_lse", FIA_DTYPE_FLOAT32)->rtol)

#define MAXB 16

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static fia_context *g_ctx[3]; /* one per available ISA, 2 threads */
static fia_isa g_isa[3];
static int g_nctx;

/* Opens one 2-thread context per ISA the CPU has; a context that cannot be created is a failed
 * check. count_success: whether a created context also counts as a passed check. test_fia passes
 * 1, the other FIA executables pass 0, so a suite run counts each context check once. */
static inline void open_contexts(int count_success) {
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        fia_context_options o = {2, levels[i]};
        fia_context *ctx = NULL;
        fia_status st = fia_context_create(&o, &ctx);
        if (st == FIA_STATUS_UNSUPPORTED_ISA) {
            printf("isa %s: not available on this CPU, skipped\n", fia_isa_name(levels[i]));
            continue;
        }
        if ((count_success || st != FIA_STATUS_SUCCESS) &&
            !tu_check(st == FIA_STATUS_SUCCESS, "context isa %s: %s (%s)", fia_isa_name(levels[i]),
                      fia_status_string(st), fia_last_error()))
            continue;
        g_ctx[g_nctx] = ctx;
        g_isa[g_nctx++] = levels[i];
    }
    printf("testing ISAs:");
    for (int i = 0; i < g_nctx; i++) printf(" %s", fia_isa_name(g_isa[i]));
    printf("\n");
}

static inline void close_contexts(void) {
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    g_nctx = 0;
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

/* The token-packed layouts (TND, NTD, TND_NTD, NTD_TND: TND's length rules), and the layout of
 * the inputs and of attention_out of an input_output layout. */
static inline int lay_tnd(fia_layout l) {
    return l == FIA_LAYOUT_TND || l == FIA_LAYOUT_NTD || l == FIA_LAYOUT_TND_NTD ||
           l == FIA_LAYOUT_NTD_TND;
}
static inline fia_layout lay_in(fia_layout l) {
    return l == FIA_LAYOUT_TND_NTD ? FIA_LAYOUT_TND : l == FIA_LAYOUT_NTD_TND ? FIA_LAYOUT_NTD : l;
}
static inline fia_layout lay_out(fia_layout l) {
    return l == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND
           : l == FIA_LAYOUT_TND_NTD ? FIA_LAYOUT_NTD
           : l == FIA_LAYOUT_NTD_TND ? FIA_LAYOUT_TND : l;
}

static inline int is_decode(const fcase *c) { return !lay_tnd(c->layout) && c->S1 == 1; }

static inline void fcase_desc(const fcase *c, char *s, size_t n) {
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
static inline void fcase_normalize(fcase *c) {
    const int tnd = lay_tnd(c->layout);
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

static inline int64_t maxv(const int64_t *v, int64_t n) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (v[i] > m) m = v[i];
    return m;
}

static inline int64_t sumv(const int64_t *v, int64_t n) {
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

/* Allocates and fills g_cmask and g_cmask_junk (the junk drawn from seed). */
static inline void cmask_create(uint64_t seed) {
    g_cmask = malloc(2048 * 2048);
    g_cmask_junk = malloc(2048 * 2048);
    if (!g_cmask || !g_cmask_junk) abort();
    tu_rng junk = tu_rng_make(seed);
    for (int64_t i = 0; i < 2048; i++)
        for (int64_t j = 0; j < 2048; j++) g_cmask[i * 2048 + j] = j > i, g_cmask_junk[i * 2048 + j] = (uint8_t)tu_next(&junk);
}

static inline void cmask_destroy(void) {
    free(g_cmask), free(g_cmask_junk);
    g_cmask = g_cmask_junk = NULL;
}

static inline int32_t dense_shape(fia_layout l, int64_t B, int64_t S, int64_t N, int64_t D, int64_t *sh) {
    switch (l) {
    case FIA_LAYOUT_BSH: sh[0] = B, sh[1] = S, sh[2] = N * D; return 3;
    case FIA_LAYOUT_BSND: sh[0] = B, sh[1] = S, sh[2] = N, sh[3] = D; return 4;
    case FIA_LAYOUT_TND: sh[0] = S, sh[1] = N, sh[2] = D; return 3;
    case FIA_LAYOUT_NTD: sh[0] = N, sh[1] = S, sh[2] = D; return 3;
    default: sh[0] = B, sh[1] = N, sh[2] = S, sh[3] = D; return 4;
    }
}

static inline void random_pad(tu_rng *r, int64_t *pad) {
    for (int i = 0; i < FIA_MAX_DIMS; i++) pad[i] = tu_int(r, 0, 3);
}

static inline void fbuf_free(fbuf *f) {
    tu_free(&f->q), tu_free(&f->k), tu_free(&f->v), tu_free(&f->out), tu_free(&f->lse);
    tu_free(&f->mask), tu_free(&f->bt), tu_free(&f->aqs), tu_free(&f->aqo);
}

/* Builds every tensor of case c with random contents. Returns 0, -1 on allocation failure. */
static inline int fbuild(const fcase *c, tu_rng *r, fbuf *f) {
    memset(f, 0, sizeof *f);
    const int tnd = lay_tnd(c->layout);
    const int64_t B = c->B, maxq = maxv(c->qlen, B), maxkv = maxv(c->kvlen, B);
    const int64_t S1 = tnd ? sumv(c->qlen, B) + c->tnd_pad : c->S1;
    const int64_t S2 = tnd ? sumv(c->kvlen, B) + c->tnd_pad : c->S2;
    int64_t sh[FIA_MAX_DIMS], pad[FIA_MAX_DIMS];
    int32_t nd;
    int rc = 0;

    random_pad(r, pad);
    nd = dense_shape(lay_in(c->layout), B, S1, c->N1, c->D, sh);
    rc |= tu_alloc(&f->q, c->qdt, nd, sh, c->strided ? pad : NULL, 0);
    tu_fill_uniform(&f->q.t, r, -1.0, 1.0);
    nd = dense_shape(lay_out(c->layout), B, S1, c->N1,
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
            nd = dense_shape(lay_in(c->layout), B, S2, c->N2, side ? c->Dv : c->D, sh);
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
static inline void reset_outputs(fbuf *f) {
    memset(f->out.buf, 0xff, f->out.bytes);
    if (f->lse.buf) memset(f->lse.buf, 0xff, f->lse.bytes);
}

/* Nonzero when every byte of the out buffer outside the view still holds the sentinel. */
static inline int gaps_untouched(const tu_tensor *tt) {
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
static inline fia_status run_fia(fia_context *ctx, fbuf *f, int oneshot) {
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

static inline void track_errors(const fbuf *f, const double *out_ref, const double *lse_ref) {
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
static inline int64_t compare_outputs(const fbuf *f, const double *out_ref, const double *lse_ref) {
    const int half = f->out.t.dtype != FIA_DTYPE_FLOAT32;
    int64_t bad = fia_ref_compare("attention_out", &f->out.t, out_ref, half ? HALF_ATOL : FP32_ATOL,
                                  half ? HALF_RTOL : FP32_RTOL);
    if (lse_ref && f->lse.buf) bad += fia_ref_compare("softmax_lse", &f->lse.t, lse_ref, LSE_ATOL, LSE_RTOL);
    track_errors(f, out_ref, lse_ref);
    return bad;
}

/* The line every FIA test executable prints before its summary. */
static inline void print_worst_errors(void) {
    printf("worst fp32 out error %.3g (tolerance %g + %g rel), worst lse error %.3g (relative to max(1, |lse|))\n",
           g_max_err_fp32, FP32_ATOL, FP32_RTOL, g_max_err_lse);
}

/* Batch and position of logical element i of a dense q / k / v tensor (TND: b = -1, s = the
 * packed token). */
static inline void dense_pos(const fia_tensor *t, fia_layout l, int64_t i, int64_t *b, int64_t *s) {
    int64_t c[FIA_MAX_DIMS];
    for (int32_t d = t->ndim - 1; d >= 0; d--) c[d] = i % t->shape[d], i /= t->shape[d];
    if (l == FIA_LAYOUT_TND) *b = -1, *s = c[0];
    else if (l == FIA_LAYOUT_NTD) *b = -1, *s = c[1];
    else if (l == FIA_LAYOUT_BNSD || l == FIA_LAYOUT_BNSD_BSND) *b = c[0], *s = c[2];
    else *b = c[0], *s = c[1];
}

/* Writes NaN into every float q / k / v element that no batch may read: query rows beyond a
 * batch's length, keys / values beyond a batch's kv length, paged rows no table entry within the
 * lengths points to. The library must never let them reach an output. */
static inline void poison(const fcase *c, fbuf *f) {
    const int tnd = lay_tnd(c->layout);
    const int64_t B = c->B, tq = sumv(c->qlen, B), tkv = sumv(c->kvlen, B);
    for (int64_t i = 0; i < tu_numel(&f->q.t); i++) {
        int64_t b, s;
        dense_pos(&f->q.t, lay_in(c->layout), i, &b, &s);
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
                dense_pos(t, lay_in(c->layout), i, &b, &s);
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
static inline int run_case(const fcase *c0, uint64_t seed, const char *label) {
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
static inline fcase base_case(fia_layout layout, fia_dtype dt, int64_t B, int64_t N1, int64_t N2,
                              int64_t S1, int64_t S2, int64_t D, int64_t Dv) {
    fcase c;
    memset(&c, 0, sizeof c);
    c.layout = layout, c.qdt = c.kvdt = dt;
    c.B = B, c.N1 = N1, c.N2 = N2, c.S1 = S1, c.S2 = S2, c.D = D, c.Dv = Dv;
    for (int64_t b = 0; b < MAXB; b++) c.qlen[b] = S1, c.kvlen[b] = S2;
    c.qform = c.kvform = lay_tnd(layout) ? LEN_B : LEN_NULL;
    c.pre = c.next = 2147483647;
    c.mask_dt = FIA_DTYPE_BOOL;
    c.scale = 1.0 / sqrt((double)D);
    c.poison = 1;
    return c;
}

static inline void set_lens(fcase *c, const int64_t *q, const int64_t *kv) {
    for (int64_t b = 0; b < c->B; b++) {
        if (q) c->qlen[b] = q[b];
        if (kv) c->kvlen[b] = kv[b];
    }
    if (q && !lay_tnd(c->layout)) c->qform = LEN_B;
    if (kv) c->kvform = LEN_B;
}

static inline void set_paged(fcase *c, int form, int64_t bs) {
    c->paged = form, c->bs = bs, c->extra_blocks = 2, c->table_pad = 1;
    if (c->kvform == LEN_NULL) c->kvform = LEN_B;
}

static inline void set_quant(fcase *c, int shape, int off, fia_dtype aq_dt) {
    c->kvdt = FIA_DTYPE_INT8, c->aq_shape = shape, c->aq_off = off, c->aq_dt = aq_dt;
}

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs the oracle on f into freshly allocated *out / *lse (*lse NULL without softmax_lse).
 * Returns its status, -1 on allocation failure. */
static inline int oracle(fbuf *f, double **out, double **lse) {
    *out = malloc(sizeof(double) * (size_t)(tu_numel(&f->out.t) + 1));
    *lse = f->lse.buf ? malloc(sizeof(double) * (size_t)(tu_numel(&f->lse.t) + 1)) : NULL;
    if (!*out || (f->lse.buf && !*lse)) return -1;
    return fia_ref_fused_infer_attention_score(&f->t, &f->p, *out, *lse);
}

#endif /* FIA_TEST_FIA_CASES_H */
