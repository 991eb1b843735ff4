/*
 * fia.c - fused_infer_attention_score: the public entry. Imports the params, checks the
 * arguments every path needs and dispatches to the MLA path (query_rope or key_rope given,
 * fia_mla.c) or the dense path (fia_plan.c); neither path knows the other.
 */
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/params.h"
#include "core/status.h"
#include "ops/fia_internal.h"

void fia_fused_infer_attention_score_params_init(fia_fused_infer_attention_score_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->struct_size = (uint32_t)sizeof *p;
    p->num_heads = 1;
    p->num_key_value_heads = 0;
    p->scale = 1.0;
    p->pre_tokens = FIA_MAX_LEN;
    p->next_tokens = FIA_MAX_LEN;
    p->input_layout = FIA_LAYOUT_BSH;
    p->sparse_mode = 0;
    p->block_size = 0;
    p->antiquant_mode = 0;
}

fia_status fia_fused_infer_attention_score_plan(fia_context *ctx,
                                                const fia_fused_infer_attention_score_tensors *t,
                                                const fia_fused_infer_attention_score_params *prm,
                                                fia_plan **plan, size_t *workspace_bytes) {
    FIA_TRY(fia_plan_args(ctx, t, prm, plan));
    fia_fused_infer_attention_score_params prm_v;
    fia_fused_infer_attention_score_params_init(&prm_v);
    FIA_TRY(fia_params_import(&prm_v, sizeof prm_v, prm, sizeof prm_v,
                              "fia_fused_infer_attention_score_params_init"));
    fia_plan *p = NULL;
    FIA_TRY((t->query_rope || t->key_rope ? fia_mla_plan : fia_dense_plan)(ctx, t, &prm_v, &p));
    *plan = p;
    if (workspace_bytes) *workspace_bytes = p->workspace_bytes;
    return FIA_STATUS_SUCCESS;
}

fia_status fia_fused_infer_attention_score(fia_context *ctx,
                                           const fia_fused_infer_attention_score_tensors *t,
                                           const fia_fused_infer_attention_score_params *prm) {
    fia_plan *plan = NULL;
    FIA_TRY(fia_fused_infer_attention_score_plan(ctx, t, prm, &plan, NULL));
    return fia_plan_run_once(plan);
}
