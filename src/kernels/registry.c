/*
 * registry.c - builds a context's kernel set from registry.inc and the CPU features; logs the
 * choice; lists the variants for the tests. ISA-free (no ISA flags): it only takes addresses.
 */
#include <stdio.h>
#include <string.h>

#include "kernels/registry.h"

#define FIA_KERNEL(family, slot, function, features, tile) \
    {#family, #slot, #function, tile, (uint32_t)(features)},
const fia_kernel_info fia_kernel_registry[] = {
#include "kernels/registry.inc"
};
#undef FIA_KERNEL
const size_t fia_kernel_registry_size = sizeof fia_kernel_registry / sizeof fia_kernel_registry[0];

const char *fia_cpu_feature_name(uint32_t mask) {
    static const char *const names[] = {"avx2",       "avx512",   "avx512vnni", "avx512bf16",
                                        "avx512fp16", "amx-bf16", "amx-int8"};
    const char *name = "scalar";
    for (unsigned b = 0; b < sizeof names / sizeof names[0]; b++)
        if (mask & (1u << b)) name = names[b];
    return name;
}

void fia_kernel_set_build(fia_kernel_set *set, uint32_t features) {
    memset(set, 0, sizeof *set);
    /* every slot: the last line whose features are all present */
#define FIA_KERNEL(family, slot, function, need, tile) \
    if (((uint32_t)(need) & ~features) == 0u) set->family.slot = function;
#include "kernels/registry.inc"
#undef FIA_KERNEL
    /* every table: the features of the kernels it holds, and their name */
#define FIA_KERNEL(family, slot, function, need, tile)                      \
    if (set->family.slot == function) set->family.features |= (uint32_t)(need); \
    set->family.name = fia_cpu_feature_name(set->family.features);
#include "kernels/registry.inc"
#undef FIA_KERNEL
}

bool fia_kernel_set_uses(const fia_kernel_set *set, size_t i) {
    size_t line = 0;
#define FIA_KERNEL(family, slot, function, need, tile) \
    if (line++ == i) return set->family.slot == function;
#include "kernels/registry.inc"
#undef FIA_KERNEL
    return false;
}

void fia_kernel_set_log(const fia_kernel_set *set) {
    for (size_t i = 0; i < fia_kernel_registry_size; i++) {
        const fia_kernel_info *k = &fia_kernel_registry[i];
        if (fia_kernel_set_uses(set, i))
            fprintf(stderr, "fia: kernel %s.%s = %s (tile %s)\n", k->family, k->slot, k->name,
                    k->tile);
    }
}

size_t fia_kernel_variant_masks(uint32_t features, uint32_t *masks, size_t max) {
    size_t n = 0;
    for (uint32_t m = 0; m <= FIA_CPU_ALL; m++) {
        if (m & ~features) continue;
        bool used = false;
        for (size_t i = 0; i < fia_kernel_registry_size && !used; i++)
            used = fia_kernel_registry[i].features == m;
        if (!used) continue;
        if (n < max) masks[n] = m;
        n++;
    }
    return n;
}
