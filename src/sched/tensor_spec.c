/*
 * tensor_spec.c - the shared checker of the operators' tensor tables (see tensor_spec.h).
 */
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "sched/tensor_spec.h"

static const fia_tensor *fia_spec_get(const void *tensors, const fia_tensor_spec *s) {
    const fia_tensor *t;
    memcpy(&t, (const char *)tensors + s->offset, sizeof t);
    return t;
}

/* Whether an entry or rule with these flags applies under the call's conditions. */
static int fia_spec_applies(uint32_t flags, uint32_t conds) {
    const uint32_t when = flags & ~(uint32_t)0xffu;
    return (when & conds) == when;
}

fia_status fia_tensor_spec_check_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                      uint32_t conds) {
    for (size_t i = 0; i < n; i++)
        if ((spec[i].flags & FIA_SPEC_REQUIRED) && fia_spec_applies(spec[i].flags, conds) &&
            !fia_spec_get(tensors, &spec[i]))
            return FIA_INVALID("%s is NULL", spec[i].name);
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (t && fia_spec_applies(spec[i].flags, conds))
            FIA_TRY(fia_tensor_check(t, spec[i].name, (spec[i].flags & FIA_SPEC_INNER_UNIT) != 0));
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_spec_dtypes_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                       uint32_t conds) {
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (!t || !fia_spec_applies(spec[i].flags, conds)) continue;
        if (spec[i].dtypes && !((unsigned)t->dtype < 32u && (spec[i].dtypes >> t->dtype) & 1u))
            return FIA_INVALID("%s dtype is %s, must be %s", spec[i].name,
                               fia_dtype_name(t->dtype), spec[i].dtypes_what);
        if (spec[i].same_as >= 0) {
            const fia_tensor_spec *o = &spec[spec[i].same_as];
            const fia_tensor *u = fia_spec_get(tensors, o);
            if (u && t->dtype != u->dtype)
                return FIA_INVALID("%s dtype is %s, %s is %s", spec[i].name,
                                   fia_dtype_name(t->dtype), o->name, fia_dtype_name(u->dtype));
        }
    }
    return FIA_STATUS_SUCCESS;
}

/* Dim d of t (negative: from the end) as an index, or -1 when t has no such dim. */
static int fia_spec_dim(const fia_tensor *t, int d) {
    const int i = d < 0 ? (int)t->ndim + d : d;
    return i >= 0 && i < (int)t->ndim ? i : -1;
}

static fia_status fia_spec_rule(const fia_tensor *a, const char *an, const fia_tensor *b,
                                const char *bn, const fia_dim_rule *r) {
    const char *what = r->what ? r->what : "required";
    if (r->kind == FIA_RANK_CONST && a->ndim != r->value)
        return FIA_INVALID("%s has %d dims, must be %lld (%s)", an, (int)a->ndim,
                           (long long)r->value, what);
    if (r->kind == FIA_RANK_EQ && b && a->ndim != b->ndim)
        return FIA_INVALID("%s has %d dims, %s has %d", an, (int)a->ndim, bn, (int)b->ndim);
    if (r->kind != FIA_DIM_EQ && r->kind != FIA_DIM_CONST) return FIA_STATUS_SUCCESS;
    const int i = fia_spec_dim(a, r->ad);
    if (i < 0) return FIA_STATUS_SUCCESS;
    if (r->kind == FIA_DIM_CONST) {
        if (a->shape[i] != r->value)
            return FIA_INVALID("%s dim %d is %lld, must be %lld (%s)", an, i,
                               (long long)a->shape[i], (long long)r->value, what);
        return FIA_STATUS_SUCCESS;
    }
    const int j = b ? fia_spec_dim(b, r->bd) : -1;
    if (j >= 0 && a->shape[i] != b->shape[j])
        return FIA_INVALID("%s dim %d is %lld, %s dim %d is %lld", an, i, (long long)a->shape[i],
                           bn, j, (long long)b->shape[j]);
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_spec_dims(const void *tensors, const fia_tensor_spec *spec,
                                const fia_dim_rule *rules, size_t nr, uint32_t conds) {
    for (size_t k = 0; k < nr; k++) {
        const fia_dim_rule *r = &rules[k];
        if (!fia_spec_applies(r->flags, conds)) continue;
        const fia_tensor *a = fia_spec_get(tensors, &spec[r->a]);
        const int two = r->kind == FIA_DIM_EQ || r->kind == FIA_RANK_EQ;
        const fia_tensor *b = two ? fia_spec_get(tensors, &spec[r->b]) : NULL;
        if (!a) continue;
        FIA_TRY(fia_spec_rule(a, spec[r->a].name, b, two ? spec[r->b].name : NULL, r));
    }
    return FIA_STATUS_SUCCESS;
}
