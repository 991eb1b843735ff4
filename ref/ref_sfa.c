/*
 * ref_sfa.c - the double-precision oracles of sparse_flash_attention and its C8 form, from the
 * contract text in fia.h (see ref_sfa.h). For each output row: find its batch and position,
 * compute the visible threshold, walk the index entries (stop at the first -1, skip values < -1
 * and entries starting at or beyond the threshold, truncate the last block at the threshold),
 * then a two-pass softmax over the selected tokens per head, in double.
 */
#include "ref_sfa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_util.h"

/* Address of an element (for the byte-level C8 row reads). */
static const unsigned char *addr(const fia_tensor *t, const int64_t *c) {
    int64_t off = 0;
    for (int32_t i = 0; i < t->ndim; i++) off += c[i] * t->strides[i];
    return (const unsigned char *)t->data + off * (int64_t)fia_dtype_size(t->dtype);
}

typedef struct ref_call {
    const fia_tensor *q, *qr, *k, *kr, *idx, *bt, *out, *sinks;
    const fia_sparse_flash_attention_params *p;
    int c8;
} ref_call;

/* x rounded to dtype dt (float16 / bfloat16) through float, nearest even: the C8 contract's
 * casts to the query dtype. */
static double to_dtype(double x, fia_dtype dt) {
    if (dt == FIA_DTYPE_FLOAT16) return fia_f16_to_f32(fia_f32_to_f16((float)x));
    if (dt == FIA_DTYPE_BFLOAT16) return fia_bf16_to_f32(fia_f32_to_bf16((float)x));
    return x;
}

/* Batch lengths from the params, as fia.h describes them. */
static int lengths(const int64_t *v, int64_t count, int cumulative, int64_t B, int64_t full,
                   int64_t *len, int64_t *start) {
    int64_t prev = 0;
    for (int64_t b = 0; b < B; b++) {
        if (cumulative) {
            if (!v || count < B) return -1;
            start[b] = prev;
            len[b] = v[b] - prev;
            prev = v[b];
        } else {
            start[b] = 0;
            len[b] = (!v || count == 0) ? full : v[count == 1 ? 0 : b];
        }
    }
    return 0;
}

/* The selected key vector of token tok of batch b: k[0..576) (nope then rope). */
static void key_vec(const ref_call *c, int64_t b, int64_t kstart, int64_t tok, double *k) {
    int64_t co[4];
    const fia_layout L = c->p->layout_kv;
    if (L == FIA_LAYOUT_PA_BSND) {
        const int64_t bs = c->k->shape[1];
        const int64_t bc[2] = {b, tok / bs};
        co[0] = (int64_t)fia_ref_at(c->bt, bc);
        co[1] = tok % bs;
        co[2] = 0;
    } else if (L == FIA_LAYOUT_TND) {
        co[0] = kstart + tok;
        co[1] = 0;
    } else {
        co[0] = b;
        co[1] = tok;
        co[2] = 0;
    }
    const int nd = L == FIA_LAYOUT_TND ? 2 : 3; /* index of the last dim */
    if (c->c8) {
        co[nd] = 0;
        const unsigned char *row = addr(c->k, co);
        float sc[4];
        memcpy(sc, row + 640, sizeof sc);
        /* the fp32 product, cast to the query dtype (the contract's rounding point) */
        for (int d = 0; d < 512; d++)
            k[d] = to_dtype((float)(int8_t)row[d] * sc[d / 128], c->q->dtype);
        for (int d = 0; d < 64; d++) {
            uint16_t h;
            memcpy(&h, row + 512 + 2 * d, 2);
            k[512 + d] = fia_bf16_to_f32(h);
        }
        return;
    }
    for (int d = 0; d < 512; d++) {
        co[nd] = d;
        k[d] = fia_ref_at(c->k, co);
    }
    for (int d = 0; d < 64; d++) {
        co[nd] = d;
        k[512 + d] = fia_ref_at(c->kr, co);
    }
}

static int run(const ref_call *c, const int64_t *rows, int64_t n_rows, double *out, double *lse,
               double *smax, double *ssum, double *slack) {
    const fia_sparse_flash_attention_params *p = c->p;
    const int qtnd = p->layout_query == FIA_LAYOUT_TND;
    const int64_t N1 = qtnd ? c->q->shape[1] : c->q->shape[2];
    const int64_t S1 = qtnd ? c->q->shape[0] : c->q->shape[1];
    const int64_t B = qtnd ? p->actual_seq_lengths_query_count : c->q->shape[0];
    const int64_t K = qtnd ? c->idx->shape[2] : c->idx->shape[3];
    const int64_t sbs = p->sparse_block_size;
    const int64_t total = qtnd ? S1 : B * S1;
    int64_t *qlen = calloc((size_t)B, sizeof *qlen), *qst = calloc((size_t)B, sizeof *qst);
    int64_t *klen = calloc((size_t)B, sizeof *klen), *kst = calloc((size_t)B, sizeof *kst);
    int64_t *toks = malloc((size_t)(K * sbs + 1) * sizeof *toks);
    double *kv = NULL, *sc = NULL;
    double *q = malloc((size_t)N1 * 576 * sizeof *q);
    int rc = -1;
    if (!qlen || !qst || !klen || !kst || !toks || !q) goto done;
    const int64_t kvS = p->layout_kv == FIA_LAYOUT_PA_BSND ? 0
                        : p->layout_kv == FIA_LAYOUT_TND  ? c->k->shape[0] : c->k->shape[1];
    if (lengths(p->actual_seq_lengths_query, p->actual_seq_lengths_query_count, qtnd, B, S1, qlen,
                qst) ||
        lengths(p->actual_seq_lengths_kv, p->actual_seq_lengths_kv_count,
                p->layout_kv == FIA_LAYOUT_TND, B, kvS, klen, kst)) {
        fprintf(stderr, "ref_sfa: bad lengths\n");
        goto done;
    }
    const int64_t nr = rows ? n_rows : total;
    for (int64_t rr = 0; rr < nr; rr++) {
        const int64_t row = rows ? rows[rr] : rr;
        double *o = out + rr * N1 * 512;
        for (int64_t x = 0; x < N1 * 512; x++) o[x] = 0.0;
        if (slack)
            for (int64_t x = 0; x < N1 * 512; x++) slack[rr * N1 * 512 + x] = 0.0;
        for (int64_t h = 0; h < N1; h++) {
            if (lse) lse[rr * N1 + h] = INFINITY;
            if (smax) smax[rr * N1 + h] = 0.0;
            if (ssum) ssum[rr * N1 + h] = 0.0;
        }
        /* batch and position */
        int64_t b = -1, i = 0;
        if (qtnd) {
            for (int64_t x = 0; x < B; x++)
                if (row >= qst[x] && row < qst[x] + qlen[x]) {
                    b = x;
                    i = row - qst[x];
                    break;
                }
        } else {
            b = row / S1;
            i = row % S1;
            if (i >= qlen[b]) b = -1;
        }
        if (b < 0) continue;
        int64_t thr = klen[b];
        if (p->sparse_mode == 3) {
            const int64_t t3 = klen[b] - qlen[b] + i + 1;
            if (t3 < thr) thr = t3;
        }
        /* the selected tokens */
        int64_t n = 0;
        for (int64_t e = 0; e < K; e++) {
            int64_t ic[4];
            if (qtnd) { ic[0] = row; ic[1] = 0; ic[2] = e; }
            else { ic[0] = b; ic[1] = i; ic[2] = 0; ic[3] = e; }
            const int64_t v = (int64_t)fia_ref_at(c->idx, ic);
            if (v == -1) break;
            if (v < -1) continue;
            for (int64_t t = v * sbs; t < (v + 1) * sbs && t < thr; t++) toks[n++] = t;
        }
        if (n == 0) continue;
        free(kv);
        free(sc);
        kv = malloc((size_t)(n * 576) * sizeof *kv);
        sc = malloc((size_t)(n * N1) * sizeof *sc);
        if (!kv || !sc) {
            fprintf(stderr, "ref_sfa: out of memory\n");
            goto done;
        }
        for (int64_t j = 0; j < n; j++) key_vec(c, b, kst[b], toks[j], kv + j * 576);
        /* query rows */
        for (int64_t h = 0; h < N1; h++)
            for (int d = 0; d < 576; d++) {
                int64_t qc[4];
                const fia_tensor *src = c->q;
                int64_t dd = d;
                if (!c->c8 && d >= 512) {
                    src = c->qr;
                    dd = d - 512;
                }
                if (qtnd) { qc[0] = row; qc[1] = h; qc[2] = dd; }
                else { qc[0] = b; qc[1] = i; qc[2] = h; qc[3] = dd; }
                q[h * 576 + d] = fia_ref_at(src, qc);
            }
        for (int64_t h = 0; h < N1; h++) {
            double mx = -INFINITY;
            double *s = sc + h * n;
            for (int64_t j = 0; j < n; j++) {
                double acc = 0.0;
                for (int d = 0; d < 576; d++) acc += q[h * 576 + d] * kv[j * 576 + d];
                s[j] = p->scale_value * acc;
                if (s[j] > mx) mx = s[j];
            }
            double sink = -INFINITY;
            if (c->sinks) {
                const int64_t hc[1] = {h};
                sink = fia_ref_at(c->sinks, hc);
                if (sink > mx) mx = sink;
            }
            double sum = exp(sink - mx);
            for (int64_t j = 0; j < n; j++) sum += exp(s[j] - mx);
            /* C8: P cast to the query dtype, as fia.h states it: the mantissa of exp(s - mx)
             * rounded independently of the max (exp(s - k ln2), k = round(mx / ln2)) */
            const double g = nearbyint(mx / 0.69314718055994530942) * 0.69314718055994530942;
            for (int64_t j = 0; j < n; j++) {
                double w = exp(s[j] - mx) / sum;
                if (c->c8) w = to_dtype(exp(s[j] - g), c->q->dtype) * exp(g - mx) / sum;
                for (int d = 0; d < 512; d++) o[h * 512 + d] += w * kv[j * 576 + d];
                if (slack && c->c8) { /* one query-dtype ulp of this probability */
                    const double ulp = w * (c->q->dtype == FIA_DTYPE_FLOAT16 ? 0x1p-10 : 0x1p-7);
                    for (int d = 0; d < 512; d++) {
                        double *sl = slack + rr * N1 * 512 + h * 512 + d;
                        const double e = ulp * fabs(kv[j * 576 + d]);
                        if (e > *sl) *sl = e;
                    }
                }
            }
            if (lse) lse[rr * N1 + h] = mx + log(sum);
            if (smax) smax[rr * N1 + h] = mx;
            if (ssum) ssum[rr * N1 + h] = sum;
        }
    }
    rc = 0;
done:
    free(qlen);
    free(qst);
    free(klen);
    free(kst);
    free(toks);
    free(kv);
    free(sc);
    free(q);
    return rc;
}

int fia_ref_sparse_flash_attention(const fia_sparse_flash_attention_tensors *t,
                                   const fia_sparse_flash_attention_params *p,
                                   const int64_t *rows, int64_t n_rows, double *out, double *lse) {
    const ref_call c = {t->query, t->query_rope, t->key, t->key_rope, t->sparse_indices,
                        t->block_table, t->attention_out, t->sinks, p, 0};
    return run(&c, rows, n_rows, out, lse, NULL, NULL, NULL);
}

int fia_ref_sparse_flash_attention_stats(const fia_sparse_flash_attention_tensors *t,
                                         const fia_sparse_flash_attention_params *p,
                                         const int64_t *rows, int64_t n_rows, double *out,
                                         double *lse, double *smax, double *ssum) {
    const ref_call c = {t->query, t->query_rope, t->key, t->key_rope, t->sparse_indices,
                        t->block_table, t->attention_out, t->sinks, p, 0};
    return run(&c, rows, n_rows, out, lse, smax, ssum, NULL);
}

int fia_ref_kv_quant_sparse_flash_attention(
    const fia_kv_quant_sparse_flash_attention_tensors *t,
    const fia_kv_quant_sparse_flash_attention_params *p, const int64_t *rows, int64_t n_rows,
    double *out, double *lse) {
    const ref_call c = {t->query, NULL, t->key, NULL, t->sparse_indices, t->block_table,
                        t->attention_out, t->sinks, &p->base, 1};
    return run(&c, rows, n_rows, out, lse, NULL, NULL, NULL);
}

int fia_ref_kv_quant_sparse_flash_attention_stats(
    const fia_kv_quant_sparse_flash_attention_tensors *t,
    const fia_kv_quant_sparse_flash_attention_params *p, const int64_t *rows, int64_t n_rows,
    double *out, double *lse, double *smax, double *ssum, double *slack) {
    const ref_call c = {t->query, NULL, t->key, NULL, t->sparse_indices, t->block_table,
                        t->attention_out, t->sinks, &p->base, 1};
    return run(&c, rows, n_rows, out, lse, smax, ssum, slack);
}
