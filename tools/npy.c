/*
 * npy.c - the .npy reader and writer of the fia command line (see npy.h).
 *
 * File layout (NumPy's format.py): the magic "\x93NUMPY", a major and a minor version byte, the
 * header length (uint16 little-endian for 1.0, uint32 for 2.0 and 3.0), then a Python dict
 * literal such as {'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a newline, then the raw elements.
 */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER (1u << 20) /* NumPy itself refuses headers beyond 10 KB by default */

static void set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (err == NULL || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

/* Copies text from the file into out with everything but printable ASCII replaced by '?', so
 * that messages stay one clean line. */
static const char *printable(const char *text, char *out, size_t out_len) {
    size_t n = 0;
    for (; text[n] != '\0' && n + 1 < out_len; n++)
        out[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
    out[n] = '\0';
    return out;
}

/* ---------------------------------------------------------------------------------------- */
/* Header dict parsing                                                                      */
/* ---------------------------------------------------------------------------------------- */

typedef struct header_cursor {
    const char *p;
    const char *end;
} header_cursor;

static void skip_space(header_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept_char(header_cursor *c, char ch) {
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Reads a quoted Python string (no escapes are needed for npy keys and descrs). */
static int parse_string(header_cursor *c, char *out, size_t out_len) {
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
    const char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (n + 1 >= out_len) return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_bool(header_cursor *c, int *value) {
    skip_space(c);
    const size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *value = 1;
        return 0;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *value = 0;
        return 0;
    }
    return -1;
}

/* Reads a shape tuple: "()", "(3,)", "(2, 3)", "(2, 3,)"; a trailing "L" (Python 2) is allowed. */
static int parse_shape(header_cursor *c, int64_t *shape, int32_t *ndim, char *err, size_t err_len) {
    if (!accept_char(c, '(')) {
        set_err(err, err_len, "bad header: 'shape' is not a tuple");
        return -1;
    }
    int32_t n = 0;
    for (;;) {
        if (accept_char(c, ')')) break;
        skip_space(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') {
            set_err(err, err_len, "bad header: 'shape' holds something other than integers");
            return -1;
        }
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            const int digit = *c->p - '0';
            if (v > (INT64_MAX - digit) / 10) {
                set_err(err, err_len, "bad header: a shape dim overflows int64");
                return -1;
            }
            v = v * 10 + digit;
            c->p++;
        }
        if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
        if (n >= FIA_MAX_DIMS) {
            set_err(err, err_len, "has more than %d dims", FIA_MAX_DIMS);
            return -1;
        }
        shape[n++] = v;
        if (accept_char(c, ',')) continue;
        if (accept_char(c, ')')) break;
        set_err(err, err_len, "bad header: 'shape' tuple is malformed");
        return -1;
    }
    *ndim = n;
    return 0;
}

/* Maps a descr to a dtype. as_bf16 selects bfloat16 for '<u2' and refuses everything else. */
static int descr_to_dtype(const char *raw_descr, int as_bf16, fia_dtype *dtype, char *err,
                          size_t err_len) {
    char descr[32];
    printable(raw_descr, descr, sizeof descr);
    if (strlen(descr) < 3) {
        set_err(err, err_len, "unsupported dtype '%s'", descr);
        return -1;
    }
    const char order = descr[0];
    const char *code = descr + 1;
    const int one_byte = strcmp(code, "i1") == 0 || strcmp(code, "u1") == 0 ||
                         strcmp(code, "b1") == 0;
    if (order == '>' && !one_byte) {
        set_err(err, err_len, "dtype '%s' is big-endian; only little-endian files are read",
                descr);
        return -1;
    }
    if (order != '<' && order != '|' && order != '=' && order != '>') {
        set_err(err, err_len, "unsupported dtype '%s'", descr);
        return -1;
    }
    if (as_bf16) {
        if (strcmp(code, "u2") != 0) {
            set_err(err, err_len, "':bf16' needs a uint16 array, the file has dtype '%s'", descr);
            return -1;
        }
        *dtype = FIA_DTYPE_BFLOAT16;
        return 0;
    }
    static const struct {
        const char *code;
        fia_dtype dtype;
    } known[] = {
        {"f2", FIA_DTYPE_FLOAT16}, {"f4", FIA_DTYPE_FLOAT32}, {"i1", FIA_DTYPE_INT8},
        {"u1", FIA_DTYPE_UINT8},   {"b1", FIA_DTYPE_BOOL},    {"i4", FIA_DTYPE_INT32},
        {"i8", FIA_DTYPE_INT64},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(code, known[i].code) == 0) {
            *dtype = known[i].dtype;
            return 0;
        }
    }
    if (strcmp(code, "u2") == 0)
        set_err(err, err_len, "dtype '%s' (uint16) is read only as bfloat16: append ':bf16' to "
                              "the path", descr);
    else
        set_err(err, err_len, "unsupported dtype '%s' (float16, float32, int8, uint8, bool, "
                              "int32, int64 or uint16 as bf16)", descr);
    return -1;
}

static int parse_header(const char *text, size_t len, int as_bf16, npy_array *a, char *err,
                        size_t err_len) {
    header_cursor c = {text, text + len};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!accept_char(&c, '{')) {
        set_err(err, err_len, "bad header: not a dict");
        return -1;
    }
    for (;;) {
        if (accept_char(&c, '}')) break;
        char key[32];
        if (parse_string(&c, key, sizeof key) != 0 || !accept_char(&c, ':')) {
            set_err(err, err_len, "bad header: malformed dict");
            return -1;
        }
        if (strcmp(key, "descr") == 0) {
            char descr[32];
            if (parse_string(&c, descr, sizeof descr) != 0) {
                set_err(err, err_len, "bad header: 'descr' is not a simple dtype string "
                                      "(structured arrays are not supported)");
                return -1;
            }
            if (descr_to_dtype(descr, as_bf16, &a->dtype, err, err_len) != 0) return -1;
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (parse_bool(&c, &a->fortran_order) != 0) {
                set_err(err, err_len, "bad header: 'fortran_order' is not True or False");
                return -1;
            }
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            if (parse_shape(&c, a->shape, &a->ndim, err, err_len) != 0) return -1;
            have_shape = 1;
        } else {
            char shown[32];
            set_err(err, err_len, "bad header: unknown key '%s'",
                    printable(key, shown, sizeof shown));
            return -1;
        }
        if (accept_char(&c, ',')) continue;
        if (accept_char(&c, '}')) break;
        set_err(err, err_len, "bad header: malformed dict");
        return -1;
    }
    if (!have_descr || !have_order || !have_shape) {
        set_err(err, err_len, "bad header: missing '%s'",
                !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static void *alloc_aligned(size_t bytes) {
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (rounded < bytes) return NULL; /* overflow */
    return aligned_alloc(64, rounded);
}

int npy_read(const char *path, int as_bf16, npy_array *a, char *err, size_t err_len) {
    memset(a, 0, sizeof *a);
    npy_array tmp;
    memset(&tmp, 0, sizeof tmp);
    char *header = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, err_len, "cannot open: %s", strerror(errno));
        return -1;
    }
    unsigned char pre[12];
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        set_err(err, err_len, "not a .npy file (bad magic)");
        goto fail;
    }
    const unsigned major = pre[6];
    size_t header_len;
    size_t prefix_len;
    if (major == 1) {
        header_len = (size_t)pre[8] | (size_t)pre[9] << 8;
        prefix_len = 10;
    } else if (major == 2 || major == 3) {
        if (fread(pre + 10, 1, 2, f) != 2) {
            set_err(err, err_len, "truncated header");
            goto fail;
        }
        header_len = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 |
                     (size_t)pre[11] << 24;
        prefix_len = 12;
    } else {
        set_err(err, err_len, "unsupported .npy format version %u.%u", major, pre[7]);
        goto fail;
    }
    if (header_len == 0 || header_len > NPY_MAX_HEADER) {
        set_err(err, err_len, "bad header length %zu", header_len);
        goto fail;
    }
    header = malloc(header_len + 1);
    if (header == NULL) {
        set_err(err, err_len, "out of memory reading the header");
        goto fail;
    }
    if (fread(header, 1, header_len, f) != header_len) {
        set_err(err, err_len, "truncated header");
        goto fail;
    }
    header[header_len] = '\0';
    if (parse_header(header, header_len, as_bf16, &tmp, err, err_len) != 0) goto fail;

    /* Element count, with overflow checks. */
    const size_t elem = fia_dtype_size(tmp.dtype);
    int64_t numel = 1;
    for (int32_t d = 0; d < tmp.ndim; d++) {
        const int64_t dim = tmp.shape[d];
        if (dim != 0 && numel > INT64_MAX / dim) {
            set_err(err, err_len, "shape overflows (dim %d is %lld)", (int)d, (long long)dim);
            goto fail;
        }
        numel *= dim;
    }
    if ((uint64_t)numel > (uint64_t)(SIZE_MAX / 2) / elem) {
        set_err(err, err_len, "too large (%lld elements)", (long long)numel);
        goto fail;
    }
    tmp.bytes = (size_t)numel * elem;

    /* The data must be all there: compare with the file size before allocating. */
    if (fseek(f, 0, SEEK_END) != 0) {
        set_err(err, err_len, "cannot seek: %s", strerror(errno));
        goto fail;
    }
    const long file_size = ftell(f);
    if (file_size < 0 || fseek(f, (long)(prefix_len + header_len), SEEK_SET) != 0) {
        set_err(err, err_len, "cannot seek: %s", strerror(errno));
        goto fail;
    }
    const size_t avail = (size_t)file_size - (prefix_len + header_len);
    if ((size_t)file_size < prefix_len + header_len || avail < tmp.bytes) {
        set_err(err, err_len, "truncated: the shape needs %zu data bytes, the file has %zu",
                tmp.bytes, (size_t)file_size < prefix_len + header_len ? (size_t)0 : avail);
        goto fail;
    }
    tmp.data = alloc_aligned(tmp.bytes);
    if (tmp.data == NULL) {
        set_err(err, err_len, "out of memory (%zu bytes)", tmp.bytes);
        goto fail;
    }
    if (tmp.bytes > 0 && fread(tmp.data, 1, tmp.bytes, f) != tmp.bytes) {
        set_err(err, err_len, "read error: %s", ferror(f) ? strerror(errno) : "short read");
        goto fail;
    }

    /* Strides in elements: C order is row-major; Fortran order is column-major. */
    if (tmp.fortran_order) {
        int64_t s = 1;
        for (int32_t d = 0; d < tmp.ndim; d++) {
            tmp.strides[d] = s;
            s *= tmp.shape[d] > 0 ? tmp.shape[d] : 1;
        }
    } else {
        int64_t s = 1;
        for (int32_t d = tmp.ndim - 1; d >= 0; d--) {
            tmp.strides[d] = s;
            s *= tmp.shape[d] > 0 ? tmp.shape[d] : 1;
        }
    }
    free(header);
    fclose(f);
    *a = tmp;
    return 0;

fail:
    free(header);
    free(tmp.data);
    fclose(f);
    return -1;
}

void npy_free(npy_array *a) {
    if (a == NULL) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------------------------------- */
/* Writing                                                                                  */
/* ---------------------------------------------------------------------------------------- */

const char *npy_descr(fia_dtype dtype) {
    switch (dtype) {
    case FIA_DTYPE_FLOAT32: return "<f4";
    case FIA_DTYPE_FLOAT16: return "<f2";
    case FIA_DTYPE_BFLOAT16: return "<u2";
    case FIA_DTYPE_INT8: return "|i1";
    case FIA_DTYPE_UINT8: return "|u1";
    case FIA_DTYPE_BOOL: return "|b1";
    case FIA_DTYPE_INT32: return "<i4";
    case FIA_DTYPE_INT64: return "<i8";
    }
    return NULL;
}

int npy_write_file(const char *path, fia_dtype dtype, int32_t ndim, const int64_t *shape,
                   const void *data, char *err, size_t err_len) {
    const char *descr = npy_descr(dtype);
    if (descr == NULL || ndim < 0 || ndim > FIA_MAX_DIMS) {
        set_err(err, err_len, "cannot write dtype %d with %d dims", (int)dtype, (int)ndim);
        return -1;
    }
    /* Header dict. */
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    int64_t numel = 1;
    for (int32_t d = 0; d < ndim; d++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, d == 0 ? "%lld" : ", %lld",
                      (long long)shape[d]);
        numel *= shape[d];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, ndim == 1 ? ",), }" : "), }");
    /* Pad with spaces so that the data starts on a 64-byte boundary; end with a newline. */
    const size_t prefix = 10;
    size_t total = prefix + (size_t)n + 1;
    total = (total + 63) & ~(size_t)63;
    const size_t header_len = total - prefix;
    unsigned char head[640];
    memcpy(head, NPY_MAGIC, NPY_MAGIC_LEN);
    head[6] = 1;
    head[7] = 0;
    head[8] = (unsigned char)(header_len & 0xff);
    head[9] = (unsigned char)(header_len >> 8);
    memcpy(head + prefix, dict, (size_t)n);
    memset(head + prefix + n, ' ', header_len - (size_t)n - 1);
    head[total - 1] = '\n';

    const size_t bytes = (size_t)numel * fia_dtype_size(dtype);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        set_err(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    int ok = fwrite(head, 1, total, f) == total;
    if (ok && bytes > 0) ok = fwrite(data, 1, bytes, f) == bytes;
    int saved_errno = ok ? 0 : errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved_errno = errno;
    }
    if (!ok) {
        set_err(err, err_len, "cannot write %s: %s", path,
                strerror(saved_errno ? saved_errno : EIO));
        remove(path);
        return -1;
    }
    return 0;
}

int npy_temp_path(const char *path, char *tmp, size_t tmp_len) {
    const int n = snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    return n < 0 || (size_t)n >= tmp_len ? -1 : 0;
}

int npy_write(const char *path, fia_dtype dtype, int32_t ndim, const int64_t *shape,
              const void *data, char *err, size_t err_len) {
    char tmp[4096];
    if (npy_temp_path(path, tmp, sizeof tmp) != 0) {
        set_err(err, err_len, "path too long");
        return -1;
    }
    if (npy_write_file(tmp, dtype, ndim, shape, data, err, err_len) != 0) return -1;
    if (rename(tmp, path) != 0) {
        set_err(err, err_len, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
