/*
 * amx_detect.c - run-time detection of AMX (see amx.h). Built without ISA flags: it runs on
 * every x86-64 CPU (and reports no AMX elsewhere).
 */
#define _GNU_SOURCE
#include "kernels/amx.h"


#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

static bool g_bf16, g_int8;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void amx_detect_once(void) {
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return; /* OSXSAVE */
    __cpuid_count(7, 0, a, b, c, d);
    const bool tile = d & (1u << 24), bf16 = d & (1u << 22), int8 = d & (1u << 25);
    if (!tile || !(bf16 || int8)) return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return; /* XTILECFG and XTILEDATA not enabled */
    /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): Linux 5.16 and later */
    if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) return;
    g_bf16 = bf16;
    g_int8 = int8;
}

void fia_amx_detect(bool *bf16, bool *int8) {
    pthread_once(&g_once, amx_detect_once);
    *bf16 = g_bf16;
    *int8 = g_int8;
}
#else
void fia_amx_detect(bool *bf16, bool *int8) {
    *bf16 = false;
    *int8 = false;
}
#endif
