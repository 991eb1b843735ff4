/*
 * demo_dsa.c - the DeepSeek-V3.2 part of `fia demo`: one decode step of one request (batch 1,
 * one query token) at 32K and 128K context, attended two ways:
 *   dense MLA:  fused_infer_attention_score with query_rope / key_rope (128 heads, latent
 *               512 + rope 64, every cached token);
 *   sparse:     lightning_indexer (64 heads x 128, top 2048) then sparse_flash_attention over
 *               the 2048 selected tokens of the same latent cache.
 * Caches are paged (PA_BSND, block 64, bf16); each call is timed (median of 3 after a warm-up)
 * and both outputs are checked against the double-precision oracles on two heads.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "cli.h"
#include "ref_mla.h"
#include "ref_sfa.h"
#include "tolerance.h"

enum { DSA_N = 128, DSA_DN = 512, DSA_DR = 64, DSA_LI_N = 64, DSA_LI_D = 128, DSA_TOPK = 2048,
       DSA_BS = 64 };

typedef struct dsa_bufs {
    void *q, *qr, *kv, *kr, *out, *sout, *liq, *lik, *w;
    int32_t *bt, *idx;
    int64_t len;
    fia_tensor tq, tqr, tkv, tkr, tout, tsout, tliq, tlik, tw, tbt, tidx;
} dsa_bufs;

static void dsa_free(dsa_bufs *d) {
    void *all[] = {d->q, d->qr, d->kv, d->kr, d->out, d->sout, d->liq, d->lik, d->w, d->bt, d->idx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

static int dsa_alloc(dsa_bufs *d, int64_t len, uint64_t *seed) {
    memset(d, 0, sizeof *d);
    d->len = len;
    const int64_t blocks = (len + DSA_BS - 1) / DSA_BS, slots = blocks * DSA_BS;
    const fia_dtype bf = FIA_DTYPE_BFLOAT16;
    d->q = bench_alloc(DSA_N * DSA_DN * 2);
    d->qr = bench_alloc(DSA_N * DSA_DR * 2);
    d->out = bench_alloc(DSA_N * DSA_DN * 2);
    d->sout = bench_alloc(DSA_N * DSA_DN * 2);
    d->kv = bench_alloc((size_t)slots * DSA_DN * 2);
    d->kr = bench_alloc((size_t)slots * DSA_DR * 2);
    d->liq = bench_alloc(DSA_LI_N * DSA_LI_D * 2);
    d->lik = bench_alloc((size_t)slots * DSA_LI_D * 2);
    d->w = bench_alloc(DSA_LI_N * sizeof(float));
    d->bt = bench_alloc((size_t)blocks * sizeof(int32_t));
    d->idx = bench_alloc(DSA_TOPK * sizeof(int32_t));
    if (!d->q || !d->qr || !d->out || !d->sout || !d->kv || !d->kr || !d->liq || !d->lik ||
        !d->w || !d->bt || !d->idx)
        return -1;
    if (bench_fill_random(d->q, bf, DSA_N * DSA_DN, seed) ||
        bench_fill_random(d->qr, bf, DSA_N * DSA_DR, seed) ||
        bench_fill_random(d->kv, bf, (size_t)slots * DSA_DN, seed) ||
        bench_fill_random(d->kr, bf, (size_t)slots * DSA_DR, seed) ||
        bench_fill_random(d->liq, bf, DSA_LI_N * DSA_LI_D, seed) ||
        bench_fill_random(d->lik, bf, (size_t)slots * DSA_LI_D, seed) ||
        bench_fill_random(d->w, FIA_DTYPE_FLOAT32, DSA_LI_N, seed))
        return -1;
    for (int64_t i = 0; i < blocks; i++) d->bt[i] = (int32_t)i;
    const int64_t q[4] = {1, 1, DSA_N, DSA_DN}, qr[4] = {1, 1, DSA_N, DSA_DR};
    const int64_t kv[4] = {blocks, DSA_BS, 1, DSA_DN}, kr[4] = {blocks, DSA_BS, 1, DSA_DR};
    const int64_t lq[4] = {1, 1, DSA_LI_N, DSA_LI_D}, lk[4] = {blocks, DSA_BS, 1, DSA_LI_D};
    const int64_t w[3] = {1, 1, DSA_LI_N}, bt[2] = {1, blocks}, idx[4] = {1, 1, 1, DSA_TOPK};
    fia_tensor_init(&d->tq, d->q, bf, 4, q, NULL);
    fia_tensor_init(&d->tqr, d->qr, bf, 4, qr, NULL);
    fia_tensor_init(&d->tout, d->out, bf, 4, q, NULL);
    fia_tensor_init(&d->tsout, d->sout, bf, 4, q, NULL);
    fia_tensor_init(&d->tkv, d->kv, bf, 4, kv, NULL);
    fia_tensor_init(&d->tkr, d->kr, bf, 4, kr, NULL);
    fia_tensor_init(&d->tliq, d->liq, bf, 4, lq, NULL);
    fia_tensor_init(&d->tlik, d->lik, bf, 4, lk, NULL);
    fia_tensor_init(&d->tw, d->w, FIA_DTYPE_FLOAT32, 3, w, NULL);
    fia_tensor_init(&d->tbt, d->bt, FIA_DTYPE_INT32, 2, bt, NULL);
    fia_tensor_init(&d->tidx, d->idx, FIA_DTYPE_INT32, 4, idx, NULL);
    return 0;
}

/* Median of 3 timed runs after one warm-up; -1 on failure (message printed). */
static double dsa_time(fia_plan *plan, void *ws, size_t bytes) {
    double t[3];
    if (fia_plan_execute(plan, ws, bytes) != FIA_STATUS_SUCCESS) {
        cli_library_error(FIA_STATUS_INTERNAL);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        const double t0 = cli_now_seconds();
        fia_plan_execute(plan, ws, bytes);
        t[i] = cli_now_seconds() - t0;
    }
    double lo = t[0] < t[1] ? t[0] : t[1], hi = t[0] < t[1] ? t[1] : t[0];
    return t[2] < lo ? lo : t[2] > hi ? hi : t[2];
}

/* One context length: returns 0 (checks passed), 1 (a check failed), -1 (error). */
static int dsa_run(fia_context *ctx, int64_t len, uint64_t *seed) {
    dsa_bufs d;
    int rc = -1;
    fia_plan *mla = NULL, *li = NULL, *sfa = NULL;
    void *ws = NULL;
    if (dsa_alloc(&d, len, seed) != 0) {
        cli_error("demo: out of memory for %lld tokens", (long long)len);
        goto done;
    }
    /* dense MLA */
    fia_fused_infer_attention_score_tensors mt;
    memset(&mt, 0, sizeof mt);
    mt.query = &d.tq;
    mt.query_rope = &d.tqr;
    mt.key = &d.tkv;
    mt.value = &d.tkv;
    mt.key_rope = &d.tkr;
    mt.block_table = &d.tbt;
    mt.attention_out = &d.tout;
    fia_fused_infer_attention_score_params mp;
    fia_fused_infer_attention_score_params_init(&mp);
    mp.num_heads = DSA_N;
    mp.num_key_value_heads = 1;
    mp.scale = 0.1352;
    mp.input_layout = FIA_LAYOUT_BSND;
    mp.block_size = DSA_BS;
    mp.actual_seq_lengths_kv = &d.len;
    mp.actual_seq_lengths_kv_count = 1;
    /* lightning indexer */
    fia_lightning_indexer_tensors lt;
    memset(&lt, 0, sizeof lt);
    lt.query = &d.tliq;
    lt.key = &d.tlik;
    lt.weights = &d.tw;
    lt.block_table = &d.tbt;
    lt.sparse_indices = &d.tidx;
    fia_lightning_indexer_params lp;
    fia_lightning_indexer_params_init(&lp);
    lp.layout_key = FIA_LAYOUT_PA_BSND;
    lp.sparse_count = DSA_TOPK;
    lp.actual_seq_lengths_key = &d.len;
    lp.actual_seq_lengths_key_count = 1;
    /* sparse flash attention over the selection */
    fia_sparse_flash_attention_tensors st;
    memset(&st, 0, sizeof st);
    st.query = &d.tq;
    st.query_rope = &d.tqr;
    st.key = &d.tkv;
    st.key_rope = &d.tkr;
    st.sparse_indices = &d.tidx;
    st.block_table = &d.tbt;
    st.attention_out = &d.tsout;
    fia_sparse_flash_attention_params sp;
    fia_sparse_flash_attention_params_init(&sp);
    sp.scale_value = 0.1352;
    sp.layout_kv = FIA_LAYOUT_PA_BSND;
    sp.actual_seq_lengths_kv = &d.len;
    sp.actual_seq_lengths_kv_count = 1;

    size_t w1 = 0, w2 = 0, w3 = 0;
    fia_status s = fia_fused_infer_attention_score_plan(ctx, &mt, &mp, &mla, &w1);
    if (s == FIA_STATUS_SUCCESS) s = fia_lightning_indexer_plan(ctx, &lt, &lp, &li, &w2);
    if (s == FIA_STATUS_SUCCESS) s = fia_sparse_flash_attention_plan(ctx, &st, &sp, &sfa, &w3);
    if (s != FIA_STATUS_SUCCESS) {
        cli_library_error(s);
        goto done;
    }
    size_t wmax = w1 > w2 ? w1 : w2;
    wmax = wmax > w3 ? wmax : w3;
    ws = bench_alloc(wmax ? wmax : 64);
    if (!ws) goto done;
    const double t_mla = dsa_time(mla, ws, wmax);
    const double t_li = dsa_time(li, ws, wmax);
    const double t_sfa = dsa_time(sfa, ws, wmax);
    if (t_mla < 0 || t_li < 0 || t_sfa < 0) goto done;

    /* checks on heads 0-1 and 126-127: dense MLA against its oracle, the sparse output against
     * the SFA oracle on the indexer's selection */
    cli_check cm = {0, 0, 0}, cs = {0, 0, 0};
    double want[2 * DSA_DN];
    for (int part = 0; part < 2; part++) {
        const int64_t h0 = part ? DSA_N - 2 : 0;
        fia_tensor q = bench_sub_view(&d.tq, 2, h0, 2), qr = bench_sub_view(&d.tqr, 2, h0, 2);
        fia_tensor o = bench_sub_view(&d.tout, 2, h0, 2), so = bench_sub_view(&d.tsout, 2, h0, 2);
        fia_fused_infer_attention_score_tensors m2 = mt;
        m2.query = &q;
        m2.query_rope = &qr;
        m2.attention_out = &o;
        fia_fused_infer_attention_score_params mp2 = mp;
        mp2.num_heads = 2;
        if (fia_ref_mla(&m2, &mp2, want, NULL) != 0) goto done;
        const fia_ref_tolerance *tm = fia_ref_tolerance_of("fused_infer_attention_score/mla", "attention_out", o.dtype);
        cli_check_tensor(&o, want, tm->atol, tm->rtol, &cm);
        fia_sparse_flash_attention_tensors s2 = st;
        s2.query = &q;
        s2.query_rope = &qr;
        s2.attention_out = &so;
        if (fia_ref_sparse_flash_attention(&s2, &sp, NULL, 0, want, NULL) != 0) goto done;
        const fia_ref_tolerance *ts = fia_ref_tolerance_of("sparse_flash_attention", "attention_out", so.dtype);
        cli_check_tensor(&so, want, ts->atol, ts->rtol, &cs);
    }
    const double flops_mla = 2.0 * DSA_N * (DSA_DN + DSA_DR + DSA_DN) * (double)len;
    printf("%6lldK  dense MLA %8.2f ms (%5.1f GFLOP/s)   indexer %6.2f ms + sparse %5.2f ms = "
           "%6.2f ms   speed-up %5.1fx   checks: MLA %s, sparse %s\n",
           (long long)(len / 1024), t_mla * 1e3, flops_mla / t_mla * 1e-9, t_li * 1e3,
           t_sfa * 1e3, (t_li + t_sfa) * 1e3, t_mla / (t_li + t_sfa),
           cm.failures ? "FAIL" : "pass", cs.failures ? "FAIL" : "pass");
    fflush(stdout);
    rc = cm.failures || cs.failures ? 1 : 0;
done:
    free(ws);
    fia_plan_destroy(mla);
    fia_plan_destroy(li);
    fia_plan_destroy(sfa);
    dsa_free(&d);
    return rc;
}

int demo_dsa(fia_context *ctx) {
    printf("\nDeepSeek-V3.2 decode step (batch 1, 128 heads, latent 512 + rope 64, bf16 PA_BSND "
           "cache): dense MLA\nover every cached token vs the lightning indexer (64 x 128, top "
           "2048) + sparse flash attention:\n");
    uint64_t seed = 0x5eed;
    const int64_t lens[2] = {32768, 131072};
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        const int r = dsa_run(ctx, lens[i], &seed);
        if (r < 0) return -1;
        failed |= r;
    }
    return failed;
}
