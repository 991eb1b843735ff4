/*
 * case_prolog.c - the case description (case.h) of mla_prolog_v3, bf16 modes (weight_quant_mode,
 * kv_cache_quant_mode and query_quant_mode 0; the quantized modes are tests/test_mla_prolog's).
 * dims {T, He, Hcq, N, D, X}, bfloat16 only:
 *   variant 0  PA_BSND caches of X-token blocks (one block more than the tokens need), cache_index
 *              a random permutation of the slots with one skipped token (-1) when T > 1;
 *   variant 1  TND caches [T, 1, 512] / [T, 1, 64], query_norm_flag 1.
 * Weights ~ U(-1, 1) / sqrt(fan-in) keep the activations O(1). The oracle runs at the contract's
 * rounding points (ref_prolog.h, rounding 2) and gives every output and written cache element
 * its slack (one bf16 ulp of the rounded intermediates it reads); cache elements outside the
 * written slots must keep their value (the snapshot of fia_case_prepare).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "case_util.h"
#include "ref_prolog.h"
#include "ref_util.h"

#define BIG ((int64_t)1 << 22) /* elements a builder makes at most per tensor */

enum { HCKV = 512, DR = 64 };

static int build_prolog(fia_case *c, const fia_case_shape *s, uint64_t seed) {
    const int64_t T = s->dims[0], He = s->dims[1], Hcq = s->dims[2], N = s->dims[3], D = s->dims[4],
                  X = s->dims[5];
    const int v = s->variant;
    if (!fia_case_dims_ok(s->dims, 6, BIG) || s->dtype != FIA_DTYPE_BFLOAT16 || v < 0 || v > 1 || N > 128 ||
        X > 1024)
        return -1;
    const int64_t W = N * (D + DR), blocks = v == 0 ? (T + X - 1) / X + 1 : T, bs = v == 0 ? X : 1;
    if (Hcq * W > BIG || He * Hcq > BIG || N * D * HCKV > BIG || He * (HCKV + DR) > BIG || T * He > BIG ||
        T * N * HCKV > BIG || blocks * bs * HCKV > BIG)
        return -1;
    uint64_t r = seed;
    const fia_dtype bf = FIA_DTYPE_BFLOAT16;
    const int64_t xs[2] = {T, He}, wdq[2] = {He, Hcq}, wuq[2] = {Hcq, W}, wuk[3] = {N, D, HCKV};
    const int64_t wkv[2] = {He, HCKV + DR}, gckv = HCKV, rs[2] = {T, DR};
    const int64_t kvs[4] = {blocks, bs, 1, HCKV}, krs[4] = {blocks, bs, 1, DR};
    const int64_t kvt[3] = {T, 1, HCKV}, krt[3] = {T, 1, DR};
    const int64_t qos[3] = {T, N, HCKV}, qrs[3] = {T, N, DR}, qns[2] = {T, Hcq};
    const double fe = 1.0 / sqrt((double)He), fq = 1.0 / sqrt((double)Hcq), fd = 1.0 / sqrt((double)D);
    fia_tensor *x = fia_case_tensor(c, bf, 2, xs, &r, -1, 1);
    fia_tensor *dq = fia_case_tensor(c, bf, 2, wdq, &r, -fe, fe);
    fia_tensor *uq = fia_case_tensor(c, bf, 2, wuq, &r, -fq, fq);
    fia_tensor *uk = fia_case_tensor(c, bf, 3, wuk, &r, -fd, fd);
    fia_tensor *dkv = fia_case_tensor(c, bf, 2, wkv, &r, -fe, fe);
    fia_tensor *gq = fia_case_tensor(c, bf, 1, &Hcq, &r, 0.5, 1.5);
    fia_tensor *gk = fia_case_tensor(c, bf, 1, &gckv, &r, 0.5, 1.5);
    fia_tensor *sn = fia_case_tensor(c, bf, 2, rs, &r, -1, 1);
    fia_tensor *cs = fia_case_tensor(c, bf, 2, rs, &r, -1, 1);
    fia_tensor *kv = fia_case_tensor(c, bf, v == 0 ? 4 : 3, v == 0 ? kvs : kvt, &r, -1, 1);
    fia_tensor *kr = fia_case_tensor(c, bf, v == 0 ? 4 : 3, v == 0 ? krs : krt, &r, -1, 1);
    fia_tensor *ci = v == 0 ? fia_case_tensor(c, FIA_DTYPE_INT64, 1, &T, NULL, 0, 0) : NULL;
    fia_tensor *qo = fia_case_tensor(c, bf, 3, qos, NULL, 0, 0);
    fia_tensor *qr = fia_case_tensor(c, bf, 3, qrs, NULL, 0, 0);
    fia_tensor *qn = v == 1 ? fia_case_tensor(c, bf, 2, qns, NULL, 0, 0) : NULL;
    if (!x || !dq || !uq || !uk || !dkv || !gq || !gk || !sn || !cs || !kv || !kr || (v == 0 && !ci) || !qo ||
        !qr || (v == 1 && !qn))
        return -1;
    if (v == 0) { /* distinct slots, one token skipped */
        if (fia_case_distinct(ci, T, blocks * bs, &r) != 0) return -1;
        if (T > 1) fia_case_store(ci, fia_case_int(&r, 0, T - 1), -1.0);
    }
    fia_mla_prolog_v3_params *p = &c->p.prolog;
    fia_mla_prolog_v3_params_init(p);
    p->cache_mode = v == 0 ? FIA_LAYOUT_PA_BSND : FIA_LAYOUT_TND;
    p->query_norm_flag = v == 1;
    fia_mla_prolog_v3_tensors t;
    memset(&t, 0, sizeof t);
    t.token_x = x, t.weight_dq = dq, t.weight_uq_qr = uq, t.weight_uk = uk, t.weight_dkv_kr = dkv;
    t.rmsnorm_gamma_cq = gq, t.rmsnorm_gamma_ckv = gk, t.rope_sin = sn, t.rope_cos = cs;
    t.kv_cache = kv, t.kr_cache = kr, t.cache_index = ci;
    t.query_out = qo, t.query_rope_out = qr, t.query_norm = qn;
    c->t.prolog = t;
    return 0;
}

static void bind_prolog(fia_case *c) {
    const fia_mla_prolog_v3_tensors *t = &c->t.prolog;
    c->n_out = 0;
    fia_case_out(c, "query_out", t->query_out, 0);
    fia_case_out(c, "query_rope_out", t->query_rope_out, 0);
    fia_case_out(c, "query_norm", c->p.prolog.query_norm_flag ? t->query_norm : NULL, 0);
    fia_case_out(c, "kv_cache", t->kv_cache, 1);
    fia_case_out(c, "kr_cache", t->kr_cache, 1);
    c->main_dtype = t->query_out->dtype;
}

static fia_status plan_prolog(fia_context *ctx, const fia_case *c, fia_plan **p, size_t *ws) {
    return fia_mla_prolog_v3_plan(ctx, &c->t.prolog, &c->p.prolog, p, ws);
}

/* The logical element index of element d of cache row `slot` (w wide) in `cache`. */
static int64_t cache_elem(const fia_tensor *cache, fia_layout mode, int64_t slot, int64_t d, int64_t w) {
    if (mode == FIA_LAYOUT_PA_NZ) {
        const int64_t bs = cache->shape[3], b = slot / bs, r = slot % bs;
        return ((b * (w / 16) + d / 16) * bs + r) * 16 + d % 16;
    }
    return slot * w + d;
}

static int oracle_prolog(fia_case *c) {
    const fia_mla_prolog_v3_tensors *t = &c->t.prolog;
    const fia_mla_prolog_v3_params *p = &c->p.prolog;
    if (p->weight_quant_mode || p->kv_cache_quant_mode || p->query_quant_mode || !t->kr_cache) return -1;
    const fia_tensor *x = t->token_x;
    const int64_t T = x->ndim == 3 ? x->shape[0] * x->shape[1] : x->shape[0];
    double *tmp = malloc((size_t)(T * 2 * (HCKV + DR) + 1) * sizeof *tmp);
    if (!tmp) return -1;
    ref_prolog_out o;
    memset(&o, 0, sizeof o);
    o.qo = c->out[0].want, o.sqo = c->out[0].quot, o.qr = c->out[1].want, o.sqr = c->out[1].quot;
    o.qn = c->out[2].want, o.sqn = c->out[2].quot;
    o.kv = tmp, o.skv = tmp + T * HCKV, o.kr = tmp + 2 * T * HCKV, o.skr = tmp + 2 * T * HCKV + T * DR;
    if (fia_ref_mla_prolog_v3(t, p, 2, &o) != 0) {
        free(tmp);
        return -1;
    }
    /* the expected caches: the snapshot, the written slots from the oracle */
    const int paged = p->cache_mode == FIA_LAYOUT_PA_BSND || p->cache_mode == FIA_LAYOUT_PA_NZ;
    for (int64_t tt = 0; tt < T; tt++) {
        const int64_t slot = paged ? (int64_t)fia_ref_load(t->cache_index, tt) : tt;
        if (slot < 0) continue;
        for (int64_t d = 0; d < HCKV; d++) {
            const int64_t e = cache_elem(t->kv_cache, p->cache_mode, slot, d, HCKV);
            c->out[3].want[e] = o.kv[tt * HCKV + d], c->out[3].quot[e] = o.skv[tt * HCKV + d];
        }
        for (int64_t d = 0; d < DR; d++) {
            const int64_t e = cache_elem(t->kr_cache, p->cache_mode, slot, d, DR);
            c->out[4].want[e] = o.kr[tt * DR + d], c->out[4].quot[e] = o.skr[tt * DR + d];
        }
    }
    free(tmp);
    return 0;
}

const fia_case_desc fia_case_prolog = {
    "mla_prolog_v3",
    "dims {T, He, Hcq, N, D, X}, bfloat16, token_x [T, He], bf16 modes; variant 0: PA_BSND caches of "
    "X-token blocks, cache_index a permutation with one -1; 1: TND caches, query_norm",
    build_prolog, bind_prolog, plan_prolog, oracle_prolog, NULL, 0x1fu};
