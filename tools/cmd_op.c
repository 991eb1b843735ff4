/*
 * cmd_op.c - `fia op NAME --flag value ...`: runs one operator on .npy files.
 *
 * The operator table in this file maps a name to its flag table, its output names and its
 * handler, each operator in its own file (tools/op_<name>.c); the generic parser (cli_args.c)
 * turns argv into a cli_args for the handler (and handles --threads, --check, --out NAME=PATH
 * and --help for every operator). A handler loads its tensors, allocates the outputs with the
 * shapes of the operator contract, calls the library, optionally compares with the
 * double-precision oracle, and only then writes the outputs (temporary names renamed into
 * place). Any bad input ends with exit status 2 and one line on stderr.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* ---------------------------------------------------------------------------------------- */
/* The operator table: one entry per operator                                               */
/* ---------------------------------------------------------------------------------------- */

static const cli_op *const ops[] = {
    &cli_op_fused_infer_attention_score,
    &cli_op_smallq_flash_attention,
    &cli_op_sparse_flash_attention,
    &cli_op_kv_quant_sparse_flash_attention,
    &cli_op_lightning_indexer,
    &cli_op_quant_lightning_indexer,
    &cli_op_rms_norm,
    &cli_op_add_rms_norm,
    &cli_op_rotary_mul,
    &cli_op_interleave_rope,
    &cli_op_dynamic_quant,
    &cli_op_scatter_update,
    &cli_op_scatter_nd_update,
    &cli_op_gather_selection_kv_cache,
    &cli_op_mla_prolog_v3,
};

static const size_t n_ops = sizeof ops / sizeof ops[0];

void cmd_op_usage(FILE *out) {
    fprintf(out, "usage: fia op OPERATOR --flag value ... --out NAME=PATH [--check]\n\n"
                 "operators:\n");
    for (size_t i = 0; i < n_ops; i++) fprintf(out, "  %-30s %s\n", ops[i]->name, ops[i]->summary);
    fprintf(out, "\n'fia op OPERATOR --help' lists an operator's flags. Tensors are .npy files "
                 "(append :bf16 to read a\nuint16 array as bfloat16); bf16 outputs are written "
                 "as uint16 .npy, and --out NAME=PATH:bf16\nwrites a float output as bfloat16 "
                 "(uint16 .npy) under PATH. Exit status: 0 ok,\n1 check failed, 2 bad input or the library "
                 "refused the call.\n");
}

int cmd_op(int argc, char **argv) {
    if (argc < 2) {
        cli_error("missing the operator name (see 'fia op --help')");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cmd_op_usage(stdout);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < n_ops; i++) {
        if (strcmp(argv[1], ops[i]->name) != 0) continue;
        cli_args args;
        const int r = cli_parse_args(ops[i], argc - 2, argv + 2, &args);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) {
            cli_op_usage(ops[i], stdout);
            return CLI_EXIT_OK;
        }
        return ops[i]->run(&args);
    }
    cli_error("unknown operator '%s' (see 'fia op --help')", argv[1]);
    return CLI_EXIT_USAGE;
}
