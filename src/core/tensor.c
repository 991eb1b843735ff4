/* tensor.c - tensor views: init, numel, dtype facts, validation, public conversions. */
#include <stdint.h>
#include <string.h>

#include "core/convert.h"
#include "core/status.h"
#include "core/tensor.h"

size_t fia_dtype_size(fia_dtype dtype) {
    switch (dtype) {
    case FIA_DTYPE_FLOAT32: return 4;
    case FIA_DTYPE_FLOAT16: return 2;
    case FIA_DTYPE_BFLOAT16: return 2;
    case FIA_DTYPE_INT8: return 1;
    case FIA_DTYPE_UINT8: return 1;
    case FIA_DTYPE_BOOL: return 1;
    case FIA_DTYPE_INT32: return 4;
    case FIA_DTYPE_INT64: return 8;
    }
    return 0;
}

const char *fia_dtype_name(fia_dtype dtype) {
    switch (dtype) {
    case FIA_DTYPE_FLOAT32: return "float32";
    case FIA_DTYPE_FLOAT16: return "float16";
    case FIA_DTYPE_BFLOAT16: return "bfloat16";
    case FIA_DTYPE_INT8: return "int8";
    case FIA_DTYPE_UINT8: return "uint8";
    case FIA_DTYPE_BOOL: return "bool";
    case FIA_DTYPE_INT32: return "int32";
    case FIA_DTYPE_INT64: return "int64";
    }
    return "unknown";
}

bool fia_dtype_is_float(fia_dtype dtype) {
    return dtype == FIA_DTYPE_FLOAT32 || dtype == FIA_DTYPE_FLOAT16 || dtype == FIA_DTYPE_BFLOAT16;
}

fia_status fia_tensor_init(fia_tensor *t, void *data, fia_dtype dtype, int32_t ndim,
                           const int64_t *shape, const int64_t *strides) {
    fia_error_clear();
    if (!t) return FIA_INVALID("fia_tensor_init: tensor is NULL");
    if (ndim < 0 || ndim > FIA_MAX_DIMS)
        return FIA_INVALID("fia_tensor_init: ndim is %d, must be 0..%d", (int)ndim, FIA_MAX_DIMS);
    if (fia_dtype_size(dtype) == 0) return FIA_INVALID("fia_tensor_init: unknown dtype %d", (int)dtype);
    if (ndim > 0 && !shape) return FIA_INVALID("fia_tensor_init: shape is NULL with ndim %d", (int)ndim);
    for (int32_t i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return FIA_INVALID("fia_tensor_init: dim %d is %lld, must be >= 0", (int)i,
                               (long long)shape[i]);
    fia_tensor v;
    memset(&v, 0, sizeof v);
    v.data = data;
    v.dtype = dtype;
    v.ndim = ndim;
    int64_t stride = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        v.shape[i] = shape[i];
        v.strides[i] = strides ? strides[i] : stride;
        if (shape[i] > 0 && stride > INT64_MAX / shape[i]) stride = INT64_MAX; /* checked on use */
        else stride *= shape[i] > 0 ? shape[i] : 1;
    }
    *t = v;
    return FIA_STATUS_SUCCESS;
}

int64_t fia_tensor_numel(const fia_tensor *t) {
    if (!t) return 0;
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim && i < FIA_MAX_DIMS; i++) {
        if (t->shape[i] <= 0) return 0;
        if (n > INT64_MAX / t->shape[i]) return INT64_MAX;
        n *= t->shape[i];
    }
    return n;
}

fia_status fia_tensor_check(const fia_tensor *t, const char *name, bool inner_unit) {
    if (!t) return FIA_INVALID("%s is NULL", name);
    if (t->ndim < 0 || t->ndim > FIA_MAX_DIMS)
        return FIA_INVALID("%s ndim is %d, must be 0..%d", name, (int)t->ndim, FIA_MAX_DIMS);
    if ((t->device_type != FIA_DEVICE_DEFAULT && t->device_type != FIA_DEVICE_CPU) || t->device_id != 0)
        return FIA_UNSUPPORTED("%s is on device type %d id %d: fia reads host memory only (type 0 or "
                               "1, id 0)", name, (int)t->device_type, (int)t->device_id);
    const int64_t esize = (int64_t)fia_dtype_size(t->dtype);
    if (esize == 0) return FIA_INVALID("%s dtype %d is unknown", name, (int)t->dtype);
    bool empty = false;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0)
            return FIA_INVALID("%s dim %d is %lld, must be >= 0", name, (int)i, (long long)t->shape[i]);
        if (t->strides[i] < 0)
            return FIA_UNSUPPORTED("%s stride %d is %lld: negative strides are not supported", name,
                                   (int)i, (long long)t->strides[i]);
        if (t->shape[i] == 0) empty = true;
    }
    if (empty) return FIA_STATUS_SUCCESS;
    /* Largest element offset, with overflow checks: the view must fit in the address space. */
    const int64_t limit = (INT64_C(1) << 47) / esize;
    int64_t extent = 0;
    for (int32_t i = 0; i < t->ndim; i++) {
        const int64_t n = t->shape[i] - 1;
        if (n > 0 && t->strides[i] > (limit - extent) / n)
            return FIA_INVALID("%s dim %d (%lld) with stride %lld reaches past the address space",
                               name, (int)i, (long long)t->shape[i], (long long)t->strides[i]);
        extent += n * t->strides[i];
    }
    if (!t->data) return FIA_INVALID("%s data is NULL", name);
    if (inner_unit && t->ndim > 0 && t->shape[t->ndim - 1] > 1 && t->strides[t->ndim - 1] != 1)
        return FIA_UNSUPPORTED("%s innermost stride is %lld: it must be 1", name,
                               (long long)t->strides[t->ndim - 1]);
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_check_ndim(const fia_tensor *t, const char *name, int32_t ndim) {
    if (t->ndim != ndim)
        return FIA_INVALID("%s has %d dims, expected %d", name, (int)t->ndim, (int)ndim);
    return FIA_STATUS_SUCCESS;
}

fia_status fia_tensor_check_dim(const fia_tensor *t, const char *name, int32_t dim, int64_t want,
                                const char *what) {
    if (t->shape[dim] != want)
        return FIA_INVALID("%s dim %d is %lld, %s is %lld", name, (int)dim,
                           (long long)t->shape[dim], what, (long long)want);
    return FIA_STATUS_SUCCESS;
}

float fia_load_float(const void *p, fia_dtype dtype) {
    uint16_t h;
    float f;
    switch (dtype) {
    case FIA_DTYPE_FLOAT16: memcpy(&h, p, 2); return fia_cvt_f16_to_f32(h);
    case FIA_DTYPE_BFLOAT16: memcpy(&h, p, 2); return fia_cvt_bf16_to_f32(h);
    case FIA_DTYPE_FLOAT32: memcpy(&f, p, 4); return f;
    default: return 0.0f;
    }
}

float fia_f16_to_f32(uint16_t h) { return fia_cvt_f16_to_f32(h); }
uint16_t fia_f32_to_f16(float f) { return fia_cvt_f32_to_f16(f); }
float fia_bf16_to_f32(uint16_t b) { return fia_cvt_bf16_to_f32(b); }
uint16_t fia_f32_to_bf16(float f) { return fia_cvt_f32_to_bf16(f); }
