/* ref_prolog.c - see ref_prolog.h. */
#include "ref_prolog.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HCKV = 512, DR = 64 };

/* Element i (row-major logical index over the view) as double. */
static double at(const fia_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) off += idx[d] * t->strides[d];
    const char *p = (const char *)t->data + t->byte_offset + off * (int64_t)fia_dtype_size(t->dtype);
    uint16_t h;
    float f;
    switch (t->dtype) {
    case FIA_DTYPE_FLOAT32: memcpy(&f, p, 4); return f;
    case FIA_DTYPE_FLOAT16: memcpy(&h, p, 2); return fia_f16_to_f32(h);
    case FIA_DTYPE_BFLOAT16: memcpy(&h, p, 2); return fia_bf16_to_f32(h);
    case FIA_DTYPE_INT8: return (double)*(const int8_t *)p;
    default: return 0.0;
    }
}

static double at2(const fia_tensor *t, int64_t i, int64_t j) {
    const int64_t idx[2] = {i, j};
    return at(t, idx);
}

/* Row t of a token-major tensor ([T, W] or [B, S, W]), element j. */
static double tok(const fia_tensor *t, int64_t S, int64_t tt, int64_t j) {
    if (t->ndim == 2) return at2(t, tt, j);
    const int64_t idx[3] = {tt / S, tt % S, j};
    return at(t, idx);
}

/* Element i of a tensor in row-major order over its shape (a per-token scale [T, 1]). */
static double flat(const fia_tensor *t, int64_t i) {
    int64_t idx[FIA_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = i % t->shape[d];
        i /= t->shape[d];
    }
    return at(t, idx);
}

/* Value i of a float32 vector shaped [n] or [1, n] (or a single value for every i). */
static double vec1(const fia_tensor *t, int64_t i) {
    int64_t idx[FIA_MAX_DIMS] = {0};
    const int64_t n = t->ndim ? t->shape[t->ndim - 1] : 1;
    if (t->ndim) idx[t->ndim - 1] = n == 1 ? 0 : i;
    return at(t, idx);
}

static double bf(double x, int on) { return on ? fia_bf16_to_f32(fia_f32_to_bf16((float)x)) : x; }

/* One bf16 ulp at x (2^-7 relative to the leading power of two). */
static double ulp(double x) {
    if (x == 0.0) return 0.0;
    int e;
    frexp(fabs(x), &e);
    return ldexp(1.0, e - 8);
}

/* MLA interleave-half RoPE of a 64-wide row; slack (may be NULL): one ulp of each input plus
 * the input's own slack xs (may be NULL: none). */
static void rope(const double *x, const double *xs, const double *c, const double *s, double *y,
                 double *slack, int rounded) {
    double xp[DR], xsp[DR];
    for (int i = 0; i < DR / 2; i++) {
        xp[i] = x[2 * i];
        xp[i + DR / 2] = x[2 * i + 1];
        xsp[i] = xs ? xs[2 * i] : 0.0;
        xsp[i + DR / 2] = xs ? xs[2 * i + 1] : 0.0;
    }
    for (int i = 0; i < DR; i++) {
        const int o = i < DR / 2 ? i + DR / 2 : i - DR / 2;
        const double rot = i < DR / 2 ? -xp[o] : xp[o];
        y[i] = xp[i] * c[i] + rot * s[i];
        if (slack)
            slack[i] = rounded ? (ulp(xp[i]) + xsp[i]) * fabs(c[i]) + (ulp(rot) + xsp[o]) * fabs(s[i])
                               : 0.0;
    }
}

/* The bf16 value on the other side of the rounding midpoint nearest x (where x rounds to when
 * it moves past that midpoint), *mid that midpoint. */
static double bf_other(double x, double *mid) {
    uint16_t h = fia_f32_to_bf16((float)x);
    const double b = fia_bf16_to_f32(h);
    h = fabs(x) >= fabs(b) ? (uint16_t)(h + 1) : (uint16_t)(h - 1); /* sign-magnitude bits */
    const double o = fia_bf16_to_f32(h);
    *mid = (b + o) / 2;
    return o;
}

/* The sum of the effects e_k of flips that may happen together: the worst case sum |e_k| (every
 * candidate flips, each with the worst sign), or, smaller from 16 candidates on, the probable
 * bound 4 sqrt(sum e_k^2) (the flips independent, of either sign: a 4-sigma tail; most
 * candidates do not even flip). */
static double flip_bound(double sum_abs, double sum_sq) { return fmin(sum_abs, 4.0 * sqrt(sum_sq)); }

#define U32 (1.0 / 16777216.0) /* fp32 unit roundoff 2^-24 */

/*
 * The slack of c_q rounding flips (rounding 2). The oracle rounds the normalized c_q (to bf16;
 * with int8 W_UQ_QR: to int8 by its per-token quant) where the contract does, but from double
 * sums: the kernel's fp32 value can land on the other side of a rounding midpoint, one bf16 ulp
 * (one int8 step) away, and W_UQ_QR carries that to q_c / q_r and W_UK on to query_out (seen:
 * under the AVX2 fp32 fallback of x . W_DQ, a pre-norm flip that moved r by 1e-3 flipped 6 c_q
 * of a token of test_mla_prolog's T = 600 case). The candidates ("cq_flips", per token) follow
 * the contract's rounding points:
 *   1. c_q = bf16(x . W_DQ): the fp32 sum of He exact bf16 products p_k (any order) differs
 *      from the double one by ~u sqrt(He / 6) |p|_2 (u = 2^-24; sequential: the i-th addition
 *      errs by up to u |partial sum|, uniformly, the partial sums a random walk of size
 *      ~sqrt(i / He) |p|_2; blocked sums err less): 2 u sqrt(He) |p|_2 (~5 sigma) from a
 *      midpoint is a candidate, which moves c_q[j] by one bf16 step s_j (the pre-norm flips;
 *      not with weight_quant_mode 2, whose int8 sums are exact and not rounded).
 *   2. the RMSNorm scale r = 1/sqrt(mean(c_q^2) + eps): the pre-norm flips move it by
 *      rho = (flip_bound_j(|c_q[j]| s_j) + sum s_j^2 / 2) / (sum c_q^2 + Hcq eps) relative
 *      (first order); the kernel's fp32 norm (a positive sum of squares in at most Hcq/32 + 36 sequential
 *      additions, halved by the square root, then the divide, eps, sqrt, reciprocal and three
 *      products) adds e_n = (Hcq/64 + 32) u relative.
 *   3. the normalized c_q[i] = c_q r gamma alpha within (rho + e_n) |c_q[i]| (plus the pre-norm
 *      move s_i |f_i| of its own flip) of a bf16 midpoint is a candidate: one bf16 step, or with
 *      int8 W_UQ_QR one int8 step plus that move in steps, of an int8 quant whose scale
 *      amax / 127 moves by the largest such move of the row relative to amax (plus 2 u).
 * Each candidate k moves q[j] by up to its step times |W_UQ_QR[k, j]| (int8: times the dequant
 * scales); flip_bound adds them up. query_out gets the flips carried through W_UK (per
 * candidate, M = W_UQ_QR[k, head] . W_UK[head]) and the q_c roundings those moves can change
 * (q_c[d] within its slack of a bf16 midpoint: one ulp times |W_UK[d, c]|), beside its own two
 * largest q_c flips. query_norm (int8) gets the move of its real value in steps.
 */
int fia_ref_mla_prolog_v3(const fia_mla_prolog_v3_tensors *t,
                          const fia_mla_prolog_v3_params *prm, int g, const ref_prolog_out *o) {
    double *qo = o->qo, *qr = o->qr, *qn = o->qn, *kv = o->kv, *kr = o->kr;
    const fia_tensor *x = t->token_x;
    const int64_t S = x->ndim == 3 ? x->shape[1] : 1;
    const int64_t T = x->ndim == 3 ? x->shape[0] * x->shape[1] : x->shape[0];
    const int64_t He = x->shape[x->ndim - 1];
    const int64_t Hcq = t->weight_dq->shape[1];
    const int64_t N = t->weight_uk->shape[0], D = t->weight_uk->shape[1];
    const int64_t W = N * (D + DR);
    const int wq = prm->weight_quant_mode;
    const int sl = g == 2; /* slack of the rounding flips */
    double *cq = malloc(sizeof(double) * (size_t)Hcq);
    double *q = malloc(sizeof(double) * (size_t)W);
    double *qs = malloc(sizeof(double) * (size_t)W); /* q's slack: flips of the rounded c_q */
    double *qa = malloc(sizeof(double) * (size_t)W); /* q before its rounding */
    double *qd = malloc(sizeof(double) * (size_t)W); /* q's dequant factor (1: not int8) */
    double *xr = malloc(sizeof(double) * (size_t)He);
    double *pre = malloc(sizeof(double) * (size_t)Hcq); /* pre-norm flip steps (0: none) */
    double *mv = malloc(sizeof(double) * (size_t)Hcq);  /* c_q candidates' steps (0: none) */
    double *uk = malloc(sizeof(double) * (size_t)(N * D * HCKV + 1));
    double *ma = malloc(sizeof(double) * (size_t)(N * HCKV * 2 + 1)); /* sum |m|, sum m^2 */
    if (!cq || !q || !qs || !qa || !qd || !xr || !pre || !mv || !uk || !ma) {
        free(cq);
        free(q);
        free(qs);
        free(qa);
        free(qd);
        free(xr);
        free(pre);
        free(mv);
        free(uk);
        free(ma);
        fprintf(stderr, "ref_prolog: out of memory\n");
        return -1;
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t d = 0; d < D; d++)
            for (int64_t c = 0; c < HCKV; c++) {
                const int64_t i3[3] = {n, d, c};
                uk[(n * D + d) * HCKV + c] = at(t->weight_uk, i3);
            }
    for (int64_t tt = 0; tt < T; tt++) {
        for (int64_t k = 0; k < He; k++) xr[k] = tok(x, S, tt, k);
        double cs[DR], sn[DR];
        for (int i = 0; i < DR; i++) {
            cs[i] = tok(t->rope_cos, S, tt, i);
            sn[i] = tok(t->rope_sin, S, tt, i);
        }
        /* c_q = x . W_DQ (weight_quant_mode 2: int8 sums * dequant_scale_x * w scale, not
         * rounded), RmsNorm, alpha_q */
        const double dsx = wq == 2 ? flat(t->dequant_scale_x, tt) : 1.0;
        double ss = 0.0, rho = 0.0, rho2 = 0.0, rho_s = 0.0;
        for (int64_t j = 0; j < Hcq; j++) {
            double a = 0.0, p2 = 0.0;
            for (int64_t k = 0; k < He; k++) {
                const double p = xr[k] * at2(t->weight_dq, k, j);
                a += p;
                p2 += p * p;
            }
            if (wq == 2) a = a * dsx * vec1(t->dequant_scale_w_dq, j);
            cq[j] = bf(a, g == 2 && wq != 2);
            pre[j] = 0.0;
            if (sl && wq != 2) {
                double mid;
                const double other = bf_other(a, &mid);
                if (fabs(a - mid) <= 2.0 * U32 * sqrt((double)He * p2)) pre[j] = fabs(other - cq[j]);
            }
            rho += fabs(cq[j]) * pre[j];
            rho2 += cq[j] * pre[j] * cq[j] * pre[j];
            rho_s += pre[j] * pre[j] / 2;
            ss += cq[j] * cq[j];
        }
        const double r = 1.0 / sqrt(ss / (double)Hcq + prm->rmsnorm_epsilon_cq);
        /* relative move of the normalized c_q (step 2 above) */
        const double rel = (flip_bound(rho, rho2) + rho_s) / (ss + (double)Hcq * prm->rmsnorm_epsilon_cq) +
                           ((double)Hcq / 64 + 32 + (wq == 2 ? 2 : 0)) * U32;
        for (int64_t j = 0; j < Hcq; j++) {
            const int64_t i1[1] = {j};
            const double f = r * at(t->rmsnorm_gamma_cq, i1) * prm->qc_qr_scale;
            const double raw = cq[j] * f;
            cq[j] = wq ? raw : bf(raw, g);
            mv[j] = rel * fabs(raw) + pre[j] * fabs(f); /* how far raw may move */
            if (sl && !wq) {
                double mid;
                const double other = bf_other(raw, &mid);
                mv[j] = pre[j] > 0 || fabs(raw - mid) <= mv[j] ? mv[j] + fabs(other - cq[j]) : 0.0;
            } else if (!wq) {
                mv[j] = 0.0;
            }
            if (qn) qn[tt * Hcq + j] = raw;
            if (o->sqn) o->sqn[tt * Hcq + j] = g == 2 && !wq ? ulp(raw / f) * fabs(f) : 0.0;
        }
        /* int8 W_UQ_QR: dynamic per-token quant of cq with the smooth scales; query_norm is
         * then the real value before rounding, its scale in qns (its slack: the move in steps) */
        double sq = 1.0, esq = 0.0;
        if (wq) {
            double amax = 0.0, up = 0.0, down = 0.0; /* amax, the most it may grow, shrink */
            for (int64_t j = 0; j < Hcq; j++) {
                const double sm = t->smooth_scales_cq ? vec1(t->smooth_scales_cq, j) : 1.0;
                if (fabs(cq[j] * sm) > amax) down = mv[j] * sm;
                amax = fmax(amax, fabs(cq[j] * sm));
                up = fmax(up, (fabs(cq[j]) + mv[j]) * sm);
            }
            sq = amax / 127.0;
            /* the scale's relative move (2 u: its fp32 max and divide) */
            esq = sl && amax > 0 ? fmax(up - amax, down) / amax + 2 * U32 : 0.0;
            for (int64_t j = 0; j < Hcq; j++) {
                const double sm = t->smooth_scales_cq ? vec1(t->smooth_scales_cq, j) : 1.0;
                const double qreal = sq > 0 ? cq[j] * sm / sq : 0.0;
                cq[j] = fmin(fmax(rint(qreal), -128.0), 127.0);
                const double m = sq > 0 ? mv[j] * sm / sq + esq * fabs(qreal) : 0.0;
                mv[j] = sl && 0.5 - fabs(qreal - rint(qreal)) <= m ? 1.0 + m : 0.0;
                if (qn) qn[tt * Hcq + j] = qreal;
                if (o->sqn) o->sqn[tt * Hcq + j] = sl ? m : 0.0;
            }
            if (o->qns) o->qns[tt] = sq;
            if (o->sqns) o->sqns[tt] = esq;
        }
        /* qcqr = cq . W_UQ_QR; qs: the candidates' flips (mv: steps of c_q) carried by it */
        for (int64_t j = 0; j < W; j++) {
            const double dq = wq ? sq * vec1(t->dequant_scale_w_uq_qr, j) : 1.0;
            qd[j] = dq;
            double a = 0.0, fa = 0.0, f2 = 0.0;
            for (int64_t k = 0; k < Hcq; k++) {
                const double w = at2(t->weight_uq_qr, k, j);
                a += cq[k] * w;
                const double f = mv[k] * fabs(w) * dq;
                fa += f;
                f2 += f * f;
            }
            if (wq) a = a * dq;
            qa[j] = a;
            q[j] = bf(a, g == 2);
            qs[j] = flip_bound(fa, f2) + esq * fabs(a); /* int8: q scales with sq */
        }
        /* the candidates through W_UK: m = step * (W_UQ_QR[k, head] . W_UK[head]) */
        for (int64_t i = 0; i < N * HCKV * 2; i++) ma[i] = 0.0;
        for (int64_t k = 0; k < Hcq; k++) {
            if (mv[k] == 0.0) continue;
            for (int64_t n = 0; n < N; n++) {
                double m[HCKV] = {0};
                for (int64_t d = 0; d < D; d++) {
                    const int64_t j = n * (D + DR) + d;
                    const double w = at2(t->weight_uq_qr, k, j) * mv[k] * qd[j];
                    for (int64_t c = 0; c < HCKV; c++) m[c] += w * uk[(n * D + d) * HCKV + c];
                }
                for (int64_t c = 0; c < HCKV; c++) {
                    ma[(n * HCKV + c) * 2] += fabs(m[c]);
                    ma[(n * HCKV + c) * 2 + 1] += m[c] * m[c];
                }
            }
        }
        for (int64_t n = 0; n < N; n++) {
            const double *qc = q + n * (D + DR);
            const double *qcs = qs + n * (D + DR);
            for (int64_t c = 0; c < HCKV; c++) {
                double a = 0.0, f1 = 0.0, f2 = 0.0; /* the two largest flips */
                double ga = 0.0, g2 = 0.0;          /* q_c roundings the c_q flips can change */
                for (int64_t d = 0; d < D; d++) {
                    const double w = uk[(n * D + d) * HCKV + c];
                    a += bf(qc[d], g) * w;
                    const double f = g ? ulp(qc[d]) * fabs(w) : 0.0;
                    if (f > f1) {
                        f2 = f1;
                        f1 = f;
                    } else if (f > f2) {
                        f2 = f;
                    }
                    if (sl && qcs[d] > 0) {
                        double mid;
                        const double v = qa[n * (D + DR) + d];
                        const double other = bf_other(v, &mid);
                        if (fabs(v - mid) <= qcs[d]) {
                            /* one step s at worst; the variance of the rounding's change: a
                             * step with probability ~ slack / s, or when the slack passes
                             * s / 6 two independent uniform rounding errors, s^2 / 6 */
                            const double st = fabs(other - bf(v, 1));
                            ga += st * fabs(w);
                            g2 += fmin(qcs[d] * st, st * st / 6) * w * w;
                        }
                    }
                }
                qo[(tt * N + n) * HCKV + c] = a;
                if (o->sqo)
                    o->sqo[(tt * N + n) * HCKV + c] =
                        f1 + f2 + flip_bound(ma[(n * HCKV + c) * 2], ma[(n * HCKV + c) * 2 + 1]) +
                        flip_bound(ga, g2) + esq * fabs(a);
            }
            rope(qc + D, qcs + D, cs, sn, qr + (tt * N + n) * DR, o->sqr ? o->sqr + (tt * N + n) * DR : NULL,
                 g == 2);
        }
        /* kv / kr */
        double ck[HCKV + DR];
        ss = 0.0;
        for (int64_t j = 0; j < HCKV + DR; j++) {
            double a = 0.0;
            for (int64_t k = 0; k < He; k++) a += xr[k] * at2(t->weight_dkv_kr, k, j);
            if (wq == 2) a = a * dsx * vec1(t->dequant_scale_w_dkv_kr, j);
            ck[j] = bf(a, g == 2);
            if (j < HCKV) ss += ck[j] * ck[j];
        }
        const double rk = 1.0 / sqrt(ss / (double)HCKV + prm->rmsnorm_epsilon_ckv);
        for (int64_t j = 0; j < HCKV; j++) {
            const int64_t i1[1] = {j};
            const double f = rk * at(t->rmsnorm_gamma_ckv, i1) * prm->kc_scale;
            kv[tt * HCKV + j] = ck[j] * f;
            if (o->skv)
                o->skv[tt * HCKV + j] = g == 2 ? ulp(ck[j]) * fabs(f) : 0.0;
        }
        rope(ck + HCKV, NULL, cs, sn, kr + tt * DR, o->skr ? o->skr + tt * DR : NULL, g == 2);
    }
    free(cq);
    free(q);
    free(qs);
    free(qa);
    free(qd);
    free(xr);
    free(pre);
    free(mv);
    free(uk);
    free(ma);
    return 0;
}

/* Value i of a float32 vector shaped [n] or [1, n] (or a scalar). */
static double vec(const fia_tensor *t, int64_t i) {
    int64_t idx[FIA_MAX_DIMS] = {0};
    if (t->ndim) idx[t->ndim - 1] = i;
    return at(t, idx);
}

int fia_ref_mla_prolog_v3_quant(const fia_mla_prolog_v3_tensors *t,
                                const fia_mla_prolog_v3_params *prm, const ref_prolog_out *o,
                                const ref_prolog_quant *q) {
    const fia_tensor *x = t->token_x;
    const int64_t T = x->ndim == 3 ? x->shape[0] * x->shape[1] : x->shape[0];
    const int64_t N = t->weight_uk->shape[0];
    const int kvq = prm->kv_cache_quant_mode;
    for (int64_t tt = 0; tt < T; tt++) {
        const double *kv = o->kv + tt * HCKV;
        if (kvq == 1 || kvq == 2) {
            if (!t->quant_scale_ckv) return -1;
            for (int64_t c = 0; c < HCKV; c++)
                q->kvq[tt * HCKV + c] = kv[c] * vec(t->quant_scale_ckv, kvq == 1 ? 0 : c);
        }
        if (kvq == 2) {
            if (!t->quant_scale_ckr) return -1;
            for (int64_t d = 0; d < DR; d++)
                q->krq[tt * DR + d] = o->kr[tt * DR + d] * vec(t->quant_scale_ckr, d);
        }
        if (kvq == 3) {
            const double alpha = t->k_nope_clip_alpha ? vec(t->k_nope_clip_alpha, 0) : 1.0;
            for (int i = 0; i < HCKV / 128; i++) {
                double amax = 0.0;
                for (int c = 0; c < 128; c++) amax = fmax(amax, fabs(kv[i * 128 + c]));
                amax = fmax(amax, 1e-8) * alpha;
                const double scale = amax / 127.0;
                q->kscale[tt * 4 + i] = scale;
                for (int c = 0; c < 128; c++)
                    q->kvq[tt * HCKV + i * 128 + c] =
                        fmin(fmax(kv[i * 128 + c], -amax), amax) / scale;
            }
        }
        if (prm->query_quant_mode == 1) {
            if (!t->quant_scale_ckv) return -1;
            const double qsckv = vec(t->quant_scale_ckv, 0);
            for (int64_t n = 0; n < N; n++) {
                const double *qo = o->qo + (tt * N + n) * HCKV;
                double amax = 0.0;
                for (int c = 0; c < HCKV; c++) amax = fmax(amax, fabs(bf(qo[c], 1)));
                const double s = amax / 127.0;
                q->qs[tt * N + n] = s;
                for (int c = 0; c < HCKV; c++)
                    q->qoq[(tt * N + n) * HCKV + c] = s > 0 ? bf(qo[c], 1) / s : 0.0;
                for (int d = 0; d < DR; d++)
                    q->qrq[(tt * N + n) * DR + d] =
                        s > 0 ? bf(o->qr[(tt * N + n) * DR + d], 1) * qsckv / s : 0.0;
            }
        }
    }
    return 0;
}
