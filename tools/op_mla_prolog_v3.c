/*
 * op_mla_prolog_v3.c - `fia op mla_prolog_v3`: the MLA prolog (npu_mla_prolog_v3) on .npy files.
 *
 * Inputs as in fia/prolog.h (bfloat16: append :bf16 to a uint16 .npy); the caches are updated
 * in place and written back with --out kv_cache=PATH / --out kr_cache=PATH; query_out,
 * query_rope_out and (with --query_norm_flag 1) query_norm are bf16 outputs. The quantized
 * caches (--kv_cache_quant_mode 1, 2, 3 with --quant_scale_ckv / --quant_scale_ckr /
 * --k_nope_clip_alpha; mode 3 with --ckvkr_repo_mode 1 --quant_scale_repo_mode 1 writes the
 * 656-byte C8 rows into an int8 kv_cache and needs no kr_cache) and the int8 query
 * (--query_quant_mode 1: query_out int8 plus dequant_scale_q_nope) are int8 .npy files; so
 * are the int8 weights (--weight_quant_mode 1: weight_uq_qr; 2: also token_x, weight_dq,
 * weight_dkv_kr) with their --dequant_scale_* / --smooth_scales_cq, query_norm then int8 with
 * a dequant_scale_q_norm output.
 *
 * --check compares with the double-precision oracle (ref/case_prolog.c) at the contract's
 * rounding points: every float output within 1e-3 + 5e-3 |ref| plus the oracle's per-element
 * slack (one bf16 ulp of the rounded intermediates it reads), every written cache row the same
 * way, and every cache element outside the indexed slots unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "case.h"
#include "ref_util.h"

enum { HCKV = 512, DR = 64 };

static const cli_flag prolog_flags[] = {
    {"token_x", CLI_FLAG_TENSOR, 1, "[T, He] or [B, S, He] bfloat16"},
    {"weight_dq", CLI_FLAG_TENSOR, 1, "[He, Hcq] bfloat16 (row-major)"},
    {"weight_uq_qr", CLI_FLAG_TENSOR, 1, "[Hcq, N*(D+64)] bfloat16"},
    {"weight_uk", CLI_FLAG_TENSOR, 1, "[N, D, 512] bfloat16"},
    {"weight_dkv_kr", CLI_FLAG_TENSOR, 1, "[He, 576] bfloat16"},
    {"rmsnorm_gamma_cq", CLI_FLAG_TENSOR, 1, "[Hcq] bfloat16"},
    {"rmsnorm_gamma_ckv", CLI_FLAG_TENSOR, 1, "[512] bfloat16"},
    {"rope_sin", CLI_FLAG_TENSOR, 1, "[T, 64] or [B, S, 64] (half layout)"},
    {"rope_cos", CLI_FLAG_TENSOR, 1, "as rope_sin"},
    {"kv_cache", CLI_FLAG_TENSOR, 1, "PA_BSND [blocks, bs, 1, 512], PA_NZ, BSND or TND (updated)"},
    {"kr_cache", CLI_FLAG_TENSOR, 0, "as kv_cache with 64 (updated; unused by kv_cache_quant_mode 3)"},
    {"cache_index", CLI_FLAG_TENSOR, 0, "int64 [T] or [B, S] slots (PA_*; negative: no write)"},
    {"cache_mode", CLI_FLAG_STRING, 0, "PA_BSND (default), PA_NZ, BSND or TND"},
    {"rmsnorm_epsilon_cq", CLI_FLAG_FLOAT, 0, "default 1e-5"},
    {"rmsnorm_epsilon_ckv", CLI_FLAG_FLOAT, 0, "default 1e-5"},
    {"qc_qr_scale", CLI_FLAG_FLOAT, 0, "default 1.0"},
    {"kc_scale", CLI_FLAG_FLOAT, 0, "default 1.0"},
    {"query_norm_flag", CLI_FLAG_INT, 0, "1: write query_norm (default 0)"},
    {"weight_quant_mode", CLI_FLAG_INT, 0, "0 (default), 1 int8 weight_uq_qr, 2 also int8 "
                                           "token_x / weight_dq / weight_dkv_kr"},
    {"dequant_scale_x", CLI_FLAG_TENSOR, 0, "float32 [T, 1] (weight_quant_mode 2)"},
    {"dequant_scale_w_dq", CLI_FLAG_TENSOR, 0, "float32 [1, Hcq] (weight_quant_mode 2)"},
    {"dequant_scale_w_uq_qr", CLI_FLAG_TENSOR, 0, "float32 [1, N*(D+64)] (weight_quant_mode 1, 2)"},
    {"dequant_scale_w_dkv_kr", CLI_FLAG_TENSOR, 0, "float32 [1, 576] (weight_quant_mode 2)"},
    {"smooth_scales_cq", CLI_FLAG_TENSOR, 0, "float32 [1, Hcq] (weight_quant_mode 1, 2; optional)"},
    {"kv_cache_quant_mode", CLI_FLAG_INT, 0, "0 (default), 1 per tensor, 2 per channel, 3 C8 "
                                             "per 128-tile (int8 caches)"},
    {"query_quant_mode", CLI_FLAG_INT, 0, "0 (default), 1 int8 query per token-head"},
    {"ckvkr_repo_mode", CLI_FLAG_INT, 0, "1 with kv_cache_quant_mode 3 (default 0)"},
    {"quant_scale_repo_mode", CLI_FLAG_INT, 0, "1 with kv_cache_quant_mode 3 (default 0)"},
    {"tile_size", CLI_FLAG_INT, 0, "128 (default)"},
    {"quant_scale_ckv", CLI_FLAG_TENSOR, 0, "float32 [1] (mode 1) or [1, 512] (mode 2)"},
    {"quant_scale_ckr", CLI_FLAG_TENSOR, 0, "float32 [1, 64] (mode 2)"},
    {"k_nope_clip_alpha", CLI_FLAG_TENSOR, 0, "float32 [1] (mode 3; default 1)"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const prolog_outputs[] = {"query_out", "query_rope_out", "query_norm",
                                             "kv_cache", "kr_cache", "dequant_scale_q_nope",
                                             "dequant_scale_q_norm", NULL};

static fia_status prolog_plan_fn(fia_context *ctx, const void *call, fia_plan **plan, size_t *ws) {
    const void *const *c = call;
    return fia_mla_prolog_v3_plan(ctx, c[0], c[1], plan, ws);
}

/* One check line: every float output within 1e-3 + 5e-3 |want| plus the oracle's slack, the
 * cache elements outside the written slots exact (ref/case_prolog.c); returns 1 on failure. */
static int print_check(const fia_case_output *o, const fia_ref_check *k) {
    printf("check %s: max abs err %.3g, %lld of %lld off the oracle", o->name, k->max_abs_err,
           (long long)k->failures, (long long)k->elements);
    if (k->first >= 0)
        printf(" (first at %lld: fia %.6g oracle %.6g)", (long long)k->first, fia_ref_load(o->got, k->first),
               o->want[k->first]);
    printf(", %s\n", k->failures ? "FAIL" : "pass");
    return k->failures != 0;
}

static int run_prolog(const cli_args *a) {
    enum { X, WDQ, WUQ, WUK, WKV, GCQ, GCKV, SIN, COS, KV, KR, CI, QSKV, QSKR, ALPHA, DSX, DSWDQ,
           DSWUQ, DSWKV, SMOOTH, N_IN };
    static const char *const names[N_IN] = {
        "token_x", "weight_dq", "weight_uq_qr", "weight_uk", "weight_dkv_kr", "rmsnorm_gamma_cq",
        "rmsnorm_gamma_ckv", "rope_sin", "rope_cos", "kv_cache", "kr_cache", "cache_index",
        "quant_scale_ckv", "quant_scale_ckr", "k_nope_clip_alpha", "dequant_scale_x",
        "dequant_scale_w_dq", "dequant_scale_w_uq_qr", "dequant_scale_w_dkv_kr",
        "smooth_scales_cq"};
    cli_tensor in[N_IN];
    cli_output outs[7];
    memset(in, 0, sizeof in), memset(outs, 0, sizeof outs);
    int rc = CLI_EXIT_USAGE;
    fia_case c; /* --check: the case description of ref/case_prolog.c */
    memset(&c, 0, sizeof c);

    fia_mla_prolog_v3_params p;
    fia_mla_prolog_v3_params_init(&p);
    const char *cm = cli_arg(a, "cache_mode");
    if (cm && fia_layout_parse(cm, &p.cache_mode) != FIA_STATUS_SUCCESS) {
        cli_error("--cache_mode: unknown layout '%s' (PA_BSND, PA_NZ, BSND or TND)", cm);
        return CLI_EXIT_USAGE;
    }
    p.rmsnorm_epsilon_cq = cli_arg_float(a, "rmsnorm_epsilon_cq", p.rmsnorm_epsilon_cq);
    p.rmsnorm_epsilon_ckv = cli_arg_float(a, "rmsnorm_epsilon_ckv", p.rmsnorm_epsilon_ckv);
    p.qc_qr_scale = cli_arg_float(a, "qc_qr_scale", p.qc_qr_scale);
    p.kc_scale = cli_arg_float(a, "kc_scale", p.kc_scale);
    p.query_norm_flag = (int32_t)cli_arg_int(a, "query_norm_flag", 0);
    p.weight_quant_mode = (int32_t)cli_arg_int(a, "weight_quant_mode", 0);
    p.kv_cache_quant_mode = (int32_t)cli_arg_int(a, "kv_cache_quant_mode", 0);
    p.query_quant_mode = (int32_t)cli_arg_int(a, "query_quant_mode", 0);
    p.ckvkr_repo_mode = (int32_t)cli_arg_int(a, "ckvkr_repo_mode", 0);
    p.quant_scale_repo_mode = (int32_t)cli_arg_int(a, "quant_scale_repo_mode", 0);
    p.tile_size = cli_arg_int(a, "tile_size", p.tile_size);
    if (a->check && (p.kv_cache_quant_mode || p.query_quant_mode || p.weight_quant_mode)) {
        cli_error("--check covers the bf16 modes only (the quantized modes are checked by "
                  "tests/test_mla_prolog)");
        return CLI_EXIT_USAGE;
    }

    for (int i = 0; i < N_IN; i++)
        if (cli_load_tensor(a, names[i], &in[i]) != 0) goto done;
    const fia_tensor *x = &in[X].t, *uk = &in[WUK].t, *dq = &in[WDQ].t;
    if ((x->ndim != 2 && x->ndim != 3) || uk->ndim != 3 || dq->ndim != 2) {
        cli_error("token_x has %d dims (2 or 3), weight_uk %d (3), weight_dq %d (2)", (int)x->ndim,
                  (int)uk->ndim, (int)dq->ndim);
        goto done;
    }
    const int64_t T = x->ndim == 3 ? x->shape[0] * x->shape[1] : x->shape[0];
    const int64_t N = uk->shape[0], Hcq = dq->shape[1];
    int64_t sq[4], sr[4], sn[3];
    const int32_t lead = x->ndim - 1;
    for (int32_t d = 0; d < lead; d++) sq[d] = sr[d] = sn[d] = x->shape[d];
    sq[lead] = sr[lead] = N, sq[lead + 1] = HCKV, sr[lead + 1] = DR, sn[lead] = Hcq;
    int64_t sd[4];
    memcpy(sd, sq, sizeof sd);
    sd[lead + 1] = 1;
    if (p.query_quant_mode &&
        cli_alloc_output(&outs[5], "dequant_scale_q_nope", FIA_DTYPE_FLOAT32, lead + 2, sd) != 0)
        goto done;
    const int64_t st1[2] = {T, 1};
    if (p.weight_quant_mode && p.query_norm_flag &&
        cli_alloc_output(&outs[6], "dequant_scale_q_norm", FIA_DTYPE_FLOAT32, 2, st1) != 0)
        goto done;
    if (cli_alloc_output(&outs[0], "query_out",
                         p.query_quant_mode ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16, lead + 2,
                         sq) != 0 ||
        cli_alloc_output(&outs[1], "query_rope_out", FIA_DTYPE_BFLOAT16, lead + 2, sr) != 0 ||
        (p.query_norm_flag &&
         cli_alloc_output(&outs[2], "query_norm",
                          p.weight_quant_mode ? FIA_DTYPE_INT8 : FIA_DTYPE_BFLOAT16, lead + 1,
                          sn) != 0))
        goto done;
    if (a->check) {
        if (!in[KR].present) {
            cli_error("--check needs kr_cache");
            goto done;
        }
    }
    fia_mla_prolog_v3_tensors t;
    memset(&t, 0, sizeof t);
    t.token_x = x, t.weight_dq = dq, t.weight_uq_qr = &in[WUQ].t, t.weight_uk = uk;
    t.weight_dkv_kr = &in[WKV].t, t.rmsnorm_gamma_cq = &in[GCQ].t, t.rmsnorm_gamma_ckv = &in[GCKV].t;
    t.rope_sin = &in[SIN].t, t.rope_cos = &in[COS].t, t.kv_cache = &in[KV].t;
    t.kr_cache = in[KR].present ? &in[KR].t : NULL;
    t.cache_index = in[CI].present ? &in[CI].t : NULL;
    t.quant_scale_ckv = in[QSKV].present ? &in[QSKV].t : NULL;
    t.quant_scale_ckr = in[QSKR].present ? &in[QSKR].t : NULL;
    t.k_nope_clip_alpha = in[ALPHA].present ? &in[ALPHA].t : NULL;
    t.dequant_scale_q_nope = p.query_quant_mode ? &outs[5].t : NULL;
    t.dequant_scale_q_norm = p.weight_quant_mode && p.query_norm_flag ? &outs[6].t : NULL;
    t.dequant_scale_x = in[DSX].present ? &in[DSX].t : NULL;
    t.dequant_scale_w_dq = in[DSWDQ].present ? &in[DSWDQ].t : NULL;
    t.dequant_scale_w_uq_qr = in[DSWUQ].present ? &in[DSWUQ].t : NULL;
    t.dequant_scale_w_dkv_kr = in[DSWKV].present ? &in[DSWKV].t : NULL;
    t.smooth_scales_cq = in[SMOOTH].present ? &in[SMOOTH].t : NULL;
    t.query_out = &outs[0].t, t.query_rope_out = &outs[1].t;
    t.query_norm = p.query_norm_flag ? &outs[2].t : NULL;
    if (a->check) { /* the caches as loaded: snapshotted before the call */
        c.t.prolog = t;
        c.p.prolog = p;
        fia_case_bind(&c, "mla_prolog_v3");
        if (fia_case_prepare(&c) != 0) {
            cli_error("check: out of memory");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
    }
    const void *call[2] = {&t, &p};
    rc = cli_run_op(a, "mla_prolog_v3", prolog_plan_fn, call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;
    outs[3].name = "kv_cache", outs[3].t = in[KV].t, outs[3].data = in[KV].t.data;
    if (in[KR].present)
        outs[4].name = "kr_cache", outs[4].t = in[KR].t, outs[4].data = in[KR].t.data;
    if (a->check) {
        if (fia_case_oracle(&c) != 0) {
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
        fia_case_check(&c, 1, each);
        int bad = 0;
        for (int i = 0; i < c.n_out; i++)
            if (c.out[i].got) bad |= print_check(&c.out[i], &each[i]);
        printf("check: %s\n", bad ? "FAIL" : "pass");
        if (bad) rc = CLI_EXIT_FAIL;
    }
    {
        /* query_norm only when computed */
        cli_output w[7];
        int nw = 0;
        for (int i = 0; i < 7; i++)
            if (outs[i].name) w[nw++] = outs[i];
        if (cli_write_outputs(a, w, nw) != 0) rc = CLI_EXIT_USAGE;
    }
    outs[3].data = outs[4].data = NULL; /* views of the loaded caches */
done:
    fia_case_free(&c);
    for (int i = 0; i < N_IN; i++) cli_free_tensor(&in[i]);
    for (int i = 0; i < 3; i++) free(outs[i].data);
    free(outs[5].data);
    free(outs[6].data);
    return rc;
}

const cli_op cli_op_mla_prolog_v3 = {
    "mla_prolog_v3",
    "MLA prolog: q/kv projections, norms, RoPE, cache write (npu_mla_prolog_v3)",
    prolog_flags, prolog_outputs, run_prolog};
