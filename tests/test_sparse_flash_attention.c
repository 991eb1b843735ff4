/*
 * test_sparse_flash_attention.c - sparse_flash_attention and kv_quant_sparse_flash_attention
 * (C8) against the double-precision oracle (tests/ref/ref_sfa.c).
 *
 *   test_sparse_flash_attention [seed]     SFA_TEST_CASES=N random cases (default 120)
 *                                          SFA_TEST_ONLY=i runs random case i only
 *
 * Sections: C8 dequant kernels of every ISA against the scalar table (bit-exact); seeded random
 * cases over BSND / TND / paged caches, sparse_block_size 1..128, sparse modes 0 and 3, float16,
 * bfloat16 and C8, lists with -1 tails, invalid entries (< -1, at or beyond the bound) and rows
 * with no valid token, N1 in {1, 16, 128} and others, strided views, NaN poison in every cache
 * row no selection may read; edge cases; determinism (1, 2 and 7 threads, bitwise); plan /
 * execute reuse; invalid input (nothing written).
 * Tolerance, every element: |got - want| <= 1e-3 + 5e-3 |want| for the output (float16 /
 * bfloat16), 1e-4 + 1e-5 |want| for softmax_lse / softmax_max / softmax_sum (+inf exact). The
 * C8 oracle follows the contract's casts (dequantized K and P to the query dtype); C8 outputs
 * may also differ by one query-dtype ulp of a single probability times its value (a rounding
 * tie decided by fp32 arithmetic before the cast). "C8-wide" cases use the golden's cache data
 * (int8 -5..10, tile scales -100..100), where a missing K cast fails. Random cases also pass
 * sinks and softmax_max / softmax_sum.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fia.h"
#include "kernel_variants.h"
#include "kernels/sfa_amx.h"
#include "ref/ref_fia.h"
#include "ref/ref_sfa.h"
#include "test_util.h"

#define OUT_ATOL 1e-3
#define OUT_RTOL 5e-3
#define LSE_ATOL 1e-4
#define LSE_RTOL 1e-5
#define MAXB 8

static fia_context *g_ctx[4];
static const char *g_name[4]; /* the ISA, "+amx" where the context runs the AMX paths */
static int g_nctx;
static double g_worst_ratio[4]; /* C8 outputs, bfloat16 query: the largest |got - want| / tolerance per context */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* scalar, avx2, avx512 (each where the CPU has it); where the CPU has AMX bf16 the avx512
 * context runs the AMX paths (bf16 SFA, and C8 with a bfloat16 query) and one more avx512
 * context made with FIA_AMX=0 runs the fp32 paths, so every case is checked on both. */
static void open_contexts(void) {
    const fia_isa levels[3] = {FIA_ISA_SCALAR, FIA_ISA_AVX2, FIA_ISA_AVX512};
    const bool amx = (fia_cpu_features() & FIA_CPU_AMX_BF16) != 0;
    for (int i = 0; i < 4; i++) {
        const fia_isa isa = levels[i < 3 ? i : 2];
        if (i == 3 && !(amx && g_nctx == 3)) break;
        fia_context_options o = {2, isa};
        fia_context *ctx = NULL;
        if (i == 2 && amx) setenv("FIA_AMX", "0", 1);
        const fia_status st = fia_context_create(&o, &ctx);
        unsetenv("FIA_AMX");
        if (st == FIA_STATUS_UNSUPPORTED_ISA) continue;
        if (!tu_check(st == FIA_STATUS_SUCCESS, "context %s: %s", fia_isa_name(isa),
                      fia_last_error()))
            continue;
        g_ctx[g_nctx] = ctx;
        g_name[g_nctx++] = i == 3 ? "avx512+amx" : i == 2 && amx ? "avx512 (FIA_AMX=0)" : fia_isa_name(isa);
    }
    printf("testing ISAs:");
    for (int i = 0; i < g_nctx; i++) printf(" %s", g_name[i]);
    printf("%s\n", amx ? "" : " (no AMX on this CPU: the AMX paths are not exercised)");
}


/* ------------------------------------------------------------------------------------------ */
/* A case and its tensors                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct scase {
    int c8;                  /* 1: C8; 2: C8 with the golden's data (int8 -5..10, tile scales
                              * -100..100: huge logits, where the K cast decides the winner) */
    fia_dtype dt;
    fia_layout lq, lkv;
    int64_t B, N1;
    int64_t S1, S2;          /* BSND query / kv S dims; TND: T1 / T2 (filled by normalize) */
    int64_t qlen[MAXB], kvlen[MAXB];
    int qlen_null, kvlen_null; /* BSND: pass NULL lengths (the full S) */
    int64_t K, sbs, bs, extra_blocks;
    int mode;
    int lse;                 /* pass softmax_lse */
    int maxsum;              /* pass softmax_max and softmax_sum */
    int sinks;               /* pass sinks */
    int strided;
    double p_invalid;        /* probability of an invalid entry (< -1 or beyond the bound) */
    double fill;             /* fraction of the visible blocks selected */
    int tail_garbage;        /* entries after the -1 hold valid-looking values */
    double scale;
} scase;

static void scase_desc(const scase *c, char *s, size_t n) {
    int w = snprintf(s, n, "%s q=%s kv=%s B=%lld N1=%lld S1=%lld S2=%lld K=%lld sbs=%lld bs=%lld "
                     "mode=%d lse=%d maxsum=%d sinks=%d strided=%d p_inv=%.2f fill=%.2f qlen=",
                     c->c8 == 2 ? "C8-wide" : c->c8 ? "C8" : fia_dtype_name(c->dt), fia_layout_name(c->lq),
                     fia_layout_name(c->lkv), (long long)c->B, (long long)c->N1, (long long)c->S1,
                     (long long)c->S2, (long long)c->K, (long long)c->sbs, (long long)c->bs,
                     c->mode, c->lse, c->maxsum, c->sinks, c->strided, c->p_invalid, c->fill);
    for (int64_t b = 0; b < c->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(s + w, n - (size_t)w, "%s%lld", b ? "," : "", (long long)c->qlen[b]);
    if (w > 0 && (size_t)w < n) w += snprintf(s + w, n - (size_t)w, " kvlen=");
    for (int64_t b = 0; b < c->B && w > 0 && (size_t)w < n; b++)
        w += snprintf(s + w, n - (size_t)w, "%s%lld", b ? "," : "", (long long)c->kvlen[b]);
}

typedef struct sbuf {
    tu_tensor q, qr, k, kr, idx, bt, out, lse, smax, ssum, sinks;
    int64_t qcum[MAXB], kvcum[MAXB], qarr[MAXB], kvarr[MAXB];
    int64_t nblocks, bt_cols;
    fia_sparse_flash_attention_params prm;
    fia_kv_quant_sparse_flash_attention_params qprm;
} sbuf;

static void sbuf_free(sbuf *s) {
    tu_free(&s->q), tu_free(&s->qr), tu_free(&s->k), tu_free(&s->kr);
    tu_free(&s->idx), tu_free(&s->bt), tu_free(&s->out), tu_free(&s->lse);
    tu_free(&s->smax), tu_free(&s->ssum), tu_free(&s->sinks);
}

static int alloc_t(tu_tensor *t, fia_dtype dt, int32_t nd, const int64_t *shape, int strided,
                   tu_rng *r) {
    int64_t pad[FIA_MAX_DIMS] = {0};
    if (strided)
        for (int i = 0; i < nd - 1; i++) pad[i] = tu_int(r, 0, 3) * (i == nd - 2 ? 16 : 1);
    return tu_alloc(t, dt, nd, shape, strided ? pad : NULL, 0);
}

/* Element address of a view. */
static char *elem(const fia_tensor *t, const int64_t *c) {
    int64_t off = 0;
    for (int32_t i = 0; i < t->ndim; i++) off += c[i] * t->strides[i];
    return (char *)t->data + off * (int64_t)fia_dtype_size(t->dtype);
}

static uint16_t half_bits(fia_dtype dt, double x) {
    return dt == FIA_DTYPE_FLOAT16 ? fia_f32_to_f16((float)x) : fia_f32_to_bf16((float)x);
}

/* Fills one cache row at p (dim values of dtype dt, or a 656-byte C8 row); poison: NaN. */
static void fill_row(char *p, fia_dtype dt, int64_t dim, int c8, int poison, tu_rng *r) {
    if (c8) {
        for (int d = 0; d < 512; d++)
            p[d] = (char)(int8_t)(c8 == 2 ? tu_int(r, -5, 10) : tu_int(r, -127, 127));
        for (int d = 0; d < 64; d++) {
            const uint16_t h = fia_f32_to_bf16((float)tu_uniform(r, -1, 1));
            memcpy(p + 512 + 2 * d, &h, 2);
        }
        for (int d = 0; d < 4; d++) {
            const float s = poison ? NAN
                            : (float)(c8 == 2 ? tu_uniform(r, -100, 100) : tu_uniform(r, 0.002, 0.012));
            memcpy(p + 640 + 4 * d, &s, 4);
        }
        return;
    }
    for (int64_t d = 0; d < dim; d++) {
        const uint16_t h = poison ? (uint16_t)(dt == FIA_DTYPE_FLOAT16 ? 0x7e00 : 0x7fc0)
                                  : half_bits(dt, tu_uniform(r, -1, 1));
        memcpy(p + 2 * d, &h, 2);
    }
}

/* Lengths consistent with the layouts; S1/S2 (or T1/T2) derived. */
static void scase_normalize(scase *c) {
    int64_t maxq = 0, maxkv = 0, sq = 0, skv = 0;
    for (int64_t b = 0; b < c->B; b++) {
        if (c->qlen[b] > maxq) maxq = c->qlen[b];
        if (c->kvlen[b] > maxkv) maxkv = c->kvlen[b];
        sq += c->qlen[b];
        skv += c->kvlen[b];
    }
    if (c->lq == FIA_LAYOUT_TND) c->S1 = sq + (c->strided ? 1 : 0);
    else if (c->S1 < maxq) c->S1 = maxq;
    if (c->lkv == FIA_LAYOUT_TND) c->S2 = skv + (c->strided ? 2 : 0);
    else if (c->S2 < maxkv) c->S2 = maxkv;
    if (c->lq == FIA_LAYOUT_TND) c->qlen_null = 0;
    if (c->lkv != FIA_LAYOUT_BSND) c->kvlen_null = 0;
    if (c->qlen_null)
        for (int64_t b = 0; b < c->B; b++) c->qlen[b] = c->S1;
    if (c->kvlen_null)
        for (int64_t b = 0; b < c->B; b++) c->kvlen[b] = c->S2;
    if (c->S1 < 1 && c->lq != FIA_LAYOUT_TND) c->S1 = 1;
}

/* Builds every tensor of the case. Returns 0, -1 on allocation failure. */
static int build(const scase *c, uint64_t seed, sbuf *s) {
    memset(s, 0, sizeof *s);
    tu_rng r = tu_rng_make(seed);
    const int tq = c->lq == FIA_LAYOUT_TND, paged = c->lkv == FIA_LAYOUT_PA_BSND;
    const int tkv = c->lkv == FIA_LAYOUT_TND;
    const int64_t Dq = c->c8 ? 576 : 512, Dk = c->c8 ? 656 : 512, N1 = c->N1, B = c->B;
    const fia_dtype kdt = c->c8 ? FIA_DTYPE_INT8 : c->dt;
    int64_t prev = 0;
    for (int64_t b = 0; b < B; b++) {
        s->qcum[b] = prev + c->qlen[b];
        prev = s->qcum[b];
    }
    prev = 0;
    for (int64_t b = 0; b < B; b++) {
        s->kvcum[b] = prev + c->kvlen[b];
        prev = s->kvcum[b];
    }
    /* query, query_rope, out, lse */
    int64_t qs[4];
    int32_t qnd;
    if (tq) qnd = 3, qs[0] = c->S1, qs[1] = N1;
    else qnd = 4, qs[0] = B, qs[1] = c->S1, qs[2] = N1;
    qs[qnd - 1] = Dq;
    if (alloc_t(&s->q, c->dt, qnd, qs, c->strided, &r)) return -1;
    tu_fill_uniform(&s->q.t, &r, -1, 1);
    if (!c->c8) {
        qs[qnd - 1] = 64;
        if (alloc_t(&s->qr, c->dt, qnd, qs, c->strided, &r)) return -1;
        tu_fill_uniform(&s->qr.t, &r, -1, 1);
    }
    qs[qnd - 1] = 512;
    if (alloc_t(&s->out, c->dt, qnd, qs, c->strided, &r)) return -1;
    memset(s->out.buf, 0x5a, s->out.bytes);
    if (c->lse) {
        int64_t ls[4];
        if (tq) ls[0] = c->S1, ls[1] = N1, ls[2] = 1;
        else ls[0] = B, ls[1] = N1, ls[2] = c->S1, ls[3] = 1;
        if (tu_alloc(&s->lse, FIA_DTYPE_FLOAT32, tq ? 3 : 4, ls, NULL, 0x5a)) return -1;
    }
    if (c->maxsum) { /* torch_npu's [B, N2, S1, N1/N2] / [N2, T1, N1/N2] */
        int64_t ms[4];
        if (tq) ms[0] = 1, ms[1] = c->S1, ms[2] = N1;
        else ms[0] = B, ms[1] = 1, ms[2] = c->S1, ms[3] = N1;
        if (alloc_t(&s->smax, FIA_DTYPE_FLOAT32, tq ? 3 : 4, ms, c->strided, &r)) return -1;
        if (alloc_t(&s->ssum, FIA_DTYPE_FLOAT32, tq ? 3 : 4, ms, c->strided, &r)) return -1;
    }
    if (c->sinks) {
        const int64_t ns[1] = {N1};
        if (tu_alloc(&s->sinks, FIA_DTYPE_FLOAT32, 1, ns, NULL, 0)) return -1;
        for (int64_t h = 0; h < N1; h++) ((float *)s->sinks.t.data)[h] = (float)tu_uniform(&r, -1, 3);
    }
    /* key (and key_rope): rows a batch may select are filled, every other row is NaN */
    int64_t ks[4];
    int64_t bs = c->bs;
    if (paged) {
        int64_t need = 0;
        for (int64_t b = 0; b < B; b++) {
            const int64_t nb = (c->kvlen[b] + bs - 1) / bs;
            need += nb;
            if (nb > s->bt_cols) s->bt_cols = nb;
        }
        s->nblocks = need + c->extra_blocks;
        if (s->nblocks < 1) s->nblocks = 1;
        s->bt_cols += c->strided ? 2 : 0;
        if (s->bt_cols < 1) s->bt_cols = 1;
        ks[0] = s->nblocks, ks[1] = bs, ks[2] = 1, ks[3] = Dk;
    } else if (tkv) {
        ks[0] = c->S2, ks[1] = 1, ks[2] = Dk;
    } else {
        ks[0] = B, ks[1] = c->S2, ks[2] = 1, ks[3] = Dk;
    }
    const int32_t knd = tkv ? 3 : 4;
    if (alloc_t(&s->k, kdt, knd, ks, c->strided, &r)) return -1;
    if (!c->c8) {
        ks[knd - 1] = 64;
        if (alloc_t(&s->kr, kdt, knd, ks, c->strided, &r)) return -1;
    }
    /* block table: a random permutation of the block ids; unused entries -1 */
    int64_t *perm = NULL;
    if (paged) {
        const int64_t bts[2] = {B, s->bt_cols};
        if (tu_alloc(&s->bt, FIA_DTYPE_INT32, 2, bts, NULL, 0xff)) return -1;
        perm = malloc((size_t)s->nblocks * sizeof *perm);
        if (!perm) return -1;
        for (int64_t i = 0; i < s->nblocks; i++) perm[i] = i;
        for (int64_t i = s->nblocks - 1; i > 0; i--) {
            const int64_t j = tu_int(&r, 0, i), x = perm[i];
            perm[i] = perm[j], perm[j] = x;
        }
    }
    /* poison everything, then fill the rows of valid tokens */
    const int64_t rows_total = paged ? s->nblocks * bs : tkv ? c->S2 : B * c->S2;
    for (int64_t x = 0; x < rows_total; x++) {
        int64_t co[4] = {0, 0, 0, 0};
        if (paged) co[0] = x / bs, co[1] = x % bs;
        else if (tkv) co[0] = x;
        else co[0] = x / c->S2, co[1] = x % c->S2;
        fill_row(elem(&s->k.t, co), kdt, Dk, c->c8, 1, &r);
        if (!c->c8) fill_row(elem(&s->kr.t, co), kdt, 64, 0, 1, &r);
    }
    int64_t used = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t tok = 0; tok < c->kvlen[b]; tok++) {
            int64_t co[4] = {0, 0, 0, 0};
            if (paged) {
                const int64_t col = tok / bs;
                const int64_t blk = perm[used + col];
                const int64_t bc[2] = {b, col};
                const int32_t id = (int32_t)blk;
                memcpy(elem(&s->bt.t, bc), &id, 4);
                co[0] = blk, co[1] = tok % bs;
            } else if (tkv) {
                co[0] = (b ? s->kvcum[b - 1] : 0) + tok;
            } else {
                co[0] = b, co[1] = tok;
            }
            fill_row(elem(&s->k.t, co), kdt, Dk, c->c8, 0, &r);
            if (!c->c8) fill_row(elem(&s->kr.t, co), kdt, 64, 0, 0, &r);
        }
        if (paged) used += (c->kvlen[b] + bs - 1) / bs;
    }
    free(perm);
    /* indices */
    int64_t is[4];
    if (tq) is[0] = c->S1, is[1] = 1, is[2] = c->K;
    else is[0] = B, is[1] = c->S1, is[2] = 1, is[3] = c->K;
    if (alloc_t(&s->idx, FIA_DTYPE_INT32, tq ? 3 : 4, is, c->strided, &r)) return -1;
    const int64_t nrows = tq ? c->S1 : B * c->S1;
    int32_t *pool = malloc((size_t)(c->S2 / c->sbs + 2 + c->K) * sizeof *pool);
    if (!pool) return -1;
    for (int64_t row = 0; row < nrows; row++) {
        int64_t b = -1, i = 0;
        if (tq) {
            for (int64_t x = 0; x < B; x++)
                if (row >= (x ? s->qcum[x - 1] : 0) && row < s->qcum[x]) {
                    b = x, i = row - (x ? s->qcum[x - 1] : 0);
                    break;
                }
        } else {
            b = row / c->S1, i = row % c->S1;
        }
        int64_t thr = 0;
        if (b >= 0) {
            thr = c->kvlen[b];
            if (c->mode == 3 && c->kvlen[b] - c->qlen[b] + i + 1 < thr)
                thr = c->kvlen[b] - c->qlen[b] + i + 1;
        }
        const int64_t nb = thr > 0 ? (thr + c->sbs - 1) / c->sbs : 0;
        for (int64_t x = 0; x < nb; x++) pool[x] = (int32_t)x;
        for (int64_t x = nb - 1; x > 0; x--) {
            const int64_t j = tu_int(&r, 0, x);
            const int32_t t = pool[x];
            pool[x] = pool[j], pool[j] = t;
        }
        int64_t want = (int64_t)(c->fill * (double)nb + 0.5);
        if (want > c->K) want = c->K;
        int64_t e = 0, used_pool = 0;
        while (e < c->K && used_pool < want) {
            int32_t v;
            if (tu_chance(&r, c->p_invalid)) {
                switch (tu_int(&r, 0, 3)) {
                case 0: v = (int32_t)tu_int(&r, -1000, -2); break;
                case 1: v = INT32_MIN; break;
                case 2: v = INT32_MAX; break;
                default: v = (int32_t)(nb + tu_int(&r, 0, 5)); break; /* at or beyond the bound */
                }
            } else {
                v = pool[used_pool++];
            }
            int64_t ic[4];
            if (tq) ic[0] = row, ic[1] = 0, ic[2] = e;
            else ic[0] = b < 0 ? 0 : b, ic[1] = i, ic[2] = 0, ic[3] = e;
            if (!tq) ic[0] = row / c->S1;
            memcpy(elem(&s->idx.t, ic), &v, 4);
            e++;
        }
        /* the tail: -1, then (tail_garbage) anything, which must be ignored */
        for (int64_t first = e; e < c->K; e++) {
            int32_t v = -1;
            if (c->tail_garbage && e > first && tu_chance(&r, 0.7))
                v = tu_chance(&r, 0.8) && nb > 0 ? (int32_t)tu_int(&r, 0, nb - 1)
                                                 : (int32_t)tu_int(&r, -5, 100000);
            int64_t ic[4];
            if (tq) ic[0] = row, ic[1] = 0, ic[2] = e;
            else ic[0] = row / c->S1, ic[1] = i, ic[2] = 0, ic[3] = e;
            memcpy(elem(&s->idx.t, ic), &v, 4);
        }
    }
    free(pool);
    /* params */
    fia_sparse_flash_attention_params *p = &s->prm;
    fia_sparse_flash_attention_params_init(p);
    p->scale_value = c->scale;
    p->sparse_block_size = c->sbs;
    p->layout_query = c->lq;
    p->layout_kv = c->lkv;
    p->sparse_mode = c->mode;
    p->return_softmax_lse = c->lse || c->maxsum;
    for (int64_t b = 0; b < B; b++) {
        s->qarr[b] = tq ? s->qcum[b] : c->qlen[b];
        s->kvarr[b] = tkv ? s->kvcum[b] : c->kvlen[b];
    }
    if (!c->qlen_null) p->actual_seq_lengths_query = s->qarr, p->actual_seq_lengths_query_count = B;
    if (!c->kvlen_null) p->actual_seq_lengths_kv = s->kvarr, p->actual_seq_lengths_kv_count = B;
    fia_kv_quant_sparse_flash_attention_params_init(&s->qprm);
    s->qprm.base = *p;
    return 0;
}

static fia_status call(fia_context *ctx, const scase *c, sbuf *s) {
    if (c->c8) {
        fia_kv_quant_sparse_flash_attention_tensors t = {
            &s->q.t, &s->k.t, c->strided ? &s->k.t : NULL, &s->idx.t,
            c->lkv == FIA_LAYOUT_PA_BSND ? &s->bt.t : NULL, &s->out.t, c->lse ? &s->lse.t : NULL,
            c->maxsum ? &s->smax.t : NULL, c->maxsum ? &s->ssum.t : NULL,
            c->sinks ? &s->sinks.t : NULL};
        return fia_kv_quant_sparse_flash_attention(ctx, &t, &s->qprm);
    }
    fia_sparse_flash_attention_tensors t = {
        &s->q.t, &s->k.t, NULL, &s->idx.t, c->lkv == FIA_LAYOUT_PA_BSND ? &s->bt.t : NULL,
        &s->qr.t, &s->kr.t, &s->out.t, c->lse ? &s->lse.t : NULL,
        c->maxsum ? &s->smax.t : NULL, c->maxsum ? &s->ssum.t : NULL,
        c->sinks ? &s->sinks.t : NULL};
    return fia_sparse_flash_attention(ctx, &t, &s->prm);
}

static int oracle(const scase *c, sbuf *s, double *out, double *lse, double *smax,
                  double *ssum, double *slack) {
    if (c->c8) {
        fia_kv_quant_sparse_flash_attention_tensors t = {
            &s->q.t, &s->k.t, NULL, &s->idx.t, c->lkv == FIA_LAYOUT_PA_BSND ? &s->bt.t : NULL,
            &s->out.t, NULL, NULL, NULL, c->sinks ? &s->sinks.t : NULL};
        return fia_ref_kv_quant_sparse_flash_attention_stats(&t, &s->qprm, NULL, 0, out, lse,
                                                             smax, ssum, slack);
    }
    fia_sparse_flash_attention_tensors t = {
        &s->q.t, &s->k.t, NULL, &s->idx.t, c->lkv == FIA_LAYOUT_PA_BSND ? &s->bt.t : NULL,
        &s->qr.t, &s->kr.t, &s->out.t, NULL, NULL, NULL, c->sinks ? &s->sinks.t : NULL};
    return fia_ref_sparse_flash_attention_stats(&t, &s->prm, NULL, 0, out, lse, smax, ssum);
}

static double g_worst_out, g_worst_lse;
static int64_t g_cases;

/* Runs a case on every ISA context against the oracle. Returns the number of failed checks. */
static int run_case(const scase *c0, uint64_t seed, const char *label) {
    scase c = *c0;
    scase_normalize(&c);
    sbuf s;
    char desc[512];
    scase_desc(&c, desc, sizeof desc);
    if (build(&c, seed, &s) != 0) {
        tu_check(0, "%s: out of memory building %s", label, desc);
        sbuf_free(&s);
        return 1;
    }
    const int64_t nout = tu_numel(&s.out.t), nrows = nout / (512 * c.N1);
    double *want = malloc((size_t)(nout ? nout : 1) * sizeof *want);
    double *wl = malloc((size_t)(nrows * c.N1 + 1) * sizeof *wl);
    double *wlp = malloc((size_t)(nrows * c.N1 + 1) * sizeof *wlp);
    double *wmx = malloc((size_t)(nrows * c.N1 + 1) * sizeof *wmx);
    double *wsm = malloc((size_t)(nrows * c.N1 + 1) * sizeof *wsm);
    double *slack = c.c8 ? calloc((size_t)(nout ? nout : 1), sizeof *slack) : NULL;
    int bad = 0;
    if (!want || !wl || !wlp || !wmx || !wsm || (c.c8 && !slack) ||
        oracle(&c, &s, want, wl, wmx, wsm, slack) != 0) {
        tu_check(0, "%s: oracle failed on %s", label, desc);
        bad = 1;
        goto out;
    }
    /* lse in the tensor's order: BSND [B, N1, S1], TND [T1, N1] */
    for (int64_t row = 0; row < nrows; row++)
        for (int64_t h = 0; h < c.N1; h++) {
            if (c.lq == FIA_LAYOUT_TND) wlp[row * c.N1 + h] = wl[row * c.N1 + h];
            else {
                const int64_t b = row / c.S1, i = row % c.S1;
                wlp[(b * c.N1 + h) * c.S1 + i] = wl[row * c.N1 + h];
            }
        }
    for (int k = 0; k < g_nctx; k++) {
        memset(s.out.buf, 0x5a, s.out.bytes);
        if (c.lse) memset(s.lse.buf, 0x5a, s.lse.bytes);
        if (c.maxsum) memset(s.smax.buf, 0x5a, s.smax.bytes), memset(s.ssum.buf, 0x5a, s.ssum.bytes);
        const fia_status st = call(g_ctx[k], &c, &s);
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s [%s]: %s (%s) on %s", label,
                      g_name[k], fia_status_string(st), fia_last_error(), desc)) {
            bad++;
            continue;
        }
        int64_t f = 0;
        if (!c.c8) {
            f = fia_ref_compare("attention_out", &s.out.t, want, OUT_ATOL, OUT_RTOL);
        } else { /* plus one query-dtype ulp of the largest contribution (the P cast's ties) */
            int64_t worst = -1;
            for (int64_t x = 0; x < nout; x++) {
                const double g = fia_ref_load(&s.out.t, x);
                const double tol = OUT_ATOL + OUT_RTOL * fabs(want[x]) + slack[x];
                if (c.dt == FIA_DTYPE_BFLOAT16 && fabs(g - want[x]) / tol > g_worst_ratio[k]) g_worst_ratio[k] = fabs(g - want[x]) / tol;
                if (!(fabs(g - want[x]) <= tol)) {
                    if (f++ == 0) worst = x;
                }
            }
            if (f)
                fprintf(stderr, "  attention_out: %lld of %lld elements out of tolerance; first [%lld] "
                        "got %.9g want %.9g slack %.3g\n", (long long)f, (long long)nout,
                        (long long)worst, fia_ref_load(&s.out.t, worst), want[worst], slack[worst]);
        }
        bad += !tu_check(f == 0, "%s [%s]: attention_out, %lld elements out of tolerance, seed %llu, %s",
                         label, g_name[k], (long long)f, (unsigned long long)seed, desc);
        for (int64_t x = 0; x < nout; x++) {
            const double e = fabs(fia_ref_load(&s.out.t, x) - want[x]);
            if (e > g_worst_out) g_worst_out = e;
        }
        if (c.lse) {
            const int64_t fl = fia_ref_compare("softmax_lse", &s.lse.t, wlp, LSE_ATOL, LSE_RTOL);
            bad += !tu_check(fl == 0, "%s [%s]: softmax_lse, %lld elements out of tolerance, %s",
                             label, g_name[k], (long long)fl, desc);
            for (int64_t x = 0; x < nrows * c.N1; x++)
                if (isfinite(wlp[x])) {
                    const double e = fabs(fia_ref_load(&s.lse.t, x) - wlp[x]);
                    if (e > g_worst_lse) g_worst_lse = e;
                }
        }
        if (c.maxsum) { /* [row, h] in the oracle, the tensor's [b, 0, i, h] / [0, t, h] */
            int64_t fm = 0, fs = 0;
            for (int64_t row = 0; row < nrows; row++)
                for (int64_t h = 0; h < c.N1; h++) {
                    int64_t co[4];
                    if (c.lq == FIA_LAYOUT_TND) co[0] = 0, co[1] = row, co[2] = h;
                    else co[0] = row / c.S1, co[1] = 0, co[2] = row % c.S1, co[3] = h;
                    const double gm = fia_ref_at(&s.smax.t, co), gs = fia_ref_at(&s.ssum.t, co);
                    const double em = wmx[row * c.N1 + h], es = wsm[row * c.N1 + h];
                    fm += !(fabs(gm - em) <= LSE_ATOL + LSE_RTOL * fabs(em));
                    fs += !(fabs(gs - es) <= LSE_ATOL + 1e-5 * fabs(es));
                }
            bad += !tu_check(fm == 0 && fs == 0,
                             "%s [%s]: softmax_max %lld / softmax_sum %lld elements out of "
                             "tolerance, %s", label, g_name[k], (long long)fm,
                             (long long)fs, desc);
        }
    }
    g_cases++;
out:
    free(slack);
    free(wmx);
    free(wsm);
    free(want);
    free(wl);
    free(wlp);
    sbuf_free(&s);
    return bad;
}

/* ------------------------------------------------------------------------------------------ */
/* Random cases                                                                               */
/* ------------------------------------------------------------------------------------------ */

static scase base(int c8, fia_dtype dt, fia_layout lq, fia_layout lkv, int64_t B, int64_t N1) {
    scase c;
    memset(&c, 0, sizeof c);
    c.c8 = c8, c.dt = dt, c.lq = lq, c.lkv = lkv, c.B = B, c.N1 = N1;
    c.sbs = 1, c.bs = 16, c.mode = 3, c.fill = 0.5, c.scale = 1.0 / 24.0, c.K = 16;
    for (int64_t b = 0; b < B; b++) c.qlen[b] = 1, c.kvlen[b] = 16;
    return c;
}

static void gen_random(tu_rng *r, int idx, scase *c) {
    static const fia_layout lqs[2] = {FIA_LAYOUT_BSND, FIA_LAYOUT_TND};
    static const fia_layout lkvs[3] = {FIA_LAYOUT_BSND, FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND};
    static const int64_t sbss[] = {1, 1, 1, 4, 4, 64, 2, 8, 16, 32, 128};
    static const int64_t heads[] = {1, 16, 128, 3, 7, 32};
    const int kind = idx % 3; /* 0 f16, 1 bf16, 2 C8 */
    const fia_dtype dt = kind == 0 ? FIA_DTYPE_FLOAT16 : kind == 1 ? FIA_DTYPE_BFLOAT16
                         : tu_chance(r, 0.5) ? FIA_DTYPE_FLOAT16 : FIA_DTYPE_BFLOAT16;
    const fia_layout lkv = lkvs[(idx / 3) % 3];
    const fia_layout lq = lqs[(idx / 9) % 2];
    const int64_t N1 = heads[(idx / 18) % 6];
    *c = base(kind == 2, dt, lq, lkv, tu_int(r, 1, N1 >= 128 ? 2 : 4), N1);
    c->sbs = TU_PICK(r, sbss);
    if (lkv == FIA_LAYOUT_PA_BSND) {
        const int64_t mult[] = {1, 2, 4};
        c->bs = c->sbs * TU_PICK(r, mult);
        if (c->bs < 16 && tu_chance(r, 0.5)) c->bs = 16 > c->sbs ? 16 : c->sbs;
        c->extra_blocks = tu_int(r, 0, 3);
    }
    const int decode = tu_chance(r, 0.5);
    /* selected tokens stay modest with many heads (the oracle costs N1 x tokens x 1088) */
    const int64_t maxkv = N1 >= 128 ? 160 : N1 >= 16 ? 600 : 1400;
    for (int64_t b = 0; b < c->B; b++) {
        c->qlen[b] = decode ? 1 : tu_int(r, 0, 4);
        c->kvlen[b] = tu_chance(r, 0.1) ? tu_int(r, 0, 3) : tu_int(r, 1, maxkv);
    }
    if (lq == FIA_LAYOUT_BSND) {
        c->S1 = decode ? 1 : 4;
        c->qlen_null = tu_chance(r, 0.3);
    }
    if (lkv == FIA_LAYOUT_BSND) c->kvlen_null = tu_chance(r, 0.2);
    c->mode = tu_chance(r, 0.5) ? 3 : 0;
    c->fill = TU_PICK(r, ((const double[]){0.1, 0.5, 1.0, 1.0}));
    int64_t maxblocks = 0;
    for (int64_t b = 0; b < c->B; b++)
        if ((c->kvlen[b] + c->sbs - 1) / c->sbs > maxblocks)
            maxblocks = (c->kvlen[b] + c->sbs - 1) / c->sbs;
    c->K = tu_int(r, 1, maxblocks + 8);
    if (N1 < 16 && c->sbs == 1 && tu_chance(r, 0.3)) c->K = tu_int(r, 513, 1100); /* 2+ slices */
    c->p_invalid = TU_PICK(r, ((const double[]){0.0, 0.0, 0.1, 0.3}));
    c->tail_garbage = tu_chance(r, 0.5);
    c->lse = tu_chance(r, 0.5);
    c->maxsum = tu_chance(r, 0.4);
    c->sinks = tu_chance(r, 0.25);
    if (kind == 2 && tu_chance(r, 0.25)) {
        /* the golden's cache data: large tile scales of both signs; a smaller softmax scale
         * keeps the logits where fp32 logits are well conditioned (a few units apart) while the
         * rounding of K to the query dtype still moves them */
        c->c8 = 2;
    }
    c->strided = tu_chance(r, 0.25);
    c->scale = tu_uniform(r, 0.5, 2.0) / 24.0;
    if (c->c8 == 2) c->scale /= 100.0;
}

static void test_random(uint64_t seed) {
    const long n = tu_env_long("SFA_TEST_CASES", 120), only = tu_env_long("SFA_TEST_ONLY", -1);
    const double t0 = now_s();
    int bad = 0;
    for (long i = 0; i < n; i++) {
        if (only >= 0 && i != only) continue;
        const uint64_t cs = tu_mix(seed ^ (0x100000000ull * (uint64_t)(i + 1)));
        tu_rng r = tu_rng_make(cs);
        scase c;
        gen_random(&r, (int)i, &c);
        char label[64];
        snprintf(label, sizeof label, "random #%ld", i);
        bad += run_case(&c, cs, label) != 0;
    }
    printf("random: %ld cases, %d failing, %.1f s\n", only >= 0 ? 1 : n, bad, now_s() - t0);
}

/* ------------------------------------------------------------------------------------------ */
/* Edge cases                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static void test_edges(uint64_t seed) {
    const double t0 = now_s();
    int k = 0;
    char label[96];
#define EDGE(c, what) (snprintf(label, sizeof label, "edge %d %s", k, what), run_case(&(c), seed + (uint64_t)(k++), label))
    const fia_dtype dts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_BFLOAT16};
    for (int v = 0; v < 3; v++) {
        /* all-invalid rows: first entry -1, every entry beyond the bound, every value < -1 */
        scase c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_BSND, 3, 16);
        c.lse = 1;
        c.fill = 0.0;
        EDGE(c, "first entry -1");
        c.fill = 1.0, c.p_invalid = 1.0;
        EDGE(c, "every entry invalid");
        /* kv length 0, query length 0, mode 3 with S1 > Skv (rows before the diagonal empty) */
        c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_PA_BSND, 3, 16);
        c.S1 = 6, c.lse = 1, c.fill = 1.0, c.K = 8;
        const int64_t q[3] = {6, 0, 2}, kv[3] = {3, 5, 0};
        for (int b = 0; b < 3; b++) c.qlen[b] = q[b], c.kvlen[b] = kv[b];
        EDGE(c, "mode 3 S1 > Skv, lengths 0");
        c.mode = 0;
        EDGE(c, "mode 0 S1 > Skv, lengths 0");
        /* TND with rows past the last cumulative length */
        c = base(v == 2, dts[v], FIA_LAYOUT_TND, FIA_LAYOUT_TND, 2, 3);
        c.qlen[0] = 2, c.qlen[1] = 3, c.kvlen[0] = 40, c.kvlen[1] = 7;
        c.strided = 1, c.lse = 1, c.fill = 1.0, c.K = 40;
        EDGE(c, "TND with trailing rows");
        /* future tokens listed before valid ones: skipped, the entries after them still read */
        c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_BSND, 2, 16);
        c.S1 = 4, c.qlen[0] = c.qlen[1] = 4, c.kvlen[0] = 30, c.kvlen[1] = 50, c.K = 40;
        c.fill = 1.0, c.p_invalid = 0.5, c.lse = 1, c.maxsum = 1;
        EDGE(c, "future entries before valid ones");
        /* sinks with softmax_max / softmax_sum and rows that see nothing */
        c.p_invalid = 0.0, c.sinks = 1, c.qlen[1] = 2, c.kvlen[1] = 0;
        EDGE(c, "sinks, empty rows, max/sum");
        /* K = 0 */
        c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_BSND, 1, 1);
        c.K = 0, c.lse = 1;
        EDGE(c, "K = 0");
        /* the block straddling the threshold is truncated (sbs 64, kv 100) */
        c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_PA_BSND, 2, 16);
        c.sbs = 64, c.bs = 128, c.kvlen[0] = 100, c.kvlen[1] = 129, c.K = 3, c.fill = 1.0;
        c.qlen[0] = c.qlen[1] = 3, c.S1 = 3, c.lse = 1;
        EDGE(c, "sbs 64 truncated at the threshold");
        /* block sizes that are not powers of two (48 with sbs 16, 3 with sbs 1) */
        c = base(v == 2, dts[v], FIA_LAYOUT_BSND, FIA_LAYOUT_PA_BSND, 2, 7);
        c.sbs = 16, c.bs = 48, c.kvlen[0] = 200, c.kvlen[1] = 97, c.K = 14, c.fill = 0.8;
        c.extra_blocks = 2;
        EDGE(c, "block_size 48, sbs 16");
        c.sbs = 1, c.bs = 3, c.K = 150;
        EDGE(c, "block_size 3");
        /* several slices with sbs 64 and 1, a -1 in the second slice */
        c = base(v == 2, dts[v], FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND, 1, 4);
        c.sbs = 64, c.bs = 64, c.kvlen[0] = 1500, c.K = 30, c.fill = 0.5, c.tail_garbage = 1;
        EDGE(c, "sbs 64 three slices, -1 in slice 2");
        c.sbs = 1, c.bs = 16, c.K = 1300, c.fill = 0.8;
        EDGE(c, "sbs 1 three slices");
        /* 128 heads decode (the DSA shape, short) */
        c = base(v == 2, dts[v], FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND, 2, 128);
        c.kvlen[0] = 90, c.kvlen[1] = 130, c.K = 64, c.fill = 0.6, c.bs = 64, c.lse = 1;
        EDGE(c, "N1 128 decode");
    }
    printf("edges: %d cases, %.1f s\n", k, now_s() - t0);
#undef EDGE
}

/* ------------------------------------------------------------------------------------------ */
/* Determinism, plan reuse                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Where the CPU has AMX, also with FIA_AMX=0 (the fp32 paths); N1 128 too (head blocks of 128,
 * 64 and 16 heads for 1, 2 and 7 threads). */
static void test_determinism(uint64_t seed) {
    const int threads[3] = {1, 2, 7};
    const int amx = (fia_cpu_features() & FIA_CPU_AMX_BF16) != 0;
    for (int noamx = 0; noamx <= amx; noamx++)
    for (int v = 0; v < 2; v++) {
        for (int shape = 0; shape < 3; shape++) {
            scase c = base(v, FIA_DTYPE_BFLOAT16, FIA_LAYOUT_TND, FIA_LAYOUT_PA_BSND,
                           shape == 1 ? 5 : 1, shape == 2 ? 128 : 32);
            /* -1 in the second of three slices, garbage after it, some invalid entries */
            c.bs = 64, c.K = 1200, c.fill = 0.6, c.tail_garbage = 1, c.p_invalid = 0.1;
            for (int64_t b = 0; b < c.B; b++) c.kvlen[b] = 1400 + 37 * b;
            c.lse = 1;
            scase_normalize(&c);
            sbuf s;
            if (build(&c, seed + (uint64_t)(10 * v + shape), &s) != 0) {
                tu_check(0, "determinism: out of memory");
                sbuf_free(&s);
                return;
            }
            void *ref = malloc(s.out.bytes), *refl = malloc(s.lse.bytes);
            for (int t = 0; t < 3 && ref && refl; t++) {
                fia_context *ctx = NULL;
                fia_context_options o = {threads[t], FIA_ISA_AUTO};
                if (noamx) setenv("FIA_AMX", "0", 1);
                const fia_status cs = fia_context_create(&o, &ctx);
                unsetenv("FIA_AMX");
                if (!tu_check(cs == FIA_STATUS_SUCCESS, "context")) continue;
                memset(s.out.buf, 0, s.out.bytes);
                const fia_status st = call(ctx, &c, &s);
                tu_check(st == FIA_STATUS_SUCCESS, "determinism call: %s", fia_last_error());
                if (t == 0) {
                    memcpy(ref, s.out.buf, s.out.bytes);
                    memcpy(refl, s.lse.buf, s.lse.bytes);
                } else {
                    tu_check(!memcmp(ref, s.out.buf, s.out.bytes) &&
                                 !memcmp(refl, s.lse.buf, s.lse.bytes),
                             "determinism %s%s B=%lld N1=%lld: %d threads differ from 1 thread",
                             v ? "C8" : "bf16", noamx ? " FIA_AMX=0" : "", (long long)c.B,
                             (long long)c.N1, threads[t]);
                }
                fia_context_destroy(ctx);
            }
            free(ref);
            free(refl);
            sbuf_free(&s);
        }
    }
}

/* A plan executes twice with the same result; a too-small workspace is refused. */
static void test_plan_reuse(uint64_t seed) {
    scase c = base(0, FIA_DTYPE_FLOAT16, FIA_LAYOUT_BSND, FIA_LAYOUT_BSND, 2, 16);
    c.K = 40, c.kvlen[0] = 50, c.kvlen[1] = 30;
    scase_normalize(&c);
    sbuf s;
    if (build(&c, seed, &s) != 0) {
        tu_check(0, "plan reuse: out of memory");
        sbuf_free(&s);
        return;
    }
    fia_sparse_flash_attention_tensors t = {&s.q.t, &s.k.t, &s.k.t, &s.idx.t, NULL,
                                            &s.qr.t, &s.kr.t, &s.out.t, NULL, NULL, NULL, NULL};
    fia_plan *plan = NULL;
    size_t ws = 0;
    fia_status st = fia_sparse_flash_attention_plan(g_ctx[g_nctx - 1], &t, &s.prm, &plan, &ws);
    if (tu_check(st == FIA_STATUS_SUCCESS, "plan: %s", fia_last_error())) {
        void *w = malloc(ws), *first = malloc(s.out.bytes);
        tu_check(fia_plan_execute(plan, w, ws - 1) == FIA_STATUS_WORKSPACE_TOO_SMALL,
                 "small workspace refused");
        tu_check(fia_plan_execute(plan, w, ws) == FIA_STATUS_SUCCESS, "execute 1");
        memcpy(first, s.out.buf, s.out.bytes);
        memset(s.out.buf, 0, s.out.bytes);
        tu_check(fia_plan_execute(plan, w, ws) == FIA_STATUS_SUCCESS, "execute 2");
        tu_check(!memcmp(first, s.out.buf, s.out.bytes), "re-executed plan gives the same bits");
        tu_check(fia_plan_workspace_size(plan) == ws, "workspace size");
        free(w);
        free(first);
    }
    fia_plan_destroy(plan);
    sbuf_free(&s);
}

/* ------------------------------------------------------------------------------------------ */
/* Invalid input: the status, a message, nothing written                                      */
/* ------------------------------------------------------------------------------------------ */

static void expect_invalid(fia_context *ctx, const scase *c, sbuf *s,
                           const fia_sparse_flash_attention_tensors *t,
                           const fia_sparse_flash_attention_params *p, const char *what,
                           const char *must_mention) {
    memset(s->out.buf, 0x5a, s->out.bytes);
    const fia_status st = fia_sparse_flash_attention(ctx, t, p);
    const char *msg = fia_last_error();
    tu_check(st == FIA_STATUS_INVALID_ARGUMENT, "invalid %s: status %s", what, fia_status_string(st));
    tu_check(msg[0] && (!must_mention || strstr(msg, must_mention)),
             "invalid %s: message '%s' should mention '%s'", what, msg, must_mention ? must_mention : "");
    int untouched = 1;
    for (size_t i = 0; i < s->out.bytes; i++)
        if (((unsigned char *)s->out.buf)[i] != 0x5a) untouched = 0;
    tu_check(untouched, "invalid %s: output written", what);
    (void)c;
}

static void test_invalid(uint64_t seed) {
    fia_context *ctx = g_ctx[g_nctx - 1];
    scase c = base(0, FIA_DTYPE_BFLOAT16, FIA_LAYOUT_BSND, FIA_LAYOUT_PA_BSND, 2, 4);
    c.K = 8, c.kvlen[0] = 40, c.kvlen[1] = 20;
    scase_normalize(&c);
    sbuf s;
    if (build(&c, seed, &s) != 0) {
        tu_check(0, "invalid: out of memory");
        sbuf_free(&s);
        return;
    }
    const fia_sparse_flash_attention_tensors t0 = {&s.q.t, &s.k.t, NULL, &s.idx.t, &s.bt.t,
                                                   &s.qr.t, &s.kr.t, &s.out.t, NULL, NULL, NULL,
                                                   NULL};
    fia_sparse_flash_attention_tensors t;
    fia_sparse_flash_attention_params p;
    tu_check(fia_sparse_flash_attention(ctx, &t0, &s.prm) == FIA_STATUS_SUCCESS, "valid base: %s",
             fia_last_error());

#define PARAM_CASE(stmt, what, mention) \
    (t = t0, p = s.prm, stmt, expect_invalid(ctx, &c, &s, &t, &p, what, mention))
    PARAM_CASE(p.sparse_block_size = 3, "sbs 3", "sparse_block_size");
    PARAM_CASE(p.sparse_block_size = 256, "sbs 256", "sparse_block_size");
    PARAM_CASE(p.sparse_block_size = 32, "sbs not dividing block_size", "block_size");
    PARAM_CASE(p.sparse_mode = 1, "sparse_mode 1", "sparse_mode");
    PARAM_CASE(p.attention_mode = 0, "attention_mode 0", "attention_mode");
    PARAM_CASE(p.scale_value = NAN, "scale NaN", "scale_value");
    PARAM_CASE(p.layout_query = FIA_LAYOUT_BNSD, "layout_query BNSD", "layout_query");
    PARAM_CASE(p.actual_seq_lengths_kv = NULL, "paged without kv lengths", "actual_seq_lengths_kv");
    int64_t big[2] = {40, 10000};
    PARAM_CASE((p.actual_seq_lengths_kv = big, p.actual_seq_lengths_kv_count = 2), "kv length past the table", "actual_seq_lengths_kv");
    int64_t bigq[2] = {1, 5};
    PARAM_CASE((p.actual_seq_lengths_query = bigq, p.actual_seq_lengths_query_count = 2), "query length > S1", "actual_seq_lengths_query");
    PARAM_CASE(t.block_table = NULL, "paged without block_table", "block_table");
    PARAM_CASE(t.value = &s.qr.t, "value not the key", "value");
    PARAM_CASE(t.query_rope = NULL, "query_rope missing", "query_rope");
    PARAM_CASE(t.key_rope = &s.qr.t, "key_rope of the wrong shape", "key_rope");
    PARAM_CASE(t.sparse_indices = &s.bt.t, "indices of the wrong shape", "sparse_indices");
    PARAM_CASE(p.return_softmax_lse = 1, "lse flag without a tensor", "softmax_lse");
    /* softmax_max / softmax_sum go together and have torch_npu's shape; sinks float32 [N1] */
    PARAM_CASE((p.return_softmax_lse = 1, t.softmax_max = &s.out.t), "softmax_max without softmax_sum",
               "softmax_sum");
    PARAM_CASE((p.return_softmax_lse = 1, t.softmax_max = &s.out.t, t.softmax_sum = &s.out.t),
               "softmax_max of the wrong dtype", "softmax_max");
    PARAM_CASE(t.sinks = &s.idx.t, "sinks int32", "sinks");
    PARAM_CASE(t.sinks = &s.out.t, "sinks 4-D", "sinks");
    /* dims */
    fia_tensor bad;
    bad = s.q.t, bad.shape[3] = 256;
    PARAM_CASE(t.query = &bad, "query D 256", "query");
    bad = s.k.t, bad.shape[3] = 576;
    PARAM_CASE(t.key = &bad, "key D 576", "key");
    bad = s.q.t, bad.dtype = FIA_DTYPE_FLOAT16;
    PARAM_CASE(t.query = &bad, "query dtype differs", "dtype");
    /* a block id out of range, then -1 inside the used range */
    int32_t saved;
    memcpy(&saved, s.bt.buf, 4);
    const int32_t ids[2] = {1000, -1};
    for (int i = 0; i < 2; i++) {
        memcpy(s.bt.buf, &ids[i], 4);
        PARAM_CASE((void)0, "block id out of range", "block_table");
    }
    memcpy(s.bt.buf, &saved, 4);
    /* N1 = 129 */
    tu_tensor q129, qr129, o129;
    const int64_t qs[4] = {2, 1, 129, 512}, qrs[4] = {2, 1, 129, 64};
    if (!tu_alloc(&q129, FIA_DTYPE_BFLOAT16, 4, qs, NULL, 0) &&
        !tu_alloc(&qr129, FIA_DTYPE_BFLOAT16, 4, qrs, NULL, 0) &&
        !tu_alloc(&o129, FIA_DTYPE_BFLOAT16, 4, qs, NULL, 0)) {
        PARAM_CASE((t.query = &q129.t, t.query_rope = &qr129.t, t.attention_out = &o129.t), "N1 129", "128");
    }
    tu_free(&q129), tu_free(&qr129), tu_free(&o129);
    /* C8: the quant flags */
    fia_kv_quant_sparse_flash_attention_params qp;
    fia_kv_quant_sparse_flash_attention_params_init(&qp);
    qp.tile_size = 64;
    fia_kv_quant_sparse_flash_attention_tensors qt = {&s.q.t, &s.k.t, NULL, &s.idx.t, &s.bt.t,
                                                      &s.out.t, NULL, NULL, NULL, NULL};
    tu_check(fia_kv_quant_sparse_flash_attention(ctx, &qt, &qp) == FIA_STATUS_INVALID_ARGUMENT &&
                 strstr(fia_last_error(), "tile_size"), "C8 tile_size 64 refused");
    fia_kv_quant_sparse_flash_attention_params_init(&qp);
    qp.base = s.prm;
    tu_check(fia_kv_quant_sparse_flash_attention(ctx, &qt, &qp) == FIA_STATUS_INVALID_ARGUMENT,
             "C8 with a bf16 key and a 512 query refused: %s", fia_last_error());
#undef PARAM_CASE
    sbuf_free(&s);
}

/* ------------------------------------------------------------------------------------------ */
/* Kernels: every ISA's C8 dequant equals the scalar table bit for bit                        */
/* ------------------------------------------------------------------------------------------ */

static void test_kernels(uint64_t seed) {
    tu_rng r = tu_rng_make(seed);
    enum { N = 9 };
    unsigned char *rows = malloc(N * 656 + 3);
    float *n0 = malloc(sizeof(float) * N * 520), *r0 = malloc(sizeof(float) * N * 70);
    float *n1 = malloc(sizeof(float) * N * 520), *r1 = malloc(sizeof(float) * N * 70);
    const void *ptrs[N];
    if (!rows || !n0 || !r0 || !n1 || !r1) {
        tu_check(0, "kernels: out of memory");
        goto done;
    }
    for (int j = 0; j < N; j++) {
        ptrs[j] = rows + 3 + (N - 1 - j) * 656; /* odd alignment, reversed order */
        /* rows 0..5 the usual data, 6..8 the golden's wide scales; row 8 a NaN and an inf scale */
        fill_row((char *)ptrs[j], FIA_DTYPE_BFLOAT16, 656, j >= 6 ? 2 : 1, 0, &r);
    }
    {
        const float bad[2] = {NAN, INFINITY};
        memcpy((char *)ptrs[8] + 640, bad, sizeof bad);
    }
    tu_kernel_variant v[16]; /* every C8 variant this CPU runs (registry.inc) */
    const int nv = TU_KERNEL_VARIANTS(sfa, v, 16);
    /* no rounding, and the contract's casts to bfloat16 / float16 */
    const fia_dtype rounds[3] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT16};
    for (int ri = 0; ri < 3; ri++) {
        const fia_dtype rd = rounds[ri];
        tu_scalar_kernels()->sfa.c8_rows_to_f32(ptrs, N, n0, 520, r0, 70, rd);
        /* the scalar table itself against the definition */
        int ok = 1;
        for (int j = 0; j < N && ok; j++) {
            const unsigned char *p = ptrs[j];
            float sc[4];
            memcpy(sc, p + 640, 16);
            for (int d = 0; d < 512; d++) {
                const float x = (float)(int8_t)p[d] * sc[d / 128];
                const float w = rd == FIA_DTYPE_BFLOAT16 ? fia_bf16_to_f32(fia_f32_to_bf16(x))
                                : rd == FIA_DTYPE_FLOAT16 ? fia_f16_to_f32(fia_f32_to_f16(x)) : x;
                ok &= n0[j * 520 + d] == w || (isnan(w) && isnan(n0[j * 520 + d]));
            }
            for (int d = 0; d < 64; d++) {
                uint16_t h;
                memcpy(&h, p + 512 + 2 * d, 2);
                ok &= r0[j * 70 + d] == fia_bf16_to_f32(h);
            }
        }
        tu_check(ok, "c8_rows_to_f32 scalar matches the definition (round to %s)", fia_dtype_name(rd));
        for (int k = 0; k < nv; k++) {
            const fia_sfa_kernels *kt = &v[k].set.sfa;
            memset(n1, 0, sizeof(float) * N * 520);
            memset(r1, 0, sizeof(float) * N * 70);
            kt->c8_rows_to_f32(ptrs, N, n1, 520, r1, 70, rd);
            int same = 1;
            for (int j = 0; j < N; j++) {
                same &= !memcmp(n1 + j * 520, n0 + j * 520, 512 * sizeof(float));
                same &= !memcmp(r1 + j * 70, r0 + j * 70, 64 * sizeof(float));
            }
            tu_check(same, "c8_rows_to_f32 %s bit-exact with scalar (round to %s)", kt->name,
                     fia_dtype_name(rd));
        }
    }
    /* round_scaled (the C8 cast of P): every variant bit-exact with scalar, tails included */
    for (int ri = 0; ri < 3; ri++) {
        const fia_dtype rd = rounds[ri];
        for (int rep = 0; rep < 20; rep++) {
            const int64_t len = tu_int(&r, 0, 70);
            const float c = (float)tu_uniform(&r, 0.7, 1.42), inv = 1.0f / c;
            float x0[70], x1[70];
            for (int64_t j = 0; j < len; j++) x0[j] = (float)exp(tu_uniform(&r, -30, 0));
            if (len > 3) x0[3] = NAN;
            memcpy(x1, x0, sizeof x0);
            tu_scalar_kernels()->sfa.round_scaled(x0, len, c, inv, rd);
            for (int k = 0; k < nv; k++) {
                const fia_sfa_kernels *kt = &v[k].set.sfa;
                float x2[70];
                memcpy(x2, x1, sizeof x1);
                kt->round_scaled(x2, len, c, inv, rd);
                int same = 1;
                for (int64_t j = 0; j < len; j++)
                    same &= !memcmp(&x2[j], &x0[j], 4) || (isnan(x2[j]) && isnan(x0[j]));
                if (!same || rep == 0)
                    tu_check(same, "round_scaled %s bit-exact with scalar (%s, n %lld)", kt->name,
                             fia_dtype_name(rd), (long long)len);
            }
        }
    }
done:
    free(rows), free(n0), free(r0), free(n1), free(r1);
}

/* ------------------------------------------------------------------------------------------ */
/* The AMX C8 step kernels (kernels/sfa_amx.h), where the CPU has AMX bf16: S and O against    */
/* double sums over the scalar table's rounded rows                                            */
/* ------------------------------------------------------------------------------------------ */

/* got within a relative bound of want (NaN where want is NaN, the same inf). */
static int near_or_same(double got, double want, double bound) {
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got)) return got == want;
    return fabs(got - want) <= bound;
}

static void test_amx_kernels(uint64_t seed) {
    if (!(fia_cpu_features() & FIA_CPU_AMX_BF16)) {
        printf("AMX C8 kernels: not available on this CPU, skipped\n");
        return;
    }
    enum { N = FIA_SFA_AMX_KEYS, R = FIA_SFA_AMX_ROWS, LDS = N + 8, LDO = 528 };
    tu_rng r = tu_rng_make(seed ^ 0xa3c8ull);
    unsigned char *rows = malloc(N * 656 + 5);
    float *kn = malloc(sizeof(float) * N * 512), *kr = malloc(sizeof(float) * N * 64);
    uint16_t *q = malloc(sizeof(uint16_t) * R * 576), *qt = malloc(sizeof(uint16_t) * R * 576);
    float *s = malloc(sizeof(float) * (R + 1) * LDS), *p = malloc(sizeof(float) * R * LDS);
    float *o = malloc(sizeof(float) * R * LDO), *o0 = malloc(sizeof(float) * R * LDO);
    const size_t sb = (fia_sfa_amx_scratch_bytes(R) + 63) / 64 * 64;
    void *scratch = aligned_alloc(64, sb);
    const void *ptrs[N];
    const uint16_t *qp[R];
    int ok_s = 1, ok_o = 1, canary = 1, ncase = 0;
    if (!rows || !kn || !kr || !q || !qt || !s || !p || !o || !o0 || !scratch) {
        tu_check(0, "AMX kernels: out of memory");
        goto done;
    }
    for (int j = 0; j < N; j++) {
        ptrs[j] = rows + 5 + (size_t)(N - 1 - j) * 656; /* odd alignment, reversed order */
        fill_row((char *)ptrs[j], FIA_DTYPE_BFLOAT16, 656, j % 3 == 2 ? 2 : 1, 0, &r);
    }
    { /* key 7: a NaN and an inf tile scale */
        const float bad[2] = {NAN, INFINITY};
        memcpy((char *)ptrs[7] + 640 + 4, bad, sizeof bad);
    }
    tu_scalar_kernels()->sfa.c8_rows_to_f32(ptrs, N, kn, 512, kr, 64, FIA_DTYPE_BFLOAT16);
    for (int64_t i = 0; i < R * 576; i++) q[i] = fia_f32_to_bf16((float)tu_uniform(&r, -1, 1));
    for (int i = 0; i < R; i++) qp[i] = q + i * 576;
    const int64_t rows_list[] = {1, 7, 16, 37, 128}, n_list[] = {1, 5, 16, 31, 33, 64, 97, N};
    for (size_t a = 0; a < sizeof rows_list / sizeof *rows_list; a++)
        for (size_t b = 0; b < sizeof n_list / sizeof *n_list; b++) {
            const int64_t nr = rows_list[a], rp = (nr + 15) / 16 * 16, n = n_list[b];
            /* the keys from offset 7 - n % 8 (so key 7, the NaN / inf row, is in some sets) */
            const int64_t k0 = n < N ? (7 - n % 8 + N - n) % (N - n + 1) : 0;
            const float scale = 0.0625f;
            ncase++;
            fia_sfa_amx_pack_q(nr, rp, qp, qt);
            fia_sfa_amx_c8_stage(ptrs + k0, n, rp, scratch);
            for (int64_t i = 0; i < (nr + 1) * LDS; i++) s[i] = -7.0f;
            fia_sfa_amx_scores(nr, rp, n, qt, scale, s, LDS, ptrs, N, scratch);
            for (int64_t i = nr * LDS; i < (nr + 1) * LDS; i++) canary &= s[i] == -7.0f;
            for (int64_t h = 0; h < nr; h++)
                for (int64_t j = 0; j < n; j++) {
                    double want = 0.0, mag = 0.0;
                    for (int d = 0; d < 576; d++) {
                        const double qv = fia_bf16_to_f32(q[h * 576 + d]);
                        const double kv = d < 512 ? kn[(k0 + j) * 512 + d] : kr[(k0 + j) * 64 + d - 512];
                        want += qv * kv;
                        mag += fabs(qv * kv);
                    }
                    ok_s &= near_or_same(s[h * LDS + j], scale * want, scale * mag * 1e-5 + 1e-30);
                }
            /* P . V: p in (0, 1], scales c in [2^-1/2, 2^1/2], accumulator factors 0 / 1 / other */
            float c[R], f[R], post[R];
            for (int64_t h = 0; h < rp; h++) {
                post[h] = tu_chance(&r, 0.2) ? 1.0f : (float)tu_uniform(&r, 0.7072, 1.4142);
                c[h] = (float)tu_uniform(&r, 0.7072, 1.4142);
                const int kind = (int)tu_int(&r, 0, 3);
                f[h] = kind == 0 ? 0.0f : kind == 1 ? 1.0f : kind == 2 ? 0.25f : (float)tu_uniform(&r, 0, 1);
                for (int64_t j = 0; j < LDS; j++) p[h * LDS + j] = (float)exp(tu_uniform(&r, -20, 0));
                for (int64_t d = 0; d < 512; d++)
                    o[h * LDO + d] = f[h] == 0.0f ? NAN : (float)tu_uniform(&r, -2, 2);
            }
            memcpy(o0, o, sizeof(float) * R * LDO);
            fia_sfa_amx_pv(nr, rp, n, p, LDS, c, f, o, LDO, b % 2 ? post : NULL, ptrs, N, scratch);
            for (int64_t h = 0; h < nr; h++) {
                float pr[FIA_SFA_AMX_KEYS];
                memcpy(pr, p + h * LDS, sizeof(float) * (size_t)n);
                tu_scalar_kernels()->sfa.round_scaled(pr, n, c[h], 1.0f, FIA_DTYPE_BFLOAT16);
                for (int64_t d = 0; d < 512; d++) {
                    const double acc0 = f[h] == 0.0f ? 0.0 : (double)f[h] * o0[h * LDO + d];
                    double want = acc0, mag = fabs(acc0);
                    for (int64_t j = 0; j < n; j++) {
                        want += (double)pr[j] * kn[(k0 + j) * 512 + d];
                        mag += fabs((double)pr[j] * kn[(k0 + j) * 512 + d]);
                    }
                    if (b % 2) want *= post[h], mag *= post[h];
                    ok_o &= near_or_same(o[h * LDO + d], want, mag * 1e-5 + 1e-30);
                }
            }
        }
    tu_check(ok_s, "AMX C8 scores match the double sums over the bf16-rounded rows");
    tu_check(canary, "AMX C8 scores write no row past rows");
    tu_check(ok_o, "AMX C8 P.V matches the double sums of the rounded P and the rounded rows");
    printf("AMX C8 kernels: %d (rows, keys) cases\n", ncase);
done:
    free(rows), free(kn), free(kr), free(q), free(qt), free(s), free(p), free(o), free(o0);
    free(scratch);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261121, "test_sparse_flash_attention");
    open_contexts();
    if (g_nctx == 0) return tu_summary();
    const double t0 = now_s();
    test_kernels(seed);
    test_amx_kernels(seed);
    if (tu_env_long("SFA_TEST_ONLY", -1) < 0) {
        test_edges(seed);
        test_determinism(seed);
        test_plan_reuse(seed);
        test_invalid(seed);
    }
    test_random(seed);
    printf("cases: %lld, worst abs error: out %.3g, lse %.3g; %.1f s\n", (long long)g_cases,
           g_worst_out, g_worst_lse, now_s() - t0);
    printf("C8 outputs (bfloat16 query), largest error / tolerance:");
    for (int i = 0; i < g_nctx; i++) printf(" %s %.3g%s", g_name[i], g_worst_ratio[i], i + 1 < g_nctx ? "," : "\n");
    for (int i = 0; i < g_nctx; i++) fia_context_destroy(g_ctx[i]);
    return tu_summary();
}
