/*
 * roofline.c - the machine roofline probe of `fia bench` and `fia demo` (see roofline.h).
 *
 * Bandwidth: one pthread per context thread sums its slice of a buffer much larger than the
 * last-level cache (max(512 MiB, 8 x LLC), at most 1 GiB), with AVX-512 or AVX2 loads chosen at
 * run time; the buffer is first touched by the same threads; best of several passes.
 * FMA peak: every thread runs 16 (AVX-512) or 12 (AVX2) independent fp32 FMA chains, enough
 * accumulators to cover FMA latency x throughput, for about 0.2 s; best of three runs.
 * The vector code lives in functions with __attribute__((target(...))), picked with
 * __builtin_cpu_supports, so this file needs no ISA compile flags.
 */
#define _GNU_SOURCE

#include "roofline.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ROOFLINE_X86 1
#else
#define ROOFLINE_X86 0
#endif

#define MiB ((size_t)1 << 20)

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------- */
/* Cache size                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Parses "32768K", "2M", "1024" into bytes; 0 when unreadable. */
static size_t parse_cache_size(const char *text) {
    char *end = NULL;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text) return 0;
    if (*end == 'K' || *end == 'k') v <<= 10;
    else if (*end == 'M' || *end == 'm') v <<= 20;
    else if (*end == 'G' || *end == 'g') v <<= 30;
    return (size_t)v;
}

size_t roofline_llc_bytes(void) {
    /* The sysfs entry gives the size of one cache instance, which is what a core's working set
     * competes for; sysconf sometimes reports a whole-package total. */
    size_t best = 0;
    int best_level = 0;
    for (int index = 0; index < 8; index++) {
        char path[128], text[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        int level = 0;
        if (fscanf(f, "%d", &level) != 1) level = 0;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
        f = fopen(path, "r");
        if (f == NULL) continue;
        size_t size = 0;
        if (fgets(text, sizeof text, f) != NULL) size = parse_cache_size(text);
        fclose(f);
        if (size > 0 && level >= best_level) {
            best_level = level;
            best = size;
        }
    }
    if (best > 0 && best_level >= 2) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) return (size_t)l3;
#endif
    return 32 * MiB;
}

/* ---------------------------------------------------------------------------------------- */
/* Streaming read kernels                                                                   */
/* ---------------------------------------------------------------------------------------- */

typedef uint64_t (*read_fn)(const void *p, size_t bytes);

static uint64_t read_scalar(const void *p, size_t bytes) {
    const uint64_t *u = p;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
        a0 += u[i];
        a1 += u[i + 1];
        a2 += u[i + 2];
        a3 += u[i + 3];
    }
    return a0 + a1 + a2 + a3;
}

#if ROOFLINE_X86
__attribute__((target("avx2"))) static uint64_t read_avx2(const void *p, size_t bytes) {
    const __m256i *v = p;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    const size_t n = bytes / 32;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + i));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + i + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + i + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + i + 3));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, a0);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

__attribute__((target("avx512f"))) static uint64_t read_avx512(const void *p, size_t bytes) {
    const __m512i *v = p;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    const size_t n = bytes / 64;
    for (size_t i = 0; i + 4 <= n; i += 4) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512(v + i));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + i + 1));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + i + 2));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + i + 3));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    uint64_t lanes[8];
    _mm512_storeu_si512((void *)lanes, a0);
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) s ^= lanes[i];
    return s;
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* FMA chains                                                                               */
/* ---------------------------------------------------------------------------------------- */

/* Each kernel runs `iters` rounds of `chains` independent FMAs of `lanes` floats and returns a
 * value depending on all of them (so nothing is optimised away). acc = acc * m + a converges to
 * a / (1 - m): no overflow, no denormals. */
typedef float (*fma_fn)(long iters);

static float fma_scalar(long iters) {
    float acc[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    const float m = 0.999999f, a = 1e-6f;
    for (long i = 0; i < iters; i++)
        for (int c = 0; c < 8; c++) acc[c] = acc[c] * m + a;
    float s = 0;
    for (int c = 0; c < 8; c++) s += acc[c];
    return s;
}

#if ROOFLINE_X86
__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), a = _mm256_set1_ps(1e-6f);
    __m256 c0 = _mm256_set1_ps(0.f), c1 = _mm256_set1_ps(1.f), c2 = _mm256_set1_ps(2.f),
           c3 = _mm256_set1_ps(3.f), c4 = _mm256_set1_ps(4.f), c5 = _mm256_set1_ps(5.f),
           c6 = _mm256_set1_ps(6.f), c7 = _mm256_set1_ps(7.f), c8 = _mm256_set1_ps(8.f),
           c9 = _mm256_set1_ps(9.f), c10 = _mm256_set1_ps(10.f), c11 = _mm256_set1_ps(11.f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, m, a);
        c1 = _mm256_fmadd_ps(c1, m, a);
        c2 = _mm256_fmadd_ps(c2, m, a);
        c3 = _mm256_fmadd_ps(c3, m, a);
        c4 = _mm256_fmadd_ps(c4, m, a);
        c5 = _mm256_fmadd_ps(c5, m, a);
        c6 = _mm256_fmadd_ps(c6, m, a);
        c7 = _mm256_fmadd_ps(c7, m, a);
        c8 = _mm256_fmadd_ps(c8, m, a);
        c9 = _mm256_fmadd_ps(c9, m, a);
        c10 = _mm256_fmadd_ps(c10, m, a);
        c11 = _mm256_fmadd_ps(c11, m, a);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999999f), a = _mm512_set1_ps(1e-6f);
    __m512 c0 = _mm512_set1_ps(0.f), c1 = _mm512_set1_ps(1.f), c2 = _mm512_set1_ps(2.f),
           c3 = _mm512_set1_ps(3.f), c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f),
           c6 = _mm512_set1_ps(6.f), c7 = _mm512_set1_ps(7.f), c8 = _mm512_set1_ps(8.f),
           c9 = _mm512_set1_ps(9.f), c10 = _mm512_set1_ps(10.f), c11 = _mm512_set1_ps(11.f),
           c12 = _mm512_set1_ps(12.f), c13 = _mm512_set1_ps(13.f), c14 = _mm512_set1_ps(14.f),
           c15 = _mm512_set1_ps(15.f);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(c0, m, a);
        c1 = _mm512_fmadd_ps(c1, m, a);
        c2 = _mm512_fmadd_ps(c2, m, a);
        c3 = _mm512_fmadd_ps(c3, m, a);
        c4 = _mm512_fmadd_ps(c4, m, a);
        c5 = _mm512_fmadd_ps(c5, m, a);
        c6 = _mm512_fmadd_ps(c6, m, a);
        c7 = _mm512_fmadd_ps(c7, m, a);
        c8 = _mm512_fmadd_ps(c8, m, a);
        c9 = _mm512_fmadd_ps(c9, m, a);
        c10 = _mm512_fmadd_ps(c10, m, a);
        c11 = _mm512_fmadd_ps(c11, m, a);
        c12 = _mm512_fmadd_ps(c12, m, a);
        c13 = _mm512_fmadd_ps(c13, m, a);
        c14 = _mm512_fmadd_ps(c14, m, a);
        c15 = _mm512_fmadd_ps(c15, m, a);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15)));
    return _mm512_reduce_add_ps(s);
}
#endif

/* ---------------------------------------------------------------------------------------- */
/* Other compute units: bf16 and int8 dot products, AMX tiles                               */
/* ---------------------------------------------------------------------------------------- */

#if ROOFLINE_X86
#include <sys/syscall.h>

/* 12 independent vdpbf16ps chains; the operands stay small (1.0 x 2^-20) so nothing overflows. */
__attribute__((target("avx512f,avx512bf16"))) static float bf16dp_avx512(long iters) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
           c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3580);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_dpbf16_ps(c0, a, b);
        c1 = _mm512_dpbf16_ps(c1, a, b);
        c2 = _mm512_dpbf16_ps(c2, a, b);
        c3 = _mm512_dpbf16_ps(c3, a, b);
        c4 = _mm512_dpbf16_ps(c4, a, b);
        c5 = _mm512_dpbf16_ps(c5, a, b);
        c6 = _mm512_dpbf16_ps(c6, a, b);
        c7 = _mm512_dpbf16_ps(c7, a, b);
        c8 = _mm512_dpbf16_ps(c8, a, b);
        c9 = _mm512_dpbf16_ps(c9, a, b);
        c10 = _mm512_dpbf16_ps(c10, a, b);
        c11 = _mm512_dpbf16_ps(c11, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    return _mm512_reduce_add_ps(s);
}

/* 12 independent vpdpbusd chains (int32 wrap-around is harmless). */
__attribute__((target("avx512f,avx512vnni"))) static float vnni_avx512(long iters) {
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0,
            c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    const __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(3);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_dpbusd_epi32(c0, a, b);
        c1 = _mm512_dpbusd_epi32(c1, a, b);
        c2 = _mm512_dpbusd_epi32(c2, a, b);
        c3 = _mm512_dpbusd_epi32(c3, a, b);
        c4 = _mm512_dpbusd_epi32(c4, a, b);
        c5 = _mm512_dpbusd_epi32(c5, a, b);
        c6 = _mm512_dpbusd_epi32(c6, a, b);
        c7 = _mm512_dpbusd_epi32(c7, a, b);
        c8 = _mm512_dpbusd_epi32(c8, a, b);
        c9 = _mm512_dpbusd_epi32(c9, a, b);
        c10 = _mm512_dpbusd_epi32(c10, a, b);
        c11 = _mm512_dpbusd_epi32(c11, a, b);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
    return (float)_mm512_reduce_add_epi32(s);
}

/* AMX: four accumulator tiles fed by two A and two B tiles (16 x 64 bytes each), the
 * 2 x 2 register blocking a GEMM micro-kernel uses; the tile state is configured per thread. */
typedef struct roofline_tilecfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} roofline_tilecfg;

/* int8 0: bf16 (tdpbf16ps, A = B = 0x3580), 1: int8 (tdpbssd, A = B = 1); the caller runs only
 * the kind the CPU has. */
__attribute__((target("amx-tile,amx-bf16,amx-int8"))) static float amx_probe(long iters, int int8) {
    roofline_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.colsb[i] = 64, cfg.rows[i] = 16;
    _tile_loadconfig(&cfg);
    _Alignas(64) uint16_t buf[2 * 512]; /* two 1 KiB tiles */
    for (int i = 0; i < 2 * 512; i++) buf[i] = int8 ? 0x0101 : 0x3580;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, buf, 64);
    _tile_loadd(5, buf + 512, 64);
    _tile_loadd(6, buf, 64);
    _tile_loadd(7, buf + 512, 64);
    if (int8)
        for (long i = 0; i < iters; i++) {
            _tile_dpbssd(0, 4, 6);
            _tile_dpbssd(1, 4, 7);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
    else
        for (long i = 0; i < iters; i++) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    _Alignas(64) union { float f[256]; int32_t i[256]; } out;
    _tile_stored(0, &out, 64);
    _tile_release();
    return int8 ? (float)out.i[0] : out.f[0];
}
static float amx_bf16_probe(long iters) { return amx_probe(iters, 0); }
static float amx_int8_probe(long iters) { return amx_probe(iters, 1); }

/* AMX usable: CPUID.(7,0):EDX amx-tile (24) plus amx-bf16 (22) / amx-int8 (25), and the OS
 * grants this process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+). */
static int amx_usable(int *bf16, int *int8) {
    *bf16 = *int8 = 0;
    __builtin_cpu_init();
    unsigned a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a < 7) return 0;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    if (!(d & (1u << 24))) return 0;
#ifdef SYS_arch_prctl
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) != 0)
        return 0;
    *bf16 = (d >> 22) & 1;
    *int8 = (d >> 25) & 1;
    return *bf16 || *int8;
#else
    return 0;
#endif
}
#endif

double roofline_unit_peak(const roofline *r, const char *unit) {
    if (unit == NULL || strcmp(unit, "fma") == 0) return r->fma_gflops;
    if (strcmp(unit, "bf16dp") == 0) return r->bf16dp_gflops;
    if (strcmp(unit, "vnni") == 0) return r->vnni_gops;
    if (strcmp(unit, "amx_bf16") == 0) return r->amx_bf16_gflops;
    if (strcmp(unit, "amx_int8") == 0) return r->amx_int8_gops;
    return 0.0;
}


/* ---------------------------------------------------------------------------------------- */
/* Threads                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* Threads wait at a gate until the main thread opens it (or aborts the run). */
typedef struct probe_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;  /* 1: run, -1: abort */
} probe_gate;

typedef struct probe_task {
    probe_gate *gate;
    /* bandwidth */
    read_fn read;
    unsigned char *base;
    size_t bytes;
    int touch; /* first pass: write the slice instead of reading it */
    uint64_t sum;
    /* fma */
    fma_fn fma;
    long iters;
    float result;
} probe_task;

static void *probe_thread(void *arg) {
    probe_task *t = arg;
    pthread_mutex_lock(&t->gate->lock);
    while (t->gate->open == 0) pthread_cond_wait(&t->gate->cond, &t->gate->lock);
    const int open = t->gate->open;
    pthread_mutex_unlock(&t->gate->lock);
    if (open < 0) return NULL;
    if (t->touch) {
        memset(t->base, 1, t->bytes);
    } else if (t->read != NULL) {
        t->sum = t->read(t->base, t->bytes);
    } else {
        t->result = t->fma(t->iters);
    }
    return NULL;
}

static void gate_set(probe_gate *g, int value) {
    pthread_mutex_lock(&g->lock);
    g->open = value;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* Runs one task per thread, all released together; returns the wall seconds from the release to
 * the last join, or a negative value when a thread could not be created. */
static double run_tasks(probe_task *tasks, int n) {
    pthread_t *ids = malloc((size_t)n * sizeof *ids);
    if (ids == NULL) return -1.0;
    probe_gate gate;
    gate.open = 0;
    if (pthread_mutex_init(&gate.lock, NULL) != 0) {
        free(ids);
        return -1.0;
    }
    if (pthread_cond_init(&gate.cond, NULL) != 0) {
        pthread_mutex_destroy(&gate.lock);
        free(ids);
        return -1.0;
    }
    int created = 0;
    for (; created < n; created++) {
        tasks[created].gate = &gate;
        if (pthread_create(&ids[created], NULL, probe_thread, &tasks[created]) != 0) break;
    }
    double seconds = -1.0;
    if (created == n) {
        /* Give the threads a moment to reach the gate so they start together. */
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
        const double t0 = now_seconds();
        gate_set(&gate, 1);
        for (int i = 0; i < n; i++) pthread_join(ids[i], NULL);
        seconds = now_seconds() - t0;
    } else {
        gate_set(&gate, -1);
        for (int i = 0; i < created; i++) pthread_join(ids[i], NULL);
    }
    pthread_cond_destroy(&gate.cond);
    pthread_mutex_destroy(&gate.lock);
    free(ids);
    return seconds;
}

/* ---------------------------------------------------------------------------------------- */
/* Probes                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static const char *pick_isa(read_fn *rd, fma_fn *fm) {
    *rd = read_scalar;
    *fm = fma_scalar;
#if ROOFLINE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        *rd = read_avx512;
        *fm = fma_avx512;
        return "avx512";
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *rd = read_avx2;
        *fm = fma_avx2;
        return "avx2";
    }
#endif
    return "scalar";
}

static double flops_per_iter(const char *isa) {
    if (strcmp(isa, "avx512") == 0) return 16.0 * 16.0 * 2.0;
    if (strcmp(isa, "avx2") == 0) return 12.0 * 8.0 * 2.0;
    return 8.0 * 2.0;
}

void *roofline_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return aligned_alloc(64, bytes == 0 ? 64 : (bytes + 63) & ~(size_t)63);
    const size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, rounded);
#ifdef MADV_HUGEPAGE
    if (p != NULL) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

static int measure_bandwidth(int threads, read_fn rd, size_t bytes, double *gbps, char *err,
                             size_t err_len) {
    unsigned char *buf = roofline_alloc(bytes);
    probe_task *tasks = calloc((size_t)threads, sizeof *tasks);
    if (buf == NULL || tasks == NULL) {
        snprintf(err, err_len, "roofline: cannot allocate the %zu MiB bandwidth buffer",
                 bytes / MiB);
        free(buf);
        free(tasks);
        return -1;
    }
    /* Slices are multiples of 4 KiB so every thread's loads stay aligned. */
    const size_t slice = (bytes / (size_t)threads) & ~(size_t)4095;
    double best = 0.0;
    uint64_t sink = 0;
    for (int pass = 0; pass < 6; pass++) {
        for (int i = 0; i < threads; i++) {
            tasks[i].base = buf + (size_t)i * slice;
            tasks[i].bytes = slice;
            tasks[i].touch = pass == 0;
            tasks[i].read = rd;
            tasks[i].fma = NULL;
        }
        const double s = run_tasks(tasks, threads);
        if (s < 0) {
            snprintf(err, err_len, "roofline: cannot start %d threads", threads);
            free(buf);
            free(tasks);
            return -1;
        }
        if (pass == 0) continue; /* the first-touch pass (page faults) is not timed */
        for (int i = 0; i < threads; i++) sink += tasks[i].sum;
        const double g = (double)slice * (double)threads / s * 1e-9;
        if (g > best) best = g;
    }
    /* The sums are all equal to a known value; using them keeps the loads alive. */
    if (sink == 1) best += 0.0;
    free(buf);
    free(tasks);
    *gbps = best;
    return 0;
}

static int measure_fma(int threads, fma_fn fm, double per_iter, double *gflops, char *err,
                       size_t err_len) {
    probe_task *tasks = calloc((size_t)threads, sizeof *tasks);
    if (tasks == NULL) {
        snprintf(err, err_len, "roofline: out of memory");
        return -1;
    }
    long iters = 1L << 16;
    double best = 0.0;
    float sink = 0.0f;
    /* Calibrate to about 0.2 s per run, then keep the best of three runs. */
    for (int run = 0, timed = 0; timed < 3 && run < 24; run++) {
        for (int i = 0; i < threads; i++) {
            tasks[i].read = NULL;
            tasks[i].touch = 0;
            tasks[i].fma = fm;
            tasks[i].iters = iters;
        }
        const double s = run_tasks(tasks, threads);
        if (s < 0) {
            snprintf(err, err_len, "roofline: cannot start %d threads", threads);
            free(tasks);
            return -1;
        }
        for (int i = 0; i < threads; i++) sink += tasks[i].result;
        if (s < 0.1) {
            const double scale = s > 1e-4 ? 0.2 / s : 16.0;
            iters = (long)((double)iters * (scale > 16.0 ? 16.0 : scale)) + 1;
            continue;
        }
        timed++;
        const double g = (double)iters * per_iter * (double)threads / s * 1e-9;
        if (g > best) best = g;
    }
    if (sink == -1.0f) best += 0.0; /* keeps the results alive */
    free(tasks);
    *gflops = best;
    return 0;
}

int roofline_measure(int threads, roofline *r, char *err, size_t err_len) {
    memset(r, 0, sizeof *r);
    if (threads < 1) threads = 1;
    read_fn rd;
    fma_fn fm;
    r->isa = pick_isa(&rd, &fm);
    r->threads = threads;
    r->llc_bytes = roofline_llc_bytes();
    size_t bytes = 8 * r->llc_bytes;
    if (bytes < 512 * MiB) bytes = 512 * MiB;
    if (bytes > 1024 * MiB) bytes = 1024 * MiB;
    r->buffer_bytes = bytes;
    if (measure_bandwidth(threads, rd, bytes, &r->read_gbps, err, err_len) != 0) return -1;
    if (measure_fma(threads, fm, flops_per_iter(r->isa), &r->fma_gflops, err, err_len) != 0)
        return -1;
#if ROOFLINE_X86
    /* FLOP per iteration: chains x lanes x 2 products x 2 (bf16); ops for int8 (4 products) */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") &&
        measure_fma(threads, bf16dp_avx512, 12.0 * 16 * 4, &r->bf16dp_gflops, err, err_len) != 0)
        return -1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
        measure_fma(threads, vnni_avx512, 12.0 * 16 * 8, &r->vnni_gops, err, err_len) != 0)
        return -1;
    int ab = 0, ai = 0;
    if (amx_usable(&ab, &ai)) {
        /* 4 tile multiplies of 16 x 16 x (32 bf16 | 64 int8) per iteration */
        if (ab && measure_fma(threads, amx_bf16_probe, 4.0 * 16 * 16 * 32 * 2, &r->amx_bf16_gflops,
                              err, err_len) != 0)
            return -1;
        if (ai && measure_fma(threads, amx_int8_probe, 4.0 * 16 * 16 * 64 * 2, &r->amx_int8_gops,
                              err, err_len) != 0)
            return -1;
    }
#endif
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Paired probe                                                                             */
/* ---------------------------------------------------------------------------------------- */

struct roofline_probe {
    unsigned char *buf;
    size_t bytes, slice; /* buffer, bytes read per call (a multiple of 4 KiB per thread) */
    size_t next;         /* offset of the next call's slice */
    int threads;
    read_fn read;
    probe_task *tasks;
    uint64_t sink;
};

roofline_probe *roofline_probe_create(const roofline *r, char *err, size_t err_len) {
    roofline_probe *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, err_len, "roofline: out of memory");
        return NULL;
    }
    fma_fn fm;
    pick_isa(&p->read, &fm);
    p->threads = r->threads < 1 ? 1 : r->threads;
    p->bytes = r->buffer_bytes;
    /* A quarter of the buffer per call, at least 4x the LLC: read from memory, not cache. */
    size_t slice = p->bytes / 4;
    if (slice < 4 * r->llc_bytes && 4 * r->llc_bytes <= p->bytes) slice = 4 * r->llc_bytes;
    p->slice = slice / ((size_t)p->threads * 4096) * ((size_t)p->threads * 4096);
    p->buf = roofline_alloc(p->bytes);
    p->tasks = calloc((size_t)p->threads, sizeof *p->tasks);
    if (p->buf == NULL || p->tasks == NULL || p->slice == 0) {
        snprintf(err, err_len, "roofline: cannot allocate the %zu MiB probe buffer",
                 p->bytes / MiB);
        roofline_probe_destroy(p);
        return NULL;
    }
    /* First touch by the probe threads themselves (page placement), not timed. */
    const size_t part = (p->bytes / (size_t)p->threads) & ~(size_t)4095;
    for (int i = 0; i < p->threads; i++) {
        p->tasks[i].base = p->buf + (size_t)i * part;
        p->tasks[i].bytes = part;
        p->tasks[i].touch = 1;
        p->tasks[i].read = NULL;
        p->tasks[i].fma = NULL;
    }
    if (run_tasks(p->tasks, p->threads) < 0) {
        snprintf(err, err_len, "roofline: cannot start %d threads", p->threads);
        roofline_probe_destroy(p);
        return NULL;
    }
    return p;
}

double roofline_probe_read(roofline_probe *p) {
    if (p->next + p->slice > p->bytes) p->next = 0;
    const size_t part = p->slice / (size_t)p->threads;
    for (int i = 0; i < p->threads; i++) {
        p->tasks[i].base = p->buf + p->next + (size_t)i * part;
        p->tasks[i].bytes = part;
        p->tasks[i].touch = 0;
        p->tasks[i].read = p->read;
        p->tasks[i].fma = NULL;
    }
    p->next += p->slice;
    const double s = run_tasks(p->tasks, p->threads);
    if (s <= 0) return -1.0;
    for (int i = 0; i < p->threads; i++) p->sink += p->tasks[i].sum;
    return (double)p->slice / s * 1e-9;
}

void roofline_probe_destroy(roofline_probe *p) {
    if (p == NULL) return;
    free(p->buf);
    free(p->tasks);
    free(p);
}
