/*
 * ref_util.c - element readers shared by the oracles (see ref_util.h): a switch over the dtype
 * on each read, nothing cached, nothing shared with src/.
 */
#include "ref_util.h"

#include <math.h>
#include <string.h>

double fia_ref_read_at(const fia_tensor *t, int64_t off) {
    const char *p = (const char *)t->data;
    switch (t->dtype) {
    case FIA_DTYPE_FLOAT32: {
        float v;
        memcpy(&v, p + off * 4, 4);
        return v;
    }
    case FIA_DTYPE_FLOAT16: {
        uint16_t v;
        memcpy(&v, p + off * 2, 2);
        return fia_f16_to_f32(v);
    }
    case FIA_DTYPE_BFLOAT16: {
        uint16_t v;
        memcpy(&v, p + off * 2, 2);
        return fia_bf16_to_f32(v);
    }
    case FIA_DTYPE_INT8: return (double)((const int8_t *)p)[off];
    case FIA_DTYPE_UINT8: return (double)((const uint8_t *)p)[off];
    case FIA_DTYPE_BOOL: return ((const uint8_t *)p)[off] ? 1.0 : 0.0;
    case FIA_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, p + off * 4, 4);
        return v;
    }
    case FIA_DTYPE_INT64: {
        int64_t v;
        memcpy(&v, p + off * 8, 8);
        return (double)v;
    }
    }
    return NAN;
}

double fia_ref_at(const fia_tensor *t, const int64_t *c) {
    int64_t off = 0;
    for (int32_t i = 0; i < t->ndim; i++) off += c[i] * t->strides[i];
    return fia_ref_read_at(t, off);
}

int64_t fia_ref_index(const fia_tensor *t, const int64_t *c) {
    int64_t i = 0;
    for (int32_t d = 0; d < t->ndim; d++) i = i * t->shape[d] + c[d];
    return i;
}

double fia_ref_load(const fia_tensor *t, int64_t logical_index) {
    int64_t c[FIA_MAX_DIMS] = {0};
    for (int32_t i = t->ndim - 1; i >= 0; i--) {
        const int64_t n = t->shape[i] > 0 ? t->shape[i] : 1;
        c[i] = logical_index % n;
        logical_index /= n;
    }
    return fia_ref_at(t, c);
}
