/*
 * cmd_demo.c - `fia demo` (what `make run` shows): fused_infer_attention_score on Llama-3.1-8B
 * attention shapes (32 query heads, 8 kv heads, head dim 128, float16, BSND): a causal prefill of
 * 2048 tokens (sparse_mode 3) and decode steps at 4K and 16K context; then smallq_flash_attention
 * (32 heads, head dim 128, float16) with 1, 2, 4 and 8 query tokens at 16K context (decode,
 * multi-token prediction, speculative decoding); MLA decode (DeepSeek-V3: 128 heads, latent
 * 512 + rope 64, bf16 and int8); then one DeepSeek-V3.2 decode step at 32K and 128K context,
 * dense MLA next to lightning indexer + sparse flash attention (demo_dsa.c). It measures the
 * machine roofline in the same run, times each case with cold caches, checks a sample of every
 * output against the double-precision oracle, and prints the tables. About a minute in all.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "cli.h"
#include "roofline.h"

void cmd_demo_usage(FILE *out) {
    fprintf(out,
            "usage: fia demo [--threads N]\n\n"
            "Runs fused_infer_attention_score on Llama-3.1-8B shapes (32/8 heads, head dim 128,\n"
            "float16): a causal prefill of 2048 tokens and decode steps at 4K and 16K context;\n"
            "smallq_flash_attention (32 heads, head dim 128, float16) with 1, 2, 4 and 8 query\n"
            "tokens at 16K context; MLA decode (128 heads, latent 512 + rope 64, bf16 and int8);\n"
            "then a DeepSeek-V3.2 decode step at 32K and 128K context, dense MLA next to the\n"
            "lightning indexer + sparse flash attention. Prints time, GB/s, GFLOP/s and the\n"
            "fraction of the roofline measured in the same run, and checks a sample of each\n"
            "output against the double-precision oracle. Exit status 1 when a check fails.\n");
}

int cmd_demo(int argc, char **argv) {
    int32_t threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            cmd_demo_usage(stdout);
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            char *end = NULL;
            const long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || v < 0 || v > 1024) {
                cli_error("--threads: '%s' is not a thread count", argv[i]);
                return CLI_EXIT_USAGE;
            }
            threads = (int32_t)v;
            continue;
        }
        cli_error("unknown flag '%s' for demo (see 'fia help demo')", argv[i]);
        return CLI_EXIT_USAGE;
    }

    printf("fia %s demo: fused_infer_attention_score on Llama-3.1-8B attention\n"
           "(32 query heads, 8 kv heads, head dim 128, float16, BSND; prefill causal "
           "sparse_mode 3),\nthen smallq_flash_attention (32 heads, head dim 128, float16; "
           "1, 2, 4, 8 query tokens at 16K context),\nMLA decode (DeepSeek-V3: 128 heads, latent "
           "512 + rope 64) and the DeepSeek-V3.2 sparse attention chain\n",
           fia_version_string());
    fflush(stdout);
    roofline rl;
    int32_t n_threads = 0;
    fia_isa isa = FIA_ISA_AUTO;
    roofline_probe *probe = NULL;
    int rc = cli_measure_roofline(threads, &rl, &probe, &n_threads, &isa);
    if (rc != CLI_EXIT_OK) return rc;
    printf("machine: kernels %s, %d threads; roofline measured now: read %.1f GB/s, "
           "fp32 FMA %.1f GFLOP/s (LLC %zu MiB)\n\n",
           fia_isa_name(isa), (int)n_threads, rl.read_gbps, rl.fma_gflops, rl.llc_bytes >> 20);
    printf("%-28s %-38s %11s %7s %8s %8s %8s  %s\n", "case", "shape", "time", "GB/s",
           "GFLOP/s", "%GB/s", "%FMA", "check vs oracle");
    fflush(stdout);

    fia_context_options opts = {threads, FIA_ISA_AUTO};
    fia_context *ctx = NULL;
    if (fia_context_create(&opts, &ctx) != FIA_STATUS_SUCCESS) {
        cli_error("%s", fia_last_error());
        roofline_probe_destroy(probe);
        return CLI_EXIT_USAGE;
    }
    size_t n_cases;
    const bench_case *cases = bench_cases(&n_cases);
    int failed = 0;
    for (size_t i = 0; i < n_cases; i++) {
        const bench_case *c = &cases[i];
        if (!c->demo) continue;
        char shape[128], err[512];
        c->op->shape(c, shape, sizeof shape);
        bench_result res;
        bench_check chk;
        if (bench_run_case(c, ctx, &rl, 0, 0.3, probe, &res, &chk, err, sizeof err) != 0) {
            printf("%-28s %-34s error: %s\n", c->name, shape, err);
            fflush(stdout);
            failed = 1;
            continue;
        }
        /* Both fractions of the roofline; '*' marks the binding one (the larger). */
        const double gbps = res.bytes / res.seconds * 1e-9;
        const double gflops = res.flops / res.seconds * 1e-9;
        const double f_bw = res.mem_fraction; /* against the probes around each run */
        const double f_fma = res.fma_fraction;
        char bw[16], fma[16];
        snprintf(bw, sizeof bw, "%.1f%%%s", f_bw * 100.0, f_bw >= f_fma ? "*" : " ");
        snprintf(fma, sizeof fma, "%.1f%%%s", f_fma * 100.0, f_fma > f_bw ? "*" : " ");
        printf("%-28s %-38s %8.3f ms %7.1f %8.1f %8s %8s  %s (max err %.2g; %s)\n", c->name,
               shape, res.seconds * 1e3, gbps, gflops, bw, fma, chk.passed ? "pass" : "FAIL",
               chk.max_abs_err, chk.detail);
        fflush(stdout);
        if (!chk.passed) failed = 1;
    }
    roofline_probe_destroy(probe);
    const int dsa = demo_dsa(ctx);
    if (dsa != 0) failed = 1;
    fia_context_destroy(ctx);
    printf("\ntime: median of cold-cache runs (buffers rotated beyond 2x LLC). %%GB/s: fraction of "
           "the read bandwidth\nmeasured around each run (the decode and SmallQ roofline), %%FMA: "
           "fraction of the fp32 FMA\npeak (the prefill and MLA roofline); * marks the binding "
           "bound. int8 cases count the FLOPs of the\nfloat formula but run on int8 dot products "
           "(4x the fp32 FMA rate), hence above 100%%. Oracle:\ndouble precision, atol 1e-3 + "
           "rtol 5e-3 (int8 MLA: 2e-2 + 2e-2); prefill rows, SmallQ and MLA heads\nsampled.\n");
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
