/*
 * case_attention.c - the case descriptions (case.h) of fused_infer_attention_score and
 * smallq_flash_attention. The FIA builder makes the dense BSND form without a mask (q [B, S1,
 * N1, D], k / v [B, S2, N2, D], softmax_lse [B, N1, S1, 1]); a bound call with query_rope /
 * key_rope runs the MLA oracle and the MLA rows of the tolerance table.
 */
#include <math.h>
#include <stdlib.h>

#include "case_util.h"
#include "ref_fia.h"
#include "ref_mla.h"
#include "ref_smallq.h"

#define BIG ((int64_t)1 << 22) /* elements a builder makes at most per tensor */

#define dims_ok(d, n) fia_case_dims_ok(d, n, BIG)

/* ---- fused_infer_attention_score: dims {B, S1, S2, N1, N2, D}; variant 1: with softmax_lse ---- */

static int build_fia(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    const int64_t B = s->dims[0], S1 = s->dims[1], S2 = s->dims[2], N1 = s->dims[3], N2 = s->dims[4],
                  D = s->dims[5];
    if (!dims_ok(s->dims, 6) || N1 % N2 != 0 || N1 > 256 || D > 1024 || B > 65536 || /* fia.h's limits */
        (s->dtype != FIA_DTYPE_FLOAT16 && s->dtype != FIA_DTYPE_BFLOAT16 && s->dtype != FIA_DTYPE_FLOAT32))
        return -1;
    const int64_t qs[4] = {B, S1, N1, D}, ks[4] = {B, S2, N2, D}, ls[4] = {B, N1, S1, 1};
    int64_t e = 1;
    for (int i = 0; i < 4; i++) e *= ks[i];
    if (e > BIG || B * S1 * N1 * D > BIG) return -1;
    uint64_t r = seed;
    fia_tensor *q = fia_case_tensor(c, s->dtype, 4, qs, &r, -1, 1);
    fia_tensor *k = fia_case_tensor(c, s->dtype, 4, ks, &r, -1, 1);
    fia_tensor *v = fia_case_tensor(c, s->dtype, 4, ks, &r, -1, 1);
    fia_tensor *o = fia_case_tensor(c, s->dtype, 4, qs, NULL, 0, 0);
    fia_tensor *l = s->variant == 1 ? fia_case_tensor(c, FIA_DTYPE_FLOAT32, 4, ls, NULL, 0, 0) : NULL;
    if (!q || !k || !v || !o || (s->variant == 1 && !l)) return -1;
    fia_fused_infer_attention_score_tensors t = {0};
    t.query = q, t.key = k, t.value = v, t.attention_out = o, t.softmax_lse = l;
    c->t.fia = t;
    fia_fused_infer_attention_score_params *p = &c->p.fia;
    fia_fused_infer_attention_score_params_init(p);
    p->num_heads = N1;
    p->num_key_value_heads = N2;
    p->scale = 1.0 / sqrt((double)D);
    p->input_layout = FIA_LAYOUT_BSND;
    p->softmax_lse_flag = s->variant == 1;
    return 0;
}
static void bind_fia(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "attention_out", c->t.fia.attention_out, 0);
    fia_case_out(c, "softmax_lse", c->p.fia.softmax_lse_flag ? c->t.fia.softmax_lse : NULL, 0);
    c->main_dtype = c->t.fia.attention_out->dtype;
}
static fia_status plan_fia(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_fused_infer_attention_score_plan(ctx, &c->t.fia, &c->p.fia, p, ws);
}
static int oracle_fia(fia_case *c) {
    if (c->t.fia.query_rope || c->t.fia.key_rope) return fia_ref_mla(&c->t.fia, &c->p.fia, c->out[0].want, c->out[1].want);
    return fia_ref_fused_infer_attention_score(&c->t.fia, &c->p.fia, c->out[0].want, c->out[1].want);
}
static const char *tol_fia(const fia_case *c) {
    if (!c->t.fia.query_rope && !c->t.fia.key_rope) return "fused_infer_attention_score";
    return c->t.fia.key && c->t.fia.key->dtype == FIA_DTYPE_INT8 ? "fused_infer_attention_score/mla_int8"
                                                                  : "fused_infer_attention_score/mla";
}

const fia_case_desc fia_case_fia = {
    "fused_infer_attention_score",
    "dims {B, S1, S2, N1, N2, D}: BSND q [B, S1, N1, D], k / v [B, S2, N2, D] of dtype, no mask; "
    "variant 1: softmax_lse [B, N1, S1, 1]",
    build_fia, bind_fia, plan_fia, oracle_fia, tol_fia, 0};

/* ---- smallq_flash_attention: dims {heads, q_len, kv_len, D}, float16 ------------------------ */

static int build_smallq(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    /* heads <= 256: what the library accepts (it runs on FIA's path, N1 <= 256) */
    if (!dims_ok(s->dims, 4) || s->dims[0] > 256 || s->dims[3] > 1024 || s->dtype != FIA_DTYPE_FLOAT16) return -1;
    const int64_t qs[3] = {s->dims[0], s->dims[1], s->dims[3]}, ks[3] = {s->dims[0], s->dims[2], s->dims[3]};
    if (ks[0] * ks[1] * ks[2] > BIG || qs[0] * qs[1] * qs[2] > BIG) return -1;
    uint64_t r = seed;
    fia_tensor *q = fia_case_tensor(c, s->dtype, 3, qs, &r, -1, 1);
    fia_tensor *k = fia_case_tensor(c, s->dtype, 3, ks, &r, -1, 1);
    fia_tensor *v = fia_case_tensor(c, s->dtype, 3, ks, &r, -1, 1);
    fia_tensor *o = fia_case_tensor(c, s->dtype, 3, qs, NULL, 0, 0);
    if (!q || !k || !v || !o) return -1;
    c->t.smallq.q = q, c->t.smallq.k = k, c->t.smallq.v = v, c->t.smallq.o = o;
    return 0;
}
static void bind_smallq(fia_case *c) {
    c->n_out = 0;
    fia_case_out(c, "o", c->t.smallq.o, 0);
    c->main_dtype = c->t.smallq.o->dtype;
}
static fia_status plan_smallq(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    uint64_t bytes = 0;
    const fia_status st = fia_smallq_flash_attention_get_workspace_size(ctx, c->t.smallq.q, c->t.smallq.k,
                                                                        c->t.smallq.v, c->t.smallq.o, &bytes, p);
    if (st == FIA_STATUS_SUCCESS) *ws = (size_t)bytes;
    return st;
}
static int oracle_smallq(fia_case *c) {
    return fia_ref_smallq_flash_attention(c->t.smallq.q, c->t.smallq.k, c->t.smallq.v, NULL, 0, c->out[0].want);
}

const fia_case_desc fia_case_smallq = {
    "smallq_flash_attention", "dims {heads, q_len, kv_len, D}: q [heads, q_len, D], k / v [heads, kv_len, D], float16",
    build_smallq, bind_smallq, plan_smallq, oracle_smallq, NULL, 0};
