/*
 * case_chain.c - the case descriptions (case.h) of the attention-chain operators: rms_norm,
 * add_rms_norm, rotary_mul, interleave_rope, dynamic_quant, scatter_update, scatter_nd_update
 * and gather_selection_kv_cache. Builders make compact tensors of the contract's
 * plain forms from a seed; shapes outside the contract are refused (-1), so a built case is one
 * the library must accept (or, for the scatter variants with an out-of-range index, one the
 * contract refuses at execute time: the oracle says so).
 */
#include <stdlib.h>
#include <string.h>

#include "case_util.h"
#include "ref_chain.h"
#include "ref_util.h"

#define BIG ((int64_t)1 << 24) /* elements a builder makes at most per tensor */

#define dims_ok(d, n) fia_case_dims_ok(d, n, BIG)
#define float_dtype fia_case_float_dtype

/* ---- rms_norm / add_rms_norm: dims {T, H} ------------------------------------------------------ */

static int build_norm(fia_case *c, const fia_case_shape *s, uint64_t seed, int add) {
    if (!dims_ok(s->dims, 2) || !float_dtype(s->dtype)) return -1;
    uint64_t r = seed;
    const int64_t xs[2] = {s->dims[0], s->dims[1]}, rs[2] = {s->dims[0], 1};
    fia_tensor *x1 = fia_case_tensor(c, s->dtype, 2, xs, &r, -3, 3);
    fia_tensor *x2 = add ? fia_case_tensor(c, s->dtype, 2, xs, &r, -3, 3) : NULL;
    fia_tensor *g = fia_case_tensor(c, s->dtype, 1, xs + 1, &r, 0.5, 1.5);
    fia_tensor *y = fia_case_tensor(c, s->dtype, 2, xs, NULL, 0, 0);
    fia_tensor *rstd = fia_case_tensor(c, FIA_DTYPE_FLOAT32, 2, rs, NULL, 0, 0);
    fia_tensor *x = add ? fia_case_tensor(c, s->dtype, 2, xs, NULL, 0, 0) : NULL;
    if (!x1 || !g || !y || !rstd || (add && (!x2 || !x))) return -1;
    fia_rms_norm_params_init(&c->p.rms_norm);
    if (add) {
        const fia_add_rms_norm_tensors t = {x1, x2, g, y, rstd, x};
        c->t.add_rms_norm = t;
    } else {
        const fia_rms_norm_tensors t = {x1, g, y, rstd};
        c->t.rms_norm = t;
    }
    return 0;
}
static int build_rms(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_norm(c, s, seed, 0); }
static int build_add_rms(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_norm(c, s, seed, 1); }

static void bind_rms(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "y", c->t.rms_norm.y, 0);
    fia_case_out(c, "rstd", c->t.rms_norm.rstd, 0);
    c->main_dtype = c->t.rms_norm.x->dtype;
}
static void bind_add_rms(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "y", c->t.add_rms_norm.y, 0);
    fia_case_out(c, "rstd", c->t.add_rms_norm.rstd, 0);
    fia_case_out(c, "x", c->t.add_rms_norm.x, 0);
    c->main_dtype = c->t.add_rms_norm.x1->dtype;
}
static fia_status plan_rms(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_rms_norm_plan(ctx, &c->t.rms_norm, &c->p.rms_norm, p, ws);
}
static fia_status plan_add_rms(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_add_rms_norm_plan(ctx, &c->t.add_rms_norm, &c->p.rms_norm, p, ws);
}
static int oracle_rms(fia_case *c) {
    const fia_rms_norm_tensors *t = &c->t.rms_norm;
    fia_ref_rms_norm(t->x, NULL, t->gamma, c->p.rms_norm.epsilon, c->out[0].want, c->out[1].want, NULL);
    return 0;
}
static int oracle_add_rms(fia_case *c) {
    const fia_add_rms_norm_tensors *t = &c->t.add_rms_norm;
    fia_ref_rms_norm(t->x1, t->x2, t->gamma, c->p.rms_norm.epsilon, c->out[0].want, c->out[1].want,
                     c->out[2].want);
    return 0;
}

const fia_case_desc fia_case_rms_norm = {
    "rms_norm", "dims {T, H}: x [T, H] and gamma [H] of dtype, rstd [T, 1]",
    build_rms, bind_rms, plan_rms, oracle_rms, NULL, 0};
const fia_case_desc fia_case_add_rms_norm = {
    "add_rms_norm", "dims {T, H}: x1, x2 [T, H] and gamma [H] of dtype, rstd [T, 1], x [T, H]",
    build_add_rms, bind_add_rms, plan_add_rms, oracle_add_rms, NULL, 0};

/* ---- rotary_mul / interleave_rope: dims {T, N, D} ------------------------------------------- */

static int build_rope(fia_case *c, const fia_case_shape *s, uint64_t seed, int interleave) {
    const int64_t D = s->dims[2];
    if (!dims_ok(s->dims, 3) || !float_dtype(s->dtype) || D % 2 != 0 || D > FIA_ROTARY_MAX_D) return -1;
    if (!interleave && s->variant != 0 && s->variant != 1) return -1;
    uint64_t r = seed;
    const int64_t xs[3] = {s->dims[0], s->dims[1], D}, cs[3] = {s->dims[0], 1, D};
    fia_tensor *x = fia_case_tensor(c, s->dtype, 3, xs, &r, -2, 2);
    fia_tensor *co = fia_case_tensor(c, s->dtype, 3, cs, &r, -1, 1);
    fia_tensor *si = fia_case_tensor(c, s->dtype, 3, cs, &r, -1, 1);
    fia_tensor *y = fia_case_tensor(c, s->dtype, 3, xs, NULL, 0, 0);
    if (!x || !co || !si || !y) return -1;
    const fia_rotary_mul_tensors t = {x, co, si, y};
    c->t.rope = t;
    if (interleave) fia_interleave_rope_params_init(&c->p.interleave_rope);
    else {
        fia_rotary_mul_params_init(&c->p.rotary_mul);
        c->p.rotary_mul.rotary_mode = (fia_rotary_mode)s->variant;
    }
    return 0;
}
static int build_rotary(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_rope(c, s, seed, 0); }
static int build_irope(fia_case *c, const fia_case_shape *s, uint64_t seed) { return build_rope(c, s, seed, 1); }
static void bind_rope(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "y", c->t.rope.y, 0);
    c->main_dtype = c->t.rope.x->dtype;
}
static fia_status plan_rotary(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_rotary_mul_plan(ctx, &c->t.rope, &c->p.rotary_mul, p, ws);
}
static fia_status plan_irope(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_interleave_rope_plan(ctx, &c->t.rope, &c->p.interleave_rope, p, ws);
}
static int oracle_rotary(fia_case *c) {
    fia_ref_rope(c->t.rope.x, c->t.rope.cos, c->t.rope.sin, (int)c->p.rotary_mul.rotary_mode, c->out[0].want);
    return 0;
}
static int oracle_irope(fia_case *c) {
    fia_ref_rope(c->t.rope.x, c->t.rope.cos, c->t.rope.sin, 2, c->out[0].want);
    return 0;
}

const fia_case_desc fia_case_rotary_mul = {
    "rotary_mul", "dims {T, N, D}: x [T, N, D], cos / sin [T, 1, D] of dtype; variant: rotary_mode",
    build_rotary, bind_rope, plan_rotary, oracle_rotary, NULL, 0};
const fia_case_desc fia_case_interleave_rope = {
    "interleave_rope", "dims {T, N, D}: x [T, N, D], cos / sin [T, 1, D] of dtype",
    build_irope, bind_rope, plan_irope, oracle_irope, NULL, 0};

/* ---- dynamic_quant: dims {T, H}, variant = quant_mode --------------------------------------- */

static int build_quant(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    if (!dims_ok(s->dims, 2) || !float_dtype(s->dtype) || s->variant < 0 || s->variant > 2) return -1;
    uint64_t r = seed;
    const int64_t xs[2] = {s->dims[0], s->dims[1]};
    const int64_t ss[1] = {s->variant == 0 ? s->dims[0] : s->variant == 1 ? 1 : s->dims[1]};
    fia_tensor *x = fia_case_tensor(c, s->dtype, 2, xs, &r, -4, 4);
    fia_tensor *y = fia_case_tensor(c, FIA_DTYPE_INT8, 2, xs, NULL, 0, 0);
    fia_tensor *sc = fia_case_tensor(c, FIA_DTYPE_FLOAT32, 1, ss, NULL, 0, 0);
    if (!x || !y || !sc) return -1;
    const fia_dynamic_quant_tensors t = {x, NULL, NULL, y, sc};
    c->t.dynamic_quant = t;
    fia_dynamic_quant_params_init(&c->p.dynamic_quant);
    c->p.dynamic_quant.quant_mode = (fia_quant_mode)s->variant;
    return 0;
}
static void bind_quant(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "y", c->t.dynamic_quant.y, 0);
    fia_case_out(c, "scale", c->t.dynamic_quant.scale, 0);
    c->main_dtype = c->t.dynamic_quant.x->dtype;
}
static fia_status plan_quant(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_dynamic_quant_plan(ctx, &c->t.dynamic_quant, &c->p.dynamic_quant, p, ws);
}
static int oracle_quant(fia_case *c) {
    const fia_dynamic_quant_tensors *t = &c->t.dynamic_quant;
    const fia_dynamic_quant_params *p = &c->p.dynamic_quant;
    fia_ref_dynamic_quant(t->x, t->smooth_scales, t->group_index, (int)p->quant_mode,
                          p->dst_type_max > 0 ? p->dst_type_max : 127.0, c->out[0].want, c->out[0].quot,
                          c->out[1].want);
    return 0;
}

const fia_case_desc fia_case_dynamic_quant = {
    "dynamic_quant", "dims {T, H}: x [T, H] of dtype; variant: quant_mode (0 pertoken, 1 pertensor, 2 perchannel)",
    build_quant, bind_quant, plan_quant, oracle_quant, NULL, 0};

/* ---- scatter_update: dims {B, S, H, U} -------------------------------------------------------- */

static int build_su(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    const int64_t B = s->dims[0], S = s->dims[1], H = s->dims[2], U = s->dims[3];
    if (!dims_ok(s->dims, 4) || U > S || !float_dtype(s->dtype)) return -1;
    uint64_t r = seed;
    const int64_t ds[3] = {B, S, H}, us[3] = {B, U, H}, is[1] = {B};
    fia_tensor *d = fia_case_tensor(c, s->dtype, 3, ds, &r, -1, 1);
    fia_tensor *ix = fia_case_tensor(c, FIA_DTYPE_INT64, 1, is, NULL, 0, 0);
    fia_tensor *u = fia_case_tensor(c, s->dtype, 3, us, &r, -1, 1);
    if (!d || !ix || !u) return -1;
    for (int64_t b = 0; b < B; b++) fia_case_store(ix, b, (double)fia_case_int(&r, 0, S - U));
    if (s->variant == 1) fia_case_store(ix, fia_case_int(&r, 0, B - 1), (double)(S - U + 1)); /* out of range */
    const fia_scatter_update_tensors t = {d, ix, u};
    c->t.scatter_update = t;
    fia_scatter_update_params_init(&c->p.scatter_update);
    c->p.scatter_update.axis = 1;
    return 0;
}
static void bind_su(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "data", c->t.scatter_update.data, 1);
    c->main_dtype = c->t.scatter_update.data->dtype;
}
static fia_status plan_su(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_scatter_update_plan(ctx, &c->t.scatter_update, &c->p.scatter_update, p, ws);
}
static int oracle_su(fia_case *c) {
    const fia_scatter_update_tensors *t = &c->t.scatter_update;
    return fia_ref_scatter_update(t->data, c->out[0].want, t->indices, t->updates, c->p.scatter_update.axis) == 0 ? 0 : 1;
}

const fia_case_desc fia_case_scatter_update = {
    "scatter_update", "dims {B, S, H, U}: data [B, S, H], indices int64 [B], updates [B, U, H] (axis 1); "
    "variant 1: one start out of range",
    build_su, bind_su, plan_su, oracle_su, NULL, 0};

/* ---- scatter_nd_update: dims {R, H, K} (variant 0 plain, 2 out of range) or {blocks, bs, H, K}
 *      (variant 1, PA_BSND flat slots) ------------------------------------------------------------ */

static int build_snd(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    const int paged = s->variant == 1;
    const int n = paged ? 4 : 3;
    if (s->variant < 0 || s->variant > 2 || !dims_ok(s->dims, n) || !float_dtype(s->dtype)) return -1;
    const int64_t rows = paged ? s->dims[0] * s->dims[1] : s->dims[0];
    const int64_t H = s->dims[n - 2], K = s->dims[n - 1];
    if (K > rows || rows > BIG) return -1;
    uint64_t r = seed;
    const int64_t ps[3] = {s->dims[0], s->dims[1], H}, is[2] = {K, 1}, us[2] = {K, H};
    fia_tensor *in = fia_case_tensor(c, s->dtype, paged ? 3 : 2, paged ? ps : (const int64_t[]){rows, H}, &r, -1, 1);
    fia_tensor *ix = fia_case_tensor(c, FIA_DTYPE_INT64, 2, is, NULL, 0, 0);
    fia_tensor *u = fia_case_tensor(c, s->dtype, 2, us, &r, -1, 1);
    /* distinct rows: the result does not depend on write order */
    if (!in || !ix || !u || fia_case_distinct(ix, K, rows, &r) != 0) return -1;
    if (s->variant == 2) fia_case_store(ix, fia_case_int(&r, 0, K - 1), (double)rows); /* out of range */
    const fia_scatter_nd_update_tensors t = {in, ix, u};
    c->t.scatter_nd_update = t;
    fia_scatter_nd_update_params_init(&c->p.scatter_nd_update);
    if (paged) c->p.scatter_nd_update.cache_mode = FIA_LAYOUT_PA_BSND;
    return 0;
}
static void bind_snd(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "input", c->t.scatter_nd_update.input, 1);
    c->main_dtype = c->t.scatter_nd_update.input->dtype;
}
static fia_status plan_snd(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_scatter_nd_update_plan(ctx, &c->t.scatter_nd_update, &c->p.scatter_nd_update, p, ws);
}
static int oracle_snd(fia_case *c) {
    const fia_scatter_nd_update_tensors *t = &c->t.scatter_nd_update;
    const fia_layout m = c->p.scatter_nd_update.cache_mode;
    const int mode = m == FIA_LAYOUT_PA_BSND ? 1 : m == FIA_LAYOUT_PA_NZ ? 2 : 0;
    return fia_ref_scatter_nd_update(t->input, c->out[0].want, t->indices, t->updates, mode) == 0 ? 0 : 1;
}

const fia_case_desc fia_case_scatter_nd_update = {
    "scatter_nd_update", "variant 0: dims {R, H, K}: input [R, H], indices int64 [K, 1] (distinct rows), "
    "updates [K, H]; variant 1: dims {blocks, bs, H, K}, PA_BSND slots; variant 2: as 0 with one row "
    "out of range",
    build_snd, bind_snd, plan_snd, oracle_snd, NULL, 0};

/* ---- gather_selection_kv_cache: dims {B, S, K, sbs, C, R}, H = 1 -------------------------------
 * Full caches of 2 sbs-token blocks, (K + 1) blocks per batch (shuffled table), selection caches
 * of 2 sbs-token blocks (distinct per row); kv lengths in [0, full], query lengths in [0, S];
 * top-k entries mostly valid, now and then one beyond the blocks, a -1 tail now and then.
 * variant 0: with k_rope [.., R]; 1: without (C8-style). float16, bfloat16 or int8. */

static int build_gs(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    const int64_t B = s->dims[0], S = s->dims[1], K = s->dims[2], sbs = s->dims[3], C = s->dims[4], R = s->dims[5];
    const int rope = s->variant == 0;
    if (!dims_ok(s->dims, 6) || s->variant < 0 || s->variant > 1 || K > FIA_GATHER_SELECTION_MAX_TOPK ||
        (K > 32 && sbs != 1) || (s->dtype != FIA_DTYPE_FLOAT16 && s->dtype != FIA_DTYPE_BFLOAT16 && s->dtype != FIA_DTYPE_INT8))
        return -1;
    const int64_t bsz = 2 * sbs, fmax = K + 1, rows = B * S, smax = (K * sbs + bsz - 1) / bsz;
    if (B * fmax * bsz * (C > R ? C : R) > BIG || rows * smax * bsz * (C > R ? C : R) > BIG || rows * (K + 1) > BIG)
        return -1;
    uint64_t r = seed;
    const int64_t skv[3] = {rows * smax, bsz, C}, sr[3] = {rows * smax, bsz, R}, fkv[3] = {B * fmax, bsz, C};
    const int64_t fr[3] = {B * fmax, bsz, R}, st[4] = {B, S, 1, K + 1}, tk[4] = {B, S, 1, K};
    const double lo = s->dtype == FIA_DTYPE_INT8 ? -127 : -1, hi = -lo;
    fia_tensor *selr = rope ? fia_case_tensor(c, s->dtype, 3, sr, &r, lo, hi) : NULL;
    fia_tensor *selkv = fia_case_tensor(c, s->dtype, 3, skv, &r, lo, hi);
    fia_tensor *seltab = fia_case_perm_table(c, rows, smax, &r);
    fia_tensor *status = fia_case_tensor(c, FIA_DTYPE_INT32, 4, st, &r, -3, 9);
    fia_tensor *topk = fia_case_tensor(c, FIA_DTYPE_INT32, 4, tk, NULL, 0, 0);
    fia_tensor *fullr = rope ? fia_case_tensor(c, s->dtype, 3, fr, &r, lo, hi) : NULL;
    fia_tensor *fullkv = fia_case_tensor(c, s->dtype, 3, fkv, &r, lo, hi);
    fia_tensor *fulltab = fia_case_perm_table(c, B, fmax, &r);
    fia_tensor *kvl = fia_case_tensor(c, FIA_DTYPE_INT32, 1, &B, NULL, 0, 0);
    fia_tensor *ql = fia_case_tensor(c, FIA_DTYPE_INT32, 1, &B, NULL, 0, 0);
    fia_tensor *out = fia_case_tensor(c, FIA_DTYPE_INT32, 1, &rows, NULL, 0, 0);
    if ((rope && (!selr || !fullr)) || !selkv || !seltab || !status || !topk || !fullkv || !fulltab || !kvl || !ql ||
        !out)
        return -1;
    for (int64_t b = 0; b < B; b++) {
        fia_case_store(kvl, b, (double)fia_case_int(&r, 0, fmax * bsz));
        fia_case_store(ql, b, (double)fia_case_int(&r, 0, S));
    }
    const int64_t nent = (fmax * bsz + sbs - 1) / sbs;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t tail = fia_case_int(&r, 0, 3) == 0 ? fia_case_int(&r, 0, K) : K;
        for (int64_t k = 0; k < K; k++)
            fia_case_store(topk, i * K + k, k >= tail ? -1.0 : (double)fia_case_int(&r, 0, nent));
    }
    fia_gather_selection_kv_cache_params_init(&c->p.gather_selection);
    c->p.gather_selection.selection_topk_block_size = sbs;
    const fia_gather_selection_kv_cache_tensors t = {selr, selkv, seltab, status, topk, fullr, fullkv, fulltab,
                                                     kvl, ql, out};
    c->t.gather_selection = t;
    return 0;
}

static void bind_gs(fia_case *c) {
    const fia_gather_selection_kv_cache_tensors *t = &c->t.gather_selection;
    c->n_out = 0;
    fia_case_out(c, "selection_kv_actual_seq", t->selection_kv_actual_seq, 0);
    fia_case_out(c, "selection_kv_cache", t->selection_kv_cache, 1);
    fia_case_out(c, "selection_kv_block_status", t->selection_kv_block_status, 1);
    fia_case_out(c, "selection_k_rope", t->selection_k_rope, 1);
    c->main_dtype = t->selection_kv_cache->dtype;
}
static fia_status plan_gs(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_gather_selection_kv_cache_plan(ctx, &c->t.gather_selection, &c->p.gather_selection, p, ws);
}
static int oracle_gs(fia_case *c) {
    const fia_gather_selection_kv_cache_tensors *t = &c->t.gather_selection;
    const int64_t rows = fia_tensor_numel(t->selection_kv_actual_seq);
    int64_t *o = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *o);
    if (!o) return -1;
    for (int64_t i = 0; i < rows; i++) o[i] = 0;
    fia_ref_gather_selection(t->selection_kv_cache, c->out[1].want, t->selection_k_rope,
                             t->selection_k_rope ? c->out[3].want : NULL, t->selection_kv_block_table,
                             c->out[2].want, t->selection_topk_indices, t->selection_k_rope ? t->full_k_rope : NULL,
                             t->full_kv_cache, t->full_kv_block_table, t->full_kv_actual_seq,
                             t->full_q_actual_seq, c->p.gather_selection.selection_topk_block_size, o);
    for (int64_t i = 0; i < rows; i++) c->out[0].want[i] = (double)o[i];
    free(o);
    return 0;
}

const fia_case_desc fia_case_gather_selection = {
    "gather_selection_kv_cache",
    "dims {B, S, K, sbs, C, R}: full caches [B (K + 1), 2 sbs, C / R], selection caches [B S smax, 2 sbs, "
    "C / R], top-k [B, S, 1, K] of dtype (float16, bfloat16, int8); variant 0: with k_rope, 1: without",
    build_gs, bind_gs, plan_gs, oracle_gs, NULL, 0};
