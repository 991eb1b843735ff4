/*
 * test_util.h - small header-only helpers shared by the tests: a seeded xorshift RNG, tensors
 * that own their buffer (compact or with padded outer strides), typed element stores, and the
 * pass/fail counter every test ends with ("N passed, N failed").
 *
 * Uses only the public fia.h (never src/ or the oracle), so fuzz targets may include it too.
 */
#ifndef FIA_TEST_UTIL_H
#define FIA_TEST_UTIL_H

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"

/* ------------------------------------------------------------------------------------------ */
/* RNG: xorshift64*                                                                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

static inline uint64_t tu_mix(uint64_t x) { /* splitmix64 finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline tu_rng tu_rng_make(uint64_t seed) {
    tu_rng r;
    r.s = tu_mix(seed);
    if (r.s == 0) r.s = 0x2545f4914f6cdd1dull;
    return r;
}

static inline uint64_t tu_next(tu_rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform double in [0, 1). */
static inline double tu_unit(tu_rng *r) { return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double tu_uniform(tu_rng *r, double lo, double hi) { return lo + (hi - lo) * tu_unit(r); }
/* Uniform integer in [lo, hi] (inclusive). */
static inline int64_t tu_int(tu_rng *r, int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + (int64_t)(tu_next(r) % (uint64_t)(hi - lo + 1));
}
static inline int tu_chance(tu_rng *r, double p) { return tu_unit(r) < p; }
#define TU_PICK(rng, arr) ((arr)[tu_int((rng), 0, (int64_t)(sizeof(arr) / sizeof((arr)[0])) - 1)])

/* ------------------------------------------------------------------------------------------ */
/* Pass / fail counter                                                                        */
/* ------------------------------------------------------------------------------------------ */

static long tu_passed, tu_failed;

/* Counts one check; prints the message on failure. Returns cond. */
static inline int tu_check(int cond, const char *fmt, ...) {
    if (cond) {
        tu_passed++;
        return 1;
    }
    tu_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 0;
}

/* Prints the one summary line and returns the process exit code. */
static inline int tu_summary(void) {
    printf("%ld passed, %ld failed\n", tu_passed, tu_failed);
    fflush(stdout);
    return tu_failed ? 1 : 0;
}

/* Seed: argv[1] if given (decimal or 0x hex), else dflt. Printed. */
static inline uint64_t tu_seed(int argc, char **argv, uint64_t dflt, const char *test_name) {
    uint64_t seed = dflt;
    if (argc > 1 && argv[1][0]) seed = strtoull(argv[1], NULL, 0);
    printf("%s: seed %" PRIu64 " (rerun: %s %" PRIu64 ")\n", test_name, seed, argv[0], seed);
    fflush(stdout);
    return seed;
}

/* Integer from the environment, dflt when unset or unparsable. */
static inline long tu_env_long(const char *name, long dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    return *end ? dflt : v;
}

/* ------------------------------------------------------------------------------------------ */
/* Tensors owning their buffer                                                                */
/* ------------------------------------------------------------------------------------------ */

typedef struct tu_tensor {
    fia_tensor t;
    void *buf;
    size_t bytes;
} tu_tensor;

/* Elements spanned by a view (max offset + 1; 0 when some dim is 0). -1 on overflow. */
static inline int64_t tu_extent(const fia_tensor *t) {
    int64_t last = 0;
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) return 0;
        if (t->shape[i] < 0 || t->strides[i] < 0) return -1;
        const int64_t d = t->shape[i] - 1;
        if (d > 0 && t->strides[i] > (INT64_MAX / 4 - last) / d) return -1;
        last += d * t->strides[i];
    }
    return last + 1;
}

/* Allocates a tensor of shape[ndim] (compact when pad == NULL, else the stride of dim i is the
 * extent of dims i+1.. plus pad[i]; pad[ndim-1] is ignored: innermost stride 1). Contents are
 * filled with the byte `fill`. Returns 0, -1 on allocation failure. */
static inline int tu_alloc(tu_tensor *tt, fia_dtype dtype, int32_t ndim, const int64_t *shape,
                           const int64_t *pad, unsigned char fill) {
    memset(tt, 0, sizeof *tt);
    int64_t strides[FIA_MAX_DIMS];
    int64_t s = 1;
    for (int32_t i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s = s * shape[i] + ((pad && i > 0) ? pad[i - 1] : 0);
    }
    if (fia_tensor_init(&tt->t, NULL, dtype, ndim, shape, strides) != FIA_STATUS_SUCCESS) return -1;
    const int64_t ext = tu_extent(&tt->t);
    if (ext < 0) return -1;
    tt->bytes = (size_t)ext * fia_dtype_size(dtype);
    tt->buf = malloc(tt->bytes ? tt->bytes : 1);
    if (!tt->buf) return -1;
    memset(tt->buf, fill, tt->bytes);
    tt->t.data = tt->buf;
    return 0;
}

static inline void tu_free(tu_tensor *tt) {
    free(tt->buf);
    memset(tt, 0, sizeof *tt);
}

static inline int64_t tu_numel(const fia_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* Element offset of logical (row-major) index i. */
static inline int64_t tu_offset(const fia_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        const int64_t n = t->shape[d] > 0 ? t->shape[d] : 1;
        off += (i % n) * t->strides[d];
        i /= n;
    }
    return off;
}

/* Stores x (converted to the dtype, round to nearest even) at element offset off. */
static inline void tu_store_at(const fia_tensor *t, int64_t off, double x) {
    char *p = (char *)t->data;
    switch (t->dtype) {
    case FIA_DTYPE_FLOAT32: {
        const float f = (float)x;
        memcpy(p + off * 4, &f, 4);
        break;
    }
    case FIA_DTYPE_FLOAT16: {
        const uint16_t h = fia_f32_to_f16((float)x);
        memcpy(p + off * 2, &h, 2);
        break;
    }
    case FIA_DTYPE_BFLOAT16: {
        const uint16_t h = fia_f32_to_bf16((float)x);
        memcpy(p + off * 2, &h, 2);
        break;
    }
    case FIA_DTYPE_INT8: ((int8_t *)p)[off] = (int8_t)x; break;
    case FIA_DTYPE_UINT8: ((uint8_t *)p)[off] = (uint8_t)x; break;
    case FIA_DTYPE_BOOL: ((uint8_t *)p)[off] = x != 0.0; break;
    case FIA_DTYPE_INT32: {
        const int32_t v = (int32_t)x;
        memcpy(p + off * 4, &v, 4);
        break;
    }
    case FIA_DTYPE_INT64: {
        const int64_t v = (int64_t)x;
        memcpy(p + off * 8, &v, 8);
        break;
    }
    }
}

static inline void tu_store(const fia_tensor *t, int64_t i, double x) { tu_store_at(t, tu_offset(t, i), x); }

/* Fills every element of the view with uniform values in [lo, hi) (integers: rounded). */
static inline void tu_fill_uniform(const fia_tensor *t, tu_rng *r, double lo, double hi) {
    const int64_t n = tu_numel(t);
    const int integral = t->dtype == FIA_DTYPE_INT8 || t->dtype == FIA_DTYPE_UINT8 ||
                         t->dtype == FIA_DTYPE_INT32 || t->dtype == FIA_DTYPE_INT64;
    for (int64_t i = 0; i < n; i++) {
        double x = tu_uniform(r, lo, hi);
        tu_store(t, i, integral ? floor(x) : x);
    }
}

/* Nonzero when two views of the same shape hold bitwise identical elements. */
static inline int tu_same_bits(const fia_tensor *a, const fia_tensor *b) {
    const int64_t n = tu_numel(a);
    const size_t es = fia_dtype_size(a->dtype);
    if (n != tu_numel(b) || a->dtype != b->dtype) return 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)a->data + tu_offset(a, i) * (int64_t)es,
                   (const char *)b->data + tu_offset(b, i) * (int64_t)es, es) != 0)
            return 0;
    return 1;
}

#endif /* FIA_TEST_UTIL_H */
