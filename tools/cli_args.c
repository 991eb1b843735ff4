/*
 * cli_args.c - what every `fia` subcommand shares: the one-line error printer, the `fia op` flag
 * parser (argv -> cli_args, --threads / --check / --out NAME=PATH / --help) with its accessors,
 * and the tolerance and comparison of --check. Calls nothing else in tools/.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tolerance.h"

void cli_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    fprintf(stderr, "fia: error: %s\n", msg);
}

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

void cli_op_usage(const cli_op *op, FILE *out) {
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
int cli_parse_args(const cli_op *op, int argc, char **argv, cli_args *a) {
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
                ((char *)colon)[0] = '\0'; /* the path ends there: value points into argv, which is writable */
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

int cli_out_bf16(const cli_args *a, const char *name) {
    for (int k = 0; k < a->n_outs; k++)
        if (strcmp(a->out_names[k], name) == 0) return a->out_bf16[k];
    return 0;
}

const char *cli_out_path(const cli_args *a, const char *name) {
    for (int k = 0; k < a->n_outs; k++)
        if (strcmp(a->out_names[k], name) == 0) return a->out_paths[k];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Checks                                                                                   */
/* ---------------------------------------------------------------------------------------- */

void cli_tolerance(fia_dtype dtype, double *atol, double *rtol) {
    const fia_ref_tolerance *t = fia_ref_tolerance_of(NULL, NULL, dtype); /* the default row */
    *atol = t->atol;
    *rtol = t->rtol;
}

void cli_check_tensor(const fia_tensor *got, const double *want, double atol, double rtol,
                      cli_check *c) {
    fia_ref_check r = FIA_REF_CHECK_INIT;
    fia_ref_check_close(got, want, atol, rtol, &r);
    c->elements += r.elements;
    c->failures += r.failures;
    if (r.max_abs_err > c->max_abs_err) c->max_abs_err = r.max_abs_err;
}
