/*
 * ref_mla.c - the MLA oracle (see ref_mla.h).
 */
#include "ref_mla.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_fia.h"
#include "ref_util.h"

enum { DN = 512, DR = 64 };

/* Element d of head h at query token (b, s) of a query-side tensor (query, query_rope, out) in
 * layout l with width w (TND: s is the global token, b unused). */
static int64_t q_index(const fia_tensor *t, fia_layout l, int64_t b, int64_t s, int64_t h,
                       int64_t d, int64_t w) {
    int64_t c[4];
    switch (l) {
    case FIA_LAYOUT_BSH: c[0] = b; c[1] = s; c[2] = h * w + d; break;
    case FIA_LAYOUT_BSND: c[0] = b; c[1] = s; c[2] = h; c[3] = d; break;
    case FIA_LAYOUT_BNSD: c[0] = b; c[1] = h; c[2] = s; c[3] = d; break;
    case FIA_LAYOUT_TND_NTD: /* output only: [N, T, D] */ c[0] = h; c[1] = s; c[2] = d; break;
    default: c[0] = s; c[1] = h; c[2] = d; break; /* TND */
    }
    return fia_ref_index(t, c);
}

typedef struct cache_ctx {
    const fia_tensor *bt;
    int64_t bs;
    fia_layout layout; /* query layout for dense caches */
} cache_ctx;

/* Element d (< w) of kv token j of batch b (dense: absolute token j0 + j). */
static double kv_at(const fia_tensor *t, const cache_ctx *cc, int64_t b, int64_t tok, int64_t d,
                    int64_t w) {
    int64_t c[5];
    if (cc->bt) {
        const int64_t bc[2] = {b, tok / cc->bs};
        const int64_t blk = (int64_t)fia_ref_at(cc->bt, bc);
        const int64_t row = tok % cc->bs;
        if (t->ndim == 5) {
            const int64_t cw = t->shape[4];
            c[0] = blk; c[1] = 0; c[2] = d / cw; c[3] = row; c[4] = d % cw;
        } else if (t->ndim == 4) {
            c[0] = blk; c[1] = row; c[2] = 0; c[3] = d;
        } else {
            c[0] = blk; c[1] = row; c[2] = d;
        }
        return fia_ref_at(t, c);
    }
    switch (cc->layout) {
    case FIA_LAYOUT_BSH: c[0] = b; c[1] = tok; c[2] = d; break;
    case FIA_LAYOUT_BSND: c[0] = b; c[1] = tok; c[2] = 0; c[3] = d; break;
    case FIA_LAYOUT_BNSD: c[0] = b; c[1] = 0; c[2] = tok; c[3] = d; break;
    default: c[0] = tok; c[1] = 0; c[2] = d; break;
    }
    (void)w;
    return fia_ref_at(t, c);
}

int fia_ref_mla(const fia_fused_infer_attention_score_tensors *t,
                const fia_fused_infer_attention_score_params *prm, double *out, double *lse) {
    const fia_layout layout = prm->input_layout;
    const int tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_TND_NTD;
    const fia_layout in_l = tnd ? FIA_LAYOUT_TND : layout;
    const int64_t N = prm->num_heads;
    const fia_tensor *q = t->query, *o = t->attention_out;
    const int quant = t->key->dtype == FIA_DTYPE_INT8;
    int64_t B, S1;
    if (tnd) {
        B = prm->actual_seq_lengths_count;
        S1 = q->shape[0];
    } else {
        B = q->shape[0];
        S1 = in_l == FIA_LAYOUT_BNSD ? q->shape[2] : q->shape[1];
    }
    if (B < 1 || N < 1) {
        fprintf(stderr, "fia_ref_mla: batch %lld, heads %lld\n", (long long)B, (long long)N);
        return -1;
    }
    int64_t total = 1;
    for (int32_t d = 0; d < o->ndim; d++) total *= o->shape[d];
    memset(out, 0, (size_t)total * sizeof *out);
    if (lse)
        for (int64_t i = 0; i < (tnd ? S1 : B * S1) * N; i++) lse[i] = INFINITY;

    const double sk = quant ? fia_ref_load(t->dequant_scale_key, 0) : 1.0;
    const double sv = quant ? fia_ref_load(t->dequant_scale_value, 0) : 1.0;
    const cache_ctx cc = {t->block_table, prm->block_size, in_l};
    const int64_t kS = t->block_table ? 0 : in_l == FIA_LAYOUT_BNSD ? t->key->shape[2]
                                            : tnd ? t->key->shape[0] : t->key->shape[1];
    double *qv = malloc(sizeof(double) * (DN + DR)), *sc = NULL, *acc = malloc(sizeof(double) * DN);
    double *kd = NULL, *vd = NULL;
    int64_t q0 = 0, k0 = 0;
    int rc = 0;
    for (int64_t b = 0; b < B && rc == 0; b++) {
        int64_t sq, skv, kv_base = 0;
        if (tnd) {
            const int64_t qe = prm->actual_seq_lengths[b];
            sq = qe - q0;
        } else if (S1 == 1) {
            sq = 1;
        } else if (prm->actual_seq_lengths && prm->actual_seq_lengths_count > 0) {
            sq = prm->actual_seq_lengths[prm->actual_seq_lengths_count == 1 ? 0 : b];
        } else {
            sq = S1;
        }
        if (tnd && !t->block_table) {
            const int64_t ke = prm->actual_seq_lengths_kv[b];
            skv = ke - k0;
            kv_base = k0;
            k0 = ke;
        } else if (prm->actual_seq_lengths_kv && prm->actual_seq_lengths_kv_count > 0) {
            skv = prm->actual_seq_lengths_kv[prm->actual_seq_lengths_kv_count == 1 ? 0 : b];
        } else {
            skv = kS;
        }
        free(sc);
        sc = malloc(sizeof(double) * (size_t)(skv > 0 ? skv : 1));
        /* the batch's keys and values, dequantized once: kd [skv][576], vd [skv][512] */
        free(kd);
        free(vd);
        kd = malloc(sizeof(double) * (size_t)(skv > 0 ? skv : 1) * (DN + DR));
        vd = malloc(sizeof(double) * (size_t)(skv > 0 ? skv : 1) * DN);
        if (!sc || !kd || !vd) {
            fprintf(stderr, "fia_ref_mla: out of memory\n");
            rc = -1;
            break;
        }
        for (int64_t j = 0; j < skv; j++) {
            for (int64_t d = 0; d < DN; d++) {
                kd[j * (DN + DR) + d] = kv_at(t->key, &cc, b, kv_base + j, d, DN) * sk;
                vd[j * DN + d] = kv_at(t->value, &cc, b, kv_base + j, d, DN) * sv;
            }
            for (int64_t d = 0; d < DR; d++)
                kd[j * (DN + DR) + DN + d] = kv_at(t->key_rope, &cc, b, kv_base + j, d, DR);
        }
        for (int64_t i = 0; i < sq; i++) {
            const int64_t tok = tnd ? q0 + i : i;
            int64_t last = skv - 1;
            if (prm->sparse_mode == 3 && i + skv - sq < last) last = i + skv - sq;
            for (int64_t h = 0; h < N; h++) {
                const int64_t qb = tnd ? 0 : b;
                double sqs = 1.0;
                if (quant) {
                    const fia_tensor *s = t->dequant_scale_query;
                    int64_t c[4] = {0, 0, 0, 0};
                    if (tnd) { c[0] = tok; c[1] = h; } else { c[0] = b; c[1] = tok; c[2] = h; }
                    sqs = fia_ref_at(s, c);
                }
                for (int64_t d = 0; d < DN; d++)
                    qv[d] = fia_ref_load(q, q_index(q, in_l, qb, tok, h, d, DN)) * sqs;
                for (int64_t d = 0; d < DR; d++)
                    qv[DN + d] = fia_ref_load(t->query_rope,
                                              q_index(t->query_rope, in_l, qb, tok, h, d, DR));
                double mx = -INFINITY;
                for (int64_t j = 0; j <= last; j++) {
                    double s = 0.0;
                    for (int64_t d = 0; d < DN + DR; d++) s += qv[d] * kd[j * (DN + DR) + d];
                    sc[j] = s * prm->scale;
                    if (sc[j] > mx) mx = sc[j];
                }
                if (last < 0) continue; /* no visible key: 0 and +inf */
                double sum = 0.0;
                for (int64_t j = 0; j <= last; j++) {
                    sc[j] = exp(sc[j] - mx);
                    sum += sc[j];
                }
                memset(acc, 0, sizeof(double) * DN);
                for (int64_t j = 0; j <= last; j++)
                    for (int64_t d = 0; d < DN; d++) acc[d] += sc[j] * vd[j * DN + d];
                for (int64_t d = 0; d < DN; d++)
                    out[q_index(o, layout == FIA_LAYOUT_TND_NTD ? layout : in_l, qb, tok, h, d,
                                DN)] = acc[d] / sum;
                if (lse) lse[tnd ? tok * N + h : (b * N + h) * S1 + i] = mx + log(sum);
            }
        }
        if (tnd) q0 = prm->actual_seq_lengths[b];
    }
    free(qv);
    free(sc);
    free(acc);
    free(kd);
    free(vd);
    return rc;
}
