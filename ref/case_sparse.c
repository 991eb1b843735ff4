/*
 * case_sparse.c - the case descriptions (case.h) of the DSA operators: sparse_flash_attention,
 * kv_quant_sparse_flash_attention (C8), lightning_indexer and quant_lightning_indexer.
 *
 * SFA / C8: dims {B, S1, S2, N1, K, X}, query float16 / bfloat16, BSND query:
 *   variant 0  BSND cache, sparse_mode 3, softmax_lse;
 *   variant 1  PA_BSND cache of X-token blocks (shuffled block table, batch 0 shorter),
 *              sparse_mode 3, softmax_lse + softmax_max / softmax_sum, sinks;
 *   variant 2  BSND cache, sparse_mode 0, sparse_block_size X (a power of two <= 128).
 * Indices: random entries, now and then an invalid one (< -1 or beyond the keys), variant 2 a
 * -1 tail. The C8 oracle's slack (one query-dtype ulp of a probability, ref_sfa.h) joins the
 * attention_out bound, as the tests have always allowed.
 *
 * LI / quant LI: dims {B, S1, S2, N1, D, K}; dtype: the query / key dtype (float16 / bfloat16;
 * the quant form takes int8 query and key and this dtype for the weights):
 *   variant 0  BSND key, sparse_mode 3;   variant 1  PA_BSND key of 8-token blocks, sparse_mode
 *   3, float32 sparse_values;   variant 2  BSND, sparse_mode 0, sparse_values of the weights'
 *   dtype.
 * The indexer's check is a ranking: position i of a row passes when the oracle's score of the
 * returned index equals the oracle's i-th best score within the fp32 rounding bound. The oracle
 * writes, per position, the returned index when it passes and its own otherwise (an EXACT row
 * of the tolerance table then counts the failures), and for sparse_values the oracle's score of
 * the returned index with the same bound (plus half an ulp of the values' dtype) as slack.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "case_util.h"
#include "ref_li.h"
#include "ref_sfa.h"
#include "ref_util.h"

#define BIG ((int64_t)1 << 22) /* elements a builder makes at most per tensor */

static int half_dtype(fia_dtype dt) { return dt == FIA_DTYPE_FLOAT16 || dt == FIA_DTYPE_BFLOAT16; }

/* ---- sparse_flash_attention / kv_quant_sparse_flash_attention ------------------------------- */

static int build_sfa_common(fia_case *c, const fia_case_shape *s, uint64_t seed, int c8) {
    const int64_t B = s->dims[0], S1 = s->dims[1], S2 = s->dims[2], N1 = s->dims[3], K = s->dims[4],
                  X = s->dims[5];
    const int v = s->variant;
    if (!fia_case_dims_ok(s->dims, 6, BIG) || !half_dtype(s->dtype) || v < 0 || v > 2 || N1 > 128 || B > 16)
        return -1;
    if ((v == 1 && X > 1024) || (v == 2 && (X > 128 || (X & (X - 1)) != 0))) return -1;
    const int64_t dq = c8 ? 576 : 512, dk = c8 ? 656 : 512;
    const int64_t sbs = v == 2 ? X : 1, nent = (S2 + sbs - 1) / sbs;
    const int64_t nb = v == 1 ? (S2 + X - 1) / X : 0;
    if (B * S1 * N1 * dq > BIG || (v == 1 ? B * nb * X : B * S2) * dk > BIG) return -1;
    uint64_t r = seed;
    const int64_t qs[4] = {B, S1, N1, dq}, qrs[4] = {B, S1, N1, 64}, os[4] = {B, S1, N1, 512};
    const int64_t ks[4] = {v == 1 ? B * nb : B, v == 1 ? X : S2, 1, dk};
    const int64_t krs[4] = {ks[0], ks[1], 1, 64}, is[4] = {B, S1, 1, K};
    const int64_t ls[4] = {B, N1, S1, 1}, ms[4] = {B, 1, S1, N1};
    const fia_dtype dt = s->dtype;
    fia_tensor *q = fia_case_tensor(c, dt, 4, qs, &r, -1, 1);
    fia_tensor *k = fia_case_tensor(c, c8 ? FIA_DTYPE_INT8 : dt, 4, ks, c8 ? NULL : &r, -1, 1);
    fia_tensor *qr = c8 ? NULL : fia_case_tensor(c, dt, 4, qrs, &r, -1, 1);
    fia_tensor *kr = c8 ? NULL : fia_case_tensor(c, dt, 4, krs, &r, -1, 1);
    fia_tensor *idx = fia_case_tensor(c, FIA_DTYPE_INT32, 4, is, NULL, 0, 0);
    fia_tensor *o = fia_case_tensor(c, dt, 4, os, NULL, 0, 0);
    fia_tensor *lse = fia_case_tensor(c, FIA_DTYPE_FLOAT32, 4, ls, NULL, 0, 0);
    fia_tensor *mx = v == 1 ? fia_case_tensor(c, FIA_DTYPE_FLOAT32, 4, ms, NULL, 0, 0) : NULL;
    fia_tensor *sm = v == 1 ? fia_case_tensor(c, FIA_DTYPE_FLOAT32, 4, ms, NULL, 0, 0) : NULL;
    fia_tensor *sinks = v == 1 ? fia_case_tensor(c, FIA_DTYPE_FLOAT32, 1, &N1, &r, -1, 1) : NULL;
    fia_tensor *bt = v == 1 ? fia_case_perm_table(c, B, nb, &r) : NULL;
    if (!q || !k || (!c8 && (!qr || !kr)) || !idx || !o || !lse || (v == 1 && (!mx || !sm || !sinks || !bt)))
        return -1;
    if (c8) { /* int8 latent, bf16 rope, four tile scales per 656-byte row */
        unsigned char *row = k->data;
        for (int64_t i = 0; i < ks[0] * ks[1]; i++, row += 656) {
            for (int d = 0; d < 512; d++) row[d] = (unsigned char)(int8_t)fia_case_int(&r, -127, 127);
            for (int d = 0; d < 64; d++) {
                const uint16_t h = fia_f32_to_bf16((float)fia_case_uniform(&r, -1, 1));
                memcpy(row + 512 + 2 * d, &h, 2);
            }
            for (int t = 0; t < 4; t++) {
                const float sc = (float)fia_case_uniform(&r, 0.002, 0.012);
                memcpy(row + 640 + 4 * t, &sc, 4);
            }
        }
    }
    for (int64_t e = 0; e < B * S1 * K; e++) { /* entries; now and then an invalid one */
        const int64_t pick = fia_case_int(&r, 0, 15);
        int64_t x = pick == 0 ? -2 - fia_case_int(&r, 0, 3) : pick == 1 ? nent + fia_case_int(&r, 0, 2)
                                                                         : fia_case_int(&r, 0, nent - 1);
        if (v == 2 && e % K >= K - K / 4) x = -1; /* a -1 tail */
        fia_case_store(idx, e, (double)x);
    }
    fia_sparse_flash_attention_params *p = c8 ? &c->p.sfa_c8.base : &c->p.sfa;
    if (c8) fia_kv_quant_sparse_flash_attention_params_init(&c->p.sfa_c8);
    else fia_sparse_flash_attention_params_init(p);
    p->scale_value = 1.0 / sqrt(576.0);
    p->sparse_block_size = sbs;
    p->sparse_mode = v == 2 ? 0 : 3;
    p->return_softmax_lse = 1;
    if (v == 1) {
        p->layout_kv = FIA_LAYOUT_PA_BSND;
        for (int64_t b = 0; b < B; b++) c->lens[b] = b == 0 ? S2 - S2 / 3 : S2;
        p->actual_seq_lengths_kv = c->lens;
        p->actual_seq_lengths_kv_count = B;
    }
    if (c8) {
        const fia_kv_quant_sparse_flash_attention_tensors t = {q, k, NULL, idx, bt, o, lse, mx, sm, sinks};
        c->t.sfa_c8 = t;
    } else {
        const fia_sparse_flash_attention_tensors t = {q, k, NULL, idx, bt, qr, kr, o, lse, mx, sm, sinks};
        c->t.sfa = t;
    }
    return 0;
}
static int build_sfa(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_sfa_common(c, s, seed, 0); }
static int build_c8(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_sfa_common(c, s, seed, 1); }

/* The outputs of both forms (the C8 tensors name the same outputs). */
static void bind_sfa_outputs(fia_case *c, const fia_tensor *q, fia_tensor *o, fia_tensor *lse, fia_tensor *mx,
                             fia_tensor *sm, int ret) {
    c->n_out = 0;
    fia_case_out(c, "attention_out", o, 0);
    fia_case_out(c, "softmax_lse", ret ? lse : NULL, 0);
    fia_case_out(c, "softmax_max", ret ? mx : NULL, 0);
    fia_case_out(c, "softmax_sum", ret ? sm : NULL, 0);
    c->main_dtype = q->dtype;
}
static void bind_sfa(fia_case *c) {
    const fia_sparse_flash_attention_tensors *t = &c->t.sfa;
    bind_sfa_outputs(c, t->query, t->attention_out, t->softmax_lse, t->softmax_max, t->softmax_sum,
                     c->p.sfa.return_softmax_lse);
}
static void bind_c8(fia_case *c) {
    const fia_kv_quant_sparse_flash_attention_tensors *t = &c->t.sfa_c8;
    bind_sfa_outputs(c, t->query, t->attention_out, t->softmax_lse, t->softmax_max, t->softmax_sum,
                     c->p.sfa_c8.base.return_softmax_lse);
}
static fia_status plan_sfa(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_sparse_flash_attention_plan(ctx, &c->t.sfa, &c->p.sfa, p, ws);
}
static fia_status plan_c8(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_kv_quant_sparse_flash_attention_plan(ctx, &c->t.sfa_c8, &c->p.sfa_c8, p, ws);
}

/* Both oracles write [rows, N1] statistics; softmax_lse is [B, N1, S1, 1] (TND [T1, N1, 1]),
 * softmax_max / softmax_sum [B, 1, S1, N1] (TND [1, T1, N1]), row-major [row, h]. */
static int oracle_sfa_common(fia_case *c, const fia_tensor *q, int tnd, int c8) {
    const int64_t n1 = q->shape[q->ndim - 2], rows = fia_tensor_numel(c->out[0].got) / (512 * (n1 > 0 ? n1 : 1));
    const int64_t s1 = tnd ? 1 : q->shape[1], n = rows * n1 + 1;
    double *st = malloc((size_t)(3 * n) * sizeof *st);
    if (!st) return -1;
    double *lse = st, *mx = st + n, *sm = st + 2 * n;
    const int r = c8 ? fia_ref_kv_quant_sparse_flash_attention_stats(&c->t.sfa_c8, &c->p.sfa_c8, NULL, 0,
                                                                      c->out[0].want, lse, mx, sm, c->out[0].quot)
                     : fia_ref_sparse_flash_attention_stats(&c->t.sfa, &c->p.sfa, NULL, 0, c->out[0].want, lse,
                                                            mx, sm);
    for (int64_t row = 0; r == 0 && row < rows; row++)
        for (int64_t h = 0; h < n1; h++) {
            const int64_t i = row * n1 + h;
            if (c->out[1].want) c->out[1].want[tnd ? i : ((row / s1) * n1 + h) * s1 + row % s1] = lse[i];
            if (c->out[2].want) c->out[2].want[i] = mx[i];
            if (c->out[3].want) c->out[3].want[i] = sm[i];
        }
    free(st);
    return r == 0 ? 0 : -1;
}
static int oracle_sfa(fia_case *c) {
    return oracle_sfa_common(c, c->t.sfa.query, c->p.sfa.layout_query == FIA_LAYOUT_TND, 0);
}
static int oracle_c8(fia_case *c) {
    return oracle_sfa_common(c, c->t.sfa_c8.query, c->p.sfa_c8.base.layout_query == FIA_LAYOUT_TND, 1);
}
static const char *tol_sfa(const fia_case *c) {
    (void)c;
    return "sparse_flash_attention";
}

const fia_case_desc fia_case_sfa = {
    "sparse_flash_attention",
    "dims {B, S1, S2, N1, K, X}: BSND query [B, S1, N1, 512] + rope 64 of dtype (float16 / bfloat16), "
    "indices [B, S1, 1, K]; variant 0: BSND cache [B, S2, 1, 512] + rope, sparse_mode 3, softmax_lse; "
    "1: PA_BSND cache of X-token blocks, softmax_lse / max / sum, sinks; 2: BSND, sparse_mode 0, "
    "sparse_block_size X",
    build_sfa, bind_sfa, plan_sfa, oracle_sfa, tol_sfa, 0};
const fia_case_desc fia_case_sfa_c8 = {
    "kv_quant_sparse_flash_attention",
    "as sparse_flash_attention with query [.., 576] and int8 656-byte cache rows (int8 values, bf16 rope, "
    "4 fp32 tile scales); attention_out within the table's bound plus the oracle's slack",
    build_c8, bind_c8, plan_c8, oracle_c8, tol_sfa, 1u};

/* ---- lightning_indexer / quant_lightning_indexer --------------------------------------------- */

static int build_li_common(fia_case *c, const fia_case_shape *s, uint64_t seed, int quant) {
    const int64_t B = s->dims[0], S1 = s->dims[1], S2 = s->dims[2], N1 = s->dims[3], D = s->dims[4],
                  K = s->dims[5];
    const int v = s->variant;
    if (!fia_case_dims_ok(s->dims, 6, BIG) || v < 0 || v > 2 || N1 > 64 || D > 512 || K > 8192 || B > 16)
        return -1;
    if (quant ? !fia_case_float_dtype(s->dtype) : !half_dtype(s->dtype)) return -1;
    const int64_t bsz = 8, nb = v == 1 ? (S2 + bsz - 1) / bsz : 0;
    if (B * S1 * N1 * D > BIG || (v == 1 ? B * nb * bsz : B * S2) * D > BIG || B * S1 * K > BIG) return -1;
    uint64_t r = seed;
    const fia_dtype qdt = quant ? FIA_DTYPE_INT8 : s->dtype, wdt = s->dtype;
    const int64_t qs[4] = {B, S1, N1, D}, ws[3] = {B, S1, N1}, os[4] = {B, S1, 1, K};
    const int64_t ks[4] = {v == 1 ? B * nb : B, v == 1 ? bsz : S2, 1, D};
    const double lo = quant ? -127 : -1, hi = quant ? 127 : 1;
    fia_tensor *q = fia_case_tensor(c, qdt, 4, qs, &r, lo, hi);
    fia_tensor *k = fia_case_tensor(c, qdt, 4, ks, &r, lo, hi);
    fia_tensor *w = fia_case_tensor(c, wdt, 3, ws, &r, -1, 1);
    fia_tensor *sq = quant ? fia_case_tensor(c, FIA_DTYPE_FLOAT16, 3, ws, &r, 0.005, 0.02) : NULL;
    fia_tensor *sk = quant ? fia_case_tensor(c, FIA_DTYPE_FLOAT16, 3, ks, &r, 0.01, 0.03) : NULL;
    fia_tensor *bt = v == 1 ? fia_case_perm_table(c, B, nb, &r) : NULL;
    fia_tensor *idx = fia_case_tensor(c, FIA_DTYPE_INT32, 4, os, NULL, 0, 0);
    fia_tensor *val = v ? fia_case_tensor(c, v == 1 ? FIA_DTYPE_FLOAT32 : wdt, 4, os, NULL, 0, 0) : NULL;
    if (!q || !k || !w || (quant && (!sq || !sk)) || (v == 1 && !bt) || !idx || (v && !val)) return -1;
    fia_lightning_indexer_params *p = &c->p.li;
    fia_lightning_indexer_params_init(p);
    p->sparse_count = K;
    p->sparse_mode = v == 2 ? 0 : 3;
    p->return_value = v != 0;
    if (v == 1) {
        p->layout_key = FIA_LAYOUT_PA_BSND;
        for (int64_t b = 0; b < B; b++) c->lens[b] = b == 0 ? S2 - S2 / 3 : S2;
        p->actual_seq_lengths_key = c->lens;
        p->actual_seq_lengths_key_count = B;
    }
    fia_lightning_indexer_tensors t = {0};
    t.query = q, t.key = k, t.weights = w, t.query_dequant_scale = sq, t.key_dequant_scale = sk;
    t.block_table = bt, t.sparse_indices = idx, t.sparse_values = val;
    c->t.li = t;
    return 0;
}
static int build_li(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_li_common(c, s, seed, 0); }
static int build_qli(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_li_common(c, s, seed, 1); }

static void bind_li(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "sparse_indices", c->t.li.sparse_indices, 0);
    fia_case_out(c, "sparse_values", c->p.li.return_value ? c->t.li.sparse_values : NULL, 0);
    c->main_dtype = c->t.li.query->dtype;
}
static fia_status plan_li(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_lightning_indexer_plan(ctx, &c->t.li, &c->p.li, p, ws);
}
static fia_status plan_qli(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_quant_lightning_indexer_plan(ctx, &c->t.li, &c->p.li, p, ws);
}

/* The ranking check above, as want / slack arrays (the library's output is read: call it after
 * the run). */
static int oracle_li_common(fia_case *c, int quant) {
    const fia_lightning_indexer_tensors *t = &c->t.li;
    const fia_lightning_indexer_params *p = &c->p.li;
    const int64_t rows = fia_ref_li_num_rows(t, p), K = p->sparse_count;
    const fia_tensor *k = t->key;
    int64_t maxkv = p->layout_key == FIA_LAYOUT_PA_BSND ? t->block_table->shape[1] * k->shape[1]
                                                        : k->shape[p->layout_key == FIA_LAYOUT_TND ? 0 : 1];
    if (maxkv < 1) maxkv = 1;
    double *s = malloc((size_t)maxkv * sizeof *s), *tol = malloc((size_t)maxkv * sizeof *tol);
    int32_t *order = malloc((size_t)maxkv * sizeof *order);
    if (!s || !tol || !order) {
        free(s), free(tol), free(order);
        return -1;
    }
    const fia_case_output *oi = &c->out[0], *ov = &c->out[1];
    const double half = !ov->got ? 0.0 : ov->got->dtype == FIA_DTYPE_FLOAT16 ? 0x1p-11
                                     : ov->got->dtype == FIA_DTYPE_BFLOAT16 ? 0x1p-8 : 0.0;
    /* half the spacing of the dtype's subnormals: rounding there is absolute, not relative */
    const double sub = !ov->got ? 0.0 : ov->got->dtype == FIA_DTYPE_FLOAT16 ? 0x1p-25
                                    : ov->got->dtype == FIA_DTYPE_BFLOAT16 ? 0x1p-134 : 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t n = fia_ref_li_row_scores(t, p, quant, r, s, tol);
        fia_ref_li_sort(s, n, order);
        const int64_t cnt = n < K ? n : K;
        for (int64_t i = 0; i < K; i++) {
            const int64_t e = r * K + i;
            const int64_t g = (int64_t)fia_ref_load(oi->got, e);
            const int64_t mine = i < cnt ? order[i] : -1;
            const int ok = i < cnt ? g >= 0 && g < n && fabs(s[g] - s[order[i]]) <= tol[g] + tol[order[i]] : g == -1;
            oi->want[e] = (double)(ok ? g : mine);
            if (!ov->want) continue;
            const int64_t j = ok ? g : mine;
            ov->want[e] = j < 0 ? -INFINITY : s[j];
            ov->quot[e] = j < 0 ? 0.0 : tol[j] * (1 + half) + fmax(half * fabs(s[j]), sub) + 1e-30;
        }
    }
    free(s), free(tol), free(order);
    return 0;
}
static int oracle_li(fia_case *c) { return oracle_li_common(c, 0); }
static int oracle_qli(fia_case *c) { return oracle_li_common(c, 1); }
static const char *tol_li(const fia_case *c) {
    (void)c;
    return "lightning_indexer";
}

const fia_case_desc fia_case_li = {
    "lightning_indexer",
    "dims {B, S1, S2, N1, D, K}: BSND query [B, S1, N1, D] and weights [B, S1, N1] of dtype (float16 / "
    "bfloat16), key [B, S2, 1, D], indices [B, S1, 1, K]; variant 0: sparse_mode 3; 1: PA_BSND key of "
    "8-token blocks, float32 sparse_values; 2: sparse_mode 0, sparse_values of dtype",
    build_li, bind_li, plan_li, oracle_li, tol_li, 2u};
const fia_case_desc fia_case_qli = {
    "quant_lightning_indexer",
    "as lightning_indexer with int8 query / key, float16 dequant scales, weights of dtype (any float)",
    build_qli, bind_li, plan_qli, oracle_qli, tol_li, 2u};
