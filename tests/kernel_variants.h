/*
 * kernel_variants.h - the kernel variants this CPU runs, for the kernel tests (XNNPACK's
 * per-kernel tests, driven by the registry): one kernel set per distinct feature mask of the
 * registry lines the CPU runs (kernels/registry.h), the scalar set being the reference.
 */
#ifndef FIA_TESTS_KERNEL_VARIANTS_H
#define FIA_TESTS_KERNEL_VARIANTS_H

#include <stddef.h>
#include <string.h>

#include "kernels/registry.h"

typedef struct tu_kernel_variant {
    fia_kernel_set set;
    uint32_t features; /* the mask the set was built from */
} tu_kernel_variant;

/* The all-scalar set: the reference of every kernel test. */
static inline const fia_kernel_set *tu_scalar_kernels(void) {
    static fia_kernel_set s;
    static int built;
    if (!built) fia_kernel_set_build(&s, 0), built = 1;
    return &s;
}

/* The sets whose table of one family (bytes [off, off + size) of the set, name first) differs
 * from the scalar one and from every earlier set: every non-scalar kernel of that family this
 * CPU runs is in one of them. Writes at most max and returns how many there are. */
static inline int tu_kernel_variants(size_t off, size_t size, tu_kernel_variant *v, int max) {
    uint32_t masks[128];
    const size_t nm = fia_kernel_variant_masks(fia_cpu_features(), masks, 128);
    const size_t skip = sizeof(const char *); /* the table's name */
    int n = 0;
    for (size_t i = 0; i < nm && n < max; i++) {
        fia_kernel_set_build(&v[n].set, masks[i]);
        v[n].features = masks[i];
        const char *mine = (const char *)&v[n].set + off + skip;
        int seen = !memcmp(mine, (const char *)tu_scalar_kernels() + off + skip, size - skip);
        for (int j = 0; j < n && !seen; j++)
            seen = !memcmp(mine, (const char *)&v[j].set + off + skip, size - skip);
        if (!seen) n++;
    }
    return n;
}

#define TU_KERNEL_VARIANTS(family, v, max)                                                      \
    tu_kernel_variants(offsetof(fia_kernel_set, family), sizeof(((fia_kernel_set *)0)->family), \
                       v, max)

#endif /* FIA_TESTS_KERNEL_VARIANTS_H */
