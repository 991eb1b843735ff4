/*
 * test_rope.c - rotary_mul (half, interleave) and interleave_rope against the double-precision
 * oracle (ref_chain.c) on every ISA: random seeded shapes in the BNSD / BSND / TND forms, cos /
 * sin broadcast over size-1 dims and through zero strides (expanded views), padded strides, D
 * from 2 to 894 (tails of every vector width), T = 1, in place, determinism across thread
 * counts, and the errors (nothing written).
 */
#include "chain_util.h"
#include "ref_chain.h"

typedef struct rcase {
    int mode; /* 0 half, 1 interleave, 2 interleave_rope */
    fia_dtype dt;
    int32_t nd;
    int64_t shape[4];
    int64_t cshape[4]; /* cos / sin shape (1s broadcast) */
    int expand;        /* cos built as a zero-stride view of a smaller buffer on its 1-dims */
    int pad;
} rcase;

static const char *mode_name(int m) { return m == 0 ? "half" : m == 1 ? "interleave" : "interleave_rope"; }

static fia_status call(fia_context *ctx, int mode, const fia_rotary_mul_tensors *t) {
    if (mode == 2) {
        fia_interleave_rope_params p;
        fia_interleave_rope_params_init(&p);
        return fia_interleave_rope(ctx, t, &p);
    }
    fia_rotary_mul_params p;
    fia_rotary_mul_params_init(&p);
    p.rotary_mode = mode ? FIA_ROTARY_MODE_INTERLEAVE : FIA_ROTARY_MODE_HALF;
    return fia_rotary_mul(ctx, t, &p);
}

static void run_case(const rcase *c, tu_rng *rng) {
    char desc[200];
    snprintf(desc, sizeof desc, "%s %s x [%lld,%lld,%lld,%lld] cos [%lld,%lld,%lld,%lld] nd %d%s%s",
             mode_name(c->mode), fia_dtype_name(c->dt), (long long)c->shape[0], (long long)c->shape[1],
             (long long)c->shape[2], (long long)c->shape[3], (long long)c->cshape[0],
             (long long)c->cshape[1], (long long)c->cshape[2], (long long)c->cshape[3], c->nd,
             c->expand ? " expanded" : "", c->pad ? " padded" : "");
    const int64_t pad[4] = {c->pad ? 3 : 0, c->pad ? 1 : 0, c->pad ? 2 : 0, 0};
    tu_tensor x, co, si, y, y1;
    tu_alloc(&x, c->dt, c->nd, c->shape, pad, 0);
    tu_alloc(&y, c->dt, c->nd, c->shape, pad, 0xAB);
    tu_alloc(&y1, c->dt, c->nd, c->shape, pad, 0xAB);
    tu_alloc(&co, c->dt, c->nd, c->cshape, NULL, 0);
    tu_alloc(&si, c->dt, c->nd, c->cshape, NULL, 0);
    tu_fill_uniform(&x.t, rng, -2, 2);
    tu_fill_uniform(&co.t, rng, -1, 1);
    tu_fill_uniform(&si.t, rng, -1, 1);
    fia_tensor cv = co.t, sv = si.t;
    if (c->expand) /* the torch .expand() form: size-1 dims become x's size with stride 0 */
        for (int32_t d = 0; d < c->nd - 1; d++)
            if (cv.shape[d] == 1) cv.shape[d] = sv.shape[d] = c->shape[d], cv.strides[d] = sv.strides[d] = 0;
    const int64_t n = tu_numel(&x.t);
    double *want = malloc((size_t)n * 8);
    fia_ref_rope(&x.t, &co.t, &si.t, c->mode, want);
    for (int k = 0; k <= g_nctx; k++) {
        fia_context *ctx = k < g_nctx ? g_ctx[k] : g_ctx1;
        tu_tensor *o = k < g_nctx ? &y : &y1;
        fia_rotary_mul_tensors t = {&x.t, &cv, &sv, &o->t};
        const fia_status st = call(ctx, c->mode, &t);
        const char *isa = k < g_nctx ? fia_isa_name(g_isa[k]) : "1 thread";
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, isa, fia_last_error())) continue;
        if (k == g_nctx) tu_check(tu_same_bits(&y.t, &y1.t), "%s: 1 thread differs", desc);
        else tu_check(cmp(&o->t, want, c->dt) == 0, "%s %s", desc, isa);
    }
    /* in place: y over x */
    fia_rotary_mul_tensors t = {&x.t, &cv, &sv, &x.t};
    tu_check(call(g_ctx[g_nctx - 1], c->mode, &t) == FIA_STATUS_SUCCESS && cmp(&x.t, want, c->dt) == 0,
             "%s: in place", desc);
    free(want);
    tu_free(&x), tu_free(&co), tu_free(&si), tu_free(&y), tu_free(&y1);
}

static void test_errors(void) {
    const int64_t sx[3] = {2, 3, 8}, sc[3] = {2, 1, 8}, sodd[3] = {2, 3, 7}, scb[3] = {2, 2, 8},
                  sbig[3] = {1, 1, 896}, sc4[3] = {2, 1, 4};
    tu_tensor x, c, s, y, xo, yo, cb, c16, xb, cbig, c4;
    tu_alloc(&x, FIA_DTYPE_BFLOAT16, 3, sx, NULL, 0);
    tu_alloc(&c, FIA_DTYPE_BFLOAT16, 3, sc, NULL, 0);
    tu_alloc(&s, FIA_DTYPE_BFLOAT16, 3, sc, NULL, 0);
    tu_alloc(&y, FIA_DTYPE_BFLOAT16, 3, sx, NULL, 0x5A);
    tu_alloc(&xo, FIA_DTYPE_BFLOAT16, 3, sodd, NULL, 0);
    tu_alloc(&yo, FIA_DTYPE_BFLOAT16, 3, sodd, NULL, 0x5A);
    tu_alloc(&cb, FIA_DTYPE_BFLOAT16, 3, scb, NULL, 0);
    tu_alloc(&c16, FIA_DTYPE_FLOAT16, 3, sc, NULL, 0);
    tu_alloc(&xb, FIA_DTYPE_BFLOAT16, 3, sbig, NULL, 0);
    tu_alloc(&cbig, FIA_DTYPE_BFLOAT16, 3, sbig, NULL, 0);
    tu_alloc(&c4, FIA_DTYPE_BFLOAT16, 3, sc4, NULL, 0);
    struct { const fia_tensor *x, *c; fia_tensor *y; const char *word; } bad[] = {
        {&xo.t, &c.t, &yo.t, "D"},     {&x.t, &cb.t, &y.t, "cos dim 1"}, {&x.t, &c16.t, &y.t, "cos dtype"},
        {&xb.t, &cbig.t, &xb.t, "D"},  {&x.t, &c4.t, &y.t, "cos dim 2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fia_rotary_mul_tensors t = {bad[i].x, bad[i].c, &s.t, bad[i].y};
        const fia_status st = call(g_ctx[0], 0, &t);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), bad[i].word),
                 "rope error %zu: %s '%s'", i, fia_status_string(st), fia_last_error());
    }
    tu_check(all_bytes(y.buf, y.bytes, 0x5A) && all_bytes(yo.buf, yo.bytes, 0x5A), "rope errors wrote y");
    fia_rotary_mul_params p;
    fia_rotary_mul_params_init(&p);
    p.rotary_mode = (fia_rotary_mode)7;
    fia_rotary_mul_tensors t = {&x.t, &c.t, &s.t, &y.t};
    tu_check(fia_rotary_mul(g_ctx[0], &t, &p) == FIA_STATUS_INVALID_ARGUMENT &&
             strstr(fia_last_error(), "rotary_mode"), "bad rotary_mode");
    tu_free(&x), tu_free(&c), tu_free(&s), tu_free(&y), tu_free(&xo), tu_free(&yo), tu_free(&cb);
    tu_free(&c16), tu_free(&xb), tu_free(&cbig), tu_free(&c4);
}

/* rope_row of every chain variant against the scalar kernel (the reference), bit for bit
 * (chain_kernels.h: the same operations in the same order on every ISA), in the three modes
 * and every dtype, d from 2 to 894 (every tail); the streaming form equals the plain one. */
static void test_kernel_variants(tu_rng *rng) {
    const tu_kernel_variant *cv;
    const int nv = chain_variants(&cv);
    const fia_chain_kernels *ref = &cv[0].set.chain;
    enum { D = 896 };
    static _Alignas(64) float x[D], c[D], sn[D], y0[D], y1[D], y2[D];
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    for (int v = 1; v < nv; v++) {
        const fia_chain_kernels *k = &cv[v].set.chain;
        long bad = 0;
        for (int it = 0; it < 60; it++) {
            const fia_dtype dt = dts[it % 3];
            const fia_rope_mode m = (fia_rope_mode)((it / 3) % 3);
            const int64_t d = it < 9 ? 64 : 2 * tu_int(rng, 1, 447);
            cu_fill(x, dt, d, rng, -3, 3), cu_fill(c, dt, d, rng, -1, 1), cu_fill(sn, dt, d, rng, -1, 1);
            ref->rope_row(x, dt, c, sn, dt, d, m, y0, dt);
            k->rope_row(x, dt, c, sn, dt, d, m, y1, dt);
            k->rope_row_nt(x, dt, c, sn, dt, d, m, y2, dt);
            k->stream_fence();
            tu_check(!memcmp(y1, y2, (size_t)d * fia_dtype_size(dt)), "%s rope_row_nt == rope_row, d %lld mode %d",
                     k->name, (long long)d, (int)m);
            for (int64_t i = 0; i < d; i++) {
                const double want = cu_ld(y0, dt, i);
                bad += cu_ld(y1, dt, i) != want; /* bitwise: one order of operations on every ISA */
            }
        }
        tu_check(bad == 0, "%s rope_row vs scalar: %ld mismatches", k->name, bad);
    }
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261203, "test_rope");
    tu_rng rng = tu_rng_make(seed);
    open_contexts();
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    /* edge cases: the MLA k_rope (T = 1, 64), DeepSeek indexer heads (64 x 128), D = 2 and 894 */
    const rcase edge[] = {
        {2, FIA_DTYPE_BFLOAT16, 4, {1, 1, 1, 64}, {1, 1, 1, 64}, 0, 0},
        {2, FIA_DTYPE_FLOAT16, 4, {4, 32, 3, 64}, {4, 1, 3, 64}, 0, 1},
        {0, FIA_DTYPE_BFLOAT16, 3, {5, 64, 128, 1}, {5, 1, 128, 1}, 1, 0},
        {1, FIA_DTYPE_BFLOAT16, 3, {5, 8, 128, 1}, {5, 1, 128, 1}, 0, 1},
        {0, FIA_DTYPE_FLOAT32, 2, {3, 2, 1, 1}, {1, 2, 1, 1}, 0, 0},
        {1, FIA_DTYPE_FLOAT16, 2, {2, 894, 1, 1}, {2, 894, 1, 1}, 0, 0},
        {0, FIA_DTYPE_BFLOAT16, 4, {2, 3, 5, 894}, {1, 1, 5, 894}, 1, 1},
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) run_case(&edge[i], &rng);
    for (int it = 0; it < 80; it++) {
        rcase c;
        memset(&c, 0, sizeof c);
        c.mode = (int)tu_int(&rng, 0, 2);
        c.dt = dts[tu_int(&rng, 0, 2)];
        c.nd = (int32_t)tu_int(&rng, 2, 4);
        for (int d = 0; d < 4; d++) c.shape[d] = c.cshape[d] = 1;
        for (int d = 0; d < c.nd - 1; d++) {
            c.shape[d] = tu_int(&rng, 1, 5);
            c.cshape[d] = tu_chance(&rng, 0.5) ? 1 : c.shape[d];
        }
        c.shape[c.nd - 1] = c.cshape[c.nd - 1] = 2 * tu_int(&rng, 1, tu_chance(&rng, 0.7) ? 70 : 447);
        c.expand = (int)tu_int(&rng, 0, 1);
        c.pad = (int)tu_int(&rng, 0, 1);
        run_case(&c, &rng);
    }
    test_kernel_variants(&rng);
    test_errors();
    close_contexts();
    return tu_summary();
}
