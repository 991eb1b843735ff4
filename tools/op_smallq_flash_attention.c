/*
 * op_smallq_flash_attention.c - `fia op smallq_flash_attention`: SmallQ decode attention on .npy
 * files, checked against the oracle (ref_smallq.c) with --check.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "case.h"
#include "cli.h"
#include "npy.h"

/* ---------------------------------------------------------------------------------------- */
/* smallq_flash_attention                                                                   */
/* ---------------------------------------------------------------------------------------- */

static const cli_flag smallq_flags[] = {
    {"q", CLI_FLAG_TENSOR, 1, "Q [numHeads, qLen, headDim], float16"},
    {"k", CLI_FLAG_TENSOR, 1, "K [numHeads, kvLen, headDim], float16"},
    {"v", CLI_FLAG_TENSOR, 1, "V [numHeads, kvLen, headDim], float16"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const char *const smallq_outputs[] = {"o", NULL};

enum { SQ_Q, SQ_K, SQ_V, SQ_COUNT };

static int run_smallq_flash_attention(const cli_args *a) {
    static const char *const names[SQ_COUNT] = {"q", "k", "v"};
    cli_tensor in[SQ_COUNT];
    cli_output out;
    memset(in, 0, sizeof in);
    memset(&out, 0, sizeof out);
    fia_context *ctx = NULL;
    fia_plan *executor = NULL;
    void *workspace = NULL;
    int rc = CLI_EXIT_USAGE;

    if (cli_out_path(a, "o") == NULL && !a->check) {
        cli_error("--out o=PATH is required (or --check)");
        goto done;
    }
    for (int i = 0; i < SQ_COUNT; i++)
        if (cli_load_tensor(a, names[i], &in[i]) != 0) goto done;

    /* O: float16 with Q's shape, as the contract gives it; the library validates every shape
     * and dtype (its message names Q, K, V or O and the dimension). */
    if (cli_alloc_output(&out, "o", FIA_DTYPE_FLOAT16, in[SQ_Q].t.ndim, in[SQ_Q].t.shape) != 0)
        goto done;

    fia_context_options opts = {a->threads, FIA_ISA_AUTO};
    fia_status s = fia_context_create(&opts, &ctx);
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    uint64_t ws_bytes = 0;
    s = fia_smallq_flash_attention_get_workspace_size(ctx, &in[SQ_Q].t, &in[SQ_K].t,
                                                      &in[SQ_V].t, &out.t, &ws_bytes, &executor);
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    if (ws_bytes > 0 && (workspace = malloc((size_t)ws_bytes)) == NULL) {
        cli_error("workspace: out of memory (%llu bytes)", (unsigned long long)ws_bytes);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    const double t0 = cli_now_seconds();
    s = fia_smallq_flash_attention(workspace, ws_bytes, executor);
    const double t1 = cli_now_seconds();
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    printf("smallq_flash_attention: o ");
    cli_print_shape(stdout, &out.t);
    printf(" %s in %.3f ms (%s, %d threads)\n", fia_dtype_name(out.t.dtype), (t1 - t0) * 1e3,
           fia_isa_name(fia_context_isa(ctx)), fia_context_num_threads(ctx));

    /* The oracle, every head. */
    rc = CLI_EXIT_OK;
    if (a->check) { /* the case description of ref/case.h */
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.smallq.q = &in[SQ_Q].t, c.t.smallq.k = &in[SQ_K].t, c.t.smallq.v = &in[SQ_V].t;
        c.t.smallq.o = &out.t;
        if (cli_check_op(&c, "smallq_flash_attention", &rc) < 0) goto done;
    }

    /* Output last: only a successful call writes the file. */
    if (cli_write_outputs(a, &out, 1) != 0) rc = CLI_EXIT_USAGE;

done:
    free(workspace);
    fia_plan_destroy(executor);
    fia_context_destroy(ctx);
    free(out.data);
    for (int i = 0; i < SQ_COUNT; i++) cli_free_tensor(&in[i]);
    return rc;
}

const cli_op cli_op_smallq_flash_attention = {
    "smallq_flash_attention",
    "SmallQ decode: softmax(Q.K^T/sqrt(D)).V per head, fp16, few queries vs a long KV",
    smallq_flags, smallq_outputs, run_smallq_flash_attention};
