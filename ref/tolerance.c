/*
 * tolerance.c - the tolerance table and the comparison (tolerance.h).
 *
 * Where the numbers come from (each is the value its client used before the table existed):
 *   float16 / bfloat16 outputs: atol 1e-3 + rtol 5e-3. Rounding the output alone costs up to
 *     2^-8 relative (bf16), and the library accumulates in fp32.
 *   float32 outputs: 1e-5 + 1e-5 (chain tests, MLA tests, fia op --check) but 1e-6 + 1e-5 for
 *     dense FIA's attention_out in the tests (an fp32 attention output near 0 is off by ~1e-7
 *     absolute; the tests measure 4.4e-7 at worst, so they keep the tighter atol).
 *   softmax_lse: dense FIA 1e-5 + 1e-5; MLA 1e-4 + 1e-4 (its scores are ~576-long dots); sparse
 *     flash attention's lse / max / sum 1e-4 + 1e-5.
 *   int8 MLA (dequantised inputs): 2e-2 + 2e-2 for every output.
 *   rms_norm's rstd 1e-3 + 5e-3 whatever its dtype; add_rms_norm's x (the rounded sum, which the
 *     oracle rounds the same way) 1e-5 + 1e-5 whatever its dtype.
 *   dynamic_quant: y exact but +-1 within 2e-3 of a tie; the scale rtol 1e-5 (the tests add an
 *     atol of 1e-30, fia op --check none: the op-wide row).
 *   The cache operators (scatter_update, scatter_nd_update, gather_selection_kv_cache) copy
 *     bytes: exact.
 * `fia op --check` asks with output NULL: the op-wide row by the main input's dtype (it applies
 * one tolerance to every output of a call), which differs from the tests' per-output rows for
 * FIA's fp32 out / lse, MLA's lse, rms_norm's rstd and add_rms_norm's x.
 */
#include "tolerance.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ref_util.h"

#define ANY (-1)
#define F32 FIA_DTYPE_FLOAT32
#define CLOSE FIA_REF_TOL_CLOSE
#define EXACT FIA_REF_TOL_EXACT

static const fia_ref_tolerance g_table[] = {
    /* dense FIA */
    {"fused_infer_attention_score", "attention_out", F32, CLOSE, 1e-6, 1e-5, 0},
    {"fused_infer_attention_score", "attention_out", ANY, CLOSE, 1e-3, 5e-3, 0},
    {"fused_infer_attention_score", "softmax_lse", ANY, CLOSE, 1e-5, 1e-5, 0},
    /* the MLA form of FIA (query_rope / key_rope), and its int8 form */
    {"fused_infer_attention_score/mla", "softmax_lse", ANY, CLOSE, 1e-4, 1e-4, 0},
    {"fused_infer_attention_score/mla_int8", "*", ANY, CLOSE, 2e-2, 2e-2, 0},
    /* sparse flash attention's statistics */
    {"sparse_flash_attention", "softmax_lse", ANY, CLOSE, 1e-4, 1e-5, 0},
    {"sparse_flash_attention", "softmax_max", ANY, CLOSE, 1e-4, 1e-5, 0},
    {"sparse_flash_attention", "softmax_sum", ANY, CLOSE, 1e-4, 1e-5, 0},
    /* the indexer: the oracle resolves near-ties of the ranking (case_sparse.c), so the indices
     * are exact, and the values carry the oracle's fp32 bound as their slack */
    {"lightning_indexer", "sparse_indices", ANY, EXACT, 0, 0, 0},
    {"lightning_indexer", "*", ANY, CLOSE, 0.0, 0.0, 0},
    /* the chain operators */
    {"rms_norm", "rstd", ANY, CLOSE, 1e-3, 5e-3, 0},
    {"add_rms_norm", "rstd", ANY, CLOSE, 1e-3, 5e-3, 0},
    {"add_rms_norm", "x", ANY, CLOSE, 1e-5, 1e-5, 0},
    {"dynamic_quant", "y", ANY, FIA_REF_TOL_INT_TIES, 0, 0, 2e-3},
    {"dynamic_quant", "scale", ANY, CLOSE, 1e-30, 1e-5, 0},
    {"dynamic_quant", "*", ANY, CLOSE, 0.0, 1e-5, 0},
    {"scatter_update", "*", ANY, EXACT, 0, 0, 0},
    {"scatter_nd_update", "*", ANY, EXACT, 0, 0, 0},
    {"gather_selection_kv_cache", "*", ANY, EXACT, 0, 0, 0},
    /* the defaults, by the output's dtype */
    {"*", "*", F32, CLOSE, 1e-5, 1e-5, 0},
    {"*", "*", ANY, CLOSE, 1e-3, 5e-3, 0},
};

const fia_ref_tolerance *fia_ref_tolerance_table(int *count) {
    *count = (int)(sizeof g_table / sizeof g_table[0]);
    return g_table;
}

const fia_ref_tolerance *fia_ref_tolerance_of(const char *op, const char *output, fia_dtype dtype) {
    const int n = (int)(sizeof g_table / sizeof g_table[0]);
    for (int i = 0; i < n; i++) {
        const fia_ref_tolerance *r = &g_table[i];
        if (strcmp(r->op, "*") != 0 && (op == NULL || strcmp(r->op, op) != 0)) continue;
        if (strcmp(r->output, "*") != 0 && (output == NULL || strcmp(r->output, output) != 0)) continue;
        if (r->dtype != ANY && r->dtype != (int)dtype) continue;
        return r;
    }
    return &g_table[n - 1];
}

int fia_ref_tolerance_pass(const fia_ref_tolerance *tol, double g, double w, double quot,
                           int *tie) {
    int dummy;
    if (!tie) tie = &dummy;
    *tie = 0;
    if (tol->rule == FIA_REF_TOL_EXACT) return g == w || (isnan(g) && isnan(w)); /* a copied NaN */
    if (tol->rule == FIA_REF_TOL_INT_TIES) {
        if (g == w) return 1;
        const double fr = quot - floor(quot);
        if (fabs(g - w) == 1 && fabs(fr - 0.5) < tol->tie_band) return *tie = 1;
        return 0;
    }
    if (quot < 0) return g == w || (isnan(g) && isnan(w)); /* an element to leave as it was */
    if (isinf(w)) return isinf(g) && (g > 0) == (w > 0);
    return fabs(g - w) <= tol->atol + tol->rtol * fabs(w) + quot; /* false for NaN */
}

int64_t fia_ref_check_tensor(const fia_tensor *got, const double *want, const double *quot,
                             const fia_ref_tolerance *tol, fia_ref_check *c) {
    const int64_t n = fia_tensor_numel(got);
    const int ints = tol->rule == FIA_REF_TOL_INT_TIES;
    double lo = -INFINITY, hi = INFINITY;
    if (ints && got->dtype == FIA_DTYPE_INT8) lo = -128, hi = 127;
    int64_t bad = 0;
    c->worst = -1;
    c->worst_excess = -1.0;
    c->first = -1;
    for (int64_t i = 0; i < n; i++) {
        const double g = fia_ref_load(got, i);
        double w = want[i];
        if (ints) w = w < lo ? lo : w > hi ? hi : w;
        int tie;
        const int ok = fia_ref_tolerance_pass(tol, g, w, quot ? quot[i] : 0.0, &tie);
        c->elements++;
        c->ties += tie;
        const double err = fabs(g - w);
        if (!isinf(g) && !isinf(w) && err > c->max_abs_err) c->max_abs_err = err; /* NaN: no */
        if (ok) continue;
        if (bad++ == 0) c->first = i;
        const double sl = quot && tol->rule == FIA_REF_TOL_CLOSE ? quot[i] : 0.0;
        const double bound = tol->rule == FIA_REF_TOL_CLOSE && sl >= 0 ? tol->atol + tol->rtol * fabs(w) + sl : 0.0;
        const double excess = isnan(err) || isinf(err) ? INFINITY : err / (bound > 0 ? bound : 1e-300);
        if (excess > c->worst_excess || c->worst < 0) {
            c->worst_excess = excess;
            c->worst = i;
            c->worst_got = g;
            c->worst_want = w;
        }
    }
    c->failures += bad;
    return bad;
}

int64_t fia_ref_check_close(const fia_tensor *got, const double *want, double atol, double rtol,
                            fia_ref_check *c) {
    const fia_ref_tolerance t = {"*", "*", ANY, CLOSE, atol, rtol, 0};
    return fia_ref_check_tensor(got, want, NULL, &t, c);
}

void fia_ref_check_report(const char *name, const fia_ref_check *c, const fia_ref_tolerance *tol) {
    if (c->failures <= 0 || name == NULL) return;
    fprintf(stderr, "  %s: %lld of %lld elements out of tolerance (atol %g rtol %g); worst [%lld] "
                    "got %.9g want %.9g\n",
            name, (long long)c->failures, (long long)c->elements, tol->atol, tol->rtol,
            (long long)c->worst, c->worst_got, c->worst_want);
}
