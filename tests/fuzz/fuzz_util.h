/*
 * fuzz_util.h - the input reader shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): bytes of
 * the fuzz input, then (past its end) a generator seeded by the whole input, so that the short
 * inputs libFuzzer starts with still reach every field and stay reproducible; integers in a range,
 * "interesting" values, saturating arithmetic for carved sizes; the extent of a strided view and
 * a buffer placed under it (fz_place).
 *
 * Header-only (static functions) and stateful (g_rng): include it from exactly one .c file per
 * executable. A target may define FZ_INTERESTING_WAYS before including it (default 16): the ways
 * interesting() draws from, the ones past the ten special values giving a typical value.
 */
#ifndef FIA_FUZZ_UTIL_H
#define FIA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fia.h"

#ifndef FZ_INTERESTING_WAYS
#define FZ_INTERESTING_WAYS 16
#endif

typedef struct fz {
    const uint8_t *p;
    size_t n;
} fz;

static uint64_t g_rng = 1;
static uint64_t next_rand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* The next input byte; past the end, bytes from a generator seeded by the whole input. */
static uint8_t u8(fz *f) {
    if (!f->n) return (uint8_t)(next_rand() >> 24);
    f->n--;
    return *f->p++;
}

static uint64_t un(fz *f, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)u8(f) << (8 * i);
    return v;
}

/* [lo, hi] from two bytes. */
static int64_t rng(fz *f, int64_t lo, int64_t hi) {
    const uint64_t span = (uint64_t)hi - (uint64_t)lo + 1u, x = un(f, 2);
    return (int64_t)((uint64_t)lo + (span ? x % span : x));
}

static int64_t interesting(fz *f, int64_t typical_hi) {
    switch (u8(f) % FZ_INTERESTING_WAYS) {
    case 0: return 0;
    case 1: return -1;
    case 2: return INT64_MAX;
    case 3: return INT64_MIN;
    case 4: return INT32_MAX;
    case 5: return INT32_MIN;
    case 6: return 2048;
    case 7: return 65537;
    case 8: return (int64_t)un(f, 8);
    case 9: return -(int64_t)rng(f, 1, 100);
    default: return rng(f, 0, typical_hi);
    }
}

/* Saturating int64 arithmetic for carved values. */
static int64_t smul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? ((a < 0) != (b < 0) ? INT64_MIN : INT64_MAX) : r;
}

static int64_t sadd(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b < 0 ? INT64_MIN : INT64_MAX) : r;
}

/* Seeds the generator from the whole input (called once per input, before reading). */
static void fz_seed(const uint8_t *data, size_t size) {
    g_rng = 0x9e3779b97f4a7c15ull ^ size;
    for (size_t i = 0; i < size; i++) g_rng = (g_rng ^ data[i]) * 0x100000001b3ull;
    if (!g_rng) g_rng = 1;
}

/* The memory a strided view reaches, in elements of es bytes: *lo (<= 0) is the lowest element
 * offset, *bytes the size of [lo, highest] (0 for a view with a dim of 0; dims < 0 are skipped).
 * Returns nonzero when that overflows or es is 0. */
static int fz_extent(int32_t nd, const int64_t *shape, const int64_t *strides, int64_t es,
                     int64_t *lo, int64_t *bytes) {
    int64_t l = 0, hi = 0, elems = 0;
    int empty = 0, over = es == 0;
    for (int32_t i = 0; i < nd && !over; i++) {
        if (shape[i] <= 0) {
            empty |= shape[i] == 0;
            continue;
        }
        int64_t span;
        if (__builtin_mul_overflow(shape[i] - 1, strides[i], &span)) {
            over = 1;
            break;
        }
        if (span < 0) over |= __builtin_add_overflow(l, span, &l);
        else over |= __builtin_add_overflow(hi, span, &hi);
    }
    *bytes = 0;
    if (empty) l = hi = 0; /* no element: nothing to reach */
    if (!over && !empty)
        over = __builtin_sub_overflow(hi, l, &elems) || __builtin_add_overflow(elems, 1, &elems) ||
               __builtin_mul_overflow(elems, es ? es : 1, bytes);
    *lo = l;
    return over;
}

#define MAX_TENSOR_BYTES ((int64_t)4 << 20)
static uint8_t g_dummy[64];

/* Makes *t the view of dtype dt with nd dims of shape / strides over a new buffer *buf holding
 * exactly the view's extent (*bytes; at least 1 byte allocated). A view whose extent overflows or
 * exceeds MAX_TENSOR_BYTES points at g_dummy with no buffer instead: returns 1 (plan only). */
static int fz_place(fia_tensor *t, fia_dtype dt, int32_t nd, const int64_t *shape,
                    const int64_t *strides, void **buf, size_t *bytes) {
    fia_tensor_init(t, NULL, FIA_DTYPE_UINT8, 0, NULL, NULL);
    t->dtype = dt, t->ndim = nd;
    for (int32_t i = 0; i < nd; i++) t->shape[i] = shape[i], t->strides[i] = strides[i];
    const int64_t es = (int64_t)fia_dtype_size(dt);
    int64_t lo, n;
    *buf = NULL, *bytes = 0;
    if (fz_extent(nd, shape, strides, es, &lo, &n) || n > MAX_TENSOR_BYTES) {
        t->data = g_dummy;
        return 1;
    }
    *buf = malloc(n ? (size_t)n : 1);
    if (!*buf) abort();
    *bytes = (size_t)n;
    t->data = (char *)*buf - lo * es;
    return 0;
}

#endif /* FIA_FUZZ_UTIL_H */
