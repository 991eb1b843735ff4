/*
 * tensor_spec.c - the shared checker of the operators' tensor tables (see tensor_spec.h).
 */
#include <stdbool.h>
#include <string.h>

#include "core/status.h"
#include "core/tensor.h"
#include "sched/tensor_spec.h"

static const fia_tensor *fia_spec_get(const void *tensors, const fia_tensor_spec *s) {
    const fia_tensor *t;
    memcpy(&t, (const char *)tensors + s->offset, sizeof t);
    return t;
}

/* Does the entry apply to a call with these conditions? */
static bool fia_spec_applies(const fia_tensor_spec *s, uint32_t conds) {
    return (s->when & ~conds) == 0;
}

static bool fia_spec_dtype_in(const fia_tensor_spec *s, fia_dtype dt) {
    return (unsigned)dt < 32u && ((s->dtypes >> dt) & 1u);
}

fia_status fia_tensor_spec_check_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                      uint32_t conds) {
    for (size_t i = 0; i < n; i++) {
        if (!fia_spec_applies(&spec[i], conds) && (spec[i].flags & FIA_SPEC_ONLY_WHEN) &&
            fia_spec_get(tensors, &spec[i]))
            return FIA_INVALID("%s is given, but only read when %s", spec[i].name,
                               spec[i].when_what ? spec[i].when_what : "its mode is on");
        if (!fia_spec_applies(&spec[i], conds) || !(spec[i].flags & FIA_SPEC_REQUIRED) ||
            fia_spec_get(tensors, &spec[i]))
            continue;
        if (spec[i].when_what)
            return FIA_INVALID("%s is NULL but %s", spec[i].name, spec[i].when_what);
        return FIA_INVALID("%s is NULL", spec[i].name);
    }
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (t && fia_spec_applies(&spec[i], conds))
            FIA_TRY(fia_tensor_check(t, spec[i].name, (spec[i].flags & FIA_SPEC_INNER_UNIT) != 0));
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_spec_check(const void *tensors, const fia_tensor_spec *spec, size_t n) {
    return fia_tensor_spec_check_when(tensors, spec, n, 0);
}

fia_status fia_tensor_spec_dtypes_when(const void *tensors, const fia_tensor_spec *spec, size_t n,
                                       uint32_t conds) {
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (!t || !fia_spec_applies(&spec[i], conds)) continue;
        if (spec[i].flags & FIA_SPEC_SAME_OR) {
            const fia_tensor_spec *o = &spec[spec[i].same_as];
            const fia_tensor *u = fia_spec_get(tensors, o);
            if (fia_spec_dtype_in(&spec[i], t->dtype) || (u && t->dtype == u->dtype)) continue;
            return FIA_INVALID("%s dtype is %s, must be %s (the %s's) or %s", spec[i].name,
                               fia_dtype_name(t->dtype), u ? fia_dtype_name(u->dtype) : "?",
                               o->name, spec[i].dtypes_what);
        }
        if (spec[i].dtypes && !fia_spec_dtype_in(&spec[i], t->dtype))
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

fia_status fia_tensor_spec_dtypes(const void *tensors, const fia_tensor_spec *spec, size_t n) {
    return fia_tensor_spec_dtypes_when(tensors, spec, n, 0);
}

/* Dim d of t (negative: from the end) as an index, or -1 when t has no such dim. */
static int fia_spec_dim(const fia_tensor *t, int d) {
    const int i = d < 0 ? (int)t->ndim + d : d;
    return i >= 0 && i < (int)t->ndim ? i : -1;
}

static fia_status fia_spec_rule(const fia_tensor *a, const char *an, const fia_tensor *b,
                                const char *bn, const fia_dim_rule *r, const int64_t *vals) {
    if (r->kind == FIA_RANK_CONST || r->kind == FIA_RANK_EQ) {
        if (r->kind == FIA_RANK_EQ && !b) return FIA_STATUS_SUCCESS;
        const int64_t want = r->kind == FIA_RANK_CONST ? r->value : b->ndim;
        if (a->ndim == want) return FIA_STATUS_SUCCESS;
        if (r->kind == FIA_RANK_EQ)
            return FIA_INVALID("%s has %d dims, %s has %d", an, (int)a->ndim, bn, (int)b->ndim);
        if (!r->what)
            return FIA_INVALID("%s has %d dims, expected %lld", an, (int)a->ndim, (long long)want);
        return FIA_INVALID("%s has %d dims, must be %lld (%s)", an, (int)a->ndim, (long long)want,
                           r->what);
    }
    const int i = fia_spec_dim(a, r->ad);
    const int j = r->kind == FIA_DIM_EQ && b ? fia_spec_dim(b, r->bd) : -1;
    if (i < 0 || (r->kind == FIA_DIM_EQ && j < 0)) return FIA_STATUS_SUCCESS;
    const int64_t want = r->kind == FIA_DIM_EQ    ? b->shape[j]
                         : r->kind == FIA_DIM_VAL ? vals[r->value]
                                                  : r->value;
    if (a->shape[i] == want) return FIA_STATUS_SUCCESS;
    if (r->kind == FIA_DIM_EQ)
        return FIA_INVALID("%s dim %d is %lld, %s dim %d is %lld", an, i, (long long)a->shape[i],
                           bn, j, (long long)want);
    if (r->kind == FIA_DIM_VAL)
        return FIA_INVALID("%s dim %d is %lld, %s is %lld", an, i, (long long)a->shape[i],
                           r->what, (long long)want);
    return FIA_INVALID("%s dim %d is %lld, must be %lld (%s)", an, i, (long long)a->shape[i],
                       (long long)want, r->what ? r->what : "required");
}

fia_status fia_tensor_spec_dims(const void *tensors, const fia_tensor_spec *spec,
                                const fia_dim_rule *rules, size_t nr, uint32_t conds,
                                const int64_t *vals) {
    for (size_t k = 0; k < nr; k++) {
        const fia_dim_rule *r = &rules[k];
        if (r->when & ~conds) continue;
        const fia_tensor *a = fia_spec_get(tensors, &spec[r->a]);
        const bool two = r->kind == FIA_DIM_EQ || r->kind == FIA_RANK_EQ;
        const fia_tensor *b = two ? fia_spec_get(tensors, &spec[r->b]) : NULL;
        if (!a) continue;
        FIA_TRY(fia_spec_rule(a, spec[r->a].name, b, two ? spec[r->b].name : NULL, r, vals));
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_check_shape(const fia_tensor *t, const char *name, int32_t ndim,
                                  const int64_t *want, const char *const *what) {
    fia_dim_rule r = {FIA_RANK_CONST, 0, 0, 0, 0, ndim, NULL, 0};
    FIA_TRY(fia_spec_rule(t, name, NULL, NULL, &r, want));
    for (int32_t i = 0; i < ndim; i++) {
        r = (fia_dim_rule){FIA_DIM_VAL, 0, (int8_t)i, 0, 0, i, what[i], 0};
        FIA_TRY(fia_spec_rule(t, name, NULL, NULL, &r, want));
    }
    return FIA_STATUS_SUCCESS;
}
