/*
 * ref_util.h - element readers shared by the double-precision oracles (ref_fia.c, ref_mla.c,
 * ref_li.c, ref_sfa.c). Slow and obvious like the oracles themselves: every element is read
 * through its strides with the public fia.h types and conversions only; nothing here is shared
 * with src/. No bounds checks: the callers pass coordinates inside the shape.
 */
#ifndef FIA_REF_UTIL_H
#define FIA_REF_UTIL_H

#include <stdint.h>

#include "fia.h"

/* Element at offset off (in elements, the sum of coordinate x stride) of a tensor of any dtype,
 * as double (bool: 0 or 1; an unknown dtype: NaN). */
double fia_ref_read_at(const fia_tensor *t, int64_t off);

/* Element at coordinates c[0..ndim) of a tensor of any dtype, as double. */
double fia_ref_at(const fia_tensor *t, const int64_t *c);

/* Row-major logical index of coordinates c[0..ndim) over t's shape (the index of that element
 * in a compact array of t's logical shape). */
int64_t fia_ref_index(const fia_tensor *t, const int64_t *c);

/* Reads element i (row-major logical index over the shape) of a tensor of any dtype as double,
 * through its strides. */
double fia_ref_load(const fia_tensor *t, int64_t logical_index);

#endif /* FIA_REF_UTIL_H */
