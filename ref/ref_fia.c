/*
 * ref_fia.c - the double-precision oracle of FusedInferAttentionScore, written straight from the
 * contract text in fia.h (see ref_fia.h). Slow and obvious on purpose: every element is read
 * through its strides, every score is a plain double dot product, every softmax is two passes.
 * Nothing here is shared with src/.
 */
#include "ref_fia.h"
#include "ref_util.h"
#include "tolerance.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Element access                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* Element at coordinates (a, b[, c3[, d]]); reads go through ref_util.c. */
static double at2(const fia_tensor *t, int64_t a, int64_t b) {
    const int64_t c[2] = {a, b};
    return fia_ref_at(t, c);
}
static double at3(const fia_tensor *t, int64_t a, int64_t b, int64_t c3) {
    const int64_t c[3] = {a, b, c3};
    return fia_ref_at(t, c);
}
static double at4(const fia_tensor *t, int64_t a, int64_t b, int64_t c3, int64_t d) {
    const int64_t c[4] = {a, b, c3, d};
    return fia_ref_at(t, c);
}

static int64_t numel(const fia_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* FusedInferAttentionScore                                                                   */
/* ------------------------------------------------------------------------------------------ */

static int fail(const char *msg, long long a, long long b) {
    fprintf(stderr, "fia_ref_fused_infer_attention_score: %s (%lld, %lld)\n", msg, a, b);
    return -1;
}

/* Element (b, head n, token s, channel d) of a query / key / value / out tensor in a dense
 * layout. For TND, s is the packed token index and b is unused. nd: head dim of this tensor. */
static double dense_at(const fia_tensor *t, fia_layout layout, int64_t b, int64_t n, int64_t s,
                       int64_t d, int64_t nd) {
    switch (layout) {
    case FIA_LAYOUT_BSH: return at3(t, b, s, n * nd + d);
    case FIA_LAYOUT_BSND: return at4(t, b, s, n, d);
    case FIA_LAYOUT_TND: return at3(t, s, n, d);
    case FIA_LAYOUT_NTD: return at3(t, n, s, d);
    default: return at4(t, b, n, s, d); /* BNSD, BNSD_BSND */
    }
}

/* Head dim of a dense tensor with `heads` heads; -1 when the rank does not fit the layout. */
static int64_t dense_head_dim(const fia_tensor *t, fia_layout layout, int64_t heads) {
    if (layout == FIA_LAYOUT_BSH) return t->ndim == 3 && heads > 0 ? t->shape[2] / heads : -1;
    if (layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_NTD) return t->ndim == 3 ? t->shape[2] : -1;
    return t->ndim == 4 ? t->shape[3] : -1;
}

/* Sequence dim (S, or T for TND) of a dense tensor. */
static int64_t dense_seq(const fia_tensor *t, fia_layout layout) {
    if (layout == FIA_LAYOUT_TND) return t->shape[0];
    if (layout == FIA_LAYOUT_NTD) return t->shape[1];
    if (layout == FIA_LAYOUT_BNSD || layout == FIA_LAYOUT_BNSD_BSND) return t->shape[2];
    return t->shape[1];
}

/* One antiquant parameter (scale or offset) for tensor idx (0 K, 1 V), batch b, kv head n,
 * kv token tok (within the batch), channel d. t == NULL: `dflt`. */
static double aq_param(const fia_tensor *t, int mode, int idx, int64_t b, int64_t n, int64_t tok,
                       int64_t d, int64_t D, double dflt) {
    if (!t) return dflt;
    if (mode == 1) return at3(t, idx, t->shape[1] == 1 ? 0 : b, tok);
    switch (t->ndim) {
    case 1: return fia_ref_load(t, idx);
    case 2: return at2(t, idx, n * D + d);
    case 3: return at3(t, idx, n, d);
    default: return at4(t, idx, n, 0, d);
    }
}

static int aq_check(const fia_tensor *t, int mode, int64_t B, int64_t N2, int64_t D,
                    int64_t maxkv) {
    if (!t) return 0;
    if (t->ndim < 1 || t->shape[0] != 2) return -1;
    if (mode == 1) {
        if (t->ndim != 3 || (t->shape[1] != B && t->shape[1] != 1) || t->shape[2] < maxkv) return -1;
        return 0;
    }
    switch (t->ndim) {
    case 1: return 0;
    case 2: return t->shape[1] == N2 * D ? 0 : -1;
    case 3: return t->shape[1] == N2 && t->shape[2] == D ? 0 : -1;
    case 4: return t->shape[1] == N2 && t->shape[2] == 1 && t->shape[3] == D ? 0 : -1;
    default: return -1;
    }
}

/* Per-batch (non-cumulative) lengths with the broadcast rules: NULL -> dflt, count 1 -> every
 * batch, count >= B -> the first B. */
static int per_batch_lengths(const int64_t *v, int64_t count, int64_t B, int64_t dflt,
                             int64_t *out) {
    for (int64_t b = 0; b < B; b++) {
        if (!v) out[b] = dflt;
        else if (count == 1) out[b] = v[0];
        else if (count >= B) out[b] = v[b];
        else return -1;
    }
    return 0;
}

/* Cumulative lengths (TND): start[b], len[b]; count must be >= B, non-decreasing. */
static int cumulative_lengths(const int64_t *v, int64_t count, int64_t B, int64_t *start,
                              int64_t *len) {
    if (!v || count < B) return -1;
    int64_t prev = 0;
    for (int64_t b = 0; b < B; b++) {
        if (v[b] < prev) return -1;
        start[b] = prev;
        len[b] = v[b] - prev;
        prev = v[b];
    }
    return 0;
}

static int compressed_shape(const fia_tensor *m) {
    const int64_t *s = m->shape;
    if (m->ndim == 2) return s[0] == 2048 && s[1] == 2048;
    if (m->ndim == 3) return s[0] == 1 && s[1] == 2048 && s[2] == 2048;
    if (m->ndim == 4) return s[0] == 1 && s[1] == 1 && s[2] == 2048 && s[3] == 2048;
    return 0;
}

/* Is key j visible to query row i? All comparisons avoid overflow: |d| stays far below 2^62
 * and pre/next are compared against it rather than negated. */
static int visible(int decode, int sparse_mode, int mask_full, const fia_tensor *mask,
                   int64_t mask_b, int64_t B, int64_t pre, int64_t next, int64_t i, int64_t j,
                   int64_t sq, int64_t skv) {
    int masked = 0;
    if (mask && mask_full) {
        double m;
        if (mask->ndim == 2 && decode && mask->shape[0] == B && B > 1) m = at2(mask, mask_b, j);
        else if (mask->ndim == 2) m = at2(mask, i, j);
        else if (mask->ndim == 3) m = at3(mask, mask->shape[0] == 1 ? 0 : mask_b, i, j);
        else m = at4(mask, mask->shape[0] == 1 ? 0 : mask_b, 0, i, j);
        masked = m != 0.0;
    }
    if (decode) return !masked;
    switch (sparse_mode) {
    case 0: {
        if (!mask) return 1;
        const int64_t d = j - i;
        return !masked && pre >= -d && d <= next;
    }
    case 1: return !masked;
    case 2: return j <= i;
    case 3: return j <= i + (skv - sq);
    case 4: {
        const int64_t d = j - i - (skv - sq);
        return pre >= -d && d <= next;
    }
    default: return 0;
    }
}

int fia_ref_fused_infer_attention_score(const fia_fused_infer_attention_score_tensors *tensors,
                                        const fia_fused_infer_attention_score_params *params,
                                        double *out, double *lse) {
    if (!tensors || !params || !out) return fail("NULL tensors/params/out", 0, 0);
    const fia_tensor *q = tensors->query, *k = tensors->key, *v = tensors->value;
    const fia_tensor *mask = tensors->atten_mask, *bt = tensors->block_table;
    const fia_tensor *aqs = tensors->antiquant_scale, *aqo = tensors->antiquant_offset;
    const fia_tensor *ot = tensors->attention_out;
    if (!q || !k || !v || !ot) return fail("NULL query/key/value/attention_out", 0, 0);
    const fia_layout io = params->input_layout;
    if (io != FIA_LAYOUT_BSH && io != FIA_LAYOUT_BSND && io != FIA_LAYOUT_BNSD &&
        io != FIA_LAYOUT_TND && io != FIA_LAYOUT_BNSD_BSND && io != FIA_LAYOUT_NTD &&
        io != FIA_LAYOUT_TND_NTD && io != FIA_LAYOUT_NTD_TND)
        return fail("unsupported layout", io, 0);
    /* inputs in `layout`; the token-packed outputs in out_ntd ([N, T, Dv]) or [T, N, Dv] */
    const fia_layout layout = io == FIA_LAYOUT_TND_NTD ? FIA_LAYOUT_TND
                              : io == FIA_LAYOUT_NTD_TND ? FIA_LAYOUT_NTD : io;
    const int tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_NTD;
    const int out_ntd = io == FIA_LAYOUT_NTD || io == FIA_LAYOUT_TND_NTD;
    const int64_t N1 = params->num_heads;
    const int64_t N2 = params->num_key_value_heads ? params->num_key_value_heads : N1;
    if (N1 < 1 || N2 < 1 || N1 % N2 != 0) return fail("bad head counts", N1, N2);
    const int64_t G = N1 / N2;
    const int paged = bt != NULL;
    const int quant = k->dtype == FIA_DTYPE_INT8;
    if (quant && !aqs) return fail("int8 key without antiquant_scale", 0, 0);
    const int aq_mode = params->antiquant_mode;

    /* Query geometry. */
    const int64_t D = dense_head_dim(q, layout, N1);
    if (D < 1) return fail("query rank / head dim", q->ndim, D);
    const int64_t S1 = dense_seq(q, layout); /* T1 for TND */
    const int64_t B = tnd ? params->actual_seq_lengths_count : q->shape[0];
    if (B < 1) return fail("batch", B, 0);
    const int decode = !tnd && S1 == 1;

    /* Key / value geometry. */
    int64_t Dk, Dv, S2 = 0, bs = 0, nblocks = 0;
    if (paged) {
        bs = params->block_size;
        if (bt->ndim != 2 || bt->shape[0] != B) return fail("block_table shape", bt->ndim, B);
        if (k->ndim == 3) {
            Dk = k->shape[2] / N2;
            Dv = v->shape[2] / N2;
            if (k->shape[1] != bs || v->shape[1] != bs) return fail("block size", k->shape[1], bs);
        } else if (k->ndim == 4) {
            Dk = k->shape[3];
            Dv = v->shape[3];
            if (k->shape[2] != bs || v->shape[2] != bs || k->shape[1] != N2)
                return fail("paged key shape", k->shape[2], bs);
        } else {
            return fail("paged key rank", k->ndim, 0);
        }
        nblocks = k->shape[0];
        if (v->shape[0] != nblocks || v->ndim != k->ndim) return fail("paged value", 0, 0);
    } else {
        Dk = dense_head_dim(k, layout, N2);
        Dv = dense_head_dim(v, layout, N2);
        if (Dk < 1 || Dv < 1) return fail("key/value rank", k->ndim, v->ndim);
        S2 = dense_seq(k, layout);
        if (dense_seq(v, layout) != S2) return fail("value seq", dense_seq(v, layout), S2);
    }
    if (Dk != D || Dv < 1) return fail("head dims", Dk, D);
    if (quant && aq_mode == 0 && aqs->ndim > 1 && D != Dv) return fail("per-channel D != Dv", D, Dv);

    /* Lengths. */
    int64_t *qstart = calloc((size_t)B, sizeof *qstart), *qlen = calloc((size_t)B, sizeof *qlen);
    int64_t *kvstart = calloc((size_t)B, sizeof *kvstart), *kvlen = calloc((size_t)B, sizeof *kvlen);
    double *kd = NULL, *vd = NULL, *sc = NULL, *qd = NULL;
    int rc = -1;
    if (!qstart || !qlen || !kvstart || !kvlen) {
        fail("out of memory", 0, 0);
        goto done;
    }
    if (tnd) {
        if (cumulative_lengths(params->actual_seq_lengths, params->actual_seq_lengths_count, B,
                               qstart, qlen) != 0 || qstart[B - 1] + qlen[B - 1] > S1) {
            fail("TND actual_seq_lengths", params->actual_seq_lengths_count, S1);
            goto done;
        }
    } else if (decode) {
        for (int64_t b = 0; b < B; b++) qlen[b] = 1;
    } else if (per_batch_lengths(params->actual_seq_lengths, params->actual_seq_lengths_count, B,
                                 S1, qlen) != 0) {
        fail("actual_seq_lengths count", params->actual_seq_lengths_count, B);
        goto done;
    }
    if (paged || !tnd) {
        if (paged && !params->actual_seq_lengths_kv) {
            fail("paged cache without actual_seq_lengths_kv", 0, 0);
            goto done;
        }
        if (per_batch_lengths(params->actual_seq_lengths_kv, params->actual_seq_lengths_kv_count,
                              B, S2, kvlen) != 0) {
            fail("actual_seq_lengths_kv count", params->actual_seq_lengths_kv_count, B);
            goto done;
        }
    } else if (cumulative_lengths(params->actual_seq_lengths_kv,
                                  params->actual_seq_lengths_kv_count, B, kvstart, kvlen) != 0 ||
               kvstart[B - 1] + kvlen[B - 1] > S2) {
        fail("TND actual_seq_lengths_kv", params->actual_seq_lengths_kv_count, S2);
        goto done;
    }
    int64_t maxq = 0, maxkv = 0;
    for (int64_t b = 0; b < B; b++) {
        if (qlen[b] < 0 || (!tnd && qlen[b] > S1)) {
            fail("query length", b, qlen[b]);
            goto done;
        }
        if (kvlen[b] < 0 || (!paged && !tnd && kvlen[b] > S2) ||
            (paged && kvlen[b] > bt->shape[1] * bs)) {
            fail("kv length", b, kvlen[b]);
            goto done;
        }
        if (qlen[b] > maxq) maxq = qlen[b];
        if (kvlen[b] > maxkv) maxkv = kvlen[b];
    }
    if (quant && (aq_check(aqs, aq_mode, B, N2, D, maxkv) != 0 ||
                  aq_check(aqo, aq_mode, B, N2, D, maxkv) != 0)) {
        fail("antiquant shape", aqs->ndim, aq_mode);
        goto done;
    }

    /* Mask form: full for modes 0/1; compressed (shape checked, never read) for 2/3/4. Decode
     * ignores sparse_mode: a mask is the (ignored) compressed one when the mode is 2/3/4 and it
     * has the compressed shape, and otherwise a full mask that still applies. */
    const int sparse_mode = params->sparse_mode;
    if (sparse_mode < 0 || sparse_mode > 4) {
        fail("sparse_mode", sparse_mode, 0);
        goto done;
    }
    const int mask_full = mask != NULL && (decode ? !(sparse_mode >= 2 && compressed_shape(mask))
                                                  : sparse_mode <= 1);
    if (!decode && sparse_mode == 1 && !mask) {
        fail("sparse_mode 1 without atten_mask", 0, 0);
        goto done;
    }
    if (mask_full) {
        const int64_t r = mask->ndim;
        const int64_t s2m = r >= 2 ? mask->shape[r - 1] : 0;
        const int per_batch_2d = r == 2 && decode && mask->shape[0] == B && B > 1;
        if (r < 2 || r > 4 || s2m < maxkv || (!per_batch_2d && mask->shape[r - 2] < maxq) ||
            (r >= 3 && mask->shape[0] != 1 && mask->shape[0] != B) || (r == 4 && mask->shape[1] != 1)) {
            fail("atten_mask shape", r, s2m);
            goto done;
        }
    }

    /* Outputs: shapes and defaults (0 / +inf). */
    const int64_t out_n = numel(ot);
    const int64_t rows = tnd ? S1 * N1 : B * N1 * S1;
    if (out_n != rows * Dv) {
        fail("attention_out numel", out_n, rows * Dv);
        goto done;
    }
    for (int64_t i = 0; i < out_n; i++) out[i] = 0.0;
    if (lse)
        for (int64_t i = 0; i < rows; i++) lse[i] = INFINITY;

    kd = malloc(sizeof(double) * (size_t)(maxkv * D + 1));
    vd = malloc(sizeof(double) * (size_t)(maxkv * Dv + 1));
    sc = malloc(sizeof(double) * (size_t)(maxkv + 1));
    qd = malloc(sizeof(double) * (size_t)D);
    if (!kd || !vd || !sc || !qd) {
        fail("out of memory", maxkv, D);
        goto done;
    }
    const int bsnd_out = layout == FIA_LAYOUT_BSH || layout == FIA_LAYOUT_BSND ||
                         layout == FIA_LAYOUT_BNSD_BSND;
    for (int64_t b = 0; b < B; b++) {
        const int64_t sq = qlen[b], skv = kvlen[b];
        if (sq == 0 || skv == 0) continue;
        for (int64_t n2 = 0; n2 < N2; n2++) {
            /* Gather K and V of (b, n2) in double, dequantized. */
            for (int64_t t = 0; t < skv; t++) {
                int64_t blk = 0;
                if (paged) {
                    blk = (int64_t)at2(bt, b, t / bs);
                    if (blk < 0 || blk >= nblocks) {
                        fail("block id out of range", b, blk);
                        goto done;
                    }
                }
                for (int side = 0; side < 2; side++) {
                    const fia_tensor *src = side ? v : k;
                    const int64_t nd = side ? Dv : D;
                    double *dst = side ? vd + t * Dv : kd + t * D;
                    for (int64_t d = 0; d < nd; d++) {
                        double x;
                        if (!paged) x = dense_at(src, layout, b, n2, kvstart[b] + t, d, nd);
                        else if (src->ndim == 3) x = at3(src, blk, t % bs, n2 * nd + d);
                        else x = at4(src, blk, n2, t % bs, d);
                        if (quant) {
                            const double off = aq_param(aqo, aq_mode, side, b, n2, t, d, D, 0.0);
                            const double s = aq_param(aqs, aq_mode, side, b, n2, t, d, D, 1.0);
                            x = (x + off) * s;
                        }
                        dst[d] = x;
                    }
                }
            }
            for (int64_t g = 0; g < G; g++) {
                const int64_t h = n2 * G + g;
                for (int64_t i = 0; i < sq; i++) {
                    for (int64_t d = 0; d < D; d++)
                        qd[d] = dense_at(q, layout, b, h, qstart[b] + i, d, D);
                    double mx = -INFINITY;
                    for (int64_t j = 0; j < skv; j++) {
                        sc[j] = -INFINITY;
                        if (!visible(decode, sparse_mode, mask_full, mask, b, B,
                                     params->pre_tokens, params->next_tokens, i, j, sq, skv))
                            continue;
                        double dot = 0.0;
                        for (int64_t d = 0; d < D; d++)
                            dot += qd[d] * kd[j * D + d];
                        sc[j] = params->scale * dot;
                        if (sc[j] > mx) mx = sc[j];
                    }
                    if (mx == -INFINITY) continue; /* nothing visible: 0 / +inf */
                    double sum = 0.0;
                    for (int64_t j = 0; j < skv; j++) {
                        sc[j] = sc[j] == -INFINITY ? 0.0 : exp(sc[j] - mx);
                        sum += sc[j];
                    }
                    const int64_t s_idx = qstart[b] + i; /* TND: packed token; else row */
                    double *o;
                    if (tnd && out_ntd) o = out + (h * S1 + s_idx) * Dv;
                    else if (tnd) o = out + (s_idx * N1 + h) * Dv;
                    else if (bsnd_out) o = out + ((b * S1 + s_idx) * N1 + h) * Dv;
                    else o = out + ((b * N1 + h) * S1 + s_idx) * Dv;
                    for (int64_t d = 0; d < Dv; d++) {
                        double acc = 0.0;
                        for (int64_t j = 0; j < skv; j++) acc += sc[j] * vd[j * Dv + d];
                        o[d] = acc / sum;
                    }
                    if (lse) lse[tnd ? s_idx * N1 + h : (b * N1 + h) * S1 + s_idx] = mx + log(sum);
                }
            }
        }
    }
    rc = 0;
done:
    free(qstart);
    free(qlen);
    free(kvstart);
    free(kvlen);
    free(kd);
    free(vd);
    free(sc);
    free(qd);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Comparison                                                                                 */
/* ------------------------------------------------------------------------------------------ */

int64_t fia_ref_compare(const char *name, const fia_tensor *got, const double *want, double atol,
                        double rtol) {
    fia_ref_check c = FIA_REF_CHECK_INIT;
    const fia_ref_tolerance tol = {"*", "*", -1, FIA_REF_TOL_CLOSE, atol, rtol, 0};
    const int64_t bad = fia_ref_check_tensor(got, want, NULL, &tol, &c);
    fia_ref_check_report(name, &c, &tol);
    return bad;
}
