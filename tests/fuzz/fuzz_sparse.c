/*
 * fuzz_sparse.c - libFuzzer target for the DeepSeek-V3.2 / GLM-5 DSA operators: a fuzz byte picks
 * fia_sparse_flash_attention_plan, fia_kv_quant_sparse_flash_attention_plan,
 * fia_lightning_indexer_plan or fia_quant_lightning_indexer_plan, each followed by fia_plan_execute.
 *
 * The input bytes build mostly valid calls from each operator's contract (fia.h) with small sizes
 * (heads up to 16 (indexer: 64), batch 1..3, query lengths 1..6, key lengths up to ~70 or columns x
 * block_size, head dims 512 + 64 / 656-byte C8 rows / indexer D 1..160): query and key layouts
 * (BSND, TND, PA_BSND), dtypes, lengths (per batch, broadcast, cumulative), block tables and
 * block sizes (powers of two and not), sparse_block_size, sparse_mode, scales, lse / values
 * outputs, value as NULL / the key view / a copy of it, padded outer strides and non-unit
 * innermost strides where the contract allows any strides. Half of the inputs are "clean"; the
 * other half also get targeted corruptions (carved dtypes, ranks, dims, strides, length counts,
 * decreasing cumulative lengths, bad block ids, NULL tensors, parameters out of range).
 *   sparse flash attention: the sparse_indices contents are untrusted input read at execute time
 *     and fully fuzz-controlled: any int32 (in range, -1 in the middle, < -1, INT32_MIN/MAX, huge,
 *     duplicates), with K up to a few hundred entries so rows split into several slices. C8 rows
 *     get 512 random int8, 64 bf16 rope values and 4 fp32 tile scales (sometimes raw bytes).
 *   lightning indexer: k from 1 to a few hundred (and out of range), sparse_mode, pre/next
 *     tokens, return_value; the quant form's scales are non-negative, and a quarter of the inputs
 *     plant a negative / NaN / -inf scale: where the call reads it (the last query row of batch 0
 *     or key token 0 of batch 0) a clean input must be rejected at plan time. Outputs are checked:
 *     ids -1 or in range, distinct, -1 only at the end; with sparse_values and finite inputs,
 *     -inf exactly at the -1 slots, values non-increasing, equal values by increasing id.
 *
 * Every buffer is allocated at exactly the extent its shape and strides reach, so ASan reports any
 * read or write outside a tensor. On plan success: the workspace size must match
 * fia_plan_workspace_size, the outputs must be untouched by the plan, an execute with one byte too
 * few must return FIA_STATUS_WORKSPACE_TOO_SMALL without writing, an execute with exactly the
 * reported size (filled with garbage) must succeed, attention outputs must be finite (lse not NaN)
 * where the inputs are finite and the scale moderate, unrequested outputs (lse / values) must stay
 * untouched, and half the time a second execute with other garbage must give bitwise the same
 * outputs. On failure: a known status, a non-empty fia_last_error(), *plan / *workspace_bytes and
 * every output byte untouched. Tensors past 4 MiB get a small dummy buffer and are planned only.
 * FIA_FUZZ_STATS=1 prints counters at exit; FIA_FUZZ_VERBOSE=1 describes each call.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fuzz/fuzz_tensors.h"

#define MAX_WORKSPACE ((size_t)256 << 20)

enum { DN = 512, DR = 64 };


/* ---- pieces shared by the operators ------------------------------------------------------------- */

/* The length of batch 0 the plan will use, or -1 when the lengths break the rules (the plan then
 * fails). full: the dim the lengths are bounded by. */
static int64_t len0(const int64_t *v, int64_t count, int64_t B, int64_t full, int cumulative,
                    int required) {
    if (cumulative) {
        if (!v || count != B) return -1;
        int64_t prev = 0;
        for (int64_t b = 0; b < B; b++) {
            if (v[b] < prev || v[b] > full) return -1;
            prev = v[b];
        }
        return v[0];
    }
    if (!v || count == 0) return required ? -1 : full;
    if (count < 0 || (count != 1 && count < B)) return -1;
    for (int64_t b = 0; b < B; b++) {
        const int64_t x = v[count == 1 ? 0 : b];
        if (x < 0 || x > full) return -1;
    }
    return v[0];
}

/* Address of element idx of x, or NULL when x has no real buffer or idx is outside its shape. */
static char *elem_ptr(const ftensor *x, int32_t nd, const int64_t *idx) {
    if (!x->buf || x->t.ndim != nd) return NULL;
    int64_t off = 0;
    for (int32_t i = 0; i < nd; i++) {
        if (idx[i] < 0 || idx[i] >= x->t.shape[i]) return NULL;
        off += idx[i] * x->t.strides[i];
    }
    return (char *)x->t.data + off * (int64_t)fia_dtype_size(x->t.dtype);
}

static int make_abs(char *p, fia_dtype dt) {
    store_float(p, dt, fabsf(load_float(p, dt)));
    return 0;
}

/* The block table: [B, cols] int32 of mostly valid ids (on corrupted inputs: -1, out of range). */
static int build_block_table(fz *f, ftensor *bt, int64_t B, int64_t cols, int64_t blocks) {
    int64_t sh[2] = {B, cols};
    if (rare(f, 32)) sh[0] = B + rng(f, -1, 1);
    build(f, bt, FIA_DTYPE_INT32, 2, sh, FILL_BYTES);
    if (bt->oversize) return 0; /* read at plan time: must be real */
    if (bt->t.dtype == FIA_DTYPE_INT32) {
        int32_t *ids = bt->buf;
        for (size_t i = 0; (i + 1) * 4 <= bt->bytes; i++) {
            ids[i] = (int32_t)(blocks > 0 ? rng(f, 0, blocks - 1) : 0);
            if (rare(f, 48)) {
                const uint8_t c = u8(f) % 4;
                ids[i] = c == 0 ? -1 : c == 1 ? (int32_t)blocks : (int32_t)interesting(f, blocks + 2);
            }
        }
    }
    return 1;
}

static void describe_block_table(const ftensor *bt) {
    if (!g_verbose || !bt->buf || bt->t.dtype != FIA_DTYPE_INT32) return;
    fprintf(stderr, "  block_table ids:");
    for (size_t i = 0; (i + 1) * 4 <= bt->bytes && i < 64; i++) fprintf(stderr, " %d", ((int32_t *)bt->buf)[i]);
    fprintf(stderr, "\n");
}

static long g_runs, g_planned[4], g_executed[4], g_inputs[4], g_clean, g_clean_planned, g_reported;
static long g_status[8];
static const char *const g_op_names[4] = {"sparse_flash_attention", "kv_quant_sparse_flash_attention",
                                          "lightning_indexer", "quant_lightning_indexer"};

static void print_stats(void) {
    fprintf(stderr, "fuzz_sparse: %ld inputs (%ld clean, %ld of them planned); status counts:", g_runs,
            g_clean, g_clean_planned);
    for (int i = 0; i < 8; i++) fprintf(stderr, " %ld", g_status[i]);
    fprintf(stderr, "\n");
    for (int i = 0; i < 4; i++)
        fprintf(stderr, "  %-32s %ld inputs, %ld planned, %ld executed\n", g_op_names[i], g_inputs[i],
                g_planned[i], g_executed[i]);
}

static int g_stats, g_op;

#define FAIL(...)                                                                                 \
    do {                                                                                          \
        fprintf(stderr, "fuzz_sparse (%s): ", g_op_names[g_op]);                                  \
        fprintf(stderr, __VA_ARGS__);                                                             \
        fprintf(stderr, "\n");                                                                    \
        abort();                                                                                  \
    } while (0)

/* Checks a plan call's outcome: on failure a known status, a message, *plan / *workspace_bytes and
 * the outputs untouched; on success a plan and the matching workspace size. Returns whether it
 * succeeded. */
static int check_plan(fia_status st, fia_plan *plan, fia_plan *sentinel, size_t ws, ftensor *const *outs,
                      int nouts) {
    g_status[st & 7]++;
    for (int i = 0; i < nouts; i++)
        if (!untouched(outs[i])) FAIL("the plan (status %s) wrote output %d", fia_status_string(st), i);
    if (st != FIA_STATUS_SUCCESS) {
        if (st != FIA_STATUS_INVALID_ARGUMENT && st != FIA_STATUS_UNSUPPORTED && st != FIA_STATUS_OUT_OF_MEMORY)
            FAIL("plan returned %s: %s", fia_status_string(st), fia_last_error());
        if (!fia_last_error()[0]) FAIL("plan failed (%s) with an empty fia_last_error()", fia_status_string(st));
        if (plan != sentinel || ws != 12345) FAIL("a failed plan wrote *plan or *workspace_bytes");
        if (g_stats && !g_corrupt && g_reported < 20) {
            g_reported++;
            fprintf(stderr, "fuzz_sparse (%s): clean input rejected: %s\n", g_op_names[g_op], fia_last_error());
        }
        return 0;
    }
    if (!plan || plan == sentinel || fia_plan_workspace_size(plan) != ws)
        FAIL("plan succeeded without a plan or with a wrong workspace size");
    g_planned[g_op]++;
    g_clean_planned += !g_corrupt;
    return 1;
}

/* Executes a plan: one byte too few (nothing written), then exactly ws bytes of garbage. */
static void execute(fia_plan *plan, size_t ws, uint8_t *w, ftensor *const *outs, int nouts) {
    memset(w, 0xa5, ws);
    if (ws > 0 && fia_plan_execute(plan, w, ws - 1) != FIA_STATUS_WORKSPACE_TOO_SMALL)
        FAIL("execute with %zu of %zu workspace bytes did not return WORKSPACE_TOO_SMALL", ws - 1, ws);
    for (int i = 0; i < nouts; i++)
        if (!untouched(outs[i])) FAIL("execute with a too small workspace wrote output %d", i);
    const fia_status es = fia_plan_execute(plan, w, ws);
    if (es != FIA_STATUS_SUCCESS) FAIL("execute returned %s: %s", fia_status_string(es), fia_last_error());
    g_executed[g_op]++;
}

/* Executes again with other workspace garbage: the outputs must be bitwise the same. */
static void execute_again(fia_plan *plan, size_t ws, uint8_t *w, ftensor *const *outs, int nouts) {
    void *copy[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < nouts; i++) {
        if (!outs[i]->buf || !no_alias(&outs[i]->t)) goto out;
        copy[i] = malloc(outs[i]->bytes ? outs[i]->bytes : 1);
        memcpy(copy[i], outs[i]->buf, outs[i]->bytes);
    }
    memset(w, 0x5b, ws);
    const fia_status es = fia_plan_execute(plan, w, ws);
    if (es != FIA_STATUS_SUCCESS) FAIL("a second execute returned %s", fia_status_string(es));
    for (int i = 0; i < nouts; i++)
        if (memcmp(copy[i], outs[i]->buf, outs[i]->bytes)) FAIL("a second execute changed output %d", i);
out:
    for (int i = 0; i < nouts; i++) free(copy[i]);
}

/* ---- sparse_flash_attention / kv_quant_sparse_flash_attention ------------------------------------ */

/* C8 rows: bytes [512, 640) 64 bf16 rope values, [640, 656) 4 fp32 tile scales (the latent
 * bytes stay random int8). */
static int c8_row(char *row, fia_dtype dt) {
    (void)dt;
    for (int i = 0; i < 64; i++) {
        const uint16_t h = fia_f32_to_bf16(small_float());
        memcpy(row + 512 + 2 * i, &h, 2);
    }
    for (int i = 0; i < 4; i++) {
        const float s = (float)(next_rand() % 1000 + 1) / 10000.0f;
        memcpy(row + 640 + 4 * i, &s, 4);
    }
    return 0;
}

/* Fills a C8 cache row by row; returns whether it has the row format (else it stays raw). */
static int fill_c8(ftensor *k) {
    const fia_tensor *t = &k->t;
    if (!k->buf || t->dtype != FIA_DTYPE_INT8 || t->ndim < 1 || t->shape[t->ndim - 1] != 656 ||
        t->strides[t->ndim - 1] != 1 || !no_alias(t)) /* overlapping rows would mix the fields */
        return 0;
    fia_tensor rows = *t; /* one element per row */
    rows.ndim--;
    each_elem(&rows, c8_row);
    return 1;
}

/* Index entries: any int32, mostly in range [0, hi] (hi = the first block past the cache). */
static void fill_indices(fz *f, ftensor *x, int64_t hi) {
    if (!x->buf || x->t.dtype != FIA_DTYPE_INT32) return;
    int32_t *v = x->buf;
    for (size_t i = 0; (i + 1) * 4 <= x->bytes; i++) {
        const uint8_t c = u8(f) % 32;
        int64_t e;
        if (c < 20) e = rng(f, 0, hi);
        else if (c < 23) e = -1;
        else if (c < 25) e = i ? v[i - 1] : 0; /* duplicates */
        else if (c == 25) e = rng(f, -5, -2);
        else if (c == 26) e = INT32_MIN;
        else if (c == 27) e = INT32_MAX;
        else if (c == 28) e = (int32_t)un(f, 4);
        else if (c == 29) e = hi + rng(f, 0, 100);
        else if (c == 30) e = (int64_t)1 << (20 + u8(f) % 11);
        else e = rng(f, 0, hi > 2 ? hi / 2 : hi);
        v[i] = (int32_t)e;
    }
}

static void run_sfa(fia_context *ctx, fz *f, int c8) {
    fia_kv_quant_sparse_flash_attention_params kp;
    fia_kv_quant_sparse_flash_attention_params_init(&kp);
    fia_sparse_flash_attention_params *p = &kp.base;
    if (!c8) fia_sparse_flash_attention_params_init(p);
    if (c8 && rare(f, 16)) {
        switch (u8(f) % 5) {
        case 0: kp.key_quant_mode = (int32_t)rng(f, -1, 3); break;
        case 1: kp.value_quant_mode = (int32_t)rng(f, -1, 3); break;
        case 2: kp.quant_scale_repo_mode = (int32_t)rng(f, -1, 3); break;
        case 3: kp.tile_size = u8(f) % 2 ? 64 : interesting(f, 256); break;
        default: kp.rope_head_dim = u8(f) % 2 ? 128 : interesting(f, 128); break;
        }
    }
    static const fia_layout bad[4] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BNSD, FIA_LAYOUT_PA_NZ, (fia_layout)42};
    p->layout_query = u8(f) % 2 ? FIA_LAYOUT_BSND : FIA_LAYOUT_TND;
    if (rare(f, 32)) p->layout_query = u8(f) % 2 ? FIA_LAYOUT_PA_BSND : bad[u8(f) % 4];
    static const fia_layout kvl3[3] = {FIA_LAYOUT_BSND, FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND};
    p->layout_kv = kvl3[u8(f) % 3];
    if (rare(f, 32)) p->layout_kv = bad[u8(f) % 4];
    const int qtnd = p->layout_query == FIA_LAYOUT_TND, ktnd = p->layout_kv == FIA_LAYOUT_TND;
    const int paged = p->layout_kv == FIA_LAYOUT_PA_BSND;
    static const int64_t heads[8] = {1, 2, 3, 4, 8, 16, 16, 5};
    int64_t N1 = heads[u8(f) % 8];
    if (rare(f, 32)) N1 = u8(f) % 2 ? 129 : 0;
    const int longkv = u8(f) % 16 == 0; /* 1 in 16: one batch with a long kv */
    const int64_t B = longkv ? 1 : rng(f, 1, 3);
    const int64_t S1 = u8(f) % 3 == 0 ? 1 : rng(f, 1, 6), S2 = longkv ? rng(f, 1000, 3000) : rng(f, 0, 70);
    static const int64_t sbss[8] = {1, 1, 2, 4, 8, 16, 1, 4};
    int64_t sbs = sbss[u8(f) % 8];
    if (u8(f) % 16 == 0) sbs = u8(f) % 2 ? 64 : 128;
    if (rare(f, 24)) sbs = u8(f) % 2 ? 3 : interesting(f, 300);
    p->sparse_block_size = sbs;
    const int64_t sbs_ok = sbs >= 1 && sbs <= 128 ? sbs : 1;
    int64_t bs = u8(f) % 2 ? 16 : 32;
    if (bs % sbs_ok) bs = sbs_ok;
    if (u8(f) % 8 == 0) bs = sbs_ok * rng(f, 1, 5); /* incl. non-powers of two */
    if (rare(f, 24)) bs = u8(f) % 2 ? rng(f, 1, 40) : interesting(f, 1100);
    const int64_t bsd = bs >= 1 && bs <= 256 ? bs : 16; /* the cache's dim 1 for odd block sizes */
    const int64_t cols = rare(f, 32) ? 0 : longkv ? rng(f, 1000 / bsd + 1, 3000 / bsd + 1) : rng(f, 1, 5);
    const int64_t blocks = rare(f, 32) ? 0 : rng(f, 1, 12);
    fia_dtype qdt = u8(f) % 2 ? FIA_DTYPE_FLOAT16 : FIA_DTYPE_BFLOAT16;
    const uint8_t ssel = u8(f) % 16;
    p->scale_value = ssel < 10 ? 1.0 / 24.0 : ssel == 10 ? 0.0 : ssel == 11 ? -1.0 : ssel == 12 ? 10.0
                     : ssel == 13 ? 1000.0 : 1e-3;
    if (rare(f, 32)) p->scale_value = u8(f) % 2 ? NAN : -INFINITY;
    const int moderate_scale = fabs(p->scale_value) <= 1000.0;
    p->sparse_mode = u8(f) % 2 ? 3 : 0;
    if (rare(f, 24)) p->sparse_mode = (int32_t)rng(f, -1, 5);
    if (rare(f, 32)) p->attention_mode = (int32_t)rng(f, -1, 3);
    p->return_softmax_lse = u8(f) % 4 == 0;
    int64_t K = rng(f, 0, 48);
    if (u8(f) % 8 == 0) K = rng(f, 48, 700 / sbs_ok + 1);

    /* lengths */
    int64_t qcount = 0, kvcount = 0, T1 = S1, T2 = S2;
    int64_t *ql = gen_lengths(f, B, qtnd ? 6 : S1, qtnd, !qtnd, &qcount);
    int64_t *kvl = gen_lengths(f, B, paged ? cols * bsd : ktnd ? (longkv ? 3000 : 40) : S2, ktnd,
                               !ktnd && !paged, &kvcount);
    p->actual_seq_lengths_query = ql, p->actual_seq_lengths_query_count = qcount;
    p->actual_seq_lengths_kv = kvl, p->actual_seq_lengths_kv_count = kvcount;
    if (qtnd) T1 = tnd_rows(f, ql, qcount, 64, 4, 2);
    if (ktnd) T2 = tnd_rows(f, kvl, kvcount, 3000, 16, 3);
    const int64_t maxkv = paged ? cols * bsd : ktnd ? T2 : S2;

    /* tensors */
    ftensor q, qr, k, kr, v, idx, out, lse, bt;
    memset(&qr, 0, sizeof qr), memset(&kr, 0, sizeof kr), memset(&v, 0, sizeof v);
    memset(&lse, 0, sizeof lse), memset(&bt, 0, sizeof bt);
    fia_plan *plan = NULL;
    int64_t sh[FIA_MAX_DIMS];
    const int64_t qw = c8 ? 576 : DN, kw = c8 ? 656 : DN;
    int32_t nd;
#define QSHAPE(w)                                                                                     \
    (qtnd ? (sh[0] = T1, sh[1] = N1, sh[2] = (w), 3) : (sh[0] = B, sh[1] = S1, sh[2] = N1, sh[3] = (w), 4))
#define KSHAPE(w)                                                                                     \
    (paged ? (sh[0] = blocks, sh[1] = bsd, sh[2] = 1, sh[3] = (w), 4)                                 \
           : ktnd ? (sh[0] = T2, sh[1] = 1, sh[2] = (w), 3) : (sh[0] = B, sh[1] = S2, sh[2] = 1, sh[3] = (w), 4))
    nd = QSHAPE(qw);
    build(f, &q, rare(f, 32) ? FIA_DTYPE_FLOAT32 : qdt, nd, sh, FILL_FLOAT);
    if (!c8) {
        nd = QSHAPE(DR);
        build(f, &qr, qdt, nd, sh, FILL_FLOAT);
    }
    nd = QSHAPE(DN);
    build(f, &out, qdt, nd, sh, FILL_OUT);
    nd = KSHAPE(kw);
    build(f, &k, c8 ? FIA_DTYPE_INT8 : qdt, nd, sh, c8 ? FILL_BYTES : FILL_FLOAT);
    if (c8) k.finite = u8(f) % 8 ? fill_c8(&k) : 0;
    if (!c8) {
        nd = KSHAPE(DR);
        build(f, &kr, qdt, nd, sh, FILL_FLOAT);
    }
    /* value: NULL, the key tensor, a copy of its view; rarely another view */
    const uint8_t vsel = u8(f) % 8;
    fia_tensor vcopy = k.t;
    const fia_tensor *value = vsel < 3 ? NULL : vsel < 6 ? &k.t : &vcopy;
    if (rare(f, 24)) {
        if (u8(f) % 2) {
            build(f, &v, k.t.dtype, k.t.ndim, k.t.shape, c8 ? FILL_BYTES : FILL_FLOAT);
            value = &v.t;
        } else if (vcopy.ndim > 0) {
            vcopy.strides[0] = vcopy.strides[0] == 1 ? 2 : 1; /* the same data, another view */
        }
    }
    if (qtnd) sh[0] = T1, sh[1] = 1, sh[2] = K, nd = 3;
    else sh[0] = B, sh[1] = S1, sh[2] = 1, sh[3] = K, nd = 4;
    build(f, &idx, FIA_DTYPE_INT32, nd, sh, FILL_BYTES | INNER_ANY);
    fill_indices(f, &idx, (maxkv + sbs_ok - 1) / sbs_ok);
    const int give_bt = paged != rare(f, 32);
    if (give_bt && !build_block_table(f, &bt, B, cols, blocks)) goto done;
    if (p->return_softmax_lse || rare(f, 16)) {
        if (qtnd) sh[0] = T1, sh[1] = N1, sh[2] = 1, nd = 3;
        else sh[0] = B, sh[1] = N1, sh[2] = S1, sh[3] = 1, nd = 4;
        if (!rare(f, 32)) build(f, &lse, FIA_DTYPE_FLOAT32, nd, sh, FILL_OUT);
    }
#undef QSHAPE
#undef KSHAPE

    fia_sparse_flash_attention_tensors t;
    fia_kv_quant_sparse_flash_attention_tensors tq;
    memset(&t, 0, sizeof t), memset(&tq, 0, sizeof tq);
    t.query = tq.query = &q.t;
    t.query_rope = c8 ? NULL : &qr.t;
    t.key = tq.key = &k.t;
    t.key_rope = c8 ? NULL : &kr.t;
    t.value = tq.value = value;
    t.sparse_indices = tq.sparse_indices = &idx.t;
    t.block_table = tq.block_table = give_bt ? &bt.t : NULL;
    t.attention_out = tq.attention_out = &out.t;
    t.softmax_lse = tq.softmax_lse = lse.buf || lse.oversize ? &lse.t : NULL;
    if (rare(f, 16)) {
        switch (u8(f) % 5) {
        case 0: t.query = tq.query = NULL; break;
        case 1: t.key = tq.key = NULL; break;
        case 2: t.sparse_indices = tq.sparse_indices = NULL; break;
        case 3: t.attention_out = tq.attention_out = NULL; break;
        default: t.query_rope = NULL, t.key_rope = NULL; break;
        }
    }
    if (g_verbose) {
        fprintf(stderr, "fuzz_sparse: %s layout_query %s layout_kv %s scale_value %g sparse_block_size %lld "
                "sparse_mode %d attention_mode %d return_softmax_lse %d", g_op_names[g_op],
                fia_layout_name(p->layout_query), fia_layout_name(p->layout_kv), p->scale_value,
                (long long)p->sparse_block_size, (int)p->sparse_mode, (int)p->attention_mode,
                (int)p->return_softmax_lse);
        if (c8)
            fprintf(stderr, " quant modes %d/%d repo %d tile %lld rope %lld", (int)kp.key_quant_mode,
                    (int)kp.value_quant_mode, (int)kp.quant_scale_repo_mode, (long long)kp.tile_size,
                    (long long)kp.rope_head_dim);
        fprintf(stderr, "\n");
        describe("query", t.query, &q), describe("query_rope", t.query_rope, &qr);
        describe("key", t.key, &k), describe("key_rope", t.key_rope, &kr);
        describe(t.value == t.key && t.value ? "value (= key)" : "value", t.value, value == &v.t ? &v : NULL);
        describe("sparse_indices", t.sparse_indices, &idx);
        if (idx.buf && idx.t.dtype == FIA_DTYPE_INT32) {
            fprintf(stderr, "  sparse_indices data:");
            for (size_t i = 0; (i + 1) * 4 <= idx.bytes && i < 96; i++)
                fprintf(stderr, " %d", ((int32_t *)idx.buf)[i]);
            fprintf(stderr, "\n");
        }
        describe("block_table", t.block_table, &bt), describe_block_table(&bt);
        describe("attention_out", t.attention_out, &out), describe("softmax_lse", t.softmax_lse, &lse);
        describe_lengths("actual_seq_lengths_query", ql, qcount);
        describe_lengths("actual_seq_lengths_kv", kvl, kvcount);
    }

    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    plan = sentinel;
    size_t ws = 12345;
    const fia_status st = c8 ? fia_kv_quant_sparse_flash_attention_plan(ctx, &tq, &kp, &plan, &ws)
                             : fia_sparse_flash_attention_plan(ctx, &t, p, &plan, &ws);
    ftensor *const outs[2] = {&out, &lse};
    if (!check_plan(st, plan, sentinel, ws, outs, 2)) goto done;
    const int oversize = q.oversize || qr.oversize || k.oversize || kr.oversize || v.oversize ||
                         idx.oversize || out.oversize || lse.oversize;
    /* work bound from the planned shapes (dims may be carved): rows x heads x entries x the
     * tokens an entry can select (duplicates count as often as they appear) */
    const int64_t kv_act = paged ? smul(bt.t.shape[1], k.t.shape[1]) : k.t.shape[ktnd ? 0 : 1];
    const int64_t per = sbs_ok < kv_act ? sbs_ok : kv_act > 0 ? kv_act : 1;
    const int64_t work = smul(fia_tensor_numel(&q.t) / qw, smul(idx.t.shape[idx.t.ndim - 1], per));
    if (!oversize && work <= ((int64_t)1 << 18) && ws <= MAX_WORKSPACE) {
        uint8_t *w = malloc(ws ? ws : 1);
        if (!w) abort();
        execute(plan, ws, w, outs, 2);
        if (!p->return_softmax_lse && !untouched(&lse)) FAIL("softmax_lse written with return_softmax_lse 0");
        const int finite_in = q.finite && (c8 || qr.finite) && k.finite && (c8 || kr.finite);
        if (finite_in && moderate_scale && each_elem(&out.t, not_finite))
            FAIL("non-finite output from finite inputs");
        if (finite_in && moderate_scale && p->return_softmax_lse && lse.buf && each_elem(&lse.t, is_nan))
            FAIL("NaN in softmax_lse from finite inputs");
        if (u8(f) % 2) execute_again(plan, ws, w, outs, p->return_softmax_lse ? 2 : 1);
        free(w);
    }
    fia_plan_destroy(plan);
done:
    release(&q), release(&qr), release(&k), release(&kr), release(&v), release(&idx), release(&out);
    release(&lse), release(&bt);
    free(ql), free(kvl);
}

/* ---- lightning_indexer / quant_lightning_indexer ------------------------------------------------- */

/* Checks the selection of one output row: entries -1 or in [0, bound), distinct, -1 only after the
 * last key; with values (vals != NULL): -inf exactly at the -1 slots, finite and non-increasing
 * elsewhere, equal scores by increasing index. */
static void check_li_row(const fia_tensor *it, const fia_tensor *vt, const int64_t *pre, int32_t npre,
                         int64_t bound, int check_values) {
    int64_t off_i = 0, off_v = 0;
    for (int32_t d = 0; d < npre; d++) {
        off_i += pre[d] * it->strides[d];
        if (vt) off_v += pre[d] * vt->strides[d];
    }
    const int32_t last = it->ndim - 1;
    const int64_t kk = it->shape[last];
    int ended = 0;
    int32_t prev = -1;
    float prevv = 0.0f;
    static uint8_t seen[1 << 14];
    if (bound > (int64_t)sizeof seen) return;
    memset(seen, 0, (size_t)bound);
    for (int64_t j = 0; j < kk; j++) {
        int32_t id;
        memcpy(&id, (const char *)it->data + (off_i + j * it->strides[last]) * 4, 4);
        if (id == -1) {
            ended = 1;
        } else {
            if (id < 0 || id >= bound)
                FAIL("sparse_indices entry %lld is %d, outside [-1, %lld)", (long long)j, id, (long long)bound);
            if (ended) FAIL("sparse_indices entry %lld is %d after a -1", (long long)j, id);
            if (seen[id]) FAIL("sparse_indices lists key %d twice", id);
            seen[id] = 1;
        }
        if (vt && check_values) {
            /* float32, or the query dtype (float16 / bfloat16): rounding keeps the order but may
             * make neighbours equal (then in any key order) or overflow fp16 to inf */
            const int f32 = vt->dtype == FIA_DTYPE_FLOAT32;
            const char *vp = (const char *)vt->data + (off_v + j * vt->strides[last]) * (f32 ? 4 : 2);
            float val;
            if (f32) {
                memcpy(&val, vp, 4);
            } else {
                uint16_t h;
                memcpy(&h, vp, 2);
                val = vt->dtype == FIA_DTYPE_FLOAT16 ? fia_f16_to_f32(h) : fia_bf16_to_f32(h);
            }
            if (id == -1 && !(isinf(val) && val < 0)) FAIL("sparse_values is %g at a -1 slot", (double)val);
            if (id != -1 && f32 && !isfinite(val))
                FAIL("sparse_values is %g for key %d from finite inputs", (double)val, id);
            if (id != -1 && j > 0 && prev != -1) {
                if (val > prevv) FAIL("sparse_values increase: %g then %g", (double)prevv, (double)val);
                if (f32 && val == prevv && id < prev)
                    FAIL("equal scores %g: key %d listed after key %d", (double)val, id, prev);
            }
            prevv = val;
        }
        prev = id;
    }
}

static void check_li_output(const ftensor *idx, const ftensor *val, int64_t bound, int check_values) {
    const fia_tensor *it = &idx->t;
    if (!idx->buf || it->ndim < 1 || !no_alias(it) || (val && (!val->buf || !no_alias(&val->t)))) return;
    if (val && (val->t.ndim != it->ndim || memcmp(val->t.shape, it->shape, sizeof(int64_t) * (size_t)it->ndim)))
        return;
    int64_t pre[FIA_MAX_DIMS] = {0};
    const int32_t npre = it->ndim - 1;
    for (int32_t i = 0; i < it->ndim; i++)
        if (it->shape[i] <= 0) return;
    for (;;) {
        check_li_row(it, val ? &val->t : NULL, pre, npre, bound, check_values);
        int32_t d = npre - 1;
        while (d >= 0 && ++pre[d] == it->shape[d]) pre[d--] = 0;
        if (d < 0) return;
    }
}

static void run_li(fia_context *ctx, fz *f, int quant) {
    fia_lightning_indexer_params p;
    fia_lightning_indexer_params_init(&p);
    static const fia_layout bad[4] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BNSD, FIA_LAYOUT_PA_NZ, (fia_layout)42};
    p.layout_query = u8(f) % 2 ? FIA_LAYOUT_BSND : FIA_LAYOUT_TND;
    if (rare(f, 32)) p.layout_query = u8(f) % 2 ? FIA_LAYOUT_PA_BSND : bad[u8(f) % 4];
    static const fia_layout kl3[3] = {FIA_LAYOUT_BSND, FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND};
    p.layout_key = kl3[u8(f) % 3];
    if (rare(f, 32)) p.layout_key = bad[u8(f) % 4];
    const int qtnd = p.layout_query == FIA_LAYOUT_TND, ktnd = p.layout_key == FIA_LAYOUT_TND;
    const int paged = p.layout_key == FIA_LAYOUT_PA_BSND;
    static const int64_t heads[8] = {1, 2, 3, 4, 8, 16, 16, 64};
    int64_t N1 = heads[u8(f) % 8];
    if (rare(f, 32)) N1 = u8(f) % 2 ? 65 : 0;
    static const int64_t dims[8] = {128, 64, 32, 1, 7, 16, 130, 128};
    /* 1 in 16: one batch with a long key (> FIA_LI_CHUNK = 4096: several scoring chunks) and a
     * small head dim */
    const int longkv = u8(f) % 16 == 0;
    int64_t D = u8(f) % 4 ? dims[u8(f) % 8] : rng(f, 1, 160);
    if (longkv) D = rng(f, 1, 32);
    if (rare(f, 32)) D = u8(f) % 2 ? 513 : 0;
    const int64_t B = longkv ? 1 : rng(f, 1, 3);
    const int64_t S1 = u8(f) % 3 == 0 ? 1 : rng(f, 1, 6), S2 = longkv ? rng(f, 4000, 5000) : rng(f, 0, 70);
    int64_t bs = u8(f) % 2 ? 16 : 32;
    if (u8(f) % 8 == 0) bs = rng(f, 1, 40);
    if (rare(f, 24)) bs = interesting(f, 1100);
    const int64_t bsd = bs >= 1 && bs <= 256 ? bs : 16;
    const int64_t cols = rare(f, 32) ? 0 : longkv ? rng(f, 4000 / bsd + 1, 5000 / bsd + 1) : rng(f, 1, 5);
    const int64_t blocks = rare(f, 32) ? 0 : rng(f, 1, 12);
    p.sparse_count = rng(f, 1, 80);
    if (u8(f) % 8 == 0) p.sparse_count = rng(f, 80, 300);
    if (rare(f, 24)) p.sparse_count = u8(f) % 2 ? 8193 : interesting(f, 100);
    const int64_t K = p.sparse_count >= 0 && p.sparse_count <= 4096 ? p.sparse_count : 4;
    p.sparse_mode = u8(f) % 2 ? 3 : 0;
    if (rare(f, 24)) p.sparse_mode = (int32_t)rng(f, -1, 5);
    if (rare(f, 32)) {
        if (u8(f) % 2) p.pre_tokens = interesting(f, 100);
        else p.next_tokens = interesting(f, 100);
    }
    p.return_value = u8(f) % 2;
    if (rare(f, 32)) {
        if (u8(f) % 2) p.query_quant_mode = (int32_t)rng(f, -1, 3);
        else p.key_quant_mode = (int32_t)rng(f, -1, 3);
    }
    static const fia_dtype fdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    const fia_dtype qdt = quant ? FIA_DTYPE_INT8 : fdts[u8(f) % 2];
    const fia_dtype wdt = quant ? fdts[u8(f) % 3] : u8(f) % 2 ? qdt : FIA_DTYPE_FLOAT32;
    const fia_dtype sqdt = fdts[u8(f) % 3], skdt = fdts[u8(f) % 3];

    /* lengths */
    int64_t qcount = 0, kcount = 0, T1 = S1, T2 = S2;
    int64_t *ql = gen_lengths(f, B, qtnd ? 6 : S1, qtnd, !qtnd, &qcount);
    int64_t *kl = gen_lengths(f, B, paged ? cols * bsd : ktnd ? (longkv ? 5000 : 40) : S2, ktnd,
                              !ktnd && !paged, &kcount);
    p.actual_seq_lengths_query = ql, p.actual_seq_lengths_query_count = qcount;
    p.actual_seq_lengths_key = kl, p.actual_seq_lengths_key_count = kcount;
    if (qtnd) T1 = tnd_rows(f, ql, qcount, 64, 4, 2);
    if (ktnd) T2 = tnd_rows(f, kl, kcount, 5000, 16, 3);
    const int64_t maxkv = paged ? cols * bsd : ktnd ? T2 : S2;

    /* tensors */
    ftensor q, k, w, sq, sk, bt, idx, val;
    memset(&sq, 0, sizeof sq), memset(&sk, 0, sizeof sk), memset(&bt, 0, sizeof bt), memset(&val, 0, sizeof val);
    memset(&idx, 0, sizeof idx);
    int64_t sh[FIA_MAX_DIMS];
    int32_t nd;
    if (qtnd) sh[0] = T1, sh[1] = N1, sh[2] = D, nd = 3;
    else sh[0] = B, sh[1] = S1, sh[2] = N1, sh[3] = D, nd = 4;
    build(f, &q, qdt, nd, sh, quant ? FILL_BYTES : FILL_FLOAT);
    if (quant) q.finite = 1;
    if (paged) sh[0] = blocks, sh[1] = bsd, sh[2] = 1, sh[3] = D, nd = 4;
    else if (ktnd) sh[0] = T2, sh[1] = 1, sh[2] = D, nd = 3;
    else sh[0] = B, sh[1] = S2, sh[2] = 1, sh[3] = D, nd = 4;
    build(f, &k, qdt, nd, sh, quant ? FILL_BYTES : FILL_FLOAT);
    if (quant) k.finite = 1;
    const int64_t wsh[3] = {qtnd ? T1 : B, S1, N1}, wsh_t[2] = {T1, N1};
    const int32_t wnd = qtnd ? 2 : 3;
    build(f, &w, wdt, wnd, qtnd ? wsh_t : wsh, FILL_FLOAT | INNER_ANY);
    const int64_t sksh[3] = {paged ? blocks : ktnd ? T2 : B, paged ? bsd : ktnd ? 1 : S2, 1};
    const int32_t sknd = ktnd ? 2 : 3;
    if (quant || rare(f, 24)) {
        if (!rare(f, 32)) build(f, &sq, sqdt, wnd, qtnd ? wsh_t : wsh, FILL_FLOAT | INNER_ANY);
        if (!rare(f, 32)) build(f, &sk, skdt, sknd, sksh, FILL_FLOAT | INNER_ANY);
        if (sq.finite) each_elem(&sq.t, make_abs);
        if (sk.finite) each_elem(&sk.t, make_abs);
    }
    const int give_bt = paged != rare(f, 32);
    if (give_bt && !build_block_table(f, &bt, B, cols, blocks)) goto done;
    if (qtnd) sh[0] = T1, sh[1] = 1, sh[2] = K, nd = 3;
    else sh[0] = B, sh[1] = S1, sh[2] = 1, sh[3] = K, nd = 4;
    build(f, &idx, FIA_DTYPE_INT32, nd, sh, FILL_OUT | INNER_POS);
    if (p.return_value || rare(f, 16)) build(f, &val, FIA_DTYPE_FLOAT32, nd, sh, FILL_OUT | INNER_POS);

    /* a negative or NaN scale where the call reads it (clean inputs: it must be rejected) */
    int must_fail = 0;
    if (quant && (sq.finite || sk.finite) && u8(f) % 4 == 0) {
        const float badv = u8(f) % 3 == 0 ? NAN : u8(f) % 2 ? -0.25f : -INFINITY;
        const int64_t sq0 = len0(ql, qcount, B, qtnd ? T1 : S1, qtnd, 0);
        const int64_t skv0 = len0(kl, kcount, B, maxkv, ktnd, paged);
        const int read = sq0 >= 1 && skv0 >= 1;
        char *at = NULL;
        const int on_sq = sk.finite ? sq.finite && u8(f) % 2 : 1;
        if (on_sq) { /* the last query row of batch 0, some head */
            const int64_t h = rng(f, 0, N1 > 0 ? N1 - 1 : 0);
            const int64_t i3[3] = {0, sq0 - 1, h}, i2[2] = {sq0 - 1, h};
            at = elem_ptr(&sq, wnd, qtnd ? i2 : i3);
        } else { /* key token 0 of batch 0 */
            int64_t blk = 0;
            const int64_t i00[2] = {0, 0};
            const char *id0 = bt.t.dtype == FIA_DTYPE_INT32 ? elem_ptr(&bt, 2, i00) : NULL;
            int32_t id = -1;
            if (id0) memcpy(&id, id0, 4);
            if (paged) blk = id;
            const int64_t i3[3] = {blk, 0, 0}, i2[2] = {0, 0};
            at = blk >= 0 && blk < blocks ? elem_ptr(&sk, sknd, ktnd ? i2 : i3) : NULL;
        }
        if (at) {
            store_float(at, on_sq ? sq.t.dtype : sk.t.dtype, badv);
            must_fail = read && !g_corrupt;
        }
    }

    fia_lightning_indexer_tensors t;
    memset(&t, 0, sizeof t);
    t.query = &q.t, t.key = &k.t, t.weights = &w.t;
    t.query_dequant_scale = sq.buf || sq.oversize ? &sq.t : NULL;
    t.key_dequant_scale = sk.buf || sk.oversize ? &sk.t : NULL;
    t.block_table = give_bt ? &bt.t : NULL;
    t.sparse_indices = &idx.t;
    t.sparse_values = val.buf || val.oversize ? &val.t : NULL;
    if (rare(f, 16)) {
        switch (u8(f) % 4) {
        case 0: t.query = NULL; break;
        case 1: t.key = NULL; break;
        case 2: t.weights = NULL; break;
        default: t.sparse_indices = NULL; break;
        }
    }
    if ((sq.oversize || sk.oversize) && quant) goto done; /* scales are read at plan time */
    if (g_verbose) {
        fprintf(stderr, "fuzz_sparse: %s layout_query %s layout_key %s sparse_count %lld sparse_mode %d "
                "pre/next %lld/%lld return_value %d quant modes %d/%d (must fail: %d)\n", g_op_names[g_op],
                fia_layout_name(p.layout_query), fia_layout_name(p.layout_key), (long long)p.sparse_count,
                (int)p.sparse_mode, (long long)p.pre_tokens, (long long)p.next_tokens, (int)p.return_value,
                (int)p.query_quant_mode, (int)p.key_quant_mode, must_fail);
        describe("query", t.query, &q), describe("key", t.key, &k), describe("weights", t.weights, &w);
        describe("query_dequant_scale", t.query_dequant_scale, &sq);
        describe("key_dequant_scale", t.key_dequant_scale, &sk);
        describe("block_table", t.block_table, &bt), describe_block_table(&bt);
        describe("sparse_indices", t.sparse_indices, &idx), describe("sparse_values", t.sparse_values, &val);
        describe_lengths("actual_seq_lengths_query", ql, qcount);
        describe_lengths("actual_seq_lengths_key", kl, kcount);
    }

    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    fia_plan *plan = sentinel;
    size_t ws = 12345;
    const fia_status st = quant ? fia_quant_lightning_indexer_plan(ctx, &t, &p, &plan, &ws)
                                : fia_lightning_indexer_plan(ctx, &t, &p, &plan, &ws);
    ftensor *const outs[2] = {&idx, &val};
    if (!check_plan(st, plan, sentinel, ws, outs, 2)) goto done;
    if (must_fail) FAIL("a negative / NaN scale that the call reads was accepted");
    const int oversize = q.oversize || k.oversize || w.oversize || sq.oversize || sk.oversize || idx.oversize ||
                         val.oversize;
    /* work bound from the planned shapes (dims may be carved): query elements x (keys + k) */
    const int64_t kv_act =
        paged ? smul(bt.t.shape[1], k.t.shape[1]) : fia_tensor_numel(&k.t) / q.t.shape[q.t.ndim - 1];
    const int64_t work = smul(fia_tensor_numel(&q.t), sadd(kv_act, idx.t.shape[idx.t.ndim - 1]));
    if (!oversize && work <= ((int64_t)1 << 22) && ws <= MAX_WORKSPACE) {
        uint8_t *wbuf = malloc(ws ? ws : 1);
        if (!wbuf) abort();
        execute(plan, ws, wbuf, outs, 2);
        if (!p.return_value && !untouched(&val)) FAIL("sparse_values written with return_value 0");
        const int finite_in = q.finite && k.finite && w.finite && (!quant || (sq.finite && sk.finite));
        /* ids are logical key positions: below the key's sequence dim (paged: the table's reach) */
        const int64_t bound = paged ? smul(bt.t.shape[1], k.t.shape[1]) : k.t.shape[ktnd ? 0 : 1];
        check_li_output(&idx, p.return_value ? &val : NULL, bound, finite_in);
        if (u8(f) % 2) execute_again(plan, ws, wbuf, outs, p.return_value ? 2 : 1);
        free(wbuf);
    }
    fia_plan_destroy(plan);
done:
    release(&q), release(&k), release(&w), release(&sq), release(&sk), release(&bt), release(&idx), release(&val);
    free(ql), free(kl);
}

/* ---- the target -------------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fia_context *ctx;
    if (!ctx) {
        fz_init_tables();
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) abort();
        g_stats = getenv("FIA_FUZZ_STATS") != NULL;
        g_verbose = getenv("FIA_FUZZ_VERBOSE") != NULL;
        if (g_stats) atexit(print_stats);
    }
    g_runs++;
    fz f = {data, size};
    fz_seed(data, size);
    const uint8_t first = u8(&f);
    g_corrupt = first & 1;
    g_clean += !g_corrupt;
    g_op = (first >> 1) % 4;
    g_inputs[g_op]++;
    if (g_op < 2) run_sfa(ctx, &f, g_op == 1);
    else run_li(ctx, &f, g_op == 3);
    return 0;
}
