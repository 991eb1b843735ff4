/*
 * test_prolog_roundtrip.c - the caches mla_prolog_v3 writes are read by the attention
 * operators: a prefill of L tokens through mla_prolog_v3 (PA_BSND cache, shuffled block table,
 * cache_index from it) feeds sparse_flash_attention (TND query, top-k selections) and
 * fused_infer_attention_score (MLA, TND, causal); the same prefill into PA_NZ caches must hold
 * the same values in FRACTAL_NZ order and feed fused_infer_attention_score (MLA) from them.
 * Each output is compared (1) with the attention oracle on the same caches and queries (every
 * element: checks that the rows land where the readers look), and (2) end to end with the
 * oracle chain, at most 0.1% of the elements off (a q_c bf16 rounding tie decided differently
 * moves a whole head's logits): ref_prolog (the golden's rounding points) -> its outputs
 * rounded to bf16 (the dtype of the prolog's outputs and caches) in fp32 tensors -> ref_sfa /
 * ref_mla.
 * The same prefill into the C8 cache (kv_cache_quant_mode 3: the 656-byte int8 rows) feeds
 * kv_quant_sparse_flash_attention, checked the same two ways.
 * Tolerance per element: 1e-3 max(1, max |cache value|) + 5e-3 |ref| + one bf16 ulp of ref
 * (the cache rows after RMSNorm reach |3|; an output is a convex combination of them, so the
 * absolute term scales with them; the ulp covers input rounding ties).
 */
#include "ref_mla.h"
#include "ref_prolog.h"
#include "ref_sfa.h"
#include "ref_util.h"
#include "test_util.h"

enum { HCKV = 512, DR = 64, BS = 16 };

static int64_t g_chain_bad, g_chain_total;
static void chain_count(int64_t bad, int64_t n) {
    g_chain_bad += bad;
    g_chain_total += n;
}

static float bf(double x) { return fia_bf16_to_f32(fia_f32_to_bf16((float)x)); }

/* vmax: the largest |value| of the cache rows; an attention output is a convex combination of
 * them, so the absolute tolerance scales with it (atol 1e-3 for rows within [-1, 1]). */
static int64_t cmp_out(const fia_tensor *got, const double *want, int64_t n, double vmax) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double g = fia_ref_load(got, i);
        /* plus one bf16 ulp of the value: a cache element whose bf16 rounding tie fia and the
         * oracle decide differently moves a row with few selected tokens by that much */
        int ex;
        frexp(fabs(want[i]), &ex);
        const double ulp = want[i] != 0.0 ? ldexp(1.0, ex - 8) : 0.0;
        if (!(fabs(g - want[i]) <= 1e-3 * (vmax > 1 ? vmax : 1) + 5e-3 * fabs(want[i]) + ulp)) {
            if (bad < 3) fprintf(stderr, "  [%lld]: fia %.6g oracle %.6g\n", (long long)i, g, want[i]);
            bad++;
        }
    }
    return bad;
}

static void roundtrip(fia_context *ctx, uint64_t seed, int64_t L, int64_t N, int64_t He,
                      int64_t Hcq, int64_t D, int64_t K) {
    char desc[160];
    snprintf(desc, sizeof desc, "seed %llu L %lld N %lld He %lld Hcq %lld D %lld K %lld threads %d",
             (unsigned long long)seed, (long long)L, (long long)N, (long long)He, (long long)Hcq,
             (long long)D, (long long)K, (int)fia_context_num_threads(ctx));
    tu_rng r = tu_rng_make(seed);
    const int64_t nblk = (L + BS - 1) / BS, blocks = nblk + 2, W = N * (D + DR);
    tu_tensor x, wdq, wuq, wuk, wdkv, gcq, gckv, sn, cs, kv, kr, ci, qo, qr, bt;
    tu_tensor q32, qr32, kv32, kr32, idx, so, mo;
    int e = 0;
    e |= tu_alloc(&x, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){L, He}, NULL, 0);
    e |= tu_alloc(&wdq, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){He, Hcq}, NULL, 0);
    e |= tu_alloc(&wuq, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){Hcq, W}, NULL, 0);
    e |= tu_alloc(&wuk, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){N, D, HCKV}, NULL, 0);
    e |= tu_alloc(&wdkv, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){He, HCKV + DR}, NULL, 0);
    e |= tu_alloc(&gcq, FIA_DTYPE_BFLOAT16, 1, (int64_t[]){Hcq}, NULL, 0);
    e |= tu_alloc(&gckv, FIA_DTYPE_BFLOAT16, 1, (int64_t[]){HCKV}, NULL, 0);
    e |= tu_alloc(&sn, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){L, DR}, NULL, 0);
    e |= tu_alloc(&cs, FIA_DTYPE_BFLOAT16, 2, (int64_t[]){L, DR}, NULL, 0);
    e |= tu_alloc(&kv, FIA_DTYPE_BFLOAT16, 4, (int64_t[]){blocks, BS, 1, HCKV}, NULL, 0);
    e |= tu_alloc(&kr, FIA_DTYPE_BFLOAT16, 4, (int64_t[]){blocks, BS, 1, DR}, NULL, 0);
    e |= tu_alloc(&ci, FIA_DTYPE_INT64, 1, (int64_t[]){L}, NULL, 0);
    e |= tu_alloc(&qo, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
    e |= tu_alloc(&qr, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, DR}, NULL, 0);
    e |= tu_alloc(&bt, FIA_DTYPE_INT32, 2, (int64_t[]){1, nblk}, NULL, 0);
    e |= tu_alloc(&q32, FIA_DTYPE_FLOAT32, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
    e |= tu_alloc(&qr32, FIA_DTYPE_FLOAT32, 3, (int64_t[]){L, N, DR}, NULL, 0);
    e |= tu_alloc(&kv32, FIA_DTYPE_FLOAT32, 4, (int64_t[]){blocks, BS, 1, HCKV}, NULL, 0);
    e |= tu_alloc(&kr32, FIA_DTYPE_FLOAT32, 4, (int64_t[]){blocks, BS, 1, DR}, NULL, 0);
    e |= tu_alloc(&idx, FIA_DTYPE_INT32, 3, (int64_t[]){L, 1, K}, NULL, 0);
    e |= tu_alloc(&so, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
    e |= tu_alloc(&mo, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
    double *want = malloc(sizeof(double) * (size_t)(L * N * HCKV));
    double *oqo = malloc(sizeof(double) * (size_t)(L * N * HCKV));
    double *oqr = malloc(sizeof(double) * (size_t)(L * N * DR));
    double *okv = malloc(sizeof(double) * (size_t)(L * HCKV));
    double *okr = malloc(sizeof(double) * (size_t)(L * DR));
    if (e || !want || !oqo || !oqr || !okv || !okr) {
        tu_check(0, "allocation: %s", desc);
        goto done;
    }
    tu_fill_uniform(&x.t, &r, -1, 1);
    tu_fill_uniform(&wdq.t, &r, -1 / sqrt((double)He), 1 / sqrt((double)He));
    tu_fill_uniform(&wuq.t, &r, -1 / sqrt((double)Hcq), 1 / sqrt((double)Hcq));
    tu_fill_uniform(&wuk.t, &r, -1 / sqrt((double)D), 1 / sqrt((double)D));
    tu_fill_uniform(&wdkv.t, &r, -1 / sqrt((double)He), 1 / sqrt((double)He));
    tu_fill_uniform(&gcq.t, &r, 0.5, 1.5);
    tu_fill_uniform(&gckv.t, &r, 0.5, 1.5);
    for (int64_t t = 0; t < L; t++)
        for (int64_t j = 0; j < DR / 2; j++) {
            const double a = (double)t * pow(10000.0, -2.0 * (double)j / DR);
            tu_store(&cs.t, t * DR + j, cos(a));
            tu_store(&cs.t, t * DR + j + DR / 2, cos(a));
            tu_store(&sn.t, t * DR + j, sin(a));
            tu_store(&sn.t, t * DR + j + DR / 2, sin(a));
        }
    /* shuffled blocks, cache_index from the block table */
    int32_t *btv = bt.buf;
    int64_t perm[64];
    for (int64_t i = 0; i < blocks; i++) perm[i] = i;
    for (int64_t i = blocks - 1; i > 0; i--) {
        const int64_t j = tu_int(&r, 0, i), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    for (int64_t i = 0; i < nblk; i++) btv[i] = (int32_t)perm[i];
    for (int64_t t = 0; t < L; t++) ((int64_t *)ci.buf)[t] = btv[t / BS] * BS + t % BS;
    /* top-K distinct selections among tokens <= t, -1 padded */
    int32_t *iv = idx.buf;
    for (int64_t t = 0; t < L; t++) {
        int64_t tok[512];
        for (int64_t j = 0; j <= t; j++) tok[j] = j;
        const int64_t n = t + 1 < K ? t + 1 : K;
        for (int64_t k = 0; k < n; k++) {
            const int64_t j = tu_int(&r, k, t), tmp = tok[k];
            tok[k] = tok[j];
            tok[j] = tmp;
            iv[t * K + k] = (int32_t)tok[k];
        }
        for (int64_t k = n; k < K; k++) iv[t * K + k] = -1;
    }
    /* 1. the prolog */
    fia_mla_prolog_v3_params pp;
    fia_mla_prolog_v3_params_init(&pp);
    fia_mla_prolog_v3_tensors pt;
    memset(&pt, 0, sizeof pt);
    pt.token_x = &x.t, pt.weight_dq = &wdq.t, pt.weight_uq_qr = &wuq.t, pt.weight_uk = &wuk.t;
    pt.weight_dkv_kr = &wdkv.t, pt.rmsnorm_gamma_cq = &gcq.t, pt.rmsnorm_gamma_ckv = &gckv.t;
    pt.rope_sin = &sn.t, pt.rope_cos = &cs.t, pt.kv_cache = &kv.t, pt.kr_cache = &kr.t;
    pt.cache_index = &ci.t, pt.query_out = &qo.t, pt.query_rope_out = &qr.t;
    fia_status st = fia_mla_prolog_v3(ctx, &pt, &pp);
    if (!tu_check(st == FIA_STATUS_SUCCESS, "prolog: %s %s: %s", fia_status_string(st),
                  fia_last_error(), desc))
        goto done;
    const ref_prolog_out o = {oqo, oqr, NULL, okv, okr, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    if (!tu_check(fia_ref_mla_prolog_v3(&pt, &pp, 2, &o) == 0, "prolog oracle")) goto done;
    /* the prolog's outputs and caches are bf16 tensors: the oracle chain rounds there too */
    for (int64_t i = 0; i < L * N * HCKV; i++) ((float *)q32.buf)[i] = bf(oqo[i]);
    for (int64_t i = 0; i < L * N * DR; i++) ((float *)qr32.buf)[i] = bf(oqr[i]);
    for (int64_t t = 0; t < L; t++) {
        const int64_t s = ((int64_t *)ci.buf)[t];
        for (int64_t j = 0; j < HCKV; j++) ((float *)kv32.buf)[s * HCKV + j] = bf(okv[t * HCKV + j]);
        for (int64_t j = 0; j < DR; j++) ((float *)kr32.buf)[s * DR + j] = bf(okr[t * DR + j]);
    }
    const double scale = 1.0 / sqrt((double)(D + DR));
    double vmax = 0;
    for (int64_t i = 0; i < L * HCKV; i++) vmax = fabs(okv[i]) > vmax ? fabs(okv[i]) : vmax;
    const int64_t qlen[1] = {L}, kvlen[1] = {L};
    /* 2. sparse_flash_attention over the written caches */
    {
        fia_sparse_flash_attention_params sp;
        fia_sparse_flash_attention_params_init(&sp);
        sp.scale_value = scale;
        sp.layout_query = FIA_LAYOUT_TND;
        sp.layout_kv = FIA_LAYOUT_PA_BSND;
        sp.sparse_mode = 3;
        sp.actual_seq_lengths_query = qlen;
        sp.actual_seq_lengths_query_count = 1;
        sp.actual_seq_lengths_kv = kvlen;
        sp.actual_seq_lengths_kv_count = 1;
        fia_sparse_flash_attention_tensors ft = {&qo.t, &kv.t, NULL, &idx.t, &bt.t, &qr.t, &kr.t,
                                                 &so.t, NULL, NULL, NULL, NULL};
        st = fia_sparse_flash_attention(ctx, &ft, &sp);
        if (tu_check(st == FIA_STATUS_SUCCESS, "sfa: %s %s: %s", fia_status_string(st),
                     fia_last_error(), desc)) {
            fia_sparse_flash_attention_tensors rt = {&q32.t, &kv32.t, NULL, &idx.t, &bt.t,
                                                     &qr32.t, &kr32.t, &so.t, NULL, NULL, NULL,
                                                     NULL};
            if (tu_check(fia_ref_sparse_flash_attention(&ft, &sp, NULL, 0, want, NULL) == 0,
                         "sfa oracle")) {
                const int64_t bad = cmp_out(&so.t, want, L * N * HCKV, vmax);
                tu_check(bad == 0, "prolog caches -> sparse_flash_attention (oracle on the same "
                         "caches): %lld elements off: %s", (long long)bad, desc);
            }
            if (tu_check(fia_ref_sparse_flash_attention(&rt, &sp, NULL, 0, want, NULL) == 0,
                         "sfa oracle")) {
                const int64_t bad = cmp_out(&so.t, want, L * N * HCKV, vmax);
                chain_count(bad, L * N * HCKV);
                tu_check(bad <= L * N * HCKV / 1000, "prolog -> sparse_flash_attention vs the "
                         "oracle chain: %lld elements off (> 0.1%%): %s", (long long)bad, desc);
            }
        }
    }
    /* 3. fused_infer_attention_score (MLA) over the same caches, causal */
    {
        fia_fused_infer_attention_score_params fp;
        fia_fused_infer_attention_score_params_init(&fp);
        fp.num_heads = N;
        fp.num_key_value_heads = 1;
        fp.scale = scale;
        fp.input_layout = FIA_LAYOUT_TND;
        fp.sparse_mode = 3;
        fp.block_size = BS;
        fp.actual_seq_lengths = qlen;
        fp.actual_seq_lengths_count = 1;
        fp.actual_seq_lengths_kv = kvlen;
        fp.actual_seq_lengths_kv_count = 1;
        fia_fused_infer_attention_score_tensors ft;
        memset(&ft, 0, sizeof ft);
        ft.query = &qo.t, ft.key = &kv.t, ft.value = &kv.t, ft.block_table = &bt.t;
        ft.query_rope = &qr.t, ft.key_rope = &kr.t, ft.attention_out = &mo.t;
        st = fia_fused_infer_attention_score(ctx, &ft, &fp);
        if (tu_check(st == FIA_STATUS_SUCCESS, "fia mla: %s %s: %s", fia_status_string(st),
                     fia_last_error(), desc)) {
            fia_fused_infer_attention_score_tensors rt = ft;
            rt.query = &q32.t, rt.key = &kv32.t, rt.value = &kv32.t;
            rt.query_rope = &qr32.t, rt.key_rope = &kr32.t;
            if (tu_check(fia_ref_mla(&ft, &fp, want, NULL) == 0, "mla oracle")) {
                const int64_t bad = cmp_out(&mo.t, want, L * N * HCKV, vmax);
                tu_check(bad == 0, "prolog caches -> fused_infer_attention_score MLA (oracle on "
                         "the same caches): %lld elements off: %s", (long long)bad, desc);
            }
            if (tu_check(fia_ref_mla(&rt, &fp, want, NULL) == 0, "mla oracle")) {
                const int64_t bad = cmp_out(&mo.t, want, L * N * HCKV, vmax);
                chain_count(bad, L * N * HCKV);
                tu_check(bad <= L * N * HCKV / 1000, "prolog -> fused_infer_attention_score MLA "
                         "vs the oracle chain: %lld elements off (> 0.1%%): %s", (long long)bad,
                         desc);
            }
        }
    }
    /* 4. the same prefill into PA_NZ caches: the same values in FRACTAL_NZ order, read by
     *    fused_infer_attention_score (MLA) from the NZ cache */
    {
        tu_tensor nkv, nkr, no;
        e = tu_alloc(&nkv, FIA_DTYPE_BFLOAT16, 5, (int64_t[]){blocks, 1, HCKV / 16, BS, 16}, NULL, 0);
        e |= tu_alloc(&nkr, FIA_DTYPE_BFLOAT16, 5, (int64_t[]){blocks, 1, DR / 16, BS, 16}, NULL, 0);
        e |= tu_alloc(&no, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
        if (tu_check(e == 0, "allocation")) {
            fia_mla_prolog_v3_params np = pp;
            np.cache_mode = FIA_LAYOUT_PA_NZ;
            fia_mla_prolog_v3_tensors nt = pt;
            nt.kv_cache = &nkv.t;
            nt.kr_cache = &nkr.t;
            st = fia_mla_prolog_v3(ctx, &nt, &np);
            if (tu_check(st == FIA_STATUS_SUCCESS, "prolog PA_NZ: %s %s: %s",
                         fia_status_string(st), fia_last_error(), desc)) {
                int64_t diff = 0;
                const uint16_t *a16 = kv.buf, *n16 = nkv.buf, *ar = kr.buf, *nr = nkr.buf;
                for (int64_t bl = 0; bl < blocks; bl++)
                    for (int64_t rw = 0; rw < BS; rw++) {
                        for (int64_t d = 0; d < HCKV; d++)
                            diff += a16[(bl * BS + rw) * HCKV + d] !=
                                    n16[bl * HCKV * BS + (d / 16) * BS * 16 + rw * 16 + d % 16];
                        for (int64_t d = 0; d < DR; d++)
                            diff += ar[(bl * BS + rw) * DR + d] !=
                                    nr[bl * DR * BS + (d / 16) * BS * 16 + rw * 16 + d % 16];
                    }
                tu_check(diff == 0, "PA_NZ caches differ from the PA_BSND ones in %lld "
                         "elements: %s", (long long)diff, desc);
                fia_fused_infer_attention_score_params fp;
                fia_fused_infer_attention_score_params_init(&fp);
                fp.num_heads = N;
                fp.num_key_value_heads = 1;
                fp.scale = scale;
                fp.input_layout = FIA_LAYOUT_TND;
                fp.sparse_mode = 3;
                fp.block_size = BS;
                fp.actual_seq_lengths = qlen;
                fp.actual_seq_lengths_count = 1;
                fp.actual_seq_lengths_kv = kvlen;
                fp.actual_seq_lengths_kv_count = 1;
                fia_fused_infer_attention_score_tensors ft;
                memset(&ft, 0, sizeof ft);
                ft.query = &qo.t, ft.key = &nkv.t, ft.value = &nkv.t, ft.block_table = &bt.t;
                ft.query_rope = &qr.t, ft.key_rope = &nkr.t, ft.attention_out = &no.t;
                st = fia_fused_infer_attention_score(ctx, &ft, &fp);
                if (tu_check(st == FIA_STATUS_SUCCESS, "fia mla NZ: %s %s: %s",
                             fia_status_string(st), fia_last_error(), desc) &&
                    tu_check(fia_ref_mla(&ft, &fp, want, NULL) == 0, "mla oracle NZ")) {
                    const int64_t bad = cmp_out(&no.t, want, L * N * HCKV, vmax);
                    tu_check(bad == 0, "prolog PA_NZ caches -> fused_infer_attention_score MLA: "
                             "%lld elements off: %s", (long long)bad, desc);
                }
            }
        }
        tu_free(&nkv);
        tu_free(&nkr);
        tu_free(&no);
    }
    /* 5. the same prefill into the C8 cache (kv_cache_quant_mode 3, the 656-byte rows, no kr
     * cache) read by kv_quant_sparse_flash_attention: (a) against its oracle on the same cache,
     * every element (with the oracle's P-rounding slack); (b) end to end: the oracle's C8 rows
     * (ref_prolog's quantized form, rounded to int8 / bf16 / fp32 as stored) under the C8
     * oracle, at most 0.1% of the elements off */
    {
        tu_tensor kv8, kv8r, q576, alpha, o8;
        int e8 = 0;
        e8 |= tu_alloc(&kv8, FIA_DTYPE_INT8, 4, (int64_t[]){blocks, BS, 1, 656}, NULL, 0);
        e8 |= tu_alloc(&kv8r, FIA_DTYPE_INT8, 4, (int64_t[]){blocks, BS, 1, 656}, NULL, 0);
        e8 |= tu_alloc(&q576, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV + DR}, NULL, 0);
        e8 |= tu_alloc(&alpha, FIA_DTYPE_FLOAT32, 1, (int64_t[]){1}, NULL, 0);
        e8 |= tu_alloc(&o8, FIA_DTYPE_BFLOAT16, 3, (int64_t[]){L, N, HCKV}, NULL, 0);
        double *kvq = malloc(sizeof(double) * (size_t)(L * HCKV));
        double *ksc = malloc(sizeof(double) * (size_t)(L * 4));
        double *slack = malloc(sizeof(double) * (size_t)(L * N * HCKV));
        if (e8 || !kvq || !ksc || !slack) {
            tu_check(0, "allocation (C8): %s", desc);
        } else {
            ((float *)alpha.buf)[0] = 0.95f;
            fia_mla_prolog_v3_params p8 = pp;
            p8.kv_cache_quant_mode = 3;
            p8.ckvkr_repo_mode = p8.quant_scale_repo_mode = 1;
            fia_mla_prolog_v3_tensors t8 = pt;
            t8.kv_cache = &kv8.t;
            t8.kr_cache = NULL;
            t8.k_nope_clip_alpha = &alpha.t;
            st = fia_mla_prolog_v3(ctx, &t8, &p8);
            if (tu_check(st == FIA_STATUS_SUCCESS, "prolog C8: %s %s: %s", fia_status_string(st),
                         fia_last_error(), desc)) {
                const ref_prolog_quant oq = {kvq, ksc, NULL, NULL, NULL, NULL};
                tu_check(fia_ref_mla_prolog_v3_quant(&t8, &p8, &o, &oq) == 0, "quant oracle");
                for (int64_t t = 0; t < L; t++) {
                    const int64_t sl = ((int64_t *)ci.buf)[t];
                    int8_t *row = (int8_t *)kv8r.buf + sl * 656;
                    for (int j = 0; j < HCKV; j++)
                        row[j] = (int8_t)fmin(fmax(rint(kvq[t * HCKV + j]), -128), 127);
                    for (int j = 0; j < DR; j++) {
                        const uint16_t h = fia_f32_to_bf16((float)okr[t * DR + j]);
                        memcpy(row + HCKV + 2 * j, &h, 2);
                    }
                    for (int i = 0; i < 4; i++) {
                        const float sc = (float)ksc[t * 4 + i];
                        memcpy(row + 640 + 4 * i, &sc, 4);
                    }
                }
                /* the query: [query_out | query_rope_out] of the same call */
                for (int64_t i = 0; i < L * N; i++) {
                    memcpy((uint16_t *)q576.buf + i * (HCKV + DR), (uint16_t *)qo.buf + i * HCKV, HCKV * 2);
                    memcpy((uint16_t *)q576.buf + i * (HCKV + DR) + HCKV, (uint16_t *)qr.buf + i * DR, DR * 2);
                }
                fia_kv_quant_sparse_flash_attention_params kp;
                fia_kv_quant_sparse_flash_attention_params_init(&kp);
                kp.base.scale_value = scale;
                kp.base.layout_query = FIA_LAYOUT_TND;
                kp.base.layout_kv = FIA_LAYOUT_PA_BSND;
                kp.base.sparse_mode = 3;
                kp.base.actual_seq_lengths_query = qlen;
                kp.base.actual_seq_lengths_query_count = 1;
                kp.base.actual_seq_lengths_kv = kvlen;
                kp.base.actual_seq_lengths_kv_count = 1;
                fia_kv_quant_sparse_flash_attention_tensors ft8 = {&q576.t, &kv8.t, NULL, &idx.t,
                                                                   &bt.t, &o8.t, NULL, NULL, NULL,
                                                                   NULL};
                st = fia_kv_quant_sparse_flash_attention(ctx, &ft8, &kp);
                if (tu_check(st == FIA_STATUS_SUCCESS, "C8 sfa: %s %s: %s",
                             fia_status_string(st), fia_last_error(), desc)) {
                    for (int pass = 0; pass < 2; pass++) {
                        fia_kv_quant_sparse_flash_attention_tensors rt8 = ft8;
                        if (pass) rt8.key = &kv8r.t;
                        if (!tu_check(fia_ref_kv_quant_sparse_flash_attention_stats(
                                          &rt8, &kp, NULL, 0, want, NULL, NULL, NULL, slack) == 0,
                                      "C8 oracle"))
                            break;
                        int64_t bad = 0;
                        for (int64_t i = 0; i < L * N * HCKV; i++) {
                            const double g = fia_ref_load(&o8.t, i);
                            int ex;
                            frexp(fabs(want[i]), &ex);
                            const double ulp = want[i] != 0.0 ? ldexp(1.0, ex - 8) : 0.0;
                            if (!(fabs(g - want[i]) <= 1e-3 * (vmax > 1 ? vmax : 1) +
                                                           5e-3 * fabs(want[i]) + ulp + slack[i])) {
                                if (bad < 3 && !pass)
                                    fprintf(stderr, "  C8 [%lld]: fia %.6g oracle %.6g\n",
                                            (long long)i, g, want[i]);
                                bad++;
                            }
                        }
                        if (!pass) {
                            tu_check(bad == 0, "prolog C8 cache -> kv_quant_sparse_flash_attention "
                                     "(oracle on the same cache): %lld elements off: %s",
                                     (long long)bad, desc);
                        } else {
                            chain_count(bad, L * N * HCKV);
                            tu_check(bad <= L * N * HCKV / 1000, "prolog C8 -> kv_quant_sparse_"
                                     "flash_attention vs the oracle chain: %lld elements off "
                                     "(> 0.1%%): %s", (long long)bad, desc);
                        }
                    }
                }
            }
        }
        free(kvq), free(ksc), free(slack);
        tu_free(&kv8), tu_free(&kv8r), tu_free(&q576), tu_free(&alpha), tu_free(&o8);
    }
done:
    free(want), free(oqo), free(oqr), free(okv), free(okr);
    tu_tensor *all[] = {&x, &wdq, &wuq, &wuk, &wdkv, &gcq, &gckv, &sn, &cs, &kv, &kr, &ci, &qo,
                        &qr, &bt, &q32, &qr32, &kv32, &kr32, &idx, &so, &mo};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tu_free(all[i]);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 15, "test_prolog_roundtrip");
    int threads[2] = {1, 2};
    for (int k = 0; k < 2; k++) {
        fia_context_options opt = {threads[k], FIA_ISA_AUTO};
        fia_context *ctx = NULL;
        if (!tu_check(fia_context_create(&opt, &ctx) == FIA_STATUS_SUCCESS, "context")) continue;
        /* without oneDNN the prolog is UNSUPPORTED (checked before any tensor): nothing to
         * round-trip */
        fia_mla_prolog_v3_tensors none;
        memset(&none, 0, sizeof none);
        fia_mla_prolog_v3_params pp;
        fia_mla_prolog_v3_params_init(&pp);
        if (fia_mla_prolog_v3(ctx, &none, &pp) == FIA_STATUS_UNSUPPORTED) {
            printf("skipped: %s\n", fia_last_error());
            tu_check(1, "unsupported without oneDNN");
            fia_context_destroy(ctx);
            break;
        }
        tu_rng r = tu_rng_make(seed + (uint64_t)k);
        for (int i = 0; i < 4; i++) {
            const int64_t L = tu_int(&r, 1, 70), N = i == 3 ? 128 : (int64_t[]){1, 4, 16}[i];
            roundtrip(ctx, tu_next(&r), L, N, 64, 32, 16, i == 0 ? 1 : 8 + 8 * i);
        }
        fia_context_destroy(ctx);
    }
    printf("against the oracle chain: %lld of %lld attention outputs out of tolerance "
           "(q_c rounding ties, amplified by W_UK into the logits)\n", (long long)g_chain_bad,
           (long long)g_chain_total);
    return tu_summary();
}
