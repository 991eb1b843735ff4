/*
 * smallq.c - smallq_flash_attention: the SmallQ decode operator of the second seed.
 *
 * A narrow special case of FIA's decode path: Q [N, qLen, D], K/V [N, kvLen, D] are viewed as
 * BNSD tensors with B = 1 and N query heads = N KV heads, scale 1/sqrt(D), no mask, and planned
 * by fused_infer_attention_score (same kernels, same split-KV schedule). This file only checks
 * the SmallQ contract, so that errors name Q, K, V and O, and builds the views.
 */
#include <math.h>

#include "core/status.h"
#include "core/tensor.h"
#include "fia.h"

/* The seed's "any headDim >= 1", up to FIA's cap (576, the MLA absorbed width, included). */
enum { FIA_SMALLQ_MAX_HEAD_DIM = 1024 };

/* [N, S, D] float16 with the given dims (-1: any value >= 1). */
static fia_status fia_smallq_check(const fia_tensor *t, const char *name, int64_t n, int64_t s,
                                   int64_t d, const char *ref) {
    FIA_TRY(fia_tensor_check(t, name, true));
    if (t->dtype != FIA_DTYPE_FLOAT16)
        return FIA_INVALID("%s dtype is %s, must be float16", name, fia_dtype_name(t->dtype));
    if (t->ndim != 3)
        return FIA_INVALID("%s has %d dims, expected 3 ([numHeads, len, headDim])", name,
                           (int)t->ndim);
    const int64_t want[3] = {n, s, d};
    static const char *const what[3] = {"numHeads", "length", "headDim"};
    for (int i = 0; i < 3; i++) {
        if (t->shape[i] < 1)
            return FIA_INVALID("%s dim %d (%s) is %lld, must be >= 1", name, i, what[i],
                               (long long)t->shape[i]);
        if (want[i] >= 0 && t->shape[i] != want[i])
            return FIA_INVALID("%s dim %d (%s) is %lld, %s has %lld", name, i, what[i],
                               (long long)t->shape[i], ref, (long long)want[i]);
    }
    return FIA_STATUS_SUCCESS;
}

/* The BNSD view [1, N, S, D] of a [N, S, D] tensor. */
static fia_tensor fia_smallq_bnsd(const fia_tensor *t) {
    fia_tensor v = *t;
    v.ndim = 4;
    v.shape[0] = 1;
    v.strides[0] = t->shape[0] * t->strides[0];
    for (int i = 0; i < 3; i++) {
        v.shape[i + 1] = t->shape[i];
        v.strides[i + 1] = t->strides[i];
    }
    return v;
}

fia_status fia_smallq_flash_attention_get_workspace_size(fia_context *ctx, const fia_tensor *q,
                                                         const fia_tensor *k, const fia_tensor *v,
                                                         fia_tensor *o, uint64_t *workspace_size,
                                                         fia_plan **executor) {
    fia_error_clear();
    if (!ctx) return FIA_INVALID("context is NULL");
    if (!q) return FIA_INVALID("Q is NULL");
    if (!k) return FIA_INVALID("K is NULL");
    if (!v) return FIA_INVALID("V is NULL");
    if (!o) return FIA_INVALID("O is NULL");
    if (!workspace_size) return FIA_INVALID("workspace_size is NULL");
    if (!executor) return FIA_INVALID("executor is NULL");
    FIA_TRY(fia_smallq_check(q, "Q", -1, -1, -1, "Q"));
    const int64_t N = q->shape[0], S1 = q->shape[1], D = q->shape[2];
    if (D > FIA_SMALLQ_MAX_HEAD_DIM)
        return FIA_UNSUPPORTED("Q dim 2 (headDim) is %lld, at most %d is supported", (long long)D,
                               FIA_SMALLQ_MAX_HEAD_DIM);
    FIA_TRY(fia_smallq_check(k, "K", N, -1, D, "Q"));
    FIA_TRY(fia_smallq_check(v, "V", N, k->shape[1], D, "K"));
    FIA_TRY(fia_smallq_check(o, "O", N, S1, D, "Q"));

    fia_tensor q4 = fia_smallq_bnsd(q), k4 = fia_smallq_bnsd(k), v4 = fia_smallq_bnsd(v),
               o4 = fia_smallq_bnsd(o);
    fia_fused_infer_attention_score_tensors t = {0};
    t.query = &q4;
    t.key = &k4;
    t.value = &v4;
    t.attention_out = &o4;
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    p.num_heads = N;
    p.num_key_value_heads = N;
    p.scale = 1.0 / sqrt((double)D);
    p.input_layout = FIA_LAYOUT_BNSD;
    size_t bytes = 0;
    fia_plan *plan = NULL;
    FIA_TRY(fia_fused_infer_attention_score_plan(ctx, &t, &p, &plan, &bytes));
    *executor = plan;
    *workspace_size = bytes;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_smallq_flash_attention(void *workspace, uint64_t workspace_size,
                                      fia_plan *executor) {
    return fia_plan_execute(executor, workspace, (size_t)workspace_size);
}
