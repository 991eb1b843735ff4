/*
 * contexts.h - one context per ISA the CPU has (3 threads) plus a 1-thread context of the best
 * ISA for the determinism checks: what the chain tests (chain_util.h) and test_cases share.
 * Public API only.
 */
#ifndef FIA_TESTS_CONTEXTS_H
#define FIA_TESTS_CONTEXTS_H

#include <stdio.h>

#include "fia.h"
#include "test_util.h"

static fia_context *g_ctx[4];
static fia_isa g_isa[4];
static int g_nctx;
static fia_context *g_ctx1; /* best ISA, 1 thread: determinism */

static void open_contexts(void) {
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        fia_context_options o = {3, levels[i]};
        fia_context *ctx = NULL;
        const fia_status st = fia_context_create(&o, &ctx);
        if (st == FIA_STATUS_UNSUPPORTED_ISA) continue;
        if (!tu_check(st == FIA_STATUS_SUCCESS, "context %s", fia_isa_name(levels[i]))) continue;
        g_ctx[g_nctx] = ctx;
        g_isa[g_nctx++] = levels[i];
    }
    fia_context_options o1 = {1, g_isa[g_nctx - 1]};
    tu_check(fia_context_create(&o1, &g_ctx1) == FIA_STATUS_SUCCESS, "1-thread context");
    printf("testing ISAs:");
    for (int i = 0; i < g_nctx; i++) printf(" %s", fia_isa_name(g_isa[i]));
    printf("\n");
}

/* Closes the contexts of open_contexts. */
static void close_contexts(void) {
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    fia_context_destroy(g_ctx1);
}

#endif /* FIA_TESTS_CONTEXTS_H */
