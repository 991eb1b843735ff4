/*
 * context.c - CPU detection (once per context), FIA_ISA / FIA_NUM_THREADS / FIA_VERBOSE, the
 * kernel table choice and the thread pool.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include "kernels/amx.h"

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

/* The best level this CPU (and OS) runs, from CPUID and XCR0 (so that it works the same with
 * gcc and clang, whatever feature names their builtins know). */
static fia_isa fia_detect_isa(bool *vnni) {
    *vnni = false;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return FIA_ISA_SCALAR;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
               f16c = c & (1u << 29);
    if (!(osxsave && avx && fma && f16c)) return FIA_ISA_SCALAR;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 0x6u) != 0x6u) return FIA_ISA_SCALAR; /* the OS saves no YMM state */
    if (__get_cpuid_max(0, NULL) < 7) return FIA_ISA_SCALAR;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5);
    const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) &&
                        (b & (1u << 31)) && (xlo & 0xe6u) == 0xe6u;
    *vnni = avx512 && (c & (1u << 11));
    if (avx512) return FIA_ISA_AVX512;
    if (avx2) return FIA_ISA_AVX2;
#endif
    return FIA_ISA_SCALAR;
}

static const fia_kernels *fia_kernels_for(fia_isa isa) {
    switch (isa) {
    case FIA_ISA_AVX512: return &fia_kernels_avx512;
    case FIA_ISA_AVX2: return &fia_kernels_avx2;
    default: return &fia_kernels_scalar;
    }
}

fia_status fia_context_create(const fia_context_options *options, fia_context **ctx) {
    fia_error_clear();
    if (!ctx) return FIA_INVALID("fia_context_create: ctx is NULL");
    fia_context_options opt = {0, FIA_ISA_AUTO};
    if (options) opt = *options;

    bool vnni = false;
    const fia_isa best = fia_detect_isa(&vnni);
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
    c->kernels = fia_kernels_for(isa);
    c->vnni = isa == FIA_ISA_AVX512 && vnni;
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == FIA_ISA_AVX512) {
        unsigned a = 0, b = 0, cx = 0, d = 0;
        if (__get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 1, a, b, cx, d);
            c->bf16dp = (a >> 5) & 1; /* CPUID.(7,1):EAX.AVX512_BF16 */
        }
        fia_amx_detect(&c->amx_bf16, &c->amx_int8);
        c->amx_bf16 = c->amx_bf16 && c->bf16dp;
        unsigned va = 0, vb = 0, vc = 0, vd = 0;
        __cpuid(0, va, vb, vc, vd);
        c->bf16dp_fast = c->bf16dp && vb == 0x68747541u; /* "Auth"enticAMD */
        const char *bf = getenv("FIA_BF16DP");
        if (bf && !strcmp(bf, "0")) c->bf16dp_fast = false;
        if (bf && !strcmp(bf, "1")) c->bf16dp_fast = c->bf16dp;
        const char *amx = getenv("FIA_AMX"); /* FIA_AMX=0: AMX off for this context */
        if (amx && !strcmp(amx, "0")) c->amx_bf16 = c->amx_int8 = false;
    }
#endif
    c->num_threads = threads;
    const char *verbose = getenv("FIA_VERBOSE");
    c->verbose = verbose && *verbose && strcmp(verbose, "0") != 0;
    fia_status st = fia_pool_create(threads, &c->pool);
    if (st != FIA_STATUS_SUCCESS) {
        free(c);
        return st;
    }
    if (c->verbose)
        fprintf(stderr, "fia: cpu best isa %s, using %s kernels%s, %d threads\n",
                fia_isa_name(best), c->kernels->name, c->vnni ? " with VNNI" : "", (int)threads);
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
