/*
 * gemm_dnnl.c - fia_gemm (gemm.h) on oneDNN's matmul primitive (bf16 x bf16 -> fp32 / bf16),
 * or, in a build without oneDNN, a stub that reports FIA_STATUS_UNSUPPORTED.
 *
 * Why oneDNN: Debian's OpenBLAS has no bf16 GEMM (sbgemm is not built in), so it would stream
 * fp32 weights (twice the bytes) and its sgemm measured 3.4x slower than oneDNN's AMX bf16
 * matmul at prefill sizes on this machine (README / the prolog commit notes the figures).
 * oneDNN dispatches at run time: AMX on Sapphire Rapids and later, AVX512-BF16 on Cooper Lake
 * and Zen 4/5, plain AVX-512 elsewhere. oneDNN 2.6 has no bf16 matmul below AVX-512 (Zen 2/3,
 * Haswell..Broadwell Xeons, ONEDNN_MAX_CPU_ISA=AVX2): there a bf16 gemm runs on fia's
 * gemm_bf16b kernel at decode sizes (gemm_build_bf16b: the weights stay bf16) and falls back to
 * the library's fp32 matmul on widened operands above (gemm_build_f32).
 *
 * Threading: this oneDNN uses OpenMP. fia runs each tile on one of its own pool threads and
 * holds OpenMP to one thread for the call (omp_set_num_threads, restored afterwards), so the
 * library never splits a reduction across threads and results do not depend on the thread
 * count. Each slot (pool thread) owns its memory objects, whose data handles are set per run.
 */
#define _DEFAULT_SOURCE /* madvise */
#include "ops/prolog/gemm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/convert.h"
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
    /* packed_b: the layout the primitive wants B in, and the reorder plain -> packed */
    bool packed;
    dnnl_memory_desc_t mb_plain, mb_packed;
    size_t packed_bytes;
    /* packed_b: oneDNN 2.6's blocked (brgemm) matmul takes only dense A and C, so a strided
     * A is first copied into the scratch (a_off) and C computed there (c_off), then copied
     * out; a_copy / c_copy are 0 when the strides are already dense (or M == 1) */
    int64_t M, N, K, lda, ldc;
    size_t as, cs, lib_scratch, a_off, c_off; /* element sizes of A and C */
    bool a_copy, c_copy;
    bool wt;                       /* desc.wt: C^T = B^T A^T, C^T in the scratch at c_off */
    dnnl_primitive_t reorder;      /* plain -> packed, made at the first fia_gemm_pack_b */
    dnnl_memory_t rsrc, rdst;
    /* the fp32 fallback (the library has no bf16 matmul on this CPU: oneDNN 2.6 without
     * AVX-512): an fp32 matmul on widened operands. A (row stride lda) is widened into the
     * scratch at a_off; B is the plan's fp32 copy [K x N] (packed_b: widened once by
     * fia_gemm_pack_b) or widened per run into the scratch at b_off; C is written in place
     * (fp32) or computed in the scratch at c_off and rounded to bf16 (nearest even) */
    bool f32;
    int64_t ldb;
    size_t b_off;
    /* an int8 gemm on fia's kernels (desc.i8): the u8-offset A (scratch at a_off), B in fia's
     * pack, made at plan time (packed) or per run (scratch at b_off, its row pointers at
     * rows_off), the exact sums converted from their fp32 form to int32 in C */
    const fia_i8_kernels *i8;
    size_t rows_off;
    /* a bf16 gemm on fia's gemm_bf16b (desc.core, the fp32 fallback's case at M <=
     * FIA_GEMM_BF16B_MAX_M): A widened into the scratch at a_off, B in the bf16 pack (made at
     * plan time, or per run into the scratch at b_off), C in place (fp32) or in the scratch at
     * c_off and rounded to bf16 (nearest even) */
    const fia_kernels *bk;
};

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static int g_init_state; /* 0 not tried, 1 ready, -1 failed */
static bool g_s8_exact;  /* the library's int8 matmul has exact int32 sums: AVX-512 VNNI (or
                          * AMX) within its ISA (ONEDNN_MAX_CPU_ISA counts) */

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
        /* below AVX-512 VNNI, oneDNN 2.6's s8 x s8 matmul adds u8 x s8 pairs in saturating
         * int16 (vpmaddubsw): measured wrong by up to 2.5e5 at K = 7168 under
         * ONEDNN_MAX_CPU_ISA=AVX2 and AVX512_CORE. The VNNI bit of the ISA masks. */
        g_s8_exact = ((unsigned)dnnl_get_effective_cpu_isa() & 0x40u) != 0;
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
    if (g->reorder) dnnl_primitive_destroy(g->reorder);
    if (g->rsrc) dnnl_memory_destroy(g->rsrc);
    if (g->rdst) dnnl_memory_destroy(g->rdst);
    free(g);
}

/* desc.wt: the library computes C^T [N x M] = B^T [N x K] . A^T [K x M], with B^T (the
 * weights, packed at plan time by a reorder that transposes them) as its dense row-major
 * source and A^T as its "ba" (transposed) weights, A copied to a dense scratch first when its
 * rows are strided; C^T is written dense into the scratch and copied out transposed. With
 * M = tokens small, the library maps the long weight dimension to its row blocking and streams
 * the weight rows directly (faster than a packed B at M = 2..16: the figures are at
 * PRO_WT_MAX_T in mla_prolog.c). */
/* The dtypes of a gemm: bf16 (or int8) A and B; C bf16, fp32 or exact int32 sums. */
static dnnl_data_type_t gemm_ab_type(const fia_gemm_desc *d) {
    return d->c_dtype == FIA_DTYPE_INT32 ? dnnl_s8 : dnnl_bf16;
}
static dnnl_data_type_t gemm_c_type(const fia_gemm_desc *d) {
    return d->c_dtype == FIA_DTYPE_INT32   ? dnnl_s32
           : d->c_dtype == FIA_DTYPE_FLOAT32 ? dnnl_f32
                                             : dnnl_bf16;
}

/* The primitive of src . weights -> dst, planned for the one thread it runs on (the library
 * sizes its blocking by the thread count at creation: with more it may even pick another
 * implementation), with the caller's scratch memory; its implementation name (behind `tag`) goes
 * to g->impl. Returns its descriptor (the caller queries and destroys it), NULL when refused. */
static dnnl_primitive_desc_t gemm_prim(fia_gemm *g, const dnnl_memory_desc_t *src,
                                       const dnnl_memory_desc_t *wei,
                                       const dnnl_memory_desc_t *dst, const char *tag) {
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    const int old_threads = omp_get_max_threads();
    if (old_threads != 1) omp_set_num_threads(1);
    if (dnnl_matmul_desc_init(&md, src, wei, NULL, dst) != dnnl_success ||
        dnnl_primitive_attr_create(&attr) != dnnl_success ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) !=
            dnnl_success ||
        dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) != dnnl_success ||
        dnnl_primitive_create(&g->prim, pd) != dnnl_success) {
        if (pd) dnnl_primitive_desc_destroy(pd);
        pd = NULL;
    }
    if (old_threads != 1) omp_set_num_threads(old_threads);
    if (attr) dnnl_primitive_attr_destroy(attr);
    const char *impl = NULL;
    if (pd && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
        impl)
        snprintf(g->impl, sizeof g->impl, "%s%s", tag, impl);
    return pd;
}

/* The fields every form shares: shapes, element sizes, the scratch layout (the library's
 * scratch, then the dense A copy when a_copy, then C when c_copy; g->a_copy / c_copy set by the
 * caller), and each slot's memory objects (a, b, c: the descriptors bound to SRC / WEIGHTS / DST
 * in the caller's order; run() gives the addresses). */
static fia_status gemm_slots(fia_gemm *g, const fia_gemm_desc *d, dnnl_primitive_desc_t pd,
                             const dnnl_memory_desc_t *ma, const dnnl_memory_desc_t *mb,
                             const dnnl_memory_desc_t *mc, size_t *scratch_bytes) {
    const dnnl_memory_desc_t *ms = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *scratch_bytes = ms ? dnnl_memory_desc_get_size(ms) : 0;
    g->M = d->M;
    g->N = d->N;
    g->K = d->K;
    g->lda = d->lda;
    g->ldc = d->ldc;
    g->cs = gemm_c_type(d) == dnnl_bf16 ? 2 : 4;
    g->as = gemm_ab_type(d) == dnnl_s8 ? 1 : 2;
    g->lib_scratch = (*scratch_bytes + 63) / 64 * 64;
    g->a_off = g->c_off = g->lib_scratch;
    if (g->a_copy) g->c_off += ((size_t)(d->M * d->K) * g->as + 63) / 64 * 64;
    if (g->c_copy) *scratch_bytes = g->c_off + (size_t)(d->M * d->N) * g->cs;
    else if (g->a_copy) *scratch_bytes = g->c_off;
    for (int32_t i = 0; i < g->slots; i++) {
        gemm_slot *s = &g->slot[i];
        if (dnnl_memory_create(&s->a, ma, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->b, mb, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            dnnl_memory_create(&s->c, mc, g_engine, DNNL_MEMORY_NONE) != dnnl_success ||
            (ms && dnnl_memory_create(&s->scratch, ms, g_engine, DNNL_MEMORY_NONE) !=
                       dnnl_success))
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: oneDNN memory objects");
    }
    return FIA_STATUS_SUCCESS;
}

/* The builders below fill a fresh gemm; *refused is set (and no message) when the library
 * refuses the primitive, so that fia_gemm_create may fall back before it reports. */
static fia_status gemm_build_wt(const fia_gemm_desc *d, fia_gemm *g, size_t *scratch_bytes,
                                bool *refused) {
    const dnnl_dims_t dw = {d->N, d->K}, dx = {d->K, d->M}, dc = {d->N, d->M};
    const dnnl_dims_t sw_plain = {1, d->ldb}; /* the caller's B [K x N], viewed as B^T */
    const dnnl_data_type_t abt = gemm_ab_type(d);
    dnnl_memory_desc_t mw, mwp, mx, mc;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&mw, 2, dw, abt, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mwp, 2, dw, abt, sw_plain) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&mx, 2, dx, abt, dnnl_ba) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&mc, 2, dc, gemm_c_type(d), dnnl_ab) != dnnl_success ||
        !(pd = gemm_prim(g, &mw, &mx, &mc, "wt:"))) {
        *refused = true;
        return FIA_STATUS_UNSUPPORTED;
    }
    g->wt = true;
    g->a_copy = d->M > 1 && d->lda != d->K;
    g->c_copy = true;
    g->packed = true;
    g->mb_plain = mwp;
    g->mb_packed = mw;
    g->packed_bytes = dnnl_memory_desc_get_size(&mw);
    /* a: the caller's A (the library's weights), b: the packed B^T (its source) */
    const fia_status st = gemm_slots(g, d, pd, &mx, &mw, &mc, scratch_bytes);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static fia_status gemm_build_plain(const fia_gemm_desc *d, fia_gemm *g, size_t *scratch_bytes,
                                   bool *refused) {
    const dnnl_dims_t da = {d->M, d->K}, db = {d->K, d->N}, dc = {d->M, d->N};
    /* packed: dense A and C (a row stride is meaningless for one row) */
    g->a_copy = d->packed_b && d->M > 1 && d->lda != d->K;
    g->c_copy = d->packed_b && d->M > 1 && d->ldc != d->N;
    const dnnl_dims_t sa = {d->packed_b ? d->K : d->lda, 1}, sb = {d->ldb, 1},
                      sc = {d->packed_b ? d->N : d->ldc, 1};
    dnnl_memory_desc_t ma, mb, mc, mb_any;
    dnnl_primitive_desc_t pd = NULL;
    const dnnl_data_type_t abt = gemm_ab_type(d);
    fia_status st = FIA_STATUS_SUCCESS;
    if (dnnl_memory_desc_init_by_strides(&ma, 2, da, abt, sa) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mb, 2, db, abt, sb) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mc, 2, dc, gemm_c_type(d), sc) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&mb_any, 2, db, abt, dnnl_format_tag_any) !=
            dnnl_success ||
        !(pd = gemm_prim(g, &ma, d->packed_b ? &mb_any : &mb, &mc, ""))) {
        *refused = true;
        return FIA_STATUS_UNSUPPORTED;
    }
    if (d->packed_b) {
        const dnnl_memory_desc_t *mw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (!mw) {
            st = FIA_UNSUPPORTED("oneDNN: no weights layout for a packed matmul");
            goto done;
        }
        g->packed = true;
        g->mb_plain = mb;
        g->mb_packed = *mw;
        g->packed_bytes = dnnl_memory_desc_get_size(mw);
        mb = *mw; /* the slots' B objects take the packed copy */
    }
    st = gemm_slots(g, d, pd, &ma, &mb, &mc, scratch_bytes);
done:
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static size_t align64(size_t n) { return (n + 63) / 64 * 64; }

/* The fp32 fallback (struct fia_gemm, f32): C = A . B on fp32 copies of the bf16 operands, with
 * the library's fp32 accumulation. The products of two bf16 values are exact in fp32, so it
 * differs from the bf16 matmul only in the order of the fp32 sums. desc.wt (decode, packed B):
 * as the bf16 form, C^T = B^T A^T with the plan's fp32 B^T [N x K] as the library's streamed
 * source and C^T in the scratch (its sgemm then streams the weights once instead of packing
 * them per call). */
static fia_status gemm_build_f32(const fia_gemm_desc *d, fia_gemm *g, size_t *scratch_bytes,
                                 bool *refused) {
    const bool t = d->wt;
    const bool c_f32 = d->c_dtype == FIA_DTYPE_FLOAT32 && !t; /* written in place */
    const dnnl_dims_t da = {t ? d->N : d->M, d->K}, db = {d->K, t ? d->M : d->N},
                      dc = {t ? d->N : d->M, t ? d->M : d->N}, dbp = {d->K, d->N};
    const dnnl_dims_t sa = {d->K, 1}, sb = {t ? 1 : d->N, t ? d->K : 1}, sbp = {d->ldb, 1},
                      sc = {c_f32 ? d->ldc : dc[1], 1};
    dnnl_memory_desc_t ma, mb, mbp, mc;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_memory_desc_init_by_strides(&ma, 2, da, dnnl_f32, sa) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mb, 2, db, dnnl_f32, sb) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mbp, 2, dbp, dnnl_bf16, sbp) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&mc, 2, dc, dnnl_f32, sc) != dnnl_success ||
        !(pd = gemm_prim(g, &ma, &mb, &mc, t ? "f32:wt:" : "f32:"))) {
        *refused = true;
        return FIA_STATUS_UNSUPPORTED;
    }
    g->f32 = true;
    g->wt = t;
    g->ldb = d->ldb;
    const fia_status st = gemm_slots(g, d, pd, &ma, &mb, &mc, scratch_bytes);
    dnnl_primitive_desc_destroy(pd);
    if (st != FIA_STATUS_SUCCESS) return st;
    /* scratch: the library's, A in fp32, B in fp32 (unpacked gemms), C (C^T) in fp32 unless
     * written in place */
    g->a_off = g->lib_scratch;
    g->b_off = g->a_off + align64((size_t)(d->M * d->K) * 4);
    g->c_off = g->b_off + (d->packed_b ? 0 : align64((size_t)(d->K * d->N) * 4));
    *scratch_bytes = g->c_off + (c_f32 ? 0 : (size_t)(d->M * d->N) * 4);
    if (d->packed_b) { /* the plan's copy: B (B^T) widened to a dense fp32 [K x N] ([N x K]) */
        g->packed = true;
        g->mb_plain = mbp;
        g->mb_packed = t ? ma : mb;
        g->packed_bytes = (size_t)(d->K * d->N) * 4;
    }
    return FIA_STATUS_SUCCESS;
}

/* The shape, strides and pack flag of a gemm on fia's own kernels (no library primitive). */
static void gemm_own(const fia_gemm_desc *d, fia_gemm *g) {
    g->M = d->M;
    g->N = d->N;
    g->K = d->K;
    g->lda = d->lda;
    g->ldb = d->ldb;
    g->ldc = d->ldc;
    g->packed = d->packed_b;
    g->a_off = 0;
}

/* An int8 gemm on fia's kernels (struct fia_gemm, i8; gemm.h): no library primitive. Scratch:
 * A as u8 (x ^ 0x80, a_offset 128: the exact s8 x s8 sums), then, unless B is packed at plan
 * time (packed_b: fia_gemm_pack_b makes the kernels' pack once), the pack of B and its row
 * pointers. */
static fia_status gemm_build_i8(const fia_gemm_desc *d, fia_gemm *g, size_t *scratch_bytes) {
    gemm_own(d, g);
    g->i8 = d->i8;
    g->as = 1;
    g->cs = 4;
    snprintf(g->impl, sizeof g->impl, "fia-i8:%s", d->i8->name);
    g->packed_bytes = d->i8->pack_bytes(d->N, d->K);
    g->b_off = align64((size_t)(d->M * d->K));
    if (g->packed) {
        *scratch_bytes = g->b_off;
        return FIA_STATUS_SUCCESS;
    }
    g->rows_off = g->b_off + align64(g->packed_bytes);
    *scratch_bytes = g->rows_off + (size_t)d->K * sizeof(const int8_t *);
    return FIA_STATUS_SUCCESS;
}

/* A bf16 gemm on fia's gemm_bf16b (struct fia_gemm, bk; gemm.h): no library primitive. */
static fia_status gemm_build_bf16b(const fia_gemm_desc *d, fia_gemm *g, size_t *scratch_bytes) {
    gemm_own(d, g);
    g->bk = d->core;
    g->as = 2;
    g->cs = d->c_dtype == FIA_DTYPE_FLOAT32 ? 4 : 2;
    snprintf(g->impl, sizeof g->impl, "fia-bf16b:%s", d->core->name);
    g->packed_bytes = (size_t)fia_bf16b_pack_elems(d->N, d->K) * 2;
    g->b_off = align64((size_t)(d->M * d->K) * 4);
    g->c_off = g->b_off + (g->packed ? 0 : align64(g->packed_bytes));
    *scratch_bytes = g->c_off + (g->cs == 4 ? 0 : (size_t)(d->M * d->N) * 4);
    return FIA_STATUS_SUCCESS;
}

static fia_gemm *gemm_new(int32_t slots) {
    fia_gemm *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->slots = slots;
    g->slot = calloc((size_t)slots, sizeof *g->slot);
    if (!g->slot) {
        free(g);
        return NULL;
    }
    return g;
}

fia_status fia_gemm_create(const fia_gemm_desc *d, int32_t slots, fia_gemm **out,
                           size_t *scratch_bytes) {
    if (!gemm_init()) return FIA_UNSUPPORTED("oneDNN: no CPU engine could be created");
    if (d->wt && !d->packed_b) return FIA_UNSUPPORTED("gemm: the transposed form needs packed B");
    const bool s8 = d->c_dtype == FIA_DTYPE_INT32; /* int8 A and B, exact int32 sums */
    if (s8 && !g_s8_exact && !d->i8)
        return FIA_UNSUPPORTED("oneDNN's int8 matmul is not exact without AVX-512 VNNI (on this "
                               "CPU or under ONEDNN_MAX_CPU_ISA) and no int8 kernels were given");
    fia_gemm *g = gemm_new(slots);
    if (!g) return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
    if (s8 && d->i8) {
        const fia_status st8 = gemm_build_i8(d, g, scratch_bytes);
        if (st8 != FIA_STATUS_SUCCESS) {
            fia_gemm_destroy(g);
            return st8;
        }
        *out = g;
        return FIA_STATUS_SUCCESS;
    }
    bool refused = false;
    fia_status st = d->wt ? gemm_build_wt(d, g, scratch_bytes, &refused)
                          : gemm_build_plain(d, g, scratch_bytes, &refused);
    bool fallback = false;
    if (refused && !s8) {
        /* no bf16 matmul in the library on this CPU (oneDNN 2.6 needs AVX-512 for it): fia's
         * gemm_bf16b at decode sizes, else the library's fp32 one on widened operands */
        fia_gemm_destroy(g);
        if (!(g = gemm_new(slots)))
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory");
        refused = false;
        fallback = true;
        st = d->core && d->M <= FIA_GEMM_BF16B_MAX_M
                 ? gemm_build_bf16b(d, g, scratch_bytes)
                 : gemm_build_f32(d, g, scratch_bytes, &refused);
    }
    if (refused)
        st = FIA_UNSUPPORTED("oneDNN refused %s%s matmul of [%lld x %lld] x [%lld x %lld]%s",
                             s8 ? "an int8" : "a bf16", d->wt ? " transposed" : "",
                             (long long)d->M, (long long)d->K, (long long)d->K, (long long)d->N,
                             fallback ? " and its fp32 fallback (neither is available on this "
                                        "CPU or under ONEDNN_MAX_CPU_ISA)" : "");
    if (st != FIA_STATUS_SUCCESS) {
        fia_gemm_destroy(g);
        return st;
    }
    *out = g;
    return FIA_STATUS_SUCCESS;
}

/* One execution of the primitive on the slot's memory objects: src and wei (two of the slot's
 * a, b) pointed at src_p and wei_p, its c at dst, its scratchpad at scratch; OpenMP held to one
 * thread for the call (the file comment). */
static bool gemm_exec(const fia_gemm *g, gemm_slot *s, dnnl_memory_t src, const void *src_p,
                      dnnl_memory_t wei, const void *wei_p, void *dst, void *scratch) {
    if (dnnl_memory_set_data_handle(src, (void *)src_p) != dnnl_success ||
        dnnl_memory_set_data_handle(wei, (void *)wei_p) != dnnl_success ||
        dnnl_memory_set_data_handle(s->c, dst) != dnnl_success ||
        (s->scratch && dnnl_memory_set_data_handle(s->scratch, scratch) != dnnl_success))
        return false;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei},
                               {DNNL_ARG_DST, s->c}, {DNNL_ARG_SCRATCHPAD, s->scratch}};
    const int old = omp_get_max_threads();
    if (old != 1) omp_set_num_threads(1);
    const bool ok = dnnl_primitive_execute(g->prim, g_stream, s->scratch ? 4 : 3, args) ==
                        dnnl_success &&
                    dnnl_stream_wait(g_stream) == dnnl_success;
    if (old != 1) omp_set_num_threads(old);
    return ok;
}

/* fia's int8 pack of B [K x N] (row stride ldb) into packed, through K row pointers in rows. */
static void gemm_pack_i8(const fia_gemm *g, const void *b, const int8_t **rows, void *packed) {
    for (int64_t k = 0; k < g->K; k++) rows[k] = (const int8_t *)b + k * g->ldb;
    g->i8->pack_b_kn(rows, g->K, g->N, packed);
}

/* The run of an int8 gemm on fia's kernels: B packed (or packed now), A offset to u8, the exact
 * sums (as fp32: integers, the same value the caller's (float) of the int32 gives) back to
 * int32 in place. */
static bool gemm_run_i8(fia_gemm *g, const void *a, const void *b, void *c, void *scratch) {
    const int64_t M = g->M, N = g->N, K = g->K;
    char *sc = scratch;
    const void *pk = b; /* packed at plan time, or packed here */
    if (!g->packed) {
        gemm_pack_i8(g, b, (const int8_t **)(void *)(sc + g->rows_off), sc + g->b_off);
        pk = sc + g->b_off;
    }
    uint8_t *au = (uint8_t *)(sc + g->a_off);
    for (int64_t m = 0; m < M; m++)
        g->i8->s8_to_u8_offset((const int8_t *)a + m * g->lda, au + m * K, K);
    g->i8->gemm(M, N, K, au, K, pk, c, g->ldc, NULL, NULL, 128);
    for (int64_t m = 0; m < M; m++) {
        char *cr = (char *)c + (size_t)(m * g->ldc) * 4;
        for (int64_t n = 0; n < N; n++) {
            float f;
            memcpy(&f, cr + 4 * n, 4);
            const int32_t v = (int32_t)f;
            memcpy(cr + 4 * n, &v, 4);
        }
    }
    return true;
}

/* The run of a bf16 gemm on gemm_bf16b: A widened into the scratch, B packed (at plan time or
 * now), C computed in place (fp32) or in the scratch and rounded to bf16. */
static bool gemm_run_bf16b(fia_gemm *g, const void *a, const void *b, void *c, void *scratch) {
    const int64_t M = g->M, N = g->N, K = g->K;
    char *sc = scratch;
    float *af = (float *)(sc + g->a_off);
    for (int64_t m = 0; m < M; m++)
        g->bk->bf16_to_f32((const uint16_t *)a + m * g->lda, af + m * K, K);
    const uint16_t *pk = b;
    if (!g->packed) {
        fia_bf16b_pack(b, g->ldb, K, N, (uint16_t *)(sc + g->b_off));
        pk = (const uint16_t *)(sc + g->b_off);
    }
    if (g->cs == 4) {
        g->bk->gemm_bf16b(M, N, K, af, K, pk, c, g->ldc);
        return true;
    }
    float *cf = (float *)(sc + g->c_off);
    g->bk->gemm_bf16b(M, N, K, af, K, pk, cf, N);
    for (int64_t m = 0; m < M; m++) g->bk->f32_to_bf16(cf + m * N, (uint16_t *)c + m * g->ldc, N);
    return true;
}

/* The fp32 fallback's run: A (and an unpacked B) widened into the scratch, the fp32 matmul,
 * a bf16 C rounded to nearest even from the fp32 result. */
static bool gemm_run_f32(fia_gemm *g, gemm_slot *s, const void *a, const void *b, void *c,
                         void *scratch) {
    const int64_t M = g->M, N = g->N, K = g->K;
    float *af = (float *)((char *)scratch + g->a_off);
    for (int64_t m = 0; m < M; m++) {
        const uint16_t *ar = (const uint16_t *)a + m * g->lda;
        float *dr = af + m * K;
        for (int64_t k = 0; k < K; k++) dr[k] = fia_cvt_bf16_to_f32(ar[k]);
    }
    const float *bf = b;
    if (!g->packed) {
        float *bw = (float *)((char *)scratch + g->b_off);
        for (int64_t k = 0; k < K; k++) {
            const uint16_t *br = (const uint16_t *)b + k * g->ldb;
            for (int64_t n = 0; n < N; n++) bw[k * N + n] = fia_cvt_bf16_to_f32(br[n]);
        }
        bf = bw;
    }
    const bool in_place = g->cs == 4 && !g->wt;
    float *cf = in_place ? c : (float *)((char *)scratch + g->c_off);
    /* wt: the library's source is B^T, its weights A^T */
    const bool ok = gemm_exec(g, s, s->a, g->wt ? bf : af, s->b, g->wt ? af : bf, cf, scratch);
    if (ok && !in_place) /* C (C^T [N x M] when wt) in fp32 -> the caller's C */
        for (int64_t m = 0; m < M; m++) {
            char *cr = (char *)c + (size_t)(m * g->ldc) * g->cs;
            for (int64_t n = 0; n < N; n++) {
                const float v = g->wt ? cf[n * M + m] : cf[m * N + n];
                if (g->cs == 4)
                    memcpy(cr + 4 * n, &v, 4);
                else {
                    const uint16_t h = fia_cvt_f32_to_bf16(v);
                    memcpy(cr + 2 * n, &h, 2);
                }
            }
        }
    return ok;
}

bool fia_gemm_run(fia_gemm *g, int32_t slot, const void *a, const void *b, void *c,
                  void *scratch) {
    gemm_slot *s = &g->slot[slot];
    if (g->i8) return gemm_run_i8(g, a, b, c, scratch);
    if (g->bk) return gemm_run_bf16b(g, a, b, c, scratch);
    if (g->f32) return gemm_run_f32(g, s, a, b, c, scratch);
    if (g->a_copy) { /* the A rows into the dense scratch copy */
        char *ad = (char *)scratch + g->a_off;
        for (int64_t m = 0; m < g->M; m++)
            memcpy(ad + (size_t)(m * g->K) * g->as, (const char *)a + (size_t)(m * g->lda) * g->as,
                   (size_t)g->K * g->as);
        a = ad;
    }
    void *cd = g->c_copy ? (char *)scratch + g->c_off : c;
    /* wt: the library's source is the slot's b (B^T), its weights the slot's a */
    const bool ok = g->wt ? gemm_exec(g, s, s->b, b, s->a, a, cd, scratch)
                          : gemm_exec(g, s, s->a, a, s->b, b, cd, scratch);
    if (ok && g->wt) { /* C^T [N x M] dense -> C rows at the caller's stride */
        if (g->cs == 4) {
            const uint32_t *ct = cd;
            for (int64_t m = 0; m < g->M; m++) {
                uint32_t *cr = (uint32_t *)c + m * g->ldc;
                for (int64_t n = 0; n < g->N; n++) cr[n] = ct[n * g->M + m];
            }
        } else {
            const uint16_t *ct = cd;
            for (int64_t m = 0; m < g->M; m++) {
                uint16_t *cr = (uint16_t *)c + m * g->ldc;
                for (int64_t n = 0; n < g->N; n++) cr[n] = ct[n * g->M + m];
            }
        }
    } else if (ok && g->c_copy) /* the dense C rows out to the caller's stride */
        for (int64_t m = 0; m < g->M; m++)
            memcpy((char *)c + (size_t)(m * g->ldc) * g->cs, (char *)cd + (size_t)(m * g->N) * g->cs,
                   (size_t)g->N * g->cs);
    return ok;
}

const char *fia_gemm_impl(const fia_gemm *g) { return g->impl; }

bool fia_gemm_widened(const fia_gemm *g) { return g->f32 || g->i8 || g->bk; }

size_t fia_gemm_packed_b_bytes(const fia_gemm *g) { return g->packed ? g->packed_bytes : 0; }

bool fia_gemm_same_packing(const fia_gemm *x, const fia_gemm *y) {
    if (x->i8 || y->i8) /* fia's pack depends on K x N alone */
        return x->packed && y->packed && x->i8 && y->i8 && x->K == y->K && x->N == y->N;
    if (x->bk || y->bk)
        return x->packed && y->packed && x->bk && y->bk && x->K == y->K && x->N == y->N;
    return x->packed && y->packed &&
           dnnl_memory_desc_equal(&x->mb_packed, &y->mb_packed) &&
           dnnl_memory_desc_equal(&x->mb_plain, &y->mb_plain);
}

static bool gemm_pack_b(fia_gemm *g, const void *b, void *packed);

bool fia_gemm_pack_b(fia_gemm *g, const void *b, void *packed) {
    /* one OpenMP thread for the whole packing (the reorder's creation included): fia's pool
     * threads may be spinning beside it, and a team of libgomp threads spinning at its
     * barriers against them cost seconds per plan on a busy CPU (measured) */
    const int old = omp_get_max_threads();
    if (old != 1) omp_set_num_threads(1);
    const bool ok = gemm_pack_b(g, b, packed);
    if (old != 1) omp_set_num_threads(old);
    return ok;
}

static bool gemm_pack_b(fia_gemm *g, const void *b, void *packed) {
    if (!g->packed) return false;
    if (g->i8) { /* fia's int8 kernels: their pack of B [K x N] (row stride ldb) */
        const int8_t **rows = malloc((size_t)(g->K > 0 ? g->K : 1) * sizeof *rows);
        if (!rows) return false;
        gemm_pack_i8(g, b, rows, packed);
        free(rows);
        return true;
    }
    if (g->bk) { /* gemm_bf16b: the bf16 pack */
        fia_bf16b_pack(b, g->ldb, g->K, g->N, packed);
        return true;
    }
    if (g->f32) { /* the fp32 fallback: B widened to a dense fp32 [K x N] (wt: B^T [N x K]) */
        float *pf = packed;
        for (int64_t k = 0; k < g->K; k++) {
            const uint16_t *br = (const uint16_t *)b + k * g->ldb;
            if (g->wt)
                for (int64_t n = 0; n < g->N; n++) pf[n * g->K + k] = fia_cvt_bf16_to_f32(br[n]);
            else
                for (int64_t n = 0; n < g->N; n++) pf[k * g->N + n] = fia_cvt_bf16_to_f32(br[n]);
        }
        return true;
    }
    if (!g->reorder) { /* one reorder per gemm shape, reused for every panel */
        dnnl_primitive_desc_t rpd = NULL;
        bool ok = dnnl_reorder_primitive_desc_create(&rpd, &g->mb_plain, g_engine,
                                                     &g->mb_packed, g_engine, NULL) ==
                      dnnl_success &&
                  dnnl_primitive_create(&g->reorder, rpd) == dnnl_success &&
                  dnnl_memory_create(&g->rsrc, &g->mb_plain, g_engine, DNNL_MEMORY_NONE) ==
                      dnnl_success &&
                  dnnl_memory_create(&g->rdst, &g->mb_packed, g_engine, DNNL_MEMORY_NONE) ==
                      dnnl_success;
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        if (!ok) return false;
    }
    if (dnnl_memory_set_data_handle(g->rsrc, (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(g->rdst, packed) != dnnl_success)
        return false;
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, g->rsrc}, {DNNL_ARG_TO, g->rdst}};
    return dnnl_primitive_execute(g->reorder, g_stream, 2, args) == dnnl_success &&
           dnnl_stream_wait(g_stream) == dnnl_success;
}

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

bool fia_gemm_widened(const fia_gemm *g) {
    (void)g;
    return false;
}

void fia_gemm_destroy(fia_gemm *g) { free(g); }

size_t fia_gemm_packed_b_bytes(const fia_gemm *g) {
    (void)g;
    return 0;
}

bool fia_gemm_same_packing(const fia_gemm *x, const fia_gemm *y) {
    (void)x;
    (void)y;
    return false;
}

bool fia_gemm_pack_b(fia_gemm *g, const void *b, void *packed) {
    (void)g;
    (void)b;
    (void)packed;
    return false;
}

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

/* Tile `task` of a tgemm: its shape variant k, its first column and the byte offsets of A and C
 * it starts at. */
typedef struct tgemm_tile {
    int k;
    int64_t n0;
    size_t a_off, c_off; /* bytes */
} tgemm_tile;

static tgemm_tile tgemm_tile_of(const fia_tgemm *t, int64_t task) {
    const int64_t mi = task / t->ntiles, ni = task % t->ntiles;
    const int64_t m0 = mi * t->mc, n0 = ni * t->nc;
    tgemm_tile r = {0, n0, 0, 0};
    if (mi == t->mtiles - 1 && m0 + t->mc != t->d.M) r.k |= 2;
    if (ni == t->ntiles - 1 && n0 + t->nc != t->d.N) r.k |= 1;
    const bool s8 = t->d.c_dtype == FIA_DTYPE_INT32;
    r.a_off = (size_t)(m0 * t->d.lda) * (s8 ? 1 : 2);
    r.c_off = (size_t)(m0 * t->d.ldc + n0) * (t->d.c_dtype == FIA_DTYPE_BFLOAT16 ? 2 : 4);
    return r;
}

bool fia_tgemm_run_task(fia_tgemm *t, int64_t task, int32_t slot, const void *a, const void *b,
                        void *c, void *scratch) {
    const tgemm_tile x = tgemm_tile_of(t, task);
    const size_t bs = t->d.c_dtype == FIA_DTYPE_INT32 ? 1 : 2;
    return fia_gemm_run(t->g[x.k], slot, (const char *)a + x.a_off,
                        (const char *)b + (size_t)x.n0 * bs, (char *)c + x.c_off, scratch);
}

fia_status fia_tgemm_pack(fia_tgemm *t, const void *b, int64_t batch, int64_t batch_stride) {
    if (!t->d.packed_b) return FIA_UNSUPPORTED("gemm: packing B of a gemm planned unpacked");
    t->batch = batch;
    if (t->mtiles == 0 || batch == 0) return FIA_STATUS_SUCCESS;
    const int64_t es = t->d.c_dtype == FIA_DTYPE_INT32 ? 1 : 2; /* bytes of a B element */
    /* one panel size for every column tile: the largest packed size among the shapes */
    size_t pb = 0;
    for (int i = 0; i < 4; i++)
        if (t->g[i] && fia_gemm_packed_b_bytes(t->g[i]) > pb) pb = fia_gemm_packed_b_bytes(t->g[i]);
    t->panel_bytes = (pb + 63) / 64 * 64;
    /* row variant 1 (tail rows) shares variant 0's panels when the layouts agree */
    const bool tail_rows = t->g[2] != NULL;
    const bool share = !tail_rows || (fia_gemm_same_packing(t->g[0], t->g[2]) &&
                                      (!t->g[1] || fia_gemm_same_packing(t->g[1], t->g[3])));
    const size_t total = t->panel_bytes * (size_t)(t->ntiles * batch);
    for (int r = 0; r < (share ? 1 : 2); r++) {
        /* 2 MiB-aligned and advised to transparent huge pages (THP "madvise" mode), so that
         * streaming the weights at decode walks few TLB entries */
        const size_t huge = (size_t)2 << 20;
        const size_t bytes = (total + 4096 + huge - 1) / huge * huge; /* + slack, as before */
        void *buf = aligned_alloc(huge, bytes);
#ifdef MADV_HUGEPAGE
        if (buf) (void)madvise(buf, bytes, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
        if (!buf)
            return fia_error(FIA_STATUS_OUT_OF_MEMORY, "gemm: out of memory for %zu bytes of "
                             "packed weights", total);
        t->packed[r] = buf;
        for (int64_t bi = 0; bi < batch; bi++)
            for (int64_t j = 0; j < t->ntiles; j++) {
                const int k = (r ? 2 : 0) | (j == t->ntiles - 1 && t->g[r ? 3 : 1] ? 1 : 0);
                const char *src = (const char *)b + (bi * batch_stride + j * t->nc) * es;
                if (!fia_gemm_pack_b(t->g[k], src,
                                     (char *)buf + t->panel_bytes * (size_t)(bi * t->ntiles + j)))
                    return FIA_UNSUPPORTED("gemm: the library could not pack B");
            }
    }
    if (share) t->packed[1] = t->packed[0];
    return FIA_STATUS_SUCCESS;
}

bool fia_tgemm_run_packed(fia_tgemm *t, int64_t task, int32_t slot, const void *a, int64_t bi,
                          void *c, void *scratch) {
    const tgemm_tile x = tgemm_tile_of(t, task);
    const int64_t ni = task % t->ntiles;
    const char *pb = (const char *)t->packed[x.k >> 1] + t->panel_bytes * (size_t)(bi * t->ntiles + ni);
    return fia_gemm_run(t->g[x.k], slot, (const char *)a + x.a_off, pb, (char *)c + x.c_off,
                        scratch);
}

void fia_tgemm_free(fia_tgemm *t) {
    for (int i = 0; i < 4; i++) fia_gemm_destroy(t->g[i]);
    memset(t->g, 0, sizeof t->g);
    if (t->packed[1] != t->packed[0]) free(t->packed[1]);
    free(t->packed[0]);
    t->packed[0] = t->packed[1] = NULL;
}
