/*
 * cmd_op.c - `fia op NAME --flag value ...`: runs one operator on .npy files.
 *
 * The operator table at the end of this file maps a name to its flag table, its output names and
 * its handler; the generic parser in this file turns argv into a cli_args for the handler (and
 * handles --threads, --check, --out NAME=PATH and --help for every operator). A handler loads
 * its tensors, allocates the outputs with the shapes of the operator contract, calls the
 * library, optionally compares with the double-precision oracle, and only then writes the
 * outputs (temporary names renamed into place). Any bad input ends with exit status 2 and one
 * line on stderr.
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

#include "cli.h"
#include "npy.h"
#include "ref_fia.h"
#include "ref_mla.h"
#include "ref_smallq.h"

/* ---------------------------------------------------------------------------------------- */
/* Value parsing                                                                            */
/* ---------------------------------------------------------------------------------------- */

static int parse_int64(const char *text, int64_t *v) {
    if (text == NULL || *text == '\0') return -1;
    char *end = NULL;
    errno = 0;
    const long long x = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') return -1;
    *v = (int64_t)x;
    return 0;
}

static int parse_double(const char *text, double *v) {
    if (text == NULL || *text == '\0') return -1;
    char *end = NULL;
    errno = 0;
    const double x = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(x)) return -1;
    *v = x;
    return 0;
}

/* Parses "3,5,7" into values (may be NULL to only validate). Returns the count, -1 on error. */
static int64_t parse_int_list(const char *text, int64_t *values) {
    int64_t n = 0;
    const char *p = text;
    if (p == NULL || *p == '\0') return -1;
    for (;;) {
        char *end = NULL;
        errno = 0;
        const long long x = strtoll(p, &end, 10);
        if (errno != 0 || end == p) return -1;
        if (values != NULL) values[n] = (int64_t)x;
        n++;
        if (*end == '\0') break;
        if (*end != ',') return -1;
        p = end + 1;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* The generic flag parser                                                                  */
/* ---------------------------------------------------------------------------------------- */

static const cli_flag common_flags[] = {
    {"threads", CLI_FLAG_INT, 0, "worker threads (default: FIA_NUM_THREADS, else all CPUs)"},
    {"check", CLI_FLAG_SWITCH, 0,
     "also run the double-precision oracle and print the max error and pass/fail"},
    {"out", CLI_FLAG_STRING, 0, "NAME=PATH: write output NAME to PATH (.npy); repeatable"},
    {"help", CLI_FLAG_SWITCH, 0, "print this help"},
    {NULL, CLI_FLAG_SWITCH, 0, NULL},
};

static int find_flag(const cli_flag *flags, const char *name, size_t len) {
    for (int i = 0; flags[i].name != NULL; i++)
        if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0) return i;
    return -1;
}

static const char *kind_metavar(cli_flag_kind kind) {
    switch (kind) {
    case CLI_FLAG_TENSOR: return " PATH.npy[:bf16]";
    case CLI_FLAG_INT: return " N";
    case CLI_FLAG_FLOAT: return " X";
    case CLI_FLAG_INT_LIST: return " N,N,...";
    case CLI_FLAG_STRING: return " TEXT";
    case CLI_FLAG_SWITCH: return "";
    }
    return "";
}

static void op_usage(const cli_op *op, FILE *out) {
    fprintf(out, "usage: fia op %s [flags]\n  %s\n\nflags:\n", op->name, op->summary);
    for (int i = 0; op->flags[i].name != NULL; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", op->flags[i].name,
                 kind_metavar(op->flags[i].kind));
        fprintf(out, "  %-36s %s%s\n", left, op->flags[i].help,
                op->flags[i].required ? " (required)" : "");
    }
    fprintf(out, "\ncommon flags:\n");
    for (int i = 0; common_flags[i].name != NULL; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", common_flags[i].name,
                 strcmp(common_flags[i].name, "out") == 0
                     ? " NAME=PATH"
                     : kind_metavar(common_flags[i].kind));
        fprintf(out, "  %-36s %s\n", left, common_flags[i].help);
    }
    fprintf(out, "\noutputs:");
    for (int i = 0; op->outputs[i] != NULL; i++) fprintf(out, " %s", op->outputs[i]);
    fprintf(out, "\n");
}

/* Validates a flag's text by kind; prints the error. */
static int validate_value(const cli_flag *f, const char *text) {
    int64_t i64;
    double d;
    switch (f->kind) {
    case CLI_FLAG_INT:
        if (parse_int64(text, &i64) == 0) return 0;
        cli_error("--%s: '%s' is not an integer", f->name, text);
        return -1;
    case CLI_FLAG_FLOAT:
        if (parse_double(text, &d) == 0) return 0;
        cli_error("--%s: '%s' is not a finite number", f->name, text);
        return -1;
    case CLI_FLAG_INT_LIST:
        if (parse_int_list(text, NULL) > 0) return 0;
        cli_error("--%s: '%s' is not a comma-separated list of integers", f->name, text);
        return -1;
    case CLI_FLAG_TENSOR:
    case CLI_FLAG_STRING:
        if (text[0] != '\0') return 0;
        cli_error("--%s: empty value", f->name);
        return -1;
    case CLI_FLAG_SWITCH: return 0;
    }
    return 0;
}

/* Parses the flags after the operator name. Returns 0, 1 for --help, -1 on error (printed). */
static int parse_args(const cli_op *op, int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->op = op;
    int seen_threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            cli_error("unexpected argument '%s' (flags start with --; see 'fia op %s --help')",
                      arg, op->name);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        const size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const int fi = find_flag(op->flags, name, len);
        const int ci = fi < 0 ? find_flag(common_flags, name, len) : -1;
        if (fi < 0 && ci < 0) {
            cli_error("unknown flag --%.*s for %s (see 'fia op %s --help')", (int)len, name,
                      op->name, op->name);
            return -1;
        }
        const cli_flag *f = fi >= 0 ? &op->flags[fi] : &common_flags[ci];
        const char *value = NULL;
        if (f->kind == CLI_FLAG_SWITCH) {
            if (eq != NULL) {
                cli_error("--%s takes no value", f->name);
                return -1;
            }
        } else if (eq != NULL) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) {
                cli_error("--%s needs a value", f->name);
                return -1;
            }
            value = argv[++i];
        }
        if (value != NULL && validate_value(f, value) != 0) return -1;
        if (fi >= 0) {
            if (fi >= CLI_MAX_FLAGS) {
                cli_error("internal: operator %s has too many flags", op->name);
                return -1;
            }
            if (a->values[fi] != NULL) {
                cli_error("--%s is given twice", f->name);
                return -1;
            }
            a->values[fi] = value != NULL ? value : "";
            continue;
        }
        if (strcmp(f->name, "help") == 0) return 1;
        if (strcmp(f->name, "check") == 0) {
            a->check = 1;
        } else if (strcmp(f->name, "threads") == 0) {
            int64_t t = 0;
            parse_int64(value, &t);
            if (seen_threads++) {
                cli_error("--threads is given twice");
                return -1;
            }
            if (t < 0 || t > INT32_MAX) {
                cli_error("--threads: %lld is out of range", (long long)t);
                return -1;
            }
            a->threads = (int32_t)t;
        } else { /* --out NAME=PATH */
            const char *sep = strchr(value, '=');
            if (sep == NULL || sep == value || sep[1] == '\0') {
                cli_error("--out: '%s' is not NAME=PATH", value);
                return -1;
            }
            const size_t nlen = (size_t)(sep - value);
            int known = -1;
            for (int k = 0; op->outputs[k] != NULL; k++)
                if (strlen(op->outputs[k]) == nlen && strncmp(op->outputs[k], value, nlen) == 0)
                    known = k;
            if (known < 0) {
                cli_error("--out: %s has no output named '%.*s'", op->name, (int)nlen, value);
                return -1;
            }
            for (int k = 0; k < a->n_outs; k++) {
                if (strcmp(a->out_names[k], op->outputs[known]) == 0) {
                    cli_error("--out: output %s is given twice", op->outputs[known]);
                    return -1;
                }
            }
            if (a->n_outs >= CLI_MAX_OUTS) {
                cli_error("--out: too many outputs");
                return -1;
            }
            /* PATH:bf16 writes the output as bfloat16 bits (uint16 .npy) under PATH; any other
             * ":suffix" is refused rather than becoming part of the file name */
            const char *path = sep + 1, *colon = strrchr(path, ':');
            int bf16 = 0;
            if (colon != NULL && colon[1] != '\0' && strchr(colon, '/') == NULL) {
                if (strcmp(colon, ":bf16") != 0) {
                    cli_error("--out %s: unknown suffix '%s' (only :bf16 is accepted)",
                              op->outputs[known], colon);
                    return -1;
                }
                if (colon == path) {
                    cli_error("--out %s: ':bf16' needs a path before it", op->outputs[known]);
                    return -1;
                }
                char *copy = strndup(path, (size_t)(colon - path)); /* lives until exit */
                if (copy == NULL) {
                    cli_error("out of memory");
                    return -1;
                }
                path = copy;
                bf16 = 1;
            }
            a->out_names[a->n_outs] = op->outputs[known];
            a->out_paths[a->n_outs] = path;
            a->out_bf16[a->n_outs] = bf16;
            a->n_outs++;
        }
    }
    for (int i = 0; op->flags[i].name != NULL; i++) {
        if (op->flags[i].required && a->values[i] == NULL) {
            cli_error("--%s is required by %s", op->flags[i].name, op->name);
            return -1;
        }
    }
    return 0;
}

const char *cli_arg(const cli_args *a, const char *name) {
    const int i = find_flag(a->op->flags, name, strlen(name));
    return i >= 0 ? a->values[i] : NULL;
}

int64_t cli_arg_int(const cli_args *a, const char *name, int64_t def) {
    int64_t v;
    const char *text = cli_arg(a, name);
    return text != NULL && parse_int64(text, &v) == 0 ? v : def;
}

double cli_arg_float(const cli_args *a, const char *name, double def) {
    double v;
    const char *text = cli_arg(a, name);
    return text != NULL && parse_double(text, &v) == 0 ? v : def;
}

int cli_arg_switch(const cli_args *a, const char *name) { return cli_arg(a, name) != NULL; }

int cli_arg_int_list(const cli_args *a, const char *name, int64_t **values, int64_t *count) {
    *values = NULL;
    *count = 0;
    const char *text = cli_arg(a, name);
    if (text == NULL) return 0;
    const int64_t n = parse_int_list(text, NULL);
    if (n <= 0) return 0;
    int64_t *v = malloc((size_t)n * sizeof *v);
    if (v == NULL) {
        cli_error("out of memory");
        return -1;
    }
    parse_int_list(text, v);
    *values = v;
    *count = n;
    return 0;
}

const char *cli_out_path(const cli_args *a, const char *name) {
    for (int k = 0; k < a->n_outs; k++)
        if (strcmp(a->out_names[k], name) == 0) return a->out_paths[k];
    return NULL;
}

int cli_out_bf16(const cli_args *a, const char *name) {
    for (int k = 0; k < a->n_outs; k++)
        if (strcmp(a->out_names[k], name) == 0) return a->out_bf16[k];
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Checks                                                                                   */
/* ---------------------------------------------------------------------------------------- */

void cli_tolerance(fia_dtype dtype, double *atol, double *rtol) {
    if (dtype == FIA_DTYPE_FLOAT32) {
        *atol = 1e-5;
        *rtol = 1e-5;
    } else {
        *atol = 1e-3;
        *rtol = 5e-3;
    }
}

void cli_check_tensor(const fia_tensor *got, const double *want, double atol, double rtol,
                      cli_check *c) {
    const int64_t n = fia_tensor_numel(got);
    for (int64_t i = 0; i < n; i++) {
        const double g = fia_ref_load(got, i);
        const double w = want[i];
        c->elements++;
        if (isinf(w) || isinf(g) || isnan(w) || isnan(g)) {
            if (!(isinf(w) && isinf(g) && (w > 0) == (g > 0))) c->failures++;
            continue;
        }
        const double err = fabs(g - w);
        if (err > c->max_abs_err) c->max_abs_err = err;
        if (!(err <= atol + rtol * fabs(w))) c->failures++;
    }
}

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
    double *want_out = NULL, *want_lse = NULL;
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
    if (a->check) {
        const int64_t n_out = fia_tensor_numel(&outs[0].t);
        want_out = malloc((size_t)(n_out > 0 ? n_out : 1) * sizeof *want_out);
        if (p.softmax_lse_flag) {
            const int64_t n_lse = fia_tensor_numel(&outs[1].t);
            want_lse = malloc((size_t)(n_lse > 0 ? n_lse : 1) * sizeof *want_lse);
        }
        if (want_out == NULL || (p.softmax_lse_flag && want_lse == NULL)) {
            cli_error("check: out of memory");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        if ((mla ? fia_ref_mla(&t, &p, want_out, want_lse)
                 : fia_ref_fused_infer_attention_score(&t, &p, want_out, want_lse)) != 0) {
            cli_error("check: the oracle cannot run this call");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        double atol, rtol;
        cli_tolerance(out_dtype, &atol, &rtol);
        if (in[T_KEY].t.dtype == FIA_DTYPE_INT8 && mla) atol = rtol = 2e-2; /* int8 MLA form */
        const double *const want[2] = {want_out, want_lse};
        if (cli_check_outputs(outs, want, n_outs, atol, rtol)) rc = CLI_EXIT_FAIL;
    }

    /* Outputs last: only a successful call writes files. */
    if (cli_write_outputs(a, outs, n_outs) != 0) rc = CLI_EXIT_USAGE;

done:
    free(want_out);
    free(want_lse);
    for (int i = 0; i < 2; i++) free(outs[i].data);
    for (int i = 0; i < T_COUNT; i++) cli_free_tensor(&in[i]);
    free(seq);
    free(seq_kv);
    return rc;
}

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
    double *want = NULL;
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
    if (a->check) {
        const int64_t n = fia_tensor_numel(&out.t);
        want = malloc((size_t)(n > 0 ? n : 1) * sizeof *want);
        if (want == NULL) {
            cli_error("check: out of memory");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        if (fia_ref_smallq_flash_attention(&in[SQ_Q].t, &in[SQ_K].t, &in[SQ_V].t, NULL, 0,
                                           want) != 0) {
            cli_error("check: the oracle cannot run this call");
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        double atol, rtol;
        cli_tolerance(out.t.dtype, &atol, &rtol);
        cli_check c = {0, 0, 0};
        cli_check_tensor(&out.t, want, atol, rtol, &c);
        cli_print_check("o", &c, atol, rtol);
        printf("check: %s\n", c.failures > 0 ? "FAIL" : "pass");
        if (c.failures > 0) rc = CLI_EXIT_FAIL;
    }

    /* Output last: only a successful call writes the file. */
    if (cli_write_outputs(a, &out, 1) != 0) rc = CLI_EXIT_USAGE;

done:
    free(want);
    free(workspace);
    fia_plan_destroy(executor);
    fia_context_destroy(ctx);
    free(out.data);
    for (int i = 0; i < SQ_COUNT; i++) cli_free_tensor(&in[i]);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* The operator table: one entry per operator                                               */
/* ---------------------------------------------------------------------------------------- */

static const cli_op op_fia = {
    "fused_infer_attention_score",
    "softmax(scale*Q.K^T + mask).V: prefill, decode, GQA, masks, paged KV, int8 KV",
    fia_flags, fia_outputs, run_fused_infer_attention_score};
static const cli_op op_smallq = {
    "smallq_flash_attention",
    "SmallQ decode: softmax(Q.K^T/sqrt(D)).V per head, fp16, few queries vs a long KV",
    smallq_flags, smallq_outputs, run_smallq_flash_attention};

static const cli_op *const ops[] = {
    &op_fia,
    &op_smallq,
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
        const int r = parse_args(ops[i], argc - 2, argv + 2, &args);
        if (r < 0) return CLI_EXIT_USAGE;
        if (r > 0) {
            op_usage(ops[i], stdout);
            return CLI_EXIT_OK;
        }
        return ops[i]->run(&args);
    }
    cli_error("unknown operator '%s' (see 'fia op --help')", argv[1]);
    return CLI_EXIT_USAGE;
}
