/*
 * cmd_bench.c - `fia bench [--json] [--filter TEXT] [--threads N] [--reps N]`.
 *
 * Measures the machine roofline (read bandwidth, fp32 FMA peak) in the same run, then times
 * every case of bench/cases.c whose name contains TEXT with cold caches (buffer copies rotated
 * beyond twice the last-level cache), planned once and executed many times. A short read probe
 * runs after every timed run, since a shared machine's bandwidth can change several-fold within
 * a second: the memory fraction is the median over runs of the run's GB/s over the larger of
 * the probes around it, and `read` is the median probe. Reports the median time, GB/s,
 * GFLOP/s and the fraction of the roofline, as a table or as one JSON object per line and case.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "cli.h"
#include "roofline.h"

void cmd_bench_usage(FILE *out) {
    fprintf(out,
            "usage: fia bench [--json] [--filter TEXT] [--threads N] [--reps N]\n\n"
            "  --json         one JSON object per line and case\n"
            "  --filter TEXT  only the cases whose name contains TEXT (=NAME: exactly NAME)\n"
            "  --threads N    threads of the context and of the roofline probes (default: all)\n"
            "  --reps N       timed runs per case (default: about 0.5 s worth, 5..1000)\n\n"
            "Bytes count K and V once plus Q and the output; FLOPs are 2*(D+Dv)*N1 per visible\n"
            "(query row, key) pair. roofline = max(GB/s / read GB/s, GFLOP/s / unit GFLOP/s),\n"
            "the read GB/s measured by a short probe after every run and the bandwidth side\n"
            "taken as the median of the per-run ratios (read: the median probe); unit: the\n"
            "compute unit of the path the library chose (fma, bf16dp = vdpbf16ps, vnni,\n"
            "amx_bf16, amx_int8), each probed in the same run.\n"
            "cases:\n");
    size_t n;
    const bench_case *cases = bench_cases(&n);
    for (size_t i = 0; i < n; i++) {
        char shape[128];
        cases[i].op->shape(&cases[i], shape, sizeof shape);
        fprintf(out, "  %-32s %s\n", cases[i].name, shape);
    }
}

/* Writes s as a JSON string (quotes included). */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int parse_positive(const char *flag, const char *text, int *out) {
    char *end = NULL;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0 || v > 1000000) {
        cli_error("%s: '%s' is not a count", flag, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* --filter: a substring of the case name, or "=NAME" for exactly NAME (bench/torch_peer.py). */
static int bench_name_matches(const char *name, const char *filter) {
    if (filter == NULL) return 1;
    if (filter[0] == '=') return strcmp(name, filter + 1) == 0;
    return strstr(name, filter) != NULL;
}

/* Measures the roofline with the context's thread count, while no context exists (so its
 * workers cannot compete with the probe threads). */
int cli_measure_roofline(int32_t threads, roofline *r, roofline_probe **probe,
                         int32_t *ctx_threads, fia_isa *isa) {
    fia_context_options opts = {threads, FIA_ISA_AUTO};
    fia_context *ctx = NULL;
    const fia_status s = fia_context_create(&opts, &ctx);
    if (s != FIA_STATUS_SUCCESS) {
        cli_error("%s", fia_last_error()[0] != '\0' ? fia_last_error() : fia_status_string(s));
        return CLI_EXIT_USAGE;
    }
    *ctx_threads = fia_context_num_threads(ctx);
    *isa = fia_context_isa(ctx);
    fia_context_destroy(ctx);
    char err[256];
    if (roofline_measure(*ctx_threads, r, err, sizeof err) != 0 ||
        (*probe = roofline_probe_create(r, err, sizeof err)) == NULL) {
        cli_error("%s", err);
        return CLI_EXIT_FAIL;
    }
    return CLI_EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
    int json = 0, reps = 0, threads = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cmd_bench_usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(a, "--filter") == 0 || strcmp(a, "--threads") == 0 ||
                   strcmp(a, "--reps") == 0) {
            if (i + 1 >= argc) {
                cli_error("%s needs a value", a);
                return CLI_EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (strcmp(a, "--filter") == 0)
                filter = v;
            else if (parse_positive(a, v, strcmp(a, "--reps") == 0 ? &reps : &threads) != 0)
                return CLI_EXIT_USAGE;
        } else {
            cli_error("unknown flag '%s' for bench (see 'fia help bench')", a);
            return CLI_EXIT_USAGE;
        }
    }

    size_t n_cases;
    const bench_case *cases = bench_cases(&n_cases);
    int selected = 0;
    for (size_t i = 0; i < n_cases; i++)
        if (bench_name_matches(cases[i].name, filter)) selected++;
    if (selected == 0) {
        cli_error("--filter: no case name contains '%s' (see 'fia help bench')", filter);
        return CLI_EXIT_USAGE;
    }

    roofline rl;
    int32_t n_threads = 0;
    fia_isa isa = FIA_ISA_AUTO;
    roofline_probe *probe = NULL;
    int rc = cli_measure_roofline(threads, &rl, &probe, &n_threads, &isa);
    if (rc != CLI_EXIT_OK) return rc;
    fia_context_options opts = {threads, FIA_ISA_AUTO};
    fia_context *ctx = NULL;
    if (fia_context_create(&opts, &ctx) != FIA_STATUS_SUCCESS) {
        cli_error("%s", fia_last_error());
        roofline_probe_destroy(probe);
        return CLI_EXIT_USAGE;
    }
    if (!json) {
        printf("fia %s bench: kernels %s, %d threads\n", fia_version_string(), fia_isa_name(isa),
               (int)n_threads);
        printf("roofline (measured now, %s probes): read %.1f GB/s (%zu MiB buffer), fp32 FMA "
               "%.1f GFLOP/s; LLC %zu MiB\n",
               rl.isa, rl.read_gbps, rl.buffer_bytes >> 20, rl.fma_gflops, rl.llc_bytes >> 20);
        printf("compute units (same run; 0: absent): bf16 dot product (vdpbf16ps) %.1f GFLOP/s, "
               "int8 dot product (VNNI) %.1f GOP/s, AMX bf16 %.1f GFLOP/s, AMX int8 %.1f GOP/s\n"
               "each case's compute side is judged against the unit its fastest path uses "
               "(column 'unit')\n\n",
               rl.bf16dp_gflops, rl.vnni_gops, rl.amx_bf16_gflops, rl.amx_int8_gops);
        printf("%-31s %-40s %10s %8s %8s %9s %7s %6s %7s %9s\n", "case", "shape", "median", "GB/s",
               "GFLOP/s", "roofline", "bound", "runs", "read", "unit");
    }
    fflush(stdout);

    for (size_t i = 0; i < n_cases; i++) {
        const bench_case *c = &cases[i];
        if (!bench_name_matches(c->name, filter)) continue;
        bench_result res;
        char err[512];
        char shape[128];
        c->op->shape(c, shape, sizeof shape);
        if (bench_run_case(c, ctx, &rl, reps, 0.5, probe, &res, NULL, err, sizeof err) != 0) {
            rc = CLI_EXIT_FAIL;
            if (json) {
                printf("{\"op\":");
                json_string(stdout, c->op->op);
                printf(",\"case\":");
                json_string(stdout, c->name);
                printf(",\"error\":");
                json_string(stdout, err);
                printf("}\n");
            } else {
                printf("%-31s %-40s error: %s\n", c->name, shape, err);
            }
            fflush(stdout);
            continue;
        }
        /* The memory side against the bandwidth measured around each run (bench_run_case),
         * the compute side against the peak of the unit the library's path uses; the larger
         * binds. */
        const double f_cmp = res.unit_fraction;
        const double frac = res.mem_fraction >= f_cmp ? res.mem_fraction : f_cmp;
        const char *bound = res.mem_fraction >= f_cmp ? "memory" : "compute";
        const double gbps = res.bytes / res.seconds * 1e-9;
        const double gflops = res.flops / res.seconds * 1e-9;
        if (json) {
            char params[1024];
            c->op->params_json(c, params, sizeof params);
            printf("{\"op\":");
            json_string(stdout, c->op->op);
            printf(",\"case\":");
            json_string(stdout, c->name);
            printf(",\"params\":%s,\"seconds\":%.9g,\"bytes\":%.0f,\"flops\":%.0f,"
                   "\"read_gbps\":%.4g,\"fma_gflops\":%.4g,\"gbps\":%.4g,\"gflops\":%.4g,"
                   "\"roofline_fraction\":%.4g,\"bound\":\"%s\",\"min_seconds\":%.9g,"
                   "\"reps\":%d,\"copies\":%d,\"threads\":%d,\"isa\":\"%s\","
                   "\"unit\":\"%s\",\"unit_gflops\":%.4g,\"unit_fraction\":%.4g,"
                   "\"fma_fraction\":%.4g,\"mem_fraction\":%.4g,\"bf16dp_gflops\":%.4g,"
                   "\"vnni_gops\":%.4g,\"amx_bf16_gflops\":%.4g,\"amx_int8_gops\":%.4g}\n",
                   params, res.seconds, res.bytes, res.flops, res.read_gbps, rl.fma_gflops, gbps,
                   gflops, frac, bound, res.min_seconds, res.reps, res.copies, (int)n_threads,
                   fia_isa_name(isa), res.unit, res.unit_peak, res.unit_fraction,
                   res.fma_fraction, res.mem_fraction, rl.bf16dp_gflops, rl.vnni_gops,
                   rl.amx_bf16_gflops, rl.amx_int8_gops);
        } else {
            printf("%-31s %-40s %7.3f ms %8.1f %8.1f %8.1f%% %7s %6d %7.1f %9s\n", c->name, shape,
                   res.seconds * 1e3, gbps, gflops, frac * 100.0, bound, res.reps, res.read_gbps,
                   res.unit);
        }
        fflush(stdout);
    }
    roofline_probe_destroy(probe);
    fia_context_destroy(ctx);
    return rc;
}
