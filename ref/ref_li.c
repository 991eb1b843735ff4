/*
 * ref_li.c - the double-precision oracle of the lightning indexer (see ref_li.h). Nothing here is
 * shared with src/.
 */
#include "ref_li.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_util.h"

/* Where row r lives: batch b, position i within the batch, token along the query's token dim,
 * the batch's query and key lengths and its first key token (TND keys). b = -1: padding row. */
typedef struct li_where {
    int64_t b, i, tok, sq, skv, kv0;
} li_where;

static int64_t li_B(const fia_lightning_indexer_tensors *t, const fia_lightning_indexer_params *prm) {
    return prm->layout_query == FIA_LAYOUT_TND ? prm->actual_seq_lengths_query_count
                                               : t->query->shape[0];
}

/* Length of batch b from a per-batch list (NULL: full; count 1 broadcasts). */
static int64_t li_len(const int64_t *v, int64_t count, int64_t b, int64_t full) {
    if (!v || count == 0) return full;
    return v[count == 1 ? 0 : b];
}

static li_where li_locate(const fia_lightning_indexer_tensors *t,
                          const fia_lightning_indexer_params *prm, int64_t r) {
    li_where w = {-1, 0, r, 0, 0, 0};
    const int64_t B = li_B(t, prm);
    if (prm->layout_query == FIA_LAYOUT_TND) {
        int64_t start = 0;
        for (int64_t b = 0; b < B; b++) {
            const int64_t end = prm->actual_seq_lengths_query[b];
            if (r >= start && r < end) {
                w.b = b;
                w.i = r - start;
                w.sq = end - start;
                break;
            }
            start = end;
        }
    } else {
        const int64_t S1 = t->query->shape[1];
        w.b = r / S1;
        w.i = r % S1;
        w.tok = w.i;
        w.sq = li_len(prm->actual_seq_lengths_query, prm->actual_seq_lengths_query_count, w.b, S1);
        if (w.i >= w.sq) w.b = -1;
    }
    if (w.b < 0) return w;
    if (prm->layout_key == FIA_LAYOUT_TND) {
        w.kv0 = w.b == 0 ? 0 : prm->actual_seq_lengths_key[w.b - 1];
        w.skv = prm->actual_seq_lengths_key[w.b] - w.kv0;
    } else if (prm->layout_key == FIA_LAYOUT_PA_BSND) {
        w.skv = li_len(prm->actual_seq_lengths_key, prm->actual_seq_lengths_key_count, w.b, 0);
    } else {
        w.skv = li_len(prm->actual_seq_lengths_key, prm->actual_seq_lengths_key_count, w.b,
                       t->key->shape[1]);
    }
    return w;
}

int64_t fia_ref_li_num_rows(const fia_lightning_indexer_tensors *t,
                            const fia_lightning_indexer_params *prm) {
    return prm->layout_query == FIA_LAYOUT_TND ? t->query->shape[0]
                                               : t->query->shape[0] * t->query->shape[1];
}

/* Key-side element (key row j of batch b, dim c; c = -1 for a scale tensor). */
static double li_key_at(const fia_lightning_indexer_tensors *t,
                        const fia_lightning_indexer_params *prm, const fia_tensor *x,
                        const li_where *w, int64_t j, int64_t c) {
    int64_t co[4] = {0, 0, 0, 0};
    if (prm->layout_key == FIA_LAYOUT_PA_BSND) {
        const int64_t bs = t->key->shape[1];
        const int64_t bt[2] = {w->b, j / bs};
        co[0] = (int64_t)fia_ref_at(t->block_table, bt);
        co[1] = j % bs;
        co[3] = c; /* [blocks, bs, 1, D] or scale [blocks, bs, 1] */
    } else if (prm->layout_key == FIA_LAYOUT_TND) {
        co[0] = w->kv0 + j;
        co[2] = c; /* [T2, 1, D] or scale [T2, 1] */
    } else {
        co[0] = w->b;
        co[1] = j;
        co[3] = c; /* [B, S2, 1, D] or scale [B, S2, 1] */
    }
    return fia_ref_at(x, co);
}

/* Query-side element (head h, dim c; c = -1 for weights and query scale). */
static double li_query_at(const fia_lightning_indexer_params *prm, const fia_tensor *x,
                          const li_where *w, int64_t h, int64_t c) {
    int64_t co[4];
    if (prm->layout_query == FIA_LAYOUT_TND) {
        co[0] = w->tok;
        co[1] = h;
        co[2] = c;
    } else {
        co[0] = w->b;
        co[1] = w->tok;
        co[2] = h;
        co[3] = c;
    }
    return fia_ref_at(x, co);
}

int64_t fia_ref_li_row_scores(const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, int quant, int64_t r,
                              double *scores, double *tol) {
    const li_where w = li_locate(t, prm, r);
    if (w.b < 0) return 0;
    int64_t n = w.skv;
    if (prm->sparse_mode == 3) {
        const int64_t last = w.skv - w.sq + w.i; /* keys j <= last */
        n = last + 1 < 0 ? 0 : last + 1 > w.skv ? w.skv : last + 1;
    }
    const fia_tensor *q = t->query;
    const int64_t N1 = q->shape[q->ndim - 2], D = q->shape[q->ndim - 1];
    /* quant, exact_ranking 0: the contract's fp16 rounding points (fia.h) */
    const int f16 = quant && !prm->exact_ranking;
    for (int64_t j = 0; j < n; j++) {
        double s = 0.0, mag = 0.0;
        const double sk = quant ? li_key_at(t, prm, t->key_dequant_scale, &w, j, -1) : 1.0;
        for (int64_t h = 0; h < N1; h++) {
            double dot = 0.0, adot = 0.0;
            for (int64_t c = 0; c < D; c++) {
                const double x = li_query_at(prm, q, &w, h, c) * li_key_at(t, prm, t->key, &w, j, c);
                dot += x;
                adot += fabs(x);
            }
            double f = li_query_at(prm, t->weights, &w, h, -1);
            double rl = dot > 0.0 ? dot : 0.0;
            if (f16) {
                /* w~ = fp16(w * sq) (fp32 product), S' = fp16(ReLU(dot) / 1024), 1024 sk */
                const float wsq = (float)f * (float)li_query_at(prm, t->query_dequant_scale, &w, h, -1);
                f = fia_f16_to_f32(fia_f32_to_f16(wsq)) * 1024.0 * sk;
                rl = fia_f16_to_f32(fia_f32_to_f16((float)rl / 1024.0f));
            } else if (quant) {
                f *= li_query_at(prm, t->query_dequant_scale, &w, h, -1) * sk;
            }
            s += f * rl;
            mag += fabs(f) * (quant ? rl : adot);
        }
        scores[j] = s;
        if (tol) tol[j] = 2e-5 * mag;
    }
    return n;
}

/* Stable merge sort of order[] by descending score, NaN last. */
static int li_before(double a, double b) { /* a strictly better than b */
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    return a > b;
}

static void li_msort(const double *s, int32_t *o, int32_t *tmp, int64_t n) {
    if (n < 2) return;
    const int64_t h = n / 2;
    li_msort(s, o, tmp, h);
    li_msort(s, o + h, tmp, n - h);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = li_before(s[o[j]], s[o[i]]) ? o[j++] : o[i++];
    while (i < h) tmp[k++] = o[i++];
    while (j < n) tmp[k++] = o[j++];
    memcpy(o, tmp, (size_t)n * sizeof *o);
}

void fia_ref_li_sort(const double *scores, int64_t n, int32_t *order) {
    for (int64_t i = 0; i < n; i++) order[i] = (int32_t)i;
    int32_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp) { /* insertion sort: still stable */
        for (int64_t i = 1; i < n; i++) {
            const int32_t x = order[i];
            int64_t j = i;
            while (j > 0 && li_before(scores[x], scores[order[j - 1]])) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
        return;
    }
    li_msort(scores, order, tmp, n);
    free(tmp);
}

int fia_ref_lightning_indexer(const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, int quant, int32_t *idx,
                              double *val) {
    const int64_t rows = fia_ref_li_num_rows(t, prm), K = prm->sparse_count;
    int64_t maxkv = 1;
    for (int64_t r = 0; r < rows; r++) {
        const li_where w = li_locate(t, prm, r);
        if (w.b >= 0 && w.skv > maxkv) maxkv = w.skv;
    }
    double *s = malloc((size_t)maxkv * sizeof *s);
    int32_t *o = malloc((size_t)maxkv * sizeof *o);
    if (!s || !o) {
        free(s);
        free(o);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t n = fia_ref_li_row_scores(t, prm, quant, r, s, NULL);
        fia_ref_li_sort(s, n, o);
        for (int64_t i = 0; i < K; i++) {
            idx[r * K + i] = i < n ? o[i] : -1;
            if (val) val[r * K + i] = i < n ? s[o[i]] : -INFINITY;
        }
    }
    free(s);
    free(o);
    return 0;
}
