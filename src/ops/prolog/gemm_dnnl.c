/*
 * gemm_dnnl.c - fia_gemm (gemm.h) on oneDNN's matmul primitive (bf16 x bf16 -> fp32 / bf16),
 * or, in a build without oneDNN, a stub that reports FIA_STATUS_UNSUPPORTED.
 *
 * Why oneDNN: Debian's OpenBLAS has no bf16 GEMM (sbgemm is not built in), so it would stream
 * fp32 weights (twice the bytes) and its sgemm measured 3.4x slower than oneDNN's AMX bf16
 * matmul at prefill sizes on this machine (README / the prolog commit notes the figures).
 * oneDNN dispatches at run time: AMX on Sapphire Rapids and later, AVX512-BF16 on Cooper Lake
 * and Zen 4/5, plain AVX-512 / AVX2 elsewhere.
 *
 * Threading: this oneDNN uses OpenMP. fia runs each tile on one of its own pool threads and
 * holds OpenMP to one thread for the call (omp_set_num_threads, restored afterwards), so the
 * library never splits a reduction across threads and results do not depend on the thread
 * count. Each slot (pool thread) owns its memory objects, whose data handles are set per run.
 */
#include "ops/prolog/gemm.h"

#include <stdlib.h>
#include <string.h>

#include "core/status.h"

#ifdef FIA_HAVE_DNNL

#include <oneapi/dnnl/dnnl.h>

/* libgomp: declared here so that no OpenMP compile flag is needed. */
extern int omp_get_max_threads(void);
extern void omp_set_num_threads(int n);

typedef struct gemm_slot {
    dnnl_memory_t a, b, c, scratch;
} gemm_slot;

struct fia_gemm {
    dnnl_primitive_t prim;
    int32_t slots;
    gemm_slot *slot;
    char impl[64];
};

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_init_state; /* 0 not tried, 1 ready, -1 failed */

static bool gemm_init(void) {
    /* Plans are made under the context lock, but two contexts may plan at once: a one-time
     * initialisation guarded by a GCC atomic is enough (creation is idempotent on failure). */
    static volatile int lock;
    if (__atomic_load_n(&g_init_state, __ATOMIC_ACQUIRE) != 0) return g_init_state > 0;
    while (__atomic_exchange_n(&lock, 1, __ATOMIC_ACQUIRE)) {
    }
    if (g_init_state == 0) {
        int ok = dnnl_engine_create(&g_engine, dnnl_cpu, 0) == dnnl_success &&
                 dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) ==
                     dnnl_success;
        __atomic_store_n(&g_init_state, ok ? 1 : -1, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&lock, 0, __ATOMIC_RELEASE);
    return g_init_state > 0;
}

bool fia_gemm_available(const char **why) {
    if (why) *why = "";
    return true;
}

void fia_gemm_destroy(fia_gemm *g) {
    if (!g) return;
    if (g->slot) {
        for (int32_t i = 0; i < g->slots; i++) {
            gemm_slot *s = &g->slot[i];
            if (s->a) dnnl_memory_destroy(s->a);
            if (s->b) dnnl_memory_destroy(s->b);
            if (s->c) dnnl_memory_destroy(s->c);
            if (s->scratch) dnnl_memory_destroy(s->scratch);
        }
        free(g->slot);
    }
    if (g->prim) dnnl_primitive_destroy(g->prim);
    free(g);
}

fia_status fia_gemm_create(const fia_gemm_desc *d, int32_t slots, fia_gemm **out,
                           size_t *scratch_bytes) {
    if (!gemm_init()) return FIA_UNSUPPORTED("oneDNN: no CPU engine could be created");
    fia_gemm *g = calloc(1, sizeof *g);
    if (!g) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
    g->slots = slots;
    g->slot = calloc((size_t)slots, sizeof *g->slot);
    if (!g->slot) {
        free(g);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
    }
    const dnnl_dims_t da = {d->M, d->K}, db = {d->K, d->N}, dc = {d->M, d->N};
    const dnnl_dims_t sa = {d->lda, 1}, sb = {d->ldb, 1}, sc = {d->ldc, 1};
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_data_type_t ct = d->c_dtype == FIA_DTYPE_FLOAT32 ? dnnl_f32 : dnnl_bf16;
    fia_status st = FIA_STATUS_SUCCESS;
    if (dnnl_memory_desc_init_by_strides(&ma, 2, da, dnnl_bf16, sa) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mb, 2, db, dnnl_bf16, sb) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mc, 2, dc, ct, sc) != dnnl_success ||
        dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc) != dnnl_success ||
        dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) != dnnl_success ||
        dnnl_primitive_create(&g->prim, pd) != dnnl_success) {
        st = FIA_UNSUPPORTED("oneDNN refused a bf16 matmul of [%lld x %lld] x [%lld x %lld]",
                             (long long)d->M, (long long)d->K, (long long)d->K,
                             (long long)d->N);
        goto done;
    }
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        impl) {
        strncpy(g->impl, impl, sizeof g->impl - 1);
    }
    const dnnl_memory_desc_t *ms = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *scratch_bytes = ms ? dnnl_memory_desc_get_size(ms) : 0;
    for (int32_t i = 0; i < slots; i++) {
        gemm_slot *s = &g->slot[i];
        if (dnnl_memory_create(&s->a, &ma, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->b, &mb, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->c, &mc, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            (ms && dnnl_memory_create(&s->scratch, ms, g_engine, DNNL_MEMORY_NONE) !=
                       dnnl_success)) {
            st = fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: oneDNN memory objects");
            goto done;
        }
    }
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != FIA_STATUS_SUCCESS) {
        fia_gemm_destroy(g);
        return st;
    }
    *out = g;
    return FIA_STATUS_SUCCESS;
}

bool fia_gemm_run(fia_gemm *g, int32_t slot, const void *a, const void *b, void *c,
                  void *scratch) {
    gemm_slot *s = &g->slot[slot];
    if (dnnl_memory_set_data_handle(s->a, (void *)a) != dnnl_success ||
        dnnl_memory_set_data_handle(s->b, (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(s->c, c) != dnnl_success)
        return false;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, s->a}, {DNNL_ARG_WEIGHTS, s->b},
                               {DNNL_ARG_DST, s->c}, {DNNL_ARG_SCRATCHPAD, s->scratch}};
    int nargs = 3;
    if (s->scratch) {
        if (dnnl_memory_set_data_handle(s->scratch, scratch) != dnnl_success) return false;
        nargs = 4;
    }
    const int old = omp_get_max_threads();
    if (old != 1) omp_set_num_threads(1);
    const bool ok = dnnl_primitive_execute(g->prim, g_stream, nargs, args) == dnnl_success &&
                    dnnl_stream_wait(g_stream) == dnnl_success;
    if (old != 1) omp_set_num_threads(old);
    return ok;
}

const char *fia_gemm_impl(const fia_gemm *g) { return g->impl; }

#else /* !FIA_HAVE_DNNL */

struct fia_gemm {
    int unused;
};

bool fia_gemm_available(const char **why) {
    if (why)
        *why = "fia was built without oneDNN (install libdnnl-dev, e.g. `make deps`, and "
               "reconfigure)";
    return false;
}

fia_status fia_gemm_create(const fia_gemm_desc *d, int32_t slots, fia_gemm **g,
                           size_t *scratch_bytes) {
    (void)d;
    (void)slots;
    (void)g;
    (void)scratch_bytes;
    return FIA_UNSUPPORTED("fia was built without oneDNN (install libdnnl-dev, e.g. `make "
                           "deps`, and reconfigure)");
}

bool fia_gemm_run(fia_gemm *g, int32_t slot, const void *a, const void *b, void *c,
                  void *scratch) {
    (void)g;
    (void)slot;
    (void)a;
    (void)b;
    (void)c;
    (void)scratch;
    return false;
}

const char *fia_gemm_impl(const fia_gemm *g) {
    (void)g;
    return "none";
}

void fia_gemm_destroy(fia_gemm *g) { free(g); }

#endif /* FIA_HAVE_DNNL */

/* ---- tiled gemm (library independent) ---- */

fia_status fia_tgemm_plan(fia_tgemm *t, const fia_gemm_desc *d, int64_t mc, int64_t nc,
                          int32_t slots) {
    memset(t, 0, sizeof *t);
    t->d = *d;
    t->mc = mc < d->M ? mc : d->M;
    t->nc = nc < d->N ? nc : d->N;
    if (t->mc < 1) t->mc = 1;
    if (t->nc < 1) t->nc = 1;
    t->mtiles = (d->M + t->mc - 1) / t->mc;
    t->ntiles = (d->N + t->nc - 1) / t->nc;
    if (d->M == 0 || d->N == 0) {
        t->mtiles = t->ntiles = 0;
        return FIA_STATUS_SUCCESS;
    }
    for (int i = 0; i < 4; i++) {
        const int64_t rows = (i & 2) ? d->M - (t->mtiles - 1) * t->mc : t->mc;
        const int64_t cols = (i & 1) ? d->N - (t->ntiles - 1) * t->nc : t->nc;
        if ((i & 2) && rows == t->mc) continue; /* no row tail: shape already planned */
        if ((i & 1) && cols == t->nc) continue;
        fia_gemm_desc s = *d;
        s.M = rows;
        s.N = cols;
        size_t sb = 0;
        fia_status st = fia_gemm_create(&s, slots, &t->g[i], &sb);
        if (st != FIA_STATUS_SUCCESS) {
            fia_tgemm_free(t);
            return st;
        }
        if (sb > t->scratch_bytes) t->scratch_bytes = sb;
    }
    return FIA_STATUS_SUCCESS;
}

bool fia_tgemm_run_task(fia_tgemm *t, int64_t task, int32_t slot, const void *a, const void *b,
                        void *c, void *scratch) {
    const int64_t mi = task / t->ntiles, ni = task % t->ntiles;
    const int64_t m0 = mi * t->mc, n0 = ni * t->nc;
    int k = 0;
    if (mi == t->mtiles - 1 && m0 + t->mc != t->d.M) k |= 2;
    if (ni == t->ntiles - 1 && n0 + t->nc != t->d.N) k |= 1;
    const size_t cs = t->d.c_dtype == FIA_DTYPE_FLOAT32 ? 4 : 2;
    return fia_gemm_run(t->g[k], slot, (const uint16_t *)a + m0 * t->d.lda,
                        (const uint16_t *)b + n0, (char *)c + (size_t)(m0 * t->d.ldc + n0) * cs,
                        scratch);
}

void fia_tgemm_free(fia_tgemm *t) {
    for (int i = 0; i < 4; i++) fia_gemm_destroy(t->g[i]);
    memset(t->g, 0, sizeof t->g);
}

/* ---- int8 gemms (the prolog's weight_quant_mode 1 and 2): A s8 x B s8 -> C s32 ----
 * The same interface as the bf16 gemms (fia_gemm_run, fia_gemm_destroy, the fixed tiles), with
 * int8 A and B and an int32 C (exact sums; the caller dequantizes). d->c_dtype is ignored. */

#ifdef FIA_HAVE_DNNL

fia_status fia_gemm_create_s8(const fia_gemm_desc *d, int32_t slots, fia_gemm **out,
                              size_t *scratch_bytes) {
    if (!gemm_init()) return FIA_UNSUPPORTED("oneDNN: no CPU engine could be created");
    fia_gemm *g = calloc(1, sizeof *g);
    if (!g) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
    g->slots = slots;
    g->slot = calloc((size_t)slots, sizeof *g->slot);
    if (!g->slot) {
        free(g);
        return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
    }
    const dnnl_dims_t da = {d->M, d->K}, db = {d->K, d->N}, dc = {d->M, d->N};
    const dnnl_dims_t sa = {d->lda, 1}, sb = {d->ldb, 1}, sc = {d->ldc, 1};
    dnnl_memory_desc_t ma, mb, mc;
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    fia_status st = FIA_STATUS_SUCCESS;
    if (dnnl_memory_desc_init_by_strides(&ma, 2, da, dnnl_s8, sa) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mb, 2, db, dnnl_s8, sb) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mc, 2, dc, dnnl_s32, sc) != dnnl_success ||
        dnnl_matmul_desc_init(&md, &ma, &mb, NULL, &mc) != dnnl_success ||
        dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) != dnnl_success ||
        dnnl_primitive_create(&g->prim, pd) != dnnl_success) {
        st = FIA_UNSUPPORTED("oneDNN refused an int8 matmul of [%lld x %lld] x [%lld x %lld]",
                             (long long)d->M, (long long)d->K, (long long)d->K,
                             (long long)d->N);
        goto done;
    }
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        impl) {
        strncpy(g->impl, impl, sizeof g->impl - 1);
    }
    const dnnl_memory_desc_t *ms = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *scratch_bytes = ms ? dnnl_memory_desc_get_size(ms) : 0;
    for (int32_t i = 0; i < slots; i++) {
        gemm_slot *s = &g->slot[i];
        if (dnnl_memory_create(&s->a, &ma, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->b, &mb, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->c, &mc, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            (ms && dnnl_memory_create(&s->scratch, ms, g_engine, DNNL_MEMORY_NONE) !=
                       dnnl_success)) {
            st = fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: oneDNN memory objects");
            goto done;
        }
    }
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != FIA_STATUS_SUCCESS) {
        fia_gemm_destroy(g);
        return st;
    }
    *out = g;
    return FIA_STATUS_SUCCESS;
}

#else /* !FIA_HAVE_DNNL */

fia_status fia_gemm_create_s8(const fia_gemm_desc *d, int32_t slots, fia_gemm **g,
                              size_t *scratch_bytes) {
    (void)d;
    (void)slots;
    (void)g;
    (void)scratch_bytes;
    return FIA_UNSUPPORTED("fia was built without oneDNN (install libdnnl-dev, e.g. `make "
                           "deps`, and reconfigure)");
}

#endif /* FIA_HAVE_DNNL */

fia_status fia_tgemm_plan_s8(fia_tgemm *t, const fia_gemm_desc *d, int64_t mc, int64_t nc,
                             int32_t slots) {
    memset(t, 0, sizeof *t);
    t->d = *d;
    t->d.c_dtype = FIA_DTYPE_INT32;
    t->mc = mc < d->M ? mc : d->M;
    t->nc = nc < d->N ? nc : d->N;
    if (t->mc < 1) t->mc = 1;
    if (t->nc < 1) t->nc = 1;
    t->mtiles = (d->M + t->mc - 1) / t->mc;
    t->ntiles = (d->N + t->nc - 1) / t->nc;
    if (d->M == 0 || d->N == 0) {
        t->mtiles = t->ntiles = 0;
        return FIA_STATUS_SUCCESS;
    }
    for (int i = 0; i < 4; i++) {
        const int64_t rows = (i & 2) ? d->M - (t->mtiles - 1) * t->mc : t->mc;
        const int64_t cols = (i & 1) ? d->N - (t->ntiles - 1) * t->nc : t->nc;
        if ((i & 2) && rows == t->mc) continue;
        if ((i & 1) && cols == t->nc) continue;
        fia_gemm_desc s = t->d;
        s.M = rows;
        s.N = cols;
        size_t sb = 0;
        fia_status st = fia_gemm_create_s8(&s, slots, &t->g[i], &sb);
        if (st != FIA_STATUS_SUCCESS) {
            fia_tgemm_free(t);
            return st;
        }
        if (sb > t->scratch_bytes) t->scratch_bytes = sb;
    }
    return FIA_STATUS_SUCCESS;
}

bool fia_tgemm_run_task_s8(fia_tgemm *t, int64_t task, int32_t slot, const void *a,
                           const void *b, void *c, void *scratch) {
    const int64_t mi = task / t->ntiles, ni = task % t->ntiles;
    const int64_t m0 = mi * t->mc, n0 = ni * t->nc;
    int k = 0;
    if (mi == t->mtiles - 1 && m0 + t->mc != t->d.M) k |= 2;
    if (ni == t->ntiles - 1 && n0 + t->nc != t->d.N) k |= 1;
    return fia_gemm_run(t->g[k], slot, (const int8_t *)a + m0 * t->d.lda,
                        (const int8_t *)b + n0, (int32_t *)c + (m0 * t->d.ldc + n0), scratch);
}
