/*
 * fuzz_mla.c - libFuzzer target for the MLA path of fia_fused_infer_attention_score_plan (query_rope
 * and key_rope given) and fia_plan_execute.
 *
 * The input bytes choose a layout (BSND, BSH, BNSD, TND, TND_NTD, sometimes a layout MLA rejects),
 * the cache form (dense in the query's layout, PA_BSND 4-D / 3-D, PA_NZ 5-D), the dtypes (float
 * form: query and ropes fp16 / bf16 / fp32, the cache its own float dtype; int8 form: int8 query and
 * cache, fp16 / bf16 ropes and output, dequant_scale_query / _key / _value), the head count (1..16),
 * batch 1..3, query lengths 1..8 (decode S1 = 1 often), kv lengths up to ~70 (paged: up to
 * columns x block_size), block_size (16 / 32, sometimes anything), the block table contents (ids
 * out of range, -1), sparse_mode (0 / 3, sometimes anything), a compressed mask, mla_rescale,
 * scale, softmax_lse, value as the key tensor or a copy. Half of the inputs are "clean" (every
 * tensor consistent, only padded outer strides); the other half also get targeted corruptions:
 * carved dtypes, ranks, dims and strides, wrong length counts, decreasing cumulative lengths,
 * NULL tensors, antiquant tensors, dequant scales on the float form, non-finite scale.
 *
 * Every buffer is allocated at exactly the extent its shape and strides reach, so ASan reports any
 * read or write outside a tensor. On plan success: the reported workspace size must match
 * fia_plan_workspace_size, the outputs must be untouched by the plan, an execute with one byte too
 * few must return FIA_STATUS_WORKSPACE_TOO_SMALL without writing, an execute with a workspace of
 * exactly the reported size (filled with garbage) must succeed, the output must be finite (lse
 * not NaN) where every input is finite and the scale moderate, and a second execute with other
 * workspace garbage must give bitwise the same outputs. On failure: a known status, a non-empty
 * fia_last_error(), *plan / *workspace_bytes and every output byte untouched.
 * Tensors past 4 MiB get a small dummy buffer and are planned only (contents are read at execute
 * time; the block table must be real, so an oversized one skips the input).
 * FIA_FUZZ_STATS=1 prints counters at exit (and the first rejections of clean inputs).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"

#define MAX_TENSOR_BYTES ((int64_t)4 << 20)
#define MAX_WORKSPACE ((size_t)256 << 20)
#define MAX_WORK ((int64_t)1 << 17) /* query rows (positions x heads) x keys per execute */

enum { DN = 512, DR = 64 };

/* ---- input reader ---------------------------------------------------------------------------- */

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
    switch (u8(f) % 16) {
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

/* Corrupted inputs only: true with probability 1/denom. Always consumes one byte. */
static int g_corrupt;
static int rare(fz *f, int denom) {
    const uint8_t b = u8(f);
    return g_corrupt && b % denom == 0;
}

static int64_t smul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? ((a < 0) != (b < 0) ? INT64_MIN : INT64_MAX) : r;
}

static int64_t sadd(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b < 0 ? INT64_MIN : INT64_MAX) : r;
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

static uint8_t g_dummy[64];

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
        shape[d] = u8(f) % 2 ? shape[d] + rng(f, -1, 1) : interesting(f, 70);
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
    fia_tensor_init(&x->t, NULL, FIA_DTYPE_UINT8, 0, NULL, NULL);
    x->t.dtype = dt, x->t.ndim = nd;
    for (int32_t i = 0; i < nd; i++) x->t.shape[i] = shape[i], x->t.strides[i] = strides[i];

    /* extent [lo, hi] in elements, with overflow checks */
    int64_t lo = 0, hi = 0;
    const int64_t es = (int64_t)fia_dtype_size(dt);
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
        if (span < 0) over |= __builtin_add_overflow(lo, span, &lo);
        else over |= __builtin_add_overflow(hi, span, &hi);
    }
    int64_t elems = 0, bytes = 0;
    if (empty) lo = hi = 0;
    if (!over && !empty)
        over = __builtin_sub_overflow(hi, lo, &elems) || __builtin_add_overflow(elems, 1, &elems) ||
               __builtin_mul_overflow(elems, es ? es : 1, &bytes);
    if (over || bytes > MAX_TENSOR_BYTES) {
        x->oversize = 1;
        x->t.data = g_dummy;
        return;
    }
    x->buf = malloc(bytes ? (size_t)bytes : 1);
    if (!x->buf) abort();
    x->bytes = (size_t)bytes;
    x->t.data = (char *)x->buf - lo * es;
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

/* Calls fn on every element of the view (0 dims of size 0: none). Returns the first nonzero. */
static int each_elem(const fia_tensor *t, int (*fn)(char *, fia_dtype)) {
    int64_t idx[FIA_MAX_DIMS] = {0};
    const int64_t es = (int64_t)fia_dtype_size(t->dtype);
    for (int32_t i = 0; i < t->ndim; i++)
        if (t->shape[i] <= 0) return 0;
    for (;;) {
        int64_t off = 0;
        for (int32_t i = 0; i < t->ndim; i++) off += idx[i] * t->strides[i];
        const int r = fn((char *)t->data + off * es, t->dtype);
        if (r) return r;
        int32_t d = t->ndim - 1;
        while (d >= 0 && ++idx[d] == t->shape[d]) idx[d--] = 0;
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

/* Query-side shape of width w for layout l (TND / TND_NTD and unknown layouts: [T, N, w]). */
static int32_t q_shape(fia_layout l, int64_t B, int64_t S, int64_t N, int64_t w, int64_t *sh) {
    switch (l) {
    case FIA_LAYOUT_BSH: sh[0] = B, sh[1] = S, sh[2] = smul(N, w); return 3;
    case FIA_LAYOUT_BSND:
    case FIA_LAYOUT_BNSD_BSND: sh[0] = B, sh[1] = S, sh[2] = N, sh[3] = w; return 4;
    case FIA_LAYOUT_BNSD: sh[0] = B, sh[1] = N, sh[2] = S, sh[3] = w; return 4;
    default: sh[0] = S, sh[1] = N, sh[2] = w; return 3;
    }
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

/* ---- the target -------------------------------------------------------------------------------- */

static long g_runs, g_planned, g_executed, g_clean, g_clean_planned, g_reported;
static long g_status[8];

static void print_stats(void) {
    fprintf(stderr,
            "fuzz_mla: %ld inputs (%ld clean, %ld of them planned), %ld planned, %ld executed; "
            "status counts:", g_runs, g_clean, g_clean_planned, g_planned, g_executed);
    for (int i = 0; i < 8; i++) fprintf(stderr, " %ld", g_status[i]);
    fprintf(stderr, "\n");
}

static uint8_t g_cmask[2048 * 2048]; /* the compressed mask triu(ones, 1) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fia_context *ctx;
    static int stats;
    if (!ctx) {
        for (int64_t i = 0; i < 2048; i++)
            for (int64_t j = 0; j < 2048; j++) g_cmask[i * 2048 + j] = j > i;
        static const fia_dtype tdt[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
        for (int d = 0; d < 3; d++)
            for (int64_t i = 0; i < TAB_ELEMS; i++)
                store_float(g_tab[d] + i * (int64_t)fia_dtype_size(tdt[d]), tdt[d], small_float());
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) abort();
        stats = getenv("FIA_FUZZ_STATS") != NULL;
        g_verbose = getenv("FIA_FUZZ_VERBOSE") != NULL;
        if (stats) atexit(print_stats);
    }
    g_runs++;
    fz f = {data, size};
    g_rng = 0x9e3779b97f4a7c15ull ^ size;
    for (size_t i = 0; i < size; i++) g_rng = (g_rng ^ data[i]) * 0x100000001b3ull;
    if (!g_rng) g_rng = 1;
    g_corrupt = u8(&f) & 1;
    g_clean += !g_corrupt;

    /* ---- parameters ---- */
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    static const fia_layout layouts[5] = {FIA_LAYOUT_BSND, FIA_LAYOUT_BSH, FIA_LAYOUT_BNSD,
                                          FIA_LAYOUT_TND, FIA_LAYOUT_TND_NTD};
    static const fia_layout bad_layouts[5] = {FIA_LAYOUT_BNSD_BSND, FIA_LAYOUT_NTD,
                                              FIA_LAYOUT_PA_BSND, (fia_layout)42, (fia_layout)-1};
    fia_layout layout = layouts[u8(&f) % 5];
    if (rare(&f, 24)) layout = bad_layouts[u8(&f) % 5];
    p.input_layout = layout;
    const int tnd = layout == FIA_LAYOUT_TND || layout == FIA_LAYOUT_TND_NTD;
    static const int64_t heads[8] = {1, 2, 3, 4, 5, 8, 16, 16};
    const uint8_t hs = u8(&f);
    const int64_t N = hs < 192 ? heads[hs % 8] : rng(&f, 1, 16);
    p.num_heads = rare(&f, 32) ? (u8(&f) % 2 ? 129 : interesting(&f, 20)) : N;
    p.num_key_value_heads = u8(&f) % 2;
    if (rare(&f, 32)) p.num_key_value_heads = u8(&f) % 2 ? 2 : interesting(&f, 4);
    /* 1 in 16: a long kv (> 1024 keys: split-KV chunks merged in order), one batch */
    const int longkv = u8(&f) % 16 == 0;
    const int64_t B = longkv ? 1 : rng(&f, 1, 3);
    const int quant = u8(&f) % 4 == 0;
    static const fia_dtype fdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    static const fia_dtype hdts[2] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    fia_dtype qdt, cdt, qrdt, krdt, odt;
    if (quant) {
        qdt = cdt = FIA_DTYPE_INT8;
        qrdt = hdts[u8(&f) % 2], krdt = hdts[u8(&f) % 2], odt = hdts[u8(&f) % 2];
    } else {
        qdt = fdts[u8(&f) % 3];
        cdt = u8(&f) % 2 ? qdt : fdts[u8(&f) % 3];
        qrdt = odt = qdt, krdt = cdt;
    }
    const int cache = u8(&f) % 4; /* 0 dense, 1 PA_BSND 4-D, 2 PA_BSND 3-D, 3 PA_NZ */
    const int paged = cache != 0;
    int64_t bs = u8(&f) % 2 ? 16 : 32;
    if (rare(&f, 16)) {
        static const int64_t odd[8] = {48, 64, 8, 0, 17, 1024, 2048, -16};
        bs = u8(&f) % 4 ? odd[u8(&f) % 8] : interesting(&f, 100);
    }
    const int64_t bsd = bs >= 1 && bs <= 64 ? bs : 16; /* the cache's block dim when bs is odd */
    p.block_size = paged ? bs : (rare(&f, 8) ? interesting(&f, 64) : 0);
    const int64_t cols = rare(&f, 32) ? 0 : longkv ? rng(&f, 1025 / bsd + 1, 1400 / bsd + 1) : rng(&f, 1, 5);
    const int64_t blocks = rare(&f, 32) ? 0 : rng(&f, 1, 12);
    const int64_t S1 = u8(&f) % 5 < 2 ? 1 : rng(&f, 1, 8);
    const int64_t S2 = longkv ? rng(&f, 1000, 1400) : rng(&f, 0, 70);
    const uint8_t ssel = u8(&f) % 16;
    p.scale = ssel < 10 ? 1.0 / 24.0 : ssel == 10 ? 0.0 : ssel == 11 ? -0.3 : ssel == 12 ? 1.0
              : ssel == 13 ? 100.0 : ssel == 14 ? 1000.0 : 1e-3;
    if (rare(&f, 32)) p.scale = u8(&f) % 2 ? NAN : INFINITY;
    const int moderate_scale = fabs(p.scale) <= 1000.0;
    p.sparse_mode = u8(&f) % 2 ? 3 : 0;
    if (rare(&f, 24)) p.sparse_mode = (int32_t)rng(&f, -1, 10);
    p.mla_rescale = (int32_t)(u8(&f) % 3);
    if (rare(&f, 32)) p.mla_rescale = u8(&f) % 2 ? 3 : -1;
    p.softmax_lse_flag = u8(&f) % 4 == 0;
    if (rare(&f, 16)) p.pre_tokens = interesting(&f, 70), p.next_tokens = interesting(&f, 70);
    p.inner_precise = u8(&f) % 2;

    /* ---- lengths ---- */
    int64_t qcount = 0, kvcount = 0, T1 = S1, T2 = S2;
    int64_t *ql = gen_lengths(&f, B, tnd ? 6 : S1, tnd, !tnd, &qcount);
    int64_t *kvl = gen_lengths(&f, B, paged ? cols * bsd : tnd ? (longkv ? 1400 : 40) : S2, tnd && !paged,
                               !tnd && !paged, &kvcount);
    p.actual_seq_lengths = ql, p.actual_seq_lengths_count = qcount;
    p.actual_seq_lengths_kv = kvl, p.actual_seq_lengths_kv_count = kvcount;
    if (tnd) { /* T from the last cumulative value (if sane), sometimes rows past it */
        T1 = ql && qcount > 0 && ql[qcount - 1] >= 0 && ql[qcount - 1] <= 64 ? ql[qcount - 1] : 4;
        T1 += u8(&f) % 4 == 0 ? rng(&f, 1, 2) : 0;
        T2 = kvl && kvcount > 0 && kvl[kvcount - 1] >= 0 && kvl[kvcount - 1] <= 1400
                 ? kvl[kvcount - 1] : 16;
        T2 += u8(&f) % 4 == 0 ? rng(&f, 1, 3) : 0;
    }
    const int64_t Bq = tnd ? 0 : B; /* batch dim of query-side tensors */

    /* ---- tensors ---- */
    ftensor q, qr, k, kr, v, out, lse, bt, sq, sk, sv, aq, fmask;
    memset(&fmask, 0, sizeof fmask);
    memset(&v, 0, sizeof v), memset(&lse, 0, sizeof lse), memset(&bt, 0, sizeof bt);
    memset(&sq, 0, sizeof sq), memset(&sk, 0, sizeof sk), memset(&sv, 0, sizeof sv);
    memset(&aq, 0, sizeof aq);
    int64_t sh[FIA_MAX_DIMS];
    int32_t nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DN, sh);
    build(&f, &q, qdt, nd, sh, quant ? FILL_BYTES : FILL_FLOAT);
    if (quant) q.finite = 1; /* int8 */
    nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DR, sh);
    build(&f, &qr, qrdt, nd, sh, FILL_FLOAT);
    if (layout == FIA_LAYOUT_TND_NTD) sh[0] = N, sh[1] = T1, sh[2] = DN, nd = 3;
    else nd = q_shape(layout, Bq, tnd ? T1 : S1, N, DN, sh);
    build(&f, &out, odt, nd, sh, FILL_OUT);
    for (int side = 0; side < 2; side++) {
        const int64_t w = side ? DR : DN;
        const fia_dtype dt = side ? krdt : cdt;
        switch (cache) {
        case 0: nd = q_shape(layout, Bq, tnd ? T2 : S2, 1, w, sh); break;
        case 1: sh[0] = blocks, sh[1] = bsd, sh[2] = 1, sh[3] = w, nd = 4; break;
        case 2: sh[0] = blocks, sh[1] = bsd, sh[2] = w, nd = 3; break;
        default: {
            const int64_t cw = 32 / (int64_t)fia_dtype_size(dt);
            sh[0] = blocks, sh[1] = 1, sh[2] = w / cw, sh[3] = bsd, sh[4] = cw, nd = 5;
        }
        }
        build(&f, side ? &kr : &k, dt, nd, sh,
              (quant && !side ? FILL_BYTES : FILL_FLOAT) | (cache == 3 ? KEEP2 : 0));
        if (quant && !side) k.finite = 1;
    }
    const uint8_t vsel = u8(&f) % 8;
    const fia_tensor *value = &k.t;
    if (vsel >= 6) { /* a separate value tensor of the key's shape */
        build(&f, &v, k.t.dtype, k.t.ndim, k.t.shape,
              (quant ? FILL_BYTES : FILL_FLOAT) | (cache == 3 ? KEEP2 : 0));
        if (quant) v.finite = 1;
        value = &v.t;
    }
    if (paged) {
        sh[0] = B, sh[1] = cols;
        if (rare(&f, 32)) sh[0] = B + rng(&f, -1, 1);
        build(&f, &bt, FIA_DTYPE_INT32, 2, sh, FILL_BYTES);
        if (bt.oversize) goto done; /* read at plan time: must be real */
        if (bt.t.dtype == FIA_DTYPE_INT32) { /* mostly valid ids; some -1, out of range */
            int32_t *ids = bt.buf;
            for (size_t i = 0; (i + 1) * 4 <= bt.bytes; i++) {
                ids[i] = (int32_t)(blocks > 0 ? rng(&f, 0, blocks - 1) : 0);
                if (rare(&f, 48)) {
                    const uint8_t c = u8(&f) % 4;
                    ids[i] = c == 0 ? -1 : c == 1 ? (int32_t)blocks : (int32_t)interesting(&f, blocks + 2);
                }
            }
        }
    }
    if (p.softmax_lse_flag || rare(&f, 16)) {
        if (tnd) sh[0] = T1, sh[1] = N, sh[2] = 1, nd = 3;
        else sh[0] = B, sh[1] = N, sh[2] = S1, sh[3] = 1, nd = 4;
        if (!rare(&f, 32)) build(&f, &lse, FIA_DTYPE_FLOAT32, nd, sh, FILL_OUT);
    }
    if (quant || rare(&f, 16)) {
        if (tnd) sh[0] = T1, sh[1] = N, sh[2] = 1, nd = u8(&f) % 2 ? 3 : 2;
        else sh[0] = B, sh[1] = S1, sh[2] = N, sh[3] = 1, nd = u8(&f) % 2 ? 4 : 3;
        if (!rare(&f, 32)) build(&f, &sq, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
        sh[0] = sh[1] = 1;
        nd = u8(&f) % 3;
        if (!rare(&f, 32)) build(&f, &sk, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
        if (!rare(&f, 32)) build(&f, &sv, FIA_DTYPE_FLOAT32, nd, sh, FILL_FLOAT);
    }
    if (rare(&f, 32)) { /* antiquant: not with MLA */
        sh[0] = 2;
        build(&f, &aq, FIA_DTYPE_FLOAT32, 1, sh, FILL_FLOAT);
    }
    /* the compressed mask (sparse_mode 3); rarely with mode 0 or a full mask */
    fia_tensor mask;
    const fia_tensor *maskp = NULL;
    const uint8_t msel = u8(&f) % 4;
    if (p.sparse_mode == 3 && msel != 0) {
        fia_tensor_init(&mask, g_cmask, FIA_DTYPE_BOOL, msel + 1,
                        (const int64_t[]){1, 1, 2048, 2048} + (3 - msel), NULL);
        maskp = &mask;
    }
    if (rare(&f, 24)) {
        sh[0] = tnd ? T1 : S1, sh[1] = paged ? cols * bsd : tnd ? T2 : S2;
        build(&f, &fmask, FIA_DTYPE_BOOL, 2, sh, FILL_BYTES);
        maskp = &fmask.t;
    }

    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    t.query = &q.t, t.query_rope = &qr.t, t.key = &k.t, t.key_rope = &kr.t, t.value = value;
    t.attention_out = &out.t;
    t.atten_mask = maskp;
    t.block_table = paged ? &bt.t : NULL;
    t.softmax_lse = lse.buf || lse.oversize ? &lse.t : NULL;
    t.dequant_scale_query = sq.buf || sq.oversize ? &sq.t : NULL;
    t.dequant_scale_key = sk.buf || sk.oversize ? &sk.t : NULL;
    t.dequant_scale_value = sv.buf || sv.oversize ? &sv.t : NULL;
    t.antiquant_scale = aq.buf ? &aq.t : NULL;
    if (rare(&f, 16)) {
        switch (u8(&f) % 7) {
        case 0: t.query = NULL; break;
        case 1: t.query_rope = NULL; break;
        case 2: t.key = NULL; break;
        case 3: t.key_rope = NULL; break;
        case 4: t.value = NULL; break;
        case 5: t.attention_out = NULL; break;
        default: t.block_table = paged ? NULL : t.block_table; break;
        }
    }

    if (g_verbose) {
        fprintf(stderr, "fuzz_mla: layout %s num_heads %lld num_key_value_heads %lld scale %g sparse_mode %d "
                "block_size %lld mla_rescale %d softmax_lse_flag %d pre/next %lld/%lld\n",
                fia_layout_name(p.input_layout), (long long)p.num_heads, (long long)p.num_key_value_heads,
                p.scale, (int)p.sparse_mode, (long long)p.block_size, (int)p.mla_rescale,
                (int)p.softmax_lse_flag, (long long)p.pre_tokens, (long long)p.next_tokens);
        describe("query", t.query, &q), describe("query_rope", t.query_rope, &qr);
        describe("key", t.key, &k), describe("key_rope", t.key_rope, &kr);
        describe(t.value == t.key && t.value ? "value (= key)" : "value", t.value, &v);
        describe("attention_out", t.attention_out, &out), describe("softmax_lse", t.softmax_lse, &lse);
        describe("atten_mask", t.atten_mask, maskp == &fmask.t ? &fmask : NULL);
        describe("block_table", t.block_table, &bt);
        if (t.block_table && bt.buf && bt.t.dtype == FIA_DTYPE_INT32) {
            fprintf(stderr, "  block_table ids:");
            for (size_t i = 0; i * 4 < bt.bytes && i < 64; i++) fprintf(stderr, " %d", ((int32_t *)bt.buf)[i]);
            fprintf(stderr, "\n");
        }
        describe("dequant_scale_query", t.dequant_scale_query, &sq);
        describe("dequant_scale_key", t.dequant_scale_key, &sk);
        describe("dequant_scale_value", t.dequant_scale_value, &sv);
        describe("antiquant_scale", t.antiquant_scale, &aq);
        describe_lengths("actual_seq_lengths", ql, qcount);
        describe_lengths("actual_seq_lengths_kv", kvl, kvcount);
    }
    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    fia_plan *plan = sentinel;
    size_t ws = 12345;
    const fia_status st = fia_fused_infer_attention_score_plan(ctx, &t, &p, &plan, &ws);
    g_status[st & 7]++;
    if (!untouched(&out) || !untouched(&lse)) {
        fprintf(stderr, "fuzz_mla: the plan (status %s) wrote an output\n", fia_status_string(st));
        abort();
    }
    if (st != FIA_STATUS_SUCCESS) {
        if (st != FIA_STATUS_INVALID_ARGUMENT && st != FIA_STATUS_UNSUPPORTED &&
            st != FIA_STATUS_OUT_OF_MEMORY) {
            fprintf(stderr, "fuzz_mla: plan returned %s: %s\n", fia_status_string(st), fia_last_error());
            abort();
        }
        if (!fia_last_error()[0]) {
            fprintf(stderr, "fuzz_mla: plan failed (%s) with an empty fia_last_error()\n",
                    fia_status_string(st));
            abort();
        }
        if (plan != sentinel || ws != 12345) {
            fprintf(stderr, "fuzz_mla: a failed plan wrote *plan or *workspace_bytes\n");
            abort();
        }
        if (stats && !g_corrupt && g_reported < 20) {
            g_reported++;
            fprintf(stderr, "fuzz_mla: clean input rejected: %s\n", fia_last_error());
        }
        goto done;
    }
    if (!plan || plan == sentinel || fia_plan_workspace_size(plan) != ws) {
        fprintf(stderr, "fuzz_mla: plan succeeded without a plan or with a wrong workspace size\n");
        abort();
    }
    g_planned++;
    g_clean_planned += !g_corrupt;
    {
        const int oversize = q.oversize || qr.oversize || k.oversize || kr.oversize || v.oversize ||
                             out.oversize || lse.oversize || sq.oversize || sk.oversize ||
                             sv.oversize;
        /* work bound from the planned shapes (dims may be carved): query rows (positions x
         * heads) x the most keys a row can see */
        const int64_t qrows = fia_tensor_numel(&q.t) / DN;
        const int64_t maxkv = paged ? smul(bt.t.shape[1], p.block_size) : fia_tensor_numel(&k.t) / DN;
        const int64_t work = smul(qrows, maxkv > 0 ? maxkv : 1);
        if (!oversize && work <= MAX_WORK && ws <= MAX_WORKSPACE) {
            uint8_t *w = malloc(ws ? ws : 1);
            if (!w) abort();
            memset(w, 0xa5, ws);
            if (ws > 0 && fia_plan_execute(plan, w, ws - 1) != FIA_STATUS_WORKSPACE_TOO_SMALL) {
                fprintf(stderr, "fuzz_mla: execute with %zu of %zu workspace bytes\n", ws - 1, ws);
                abort();
            }
            if (!untouched(&out) || !untouched(&lse)) {
                fprintf(stderr, "fuzz_mla: execute with a too small workspace wrote an output\n");
                abort();
            }
            fia_status es = fia_plan_execute(plan, w, ws);
            if (es != FIA_STATUS_SUCCESS) {
                fprintf(stderr, "fuzz_mla: execute returned %s: %s\n", fia_status_string(es),
                        fia_last_error());
                abort();
            }
            g_executed++;
            if (!p.softmax_lse_flag && !untouched(&lse)) {
                fprintf(stderr, "fuzz_mla: softmax_lse written with softmax_lse_flag 0\n");
                abort();
            }
            const int finite_in = q.finite && qr.finite && k.finite && kr.finite &&
                                  (value == &k.t || v.finite) && (!quant || (sq.finite && sk.finite && sv.finite));
            if (finite_in && moderate_scale && each_elem(&out.t, not_finite)) {
                fprintf(stderr, "fuzz_mla: non-finite output from finite inputs\n");
                abort();
            }
            if (finite_in && moderate_scale && lse.buf && p.softmax_lse_flag && each_elem(&lse.t, is_nan)) {
                fprintf(stderr, "fuzz_mla: NaN in softmax_lse from finite inputs\n");
                abort();
            }
            if (u8(&f) % 2 && no_alias(&out.t) && (!lse.buf || no_alias(&lse.t))) {
                /* again, other workspace garbage: bitwise the same outputs */
                void *o1 = malloc(out.bytes ? out.bytes : 1), *l1 = malloc(lse.bytes ? lse.bytes : 1);
                memcpy(o1, out.buf, out.bytes);
                if (lse.buf) memcpy(l1, lse.buf, lse.bytes);
                memset(w, 0x5b, ws);
                es = fia_plan_execute(plan, w, ws);
                if (es != FIA_STATUS_SUCCESS || memcmp(o1, out.buf, out.bytes) ||
                    (lse.buf && memcmp(l1, lse.buf, lse.bytes))) {
                    fprintf(stderr, "fuzz_mla: a second execute gave other outputs (%s)\n",
                            fia_status_string(es));
                    abort();
                }
                free(o1), free(l1);
            }
            free(w);
        }
    }
    fia_plan_destroy(plan);

done:
    release(&q), release(&qr), release(&k), release(&kr), release(&v), release(&out);
    release(&lse), release(&bt), release(&sq), release(&sk), release(&sv), release(&aq);
    release(&fmask);
    free(ql), free(kvl);
    return 0;
}
