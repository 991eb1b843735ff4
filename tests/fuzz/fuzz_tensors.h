/*
 * fuzz_tensors.h - the tensor side shared by the operator fuzz targets fuzz_mla.c and
 * fuzz_sparse.c: clean or corrupted inputs (g_corrupt, rare), tensors carved from the input and
 * allocated at exactly their extent (build: so ASan reports any access outside a tensor; past
 * MAX_TENSOR_BYTES a dummy buffer, plan only), output snapshots (untouched), aliasing and
 * finiteness checks over a view, FIA_FUZZ_VERBOSE descriptions, and per-batch length arrays.
 *
 * Header-only and stateful: include it (after fuzz_util.h) from one .c file per executable, and
 * call fz_init_tables() once before the first build().
 */
#ifndef FIA_FUZZ_TENSORS_H
#define FIA_FUZZ_TENSORS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fuzz/fuzz_util.h"


/* Corrupted inputs only: true with probability 1/denom. Always consumes one byte. */
static int g_corrupt;
static int rare(fz *f, int denom) {
    const uint8_t b = u8(f);
    return g_corrupt && b % denom == 0;
}

/* ---- tensors --------------------------------------------------------------------------------- */

/* How build() fills a tensor (FILL_OUT: random bytes and a snapshot); KEEP2 keeps the two
 * innermost strides compact (PA_NZ); INNER_ANY lets the innermost stride be 0..3 (tensors with any
 * strides), INNER_POS 1..3 (outputs with any strides). */
enum {
    FILL_FLOAT = 0, FILL_OUT = 1, FILL_BYTES = 2, FILL_KIND = 0xf,
    KEEP2 = 0x10, INNER_ANY = 0x20, INNER_POS = 0x40
};

typedef struct ftensor {
    fia_tensor t;
    void *buf;
    size_t bytes;
    void *snap;   /* outputs: a copy of the bytes before the call */
    int oversize; /* data is a dummy: plan only */
    int finite;   /* every element holds a finite value */
    int raw;      /* a float tensor filled with raw bytes (NaN / inf possible) */
} ftensor;


static float small_float(void) { return (float)((int64_t)(next_rand() % 2001) - 1000) / 1000.0f; }

/* Small finite values in each float encoding (fp32, fp16, bf16), copied out in runs from random
 * starts: much faster than converting every element. */
enum { TAB_ELEMS = 8192 };
static uint8_t g_tab[3][TAB_ELEMS * 4];

static void store_float(void *dst, fia_dtype dt, float v) {
    if (dt == FIA_DTYPE_FLOAT32) {
        memcpy(dst, &v, 4);
    } else {
        const uint16_t h = dt == FIA_DTYPE_FLOAT16 ? fia_f32_to_f16(v) : fia_f32_to_bf16(v);
        memcpy(dst, &h, 2);
    }
}

static float load_float(const void *src, fia_dtype dt) {
    if (dt == FIA_DTYPE_FLOAT32) {
        float v;
        memcpy(&v, src, 4);
        return v;
    }
    uint16_t h;
    memcpy(&h, src, 2);
    return dt == FIA_DTYPE_FLOAT16 ? fia_f16_to_f32(h) : fia_bf16_to_f32(h);
}

static int is_float(fia_dtype dt) {
    return dt == FIA_DTYPE_FLOAT32 || dt == FIA_DTYPE_FLOAT16 || dt == FIA_DTYPE_BFLOAT16;
}

/* Sets x to dt / shape (or, on corrupted inputs, a carved variant) with compact or padded strides
 * (rarely carved ones), allocates exactly its extent and fills it. */
static void build(fz *f, ftensor *x, fia_dtype dt, int32_t nd, const int64_t *shape_in, int fill) {
    const int keep = fill & KEEP2 ? 2 : 1, inner = fill & (INNER_ANY | INNER_POS);
    fill &= FILL_KIND;
    int64_t shape[FIA_MAX_DIMS] = {0}, strides[FIA_MAX_DIMS];
    memset(x, 0, sizeof *x);
    for (int32_t i = 0; i < nd; i++) shape[i] = shape_in[i];
    if (rare(f, 48)) dt = (fia_dtype)(u8(f) % 9); /* incl. one unknown dtype */
    const uint8_t m = u8(f);
    if (g_corrupt && m % 64 == 0) { /* any rank, any dims */
        nd = u8(f) % 6;
        for (int32_t i = 0; i < nd; i++) shape[i] = u8(f) % 4 ? rng(f, 0, 40) : interesting(f, 600);
    } else if (g_corrupt && m % 64 == 1 && nd > 0) { /* one dim changed */
        const int32_t d = u8(f) % nd;
        if (u8(f) % 2) { /* one off, saturating at the int64 ends */
            const int64_t dl = rng(f, -1, 1);
            if (!((dl > 0 && shape[d] == INT64_MAX) || (dl < 0 && shape[d] == INT64_MIN))) shape[d] += dl;
        } else {
            shape[d] = interesting(f, 70);
        }
    }
    int64_t s = 1;
    if (inner && nd > 0 && u8(f) % 8 == 0) s = rng(f, inner & INNER_ANY ? 0 : 1, 3);
    for (int32_t i = nd - 1; i >= 0; i--) {
        strides[i] = s;
        s = smul(s ? s : 1, shape[i] > 0 ? shape[i] : 1);
    }
    const uint8_t sm = u8(f) % 16;
    if (sm >= 12 && nd > keep) { /* padded outer strides: a random subset of the dims */
        const uint8_t which = u8(f);
        for (int32_t i = nd - 2; i >= 0; i--) {
            int64_t pad = 0;
            if (i < nd - keep && which >> (i % 8) & 1) pad = rng(f, 1, 9);
            strides[i] = sadd(smul(strides[i + 1] ? strides[i + 1] : 1, shape[i + 1] > 0 ? shape[i + 1] : 1), pad);
        }
    } else if (g_corrupt && sm == 11 && nd > 0) { /* one stride carved */
        strides[u8(f) % nd] = u8(f) % 2 ? rng(f, -2, 3) : interesting(f, 100);
    }
    x->oversize = fz_place(&x->t, dt, nd, shape, strides, &x->buf, &x->bytes);
    if (x->oversize) return;
    const int64_t bytes = (int64_t)x->bytes, es = (int64_t)fia_dtype_size(dt);
    /* contents: small floats (1 in 8 tensors: raw bytes, so NaN / inf) or any bytes */
    const int raw = fill != FILL_FLOAT || !is_float(dt) || u8(f) % 8 == 0;
    x->finite = !raw;
    x->raw = raw && fill == FILL_FLOAT && is_float(dt);
    if (!raw) {
        const uint8_t *tab = g_tab[dt == FIA_DTYPE_FLOAT32 ? 0 : dt == FIA_DTYPE_FLOAT16 ? 1 : 2];
        for (int64_t i = 0; i < bytes;) {
            const int64_t n = bytes - i < (TAB_ELEMS / 2) * es ? bytes - i : (TAB_ELEMS / 2) * es;
            memcpy((char *)x->buf + i, tab + (next_rand() % (TAB_ELEMS / 2)) * es, (size_t)n);
            i += n;
        }
    } else {
        for (int64_t i = 0; i < bytes; i += 8) {
            const uint64_t r = next_rand();
            memcpy((char *)x->buf + i, &r, bytes - i < 8 ? (size_t)(bytes - i) : 8);
        }
    }
    if (fill == FILL_OUT) {
        x->snap = malloc(x->bytes ? x->bytes : 1);
        memcpy(x->snap, x->buf, x->bytes);
    }
}

static void release(ftensor *x) {
    free(x->buf);
    free(x->snap);
}

static int untouched(const ftensor *x) { return !x->snap || !memcmp(x->buf, x->snap, x->bytes); }

/* Whether no two elements of the view share an address (else concurrent writes race). */
static int no_alias(const fia_tensor *t) {
    int used[FIA_MAX_DIMS] = {0};
    int64_t extent = 1;
    for (;;) { /* dims of size > 1 by increasing stride: each must step past the ones inside */
        int32_t best = -1;
        for (int32_t i = 0; i < t->ndim; i++)
            if (!used[i] && t->shape[i] > 1 && (best < 0 || t->strides[i] < t->strides[best])) best = i;
        if (best < 0) return 1;
        used[best] = 1;
        if (t->strides[best] < extent) return 0;
        extent = sadd(smul(t->strides[best], t->shape[best] - 1), extent);
    }
}

/* Calls fn on every distinct element of the view (none when a dim is 0): a dim of stride 0
 * repeats the same elements, so it is visited once (a broadcast view of a huge shape would
 * otherwise take hours). Returns the first nonzero. */
static int each_elem(const fia_tensor *t, int (*fn)(char *, fia_dtype)) {
    int64_t idx[FIA_MAX_DIMS] = {0}, n[FIA_MAX_DIMS];
    const int64_t es = (int64_t)fia_dtype_size(t->dtype);
    for (int32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] <= 0) return 0;
        n[i] = t->strides[i] == 0 ? 1 : t->shape[i];
    }
    for (;;) {
        int64_t off = 0;
        for (int32_t i = 0; i < t->ndim; i++) off += idx[i] * t->strides[i];
        const int r = fn((char *)t->data + off * es, t->dtype);
        if (r) return r;
        int32_t d = t->ndim - 1;
        while (d >= 0 && ++idx[d] == n[d]) idx[d--] = 0;
        if (d < 0) return 0;
    }
}

static int not_finite(char *p, fia_dtype dt) { return !isfinite(load_float(p, dt)); }
static int is_nan(char *p, fia_dtype dt) { return isnan(load_float(p, dt)); }

/* FIA_FUZZ_VERBOSE=1: one line per tensor of the call (to describe a failing input). */
static int g_verbose;
static void describe(const char *name, const fia_tensor *t, const ftensor *x) {
    if (!g_verbose) return;
    if (!t) {
        fprintf(stderr, "  %-20s NULL\n", name);
        return;
    }
    fprintf(stderr, "  %-20s %-8s [", name, fia_dtype_name(t->dtype));
    for (int32_t i = 0; i < t->ndim; i++) fprintf(stderr, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    fprintf(stderr, "] strides [");
    for (int32_t i = 0; i < t->ndim; i++) fprintf(stderr, "%s%lld", i ? ", " : "", (long long)t->strides[i]);
    fprintf(stderr, "]%s%s\n", x && x->oversize ? " (dummy data)" : "",
            x && x->raw ? " (raw bytes: may hold NaN / inf)" : "");
}

static void describe_lengths(const char *name, const int64_t *v, int64_t n) {
    if (!g_verbose) return;
    fprintf(stderr, "  %-20s count %lld:", name, (long long)n);
    for (int64_t i = 0; v && i < n && i < 16; i++) fprintf(stderr, " %lld", (long long)v[i]);
    fprintf(stderr, "\n");
}

/* Token count of a TND tensor from its cumulative lengths v: the last value when it lies in
 * [0, cap], else dflt; in 1 of 4 inputs 1 to extra rows past it. */
static int64_t tnd_rows(fz *f, const int64_t *v, int64_t count, int64_t cap, int64_t dflt,
                        int64_t extra) {
    const int64_t last = v && count > 0 ? v[count - 1] : -1;
    const int64_t t = last >= 0 && last <= cap ? last : dflt;
    return t + (u8(f) % 4 == 0 ? rng(f, 1, extra) : 0);
}

/* Per-batch lengths in [0, hi] (running sums when cumulative), count B; on corrupted inputs also
 * other counts, values out of range and decreasing sums. NULL with *count 0: absent. */
static int64_t *gen_lengths(fz *f, int64_t B, int64_t hi, int cumulative, int may_omit,
                            int64_t *count) {
    const uint8_t m = u8(f) % 32;
    if (may_omit && m < 6) {
        *count = 0;
        return NULL;
    }
    int64_t n = B;
    if (!cumulative && m == 6) n = 1; /* broadcast */
    if (!cumulative && m == 7) n = B + 1;
    if (g_corrupt && m == 8) n = rng(f, 0, B + 2);
    if (g_corrupt && m == 9) {
        *count = B; /* NULL with a count */
        return NULL;
    }
    *count = n;
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    int64_t acc = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t x = rng(f, 0, hi);
        if (u8(f) % 4 == 0) x = hi;
        if (rare(f, 24)) x = u8(f) % 2 ? hi + rng(f, 1, 2) : interesting(f, hi);
        if (cumulative) {
            acc += x >= 0 && x <= hi ? x : 0;
            v[i] = acc;
            if (rare(f, 32)) v[i] = acc - rng(f, 1, 3);
            if (rare(f, 64)) v[i] = x;
        } else {
            v[i] = x;
        }
    }
    return v;
}

/* Fills the small-float tables build() copies from (once). */
static void fz_init_tables(void) {
    static const fia_dtype tdt[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    for (int d = 0; d < 3; d++)
        for (int64_t i = 0; i < TAB_ELEMS; i++)
            store_float(g_tab[d] + i * (int64_t)fia_dtype_size(tdt[d]), tdt[d], small_float());
}

#endif /* FIA_FUZZ_TENSORS_H */
