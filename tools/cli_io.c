/*
 * cli_io.c - what every `fia op` handler uses: tensors loaded from .npy files, outputs allocated
 * and written atomically, timing, the run of one planned call (context, plan, workspace,
 * execute) and the one-line report of a check or a library error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "case.h"
#include "cli.h"
#include "npy.h"
#include "ref_fia.h"

/* ---------------------------------------------------------------------------------------- */
/* Tensors from .npy files, outputs to .npy files                                           */
/* ---------------------------------------------------------------------------------------- */


/* Loads the tensor given by flag `name` (absent is fine). Returns 0, or -1 (message printed). */
int cli_load_tensor(const cli_args *a, const char *name, cli_tensor *ot) {
    memset(ot, 0, sizeof *ot);
    ot->name = name;
    const char *spec = cli_arg(a, name);
    if (spec == NULL) return 0;
    char path[4096];
    const size_t len = strlen(spec);
    if (len >= sizeof path) {
        cli_error("%s: path too long", name);
        return -1;
    }
    memcpy(path, spec, len + 1);
    int as_bf16 = 0;
    if (len > 5 && strcmp(path + len - 5, ":bf16") == 0) {
        path[len - 5] = '\0';
        as_bf16 = 1;
    }
    char err[512];
    if (npy_read(path, as_bf16, &ot->arr, err, sizeof err) != 0) {
        cli_error("%s: %s: %s", name, path, err);
        return -1;
    }
    if (fia_tensor_init(&ot->t, ot->arr.data, ot->arr.dtype, ot->arr.ndim, ot->arr.shape,
                        ot->arr.strides) != FIA_STATUS_SUCCESS) {
        cli_error("%s: %s: %s", name, path, fia_last_error());
        npy_free(&ot->arr);
        return -1;
    }
    ot->present = 1;
    return 0;
}

void cli_free_tensor(cli_tensor *ot) {
    npy_free(&ot->arr);
    ot->present = 0;
}

/* Converts an int64 tensor to a compact int32 one when every value fits. */
int cli_narrow_to_int32(cli_tensor *ot) {
    if (!ot->present || ot->t.dtype != FIA_DTYPE_INT64) return 0;
    const int64_t n = fia_tensor_numel(&ot->t);
    int32_t *v = aligned_alloc(64, ((size_t)n * sizeof *v + 63) & ~(size_t)63);
    if (v == NULL && n > 0) {
        cli_error("%s: out of memory", ot->name);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        const double x = fia_ref_load(&ot->t, i);
        if (x < (double)INT32_MIN || x > (double)INT32_MAX) {
            cli_error("%s: element %lld is %.0f, which does not fit int32", ot->name,
                      (long long)i, x);
            free(v);
            return -1;
        }
        v[i] = (int32_t)x;
    }
    int64_t shape[FIA_MAX_DIMS];
    const int32_t ndim = ot->t.ndim;
    memcpy(shape, ot->t.shape, sizeof shape);
    npy_free(&ot->arr);
    ot->arr.data = v;
    ot->arr.dtype = FIA_DTYPE_INT32;
    ot->arr.ndim = ndim;
    memcpy(ot->arr.shape, shape, sizeof shape);
    fia_tensor_init(&ot->t, v, FIA_DTYPE_INT32, ndim, shape, NULL);
    return 0;
}


int cli_alloc_output(cli_output *o, const char *name, fia_dtype dtype, int32_t ndim,
                        const int64_t *shape) {
    o->name = name;
    o->data = NULL;
    int64_t numel = 1;
    for (int32_t d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] != 0 && numel > INT64_MAX / 16 / shape[d])) {
            cli_error("%s: shape is too large", name);
            return -1;
        }
        numel *= shape[d];
    }
    const size_t bytes = (size_t)numel * fia_dtype_size(dtype);
    o->data = aligned_alloc(64, bytes == 0 ? 64 : (bytes + 63) & ~(size_t)63);
    if (o->data == NULL) {
        cli_error("%s: out of memory (%zu bytes)", name, bytes);
        return -1;
    }
    memset(o->data, 0, bytes);
    fia_tensor_init(&o->t, o->data, dtype, ndim, shape, NULL);
    return 0;
}

/* Writes every requested output to a temporary name first, then renames them all, so that a
 * failure leaves none of the final names behind. */
int cli_write_outputs(const cli_args *a, const cli_output *outs, int n) {
    char tmp[CLI_MAX_OUTS][4096];
    int written = 0;
    int ok = 1;
    const char *paths[CLI_MAX_OUTS];
    for (int i = 0; i < n && ok; i++) {
        paths[i] = cli_out_path(a, outs[i].name);
        if (paths[i] == NULL) continue;
        char err[512];
        if (npy_temp_path(paths[i], tmp[i], sizeof tmp[i]) != 0) {
            cli_error("%s: %s: path too long", outs[i].name, paths[i]);
            ok = 0;
            break;
        }
        fia_dtype dt = outs[i].t.dtype;
        void *data = outs[i].data, *conv = NULL;
        if (cli_out_bf16(a, outs[i].name) && dt != FIA_DTYPE_BFLOAT16) {
            if (dt != FIA_DTYPE_FLOAT32 && dt != FIA_DTYPE_FLOAT16) {
                cli_error("%s: ':bf16' applies to float outputs, this one is %s", outs[i].name,
                          fia_dtype_name(dt));
                ok = 0;
                break;
            }
            const int64_t cnt = fia_tensor_numel(&outs[i].t);
            uint16_t *b = malloc((size_t)(cnt > 0 ? cnt : 1) * sizeof *b);
            if (b == NULL) {
                cli_error("%s: out of memory", outs[i].name);
                ok = 0;
                break;
            }
            for (int64_t x = 0; x < cnt; x++) {
                float f;
                if (dt == FIA_DTYPE_FLOAT32) memcpy(&f, (const char *)data + 4 * x, 4);
                else {
                    uint16_t h;
                    memcpy(&h, (const char *)data + 2 * x, 2);
                    f = fia_f16_to_f32(h);
                }
                b[x] = fia_f32_to_bf16(f);
            }
            data = conv = b;
            dt = FIA_DTYPE_BFLOAT16;
        }
        const int wrc = npy_write_file(tmp[i], dt, outs[i].t.ndim, outs[i].t.shape, data, err,
                                       sizeof err);
        free(conv);
        if (wrc != 0) {
            cli_error("%s: %s", outs[i].name, err);
            ok = 0;
            break;
        }
        written = i + 1;
    }
    for (int i = 0; i < written; i++) {
        if (paths[i] == NULL) continue;
        if (ok && rename(tmp[i], paths[i]) != 0) {
            cli_error("%s: cannot write %s: %s", outs[i].name, paths[i], strerror(errno));
            ok = 0;
        }
        if (!ok) remove(tmp[i]);
    }
    return ok ? 0 : -1;
}

double cli_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cli_print_shape(FILE *f, const fia_tensor *t) {
    fputc('[', f);
    for (int32_t d = 0; d < t->ndim; d++)
        fprintf(f, d == 0 ? "%lld" : ", %lld", (long long)t->shape[d]);
    fputc(']', f);
}

void cli_print_check(const char *name, const cli_check *c, double atol, double rtol) {
    printf("check %s: max abs err %.3g, %lld of %lld elements outside atol %.0e + rtol %.0e: "
           "%s\n",
           name, c->max_abs_err, (long long)c->failures, (long long)c->elements, atol, rtol,
           c->failures == 0 ? "pass" : "FAIL");
}

/* Prints the library's message for a failed call. */
void cli_library_error(fia_status s) {
    const char *msg = fia_last_error();
    if (msg != NULL && msg[0] != '\0')
        cli_error("%s", msg);
    else
        cli_error("%s", fia_status_string(s));
}


int cli_run_op(const cli_args *a, const char *op, cli_plan_fn plan_fn, const void *call,
               const cli_output *out) {
    fia_context *ctx = NULL;
    fia_plan *plan = NULL;
    void *workspace = NULL;
    int rc = CLI_EXIT_USAGE;
    fia_context_options opts = {a->threads, FIA_ISA_AUTO};
    fia_status s = fia_context_create(&opts, &ctx);
    size_t ws_bytes = 0;
    if (s == FIA_STATUS_SUCCESS) s = plan_fn(ctx, call, &plan, &ws_bytes);
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    if (ws_bytes > 0 && (workspace = malloc(ws_bytes)) == NULL) {
        cli_error("workspace: out of memory (%zu bytes)", ws_bytes);
        rc = CLI_EXIT_FAIL;
        goto done;
    }
    const double t0 = cli_now_seconds();
    s = fia_plan_execute(plan, workspace, ws_bytes);
    const double t1 = cli_now_seconds();
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    printf("%s: %s ", op, out->name);
    cli_print_shape(stdout, &out->t);
    printf(" %s in %.3f ms (%s, %d threads)\n", fia_dtype_name(out->t.dtype), (t1 - t0) * 1e3,
           fia_isa_name(fia_context_isa(ctx)), fia_context_num_threads(ctx));
    rc = CLI_EXIT_OK;
done:
    free(workspace);
    fia_plan_destroy(plan);
    fia_context_destroy(ctx);
    return rc;
}

int cli_check_outputs(const cli_output *outs, const double *const *want, int n, double atol,
                      double rtol) {
    int failed = 0;
    for (int i = 0; i < n; i++) {
        cli_check c = {0, 0, 0};
        cli_check_tensor(&outs[i].t, want[i], atol, rtol, &c);
        cli_print_check(outs[i].name, &c, atol, rtol);
        failed |= c.failures > 0;
    }
    printf("check: %s\n", failed ? "FAIL" : "pass");
    return failed;
}

int cli_check_op(fia_case *c, const char *op, int *rc) {
    if (op) fia_case_bind(c, op);
    const int chk = cli_check_case(c);
    fia_case_free(c);
    if (chk != 0) *rc = CLI_EXIT_FAIL;
    return chk;
}

int cli_check_case(fia_case *c) {
    const int r = fia_case_oracle(c);
    if (r < 0) {
        int oom = 0;
        for (int i = 0; i < c->n_out; i++) oom |= c->out[i].got && !c->out[i].want;
        cli_error(oom ? "check: out of memory" : "check: the oracle cannot run this call");
        return -1;
    }
    int failed = r != 0; /* the contract refuses the call the library ran */
    fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
    if (!failed) fia_case_check(c, 1, each);
    for (int i = 0; i < c->n_out && !failed; i++) {
        if (!c->out[i].got) continue;
        const fia_ref_tolerance *tol = fia_case_tolerance(c, i, 1);
        const fia_ref_check *k = &each[i];
        if (tol->rule == FIA_REF_TOL_INT_TIES) {
            printf("check %s: %lld of %lld differ from the oracle (%lld +-1 at rounding ties), %s\n",
                   c->out[i].name, (long long)k->failures, (long long)k->elements, (long long)k->ties,
                   k->failures ? "FAIL" : "pass");
        } else {
            const cli_check cc = {k->max_abs_err, k->failures, k->elements};
            cli_print_check(c->out[i].name, &cc, tol->atol, tol->rtol);
        }
        failed |= k->failures > 0;
    }
    printf("check: %s\n", failed ? "FAIL" : "pass");
    return failed;
}
