/*
 * test_cases.c - every case description of ref/case.h with a builder, run the way ggml's
 * test-backend-ops runs its test cases: for a list of shapes, dtypes and variants per operator
 * and a few seeds, build the tensors, run the oracle, run the operator through the public API on
 * every ISA context the CPU has (3 threads) and once on 1 thread, run the oracle (the in-place
 * targets snapshotted before the run), and compare every output with
 * the tolerance table (ref/tolerance.h). Calls the contract refuses (a scatter index out of
 * range) must fail with FIA_STATUS_INVALID_ARGUMENT and leave the target as it was. The 1-thread
 * run must give the same bytes as the 3-thread runs (determinism).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contexts.h"
#include "fia.h"
#include "ref/case.h"

/* dtypes: a mask of the dtypes to run (bit 0 float32, 1 float16, 2 bfloat16, 3 int8; 0: the
 * three float dtypes) */
typedef struct tcase {
    const char *op;
    int64_t dims[6];
    int variant;
    unsigned dtypes;
} tcase;

#define F16BF16 6u
#define BF16 4u

static const tcase g_cases[] = {
    {"rms_norm", {1, 1}, 0, 0},          {"rms_norm", {3, 7}, 0, 0},           {"rms_norm", {5, 7168}, 0, 0},
    {"add_rms_norm", {1, 1}, 0, 0},      {"add_rms_norm", {4, 130}, 0, 0},     {"add_rms_norm", {3, 7168}, 0, 0},
    {"rotary_mul", {2, 3, 64}, 0, 0},    {"rotary_mul", {1, 1, 2}, 1, 0},      {"rotary_mul", {5, 4, 128}, 1, 0},
    {"rotary_mul", {3, 2, 894}, 0, 0},   {"interleave_rope", {2, 3, 64}, 0, 0}, {"interleave_rope", {3, 2, 6}, 0, 0},
    {"dynamic_quant", {4, 33}, 0, 0},    {"dynamic_quant", {1, 7}, 1, 0},      {"dynamic_quant", {8, 256}, 2, 0},
    {"dynamic_quant", {3, 7168}, 0, 0},  {"scatter_update", {2, 8, 16, 3}, 0, 0}, {"scatter_update", {1, 1, 5, 1}, 0, 0},
    {"scatter_update", {3, 9, 4, 2}, 1, 0}, {"scatter_nd_update", {10, 16, 4}, 0, 0},
    {"scatter_nd_update", {4, 16, 8, 5}, 1, 0}, {"scatter_nd_update", {10, 16, 4}, 2, 0},
    {"fused_infer_attention_score", {1, 1, 100, 8, 2, 64}, 1, 0},
    {"fused_infer_attention_score", {2, 5, 37, 4, 4, 24}, 0, 0},
    {"fused_infer_attention_score", {1, 3, 3, 2, 1, 128}, 1, 0},
    /* bf16 prefill: the AMX tiles where the CPU has them (GQA 4 / MHA / GQA 8, lengths not
     * multiples of 16 or 32, several key steps) */
    {"fused_infer_attention_score", {2, 19, 130, 4, 1, 64}, 1, BF16},
    {"fused_infer_attention_score", {1, 33, 37, 2, 2, 64}, 1, BF16},
    {"fused_infer_attention_score", {1, 5, 150, 8, 1, 128}, 0, BF16},
    {"smallq_flash_attention", {4, 2, 300, 128}, 0, 2u}, {"smallq_flash_attention", {1, 1, 1, 576}, 0, 2u},
    {"gather_selection_kv_cache", {2, 3, 4, 2, 16, 8}, 0, F16BF16},
    {"gather_selection_kv_cache", {1, 2, 40, 1, 8, 4}, 1, F16BF16},
    {"gather_selection_kv_cache", {2, 2, 5, 3, 32, 16}, 0, 8u},
    {"sparse_flash_attention", {2, 3, 40, 4, 12, 1}, 0, F16BF16},
    {"sparse_flash_attention", {3, 1, 70, 16, 24, 16}, 1, F16BF16},
    {"sparse_flash_attention", {1, 4, 50, 3, 10, 4}, 2, F16BF16},
    {"kv_quant_sparse_flash_attention", {2, 2, 40, 4, 12, 1}, 0, F16BF16},
    {"kv_quant_sparse_flash_attention", {2, 1, 64, 8, 20, 16}, 1, F16BF16},
    {"lightning_indexer", {2, 3, 40, 4, 32, 16}, 0, F16BF16},
    {"lightning_indexer", {2, 1, 70, 8, 64, 24}, 1, F16BF16},
    {"lightning_indexer", {1, 5, 20, 3, 16, 30}, 2, F16BF16},
    {"quant_lightning_indexer", {2, 3, 40, 4, 32, 16}, 0, F16BF16},
    {"quant_lightning_indexer", {2, 1, 70, 8, 64, 24}, 1, 1u},
    /* sparse_values in fp16 subnormals (fuzz_cases input KwFB) */
    {"quant_lightning_indexer", {5, 6, 11, 1, 1, 10}, 2, F16BF16},
    {"mla_prolog_v3", {3, 96, 48, 2, 16, 4}, 0, BF16},
    {"mla_prolog_v3", {2, 64, 32, 3, 8, 1}, 1, BF16},
    /* tiny Hcq: a one-ulp flip of the bf16 c_q moves q_r visibly (fuzz_cases input OyoVcA==) */
    {"mla_prolog_v3", {1626, 11, 9, 1, 1, 5}, 0, BF16},
};

/* The bytes of every output of c (for the determinism comparison); caller frees. */
static unsigned char *output_bytes(const fia_case *c, size_t *len) {
    size_t n = 0;
    for (int i = 0; i < c->n_out; i++)
        if (c->out[i].got) n += (size_t)fia_tensor_numel(c->out[i].got) * fia_dtype_size(c->out[i].got->dtype);
    unsigned char *b = malloc(n ? n : 1), *p = b;
    for (int i = 0; b && i < c->n_out; i++) {
        if (!c->out[i].got) continue;
        const size_t k = (size_t)fia_tensor_numel(c->out[i].got) * fia_dtype_size(c->out[i].got->dtype);
        memcpy(p, c->out[i].got->data, k); /* built tensors are compact */
        p += k;
    }
    *len = n;
    return b;
}

static void run_one(const tcase *tc, fia_dtype dt, uint64_t seed) {
    char desc[200];
    snprintf(desc, sizeof desc, "%s %s [%lld %lld %lld %lld %lld %lld] variant %d seed %llu", tc->op,
             fia_dtype_name(dt), (long long)tc->dims[0], (long long)tc->dims[1], (long long)tc->dims[2],
             (long long)tc->dims[3], (long long)tc->dims[4], (long long)tc->dims[5], tc->variant,
             (unsigned long long)seed);
    fia_case_shape s;
    memset(&s, 0, sizeof s);
    memcpy(s.dims, tc->dims, sizeof s.dims);
    s.dtype = dt;
    s.variant = tc->variant;
    unsigned char *first = NULL;
    size_t first_len = 0;
    for (int k = 0; k <= g_nctx; k++) {
        fia_context *ctx = k < g_nctx ? g_ctx[k] : g_ctx1;
        const char *isa = k < g_nctx ? fia_isa_name(g_isa[k]) : "1 thread";
        fia_case c; /* rebuilt per context: the in-place operators update their target */
        if (!tu_check(fia_case_build(&c, tc->op, &s, seed) == 0, "%s: build", desc)) return;
        if (!tu_check(fia_case_prepare(&c) == 0, "%s: prepare", desc)) {
            fia_case_free(&c);
            break;
        }
        const fia_status st = fia_case_run(&c, ctx);
        const int orc = fia_case_oracle(&c);
        if (!tu_check(orc >= 0, "%s: oracle", desc)) {
            fia_case_free(&c);
            break;
        }
        if (orc == 1) {
            tu_check(st == FIA_STATUS_INVALID_ARGUMENT, "%s %s: refused call returned %s", desc, isa,
                     fia_status_string(st));
        } else {
            tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, isa, fia_last_error());
        }
        fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
        const int64_t bad = fia_case_check(&c, 0, each);
        for (int i = 0; i < c.n_out && bad; i++)
            if (each[i].failures) fia_ref_check_report(c.out[i].name, &each[i], fia_case_tolerance(&c, i, 0));
        tu_check(bad == 0, "%s %s: %lld elements outside tolerance", desc, isa, (long long)bad);
        size_t len = 0;
        unsigned char *bytes = output_bytes(&c, &len);
        if (k == 0) { /* the comparison sees a wrong element: a NaN in the first float output */
            for (int i = 0; i < c.n_out; i++) {
                fia_tensor *g = c.out[i].got;
                if (!g || fia_tensor_numel(g) == 0 || g->dtype == FIA_DTYPE_INT8 || g->dtype == FIA_DTYPE_INT32 ||
                    g->dtype == FIA_DTYPE_INT64)
                    continue;
                memset(g->data, 0xFF, fia_dtype_size(g->dtype));
                tu_check(fia_case_check(&c, 0, NULL) >= 1, "%s: a NaN in %s passes the check", desc, c.out[i].name);
                break;
            }
        }
        if (k == g_nctx - 1) first = bytes, first_len = len; /* the best ISA on 3 threads */
        else {
            if (k == g_nctx)
                tu_check(bytes && first && len == first_len && memcmp(bytes, first, len) == 0,
                         "%s: 1 thread differs from 3 threads", desc);
            free(bytes);
        }
        fia_case_free(&c);
    }
    free(first);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261204, "test_cases");
    open_contexts();
    const fia_dtype dts[4] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT8};
    for (size_t i = 0; i < sizeof g_cases / sizeof g_cases[0]; i++)
        for (int d = 0; d < 4; d++) {
            const fia_dtype dt = dts[d];
            if (!((g_cases[i].dtypes ? g_cases[i].dtypes : 7u) >> d & 1u)) continue;
            for (uint64_t s = 0; s < 2; s++) run_one(&g_cases[i], dt, seed + 7919 * s + i);
        }
    /* the tolerance table keeps the values its clients used (ref/tolerance.c lists them) */
    static const struct { const char *op, *out; fia_dtype dt; double atol, rtol; } rows[] = {
        {"fused_infer_attention_score", "attention_out", FIA_DTYPE_FLOAT32, 1e-6, 1e-5},
        {"fused_infer_attention_score", "attention_out", FIA_DTYPE_FLOAT16, 1e-3, 5e-3},
        {"fused_infer_attention_score", "softmax_lse", FIA_DTYPE_FLOAT32, 1e-5, 1e-5},
        {"fused_infer_attention_score", NULL, FIA_DTYPE_FLOAT32, 1e-5, 1e-5},
        {"fused_infer_attention_score/mla", "attention_out", FIA_DTYPE_FLOAT32, 1e-5, 1e-5},
        {"fused_infer_attention_score/mla", "softmax_lse", FIA_DTYPE_FLOAT32, 1e-4, 1e-4},
        {"fused_infer_attention_score/mla_int8", "attention_out", FIA_DTYPE_BFLOAT16, 2e-2, 2e-2},
        {"sparse_flash_attention", "softmax_lse", FIA_DTYPE_FLOAT32, 1e-4, 1e-5},
        {"rms_norm", "rstd", FIA_DTYPE_FLOAT32, 1e-3, 5e-3},
        {"rms_norm", NULL, FIA_DTYPE_FLOAT32, 1e-5, 1e-5},
        {"add_rms_norm", "x", FIA_DTYPE_BFLOAT16, 1e-5, 1e-5},
        {"dynamic_quant", "scale", FIA_DTYPE_FLOAT32, 1e-30, 1e-5},
        {"dynamic_quant", NULL, FIA_DTYPE_FLOAT32, 0.0, 1e-5},
        {"rotary_mul", "y", FIA_DTYPE_BFLOAT16, 1e-3, 5e-3},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const fia_ref_tolerance *t = fia_ref_tolerance_of(rows[i].op, rows[i].out, rows[i].dt);
        tu_check(t->rule == FIA_REF_TOL_CLOSE && t->atol == rows[i].atol && t->rtol == rows[i].rtol,
                 "tolerance of %s %s %s: %g + %g", rows[i].op, rows[i].out ? rows[i].out : "(op-wide)",
                 fia_dtype_name(rows[i].dt), t->atol, t->rtol);
    }
    tu_check(fia_ref_tolerance_of("dynamic_quant", "y", FIA_DTYPE_INT8)->rule == FIA_REF_TOL_INT_TIES &&
                 fia_ref_tolerance_of("scatter_nd_update", "input", FIA_DTYPE_BFLOAT16)->rule == FIA_REF_TOL_EXACT,
             "tolerance rules of the integer and in-place outputs");
    /* a description without a builder, and a shape outside the contract, refuse to build */
    fia_case c;
    fia_case_shape bad;
    memset(&bad, 0, sizeof bad);
    bad.dtype = FIA_DTYPE_FLOAT16;
    tu_check(fia_case_build(&c, "sparse_flash_attention", &bad, 1) == -1, "sparse_flash_attention: zero dims");
    bad.dims[0] = 2, bad.dims[1] = 3, bad.dims[2] = 5; /* odd D */
    tu_check(fia_case_build(&c, "rotary_mul", &bad, 1) == -1, "rotary_mul: odd D refused by the builder");
    tu_check(fia_case_build(&c, "no_such_op", &bad, 1) == -1, "unknown op");
    close_contexts();
    return tu_summary();
}
