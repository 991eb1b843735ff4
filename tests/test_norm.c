/*
 * test_norm.c - rms_norm and add_rms_norm against the double-precision oracle (ref_chain.c) on
 * every ISA the CPU has: random seeded shapes (odd hidden sizes, T = 1, gamma over 1 or 2 dims,
 * fp32 gamma with fp16 / bf16 x, padded leading strides, broadcast inputs), in-place residual
 * updates, bitwise determinism across thread counts, and the errors (nothing written).
 * Tolerance (ref/tolerance.h): y atol 1e-3 + rtol 5e-3 of the oracle for fp16 / bf16 (1e-5 + 1e-5
 * for fp32); rstd 1e-3 + 5e-3; add_rms_norm's x 1e-5 + 1e-5.
 */
#include "chain_util.h"
#include "ref_chain.h"

typedef struct ncase {
    int add;
    fia_dtype dt, gdt;
    int32_t nd, g;        /* x dims, gamma dims */
    int64_t shape[4];
    int pad;              /* padded leading strides */
    int with_rstd, with_x;
} ncase;

static void describe(const ncase *c, char *buf, size_t len) {
    snprintf(buf, len, "%s %s gamma %s shape [%lld,%lld,%lld,%lld] nd %d g %d pad %d",
             c->add ? "add_rms_norm" : "rms_norm", fia_dtype_name(c->dt), fia_dtype_name(c->gdt),
             (long long)c->shape[0], (long long)c->shape[1], (long long)c->shape[2],
             (long long)c->shape[3], c->nd, c->g, c->pad);
}

static void run_case(const ncase *c, tu_rng *rng) {
    char desc[200];
    describe(c, desc, sizeof desc);
    tu_tensor x1, x2, gm, y, rs, xs, y1, rs1, xs1;
    int64_t pad[4] = {3, 5, 7, 0};
    const int64_t *pp = c->pad ? pad : NULL;
    /* pads only on leading dims: the trailing g dims stay compact */
    int64_t padl[4] = {0, 0, 0, 0};
    for (int32_t d = 0; d + 1 < c->nd - c->g + 1 && d < 3; d++) padl[d] = pp ? pad[d] : 0;
    tu_alloc(&x1, c->dt, c->nd, c->shape, padl, 0);
    tu_alloc(&x2, c->dt, c->nd, c->shape, padl, 0);
    tu_alloc(&gm, c->gdt, c->g, c->shape + c->nd - c->g, NULL, 0);
    tu_alloc(&y, c->dt, c->nd, c->shape, padl, 0xAB);
    tu_alloc(&y1, c->dt, c->nd, c->shape, padl, 0xAB);
    tu_alloc(&xs, c->dt, c->nd, c->shape, padl, 0xAB);
    tu_alloc(&xs1, c->dt, c->nd, c->shape, padl, 0xAB);
    int64_t rshape[4];
    for (int32_t d = 0; d < c->nd; d++) rshape[d] = d < c->nd - c->g ? c->shape[d] : 1;
    tu_alloc(&rs, FIA_DTYPE_FLOAT32, c->nd, rshape, NULL, 0xAB);
    tu_alloc(&rs1, FIA_DTYPE_FLOAT32, c->nd, rshape, NULL, 0xAB);
    tu_fill_uniform(&x1.t, rng, -3, 3);
    tu_fill_uniform(&x2.t, rng, -3, 3);
    tu_fill_uniform(&gm.t, rng, 0.5, 1.5);
    const int64_t n = tu_numel(&x1.t), rows = tu_numel(&rs.t);
    double *wy = malloc((size_t)n * 8), *wr = malloc((size_t)rows * 8), *wx = malloc((size_t)n * 8);
    fia_ref_rms_norm(&x1.t, c->add ? &x2.t : NULL, &gm.t, 1e-6, wy, wr, wx);
    fia_rms_norm_params prm;
    fia_rms_norm_params_init(&prm);
    for (int k = 0; k <= g_nctx; k++) {
        fia_context *ctx = k < g_nctx ? g_ctx[k] : g_ctx1;
        tu_tensor *oy = k < g_nctx ? &y : &y1, *ors = k < g_nctx ? &rs : &rs1, *oxs = k < g_nctx ? &xs : &xs1;
        fia_status st;
        if (c->add) {
            fia_add_rms_norm_tensors t = {&x1.t, &x2.t, &gm.t, &oy->t, c->with_rstd ? &ors->t : NULL,
                                          c->with_x ? &oxs->t : NULL};
            st = fia_add_rms_norm(ctx, &t, &prm);
        } else {
            fia_rms_norm_tensors t = {&x1.t, &gm.t, &oy->t, c->with_rstd ? &ors->t : NULL};
            st = fia_rms_norm(ctx, &t, &prm);
        }
        const char *isa = k < g_nctx ? fia_isa_name(g_isa[k]) : "1 thread";
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, isa, fia_last_error())) continue;
        if (k == g_nctx) {
            tu_check(tu_same_bits(&y.t, &y1.t), "%s: 1 thread differs from 3 threads", desc);
            continue;
        }
        tu_check(cmp(&oy->t, wy, c->dt) == 0, "%s %s: y", desc, isa);
        const char *op = c->add ? "add_rms_norm" : "rms_norm";
        if (c->with_rstd)
            tu_check(cmp_row(&ors->t, wr, fia_ref_tolerance_of(op, "rstd", FIA_DTYPE_FLOAT32)) == 0, "%s %s: rstd", desc, isa);
        if (c->add && c->with_x)
            tu_check(cmp_row(&oxs->t, wx, fia_ref_tolerance_of(op, "x", c->dt)) == 0, "%s %s: x", desc, isa);
    }
    free(wy), free(wr), free(wx);
    tu_free(&x1), tu_free(&x2), tu_free(&gm), tu_free(&y), tu_free(&rs), tu_free(&xs);
    tu_free(&y1), tu_free(&rs1), tu_free(&xs1);
}

/* In place: add_rms_norm writing x over x1 and y over x2 (the residual stream update). */
static void test_in_place(tu_rng *rng) {
    const int64_t shape[2] = {5, 7168};
    for (int k = 0; k < g_nctx; k++) {
        tu_tensor a, b, g, a0, b0;
        tu_alloc(&a, FIA_DTYPE_BFLOAT16, 2, shape, NULL, 0);
        tu_alloc(&b, FIA_DTYPE_BFLOAT16, 2, shape, NULL, 0);
        tu_alloc(&a0, FIA_DTYPE_BFLOAT16, 2, shape, NULL, 0);
        tu_alloc(&b0, FIA_DTYPE_BFLOAT16, 2, shape, NULL, 0);
        tu_alloc(&g, FIA_DTYPE_BFLOAT16, 1, shape + 1, NULL, 0);
        tu_fill_uniform(&a.t, rng, -2, 2);
        tu_fill_uniform(&b.t, rng, -2, 2);
        tu_fill_uniform(&g.t, rng, -1, 1);
        memcpy(a0.buf, a.buf, a.bytes);
        memcpy(b0.buf, b.buf, b.bytes);
        const int64_t n = tu_numel(&a.t);
        double *wy = malloc((size_t)n * 8), *wx = malloc((size_t)n * 8);
        fia_ref_rms_norm(&a0.t, &b0.t, &g.t, 1e-6, wy, NULL, wx);
        fia_rms_norm_params prm;
        fia_rms_norm_params_init(&prm);
        fia_add_rms_norm_tensors t = {&a.t, &b.t, &g.t, &b.t, NULL, &a.t};
        tu_check(fia_add_rms_norm(g_ctx[k], &t, &prm) == FIA_STATUS_SUCCESS, "in place: %s", fia_last_error());
        tu_check(cmp(&b.t, wy, FIA_DTYPE_BFLOAT16) == 0, "in place %s: y over x2", fia_isa_name(g_isa[k]));
        tu_check(cmp_row(&a.t, wx, fia_ref_tolerance_of("add_rms_norm", "x", FIA_DTYPE_BFLOAT16)) == 0,
                 "in place %s: x over x1", fia_isa_name(g_isa[k]));
        free(wy), free(wx);
        tu_free(&a), tu_free(&b), tu_free(&g), tu_free(&a0), tu_free(&b0);
    }
}

/* Bad input: an error naming the tensor, nothing written. */
static void test_errors(void) {
    const int64_t s2[2] = {4, 16}, sg[1] = {16}, sg2[1] = {15}, sr[2] = {4, 1}, sr2[2] = {4, 2};
    tu_tensor x, g, gbad, y, r, rbad, yi;
    tu_alloc(&x, FIA_DTYPE_FLOAT16, 2, s2, NULL, 0);
    tu_alloc(&g, FIA_DTYPE_FLOAT16, 1, sg, NULL, 0);
    tu_alloc(&gbad, FIA_DTYPE_FLOAT16, 1, sg2, NULL, 0);
    tu_alloc(&y, FIA_DTYPE_FLOAT16, 2, s2, NULL, 0x5A);
    tu_alloc(&yi, FIA_DTYPE_INT8, 2, s2, NULL, 0x5A);
    tu_alloc(&r, FIA_DTYPE_FLOAT32, 2, sr, NULL, 0x5A);
    tu_alloc(&rbad, FIA_DTYPE_FLOAT32, 2, sr2, NULL, 0x5A);
    fia_rms_norm_params prm;
    fia_rms_norm_params_init(&prm);
    struct { const fia_tensor *g; fia_tensor *y, *r; double eps; const char *word; } bad[] = {
        {&gbad.t, &y.t, &r.t, 1e-6, "gamma"},
        {&g.t, &yi.t, &r.t, 1e-6, "y"},
        {&g.t, &y.t, &rbad.t, 1e-6, "rstd"},
        {&g.t, &y.t, &r.t, -1.0, "epsilon"},
        {&g.t, &y.t, &r.t, NAN, "epsilon"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prm.epsilon = bad[i].eps;
        fia_rms_norm_tensors t = {&x.t, bad[i].g, bad[i].y, bad[i].r};
        const fia_status st = fia_rms_norm(g_ctx[0], &t, &prm);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), bad[i].word),
                 "error case %zu: status %s, message '%s'", i, fia_status_string(st), fia_last_error());
        const unsigned char *py = y.buf, *pr = r.buf;
        int untouched = 1;
        for (size_t j = 0; j < y.bytes; j++) untouched &= py[j] == 0x5A;
        for (size_t j = 0; j < r.bytes; j++) untouched &= pr[j] == 0x5A;
        tu_check(untouched, "error case %zu wrote an output", i);
    }
    prm.epsilon = 1e-6;
    fia_rms_norm_tensors t0 = {&x.t, &g.t, &y.t, &r.t};
    fia_rms_norm_params old = prm;
    old.struct_size = 0;
    tu_check(fia_rms_norm(g_ctx[0], &t0, &old) == FIA_STATUS_INVALID_ARGUMENT, "uninitialised params");
    fia_add_rms_norm_tensors ta = {&x.t, NULL, &g.t, &y.t, NULL, NULL};
    tu_check(fia_add_rms_norm(g_ctx[0], &ta, &prm) == FIA_STATUS_INVALID_ARGUMENT &&
             strstr(fia_last_error(), "x2"), "add without x2");
    tu_free(&x), tu_free(&g), tu_free(&gbad), tu_free(&y), tu_free(&yi), tu_free(&r), tu_free(&rbad);
}

/* rms_norm_row of every chain variant against the scalar kernel (the reference), bit for bit
 * (chain_kernels.h: every variant computes the same operations in the same order), with and
 * without the residual add, gamma in x's dtype or fp32, odd n for every tail; the streaming
 * form equals the plain one bitwise. */
static void test_kernel_variants(tu_rng *rng) {
    const tu_kernel_variant *cv;
    const int nv = chain_variants(&cv);
    const fia_chain_kernels *ref = &cv[0].set.chain;
    enum { N = 2100 };
    static _Alignas(64) float x1[N], x2[N], g[N], y0[N], s0[N], y1[N], s1[N], y2[N], s2[N];
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    for (int v = 1; v < nv; v++) {
        const fia_chain_kernels *k = &cv[v].set.chain;
        long bad = 0;
        for (int it = 0; it < 40; it++) {
            const fia_dtype dt = dts[it % 3], gdt = it % 4 == 3 ? FIA_DTYPE_FLOAT32 : dt;
            const int64_t n = it < 3 ? 7168 / 4 + it : tu_int(rng, 1, N);
            const int add = it % 2;
            cu_fill(x1, dt, n, rng, -3, 3), cu_fill(x2, dt, n, rng, -3, 3);
            cu_fill(g, gdt, n, rng, 0.5, 1.5);
            const float alpha = it % 5 == 0 ? 0.5f : 1.0f;
            const float r0 = ref->rms_norm_row(x1, add ? x2 : NULL, dt, g, gdt, n, 1e-6f, alpha, y0, dt, add ? s0 : NULL);
            const float r1 = k->rms_norm_row(x1, add ? x2 : NULL, dt, g, gdt, n, 1e-6f, alpha, y1, dt, add ? s1 : NULL);
            const float r2 = k->rms_norm_row_nt(x1, add ? x2 : NULL, dt, g, gdt, n, 1e-6f, alpha, y2, dt, add ? s2 : NULL);
            k->stream_fence();
            const size_t bytes = (size_t)n * fia_dtype_size(dt);
            tu_check(r1 == r2 && !memcmp(y1, y2, bytes) && (!add || !memcmp(s1, s2, bytes)),
                     "%s rms_norm_row_nt == rms_norm_row, n %lld", k->name, (long long)n);
            bad += r1 != r0;
            for (int64_t i = 0; i < n; i++) {
                const double want = cu_ld(y0, dt, i);
                bad += cu_ld(y1, dt, i) != want; /* bitwise: one order of operations on every ISA */
                if (add) bad += cu_ld(s1, dt, i) != cu_ld(s0, dt, i); /* one rounding of an exact sum */
            }
        }
        tu_check(bad == 0, "%s rms_norm_row vs scalar: %ld mismatches", k->name, bad);
    }
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_norm");
    tu_rng rng = tu_rng_make(seed);
    open_contexts();
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    /* edge shapes: T = 1, odd hidden sizes, DeepSeek 7168, a 2-dim gamma */
    const int64_t edge[][4] = {{1, 7168, 1, 1}, {3, 1, 1, 1}, {2, 13, 1, 1}, {1, 1536, 1, 1},
                               {4, 3, 17, 1}, {2, 2, 3, 33}};
    const int32_t edge_nd[] = {2, 2, 2, 2, 3, 4}, edge_g[] = {1, 1, 1, 1, 2, 1};
    for (int add = 0; add < 2; add++)
        for (size_t e = 0; e < sizeof edge_nd / sizeof edge_nd[0]; e++)
            for (int di = 0; di < 3; di++) {
                ncase c = {add, dts[di], dts[di], edge_nd[e], edge_g[e], {1, 1, 1, 1}, (int)(e % 2), 1, 1};
                memcpy(c.shape, edge[e], sizeof c.shape);
                run_case(&c, &rng);
            }
    const long before = tu_passed;
    for (int it = 0; it < 60; it++) {
        ncase c;
        memset(&c, 0, sizeof c);
        c.add = (int)tu_int(&rng, 0, 1);
        c.dt = dts[tu_int(&rng, 0, 2)];
        c.gdt = tu_chance(&rng, 0.3) ? FIA_DTYPE_FLOAT32 : c.dt;
        c.nd = (int32_t)tu_int(&rng, 1, 4);
        c.g = (int32_t)tu_int(&rng, 1, c.nd < 2 ? 1 : 2);
        for (int d = 0; d < 4; d++) c.shape[d] = 1;
        for (int d = 0; d < c.nd; d++) c.shape[d] = tu_int(&rng, 1, d == c.nd - 1 ? 700 : 6);
        c.pad = (int)tu_int(&rng, 0, 1);
        c.with_rstd = tu_chance(&rng, 0.8);
        c.with_x = tu_chance(&rng, 0.8);
        run_case(&c, &rng);
    }
    (void)before;
    test_in_place(&rng);
    test_kernel_variants(&rng);
    test_errors();
    close_contexts();
    return tu_summary();
}
