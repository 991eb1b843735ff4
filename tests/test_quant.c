/*
 * test_quant.c - dynamic_quant against the double-precision oracle (ref_chain.c) on every ISA:
 * pertoken / pertensor / perchannel, with and without smooth_scales, MoE group_index, custom
 * dst_type_max, odd hidden sizes, T = 1, padded strides; exact rounding ties (half to even),
 * all-zero rows, determinism across thread counts, and the errors (nothing written), including
 * a bad group_index detected at execute time.
 * int8 outputs must equal the oracle's rounded quotient exactly, except +-1 where the quotient is
 * within 2e-3 of a tie (fp32 vs double); scales within rtol 1e-5 (atol 1e-30): the rows of
 * ref/tolerance.h.
 */
#include "chain_util.h"
#include "kernels/chain_kernels.h"
#include "ref_chain.h"

typedef struct qcase {
    int mode;
    fia_dtype dt, sdt;
    int32_t nd;
    int64_t shape[4];
    int smooth, groups; /* groups > 0: group_index with that many groups */
    double dmax;
    int pad;
    int zero_rows;      /* some rows all zero */
} qcase;

static int64_t scale_count(const qcase *c) {
    int64_t n = 1;
    for (int d = 0; d < c->nd; d++) n *= c->shape[d];
    const int64_t H = c->shape[c->nd - 1], R = c->nd >= 2 ? c->shape[c->nd - 2] : 1;
    return c->mode == 0 ? n / H : c->mode == 1 ? 1 : n / R;
}

static int check_q(const fia_tensor *y, const double *q, const double *quot, int64_t *ties) {
    const int64_t n = tu_numel(y);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const int8_t g = ((const int8_t *)y->data)[tu_offset(y, i)];
        double w = q[i] < -128 ? -128 : q[i] > 127 ? 127 : q[i];
        int tie;
        if (fia_ref_tolerance_pass(fia_ref_tolerance_of("dynamic_quant", "y", FIA_DTYPE_INT8), g, w, quot[i], &tie)) {
            *ties += tie;
            continue;
        }
        if (bad++ < 3) fprintf(stderr, "  y[%lld] = %d, oracle %g (quotient %.6f)\n", (long long)i, g, w, quot[i]);
    }
    return bad == 0;
}

static int check_scale(const fia_tensor *s, const double *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float g;
        memcpy(&g, (const char *)s->data + tu_offset(s, i) * 4, 4);
        if (!fia_ref_tolerance_pass(fia_ref_tolerance_of("dynamic_quant", "scale", FIA_DTYPE_FLOAT32), g, want[i], 0.0, NULL)) {
            fprintf(stderr, "  scale[%lld] = %.8g, oracle %.8g\n", (long long)i, g, want[i]);
            return 0;
        }
    }
    return 1;
}

static void run_case(const qcase *c, tu_rng *rng) {
    char desc[220];
    snprintf(desc, sizeof desc, "mode %d %s smooth %d(%s) groups %d dmax %g shape [%lld,%lld,%lld,%lld] nd %d pad %d",
             c->mode, fia_dtype_name(c->dt), c->smooth, fia_dtype_name(c->sdt), c->groups, c->dmax,
             (long long)c->shape[0], (long long)c->shape[1], (long long)c->shape[2],
             (long long)c->shape[3], c->nd, c->pad);
    const int64_t H = c->shape[c->nd - 1], R = c->nd >= 2 ? c->shape[c->nd - 2] : 1;
    const int64_t pad[4] = {c->pad ? 2 : 0, c->pad ? 3 : 0, c->pad ? 1 : 0, 0};
    tu_tensor x, y, y1, sc, sc1, sm, gi;
    memset(&sm, 0, sizeof sm), memset(&gi, 0, sizeof gi);
    tu_alloc(&x, c->dt, c->nd, c->shape, pad, 0);
    tu_alloc(&y, FIA_DTYPE_INT8, c->nd, c->shape, pad, 0xAB);
    tu_alloc(&y1, FIA_DTYPE_INT8, c->nd, c->shape, pad, 0xAB);
    tu_fill_uniform(&x.t, rng, -4, 4);
    const int64_t n = tu_numel(&x.t), rows = n / H;
    if (c->zero_rows)
        for (int64_t r = 0; r < rows; r += 3)
            for (int64_t j = 0; j < H; j++) tu_store(&x.t, r * H + j, 0.0);
    int64_t sshape[4];
    int32_t snd = 0;
    if (c->mode == 1) sshape[snd++] = 1;
    else
        for (int d = 0; d < c->nd; d++)
            if (c->mode == 0 ? d != c->nd - 1 : d != c->nd - 2) sshape[snd++] = c->shape[d];
    tu_alloc(&sc, FIA_DTYPE_FLOAT32, snd, sshape, NULL, 0xAB);
    tu_alloc(&sc1, FIA_DTYPE_FLOAT32, snd, sshape, NULL, 0xAB);
    if (c->smooth) {
        if (c->groups) {
            const int64_t ss[2] = {c->groups, H}, gs[1] = {c->groups};
            tu_alloc(&sm, c->sdt, 2, ss, NULL, 0);
            tu_alloc(&gi, FIA_DTYPE_INT32, 1, gs, NULL, 0);
            int64_t b = 0;
            for (int e = 0; e < c->groups; e++) {
                b = e == c->groups - 1 ? rows : tu_int(rng, b, rows);
                tu_store(&gi.t, e, (double)b);
            }
        } else {
            const int64_t ss[1] = {c->mode == 2 ? R : H};
            tu_alloc(&sm, c->sdt, 1, ss, NULL, 0);
        }
        tu_fill_uniform(&sm.t, rng, 0.25, 2.0);
    }
    double *q = malloc((size_t)n * 8), *quot = malloc((size_t)n * 8);
    const int64_t ns = scale_count(c);
    double *ws = malloc((size_t)(ns > 0 ? ns : 1) * 8);
    fia_ref_dynamic_quant(&x.t, c->smooth ? &sm.t : NULL, c->groups ? &gi.t : NULL, c->mode,
                          c->dmax > 0 ? c->dmax : 127.0, q, quot, ws);
    fia_dynamic_quant_params prm;
    fia_dynamic_quant_params_init(&prm);
    prm.quant_mode = (fia_quant_mode)c->mode;
    prm.dst_type_max = c->dmax;
    int64_t ties = 0;
    for (int k = 0; k <= g_nctx; k++) {
        fia_context *ctx = k < g_nctx ? g_ctx[k] : g_ctx1;
        tu_tensor *oy = k < g_nctx ? &y : &y1, *os = k < g_nctx ? &sc : &sc1;
        fia_dynamic_quant_tensors t = {&x.t, c->smooth ? &sm.t : NULL, c->groups ? &gi.t : NULL,
                                       &oy->t, &os->t};
        const fia_status st = fia_dynamic_quant(ctx, &t, &prm);
        const char *isa = k < g_nctx ? fia_isa_name(g_isa[k]) : "1 thread";
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, isa, fia_last_error())) continue;
        if (k == g_nctx) {
            tu_check(tu_same_bits(&y.t, &y1.t) && tu_same_bits(&sc.t, &sc1.t), "%s: 1 thread differs", desc);
            continue;
        }
        tu_check(check_q(&oy->t, q, quot, &ties), "%s %s: y", desc, isa);
        tu_check(check_scale(&os->t, ws, ns), "%s %s: scale", desc, isa);
    }
    free(q), free(quot), free(ws);
    tu_free(&x), tu_free(&y), tu_free(&y1), tu_free(&sc), tu_free(&sc1);
    if (c->smooth) tu_free(&sm);
    if (c->groups) tu_free(&gi);
}

/* Exact ties: a row whose max is 127 has scale 1, so 2.5 -> 2, -3.5 -> -4, 0.5 -> 0, 1.5 -> 2. */
static void test_ties(void) {
    const double v[8] = {127, 2.5, -3.5, 0.5, 1.5, -0.5, 126.5, -2.5};
    const int8_t want[8] = {127, 2, -4, 0, 2, 0, 126, -2};
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    for (int di = 0; di < 3; di++)
        for (int64_t H = 8; H <= 40; H += 32) { /* 40: the ties land in vector lanes too */
            const int64_t shape[2] = {2, H}, ss[1] = {2};
            tu_tensor x, y, s;
            tu_alloc(&x, dts[di], 2, shape, NULL, 0);
            tu_alloc(&y, FIA_DTYPE_INT8, 2, shape, NULL, 0);
            tu_alloc(&s, FIA_DTYPE_FLOAT32, 1, ss, NULL, 0);
            for (int64_t i = 0; i < 2 * H; i++) tu_store(&x.t, i, v[i % 8]);
            for (int k = 0; k < g_nctx; k++) {
                fia_dynamic_quant_params prm;
                fia_dynamic_quant_params_init(&prm);
                fia_dynamic_quant_tensors t = {&x.t, NULL, NULL, &y.t, &s.t};
                tu_check(fia_dynamic_quant(g_ctx[k], &t, &prm) == FIA_STATUS_SUCCESS, "ties: %s", fia_last_error());
                int ok = 1;
                for (int64_t i = 0; i < 2 * H; i++) ok &= ((int8_t *)y.buf)[i] == want[i % 8];
                tu_check(ok, "ties %s H %lld %s: round half to even", fia_dtype_name(dts[di]), (long long)H,
                         fia_isa_name(g_isa[k]));
            }
            tu_free(&x), tu_free(&y), tu_free(&s);
        }
}

static void test_errors(void) {
    const int64_t sx[2] = {6, 16}, ss[1] = {6}, sbad[1] = {5}, ssm[2] = {2, 16}, sg[1] = {2};
    tu_tensor x, y, s, sb, sm, gi, y8;
    tu_alloc(&x, FIA_DTYPE_BFLOAT16, 2, sx, NULL, 0);
    tu_alloc(&y, FIA_DTYPE_INT8, 2, sx, NULL, 0x5A);
    tu_alloc(&y8, FIA_DTYPE_FLOAT16, 2, sx, NULL, 0x5A);
    tu_alloc(&s, FIA_DTYPE_FLOAT32, 1, ss, NULL, 0x5A);
    tu_alloc(&sb, FIA_DTYPE_FLOAT32, 1, sbad, NULL, 0x5A);
    tu_alloc(&sm, FIA_DTYPE_BFLOAT16, 2, ssm, NULL, 0);
    tu_alloc(&gi, FIA_DTYPE_INT32, 1, sg, NULL, 0);
    fia_dynamic_quant_params prm;
    fia_dynamic_quant_params_init(&prm);
    fia_dynamic_quant_tensors t = {&x.t, NULL, NULL, &sb.t, &s.t};
    t.y = &y8.t;
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "y dtype"), "y dtype");
    t.y = &y.t;
    t.scale = &sb.t;
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "scale dim 0"), "scale dim: %s", fia_last_error());
    t.scale = &s.t;
    prm.dst_type_max = 200;
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "dst_type_max"), "dst_type_max");
    prm.dst_type_max = 0;
    prm.dst_type = FIA_DTYPE_INT32;
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_UNSUPPORTED, "quint4x2 unsupported");
    prm.dst_type = FIA_DTYPE_INT8;
    t.group_index = &gi.t;
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "smooth_scales"), "group_index without smooth");
    t.smooth_scales = &sm.t;
    /* execute-time group_index errors: decreasing, not ending at the 6 rows */
    const int32_t bad[3][2] = {{4, 2}, {2, 5}, {-1, 6}};
    for (int i = 0; i < 3; i++) {
        memcpy(gi.buf, bad[i], 8);
        fia_plan *plan = NULL;
        size_t wsb = 0;
        tu_check(fia_dynamic_quant_plan(g_ctx[0], &t, &prm, &plan, &wsb) == FIA_STATUS_SUCCESS, "plan with group_index");
        const fia_status st = fia_plan_execute(plan, NULL, 0);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "group_index"),
                 "bad group_index %d: %s '%s'", i, fia_status_string(st), fia_last_error());
        fia_plan_destroy(plan);
    }
    tu_check(all_bytes(y.buf, y.bytes, 0x5A) && all_bytes(s.buf, s.bytes, 0x5A), "quant errors wrote an output");
    const int32_t good[2] = {2, 6};
    memcpy(gi.buf, good, 8);
    tu_check(fia_dynamic_quant(g_ctx[0], &t, &prm) == FIA_STATUS_SUCCESS, "good group_index: %s", fia_last_error());
    tu_free(&x), tu_free(&y), tu_free(&y8), tu_free(&s), tu_free(&sb), tu_free(&sm), tu_free(&gi);
}

/* The row kernels directly, every chain variant this CPU runs (the registry's sets, scalar
 * first): the streaming-store forms equal the plain ones bitwise (aligned and misaligned
 * outputs), and every variant's int8 quantization equals the scalar kernels' exactly. */
static void test_kernel_tables(tu_rng *rng) {
    const tu_kernel_variant *v;
    const int nt = chain_variants(&v);
    const fia_chain_kernels *scalar = &v[0].set.chain;
    enum { N = 1000 };
    static uint16_t x[N + 64], x2[N + 64], g[N + 64], c[N + 64], sn[N + 64];
    static _Alignas(64) unsigned char y1[4 * N + 128], y2[4 * N + 128], s1[4 * N + 128], s2[4 * N + 128];
    for (int i = 0; i < N + 64; i++) {
        x[i] = fia_f32_to_bf16((float)tu_uniform(rng, -3, 3));
        x2[i] = fia_f32_to_bf16((float)tu_uniform(rng, -3, 3));
        g[i] = fia_f32_to_bf16((float)tu_uniform(rng, 0.5, 1.5));
        c[i] = fia_f32_to_bf16((float)tu_uniform(rng, -1, 1));
        sn[i] = fia_f32_to_bf16((float)tu_uniform(rng, -1, 1));
    }
    const fia_dtype bf = FIA_DTYPE_BFLOAT16;
    for (int t = 0; t < nt; t++) {
        const fia_chain_kernels *kt = &v[t].set.chain;
        for (int off = 0; off < 3; off += 2) { /* aligned, misaligned by 2 bytes */
            for (int64_t n = 1; n <= N; n = n * 3 + 1) {
                memset(y1, 0, sizeof y1), memset(y2, 1, sizeof y2), memset(s1, 0, sizeof s1), memset(s2, 1, sizeof s2);
                const float r1 = kt->rms_norm_row(x, x2, bf, g, bf, n, 1e-6f, 1.0f, y1 + off, bf, s1 + off);
                const float r2 = kt->rms_norm_row_nt(x, x2, bf, g, bf, n, 1e-6f, 1.0f, y2 + off, bf, s2 + off);
                kt->stream_fence();
                tu_check(r1 == r2 && !memcmp(y1 + off, y2 + off, (size_t)n * 2) && !memcmp(s1 + off, s2 + off, (size_t)n * 2),
                         "%s rms_norm_row_nt n %lld off %d", kt->name, (long long)n, off);
                const float sc = kt->absmax_row(x, bf, g, bf, n) / 127.0f;
                kt->quant_row_i8(x, bf, g, bf, n, sc, (int8_t *)y1 + off);
                kt->quant_row_i8_nt(x, bf, g, bf, n, sc, (int8_t *)y2 + off);
                kt->stream_fence();
                tu_check(!memcmp(y1 + off, y2 + off, (size_t)n), "%s quant_row_i8_nt n %lld", kt->name, (long long)n);
                int8_t ref[N];
                const float scs = scalar->absmax_row(x, bf, g, bf, n) / 127.0f;
                scalar->quant_row_i8(x, bf, g, bf, n, scs, ref);
                tu_check(scs == sc && !memcmp(ref, y1 + off, (size_t)n), "%s quant_row_i8 equals scalar, n %lld", kt->name, (long long)n);
            }
            for (int64_t d = 2; d <= 896 && d <= N; d = d * 2 + 2)
                for (int m = 0; m < 3; m++) {
                    kt->rope_row(x, bf, c, sn, bf, d, (fia_rope_mode)m, y1 + off, bf);
                    kt->rope_row_nt(x, bf, c, sn, bf, d, (fia_rope_mode)m, y2 + off, bf);
                    kt->stream_fence();
                    tu_check(!memcmp(y1 + off, y2 + off, (size_t)d * 2), "%s rope_row_nt d %lld mode %d", kt->name, (long long)d, m);
                }
        }
    }
}

/* quant_row_i8 (plain and _nt, aligned and misaligned outputs) of every variant against the
 * division it stands for, y = sat(rint(x * s / scale)) in fp32 (NaN: -128; a bad scale: 0), on
 * rows built to sit on or next to rounding ties (the kernels replace the division by a
 * multiplication where that is provably the same), with NaN, inf, huge and subnormal elements
 * and scales that push the quotients far out of the int8 range. */
static int8_t div_q8(float a, float scale) {
    if (!(scale > 0.0f) || isinf(scale)) return 0;
    float v = rintf(a / scale);
    v = v > -128.0f ? v : -128.0f;
    v = v < 127.0f ? v : 127.0f;
    return (int8_t)v;
}

static void test_kernel_division(tu_rng *rng) {
    const tu_kernel_variant *v;
    const int nt = chain_variants(&v);
    enum { N = 1100 };
    static float xf[N], sf[N];
    static uint16_t xh[N], sh[N];
    static _Alignas(64) int8_t y1[N + 64], y2[N + 64];
    float scales[] = {1.0f / 127.0f, 4.0f / 127.0f, 0.5f, 3.0f, 1e-3f, 1e-30f, 7e-38f, 1e30f,
                      0.0f, INFINITY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const fia_dtype dts[3] = {FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT16, FIA_DTYPE_FLOAT32};
    for (int rep = 0; rep < 6; rep++)
        for (int di = 0; di < 3; di++) {
            const fia_dtype dt = dts[di];
            for (int si = 0; si < (int)(sizeof scales / sizeof scales[0]); si++) {
                /* the last scales: x0 / scale within 2^-22 (relative) of a tie, x0 exact in dt */
                float x0 = (float)tu_uniform(rng, 0.5, 2.0);
                x0 = dt == FIA_DTYPE_BFLOAT16 ? fia_bf16_to_f32(fia_f32_to_bf16(x0))
                     : dt == FIA_DTYPE_FLOAT16 ? fia_f16_to_f32(fia_f32_to_f16(x0)) : x0;
                if (si >= 10)
                    scales[si] = (float)(x0 / ((tu_int(rng, 0, 126) + 0.5) *
                                               (1.0 + tu_uniform(rng, -1, 1) * 0x1p-22)));
                const float scale = scales[si];
                for (int i = 0; i < N; i++) {
                    float f;
                    const int kind = (int)tu_int(rng, 0, 9);
                    if (kind < 2 && si >= 10) f = kind ? x0 : -x0;
                    else if (kind < 4) /* on or next to a tie (fp32: within 2^-20 relative) */
                        f = (float)((tu_int(rng, -300, 300) + 0.5) * scale *
                                    (1.0 + (kind == 0 ? 0.0 : tu_uniform(rng, -1, 1) * 0x1p-20)));
                    else if (kind < 6) f = (float)tu_uniform(rng, -1, 1) * 128.0f * scale;
                    else if (kind == 6) f = (float)tu_uniform(rng, -1, 1);
                    else if (kind == 7) f = tu_chance(rng, 0.5) ? 0.5f : -0.5f;
                    else if (kind == 8) f = (float)tu_uniform(rng, -1, 1) * 1e-39f;
                    else {
                        const float sp[5] = {NAN, INFINITY, -INFINITY, 3e38f, -3e38f};
                        f = tu_chance(rng, 0.1) ? sp[tu_int(rng, 0, 4)] : 0.0f;
                    }
                    const float g = (float)tu_uniform(rng, 0.25, 2.0);
                    if (dt == FIA_DTYPE_FLOAT32) xf[i] = f, sf[i] = g;
                    else if (dt == FIA_DTYPE_BFLOAT16) xh[i] = fia_f32_to_bf16(f), sh[i] = fia_f32_to_bf16(g);
                    else xh[i] = fia_f32_to_f16(f), sh[i] = fia_f32_to_f16(g);
                }
                const void *x = dt == FIA_DTYPE_FLOAT32 ? (const void *)xf : (const void *)xh;
                const void *sm = dt == FIA_DTYPE_FLOAT32 ? (const void *)sf : (const void *)sh;
                for (int withs = 0; withs < 2; withs++) {
                    const void *s = withs ? sm : NULL;
                    int8_t want[N];
                    for (int i = 0; i < N; i++) {
                        float a = dt == FIA_DTYPE_FLOAT32 ? xf[i]
                                  : dt == FIA_DTYPE_BFLOAT16 ? fia_bf16_to_f32(xh[i]) : fia_f16_to_f32(xh[i]);
                        if (s) a *= dt == FIA_DTYPE_FLOAT32 ? sf[i]
                                    : dt == FIA_DTYPE_BFLOAT16 ? fia_bf16_to_f32(sh[i]) : fia_f16_to_f32(sh[i]);
                        want[i] = div_q8(a, scale);
                    }
                    for (int t = 0; t < nt; t++) {
                        const fia_chain_kernels *kt = &v[t].set.chain;
                        const int off = rep % 2 ? 3 : 0;
                        const int64_t n = N - rep * 7;
                        memset(y1, 0x5A, sizeof y1), memset(y2, 0x5A, sizeof y2);
                        kt->quant_row_i8(x, dt, s, dt, n, scale, y1 + off);
                        kt->quant_row_i8_nt(x, dt, s, dt, n, scale, y2 + off);
                        kt->stream_fence();
                        int bad = -1;
                        for (int64_t i = 0; i < n && bad < 0; i++)
                            if (y1[off + i] != want[i] || y2[off + i] != want[i]) bad = (int)i;
                        tu_check(bad < 0 && y1[off + n] == 0x5A && y2[off + n] == 0x5A,
                                 "%s quant_row_i8 %s%s scale %g n %lld: the division's results (first "
                                 "difference at %d)", kt->name, fia_dtype_name(dt), s ? " smooth" : "",
                                 (double)scale, (long long)n, bad);
                    }
                }
            }
        }
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261204, "test_quant");
    tu_rng rng = tu_rng_make(seed);
    open_contexts();
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    const qcase edge[] = {
        {0, FIA_DTYPE_BFLOAT16, FIA_DTYPE_BFLOAT16, 2, {1, 7168, 1, 1}, 0, 0, 0, 0, 0},   /* T = 1 */
        {0, FIA_DTYPE_BFLOAT16, FIA_DTYPE_BFLOAT16, 3, {1, 64, 128, 1}, 0, 0, 0, 0, 1},   /* indexer heads */
        {0, FIA_DTYPE_FLOAT16, FIA_DTYPE_FLOAT16, 2, {5, 1536, 1, 1}, 1, 0, 0, 1, 1},     /* prolog c_q + smooth */
        {0, FIA_DTYPE_FLOAT16, FIA_DTYPE_FLOAT16, 2, {9, 33, 1, 1}, 1, 3, 0, 0, 0},       /* MoE groups */
        {1, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32, 3, {3, 5, 77, 1}, 1, 0, 0, 0, 1},
        {2, FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT32, 3, {2, 7, 1030, 1}, 1, 0, 0, 1, 0},
        {2, FIA_DTYPE_BFLOAT16, FIA_DTYPE_BFLOAT16, 2, {1, 1, 1, 1}, 0, 0, 0, 0, 0},
        {0, FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT32, 1, {13, 1, 1, 1}, 0, 0, 63.5, 0, 0},   /* 1-D, dmax */
    };
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) run_case(&edge[i], &rng);
    for (int it = 0; it < 80; it++) {
        qcase c;
        memset(&c, 0, sizeof c);
        c.mode = (int)tu_int(&rng, 0, 2);
        c.dt = dts[tu_int(&rng, 0, 2)];
        c.sdt = tu_chance(&rng, 0.3) ? FIA_DTYPE_FLOAT32 : c.dt;
        c.nd = (int32_t)tu_int(&rng, c.mode == 2 ? 2 : 1, 4);
        for (int d = 0; d < 4; d++) c.shape[d] = 1;
        for (int d = 0; d < c.nd; d++) c.shape[d] = tu_int(&rng, 1, d == c.nd - 1 ? 600 : 5);
        c.smooth = tu_chance(&rng, 0.5);
        c.groups = c.smooth && c.mode == 0 && tu_chance(&rng, 0.4) ? (int)tu_int(&rng, 1, 5) : 0;
        c.dmax = tu_chance(&rng, 0.2) ? tu_uniform(&rng, 1, 127) : 0;
        c.pad = (int)tu_int(&rng, 0, 1);
        c.zero_rows = tu_chance(&rng, 0.2);
        run_case(&c, &rng);
    }
    test_ties();
    test_errors();
    test_kernel_tables(&rng);
    test_kernel_division(&rng);
    close_contexts();
    return tu_summary();
}
