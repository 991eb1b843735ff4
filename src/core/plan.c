/* plan.c - fia_plan_execute / destroy / workspace size, shared by every operator. */
#include <stdint.h>
#include <stdlib.h>

#include "core/context.h"
#include "core/plan.h"
#include "core/status.h"

size_t fia_plan_workspace_size(const fia_plan *plan) { return plan ? plan->workspace_bytes : 0; }

fia_status fia_plan_execute(fia_plan *plan, void *workspace, size_t workspace_bytes) {
    fia_error_clear();
    if (!plan) return FIA_INVALID("fia_plan_execute: plan is NULL");
    if (workspace_bytes < plan->workspace_bytes)
        return fia_error(FIA_STATUS_WORKSPACE_TOO_SMALL,
                         "workspace is %zu bytes, the plan needs %zu", workspace_bytes,
                         plan->workspace_bytes);
    if (!workspace && plan->workspace_bytes > 0)
        return FIA_INVALID("workspace is NULL, the plan needs %zu bytes", plan->workspace_bytes);
    char *ws = workspace;
    if (ws) {
        const uintptr_t mis = (uintptr_t)ws % FIA_WORKSPACE_ALIGN;
        if (mis) ws += FIA_WORKSPACE_ALIGN - mis;
    }
    if (plan->check) FIA_TRY(plan->check(plan));
    plan->execute(plan, ws);
    return FIA_STATUS_SUCCESS;
}

void fia_plan_destroy(fia_plan *plan) {
    if (plan) plan->destroy(plan);
}

fia_status fia_plan_run_once(fia_plan *plan) {
    void *ws = NULL;
    if (plan->workspace_bytes > 0) {
        ws = malloc(plan->workspace_bytes);
        if (!ws) {
            const size_t bytes = plan->workspace_bytes;
            fia_plan_destroy(plan);
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "cannot allocate a workspace of %zu bytes",
                             bytes);
        }
    }
    const fia_status st = fia_plan_execute(plan, ws, plan->workspace_bytes);
    free(ws);
    fia_plan_destroy(plan);
    return st;
}

const char *fia_plan_compute_unit(const fia_plan *plan) {
    return plan && plan->unit ? plan->unit : "fma";
}

fia_status fia_plan_args(const fia_context *ctx, const void *tensors, const void *params,
                         fia_plan **plan) {
    fia_error_clear();
    if (!ctx) return FIA_INVALID("context is NULL");
    if (!tensors) return FIA_INVALID("tensors is NULL");
    if (!params) return FIA_INVALID("params is NULL");
    if (!plan) return FIA_INVALID("plan is NULL");
    return FIA_STATUS_SUCCESS;
}
