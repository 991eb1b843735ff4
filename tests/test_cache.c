/*
 * test_cache.c - scatter_update, scatter_nd_update (plain, PA_BSND and PA_NZ slots) and
 * gather_selection_kv_cache against the oracles of ref_chain.c on every ISA context: random
 * seeded shapes and indices (int32 and int64), duplicate indices (the later entry wins), padded
 * strides, the largest block size (1024), T = 1, negative / out-of-range indices (an error and
 * not one byte written), gather-selection with -1 ends, skipped and duplicate top-k entries, the
 * MTP offset, TND and BSND forms, int8 (C8 rows) with no rope, and its execute-time checks.
 */
#include "chain_util.h"
#include "ref_chain.h"

static double *snapshot(const fia_tensor *t) {
    const int64_t n = tu_numel(t);
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) {
        const char *p = (const char *)t->data + tu_offset(t, i) * (int64_t)fia_dtype_size(t->dtype);
        switch (t->dtype) {
        case FIA_DTYPE_FLOAT32: { float f; memcpy(&f, p, 4); d[i] = f; break; }
        case FIA_DTYPE_FLOAT16: { uint16_t h; memcpy(&h, p, 2); d[i] = fia_f16_to_f32(h); break; }
        case FIA_DTYPE_BFLOAT16: { uint16_t h; memcpy(&h, p, 2); d[i] = fia_bf16_to_f32(h); break; }
        case FIA_DTYPE_INT8: d[i] = *(const int8_t *)p; break;
        case FIA_DTYPE_INT32: { int32_t v; memcpy(&v, p, 4); d[i] = v; break; }
        case FIA_DTYPE_INT64: { int64_t v; memcpy(&v, p, 8); d[i] = (double)v; break; }
        default: d[i] = *(const uint8_t *)p; break;
        }
    }
    return d;
}

/* Element i (logical order) of t as double (through a freed snapshot: no leak). */
static double elem_at(const fia_tensor *t, int64_t i) {
    double *d = snapshot(t), v = d[i];
    free(d);
    return v;
}

static int same(const fia_tensor *t, const double *want) {
    double *g = snapshot(t);
    const int64_t n = tu_numel(t);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++)
        if (g[i] != want[i]) {
            fprintf(stderr, "  elem %lld: got %g want %g\n", (long long)i, g[i], want[i]);
            ok = 0;
        }
    free(g);
    return ok;
}

/* ---- scatter_nd_update ------------------------------------------------------------------- */

typedef struct ndcase {
    int mode; /* 0 plain, 1 PA_BSND, 2 PA_NZ */
    fia_dtype dt, it;
    int32_t nd;
    int64_t shape[5];
    int32_t a;
    int64_t K;
    int dup, bad, pad;
} ndcase;

static void run_nd(const ndcase *c, tu_rng *rng) {
    char desc[200];
    snprintf(desc, sizeof desc, "scatter_nd_update mode %d %s idx %s nd %d [%lld,%lld,%lld,%lld,%lld] a %d K %lld dup %d bad %d pad %d",
             c->mode, fia_dtype_name(c->dt), fia_dtype_name(c->it), c->nd, (long long)c->shape[0],
             (long long)c->shape[1], (long long)c->shape[2], (long long)c->shape[3],
             (long long)c->shape[4], c->a, (long long)c->K, c->dup, c->bad, c->pad);
    const int64_t pad[5] = {c->pad ? 5 : 0, c->pad && c->mode != 2 ? 3 : 0, 0, 0, 0};
    tu_tensor in, ix, up;
    tu_alloc(&in, c->dt, c->nd, c->shape, pad, 0);
    tu_fill_uniform(&in.t, rng, -100, 100);
    const int64_t ishape[2] = {c->K, c->a};
    tu_alloc(&ix, c->it, 2, ishape, NULL, 0);
    int64_t ushape[6], und = 0;
    ushape[und++] = c->K;
    if (c->mode == 0) for (int32_t d = c->a; d < c->nd; d++) ushape[und++] = c->shape[d];
    else if (c->mode == 1) for (int32_t d = 2; d < c->nd; d++) ushape[und++] = c->shape[d];
    else ushape[und++] = 1, ushape[und++] = c->shape[2] * c->shape[4];
    tu_alloc(&up, c->dt, (int32_t)und, ushape, NULL, 0);
    tu_fill_uniform(&up.t, rng, -100, 100);
    const int64_t slots = c->mode == 1 ? c->shape[0] * c->shape[1] : c->mode == 2 ? c->shape[0] * c->shape[3] : 0;
    for (int64_t k = 0; k < c->K; k++)
        for (int32_t j = 0; j < c->a; j++) {
            const int64_t lim = c->mode ? slots : c->shape[j];
            int64_t v = tu_int(rng, 0, lim - 1);
            if (c->dup && k > 0 && tu_chance(rng, 0.5)) v = (int64_t)elem_at(&ix.t, (k - 1) * c->a + j);
            tu_store(&ix.t, k * c->a + j, (double)v);
        }
    if (c->bad) /* one entry out of range: negative or past the end */
        tu_store(&ix.t, tu_int(rng, 0, c->K - 1) * c->a, c->bad == 1 ? -1.0 : (double)(c->mode ? slots : c->shape[0]));
    double *want = snapshot(&in.t);
    const int rc = fia_ref_scatter_nd_update(&in.t, want, &ix.t, &up.t, c->mode);
    fia_scatter_nd_update_params prm;
    fia_scatter_nd_update_params_init(&prm);
    prm.cache_mode = c->mode == 0 ? FIA_LAYOUT_BSND : c->mode == 1 ? FIA_LAYOUT_PA_BSND : FIA_LAYOUT_PA_NZ;
    for (int k = 0; k < g_nctx; k++) {
        double *before = snapshot(&in.t);
        unsigned char *raw = malloc(in.bytes);
        memcpy(raw, in.buf, in.bytes);
        fia_scatter_nd_update_tensors t = {&in.t, &ix.t, &up.t};
        const fia_status st = fia_scatter_nd_update(g_ctx[k], &t, &prm);
        if (rc != 0) {
            tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "out of range") &&
                     memcmp(raw, in.buf, in.bytes) == 0,
                     "%s %s: expected an out-of-range error and nothing written (%s '%s')", desc,
                     fia_isa_name(g_isa[k]), fia_status_string(st), fia_last_error());
        } else {
            tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, fia_isa_name(g_isa[k]), fia_last_error());
            tu_check(same(&in.t, want), "%s %s", desc, fia_isa_name(g_isa[k]));
            memcpy(in.buf, raw, in.bytes); /* next ISA starts from the same cache */
        }
        free(before), free(raw);
    }
    free(want);
    tu_free(&in), tu_free(&ix), tu_free(&up);
}

/* ---- scatter_update ---------------------------------------------------------------------- */

typedef struct sucase {
    fia_dtype dt, it;
    int32_t nd;
    int64_t shape[4];
    int64_t axis, u;
    int pairs, K, bad, pad;
} sucase;

static void run_su(const sucase *c, tu_rng *rng) {
    char desc[200];
    snprintf(desc, sizeof desc, "scatter_update %s idx %s nd %d [%lld,%lld,%lld,%lld] axis %lld u %lld pairs %d bad %d",
             fia_dtype_name(c->dt), fia_dtype_name(c->it), c->nd, (long long)c->shape[0],
             (long long)c->shape[1], (long long)c->shape[2], (long long)c->shape[3],
             (long long)c->axis, (long long)c->u, c->pairs, c->bad);
    const int64_t pad[4] = {c->pad ? 7 : 0, c->pad ? 2 : 0, 0, 0};
    const int32_t ax = (int32_t)(c->axis < 0 ? c->axis + c->nd : c->axis);
    tu_tensor d, ix, up;
    tu_alloc(&d, c->dt, c->nd, c->shape, pad, 0);
    tu_fill_uniform(&d.t, rng, -50, 50);
    const int64_t K = c->pairs ? c->K : c->shape[0];
    int64_t us[4];
    memcpy(us, c->shape, sizeof us);
    us[0] = K;
    us[ax] = c->u;
    tu_alloc(&up, c->dt, c->nd, us, NULL, 0);
    tu_fill_uniform(&up.t, rng, -50, 50);
    const int64_t is2[2] = {K, 2}, is1[1] = {K};
    tu_alloc(&ix, c->it, c->pairs ? 2 : 1, c->pairs ? is2 : is1, NULL, 0);
    for (int64_t k = 0; k < K; k++) {
        const int64_t p = tu_int(rng, 0, c->shape[ax] - c->u);
        if (c->pairs) {
            tu_store(&ix.t, 2 * k, (double)tu_int(rng, 0, c->shape[0] - 1));
            tu_store(&ix.t, 2 * k + 1, (double)p);
        } else {
            tu_store(&ix.t, k, (double)p);
        }
    }
    if (c->bad) tu_store(&ix.t, c->pairs ? 1 : 0, c->bad == 1 ? -1.0 : (double)(c->shape[ax] - c->u + 1));
    double *want = snapshot(&d.t);
    const int rc = fia_ref_scatter_update(&d.t, want, &ix.t, &up.t, c->axis);
    fia_scatter_update_params prm;
    fia_scatter_update_params_init(&prm);
    prm.axis = c->axis;
    for (int k = 0; k < g_nctx; k++) {
        unsigned char *raw = malloc(d.bytes);
        memcpy(raw, d.buf, d.bytes);
        fia_scatter_update_tensors t = {&d.t, &ix.t, &up.t};
        const fia_status st = fia_scatter_update(g_ctx[k], &t, &prm);
        if (rc != 0) {
            tu_check(st == FIA_STATUS_INVALID_ARGUMENT && memcmp(raw, d.buf, d.bytes) == 0,
                     "%s %s: expected an error, nothing written (%s '%s')", desc,
                     fia_isa_name(g_isa[k]), fia_status_string(st), fia_last_error());
        } else {
            tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, fia_isa_name(g_isa[k]), fia_last_error());
            tu_check(same(&d.t, want), "%s %s", desc, fia_isa_name(g_isa[k]));
            memcpy(d.buf, raw, d.bytes);
        }
        free(raw);
    }
    free(want);
    tu_free(&d), tu_free(&ix), tu_free(&up);
}

/* ---- gather_selection_kv_cache ------------------------------------------------------------ */

typedef struct gscase {
    fia_dtype dt;
    int64_t B, S, K, sbs, fbs, sbsz, C, R;
    int tnd, rope;
} gscase;

static void run_gs(const gscase *c, tu_rng *rng) {
    char desc[200];
    snprintf(desc, sizeof desc, "gather_selection %s B %lld S %lld K %lld sbs %lld fbs %lld sel_bs %lld C %lld R %lld tnd %d",
             fia_dtype_name(c->dt), (long long)c->B, (long long)c->S, (long long)c->K, (long long)c->sbs,
             (long long)c->fbs, (long long)c->sbsz, (long long)c->C, (long long)(c->rope ? c->R : 0), c->tnd);
    const int64_t B = c->B, S = c->S, K = c->K, rows = B * S;
    const int64_t fmax = 6, fblocks = B * fmax + 3;
    const int64_t smax = (K * c->sbs + c->sbsz - 1) / c->sbsz, sblocks = rows * smax + 2;
    tu_tensor fkv, frope, skv, srope, ftab, stab, status, topk, kvl, ql, out;
    const int64_t fks[3] = {fblocks, c->fbs, c->C}, frs[3] = {fblocks, c->fbs, c->rope ? c->R : 0};
    const int64_t sks[3] = {sblocks, c->sbsz, c->C}, srs[3] = {sblocks, c->sbsz, c->rope ? c->R : 0};
    tu_alloc(&fkv, c->dt, 3, fks, NULL, 0);
    tu_alloc(&frope, c->dt, 3, frs, NULL, 0);
    tu_alloc(&skv, c->dt, 3, sks, NULL, 0);
    tu_alloc(&srope, c->dt, 3, srs, NULL, 0);
    tu_fill_uniform(&fkv.t, rng, -100, 100);
    tu_fill_uniform(&frope.t, rng, -100, 100);
    tu_fill_uniform(&skv.t, rng, -100, 100);
    tu_fill_uniform(&srope.t, rng, -100, 100);
    const int64_t fts[2] = {B, fmax}, sts[2] = {rows, smax}, b1[1] = {B}, r1[1] = {rows};
    tu_alloc(&ftab, FIA_DTYPE_INT32, 2, fts, NULL, 0);
    tu_alloc(&stab, FIA_DTYPE_INT32, 2, sts, NULL, 0);
    for (int64_t i = 0; i < B * fmax; i++) tu_store(&ftab.t, i, (double)((i * 7 + 3) % fblocks));
    for (int64_t i = 0; i < rows * smax; i++) tu_store(&stab.t, i, (double)(sblocks - 1 - i));
    const int64_t ts4[4] = {B, S, 1, K}, ts3[3] = {B * S, 1, K}, ss4[4] = {B, S, 1, K + 1}, ss3[3] = {B * S, 1, K + 1};
    tu_alloc(&topk, FIA_DTYPE_INT32, c->tnd ? 3 : 4, c->tnd ? ts3 : ts4, NULL, 0);
    tu_alloc(&status, FIA_DTYPE_INT32, c->tnd ? 3 : 4, c->tnd ? ss3 : ss4, NULL, 0);
    tu_fill_uniform(&status.t, rng, -5, 50);
    tu_alloc(&kvl, FIA_DTYPE_INT32, 1, b1, NULL, 0);
    tu_alloc(&ql, FIA_DTYPE_INT32, 1, b1, NULL, 0);
    tu_alloc(&out, FIA_DTYPE_INT32, 1, r1, NULL, 0x7F);
    for (int64_t b = 0; b < B; b++) {
        tu_store(&kvl.t, b, (double)tu_int(rng, b == 0 ? 0 : 1, fmax * c->fbs));
        tu_store(&ql.t, b, (double)tu_int(rng, 0, S));
    }
    for (int64_t r = 0; r < rows; r++) {
        const int64_t end = tu_int(rng, 0, K); /* entries after `end` are -1 (or junk after a -1) */
        for (int64_t i = 0; i < K; i++) {
            int64_t e = tu_int(rng, 0, fmax * c->fbs / c->sbs + 2); /* some beyond n: skipped */
            if (i > 0 && tu_chance(rng, 0.15)) e = (int64_t)elem_at(&topk.t, r * K + i - 1); /* duplicate */
            if (i >= end) e = i == end ? -1 : tu_int(rng, -3, 9);
            tu_store(&topk.t, r * K + i, (double)e);
        }
    }
    double *wkv = snapshot(&skv.t), *wrope = snapshot(&srope.t), *wst = snapshot(&status.t);
    int64_t *wout = calloc((size_t)rows, sizeof *wout);
    fia_ref_gather_selection(&skv.t, wkv, c->rope ? &srope.t : NULL, c->rope ? wrope : NULL, &stab.t, wst,
                             &topk.t, c->rope ? &frope.t : NULL, &fkv.t, &ftab.t, &kvl.t, &ql.t, c->sbs, wout);
    double *wo = malloc((size_t)rows * sizeof *wo);
    for (int64_t r = 0; r < rows; r++) wo[r] = (double)wout[r];
    fia_gather_selection_kv_cache_params prm;
    fia_gather_selection_kv_cache_params_init(&prm);
    prm.selection_topk_block_size = c->sbs;
    unsigned char *r_skv = malloc(skv.bytes), *r_srope = malloc(srope.bytes + 1), *r_st = malloc(status.bytes);
    memcpy(r_skv, skv.buf, skv.bytes), memcpy(r_srope, srope.buf, srope.bytes), memcpy(r_st, status.buf, status.bytes);
    for (int k = 0; k <= g_nctx; k++) {
        fia_context *ctx = k < g_nctx ? g_ctx[k] : g_ctx1;
        fia_gather_selection_kv_cache_tensors t = {&srope.t, &skv.t, &stab.t, &status.t, &topk.t, &frope.t,
                                                   &fkv.t, &ftab.t, &kvl.t, &ql.t, &out.t};
        const fia_status st = fia_gather_selection_kv_cache(ctx, &t, &prm);
        const char *isa = k < g_nctx ? fia_isa_name(g_isa[k]) : "1 thread";
        if (!tu_check(st == FIA_STATUS_SUCCESS, "%s %s: %s", desc, isa, fia_last_error())) continue;
        tu_check(same(&skv.t, wkv), "%s %s: selection_kv_cache", desc, isa);
        if (c->rope) tu_check(same(&srope.t, wrope), "%s %s: selection_k_rope", desc, isa);
        tu_check(same(&status.t, wst), "%s %s: status", desc, isa);
        tu_check(same(&out.t, wo), "%s %s: selection_kv_actual_seq", desc, isa);
        memcpy(skv.buf, r_skv, skv.bytes), memcpy(srope.buf, r_srope, srope.bytes), memcpy(status.buf, r_st, status.bytes);
    }
    /* execute-time errors: a query length above S, a block id out of range; nothing written */
    fia_gather_selection_kv_cache_tensors t = {&srope.t, &skv.t, &stab.t, &status.t, &topk.t, &frope.t,
                                               &fkv.t, &ftab.t, &kvl.t, &ql.t, &out.t};
    memset(out.buf, 0x7F, out.bytes);
    const double q0 = elem_at(&ql.t, 0);
    tu_store(&ql.t, 0, (double)(S + 1));
    fia_status st = fia_gather_selection_kv_cache(g_ctx[0], &t, &prm);
    tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "full_q_actual_seq"), "%s: q length error", desc);
    tu_check(memcmp(r_skv, skv.buf, skv.bytes) == 0 && memcmp(r_st, status.buf, status.bytes) == 0 &&
             all_bytes(out.buf, out.bytes, 0x7F), "%s: a failed call wrote an output", desc);
    tu_store(&ql.t, 0, q0);
    for (int64_t i = 0; i < B * fmax; i++) tu_store(&ftab.t, i, (double)fblocks); /* every id bad */
    st = fia_gather_selection_kv_cache(g_ctx[0], &t, &prm);
    int used = 0;
    for (int64_t r = 0; r < rows; r++) used |= wout[r] > 0;
    if (used)
        tu_check(st == FIA_STATUS_INVALID_ARGUMENT && strstr(fia_last_error(), "full_kv_block_table"),
                 "%s: block id error (%s '%s')", desc, fia_status_string(st), fia_last_error());
    if (used)
        tu_check(memcmp(r_skv, skv.buf, skv.bytes) == 0 && memcmp(r_st, status.buf, status.bytes) == 0 &&
                 all_bytes(out.buf, out.bytes, 0x7F), "%s: a failed call wrote an output", desc);
    free(wkv), free(wrope), free(wst), free(wout), free(wo), free(r_skv), free(r_srope), free(r_st);
    tu_free(&fkv), tu_free(&frope), tu_free(&skv), tu_free(&srope), tu_free(&ftab), tu_free(&stab);
    tu_free(&status), tu_free(&topk), tu_free(&kvl), tu_free(&ql), tu_free(&out);
}

/* Writer and reader agree: rows scattered by scatter_nd_update into a paged indexer cache
 * (PA_BSND flat slots from a shuffled block table) give lightning_indexer exactly the top-k it
 * computes from the same rows held densely (BSND). */
static void test_roundtrip_indexer(tu_rng *rng) {
    enum { B = 2, S2 = 37, N1 = 4, D = 128, K = 16, BS = 16, NB = 8, COLS = 3 };
    const int64_t qs[4] = {B, 1, N1, D}, ws[3] = {B, 1, N1}, ks[4] = {B, S2, 1, D};
    const int64_t cs[4] = {NB, BS, 1, D}, bts[2] = {B, COLS}, is[2] = {B * S2, 1}, us[3] = {B * S2, 1, D};
    const int64_t os[4] = {B, 1, 1, K};
    tu_tensor q, w, kd, cache, bt, ix, up, o1, o2;
    tu_alloc(&q, FIA_DTYPE_BFLOAT16, 4, qs, NULL, 0);
    tu_alloc(&w, FIA_DTYPE_BFLOAT16, 3, ws, NULL, 0);
    tu_alloc(&kd, FIA_DTYPE_BFLOAT16, 4, ks, NULL, 0);
    tu_alloc(&cache, FIA_DTYPE_BFLOAT16, 4, cs, NULL, 0);
    tu_alloc(&bt, FIA_DTYPE_INT32, 2, bts, NULL, 0);
    tu_alloc(&ix, FIA_DTYPE_INT64, 2, is, NULL, 0);
    tu_alloc(&up, FIA_DTYPE_BFLOAT16, 3, us, NULL, 0);
    tu_alloc(&o1, FIA_DTYPE_INT32, 4, os, NULL, 0);
    tu_alloc(&o2, FIA_DTYPE_INT32, 4, os, NULL, 0);
    tu_fill_uniform(&q.t, rng, -1, 1);
    tu_fill_uniform(&w.t, rng, -0.5, 1);
    tu_fill_uniform(&kd.t, rng, -1, 1);
    const int32_t table[B * COLS] = {5, 0, 7, 2, 6, 3};
    memcpy(bt.buf, table, sizeof table);
    memcpy(up.buf, kd.buf, kd.bytes);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S2; t++)
            tu_store(&ix.t, b * S2 + t, (double)(table[b * COLS + t / BS] * BS + t % BS));
    fia_scatter_nd_update_params sp;
    fia_scatter_nd_update_params_init(&sp);
    sp.cache_mode = FIA_LAYOUT_PA_BSND;
    fia_scatter_nd_update_tensors st = {&cache.t, &ix.t, &up.t};
    tu_check(fia_scatter_nd_update(g_ctx[g_nctx - 1], &st, &sp) == FIA_STATUS_SUCCESS, "roundtrip scatter: %s", fia_last_error());
    fia_lightning_indexer_params lp;
    fia_lightning_indexer_params_init(&lp);
    lp.sparse_count = K;
    fia_lightning_indexer_tensors lt = {&q.t, &kd.t, &w.t, NULL, NULL, NULL, &o1.t, NULL};
    tu_check(fia_lightning_indexer(g_ctx[g_nctx - 1], &lt, &lp) == FIA_STATUS_SUCCESS, "roundtrip dense LI: %s", fia_last_error());
    const int64_t lens[B] = {S2, S2};
    lp.layout_key = FIA_LAYOUT_PA_BSND;
    lp.actual_seq_lengths_key = lens;
    lp.actual_seq_lengths_key_count = B;
    fia_lightning_indexer_tensors lt2 = {&q.t, &cache.t, &w.t, NULL, NULL, &bt.t, &o2.t, NULL};
    tu_check(fia_lightning_indexer(g_ctx[g_nctx - 1], &lt2, &lp) == FIA_STATUS_SUCCESS, "roundtrip paged LI: %s", fia_last_error());
    tu_check(memcmp(o1.buf, o2.buf, o1.bytes) == 0, "roundtrip: the indexer reads the scattered paged cache as the dense keys");
    tu_free(&q), tu_free(&w), tu_free(&kd), tu_free(&cache), tu_free(&bt), tu_free(&ix), tu_free(&up);
    tu_free(&o1), tu_free(&o2);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261205, "test_cache");
    tu_rng rng = tu_rng_make(seed);
    open_contexts();
    long c0 = tu_passed;
    const ndcase nd_edge[] = {
        {1, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT64, 4, {2048, 64, 1, 128, 1}, 1, 1, 0, 0, 0},  /* decode: 1 row */
        {1, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT32, 4, {3, 1024, 1, 128, 1}, 1, 40, 1, 0, 1}, /* block 1024 */
        {1, FIA_DTYPE_INT8, FIA_DTYPE_INT32, 3, {9, 16, 656, 1, 1}, 1, 20, 1, 0, 0},       /* C8 rows */
        {2, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT64, 5, {6, 1, 32, 16, 16}, 1, 12, 1, 0, 1},   /* PA_NZ 512 */
        {2, FIA_DTYPE_INT8, FIA_DTYPE_INT32, 5, {4, 1, 2, 128, 32}, 1, 9, 0, 0, 0},        /* PA_NZ int8 */
        {0, FIA_DTYPE_FLOAT16, FIA_DTYPE_INT32, 2, {24, 128, 1, 1, 1}, 1, 12, 1, 0, 0},    /* the doc's example */
        {0, FIA_DTYPE_FLOAT32, FIA_DTYPE_INT64, 3, {4, 5, 6, 1, 1}, 2, 3, 0, 0, 1},        /* a = 2 */
        {0, FIA_DTYPE_FLOAT32, FIA_DTYPE_INT32, 3, {4, 5, 6, 1, 1}, 3, 7, 1, 0, 0},        /* a = ndim */
        {1, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT32, 4, {8, 16, 1, 128, 1}, 1, 5, 0, 1, 0},    /* negative */
        {1, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT64, 4, {8, 16, 1, 128, 1}, 1, 5, 0, 2, 1},    /* past the end */
        {0, FIA_DTYPE_FLOAT16, FIA_DTYPE_INT32, 2, {24, 128, 1, 1, 1}, 1, 4, 0, 2, 0},
        {2, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT32, 5, {6, 1, 4, 16, 16}, 1, 3, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof nd_edge / sizeof nd_edge[0]; i++) run_nd(&nd_edge[i], &rng);
    /* all indices negative */
    {
        const int64_t cs[2] = {16, 8}, is[2] = {3, 1}, us[2] = {3, 8};
        tu_tensor in, ix, up;
        tu_alloc(&in, FIA_DTYPE_FLOAT32, 2, cs, NULL, 0x11);
        tu_alloc(&ix, FIA_DTYPE_INT64, 2, is, NULL, 0);
        tu_alloc(&up, FIA_DTYPE_FLOAT32, 2, us, NULL, 0);
        for (int i = 0; i < 3; i++) tu_store(&ix.t, i, -1.0 - i);
        fia_scatter_nd_update_params prm;
        fia_scatter_nd_update_params_init(&prm);
        fia_scatter_nd_update_tensors t = {&in.t, &ix.t, &up.t};
        tu_check(fia_scatter_nd_update(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT &&
                 all_bytes(in.buf, in.bytes, 0x11), "all indices negative: error, nothing written");
        tu_free(&in), tu_free(&ix), tu_free(&up);
    }
    /* empty rows / empty updates: nothing to write, but an out-of-range index is still an error */
    {
        const int64_t cs[2] = {16, 0}, is[2] = {2, 1}, us[2] = {2, 0}, cst[2] = {1, 1};
        tu_tensor in, ix, up;
        tu_alloc(&in, FIA_DTYPE_FLOAT32, 2, cs, cst, 0x11); /* distinct rows (an output) */
        tu_alloc(&ix, FIA_DTYPE_INT32, 2, is, NULL, 0);
        tu_alloc(&up, FIA_DTYPE_FLOAT32, 2, us, NULL, 0);
        tu_store(&ix.t, 0, 3.0);
        tu_store(&ix.t, 1, 99.0);
        fia_scatter_nd_update_params prm;
        fia_scatter_nd_update_params_init(&prm);
        fia_scatter_nd_update_tensors t = {&in.t, &ix.t, &up.t};
        tu_check(fia_scatter_nd_update(g_ctx[0], &t, &prm) == FIA_STATUS_INVALID_ARGUMENT,
                 "scatter_nd_update with empty rows still checks its indices (%s)", fia_last_error());
        tu_store(&ix.t, 1, 15.0);
        tu_check(fia_scatter_nd_update(g_ctx[0], &t, &prm) == FIA_STATUS_SUCCESS,
                 "scatter_nd_update with empty rows and valid indices succeeds (%s)", fia_last_error());
        tu_free(&in), tu_free(&ix), tu_free(&up);
        const int64_t ds[3] = {2, 8, 4}, js[1] = {2}, vs[3] = {2, 0, 4};
        tu_tensor d, j, u;
        tu_alloc(&d, FIA_DTYPE_FLOAT32, 3, ds, NULL, 0x22);
        tu_alloc(&j, FIA_DTYPE_INT64, 1, js, NULL, 0);
        tu_alloc(&u, FIA_DTYPE_FLOAT32, 3, vs, NULL, 0);
        tu_store(&j.t, 0, 1.0);
        tu_store(&j.t, 1, 9.0);
        fia_scatter_update_params sp;
        fia_scatter_update_params_init(&sp);
        sp.axis = 1;
        fia_scatter_update_tensors st = {&d.t, &j.t, &u.t};
        tu_check(fia_scatter_update(g_ctx[0], &st, &sp) == FIA_STATUS_INVALID_ARGUMENT &&
                     all_bytes(d.buf, d.bytes, 0x22),
                 "scatter_update with empty updates still checks its indices (%s)", fia_last_error());
        tu_free(&d), tu_free(&j), tu_free(&u);
    }
    const fia_dtype dts[4] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT8};
    for (int it = 0; it < 60; it++) {
        ndcase c;
        memset(&c, 0, sizeof c);
        c.mode = (int)tu_int(&rng, 0, 2);
        c.dt = dts[tu_int(&rng, 0, 3)];
        c.it = tu_chance(&rng, 0.5) ? FIA_DTYPE_INT32 : FIA_DTYPE_INT64;
        for (int d = 0; d < 5; d++) c.shape[d] = 1;
        if (c.mode == 0) {
            c.nd = (int32_t)tu_int(&rng, 1, 4);
            for (int d = 0; d < c.nd; d++) c.shape[d] = tu_int(&rng, 1, 9);
            c.a = (int32_t)tu_int(&rng, 1, c.nd);
        } else if (c.mode == 1) {
            c.nd = (int32_t)tu_int(&rng, 3, 4);
            c.shape[0] = tu_int(&rng, 1, 9), c.shape[1] = TU_PICK(&rng, ((int64_t[]){1, 16, 64, 128, 7}));
            c.shape[2] = tu_int(&rng, 1, 3), c.shape[3] = tu_int(&rng, 1, 130);
            c.a = 1;
        } else {
            c.nd = 5;
            const int64_t w = 32 / (int64_t)fia_dtype_size(c.dt);
            c.shape[0] = tu_int(&rng, 1, 6), c.shape[2] = tu_int(&rng, 1, 5), c.shape[3] = tu_int(&rng, 1, 40), c.shape[4] = w;
            c.a = 1;
        }
        c.K = tu_int(&rng, 1, 30);
        c.dup = tu_chance(&rng, 0.4);
        c.bad = tu_chance(&rng, 0.15) ? (int)tu_int(&rng, 1, 2) : 0;
        c.pad = (int)tu_int(&rng, 0, 1);
        run_nd(&c, &rng);
    }
    test_roundtrip_indexer(&rng);
    printf("scatter_nd_update: %ld checks\n", tu_passed - c0);
    c0 = tu_passed;
    const sucase su_edge[] = {
        {FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT64, 3, {4, 64, 7168, 1}, -2, 1, 0, 0, 0, 0},  /* decode append, BSH */
        {FIA_DTYPE_FLOAT16, FIA_DTYPE_INT32, 4, {2, 8, 32, 128}, 2, 5, 0, 0, 0, 1},     /* BNSD prefill */
        {FIA_DTYPE_FLOAT32, FIA_DTYPE_INT64, 2, {3, 17, 1, 1}, -1, 17, 0, 0, 0, 0},     /* the whole row */
        {FIA_DTYPE_INT8, FIA_DTYPE_INT32, 3, {5, 9, 11, 1}, 1, 2, 1, 6, 0, 1},          /* pairs, duplicates */
        {FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT64, 3, {4, 16, 8, 1}, -2, 3, 0, 0, 1, 0},     /* negative */
        {FIA_DTYPE_BFLOAT16, FIA_DTYPE_INT32, 3, {4, 16, 8, 1}, -2, 3, 1, 5, 2, 0},     /* past the end */
    };
    for (size_t i = 0; i < sizeof su_edge / sizeof su_edge[0]; i++) run_su(&su_edge[i], &rng);
    for (int it = 0; it < 40; it++) {
        sucase c;
        memset(&c, 0, sizeof c);
        c.dt = dts[tu_int(&rng, 0, 3)];
        c.it = tu_chance(&rng, 0.5) ? FIA_DTYPE_INT32 : FIA_DTYPE_INT64;
        c.nd = (int32_t)tu_int(&rng, 2, 4);
        for (int d = 0; d < 4; d++) c.shape[d] = 1;
        for (int d = 0; d < c.nd; d++) c.shape[d] = tu_int(&rng, 1, 9);
        c.axis = tu_int(&rng, 1, c.nd - 1) - (tu_chance(&rng, 0.5) ? c.nd : 0);
        const int32_t ax = (int32_t)(c.axis < 0 ? c.axis + c.nd : c.axis);
        c.u = tu_int(&rng, 1, c.shape[ax]);
        c.pairs = tu_chance(&rng, 0.4);
        c.K = (int)tu_int(&rng, 1, 8);
        c.bad = tu_chance(&rng, 0.15) ? (int)tu_int(&rng, 1, 2) : 0;
        c.pad = (int)tu_int(&rng, 0, 1);
        run_su(&c, &rng);
    }
    printf("scatter_update: %ld checks\n", tu_passed - c0);
    c0 = tu_passed;
    const gscase gs_edge[] = {
        {FIA_DTYPE_BFLOAT16, 2, 2, 8, 4, 16, 8, 512, 64, 0, 1},
        {FIA_DTYPE_BFLOAT16, 3, 1, 64, 1, 64, 128, 512, 64, 1, 1},   /* K > 32: sbs 1, decode T = B */
        {FIA_DTYPE_INT8, 2, 3, 16, 2, 16, 16, 656, 0, 0, 0},         /* C8 rows, no rope */
        {FIA_DTYPE_FLOAT16, 1, 1, 4, 64, 128, 64, 17, 5, 0, 1},      /* default sbs 64 */
    };
    for (size_t i = 0; i < sizeof gs_edge / sizeof gs_edge[0]; i++) run_gs(&gs_edge[i], &rng);
    for (int it = 0; it < 25; it++) {
        gscase c;
        memset(&c, 0, sizeof c);
        c.dt = dts[tu_int(&rng, 1, 3)];
        c.B = tu_int(&rng, 1, 3), c.S = tu_int(&rng, 1, 3);
        c.sbs = TU_PICK(&rng, ((int64_t[]){1, 2, 4, 8}));
        c.K = c.sbs == 1 ? tu_int(&rng, 1, 80) : tu_int(&rng, 1, 32);
        c.fbs = c.sbs * tu_int(&rng, 1, 4), c.sbsz = c.sbs * tu_int(&rng, 1, 4);
        c.C = tu_int(&rng, 1, 70), c.R = tu_int(&rng, 1, 9);
        c.rope = tu_chance(&rng, 0.7), c.tnd = (int)tu_int(&rng, 0, 1);
        run_gs(&c, &rng);
    }
    printf("gather_selection_kv_cache: %ld checks\n", tu_passed - c0);
    close_contexts();
    return tu_summary();
}
