/*
 * cli.h - declarations shared by the files of the `fia` command line: the subcommands, the
 * operator table of `fia op`, the generic flag parser and the helpers every subcommand uses
 * (one-line errors, exit codes, tolerances, the oracle comparison).
 *
 * Adding an operator to `fia op`: write a handler `int run_<op>(const cli_args *args)` and its
 * flag table, and append one cli_op entry to the table in cmd_op.c. The generic parser handles
 * --threads, --check, --out NAME=PATH and --help for every operator.
 */
#ifndef FIA_TOOLS_CLI_H
#define FIA_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "fia.h"

/* Exit statuses of every subcommand. */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAIL = 1,  /* ran, but a check failed or the machine ran out of something */
    CLI_EXIT_USAGE = 2  /* bad flag, bad input file, or the library refused the call */
};

/* Prints "fia: error: <message>" as exactly one line on stderr (newlines and other control
 * characters in the message are replaced by spaces). */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Subcommands: argv[0] is the subcommand name. Each returns an exit status. */
int cmd_op(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
void cmd_op_usage(FILE *out);
void cmd_demo_usage(FILE *out);
void cmd_bench_usage(FILE *out);
/* The DeepSeek-V3.2 part of `fia demo` (demo_dsa.c): dense MLA vs lightning indexer + sparse
 * flash attention at 32K and 128K. Returns 0, 1 (a check failed) or -1 (error, printed). */
struct fia_context;
int demo_dsa(struct fia_context *ctx);

/* Creates a context with `threads` (0: the default) to learn its thread count and ISA, destroys
 * it, then measures the roofline (bench/roofline.h) with that many threads and creates the
 * paired read probe the benchmark runs between timed runs (*probe, freed with
 * roofline_probe_destroy), so that no idle pool competes with the probes. Returns an exit
 * status (errors printed); *probe is set only on success. */
struct roofline;
struct roofline_probe;
int cli_measure_roofline(int32_t threads, struct roofline *r, struct roofline_probe **probe,
                         int32_t *ctx_threads, fia_isa *isa);

/* ---------------------------------------------------------------------------------------- */
/* Flags of `fia op` operators                                                              */
/* ---------------------------------------------------------------------------------------- */

typedef enum cli_flag_kind {
    CLI_FLAG_TENSOR,   /* PATH.npy or PATH.npy:bf16 */
    CLI_FLAG_INT,      /* an int64 */
    CLI_FLAG_FLOAT,    /* a finite double */
    CLI_FLAG_INT_LIST, /* comma-separated int64s: "3,5" */
    CLI_FLAG_STRING,   /* any text */
    CLI_FLAG_SWITCH    /* no value */
} cli_flag_kind;

typedef struct cli_flag {
    const char *name; /* without the leading "--" (torch_npu keyword names) */
    cli_flag_kind kind;
    int required;
    const char *help;
} cli_flag;

#define CLI_MAX_FLAGS 48
#define CLI_MAX_OUTS 8

typedef struct cli_args cli_args;

/* One operator of `fia op`. */
typedef struct cli_op {
    const char *name;
    const char *summary;
    const cli_flag *flags;        /* terminated by an entry with name == NULL */
    const char *const *outputs;   /* names accepted by --out NAME=PATH, NULL-terminated */
    int (*run)(const cli_args *args); /* returns an exit status */
} cli_op;

/* The flag parser of `fia op` (cli_args.c): 0 ok, 1 --help was given, -1 error (printed). */
int cli_parse_args(const cli_op *op, int argc, char **argv, cli_args *a);
void cli_op_usage(const cli_op *op, FILE *out);

struct cli_args {
    const cli_op *op;
    const char *values[CLI_MAX_FLAGS]; /* text per entry of op->flags; NULL when absent */
    int n_outs;
    const char *out_names[CLI_MAX_OUTS];
    const char *out_paths[CLI_MAX_OUTS];  /* without a ":bf16" suffix */
    int out_bf16[CLI_MAX_OUTS];           /* the path had ":bf16": write bfloat16 (uint16) */
    int32_t threads; /* --threads (0: the library default) */
    int check;       /* --check */
};

/* The text given for a flag of the operator; NULL when absent or unknown. */
const char *cli_arg(const cli_args *a, const char *name);
/* A flag's value (validated by the parser); def when absent. */
int64_t cli_arg_int(const cli_args *a, const char *name, int64_t def);
double cli_arg_float(const cli_args *a, const char *name, double def);
int cli_arg_switch(const cli_args *a, const char *name);
/* A comma-separated list: *values is malloc'ed (free it), *count its length; both zero when
 * absent. Returns 0, or -1 (message printed) when out of memory. */
int cli_arg_int_list(const cli_args *a, const char *name, int64_t **values, int64_t *count);
/* The path given by --out NAME=PATH; NULL when absent. */
const char *cli_out_path(const cli_args *a, const char *name);
/* Whether --out NAME=PATH:bf16 asked for bfloat16 bits. */
int cli_out_bf16(const cli_args *a, const char *name);

/* ---------------------------------------------------------------------------------------- */
/* Checks against the oracle                                                                */
/* ---------------------------------------------------------------------------------------- */

/* The default row of ref/tolerance.h for an output of the given dtype: atol 1e-3, rtol 5e-3
 * (float32: 1e-5, 1e-5). */
void cli_tolerance(fia_dtype dtype, double *atol, double *rtol);

typedef struct cli_check {
    double max_abs_err;  /* over elements where both are finite */
    int64_t failures;    /* elements outside atol + rtol * |want| (tolerance.h's rule) */
    int64_t elements;
} cli_check;

/* Compares got (read through its strides) with the compact double array want and accumulates
 * into *c (fia_ref_check_close of tolerance.h). */
void cli_check_tensor(const fia_tensor *got, const double *want, double atol, double rtol,
                      cli_check *c);


/* ---------------------------------------------------------------------------------------- */
/* Tensors and outputs of `fia op` handlers (cli_io.c)                                      */
/* ---------------------------------------------------------------------------------------- */

#include "npy.h"

/* A tensor loaded from the .npy file given by a flag. */
typedef struct cli_tensor {
    const char *name; /* the flag / tensor name, for messages */
    npy_array arr;
    fia_tensor t;
    int present;
} cli_tensor;

/* Loads the tensor given by flag `name` (absent is fine: present stays 0). Returns 0, or -1
 * (message printed). */
int cli_load_tensor(const cli_args *a, const char *name, cli_tensor *ot);
void cli_free_tensor(cli_tensor *ot);
/* Converts an int64 tensor to a compact int32 one when every value fits (else -1, printed). */
int cli_narrow_to_int32(cli_tensor *ot);

/* An output buffer (compact, zero-filled, 64-byte aligned). */
typedef struct cli_output {
    const char *name;
    fia_tensor t;
    void *data;
} cli_output;

/* Allocates an output; returns 0, or -1 (message printed). */
int cli_alloc_output(cli_output *o, const char *name, fia_dtype dtype, int32_t ndim,
                     const int64_t *shape);
/* Writes every output requested by --out (temporary names renamed at the end, so a failure
 * leaves no final name behind). Returns 0, or -1 (message printed). */
int cli_write_outputs(const cli_args *a, const cli_output *outs, int n);
double cli_now_seconds(void);
void cli_print_shape(FILE *f, const fia_tensor *t);
/* Prints "check NAME: max abs err ..., pass|FAIL". */
void cli_print_check(const char *name, const cli_check *c, double atol, double rtol);
/* Prints the library's message for a failed call. */
void cli_library_error(fia_status s);

/* Plans one operator call for ctx: `call` is the handler's own record of tensors and params
 * (typically a wrapper around fia_<op>_plan). */
typedef fia_status (*cli_plan_fn)(fia_context *ctx, const void *call, fia_plan **plan,
                                  size_t *workspace_bytes);
/* Runs one call the way every plan-based `fia op` handler does: creates a context with
 * --threads, plans through plan_fn, allocates the workspace, executes the plan once (timed),
 * prints "<op>: <out name> [shape] <dtype> in <ms> ms (<isa>, <threads> threads)" for the
 * output `out`, and destroys everything it created (the outputs stay filled in). Returns
 * CLI_EXIT_OK, CLI_EXIT_USAGE (the library refused the call; its message printed) or
 * CLI_EXIT_FAIL (no memory for the workspace; printed). */
int cli_run_op(const cli_args *a, const char *op, cli_plan_fn plan_fn, const void *call,
               const cli_output *out);
/* --check through an operator's case description (ref/case.h): c bound by the caller to the
 * call's tensors (the in-place targets snapshotted by fia_case_prepare before the call); runs
 * the oracle, prints one "check NAME" line per output at the op-wide tolerance of
 * ref/tolerance.h (integer outputs with rounding ties: "check NAME: N of M differ ...") and
 * then "check: pass|FAIL". Returns 1 when the oracle refused the call or any element failed;
 * -1 (message printed) when the oracle could not run (out of memory, an input it cannot read). */
struct fia_case;
int cli_check_case(struct fia_case *c);
/* Binds c (its tensors and params filled by the caller) to op's description (op NULL: bound and
 * prepared already), runs cli_check_case, frees c's oracle arrays and sets *rc to CLI_EXIT_FAIL
 * when the check failed; returns cli_check_case's value (< 0: write no output). */
int cli_check_op(struct fia_case *c, const char *op, int *rc);

/* Checks outs[i] against the compact double array want[i] for i < n at atol / rtol, prints one
 * "check NAME" line per output (cli_print_check) and then "check: pass|FAIL". Returns 1 when
 * any element failed, else 0. */
int cli_check_outputs(const cli_output *outs, const double *const *want, int n, double atol,
                      double rtol);

/* The operators of `fia op`, each defined in its own file (tools/op_<name>.c); the table in
 * cmd_op.c lists them. */
extern const cli_op cli_op_fused_infer_attention_score;
extern const cli_op cli_op_smallq_flash_attention;
extern const cli_op cli_op_sparse_flash_attention;
extern const cli_op cli_op_kv_quant_sparse_flash_attention;
extern const cli_op cli_op_lightning_indexer, cli_op_quant_lightning_indexer;
/* tools/op_chain.c: the attention-chain helper operators. */
extern const cli_op cli_op_rms_norm, cli_op_add_rms_norm, cli_op_rotary_mul,
    cli_op_interleave_rope, cli_op_dynamic_quant, cli_op_scatter_update,
    cli_op_scatter_nd_update, cli_op_gather_selection_kv_cache;
/* tools/op_mla_prolog_v3.c: the MLA prolog. */
extern const cli_op cli_op_mla_prolog_v3;

#endif /* FIA_TOOLS_CLI_H */
