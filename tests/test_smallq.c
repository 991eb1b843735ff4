/*
 * test_smallq.c - smallq_flash_attention (the SmallQ decode operator) against the double-precision
 * oracle (ref/ref_smallq.h).
 *
 *   test_smallq [seed]       FIA_TEST_ONLY=i runs sweep case i only (with the same seed)
 *
 * Sections:
 *   sweep        the seed's model shapes: every model row x qLen {1, 2, 4, 8} x kvLen {1, 2, 15,
 *                16, 17, 64, 127, 128, 129, 1023, 1024, 1025, 1500, 3000, 4096, 8192, 16384}
 *                (816 cases), plus 40 with larger magnitudes (Q up to [-8, 8], K and V up to
 *                [-4, 4]) and 24 with random kv lengths. The library computes every head of
 *                every case; the oracle checks every element of a sample of heads (all of them
 *                when that is cheap, at least the first and the last), and every element of
 *                every head is checked to be finite and within the range of V (O is a convex
 *                combination of V rows). Sanitizer builds check fewer heads and run a quarter
 *                of the cases above 3e8 flops (memory errors depend on shapes, not on size).
 *   odd shapes   headDim 1, 2, 3, 17, 100, 257, 511, 512, 576 (and 1000, 1024 below); numHeads 1, 3; qLen 1, 2, 13 (and a
 *                few longer queries, up to 300); under every ISA, every element against the
 *                oracle.
 *   determinism  bitwise identical O for contexts with 1, 2 and 7 threads, under every ISA.
 *   errors       every bad call returns its status with a message naming the tensor, writes
 *                nothing; executor re-runs; a too small workspace.
 *   ISAs         a subset of the sweep under contexts forced to scalar, avx2 and avx512.
 *
 * Memory layouts: inputs are compact, or have padded rows and gap rows between heads (the padding
 * holds fp16 NaN, so a kernel that reads past a row or past a head's kvLen poisons its output),
 * or - for the largest cases - K/V heads that overlap in memory (head stride a few hundred rows:
 * a legal strided view that keeps 128 heads x 16384 tokens small). O is compact or strided (row
 * padding and gaps between heads); every element of O's buffer outside the view, including guard
 * zones before and after it, holds a canary that must survive: a write of one head's tail must
 * not touch anything else (the seed's byte-exact tail writes).
 *
 * Tolerance: every checked element |got - want| <= 1e-3 + 5e-3 |want| (fp16 output).
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fia.h"
#include "ref/ref_smallq.h"
#include "ref/tolerance.h"
#include "test_util.h"

/* the row of ref/tolerance.h */
#define ATOL (fia_ref_tolerance_of("smallq_flash_attention", "o", FIA_DTYPE_FLOAT16)->atol)
#define RTOL (fia_ref_tolerance_of("smallq_flash_attention", "o", FIA_DTYPE_FLOAT16)->rtol)

/* Sanitizer builds spend less oracle work per case (same cases, fewer sampled heads). */
#if defined(__SANITIZE_ADDRESS__)
#define SQ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SQ_SANITIZED 1
#endif
#endif
#ifndef SQ_SANITIZED
#define SQ_SANITIZED 0
#endif

/* Oracle work per case, in (key, channel, query row) units. */
#define SWEEP_ORACLE_BUDGET (SQ_SANITIZED ? 5.0e6 : 2.0e7)
#define ISA_ORACLE_BUDGET (SQ_SANITIZED ? 2.0e6 : 1.0e7)
/* Sanitizer builds run a quarter of the sweep cases above this many flops. */
#define SANITIZED_BIG_FLOPS 3.0e8
/* Inputs above this many elements per tensor use overlapping heads (see the header comment). */
#define DENSE_LIMIT (INT64_C(1) << 22)

#define F16_NAN 0x7E00u    /* the poison in the padding of inputs */
#define F16_CANARY 0x7E5Au /* the canary around O: a NaN, so an unwritten O element fails too */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Where the time goes: building inputs, the library (plan + execute), checking (the oracle). */
static double g_t_make, g_t_lib, g_t_check;

/* ------------------------------------------------------------------------------------------ */
/* Buffers                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* fp16 values uniform in [-amp, amp] on a grid of 65536 levels (4 values per random draw). */
static uint16_t g_table[65536];
static double g_table_amp = -1.0;

static void fill_f16(uint16_t *dst, int64_t n, double amp, tu_rng *r) {
    if (amp != g_table_amp) {
        for (uint32_t i = 0; i < 65536; i++)
            g_table[i] = fia_f32_to_f16((float)(amp * (((double)i - 32767.5) / 32767.5)));
        g_table_amp = amp;
    }
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint64_t x = tu_next(r);
        dst[i] = g_table[x & 0xffff];
        dst[i + 1] = g_table[(x >> 16) & 0xffff];
        dst[i + 2] = g_table[(x >> 32) & 0xffff];
        dst[i + 3] = g_table[x >> 48];
    }
    for (; i < n; i++) dst[i] = g_table[tu_next(r) & 0xffff];
}

enum { L_COMPACT, L_PADDED, L_OVERLAP };
static const char *const layout_name[] = {"compact", "padded", "overlap"};

/* A [N, S, D] float16 view over a buffer it owns. */
typedef struct sq_buf {
    fia_tensor t;
    uint16_t *buf;
    int64_t n;     /* elements in buf */
    int64_t guard; /* the view starts at buf + guard */
} sq_buf;

static void sq_buf_free(sq_buf *b) {
    free(b->buf);
    memset(b, 0, sizeof *b);
}

static int sq_view(sq_buf *b, int64_t N, int64_t S, int64_t D, int64_t hs, int64_t rs,
                   int64_t guard, int64_t n) {
    const int64_t shape[3] = {N, S, D}, strides[3] = {hs, rs, 1};
    b->buf = malloc((size_t)(n > 0 ? n : 1) * sizeof *b->buf);
    if (b->buf == NULL) return -1;
    b->n = n;
    b->guard = guard;
    return fia_tensor_init(&b->t, b->buf + guard, FIA_DTYPE_FLOAT16, 3, shape, strides) ==
                   FIA_STATUS_SUCCESS
               ? 0
               : -1;
}

/* An input: compact; padded (1..9 NaN elements after each row, 1..3 NaN rows after each head);
 * or overlapping heads (head stride of about DENSE_LIMIT / N elements, whole rows). */
static int make_input(sq_buf *b, int64_t N, int64_t S, int64_t D, int layout, double amp,
                      tu_rng *r) {
    memset(b, 0, sizeof *b);
    int64_t rs = D, hrows = S;
    if (layout == L_PADDED) {
        rs = D + tu_int(r, 1, 9);
        hrows = S + tu_int(r, 1, 3);
    } else if (layout == L_OVERLAP && N > 1) {
        hrows = (DENSE_LIMIT / D - S) / (N - 1);
        if (hrows < 1) hrows = 1;
        hrows |= 1; /* an odd number of rows: heads start at varied alignments */
    }
    const int64_t rows = (N - 1) * hrows + S;
    if (sq_view(b, N, S, D, hrows * rs, rs, 0, (rows - 1) * rs + D) != 0) return -1;
    for (int64_t i = 0; i < rows; i++) {
        uint16_t *row = b->buf + i * rs;
        if (hrows <= S || i % hrows < S)
            fill_f16(row, D, amp, r);
        else
            for (int64_t d = 0; d < D; d++) row[d] = F16_NAN;
        for (int64_t d = D; d < rs && i * rs + d < b->n; d++) row[d] = F16_NAN;
    }
    return 0;
}

/* O: compact (tight, heads back to back) or strided (1..5 elements after each row, 1..7 after
 * each head: a head stride that is not a multiple of the row stride); 1..40 guard elements
 * before and after. Every element holds the canary. */
static int make_output(sq_buf *b, int64_t N, int64_t S, int64_t D, int strided, tu_rng *r) {
    memset(b, 0, sizeof *b);
    int64_t rs = D, hs = S * D;
    if (strided) {
        rs = D + tu_int(r, 1, 5);
        hs = S * rs + tu_int(r, 1, 7);
    }
    const int64_t front = tu_int(r, 1, 40), back = tu_int(r, 1, 40);
    const int64_t extent = (N - 1) * hs + (S - 1) * rs + D;
    if (sq_view(b, N, S, D, hs, rs, front, front + extent + back) != 0) return -1;
    for (int64_t i = 0; i < b->n; i++) b->buf[i] = F16_CANARY;
    return 0;
}

static void fill_canary(sq_buf *o) {
    for (int64_t i = 0; i < o->n; i++) o->buf[i] = F16_CANARY;
}

static int64_t elem_offset(const fia_tensor *t, int64_t h, int64_t s, int64_t d) {
    return h * t->strides[0] + s * t->strides[1] + d * t->strides[2];
}

static uint16_t o_at(const sq_buf *o, int64_t h, int64_t s, int64_t d) {
    return o->buf[o->guard + elem_offset(&o->t, h, s, d)];
}

/* Number of elements of O's buffer outside the view that lost the canary; the first in *first. */
static int64_t canaries_broken(const sq_buf *o, int64_t *first) {
    unsigned char *in = calloc((size_t)o->n, 1);
    if (in == NULL) return -1;
    const fia_tensor *t = &o->t;
    for (int64_t h = 0; h < t->shape[0]; h++)
        for (int64_t s = 0; s < t->shape[1]; s++)
            memset(in + o->guard + elem_offset(t, h, s, 0), 1, (size_t)t->shape[2]);
    int64_t bad = 0;
    *first = -1;
    for (int64_t i = 0; i < o->n; i++) {
        if (!in[i] && o->buf[i] != F16_CANARY) {
            if (bad++ == 0) *first = i;
        }
    }
    free(in);
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* A case                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct sq_case {
    const char *model;
    int64_t n, s1, s2, d; /* numHeads, qLen, kvLen, headDim */
    double q_amp, k_amp, v_amp;
    int in_layout; /* L_COMPACT, L_PADDED or L_OVERLAP (K and V; Q is never overlapping) */
    int o_strided;
} sq_case;

static void describe(const sq_case *c, char *buf, size_t len) {
    snprintf(buf, len, "%s N%lld q%lld kv%lld D%lld amp %g/%g/%g, %s inputs, %s O", c->model,
             (long long)c->n, (long long)c->s1, (long long)c->s2, (long long)c->d, c->q_amp,
             c->k_amp, c->v_amp, layout_name[c->in_layout], c->o_strided ? "strided" : "tight");
}

typedef struct sq_io {
    sq_buf q, k, v, o;
} sq_io;

static void io_free(sq_io *io) {
    sq_buf_free(&io->q);
    sq_buf_free(&io->k);
    sq_buf_free(&io->v);
    sq_buf_free(&io->o);
}

static int io_make(sq_io *io, const sq_case *c, tu_rng *r) {
    memset(io, 0, sizeof *io);
    const int q_layout = c->in_layout == L_OVERLAP ? L_COMPACT : c->in_layout;
    if (make_input(&io->q, c->n, c->s1, c->d, q_layout, c->q_amp, r) != 0 ||
        make_input(&io->k, c->n, c->s2, c->d, c->in_layout, c->k_amp, r) != 0 ||
        make_input(&io->v, c->n, c->s2, c->d, c->in_layout, c->v_amp, r) != 0 ||
        make_output(&io->o, c->n, c->s1, c->d, c->o_strided, r) != 0) {
        io_free(io);
        return -1;
    }
    return 0;
}

/* Plans and runs the case on ctx (workspace at an odd address when misalign). Returns the
 * status; the message of a failure is printed. */
static fia_status io_run(fia_context *ctx, sq_io *io, int misalign, const char *what) {
    uint64_t ws = 0;
    fia_plan *exec = NULL;
    fia_status s = fia_smallq_flash_attention_get_workspace_size(ctx, &io->q.t, &io->k.t,
                                                                 &io->v.t, &io->o.t, &ws, &exec);
    if (!tu_check(s == FIA_STATUS_SUCCESS, "%s: get_workspace_size: %s (%s)", what,
                  fia_status_string(s), fia_last_error()))
        return s;
    unsigned char *mem = malloc((size_t)ws + 1);
    if (!tu_check(mem != NULL, "%s: workspace of %llu bytes", what, (unsigned long long)ws)) {
        fia_plan_destroy(exec);
        return FIA_STATUS_OUT_OF_MEMORY;
    }
    s = fia_smallq_flash_attention(mem + (misalign ? 1 : 0), ws, exec);
    tu_check(s == FIA_STATUS_SUCCESS, "%s: execute: %s (%s)", what, fia_status_string(s),
             fia_last_error());
    free(mem);
    fia_plan_destroy(exec);
    return s;
}

typedef struct sq_stats {
    double max_err;    /* worst |got - want| over checked elements */
    double max_excess; /* worst |got - want| / (atol + rtol |want|) */
    int64_t heads_checked, heads_total, cases;
} sq_stats;

/* Heads the oracle checks: all when cheap enough for the budget, else the first, the last and
 * random others. Returns the count. */
static int64_t pick_heads(const sq_case *c, double budget, tu_rng *r, int64_t *heads) {
    const double per_head = (double)c->s2 * (double)c->d * (double)(2 * c->s1 + 2);
    const double fit = budget / per_head;
    const int64_t count = fit >= (double)c->n ? c->n : fit < 2.0 ? 2 : (int64_t)fit;
    if (count >= c->n) {
        for (int64_t h = 0; h < c->n; h++) heads[h] = h;
        return c->n;
    }
    for (int64_t h = 0; h < c->n; h++) heads[h] = h;
    /* heads[0] = 0, heads[1] = N - 1, then a random choice of the rest. */
    heads[1] = c->n - 1;
    heads[c->n - 1] = 1;
    for (int64_t i = 2; i < count; i++) {
        const int64_t j = tu_int(r, i, c->n - 1);
        const int64_t t = heads[i];
        heads[i] = heads[j];
        heads[j] = t;
    }
    return count;
}

/* Checks O after a successful run: canaries, every element finite and within V's range, and the
 * sampled heads against the oracle. Returns 1 when everything passed. */
static int io_verify(const sq_io *io, const sq_case *c, double budget, tu_rng *r,
                     const char *what, sq_stats *st) {
    int ok = 1;
    int64_t first = -1;
    const int64_t broken = canaries_broken(&io->o, &first);
    ok &= tu_check(broken == 0, "%s: %lld canaries around/between O's rows changed (first at "
                                "buffer element %lld of %lld, view starts at %lld)",
                   what, (long long)broken, (long long)first, (long long)io->o.n,
                   (long long)io->o.guard);

    /* Every element: finite and |o| <= max |v|. */
    const double bound = c->v_amp * (1.0 + RTOL) + ATOL;
    int64_t out_of_range = 0, where[3] = {0, 0, 0};
    double worst_val = 0.0;
    for (int64_t h = 0; h < c->n; h++)
        for (int64_t s = 0; s < c->s1; s++)
            for (int64_t d = 0; d < c->d; d++) {
                const double g = fia_f16_to_f32(o_at(&io->o, h, s, d));
                if (!(fabs(g) <= bound)) {
                    if (out_of_range++ == 0) {
                        where[0] = h;
                        where[1] = s;
                        where[2] = d;
                        worst_val = g;
                    }
                }
            }
    ok &= tu_check(out_of_range == 0, "%s: %lld elements of O are NaN/inf or beyond max|V| %g "
                                      "(first: head %lld row %lld dim %lld = %g)",
                   what, (long long)out_of_range, c->v_amp, (long long)where[0],
                   (long long)where[1], (long long)where[2], worst_val);

    /* The oracle on the sampled heads. */
    int64_t *heads = malloc((size_t)c->n * sizeof *heads);
    const int64_t count = heads != NULL ? pick_heads(c, budget, r, heads) : 0;
    double *want = malloc((size_t)(count * c->s1 * c->d > 0 ? count * c->s1 * c->d : 1) *
                          sizeof *want);
    if (!tu_check(heads != NULL && want != NULL, "%s: out of memory for the oracle", what)) {
        free(heads);
        free(want);
        return 0;
    }
    if (!tu_check(fia_ref_smallq_flash_attention(&io->q.t, &io->k.t, &io->v.t, heads, count,
                                                 want) == 0,
                  "%s: the oracle refused the inputs", what)) {
        free(heads);
        free(want);
        return 0;
    }
    int64_t bad = 0, wh = 0, ws = 0, wd = 0;
    double wgot = 0, wwant = 0, case_excess = 0;
    for (int64_t i = 0; i < count; i++)
        for (int64_t s = 0; s < c->s1; s++)
            for (int64_t d = 0; d < c->d; d++) {
                const double w = want[(i * c->s1 + s) * c->d + d];
                const double g = fia_f16_to_f32(o_at(&io->o, heads[i], s, d));
                const double err = fabs(g - w);
                const double tol = ATOL + RTOL * fabs(w);
                const double excess = isnan(err) ? INFINITY : err / tol;
                if (!isnan(err) && err > st->max_err) st->max_err = err;
                if (excess > case_excess || (bad == 0 && !(err <= tol))) {
                    case_excess = excess;
                    wh = heads[i];
                    ws = s;
                    wd = d;
                    wgot = g;
                    wwant = w;
                }
                if (!(err <= tol)) bad++;
            }
    if (case_excess > st->max_excess) st->max_excess = case_excess;
    st->heads_checked += count;
    st->heads_total += c->n;
    st->cases++;
    ok &= tu_check(bad == 0, "%s: %lld elements outside atol %g + rtol %g (%lld heads checked); "
                             "worst head %lld row %lld dim %lld: got %.6g want %.6g",
                   what, (long long)bad, ATOL, RTOL, (long long)count, (long long)wh,
                   (long long)ws, (long long)wd, wgot, wwant);
    free(heads);
    free(want);
    return ok;
}

/* Builds, runs and verifies one case. Returns 1 when it passed. */
static int run_case(fia_context *ctx, const sq_case *c, uint64_t seed, double budget,
                    const char *tag, sq_stats *st) {
    char what[256], desc[192];
    describe(c, desc, sizeof desc);
    snprintf(what, sizeof what, "%s [%s]", tag, desc);
    tu_rng r = tu_rng_make(seed);
    sq_io io;
    const double t0 = now_seconds();
    if (!tu_check(io_make(&io, c, &r) == 0, "%s: out of memory", what)) return 0;
    const double t1 = now_seconds();
    int ok = 0;
    const fia_status s = io_run(ctx, &io, (int)(seed & 1), what);
    const double t2 = now_seconds();
    if (s == FIA_STATUS_SUCCESS) ok = io_verify(&io, c, budget, &r, what, st);
    io_free(&io);
    g_t_make += t1 - t0;
    g_t_lib += t2 - t1;
    g_t_check += now_seconds() - t2;
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static const fia_isa k_isas[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};

/* A context with the given ISA and threads; NULL when the ISA is not available (printed once by
 * the caller) or creation failed (counted as a failure). */
static fia_context *open_context(fia_isa isa, int32_t threads, int *unavailable) {
    fia_context_options o = {threads, isa};
    fia_context *ctx = NULL;
    const fia_status s = fia_context_create(&o, &ctx);
    *unavailable = s == FIA_STATUS_UNSUPPORTED_ISA;
    if (*unavailable) return NULL;
    tu_check(s == FIA_STATUS_SUCCESS, "context isa %s, %d threads: %s (%s)", fia_isa_name(isa),
             (int)threads, fia_status_string(s), fia_last_error());
    return s == FIA_STATUS_SUCCESS ? ctx : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The model-shape sweep                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct sq_model {
    const char *name;
    int64_t heads, head_dim;
} sq_model;

static const sq_model k_models[] = {
    {"Llama-3.1-8B", 32, 128},       {"Qwen3-8B", 32, 128},
    {"Mistral-7B", 32, 128},         {"Gemma", 32, 128},
    {"Llama-3-70B", 64, 128},        {"Qwen3-32B", 64, 128},
    {"Qwen3-235B-A22B", 64, 128},    {"Llama-3.1-405B", 128, 128},
    {"DeepSeek-V3 hd192", 128, 192}, {"DeepSeek-V3 hd128", 128, 128},
    {"boundary hd64", 32, 64},       {"boundary hd256", 32, 256},
};
#define N_MODELS ((int)(sizeof k_models / sizeof k_models[0]))

static const int64_t k_qlens[] = {1, 2, 4, 8};
static const int64_t k_kvlens[] = {1,    2,    15,   16,   17,   64,   127,  128,  129,
                                   1023, 1024, 1025, 1500, 3000, 4096, 8192, 16384};
#define N_QLENS 4
#define N_KVLENS ((int)(sizeof k_kvlens / sizeof k_kvlens[0]))
/* Extra cases after the grid: larger magnitudes, then random kv lengths. */
#define N_MAGNITUDE 40
#define N_RANDOM_KV 24
#define N_SWEEP (N_MODELS * N_QLENS * N_KVLENS + N_MAGNITUDE + N_RANDOM_KV)

/* Sweep case i (deterministic in i and the seed). */
static sq_case sweep_case(int i, uint64_t seed) {
    sq_case c;
    memset(&c, 0, sizeof c);
    c.q_amp = c.k_amp = c.v_amp = 1.0;
    tu_rng r = tu_rng_make(seed ^ (0x5151ull + (uint64_t)i * 0x9e3779b97f4a7c15ull));
    const int grid = N_MODELS * N_QLENS * N_KVLENS;
    int m, qi;
    if (i < grid) {
        m = i / (N_QLENS * N_KVLENS);
        qi = (i / N_KVLENS) % N_QLENS;
        c.s2 = k_kvlens[i % N_KVLENS];
    } else {
        m = (int)tu_int(&r, 0, N_MODELS - 1);
        qi = (int)tu_int(&r, 0, N_QLENS - 1);
        if (i < grid + N_MAGNITUDE) {
            static const double q_amps[] = {4.0, 8.0}, k_amps[] = {1.0, 2.0, 4.0};
            c.s2 = TU_PICK(&r, k_kvlens);
            c.q_amp = TU_PICK(&r, q_amps);
            c.k_amp = TU_PICK(&r, k_amps);
            c.v_amp = tu_chance(&r, 0.5) ? 1.0 : 4.0;
        } else {
            c.s2 = tu_int(&r, 1, 16384);
        }
    }
    c.model = k_models[m].name;
    c.n = k_models[m].heads;
    c.d = k_models[m].head_dim;
    c.s1 = k_qlens[qi];
    if (c.n * c.s2 * c.d > DENSE_LIMIT)
        c.in_layout = L_OVERLAP;
    else
        c.in_layout = i % 4 == 1 ? L_PADDED : L_COMPACT;
    c.o_strided = i % 3 == 2;
    return c;
}

static uint64_t case_seed(uint64_t seed, int section, int i) {
    return tu_mix(seed + (uint64_t)section * 0x100000001b3ull + (uint64_t)i);
}

static void run_sweep(fia_context *ctx, uint64_t seed, int only) {
    const double t0 = now_seconds();
    g_t_make = g_t_lib = g_t_check = 0.0;
    sq_stats per_model[N_MODELS];
    int failed_per_model[N_MODELS];
    memset(per_model, 0, sizeof per_model);
    memset(failed_per_model, 0, sizeof failed_per_model);
    sq_stats all;
    memset(&all, 0, sizeof all);
    int failed = 0, skipped = 0;
    for (int i = 0; i < N_SWEEP; i++) {
        if (only >= 0 && i != only) continue;
        const sq_case c = sweep_case(i, seed);
        /* Sanitizer builds look for memory errors, which depend on shapes rather than on sheer
         * size: they run a quarter of the largest cases (which quarter rotates with the seed). */
        const double flops = 4.0 * (double)(c.n * c.s1 * c.d) * (double)c.s2;
        if (SQ_SANITIZED && only < 0 && flops > SANITIZED_BIG_FLOPS &&
            ((uint64_t)i + seed) % 4 != 0) {
            skipped++;
            continue;
        }
        int m = 0;
        while (m < N_MODELS && strcmp(k_models[m].name, c.model) != 0) m++;
        char tag[32];
        snprintf(tag, sizeof tag, "sweep #%d", i);
        sq_stats st;
        memset(&st, 0, sizeof st);
        const int ok = run_case(ctx, &c, case_seed(seed, 1, i), SWEEP_ORACLE_BUDGET, tag, &st);
        if (!ok) {
            failed++;
            failed_per_model[m]++;
        }
        sq_stats *pm = &per_model[m];
        pm->cases += st.cases;
        pm->heads_checked += st.heads_checked;
        pm->heads_total += st.heads_total;
        if (st.max_err > pm->max_err) pm->max_err = st.max_err;
        if (st.max_excess > pm->max_excess) pm->max_excess = st.max_excess;
        all.cases += st.cases;
        all.heads_checked += st.heads_checked;
        all.heads_total += st.heads_total;
        if (st.max_err > all.max_err) all.max_err = st.max_err;
        if (st.max_excess > all.max_excess) all.max_excess = st.max_excess;
    }
    printf("sweep: %lld cases (%d failed), oracle on %lld of %lld heads, max abs err %.3g, worst "
           "err/tol %.3f, %.1f s (inputs %.1f s, library %.1f s, checks %.1f s)\n",
           (long long)all.cases, failed, (long long)all.heads_checked,
           (long long)all.heads_total, all.max_err, all.max_excess, now_seconds() - t0, g_t_make,
           g_t_lib, g_t_check);
    if (skipped > 0)
        printf("  (sanitizer build: %d of the cases above %.0e flops skipped)\n", skipped,
               SANITIZED_BIG_FLOPS);
    for (int m = 0; m < N_MODELS; m++) {
        if (per_model[m].cases == 0) continue;
        printf("  %-20s N%-4lld D%-4lld %4lld cases, %2d failed, max abs err %.3g\n",
               k_models[m].name, (long long)k_models[m].heads, (long long)k_models[m].head_dim,
               (long long)per_model[m].cases, failed_per_model[m], per_model[m].max_err);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* Odd shapes, under every ISA                                                                */
/* ------------------------------------------------------------------------------------------ */

static void run_odd_shapes(fia_context *const *ctxs, const fia_isa *isas, int nctx,
                           uint64_t seed) {
    static const int64_t dims[] = {1, 2, 3, 17, 100, 257, 511, 512, 576};
    static const int64_t heads[] = {1, 3};
    static const int64_t qlens[] = {1, 2, 13};
    static const int64_t kv_short[] = {1, 2, 15, 17, 64};
    static const int64_t kv_long[] = {129, 1025, 1500, 3000};
    const double t0 = now_seconds();
    int n = 0, failed = 0;
    sq_stats st;
    memset(&st, 0, sizeof st);
    for (int x = 0; x < nctx; x++) {
        int idx = 0;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
            for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++)
                for (size_t qi = 0; qi < sizeof qlens / sizeof qlens[0]; qi++)
                    for (int long_kv = 0; long_kv < 2; long_kv++, idx++) {
                        tu_rng r = tu_rng_make(case_seed(seed, 2, idx));
                        sq_case c;
                        memset(&c, 0, sizeof c);
                        c.model = "odd";
                        c.n = heads[hi];
                        c.s1 = qlens[qi];
                        c.d = dims[di];
                        c.s2 = long_kv ? TU_PICK(&r, kv_long) : TU_PICK(&r, kv_short);
                        c.q_amp = c.k_amp = c.v_amp = 1.0;
                        if (idx % 5 == 3) c.q_amp = 4.0;
                        c.in_layout = idx % 2 ? L_PADDED : L_COMPACT;
                        c.o_strided = (idx / 2) % 2;
                        char tag[48];
                        snprintf(tag, sizeof tag, "odd #%d %s", idx, fia_isa_name(isas[x]));
                        if (!run_case(ctxs[x], &c, case_seed(seed, 3, idx), 1e300, tag, &st))
                            failed++;
                        n++;
                    }
        /* Model head counts with qLen 13, longer queries (the contract allows any qLen), a lone
         * head over a long KV (split across threads), heads packed back to back with a
         * 3-element head dim. */
        static const sq_case extra[] = {
            {"qLen 64", 4, 64, 1025, 128, 1, 1, 1, L_PADDED, 1},
            {"qLen 100", 3, 100, 129, 17, 1, 1, 1, L_COMPACT, 1},
            {"qLen 300", 2, 300, 64, 64, 4, 1, 1, L_PADDED, 0},
            {"one head, 64K KV", 1, 2, 65536, 64, 1, 1, 1, L_COMPACT, 1},
            {"Llama-3.1-8B q13", 32, 13, 1500, 128, 1, 1, 1, L_COMPACT, 1},
            {"Llama-3-70B q13", 64, 13, 129, 128, 1, 1, 1, L_PADDED, 0},
            {"one head, long KV", 1, 8, 16384, 128, 1, 1, 1, L_COMPACT, 1},
            {"one head, long KV", 1, 1, 16384, 257, 4, 1, 1, L_PADDED, 0},
            {"packed heads", 128, 13, 17, 3, 1, 1, 1, L_COMPACT, 0},
            {"packed heads", 7, 5, 300, 1, 1, 1, 1, L_PADDED, 1},
            {"headDim 1000", 3, 2, 300, 1000, 1, 1, 1, L_PADDED, 1},
            {"headDim 1024", 2, 13, 129, 1024, 1, 1, 1, L_COMPACT, 0},
        };
        for (size_t e = 0; e < sizeof extra / sizeof extra[0]; e++, idx++) {
            char tag[48];
            snprintf(tag, sizeof tag, "odd #%d %s", idx, fia_isa_name(isas[x]));
            if (!run_case(ctxs[x], &extra[e], case_seed(seed, 3, idx), 1e300, tag, &st))
                failed++;
            n++;
        }
    }
    printf("odd shapes: %d cases over %d ISAs (%d failed), every head checked, max abs err %.3g, "
           "%.1f s\n",
           n, nctx, failed, st.max_err, now_seconds() - t0);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* Determinism across thread counts                                                           */
/* ------------------------------------------------------------------------------------------ */

static void run_determinism(uint64_t seed) {
    static const sq_case shapes[] = {
        {"det", 1, 4, 16384, 128, 1, 1, 1, L_COMPACT, 0},
        {"det", 3, 13, 3000, 100, 4, 1, 1, L_PADDED, 1},
        {"det", 32, 8, 4096, 128, 1, 1, 1, L_COMPACT, 0},
        {"det", 2, 1, 5000, 257, 1, 1, 1, L_PADDED, 1},
        {"det", 5, 2, 1025, 17, 1, 1, 1, L_COMPACT, 1},
        {"det", 1, 13, 2, 17, 1, 1, 1, L_PADDED, 1},
        {"det", 2, 100, 513, 64, 1, 1, 1, L_COMPACT, 0},
    };
    static const int32_t threads[3] = {1, 2, 7};
    const double t0 = now_seconds();
    int n = 0;
    for (int x = 0; x < 3; x++) {
        fia_context *ctx[3] = {NULL, NULL, NULL};
        int unavailable = 0;
        for (int t = 0; t < 3; t++) ctx[t] = open_context(k_isas[x], threads[t], &unavailable);
        if (unavailable || !ctx[0] || !ctx[1] || !ctx[2]) {
            for (int t = 0; t < 3; t++) fia_context_destroy(ctx[t]);
            continue;
        }
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const sq_case *c = &shapes[si];
            char what[256], desc[192];
            describe(c, desc, sizeof desc);
            snprintf(what, sizeof what, "determinism %s [%s]", fia_isa_name(k_isas[x]), desc);
            tu_rng r = tu_rng_make(case_seed(seed, 4, (int)si));
            sq_io io;
            if (!tu_check(io_make(&io, c, &r) == 0, "%s: out of memory", what)) continue;
            uint16_t *first = malloc((size_t)io.o.n * sizeof *first);
            int same = tu_check(first != NULL, "%s: out of memory", what);
            for (int t = 0; t < 3 && same; t++) {
                fill_canary(&io.o);
                if (io_run(ctx[t], &io, t == 1, what) != FIA_STATUS_SUCCESS) {
                    same = 0;
                    break;
                }
                if (t == 0) {
                    memcpy(first, io.o.buf, (size_t)io.o.n * sizeof *first);
                    io_verify(&io, c, 1e8, &r, what, &(sq_stats){0, 0, 0, 0, 0});
                } else if (memcmp(first, io.o.buf, (size_t)io.o.n * sizeof *first) != 0) {
                    int64_t at = 0;
                    while (first[at] == io.o.buf[at]) at++;
                    tu_check(0, "%s: %d threads differ from 1 thread at buffer element %lld "
                                "(%04x vs %04x)",
                             what, (int)threads[t], (long long)at, io.o.buf[at], first[at]);
                    same = 0;
                }
            }
            if (same) tu_check(1, "%s", what); /* counts the comparison */
            n++;
            free(first);
            io_free(&io);
        }
        for (int t = 0; t < 3; t++) fia_context_destroy(ctx[t]);
    }
    printf("determinism: %d shapes x ISAs, threads 1/2/7 bitwise compared, %.1f s\n", n,
           now_seconds() - t0);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Nonzero when msg contains name as a whole word ("K" in "K dim 2 ..." but not in "KV"). */
static int names(const char *msg, const char *name) {
    const size_t len = strlen(name);
    for (const char *p = strstr(msg, name); p != NULL; p = strstr(p + 1, name)) {
        const int before = p == msg || !(p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z') ||
                                         (p[-1] >= 'A' && p[-1] <= 'Z') ||
                                         (p[-1] >= '0' && p[-1] <= '9'));
        const char a = p[len];
        const int after = !(a == '_' || (a >= 'a' && a <= 'z') || (a >= 'A' && a <= 'Z') ||
                            (a >= '0' && a <= '9'));
        if (before && after) return 1;
    }
    return 0;
}

/* The fixture of the error checks: valid Q [2, 3, 8], K/V [2, 5, 8], O [2, 3, 8]; O's buffer
 * holds the canary. Buffers are large enough for a float32 view of the same shapes. */
typedef struct err_fixture {
    fia_context *ctx;
    sq_buf q, k, v, o;
    void *big; /* room for any of the bad views below */
} err_fixture;

static int g_error_calls;

static int o_untouched(const err_fixture *f) {
    for (int64_t i = 0; i < f->o.n; i++)
        if (f->o.buf[i] != F16_CANARY) return 0;
    return 1;
}

/* Calls get_workspace_size with the given tensors; expects `want` with a message that names
 * `tensor` (NULL: any non-empty message), and nothing written. */
static void expect_error(err_fixture *f, const char *what, fia_context *ctx, const fia_tensor *q,
                         const fia_tensor *k, const fia_tensor *v, fia_tensor *o,
                         uint64_t *ws_ptr, fia_plan **exec_ptr, fia_status want,
                         const char *tensor) {
    uint64_t ws = 0xabcdef12345ull;
    fia_plan *sentinel = (fia_plan *)(uintptr_t)0x1234560;
    fia_plan *exec = sentinel;
    fill_canary(&f->o);
    g_error_calls++;
    const fia_status s = fia_smallq_flash_attention_get_workspace_size(
        ctx, q, k, v, o, ws_ptr == (uint64_t *)1 ? &ws : ws_ptr,
        exec_ptr == (fia_plan **)1 ? &exec : exec_ptr);
    const char *msg = fia_last_error();
    char copy[512];
    snprintf(copy, sizeof copy, "%s", msg != NULL ? msg : "(null)");
    const int named = msg != NULL && msg[0] != '\0' && (tensor == NULL || names(msg, tensor));
    tu_check(s == want && named && o_untouched(f) && ws == 0xabcdef12345ull && exec == sentinel,
             "error %s: got %s '%s', want %s naming %s; O %s, outputs %s", what,
             fia_status_string(s), copy, fia_status_string(want), tensor ? tensor : "anything",
             o_untouched(f) ? "untouched" : "WRITTEN",
             ws == 0xabcdef12345ull && exec == sentinel ? "untouched" : "WRITTEN");
    if (s == FIA_STATUS_SUCCESS && exec != sentinel) fia_plan_destroy(exec);
}

#define YES ((uint64_t *)1)
#define YESP ((fia_plan **)1)

static void run_errors(fia_context *ctx, uint64_t seed) {
    err_fixture f;
    memset(&f, 0, sizeof f);
    f.ctx = ctx;
    tu_rng r = tu_rng_make(case_seed(seed, 5, 0));
    const int64_t N = 2, S1 = 3, S2 = 5, D = 8;
    if (!tu_check(make_input(&f.q, N, S1, D, L_COMPACT, 1.0, &r) == 0 &&
                      make_input(&f.k, N, S2, D, L_COMPACT, 1.0, &r) == 0 &&
                      make_input(&f.v, N, S2, D, L_COMPACT, 1.0, &r) == 0 &&
                      make_output(&f.o, N, S1, D, 0, &r) == 0 &&
                      (f.big = calloc(1, 1 << 18)) != NULL,
                  "errors: out of memory"))
        return;
    const fia_tensor *tq = &f.q.t, *tk = &f.k.t, *tv = &f.v.t;
    fia_tensor *to = &f.o.t;

    /* NULL arguments. */
    expect_error(&f, "NULL context", NULL, tq, tk, tv, to, YES, YESP, FIA_STATUS_INVALID_ARGUMENT,
                 NULL);
    expect_error(&f, "NULL Q", ctx, NULL, tk, tv, to, YES, YESP, FIA_STATUS_INVALID_ARGUMENT, "Q");
    expect_error(&f, "NULL K", ctx, tq, NULL, tv, to, YES, YESP, FIA_STATUS_INVALID_ARGUMENT, "K");
    expect_error(&f, "NULL V", ctx, tq, tk, NULL, to, YES, YESP, FIA_STATUS_INVALID_ARGUMENT, "V");
    expect_error(&f, "NULL O", ctx, tq, tk, tv, NULL, YES, YESP, FIA_STATUS_INVALID_ARGUMENT, "O");
    expect_error(&f, "NULL workspace_size", ctx, tq, tk, tv, to, NULL, YESP,
                 FIA_STATUS_INVALID_ARGUMENT, NULL);
    expect_error(&f, "NULL executor", ctx, tq, tk, tv, to, YES, NULL,
                 FIA_STATUS_INVALID_ARGUMENT, NULL);

    /* Per tensor: dtype, rank, zero dims, NULL data, strides. */
    static const char *const tname[4] = {"Q", "K", "V", "O"};
    for (int ti = 0; ti < 4; ti++) {
        const fia_tensor *orig = ti == 0 ? tq : ti == 1 ? tk : ti == 2 ? tv : to;
        char what[96];
        fia_tensor bad;
#define CALL_WITH_BAD(status)                                                                   \
    expect_error(&f, what, ctx, ti == 0 ? &bad : tq, ti == 1 ? &bad : tk, ti == 2 ? &bad : tv,  \
                 ti == 3 ? &bad : to, YES, YESP, (status), tname[ti])

        static const fia_dtype dtypes[] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT8,
                                           FIA_DTYPE_INT32};
        for (size_t di = 0; di < sizeof dtypes / sizeof dtypes[0]; di++) {
            bad = *orig;
            bad.dtype = dtypes[di];
            bad.data = f.big;
            snprintf(what, sizeof what, "%s dtype %s", tname[ti], fia_dtype_name(dtypes[di]));
            CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        }
        /* 2-D [N*S, D] and 4-D [1, N, S, D], 1-D, 9 dims. */
        bad = *orig;
        bad.ndim = 2;
        bad.shape[0] = orig->shape[0] * orig->shape[1];
        bad.shape[1] = orig->shape[2];
        bad.strides[0] = orig->strides[1];
        bad.strides[1] = 1;
        snprintf(what, sizeof what, "%s 2-D", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        bad = *orig;
        bad.ndim = 4;
        for (int i = 3; i > 0; i--) {
            bad.shape[i] = orig->shape[i - 1];
            bad.strides[i] = orig->strides[i - 1];
        }
        bad.shape[0] = 1;
        bad.strides[0] = orig->shape[0] * orig->strides[0];
        snprintf(what, sizeof what, "%s 4-D", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        bad = *orig;
        bad.ndim = 1;
        bad.shape[0] = orig->shape[2];
        bad.strides[0] = 1;
        snprintf(what, sizeof what, "%s 1-D", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        bad = *orig;
        bad.ndim = FIA_MAX_DIMS + 1;
        snprintf(what, sizeof what, "%s ndim %d", tname[ti], FIA_MAX_DIMS + 1);
        CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        for (int dim = 0; dim < 3; dim++) {
            bad = *orig;
            bad.shape[dim] = 0;
            snprintf(what, sizeof what, "%s dim %d is 0", tname[ti], dim);
            CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
            bad = *orig;
            bad.shape[dim] = -1;
            snprintf(what, sizeof what, "%s dim %d is -1", tname[ti], dim);
            CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        }
        bad = *orig;
        bad.data = NULL;
        snprintf(what, sizeof what, "%s data NULL", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_INVALID_ARGUMENT);
        bad = *orig;
        bad.strides[2] = 2;
        bad.data = f.big;
        snprintf(what, sizeof what, "%s innermost stride 2", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_UNSUPPORTED);
        bad = *orig;
        bad.strides[1] = -orig->strides[1];
        bad.data = (uint16_t *)f.big + 4096;
        snprintf(what, sizeof what, "%s negative stride", tname[ti]);
        CALL_WITH_BAD(FIA_STATUS_UNSUPPORTED);
#undef CALL_WITH_BAD
    }

    /* Mismatches with Q (and V with K). */
    struct {
        const char *what;
        int tensor; /* 1 K, 2 V, 3 O */
        int dim;
        int64_t value;
    } mismatch[] = {
        {"K numHeads 3 (Q 2)", 1, 0, 3},  {"K numHeads 1 (Q 2)", 1, 0, 1},
        {"K headDim 7 (Q 8)", 1, 2, 7},   {"K headDim 16 (Q 8)", 1, 2, 16},
        {"V numHeads 3 (Q 2)", 2, 0, 3},  {"V headDim 9 (Q 8)", 2, 2, 9},
        {"V kvLen 4 (K 5)", 2, 1, 4},     {"V kvLen 6 (K 5)", 2, 1, 6},
        {"O numHeads 1 (Q 2)", 3, 0, 1},  {"O qLen 4 (Q 3)", 3, 1, 4},
        {"O qLen 1 (Q 3)", 3, 1, 1},      {"O headDim 7 (Q 8)", 3, 2, 7},
    };
    for (size_t i = 0; i < sizeof mismatch / sizeof mismatch[0]; i++) {
        const int ti = mismatch[i].tensor;
        const fia_tensor *orig = ti == 1 ? tk : ti == 2 ? tv : to;
        fia_tensor bad = *orig;
        bad.shape[mismatch[i].dim] = mismatch[i].value;
        bad.data = f.big; /* large enough for any of these views */
        bad.strides[1] = bad.shape[2];
        bad.strides[0] = bad.shape[1] * bad.shape[2];
        expect_error(&f, mismatch[i].what, ctx, tq, ti == 1 ? &bad : tk, ti == 2 ? &bad : tv,
                     ti == 3 ? &bad : to, YES, YESP, FIA_STATUS_INVALID_ARGUMENT,
                     ti == 1 ? "K" : ti == 2 ? "V" : "O");
    }

    /* headDim 1025 everywhere: UNSUPPORTED (the contract's "any headDim" ends at 1024 here). */
    {
        fia_tensor q = *tq, k = *tk, v = *tv, o = *to;
        fia_tensor *all[4] = {&q, &k, &v, &o};
        for (int i = 0; i < 4; i++) {
            all[i]->shape[2] = 1025;
            all[i]->strides[1] = 1025;
            all[i]->strides[0] = all[i]->shape[1] * 1025;
            all[i]->data = f.big;
        }
        expect_error(&f, "headDim 1025", ctx, &q, &k, &v, &o, YES, YESP, FIA_STATUS_UNSUPPORTED,
                     "Q");
    }
    printf("errors: %d bad calls checked\n", g_error_calls);
    fflush(stdout);

    /* The executor: re-runnable (same bits), re-run after inputs change in place (oracle), a too
     * small workspace, a NULL executor. */
    {
        sq_case c = {"executor", 3, 4, 777, 40, 1, 1, 1, L_PADDED, 1};
        tu_rng rr = tu_rng_make(case_seed(seed, 6, 0));
        sq_io io;
        if (tu_check(io_make(&io, &c, &rr) == 0, "executor: out of memory")) {
            uint64_t ws = 0;
            fia_plan *exec = NULL;
            fia_status s = fia_smallq_flash_attention_get_workspace_size(
                ctx, &io.q.t, &io.k.t, &io.v.t, &io.o.t, &ws, &exec);
            if (tu_check(s == FIA_STATUS_SUCCESS && exec != NULL && ws > 0,
                         "executor: plan %s (%s), workspace %llu", fia_status_string(s),
                         fia_last_error(), (unsigned long long)ws)) {
                unsigned char *mem = malloc((size_t)ws);
                uint16_t *first = malloc((size_t)io.o.n * sizeof *first);
                if (tu_check(mem != NULL && first != NULL, "executor: out of memory")) {
                    /* Too small: nothing written. */
                    s = fia_smallq_flash_attention(mem, ws - 1, exec);
                    int64_t bad_at;
                    tu_check(s == FIA_STATUS_WORKSPACE_TOO_SMALL &&
                                 canaries_broken(&io.o, &bad_at) == 0 &&
                                 o_at(&io.o, 0, 0, 0) == F16_CANARY,
                             "executor: workspace %llu of %llu bytes gives %s, want "
                             "FIA_STATUS_WORKSPACE_TOO_SMALL and O untouched",
                             (unsigned long long)(ws - 1), (unsigned long long)ws,
                             fia_status_string(s));
                    s = fia_smallq_flash_attention(NULL, 0, exec);
                    tu_check(s == FIA_STATUS_WORKSPACE_TOO_SMALL,
                             "executor: NULL workspace of 0 bytes gives %s",
                             fia_status_string(s));
                    s = fia_smallq_flash_attention(mem, ws, NULL);
                    tu_check(s == FIA_STATUS_INVALID_ARGUMENT && fia_last_error()[0] != '\0',
                             "executor: NULL executor gives %s '%s'", fia_status_string(s),
                             fia_last_error());
                    /* Run, run again: same bits. */
                    s = fia_smallq_flash_attention(mem, ws, exec);
                    tu_check(s == FIA_STATUS_SUCCESS, "executor: run 1: %s",
                             fia_status_string(s));
                    memcpy(first, io.o.buf, (size_t)io.o.n * sizeof *first);
                    fill_canary(&io.o);
                    s = fia_smallq_flash_attention(mem, ws, exec);
                    tu_check(s == FIA_STATUS_SUCCESS &&
                                 memcmp(first, io.o.buf, (size_t)io.o.n * sizeof *first) == 0,
                             "executor: run 2 (%s) differs from run 1", fia_status_string(s));
                    io_verify(&io, &c, 1e300, &rr, "executor run 2", &(sq_stats){0, 0, 0, 0, 0});
                    /* New contents in place (larger magnitudes), run 3: the oracle on the new
                     * data. */
                    sq_buf q2, k2;
                    memset(&q2, 0, sizeof q2);
                    memset(&k2, 0, sizeof k2);
                    c.q_amp = 4.0;
                    c.k_amp = 2.0;
                    if (tu_check(make_input(&q2, c.n, c.s1, c.d, L_PADDED, c.q_amp, &rr) == 0 &&
                                     make_input(&k2, c.n, c.s2, c.d, L_PADDED, c.k_amp, &rr) == 0,
                                 "executor: out of memory")) {
                        for (int64_t h = 0; h < c.n; h++) {
                            for (int64_t s1 = 0; s1 < c.s1; s1++)
                                memcpy(io.q.buf + elem_offset(&io.q.t, h, s1, 0),
                                       q2.buf + elem_offset(&q2.t, h, s1, 0), (size_t)c.d * 2);
                            for (int64_t s2 = 0; s2 < c.s2; s2++)
                                memcpy(io.k.buf + elem_offset(&io.k.t, h, s2, 0),
                                       k2.buf + elem_offset(&k2.t, h, s2, 0), (size_t)c.d * 2);
                        }
                        fill_canary(&io.o);
                        s = fia_smallq_flash_attention(mem, ws, exec);
                        if (tu_check(s == FIA_STATUS_SUCCESS, "executor: run 3: %s",
                                     fia_status_string(s)))
                            io_verify(&io, &c, 1e300, &rr, "executor run 3 (new inputs)",
                                      &(sq_stats){0, 0, 0, 0, 0});
                    }
                    sq_buf_free(&q2);
                    sq_buf_free(&k2);
                }
                free(mem);
                free(first);
                fia_plan_destroy(exec);
            }
            io_free(&io);
        }
    }
    sq_buf_free(&f.q);
    sq_buf_free(&f.k);
    sq_buf_free(&f.v);
    sq_buf_free(&f.o);
    free(f.big);
}

/* ------------------------------------------------------------------------------------------ */
/* A subset of the sweep under every ISA                                                      */
/* ------------------------------------------------------------------------------------------ */

static void run_isa_subset(fia_context *const *ctxs, const fia_isa *isas, int nctx,
                           uint64_t seed) {
    for (int x = 0; x < nctx; x++) {
        const double t0 = now_seconds();
        /* The scalar kernels are the slow ones: they get the smaller cases. */
        const double max_flops = isas[x] == FIA_ISA_SCALAR ? 1.0e8 : 1.0e9;
        int n = 0, failed = 0;
        sq_stats st;
        memset(&st, 0, sizeof st);
        for (int i = 2 * x; i < N_MODELS * N_QLENS * N_KVLENS; i += 7) {
            const sq_case c = sweep_case(i, seed);
            const double flops = 4.0 * (double)(c.n * c.s1 * c.d) * (double)c.s2;
            if (flops > max_flops) continue;
            char tag[48];
            snprintf(tag, sizeof tag, "isa %s sweep #%d", fia_isa_name(isas[x]), i);
            if (!run_case(ctxs[x], &c, case_seed(seed, 7, i), ISA_ORACLE_BUDGET, tag, &st))
                failed++;
            n++;
        }
        printf("isa %s: %d sweep cases (%d failed), max abs err %.3g, %.1f s\n",
               fia_isa_name(isas[x]), n, failed, st.max_err, now_seconds() - t0);
        fflush(stdout);
    }
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20250301, "test_smallq");
    const long only = tu_env_long("FIA_TEST_ONLY", -1);
    const double t0 = now_seconds();

    fia_context *ctx = NULL;
    fia_status s = fia_context_create(NULL, &ctx);
    if (!tu_check(s == FIA_STATUS_SUCCESS, "default context: %s (%s)", fia_status_string(s),
                  fia_last_error()))
        return tu_summary();
    printf("default context: %s, %d threads%s\n", fia_isa_name(fia_context_isa(ctx)),
           (int)fia_context_num_threads(ctx), SQ_SANITIZED ? " (sanitizer build)" : "");
    fflush(stdout);

    run_sweep(ctx, seed, (int)only);
    if (only < 0) {
        fia_context *ctxs[3];
        fia_isa isas[3];
        int nctx = 0;
        for (int i = 0; i < 3; i++) {
            int unavailable = 0;
            fia_context *c = open_context(k_isas[i], 2, &unavailable);
            if (unavailable) printf("isa %s: not available on this CPU, skipped\n",
                                    fia_isa_name(k_isas[i]));
            if (c != NULL) {
                ctxs[nctx] = c;
                isas[nctx++] = k_isas[i];
            }
        }
        run_odd_shapes(ctxs, isas, nctx, seed);
        run_determinism(seed);
        run_errors(ctx, seed);
        run_isa_subset(ctxs, isas, nctx, seed);
        for (int i = 0; i < nctx; i++) fia_context_destroy(ctxs[i]);
    }
    fia_context_destroy(ctx);
    printf("total %.1f s\n", now_seconds() - t0);
    return tu_summary();
}
