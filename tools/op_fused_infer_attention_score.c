/*
 * op_fused_infer_attention_score.c - `fia op fused_infer_attention_score`: dense (prefill,
 * decode, GQA, masks, paged KV, int8 KV) and MLA calls on .npy files, checked against the
 * oracles (ref/ref_fia.c, ref/ref_mla.c) with --check.
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
/* fused_infer_attention_score                                                              */
/* ---------------------------------------------------------------------------------------- */

static const cli_flag fia_flags[] = {
    {"query", CLI_FLAG_TENSOR, 1, "query, float16 / bfloat16 / float32"},
    {"key", CLI_FLAG_TENSOR, 1, "key (same layout, or the paged cache with --block_table)"},
    {"value", CLI_FLAG_TENSOR, 1, "value"},
    {"atten_mask", CLI_FLAG_TENSOR, 0, "bool/int8/uint8 mask, nonzero = masked"},
    {"block_table", CLI_FLAG_TENSOR, 0, "int32 (or int64) [B, max_blocks]: paged KV cache"},
    {"antiquant_scale", CLI_FLAG_TENSOR, 0, "int8 key/value: dequantisation scale"},
    {"antiquant_offset", CLI_FLAG_TENSOR, 0, "int8 key/value: dequantisation offset"},
    {"actual_seq_lengths", CLI_FLAG_INT_LIST, 0, "per-batch query lengths (TND: cumulative)"},
    {"actual_seq_lengths_kv", CLI_FLAG_INT_LIST, 0, "per-batch kv lengths"},
    {"num_heads", CLI_FLAG_INT, 1, "query heads N1"},
    {"num_key_value_heads", CLI_FLAG_INT, 0, "kv heads N2 (default 0: N1)"},
    {"scale", CLI_FLAG_FLOAT, 0, "multiplies Q.K^T (default 1.0)"},
    {"input_layout", CLI_FLAG_STRING, 0, "BSH (default), BSND, BNSD, TND, BNSD_BSND, NTD, TND_NTD, "
                                         "NTD_TND"},
    {"sparse_mode", CLI_FLAG_INT, 0, "0..4 (default 0)"},
    {"pre_tokens", CLI_FLAG_INT, 0, "default 2147483647"},
    {"next_tokens", CLI_FLAG_INT, 0, "default 2147483647"},
    {"block_size", CLI_FLAG_INT, 0, "paged cache block size"},
    {"antiquant_mode", CLI_FLAG_INT, 0, "0 per-channel/per-tensor (default), 1 per-token"},
    {"inner_precise", CLI_FLAG_INT, 0, "accepted and ignored (fia accumulates in fp32)"},
    {"softmax_lse_flag", CLI_FLAG_SWITCH, 0, "also compute softmax_lse (implied by --out "
                                             "softmax_lse=...)"},
    {"query_rope", CLI_FLAG_TENSOR, 0, "MLA: query rope [.., N, 64] (turns MLA on with key_rope)"},
    {"key_rope", CLI_FLAG_TENSOR, 0, "MLA: key rope cache (64 wide, key's layout)"},
    {"dequant_scale_query", CLI_FLAG_TENSOR, 0, "MLA int8: fp32 per token and head"},
    {"dequant_scale_key", CLI_FLAG_TENSOR, 0, "MLA int8: fp32 [1]"},
    {"dequant_scale_value", CLI_FLAG_TENSOR, 0, "MLA int8: fp32 [1]"},
    {"mla_rescale", CLI_FLAG_STRING, 0, "MLA: default, multiply or amla"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static const char *const fia_outputs[] = {"attention_out", "softmax_lse", NULL};

enum {
    T_QUERY, T_KEY, T_VALUE, T_MASK, T_BLOCK_TABLE, T_SCALE, T_OFFSET, T_QROPE, T_KROPE, T_DSQ,
    T_DSK, T_DSV, T_COUNT
};

/* Shapes of attention_out and softmax_lse from the query, the value and the parameters, as the
 * contract gives them. Returns 0, or -1 (message printed). */
static int fia_output_shapes(const fia_tensor *q, const fia_tensor *v, int paged,
                             const fia_fused_infer_attention_score_params *p, int32_t *out_ndim,
                             int64_t *out_shape, int32_t *lse_ndim, int64_t *lse_shape) {
    const int64_t n1 = p->num_heads;
    const int64_t n2 = p->num_key_value_heads > 0 ? p->num_key_value_heads : n1;
    if (n1 < 1 || n2 < 1) {
        cli_error("num_heads is %lld and num_key_value_heads %lld; both must be >= 1",
                  (long long)n1, (long long)n2);
        return -1;
    }
    /* Dv: the value's last dim, divided by N2 when the value is in H form (BSH, or the 3-D
     * paged cache BnBsH). */
    if (v->ndim < 1) {
        cli_error("value has 0 dims");
        return -1;
    }
    int64_t dv = v->shape[v->ndim - 1];
    const int h_form = (paged && v->ndim == 3) || (!paged && p->input_layout == FIA_LAYOUT_BSH);
    if (h_form) {
        if (dv % n2 != 0) {
            cli_error("value dim %d is %lld, not a multiple of num_key_value_heads %lld",
                      (int)v->ndim - 1, (long long)dv, (long long)n2);
            return -1;
        }
        dv /= n2;
    }
    int want_ndim = 4;
    const char *layout = fia_layout_name(p->input_layout);
    switch (p->input_layout) {
    case FIA_LAYOUT_BSH:
    case FIA_LAYOUT_TND:
    case FIA_LAYOUT_NTD:
    case FIA_LAYOUT_TND_NTD:
    case FIA_LAYOUT_NTD_TND: want_ndim = 3; break;
    case FIA_LAYOUT_BSND:
    case FIA_LAYOUT_BNSD:
    case FIA_LAYOUT_BNSD_BSND: want_ndim = 4; break;
    default: want_ndim = q->ndim; break; /* reserved layouts: the library decides */
    }
    if (q->ndim != want_ndim || q->ndim < 1) {
        cli_error("query has %d dims, input_layout %s needs %d", (int)q->ndim, layout,
                  want_ndim);
        return -1;
    }
    *out_ndim = q->ndim;
    memcpy(out_shape, q->shape, sizeof q->shape[0] * (size_t)q->ndim);
    out_shape[q->ndim - 1] = p->input_layout == FIA_LAYOUT_BSH ? n1 * dv : dv;
    int64_t b = q->shape[0], s1 = 1;
    switch (p->input_layout) {
    case FIA_LAYOUT_BSH:
    case FIA_LAYOUT_BSND: s1 = q->shape[1]; break;
    case FIA_LAYOUT_BNSD: s1 = q->shape[2]; break;
    case FIA_LAYOUT_BNSD_BSND:
        s1 = q->shape[2];
        out_shape[1] = s1;
        out_shape[2] = q->shape[1];
        break;
    case FIA_LAYOUT_TND_NTD: /* [T, N, D] in, [N, T, Dv] out */
    case FIA_LAYOUT_NTD_TND: /* [N, T, D] in, [T, N, Dv] out */
        out_shape[0] = q->shape[1];
        out_shape[1] = q->shape[0];
        break;
    default: break;
    }
    const fia_layout il = p->input_layout;
    if (il == FIA_LAYOUT_TND || il == FIA_LAYOUT_NTD || il == FIA_LAYOUT_TND_NTD ||
        il == FIA_LAYOUT_NTD_TND) { /* [T, N, 1] */
        *lse_ndim = 3;
        lse_shape[0] = il == FIA_LAYOUT_TND || il == FIA_LAYOUT_TND_NTD ? q->shape[0] : q->shape[1];
        lse_shape[1] = n1;
        lse_shape[2] = 1;
    } else {
        *lse_ndim = 4;
        lse_shape[0] = b;
        lse_shape[1] = n1;
        lse_shape[2] = s1;
        lse_shape[3] = 1;
    }
    return 0;
}

/* MLA shapes: attention_out is the query's shape with 512 per head (TND_NTD: [N, T, 512]),
 * softmax_lse as for the dense path. */
static int mla_output_shapes(const fia_tensor *q, const fia_fused_infer_attention_score_params *p,
                             int32_t *out_ndim, int64_t *out_shape, int32_t *lse_ndim,
                             int64_t *lse_shape) {
    const int64_t n = p->num_heads;
    const fia_layout l = p->input_layout;
    const int tnd = l == FIA_LAYOUT_TND || l == FIA_LAYOUT_TND_NTD;
    const int want = l == FIA_LAYOUT_BSND || l == FIA_LAYOUT_BNSD ? 4 : 3;
    if (n < 1 || q->ndim != want) {
        cli_error("MLA: query has %d dims, input_layout %s needs %d (num_heads %lld)",
                  (int)q->ndim, fia_layout_name(l), want, (long long)n);
        return -1;
    }
    *out_ndim = q->ndim;
    memcpy(out_shape, q->shape, sizeof q->shape[0] * (size_t)q->ndim);
    out_shape[q->ndim - 1] = l == FIA_LAYOUT_BSH ? n * 512 : 512;
    if (l == FIA_LAYOUT_TND_NTD) {
        out_shape[0] = q->shape[1];
        out_shape[1] = q->shape[0];
    }
    if (tnd) {
        *lse_ndim = 3;
        lse_shape[0] = q->shape[0];
        lse_shape[1] = n;
        lse_shape[2] = 1;
    } else {
        *lse_ndim = 4;
        lse_shape[0] = q->shape[0];
        lse_shape[1] = n;
        lse_shape[2] = l == FIA_LAYOUT_BNSD ? q->shape[2] : q->shape[1];
        lse_shape[3] = 1;
    }
    return 0;
}

/* One call of the operator, for cli_run_op. */
typedef struct fia_call {
    const fia_fused_infer_attention_score_tensors *t;
    const fia_fused_infer_attention_score_params *p;
} fia_call;

static fia_status fia_call_plan(fia_context *ctx, const void *call, fia_plan **plan,
                                size_t *workspace_bytes) {
    const fia_call *c = call;
    return fia_fused_infer_attention_score_plan(ctx, c->t, c->p, plan, workspace_bytes);
}

static int run_fused_infer_attention_score(const cli_args *a) {
    static const char *const names[T_COUNT] = {
        "query",           "key",        "value",    "atten_mask",          "block_table",
        "antiquant_scale", "antiquant_offset", "query_rope", "key_rope", "dequant_scale_query",
        "dequant_scale_key", "dequant_scale_value"};
    cli_tensor in[T_COUNT];
    cli_output outs[2];
    memset(in, 0, sizeof in);
    memset(outs, 0, sizeof outs);
    int64_t *seq = NULL, *seq_kv = NULL;
    int rc = CLI_EXIT_USAGE;

    /* Parameters. */
    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    p.num_heads = cli_arg_int(a, "num_heads", p.num_heads);
    p.num_key_value_heads = cli_arg_int(a, "num_key_value_heads", p.num_key_value_heads);
    p.scale = cli_arg_float(a, "scale", p.scale);
    p.pre_tokens = cli_arg_int(a, "pre_tokens", p.pre_tokens);
    p.next_tokens = cli_arg_int(a, "next_tokens", p.next_tokens);
    p.block_size = cli_arg_int(a, "block_size", p.block_size);
    const int64_t sparse_mode = cli_arg_int(a, "sparse_mode", p.sparse_mode);
    const int64_t antiquant_mode = cli_arg_int(a, "antiquant_mode", p.antiquant_mode);
    const int64_t inner_precise = cli_arg_int(a, "inner_precise", p.inner_precise);
    if (sparse_mode < INT32_MIN || sparse_mode > INT32_MAX || antiquant_mode < INT32_MIN ||
        antiquant_mode > INT32_MAX || inner_precise < INT32_MIN || inner_precise > INT32_MAX) {
        cli_error("--sparse_mode, --antiquant_mode or --inner_precise is out of the int32 range");
        goto done;
    }
    p.sparse_mode = (int32_t)sparse_mode;
    p.antiquant_mode = (int32_t)antiquant_mode;
    p.inner_precise = (int32_t)inner_precise;
    const char *lse_path = cli_out_path(a, "softmax_lse");
    p.softmax_lse_flag = cli_arg_switch(a, "softmax_lse_flag") || lse_path != NULL;
    const char *layout = cli_arg(a, "input_layout");
    if (layout != NULL && fia_layout_parse(layout, &p.input_layout) != FIA_STATUS_SUCCESS) {
        cli_error("--input_layout: unknown layout '%s' (BSH, BSND, BNSD, TND, BNSD_BSND, NTD, "
                  "TND_NTD, NTD_TND)", layout);
        goto done;
    }
    if (cli_arg_int_list(a, "actual_seq_lengths", &seq, &p.actual_seq_lengths_count) != 0 ||
        cli_arg_int_list(a, "actual_seq_lengths_kv", &seq_kv, &p.actual_seq_lengths_kv_count) !=
            0)
        goto done;
    p.actual_seq_lengths = seq;
    p.actual_seq_lengths_kv = seq_kv;
    if (cli_out_path(a, "attention_out") == NULL && !a->check) {
        cli_error("--out attention_out=PATH is required (or --check)");
        goto done;
    }

    /* Inputs. */
    for (int i = 0; i < T_COUNT; i++)
        if (cli_load_tensor(a, names[i], &in[i]) != 0) goto done;
    if (cli_narrow_to_int32(&in[T_BLOCK_TABLE]) != 0) goto done;

    const char *rescale = cli_arg(a, "mla_rescale");
    if (rescale != NULL) {
        if (!strcmp(rescale, "default")) p.mla_rescale = FIA_MLA_RESCALE_DEFAULT;
        else if (!strcmp(rescale, "multiply")) p.mla_rescale = FIA_MLA_RESCALE_MULTIPLY;
        else if (!strcmp(rescale, "amla")) p.mla_rescale = FIA_MLA_RESCALE_AMLA;
        else {
            cli_error("--mla_rescale: '%s' is not default, multiply or amla", rescale);
            goto done;
        }
    }

    /* Outputs, with the contract's shapes; the dtype is the query's (MLA int8 form: bf16). */
    const int mla = in[T_QROPE].present || in[T_KROPE].present;
    fia_dtype out_dtype = in[T_QUERY].t.dtype;
    int32_t out_ndim = 0, lse_ndim = 0;
    int64_t out_shape[FIA_MAX_DIMS], lse_shape[FIA_MAX_DIMS];
    if (mla) {
        if (mla_output_shapes(&in[T_QUERY].t, &p, &out_ndim, out_shape, &lse_ndim, lse_shape) != 0)
            goto done;
        if (out_dtype == FIA_DTYPE_INT8) out_dtype = FIA_DTYPE_BFLOAT16;
    } else if (fia_output_shapes(&in[T_QUERY].t, &in[T_VALUE].t, in[T_BLOCK_TABLE].present, &p,
                                 &out_ndim, out_shape, &lse_ndim, lse_shape) != 0) {
        goto done;
    }
    if (cli_alloc_output(&outs[0], "attention_out", out_dtype, out_ndim, out_shape) != 0)
        goto done;
    if (p.softmax_lse_flag &&
        cli_alloc_output(&outs[1], "softmax_lse", FIA_DTYPE_FLOAT32, lse_ndim, lse_shape) != 0)
        goto done;
    const int n_outs = p.softmax_lse_flag ? 2 : 1;

    fia_fused_infer_attention_score_tensors t;
    memset(&t, 0, sizeof t);
    t.query = &in[T_QUERY].t;
    t.key = &in[T_KEY].t;
    t.value = &in[T_VALUE].t;
    t.atten_mask = in[T_MASK].present ? &in[T_MASK].t : NULL;
    t.block_table = in[T_BLOCK_TABLE].present ? &in[T_BLOCK_TABLE].t : NULL;
    t.antiquant_scale = in[T_SCALE].present ? &in[T_SCALE].t : NULL;
    t.antiquant_offset = in[T_OFFSET].present ? &in[T_OFFSET].t : NULL;
    t.attention_out = &outs[0].t;
    t.softmax_lse = p.softmax_lse_flag ? &outs[1].t : NULL;
    t.query_rope = in[T_QROPE].present ? &in[T_QROPE].t : NULL;
    t.key_rope = in[T_KROPE].present ? &in[T_KROPE].t : NULL;
    t.dequant_scale_query = in[T_DSQ].present ? &in[T_DSQ].t : NULL;
    t.dequant_scale_key = in[T_DSK].present ? &in[T_DSK].t : NULL;
    t.dequant_scale_value = in[T_DSV].present ? &in[T_DSV].t : NULL;

    /* The call: plan, workspace, execute. */
    const fia_call call = {&t, &p};
    rc = cli_run_op(a, "fused_infer_attention_score", fia_call_plan, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;

    /* The oracle. */
    if (a->check) { /* the case description of ref/case.h: dense or MLA oracle, op-wide rows */
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.fia = t;
        c.p.fia = p;
        /* no oracle: no output written, as before */
        if (cli_check_op(&c, "fused_infer_attention_score", &rc) < 0) goto done;
    }

    /* Outputs last: only a successful call writes files. */
    if (cli_write_outputs(a, outs, n_outs) != 0) rc = CLI_EXIT_USAGE;

done:
    for (int i = 0; i < 2; i++) free(outs[i].data);
    for (int i = 0; i < T_COUNT; i++) cli_free_tensor(&in[i]);
    free(seq);
    free(seq_kv);
    return rc;
}

const cli_op cli_op_fused_infer_attention_score = {
    "fused_infer_attention_score",
    "softmax(scale*Q.K^T + mask).V: prefill, decode, GQA, masks, paged KV, int8 KV",
    fia_flags, fia_outputs, run_fused_infer_attention_score};
