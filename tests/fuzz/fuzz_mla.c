/*
 * fuzz_mla.c - libFuzzer target for the MLA path of fia_fused_infer_attention_score_plan (query_rope
 * and key_rope given) and fia_plan_execute.
 *
 * The input bytes choose a layout (BSND, BSH, BNSD, TND, TND_NTD, sometimes a layout MLA rejects),
 * the cache form (dense in the query's layout, PA_BSND 4-D / 3-D, PA_NZ 5-D), the dtypes (float
 * form: query and ropes fp16 / bf16 / fp32, the cache its own float dtype; int8 form: int8 query and
 * cache, fp16 / bf16 ropes and output, dequant_scale_query / _key / _value), the head count (1..16),
 * batch 1..3, query lengths 1..8 (decode S1 = 1 often), kv lengths up to ~70 (paged: up to
 * columns x block_size), block_size (16 / 32, sometimes anything), the block table contents (ids
 * out of range, -1), sparse_mode (0 / 3, sometimes anything), a compressed mask, mla_rescale,
 * scale, softmax_lse, value as the key tensor or a copy. Half of the inputs are "clean" (every
 * tensor consistent, only padded outer strides); the other half also get targeted corruptions:
 * carved dtypes, ranks, dims and strides, wrong length counts, decreasing cumulative lengths,
 * NULL tensors, antiquant tensors, dequant scales on the float form, non-finite scale.
 *
 * Every buffer is allocated at exactly the extent its shape and strides reach, so ASan reports any
 * read or write outside a tensor. On plan success: the reported workspace size must match
 * fia_plan_workspace_size, the outputs must be untouched by the plan, an execute with one byte too
 * few must return FIA_STATUS_WORKSPACE_TOO_SMALL without writing, an execute with a workspace of
 * exactly the reported size (filled with garbage) must succeed, the output must be finite (lse
 * not NaN) where every input is finite and the scale moderate, and a second execute with other
 * workspace garbage must give bitwise the same outputs. On failure: a known status, a non-empty
 * fia_last_error(), *plan / *workspace_bytes and every output byte untouched.
 * Tensors past 4 MiB get a small dummy buffer and are planned only (contents are read at execute
 * time; the block table must be real, so an oversized one skips the input).
 * FIA_FUZZ_STATS=1 prints counters at exit (and the first rejections of clean inputs).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fuzz/fuzz_tensors.h"

#define MAX_WORKSPACE ((size_t)256 << 20)
#define MAX_WORK ((int64_t)1 << 17) /* query rows (positions x heads) x keys per execute */

enum { DN = 512, DR = 64 };


/* Query-side shape of width w for layout l (TND / TND_NTD and unknown layouts: [T, N, w]). */
static int32_t q_shape(fia_layout l, int64_t B, int64_t S, int64_t N, int64_t w, int64_t *sh) {
    switch (l) {
    case FIA_LAYOUT_BSH: sh[0] = B, sh[1] = S, sh[2] = smul(N, w); return 3;
    case FIA_LAYOUT_BSND:
    case FIA_LAYOUT_BNSD_BSND: sh[0] = B, sh[1] = S, sh[2] = N, sh[3] = w; return 4;
    case FIA_LAYOUT_BNSD: sh[0] = B, sh[1] = N, sh[2] = S, sh[3] = w; return 4;
    default: sh[0] = S, sh[1] = N, sh[2] = w; return 3;
    }
}

/* ---- the target -------------------------------------------------------------------------------- */

static long g_runs, g_planned, g_executed, g_clean, g_clean_planned, g_reported;
static long g_status[8];

static void print_stats(void) {
    fprintf(stderr,
            "fuzz_mla: %ld inputs (%ld clean, %ld of them planned), %ld planned, %ld executed; "
            "status counts:", g_runs, g_clean, g_clean_planned, g_planned, g_executed);
    for (int i = 0; i < 8; i++) fprintf(stderr, " %ld", g_status[i]);
    fprintf(stderr, "\n");
}

static uint8_t g_cmask[2048 * 2048]; /* the compressed mask triu(ones, 1) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fia_context *ctx;
    static int stats;
    if (!ctx) {
        for (int64_t i = 0; i < 2048; i++)
            for (int64_t j = 0; j < 2048; j++) g_cmask[i * 2048 + j] = j > i;
        fz_init_tables();
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) abort();
        stats = getenv("FIA_FUZZ_STATS") != NULL;
        g_verbose = getenv("FIA_FUZZ_VERBOSE") != NULL;
        if (stats) atexit(print_stats);
    }
    g_runs++;
    fz f = {data, size};
    fz_seed(data, size);
    g_corrupt = u8(&f) & 1;
    g_clean += !g_corrupt;

    /* ---- parameters ---- */
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    static const fia_layout layouts[5] = {FIA_LAYOUT_BSND, FIA_LAYOUT_BSH, FIA_LAYOUT_BNSD,
                                          FIA_LAYOUT_TND, FIA_LAYOUT_TND_NTD};
    static const fia_layout bad_layouts[5] = {FIA_LAYOUT_BNSD_BSND, FIA_LAYOUT_NTD,
                                              FIA_LAYOUT_PA_BSND, (fia_layout)42, (fia_layout)-1};
    fia_layout layout = layouts[u8(&f) % 5];
    if (rare(&f, 24)) layout = bad_layouts[u8(&f) % 5];
    p.input_layout = layout;
    const int tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_TND_NTD;
    static const int64_t heads[8] = {1, 2, 3, 4, 5, 8, 16, 16};
    const uint8_t hs = u8(&f);
    const int64_t N = hs < 192 ? heads[hs % 8] : rng(&f, 1, 16);
    p.num_heads = rare(&f, 32) ? (u8(&f) % 2 ? 129 : interesting(&f, 20)) : N;
    p.num_key_value_heads = u8(&f) % 2;
    if (rare(&f, 32)) p.num_key_value_heads = u8(&f) % 2 ? 2 : interesting(&f, 4);
    /* 1 in 16: a long kv (> 1024 keys: split-KV chunks merged in order), one batch */
    const int longkv = u8(&f) % 16 == 0;
    const int64_t B = longkv ? 1 : rng(&f, 1, 3);
    const int quant = u8(&f) % 4 == 0;
    static const fia_dtype fdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    static const fia_dtype hdts[2] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    fia_dtype qdt, cdt, qrdt, krdt, odt;
    if (quant) {
        qdt = cdt = FIA_DTYPE_INT8;
        qrdt = hdts[u8(&f) % 2], krdt = hdts[u8(&f) % 2], odt = hdts[u8(&f) % 2];
    } else {
        qdt = fdts[u8(&f) % 3];
        cdt = u8(&f) % 2 ? qdt : fdts[u8(&f) % 3];
        qrdt = odt = qdt, krdt = cdt;
    }
    const int cache = u8(&f) % 4; /* 0 dense, 1 PA_BSND 4-D, 2 PA_BSND 3-D, 3 PA_NZ */
    const int paged = cache != 0;
    int64_t bs = u8(&f) % 2 ? 16 : 32;
    if (rare(&f, 16)) {
        static const int64_t odd[8] = {48, 64, 8, 0, 17, 1024, 2048, -16};
        bs = u8(&f) % 4 ? odd[u8(&f) % 8] : interesting(&f, 100);
    }
    const int64_t bsd = bs >= 1 && bs <= 64 ? bs : 16; /* the cache's block dim when bs is odd */
    p.block_size = paged ? bs : (rare(&f, 8) ? interesting(&f, 64) : 0);
    const int64_t cols = rare(&f, 32) ? 0 : longkv ? rng(&f, 1025 / bsd + 1, 1400 / bsd + 1) : rng(&f, 1, 5);
    const int64_t blocks = rare(&f, 32) ? 0 : rng(&f, 1, 12);
    const int64_t S1 = u8(&f) % 5 < 2 ? 1 : rng(&f, 1, 8);
    const int64_t S2 = longkv ? rng(&f, 1000, 1400) : rng(&f, 0, 70);
    const uint8_t ssel = u8(&f) % 16;
    p.scale = ssel < 10 ? 1.0 / 24.0 : ssel == 10 ? 0.0 : ssel == 11 ? -0.3 : ssel == 12 ? 1.0
              : ssel == 13 ? 100.0 : ssel == 14 ? 1000.0 : 1e-3;
    if (rare(&f, 32)) p.scale = u8(&f) % 2 ? NAN : INFINITY;
    const int moderate_scale = fabs(p.scale) <= 1000.0;
    p.sparse_mode = u8(&f) % 2 ? 3 : 0;
    if (rare(&f, 24)) p.sparse_mode = (int32_t)rng(&f, -1, 10);
    p.mla_rescale = (int32_t)(u8(&f) % 3);
    if (rare(&f, 32)) p.mla_rescale = u8(&f) % 2 ? 3 : -1;
    p.softmax_lse_flag = u8(&f) % 4 == 0;
    if (rare(&f, 16)) p.pre_tokens = interesting(&f, 70), p.next_tokens = interesting(&f, 70);
    p.inner_precise = u8(&f) % 2;

    /* ---- lengths ---- */
    int64_t qcount = 0, kvcount = 0, T1 = S1, T2 = S2;
    int64_t *ql = gen_lengths(&f, B, tnd ? 6 : S1, tnd, !tnd, &qcount);
    int64_t *kvl = gen_lengths(&f, B, paged ? cols * bsd : tnd ? (longkv ? 1400 : 40) : S2, tnd && !paged,
                               !tnd && !paged, &kvcount);
    p.actual_seq_lengths = ql, p.actual_seq_lengths_count = qcount;
    p.actual_seq_lengths_kv = kvl, p.actual_seq_lengths_kv_count = kvcount;
    if (tnd) {
        T1 = tnd_rows(&f, ql, qcount, 64, 4, 2);
        T2 = tnd_rows(&f, kvl, kvcount, 1400, 16, 3);
    }
    const int64_t Bq = tnd ? 0 : B; /* batch dim of query-side tensors */

    /* ---- tensors ---- */
    ftensor q, qr, k, kr, v, out, lse, bt, sq, sk, sv, aq, fmask;
    memset(&fmask, 0, sizeof fmask);
    memset(&v, 0, sizeof v), memset(&lse, 0, sizeof lse), memset(&bt, 0, sizeof bt);
    memset(&sq, 0, sizeof sq), memset(&sk, 0, sizeof sk), memset(&sv, 0, sizeof sv);
    memset(&aq, 0, sizeof aq);
    int64_t sh[FIA_MAX_DIMS];
    int32_t nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DN, sh);
    build(&f, &q, qdt, nd, sh, quant ? FILL_BYTES : FILL_FLOAT);
    if (quant) q.finite = 1; /* int8 */
    nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DR, sh);
    build(&f, &qr, qrdt, nd, sh, FILL_FLOAT);
    if (layout == FIA_LAYOUT_TND_NTD) sh[0] = N, sh[1] = T1, sh[2] = DN, nd = 3;
    else nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DN, sh);
    build(&f, &out, odt, nd, sh, FILL_OUT);
    for (int side = 0; side < 2; side++) {
        const int64_t w = side ? DR : DN;
        const fia_dtype dt = side ? krdt : cdt;
        switch (cache) {
        case 0: nd = q_shape(layout, Bq, tnd ? T2 : S2, 1, w, sh); break;
        case 1: sh[0] = blocks, sh[1] = bsd, sh[2] = 1, sh[3] = w, nd = 4; break;
        case 2: sh[0] = blocks, sh[1] = bsd, sh[2] = w, nd = 3; break;
        default: {
            const int64_t cw = 32 / (int64_t)fia_dtype_size(dt);
            sh[0] = blocks, sh[1] = 1, sh[2] = w / cw, sh[3] = bsd, sh[4] = cw, nd = 5;
        }
        }
        build(&f, side ? &kr : &k, dt, nd, sh,
              (quant && !side ? FILL_BYTES : FILL_FLOAT) | (cache == 3 ? KEEP2 : 0));
        if (quant && !side) k.finite = 1;
    }
    const uint8_t vsel = u8(&f) % 8;
    const fia_tensor *value = &k.t;
    if (vsel >= 6) { /* a separate value tensor of the key's shape */
        build(&f, &v, k.t.dtype, k.t.ndim, k.t.shape,
              (quant ? FILL_BYTES : FILL_FLOAT) | (cache == 3 ? KEEP2 : 0));
        if (quant) v.finite = 1;
        value = &v.t;
    }
    if (paged) {
        sh[0] = B, sh[1] = cols;
        if (rare(&f, 32)) sh[0] = B + rng(&f, -1, 1);
        build(&f, &bt, FIA_DTYPE_INT32, 2, sh, FILL_BYTES);
        if (bt.oversize) goto done; /* read at plan time: must be real */
        if (bt.t.dtype == FIA_DTYPE_INT32) { /* mostly valid ids; some -1, out of range */
            int32_t *ids = bt.buf;
            for (size_t i = 0; (i + 1) * 4 <= bt.bytes; i++) {
                ids[i] = (int32_t)(blocks > 0 ? rng(&f, 0, blocks - 1) : 0);
                if (rare(&f, 48)) {
                    const uint8_t c = u8(&f) % 4;
                    ids[i] = c == 0 ? -1 : c == 1 ? (int32_t)blocks : (int32_t)interesting(&f, blocks + 2);
                }
            }
        }
    }
    if (p.softmax_lse_flag || rare(&f, 16)) {
        if (tnd) sh[0] = T1, sh[1] = N, sh[2] = 1, nd = 3;
        else sh[0] = B, sh[1] = N, sh[2] = S1, sh[3] = 1, nd = 4;
        if (!rare(&f, 32)) build(&f, &lse, FIA_DTYPE_FLOAT32, nd, sh, FILL_OUT);
    }
    if (quant || rare(&f, 16)) {
        if (tnd) sh[0] = T1, sh[1] = N, sh[2] = 1, nd = u8(&f) % 2 ? 3 : 2;
        else sh[0] = B, sh[1] = S1, sh[2] = N, sh[3] = 1, nd = u8(&f) % 2 ? 4 : 3;
        if (!rare(&f, 32)) build(&f, &sq, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
        sh[0] = sh[1] = 1;
        nd = u8(&f) % 3;
        if (!rare(&f, 32)) build(&f, &sk, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
        if (!rare(&f, 32)) build(&f, &sv, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
    }
    if (rare(&f, 32)) { /* antiquant: not with MLA */
        sh[0] = 2;
        build(&f, &aq, FIA_DTYPE_FLOAT32, 1, sh, FILL_FLOAT);
    }
    /* the compressed mask (sparse_mode 3); rarely with mode 0 or a full mask */
    fia_tensor mask;
    const fia_tensor *maskp = NULL;
    const uint8_t msel = u8(&f) % 4;
    if (p.sparse_mode == 3 && msel != 0) {
        fia_tensor_init(&mask, g_cmask, FIA_DTYPE_BOOL, msel + 1,
                        (const int64_t[]){1, 1, 2048, 2048} + (3 - msel), NULL);
        maskp = &mask;
    }
    if (rare(&f, 24)) {
        sh[0] = tnd ? T1 : S1, sh[1] = paged ? cols * bsd : tnd ? T2 : S2;
        build(&f, &fmask, FIA_DTYPE_BOOL, 2, sh, FILL_BYTES);
        maskp = &fmask.t;
    }

    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    t.query = &q.t, t.query_rope = &qr.t, t.key = &k.t, t.key_rope = &kr.t, t.value = value;
    t.attention_out = &out.t;
    t.atten_mask = maskp;
    t.block_table = paged ? &bt.t : NULL;
    t.softmax_lse = lse.buf || lse.oversize ? &lse.t : NULL;
    t.dequant_scale_query = sq.buf || sq.oversize ? &sq.t : NULL;
    t.dequant_scale_key = sk.buf || sk.oversize ? &sk.t : NULL;
    t.dequant_scale_value = sv.buf || sv.oversize ? &sv.t : NULL;
    t.antiquant_scale = aq.buf ? &aq.t : NULL;
    if (rare(&f, 16)) {
        switch (u8(&f) % 7) {
        case 0: t.query = NULL; break;
        case 1: t.query_rope = NULL; break;
        case 2: t.key = NULL; break;
        case 3: t.key_rope = NULL; break;
        case 4: t.value = NULL; break;
        case 5: t.attention_out = NULL; break;
        default: t.block_table = paged ? NULL : t.block_table; break;
        }
    }

    if (g_verbose) {
        fprintf(stderr, "fuzz_mla: layout %s num_heads %lld num_key_value_heads %lld scale %g sparse_mode %d "
                "block_size %lld mla_rescale %d softmax_lse_flag %d pre/next %lld/%lld\n",
                fia_layout_name(p.input_layout), (long long)p.num_heads, (long long)p.num_key_value_heads,
                p.scale, (int)p.sparse_mode, (long long)p.block_size, (int)p.mla_rescale,
                (int)p.softmax_lse_flag, (long long)p.pre_tokens, (long long)p.next_tokens);
        describe("query", t.query, &q), describe("query_rope", t.query_rope, &qr);
        describe("key", t.key, &k), describe("key_rope", t.key_rope, &kr);
        describe(t.value == t.key && t.value ? "value (= key)" : "value", t.value, &v);
        describe("attention_out", t.attention_out, &out), describe("softmax_lse", t.softmax_lse, &lse);
        describe("atten_mask", t.atten_mask, maskp == &fmask.t ? &fmask : NULL);
        describe("block_table", t.block_table, &bt);
        if (t.block_table && bt.buf && bt.t.dtype == FIA_DTYPE_INT32) {
            fprintf(stderr, "  block_table ids:");
            for (size_t i = 0; i * 4 < bt.bytes && i < 64; i++) fprintf(stderr, " %d", ((int32_t *)bt.buf)[i]);
            fprintf(stderr, "\n");
        }
        describe("dequant_scale_query", t.dequant_scale_query, &sq);
        describe("dequant_scale_key", t.dequant_scale_key, &sk);
        describe("dequant_scale_value", t.dequant_scale_value, &sv);
        describe("antiquant_scale", t.antiquant_scale, &aq);
        describe_lengths("actual_seq_lengths", ql, qcount);
        describe_lengths("actual_seq_lengths_kv", kvl, kvcount);
    }
    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    fia_plan *plan = sentinel;
    size_t ws = 12345;
    const fia_status st = fia_fused_infer_attention_score_plan(ctx, &t, &p, &plan, &ws);
    g_status[st & 7]++;
    if (!untouched(&out) || !untouched(&lse)) {
        fprintf(stderr, "fuzz_mla: the plan (status %s) wrote an output\n", fia_status_string(st));
        abort();
    }
    if (st != FIA_STATUS_SUCCESS) {
        if (st != FIA_STATUS_INVALID_ARGUMENT && st != FIA_STATUS_UNSUPPORTED &&
            st != FIA_STATUS_OUT_OF_MEMORY) {
            fprintf(stderr, "fuzz_mla: plan returned %s: %s\n", fia_status_string(st), fia_last_error());
            abort();
        }
        if (!fia_last_error()[0]) {
            fprintf(stderr, "fuzz_mla: plan failed (%s) with an empty fia_last_error()\n",
                    fia_status_string(st));
            abort();
        }
        if (plan != sentinel || ws != 12345) {
            fprintf(stderr, "fuzz_mla: a failed plan wrote *plan or *workspace_bytes\n");
            abort();
        }
        if (stats && !g_corrupt && g_reported < 20) {
            g_reported++;
            fprintf(stderr, "fuzz_mla: clean input rejected: %s\n", fia_last_error());
        }
        goto done;
    }
    if (!plan || plan == sentinel || fia_plan_workspace_size(plan) != ws) {
        fprintf(stderr, "fuzz_mla: plan succeeded without a plan or with a wrong workspace size\n");
        abort();
    }
    g_planned++;
    g_clean_planned += !g_corrupt;
    {
        const int oversize = q.oversize || qr.oversize || k.oversize || kr.oversize || v.oversize ||
                             out.oversize || lse.oversize || sq.oversize || sk.oversize ||
                             sv.oversize;
        /* work bound from the planned shapes (dims may be carved): query rows (positions x
         * heads) x the most keys a row can see */
        const int64_t qrows = fia_tensor_numel(&q.t) / DN;
        const int64_t maxkv = paged ? smul(bt.t.shape[1], p.block_size) : fia_tensor_numel(&k.t) / DN;
        const int64_t work = smul(qrows, maxkv > 0 ? maxkv : 1);
        if (!oversize && work <= MAX_WORK && ws <= MAX_WORKSPACE) {
            uint8_t *w = malloc(ws ? ws : 1);
            if (!w) abort();
            memset(w, 0xa5, ws);
            if (ws > 0 && fia_plan_execute(plan, w, ws - 1) != FIA_STATUS_WORKSPACE_TOO_SMALL) {
                fprintf(stderr, "fuzz_mla: execute with %zu of %zu workspace bytes\n", ws - 1, ws);
                abort();
            }
            if (!untouched(&out) || !untouched(&lse)) {
                fprintf(stderr, "fuzz_mla: execute with a too small workspace wrote an output\n");
                abort();
            }
            fia_status es = fia_plan_execute(plan, w, ws);
            if (es != FIA_STATUS_SUCCESS) {
                fprintf(stderr, "fuzz_mla: execute returned %s: %s\n", fia_status_string(es),
                        fia_last_error());
                abort();
            }
            g_executed++;
            if (!p.softmax_lse_flag && !untouched(&lse)) {
                fprintf(stderr, "fuzz_mla: softmax_lse written with softmax_lse_flag 0\n");
                abort();
            }
            const int finite_in = q.finite && qr.finite && k.finite && kr.finite &&
                                  (value == &k.t || v.finite) && (!quant || (sq.finite && sk.finite && sv.finite));
            if (finite_in && moderate_scale && each_elem(&out.t, not_finite)) {
                fprintf(stderr, "fuzz_mla: non-finite output from finite inputs\n");
                abort();
            }
            if (finite_in && moderate_scale && lse.buf && p.softmax_lse_flag && each_elem(&lse.t, is_nan)) {
                fprintf(stderr, "fuzz_mla: NaN in softmax_lse from finite inputs\n");
                abort();
            }
            if (u8(&f) % 2 && no_alias(&out.t) && (!lse.buf || no_alias(&lse.t))) {
                /* again, other workspace garbage: bitwise the same outputs */
                void *o1 = malloc(out.bytes ? out.bytes : 1), *l1 = malloc(lse.bytes ? lse.bytes : 1);
                memcpy(o1, out.buf, out.bytes);
                if (lse.buf) memcpy(l1, lse.buf, lse.bytes);
                memset(w, 0x5b, ws);
                es = fia_plan_execute(plan, w, ws);
                if (es != FIA_STATUS_SUCCESS || memcmp(o1, out.buf, out.bytes) ||
                    (lse.buf && memcmp(l1, lse.buf, lse.bytes))) {
                    fprintf(stderr, "fuzz_mla: a second execute gave other outputs (%s)\n",
                            fia_status_string(es));
                    abort();
                }
                free(o1), free(l1);
            }
            free(w);
        }
    }
    fia_plan_destroy(plan);

done:
    release(&q), release(&qr), release(&k), release(&kr), release(&v), release(&out);
    release(&lse), release(&bt), release(&sq), release(&sk), release(&sv), release(&aq);
    release(&fmask);
    free(ql), free(kvl);
    return 0;
}
