/*
 * test_mla.c - the MLA path of fused_infer_attention_score (query_rope / key_rope) against the
 * double-precision oracle (ref/ref_mla.c), under every ISA the CPU has:
 *   - random cases: N in {1, 16, 128}, batch 1..4 with unequal lengths, query layouts BSND, BSH,
 *     BNSD, TND, TND_NTD, caches dense / PA_BSND (4-D and 3-D) / PA_NZ, block sizes 16, 64, 128,
 *     sparse_mode 0 and 3 with 1..4 query tokens, fp16, bf16, fp32 and the int8 form, both
 *     rescale variants (multiply, AMLA), value the same tensor as key or a separate copy, lse;
 *   - edge cases: split KV (> 1024 keys) with a bitwise comparison across 1, 2 and 7 threads and
 *     inside a larger batch, kv length 0, S1 > Skv under causal, rows beyond the query length;
 *   - invalid calls: a clear status and attention_out untouched.
 * Tolerances: float outputs atol 1e-3 + rtol 5e-3 of the oracle for every element (fp32 out:
 * 1e-5 + 1e-5), the int8 form atol 2e-2 + rtol 2e-2 of the oracle on the dequantized inputs,
 * lse 1e-4 + 1e-4.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "kernels/amx.h"
#include "kernels/registry.h"
#include "ref/ref_fia.h"
#include "ref/ref_mla.h"
#include "test_util.h"

enum { DN = 512, DR = 64, MAXB = 4 };
enum { CACHE_DENSE = 0, CACHE_PA4 = 1, CACHE_PA3 = 2, CACHE_NZ = 3 };
static const char *const cache_names[] = {"dense", "PA_BSND", "PA_BSND3", "PA_NZ"};

static fia_context *g_ctx[4];
static fia_isa g_isa[4];
static int g_nctx;

typedef struct mcase {
    fia_layout layout;
    int cache;
    fia_dtype qdt, kdt, rdt, odt; /* kdt INT8: the int8 form (qdt INT8, rdt fp16/bf16) */
    int64_t B, N, S1, S2, bs;
    int64_t qlen[MAXB], kvlen[MAXB];
    int mode, rescale, sep_value, lse, pass_qlen;
    double scale;
    double tol; /* > 0: atol = rtol = tol (scores so large that fp32 rounding of the scores
                 * alone moves the softmax weights by ~1e-4) */
} mcase;

typedef struct mbuf {
    tu_tensor q, qr, k, kr, v, o, lse, bt, sq, sk, sv;
    int64_t qcum[MAXB], kvcum[MAXB];
    fia_fused_infer_attention_score_tensors t;
    fia_fused_infer_attention_score_params prm;
} mbuf;

static int is_tnd(const mcase *c) {
    return c->layout == FIA_LAYOUT_TND || c->layout == FIA_LAYOUT_TND_NTD;
}

static void desc(const mcase *c, char *s, size_t n) {
    snprintf(s, n, "%s %s q=%s k=%s B=%lld N=%lld S1=%lld S2=%lld bs=%lld mode=%d rescale=%d "
             "sepv=%d lse=%d q0=%lld kv0=%lld scale=%.3f",
             fia_layout_name(c->layout), cache_names[c->cache], fia_dtype_name(c->qdt),
             fia_dtype_name(c->kdt), (long long)c->B, (long long)c->N, (long long)c->S1,
             (long long)c->S2, (long long)c->bs, c->mode, c->rescale, c->sep_value, c->lse,
             (long long)c->qlen[0], (long long)c->kvlen[0], c->scale);
}

/* Query-side shape of width w: [B, S1, N, w] etc. */
static int32_t q_shape(const mcase *c, int64_t T, int64_t w, int64_t *sh) {
    switch (c->layout) {
    case FIA_LAYOUT_BSH: sh[0] = c->B; sh[1] = c->S1; sh[2] = c->N * w; return 3;
    case FIA_LAYOUT_BSND: sh[0] = c->B; sh[1] = c->S1; sh[2] = c->N; sh[3] = w; return 4;
    case FIA_LAYOUT_BNSD: sh[0] = c->B; sh[1] = c->N; sh[2] = c->S1; sh[3] = w; return 4;
    default: sh[0] = T; sh[1] = c->N; sh[2] = w; return 3;
    }
}

static int64_t blocks_of(const mcase *c, int64_t b) {
    return c->bs > 0 ? (c->kvlen[b] + c->bs - 1) / c->bs : 0;
}

/* Cache shape of width w. */
static int32_t kv_shape(const mcase *c, int64_t T2, int64_t blocks, int64_t w, fia_dtype dt,
                        int64_t *sh) {
    switch (c->cache) {
    case CACHE_PA4: sh[0] = blocks; sh[1] = c->bs; sh[2] = 1; sh[3] = w; return 4;
    case CACHE_PA3: sh[0] = blocks; sh[1] = c->bs; sh[2] = w; return 3;
    case CACHE_NZ: {
        const int64_t cw = dt == FIA_DTYPE_INT8 ? 32 : 16;
        sh[0] = blocks; sh[1] = 1; sh[2] = w / cw; sh[3] = c->bs; sh[4] = cw;
        return 5;
    }
    default:
        switch (c->layout) {
        case FIA_LAYOUT_BSH: sh[0] = c->B; sh[1] = c->S2; sh[2] = w; return 3;
        case FIA_LAYOUT_BSND: sh[0] = c->B; sh[1] = c->S2; sh[2] = 1; sh[3] = w; return 4;
        case FIA_LAYOUT_BNSD: sh[0] = c->B; sh[1] = 1; sh[2] = c->S2; sh[3] = w; return 4;
        default: sh[0] = T2; sh[1] = 1; sh[2] = w; return 3;
        }
    }
}

static void mbuf_free(mbuf *m) {
    tu_tensor *all[] = {&m->q, &m->qr, &m->k, &m->kr, &m->v, &m->o, &m->lse, &m->bt, &m->sq, &m->sk, &m->sv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tu_free(all[i]);
}

static int build(const mcase *c, tu_rng *r, mbuf *m) {
    memset(m, 0, sizeof *m);
    const int quant = c->kdt == FIA_DTYPE_INT8;
    int64_t T = 0, T2 = 0, blocks = 2;
    for (int64_t b = 0; b < c->B; b++) {
        T += c->qlen[b];
        m->qcum[b] = T;
        T2 += c->kvlen[b];
        m->kvcum[b] = T2;
        blocks += blocks_of(c, b);
    }
    if (!is_tnd(c)) T = 0;
    int64_t sh[5];
    int32_t nd;
    int rc = 0;
    nd = q_shape(c, T, DN, sh);
    rc |= tu_alloc(&m->q, c->qdt, nd, sh, NULL, 0);
    nd = q_shape(c, T, DR, sh);
    rc |= tu_alloc(&m->qr, c->rdt, nd, sh, NULL, 0);
    if (c->layout == FIA_LAYOUT_TND_NTD) {
        sh[0] = c->N; sh[1] = T; sh[2] = DN;
        nd = 3;
    } else {
        nd = q_shape(c, T, DN, sh);
    }
    rc |= tu_alloc(&m->o, c->odt, nd, sh, NULL, 0xEE);
    nd = kv_shape(c, T2, blocks, DN, c->kdt, sh);
    rc |= tu_alloc(&m->k, c->kdt, nd, sh, NULL, 0);
    nd = kv_shape(c, T2, blocks, DR, c->rdt, sh);
    rc |= tu_alloc(&m->kr, c->kdt == FIA_DTYPE_INT8 ? c->rdt : c->kdt, nd, sh, NULL, 0);
    if (rc) return -1;
    if (quant) {
        tu_fill_uniform(&m->q.t, r, -127, 128);
        tu_fill_uniform(&m->k.t, r, -127, 128);
    } else {
        tu_fill_uniform(&m->q.t, r, -1, 1);
        tu_fill_uniform(&m->k.t, r, -1, 1);
    }
    tu_fill_uniform(&m->qr.t, r, -1, 1);
    tu_fill_uniform(&m->kr.t, r, -1, 1);
    if (c->sep_value) {
        nd = kv_shape(c, T2, blocks, DN, c->kdt, sh);
        if (tu_alloc(&m->v, c->kdt, nd, sh, NULL, 0)) return -1;
        memcpy(m->v.buf, m->k.buf, m->k.bytes);
    }
    if (c->lse) {
        if (is_tnd(c)) { sh[0] = T; sh[1] = c->N; sh[2] = 1; nd = 3; }
        else { sh[0] = c->B; sh[1] = c->N; sh[2] = c->S1; sh[3] = 1; nd = 4; }
        if (tu_alloc(&m->lse, FIA_DTYPE_FLOAT32, nd, sh, NULL, 0)) return -1;
    }
    if (c->cache != CACHE_DENSE) {
        int64_t maxb = 1;
        for (int64_t b = 0; b < c->B; b++) maxb = blocks_of(c, b) > maxb ? blocks_of(c, b) : maxb;
        sh[0] = c->B; sh[1] = maxb + 1;
        if (tu_alloc(&m->bt, FIA_DTYPE_INT32, 2, sh, NULL, 0)) return -1;
        /* a random permutation of the blocks, -1 padding */
        int64_t perm[4096];
        for (int64_t i = 0; i < blocks; i++) perm[i] = i;
        for (int64_t i = blocks - 1; i > 0; i--) {
            const int64_t j = tu_int(r, 0, i), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        int64_t next = 0;
        for (int64_t b = 0; b < c->B; b++)
            for (int64_t k = 0; k <= maxb; k++)
                tu_store(&m->bt.t, b * (maxb + 1) + k, k < blocks_of(c, b) ? (double)perm[next++] : -1.0);
    }
    if (quant) {
        if (is_tnd(c)) { sh[0] = T; sh[1] = c->N; sh[2] = 1; nd = 3; }
        else { sh[0] = c->B; sh[1] = c->S1; sh[2] = c->N; nd = 3; }
        const int64_t one = 1;
        if (tu_alloc(&m->sq, FIA_DTYPE_FLOAT32, nd, sh, NULL, 0) ||
            tu_alloc(&m->sk, FIA_DTYPE_FLOAT32, 1, &one, NULL, 0) ||
            tu_alloc(&m->sv, FIA_DTYPE_FLOAT32, 1, &one, NULL, 0))
            return -1;
        tu_fill_uniform(&m->sq.t, r, 0.5 / 127, 1.5 / 127);
        tu_store(&m->sk.t, 0, tu_uniform(r, 0.5 / 127, 1.5 / 127));
        tu_store(&m->sv.t, 0, tu_uniform(r, 0.5 / 127, 1.5 / 127));
    }

    fia_fused_infer_attention_score_tensors *t = &m->t;
    t->query = &m->q.t;
    t->query_rope = &m->qr.t;
    t->key = &m->k.t;
    t->key_rope = &m->kr.t;
    t->value = c->sep_value ? &m->v.t : &m->k.t;
    t->attention_out = &m->o.t;
    t->softmax_lse = c->lse ? &m->lse.t : NULL;
    t->block_table = c->cache != CACHE_DENSE ? &m->bt.t : NULL;
    if (quant) {
        t->dequant_scale_query = &m->sq.t;
        t->dequant_scale_key = &m->sk.t;
        t->dequant_scale_value = &m->sv.t;
    }
    fia_fused_infer_attention_score_params *p = &m->prm;
    fia_fused_infer_attention_score_params_init(p);
    p->num_heads = c->N;
    p->num_key_value_heads = 1;
    p->scale = c->scale;
    p->input_layout = c->layout;
    p->sparse_mode = c->mode;
    p->block_size = c->cache != CACHE_DENSE ? c->bs : 0;
    p->softmax_lse_flag = c->lse;
    p->mla_rescale = c->rescale;
    if (is_tnd(c)) {
        p->actual_seq_lengths = m->qcum;
        p->actual_seq_lengths_count = c->B;
    } else if (c->pass_qlen) {
        p->actual_seq_lengths = c->qlen;
        p->actual_seq_lengths_count = c->B;
    }
    if (is_tnd(c) && c->cache == CACHE_DENSE) {
        p->actual_seq_lengths_kv = m->kvcum;
        p->actual_seq_lengths_kv_count = c->B;
    } else {
        p->actual_seq_lengths_kv = c->kvlen;
        p->actual_seq_lengths_kv_count = c->B;
    }
    return 0;
}

static fia_status run(fia_context *ctx, mbuf *m) {
    return fia_fused_infer_attention_score(ctx, &m->t, &m->prm);
}

static double g_worst[2];

/* One case: oracle once, then every ISA (both rescale variants are separate cases). */
static void run_case(const mcase *c, tu_rng *r) {
    char d[320];
    desc(c, d, sizeof d);
    mbuf m;
    if (!tu_check(build(c, r, &m) == 0, "build: %s", d)) {
        mbuf_free(&m);
        return;
    }
    const int64_t n = tu_numel(&m.o.t);
    double *want = malloc((size_t)n * sizeof *want);
    double *wl = c->lse ? malloc((size_t)tu_numel(&m.lse.t) * sizeof *wl) : NULL;
    if (!tu_check(want && fia_ref_mla(&m.t, &m.prm, want, wl) == 0, "oracle: %s", d)) goto done;
    const int quant = c->kdt == FIA_DTYPE_INT8;
    const char *tol_op = quant ? "fused_infer_attention_score/mla_int8" : "fused_infer_attention_score/mla";
    const fia_ref_tolerance *ot = fia_ref_tolerance_of(tol_op, "attention_out", c->odt);
    const fia_ref_tolerance *lt = fia_ref_tolerance_of(tol_op, "softmax_lse", FIA_DTYPE_FLOAT32);
    double atol = ot->atol, rtol = ot->rtol;
    if (c->tol > 0) atol = rtol = c->tol;
    for (int i = 0; i < g_nctx; i++) {
        memset(m.o.buf, 0xEE, m.o.bytes);
        const fia_status st = run(g_ctx[i], &m);
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s: %s (%s): %s", fia_isa_name(g_isa[i]),
                      fia_status_string(st), fia_last_error(), d))
            continue;
        const int64_t bad = fia_ref_compare("attention_out", &m.o.t, want, atol, rtol);
        tu_check(bad == 0, "%s (context %d): %lld elements outside tolerance: %s",
                 fia_isa_name(g_isa[i]), i, (long long)bad, d);
        for (int64_t e = 0; e < n && c->tol == 0; e++) {
            const double got = fia_ref_load(&m.o.t, e), err = fabs(got - want[e]);
            if (err > g_worst[quant]) g_worst[quant] = err;
        }
        if (c->lse)
            tu_check(fia_ref_compare("softmax_lse", &m.lse.t, wl, lt->atol, lt->rtol) == 0,
                     "%s: lse: %s", fia_isa_name(g_isa[i]), d);
    }
done:
    free(want);
    free(wl);
    mbuf_free(&m);
}

static void random_lengths(mcase *c, tu_rng *r, int64_t maxq, int64_t maxkv) {
    c->S1 = 1;
    c->S2 = 1;
    for (int64_t b = 0; b < c->B; b++) {
        c->qlen[b] = tu_int(r, 1, maxq);
        c->kvlen[b] = tu_int(r, 0, maxkv);
        if (tu_chance(r, 0.2)) c->kvlen[b] = maxkv;
        c->S1 = c->qlen[b] > c->S1 ? c->qlen[b] : c->S1;
        c->S2 = c->kvlen[b] > c->S2 ? c->kvlen[b] : c->S2;
    }
    c->pass_qlen = c->S1 > 1;
}

static void gen_random(tu_rng *r, mcase *c) {
    static const fia_layout layouts[] = {FIA_LAYOUT_BSND, FIA_LAYOUT_BSH, FIA_LAYOUT_BNSD,
                                         FIA_LAYOUT_TND, FIA_LAYOUT_TND_NTD};
    static const int64_t heads[] = {1, 16, 128};
    static const int64_t bss[] = {16, 64, 128};
    memset(c, 0, sizeof *c);
    c->layout = TU_PICK(r, layouts);
    c->cache = (int)tu_int(r, 0, 3);
    if (is_tnd(c) && c->cache == CACHE_DENSE && tu_chance(r, 0.5)) c->cache = CACHE_PA4;
    c->N = TU_PICK(r, heads);
    c->B = tu_int(r, 1, MAXB);
    c->bs = TU_PICK(r, bss);
    c->mode = tu_chance(r, 0.5) ? 3 : 0;
    const int64_t maxq = c->mode == 3 ? 4 : tu_chance(r, 0.5) ? 1 : 3;
    const int64_t maxkv = c->N == 128 ? 300 : c->N == 16 ? 700 : 1300;
    random_lengths(c, r, maxq, maxkv);
    const int kind = (int)tu_int(r, 0, 4);
    if (kind == 4) {
        c->qdt = FIA_DTYPE_INT8;
        c->kdt = FIA_DTYPE_INT8;
        c->rdt = tu_chance(r, 0.5) ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16;
        c->odt = tu_chance(r, 0.7) ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16;
    } else {
        static const fia_dtype dts[] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_BFLOAT16,
                                        FIA_DTYPE_FLOAT32};
        c->qdt = c->rdt = c->odt = dts[kind];
        c->kdt = tu_chance(r, 0.8) ? c->qdt : FIA_DTYPE_BFLOAT16;
        if (c->kdt == FIA_DTYPE_FLOAT32 && c->cache == CACHE_NZ) c->cache = CACHE_PA4;
        c->rescale = (int)tu_int(r, 0, 2);
    }
    c->sep_value = tu_chance(r, 0.2);
    c->lse = tu_chance(r, 0.3);
    c->scale = tu_uniform(r, 0.04, 0.25);
}

static void test_random(tu_rng *r, int count) {
    for (int i = 0; i < count; i++) {
        mcase c;
        gen_random(r, &c);
        /* the kv side of a non-paged TND cache must be the query's layout: fine as built */
        run_case(&c, r);
    }
}

/* Decode with split KV and MTP; every variant listed in the issue at least once. */
static void test_edges(tu_rng *r) {
    mcase c;
    memset(&c, 0, sizeof c);
    /* 128 heads, bf16 latent, PA_NZ and PA_BSND, > 2 chunks, both rescales, and int8 */
    const int caches[] = {CACHE_NZ, CACHE_PA4};
    for (int ci = 0; ci < 2; ci++)
        for (int resc = 1; resc <= 3; resc++) {
            memset(&c, 0, sizeof c);
            c.layout = FIA_LAYOUT_BSND;
            c.cache = caches[ci];
            c.N = 128;
            c.B = 1;
            c.bs = 64;
            c.S1 = 1;
            c.qlen[0] = 1;
            c.kvlen[0] = 1100;
            c.S2 = 1100;
            if (resc == 3) {
                c.qdt = c.kdt = FIA_DTYPE_INT8;
                c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
            } else {
                c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
                c.rescale = resc;
            }
            c.scale = 0.1352;
            c.lse = resc == 2;
            run_case(&c, r);
        }
    /* MTP: 4 query tokens per request, causal, unequal lengths, 16 heads, TND_NTD */
    memset(&c, 0, sizeof c);
    c.layout = FIA_LAYOUT_TND_NTD;
    c.cache = CACHE_PA4;
    c.N = 16;
    c.B = 3;
    c.bs = 16;
    const int64_t ql[3] = {4, 2, 3}, kl[3] = {1100, 3, 70};
    for (int b = 0; b < 3; b++) {
        c.qlen[b] = ql[b];
        c.kvlen[b] = kl[b];
    }
    c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_FLOAT16;
    c.mode = 3;
    c.scale = 0.2;
    c.lse = 1;
    run_case(&c, r);
    /* S1 > Skv under causal (rows that see nothing), kv length 0, rows beyond the query length */
    memset(&c, 0, sizeof c);
    c.layout = FIA_LAYOUT_BSND;
    c.cache = CACHE_DENSE;
    c.N = 16;
    c.B = 3;
    c.S1 = 4;
    c.S2 = 40;
    c.qlen[0] = 4; c.kvlen[0] = 2;
    c.qlen[1] = 2; c.kvlen[1] = 0;
    c.qlen[2] = 3; c.kvlen[2] = 40;
    c.pass_qlen = 1;
    c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
    c.mode = 3;
    c.scale = 0.3;
    c.lse = 1;
    c.rescale = FIA_MLA_RESCALE_AMLA;
    run_case(&c, r);
    /* large scores: the max jumps by much more than 126 binades between steps (AMLA flush) */
    memset(&c, 0, sizeof c);
    c.layout = FIA_LAYOUT_BSND;
    c.N = 1;
    c.B = 1;
    c.S1 = 1;
    c.S2 = 300;
    c.qlen[0] = 1;
    c.kvlen[0] = 300;
    c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_FLOAT32;
    c.scale = 40.0;
    c.tol = 1e-2;
    const tu_rng same = *r;
    c.rescale = FIA_MLA_RESCALE_AMLA;
    run_case(&c, r);
    *r = same;
    c.rescale = FIA_MLA_RESCALE_MULTIPLY;
    run_case(&c, r);
}

/* Bitwise identical output for 1, 2 and 7 threads, and for a request inside a larger batch
 * (PA_BSND: multiply, AMLA, int8; PA_NZ: AMLA). */
static void test_determinism(tu_rng *r) {
    const int resc[4] = {FIA_MLA_RESCALE_MULTIPLY, FIA_MLA_RESCALE_AMLA, -1, FIA_MLA_RESCALE_AMLA};
    for (int v = 0; v < 4; v++) {
        mcase c;
        memset(&c, 0, sizeof c);
        c.layout = FIA_LAYOUT_BSND;
        c.cache = v == 3 ? CACHE_NZ : CACHE_PA4;
        c.N = 32;
        c.B = 2;
        c.bs = 128;
        c.S1 = 2;
        c.qlen[0] = 2; c.kvlen[0] = 3000;
        c.qlen[1] = 1; c.kvlen[1] = 700;
        c.pass_qlen = 1;
        c.mode = 3;
        if (resc[v] < 0) {
            c.qdt = c.kdt = FIA_DTYPE_INT8;
            c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
        } else {
            c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
            c.rescale = resc[v];
        }
        c.scale = 0.1352;
        mbuf m;
        if (!tu_check(build(&c, r, &m) == 0, "determinism build")) {
            mbuf_free(&m);
            continue;
        }
        tu_tensor ref;
        tu_alloc(&ref, m.o.t.dtype, m.o.t.ndim, m.o.t.shape, NULL, 0);
        const int threads[3] = {1, 2, 7};
        for (int ti = 0; ti < 3; ti++) {
            fia_context_options o = {threads[ti], FIA_ISA_AUTO};
            fia_context *ctx = NULL;
            if (!tu_check(fia_context_create(&o, &ctx) == FIA_STATUS_SUCCESS, "context"))
                continue;
            memset(m.o.buf, 0, m.o.bytes);
            tu_check(run(ctx, &m) == FIA_STATUS_SUCCESS, "determinism run: %s", fia_last_error());
            if (ti == 0) memcpy(ref.buf, m.o.buf, m.o.bytes);
            else
                tu_check(memcmp(ref.buf, m.o.buf, m.o.bytes) == 0,
                         "variant %d: %d threads differ from 1 thread", v, threads[ti]);
            fia_context_destroy(ctx);
        }
        /* batch 1 alone (the first request) must give the same bits as inside the batch */
        mcase c1 = c;
        c1.B = 1;
        mbuf m1;
        tu_rng r1 = tu_rng_make(7);
        if (tu_check(build(&c1, &r1, &m1) == 0, "determinism build 1")) {
            /* copy batch 0's inputs: same shapes for query rows of batch 0 */
            memcpy(m1.q.buf, m.q.buf, m1.q.bytes);
            memcpy(m1.qr.buf, m.qr.buf, m1.qr.bytes);
            if (m1.sq.buf) memcpy(m1.sq.buf, m.sq.buf, m1.sq.bytes);
            if (m1.sk.buf) {
                memcpy(m1.sk.buf, m.sk.buf, 4);
                memcpy(m1.sv.buf, m.sv.buf, 4);
            }
            /* the cache: give batch 0 the same blocks */
            memcpy(m1.k.buf, m.k.buf, m1.k.bytes < m.k.bytes ? m1.k.bytes : m.k.bytes);
            memcpy(m1.kr.buf, m.kr.buf, m1.kr.bytes < m.kr.bytes ? m1.kr.bytes : m.kr.bytes);
            const int64_t cols1 = m1.bt.t.shape[1], cols = m.bt.t.shape[1];
            for (int64_t k = 0; k < cols1; k++)
                tu_store(&m1.bt.t, k, k < cols ? fia_ref_load(&m.bt.t, k) : -1.0);
            const int64_t kblocks = m1.k.t.shape[0];
            int ok = 1;
            for (int64_t k = 0; k < (c.kvlen[0] + c.bs - 1) / c.bs; k++)
                ok &= fia_ref_load(&m1.bt.t, k) < (double)kblocks;
            if (ok) {
                tu_check(run(g_ctx[g_nctx - 1], &m1) == FIA_STATUS_SUCCESS, "batch-1 run");
                const size_t row_bytes = m1.o.bytes;
                tu_check(memcmp(m1.o.buf, ref.buf, row_bytes) == 0,
                         "variant %d: batch 0 alone differs from batch 0 inside the batch", v);
            }
        }
        mbuf_free(&m1);
        tu_free(&ref);
        mbuf_free(&m);
    }
}

/* Invalid calls: a clear status, attention_out untouched. */
static void test_invalid(tu_rng *r) {
    mcase c;
    memset(&c, 0, sizeof c);
    c.layout = FIA_LAYOUT_BSND;
    c.cache = CACHE_PA4;
    c.N = 16;
    c.B = 2;
    c.bs = 16;
    c.S1 = 1;
    c.qlen[0] = c.qlen[1] = 1;
    c.kvlen[0] = 40;
    c.kvlen[1] = 17;
    c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
    c.scale = 0.1;
    fia_context *ctx = g_ctx[g_nctx - 1];
    for (int k = 0; k < 16; k++) {
        mbuf m;
        mcase cc = c;
        if (k == 12) { /* int8 form without scales */
            cc.qdt = cc.kdt = FIA_DTYPE_INT8;
        }
        if (!tu_check(build(&cc, r, &m) == 0, "invalid build")) {
            mbuf_free(&m);
            continue;
        }
        fia_status want = FIA_STATUS_INVALID_ARGUMENT;
        const char *what = "";
        int64_t one = 1;
        tu_tensor extra;
        memset(&extra, 0, sizeof extra);
        switch (k) {
        case 0: m.prm.num_heads = 129; what = "N 129"; break;
        case 1: m.prm.num_key_value_heads = 2; what = "kv heads 2"; break;
        case 2: m.prm.sparse_mode = 4; want = FIA_STATUS_UNSUPPORTED; what = "mode 4"; break;
        case 3: m.prm.block_size = 24; what = "block 24"; break;
        case 4: tu_store(&m.bt.t, 1, 1000); what = "block id out of range"; break;
        case 5: m.t.key_rope = NULL; what = "no key_rope"; break;
        case 6: m.t.value = &m.kr.t; what = "value shape"; break;
        case 7: m.prm.mla_rescale = 5; what = "rescale 5"; break;
        case 8: m.k.t.shape[3] = 256; what = "latent 256"; break;
        case 9: m.prm.input_layout = FIA_LAYOUT_BNSD_BSND; want = FIA_STATUS_UNSUPPORTED; what = "BNSD_BSND"; break;
        case 10: m.prm.actual_seq_lengths_kv = NULL; what = "no kv lengths (paged)"; break;
        case 11: m.t.query_rope = &m.q.t; want = FIA_STATUS_UNSUPPORTED; what = "rope 512"; break;
        case 12: m.t.dequant_scale_key = NULL; what = "int8 without scales"; break;
        case 13:
            tu_alloc(&extra, FIA_DTYPE_FLOAT32, 1, &one, NULL, 0);
            m.t.dequant_scale_key = &extra.t;
            what = "scales with a float key";
            break;
        case 14: m.prm.scale = NAN; what = "scale NaN"; break;
        case 15: m.kr.t.dtype = FIA_DTYPE_FLOAT16; what = "rope dtype"; break;
        }
        memset(m.o.buf, 0xEE, m.o.bytes);
        unsigned char *before = malloc(m.o.bytes);
        memcpy(before, m.o.buf, m.o.bytes);
        const fia_status st = run(ctx, &m);
        tu_check(st == want, "invalid %d (%s): got %s, want %s (%s)", k, what,
                 fia_status_string(st), fia_status_string(want), fia_last_error());
        tu_check(fia_last_error()[0] != '\0', "invalid %d (%s): no message", k, what);
        tu_check(memcmp(before, m.o.buf, m.o.bytes) == 0, "invalid %d (%s): output written", k, what);
        free(before);
        tu_free(&extra);
        mbuf_free(&m);
    }
}

/* The AMX bf16 path (bf16 query and latent, value = key): random cases of every shape it takes
 * (1..128 heads, so padded row blocks; 1..4 positions; causal; paged with blocks of 16 (key
 * blocks staged) or more, PA_NZ (every key block gathered from its chunks), dense, split-KV;
 * the multiply and the AMLA rescale), on the AVX-512 context, against the oracle at the
 * unchanged tolerance; where the CPU has no AMX the same cases run the fp32 path. Then the same
 * with P rounded to bf16 (FIA_MLA_P_BF16=1, the opt-in NPU numerics, not exact): its own bound,
 * atol = rtol = 8e-3 (P's rounding, <= 2^-9 P, moves an output by at most 2^-9 max|V| ~ 2e-3
 * here; the default path's tolerance is not used for it). */
static void test_amx(tu_rng *r, int count) {
    const bool ab = (fia_cpu_features() & FIA_CPU_AMX_BF16) != 0;
    printf("AMX bf16: %s\n", ab ? "exercised" : "not available on this CPU (fp32 path tested)");
    static const int64_t heads[] = {1, 3, 16, 20, 128};
    for (int pass = 0; pass < 2; pass++) {
        if (pass) setenv("FIA_MLA_P_BF16", "1", 1);
        for (int i = 0; i < count; i++) {
            mcase c;
            gen_random(r, &c);
            c.qdt = c.kdt = c.rdt = c.odt = FIA_DTYPE_BFLOAT16;
            c.N = TU_PICK(r, heads);
            c.rescale = (int)tu_int(r, 0, 2);
            c.sep_value = 0;
            if (i % 3 == 0) c.cache = CACHE_NZ;
            if (pass) c.tol = 8e-3;
            run_case(&c, r);
        }
        unsetenv("FIA_MLA_P_BF16");
    }
}

/* The AMX step itself, where the CPU has it: fia_amx_mla_step_next (the next rows prefetched
 * between the tile operations) gives bitwise the results of fia_amx_mla_step, over steps of
 * every size class (full 256-key steps, a partial one, a row block that sees only part of the
 * keys) and padded row counts; a step in which no row sees a key returns false and changes
 * nothing. */
static uint16_t bf16_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void test_amx_step(tu_rng *r) {
    if (!(fia_cpu_features() & FIA_CPU_AMX_BF16)) {
        printf("AMX step: not available on this CPU, skipped\n");
        return;
    }
    enum { XDN = FIA_AMX_MLA_DN, XDR = FIA_AMX_MLA_DR, XT = FIA_AMX_MLA_STEP };
    static const int64_t rows_of[] = {1, 20, 128};
    static const int64_t n_of[] = {XT, 77, 1};
    for (int rc = 0; rc < 3; rc++)
        for (int nc = 0; nc < 3; nc++)
            for (int masked = 0; masked < 2; masked++) {
                const int64_t rows = rows_of[rc], rp = (rows + 15) / 16 * 16, n = n_of[nc];
                const int64_t L = 2 * XT; /* this step's keys and the next step's */
                uint16_t *kv = malloc((size_t)L * (XDN + XDR) * 2), *q = malloc((size_t)rows * (XDN + XDR) * 2);
                uint16_t *qt = aligned_alloc(64, (size_t)rp * (XDN + XDR) * 2);
                const size_t sb = (fia_amx_mla_scratch_bytes(rp) + 63) / 64 * 64;
                void *scr = aligned_alloc(64, sb);
                float *o[2], *m[2], *l[2];
                for (int v = 0; v < 2; v++) {
                    o[v] = malloc((size_t)rp * XDN * 4);
                    m[v] = malloc((size_t)rows * 4);
                    l[v] = malloc((size_t)rows * 4);
                }
                const uint16_t **kr = malloc(sizeof(void *) * (size_t)L), **rr = malloc(sizeof(void *) * (size_t)L);
                const uint16_t **qn = malloc(sizeof(void *) * (size_t)rows), **qr = malloc(sizeof(void *) * (size_t)rows);
                int32_t *ka = malloc((size_t)rows * 4), *ke = malloc((size_t)rows * 4);
                for (int64_t i = 0; i < L * (XDN + XDR); i++) kv[i] = bf16_of((float)tu_uniform(r, -1, 1));
                for (int64_t i = 0; i < rows * (XDN + XDR); i++) q[i] = bf16_of((float)tu_uniform(r, -1, 1));
                for (int64_t j = 0; j < L; j++) kr[j] = kv + j * (XDN + XDR), rr[j] = kr[j] + XDN;
                for (int64_t h = 0; h < rows; h++) {
                    qn[h] = q + h * (XDN + XDR), qr[h] = qn[h] + XDN;
                    ka[h] = masked ? (int32_t)tu_int(r, 0, n - 1) : 0;
                    ke[h] = masked ? (int32_t)tu_int(r, ka[h] + 1, n) : (int32_t)n;
                }
                fia_amx_mla_pack_q(rows, rp, qn, qr, qt);
                for (int v = 0; v < 2; v++) {
                    for (int64_t i = 0; i < rp * XDN; i++) o[v][i] = (float)(i % 7) * 0.25f;
                    for (int64_t h = 0; h < rows; h++) m[v][h] = 0.5f, l[v][h] = 2.0f;
                    const fia_amx_mla_args a = {rows, rp, n, kr, rr, qt, ka, ke, 0.05f, false,
                                                false, m[v], l[v], o[v], XDN, scr};
                    const fia_amx_mla_next nx = {{(const void *const *)(kr + XT), (const void *const *)(rr + XT)},
                                                 {XDN * 2, XDR * 2}, XT};
                    const bool any = v ? fia_amx_mla_step_next(&a, &nx) : fia_amx_mla_step(&a);
                    tu_check(any, "AMX step rows %lld n %lld: no row saw a key", (long long)rows, (long long)n);
                }
                tu_check(!memcmp(o[0], o[1], (size_t)rows * XDN * 4) && !memcmp(m[0], m[1], (size_t)rows * 4) &&
                             !memcmp(l[0], l[1], (size_t)rows * 4),
                         "AMX step rows %lld n %lld masked %d: step_next differs from step",
                         (long long)rows, (long long)n, masked);
                /* no row sees a key */
                for (int64_t h = 0; h < rows; h++) ka[h] = ke[h] = (int32_t)n;
                memcpy(o[1], o[0], (size_t)rp * XDN * 4);
                memcpy(m[1], m[0], (size_t)rows * 4);
                memcpy(l[1], l[0], (size_t)rows * 4);
                const fia_amx_mla_args a = {rows, rp, n, kr, rr, qt, ka, ke, 0.05f, false, false,
                                            m[1], l[1], o[1], XDN, scr};
                tu_check(!fia_amx_mla_step(&a) && !memcmp(o[0], o[1], (size_t)rp * XDN * 4) &&
                             !memcmp(m[0], m[1], (size_t)rows * 4) && !memcmp(l[0], l[1], (size_t)rows * 4),
                         "AMX step rows %lld n %lld: a step with no visible key changed the state",
                         (long long)rows, (long long)n);
                for (int v = 0; v < 2; v++) free(o[v]), free(m[v]), free(l[v]);
                free(kv), free(q), free(qt), free(scr), free(kr), free(rr), free(qn), free(qr), free(ka), free(ke);
            }
    printf("AMX step: step_next against step and the no-key step, 18 cases\n");
}

/* Two steps of fia_amx_mla_step_ext: keys [0, n) of K / R with the row ranges ka0 / ke0, then
 * keys [XT, XT + n) with ka1 / ke1 (the first step prefetches the second's rows when pf). */
static void amx_two_steps(int64_t rows, int64_t n, const uint16_t *const *K, const uint16_t *const *R,
                          const uint16_t *qt, const int32_t *ka0, const int32_t *ke0,
                          const int32_t *ka1, const int32_t *ke1, const fia_amx_mla_ext *x, int pf,
                          float scale,
                          void *scr, float *o, float *m, float *l) {
    enum { XT = FIA_AMX_MLA_STEP };
    const int64_t rp = (rows + 15) / 16 * 16;
    for (int64_t h = 0; h < rows; h++) m[h] = -INFINITY, l[h] = 0.0f, x->e[h] = 0;
    for (int st = 0; st < 2; st++) {
        const fia_amx_mla_args a = {rows, rp, n, K + st * XT, R + st * XT, qt, st ? ka1 : ka0,
                                    st ? ke1 : ke0, scale, st == 0, false, m, l, o,
                                    FIA_AMX_MLA_DN, scr};
        const fia_amx_mla_next nx = {{(const void *const *)(K + XT), (const void *const *)(R + XT)},
                                     {64, 64}, n};
        tu_check(fia_amx_mla_step_ext(&a, x, pf && st == 0 ? &nx : NULL),
                 "AMX step_ext rows %lld n %lld step %d: no row saw a key", (long long)rows,
                 (long long)n, st);
    }
}

/* The step's cache layout and rescale variants (fia_amx_mla_step_ext), where the CPU has AMX,
 * over two steps (the second with 3x larger keys, so that the max moves, and random row ranges;
 * every third row sees nothing in the first step, so that its accumulator starts in the second):
 *   - PA_NZ rows (each row's 16-element chunks L rows apart: every key block gathered from its
 *     chunks) give bitwise the results of the same rows given contiguous, for the multiply and
 *     the AMLA rescale, with the next rows prefetched;
 *   - AMLA against the multiply rescale: the state identity (m, l) = (-e ln2, l_amla) as a
 *     log-sum-exp (1e-5 + 1e-5 relative), and O / l per element (1e-4 + 1e-5 relative: both
 *     carry P's hi + lo split, <= 2^-18 P each, times |V| <= 3). */
static void test_amx_step_ext(tu_rng *r) {
    if (!(fia_cpu_features() & FIA_CPU_AMX_BF16)) {
        printf("AMX step (PA_NZ, AMLA): not available on this CPU, skipped\n");
        return;
    }
    enum { XDN = FIA_AMX_MLA_DN, XDR = FIA_AMX_MLA_DR, XT = FIA_AMX_MLA_STEP, L = 2 * XT };
    static const int64_t rows_of[] = {1, 20, 128};
    static const int64_t n_of[] = {XT, 77, 5};
    int cases = 0;
    for (int rc = 0; rc < 3; rc++)
        for (int nc = 0; nc < 3; nc++) {
            const int64_t rows = rows_of[rc], rp = (rows + 15) / 16 * 16, n = n_of[nc];
            uint16_t *kv = malloc((size_t)L * (XDN + XDR) * 2), *q = malloc((size_t)rows * (XDN + XDR) * 2);
            uint16_t *nzk = malloc((size_t)L * XDN * 2), *nzr = malloc((size_t)L * XDR * 2);
            uint16_t *qt = aligned_alloc(64, (size_t)rp * (XDN + XDR) * 2);
            void *scr = aligned_alloc(64, (fia_amx_mla_scratch_bytes(rp) + 63) / 64 * 64);
            const uint16_t **kr = malloc(sizeof(void *) * L), **rr = malloc(sizeof(void *) * L);
            const uint16_t **kz = malloc(sizeof(void *) * L), **rz = malloc(sizeof(void *) * L);
            const uint16_t **qn = malloc(sizeof(void *) * (size_t)rows), **qr = malloc(sizeof(void *) * (size_t)rows);
            int32_t *ka0 = malloc((size_t)rows * 4), *ke0 = malloc((size_t)rows * 4);
            int32_t *ka1 = malloc((size_t)rows * 4), *ke1 = malloc((size_t)rows * 4);
            float *o[4], *m[4], *l[4];
            int32_t *e[4];
            for (int v = 0; v < 4; v++) {
                o[v] = malloc((size_t)rp * XDN * 4);
                m[v] = malloc((size_t)rows * 4);
                l[v] = malloc((size_t)rows * 4);
                e[v] = malloc((size_t)rows * 4);
            }
            for (int64_t j = 0; j < L; j++)
                for (int64_t d = 0; d < XDN + XDR; d++)
                    kv[j * (XDN + XDR) + d] = bf16_of((float)tu_uniform(r, -1, 1) * (j >= XT ? 3.0f : 1.0f));
            for (int64_t i = 0; i < rows * (XDN + XDR); i++) q[i] = bf16_of((float)tu_uniform(r, -1, 1));
            for (int64_t j = 0; j < L; j++) {
                kr[j] = kv + j * (XDN + XDR), rr[j] = kr[j] + XDN;
                kz[j] = nzk + j * 16, rz[j] = nzr + j * 16;
                for (int64_t d = 0; d < XDN; d++) nzk[(d / 16) * L * 16 + j * 16 + d % 16] = kr[j][d];
                for (int64_t d = 0; d < XDR; d++) nzr[(d / 16) * L * 16 + j * 16 + d % 16] = rr[j][d];
            }
            for (int64_t h = 0; h < rows; h++) {
                qn[h] = q + h * (XDN + XDR), qr[h] = qn[h] + XDN;
                ka0[h] = 0, ke0[h] = h % 3 == 1 ? 0 : (int32_t)n;
                ka1[h] = (int32_t)tu_int(r, 0, n - 1);
                ke1[h] = (int32_t)tu_int(r, ka1[h] + 1, n);
            }
            fia_amx_mla_pack_q(rows, rp, qn, qr, qt);
            for (int big = 0; big < 2; big++) { /* scale 40: the max jumps by > 255 binades */
                const float sc = big ? 40.0f : 0.05f;
                /* v: 0 contiguous multiply, 1 contiguous AMLA, 2 NZ multiply, 3 NZ AMLA */
                for (int v = 0; v < 4; v++) {
                    const int64_t cb = v >= 2 ? L * 16 * 2 : 0;
                    const fia_amx_mla_ext x = {cb, cb, (v & 1) != 0, e[v]};
                    amx_two_steps(rows, n, v >= 2 ? kz : kr, v >= 2 ? rz : rr, qt, ka0, ke0, ka1, ke1,
                                  &x, v >= 2, sc, scr, o[v], m[v], l[v]);
                }
                for (int v = 0; v < 2; v++)
                    tu_check(!memcmp(o[v], o[v + 2], (size_t)rows * XDN * 4) &&
                                 !memcmp(m[v], m[v + 2], (size_t)rows * 4) &&
                                 !memcmp(l[v], l[v + 2], (size_t)rows * 4) &&
                                 !memcmp(e[v], e[v + 2], (size_t)rows * 4),
                             "AMX step rows %lld n %lld %s: PA_NZ differs from contiguous rows",
                             (long long)rows, (long long)n, v ? "AMLA" : "multiply");
                int ok = 1;
                for (int64_t h = 0; h < rows && ok; h++) {
                    const double lse0 = m[0][h] + log((double)l[0][h]);
                    const double lse1 = -e[1][h] * 0.69314718055994530942 + log((double)l[1][h]);
                    ok = fabs(lse0 - lse1) <= 1e-5 + 1e-5 * fabs(lse0);
                    if (!ok)
                        tu_check(0, "AMX step rows %lld n %lld row %lld: AMLA lse %.9g, multiply %.9g",
                                 (long long)rows, (long long)n, (long long)h, lse1, lse0);
                    for (int64_t d = 0; d < XDN && ok; d++) {
                        const double w = o[0][h * XDN + d] / l[0][h], g = o[1][h * XDN + d] / l[1][h];
                        ok = fabs(w - g) <= 1e-4 + 1e-5 * fabs(w);
                        if (!ok)
                            tu_check(0, "AMX step rows %lld n %lld (%lld, %lld): AMLA O/l %.9g, "
                                     "multiply %.9g", (long long)rows, (long long)n, (long long)h,
                                     (long long)d, g, w);
                    }
                }
                if (ok) tu_check(1, "");
                cases++;
            }
            for (int v = 0; v < 4; v++) free(o[v]), free(m[v]), free(l[v]), free(e[v]);
            free(kv), free(q), free(nzk), free(nzr), free(qt), free(scr), free(kr), free(rr), free(kz), free(rz);
            free(qn), free(qr), free(ka0), free(ke0), free(ka1), free(ke1);
        }
    printf("AMX step (PA_NZ, AMLA): %d cases (scales 0.05 and 40), 4 variants each\n", cases);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261121, "test_mla");
    tu_rng r = tu_rng_make(seed);
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        fia_context_options o = {2, levels[i]};
        fia_context *ctx = NULL;
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) {
            printf("isa %s: not available, skipped\n", fia_isa_name(levels[i]));
            continue;
        }
        g_ctx[g_nctx] = ctx;
        g_isa[g_nctx++] = levels[i];
    }
    /* With AMX: one more AVX-512 context without it and with the vdpbf16ps Q.K^T forced on
     * (FIA_BF16DP=1), so the AVX512-BF16 path (or the fp32 path where the CPU has no BF16) is
     * tested too. */
    const bool amx_bf16 = (fia_cpu_features() & FIA_CPU_AMX_BF16) != 0;
    if (amx_bf16 && g_nctx == 3) {
        setenv("FIA_AMX", "0", 1);
        setenv("FIA_BF16DP", "1", 1);
        fia_context_options o = {2, FIA_ISA_AVX512};
        if (fia_context_create(&o, &g_ctx[g_nctx]) == FIA_STATUS_SUCCESS) g_isa[g_nctx++] = FIA_ISA_AVX512;
        unsetenv("FIA_AMX");
        unsetenv("FIA_BF16DP");
    }
    test_random(&r, (int)tu_env_long("FIA_TEST_MLA_CASES", 36));
    test_edges(&r);
    test_amx(&r, (int)tu_env_long("FIA_TEST_MLA_AMX_CASES", 16));
    test_amx_step(&r);
    test_amx_step_ext(&r);
    test_determinism(&r);
    test_invalid(&r);
    printf("worst abs error: float forms %.3g, int8 form %.3g\n", g_worst[0], g_worst[1]);
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    return tu_summary();
}
