/*
 * op_chain.c - `fia op` for the attention-chain helper operators: rms_norm, add_rms_norm,
 * rotary_mul, interleave_rope, dynamic_quant, scatter_update, scatter_nd_update and
 * gather_selection_kv_cache. Inputs are .npy files; outputs are written with --out NAME=PATH.
 * The in-place operators update the loaded target and write it back under its own name
 * (--out input=PATH, --out data=PATH, --out selection_kv_cache=PATH, ...).
 *
 * --check runs the operator's case description (ref/case.h: the double-precision oracles of
 * ref/ref_chain.c) and compares at the op-wide rows of ref/tolerance.h: float outputs at atol
 * 1e-3 + rtol 5e-3 (fp32 1e-5) by the main input's dtype, dynamic_quant's int8 exactly but for
 * +-1 at rounding ties, the in-place targets exactly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "case.h"
#include "cli.h"

/* ---- shared -------------------------------------------------------------------------------- */

typedef struct chain_call {
    int op;
    const void *t, *p;
} chain_call;

enum { OP_RMS, OP_ADD_RMS, OP_ROPE, OP_IROPE, OP_QUANT, OP_SU, OP_SND, OP_GS };

static fia_status chain_plan_fn(fia_context *ctx, const void *call, fia_plan **plan, size_t *ws) {
    const chain_call *c = call;
    switch (c->op) {
    case OP_RMS: return fia_rms_norm_plan(ctx, c->t, c->p, plan, ws);
    case OP_ADD_RMS: return fia_add_rms_norm_plan(ctx, c->t, c->p, plan, ws);
    case OP_ROPE: return fia_rotary_mul_plan(ctx, c->t, c->p, plan, ws);
    case OP_IROPE: return fia_interleave_rope_plan(ctx, c->t, c->p, plan, ws);
    case OP_QUANT: return fia_dynamic_quant_plan(ctx, c->t, c->p, plan, ws);
    case OP_SU: return fia_scatter_update_plan(ctx, c->t, c->p, plan, ws);
    case OP_SND: return fia_scatter_nd_update_plan(ctx, c->t, c->p, plan, ws);
    default: return fia_gather_selection_kv_cache_plan(ctx, c->t, c->p, plan, ws);
    }
}

static int load_all(const cli_args *a, const char *const *names, cli_tensor *in, int n) {
    for (int i = 0; i < n; i++)
        if (cli_load_tensor(a, names[i], &in[i]) != 0) return -1;
    return 0;
}

static void free_all(cli_tensor *in, int n, cli_output *outs, int nout) {
    for (int i = 0; i < n; i++) cli_free_tensor(&in[i]);
    for (int i = 0; i < nout; i++) free(outs[i].data);
}


/* A view of a loaded (in-place) tensor as an output to write back. */
static cli_output inplace_out(const char *name, const cli_tensor *t) {
    cli_output o;
    memset(&o, 0, sizeof o);
    o.name = name;
    o.t = t->t;
    o.data = t->t.data;
    return o;
}

/* ---- rms_norm / add_rms_norm ---------------------------------------------------------------- */

static const cli_flag rms_flags[] = {
    {"x", CLI_FLAG_TENSOR, 1, "[..., H], float32 / float16 / bfloat16"},
    {"gamma", CLI_FLAG_TENSOR, 1, "the trailing dims of x, x's dtype or float32"},
    {"epsilon", CLI_FLAG_FLOAT, 0, "default 1e-6"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const cli_flag add_rms_flags[] = {
    {"x1", CLI_FLAG_TENSOR, 1, "[..., H], float32 / float16 / bfloat16"},
    {"x2", CLI_FLAG_TENSOR, 1, "x1's shape and dtype"},
    {"gamma", CLI_FLAG_TENSOR, 1, "the trailing dims of x1, x1's dtype or float32"},
    {"epsilon", CLI_FLAG_FLOAT, 0, "default 1e-6"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const rms_outputs[] = {"y", "rstd", NULL};
static const char *const add_rms_outputs[] = {"y", "rstd", "x", NULL};

static int run_norm(const cli_args *a, int add) {
    static const char *const names[3] = {"x1", "x2", "gamma"};
    static const char *const names1[3] = {"x", "x2", "gamma"};
    cli_tensor in[3];
    cli_output outs[3];
    memset(in, 0, sizeof in), memset(outs, 0, sizeof outs);
    int rc = CLI_EXIT_USAGE;
    if (load_all(a, add ? names : names1, in, 3) != 0) goto done;
    if (!in[0].present || !in[2].present) goto done;
    const fia_tensor *x = &in[0].t;
    const int32_t g = in[2].t.ndim;
    if (g > x->ndim) {
        cli_error("gamma has %d dims, %s has %d", (int)g, add ? "x1" : "x", (int)x->ndim);
        goto done;
    }
    int64_t rs[FIA_MAX_DIMS];
    for (int32_t d = 0; d < x->ndim; d++) rs[d] = d < x->ndim - g ? x->shape[d] : 1;
    if (cli_alloc_output(&outs[0], "y", x->dtype, x->ndim, x->shape) != 0 ||
        cli_alloc_output(&outs[1], "rstd", FIA_DTYPE_FLOAT32, x->ndim, rs) != 0 ||
        (add && cli_alloc_output(&outs[2], "x", x->dtype, x->ndim, x->shape) != 0))
        goto done;
    fia_rms_norm_params p;
    fia_rms_norm_params_init(&p);
    p.epsilon = cli_arg_float(a, "epsilon", p.epsilon);
    fia_rms_norm_tensors t1 = {x, &in[2].t, &outs[0].t, &outs[1].t};
    fia_add_rms_norm_tensors t2 = {x, &in[1].t, &in[2].t, &outs[0].t, &outs[1].t, &outs[2].t};
    const chain_call call = {add ? OP_ADD_RMS : OP_RMS, add ? (const void *)&t2 : (const void *)&t1, &p};
    rc = cli_run_op(a, add ? "add_rms_norm" : "rms_norm", chain_plan_fn, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;
    if (a->check) {
        fia_case c;
        memset(&c, 0, sizeof c);
        if (add) c.t.add_rms_norm = t2;
        else c.t.rms_norm = t1;
        c.p.rms_norm = p;
        if (cli_check_op(&c, add ? "add_rms_norm" : "rms_norm", &rc) < 0) goto done;
    }
    if (cli_write_outputs(a, outs, add ? 3 : 2) != 0) rc = CLI_EXIT_USAGE;
done:
    free_all(in, 3, outs, 3);
    return rc;
}
static int run_rms(const cli_args *a) { return run_norm(a, 0); }
static int run_add_rms(const cli_args *a) { return run_norm(a, 1); }

/* ---- rotary_mul / interleave_rope ----------------------------------------------------------- */

static const cli_flag rope_flags[] = {
    {"x", CLI_FLAG_TENSOR, 1, "[..., D] (BNSD, BSND, SBND, TND), D even < 896"},
    {"cos", CLI_FLAG_TENSOR, 1, "r1: x's ndim, each dim x's or 1, x's dtype"},
    {"sin", CLI_FLAG_TENSOR, 1, "r2: as cos"},
    {"rotary_mode", CLI_FLAG_STRING, 0, "half (default) or interleave"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const cli_flag irope_flags[] = {
    {"x", CLI_FLAG_TENSOR, 1, "[B, N, S, 64] (any [..., D], D even)"},
    {"cos", CLI_FLAG_TENSOR, 1, "[B, 1, S or 1, 64], x's dtype"},
    {"sin", CLI_FLAG_TENSOR, 1, "as cos"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const rope_outputs[] = {"y", NULL};

static int run_rope_common(const cli_args *a, int inter) {
    static const char *const names[3] = {"x", "cos", "sin"};
    cli_tensor in[3];
    cli_output out;
    memset(in, 0, sizeof in), memset(&out, 0, sizeof out);
    int rc = CLI_EXIT_USAGE;
    fia_rotary_mul_params p;
    fia_rotary_mul_params_init(&p);
    fia_interleave_rope_params ip;
    fia_interleave_rope_params_init(&ip);
    const char *mode = cli_arg(a, "rotary_mode");
    if (mode && strcmp(mode, "half") != 0 && strcmp(mode, "interleave") != 0) {
        cli_error("--rotary_mode: '%s', must be half or interleave", mode);
        goto done;
    }
    if (mode && strcmp(mode, "interleave") == 0) p.rotary_mode = FIA_ROTARY_MODE_INTERLEAVE;
    if (load_all(a, names, in, 3) != 0) goto done;
    if (cli_alloc_output(&out, "y", in[0].t.dtype, in[0].t.ndim, in[0].t.shape) != 0) goto done;
    fia_rotary_mul_tensors t = {&in[0].t, &in[1].t, &in[2].t, &out.t};
    const chain_call call = {inter ? OP_IROPE : OP_ROPE, &t, inter ? (const void *)&ip : (const void *)&p};
    rc = cli_run_op(a, inter ? "interleave_rope" : "rotary_mul", chain_plan_fn, &call, &out);
    if (rc != CLI_EXIT_OK) goto done;
    if (a->check) {
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.rope = t;
        if (inter) c.p.interleave_rope = ip;
        else c.p.rotary_mul = p;
        if (cli_check_op(&c, inter ? "interleave_rope" : "rotary_mul", &rc) < 0) goto done;
    }
    if (cli_write_outputs(a, &out, 1) != 0) rc = CLI_EXIT_USAGE;
done:
    free_all(in, 3, &out, 1);
    return rc;
}
static int run_rope(const cli_args *a) { return run_rope_common(a, 0); }
static int run_irope(const cli_args *a) { return run_rope_common(a, 1); }

/* ---- dynamic_quant ------------------------------------------------------------------------- */

static const cli_flag quant_flags[] = {
    {"input", CLI_FLAG_TENSOR, 1, "[..., H], float16 / bfloat16 / float32"},
    {"smooth_scales", CLI_FLAG_TENSOR, 0, "[H] ([x.shape[-2]] perchannel; [E, H] with group_index)"},
    {"group_index", CLI_FLAG_TENSOR, 0, "int32 [E]: row boundaries (pertoken)"},
    {"quant_mode", CLI_FLAG_STRING, 0, "pertoken (default), pertensor or perchannel"},
    {"dst_type_max", CLI_FLAG_FLOAT, 0, "0 (default: 127) or in (0, 127]"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const quant_outputs[] = {"y", "scale", NULL};

static int run_quant(const cli_args *a) {
    static const char *const names[3] = {"input", "smooth_scales", "group_index"};
    cli_tensor in[3];
    cli_output outs[2];
    memset(in, 0, sizeof in), memset(outs, 0, sizeof outs);
    int rc = CLI_EXIT_USAGE;
    fia_dynamic_quant_params p;
    fia_dynamic_quant_params_init(&p);
    const char *mode = cli_arg(a, "quant_mode");
    if (mode) {
        if (strcmp(mode, "pertoken") == 0) p.quant_mode = FIA_QUANT_MODE_PERTOKEN;
        else if (strcmp(mode, "pertensor") == 0) p.quant_mode = FIA_QUANT_MODE_PERTENSOR;
        else if (strcmp(mode, "perchannel") == 0) p.quant_mode = FIA_QUANT_MODE_PERCHANNEL;
        else {
            cli_error("--quant_mode: '%s', must be pertoken, pertensor or perchannel", mode);
            goto done;
        }
    }
    p.dst_type_max = cli_arg_float(a, "dst_type_max", 0.0);
    if (load_all(a, names, in, 3) != 0) goto done;
    if (cli_narrow_to_int32(&in[2]) != 0) goto done;
    const fia_tensor *x = &in[0].t;
    if (x->ndim < 1 || (p.quant_mode == FIA_QUANT_MODE_PERCHANNEL && x->ndim < 2)) {
        cli_error("input has %d dims, too few for this quant_mode", (int)x->ndim);
        goto done;
    }
    int64_t ss[FIA_MAX_DIMS];
    int32_t snd = 0;
    if (p.quant_mode == FIA_QUANT_MODE_PERTENSOR) ss[snd++] = 1;
    else
        for (int32_t d = 0; d < x->ndim; d++)
            if (p.quant_mode == FIA_QUANT_MODE_PERTOKEN ? d != x->ndim - 1 : d != x->ndim - 2)
                ss[snd++] = x->shape[d];
    if (snd == 0) ss[snd++] = 1;
    if (cli_alloc_output(&outs[0], "y", FIA_DTYPE_INT8, x->ndim, x->shape) != 0 ||
        cli_alloc_output(&outs[1], "scale", FIA_DTYPE_FLOAT32, snd, ss) != 0)
        goto done;
    fia_dynamic_quant_tensors t = {x, in[1].present ? &in[1].t : NULL, in[2].present ? &in[2].t : NULL,
                                   &outs[0].t, &outs[1].t};
    const chain_call call = {OP_QUANT, &t, &p};
    rc = cli_run_op(a, "dynamic_quant", chain_plan_fn, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;
    if (a->check) {
        fia_case c;
        memset(&c, 0, sizeof c);
        c.t.dynamic_quant = t;
        c.p.dynamic_quant = p;
        if (cli_check_op(&c, "dynamic_quant", &rc) < 0) goto done;
    }
    if (cli_write_outputs(a, outs, 2) != 0) rc = CLI_EXIT_USAGE;
done:
    free_all(in, 3, outs, 2);
    return rc;
}

/* ---- scatter_update / scatter_nd_update ------------------------------------------------------ */

static const cli_flag su_flags[] = {
    {"data", CLI_FLAG_TENSOR, 1, "the target (updated, --out data=PATH), 2..8 dims"},
    {"indices", CLI_FLAG_TENSOR, 1, "int32 / int64 [B] starts, or [K, 2] (batch, start) pairs"},
    {"updates", CLI_FLAG_TENSOR, 1, "data's dtype and ndim"},
    {"axis", CLI_FLAG_INT, 0, "the scattered dim (default -2)"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const su_outputs[] = {"data", NULL};
static const cli_flag snd_flags[] = {
    {"input", CLI_FLAG_TENSOR, 1, "the target (updated, --out input=PATH)"},
    {"indices", CLI_FLAG_TENSOR, 1, "int32 / int64 [..., a]"},
    {"updates", CLI_FLAG_TENSOR, 1, "indices.shape[:-1] + input.shape[a:]"},
    {"cache_mode", CLI_FLAG_STRING, 0, "BSND (plain, default), PA_BSND or PA_NZ (flat slots)"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const snd_outputs[] = {"input", NULL};

static int run_scatter_common(const cli_args *a, int nd) {
    static const char *const su_names[3] = {"data", "indices", "updates"};
    static const char *const snd_names[3] = {"input", "indices", "updates"};
    cli_tensor in[3];
    memset(in, 0, sizeof in);
    int rc = CLI_EXIT_USAGE;
    fia_case c;
    memset(&c, 0, sizeof c);
    fia_scatter_update_params sp;
    fia_scatter_update_params_init(&sp);
    sp.axis = cli_arg_int(a, "axis", sp.axis);
    fia_scatter_nd_update_params np;
    fia_scatter_nd_update_params_init(&np);
    const char *cm = cli_arg(a, "cache_mode");
    if (cm && fia_layout_parse(cm, &np.cache_mode) != FIA_STATUS_SUCCESS) {
        cli_error("--cache_mode: unknown layout '%s' (BSND, PA_BSND or PA_NZ)", cm);
        goto done;
    }
    if (load_all(a, nd ? snd_names : su_names, in, 3) != 0) goto done;
    fia_scatter_update_tensors ts = {&in[0].t, &in[1].t, &in[2].t};
    fia_scatter_nd_update_tensors tn = {&in[0].t, &in[1].t, &in[2].t};
    if (a->check) { /* the target as loaded: snapshotted before the call */
        if (nd) c.t.scatter_nd_update = tn, c.p.scatter_nd_update = np;
        else c.t.scatter_update = ts, c.p.scatter_update = sp;
        fia_case_bind(&c, nd ? "scatter_nd_update" : "scatter_update");
        if (fia_case_prepare(&c) != 0) {
            cli_error("check: out of memory");
            goto done;
        }
    }
    const chain_call call = {nd ? OP_SND : OP_SU, nd ? (const void *)&tn : (const void *)&ts,
                             nd ? (const void *)&np : (const void *)&sp};
    const cli_output out = inplace_out(nd ? "input" : "data", &in[0]);
    rc = cli_run_op(a, nd ? "scatter_nd_update" : "scatter_update", chain_plan_fn, &call, &out);
    if (rc != CLI_EXIT_OK) goto done;
    if (a->check) {
        if (cli_check_op(&c, NULL, &rc) < 0) goto done;
    }
    if (cli_write_outputs(a, &out, 1) != 0) rc = CLI_EXIT_USAGE;
done:
    fia_case_free(&c);
    free_all(in, 3, NULL, 0);
    return rc;
}
static int run_su(const cli_args *a) { return run_scatter_common(a, 0); }
static int run_snd(const cli_args *a) { return run_scatter_common(a, 1); }

/* ---- gather_selection_kv_cache ---------------------------------------------------------------- */

static const cli_flag gs_flags[] = {
    {"selection_k_rope", CLI_FLAG_TENSOR, 0, "[S_BLOCKS, BS, R] (updated; absent: no rope)"},
    {"selection_kv_cache", CLI_FLAG_TENSOR, 1, "[S_BLOCKS, BS, C] (updated)"},
    {"selection_kv_block_table", CLI_FLAG_TENSOR, 1, "int32 [B*S*H, S_MAX_BLOCKS]"},
    {"selection_kv_block_status", CLI_FLAG_TENSOR, 1, "int32 [B, S, H, K+1] or [B*S, H, K+1] (updated)"},
    {"selection_topk_indices", CLI_FLAG_TENSOR, 1, "int32 [B, S, H, K] or [B*S, H, K]"},
    {"full_k_rope", CLI_FLAG_TENSOR, 0, "[F_BLOCKS, BS, R] (with selection_k_rope)"},
    {"full_kv_cache", CLI_FLAG_TENSOR, 1, "[F_BLOCKS, BS, C]"},
    {"full_kv_block_table", CLI_FLAG_TENSOR, 1, "int32 [B, F_MAX_BLOCKS]"},
    {"full_kv_actual_seq", CLI_FLAG_TENSOR, 1, "int32 [B]"},
    {"full_q_actual_seq", CLI_FLAG_TENSOR, 1, "int32 [B]"},
    {"selection_topk_block_size", CLI_FLAG_INT, 0, "default 64"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL}};
static const char *const gs_outputs[] = {"selection_kv_actual_seq", "selection_kv_cache",
                                         "selection_k_rope", "selection_kv_block_status", NULL};

static int run_gs(const cli_args *a) {
    enum { SR, SKV, ST, SS, TK, FR, FKV, FT, KVL, QL, N };
    static const char *const names[N] = {
        "selection_k_rope", "selection_kv_cache", "selection_kv_block_table",
        "selection_kv_block_status", "selection_topk_indices", "full_k_rope", "full_kv_cache",
        "full_kv_block_table", "full_kv_actual_seq", "full_q_actual_seq"};
    cli_tensor in[N];
    cli_output outs[4];
    memset(in, 0, sizeof in), memset(outs, 0, sizeof outs);
    int rc = CLI_EXIT_USAGE;
    fia_case c;
    memset(&c, 0, sizeof c);
    fia_gather_selection_kv_cache_params p;
    fia_gather_selection_kv_cache_params_init(&p);
    p.selection_topk_block_size = cli_arg_int(a, "selection_topk_block_size", p.selection_topk_block_size);
    if (load_all(a, names, in, N) != 0) goto done;
    const int idx32[] = {ST, SS, TK, FT, KVL, QL};
    for (size_t i = 0; i < sizeof idx32 / sizeof idx32[0]; i++)
        if (cli_narrow_to_int32(&in[idx32[i]]) != 0) goto done;
    const int rope = in[SR].present && in[FR].present;
    const int64_t rows = in[ST].t.ndim == 2 ? in[ST].t.shape[0] : 0;
    const int64_t rs[1] = {rows};
    if (cli_alloc_output(&outs[0], "selection_kv_actual_seq", FIA_DTYPE_INT32, 1, rs) != 0) goto done;
    fia_gather_selection_kv_cache_tensors t = {
        rope ? &in[SR].t : NULL, &in[SKV].t, &in[ST].t, &in[SS].t, &in[TK].t,
        rope ? &in[FR].t : NULL, &in[FKV].t, &in[FT].t, &in[KVL].t, &in[QL].t, &outs[0].t};
    if (a->check) { /* the caches as loaded: snapshotted before the call */
        c.t.gather_selection = t;
        c.p.gather_selection = p;
        fia_case_bind(&c, "gather_selection_kv_cache");
        if (fia_case_prepare(&c) != 0) {
            cli_error("check: out of memory");
            goto done;
        }
    }
    const chain_call call = {OP_GS, &t, &p};
    rc = cli_run_op(a, "gather_selection_kv_cache", chain_plan_fn, &call, &outs[0]);
    if (rc != CLI_EXIT_OK) goto done;
    outs[1] = inplace_out("selection_kv_cache", &in[SKV]);
    outs[2] = inplace_out("selection_kv_block_status", &in[SS]);
    int nout = 3;
    if (rope) outs[nout++] = inplace_out("selection_k_rope", &in[SR]);
    if (a->check) {
        if (cli_check_op(&c, NULL, &rc) < 0) goto done;
    }
    if (cli_write_outputs(a, outs, nout) != 0) rc = CLI_EXIT_USAGE;
    outs[1].data = outs[2].data = outs[3].data = NULL; /* views of inputs */
done:
    fia_case_free(&c);
    free_all(in, N, outs, 1);
    return rc;
}

const cli_op cli_op_rms_norm = {"rms_norm", "y = x / sqrt(mean(x^2) + eps) * gamma, rstd (npu_rms_norm)",
                                rms_flags, rms_outputs, run_rms};
const cli_op cli_op_add_rms_norm = {"add_rms_norm", "x = x1 + x2, then rms_norm: (y, rstd, x) (npu_add_rms_norm)",
                                    add_rms_flags, add_rms_outputs, run_add_rms};
const cli_op cli_op_rotary_mul = {"rotary_mul", "y = x*cos + rotate(x)*sin, half or interleave (npu_rotary_mul)",
                                  rope_flags, rope_outputs, run_rope};
const cli_op cli_op_interleave_rope = {"interleave_rope", "MLA k_rope: de-interleave, then rotate-half RoPE (npu_interleave_rope)",
                                       irope_flags, rope_outputs, run_irope};
const cli_op cli_op_dynamic_quant = {"dynamic_quant", "symmetric dynamic int8 quant per token / tensor / channel (npu_dynamic_quant)",
                                     quant_flags, quant_outputs, run_quant};
const cli_op cli_op_scatter_update = {"scatter_update", "in place: data[b, .., p+j, ..] = updates[k, .., j, ..] (scatter_update_)",
                                      su_flags, su_outputs, run_su};
const cli_op cli_op_scatter_nd_update = {"scatter_nd_update", "in place: input[indices[i]] = updates[i], plain or paged slots (npu_scatter_nd_update_)",
                                         snd_flags, snd_outputs, run_snd};
const cli_op cli_op_gather_selection_kv_cache = {"gather_selection_kv_cache", "gathers top-k token blocks of a paged cache into a selection cache",
                                                 gs_flags, gs_outputs, run_gs};
