/* ref_chain.c - the oracles of ref_chain.h, straight from the contracts, in double. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_chain.h"
#include "ref_util.h"

/* Coordinates of logical index i over shape[0..nd). */
static void ref_coords(const int64_t *shape, int32_t nd, int64_t i, int64_t *c) {
    for (int32_t d = nd - 1; d >= 0; d--) {
        c[d] = shape[d] > 0 ? i % shape[d] : 0;
        i = shape[d] > 0 ? i / shape[d] : 0;
    }
}

static int64_t ref_numel(const fia_tensor *t) {
    int64_t n = 1;
    for (int32_t d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* Element of t at coordinates c of a tensor it broadcasts to (size-1 dims read index 0). */
static double ref_bcast(const fia_tensor *t, const int64_t *c) {
    int64_t cc[FIA_MAX_DIMS];
    for (int32_t d = 0; d < t->ndim; d++) cc[d] = t->shape[d] == 1 ? 0 : c[d];
    return fia_ref_at(t, cc);
}

static double ref_round_to(double v, fia_dtype dt) {
    switch (dt) {
    case FIA_DTYPE_FLOAT16: return fia_f16_to_f32(fia_f32_to_f16((float)v));
    case FIA_DTYPE_BFLOAT16: return fia_bf16_to_f32(fia_f32_to_bf16((float)v));
    case FIA_DTYPE_FLOAT32: return (float)v;
    default: return v;
    }
}

void fia_ref_rms_norm(const fia_tensor *x1, const fia_tensor *x2, const fia_tensor *gamma,
                      double eps, double *y, double *rstd, double *xsum) {
    int64_t n = 1;
    for (int32_t d = 0; d < gamma->ndim; d++) n *= gamma->shape[d];
    const int64_t total = ref_numel(x1), rows = n > 0 ? total / n : 0;
    double *row = malloc((size_t)(n > 0 ? n : 1) * sizeof *row);
    int64_t c[FIA_MAX_DIMS];
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < n; j++) {
            ref_coords(x1->shape, x1->ndim, r * n + j, c);
            double v = fia_ref_at(x1, c);
            if (x2) v = ref_round_to(v + fia_ref_at(x2, c), x1->dtype);
            row[j] = v;
            if (xsum) xsum[r * n + j] = v;
            ss += v * v;
        }
        const double rs = 1.0 / sqrt(ss / (double)n + eps);
        if (rstd) rstd[r] = rs;
        for (int64_t j = 0; j < n; j++) y[r * n + j] = row[j] * rs * fia_ref_load(gamma, j);
    }
    free(row);
}

void fia_ref_rope(const fia_tensor *x, const fia_tensor *cos, const fia_tensor *sin, int mode,
                  double *y) {
    const int32_t nd = x->ndim;
    const int64_t d = x->shape[nd - 1], h = d / 2, total = ref_numel(x);
    double *q = malloc((size_t)(d > 0 ? d : 1) * sizeof *q);
    int64_t c[FIA_MAX_DIMS];
    for (int64_t r = 0; d > 0 && r < total / d; r++) {
        for (int64_t j = 0; j < d; j++) {
            ref_coords(x->shape, nd, r * d + j, c);
            q[j] = fia_ref_at(x, c);
        }
        if (mode == 2) { /* de-interleave: evens first, then odds */
            double *t = malloc((size_t)d * sizeof *t);
            for (int64_t j = 0; j < h; j++) t[j] = q[2 * j], t[h + j] = q[2 * j + 1];
            memcpy(q, t, (size_t)d * sizeof *t);
            free(t);
        }
        for (int64_t j = 0; j < d; j++) {
            ref_coords(x->shape, nd, r * d + j, c);
            double rot;
            if (mode == 1) rot = (j % 2 == 0) ? -q[j + 1] : q[j - 1];
            else rot = j < h ? -q[j + h] : q[j - h];
            y[r * d + j] = q[j] * ref_bcast(cos, c) + rot * ref_bcast(sin, c);
        }
    }
    free(q);
}

static double ref_rint_even(double v) {
    const double f = floor(v), diff = v - f;
    if (diff > 0.5) return f + 1;
    if (diff < 0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1;
}

void fia_ref_dynamic_quant(const fia_tensor *x, const fia_tensor *smooth,
                           const fia_tensor *group_index, int mode, double dst_max, double *q,
                           double *quot, double *scale) {
    const int32_t nd = x->ndim;
    const int64_t H = x->shape[nd - 1], total = ref_numel(x), rows = H > 0 ? total / H : 0;
    const int64_t R = nd >= 2 ? x->shape[nd - 2] : 1;
    double *v = malloc((size_t)(total > 0 ? total : 1) * sizeof *v);
    int64_t c[FIA_MAX_DIMS];
    for (int64_t i = 0; i < total; i++) {
        ref_coords(x->shape, nd, i, c);
        const int64_t row = i / H, col = i % H;
        double s = 1.0;
        if (smooth && mode == 2) {
            s = fia_ref_load(smooth, row % R);
        } else if (smooth && group_index) {
            int64_t e = 0;
            const int64_t E = smooth->shape[0];
            while (e < E - 1 && fia_ref_load(group_index, e) <= row) e++;
            s = fia_ref_load(smooth, e * H + col);
        } else if (smooth) {
            s = fia_ref_load(smooth, col);
        }
        v[i] = fia_ref_at(x, c) * s;
    }
    /* scales */
    int64_t nscale = mode == 0 ? rows : mode == 1 ? 1 : (R > 0 ? total / R : 0);
    for (int64_t k = 0; k < nscale; k++) scale[k] = 0;
    for (int64_t i = 0; i < total; i++) {
        const int64_t row = i / H, col = i % H;
        const int64_t k = mode == 0 ? row : mode == 1 ? 0 : (row / R) * H + col;
        const double a = fabs(v[i]);
        if (a > scale[k]) scale[k] = a;
    }
    for (int64_t k = 0; k < nscale; k++) scale[k] /= dst_max;
    for (int64_t i = 0; i < total; i++) {
        const int64_t row = i / H, col = i % H;
        const int64_t k = mode == 0 ? row : mode == 1 ? 0 : (row / R) * H + col;
        const double t = scale[k] > 0 ? v[i] / scale[k] : 0.0;
        if (quot) quot[i] = t;
        q[i] = ref_rint_even(t);
    }
    free(v);
}

/* ---- in-place operators ------------------------------------------------------------------ */

static int64_t ref_lin(const int64_t *shape, int32_t nd, const int64_t *c) {
    int64_t i = 0;
    for (int32_t d = 0; d < nd; d++) i = i * shape[d] + c[d];
    return i;
}

static int64_t ref_idx(const fia_tensor *t, const int64_t *c) { return (int64_t)fia_ref_at(t, c); }

int fia_ref_scatter_update(const fia_tensor *data, double *target, const fia_tensor *indices,
                           const fia_tensor *updates, int64_t axis) {
    const int32_t nd = data->ndim;
    if (axis < 0) axis += nd;
    const int64_t K = updates->shape[0], total = ref_numel(updates);
    /* check first */
    for (int64_t k = 0; k < K; k++) {
        int64_t b = k, p;
        if (indices->ndim == 2) {
            const int64_t c0[2] = {k, 0}, c1[2] = {k, 1};
            b = ref_idx(indices, c0), p = ref_idx(indices, c1);
        } else {
            const int64_t c[1] = {k};
            p = ref_idx(indices, c);
        }
        if (b < 0 || b >= data->shape[0] || p < 0 || p + updates->shape[axis] > data->shape[axis]) return -1;
    }
    int64_t c[FIA_MAX_DIMS];
    for (int64_t i = 0; i < total; i++) {
        ref_coords(updates->shape, nd, i, c);
        const int64_t k = c[0];
        int64_t b = k, p;
        if (indices->ndim == 2) {
            const int64_t c0[2] = {k, 0}, c1[2] = {k, 1};
            b = ref_idx(indices, c0), p = ref_idx(indices, c1);
        } else {
            const int64_t ck[1] = {k};
            p = ref_idx(indices, ck);
        }
        const double v = fia_ref_at(updates, c);
        c[0] = b;
        c[axis] += p;
        target[ref_lin(data->shape, nd, c)] = v;
    }
    return 0;
}

int fia_ref_scatter_nd_update(const fia_tensor *input, double *target, const fia_tensor *indices,
                              const fia_tensor *updates, int mode) {
    const int32_t li = indices->ndim - 1;
    const int64_t a = indices->shape[li];
    int64_t K = 1;
    for (int32_t d = 0; d < li; d++) K *= indices->shape[d];
    const int64_t upn = ref_numel(updates), row = K > 0 ? upn / K : 0;
    int64_t c[FIA_MAX_DIMS], ic[FIA_MAX_DIMS];
    int64_t slots = 0, bs = 0, w = 0;
    if (mode == 1) bs = input->shape[1], slots = input->shape[0] * bs;
    if (mode == 2) bs = input->shape[3], w = input->shape[4], slots = input->shape[0] * bs;
    for (int64_t k = 0; k < K; k++) {
        ref_coords(indices->shape, li, k, ic);
        for (int64_t j = 0; j < a; j++) {
            ic[li] = j;
            const int64_t v = ref_idx(indices, ic);
            const int64_t lim = mode == 0 ? input->shape[j] : slots;
            if (v < 0 || v >= lim) return -1;
        }
    }
    for (int64_t k = 0; k < K; k++) {
        ref_coords(indices->shape, li, k, ic);
        int64_t comp[FIA_MAX_DIMS];
        for (int64_t j = 0; j < a; j++) ic[li] = j, comp[j] = ref_idx(indices, ic);
        for (int64_t e = 0; e < row; e++) {
            const double v = fia_ref_load(updates, k * row + e);
            if (mode == 0) {
                ref_coords(input->shape + a, input->ndim - (int32_t)a, e, c + a);
                for (int64_t j = 0; j < a; j++) c[j] = comp[j];
            } else if (mode == 1) {
                ref_coords(input->shape + 2, input->ndim - 2, e, c + 2);
                c[0] = comp[0] / bs, c[1] = comp[0] % bs;
            } else {
                c[0] = comp[0] / bs, c[1] = 0, c[2] = e / w, c[3] = comp[0] % bs, c[4] = e % w;
            }
            target[ref_lin(input->shape, input->ndim, c)] = v;
        }
    }
    return 0;
}

void fia_ref_gather_selection(const fia_tensor *sel_kv_t, double *sel_kv, const fia_tensor *sel_rope_t,
                              double *sel_rope, const fia_tensor *sel_table, double *status,
                              const fia_tensor *topk, const fia_tensor *full_rope,
                              const fia_tensor *full_kv, const fia_tensor *full_table,
                              const fia_tensor *kv_len, const fia_tensor *q_len, int64_t sbs,
                              int64_t *out) {
    const int64_t B = kv_len->shape[0], K = topk->shape[topk->ndim - 1];
    const int64_t H = topk->shape[topk->ndim - 2];
    const int64_t S = topk->ndim == 4 ? topk->shape[1] : topk->shape[0] / B;
    const int64_t fbs = full_kv->shape[1], sbs_blk = sel_kv_t->shape[1];
    const int64_t C = full_kv->shape[full_kv->ndim - 1];
    const int64_t R = full_rope ? full_rope->shape[full_rope->ndim - 1] : 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++)
            for (int64_t h = 0; h < H; h++) {
                const int64_t r = (b * S + s) * H + h;
                out[r] = 0;
                int64_t kv = (int64_t)fia_ref_load(kv_len, b);
                const int64_t q = (int64_t)fia_ref_load(q_len, b);
                if (s < q) kv -= q - 1 - s;
                if (kv <= 0) continue;
                const int64_t n = (kv + sbs - 1) / sbs, last = kv - (n - 1) * sbs;
                int64_t v = 0, total = 0;
                for (int64_t i = 0; i < K; i++) {
                    const int64_t e = (int64_t)fia_ref_load(topk, r * K + i);
                    if (e < 0) break;
                    if (e > n - 1) continue;
                    status[r * (K + 1) + v] = (double)e;
                    const int64_t len = e == n - 1 ? last : sbs;
                    for (int64_t j = 0; j < len; j++) {
                        const int64_t ft = e * sbs + j, st = v * sbs + j;
                        const int64_t fc[2] = {b, ft / fbs}, sc[2] = {r, st / sbs_blk};
                        const int64_t fb = (int64_t)fia_ref_at(full_table, fc);
                        const int64_t sb = (int64_t)fia_ref_at(sel_table, sc);
                        for (int64_t d = 0; d < C; d++)
                            sel_kv[(sb * sbs_blk + st % sbs_blk) * C + d] =
                                fia_ref_load(full_kv, (fb * fbs + ft % fbs) * C + d);
                        if (sel_rope)
                            for (int64_t d = 0; d < R; d++)
                                sel_rope[(sb * sbs_blk + st % sbs_blk) * R + d] =
                                    fia_ref_load(full_rope, (fb * fbs + ft % fbs) * R + d);
                    }
                    total += len;
                    v++;
                }
                for (int64_t i = v; i < K; i++) status[r * (K + 1) + i] = -1;
                status[r * (K + 1) + K] = (double)total;
                out[r] = total;
            }
    (void)sel_rope_t;
}
