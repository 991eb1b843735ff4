/*
 * ref_smallq.c - the double-precision oracle of smallq_flash_attention (see ref_smallq.h),
 * straight from the contract: per head, scores s[i][j] = (q_i . k_j) / sqrt(D) in double, a
 * two-pass softmax over all kvLen keys (no mask), and O[i] = sum_j p[i][j] v_j / sum_j p[i][j].
 * Nothing here is shared with src/.
 */
#include "ref_smallq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* fp16 -> double for all 65536 encodings (from the public conversion), so that the oracle's
 * reads cost a table lookup. */
typedef struct sq_reader {
    const fia_tensor *t;
    const double *f16; /* the fp16 table (used when t is float16) */
} sq_reader;

/* Element at offset off (in elements) of a float tensor, as double. */
static double sq_read(const sq_reader *r, int64_t off) {
    const char *p = (const char *)r->t->data;
    uint16_t h;
    float f;
    switch (r->t->dtype) {
    case FIA_DTYPE_FLOAT16:
        memcpy(&h, p + off * 2, 2);
        return r->f16[h];
    case FIA_DTYPE_BFLOAT16:
        memcpy(&h, p + off * 2, 2);
        return fia_bf16_to_f32(h);
    case FIA_DTYPE_FLOAT32:
        memcpy(&f, p + off * 4, 4);
        return f;
    default: return NAN;
    }
}

/* Reads row s of head h (D elements) into dst. */
static void sq_row(const sq_reader *r, int64_t h, int64_t s, double *dst) {
    const fia_tensor *t = r->t;
    const int64_t base = h * t->strides[0] + s * t->strides[1];
    for (int64_t d = 0; d < t->shape[2]; d++) dst[d] = sq_read(r, base + d * t->strides[2]);
}

/* q . k in double, four partial sums (the order of a double sum of D products does not matter
 * at the tolerances checked). */
static double sq_dot(const double *a, const double *b, int64_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t d = 0;
    for (; d + 4 <= n; d += 4) {
        s0 += a[d] * b[d];
        s1 += a[d + 1] * b[d + 1];
        s2 += a[d + 2] * b[d + 2];
        s3 += a[d + 3] * b[d + 3];
    }
    for (; d < n; d++) s0 += a[d] * b[d];
    return (s0 + s1) + (s2 + s3);
}

static int sq_fail(const char *what, long long a, long long b) {
    fprintf(stderr, "fia_ref_smallq_flash_attention: %s (%lld, %lld)\n", what, a, b);
    return -1;
}

static int sq_usable(const fia_tensor *t, const char *name) {
    if (t == NULL || t->data == NULL) {
        fprintf(stderr, "fia_ref_smallq_flash_attention: %s is NULL\n", name);
        return 0;
    }
    if (t->ndim != 3) {
        fprintf(stderr, "fia_ref_smallq_flash_attention: %s has %d dims, expected 3\n", name,
                (int)t->ndim);
        return 0;
    }
    if (t->dtype != FIA_DTYPE_FLOAT16 && t->dtype != FIA_DTYPE_BFLOAT16 &&
        t->dtype != FIA_DTYPE_FLOAT32) {
        fprintf(stderr, "fia_ref_smallq_flash_attention: %s dtype %s is not a float dtype\n", name,
                fia_dtype_name(t->dtype));
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        if (t->shape[i] < 1 || t->strides[i] < 0) {
            fprintf(stderr, "fia_ref_smallq_flash_attention: %s dim %d is %lld (stride %lld)\n",
                    name, i, (long long)t->shape[i], (long long)t->strides[i]);
            return 0;
        }
    }
    return 1;
}

int fia_ref_smallq_flash_attention(const fia_tensor *q, const fia_tensor *k, const fia_tensor *v,
                                   const int64_t *heads, int64_t num_heads_to_check, double *out) {
    if (!sq_usable(q, "Q") || !sq_usable(k, "K") || !sq_usable(v, "V")) return -1;
    if (out == NULL) return sq_fail("out is NULL", 0, 0);
    const int64_t N = q->shape[0], S1 = q->shape[1], D = q->shape[2], S2 = k->shape[1];
    if (k->shape[0] != N || v->shape[0] != N) return sq_fail("numHeads differ", k->shape[0], N);
    if (k->shape[2] != D || v->shape[2] != D) return sq_fail("headDim differs", k->shape[2], D);
    if (v->shape[1] != S2) return sq_fail("kvLen of V differs from K", v->shape[1], S2);
    const int64_t count = heads == NULL ? N : num_heads_to_check;
    if (count < 0) return sq_fail("negative head count", count, 0);
    for (int64_t i = 0; heads != NULL && i < count; i++)
        if (heads[i] < 0 || heads[i] >= N) return sq_fail("head out of range", heads[i], N);

    double *f16 = malloc(65536 * sizeof *f16);
    double *qd = malloc((size_t)(S1 * D) * sizeof *qd);
    double *row = malloc((size_t)D * sizeof *row);
    double *p = malloc((size_t)(S1 * S2) * sizeof *p); /* scores, then weights; [S2][S1] */
    double *sum = malloc((size_t)S1 * sizeof *sum);
    if (f16 == NULL || qd == NULL || row == NULL || p == NULL || sum == NULL) {
        free(f16);
        free(qd);
        free(row);
        free(p);
        free(sum);
        return sq_fail("out of memory", S1, S2);
    }
    for (uint32_t i = 0; i < 65536; i++) f16[i] = fia_f16_to_f32((uint16_t)i);
    const sq_reader rq = {q, f16}, rk = {k, f16}, rv = {v, f16};
    const double scale = 1.0 / sqrt((double)D);
    for (int64_t hi = 0; hi < count; hi++) {
        const int64_t h = heads == NULL ? hi : heads[hi];
        double *o = out + hi * S1 * D;
        for (int64_t i = 0; i < S1; i++) sq_row(&rq, h, i, qd + i * D);
        /* Scores, one key row at a time (each K element read once). */
        for (int64_t j = 0; j < S2; j++) {
            sq_row(&rk, h, j, row);
            for (int64_t i = 0; i < S1; i++) p[j * S1 + i] = sq_dot(qd + i * D, row, D) * scale;
        }
        /* Softmax over all keys: max, exp, sum. */
        for (int64_t i = 0; i < S1; i++) {
            double m = -INFINITY;
            for (int64_t j = 0; j < S2; j++)
                if (p[j * S1 + i] > m) m = p[j * S1 + i];
            double s = 0.0;
            for (int64_t j = 0; j < S2; j++) {
                const double e = exp(p[j * S1 + i] - m);
                p[j * S1 + i] = e;
                s += e;
            }
            sum[i] = s;
        }
        /* O = P . V / sum, one value row at a time. */
        memset(o, 0, (size_t)(S1 * D) * sizeof *o);
        for (int64_t j = 0; j < S2; j++) {
            sq_row(&rv, h, j, row);
            for (int64_t i = 0; i < S1; i++) {
                const double w = p[j * S1 + i];
                double *oi = o + i * D;
                for (int64_t d = 0; d < D; d++) oi[d] += w * row[d];
            }
        }
        for (int64_t i = 0; i < S1; i++)
            for (int64_t d = 0; d < D; d++) o[i * D + d] /= sum[i];
    }
    free(f16);
    free(qd);
    free(row);
    free(p);
    free(sum);
    return 0;
}
