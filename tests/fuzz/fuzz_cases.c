/*
 * fuzz_cases.c - libFuzzer target over the case descriptions of ref/case.h (zstd's fuzz-helper
 * shape): the input picks an operator with a builder (every operator of case.h), a dtype, a variant, the dims (small) and a
 * seed; the description builds the tensors (shapes outside the contract are refused by the
 * builder and skipped), the operator runs through the public API on a 2-thread context, and
 * every output must match the double-precision oracle under the tolerance table
 * (ref/tolerance.h). Calls the contract refuses (a scatter index out of range) must fail with
 * FIA_STATUS_INVALID_ARGUMENT and leave the target as it was. Anything else aborts.
 * FIA_FUZZ_VERBOSE=1 describes each call on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
/* fuzz_util.h serves every target: not every helper is used here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fuzz/fuzz_util.h"
#pragma GCC diagnostic pop
#include "ref/case.h"

static fia_context *g_ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx) {
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &g_ctx) != FIA_STATUS_SUCCESS) abort();
    }
    fz_seed(data, size);
    fz f = {data, size};
    int n = 0;
    const fia_case_desc *const *list = fia_case_list(&n);
    const fia_case_desc *d = list[u8(&f) % n];
    if (!d->build) return 0;
    static const fia_dtype dts[4] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT8};
    fia_case_shape s;
    memset(&s, 0, sizeof s);
    s.dtype = dts[u8(&f) % 4];
    s.variant = (int)(u8(&f) % 3);
    /* dims: mostly small, now and then one up to 4096 (the builders cap the element count) */
    for (int i = 0; i < 6; i++) s.dims[i] = u8(&f) % 8 == 0 ? rng(&f, 0, 4096) : rng(&f, 1, 12);
    const uint64_t seed = un(&f, 8);
    if (getenv("FIA_FUZZ_VERBOSE"))
        fprintf(stderr, "%s %s variant %d dims [%lld %lld %lld %lld %lld %lld] seed %llu\n", d->op,
                fia_dtype_name(s.dtype), s.variant, (long long)s.dims[0], (long long)s.dims[1],
                (long long)s.dims[2], (long long)s.dims[3], (long long)s.dims[4], (long long)s.dims[5],
                (unsigned long long)seed);
    /* keep an input fast under the sanitizers: the product of the dims (the attention oracles
     * cost B * N1 * S1 * S2 * D in double) at most 2^22, 2^20 for the attention operators */
    double work = 1;
    for (int i = 0; i < 6; i++) work *= (double)(s.dims[i] > 0 ? s.dims[i] : 1);
    static const char *const heavy[] = {"fused_infer_attention_score", "smallq_flash_attention",
                                        "sparse_flash_attention", "kv_quant_sparse_flash_attention",
                                        "lightning_indexer", "quant_lightning_indexer", "mla_prolog_v3"};
    int attention = 0;
    for (size_t i = 0; i < sizeof heavy / sizeof heavy[0]; i++) attention |= d == fia_case_find(heavy[i]);
    /* sparse attention: each selected token costs a 576-wide dot product the dims do not show */
    if (d == fia_case_find("sparse_flash_attention") || d == fia_case_find("kv_quant_sparse_flash_attention"))
        work *= 32;
    if (work > (double)(attention ? 1 << 20 : 1 << 22)) return 0;
    fia_case c;
    if (fia_case_build(&c, d->op, &s, seed) != 0) return 0;
    if (fia_case_prepare(&c) != 0) abort();
    const fia_status st = fia_case_run(&c, g_ctx);
    if (st == FIA_STATUS_UNSUPPORTED || st == FIA_STATUS_OUT_OF_MEMORY) { /* a limit, not a bug */
        fia_case_free(&c);
        return 0;
    }
    /* a built case is one the contract accepts, or (in-place targets, an index out of range) one
     * it refuses at execute time: only then may the call fail, and only as the oracle says */
    if (st != FIA_STATUS_SUCCESS && !(st == FIA_STATUS_INVALID_ARGUMENT && c.out[0].inplace)) {
        fprintf(stderr, "fuzz_cases: %s refused a built case: %s (%s)\n", d->op, fia_status_string(st),
                fia_last_error());
        abort();
    }
    const int orc = fia_case_oracle(&c);
    if (orc < 0) abort();
    if (orc == 1 ? st != FIA_STATUS_INVALID_ARGUMENT : st != FIA_STATUS_SUCCESS) {
        fprintf(stderr, "fuzz_cases: %s returned %s (%s); the oracle %s the call\n", d->op,
                fia_status_string(st), fia_last_error(), orc == 1 ? "refuses" : "accepts");
        abort();
    }
    fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
    if (fia_case_check(&c, 0, each) != 0) {
        for (int i = 0; i < c.n_out; i++)
            if (c.out[i].got) fia_ref_check_report(c.out[i].name, &each[i], fia_case_tolerance(&c, i, 0));
        fprintf(stderr, "fuzz_cases: %s differs from the oracle\n", d->op);
        abort();
    }
    fia_case_free(&c);
    return 0;
}
