/*
 * test_fia_api.c - the FusedInferAttentionScore calling contract, beyond the numbers that
 * test_fia.c checks: plan / execute (workspace size and too-small workspaces, re-running a plan,
 * one-shot == plan + execute, another thread, inputs rewritten between runs), concurrent calls on
 * one context, and invalid input (every rejection with its status and a message naming the
 * argument, nothing written). Results are checked against the oracle with the case machinery and
 * tolerances of fia_cases.h.
 *
 *   test_fia_api [seed]      FIA_TEST_VERBOSE=1 prints the status and message of each invalid call
 *                            FIA_TEST_ONLY=i (random case i of test_fia only): nothing runs here
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fia_cases.h"
#include "ref/ref_fia.h"
#include "test_util.h"

/* ------------------------------------------------------------------------------------------ */
/* Plan / execute                                                                             */
/* ------------------------------------------------------------------------------------------ */

static int all_sentinel(const tu_tensor *tt) {
    for (size_t i = 0; i < tt->bytes; i++)
        if (((const uint8_t *)tt->buf)[i] != 0xff) return 0;
    return 1;
}

typedef struct exec_arg {
    fia_plan *plan;
    void *ws;
    size_t bytes;
    fia_status st;
} exec_arg;

static void *exec_thread(void *p) {
    exec_arg *a = p;
    a->st = fia_plan_execute(a->plan, a->ws, a->bytes);
    return NULL;
}

static void test_plan_execute(uint64_t seed) {
    fcase cs[3];
    cs[0] = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 8, 1, 1, 3000, 64, 64); /* split-KV */
    cs[1] = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 2, 4, 2, 70, 90, 32, 32);
    cs[1].sparse_mode = 3, cs[1].mask = MASK_C2;
    cs[2] = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 1, 1, 1500, 16, 16);
    set_paged(&cs[2], 3, 16);
    set_quant(&cs[2], AQ_TOK, 1, FIA_DTYPE_FLOAT16);
    int saw_workspace = 0;
    for (int s = 0; s < 3; s++) {
        fcase c = cs[s];
        c.lse = 1;
        fcase_normalize(&c);
        tu_rng r = tu_rng_make(seed + 2000 + (uint64_t)s);
        fbuf f;
        fbuild(&c, &r, &f);
        for (int i = 0; i < g_nctx; i++) {
            const char *isa = fia_isa_name(g_isa[i]);
            fia_plan *plan = NULL;
            size_t ws = 0;
            fia_status st = fia_fused_infer_attention_score_plan(g_ctx[i], &f.t, &f.p, &plan, &ws);
            if (!tu_check(st == FIA_STATUS_SUCCESS, "plan/execute case %d [%s]: plan %s: %s", s, isa,
                          fia_status_string(st), fia_last_error()))
                continue;
            tu_check(fia_plan_workspace_size(plan) == ws, "plan %d [%s]: fia_plan_workspace_size %zu == %zu", s,
                     isa, fia_plan_workspace_size(plan), ws);
            saw_workspace |= ws > 0;
            void *w = malloc(ws + 64);
            /* too small: WORKSPACE_TOO_SMALL, nothing written */
            if (ws > 0) {
                reset_outputs(&f);
                st = fia_plan_execute(plan, w, ws - 1);
                tu_check(st == FIA_STATUS_WORKSPACE_TOO_SMALL && all_sentinel(&f.out) && all_sentinel(&f.lse),
                         "plan %d [%s]: execute with ws - 1 bytes gives %s and writes nothing", s, isa,
                         fia_status_string(st));
                st = fia_plan_execute(plan, NULL, 0);
                tu_check(st == FIA_STATUS_WORKSPACE_TOO_SMALL && all_sentinel(&f.out),
                         "plan %d [%s]: execute with no workspace gives %s", s, isa, fia_status_string(st));
            }
            /* twice: identical; misaligned workspace is fine */
            reset_outputs(&f);
            st = fia_plan_execute(plan, w, ws);
            void *out1 = malloc(f.out.bytes), *lse1 = malloc(f.lse.bytes);
            memcpy(out1, f.out.buf, f.out.bytes), memcpy(lse1, f.lse.buf, f.lse.bytes);
            reset_outputs(&f);
            const fia_status st2 = fia_plan_execute(plan, (char *)w + 3, ws);
            tu_check(st == FIA_STATUS_SUCCESS && st2 == FIA_STATUS_SUCCESS &&
                         memcmp(out1, f.out.buf, f.out.bytes) == 0 && memcmp(lse1, f.lse.buf, f.lse.bytes) == 0,
                     "plan %d [%s]: re-running a plan (misaligned workspace) is bitwise identical", s, isa);
            /* one-shot == plan + execute */
            reset_outputs(&f);
            st = fia_fused_infer_attention_score(g_ctx[i], &f.t, &f.p);
            tu_check(st == FIA_STATUS_SUCCESS && memcmp(out1, f.out.buf, f.out.bytes) == 0 &&
                         memcmp(lse1, f.lse.buf, f.lse.bytes) == 0,
                     "plan %d [%s]: one-shot equals plan + execute", s, isa);
            /* executed from another thread */
            reset_outputs(&f);
            exec_arg ea = {plan, w, ws, FIA_STATUS_INTERNAL};
            pthread_t th;
            if (pthread_create(&th, NULL, exec_thread, &ea) == 0) {
                pthread_join(th, NULL);
                tu_check(ea.st == FIA_STATUS_SUCCESS && memcmp(out1, f.out.buf, f.out.bytes) == 0,
                         "plan %d [%s]: execute from another thread", s, isa);
            }
            /* inputs rewritten in place: the plan reads the new contents */
            tu_fill_uniform(&f.q.t, &r, -1.0, 1.0);
            tu_fill_uniform(&f.v.t, &r, c.kvdt == FIA_DTYPE_INT8 ? -120.0 : -1.0, c.kvdt == FIA_DTYPE_INT8 ? 121.0 : 1.0);
            reset_outputs(&f);
            st = fia_plan_execute(plan, w, ws);
            double *o_ref, *l_ref;
            oracle(&f, &o_ref, &l_ref);
            tu_check(st == FIA_STATUS_SUCCESS && compare_outputs(&f, o_ref, l_ref) == 0,
                     "plan %d [%s]: re-run after rewriting the inputs matches the oracle", s, isa);
            free(o_ref), free(l_ref), free(out1), free(lse1), free(w);
            fia_plan_destroy(plan);
            /* workspace_bytes may be NULL */
            plan = NULL;
            st = fia_fused_infer_attention_score_plan(g_ctx[i], &f.t, &f.p, &plan, NULL);
            tu_check(st == FIA_STATUS_SUCCESS && plan, "plan %d [%s]: workspace_bytes NULL", s, isa);
            fia_plan_destroy(plan);
        }
        fbuf_free(&f);
    }
    if (!saw_workspace) printf("plan/execute: no plan asked for a workspace: WORKSPACE_TOO_SMALL untested\n");
    tu_check(fia_plan_execute(NULL, NULL, 0) == FIA_STATUS_INVALID_ARGUMENT, "execute(NULL plan) is INVALID_ARGUMENT");
    fia_plan_destroy(NULL);
    printf("plan/execute: 3 plans per ISA done\n");
}

/* Two threads calling the same context at once (serialized by the context). */
typedef struct conc_arg {
    fbuf *f;
    fia_context *ctx;
    int ok;
    double *o_ref, *l_ref;
} conc_arg;

static void *conc_thread(void *p) {
    conc_arg *a = p;
    a->ok = 1;
    for (int k = 0; k < 4; k++) {
        reset_outputs(a->f);
        a->ok &= run_fia(a->ctx, a->f, k & 1) == FIA_STATUS_SUCCESS;
        a->ok &= fia_ref_compare("concurrent out", &a->f->out.t, a->o_ref,
                                 a->f->out.t.dtype == FIA_DTYPE_FLOAT32 ? FP32_ATOL : HALF_ATOL,
                                 a->f->out.t.dtype == FIA_DTYPE_FLOAT32 ? FP32_RTOL : HALF_RTOL) == 0;
    }
    return NULL;
}

static void test_concurrency(uint64_t seed) {
    if (g_nctx == 0) return;
    fcase c[2];
    c[0] = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 1200, 64, 64);
    c[1] = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 2, 1, 64, 64, 32, 32);
    fbuf f[2];
    conc_arg a[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        tu_rng r = tu_rng_make(seed + 3000 + (uint64_t)i);
        fcase_normalize(&c[i]);
        fbuild(&c[i], &r, &f[i]);
        a[i].f = &f[i], a[i].ctx = g_ctx[g_nctx - 1];
        oracle(&f[i], &a[i].o_ref, &a[i].l_ref);
    }
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, conc_thread, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        tu_check(a[i].ok, "concurrent calls on one context: thread %d", i);
        free(a[i].o_ref), free(a[i].l_ref), fbuf_free(&f[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Invalid input                                                                              */
/* ------------------------------------------------------------------------------------------ */

enum { BAD_INV = 1, BAD_UNSUP = 2, BAD_EITHER = 3 };

#define MAX_EXTRA 64
static tu_tensor g_extra[MAX_EXTRA];
static int g_nextra;
static int g_plan_sentinel;
static int g_bad_calls;

/* A sentinel-filled tensor for a mutation; strides NULL: compact. Negative strides: data points
 * where every element stays inside the buffer. */
static fia_tensor *mk(fia_dtype dt, int32_t nd, const int64_t *shape, const int64_t *strides) {
    if (g_nextra == MAX_EXTRA) abort(); /* raise MAX_EXTRA */
    tu_tensor *x = &g_extra[g_nextra++];
    int64_t st[FIA_MAX_DIMS], lo = 0, hi = 0, s = 1;
    int empty = 0;
    for (int32_t i = 0; i < nd; i++) empty |= shape[i] == 0;
    for (int32_t i = nd - 1; i >= 0; i--) {
        st[i] = strides ? strides[i] : s;
        s *= shape[i];
        if (shape[i] > 0 && !empty) {
            if (st[i] < 0) lo += st[i] * (shape[i] - 1);
            else hi += st[i] * (shape[i] - 1);
        }
    }
    const size_t es = fia_dtype_size(dt) ? fia_dtype_size(dt) : 1;
    x->bytes = (size_t)(hi - lo + 1) * es;
    x->buf = malloc(x->bytes);
    memset(x->buf, 0xff, x->bytes);
    x->t.data = (char *)x->buf - lo * (int64_t)es;
    x->t.dtype = dt, x->t.ndim = nd;
    for (int32_t i = 0; i < nd; i++) x->t.shape[i] = shape[i], x->t.strides[i] = st[i];
    return &x->t;
}

static int contains_any(const char *msg, const char *names) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", names);
    for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|"))
        if (strstr(msg, tok)) return 1;
    return 0;
}

static void expect_bad(fbuf *f, const fia_fused_infer_attention_score_tensors *t,
                       const fia_fused_infer_attention_score_params *p, const char *what,
                       const char *names, int flags) {
    fia_context *ctx = g_ctx[0];
    reset_outputs(f);
    fia_plan *plan = (fia_plan *)&g_plan_sentinel;
    size_t ws = 777;
    const fia_status st = fia_fused_infer_attention_score_plan(ctx, t, p, &plan, &ws);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", fia_last_error());
    const fia_status st2 = fia_fused_infer_attention_score(ctx, t, p);
    const int status_ok = ((flags & BAD_INV) && st == FIA_STATUS_INVALID_ARGUMENT) ||
                          ((flags & BAD_UNSUP) && st == FIA_STATUS_UNSUPPORTED);
    const int name_ok = msg[0] && (!names || contains_any(msg, names));
    int untouched = all_sentinel(&f->out) && (!f->lse.buf || all_sentinel(&f->lse)) &&
                    plan == (fia_plan *)&g_plan_sentinel && ws == 777;
    for (int i = 0; i < g_nextra; i++) untouched &= all_sentinel(&g_extra[i]);
    tu_check(status_ok && st2 == st && name_ok && untouched,
             "bad input '%s': plan %s, one-shot %s (want %s), message \"%s\" (should name %s)%s", what,
             fia_status_string(st), fia_status_string(st2),
             flags == BAD_INV ? "INVALID_ARGUMENT" : flags == BAD_UNSUP ? "UNSUPPORTED" : "INVALID or UNSUPPORTED",
             msg, names ? names : "anything", untouched ? "" : "; an output / input / *plan was written");
    if (getenv("FIA_TEST_VERBOSE")) printf("  %-45s %s: %s\n", what, fia_status_string(st), msg);
    if (st == FIA_STATUS_SUCCESS && plan != (fia_plan *)&g_plan_sentinel) fia_plan_destroy(plan);
    g_bad_calls++;
}

#define BAD(base, what, names, flags, ...)                                                         \
    do {                                                                                           \
        fia_fused_infer_attention_score_tensors t = (base)->t;                                     \
        fia_fused_infer_attention_score_params p = (base)->p;                                      \
        __VA_ARGS__;                                                                               \
        (void)t, (void)p;                                                                          \
        expect_bad((base), &t, &p, what, names, flags);                                            \
    } while (0)

static void test_bad_input(uint64_t seed) {
    if (g_nctx == 0) return;
    tu_rng r = tu_rng_make(seed + 4000);
    fbuf fa, fp, ft, fh;
    fcase c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 4, 2, 3, 10, 16, 16);
    set_lens(&c, (const int64_t[]){3, 2, 1}, (const int64_t[]){10, 5, 7});
    c.mask = MASK_2D, c.lse = 1;
    fbuild(&c, &r, &fa);
    fcase cp = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 20, 16, 16);
    set_lens(&cp, NULL, (const int64_t[]){20, 7});
    set_paged(&cp, 3, 16);
    set_quant(&cp, AQ_C3, 1, FIA_DTYPE_FLOAT32);
    cp.lse = 1;
    fbuild(&cp, &r, &fp);
    fcase ct = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 2, 1, 0, 0, 8, 8);
    set_lens(&ct, (const int64_t[]){3, 2}, (const int64_t[]){4, 6});
    fbuild(&ct, &r, &ft);
    fcase ch = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 1, 1, 1, 2, 1025, 1025);
    fbuild(&ch, &r, &fh);

    /* Each base must be valid first. */
    fbuf *bases[4] = {&fa, &fp, &ft, &fh};
    for (int i = 0; i < 3; i++) {
        reset_outputs(bases[i]);
        const fia_status st = run_fia(g_ctx[0], bases[i], 0);
        tu_check(st == FIA_STATUS_SUCCESS, "bad input: base %d is valid (%s: %s)", i, fia_status_string(st), fia_last_error());
    }

    /* Shapes and head counts. */
    BAD(&fa, "key head dim 32, query 16", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 32}, NULL));
    BAD(&fa, "value S 9, key 10", "value", BAD_INV, t.value = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 9, 2, 16}, NULL));
    BAD(&fa, "key rank 3 in BSND", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 3, (const int64_t[]){3, 10, 32}, NULL));
    BAD(&fa, "key batch 2, query 3", "key", BAD_INV, t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){2, 10, 2, 16}, NULL));
    BAD(&fa, "N1 % N2 != 0", "num_key_value_heads|num_heads|key", BAD_INV, p.num_key_value_heads = 3);
    BAD(&fa, "num_heads 8, query has 4", "num_heads|query", BAD_INV, p.num_heads = 8);
    BAD(&fa, "num_heads 0", "num_heads", BAD_INV, p.num_heads = 0);
    BAD(&fa, "num_heads -4", "num_heads", BAD_INV, p.num_heads = -4);
    BAD(&fa, "num_key_value_heads -2", "num_key_value_heads", BAD_INV, p.num_key_value_heads = -2);
    BAD(&fa, "num_heads 512 > 256", "num_heads|query", BAD_INV, p.num_heads = 512,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 512, 16}, NULL));
    BAD(&fh, "head dim 1025", "query|key|value|head", BAD_INV, (void)0);
    BAD(&fa, "value head dim 1025", "value", BAD_INV, t.value = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 1025}, NULL));
    BAD(&fa, "attention_out shape", "attention_out", BAD_INV,
        t.attention_out = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 8}, NULL));
    BAD(&fa, "attention_out dtype", "attention_out", BAD_INV,
        t.attention_out = mk(FIA_DTYPE_FLOAT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL));
    BAD(&fa, "layout 42", "input_layout|layout", BAD_INV, p.input_layout = (fia_layout)42);
    BAD(&fa, "layout -1", "input_layout|layout", BAD_INV, p.input_layout = (fia_layout)-1);
    BAD(&fa, "reserved layout NTD", "input_layout|layout|NTD", BAD_EITHER, p.input_layout = FIA_LAYOUT_NTD);
    BAD(&fa, "reserved layout PA_BSND", "input_layout|layout|PA_BSND", BAD_EITHER, p.input_layout = FIA_LAYOUT_PA_BSND);
    /* dtypes */
    BAD(&fa, "query int32", "query", BAD_INV, t.query = mk(FIA_DTYPE_INT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        t.attention_out = mk(FIA_DTYPE_INT32, 4, (const int64_t[]){3, 3, 4, 16}, NULL));
    BAD(&fa, "query dtype 99", "query", BAD_INV, t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        g_extra[g_nextra - 1].t.dtype = (fia_dtype)99);
    BAD(&fa, "value bfloat16, key float16", "value|key", BAD_INV,
        t.value = mk(FIA_DTYPE_BFLOAT16, 4, (const int64_t[]){3, 10, 2, 16}, NULL));
    BAD(&fa, "key uint8", "key", BAD_INV, t.key = mk(FIA_DTYPE_UINT8, 4, (const int64_t[]){3, 10, 2, 16}, NULL),
        t.value = mk(FIA_DTYPE_UINT8, 4, (const int64_t[]){3, 10, 2, 16}, NULL));
    /* NULL tensors */
    BAD(&fa, "NULL query", "query", BAD_INV, t.query = NULL);
    BAD(&fa, "NULL key", "key", BAD_INV, t.key = NULL);
    BAD(&fa, "NULL value", "value", BAD_INV, t.value = NULL);
    BAD(&fa, "NULL attention_out", "attention_out", BAD_INV, t.attention_out = NULL);
    BAD(&fa, "NULL query data", "query", BAD_INV, t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, NULL),
        g_extra[g_nextra - 1].t.data = NULL);
    /* strides */
    BAD(&fa, "query innermost stride 2", "query", BAD_UNSUP,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){384, 128, 32, 2}));
    BAD(&fa, "query innermost stride 0", "query", BAD_UNSUP,
        t.query = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){64, 16, 4, 0}));
    BAD(&fa, "key negative stride", "key", BAD_EITHER,
        t.key = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 10, 2, 16}, (const int64_t[]){320, -32, 16, 1}));
    BAD(&fa, "attention_out negative stride", "attention_out", BAD_EITHER,
        t.attention_out = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 3, 4, 16}, (const int64_t[]){-192, 64, 16, 1}));
    /* MLA ropes are reserved */
    BAD(&fa, "query_rope without key_rope", "query_rope|rope", BAD_INV, t.query_rope = fa.t.query);
    BAD(&fa, "key_rope without query_rope", "key_rope|rope", BAD_INV, t.key_rope = fa.t.key);
    /* lengths */
    BAD(&fa, "actual_seq_lengths 4 > S1 3", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){4, 2, 1});
    BAD(&fa, "actual_seq_lengths negative", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, -1, 1});
    BAD(&fa, "actual_seq_lengths count 2 < B 3", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths_count = 2);
    BAD(&fa, "actual_seq_lengths count -1", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths_count = -1);
    BAD(&fa, "actual_seq_lengths_kv 11 > S2 10", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){11, 5, 7});
    BAD(&fa, "actual_seq_lengths_kv negative", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){10, -2, 7});
    BAD(&fa, "actual_seq_lengths_kv INT64_MAX", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){10, INT64_MAX, 7});
    BAD(&fa, "actual_seq_lengths_kv count 2 < B 3", "actual_seq_lengths_kv", BAD_INV, p.actual_seq_lengths_kv_count = 2);
    BAD(&ft, "TND decreasing actual_seq_lengths", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, 2});
    BAD(&ft, "TND actual_seq_lengths beyond T1", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = (const int64_t[]){3, 6});
    BAD(&ft, "TND without actual_seq_lengths", "actual_seq_lengths", BAD_INV, p.actual_seq_lengths = NULL,
        p.actual_seq_lengths_count = 0);
    BAD(&ft, "TND decreasing actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){4, 3});
    BAD(&ft, "TND actual_seq_lengths_kv beyond T2", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){4, 11});
    BAD(&ft, "TND without actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV, p.actual_seq_lengths_kv = NULL,
        p.actual_seq_lengths_kv_count = 0);
    /* masks and sparse modes */
    BAD(&fa, "atten_mask S2m 9 < longest kv 10", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){3, 9}, NULL));
    BAD(&fa, "atten_mask S1m 2 < longest query 3", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){2, 10}, NULL));
    BAD(&fa, "atten_mask batch 2 (B 3)", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 3, (const int64_t[]){2, 3, 10}, NULL));
    BAD(&fa, "atten_mask float16", "atten_mask", BAD_INV,
        t.atten_mask = mk(FIA_DTYPE_FLOAT16, 2, (const int64_t[]){3, 10}, NULL));
    BAD(&fa, "atten_mask rank 1", "atten_mask", BAD_INV, t.atten_mask = mk(FIA_DTYPE_BOOL, 1, (const int64_t[]){30}, NULL));
    BAD(&fa, "sparse_mode 1 without atten_mask", "atten_mask|sparse_mode", BAD_INV, p.sparse_mode = 1, t.atten_mask = NULL);
    BAD(&fa, "sparse_mode 5", "sparse_mode", BAD_UNSUP, p.sparse_mode = 5);
    BAD(&fa, "sparse_mode 9 (tree mask)", "sparse_mode", BAD_UNSUP, p.sparse_mode = 9);
    BAD(&fa, "sparse_mode -1", "sparse_mode", BAD_INV, p.sparse_mode = -1);
    BAD(&fa, "sparse_mode 10", "sparse_mode", BAD_EITHER, p.sparse_mode = 10);
    BAD(&fa, "sparse_mode 3, compressed mask [1024, 1024]", "atten_mask", BAD_INV, p.sparse_mode = 3,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 2, (const int64_t[]){1024, 1024}, NULL));
    BAD(&fa, "sparse_mode 2, compressed mask [2, 2048, 2048]", "atten_mask", BAD_INV, p.sparse_mode = 2,
        t.atten_mask = mk(FIA_DTYPE_BOOL, 3, (const int64_t[]){2, 2048, 2048}, NULL));
    /* softmax_lse */
    BAD(&fa, "softmax_lse missing with softmax_lse_flag", "softmax_lse", BAD_INV, t.softmax_lse = NULL);
    BAD(&fa, "softmax_lse float16", "softmax_lse", BAD_INV,
        t.softmax_lse = mk(FIA_DTYPE_FLOAT16, 4, (const int64_t[]){3, 4, 3, 1}, NULL));
    BAD(&fa, "softmax_lse shape", "softmax_lse", BAD_INV,
        t.softmax_lse = mk(FIA_DTYPE_FLOAT32, 4, (const int64_t[]){3, 4, 4, 1}, NULL));
    /* paged cache */
    const int64_t nblocks = fp.k.t.shape[0], maxb = fp.bt.t.shape[1];
    int32_t *bt = fp.bt.buf;
    const int32_t saved0 = bt[0], saved1 = bt[maxb];
    bt[0] = (int32_t)nblocks;
    BAD(&fp, "block id == blocks", "block_table", BAD_INV, (void)0);
    bt[0] = saved0, bt[maxb] = -1;
    BAD(&fp, "block id -1 within the kv length", "block_table", BAD_INV, (void)0);
    bt[maxb] = INT32_MIN;
    BAD(&fp, "block id INT32_MIN", "block_table", BAD_INV, (void)0);
    bt[maxb] = saved1;
    BAD(&fp, "block_table int64", "block_table", BAD_INV, t.block_table = mk(FIA_DTYPE_INT64, 2, (const int64_t[]){2, maxb}, NULL));
    BAD(&fp, "block_table batch 1 (B 2)", "block_table", BAD_INV, t.block_table = mk(FIA_DTYPE_INT32, 2, (const int64_t[]){1, maxb}, NULL));
    BAD(&fp, "kv length beyond the block table", "actual_seq_lengths_kv|block_table", BAD_INV,
        p.actual_seq_lengths_kv = (const int64_t[]){20, 16 * maxb + 1});
    BAD(&fp, "paged cache without actual_seq_lengths_kv", "actual_seq_lengths_kv", BAD_INV,
        p.actual_seq_lengths_kv = NULL, p.actual_seq_lengths_kv_count = 0);
    BAD(&fp, "block_size 32, key has 16", "block_size|key", BAD_INV, p.block_size = 32);
    BAD(&fp, "block_size 0", "block_size", BAD_INV, p.block_size = 0);
    BAD(&fp, "block_size 2048 > 1024", "block_size", BAD_INV, p.block_size = 2048,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){1, 2048, 32}, NULL),
        t.value = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){1, 2048, 32}, NULL));
    BAD(&fp, "paged key H 48 != N2 * D 32", "key", BAD_INV,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){nblocks, 16, 48}, NULL));
    BAD(&fp, "paged key rank 2", "key", BAD_INV, t.key = mk(FIA_DTYPE_INT8, 2, (const int64_t[]){nblocks * 16, 32}, NULL));
    /* found by fuzz_fia_plan: an empty BnBsH cache with a huge innermost stride (UBSan: signed
     * overflow computing the head stride at plan time) */
    BAD(&fp, "empty paged value, innermost stride 2^61 + 3", "value|key|block_table", BAD_EITHER,
        t.key = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){0, 16, 32}, NULL),
        t.value = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){0, 16, 32}, (const int64_t[]){512, 32, (INT64_C(1) << 61) + 3}));
    /* antiquant */
    BAD(&fp, "int8 key without antiquant_scale", "antiquant_scale", BAD_INV, t.antiquant_scale = NULL);
    BAD(&fp, "antiquant_scale [2, N2, D + 1]", "antiquant_scale", BAD_INV,
        t.antiquant_scale = mk(FIA_DTYPE_FLOAT32, 3, (const int64_t[]){2, 2, 17}, NULL));
    BAD(&fp, "antiquant_scale [3]", "antiquant_scale", BAD_INV, t.antiquant_scale = mk(FIA_DTYPE_FLOAT32, 1, (const int64_t[]){3}, NULL));
    BAD(&fp, "antiquant_scale int32", "antiquant_scale", BAD_INV,
        t.antiquant_scale = mk(FIA_DTYPE_INT32, 3, (const int64_t[]){2, 2, 16}, NULL));
    BAD(&fp, "antiquant_offset [2, N2 + 1, D]", "antiquant_offset", BAD_INV,
        t.antiquant_offset = mk(FIA_DTYPE_FLOAT32, 3, (const int64_t[]){2, 3, 16}, NULL));
    BAD(&fp, "antiquant_mode 1 with S2s 16 < kv 20", "antiquant_scale|antiquant_mode", BAD_INV, p.antiquant_mode = 1);
    BAD(&fp, "antiquant_mode 2", "antiquant_mode", BAD_EITHER, p.antiquant_mode = 2);
    BAD(&fp, "int8 key, float16 value", "value|key", BAD_INV,
        t.value = mk(FIA_DTYPE_FLOAT16, 3, (const int64_t[]){nblocks, 16, 32}, NULL));
    BAD(&fp, "int8 key, int8 query", "query", BAD_INV, t.query = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){2, 1, 64}, NULL),
        t.attention_out = mk(FIA_DTYPE_INT8, 3, (const int64_t[]){2, 1, 64}, NULL));

    /* NULL ctx / tensors / params / plan pointer. */
    {
        fia_plan *plan = (fia_plan *)&g_plan_sentinel;
        size_t ws = 777;
        reset_outputs(&fa);
        int ok = fia_fused_infer_attention_score_plan(NULL, &fa.t, &fa.p, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], NULL, &fa.p, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], &fa.t, NULL, &plan, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score_plan(g_ctx[0], &fa.t, &fa.p, NULL, &ws) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(NULL, &fa.t, &fa.p) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(g_ctx[0], NULL, &fa.p) == FIA_STATUS_INVALID_ARGUMENT;
        ok &= fia_fused_infer_attention_score(g_ctx[0], &fa.t, NULL) == FIA_STATUS_INVALID_ARGUMENT;
        tu_check(ok && fia_last_error()[0] && plan == (fia_plan *)&g_plan_sentinel && ws == 777 && all_sentinel(&fa.out),
                 "bad input: NULL ctx / tensors / params / plan pointer are INVALID_ARGUMENT");
        g_bad_calls += 7;
    }

    /* Modes 2-4 without the compressed mask: fia.h describes the compressed form but does not
     * say it is required; accept a rejection (INVALID_ARGUMENT) or a correct result. */
    for (int mode = 2; mode <= 4; mode++) {
        fcase cm = c;
        cm.sparse_mode = mode, cm.mask = MASK_NONE, cm.pre = 3, cm.next = 1;
        fcase_normalize(&cm);
        fbuf fm;
        fbuild(&cm, &r, &fm);
        double *o, *l;
        oracle(&fm, &o, &l);
        reset_outputs(&fm);
        const fia_status st = run_fia(g_ctx[0], &fm, 0);
        tu_check((st == FIA_STATUS_INVALID_ARGUMENT && all_sentinel(&fm.out)) ||
                     (st == FIA_STATUS_SUCCESS && compare_outputs(&fm, o, l) == 0),
                 "sparse_mode %d without a mask: %s (%s)", mode, fia_status_string(st), fia_last_error());
        if (mode == 2) printf("sparse_mode 2-4 without a mask: the library answers %s\n", fia_status_string(st));
        free(o), free(l), fbuf_free(&fm);
    }

    for (int i = 0; i < g_nextra; i++) tu_free(&g_extra[i]);
    g_nextra = 0;
    for (int i = 0; i < 4; i++) fbuf_free(bases[i]);
    printf("bad input: %d invalid calls\n", g_bad_calls);
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20250611, "test_fia_api");
    const double t0 = now_s();
    if (tu_env_long("FIA_TEST_ONLY", -1) >= 0) { /* as in test_fia: random case i only */
        printf("FIA_TEST_ONLY set: plan/execute, concurrency and invalid input skipped\n");
        return tu_summary();
    }
    cmask_create(seed);
    open_contexts(0); /* test_fia counts the contexts created */
    if (g_nctx > 0) {
        test_plan_execute(seed);
        test_concurrency(seed);
        test_bad_input(seed);
    }
    print_worst_errors();
    close_contexts();
    cmask_destroy();
    printf("total %.1f s\n", now_s() - t0);
    return tu_summary();
}
