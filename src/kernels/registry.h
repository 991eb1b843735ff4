/*
 * registry.h - the CPU features kernels need, the per-context kernel set and the registry of
 * every kernel (registry.inc) it is built from.
 *
 * A context detects the CPU's features once (fia_cpu_features), caps them by FIA_ISA / the
 * context options, and builds its fia_kernel_set with fia_kernel_set_build: for every slot of
 * every family, the last registry line whose features are all present. Operators take their
 * tables from the context (ctx->kernels.core, .i8, .li, .sfa, .chain) and never choose a kernel
 * themselves. Tests enumerate the variants this CPU runs with fia_kernel_variant_masks.
 */
#ifndef FIA_KERNELS_REGISTRY_H
#define FIA_KERNELS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/chain_kernels.h"
#include "kernels/i8gemm.h"
#include "kernels/kernels.h"
#include "kernels/li_kernels.h"
#include "kernels/sfa_kernels.h"

/* CPU features a kernel may need: bits of a mask (a kernel lists every bit it needs). */
enum {
    FIA_CPU_AVX2 = 1u << 0,       /* AVX2 + FMA + F16C, YMM state enabled by the OS */
    FIA_CPU_AVX512 = 1u << 1,     /* AVX-512 F/BW/DQ/VL (+ FMA, F16C), ZMM state enabled */
    FIA_CPU_AVX512VNNI = 1u << 2, /* vpdpbusd (with FIA_CPU_AVX512) */
    FIA_CPU_AVX512BF16 = 1u << 3, /* vdpbf16ps, vcvtne2ps2bf16 (with FIA_CPU_AVX512) */
    FIA_CPU_AVX512FP16 = 1u << 4, /* fp16 arithmetic (with FIA_CPU_AVX512) */
    FIA_CPU_AMX_BF16 = 1u << 5,   /* AMX tiles + tdpbf16ps; the OS granted the tile state */
    FIA_CPU_AMX_INT8 = 1u << 6,   /* AMX tiles + tdpbusd; the OS granted the tile state */
    FIA_CPU_ALL = (1u << 7) - 1u
};

/* The features this CPU and OS provide (CPUID, XCR0 and, for AMX, the Linux permission
 * request for the tile data state). */
uint32_t fia_cpu_features(void);

/* "scalar", "avx2", "avx512", "avx512vnni", ...: the name of the highest feature in mask. */
const char *fia_cpu_feature_name(uint32_t mask);

/* One table per family, filled slot by slot from the registry. A new family is its header (the
 * slot typedefs and a table struct whose first members are name and features) plus one member
 * here; registry.c needs no change. */
typedef struct fia_kernel_set {
    fia_kernels core;
    fia_i8_kernels i8;
    fia_li_kernels li;
    fia_sfa_kernels sfa;
    fia_chain_kernels chain;
} fia_kernel_set;

/* One registry line, as data (for the log and the tests). */
typedef struct fia_kernel_info {
    const char *family, *slot, *name, *tile;
    uint32_t features;
} fia_kernel_info;

extern const fia_kernel_info fia_kernel_registry[];
extern const size_t fia_kernel_registry_size;

/* The prototypes of every kernel, typed by their slot. */
#define FIA_KERNEL(family, slot, function, features, tile) fia_##family##_##slot##_fn function;
#include "kernels/registry.inc"
#undef FIA_KERNEL

/* Fills every slot of *set with the last registry line of that slot whose features are all in
 * features (the scalar line needs none, so no slot stays empty); each table's features are the
 * bits its kernels use and its name the highest of them. */
void fia_kernel_set_build(fia_kernel_set *set, uint32_t features);

/* Whether registry line i is the kernel in its slot of set. */
bool fia_kernel_set_uses(const fia_kernel_set *set, size_t i);

/* Prints every slot's choice to stderr ("fia: kernel core.gemm_f32 = fia_gemm_f32__avx512_12x32
 * (tile 12x32)"), for FIA_VERBOSE. */
void fia_kernel_set_log(const fia_kernel_set *set);

/* The distinct feature masks of the registry lines this CPU runs (features: fia_cpu_features()),
 * ascending, 0 (scalar) first: building a set from each of them reaches every variant. Writes
 * at most max masks and returns how many there are. */
size_t fia_kernel_variant_masks(uint32_t features, uint32_t *masks, size_t max);

#endif /* FIA_KERNELS_REGISTRY_H */
