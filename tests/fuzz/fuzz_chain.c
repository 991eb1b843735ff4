/*
 * fuzz_chain.c - libFuzzer target over the attention-chain plan functions: rms_norm,
 * add_rms_norm, rotary_mul, interleave_rope, dynamic_quant, scatter_update, scatter_nd_update,
 * gather_selection_kv_cache (and mla_prolog_v3 plan validation). Shapes, dtypes, strides,
 * parameters and indices come from the input (clean inputs: shapes that fit the contract with
 * padded strides; corrupted inputs, 1 in 2: carved ranks, dims, strides, dtypes, missing
 * tensors). Every tensor is allocated at exactly its extent, so ASan reports any access outside
 * a tensor.
 *
 * Asserted, for every call:
 *   - a refused plan writes neither *plan nor *workspace_bytes, nor any output byte;
 *   - a failed execute (e.g. an out-of-range index) leaves every output / in-place byte as it
 *     was; a second execute of the same plan gives the same bytes (determinism);
 *   - clean scatter inputs with an index out of range (scatter_update: b outside [0, B) or
 *     p < 0 or p + u > the axis dim; scatter_nd_update: a component outside [0, dim); paged:
 *     a slot outside [0, blocks * block_size)) must fail, writing nothing (empty updates
 *     included: nothing is written, but the indices are still checked); all in range must
 *     succeed and write exactly the oracle's bytes;
 * FIA_FUZZ_VERBOSE=1 describes each call on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fuzz/fuzz_util.h"
/* fuzz_tensors.h also serves the attention targets: not every helper is used here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "fuzz/fuzz_tensors.h"
#pragma GCC diagnostic pop
#include "ref/case.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_chain: " __VA_ARGS__);                                               \
        fprintf(stderr, "\n");                                                                     \
        abort();                                                                                   \
    } while (0)

enum { OP_RMS, OP_ADD_RMS, OP_ROPE, OP_IROPE, OP_QUANT, OP_SU, OP_SND, OP_GS, OP_PROLOG, N_OPS };
static const char *const g_names[N_OPS] = {"rms_norm", "add_rms_norm", "rotary_mul",
                                           "interleave_rope", "dynamic_quant", "scatter_update",
                                           "scatter_nd_update", "gather_selection_kv_cache",
                                           "mla_prolog_v3"};

#define MAX_OUTS 6
#define MAX_WS ((size_t)64 << 20)

/* ---- helpers --------------------------------------------------------------------------------- */

/* Byte address of logical element i (row-major over the view). */
static char *elem(const fia_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int32_t k = t->ndim - 1; k >= 0; k--) {
        if (t->shape[k] <= 0) return NULL;
        off += (i % t->shape[k]) * t->strides[k];
        i /= t->shape[k];
    }
    return (char *)t->data + t->byte_offset + off * (int64_t)fia_dtype_size(t->dtype);
}

static int64_t get_int(const fia_tensor *t, int64_t i) {
    const char *p = elem(t, i);
    if (t->dtype == FIA_DTYPE_INT64) {
        int64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void set_int(const fia_tensor *t, int64_t i, int64_t v) {
    char *p = elem(t, i);
    if (t->dtype == FIA_DTYPE_INT64) {
        memcpy(p, &v, 8);
    } else {
        const int32_t w = (int32_t)v;
        memcpy(p, &w, 4);
    }
}

/* An index value: mostly in [0, hi), sometimes just outside or wild. */
static int64_t index_value(fz *f, int64_t hi) {
    const uint8_t m = u8(f);
    if (m % 16 == 0) return m % 32 == 0 ? -1 : hi;
    if (m % 64 == 1) return interesting(f, hi + 2);
    return hi > 0 ? rng(f, 0, hi - 1) : 0;
}

/* Fills an integer tensor (when it is one with a real buffer) with index_value(f, hi). */
static void fill_indices(fz *f, ftensor *x, int64_t hi) {
    if (x->oversize || !x->buf || (x->t.dtype != FIA_DTYPE_INT32 && x->t.dtype != FIA_DTYPE_INT64)) return;
    const int64_t n = fia_tensor_numel(&x->t);
    for (int64_t i = 0; i < n && i < 4096; i++) set_int(&x->t, i, index_value(f, hi));
    if (x->snap) memcpy(x->snap, x->buf, x->bytes);
}

static int any_oversize(ftensor *const *xs, int n) {
    for (int i = 0; i < n; i++)
        if (xs[i] && xs[i]->oversize) return 1;
    return 0;
}

static int all_untouched(ftensor *const *outs, int n) {
    for (int i = 0; i < n; i++)
        if (outs[i] && !untouched(outs[i])) return 0;
    return 1;
}

static void snap_again(ftensor *const *outs, int n) {
    for (int i = 0; i < n; i++)
        if (outs[i] && outs[i]->snap) memcpy(outs[i]->snap, outs[i]->buf, outs[i]->bytes);
}

/* Whether no output element shares an address with another one (outputs with carved strides
 * that overlap themselves give an order-dependent result, which is not a determinism bug). */
static int outputs_distinct(ftensor *const *outs, int n) {
    for (int i = 0; i < n; i++)
        if (outs[i] && !no_alias(&outs[i]->t)) return 0;
    return 1;
}

typedef fia_status (*plan_fn)(fia_context *, const void *, const void *, fia_plan **, size_t *);

/* Plans, checks the refusal rules, executes when the tensors are real, checks the execute
 * rules. Returns the status of the call (plan or execute) or -1 when it was not executed. */
static int call(fia_context *ctx, plan_fn fn, const void *t, const void *p, ftensor *const *outs,
                int nout, ftensor *const *ins, int nin, int in_place) {
    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    fia_plan *plan = sentinel;
    size_t ws = 12345;
    const fia_status st = fn(ctx, t, p, &plan, &ws);
    if (st != FIA_STATUS_SUCCESS) {
        if (plan != sentinel || ws != 12345) FAIL("a refused plan wrote *plan / *workspace_bytes");
        if (!all_untouched(outs, nout)) FAIL("a refused plan wrote an output");
        if (g_verbose) fprintf(stderr, "  plan: %s\n", fia_last_error());
        return st;
    }
    if (plan == sentinel || !plan) FAIL("plan returned success without a plan");
    if (any_oversize(outs, nout) || any_oversize(ins, nin) || ws > MAX_WS) {
        fia_plan_destroy(plan);
        return -1;
    }
    void *wbuf = malloc(ws ? ws : 1);
    if (!wbuf) abort();
    const fia_status ex = fia_plan_execute(plan, wbuf, ws);
    if (ex != FIA_STATUS_SUCCESS) {
        if (!all_untouched(outs, nout)) FAIL("a failed execute (%d) wrote an output", (int)ex);
        if (g_verbose) fprintf(stderr, "  execute: %s\n", fia_last_error());
    } else if (!in_place && outputs_distinct(outs, nout)) {
        /* determinism: a second run over the same inputs writes the same bytes */
        snap_again(outs, nout);
        if (fia_plan_execute(plan, wbuf, ws) != FIA_STATUS_SUCCESS) FAIL("second execute failed");
        if (!all_untouched(outs, nout)) FAIL("a second execute wrote different bytes");
    }
    free(wbuf);
    fia_plan_destroy(plan);
    return ex;
}

static fia_dtype float_dtype(fz *f) {
    static const fia_dtype d[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    return d[u8(f) % 3];
}

static int32_t shape_dims(fz *f, int32_t lo, int32_t hi, int64_t *sh, int64_t dim_hi) {
    const int32_t nd = (int32_t)rng(f, lo, hi);
    for (int32_t i = 0; i < nd; i++) sh[i] = rng(f, 1, dim_hi);
    return nd;
}

static ftensor *const *list(ftensor **a) { return (ftensor *const *)a; }

/* ---- rms_norm / add_rms_norm ------------------------------------------------------------------ */

static void run_norm(fia_context *ctx, fz *f, int add) {
    ftensor x1, x2, g, y, r, xo;
    memset(&x2, 0, sizeof x2), memset(&xo, 0, sizeof xo);
    int64_t sh[FIA_MAX_DIMS], rs[FIA_MAX_DIMS];
    const int32_t nd = shape_dims(f, 1, 4, sh, 40);
    const int32_t gn = (int32_t)rng(f, 1, nd);
    const fia_dtype dt = float_dtype(f);
    build(f, &x1, dt, nd, sh, FILL_FLOAT);
    if (add) build(f, &x2, dt, nd, sh, FILL_FLOAT);
    build(f, &g, u8(f) % 4 == 0 ? FIA_DTYPE_FLOAT32 : dt, gn, sh + nd - gn, FILL_FLOAT);
    for (int32_t i = 0; i < nd; i++) rs[i] = i < nd - gn ? sh[i] : 1;
    build(f, &y, dt, nd, sh, FILL_OUT | INNER_POS);
    build(f, &r, FIA_DTYPE_FLOAT32, nd, rs, FILL_OUT | INNER_POS);
    if (add) build(f, &xo, dt, nd, sh, FILL_OUT | INNER_POS);
    fia_rms_norm_params p;
    fia_rms_norm_params_init(&p);
    if (u8(f) % 8 == 0) p.epsilon = u8(f) % 2 ? -1.0 : 0.0;
    ftensor *outs[3] = {&y, &r, add ? &xo : NULL};
    ftensor *ins[3] = {&x1, add ? &x2 : NULL, &g};
    if (add) {
        fia_add_rms_norm_tensors t = {&x1.t, &x2.t, &g.t, &y.t, &r.t, &xo.t};
        if (rare(f, 16)) t.gamma = NULL;
        call(ctx, (plan_fn)fia_add_rms_norm_plan, &t, &p, list(outs), 3, list(ins), 3, 0);
    } else {
        fia_rms_norm_tensors t = {&x1.t, &g.t, &y.t, &r.t};
        if (rare(f, 16)) t.y = NULL;
        call(ctx, (plan_fn)fia_rms_norm_plan, &t, &p, list(outs), 2, list(ins), 3, 0);
    }
    release(&x1), release(&x2), release(&g), release(&y), release(&r), release(&xo);
}

/* ---- rotary_mul / interleave_rope ------------------------------------------------------------- */

static void run_rope(fia_context *ctx, fz *f, int inter) {
    ftensor x, c, s, y;
    int64_t sh[FIA_MAX_DIMS], cs[FIA_MAX_DIMS];
    const int32_t nd = shape_dims(f, 1, 4, sh, 6);
    sh[nd - 1] = inter && u8(f) % 2 ? 64 : 2 * rng(f, 1, 48);
    if (g_corrupt && u8(f) % 16 == 0) sh[nd - 1] = interesting(f, 900);
    for (int32_t i = 0; i < nd; i++) cs[i] = i == nd - 1 || u8(f) % 2 ? sh[i] : 1;
    const fia_dtype dt = float_dtype(f);
    build(f, &x, dt, nd, sh, FILL_FLOAT | INNER_ANY);
    build(f, &c, dt, nd, cs, FILL_FLOAT | INNER_ANY);
    build(f, &s, dt, nd, cs, FILL_FLOAT | INNER_ANY);
    build(f, &y, dt, nd, sh, FILL_OUT | INNER_POS);
    fia_rotary_mul_tensors t = {&x.t, &c.t, &s.t, &y.t};
    ftensor *outs[1] = {&y};
    ftensor *ins[3] = {&x, &c, &s};
    if (inter) {
        fia_interleave_rope_params p;
        fia_interleave_rope_params_init(&p);
        call(ctx, (plan_fn)fia_interleave_rope_plan, &t, &p, list(outs), 1, list(ins), 3, 0);
    } else {
        fia_rotary_mul_params p;
        fia_rotary_mul_params_init(&p);
        p.rotary_mode = u8(f) % 2 ? FIA_ROTARY_MODE_INTERLEAVE : p.rotary_mode;
        if (g_corrupt && u8(f) % 16 == 0) p.rotary_mode = (fia_rotary_mode)(u8(f) % 5);
        call(ctx, (plan_fn)fia_rotary_mul_plan, &t, &p, list(outs), 1, list(ins), 3, 0);
    }
    release(&x), release(&c), release(&s), release(&y);
}

/* ---- dynamic_quant ---------------------------------------------------------------------------- */

static void run_quant(fia_context *ctx, fz *f) {
    ftensor x, sm, gi, y, sc;
    memset(&sm, 0, sizeof sm), memset(&gi, 0, sizeof gi);
    int64_t sh[FIA_MAX_DIMS], ss[FIA_MAX_DIMS];
    const int32_t nd = shape_dims(f, 1, 4, sh, 24);
    fia_dynamic_quant_params p;
    fia_dynamic_quant_params_init(&p);
    const uint8_t m = u8(f) % 3;
    p.quant_mode = m == 0 ? FIA_QUANT_MODE_PERTOKEN : m == 1 ? FIA_QUANT_MODE_PERTENSOR : FIA_QUANT_MODE_PERCHANNEL;
    if (u8(f) % 4 == 0) p.dst_type_max = u8(f) % 8 == 0 ? -3.0 : (double)rng(f, 1, 127);
    const fia_dtype dt = float_dtype(f);
    build(f, &x, dt, nd, sh, FILL_FLOAT | INNER_ANY);
    int32_t snd = 0;
    if (p.quant_mode == FIA_QUANT_MODE_PERTENSOR) ss[snd++] = 1;
    else
        for (int32_t d = 0; d < nd; d++)
            if (p.quant_mode == FIA_QUANT_MODE_PERTOKEN ? d != nd - 1 : d != nd - 2) ss[snd++] = sh[d];
    if (snd == 0) ss[snd++] = 1;
    const int64_t rows = fia_tensor_numel(&x.t) / (sh[nd - 1] ? sh[nd - 1] : 1);
    const int group = p.quant_mode == FIA_QUANT_MODE_PERTOKEN && u8(f) % 4 == 0;
    if (group) {
        const int64_t E = rng(f, 1, 5), smsh[2] = {E, sh[nd - 1]};
        build(f, &sm, u8(f) % 2 ? dt : FIA_DTYPE_FLOAT32, 2, smsh, FILL_FLOAT);
        build(f, &gi, FIA_DTYPE_INT32, 1, &E, FILL_BYTES);
        if (!gi.oversize && gi.buf && gi.t.dtype == FIA_DTYPE_INT32 && gi.t.ndim == 1) {
            int64_t acc = 0; /* non-decreasing boundaries ending at rows (sometimes not) */
            for (int64_t e = 0; e < gi.t.shape[0]; e++) {
                const int64_t base = acc < 0 ? 0 : acc > rows ? rows : acc; /* after a wild one */
                acc = e == gi.t.shape[0] - 1 ? rows : base + rng(f, 0, rows - base);
                if (u8(f) % 32 == 0) { /* anything, out of range included (not INT64_MIN - 1) */
                    const int64_t v = index_value(f, rows + 1);
                    acc = v > INT64_MIN ? v - 1 : v;
                }
                set_int(&gi.t, e, acc);
            }
        }
    } else if (u8(f) % 2) {
        const int64_t n = p.quant_mode == FIA_QUANT_MODE_PERCHANNEL && nd >= 2 ? sh[nd - 2] : sh[nd - 1];
        build(f, &sm, u8(f) % 2 ? dt : FIA_DTYPE_FLOAT32, 1, &n, FILL_FLOAT);
    }
    build(f, &y, FIA_DTYPE_INT8, nd, sh, FILL_OUT | INNER_POS);
    build(f, &sc, FIA_DTYPE_FLOAT32, snd, ss, FILL_OUT | INNER_POS);
    fia_dynamic_quant_tensors t = {&x.t, sm.buf || sm.oversize ? &sm.t : NULL,
                                   gi.buf || gi.oversize ? &gi.t : NULL, &y.t, &sc.t};
    ftensor *outs[2] = {&y, &sc};
    ftensor *ins[3] = {&x, &sm, &gi};
    call(ctx, (plan_fn)fia_dynamic_quant_plan, &t, &p, list(outs), 2, list(ins), 3, 0);
    release(&x), release(&sm), release(&gi), release(&y), release(&sc);
}

/* ---- scatter_update ------------------------------------------------------------------------- */

/* The scatters' oracle: the case description of ref/case.h bound to the fuzzed tensors, the
 * target snapshotted before the call (case_begin), compared after a successful one (case_end:
 * the EXACT row, element by element through the strides). */
static void case_begin(fia_case *c, const char *op) {
    fia_case_bind(c, op);
    if (fia_case_prepare(c) != 0) abort();
}
static void case_end(fia_case *c, const char *op) {
    if (fia_case_oracle(c) != 0) FAIL("%s: the oracle refuses a call the library ran", op);
    fia_ref_check each[FIA_CASE_MAX_OUTPUTS];
    if (fia_case_check(c, 0, each) != 0) {
        fia_ref_check_report(c->out[0].name, &each[0], fia_case_tolerance(c, 0, 0));
        FAIL("%s: %s differs from the oracle", op, c->out[0].name);
    }
}

static void run_su(fia_context *ctx, fz *f) {
    ftensor d, ix, up;
    int64_t sh[FIA_MAX_DIMS], us[FIA_MAX_DIMS];
    const int32_t nd = shape_dims(f, 2, 4, sh, 9);
    int64_t axis = rng(f, 1, nd - 1);
    fia_scatter_update_params p;
    fia_scatter_update_params_init(&p);
    p.axis = u8(f) % 2 ? axis : axis - nd;
    if (g_corrupt && u8(f) % 16 == 0) p.axis = interesting(f, 8), axis = -1;
    const int pairs = u8(f) % 3 == 0;
    const int64_t K = pairs ? rng(f, 1, 6) : sh[0];
    for (int32_t i = 0; i < nd; i++) us[i] = sh[i];
    us[0] = K;
    if (axis > 0) us[axis] = rng(f, 0, sh[axis]);
    const fia_dtype dt = (fia_dtype)(u8(f) % 8 == 0 ? FIA_DTYPE_INT8 : float_dtype(f));
    const fia_dtype it = u8(f) % 2 ? FIA_DTYPE_INT32 : FIA_DTYPE_INT64;
    const int64_t ish[2] = {K, 2};
    build(f, &d, dt, nd, sh, FILL_OUT | INNER_POS);
    build(f, &ix, it, pairs ? 2 : 1, ish, FILL_BYTES);
    build(f, &up, dt, nd, us, FILL_BYTES | INNER_ANY);
    /* indices: batch ids in [0, B), starts with p + u <= dim (sometimes not) */
    int bad = 0;
    const int clean = !g_corrupt && axis > 0 && !ix.oversize && ix.buf;
    if (!ix.oversize && ix.buf && (ix.t.dtype == FIA_DTYPE_INT32 || ix.t.dtype == FIA_DTYPE_INT64)) {
        const int64_t n = fia_tensor_numel(&ix.t);
        for (int64_t i = 0; i < n && i < 4096; i++) {
            const int is_batch = pairs && i % 2 == 0;
            const int64_t hi = is_batch ? sh[0] : (axis > 0 ? sh[axis] - us[axis] + 1 : 4);
            set_int(&ix.t, i, index_value(f, hi));
            const int64_t v = get_int(&ix.t, i); /* as stored (int32 truncates) */
            bad |= v < 0 || v >= hi;
        }
    }
    fia_scatter_update_tensors t = {&d.t, &ix.t, &up.t};
    ftensor *outs[1] = {&d};
    ftensor *ins[2] = {&ix, &up};
    const int oracle = clean && !bad && !d.oversize && !up.oversize && up.buf;
    fia_case c;
    memset(&c, 0, sizeof c);
    c.t.scatter_update = t;
    c.p.scatter_update = p;
    if (oracle) case_begin(&c, "scatter_update");
    if (g_verbose) {
        fprintf(stderr, "fuzz_chain: scatter_update axis %lld pairs %d bad %d data", (long long)p.axis, pairs, bad);
        for (int32_t i = 0; i < nd; i++) fprintf(stderr, " %lld/%lld", (long long)sh[i], (long long)us[i]);
        if (ix.buf && !ix.oversize)
            for (int64_t i = 0; i < fia_tensor_numel(&ix.t) && i < 16; i++)
                fprintf(stderr, "%s%lld", i ? "," : " indices ", (long long)get_int(&ix.t, i));
        fprintf(stderr, "\n");
    }
    const int st = call(ctx, (plan_fn)fia_scatter_update_plan, &t, &p, list(outs), 1, list(ins), 2, 1);
    if (clean && bad && st == FIA_STATUS_SUCCESS) FAIL("scatter_update: an out-of-range index was accepted");
    if (oracle && st == FIA_STATUS_SUCCESS) case_end(&c, "scatter_update");
    fia_case_free(&c);
    release(&d), release(&ix), release(&up);
}

/* ---- scatter_nd_update ------------------------------------------------------------------------ */

static void run_snd(fia_context *ctx, fz *f) {
    ftensor in, ix, up;
    int64_t sh[FIA_MAX_DIMS], ish[FIA_MAX_DIMS], us[FIA_MAX_DIMS];
    fia_scatter_nd_update_params p;
    fia_scatter_nd_update_params_init(&p);
    const int paged = u8(f) % 3 == 0;
    int32_t nd;
    if (paged) {
        p.cache_mode = FIA_LAYOUT_PA_BSND;
        nd = u8(f) % 2 ? 4 : 3;
        sh[0] = rng(f, 1, 6), sh[1] = rng(f, 1, 16);
        for (int32_t i = 2; i < nd; i++) sh[i] = rng(f, 1, 12);
    } else {
        nd = shape_dims(f, 1, 4, sh, 9);
    }
    const int32_t a = paged ? 1 : (int32_t)rng(f, 1, nd);
    const int32_t ind = (int32_t)rng(f, 2, 3);
    for (int32_t i = 0; i < ind - 1; i++) ish[i] = rng(f, 1, 5);
    ish[ind - 1] = a;
    int32_t und = 0;
    for (int32_t i = 0; i < ind - 1; i++) us[und++] = ish[i];
    for (int32_t i = paged ? 2 : a; i < nd; i++) us[und++] = sh[i];
    const fia_dtype dt = (fia_dtype)(u8(f) % 8 == 0 ? FIA_DTYPE_INT8 : float_dtype(f));
    build(f, &in, dt, nd, sh, FILL_OUT | INNER_POS);
    build(f, &ix, u8(f) % 2 ? FIA_DTYPE_INT32 : FIA_DTYPE_INT64, ind, ish, FILL_BYTES);
    build(f, &up, dt, und, us, FILL_BYTES | INNER_ANY);
    int bad = 0;
    const int clean = !g_corrupt && !ix.oversize && ix.buf;
    const int64_t slots = smul(sh[0], sh[1]);
    if (!ix.oversize && ix.buf && ix.t.ndim > 0 &&
        (ix.t.dtype == FIA_DTYPE_INT32 || ix.t.dtype == FIA_DTYPE_INT64)) {
        const int64_t n = fia_tensor_numel(&ix.t), last = ix.t.shape[ix.t.ndim - 1];
        for (int64_t i = 0; i < n && i < 4096; i++) {
            const int64_t comp = last > 0 ? i % last : 0;
            const int64_t hi = paged ? slots : comp < nd ? sh[comp] : 1;
            set_int(&ix.t, i, index_value(f, hi));
            const int64_t v = get_int(&ix.t, i); /* as stored (int32 truncates) */
            bad |= v < 0 || v >= hi;
        }
    }
    const int oracle = clean && !bad && !in.oversize && !up.oversize && up.buf;
    fia_scatter_nd_update_tensors t = {&in.t, &ix.t, &up.t};
    fia_case c;
    memset(&c, 0, sizeof c);
    c.t.scatter_nd_update = t;
    c.p.scatter_nd_update = p;
    if (oracle) case_begin(&c, "scatter_nd_update");
    ftensor *outs[1] = {&in};
    ftensor *ins[2] = {&ix, &up};
    if (g_verbose) fprintf(stderr, "fuzz_chain: scatter_nd_update paged %d a %d bad %d\n", paged, (int)a, bad);
    const int st = call(ctx, (plan_fn)fia_scatter_nd_update_plan, &t, &p, list(outs), 1, list(ins), 2, 1);
    if (clean && bad && st == FIA_STATUS_SUCCESS) FAIL("scatter_nd_update: an out-of-range index was accepted");
    if (oracle && st == FIA_STATUS_SUCCESS) case_end(&c, "scatter_nd_update");
    fia_case_free(&c);
    release(&in), release(&ix), release(&up);
}

/* ---- gather_selection_kv_cache ------------------------------------------------------------------ */

static void run_gs(fia_context *ctx, fz *f) {
    ftensor sr, skv, st, ss, tk, fr, fkv, ft, kl, ql, out;
    memset(&sr, 0, sizeof sr), memset(&fr, 0, sizeof fr);
    const int64_t B = rng(f, 1, 3), S = rng(f, 1, 3), H = u8(f) % 16 == 0 ? 2 : 1, K = rng(f, 1, 6);
    const int64_t sbs = rng(f, 1, 4), bsf = sbs * rng(f, 1, 3), bss = sbs * rng(f, 1, 3);
    const int64_t C = rng(f, 1, 16), R = rng(f, 1, 8), fmax = rng(f, 1, 6), fblocks = rng(f, 1, 2 * fmax * B);
    const int64_t rows = B * S * H, smax = (K * sbs + bss - 1) / bss, sblocks = rows * smax;
    const int rope = u8(f) % 2;
    const fia_dtype dt = u8(f) % 3 == 0 ? FIA_DTYPE_INT8 : u8(f) % 2 ? FIA_DTYPE_FLOAT16 : FIA_DTYPE_BFLOAT16;
    const int64_t skvs[3] = {sblocks, bss, C}, srs[3] = {sblocks, bss, R};
    const int64_t fkvs[3] = {fblocks, bsf, C}, frs[3] = {fblocks, bsf, R};
    const int64_t sts[2] = {rows, smax}, fts[2] = {B, fmax};
    const int64_t sss[4] = {B, S, H, K + 1}, tks[4] = {B, S, H, K};
    build(f, &skv, dt, 3, skvs, FILL_OUT | INNER_POS);
    if (rope) build(f, &sr, dt, 3, srs, FILL_OUT | INNER_POS);
    build(f, &st, FIA_DTYPE_INT32, 2, sts, FILL_BYTES);
    build(f, &ss, FIA_DTYPE_INT32, 4, sss, FILL_OUT | INNER_POS);
    build(f, &tk, FIA_DTYPE_INT32, 4, tks, FILL_BYTES);
    build(f, &fkv, dt, 3, fkvs, FILL_BYTES);
    if (rope) build(f, &fr, dt, 3, frs, FILL_BYTES);
    build(f, &ft, FIA_DTYPE_INT32, 2, fts, FILL_BYTES);
    build(f, &kl, FIA_DTYPE_INT32, 1, &B, FILL_BYTES);
    build(f, &ql, FIA_DTYPE_INT32, 1, &B, FILL_BYTES);
    build(f, &out, FIA_DTYPE_INT32, 1, &rows, FILL_OUT | INNER_POS);
    /* distinct selection blocks per row (a permutation), sometimes a bad one */
    if (!st.oversize && st.buf && st.t.dtype == FIA_DTYPE_INT32) {
        const int64_t n = fia_tensor_numel(&st.t);
        for (int64_t i = 0; i < n && i < 4096; i++) set_int(&st.t, i, u8(f) % 32 == 0 ? index_value(f, sblocks) : i);
    }
    fill_indices(f, &ft, fblocks);
    fill_indices(f, &tk, (fmax * bsf) / sbs + 1);
    fill_indices(f, &kl, fmax * bsf + 1);
    fill_indices(f, &ql, S + 1);
    fia_gather_selection_kv_cache_params p;
    fia_gather_selection_kv_cache_params_init(&p);
    p.selection_topk_block_size = g_corrupt && u8(f) % 16 == 0 ? interesting(f, 8) : sbs;
    fia_gather_selection_kv_cache_tensors t = {
        rope ? &sr.t : NULL, &skv.t, &st.t, &ss.t, &tk.t, rope ? &fr.t : NULL, &fkv.t, &ft.t,
        &kl.t, &ql.t, &out.t};
    if (g_verbose)
        fprintf(stderr, "fuzz_chain: gather_selection B %lld S %lld H %lld K %lld sbs %lld bsf %lld bss %lld "
                "rope %d\n", (long long)B, (long long)S, (long long)H, (long long)K, (long long)sbs,
                (long long)bsf, (long long)bss, rope);
    ftensor *outs[4] = {&skv, rope ? &sr : NULL, &ss, &out};
    ftensor *ins[7] = {&st, &tk, &fkv, rope ? &fr : NULL, &ft, &kl, &ql};
    call(ctx, (plan_fn)fia_gather_selection_kv_cache_plan, &t, &p, list(outs), 4, list(ins), 7, 1);
    release(&sr), release(&skv), release(&st), release(&ss), release(&tk), release(&fr);
    release(&fkv), release(&ft), release(&kl), release(&ql), release(&out);
}

/* ---- mla_prolog_v3 (plan validation) ----------------------------------------------------------- */

static void run_prolog(fia_context *ctx, fz *f) {
    enum { X, WDQ, WUQ, WUK, WKV, GCQ, GCKV, SIN, COS, KV, KR, CI, QO, QR, QN, QSV, QSR, AL, DQN, NT };
    ftensor v[NT];
    memset(v, 0, sizeof v);
    const int64_t T = rng(f, 1, 4), He = rng(f, 1, 24), Hcq = rng(f, 1, 24), N = rng(f, 1, 3),
                  D = rng(f, 1, 8), bs = rng(f, 1, 8), blocks = rng(f, 1, 3);
    fia_mla_prolog_v3_params p;
    fia_mla_prolog_v3_params_init(&p);
    const uint8_t mode = u8(f) % 4;
    p.cache_mode = mode == 0 ? FIA_LAYOUT_PA_BSND : mode == 1 ? FIA_LAYOUT_PA_NZ : mode == 2 ? FIA_LAYOUT_BSND : FIA_LAYOUT_TND;
    if (p.cache_mode == FIA_LAYOUT_BSND) p.cache_mode = FIA_LAYOUT_TND; /* BSND needs a 3-D token_x */
    p.query_norm_flag = u8(f) % 2;
    /* the quantized caches (1, 2, 3: the C8 row) and the int8 query */
    const int kvq = (int)(u8(f) % 4);
    p.kv_cache_quant_mode = kvq;
    if (kvq == 3) {
        p.ckvkr_repo_mode = p.quant_scale_repo_mode = 1;
        if (p.cache_mode == FIA_LAYOUT_PA_NZ && !rare(f, 8)) p.cache_mode = FIA_LAYOUT_PA_BSND;
    }
    p.query_quant_mode = kvq == 1 && u8(f) % 2;
    if (g_corrupt && u8(f) % 8 == 0) p.kv_cache_quant_mode = (int32_t)rng(f, 0, 4);
    if (g_corrupt && u8(f) % 8 == 0) p.query_quant_mode = (int32_t)rng(f, 0, 2);
    if (g_corrupt && u8(f) % 8 == 0) p.weight_quant_mode = (int32_t)rng(f, 0, 3);
    const fia_dtype bf = FIA_DTYPE_BFLOAT16;
    const int64_t xs[2] = {T, He}, wdq[2] = {He, Hcq}, wuq[2] = {Hcq, N * (D + 64)}, wuk[3] = {N, D, 512},
                  wkv[2] = {He, 576}, gcq[1] = {Hcq}, gckv[1] = {512}, rs[2] = {T, 64}, ci[1] = {T},
                  qo[3] = {T, N, 512}, qr[3] = {T, N, 64}, qn[2] = {T, Hcq};
    build(f, &v[X], bf, 2, xs, FILL_FLOAT);
    build(f, &v[WDQ], bf, 2, wdq, FILL_FLOAT);
    build(f, &v[WUQ], bf, 2, wuq, FILL_FLOAT);
    build(f, &v[WUK], bf, 3, wuk, FILL_FLOAT);
    build(f, &v[WKV], bf, 2, wkv, FILL_FLOAT);
    build(f, &v[GCQ], bf, 1, gcq, FILL_FLOAT);
    build(f, &v[GCKV], bf, 1, gckv, FILL_FLOAT);
    build(f, &v[SIN], bf, 2, rs, FILL_FLOAT);
    build(f, &v[COS], bf, 2, rs, FILL_FLOAT);
    const fia_dtype kvdt = kvq ? FIA_DTYPE_INT8 : bf, krdt = kvq == 2 ? FIA_DTYPE_INT8 : bf;
    const int64_t kw = kvq == 3 ? 656 : 512, kc = kvq ? 32 : 16, rc = kvq == 2 ? 32 : 16;
    if (p.cache_mode == FIA_LAYOUT_PA_NZ) {
        const int64_t kvs[5] = {blocks, 1, kw / kc, bs, kc}, krs[5] = {blocks, 1, 64 / rc, bs, rc};
        build(f, &v[KV], kvdt, 5, kvs, FILL_OUT | KEEP2);
        build(f, &v[KR], krdt, 5, krs, FILL_OUT | KEEP2);
    } else if (p.cache_mode == FIA_LAYOUT_PA_BSND) {
        const int64_t kvs[4] = {blocks, bs, 1, kw}, krs[4] = {blocks, bs, 1, 64};
        build(f, &v[KV], kvdt, 4, kvs, FILL_OUT);
        build(f, &v[KR], krdt, 4, krs, FILL_OUT);
    } else {
        const int64_t kvs[3] = {T, 1, kw}, krs[3] = {T, 1, 64};
        build(f, &v[KV], kvdt, 3, kvs, FILL_OUT);
        build(f, &v[KR], krdt, 3, krs, FILL_OUT);
    }
    const int64_t one[1] = {1}, ckv[2] = {1, 512}, ckr[2] = {1, 64}, dqn[3] = {T, N, 1};
    if (kvq == 1 || (kvq != 2 && g_corrupt && rare(f, 16)))
        build(f, &v[QSV], FIA_DTYPE_FLOAT32, 1, one, FILL_FLOAT);
    if (kvq == 2) {
        build(f, &v[QSV], FIA_DTYPE_FLOAT32, 2, ckv, FILL_FLOAT);
        build(f, &v[QSR], FIA_DTYPE_FLOAT32, 2, ckr, FILL_FLOAT);
    }
    if (kvq == 3 && !rare(f, 4)) build(f, &v[AL], FIA_DTYPE_FLOAT32, 1, one, FILL_FLOAT);
    if (p.query_quant_mode == 1) build(f, &v[DQN], FIA_DTYPE_FLOAT32, 3, dqn, FILL_OUT);
    const int paged = p.cache_mode == FIA_LAYOUT_PA_BSND || p.cache_mode == FIA_LAYOUT_PA_NZ;
    if (paged || rare(f, 16)) {
        build(f, &v[CI], FIA_DTYPE_INT64, 1, ci, FILL_BYTES);
        fill_indices(f, &v[CI], blocks * bs);
    }
    build(f, &v[QO], p.query_quant_mode == 1 ? FIA_DTYPE_INT8 : bf, 3, qo, FILL_OUT);
    build(f, &v[QR], bf, 3, qr, FILL_OUT);
    if (p.query_norm_flag) build(f, &v[QN], bf, 2, qn, FILL_OUT);
    int bad = 0;
    if (v[CI].buf && !v[CI].oversize && v[CI].t.dtype == FIA_DTYPE_INT64)
        for (int64_t i = 0; i < fia_tensor_numel(&v[CI].t) && i < 4096; i++) bad |= get_int(&v[CI].t, i) >= blocks * bs;
    /* a packed plan reads the weights at plan time (prolog.h): dummy-data weights plan unpacked */
    if (v[WDQ].oversize || v[WUQ].oversize || v[WUK].oversize || v[WKV].oversize)
        p.prepack_weights = 0;
    fia_mla_prolog_v3_tensors t;
    memset(&t, 0, sizeof t);
    t.token_x = &v[X].t, t.weight_dq = &v[WDQ].t, t.weight_uq_qr = &v[WUQ].t, t.weight_uk = &v[WUK].t;
    t.weight_dkv_kr = &v[WKV].t, t.rmsnorm_gamma_cq = &v[GCQ].t, t.rmsnorm_gamma_ckv = &v[GCKV].t;
    t.rope_sin = &v[SIN].t, t.rope_cos = &v[COS].t, t.kv_cache = &v[KV].t, t.kr_cache = &v[KR].t;
    /* the plan reads cache_index (its indices are checked at plan time, prolog.h): dummy data
     * (oversize) cannot serve it, so such a draw plans without one */
    t.cache_index = v[CI].buf && !v[CI].oversize ? &v[CI].t : NULL;
    t.query_out = &v[QO].t, t.query_rope_out = &v[QR].t;
    t.query_norm = p.query_norm_flag ? &v[QN].t : NULL;
    if (kvq == 3 && rare(f, 2)) t.kr_cache = NULL; /* the C8 row needs no kr cache */
    t.quant_scale_ckv = v[QSV].buf || v[QSV].oversize ? &v[QSV].t : NULL;
    t.quant_scale_ckr = v[QSR].buf || v[QSR].oversize ? &v[QSR].t : NULL;
    t.k_nope_clip_alpha = v[AL].buf || v[AL].oversize ? &v[AL].t : NULL;
    t.dequant_scale_q_nope = v[DQN].buf || v[DQN].oversize ? &v[DQN].t : NULL;
    ftensor *outs[6] = {&v[KV], &v[KR], &v[QO], &v[QR], p.query_norm_flag ? &v[QN] : NULL,
                        v[DQN].buf ? &v[DQN] : NULL};
    fia_plan *const sentinel = (fia_plan *)(uintptr_t)0x5a5a;
    fia_plan *plan = sentinel;
    size_t ws = 12345;
    const fia_status s = fia_mla_prolog_v3_plan(ctx, &t, &p, &plan, &ws);
    if (g_verbose)
        fprintf(stderr, "  mla_prolog_v3 %s kvq %d qq %d T %lld He %lld Hcq %lld N %lld D %lld: %s\n",
                fia_layout_name(p.cache_mode), (int)p.kv_cache_quant_mode, (int)p.query_quant_mode, (long long)T, (long long)He, (long long)Hcq, (long long)N,
                (long long)D, s == FIA_STATUS_SUCCESS ? "planned" : fia_last_error());
    if (s != FIA_STATUS_SUCCESS) {
        if (plan != sentinel || ws != 12345) FAIL("mla_prolog_v3: a refused plan wrote *plan / *workspace_bytes");
        if (!all_untouched(list(outs), 6)) FAIL("mla_prolog_v3: a refused plan wrote an output");
    } else {
        if (!g_corrupt && bad) FAIL("mla_prolog_v3: a cache_index past the cache was accepted");
        fia_plan_destroy(plan); /* plan validation only: the projections are slow under ASan */
    }
    for (int i = 0; i < NT; i++) release(&v[i]);
}

/* ---- the target ---------------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fia_context *ctx;
    if (!ctx) {
        fz_init_tables();
        fia_context_options o = {2, FIA_ISA_AUTO};
        if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) abort();
        g_verbose = getenv("FIA_FUZZ_VERBOSE") != NULL;
    }
    fz f = {data, size};
    fz_seed(data, size);
    const uint8_t first = u8(&f);
    g_corrupt = first & 1;
    const int op = (first >> 1) % N_OPS;
    if (g_verbose) fprintf(stderr, "fuzz_chain: %s (corrupt %d)\n", g_names[op], g_corrupt);
    switch (op) {
    case OP_RMS: run_norm(ctx, &f, 0); break;
    case OP_ADD_RMS: run_norm(ctx, &f, 1); break;
    case OP_ROPE: run_rope(ctx, &f, 0); break;
    case OP_IROPE: run_rope(ctx, &f, 1); break;
    case OP_QUANT: run_quant(ctx, &f); break;
    case OP_SU: run_su(ctx, &f); break;
    case OP_SND: run_snd(ctx, &f); break;
    case OP_GS: run_gs(ctx, &f); break;
    default: run_prolog(ctx, &f); break;
    }
    return 0;
}
