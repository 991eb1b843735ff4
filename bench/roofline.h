/*
 * roofline.h - measures the machine's roofline in the same run as the benchmark: the
 * multi-threaded streaming read bandwidth (GB/s) and the fp32 FMA peak (GFLOP/s), plus the
 * last-level cache size used to size cold-cache buffer rotations.
 */
#ifndef FIA_BENCH_ROOFLINE_H
#define FIA_BENCH_ROOFLINE_H

#include <stddef.h>

typedef struct roofline {
    double read_gbps;  /* best pass of a streaming read/sum over a buffer >> LLC, all threads */
    double fma_gflops; /* fp32, all threads running independent FMA chains */
    /* The CPU's other compute units, probed in the same run (0 where the CPU lacks them):
     * bf16 dot product (AVX512-BF16 vdpbf16ps, 4 FLOP per fp32 lane), int8 dot product (VNNI
     * vpdpbusd, GOP/s: 8 ops per int32 lane), AMX bf16 (tdpbf16ps) and AMX int8 (tdpbssd)
     * tile multiplies. AMX is probed only where the OS grants the tile state. */
    double bf16dp_gflops;
    double vnni_gops;
    double amx_bf16_gflops;
    double amx_int8_gops;
    int threads;       /* threads used by both probes */
    const char *isa;   /* vector level of the probes: "avx512", "avx2" or "scalar" */
    size_t llc_bytes;  /* last-level cache size (roofline_llc_bytes) */
    size_t buffer_bytes; /* size of the bandwidth probe's buffer */
} roofline;

/* The peak of a compute unit by name: "fma", "bf16dp", "vnni", "amx_bf16", "amx_int8";
 * 0 when the unit is absent or unknown. */
double roofline_unit_peak(const roofline *r, const char *unit);

/* The last-level (L3) cache size in bytes: /sys/devices/system/cpu/cpu0/cache, then
 * sysconf(_SC_LEVEL3_CACHE_SIZE), else 32 MiB. */
size_t roofline_llc_bytes(void);

/* A buffer for a probe or a benchmark case, freed with free(): 64-byte aligned, and for 4 MiB
 * and more 2 MiB aligned and backed by transparent huge pages where the kernel allows. */
void *roofline_alloc(size_t bytes);

/* Runs both probes with `threads` threads (>= 1); takes about a second. Returns 0, or -1 with a
 * message in err (allocation or thread creation failed). */
int roofline_measure(int threads, roofline *r, char *err, size_t err_len);

/* A read probe short enough to run between the timed runs of a case: a shared machine's
 * bandwidth can change several-fold within a second, so a case is compared with the bandwidth
 * measured next to each of its runs rather than once before it. The buffer (r->buffer_bytes,
 * touched once at creation) is read a quarter (at least 4x the LLC) per call, rotating, with
 * r->threads threads. create returns NULL with a message in err on failure. */
typedef struct roofline_probe roofline_probe;
roofline_probe *roofline_probe_create(const roofline *r, char *err, size_t err_len);
/* One pass: the read bandwidth in GB/s, or < 0 when the threads could not start. */
double roofline_probe_read(roofline_probe *p);
void roofline_probe_destroy(roofline_probe *p); /* NULL is a no-op */

#endif /* FIA_BENCH_ROOFLINE_H */
