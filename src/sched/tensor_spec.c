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

fia_status fia_tensor_spec_check(const void *tensors, const fia_tensor_spec *spec, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((spec[i].flags & FIA_SPEC_REQUIRED) && !fia_spec_get(tensors, &spec[i]))
            return FIA_INVALID("%s is NULL", spec[i].name);
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (t) FIA_TRY(fia_tensor_check(t, spec[i].name, (spec[i].flags & FIA_SPEC_INNER_UNIT) != 0));
    }
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_spec_dtypes(const void *tensors, const fia_tensor_spec *spec, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const fia_tensor *t = fia_spec_get(tensors, &spec[i]);
        if (!t) continue;
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
