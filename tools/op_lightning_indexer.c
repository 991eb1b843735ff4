/*
 * op_lightning_indexer.c - `fia op lightning_indexer` and `fia op quant_lightning_indexer`: load
 * the .npy inputs, allocate sparse_indices (and sparse_values) with the contract's shapes, run
 * the library, optionally compare with the oracle (ref/case_sparse.c), then write the outputs.
 *
 * --check compares every row by rank: the oracle's score of the i-th returned index must equal
 * the oracle's i-th best score within the fp32 rounding bound (so near-ties may swap), padding
 * must be -1, and sparse_values (when written) must hold the scores within the same bound.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "case.h"

#define LI_COMMON_FLAGS                                                                           \
    {"block_table", CLI_FLAG_TENSOR, 0, "int32 (or int64) [B, max_blocks]: with PA_BSND"},       \
    {"actual_seq_lengths_query", CLI_FLAG_INT_LIST, 0, "query lengths (TND: cumulative)"},    \
    {"actual_seq_lengths_key", CLI_FLAG_INT_LIST, 0,                                          \
     "key lengths (TND: cumulative; PA_BSND: per batch, required)"},                          \
    {"layout_query", CLI_FLAG_STRING, 0, "BSND (default) or TND"},                            \
    {"layout_key", CLI_FLAG_STRING, 0, "BSND (default), TND or PA_BSND"},                     \
    {"sparse_count", CLI_FLAG_INT, 0, "k, 1..8192 (default 2048)"},                           \
    {"sparse_mode", CLI_FLAG_INT, 0, "0 (all keys) or 3 (right-down causal, default)"},       \
    {"return_value", CLI_FLAG_SWITCH, 0,                                                      \
     "also write sparse_values (implied by --out sparse_values=...)"},                        \
    {"values_dtype", CLI_FLAG_STRING, 0,                                                      \
     "sparse_values dtype: float32 (default), float16 or bfloat16 (torch_npu: the query's)"}

static const cli_flag li_flags[] = {
    {"query", CLI_FLAG_TENSOR, 1, "[B, S1, N1, D] or [T1, N1, D], float16 / bfloat16"},
    {"key", CLI_FLAG_TENSOR, 1, "[B, S2, 1, D], [T2, 1, D] or paged [blocks, block_size, 1, D]"},
    {"weights", CLI_FLAG_TENSOR, 1, "[B, S1, N1] or [T1, N1], the query dtype or float32"},
    LI_COMMON_FLAGS,
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const cli_flag qli_flags[] = {
    {"query", CLI_FLAG_TENSOR, 1, "int8 [B, S1, N1, D] or [T1, N1, D]"},
    {"key", CLI_FLAG_TENSOR, 1, "int8 [B, S2, 1, D], [T2, 1, D] or paged [blocks, bs, 1, D]"},
    {"weights", CLI_FLAG_TENSOR, 1, "[B, S1, N1] or [T1, N1], float16"},
    {"query_dequant_scale", CLI_FLAG_TENSOR, 1, "per token and head, the weights' shape, >= 0"},
    {"key_dequant_scale", CLI_FLAG_TENSOR, 1,
     "per key token, [B, S2, 1], [T2, 1] or paged [blocks, bs, 1], >= 0"},
    LI_COMMON_FLAGS,
    {"query_quant_mode", CLI_FLAG_INT, 0, "must be 0 (default 0)"},
    {"key_quant_mode", CLI_FLAG_INT, 0, "must be 0 (default 0)"},
    {"exact_ranking", CLI_FLAG_INT, 0,
     "0 (default): the contract's fp16 rounding points; 1: the exact formula"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const char *const li_outputs[] = {"sparse_indices", "sparse_values", NULL};

enum { L_QUERY, L_KEY, L_W, L_SQ, L_SK, L_BT, L_COUNT };

static int li_fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* One call of either operator, for cli_run_op. */
typedef struct li_call {
    int quant;
    const fia_lightning_indexer_tensors *t;
    const fia_lightning_indexer_params *p;
} li_call;

static fia_status li_call_plan(fia_context *ctx, const void *call, fia_plan **plan,
                               size_t *workspace_bytes) {
    const li_call *c = call;
    return c->quant ? fia_quant_lightning_indexer_plan(ctx, c->t, c->p, plan, workspace_bytes)
                    : fia_lightning_indexer_plan(ctx, c->t, c->p, plan, workspace_bytes);
}

static int run_li_common(const cli_args *a, int quant) {
    static const char *const names[L_COUNT] = {"query", "key", "weights", "query_dequant_scale",
                                               "key_dequant_scale", "block_table"};
    const char *opname = quant ? "quant_lightning_indexer" : "lightning_indexer";
    cli_tensor in[L_COUNT];
    cli_output outs[2];
    memset(in, 0, sizeof in);
    memset(outs, 0, sizeof outs);
    int64_t *seq_q = NULL, *seq_k = NULL;
    int rc = CLI_EXIT_USAGE;

    fia_lightning_indexer_params p;
    fia_lightning_indexer_params_init(&p);
    p.sparse_count = cli_arg_int(a, "sparse_count", p.sparse_count);
    const int64_t mode = cli_arg_int(a, "sparse_mode", p.sparse_mode);
    const int64_t qm = cli_arg_int(a, "query_quant_mode", 0), km = cli_arg_int(a, "key_quant_mode", 0);
    if (!li_fits_int32(mode) || !li_fits_int32(qm) || !li_fits_int32(km)) {
        cli_error("--sparse_mode or a quant mode is out of the int32 range");
        goto done;
    }
    p.sparse_mode = (int32_t)mode;
    p.query_quant_mode = (int32_t)qm;
    p.key_quant_mode = (int32_t)km;
    const int64_t ex = quant ? cli_arg_int(a, "exact_ranking", 0) : 0;
    if (ex != 0 && ex != 1) {
        cli_error("--exact_ranking is %lld, must be 0 or 1", (long long)ex);
        goto done;
    }
    p.exact_ranking = (int32_t)ex;
    fia_dtype vdt = FIA_DTYPE_FLOAT32;
    const char *vd = cli_arg(a, "values_dtype");
    if (vd != NULL) {
        if (strcmp(vd, "float32") == 0) vdt = FIA_DTYPE_FLOAT32;
        else if (strcmp(vd, "float16") == 0) vdt = FIA_DTYPE_FLOAT16;
        else if (strcmp(vd, "bfloat16") == 0) vdt = FIA_DTYPE_BFLOAT16;
        else {
            cli_error("--values_dtype: '%s' is not float32, float16 or bfloat16", vd);
            goto done;
        }
    }
    p.return_value = cli_arg_switch(a, "return_value") || cli_out_path(a, "sparse_values") != NULL;
    const char *lq = cli_arg(a, "layout_query"), *lk = cli_arg(a, "layout_key");
    if (lq != NULL && fia_layout_parse(lq, &p.layout_query) != FIA_STATUS_SUCCESS) {
        cli_error("--layout_query: unknown layout '%s' (BSND or TND)", lq);
        goto done;
    }
    if (lk != NULL && fia_layout_parse(lk, &p.layout_key) != FIA_STATUS_SUCCESS) {
        cli_error("--layout_key: unknown layout '%s' (BSND, TND or PA_BSND)", lk);
        goto done;
    }
    if (cli_arg_int_list(a, "actual_seq_lengths_query", &seq_q,
                         &p.actual_seq_lengths_query_count) != 0 ||
        cli_arg_int_list(a, "actual_seq_lengths_key", &seq_k, &p.actual_seq_lengths_key_count) != 0)
        goto done;
    p.actual_seq_lengths_query = seq_q;
    p.actual_seq_lengths_key = seq_k;
    if (cli_out_path(a, "sparse_indices") == NULL && !a->check) {
        cli_error("--out sparse_indices=PATH is required (or --check)");
        goto done;
    }
    for (int i = 0; i < L_COUNT; i++)
        if ((quant || (i != L_SQ && i != L_SK)) && cli_load_tensor(a, names[i], &in[i]) != 0)
            goto done;
    if (cli_narrow_to_int32(&in[L_BT]) != 0) goto done;

    /* Outputs: [B, S1, 1, k] (BSND query) or [T1, 1, k] (TND). */
    const fia_tensor *q = &in[L_QUERY].t;
    const int tnd = p.layout_query == FIA_LAYOUT_TND;
    if (q->ndim != (tnd ? 3 : 4)) {
        cli_error("query has %d dims, layout_query %s needs %d", (int)q->ndim,
                  fia_layout_name(p.layout_query), tnd ? 3 : 4);
        goto done;
    }
    if (p.sparse_count < 1 || p.sparse_count > 8192) {
        cli_error("--sparse_count is %lld, must be 1..8192", (long long)p.sparse_count);
        goto done;
    }
    int64_t oshape[4];
    int32_t ond;
    if (tnd) ond = 3, oshape[0] = q->shape[0], oshape[1] = 1, oshape[2] = p.sparse_count;
    else ond = 4, oshape[0] = q->shape[0], oshape[1] = q->shape[1], oshape[2] = 1, oshape[3] = p.sparse_count;
    if (cli_alloc_output(&outs[0], "sparse_indices", FIA_DTYPE_INT32, ond, oshape) != 0) goto done;
    if (p.return_value &&
        cli_alloc_output(&outs[1], "sparse_values", vdt, ond, oshape) != 0)
        goto done;
    const int n_outs = p.return_value ? 2 : 1;
    fia_lightning_indexer_tensors t;
    memset(&t, 0, sizeof t);
    t.query = q;
    t.key = &in[L_KEY].t;
    t.weights = &in[L_W].t;
    t.query_dequant_scale = in[L_SQ].present ? &in[L_SQ].t : NULL;
    t.key_dequant_scale = in[L_SK].present ? &in[L_SK].t : NULL;
    t.block_table = in[L_BT].present ? &in[L_BT].t : NULL;
    t.sparse_indices = &outs[0].t;
    t.sparse_values = p.return_value ? &outs[1].t : NULL;

    const li_call call = {quant, &t, &p};
    rc = cli_run_op(a, opname, li_call_plan, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;

    if (a->check) { /* the case description of ref/case_sparse.c, counted by rows */
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.li = t;
        c.p.li = p;
        fia_case_bind(&c, opname);
        int64_t rows = 0;
        const int64_t bad = fia_case_oracle(&c) == 0 ? fia_case_failed_rows(&c, 1, p.sparse_count, &rows) : -1;
        fia_case_free(&c);
        if (bad < 0) {
            cli_error("check: out of memory");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        printf("check sparse_indices%s: %lld of %lld rows differ from the oracle's ranking, %s\n",
               p.return_value ? " and sparse_values" : "", (long long)bad, (long long)rows,
               bad ? "FAIL" : "pass");
        printf("check: %s\n", bad ? "FAIL" : "pass");
        if (bad) rc = CLI_EXIT_FAIL;
    }
    if (cli_write_outputs(a, outs, n_outs) != 0) rc = CLI_EXIT_USAGE;

done:
    for (int i = 0; i < 2; i++) free(outs[i].data);
    for (int i = 0; i < L_COUNT; i++) cli_free_tensor(&in[i]);
    free(seq_q);
    free(seq_k);
    return rc;
}

static int run_li(const cli_args *a) { return run_li_common(a, 0); }
static int run_qli(const cli_args *a) { return run_li_common(a, 1); }

const cli_op cli_op_lightning_indexer = {
    "lightning_indexer",
    "DSA lightning indexer: top-k keys per query by sum_h w*ReLU(q.k) (fp16/bf16)",
    li_flags, li_outputs, run_li};

const cli_op cli_op_quant_lightning_indexer = {
    "quant_lightning_indexer",
    "int8 (A8C8) lightning indexer with per-token(-head) dequant scales, VNNI",
    qli_flags, li_outputs, run_qli};
