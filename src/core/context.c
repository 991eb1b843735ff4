/*
 * context.c - CPU feature detection (once per context), FIA_ISA / FIA_NUM_THREADS / FIA_VERBOSE,
 * the kernel set (built from the registry by kernels/registry.c) and the thread pool.
 */
#define _DEFAULT_SOURCE /* syscall() for the AMX permission request */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/syscall.h>
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif


#include "core/context.h"
#include "core/status.h"

const char *fia_isa_name(fia_isa isa) {
    switch (isa) {
    case FIA_ISA_AUTO: return "auto";
    case FIA_ISA_SCALAR: return "scalar";
    case FIA_ISA_AVX2: return "avx2";
    case FIA_ISA_AVX512: return "avx512";
    }
    return "unknown";
}

/* The features this CPU and OS provide, from CPUID and XCR0 (so that it works the same with gcc
 * and clang, whatever feature names their builtins know). AMX also needs the tile data state,
 * which Linux grants per process on request (arch_prctl ARCH_REQ_XCOMP_PERM). */
uint32_t fia_cpu_features(void) {
    uint32_t f = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(osxsave && avx && fma && f16c)) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6u) != 0x6u) return 0; /* the OS saves no YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned ebx7 = b, ecx7 = c, edx7 = d;
    __cpuid_count(7, 1, a, b, c, d);
    const unsigned eax71 = a;
    if (ebx7 & (1u << 5)) f |= FIA_CPU_AVX2;
    const bool avx512 = (ebx7 & (1u << 16)) && (ebx7 & (1u << 17)) && (ebx7 & (1u << 30)) &&
                        (ebx7 & (1u << 31)) && (xlo & 0xe6u) == 0xe6u;
    if (avx512) {
        f |= FIA_CPU_AVX512;
        if (ecx7 & (1u << 11)) f |= FIA_CPU_AVX512VNNI;
        if (eax71 & (1u << 5)) f |= FIA_CPU_AVX512BF16;
        if (edx7 & (1u << 23)) f |= FIA_CPU_AVX512FP16;
    }
    const bool amx_tile = edx7 & (1u << 24);
#if defined(__linux__)
    /* XCR0 bits 17-18: XTILECFG / XTILEDATA enabled; then ask for XTILEDATA (feature 18). */
    if (amx_tile && (xlo & 0x60000u) == 0x60000u && syscall(SYS_arch_prctl, 0x1023, 18) == 0) {
        if (edx7 & (1u << 22)) f |= FIA_CPU_AMX_BF16;
        if (edx7 & (1u << 25)) f |= FIA_CPU_AMX_INT8;
    }
#else
    (void)amx_tile;
#endif
#endif
    return f;
}

/* Whether the CPU vendor is AMD ("AuthenticAMD"): its vdpbf16ps runs at twice the fp32 FMA's
 * FLOP rate, Intel's at the same rate (see context.h, bf16dp_fast). */
static bool fia_cpu_is_amd(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    return b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;
#else
    return false;
#endif
}

/* The features an ISA level may use: avx512 (and auto) means everything the CPU has. */
static uint32_t fia_isa_features(fia_isa isa, uint32_t cpu) {
    switch (isa) {
    case FIA_ISA_SCALAR: return 0;
    case FIA_ISA_AVX2: return cpu & FIA_CPU_AVX2;
    default: return cpu;
    }
}

static fia_isa fia_best_isa(uint32_t cpu) {
    if (cpu & FIA_CPU_AVX512) return FIA_ISA_AVX512;
    if (cpu & FIA_CPU_AVX2) return FIA_ISA_AVX2;
    return FIA_ISA_SCALAR;
}

fia_status fia_context_create(const fia_context_options *options, fia_context **ctx) {
    fia_error_clear();
    if (!ctx) return FIA_INVALID("fia_context_create: ctx is NULL");
    fia_context_options opt = {0, FIA_ISA_AUTO};
    if (options) opt = *options;

    const uint32_t cpu = fia_cpu_features();
    const fia_isa best = fia_best_isa(cpu);
    fia_isa isa = opt.isa;
    if (isa == FIA_ISA_AUTO) {
        const char *env = getenv("FIA_ISA");
        if (env && *env) {
            if (!strcmp(env, "scalar")) isa = FIA_ISA_SCALAR;
            else if (!strcmp(env, "avx2")) isa = FIA_ISA_AVX2;
            else if (!strcmp(env, "avx512")) isa = FIA_ISA_AVX512;
            else if (!strcmp(env, "auto")) isa = best;
            else return FIA_INVALID("FIA_ISA is '%s': use scalar, avx2, avx512 or auto", env);
        } else {
            isa = best;
        }
    }
    if (isa < FIA_ISA_SCALAR || isa > FIA_ISA_AVX512)
        return FIA_INVALID("context isa is %d, must be 0..3", (int)isa);
    if (isa > best)
        return fia_error(FIA_STATUS_UNSUPPORTED_ISA, "isa %s is not available on this CPU (best: %s)",
                         fia_isa_name(isa), fia_isa_name(best));

    int32_t threads = opt.num_threads;
    if (threads < 0 || threads > 1024)
        return FIA_INVALID("context num_threads is %d, must be 0..1024", (int)threads);
    if (threads == 0) {
        const char *env = getenv("FIA_NUM_THREADS");
        if (env && *env) {
            char *end = NULL;
            const long v = strtol(env, &end, 10);
            if (*end != '\0' || v < 1 || v > 1024)
                return FIA_INVALID("FIA_NUM_THREADS is '%s', must be 1..1024", env);
            threads = (int32_t)v;
        } else {
            const long n = sysconf(_SC_NPROCESSORS_ONLN);
            threads = n < 1 ? 1 : n > 1024 ? 1024 : (int32_t)n;
        }
    }

    fia_context *c = calloc(1, sizeof *c);
    if (!c) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "fia_context_create: out of memory");
    c->isa = isa;
    c->features = fia_isa_features(isa, cpu);
    const char *amx_env = getenv("FIA_AMX"); /* FIA_AMX=0: no AMX kernel in this context */
    if (amx_env && !strcmp(amx_env, "0")) c->features &= ~(uint32_t)(FIA_CPU_AMX_BF16 | FIA_CPU_AMX_INT8);
    fia_kernel_set_build(&c->kernels, c->features);
    c->bf16dp = (c->features & FIA_CPU_AVX512BF16) != 0;
    c->amx_bf16 = c->bf16dp && (c->features & FIA_CPU_AMX_BF16) != 0;
    c->amx_int8 = (c->features & FIA_CPU_AMX_INT8) != 0;
    c->bf16dp_fast = c->bf16dp && fia_cpu_is_amd();
    const char *bf = getenv("FIA_BF16DP");
    if (bf && !strcmp(bf, "0")) c->bf16dp_fast = false;
    if (bf && !strcmp(bf, "1")) c->bf16dp_fast = c->bf16dp;
    c->num_threads = threads;
    const char *verbose = getenv("FIA_VERBOSE");
    c->verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
    fia_status st = fia_pool_create(threads, &c->pool);
    if (st != FIA_STATUS_SUCCESS) {
        free(c);
        return st;
    }
    if (c->verbose) {
        fprintf(stderr,
                "fia: cpu best isa %s (features up to %s), kernels may use up to %s, %d threads\n",
                fia_isa_name(best), fia_cpu_feature_name(cpu), fia_cpu_feature_name(c->features),
                (int)threads);
        fia_kernel_set_log(&c->kernels);
    }
    *ctx = c;
    return FIA_STATUS_SUCCESS;
}

void fia_context_destroy(fia_context *ctx) {
    if (!ctx) return;
    fia_pool_destroy(ctx->pool);
    free(ctx);
}

fia_isa fia_context_isa(const fia_context *ctx) { return ctx ? ctx->isa : FIA_ISA_SCALAR; }

int32_t fia_context_num_threads(const fia_context *ctx) { return ctx ? ctx->num_threads : 0; }
