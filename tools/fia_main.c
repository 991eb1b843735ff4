/*
 * fia_main.c - the `fia` command line: main, the subcommand table, `fia help` and
 * `fia --version`.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcommand {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
    void (*usage)(FILE *out);
} subcommand;

static const subcommand subcommands[] = {
    {"op", "run one operator on .npy files (fia op fused_infer_attention_score --help)", cmd_op,
     cmd_op_usage},
    {"demo", "Llama-3.1-8B prefill and decode, checked against the oracle, with the roofline",
     cmd_demo, cmd_demo_usage},
    {"bench", "benchmark cases with cold caches against the measured roofline", cmd_bench,
     cmd_bench_usage},
};

static const size_t n_subcommands = sizeof subcommands / sizeof subcommands[0];

static void usage(FILE *out) {
    fprintf(out, "fia %s - fused LLM-inference attention operators for CPUs\n\n"
                 "usage: fia COMMAND [flags]\n\ncommands:\n",
            fia_version_string());
    for (size_t i = 0; i < n_subcommands; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "  %-10s %s\n", "help", "this text, or 'fia help COMMAND' for one command");
    fprintf(out, "  %-10s %s\n", "--version", "print the version");
    fprintf(out, "\nenvironment: FIA_ISA=scalar|avx2|avx512, FIA_NUM_THREADS=N, FIA_VERBOSE=1\n");
}

static int help(int argc, char **argv) {
    if (argc < 2) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n_subcommands; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0) {
            subcommands[i].usage(stdout);
            return CLI_EXIT_OK;
        }
    }
    cli_error("unknown command '%s' (see 'fia help')", argv[1]);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("fia %s\n", fia_version_string());
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) return help(argc - 1, argv + 1);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n_subcommands; i++)
        if (strcmp(cmd, subcommands[i].name) == 0) return subcommands[i].run(argc - 1, argv + 1);
    cli_error("unknown command '%s' (see 'fia help')", cmd);
    return CLI_EXIT_USAGE;
}
