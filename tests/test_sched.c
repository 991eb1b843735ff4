/*
 * test_sched.c - the shared scheduling framework (src/sched/) on its own:
 *   worklist:    chunks of a split group tile the key range exactly, with boundaries only at
 *                multiples of the chunk (token space: the same for any thread count); costs are
 *                nh x fia_cost_tile; partial offsets are consecutive; the sort is a total order
 *                (two shuffled copies sort to the same list); the item limit is UNSUPPORTED;
 *   splitkv:     storing the chunks' states and merging them equals merging them directly, in
 *                chunk order, bit for bit; an empty chunk is skipped;
 *   kvcache:     fia_seq_row_ptrs against the definition (dense, TND offset, paged with runs
 *                crossing blocks, every block size 1..9);
 *   tensor_spec: the order of the three passes and their messages; conditions (required when,
 *                applies when), the rank and dim rules (dims from the end, against another
 *                tensor, a constant or a derived value) and their messages;
 *   threadpool:  every task runs exactly once (1..4 threads, task counts around the thread
 *                count); creating and running a pool leaves the caller's affinity mask as it
 *                was; a pinned pool (as many threads as allowed CPUs) never runs a worker on the
 *                CPU the caller is on, wherever the caller moves (the test moves it).
 * Usage: test_sched [seed].
 */
#define _GNU_SOURCE

#include <math.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/softmax_state.h"
#include "sched/kvcache.h"
#include "sched/splitkv.h"
#include "sched/tensor_spec.h"
#include "sched/worklist.h"
#include "test_util.h"

static void build(fia_worklist *wl, tu_rng *r, int64_t nreq, const int64_t *kv0,
                  const int64_t *kv1, int64_t chunk) {
    for (int pass = 0; pass < 2; pass++) {
        fia_worklist_begin(wl, pass);
        for (int64_t b = 0; b < nreq; b++) {
            if (kv1[b] - kv0[b] > chunk) fia_worklist_split(wl, b, 0, 2, 0, 1, kv0[b], kv1[b], chunk, 3, 5);
            else fia_worklist_tile(wl, b, 0, 1, 0, 1, kv0[b], kv1[b], 3);
            if (b % 3 == 0) fia_worklist_zero(wl, b, 1, 2, 7);
        }
        tu_check(fia_worklist_end(wl) == FIA_STATUS_SUCCESS, "worklist_end");
    }
    (void)r;
}

static void test_worklist(tu_rng *r) {
    for (int rep = 0; rep < 200; rep++) {
        const int64_t nreq = tu_int(r, 1, 12), chunk = TU_PICK(r, ((int64_t[]){16, 64, 100, 2048}));
        int64_t kv0[12], kv1[12];
        for (int64_t b = 0; b < nreq; b++) {
            kv0[b] = tu_int(r, 0, 5000);
            kv1[b] = kv0[b] + tu_int(r, 0, 9000);
        }
        fia_worklist wl = {0}, w2 = {0};
        build(&wl, r, nreq, kv0, kv1, chunk);
        build(&w2, r, nreq, kv0, kv1, chunk);
        int ok = 1;
        int64_t floats = 0;
        for (int64_t g = 0; g < wl.num_groups; g++) {
            const fia_work_group *gr = &wl.groups[g];
            ok &= gr->partial == floats;
            floats += (int64_t)gr->nchunks * gr->nh * 3 * (5 + 2);
            int64_t at = kv0[gr->b], seen = 0;
            for (int64_t i = 0; i < wl.num_items; i++) {
                const fia_work_item *it = &wl.items[i];
                if (it->group != g) continue;
                seen++;
                ok &= it->kind == FIA_WORK_TILE && it->b == gr->b && it->chunk < gr->nchunks;
                ok &= it->cost == 2 * fia_cost_tile(3, it->kv1 - it->kv0);
                ok &= it->kv0 == (it->chunk == 0 ? kv0[gr->b] : (kv0[gr->b] / chunk + it->chunk) * chunk);
                ok &= it->kv1 > it->kv0 && (it->kv1 == kv1[gr->b] || it->kv1 % chunk == 0);
                if (it->kv0 == at) at = it->kv1; /* items are in creation order here */
            }
            ok &= seen == gr->nchunks && at == kv1[gr->b];
        }
        ok &= floats == wl.partial_floats;
        /* the order is total: a shuffled copy sorts to the same list */
        for (int64_t i = w2.num_items - 1; i > 0; i--) {
            const int64_t j = tu_int(r, 0, i);
            fia_work_item t = w2.items[i];
            w2.items[i] = w2.items[j];
            w2.items[j] = t;
        }
        fia_worklist_sort(&wl);
        fia_worklist_sort(&w2);
        ok &= wl.num_items == w2.num_items &&
              !memcmp(wl.items, w2.items, (size_t)wl.num_items * sizeof *wl.items);
        for (int64_t i = 1; i < wl.num_items; i++) ok &= wl.items[i - 1].cost >= wl.items[i].cost;
        tu_check(ok, "worklist rep %d (%lld requests, chunk %lld)", rep, (long long)nreq,
                 (long long)chunk);
        fia_worklist_free(&wl);
        fia_worklist_free(&w2);
    }
    fia_worklist big = {0};
    fia_worklist_begin(&big, 0);
    big.num_items = FIA_MAX_ITEMS + 1;
    tu_check(fia_worklist_check(&big) == FIA_STATUS_UNSUPPORTED, "item limit");
}

typedef struct merged {
    float m[8], l[8], o[8][6];
} merged;

static void keep_row(const void *ctx, int64_t r, float m, float l, float *o) {
    merged *out = (merged *)ctx;
    out->m[r] = m;
    out->l[r] = l;
    memcpy(out->o[r], o, sizeof out->o[r]);
}

static void test_splitkv(tu_rng *r) {
    enum { ROWS = 8, DV = 6, NC = 5 };
    for (int rep = 0; rep < 100; rep++) {
        float m[NC][ROWS], l[NC][ROWS], o[NC][ROWS][DV + 2];
        int empty[NC];
        for (int c = 0; c < NC; c++) {
            empty[c] = tu_chance(r, 0.2);
            for (int i = 0; i < ROWS; i++) {
                m[c][i] = (float)tu_uniform(r, -5, 5);
                l[c][i] = (float)tu_uniform(r, 0.5, 9);
                for (int d = 0; d < DV + 2; d++) o[c][i][d] = (float)tu_uniform(r, -3, 3);
            }
        }
        float partials[1 + NC * ROWS * (DV + 2)];
        const fia_work_group g = {0, 0, 1, NC, 0, 1, 1};
        for (int c = 0; c < NC; c++)
            fia_splitkv_store(partials, &g, c, ROWS, DV, empty[c], m[c], l[c], &o[c][0][0], DV + 2);
        merged got;
        float scratch[DV];
        fia_splitkv_merge(partials, &g, ROWS, DV, scratch, keep_row, &got);
        int ok = 1;
        for (int i = 0; i < ROWS; i++) {
            float wm = -INFINITY, wl = 0.0f, wo[DV] = {0};
            for (int c = 0; c < NC; c++)
                if (!empty[c]) fia_softmax_state_merge(&wm, &wl, wo, m[c][i], l[c][i], o[c][i], DV);
            ok &= !memcmp(&wm, &got.m[i], sizeof wm) && (wm == -INFINITY || (!memcmp(&wl, &got.l[i], sizeof wl) && !memcmp(wo, got.o[i], sizeof wo)));
        }
        tu_check(ok, "splitkv rep %d: store + merge == direct merge, bitwise", rep);
    }
}

static void test_kvcache(tu_rng *r) {
    for (int rep = 0; rep < 300; rep++) {
        const int64_t bs = tu_int(r, 1, 9), B = tu_int(r, 1, 3), cols = tu_int(r, 1, 6);
        int32_t table[3 * 6];
        for (int i = 0; i < B * cols; i++) table[i] = (int32_t)tu_int(r, 0, 40);
        fia_seq s = {0};
        s.base = (char *)0x1000;
        s.esize = 2;
        s.s_b = 100000, s.s_t = tu_int(r, 1, 50), s.s_h = 7, s.s_blk = 9000;
        const fia_pages dense = {NULL, 0, 0, 0};
        fia_pages paged; /* power-of-two block sizes locate by shift */
        fia_pages_init(&paged, table, cols, bs);
        const int64_t b = tu_int(r, 0, B - 1), h = tu_int(r, 0, 3), tok0 = tu_int(r, 0, 20);
        const int64_t t0 = tu_int(r, 0, cols * bs - 1), n = tu_int(r, 0, cols * bs - t0);
        const void *p1[64], *p2[64];
        fia_seq_row_ptrs(&s, &paged, b, tok0, h, t0, n, p1);
        fia_seq_row_ptrs(&s, &dense, b, tok0, h, t0, n, p2);
        int ok = 1;
        for (int64_t j = 0; j < n; j++) {
            const int64_t t = t0 + j, blk = table[b * cols + t / bs];
            ok &= p1[j] == s.base + (blk * s.s_blk + (t % bs) * s.s_t + h * s.s_h) * s.esize;
            ok &= p2[j] == s.base + (b * s.s_b + (tok0 + t) * s.s_t + h * s.s_h) * s.esize;
        }
        tu_check(ok, "kvcache rep %d (block_size %lld, t0 %lld, n %lld)", rep, (long long)bs,
                 (long long)t0, (long long)n);
    }
}

typedef struct three {
    const fia_tensor *a, *b, *c;
} three;

static void test_tensor_spec(void) {
    const int64_t sh[2] = {2, 3};
    fia_tensor f16, f32, bad;
    float buf[6];
    fia_tensor_init(&f16, buf, FIA_DTYPE_FLOAT16, 2, sh, NULL);
    fia_tensor_init(&f32, buf, FIA_DTYPE_FLOAT32, 2, sh, NULL);
    bad = f32;
    bad.ndim = 99;
    const fia_tensor_spec spec[] = {
        {"a", offsetof(three, a), FIA_SPEC_REQUIRED | FIA_SPEC_INNER_UNIT, FIA_DT_FLOAT,
         "float16, bfloat16 or float32", -1, 0, NULL},
        {"b", offsetof(three, b), FIA_SPEC_REQUIRED, FIA_DT(FLOAT16), "float16", -1, 0, NULL},
        {"c", offsetof(three, c), 0, 0, NULL, 0, 0, NULL},
    };
    const size_t n = FIA_SPEC_COUNT(spec);
    three t = {NULL, NULL, &bad};
    tu_check(fia_tensor_spec_check(&t, spec, n) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "a is NULL"),
             "pass 1 first: %s", fia_last_error());
    t = (three){&f32, &f16, &bad};
    tu_check(fia_tensor_spec_check(&t, spec, n) == FIA_STATUS_INVALID_ARGUMENT &&
                 strstr(fia_last_error(), "c ndim is 99") != NULL,
             "pass 2 (views): %s", fia_last_error());
    t = (three){&f32, &f32, &f16};
    tu_check(fia_tensor_spec_check(&t, spec, n) == FIA_STATUS_SUCCESS &&
                 fia_tensor_spec_dtypes(&t, spec, n) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "b dtype is float32, must be float16"),
             "pass 3 (dtype set): %s", fia_last_error());
    t = (three){&f32, &f16, &f16};
    tu_check(fia_tensor_spec_dtypes(&t, spec, n) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "c dtype is float16, a is float32"),
             "pass 3 (same as): %s", fia_last_error());
    t = (three){&f16, &f16, NULL};
    tu_check(fia_tensor_spec_check(&t, spec, n) == FIA_STATUS_SUCCESS &&
                 fia_tensor_spec_dtypes(&t, spec, n) == FIA_STATUS_SUCCESS,
             "valid tensors pass");
    /* conditional entries (when / when_what) and "same as or one of" (FIA_SPEC_SAME_OR) */
    const fia_tensor_spec cond[] = {
        {"a", offsetof(three, a), FIA_SPEC_REQUIRED, FIA_DT(FLOAT16), "float16", -1, 0, NULL},
        {"b", offsetof(three, b), FIA_SPEC_SAME_OR, FIA_DT(FLOAT32), "float32", 0, 0, NULL},
        {"c", offsetof(three, c), FIA_SPEC_REQUIRED, FIA_DT(FLOAT32), "float32", -1, 1u,
         "flag is set"},
    };
    const size_t nc = FIA_SPEC_COUNT(cond);
    t = (three){&f16, &f16, NULL};
    tu_check(fia_tensor_spec_check_when(&t, cond, nc, 0) == FIA_STATUS_SUCCESS &&
                 fia_tensor_spec_check_when(&t, cond, nc, 1u) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "c is NULL but flag is set"),
             "when: required only under its condition: %s", fia_last_error());
    t = (three){&f16, &f32, &bad};
    tu_check(fia_tensor_spec_check_when(&t, cond, nc, 0) == FIA_STATUS_SUCCESS &&
                 fia_tensor_spec_dtypes_when(&t, cond, nc, 0) == FIA_STATUS_SUCCESS,
             "when: an inactive entry is not checked: %s", fia_last_error());
    t = (three){&f16, &f16, &f16};
    tu_check(fia_tensor_spec_dtypes_when(&t, cond, nc, 1u) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "c dtype is float16, must be float32"),
             "when: an active entry's dtype: %s", fia_last_error());
    fia_tensor bf = f16;
    bf.dtype = FIA_DTYPE_BFLOAT16;
    t = (three){&f16, &bf, NULL};
    tu_check(fia_tensor_spec_dtypes_when(&t, cond, nc, 0) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(),
                         "b dtype is bfloat16, must be float16 (the a's) or float32"),
             "same-or: %s", fia_last_error());
    /* FIA_SPEC_ONLY_WHEN: a tensor given to a call without the entry's condition is refused */
    const fia_tensor_spec only[] = {
        {"c", offsetof(three, c), FIA_SPEC_ONLY_WHEN, FIA_DT(FLOAT16), "float16", -1, 2u,
         "mode is 2"},
    };
    t = (three){NULL, NULL, &f16};
    tu_check(fia_tensor_spec_check_when(&t, only, 1, 0) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "c is given, but only read when mode is 2") &&
                 fia_tensor_spec_check_when(&t, only, 1, 2u) == FIA_STATUS_SUCCESS,
             "only-when: %s", fia_last_error());
    t = (three){NULL, NULL, NULL};
    tu_check(fia_tensor_spec_check_when(&t, only, 1, 0) == FIA_STATUS_SUCCESS,
             "only-when: absent is fine");
    /* a derived shape: the rank, then each dim against a value the operator computed */
    const int64_t want[2] = {2, 4};
    const fia_dim_rule shape2[] = {
        {FIA_RANK_CONST, 0, 0, 0, 0, 2, NULL, 0},
        {FIA_DIM_VAL, 0, 0, 0, 0, 0, "rows", 0},
        {FIA_DIM_VAL, 0, 1, 0, 0, 1, "the width", 0},
    };
    const fia_dim_rule shape3[] = {{FIA_RANK_CONST, 0, 0, 0, 0, 3, NULL, 0}};
    const int64_t ok[2] = {2, 3};
    t = (three){&f16, NULL, NULL};
    tu_check(fia_tensor_spec_dims(&t, spec, shape2, 3, 0, want) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "a dim 1 is 3, the width is 4") &&
                 fia_tensor_spec_dims(&t, spec, shape3, 1, 0, NULL) ==
                     FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "a has 2 dims, expected 3") &&
                 fia_tensor_spec_dims(&t, spec, shape2, 3, 0, ok) == FIA_STATUS_SUCCESS,
             "derived shape: %s", fia_last_error());
    static const char *const what[2] = {"rows", "the width"};
    tu_check(fia_tensor_check_shape(&f16, "a", 2, want, what) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "a dim 1 is 3, the width is 4") &&
                 fia_tensor_check_shape(&f16, "a", 3, want, what) ==
                     FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "a has 2 dims, expected 3") &&
                 fia_tensor_check_shape(&f16, "a", 2, ok, what) == FIA_STATUS_SUCCESS,
             "check_shape: %s", fia_last_error());
}

/* fia_worklist_chunks: ungrouped items on the token grid; sort_range orders a range only. */
static void test_worklist_chunks(void) {
    fia_worklist wl;
    memset(&wl, 0, sizeof wl);
    int ok = 1;
    for (int pass = 0; pass < 2; pass++) {
        fia_worklist_begin(&wl, pass);
        fia_worklist_chunks(&wl, 1, 0, 1, 5, 2, 100, 9000, 4096, 2);
        fia_worklist_chunks(&wl, 0, 0, 1, 0, 1, 0, 4096, 4096, 1);
        ok &= fia_worklist_end(&wl) == FIA_STATUS_SUCCESS;
    }
    ok &= wl.num_items == 4 && wl.num_groups == 0;
    if (ok) {
        const int64_t a[4] = {100, 4096, 8192, 0}, e[4] = {4096, 8192, 9000, 4096};
        for (int i = 0; i < 4; i++)
            ok &= wl.items[i].kv0 == a[i] && wl.items[i].kv1 == e[i] && wl.items[i].group == -1 &&
                  wl.items[i].cost == fia_cost_tile(wl.items[i].qn, e[i] - a[i]);
        ok &= wl.items[0].chunk == 0 && wl.items[2].chunk == 2 && wl.items[0].q0 == 5;
        fia_worklist_sort_range(&wl, 0, 3);
        /* by cost: the full chunk, then the shorter ones; item 3 (outside the range) stays */
        ok &= wl.items[0].kv0 == 4096 && wl.items[1].kv0 == 100 && wl.items[2].kv0 == 8192 &&
              wl.items[3].kv0 == 0;
    }
    tu_check(ok, "worklist_chunks: items on the chunk grid, sort_range");
    fia_worklist_free(&wl);
}

typedef struct four {
    const fia_tensor *q, *r, *o, *s;
} four;

/* Conditions on the rules, the rank / dim rules with their messages. */
static void test_tensor_spec_rules(void) {
    const int64_t q4[4] = {2, 3, 4, 8}, q3[3] = {3, 4, 8}, r4[4] = {2, 5, 4, 2}, s1[1] = {4};
    float buf[256];
    fia_tensor q, qt, r, s, s2;
    fia_tensor_init(&q, buf, FIA_DTYPE_FLOAT32, 4, q4, NULL);
    fia_tensor_init(&qt, buf, FIA_DTYPE_FLOAT32, 3, q3, NULL);
    fia_tensor_init(&r, buf, FIA_DTYPE_FLOAT32, 4, r4, NULL);
    fia_tensor_init(&s, buf, FIA_DTYPE_FLOAT32, 1, s1, NULL);
    fia_tensor_init(&s2, buf, FIA_DTYPE_FLOAT32, 4, q4, NULL);
    enum { ROPE = 1, OUT = 2 };
    const fia_tensor_spec spec[] = {
        {"q", offsetof(four, q), FIA_SPEC_REQUIRED, 0, NULL, -1, 0, NULL},
        {"r", offsetof(four, r), FIA_SPEC_REQUIRED, 0, NULL, -1, ROPE, NULL},
        {"o", offsetof(four, o), 0, FIA_DT(FLOAT16), "float16", -1, OUT, NULL},
        {"s", offsetof(four, s), 0, 0, NULL, -1, 0, NULL},
    };
    const fia_dim_rule rules[] = {
        {FIA_RANK_CONST, 3, 0, 0, 0, 1, "[N]", 0},
        {FIA_RANK_EQ, 1, 0, 0, 0, 0, NULL, ROPE},
        {FIA_DIM_EQ, 1, -4, 0, -4, 0, NULL, ROPE},
        {FIA_DIM_EQ, 1, -3, 0, -3, 0, NULL, ROPE},
        {FIA_DIM_CONST, 1, -1, 0, 0, 2, "the rope", ROPE},
        {FIA_DIM_EQ, 3, 0, 0, -2, 0, NULL, 0},
    };
    const size_t n = FIA_SPEC_COUNT(spec), nr = FIA_SPEC_COUNT(rules);
    four t = {&q, NULL, &qt, &s};
    tu_check(fia_tensor_spec_check_when(&t, spec, n, 0) == FIA_STATUS_SUCCESS &&
                 fia_tensor_spec_dtypes_when(&t, spec, n, 0) == FIA_STATUS_SUCCESS,
             "entries of another condition are skipped: %s", fia_last_error());
    tu_check(fia_tensor_spec_check_when(&t, spec, n, ROPE) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "r is NULL"),
             "required when: %s", fia_last_error());
    tu_check(fia_tensor_spec_dtypes_when(&t, spec, n, OUT) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "o dtype is float32, must be float16"),
             "applies when: %s", fia_last_error());
    t.r = &r;
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, ROPE, NULL) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "r dim 1 is 5, q dim 1 is 3"),
             "dim rule: %s", fia_last_error());
    r.shape[1] = 3;
    r.shape[3] = 3;
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, ROPE, NULL) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "r dim 3 is 3, must be 2 (the rope)"),
             "const dim: %s", fia_last_error());
    r.shape[3] = 2;
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, ROPE, NULL) == FIA_STATUS_SUCCESS,
             "rules pass: %s", fia_last_error());
    t.q = &qt; /* 3-D: r's rank differs; without ROPE the rank rule is skipped, dim -4 too */
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, ROPE, NULL) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "r has 4 dims, q has 3"),
             "rank rule: %s", fia_last_error());
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, 0, NULL) == FIA_STATUS_SUCCESS,
             "conditional rules skipped: %s", fia_last_error());
    t.s = &s2;
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, 0, NULL) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "s has 4 dims, must be 1 ([N])"),
             "const rank: %s", fia_last_error());
    s.shape[0] = 5;
    t.s = &s;
    tu_check(fia_tensor_spec_dims(&t, spec, rules, nr, 0, NULL) == FIA_STATUS_INVALID_ARGUMENT &&
                 !strcmp(fia_last_error(), "s dim 0 is 5, q dim 1 is 4"),
             "dim rule from the end of a 3-D tensor: %s", fia_last_error());
}

/* ---- threadpool ---- */

typedef struct pool_probe {
    int *count;     /* runs of each task */
    int *cpu;       /* the CPU each task ran on */
    int *tid;       /* the thread that ran it */
} pool_probe;

static void pool_task(void *arg, int64_t task, int32_t tid) {
    pool_probe *p = arg;
    __atomic_fetch_add(&p->count[task], 1, __ATOMIC_RELAXED);
    p->cpu[task] = sched_getcpu();
    p->tid[task] = tid;
    /* a little work, so that workers get a share */
    volatile double x = 0;
    for (int i = 0; i < 2000; i++) x += i * 0.5;
    (void)x;
}

/* fia_pool_run_ahead: each thread's tasks in the order it ran them (seq), and the next task
 * each one was told (-1: none). */
typedef struct pool_ahead_probe {
    int *count, *next, *tid;
    int64_t seq[4][64];
    int nseq[4];
} pool_ahead_probe;

static void pool_ahead_task(void *arg, int64_t task, int64_t next, int32_t tid) {
    pool_ahead_probe *p = arg;
    __atomic_fetch_add(&p->count[task], 1, __ATOMIC_RELAXED);
    p->next[task] = (int)next;
    p->tid[task] = tid;
    p->seq[tid][p->nseq[tid]++] = task;
    volatile double x = 0;
    for (int i = 0; i < 2000; i++) x += i * 0.5;
    (void)x;
}

/* Every task runs once; a task told its next one is followed by that task on the same thread;
 * one thread is told the next of every task before the last two. */
static void test_pool_ahead(void) {
    enum { MAXT = 64 };
    int count[MAXT], next[MAXT], tid[MAXT];
    for (int32_t threads = 1; threads <= 4; threads++) {
        fia_pool *pool = NULL;
        tu_check(fia_pool_create(threads, &pool) == FIA_STATUS_SUCCESS, "pool_create %d", threads);
        if (pool == NULL) continue;
        int bad = 0, told = 0, unknown = 0;
        for (int rep = 0; rep < 50; rep++) {
            const int64_t n = 1 + (rep * 7) % (MAXT - 1);
            pool_ahead_probe p = {count, next, tid, {{0}}, {0}};
            memset(count, 0, sizeof count);
            fia_pool_run_ahead(pool, n, pool_ahead_task, &p);
            for (int64_t t = 0; t < MAXT; t++)
                if (count[t] != (t < n) || (t < n && (tid[t] < 0 || tid[t] >= threads))) bad++;
            for (int32_t th = 0; th < threads; th++)
                for (int i = 0; i < p.nseq[th]; i++) {
                    const int64_t t = p.seq[th][i];
                    if (next[t] < 0) {
                        /* one thread: every task before the tail (with more, the other
                         * threads may have taken all the rest meanwhile) */
                        if (threads == 1 && t < n - 2) unknown++;
                        continue;
                    }
                    told++;
                    if (i + 1 >= p.nseq[th] || p.seq[th][i + 1] != next[t]) bad++;
                }
        }
        tu_check(bad == 0, "pool of %d, run_ahead: %d tasks not run once or not next", threads, bad);
        tu_check(unknown == 0, "pool of %d, run_ahead: %d tasks before the tail not told their next",
                 threads, unknown);
        tu_check(threads > 1 || told > 0, "pool of %d, run_ahead: no task told its next", threads);
        fia_pool_destroy(pool);
    }
}

static void test_pool(void) {
    enum { MAXT = 64 };
    int count[MAXT], cpu[MAXT], tid[MAXT];
    pool_probe p = {count, cpu, tid};
    cpu_set_t before, after;
    CPU_ZERO(&before);
    tu_check(sched_getaffinity(0, sizeof before, &before) == 0, "sched_getaffinity");
    for (int32_t threads = 1; threads <= 4; threads++) {
        fia_pool *pool = NULL;
        tu_check(fia_pool_create(threads, &pool) == FIA_STATUS_SUCCESS, "pool_create %d", threads);
        if (pool == NULL) continue;
        tu_check(fia_pool_size(pool) == threads, "pool size %d", threads);
        int bad = 0;
        for (int rep = 0; rep < 50; rep++) {
            const int64_t n = 1 + (rep * 7) % (MAXT - 1);
            memset(count, 0, sizeof count);
            fia_pool_run(pool, n, pool_task, &p);
            for (int64_t t = 0; t < MAXT; t++)
                if (count[t] != (t < n) || (t < n && (tid[t] < 0 || tid[t] >= threads))) bad++;
        }
        tu_check(bad == 0, "pool of %d: %d tasks not run exactly once", threads, bad);
        fia_pool_destroy(pool);
    }
    CPU_ZERO(&after);
    sched_getaffinity(0, sizeof after, &after);
    tu_check(CPU_EQUAL(&before, &after), "the pool changed the caller's affinity mask");

    /* A pinned pool: the caller moved onto each allowed CPU in turn; no worker runs there. */
    const int ncpu = CPU_COUNT(&before);
    if (ncpu < 2 || ncpu > 8) return;
    const char *env = getenv("FIA_PIN_THREADS");
    if (env && !strcmp(env, "0")) return;
    fia_pool *pool = NULL;
    tu_check(fia_pool_create(ncpu, &pool) == FIA_STATUS_SUCCESS, "pool_create %d", ncpu);
    if (pool == NULL) return;
    int clashes = 0, worker_tasks = 0;
    for (int round = 0; round < 3; round++) {
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (!CPU_ISSET(c, &before)) continue;
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            if (sched_setaffinity(0, sizeof one, &one) != 0) continue;
            for (int rep = 0; rep < 20; rep++) {
                memset(count, 0, sizeof count);
                fia_pool_run(pool, MAXT, pool_task, &p);
                for (int t = 0; t < MAXT; t++) {
                    if (tid[t] == 0) continue;
                    worker_tasks++;
                    if (cpu[t] == c) clashes++;
                }
            }
        }
    }
    sched_setaffinity(0, sizeof before, &before);
    fia_pool_destroy(pool);
    tu_check(clashes == 0, "pinned pool: %d of %d worker tasks ran on the caller's CPU", clashes,
             worker_tasks);
    CPU_ZERO(&after);
    sched_getaffinity(0, sizeof after, &after);
    tu_check(CPU_EQUAL(&before, &after), "the caller's affinity mask was not restored");
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_sched");
    tu_rng r = tu_rng_make(seed);
    test_worklist(&r);
    test_splitkv(&r);
    test_kvcache(&r);
    test_tensor_spec();
    test_tensor_spec_rules();
    test_pool_ahead();
    test_worklist_chunks();
    test_pool();
    return tu_summary();
}
