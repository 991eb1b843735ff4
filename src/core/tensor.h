/*
 * tensor.h - tensor view validation shared by every operator.
 */
#ifndef FIA_CORE_TENSOR_H
#define FIA_CORE_TENSOR_H

#include <stdbool.h>

#include "fia.h"

/* float16, bfloat16 or float32. */
bool fia_dtype_is_float(fia_dtype dtype);

/* Checks one view before any of its fields is trusted: ndim in 0..FIA_MAX_DIMS, a known dtype,
 * dims >= 0, strides >= 0 (negative ones are FIA_STATUS_UNSUPPORTED), a host device (others are
 * FIA_STATUS_UNSUPPORTED), data non-NULL when the
 * tensor has elements, and a byte extent that fits in the address space. With inner_unit, the
 * innermost stride must be 1 (when that dim is > 1). name is used in the message. */
fia_status fia_tensor_check(const fia_tensor *t, const char *name, bool inner_unit);

/* Requires t->ndim == ndim. */
fia_status fia_tensor_check_ndim(const fia_tensor *t, const char *name, int32_t ndim);

/* Requires t->shape[dim] == want; what names the expected value in the message. */
fia_status fia_tensor_check_dim(const fia_tensor *t, const char *name, int32_t dim, int64_t want,
                                const char *what);

/* Address of the first element: data + byte_offset (data itself when the offset is 0, so that
 * an absent NULL view stays NULL). */
static inline void *fia_tensor_ptr(const fia_tensor *t) {
    return t->byte_offset ? (void *)((char *)t->data + t->byte_offset) : t->data;
}

/* Address of the element at index idx[0..ndim) (no bounds check: validated views only). */
static inline const char *fia_tensor_elem(const fia_tensor *t, const int64_t *idx) {
    int64_t off = 0;
    for (int32_t i = 0; i < t->ndim; i++) off += idx[i] * t->strides[i];
    return (const char *)fia_tensor_ptr(t) + off * (int64_t)fia_dtype_size(t->dtype);
}

/* Reads one element of a float (f16/bf16/f32) tensor as float. */
float fia_load_float(const void *p, fia_dtype dtype);

#endif /* FIA_CORE_TENSOR_H */
