/*
 * fuzz_fia_plan.c - libFuzzer target for fia_fused_infer_attention_score_plan / fia_plan_execute.
 *
 * The input bytes choose a layout, dtypes, head counts, lengths (incl. negative, decreasing
 * cumulative and huge), a paged cache and its block table (ids out of range, -1), a mask,
 * antiquant tensors and the parameters; each tensor's shape, dtype, rank and strides (zero, huge,
 * negative, non-unit innermost) are mostly consistent and sometimes carved straight from the
 * bytes. Every buffer is allocated to exactly the extent its shape and strides reach, so ASan
 * sees any read or write outside a tensor.
 *
 * When a tensor reaches past 4 MiB (or its extent overflows) it gets a small dummy buffer and the
 * input is planned but never executed: the plan must validate without reading tensor contents
 * (fia.h: contents are read at execute time; only the lengths and the block table are read at
 * plan time, so an oversized block table skips the input). On plan success the plan is executed
 * with a workspace of exactly the size it asked for (skipped above 256 MiB or when the work is
 * too large for a fuzzing budget), once more with one byte too few, and destroyed.
 * One context with 2 threads serves every input.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"

/* interesting() draws from 20 ways here (10 special values, 10 typical) */
#define FZ_INTERESTING_WAYS 20
#include "fuzz/fuzz_util.h"

#define MAX_WORKSPACE ((size_t)256 << 20)
#define MAX_WORK ((int64_t)1 << 24) /* multiply-adds per execute */



static uint8_t g_cmask[2048 * 2048]; /* the compressed mask triu(ones, 1), built once */

typedef struct ftensor {
    fia_tensor t;
    void *buf;
    size_t bytes;
    int oversize; /* data is a dummy: plan only */
} ftensor;

static size_t bt_bytes(const ftensor *x) { return x->buf ? x->bytes : 0; }

/* Sets x to shape/dtype (or a carved variant) with carved strides, allocates exactly its
 * extent and fills it. */
static void build(fz *f, ftensor *x, fia_dtype dt, int32_t nd, const int64_t *shape_in) {
    int64_t shape[FIA_MAX_DIMS] = {0}, strides[FIA_MAX_DIMS];
    memset(x, 0, sizeof *x);
    for (int32_t i = 0; i < nd; i++) shape[i] = shape_in[i];
    /* Each deviation from the consistent tensor is rare, so that many inputs plan. */
    const uint8_t m = u8(f);
    if (m >= 248) dt = (fia_dtype)(u8(f) % 10); /* incl. unknown dtypes */
    if ((m & 0x1f) == 0x1f) {                   /* any rank, any dims */
        nd = u8(f) % (FIA_MAX_DIMS + 1);
        for (int32_t i = 0; i < nd; i++) shape[i] = u8(f) % 4 ? rng(f, 0, 40) : interesting(f, 3000);
    } else if ((m & 0x1f) == 0x1e && nd > 0) { /* one dim changed */
        shape[u8(f) % nd] = interesting(f, 70);
    }
    int64_t s = 1;
    for (int32_t i = nd - 1; i >= 0; i--) {
        strides[i] = s;
        const int64_t d = shape[i] > 0 ? shape[i] : 1;
        s = smul(s, d);
    }
    const uint8_t sm = u8(f) % 32;
    if (sm >= 26 && sm <= 28 && nd > 0) { /* padded outer strides */
        for (int32_t i = nd - 2, pad = 0; i >= 0; i--) {
            pad += (int)rng(f, 0, 5);
            strides[i] = sadd(smul(strides[i + 1], shape[i + 1] > 0 ? shape[i + 1] : 1), pad);
        }
    } else if (sm == 29 && nd > 0) { /* one stride carved: zero, huge, negative */
        strides[u8(f) % nd] = interesting(f, 100);
    } else if (sm == 30 && nd > 0) {
        strides[nd - 1] = u8(f) % 3 == 0 ? 0 : rng(f, -2, 3);
    }
    x->oversize = fz_place(&x->t, dt, nd, shape, strides, &x->buf, &x->bytes);
    if (x->oversize) return;
    const int64_t bytes = (int64_t)x->bytes;
    /* Contents: small floats (sometimes raw bits: NaN, inf), any bytes otherwise. */
    const int raw = (m & 3) == 3;
    for (int64_t i = 0; i < bytes;) {
        if (!raw && dt == FIA_DTYPE_FLOAT32 && bytes - i >= 4) {
            const float v = (float)((int64_t)(next_rand() % 2001) - 1000) / 1000.0f;
            memcpy((char *)x->buf + i, &v, 4), i += 4;
        } else if (!raw && (dt == FIA_DTYPE_FLOAT16 || dt == FIA_DTYPE_BFLOAT16) && bytes - i >= 2) {
            const float v = (float)((int64_t)(next_rand() % 2001) - 1000) / 1000.0f;
            const uint16_t h = dt == FIA_DTYPE_FLOAT16 ? fia_f32_to_f16(v) : fia_f32_to_bf16(v);
            memcpy((char *)x->buf + i, &h, 2), i += 2;
        } else {
            ((uint8_t *)x->buf)[i++] = (uint8_t)next_rand();
        }
    }
}

static int32_t dense_shape(fia_layout l, int64_t B, int64_t S, int64_t N, int64_t D, int64_t *sh) {
    switch (l) {
    case FIA_LAYOUT_BSH: sh[0] = B, sh[1] = S, sh[2] = smul(N, D); return 3;
    case FIA_LAYOUT_TND: sh[0] = S, sh[1] = N, sh[2] = D; return 3;
    case FIA_LAYOUT_BNSD:
    case FIA_LAYOUT_BNSD_BSND: sh[0] = B, sh[1] = N, sh[2] = S, sh[3] = D; return 4;
    default: sh[0] = B, sh[1] = S, sh[2] = N, sh[3] = D; return 4;
    }
}

/* Lengths: mostly count = B with values in range; carved counts and values otherwise. Returns
 * the array (caller frees) or NULL; count in *count. */
static int64_t *lengths(fz *f, int64_t B, int64_t hi, int cumulative, int64_t *count) {
    const uint8_t m = u8(f) % 32;
    if (m == 0) {
        *count = u8(f) % 2 ? 0 : B;
        return NULL;
    }
    int64_t n = m == 1 ? 1 : m == 2 ? B + rng(f, 1, 3) : B;
    if (m == 3) n = rng(f, -3, 70);
    *count = n;
    if (n <= 0 || n > 4096) return NULL;
    int64_t *v = malloc(sizeof(int64_t) * (size_t)n);
    int64_t acc = 0;
    hi = hi < 0 ? 0 : hi > 4096 ? 4096 : hi;
    for (int64_t i = 0; i < n; i++) {
        const int64_t x = u8(f) % 32 ? rng(f, 0, hi) : interesting(f, hi + 2);
        if (cumulative && u8(f) % 32) {
            acc = sadd(acc, x / (B > 0 ? B : 1));
            v[i] = acc;
        } else {
            v[i] = x;
        }
    }
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FIA_FUZZ_STATS=1 prints how many inputs planned and executed (to keep the harness useful). */
static long g_runs, g_planned, g_executed;

static void print_stats(void) {
    fprintf(stderr, "fuzz_fia_plan: %ld inputs, %ld planned, %ld executed\n", g_runs, g_planned, g_executed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fia_context *ctx;
    if (!ctx) {
        for (int64_t i = 0; i < 2048; i++)
            for (int64_t j = 0; j < 2048; j++) g_cmask[i * 2048 + j] = j > i;
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) abort();
        if (getenv("FIA_FUZZ_STATS")) atexit(print_stats);
    }
    g_runs++;
    fz f = {data, size};
    fz_seed(data, size);

    /* Parameters. */
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    static const fia_layout layouts[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND,
                                          FIA_LAYOUT_BNSD_BSND};
    const uint8_t lsel = u8(&f);
    const fia_layout layout = lsel < 240 ? layouts[lsel % 5] : lsel < 249 ? (fia_layout)(lsel - 240) /* reserved */
                              : lsel < 252 ? (fia_layout)42 : (fia_layout)-1;
    const int tnd = layout == FIA_LAYOUT_TND;
    const int64_t G = 1 << (u8(&f) % 4), N2 = rng(&f, 1, 3);
    int64_t N1 = G * N2;
    p.num_heads = u8(&f) % 16 ? N1 : interesting(&f, 9);
    p.num_key_value_heads = u8(&f) % 16 ? (u8(&f) % 2 || G > 1 ? N2 : 0) : interesting(&f, 9);
    p.input_layout = layout;
    const int64_t B = rng(&f, 1, 4);
    const int64_t S1 = u8(&f) % 3 == 0 ? 1 : rng(&f, 0, 40), S2 = rng(&f, 0, 64);
    const int64_t D = u8(&f) % 16 ? rng(&f, 1, 40) : interesting(&f, 600);
    const int64_t Dv = u8(&f) % 2 ? D : rng(&f, 1, 40);
    p.scale = u8(&f) % 8 ? 1.0 / sqrt((double)(D > 0 ? D : 1)) : (double)interesting(&f, 10);
    p.sparse_mode = u8(&f) % 16 ? (int32_t)(u8(&f) % 5) : (int32_t)rng(&f, -1, 10);
    if (u8(&f) % 2) p.pre_tokens = interesting(&f, 70), p.next_tokens = interesting(&f, 70);
    const int paged = u8(&f) % 3; /* 0 none, 1 BnBsH, 2 BnNBsD */
    const int64_t bs = u8(&f) % 16 ? rng(&f, 1, 32) : interesting(&f, 1100);
    p.block_size = paged ? bs : (u8(&f) % 8 ? 0 : interesting(&f, 64));
    const int64_t blocks = rng(&f, 0, 24), max_blocks = rng(&f, 0, 12);
    const uint8_t dsel = u8(&f);
    static const fia_dtype qdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    const fia_dtype qdt = qdts[dsel % 3];
    const int quant = (dsel >> 2) % 3 == 0;
    const fia_dtype kvdt = quant ? FIA_DTYPE_INT8 : qdt;
    const uint8_t amode = u8(&f); /* consumed here, applied with the scale shape below */
    p.softmax_lse_flag = u8(&f) % 2;
    p.inner_precise = u8(&f) % 3;

    /* Lengths. */
    int64_t qcount = 0, kvcount = 0;
    int64_t *ql = lengths(&f, B, tnd ? 40 : S1, tnd, &qcount);
    int64_t *kvl = lengths(&f, B, paged ? smul(max_blocks, bs) : S2, tnd && !paged, &kvcount);
    p.actual_seq_lengths = ql, p.actual_seq_lengths_count = qcount;
    p.actual_seq_lengths_kv = kvl, p.actual_seq_lengths_kv_count = kvcount;
    int64_t T1 = 0, T2 = 0;
    for (int64_t i = 0; tnd && ql && i < qcount && i < B; i++) T1 = ql[i] > T1 && ql[i] < 400 ? ql[i] : T1;
    for (int64_t i = 0; tnd && kvl && i < kvcount && i < B; i++) T2 = kvl[i] > T2 && kvl[i] < 400 ? kvl[i] : T2;
    T1 += u8(&f) % 4 == 0;
    T2 += u8(&f) % 4 == 0;
    const int64_t Bt = tnd ? (qcount > 0 && qcount < 64 ? qcount : B) : B; /* TND batch = count */

    /* Tensors. */
    ftensor q, k, v, out, lse, mask, bt, aqs, aqo;
    memset(&mask, 0, sizeof mask), memset(&bt, 0, sizeof bt), memset(&aqs, 0, sizeof aqs), memset(&aqo, 0, sizeof aqo);
    memset(&lse, 0, sizeof lse);
    int64_t sh[FIA_MAX_DIMS];
    int32_t nd = dense_shape(layout, B, tnd ? T1 : S1, N1, D, sh);
    build(&f, &q, qdt, nd, sh);
    nd = dense_shape(layout == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND : layout, B, tnd ? T1 : S1, N1, Dv, sh);
    build(&f, &out, qdt, nd, sh);
    if (paged) {
        for (int side = 0; side < 2; side++) {
            const int64_t d = side ? Dv : D;
            if (paged == 1) sh[0] = blocks, sh[1] = bs, sh[2] = smul(N2, d), nd = 3;
            else sh[0] = blocks, sh[1] = N2, sh[2] = bs, sh[3] = d, nd = 4;
            build(&f, side ? &v : &k, kvdt, nd, sh);
        }
        sh[0] = Bt, sh[1] = max_blocks;
        build(&f, &bt, FIA_DTYPE_INT32, 2, sh);
        if (bt.oversize) goto done; /* read at plan time: must be real */
        if (bt.t.dtype == FIA_DTYPE_INT32 && bt.buf) { /* mostly valid ids, some -1 / out of range */
            int32_t *ids = bt.buf;
            for (size_t i = 0; (i + 1) * 4 <= bt_bytes(&bt); i++) {
                const uint8_t c = u8(&f);
                ids[i] = c % 64 == 0 ? -1 : c % 64 == 1 ? (int32_t)interesting(&f, blocks + 2)
                                                         : (int32_t)(blocks > 0 ? rng(&f, 0, blocks - 1) : 0);
            }
        }
    } else {
        for (int side = 0; side < 2; side++) {
            nd = dense_shape(layout, B, tnd ? T2 : S2, N2, side ? Dv : D, sh);
            build(&f, side ? &v : &k, kvdt, nd, sh);
        }
    }
    const int64_t maxq = tnd ? 40 : S1, maxkv = paged ? smul(max_blocks, bs) : S2;
    /* mask: mostly the form the sparse mode wants (none / full for 0, full for 1, compressed
     * for 2..4), sometimes any form */
    uint8_t msel = u8(&f) % 10;
    if (u8(&f) % 8) {
        if (p.sparse_mode == 1) msel = 1 + msel % 4;
        else if (p.sparse_mode >= 2 && p.sparse_mode <= 4) msel = 5 + msel % 3;
        else if (p.sparse_mode == 0 && msel >= 5) msel = 0;
    }
    if (msel >= 1 && msel <= 4) { /* full forms */
        const int64_t r = maxq + rng(&f, u8(&f) % 8 ? 0 : -1, 2), c = sadd(maxkv, rng(&f, u8(&f) % 8 ? 0 : -1, 2));
        if (msel == 1) sh[0] = r, sh[1] = c, nd = 2;
        if (msel == 2) sh[0] = u8(&f) % 2 ? Bt : 1, sh[1] = r, sh[2] = c, nd = 3;
        if (msel == 3) sh[0] = u8(&f) % 2 ? Bt : 1, sh[1] = 1, sh[2] = r, sh[3] = c, nd = 4;
        if (msel == 4) sh[0] = Bt, sh[1] = c, nd = 2;
        static const fia_dtype mdts[3] = {FIA_DTYPE_BOOL, FIA_DTYPE_INT8, FIA_DTYPE_UINT8};
        build(&f, &mask, mdts[u8(&f) % 3], nd, sh);
    } else if (msel >= 5 && msel <= 7) { /* compressed forms: the shared buffer */
        fia_tensor_init(&mask.t, g_cmask, FIA_DTYPE_BOOL, (int32_t)(msel - 3),
                        (const int64_t[]){1, 1, 2048, 2048} + (7 - msel), NULL);
    }
    if (quant || u8(&f) % 32 == 0) {
        const uint8_t a = u8(&f) % 6;
        p.antiquant_mode = amode % 16 ? (a >= 4) : amode % 32 ? !(a >= 4) : (int32_t)interesting(&f, 3);
        const int64_t s2s = sadd(maxkv, rng(&f, u8(&f) % 8 ? 0 : -1, 2));
        switch (a) {
        case 0: sh[0] = 2, nd = 1; break;
        case 1: sh[0] = 2, sh[1] = N2, sh[2] = 1, sh[3] = D, nd = 4; break;
        case 2: sh[0] = 2, sh[1] = N2, sh[2] = D, nd = 3; break;
        case 3: sh[0] = 2, sh[1] = smul(N2, D), nd = 2; break;
        default: sh[0] = 2, sh[1] = Bt, sh[2] = s2s, nd = 3; break;
        }
        static const fia_dtype adts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
        const fia_dtype adt = adts[u8(&f) % 3];
        if (u8(&f) % 32) build(&f, &aqs, adt, nd, sh);
        if (u8(&f) % 2) build(&f, &aqo, adt, nd, sh);
    }
    if (p.softmax_lse_flag || u8(&f) % 8 == 0) {
        if (tnd) sh[0] = T1, sh[1] = N1, sh[2] = 1, nd = 3;
        else sh[0] = B, sh[1] = N1, sh[2] = S1, sh[3] = 1, nd = 4;
        if (u8(&f) % 32) build(&f, &lse, FIA_DTYPE_FLOAT32, nd, sh);
    }

    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    t.query = &q.t, t.key = &k.t, t.value = &v.t, t.attention_out = &out.t;
    t.atten_mask = mask.t.data ? &mask.t : NULL;
    t.block_table = paged ? &bt.t : NULL;
    t.antiquant_scale = aqs.t.data ? &aqs.t : NULL;
    t.antiquant_offset = aqo.t.data ? &aqo.t : NULL;
    t.softmax_lse = lse.t.data ? &lse.t : NULL;
    const uint8_t nsel = u8(&f);
    if (nsel == 1) t.query = NULL;
    if (nsel == 2) t.key = NULL;
    if (nsel == 3) t.query_rope = &q.t;

    fia_plan *plan = NULL;
    size_t ws = 0;
    if (fia_fused_infer_attention_score_plan(ctx, &t, &p, &plan, &ws) == FIA_STATUS_SUCCESS) {
        if (fia_plan_workspace_size(plan) != ws) abort();
        g_planned++;
        int oversize = q.oversize || k.oversize || v.oversize || out.oversize || lse.oversize || mask.oversize ||
                       aqs.oversize || aqo.oversize;
        /* work bound: query elements x the longest kv the tensors allow */
        const int64_t qn = fia_tensor_numel(&q.t), on = fia_tensor_numel(&out.t);
        int64_t kv_bound = paged ? smul(max_blocks, bs) : 0;
        for (int32_t i = 0; !paged && i < k.t.ndim; i++) kv_bound = k.t.shape[i] > kv_bound ? k.t.shape[i] : kv_bound;
        int64_t work;
        if (__builtin_add_overflow(qn, on, &work) || __builtin_mul_overflow(work, kv_bound, &work)) work = INT64_MAX;
        if (!oversize && work <= MAX_WORK && ws <= MAX_WORKSPACE) {
            void *w = malloc(ws ? ws : 1);
            if (w) {
                if (ws > 0 && fia_plan_execute(plan, w, ws - 1) != FIA_STATUS_WORKSPACE_TOO_SMALL) abort();
                if (fia_plan_execute(plan, w, ws) != FIA_STATUS_SUCCESS) abort();
                g_executed++;
                free(w);
            }
        }
        fia_plan_destroy(plan);
    }

done:
    free(q.buf), free(k.buf), free(v.buf), free(out.buf), free(lse.buf), free(mask.buf), free(bt.buf);
    free(aqs.buf), free(aqo.buf), free(ql), free(kvl);
    return 0;
}
