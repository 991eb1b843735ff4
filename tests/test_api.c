/*
 * test_api.c - the small public API: version, status strings, tensors, dtypes, layouts, ISA
 * names, contexts (threads, forced ISA levels, environment), fp16 / bf16 conversions,
 * fia_last_error and the FIA parameter defaults.
 *
 *   test_api [seed]    (the seed drives the random conversion checks)
 */
#define _POSIX_C_SOURCE 200809L /* setenv */

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "test_util.h"

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static int is_f16_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
static int is_bf16_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x7fu) != 0; }

/* Reference f32 -> f16, round to nearest even, computed in double with rint(). */
static uint16_t ref_f32_to_f16(float f) {
    const uint16_t sign = (f32_bits(f) >> 31) ? 0x8000u : 0;
    double x = fabs((double)f);
    if (isnan(f)) return 0x7e00u;
    if (x >= 65520.0) return sign | 0x7c00u;
    if (x < ldexp(1.0, -14)) return sign | (uint16_t)rint(x / ldexp(1.0, -24)); /* may carry into 0x0400 */
    int e;
    frexp(x, &e); /* x = m * 2^e, m in [0.5, 1) */
    e -= 1;       /* x in [2^e, 2^(e+1)) */
    double m = rint(x / ldexp(1.0, e - 10)); /* 1024..2048 */
    if (m == 2048.0) m = 1024.0, e++;
    if (e + 15 >= 31) return sign | 0x7c00u;
    return sign | (uint16_t)(((e + 15) << 10) | ((int)m - 1024));
}

/* Reference f32 -> bf16: nearest even of the upper half, by exhaustive neighbour comparison. */
static uint16_t ref_f32_to_bf16(float f) {
    const uint32_t u = f32_bits(f);
    if (isnan(f)) return 0x7fc0u;
    const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    const uint32_t rem = u & 0xffffu;
    if (rem < 0x8000u) return lo;
    if (rem > 0x8000u) return hi;
    return (lo & 1u) ? hi : lo;
}

static void test_version_status(void) {
    tu_check(fia_version_number() == FIA_VERSION_NUMBER, "fia_version_number %u == %d", fia_version_number(), FIA_VERSION_NUMBER);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", FIA_VERSION_MAJOR, FIA_VERSION_MINOR, FIA_VERSION_PATCH);
    tu_check(strcmp(fia_version_string(), want) == 0, "fia_version_string \"%s\" == \"%s\"", fia_version_string(), want);
    static const char *const names[7] = {"FIA_STATUS_SUCCESS", "FIA_STATUS_INVALID_ARGUMENT", "FIA_STATUS_UNSUPPORTED",
                                         "FIA_STATUS_OUT_OF_MEMORY", "FIA_STATUS_WORKSPACE_TOO_SMALL",
                                         "FIA_STATUS_UNSUPPORTED_ISA", "FIA_STATUS_INTERNAL"};
    for (int s = 0; s < 7; s++)
        tu_check(strcmp(fia_status_string((fia_status)s), names[s]) == 0, "fia_status_string(%d) = \"%s\"", s,
                 fia_status_string((fia_status)s));
    tu_check(strcmp(fia_status_string((fia_status)7), "FIA_STATUS_UNKNOWN") == 0, "fia_status_string(7) unknown");
    tu_check(strcmp(fia_status_string((fia_status)-1), "FIA_STATUS_UNKNOWN") == 0, "fia_status_string(-1) unknown");
    tu_check(strcmp(fia_status_string((fia_status)1000), "FIA_STATUS_UNKNOWN") == 0, "fia_status_string(1000) unknown");
}

static void test_dtypes_layouts(void) {
    static const struct {
        fia_dtype dt;
        size_t size;
        const char *name;
    } dts[8] = {{FIA_DTYPE_FLOAT32, 4, "float32"}, {FIA_DTYPE_FLOAT16, 2, "float16"}, {FIA_DTYPE_BFLOAT16, 2, "bfloat16"},
                {FIA_DTYPE_INT8, 1, "int8"},       {FIA_DTYPE_UINT8, 1, "uint8"},     {FIA_DTYPE_BOOL, 1, "bool"},
                {FIA_DTYPE_INT32, 4, "int32"},     {FIA_DTYPE_INT64, 8, "int64"}};
    for (int i = 0; i < 8; i++) {
        tu_check(fia_dtype_size(dts[i].dt) == dts[i].size, "fia_dtype_size(%s) = %zu", dts[i].name, fia_dtype_size(dts[i].dt));
        tu_check(strcmp(fia_dtype_name(dts[i].dt), dts[i].name) == 0, "fia_dtype_name(%d) = \"%s\", want \"%s\"", (int)dts[i].dt,
                 fia_dtype_name(dts[i].dt), dts[i].name);
    }
    tu_check(fia_dtype_size((fia_dtype)8) == 0 && fia_dtype_size((fia_dtype)-1) == 0, "fia_dtype_size(unknown) = 0");
    tu_check(strcmp(fia_dtype_name((fia_dtype)8), "unknown") == 0 && strcmp(fia_dtype_name((fia_dtype)-3), "unknown") == 0,
             "fia_dtype_name(unknown) = \"unknown\"");

    static const char *const lnames[10] = {"BSH", "BSND", "BNSD", "TND", "BNSD_BSND", "NTD", "TND_NTD", "PA_BSND", "PA_NZ",
                                           "NTD_TND"};
    for (int i = 0; i < 10; i++) {
        fia_layout l = (fia_layout)-1;
        const fia_status st = fia_layout_parse(lnames[i], &l);
        tu_check(st == FIA_STATUS_SUCCESS && l == (fia_layout)i, "fia_layout_parse(\"%s\") = %d (%s)", lnames[i], (int)l,
                 fia_status_string(st));
        tu_check(strcmp(fia_layout_name((fia_layout)i), lnames[i]) == 0, "fia_layout_name(%d) = \"%s\"", i,
                 fia_layout_name((fia_layout)i));
    }
    static const char *const bad[6] = {"", "XYZ", "BSH ", "BSNDX", "BNS", "B"};
    for (int i = 0; i < 6; i++) {
        fia_layout l = FIA_LAYOUT_BSND;
        const fia_status st = fia_layout_parse(bad[i], &l);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && fia_last_error()[0], "fia_layout_parse(\"%s\") is INVALID_ARGUMENT (%s)",
                 bad[i], fia_status_string(st));
    }
    fia_layout l;
    tu_check(fia_layout_parse(NULL, &l) == FIA_STATUS_INVALID_ARGUMENT, "fia_layout_parse(NULL) is INVALID_ARGUMENT");
    tu_check(fia_layout_parse("BSH", NULL) == FIA_STATUS_INVALID_ARGUMENT, "fia_layout_parse(\"BSH\", NULL) is INVALID_ARGUMENT");
    tu_check(strcmp(fia_layout_name((fia_layout)10), "unknown") == 0 && strcmp(fia_layout_name((fia_layout)-1), "unknown") == 0,
             "fia_layout_name(unknown)");
    static const char *const inames[4] = {"auto", "scalar", "avx2", "avx512"};
    for (int i = 0; i < 4; i++)
        tu_check(strcmp(fia_isa_name((fia_isa)i), inames[i]) == 0, "fia_isa_name(%d) = \"%s\"", i, fia_isa_name((fia_isa)i));
    tu_check(strcmp(fia_isa_name((fia_isa)4), "unknown") == 0, "fia_isa_name(4) = \"unknown\"");
}

static void test_tensor_init(void) {
    fia_tensor t, sentinel;
    memset(&sentinel, 0x5a, sizeof sentinel);
    const int64_t shape[3] = {2, 3, 4};
    char buf[96];

    t = sentinel;
    fia_status st = fia_tensor_init(&t, buf, FIA_DTYPE_FLOAT32, 3, shape, NULL);
    tu_check(st == FIA_STATUS_SUCCESS && t.data == buf && t.dtype == FIA_DTYPE_FLOAT32 && t.ndim == 3 && t.shape[0] == 2 &&
                 t.shape[1] == 3 && t.shape[2] == 4 && t.strides[0] == 12 && t.strides[1] == 4 && t.strides[2] == 1,
             "fia_tensor_init compact strides");
    tu_check(fia_tensor_numel(&t) == 24, "fia_tensor_numel = 24");

    const int64_t strides[3] = {100, 10, 1};
    st = fia_tensor_init(&t, buf, FIA_DTYPE_INT8, 3, shape, strides);
    tu_check(st == FIA_STATUS_SUCCESS && t.strides[0] == 100 && t.strides[1] == 10 && t.strides[2] == 1,
             "fia_tensor_init copies strides");
    st = fia_tensor_init(&t, NULL, FIA_DTYPE_BOOL, 0, NULL, NULL);
    tu_check(st == FIA_STATUS_SUCCESS && t.ndim == 0 && fia_tensor_numel(&t) == 1, "fia_tensor_init rank 0, numel 1");
    const int64_t zshape[2] = {5, 0};
    st = fia_tensor_init(&t, buf, FIA_DTYPE_FLOAT16, 2, zshape, NULL);
    tu_check(st == FIA_STATUS_SUCCESS && fia_tensor_numel(&t) == 0, "fia_tensor_init zero dim, numel 0");
    const int64_t big[FIA_MAX_DIMS] = {1, 2, 1, 2, 1, 2, 1, 2};
    st = fia_tensor_init(&t, buf, FIA_DTYPE_UINT8, FIA_MAX_DIMS, big, NULL);
    tu_check(st == FIA_STATUS_SUCCESS && fia_tensor_numel(&t) == 16 && t.strides[0] == 16, "fia_tensor_init %d dims", FIA_MAX_DIMS);

    /* errors leave *t untouched */
    const int64_t neg[3] = {2, -1, 4};
    struct {
        const char *what;
        fia_tensor *t;
        fia_dtype dt;
        int32_t nd;
        const int64_t *shape;
    } bad[6] = {{"t NULL", NULL, FIA_DTYPE_FLOAT32, 3, shape},
                {"ndim -1", &t, FIA_DTYPE_FLOAT32, -1, shape},
                {"ndim 9", &t, FIA_DTYPE_FLOAT32, FIA_MAX_DIMS + 1, big},
                {"negative dim", &t, FIA_DTYPE_FLOAT32, 3, neg},
                {"unknown dtype", &t, (fia_dtype)42, 3, shape},
                {"shape NULL", &t, FIA_DTYPE_FLOAT32, 3, NULL}};
    for (int i = 0; i < 6; i++) {
        t = sentinel;
        st = fia_tensor_init(bad[i].t, buf, bad[i].dt, bad[i].nd, bad[i].shape, NULL);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && memcmp(&t, &sentinel, sizeof t) == 0 && fia_last_error()[0],
                 "fia_tensor_init %s: %s, tensor untouched, message \"%s\"", bad[i].what, fia_status_string(st), fia_last_error());
    }
}

static int cpu_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

/* Environment variables are restored after each change (CI may set FIA_ISA). */
typedef struct saved_env {
    char isa[64], threads[64];
    int has_isa, has_threads;
} saved_env;

static void env_save(saved_env *s) {
    const char *a = getenv("FIA_ISA"), *b = getenv("FIA_NUM_THREADS");
    s->has_isa = a != NULL, s->has_threads = b != NULL;
    snprintf(s->isa, sizeof s->isa, "%s", a ? a : "");
    snprintf(s->threads, sizeof s->threads, "%s", b ? b : "");
}

static void env_restore(const saved_env *s) {
    if (s->has_isa) setenv("FIA_ISA", s->isa, 1);
    else unsetenv("FIA_ISA");
    if (s->has_threads) setenv("FIA_NUM_THREADS", s->threads, 1);
    else unsetenv("FIA_NUM_THREADS");
}

static fia_status make_ctx(int32_t threads, fia_isa isa, fia_context **ctx) {
    fia_context_options o = {threads, isa};
    *ctx = (fia_context *)&o; /* sentinel: must stay on failure */
    fia_context *sentinel = *ctx;
    const fia_status st = fia_context_create(&o, ctx);
    if (st != FIA_STATUS_SUCCESS) {
        tu_check(*ctx == sentinel, "failed fia_context_create (%d threads, %s) left *ctx untouched", threads, fia_isa_name(isa));
        *ctx = NULL;
    }
    return st;
}

static void test_contexts(void) {
    saved_env env;
    env_save(&env);
    unsetenv("FIA_ISA");
    unsetenv("FIA_NUM_THREADS");

    fia_context *ctx = NULL;
    fia_status st = fia_context_create(NULL, &ctx);
    tu_check(st == FIA_STATUS_SUCCESS && ctx && fia_context_num_threads(ctx) >= 1 &&
                 fia_context_isa(ctx) >= FIA_ISA_SCALAR && fia_context_isa(ctx) <= FIA_ISA_AVX512,
             "default context: %s, %d threads, isa %s", fia_status_string(st), ctx ? fia_context_num_threads(ctx) : -1,
             ctx ? fia_isa_name(fia_context_isa(ctx)) : "-");
    const fia_isa best = ctx ? fia_context_isa(ctx) : FIA_ISA_SCALAR;
    tu_check(best == (cpu_has_avx512() ? FIA_ISA_AVX512 : cpu_has_avx2() ? FIA_ISA_AVX2 : FIA_ISA_SCALAR),
             "default context picks the best ISA (%s)", fia_isa_name(best));
    fia_context_destroy(ctx);
    fia_context_destroy(NULL);
    tu_check(fia_context_create(NULL, NULL) == FIA_STATUS_INVALID_ARGUMENT, "fia_context_create(NULL, NULL) is INVALID_ARGUMENT");

    const int32_t counts[4] = {1, 2, 3, 7};
    for (int i = 0; i < 4; i++) {
        st = make_ctx(counts[i], FIA_ISA_AUTO, &ctx);
        tu_check(st == FIA_STATUS_SUCCESS && fia_context_num_threads(ctx) == counts[i], "context with %d threads: %s, %d", counts[i],
                 fia_status_string(st), ctx ? fia_context_num_threads(ctx) : -1);
        fia_context_destroy(ctx);
    }
    const int32_t bad_counts[3] = {-1, 1025, INT32_MIN};
    for (int i = 0; i < 3; i++) {
        st = make_ctx(bad_counts[i], FIA_ISA_AUTO, &ctx);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && fia_last_error()[0], "context with %d threads: %s", bad_counts[i],
                 fia_status_string(st));
        fia_context_destroy(ctx);
    }

    /* Forced levels: available ones give that level, the others FIA_STATUS_UNSUPPORTED_ISA. */
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    const int avail[3] = {1, cpu_has_avx2(), cpu_has_avx512()};
    for (int i = 0; i < 3; i++) {
        st = make_ctx(2, levels[i], &ctx);
        if (avail[i]) /* fia.h: AVX512 = AVX-512 F/BW/DQ/VL (+ VNNI where present) */
            tu_check(st == FIA_STATUS_SUCCESS && fia_context_isa(ctx) == levels[i],
                     "forced %s on a CPU with %s: %s (%s)", fia_isa_name(levels[i]),
                     i == 2 ? "AVX-512 F/BW/DQ/VL" : i == 1 ? "AVX2 + FMA" : "anything", fia_status_string(st),
                     fia_last_error());
        else
            tu_check(st == FIA_STATUS_UNSUPPORTED_ISA && fia_last_error()[0], "forced %s on a CPU without it: %s",
                     fia_isa_name(levels[i]), fia_status_string(st));
        fia_context_destroy(ctx);
    }
    st = make_ctx(1, (fia_isa)9, &ctx);
    tu_check(st == FIA_STATUS_INVALID_ARGUMENT || st == FIA_STATUS_UNSUPPORTED_ISA, "isa 9: %s", fia_status_string(st));
    fia_context_destroy(ctx);

    /* FIA_ISA and FIA_NUM_THREADS. */
    const char *const isa_env[3] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        setenv("FIA_ISA", isa_env[i], 1);
        st = make_ctx(1, FIA_ISA_AUTO, &ctx);
        if (avail[i])
            tu_check(st == FIA_STATUS_SUCCESS && fia_context_isa(ctx) == levels[i], "FIA_ISA=%s: %s", isa_env[i], fia_status_string(st));
        else
            tu_check(st == FIA_STATUS_UNSUPPORTED_ISA, "FIA_ISA=%s on a CPU without it: %s", isa_env[i], fia_status_string(st));
        fia_context_destroy(ctx);
    }
    setenv("FIA_ISA", "scalar", 1);
    if (avail[1]) {
        st = make_ctx(1, FIA_ISA_AVX2, &ctx);
        tu_check(st == FIA_STATUS_SUCCESS && fia_context_isa(ctx) == FIA_ISA_AVX2, "options.isa wins over FIA_ISA: %s",
                 fia_status_string(st));
        fia_context_destroy(ctx);
    }
    setenv("FIA_ISA", "sse9", 1);
    st = make_ctx(1, FIA_ISA_AUTO, &ctx);
    tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "FIA_ISA"), "FIA_ISA=sse9: %s, \"%s\"",
             fia_status_string(st), fia_last_error());
    fia_context_destroy(ctx);
    unsetenv("FIA_ISA");

    setenv("FIA_NUM_THREADS", "3", 1);
    st = make_ctx(0, FIA_ISA_AUTO, &ctx);
    tu_check(st == FIA_STATUS_SUCCESS && fia_context_num_threads(ctx) == 3, "FIA_NUM_THREADS=3: %s, %d", fia_status_string(st),
             ctx ? fia_context_num_threads(ctx) : -1);
    fia_context_destroy(ctx);
    st = make_ctx(2, FIA_ISA_AUTO, &ctx);
    tu_check(st == FIA_STATUS_SUCCESS && fia_context_num_threads(ctx) == 2, "options.num_threads wins over FIA_NUM_THREADS");
    fia_context_destroy(ctx);
    const char *const bad_threads[4] = {"abc", "-2", "1025", "4x"};
    for (int i = 0; i < 4; i++) {
        setenv("FIA_NUM_THREADS", bad_threads[i], 1);
        st = make_ctx(0, FIA_ISA_AUTO, &ctx);
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "FIA_NUM_THREADS"), "FIA_NUM_THREADS=%s: %s, \"%s\"",
                 bad_threads[i], fia_status_string(st), fia_last_error());
        fia_context_destroy(ctx);
    }
    env_restore(&env);
}

static void test_conversions(uint64_t seed) {
    /* fp16 -> fp32 spot values */
    const struct {
        uint16_t h;
        float f;
    } h2f[10] = {{0x3c00, 1.0f},           {0xbc00, -1.0f},          {0x7bff, 65504.0f},   {0x0001, 5.9604644775390625e-8f},
                 {0x03ff, 6.0975551605224609e-5f}, {0x0400, 6.103515625e-5f}, {0x3555, 0.333251953125f},
                 {0x7c00, INFINITY},       {0xfc00, -INFINITY},      {0xc000, -2.0f}};
    for (int i = 0; i < 10; i++)
        tu_check(fia_f16_to_f32(h2f[i].h) == h2f[i].f, "fia_f16_to_f32(0x%04x) = %.9g, want %.9g", h2f[i].h,
                 fia_f16_to_f32(h2f[i].h), h2f[i].f);
    tu_check(fia_f16_to_f32(0x8000) == 0.0f && signbit(fia_f16_to_f32(0x8000)), "fia_f16_to_f32(0x8000) = -0");
    tu_check(isnan(fia_f16_to_f32(0x7e00)) && isnan(fia_f16_to_f32(0x7c01)) && isnan(fia_f16_to_f32(0xfe00)),
             "fia_f16_to_f32(NaN) is NaN");

    /* fp32 -> fp16 spot values: overflow, subnormals, ties to even */
    const struct {
        float f;
        uint16_t h;
    } f2h[18] = {{1.0f, 0x3c00},
                 {-1.0f, 0xbc00},
                 {65504.0f, 0x7bff},
                 {65519.996f, 0x7bff},
                 {65520.0f, 0x7c00},
                 {1e10f, 0x7c00},
                 {-1e10f, 0xfc00},
                 {INFINITY, 0x7c00},
                 {-INFINITY, 0xfc00},
                 {5.9604644775390625e-8f, 0x0001}, /* 2^-24, smallest subnormal */
                 {2.98023223876953125e-8f, 0x0000}, /* 2^-25: tie, to even (0) */
                 {2.9802326e-8f, 0x0001},           /* just above the tie */
                 {8.94069671630859375e-8f, 0x0002}, /* 1.5 * 2^-24: tie, to even (2) */
                 {6.0975551605224609e-5f, 0x03ff},  /* largest subnormal */
                 {1.00048828125f, 0x3c00},          /* 1 + 2^-11: tie, to even */
                 {1.00146484375f, 0x3c02},          /* 1 + 3 * 2^-11: tie, to even */
                 {1.00048840045928955078125f, 0x3c01}, /* 1 + 2^-11 + 2^-23: above the tie */
                 {0.0f, 0x0000}};
    for (int i = 0; i < 18; i++)
        tu_check(fia_f32_to_f16(f2h[i].f) == f2h[i].h, "fia_f32_to_f16(%.9g) = 0x%04x, want 0x%04x", f2h[i].f,
                 fia_f32_to_f16(f2h[i].f), f2h[i].h);
    tu_check(fia_f32_to_f16(-0.0f) == 0x8000, "fia_f32_to_f16(-0) = 0x8000");
    tu_check(is_f16_nan(fia_f32_to_f16(NAN)) && is_f16_nan(fia_f32_to_f16(bits_f32(0x7f800001u))) &&
                 is_f16_nan(fia_f32_to_f16(bits_f32(0xffc00000u))),
             "fia_f32_to_f16(NaN) is NaN (also with only low mantissa bits set)");

    /* bf16 */
    tu_check(fia_bf16_to_f32(0x3f80) == 1.0f && fia_bf16_to_f32(0xc040) == -3.0f && fia_bf16_to_f32(0x7f80) == INFINITY &&
                 isnan(fia_bf16_to_f32(0x7fc0)) && fia_bf16_to_f32(0x0001) == bits_f32(0x00010000u),
             "fia_bf16_to_f32 spot values");
    const struct {
        uint32_t f;
        uint16_t b;
    } f2b[10] = {{0x3f800000u, 0x3f80}, {0x3f808000u, 0x3f80}, /* tie, even */
                 {0x3f818000u, 0x3f82},                          /* tie, odd -> up */
                 {0x3f808001u, 0x3f81}, {0x7f7fffffu, 0x7f80},  /* FLT_MAX rounds to inf */
                 {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80}, {0x00008000u, 0x0000}, /* subnormal tie */
                 {0x00018000u, 0x0002}, {0x80000000u, 0x8000}};
    for (int i = 0; i < 10; i++)
        tu_check(fia_f32_to_bf16(bits_f32(f2b[i].f)) == f2b[i].b, "fia_f32_to_bf16(0x%08x) = 0x%04x, want 0x%04x", f2b[i].f,
                 fia_f32_to_bf16(bits_f32(f2b[i].f)), f2b[i].b);
    tu_check(is_bf16_nan(fia_f32_to_bf16(NAN)) && is_bf16_nan(fia_f32_to_bf16(bits_f32(0x7f800001u))) &&
                 is_bf16_nan(fia_f32_to_bf16(bits_f32(0xff800001u))),
             "fia_f32_to_bf16(NaN) is NaN (also with only low mantissa bits set)");

    /* Round trips over every 16-bit pattern. */
    int bad16 = 0, badb = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const uint16_t x = (uint16_t)h;
        const uint16_t y = fia_f32_to_f16(fia_f16_to_f32(x));
        bad16 += is_f16_nan(x) ? !is_f16_nan(y) : y != x;
        const uint16_t z = fia_f32_to_bf16(fia_bf16_to_f32(x));
        badb += is_bf16_nan(x) ? !is_bf16_nan(z) : z != x;
    }
    tu_check(bad16 == 0, "fp16 -> fp32 -> fp16 round trip of all 65536 values (%d wrong)", bad16);
    tu_check(badb == 0, "bf16 -> fp32 -> bf16 round trip of all 65536 values (%d wrong)", badb);

    /* Random floats (all exponents, and near the fp16 range) against the double references. */
    tu_rng r = tu_rng_make(seed);
    int badh = 0, badbb = 0;
    uint32_t first_badh = 0, first_badb = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = (uint32_t)tu_next(&r);
        if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)tu_int(&r, 100, 145) << 23); /* fp16 range and around */
        if (i % 7 == 0) u &= 0xffffe000u | (1u << 12);                             /* exact ties for fp16 */
        const float f = bits_f32(u);
        if (isnan(f)) continue;
        if (fia_f32_to_f16(f) != ref_f32_to_f16(f) && !badh++) first_badh = u;
        if (fia_f32_to_bf16(f) != ref_f32_to_bf16(f) && !badbb++) first_badb = u;
    }
    tu_check(badh == 0, "fia_f32_to_f16 matches round-to-nearest-even on 2M random floats (%d wrong, first 0x%08x)", badh, first_badh);
    tu_check(badbb == 0, "fia_f32_to_bf16 matches round-to-nearest-even on 2M random floats (%d wrong, first 0x%08x)", badbb,
             first_badb);
}

static void *fresh_thread_error(void *arg) {
    *(int *)arg = fia_last_error() != NULL && fia_last_error()[0] == '\0';
    return NULL;
}

static void test_last_error(void) {
    int fresh = 0;
    pthread_t th;
    pthread_create(&th, NULL, fresh_thread_error, &fresh);
    pthread_join(th, NULL);
    tu_check(fresh, "fia_last_error() is \"\" in a thread that made no call");

    fia_tensor t;
    const int64_t neg[1] = {-3};
    fia_tensor_init(&t, NULL, FIA_DTYPE_FLOAT32, 1, neg, NULL);
    char first[256];
    snprintf(first, sizeof first, "%s", fia_last_error());
    tu_check(first[0] != '\0', "fia_last_error() after a failed call is not empty (\"%s\")", first);
    /* a failure in another thread leaves this thread's message alone */
    pthread_create(&th, NULL, fresh_thread_error, &fresh);
    pthread_join(th, NULL);
    tu_check(strcmp(first, fia_last_error()) == 0, "fia_last_error() is per thread");

    fia_context *ctx = NULL;
    fia_context_options o = {-5, FIA_ISA_AUTO};
    fia_context_create(&o, &ctx);
    tu_check(strcmp(first, fia_last_error()) != 0 && fia_last_error()[0], "a new failure replaces the message (\"%s\")", fia_last_error());
}

static void test_params_defaults(void) {
    fia_fused_infer_attention_score_params p;
    memset(&p, 0x77, sizeof p);
    fia_fused_infer_attention_score_params_init(&p);
    tu_check(p.num_heads == 1 && p.num_key_value_heads == 0 && p.scale == 1.0 && p.pre_tokens == 2147483647 &&
                 p.next_tokens == 2147483647 && p.input_layout == FIA_LAYOUT_BSH && p.sparse_mode == 0 && p.block_size == 0 &&
                 p.antiquant_mode == 0 && p.inner_precise == 0 && p.softmax_lse_flag == 0 && p.actual_seq_lengths == NULL &&
                 p.actual_seq_lengths_count == 0 && p.actual_seq_lengths_kv == NULL && p.actual_seq_lengths_kv_count == 0,
             "fia_fused_infer_attention_score_params_init sets the torch_npu defaults");
    tu_check(fia_plan_execute(NULL, NULL, 0) == FIA_STATUS_INVALID_ARGUMENT, "fia_plan_execute(NULL) is INVALID_ARGUMENT");
    fia_plan_destroy(NULL);
}

static fia_status run_plan(fia_plan *plan) {
    const size_t n = fia_plan_workspace_size(plan);
    void *ws = n ? malloc(n) : NULL;
    fia_status st = n && !ws ? FIA_STATUS_OUT_OF_MEMORY : fia_plan_execute(plan, ws, n);
    free(ws);
    return st;
}

/* fia_tensor's DLPack fields and the params struct_size: byte_offset is honoured, a device other
 * than the host is refused, a params struct not set by its init function is refused. */
static void test_abi_fields(void) {
    fia_context *ctx = NULL;
    fia_context_options o = {1, FIA_ISA_AUTO};
    if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) {
        tu_check(0, "context for the ABI tests: %s", fia_last_error());
        return;
    }
    enum { H = 2, L = 5, D = 8, N = H * L * D, OFF = 24 };
    uint16_t buf[3][OFF + N], out_a[N], out_b[OFF + N];
    for (int w = 0; w < 3; w++)
        for (int i = 0; i < OFF + N; i++) buf[w][i] = fia_f32_to_f16((float)((i * 7 + w * 3) % 11) / 11.0f - 0.4f);
    const int64_t qs[3] = {H, 1, D}, ks[3] = {H, L, D};
    fia_tensor q, k, v, oa, qo, ko, vo, ob;
    fia_tensor_init(&q, buf[0] + OFF, FIA_DTYPE_FLOAT16, 3, qs, NULL);
    fia_tensor_init(&k, buf[1] + OFF, FIA_DTYPE_FLOAT16, 3, ks, NULL);
    fia_tensor_init(&v, buf[2] + OFF, FIA_DTYPE_FLOAT16, 3, ks, NULL);
    fia_tensor_init(&oa, out_a, FIA_DTYPE_FLOAT16, 3, qs, NULL);
    qo = q, ko = k, vo = v;
    qo.data = buf[0], ko.data = buf[1], vo.data = buf[2];
    qo.byte_offset = ko.byte_offset = vo.byte_offset = OFF * sizeof(uint16_t);
    qo.device_type = FIA_DEVICE_CPU;
    memset(out_b, 0, sizeof out_b);
    fia_tensor_init(&ob, out_b, FIA_DTYPE_FLOAT16, 3, qs, NULL);
    ob.byte_offset = OFF * sizeof(uint16_t);
    uint64_t ws = 0;
    fia_plan *pa = NULL, *pb = NULL;
    fia_status sa = fia_smallq_flash_attention_get_workspace_size(ctx, &q, &k, &v, &oa, &ws, &pa);
    fia_status sb = fia_smallq_flash_attention_get_workspace_size(ctx, &qo, &ko, &vo, &ob, &ws, &pb);
    if (sa == FIA_STATUS_SUCCESS) sa = run_plan(pa);
    if (sb == FIA_STATUS_SUCCESS) sb = run_plan(pb);
    int zero_head = 1;
    for (int i = 0; i < OFF; i++) zero_head &= out_b[i] == 0;
    tu_check(sa == FIA_STATUS_SUCCESS && sb == FIA_STATUS_SUCCESS && zero_head &&
                 memcmp(out_a, out_b + OFF, H * D * sizeof(uint16_t)) == 0,
             "byte_offset views give the same output as offset data pointers, written at the offset");
    fia_tensor bad = k;
    bad.device_type = 2;
    fia_plan *pc = NULL;
    fia_status sc = fia_smallq_flash_attention_get_workspace_size(ctx, &q, &bad, &v, &oa, &ws, &pc);
    tu_check(sc == FIA_STATUS_UNSUPPORTED && strstr(fia_last_error(), "K") && pc == NULL,
             "a device tensor is UNSUPPORTED, naming it (\"%s\")", fia_last_error());
    bad = k;
    bad.device_id = 1;
    sc = fia_smallq_flash_attention_get_workspace_size(ctx, &q, &bad, &v, &oa, &ws, &pc);
    tu_check(sc == FIA_STATUS_UNSUPPORTED && pc == NULL, "device_id 1 is UNSUPPORTED");

    fia_fused_infer_attention_score_params p;
    fia_fused_infer_attention_score_params_init(&p);
    tu_check(p.struct_size == sizeof p, "params_init sets struct_size");
    p.struct_size = 0;
    const int64_t bq[4] = {1, 1, H, D}, bk[4] = {1, L, H, D};
    fia_tensor fq, fk, fv, fo;
    fia_tensor_init(&fq, buf[0], FIA_DTYPE_FLOAT16, 4, bq, NULL);
    fia_tensor_init(&fk, buf[1], FIA_DTYPE_FLOAT16, 4, bk, NULL);
    fia_tensor_init(&fv, buf[2], FIA_DTYPE_FLOAT16, 4, bk, NULL);
    fia_tensor_init(&fo, out_a, FIA_DTYPE_FLOAT16, 4, bq, NULL);
    fia_fused_infer_attention_score_tensors t = {0};
    t.query = &fq, t.key = &fk, t.value = &fv, t.attention_out = &fo;
    fia_plan *pd = NULL;
    fia_status sd = fia_fused_infer_attention_score_plan(ctx, &t, &p, &pd, NULL);
    tu_check(sd == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "struct_size") &&
                 strstr(fia_last_error(), "params_init") && pd == NULL,
             "struct_size 0 is INVALID_ARGUMENT naming the init function (\"%s\")", fia_last_error());
    p.struct_size = sizeof p + 8;
    sd = fia_fused_infer_attention_score_plan(ctx, &t, &p, &pd, NULL);
    tu_check(sd == FIA_STATUS_INVALID_ARGUMENT && pd == NULL, "a struct_size beyond this library's is INVALID_ARGUMENT");
    p.struct_size = sizeof p;
    p.num_heads = H, p.input_layout = FIA_LAYOUT_BSND, p.scale = 0.5;
    sd = fia_fused_infer_attention_score_plan(ctx, &t, &p, &pd, NULL);
    tu_check(sd == FIA_STATUS_SUCCESS, "the same call with struct_size set plans (%s)", fia_last_error());
    fia_plan_destroy(pa);
    fia_plan_destroy(pb);
    fia_plan_destroy(pd);
    fia_context_destroy(ctx);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20250611, "test_api");
    test_version_status();
    test_dtypes_layouts();
    test_tensor_init();
    test_contexts();
    test_conversions(seed);
    test_last_error();
    test_params_defaults();
    test_abi_fields();
    return tu_summary();
}
