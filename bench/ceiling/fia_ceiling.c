/*
 * fia_ceiling.c - what the machine allows for a dense decode call of fused_infer_attention_score
 * (fp16 K/V, one query token, split into chunks of 2048 keys like the library): the same bytes,
 * layout and thread split as the library's call, with
 *   read      every K and V row of each work item read in the library's order (per step of 32
 *             keys, per KV head of the item: its 32 K rows, then its 32 V rows), nothing
 *             computed, no software prefetch: what the caches and prefetchers deliver;
 *   read+fma  the same walk with the decode kernels' arithmetic per row (each 16 values
 *             converted from fp16 once and fed to G FMAs, G = query heads per KV head, for K
 *             and for V) and their prefetch (the next step's rows of the same head into L2);
 *   fma       the same arithmetic on one step's rows kept in L1/L2: the compute time alone;
 *   fia       the library's call itself (public API);
 *   probe     fia bench's read probe (bench/roofline.c) with the same threads.
 * Every repetition runs all five, alternated, on rotating copies of K and V (2x the LLC, like
 * fia bench); each time is compared with the probe of its own repetition. A diagnostic, not a
 * test: it asserts nothing. x86-64 with AVX-512F and F16C only.
 *
 * usage: fia_ceiling [--kv S] [--heads N1/N2] [--layout bsnd|bnsd] [--hb H] [--threads T]
 *                    [--reps R]
 *   --hb: KV heads per work item (default: all N2 for BSND, the library's choice for GQA 32/8
 *   at 4K..64K keys on two threads (MHA 32/32 takes 8: pass --hb 8); 1 for BNSD). FIA_VERBOSE=1
 *   prints the library's plan (items, split groups).
 * Read the mins on a quiet machine: "read" over "probe" says whether the walk itself loses
 * bandwidth, "fma (hot)" against "read" whether the arithmetic can hide behind the reads, and
 * "read+fma" what a core that does both gets; "fia" is the call's own figure. The model's
 * arithmetic is the kernels' FMAs and conversions only (no dot-product reduction, softmax or
 * row pointers): its "fma (hot)" is a lower bound of the call's compute time.
 */
#define _GNU_SOURCE

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fia.h"
#include "roofline.h"

#define FT __attribute__((target("avx512f,f16c,fma")))

enum { D = 128, STEP = 32, CHUNK = 2048, MAXG = 8, MODES = 5 };
enum { M_READ, M_FMA_READ, M_FMA_HOT, M_FIA, M_PROBE };
static const char *mode_name[MODES] = {"read", "read+fma", "fma (hot)", "fia", "probe"};

typedef struct ctx {
    int64_t S, N1, N2, G, hb, bnsd, nitems, copies;
    uint16_t **k, **v;
    float q[MAXG * D] __attribute__((aligned(64)));
    int threads;
    /* the current run */
    int mode, copy;
    atomic_long next;
    atomic_int gen, done;
    float sink[64][16];
} ctx;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Row of token t, kv head h: BSND [S, N2, D], BNSD [N2, S, D]. */
static inline const uint16_t *row(const ctx *c, const uint16_t *base, int64_t t, int64_t h) {
    return base + (c->bnsd ? h * c->S + t : t * c->N2 + h) * D;
}

FT static inline __m512i read_row(const uint16_t *r, __m512i a) {
    for (int i = 0; i < D; i += 32)
        a = _mm512_or_si512(a, _mm512_loadu_si512((const void *)(r + i)));
    return a;
}

/* The row's D values converted once per 16 and fed to G FMAs (two accumulator sets, even and
 * odd 16-blocks, so that the chains do not bind); GC: rows as a constant (1, 2, 4, 8), so
 * that the accumulators stay in registers. */
#define FA static inline __attribute__((always_inline, target("avx512f,f16c,fma")))
FA void fma_row_g(const int GC, const uint16_t *r, const float *q, __m512 *acc) {
#pragma GCC unroll 4
    for (int c = 0; c < D; c += 32) {
        const __m512 k0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + c)));
        const __m512 k1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(r + c + 16)));
#pragma GCC unroll 8
        for (int g = 0; g < GC; g++) {
            acc[g] = _mm512_fmadd_ps(_mm512_load_ps(q + g * D + c), k0, acc[g]);
            acc[MAXG + g] = _mm512_fmadd_ps(_mm512_load_ps(q + g * D + c + 16), k1, acc[MAXG + g]);
        }
    }
}
static inline void prefetch_row(const uint16_t *r) {
    for (int i = 0; i < D * 2; i += 64) _mm_prefetch((const char *)r + i, _MM_HINT_T1);
}

/* Item i: chunk i / blocks, kv heads [(i % blocks) hb, + hb) (the library's order for items of
 * equal cost: by first key, then by head). */
FA void run_item_g(const int GC, ctx *c, int64_t i, int tid) {
    const int64_t blocks = (c->N2 + c->hb - 1) / c->hb, ch = i / blocks;
    const int64_t h0 = (i % blocks) * c->hb, h1 = h0 + c->hb < c->N2 ? h0 + c->hb : c->N2;
    const int64_t t1 = (ch + 1) * CHUNK < c->S ? (ch + 1) * CHUNK : c->S;
    const uint16_t *kb = c->k[c->copy], *vb = c->v[c->copy];
    __m512i a = _mm512_setzero_si512();
    __m512 acc[2 * MAXG];
#pragma GCC unroll 16
    for (int j = 0; j < 2 * MAXG; j++) acc[j] = _mm512_setzero_ps();
    const int hot = c->mode == M_FMA_HOT;
    for (int64_t t0 = ch * CHUNK; t0 < t1; t0 += STEP) {
        const int64_t n = t1 - t0 < STEP ? t1 - t0 : STEP;
        const int64_t nn = t0 + n >= t1 ? 0 : t1 - (t0 + n) < STEP ? t1 - (t0 + n) : STEP;
        for (int64_t h = h0; h < h1; h++)
            for (int w = 0; w < 2; w++) {
                const uint16_t *base = w ? vb : kb;
                for (int64_t j = 0; j < n; j++) {
                    const int64_t t = hot ? ch * CHUNK + j : t0 + j;
                    const uint16_t *r = row(c, base, t, h);
                    if (c->mode == M_READ) {
                        a = read_row(r, a);
                        continue;
                    }
                    if (!hot && j < nn) prefetch_row(row(c, base, t0 + n + j, h));
                    for (int64_t g0 = 0; g0 < c->G; g0 += GC) fma_row_g(GC, r, c->q, acc);
                }
            }
    }
#pragma GCC unroll 16
    for (int j = 1; j < 2 * MAXG; j++) acc[0] = _mm512_add_ps(acc[0], acc[j]);
    acc[0] = _mm512_add_ps(acc[0], _mm512_castsi512_ps(a));
    _mm512_storeu_ps(c->sink[tid % 64], acc[0]);
}

/* G as a constant where it is 1, 2, 4 or 8 (larger multiples of 8: blocks of 8; others: 1). */
FT static void run_item(ctx *c, int64_t i, int tid) {
    if (c->G == 4) run_item_g(4, c, i, tid);
    else if (c->G % 8 == 0) run_item_g(8, c, i, tid);
    else if (c->G == 2) run_item_g(2, c, i, tid);
    else run_item_g(1, c, i, tid);
}

static void team_work(ctx *c, int tid) {
    for (;;) {
        const long i = atomic_fetch_add(&c->next, 1);
        if (i >= c->nitems) break;
        run_item(c, i, tid);
    }
}

typedef struct worker_arg {
    ctx *c;
    int tid;
} worker_arg;

/* Workers spin a while on the generation counter, then sleep on the condition; generation -1
 * ends. A run is preceded by an empty one (as fia bench wakes the library's pool before each
 * timed run), so that the timed one finds the workers spinning. */
static pthread_mutex_t team_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t team_wake = PTHREAD_COND_INITIALIZER;

static void *worker(void *p) {
    worker_arg *w = p;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->tid, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    int seen = 0;
    for (;;) {
        int g, spins = 0;
        while ((g = atomic_load(&w->c->gen)) == seen) {
            if (++spins < 200000) {
                _mm_pause();
                continue;
            }
            pthread_mutex_lock(&team_lock);
            while ((g = atomic_load(&w->c->gen)) == seen) pthread_cond_wait(&team_wake, &team_lock);
            pthread_mutex_unlock(&team_lock);
        }
        if (g < 0) break;
        seen = g;
        team_work(w->c, w->tid);
        atomic_fetch_add(&w->c->done, 1);
    }
    return NULL;
}

static void team_publish(ctx *c, int value) {
    pthread_mutex_lock(&team_lock);
    if (value) atomic_store(&c->gen, value);
    else atomic_fetch_add(&c->gen, 1);
    pthread_cond_broadcast(&team_wake);
    pthread_mutex_unlock(&team_lock);
}

static double team_run1(ctx *c, int mode, int copy, int64_t items) {
    const int64_t all = c->nitems;
    c->mode = mode;
    c->copy = copy;
    c->nitems = items;
    atomic_store(&c->next, 0);
    atomic_store(&c->done, 0);
    const double t0 = now();
    team_publish(c, 0);
    team_work(c, 0);
    while (atomic_load(&c->done) < c->threads - 1) _mm_pause();
    const double s = now() - t0;
    c->nitems = all;
    return s;
}

/* The caller takes CPU 0 for the team's runs (worker i is pinned to CPU i), and its own mask
 * back afterwards (the probe's threads and the library's pool inherit or steer by it). */
static double team_run(ctx *c, int mode, int copy) {
    cpu_set_t old, one;
    const int have = sched_getaffinity(0, sizeof old, &old) == 0;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    if (have) sched_setaffinity(0, sizeof one, &one);
    team_run1(c, mode, copy, 0); /* wake */
    const double s = team_run1(c, mode, copy, c->nitems);
    if (have) sched_setaffinity(0, sizeof old, &old);
    return s;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int usage(void) {
    fprintf(stderr, "usage: fia_ceiling [--kv S] [--heads N1/N2] [--layout bsnd|bnsd] [--hb H] "
                    "[--threads T] [--reps R]\n");
    return 2;
}

int main(int argc, char **argv) {
    static ctx c;
    c.S = 4096;
    c.N1 = 32;
    c.N2 = 8;
    c.hb = 0;
    int reps = 20;
    c.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) return usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--kv")) c.S = atoll(v);
        else if (!strcmp(a, "--heads")) {
            if (sscanf(v, "%ld/%ld", &c.N1, &c.N2) != 2) return usage();
        } else if (!strcmp(a, "--layout")) c.bnsd = !strcmp(v, "bnsd");
        else if (!strcmp(a, "--hb")) c.hb = atoll(v);
        else if (!strcmp(a, "--threads")) c.threads = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else return usage();
    }
    if (c.S < 1 || c.N2 < 1 || c.N1 % c.N2 || c.threads < 1 || c.threads > 64 || reps < 1)
        return usage();
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        fprintf(stderr, "fia_ceiling: needs AVX-512F\n");
        return 1;
    }
    c.G = c.N1 / c.N2;
    if (c.hb < 1 || c.hb > c.N2) c.hb = c.bnsd ? 1 : c.N2;
    c.nitems = (c.S + CHUNK - 1) / CHUNK * ((c.N2 + c.hb - 1) / c.hb);
    for (int i = 0; i < MAXG * D; i++) c.q[i] = 0.01f * (float)(i % 7);

    const size_t elems = (size_t)(c.S * c.N2 * D), bytes = 2 * elems * sizeof(uint16_t);
    const size_t llc = roofline_llc_bytes();
    c.copies = (int64_t)floor(2.0 * (double)llc / (double)bytes) + 1;
    if (c.copies > 64) c.copies = 64;
    c.k = calloc((size_t)c.copies, sizeof *c.k);
    c.v = calloc((size_t)c.copies, sizeof *c.v);
    fia_context_options opts = {c.threads, FIA_ISA_AUTO};
    fia_context *fctx = NULL;
    if (!c.k || !c.v || fia_context_create(&opts, &fctx) != FIA_STATUS_SUCCESS) {
        fprintf(stderr, "fia_ceiling: setup failed\n");
        return 1;
    }
    fia_plan **plans = calloc((size_t)c.copies, sizeof *plans);
    uint16_t *q = roofline_alloc((size_t)c.N1 * D * 2), *o = roofline_alloc((size_t)c.N1 * D * 2);
    size_t ws_bytes = 0;
    for (int i = 0; i < c.N1 * D; i++) q[i] = (uint16_t)(0x3000 + (i * 37) % 1024);
    for (int64_t cp = 0; cp < c.copies; cp++) {
        c.k[cp] = roofline_alloc(elems * 2);
        c.v[cp] = roofline_alloc(elems * 2);
        if (!c.k[cp] || !c.v[cp]) {
            fprintf(stderr, "fia_ceiling: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < elems; i++) {
            c.k[cp][i] = (uint16_t)(0x3000 + (i * 2654435761u >> 7) % 1024);
            c.v[cp][i] = (uint16_t)(0xb000 + (i * 40503u >> 3) % 1024);
        }
        fia_tensor tq, tk, tv, to;
        const int64_t qs[4] = {1, 1, c.N1, D}, qb[4] = {1, c.N1, 1, D};
        const int64_t ks[4] = {1, c.S, c.N2, D}, kb[4] = {1, c.N2, c.S, D};
        fia_tensor_init(&tq, q, FIA_DTYPE_FLOAT16, 4, c.bnsd ? qb : qs, NULL);
        fia_tensor_init(&to, o, FIA_DTYPE_FLOAT16, 4, c.bnsd ? qb : qs, NULL);
        fia_tensor_init(&tk, c.k[cp], FIA_DTYPE_FLOAT16, 4, c.bnsd ? kb : ks, NULL);
        fia_tensor_init(&tv, c.v[cp], FIA_DTYPE_FLOAT16, 4, c.bnsd ? kb : ks, NULL);
        fia_fused_infer_attention_score_tensors t;
        memset(&t, 0, sizeof t);
        t.query = &tq;
        t.key = &tk;
        t.value = &tv;
        t.attention_out = &to;
        fia_fused_infer_attention_score_params prm;
        fia_fused_infer_attention_score_params_init(&prm);
        prm.num_heads = c.N1;
        prm.num_key_value_heads = c.N2;
        prm.scale = 1.0 / sqrt((double)D);
        prm.input_layout = c.bnsd ? FIA_LAYOUT_BNSD : FIA_LAYOUT_BSND;
        size_t w = 0;
        if (fia_fused_infer_attention_score_plan(fctx, &t, &prm, &plans[cp], &w) !=
            FIA_STATUS_SUCCESS) {
            fprintf(stderr, "fia_ceiling: plan: %s\n", fia_last_error());
            return 1;
        }
        if (w > ws_bytes) ws_bytes = w;
    }
    void *ws = roofline_alloc(ws_bytes ? ws_bytes : 64);
    /* fia bench's waker: a tiny SmallQ call before each timed call wakes the pool's workers */
    static uint16_t wq[32], wk[512], wv[512], wo[32];
    fia_tensor q3, k3, v3, o3;
    const int64_t sq3[3] = {2, 1, 16}, sk3[3] = {2, 16, 16};
    fia_tensor_init(&q3, wq, FIA_DTYPE_FLOAT16, 3, sq3, NULL);
    fia_tensor_init(&o3, wo, FIA_DTYPE_FLOAT16, 3, sq3, NULL);
    fia_tensor_init(&k3, wk, FIA_DTYPE_FLOAT16, 3, sk3, NULL);
    fia_tensor_init(&v3, wv, FIA_DTYPE_FLOAT16, 3, sk3, NULL);
    uint64_t waker_ws = 0;
    fia_plan *waker = NULL;
    if (fia_smallq_flash_attention_get_workspace_size(fctx, &q3, &k3, &v3, &o3, &waker_ws,
                                                      &waker) != FIA_STATUS_SUCCESS)
        waker = NULL;
    void *waker_mem = waker ? malloc(waker_ws + 64) : NULL;

    roofline rl;
    memset(&rl, 0, sizeof rl);
    rl.threads = c.threads;
    rl.llc_bytes = llc;
    rl.buffer_bytes = 8 * llc < ((size_t)512 << 20) ? (size_t)512 << 20
                      : 8 * llc > ((size_t)1024 << 20) ? (size_t)1024 << 20 : 8 * llc;
    char err[256];
    roofline_probe *probe = roofline_probe_create(&rl, err, sizeof err);
    if (!probe) {
        fprintf(stderr, "fia_ceiling: %s\n", err);
        return 1;
    }

    pthread_t *ids = calloc((size_t)c.threads, sizeof *ids);
    worker_arg *wa = calloc((size_t)c.threads, sizeof *wa);
    for (int i = 1; i < c.threads; i++) {
        wa[i] = (worker_arg){&c, i};
        pthread_create(&ids[i], NULL, worker, &wa[i]);
    }
    /* warm-up: page faults, one pass over every copy */
    for (int64_t cp = 0; cp < c.copies; cp++) {
        team_run(&c, M_READ, (int)cp);
        fia_plan_execute(plans[cp], ws, ws_bytes);
    }
    double *t = calloc((size_t)(MODES * reps * 2), sizeof *t), *frac = t + MODES * reps;
    int copy = 0;
    for (int r = 0; r < reps; r++) {
        double s[MODES];
        for (int m = 0; m < MODES; m++) {
            if (m == M_PROBE) {
                const double gbps = roofline_probe_read(probe);
                s[m] = gbps > 0 ? (double)bytes / (gbps * 1e9) : 0;
            } else if (m == M_FIA) {
                if (waker) fia_plan_execute(waker, waker_mem, waker_ws);
                const double t0 = now();
                fia_plan_execute(plans[copy], ws, ws_bytes);
                s[m] = now() - t0;
            } else {
                s[m] = team_run(&c, m, copy);
            }
            if (m != M_FMA_HOT) copy = (int)((copy + 1) % c.copies);
        }
        for (int m = 0; m < MODES; m++) {
            t[m * reps + r] = s[m];
            frac[m * reps + r] = s[m] > 0 ? s[M_PROBE] / s[m] : 0;
        }
    }
    team_publish(&c, -1);
    for (int i = 1; i < c.threads; i++) pthread_join(ids[i], NULL);

    printf("fia_ceiling: kv %ld, heads %ld/%ld, D %d fp16, %s, %ld items of %ld kv heads x %d "
           "keys, %d threads, %d reps, %ld copies of %.1f MB (K+V)\n",
           (long)c.S, (long)c.N1, (long)c.N2, D, c.bnsd ? "BNSD" : "BSND", (long)c.nitems,
           (long)c.hb, CHUNK, c.threads, reps, (long)c.copies, (double)bytes * 1e-6);
    printf("%-10s %10s %10s %9s %9s %14s\n", "mode", "min ms", "median ms", "GB/s min", "GB/s med",
           "of probe (med)");
    for (int m = 0; m < MODES; m++) {
        qsort(t + m * reps, (size_t)reps, sizeof *t, cmp_double);
        qsort(frac + m * reps, (size_t)reps, sizeof *t, cmp_double);
        const double mn = t[m * reps], md = t[m * reps + reps / 2];
        printf("%-10s %10.3f %10.3f %9.1f %9.1f %14.3f\n", mode_name[m], mn * 1e3, md * 1e3,
               (double)bytes / mn * 1e-9, (double)bytes / md * 1e-9, frac[m * reps + reps / 2]);
    }
    roofline_probe_destroy(probe);
    for (int64_t cp = 0; cp < c.copies; cp++) {
        fia_plan_destroy(plans[cp]);
        free(c.k[cp]);
        free(c.v[cp]);
    }
    if (waker) fia_plan_destroy(waker);
    fia_context_destroy(fctx);
    free(waker_mem);
    free(plans);
    free(c.k);
    free(c.v);
    free(q);
    free(o);
    free(ws);
    free(t);
    free(ids);
    free(wa);
    return 0;
}
