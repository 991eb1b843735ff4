/*
 * op_sparse_flash_attention.c - `fia op sparse_flash_attention` and
 * `fia op kv_quant_sparse_flash_attention` (the C8 cache): load the .npy inputs, allocate the
 * outputs with the contract's shapes, run the library, optionally compare with the oracle
 * (the case description of ref/case_sparse.c), then write the outputs.
 *
 * --value is optional: the values of attention_mode 2 are the key rows. When given, it must be
 * the same file as --key or hold exactly the key's shape, dtype and bytes (else exit 2).
 * Softmax outputs: softmax_lse [B, N1, S1, 1] / [T1, N1, 1], and torch_npu's softmax_max /
 * softmax_sum [B, 1, S1, N1] / [1, T1, N1] (written together); --return_softmax_lse alone
 * computes softmax_lse. --sinks adds one logit per head to the softmax denominator.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "case.h"

/* The flags both operators share (in --help order). */
#define SFA_SELECT_FLAGS \
    {"sparse_indices", CLI_FLAG_TENSOR, 1, "int32 (or int64) [B, S1, 1, K] or [T1, 1, K]"}, \
    {"scale_value", CLI_FLAG_FLOAT, 1, "multiplies the logits"}
#define SFA_LAYOUT_FLAGS \
    {"block_table", CLI_FLAG_TENSOR, 0, "int32 (or int64) [B, max_blocks]: with PA_BSND"}, \
    {"actual_seq_lengths_query", CLI_FLAG_INT_LIST, 0, "query lengths (TND: cumulative)"}, \
    {"actual_seq_lengths_kv", CLI_FLAG_INT_LIST, 0, "kv lengths (TND: cumulative; PA_BSND: " \
                                                     "per batch, required)"}, \
    {"sparse_block_size", CLI_FLAG_INT, 0, "tokens per index entry, power of two 1..128 " \
                                           "(default 1)"}, \
    {"layout_query", CLI_FLAG_STRING, 0, "BSND (default) or TND"}, \
    {"layout_kv", CLI_FLAG_STRING, 0, "BSND (default), TND or PA_BSND"}, \
    {"sparse_mode", CLI_FLAG_INT, 0, "0 or 3 (default 3)"}, \
    {"attention_mode", CLI_FLAG_INT, 0, "must be 2 (default 2)"}
#define SFA_SOFTMAX_FLAGS \
    {"return_softmax_lse", CLI_FLAG_SWITCH, 0, "also compute softmax_lse (implied by --out " \
                                               "softmax_lse / softmax_max / softmax_sum=...)"}, \
    {"sinks", CLI_FLAG_TENSOR, 0, "optional float32 [N1]: one sink logit per head"}

static const cli_flag sfa_flags[] = {
    {"query", CLI_FLAG_TENSOR, 1, "q_nope [B, S1, N1, 512] or [T1, N1, 512], float16 / bfloat16"},
    {"key", CLI_FLAG_TENSOR, 1, "latent cache [B, S2, 1, 512], [T2, 1, 512] or paged "
                                "[blocks, block_size, 1, 512]"},
    {"value", CLI_FLAG_TENSOR, 0, "optional: must equal --key (values are k_nope)"},
    SFA_SELECT_FLAGS,
    {"query_rope", CLI_FLAG_TENSOR, 1, "[.., N1, 64], the query's dtype"},
    {"key_rope", CLI_FLAG_TENSOR, 1, "[.., 1, 64], the key's layout"},
    SFA_LAYOUT_FLAGS,
    SFA_SOFTMAX_FLAGS,
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const cli_flag c8_flags[] = {
    {"query", CLI_FLAG_TENSOR, 1, "[q_nope, q_rope] [B, S1, N1, 576] or [T1, N1, 576], float16 / "
                                  "bfloat16"},
    {"key", CLI_FLAG_TENSOR, 1, "int8 656-byte rows [B, S2, 1, 656], [T2, 1, 656] or paged "
                                "[blocks, block_size, 1, 656]"},
    {"value", CLI_FLAG_TENSOR, 0, "optional: must equal --key"},
    SFA_SELECT_FLAGS,
    SFA_LAYOUT_FLAGS,
    {"key_quant_mode", CLI_FLAG_INT, 0, "must be 2 (default 2)"},
    {"value_quant_mode", CLI_FLAG_INT, 0, "must be 2 (default 2)"},
    {"quant_scale_repo_mode", CLI_FLAG_INT, 0, "must be 1 (default 1)"},
    {"tile_size", CLI_FLAG_INT, 0, "must be 128 (default 128)"},
    {"rope_head_dim", CLI_FLAG_INT, 0, "must be 64 (default 64)"},
    SFA_SOFTMAX_FLAGS,
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const char *const sfa_outputs[] = {"attention_out", "softmax_lse", "softmax_max",
                                          "softmax_sum", NULL};

enum { S_QUERY, S_KEY, S_VALUE, S_IDX, S_BT, S_QROPE, S_KROPE, S_SINKS, S_COUNT };

static int fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

/* --value must be --key itself or the same bytes: the values of attention_mode 2 are k_nope. */
static int value_matches_key(const cli_tensor *v, const cli_tensor *k) {
    if (v->t.dtype != k->t.dtype || v->t.ndim != k->t.ndim) return 0;
    for (int32_t i = 0; i < k->t.ndim; i++)
        if (v->t.shape[i] != k->t.shape[i]) return 0;
    const int64_t n = fia_tensor_numel(&k->t);
    const size_t es = fia_dtype_size(k->t.dtype);
    for (int64_t i = 0; i < n; i++) { /* logical order, through the strides */
        int64_t ov = 0, ok = 0, rem = i;
        for (int32_t d = k->t.ndim - 1; d >= 0; d--) {
            const int64_t c = rem % k->t.shape[d];
            rem /= k->t.shape[d];
            ov += c * v->t.strides[d];
            ok += c * k->t.strides[d];
        }
        if (memcmp((const char *)v->t.data + ov * (int64_t)es,
                   (const char *)k->t.data + ok * (int64_t)es, es) != 0)
            return 0;
    }
    return 1;
}

/* One call of either operator, for cli_run_op. */
typedef struct sfa_call {
    int c8;
    const fia_sparse_flash_attention_tensors *t;
    const fia_sparse_flash_attention_params *p;
    const fia_kv_quant_sparse_flash_attention_tensors *tq;
    const fia_kv_quant_sparse_flash_attention_params *qp;
} sfa_call;

static fia_status sfa_call_plan(fia_context *ctx, const void *call, fia_plan **plan,
                                size_t *workspace_bytes) {
    const sfa_call *c = call;
    return c->c8 ? fia_kv_quant_sparse_flash_attention_plan(ctx, c->tq, c->qp, plan,
                                                             workspace_bytes)
                 : fia_sparse_flash_attention_plan(ctx, c->t, c->p, plan, workspace_bytes);
}

static int run_sfa_common(const cli_args *a, int c8) {
    static const char *const names[S_COUNT] = {"query", "key", "value", "sparse_indices",
                                               "block_table", "query_rope", "key_rope", "sinks"};
    cli_tensor in[S_COUNT];
    cli_output outs[4];
    memset(in, 0, sizeof in);
    memset(outs, 0, sizeof outs);
    int64_t *seq = NULL, *seq_kv = NULL;
    int rc = CLI_EXIT_USAGE;
    const char *opname = c8 ? "kv_quant_sparse_flash_attention" : "sparse_flash_attention";

    fia_kv_quant_sparse_flash_attention_params qp;
    fia_kv_quant_sparse_flash_attention_params_init(&qp);
    fia_sparse_flash_attention_params *p = &qp.base;
    p->scale_value = cli_arg_float(a, "scale_value", p->scale_value);
    p->sparse_block_size = cli_arg_int(a, "sparse_block_size", p->sparse_block_size);
    const int64_t mode = cli_arg_int(a, "sparse_mode", p->sparse_mode);
    const int64_t amode = cli_arg_int(a, "attention_mode", p->attention_mode);
    const int64_t kq = cli_arg_int(a, "key_quant_mode", qp.key_quant_mode);
    const int64_t vq = cli_arg_int(a, "value_quant_mode", qp.value_quant_mode);
    const int64_t repo = cli_arg_int(a, "quant_scale_repo_mode", qp.quant_scale_repo_mode);
    if (!fits_int32(mode) || !fits_int32(amode) || !fits_int32(kq) || !fits_int32(vq) ||
        !fits_int32(repo)) {
        cli_error("--sparse_mode, --attention_mode or a quant mode is out of the int32 range");
        goto done;
    }
    p->sparse_mode = (int32_t)mode;
    p->attention_mode = (int32_t)amode;
    qp.key_quant_mode = (int32_t)kq;
    qp.value_quant_mode = (int32_t)vq;
    qp.quant_scale_repo_mode = (int32_t)repo;
    qp.tile_size = cli_arg_int(a, "tile_size", qp.tile_size);
    qp.rope_head_dim = cli_arg_int(a, "rope_head_dim", qp.rope_head_dim);
    const char *lse_path = cli_out_path(a, "softmax_lse");
    const int want_ms = cli_out_path(a, "softmax_max") != NULL ||
                        cli_out_path(a, "softmax_sum") != NULL;
    p->return_softmax_lse =
        cli_arg_switch(a, "return_softmax_lse") || lse_path != NULL || want_ms;
    const int want_lse_out = p->return_softmax_lse && (lse_path != NULL || !want_ms);
    const char *lq = cli_arg(a, "layout_query"), *lkv = cli_arg(a, "layout_kv");
    if (lq != NULL && fia_layout_parse(lq, &p->layout_query) != FIA_STATUS_SUCCESS) {
        cli_error("--layout_query: unknown layout '%s' (BSND or TND)", lq);
        goto done;
    }
    if (lkv != NULL && fia_layout_parse(lkv, &p->layout_kv) != FIA_STATUS_SUCCESS) {
        cli_error("--layout_kv: unknown layout '%s' (BSND, TND or PA_BSND)", lkv);
        goto done;
    }
    if (cli_arg_int_list(a, "actual_seq_lengths_query", &seq,
                         &p->actual_seq_lengths_query_count) != 0 ||
        cli_arg_int_list(a, "actual_seq_lengths_kv", &seq_kv, &p->actual_seq_lengths_kv_count) != 0)
        goto done;
    p->actual_seq_lengths_query = seq;
    p->actual_seq_lengths_kv = seq_kv;
    if (cli_out_path(a, "attention_out") == NULL && !a->check) {
        cli_error("--out attention_out=PATH is required (or --check)");
        goto done;
    }

    /* Inputs. */
    for (int i = 0; i < S_COUNT; i++)
        if ((!c8 || (i != S_QROPE && i != S_KROPE)) && cli_load_tensor(a, names[i], &in[i]) != 0)
            goto done;
    if (cli_narrow_to_int32(&in[S_IDX]) != 0 || cli_narrow_to_int32(&in[S_BT]) != 0) goto done;
    if (in[S_VALUE].present && !value_matches_key(&in[S_VALUE], &in[S_KEY])) {
        cli_error("value: must equal key (attention_mode 2 takes the values from the key rows)");
        goto done;
    }

    /* Outputs: attention_out is the query's shape with 512; softmax_lse [B, N1, S1, 1] or
     * [T1, N1, 1]. */
    const fia_tensor *q = &in[S_QUERY].t;
    const int tnd = p->layout_query == FIA_LAYOUT_TND;
    if (q->ndim != (tnd ? 3 : 4)) {
        cli_error("query has %d dims, layout_query %s needs %d", (int)q->ndim,
                  fia_layout_name(p->layout_query), tnd ? 3 : 4);
        goto done;
    }
    int64_t oshape[FIA_MAX_DIMS], lshape[FIA_MAX_DIMS], mshape[FIA_MAX_DIMS];
    memcpy(oshape, q->shape, sizeof q->shape[0] * (size_t)q->ndim);
    oshape[q->ndim - 1] = 512;
    int32_t lnd;
    if (tnd) lnd = 3, lshape[0] = q->shape[0], lshape[1] = q->shape[1], lshape[2] = 1;
    else lnd = 4, lshape[0] = q->shape[0], lshape[1] = q->shape[2], lshape[2] = q->shape[1], lshape[3] = 1;
    if (tnd) mshape[0] = 1, mshape[1] = q->shape[0], mshape[2] = q->shape[1];
    else mshape[0] = q->shape[0], mshape[1] = 1, mshape[2] = q->shape[1], mshape[3] = q->shape[2];
    if (cli_alloc_output(&outs[0], "attention_out", q->dtype, q->ndim, oshape) != 0) goto done;
    int n_outs = 1, i_lse = -1, i_mx = -1;
    if (want_lse_out) {
        i_lse = n_outs++;
        if (cli_alloc_output(&outs[i_lse], "softmax_lse", FIA_DTYPE_FLOAT32, lnd, lshape) != 0)
            goto done;
    }
    if (want_ms) {
        i_mx = n_outs;
        n_outs += 2;
        if (cli_alloc_output(&outs[i_mx], "softmax_max", FIA_DTYPE_FLOAT32, lnd, mshape) != 0 ||
            cli_alloc_output(&outs[i_mx + 1], "softmax_sum", FIA_DTYPE_FLOAT32, lnd, mshape) != 0)
            goto done;
    }
    const fia_tensor *bt = in[S_BT].present ? &in[S_BT].t : NULL;
    fia_sparse_flash_attention_tensors t = {q, &in[S_KEY].t, NULL, &in[S_IDX].t, bt,
                                            &in[S_QROPE].t, &in[S_KROPE].t, &outs[0].t,
                                            i_lse >= 0 ? &outs[i_lse].t : NULL,
                                            i_mx >= 0 ? &outs[i_mx].t : NULL,
                                            i_mx >= 0 ? &outs[i_mx + 1].t : NULL,
                                            in[S_SINKS].present ? &in[S_SINKS].t : NULL};
    if (!in[S_QROPE].present) t.query_rope = NULL;
    if (!in[S_KROPE].present) t.key_rope = NULL;
    fia_kv_quant_sparse_flash_attention_tensors tq = {q, &in[S_KEY].t, NULL, &in[S_IDX].t, bt,
                                                      &outs[0].t, t.softmax_lse, t.softmax_max,
                                                      t.softmax_sum, t.sinks};

    const sfa_call call = {c8, &t, p, &tq, &qp};
    rc = cli_run_op(a, opname, sfa_call_plan, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;

    if (a->check) { /* the case description of ref/case.h (C8: with the oracle's slack) */
        fia_case c;
        memset(&c, 0, sizeof c);
        if (c8) c.t.sfa_c8 = tq, c.p.sfa_c8 = qp;
        else c.t.sfa = t, c.p.sfa = *p;
        if (cli_check_op(&c, opname, &rc) < 0) goto done; /* no oracle: no output written */
    }
    if (cli_write_outputs(a, outs, n_outs) != 0) rc = CLI_EXIT_USAGE;

done:
    for (int i = 0; i < 4; i++) free(outs[i].data);
    for (int i = 0; i < S_COUNT; i++) cli_free_tensor(&in[i]);
    free(seq);
    free(seq_kv);
    return rc;
}

static int run_sfa(const cli_args *a) { return run_sfa_common(a, 0); }
static int run_c8(const cli_args *a) { return run_sfa_common(a, 1); }

const cli_op cli_op_sparse_flash_attention = {
    "sparse_flash_attention",
    "DSA sparse attention over the selected tokens of the MLA latent cache (fp16/bf16)",
    sfa_flags, sfa_outputs, run_sfa};

const cli_op cli_op_kv_quant_sparse_flash_attention = {
    "kv_quant_sparse_flash_attention",
    "sparse attention over the C8 latent cache (656-byte int8 rows, per-tile scales)",
    c8_flags, sfa_outputs, run_c8};
