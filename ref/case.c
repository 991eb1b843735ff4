/*
 * case.c - the generic half of the case descriptions (case.h): the list, build / bind, the run
 * through the public API, the oracle arrays and the comparison with the tolerance table. The
 * per-operator halves are case_chain.c and case_attention.c; case_util.h is what they share.
 */
#include "case.h"

#include <stdlib.h>
#include <string.h>

#include "case_util.h"
#include "ref_util.h"

extern const fia_case_desc fia_case_rms_norm, fia_case_add_rms_norm, fia_case_rotary_mul,
    fia_case_interleave_rope, fia_case_dynamic_quant, fia_case_scatter_update,
    fia_case_scatter_nd_update, fia_case_gather_selection, fia_case_fia, fia_case_smallq,
    fia_case_sfa, fia_case_sfa_c8, fia_case_li, fia_case_qli, fia_case_prolog;

static const fia_case_desc *const g_cases[] = {
    &fia_case_rms_norm,         &fia_case_add_rms_norm,     &fia_case_rotary_mul,
    &fia_case_interleave_rope,  &fia_case_dynamic_quant,    &fia_case_scatter_update,
    &fia_case_scatter_nd_update, &fia_case_gather_selection, &fia_case_fia,
    &fia_case_smallq,           &fia_case_sfa,              &fia_case_sfa_c8,
    &fia_case_li,               &fia_case_qli,              &fia_case_prolog,
};

const fia_case_desc *const *fia_case_list(int *count) {
    *count = (int)(sizeof g_cases / sizeof g_cases[0]);
    return g_cases;
}

const fia_case_desc *fia_case_find(const char *op) {
    for (size_t i = 0; op && i < sizeof g_cases / sizeof g_cases[0]; i++)
        if (strcmp(g_cases[i]->op, op) == 0) return g_cases[i];
    return NULL;
}

/* ---- helpers for the descriptions (case_util.h) --------------------------------------------- */

int fia_case_dims_ok(const int64_t *d, int n, int64_t big) {
    int64_t e = 1;
    for (int i = 0; i < n; i++) {
        if (d[i] < 1 || d[i] > big) return 0;
        e *= d[i];
        if (e > big) return 0;
    }
    return 1;
}

int fia_case_float_dtype(fia_dtype dt) {
    return dt == FIA_DTYPE_FLOAT32 || dt == FIA_DTYPE_FLOAT16 || dt == FIA_DTYPE_BFLOAT16;
}

uint64_t fia_case_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double fia_case_uniform(uint64_t *s, double lo, double hi) {
    return lo + (hi - lo) * (double)(fia_case_rand(s) >> 11) * (1.0 / 9007199254740992.0);
}

int64_t fia_case_int(uint64_t *s, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + (int64_t)(fia_case_rand(s) % (uint64_t)(hi - lo + 1));
}

void fia_case_store(fia_tensor *t, int64_t i, double v) {
    char *p = (char *)t->data + i * (int64_t)fia_dtype_size(t->dtype); /* compact tensors only */
    switch (t->dtype) {
    case FIA_DTYPE_FLOAT32: { const float f = (float)v; memcpy(p, &f, 4); break; }
    case FIA_DTYPE_FLOAT16: { const uint16_t h = fia_f32_to_f16((float)v); memcpy(p, &h, 2); break; }
    case FIA_DTYPE_BFLOAT16: { const uint16_t h = fia_f32_to_bf16((float)v); memcpy(p, &h, 2); break; }
    case FIA_DTYPE_INT32: { const int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case FIA_DTYPE_INT64: { const int64_t x = (int64_t)v; memcpy(p, &x, 8); break; }
    default: { const int8_t x = (int8_t)v; memcpy(p, &x, 1); break; }
    }
}

fia_tensor *fia_case_tensor(fia_case *c, fia_dtype dt, int32_t ndim, const int64_t *shape,
                            uint64_t *rng, double lo, double hi) {
    if (c->n_ten >= FIA_CASE_MAX_TENSORS) return NULL;
    int64_t n = 1;
    for (int32_t d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && n > ((int64_t)1 << 40) / shape[d])) return NULL;
        n *= shape[d];
    }
    void *b = malloc((size_t)(n > 0 ? n : 1) * fia_dtype_size(dt));
    if (!b) return NULL;
    fia_tensor *t = &c->ten[c->n_ten];
    c->buf[c->n_ten++] = b;
    if (fia_tensor_init(t, b, dt, ndim, shape, NULL) != FIA_STATUS_SUCCESS) return NULL;
    for (int64_t i = 0; i < n; i++) fia_case_store(t, i, rng ? fia_case_uniform(rng, lo, hi) : 0.0);
    return t;
}

int fia_case_distinct(fia_tensor *t, int64_t n, int64_t range, uint64_t *rng) {
    int64_t *perm = malloc((size_t)(range > 0 ? range : 1) * sizeof *perm);
    if (!perm || n > range) {
        free(perm);
        return -1;
    }
    for (int64_t i = 0; i < range; i++) perm[i] = i;
    for (int64_t k = 0; k < n; k++) { /* a partial shuffle: the first n of a random permutation */
        const int64_t j = fia_case_int(rng, k, range - 1), v = perm[j];
        perm[j] = perm[k], perm[k] = v;
        fia_case_store(t, k, (double)v);
    }
    free(perm);
    return 0;
}

fia_tensor *fia_case_perm_table(fia_case *c, int64_t rows, int64_t cols, uint64_t *rng) {
    const int64_t sh[2] = {rows, cols};
    fia_tensor *t = fia_case_tensor(c, FIA_DTYPE_INT32, 2, sh, NULL, 0, 0);
    return t && fia_case_distinct(t, rows * cols, rows * cols, rng) == 0 ? t : NULL;
}

/* ---- build / bind / oracle / run / check ---------------------------------------------------- */

int fia_case_build(fia_case *c, const char *op, const fia_case_shape *shape, uint64_t seed) {
    memset(c, 0, sizeof *c);
    const fia_case_desc *d = fia_case_find(op);
    if (!d || !d->build) return -1;
    c->desc = d;
    if (d->build(c, shape, seed) != 0) {
        fia_case_free(c);
        memset(c, 0, sizeof *c);
        return -1;
    }
    d->bind(c);
    return 0;
}

int fia_case_bind(fia_case *c, const char *op) {
    const fia_case_desc *d = fia_case_find(op);
    if (!d) return -1;
    c->desc = d;
    d->bind(c);
    return 0;
}

int fia_case_prepare(fia_case *c) {
    c->prepared = 1;
    for (int i = 0; i < c->n_out; i++) {
        fia_case_output *o = &c->out[i];
        if (!o->got) continue;
        const int64_t n = fia_tensor_numel(o->got);
        free(o->want), free(o->quot);
        o->want = malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
        const int aux = (c->desc == &fia_case_dynamic_quant && i == 0) || (c->desc->slack >> i & 1u);
        o->quot = aux ? calloc((size_t)(n > 0 ? n : 1), sizeof(double)) : NULL;
        if (!o->want || (aux && !o->quot)) return -1;
        if (o->inplace) /* the snapshot; with a slack, every element exact until the oracle writes it */
            for (int64_t k = 0; k < n; k++) {
                o->want[k] = fia_ref_load(o->got, k);
                if (o->quot) o->quot[k] = -1.0;
            }
    }
    return 0;
}

int fia_case_oracle(fia_case *c) {
    if (!c->prepared && fia_case_prepare(c) != 0) return -1;
    for (int i = 0; i < c->n_out; i++)
        if (c->out[i].got && !c->out[i].want) return -1;
    const int r = c->desc->oracle(c);
    c->oracle_refuses = r == 1;
    return r;
}

fia_status fia_case_run(fia_case *c, fia_context *ctx) {
    fia_plan *plan = NULL;
    size_t ws = 0;
    fia_status st = c->desc->plan(ctx, c, &plan, &ws);
    if (st != FIA_STATUS_SUCCESS) return st;
    void *w = ws ? malloc(ws) : NULL;
    st = ws && !w ? FIA_STATUS_OUT_OF_MEMORY : fia_plan_execute(plan, w, ws);
    free(w);
    fia_plan_destroy(plan);
    return st;
}

const fia_ref_tolerance *fia_case_tolerance(const fia_case *c, int i, int op_wide) {
    const char *op = c->desc->tol_op ? c->desc->tol_op(c) : c->desc->op;
    const fia_ref_tolerance *t = fia_ref_tolerance_of(op, c->out[i].name, c->out[i].got->dtype);
    if (op_wide && t->rule == FIA_REF_TOL_CLOSE) t = fia_ref_tolerance_of(op, NULL, c->main_dtype);
    return t;
}

int64_t fia_case_check(const fia_case *c, int op_wide, fia_ref_check *each) {
    int64_t bad = 0;
    for (int i = 0; i < c->n_out; i++) {
        const fia_case_output *o = &c->out[i];
        fia_ref_check k = FIA_REF_CHECK_INIT;
        if (o->got && o->want) bad += fia_ref_check_tensor(o->got, o->want, o->quot, fia_case_tolerance(c, i, op_wide), &k);
        if (each) each[i] = k;
    }
    return bad;
}

int64_t fia_case_failed_rows(const fia_case *c, int op_wide, int64_t row_len, int64_t *rows) {
    int64_t nrows = -1;
    for (int i = 0; i < c->n_out; i++) {
        const fia_case_output *o = &c->out[i];
        const int64_t n = o->got ? fia_tensor_numel(o->got) : 0;
        if (o->got && row_len > 0 && n % row_len == 0 && nrows < 0) nrows = n / row_len;
    }
    if (rows) *rows = nrows < 0 ? 0 : nrows;
    if (nrows <= 0) return 0;
    unsigned char *bad = calloc((size_t)nrows, 1);
    if (!bad) return -1;
    for (int i = 0; i < c->n_out; i++) {
        const fia_case_output *o = &c->out[i];
        if (!o->got || !o->want || fia_tensor_numel(o->got) != nrows * row_len) continue;
        const fia_ref_tolerance *tol = fia_case_tolerance(c, i, op_wide);
        for (int64_t e = 0; e < nrows * row_len; e++) /* (no INT_TIES clamp: not for integer rows) */
            if (!fia_ref_tolerance_pass(tol, fia_ref_load(o->got, e), o->want[e], o->quot ? o->quot[e] : 0.0, NULL))
                bad[e / row_len] = 1;
    }
    int64_t nb = 0;
    for (int64_t r = 0; r < nrows; r++) nb += bad[r];
    free(bad);
    return nb;
}

void fia_case_free(fia_case *c) {
    for (int i = 0; i < c->n_out; i++) {
        free(c->out[i].want), free(c->out[i].quot);
        c->out[i].want = c->out[i].quot = NULL;
    }
    for (int i = 0; i < c->n_ten; i++) free(c->buf[i]);
    c->n_ten = 0;
    c->prepared = 0;
}
