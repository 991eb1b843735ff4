/*
 * npy.h - reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * Reads little-endian float16, float32, int8, uint8, bool, int32 and int64 arrays, and uint16
 * arrays as bfloat16 bits when asked to. Fortran-order files are kept as they are on disk and
 * described by strides (in elements), so a fia_tensor can view them without a copy. Writes
 * compact C-order arrays, version 1.0 (2.0 when the header would not fit), through a temporary
 * file renamed into place, so a failed write never leaves a partial file under the final name.
 *
 * Errors never abort: every function returns 0 on success and -1 on failure, with a one-line
 * message (no trailing newline) in err.
 */
#ifndef FIA_TOOLS_NPY_H
#define FIA_TOOLS_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "fia.h"

typedef struct npy_array {
    fia_dtype dtype;
    int32_t ndim;
    int64_t shape[FIA_MAX_DIMS];
    int64_t strides[FIA_MAX_DIMS]; /* in elements: C order, or Fortran order mapped to strides */
    int fortran_order;
    void *data;   /* malloc'ed, 64-byte aligned; NULL for an empty array */
    size_t bytes; /* numel * element size */
} npy_array;

/* Reads path into *a. as_bf16: read a uint16 ('<u2') array as bfloat16 bits (any other dtype is
 * then an error). On failure *a is left zeroed and err holds the reason. */
int npy_read(const char *path, int as_bf16, npy_array *a, char *err, size_t err_len);

/* Frees the data of *a and zeroes it. NULL is a no-op. */
void npy_free(npy_array *a);

/* Writes a compact C-order array. bfloat16 is written as uint16 ('<u2'). The file is written to
 * "<path>.tmp.<pid>" and renamed onto path when complete. */
int npy_write(const char *path, fia_dtype dtype, int32_t ndim, const int64_t *shape,
              const void *data, char *err, size_t err_len);

/* Writes the same file as npy_write straight to path (no temporary, no rename); on failure the
 * partial file is removed. */
int npy_write_file(const char *path, fia_dtype dtype, int32_t ndim, const int64_t *shape,
                   const void *data, char *err, size_t err_len);

/* The temporary name npy_write uses for path: "<path>.tmp.<pid>". Returns -1 if it does not fit. */
int npy_temp_path(const char *path, char *tmp, size_t tmp_len);

/* The descr string npy_write uses for a dtype ("<f2", "|b1", ...); NULL when not representable. */
const char *npy_descr(fia_dtype dtype);

#endif /* FIA_TOOLS_NPY_H */
