/*
 * test_fia.c - FusedInferAttentionScore against the double-precision oracle (tests/ref): the
 * results themselves.
 *
 *   test_fia [seed]          FIA_TEST_CASES=N sets the number of random cases (default 300)
 *                            FIA_TEST_ONLY=i runs random case i only (with the same seed)
 *
 * Sections: oracle self-checks (hand-computed), seeded random cases over every layout / sparse
 * mode / dtype / cache form, edge cases, determinism (threads and batch composition). Every case
 * runs under every ISA the CPU has (scalar, AVX2, AVX-512), each against the oracle, under the
 * tolerances documented in fia_cases.h (which holds the case machinery). Plan / execute
 * behaviour, concurrency and invalid input are in test_fia_api.c.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fia.h"
#include "fia_cases.h"
#include "ref/ref_fia.h"
#include "test_util.h"

/* ------------------------------------------------------------------------------------------ */
/* Random and edge cases                                                                      */
/* ------------------------------------------------------------------------------------------ */

static int64_t pick_window(tu_rng *r, int64_t span) {
    switch (tu_int(r, 0, 9)) {
    case 0: return 2147483647;
    case 1: return INT64_MAX;
    case 2: return -tu_int(r, 1, span + 2);
    case 3: return tu_chance(r, 0.5) ? INT64_MIN : -INT64_MAX;
    default: return tu_int(r, -2, span + 2);
    }
}

/* Random case idx: the layout, query dtype and sparse mode cycle with idx so that every
 * combination appears within 75 cases; the rest is drawn from r. */
static void gen_random_case(tu_rng *r, int idx, fcase *c) {
    static const fia_layout layouts[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD,
                                          FIA_LAYOUT_TND, FIA_LAYOUT_BNSD_BSND};
    static const fia_dtype qdts[3] = {FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16, FIA_DTYPE_FLOAT32};
    static const int64_t groups[] = {1, 1, 2, 4, 8}, kvheads[] = {1, 1, 2, 3};
    static const int64_t dims[] = {1, 3, 8, 16, 16, 32, 32, 40, 64, 72, 128};
    static const int64_t vdims[] = {8, 16, 24, 64, 128};
    static const int64_t bss[] = {1, 4, 16, 32, 128};
    static const fia_dtype mdts[] = {FIA_DTYPE_BOOL, FIA_DTYPE_INT8, FIA_DTYPE_UINT8};
    static const fia_dtype aqdts[] = {FIA_DTYPE_FLOAT32, FIA_DTYPE_FLOAT16, FIA_DTYPE_BFLOAT16};
    static const double mps[] = {0.0, 0.1, 0.3, 0.7};
    fia_layout layout = layouts[idx % 5];
    if (layout == FIA_LAYOUT_TND) { /* TND's siblings in turn: NTD, TND_NTD, NTD_TND */
        static const fia_layout tnds[4] = {FIA_LAYOUT_TND, FIA_LAYOUT_NTD, FIA_LAYOUT_TND_NTD,
                                           FIA_LAYOUT_NTD_TND};
        layout = tnds[(idx / 5) % 4];
    }
    const int64_t G = TU_PICK(r, groups), N2 = TU_PICK(r, kvheads), D = TU_PICK(r, dims);
    const int decode = !lay_tnd(layout) && tu_chance(r, 0.3);
    const int64_t S1 = decode ? 1 : tu_int(r, 1, tu_chance(r, 0.15) ? 80 : 24);
    const int64_t S2 = tu_int(r, 1, tu_chance(r, 0.15) ? 160 : 48);
    *c = base_case(layout, qdts[(idx / 5) % 3], tu_int(r, 1, 4), N2 * G, N2, S1, S2, D,
                   tu_chance(r, 0.7) ? D : TU_PICK(r, vdims));
    c->sparse_mode = (idx / 15) % 5;
    c->n2_zero = G == 1 && tu_chance(r, 0.5);
    for (int64_t b = 0; b < c->B; b++) {
        if (lay_tnd(layout)) {
            c->qlen[b] = tu_int(r, 0, tu_chance(r, 0.15) ? 60 : 20);
            c->kvlen[b] = tu_int(r, 0, tu_chance(r, 0.15) ? 120 : 40);
        } else {
            c->qlen[b] = tu_chance(r, 0.5) ? S1 : tu_int(r, 0, S1);
            c->kvlen[b] = tu_chance(r, 0.4) ? S2 : tu_int(r, 0, S2);
        }
        if (tu_chance(r, 0.08)) c->kvlen[b] = 0;
    }
    if (!lay_tnd(layout)) c->qform = (int)tu_int(r, 0, 3), c->kvform = (int)tu_int(r, 0, 3);
    if (tu_chance(r, 0.35)) {
        set_paged(c, tu_chance(r, 0.5) ? 3 : 4, TU_PICK(r, bss));
        c->extra_blocks = tu_int(r, 0, 3), c->table_pad = tu_int(r, 0, 2);
        if (tu_chance(r, 0.3)) c->kvform = LEN_BCAST;
    }
    c->mask_dt = TU_PICK(r, mdts);
    c->mask_p = TU_PICK(r, mps);
    c->masked_rows = tu_chance(r, 0.2) ? (int)tu_int(r, 1, 2) : 0;
    c->mask_pad[0] = tu_int(r, 0, 2), c->mask_pad[1] = tu_int(r, 0, 3);
    const int64_t span = S2 > 24 ? S2 : 24;
    switch (c->sparse_mode) {
    case 0:
        if (tu_chance(r, 0.5)) c->mask = (int)tu_int(r, MASK_2D, decode && c->B > 1 ? MASK_DEC : MASK_4D1);
        if (tu_chance(r, 0.7)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    case 1:
        c->mask = (int)tu_int(r, MASK_2D, decode && c->B > 1 ? MASK_DEC : MASK_4D1);
        if (tu_chance(r, 0.5)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    default:
        c->mask = (int)tu_int(r, MASK_C2, MASK_C4);
        /* decode ignores the mode: a full-form mask is then a full mask and applies */
        if (decode && tu_chance(r, 0.25)) c->mask = (int)tu_int(r, MASK_2D, c->B > 1 ? MASK_DEC : MASK_4D1);
        if (c->sparse_mode == 4 || tu_chance(r, 0.3)) c->pre = pick_window(r, span), c->next = pick_window(r, span);
        break;
    }
    if (tu_chance(r, 0.25)) {
        const int shape = (int)tu_int(r, AQ_T, AQ_TOK);
        set_quant(c, shape, tu_chance(r, 0.5), TU_PICK(r, aqdts));
        if (shape != AQ_T && shape != AQ_TOK) c->Dv = c->D;
    }
    c->lse = tu_chance(r, 0.5);
    c->strided = tu_chance(r, 0.2);
    c->poison = tu_chance(r, 0.5);
    c->cmask_junk = tu_chance(r, 0.3);
    if (lay_tnd(layout) && tu_chance(r, 0.2)) c->tnd_pad = tu_int(r, 1, 3);
    c->scale *= tu_uniform(r, 0.5, 2.0);
    /* a 2-D decode mask with B rows would read as [B, S2]: keep the [S1, S2] form distinct */
    if (decode && c->mask == MASK_2D && c->B > 1 && 1 + c->mask_pad[0] == c->B) c->mask_pad[0]++;
}

static void test_random(uint64_t seed) {
    const long n = tu_env_long("FIA_TEST_CASES", 300), only = tu_env_long("FIA_TEST_ONLY", -1);
    const int64_t before = g_cases_run;
    const double t0 = now_s();
    int bad = 0;
    for (long i = 0; i < n; i++) {
        if (only >= 0 && i != only) continue;
        const uint64_t cs = tu_mix(seed ^ (0x100000000ull * (uint64_t)(i + 1)));
        tu_rng r = tu_rng_make(cs);
        fcase c;
        gen_random_case(&r, (int)i, &c);
        char label[64];
        snprintf(label, sizeof label, "random #%ld", i);
        bad += run_case(&c, cs, label) != 0;
    }
    printf("random: %lld cases (FIA_TEST_CASES=%ld), %d failing, %.1f s\n",
           (long long)(g_cases_run - before), n, bad, now_s() - t0);
}

static void test_edges(uint64_t seed) {
    const int64_t before = g_cases_run;
    const double t0 = now_s();
    int k = 0;
    char label[128];
#define EDGE(c, what) (snprintf(label, sizeof label, "edge %d %s", k, what), run_case(&(c), seed + (uint64_t)(k++), label))
    const fia_layout L[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND,
                             FIA_LAYOUT_BNSD_BSND};
    fcase c;

    /* NTD, TND_NTD and NTD_TND: TND's length rules, lengths 0, causal with lse, paged */
    {
        const fia_layout T3[3] = {FIA_LAYOUT_NTD, FIA_LAYOUT_TND_NTD, FIA_LAYOUT_NTD_TND};
        for (int l = 0; l < 3; l++) {
            c = base_case(T3[l], FIA_DTYPE_FLOAT16, 3, 4, 2, 0, 0, 16, 16);
            set_lens(&c, (const int64_t[]){4, 0, 3}, (const int64_t[]){0, 1, 6});
            c.lse = 1, c.tnd_pad = 2;
            EDGE(c, "token-packed layouts, lengths 0/1");
            c = base_case(T3[l], FIA_DTYPE_BFLOAT16, 2, 8, 2, 0, 0, 64, 32);
            set_lens(&c, (const int64_t[]){9, 4}, (const int64_t[]){33, 20});
            c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1, c.strided = 1;
            EDGE(c, "token-packed layouts, causal prefill");
            set_paged(&c, l % 2 ? 3 : 4, 16);
            EDGE(c, "token-packed layouts, causal prefill paged");
        }
    }

    /* KV length 0 and 1, in every layout, dense and paged. */
    for (int l = 0; l < 5; l++) {
        const int64_t q[3] = {4, 0, 3}, kv[3] = {0, 1, 6};
        c = base_case(L[l], FIA_DTYPE_FLOAT16, 3, 4, 2, 5, 6, 16, 16);
        set_lens(&c, L[l] == FIA_LAYOUT_TND ? q : NULL, kv);
        c.lse = 1;
        EDGE(c, "kv length 0/1");
        set_paged(&c, l % 2 ? 3 : 4, 4);
        EDGE(c, "kv length 0/1 paged");
        c = base_case(L[l], FIA_DTYPE_FLOAT32, 3, 2, 1, L[l] == FIA_LAYOUT_TND ? 0 : 1, 6, 8, 8);
        set_lens(&c, L[l] == FIA_LAYOUT_TND ? (const int64_t[]){1, 2, 3} : NULL, kv);
        c.lse = 1;
        EDGE(c, "decode kv length 0/1");
    }
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 2, 2, 2, 3, 0, 16, 16);
    c.lse = 1;
    EDGE(c, "key tensor with S2 = 0");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 2, 2, 1, 0, 16, 16);
    c.lse = 1;
    EDGE(c, "decode key tensor with S2 = 0");

    /* S1 > S2 under mode 3 (the first S1 - S2 rows see nothing), and under mode 4. */
    for (int l = 0; l < 5; l++) {
        c = base_case(L[l], FIA_DTYPE_FLOAT32, 2, 2, 1, 20, 5, 32, 32);
        set_lens(&c, (const int64_t[]){20, 12}, (const int64_t[]){5, 3});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "mode 3 S1 > S2");
        c.sparse_mode = 4, c.pre = 2, c.next = 0, c.mask = MASK_C4;
        EDGE(c, "mode 4 S1 > S2");
    }

    /* Rows with nothing visible. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 4, 2, 6, 9, 16, 16);
    c.sparse_mode = 1, c.mask = MASK_3D, c.mask_p = 0.3, c.masked_rows = 3, c.lse = 1;
    EDGE(c, "mode 1 fully masked rows");
    c.mask_p = 1.0;
    EDGE(c, "mode 1 everything masked");
    c.sparse_mode = 0, c.mask = MASK_2D, c.mask_p = 0.0, c.masked_rows = 0, c.pre = -3, c.next = -5;
    EDGE(c, "mode 0 empty window");
    c.sparse_mode = 4, c.mask = MASK_C2, c.pre = INT64_MIN, c.next = INT64_MAX;
    EDGE(c, "mode 4 pre = INT64_MIN");
    c.pre = INT64_MAX, c.next = INT64_MIN;
    EDGE(c, "mode 4 next = INT64_MIN");
    c.pre = -2, c.next = 1;
    EDGE(c, "mode 4 negative pre");
    c.sparse_mode = 0, c.mask = MASK_2D, c.pre = INT64_MAX, c.next = INT64_MAX;
    EDGE(c, "mode 0 pre/next INT64_MAX");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 3, 2, 1, 1, 12, 16, 16);
    c.mask = MASK_DEC, c.mask_p = 0.5, c.masked_rows = 1, c.lse = 1;
    set_lens(&c, NULL, (const int64_t[]){12, 5, 9});
    EDGE(c, "decode [B, S2] mask with a fully masked batch");
    c.sparse_mode = 3, c.mask = MASK_C3, c.masked_rows = 0;
    EDGE(c, "decode ignores mode 3 (compressed mask not applied)");
    c.sparse_mode = 4, c.pre = -1, c.next = -1;
    EDGE(c, "decode ignores mode 4 pre/next");
    c.mask = MASK_4D, c.mask_p = 0.5;
    EDGE(c, "decode, mode 4, full-form mask applies");
    c.sparse_mode = 0, c.mask = MASK_NONE, c.pre = 0, c.next = 0;
    EDGE(c, "mode 0 without mask ignores pre/next");

    /* Partial last page, block sizes 16 and 512, both cache forms. */
    for (int form = 3; form <= 4; form++) {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 4, 2, 1, 40, 32, 32);
        set_lens(&c, NULL, (const int64_t[]){37, 16, 1});
        set_paged(&c, form, 16);
        c.lse = 1;
        EDGE(c, "paged bs 16 decode, partial page");
        c.S1 = 7, c.sparse_mode = 3, c.mask = MASK_C2;
        set_lens(&c, (const int64_t[]){7, 3, 1}, NULL);
        EDGE(c, "paged bs 16 prefill, partial page");
        c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 2, 2, 1, 1, 700, 16, 16);
        set_lens(&c, NULL, (const int64_t[]){600, 513});
        set_paged(&c, form, 512);
        EDGE(c, "paged bs 512 decode");
        c.S1 = 5, c.sparse_mode = 3, c.mask = MASK_C2;
        EDGE(c, "paged bs 512 prefill");
    }

    /* Head dims. */
    const int64_t hd[4] = {1, 3, 72, 192};
    for (int i = 0; i < 4; i++) {
        c = base_case(L[i], i % 2 ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16, 2, 2, 1, 9, 33, hd[i], 128);
        if (L[i] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){9, 4}, (const int64_t[]){33, 20});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "head dim D with Dv 128, prefill");
        c = base_case(L[(i + 1) % 5 == 3 ? 4 : (i + 1) % 5], FIA_DTYPE_FLOAT32, 2, 4, 2, 1, 33, hd[i], 128);
        EDGE(c, "head dim D with Dv 128, decode");
    }
    for (int64_t d = 256; d <= 512; d *= 2) {
        c = base_case(FIA_LAYOUT_BSND, d == 256 ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT32, 1, 2, 1, 6, 40, d, d);
        c.sparse_mode = 2, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "head dim 256/512 prefill");
        c.S1 = 1;
        set_paged(&c, 4, 16);
        EDGE(c, "head dim 256/512 decode paged");
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 2, 2, 1, 50, d, d);
        set_quant(&c, AQ_C3, 1, FIA_DTYPE_FLOAT32);
        EDGE(c, "head dim 256/512 decode antiquant");
    }
    /* head dims beyond the NPU's 512: 576 (the MLA absorbed width) and fia's cap 1024 */
    for (int64_t d = 576; d <= 1024; d += 448) {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 1, 2, 1, 5, 40, d, d);
        c.sparse_mode = 2, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "head dim 576/1024 prefill");
        c.S1 = 1;
        set_paged(&c, 4, 16);
        EDGE(c, "head dim 576/1024 decode paged");
        c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT16, 1, 2, 2, 1, 300, d, d);
        EDGE(c, "head dim 576/1024 decode");
    }

    /* GQA ratios 1, 2, 4, 8 and MQA. */
    const int64_t n1s[5] = {4, 4, 8, 16, 16}, n2s[5] = {4, 2, 2, 2, 1};
    for (int i = 0; i < 5; i++) {
        c = base_case(L[i], FIA_DTYPE_FLOAT16, 2, n1s[i], n2s[i], 5, 17, 32, 32);
        if (L[i] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){5, 2}, (const int64_t[]){17, 11});
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "GQA prefill");
        if (L[i] != FIA_LAYOUT_TND) {
            c.S1 = 1, c.mask = MASK_NONE;
            set_paged(&c, 3 + i % 2, 8);
            EDGE(c, "GQA decode paged");
        }
    }

    /* Antiquant: every scale shape, with and without offset, every scale dtype. */
    for (int shape = AQ_T; shape <= AQ_TOK; shape++)
        for (int off = 0; off <= 1; off++) {
            const fia_dtype adt = shape % 3 == 0 ? FIA_DTYPE_FLOAT32 : shape % 3 == 1 ? FIA_DTYPE_FLOAT16 : FIA_DTYPE_BFLOAT16;
            c = base_case(FIA_LAYOUT_BSH, off ? FIA_DTYPE_BFLOAT16 : FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 30, 32, 32);
            set_lens(&c, NULL, (const int64_t[]){30, 13});
            set_quant(&c, shape, off, adt);
            EDGE(c, "antiquant decode");
            set_paged(&c, 4 - off, 8);
            EDGE(c, "antiquant decode paged");
            c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 2, 1, 6, 20, 16, 16);
            set_quant(&c, shape, off, adt);
            c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
            EDGE(c, "antiquant prefill fp32 query");
        }

    /* Length forms: broadcast count 1, count > B, NULL; query shorter than S1. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 3, 2, 1, 8, 12, 16, 16);
    c.qform = LEN_BCAST, c.kvform = LEN_MORE, c.qlen[0] = 5;
    set_lens(&c, NULL, (const int64_t[]){12, 0, 7});
    c.kvform = LEN_MORE, c.lse = 1;
    EDGE(c, "lengths broadcast / count > B");
    c.qform = LEN_MORE;
    set_lens(&c, (const int64_t[]){8, 3, 0}, NULL);
    c.qform = LEN_MORE, c.kvform = LEN_BCAST, c.kvlen[0] = 9;
    EDGE(c, "lengths count > B / broadcast");

    /* Modes 2-4 without the compressed mask: either accepted (then it must be right) or
     * rejected as INVALID_ARGUMENT; both read the contract. Checked in test_bad_input. */

    /* Long decode: split-KV. */
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 8, 2, 1, 3000, 128, 128);
    set_lens(&c, NULL, (const int64_t[]){3000, 2111});
    c.lse = 1;
    EDGE(c, "long decode fp16");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 1, 8, 1, 1, 4000, 64, 64);
    set_paged(&c, 4, 128);
    c.lse = 1;
    EDGE(c, "long decode bf16 MQA paged");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 4, 4, 1, 2500, 64, 64);
    c.lse = 1;
    EDGE(c, "long decode fp32");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 1, 1, 3000, 128, 128);
    set_lens(&c, NULL, (const int64_t[]){3000, 1500});
    set_paged(&c, 3, 64);
    set_quant(&c, AQ_TOK, 1, FIA_DTYPE_FLOAT32);
    EDGE(c, "long decode int8 per-token paged");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 4, 2, 0, 0, 64, 64);
    set_lens(&c, (const int64_t[]){1, 1}, (const int64_t[]){2600, 3});
    c.lse = 1;
    EDGE(c, "TND one-token queries, long kv");

    /* Split-KV boundaries: kv tile 64, chunk 2048; query tile = 128 / G positions. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 9, 4, 2, 1, 4100, 32, 32);
    set_lens(&c, NULL, (const int64_t[]){63, 64, 65, 2047, 2048, 2049, 4095, 4096, 4097});
    c.lse = 1;
    EDGE(c, "decode kv lengths at tile / chunk boundaries");
    set_paged(&c, 3, 64);
    EDGE(c, "decode kv lengths at tile / chunk boundaries, paged");
    const int64_t tq[4][3] = {{8, 1, 16}, {8, 1, 17}, {6, 2, 42}, {6, 2, 43}}; /* N1, N2, S1 */
    for (int i = 0; i < 4; i++) {
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, tq[i][0], tq[i][1], tq[i][2], 1300, 16, 16);
        c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
        EDGE(c, "query rows at the tile boundary, long kv, causal");
    }
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 2, 256, 1, 1, 700, 8, 8);
    c.lse = 1;
    EDGE(c, "256 query heads on one kv head (G 256), decode");
    c.S1 = 3, c.sparse_mode = 3, c.mask = MASK_C2;
    EDGE(c, "G 256, S1 3");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 1, 256, 256, 2, 70, 8, 8);
    EDGE(c, "256 kv heads");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 64, 1, 0, 0, 16, 16);
    set_lens(&c, (const int64_t[]){1, 5}, (const int64_t[]){900, 5});
    c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "G 64 TND");
    /* Chunks in which a row sees nothing (the partial state is empty and must merge away). */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 2, 1, 2, 1600, 16, 16);
    c.mask = MASK_3D, c.mask_p = 0.995, c.lse = 1;
    EDGE(c, "long kv, sparse mask: chunks with nothing visible");
    c.mask_p = 0.9995;
    EDGE(c, "long kv, almost everything masked");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 3, 4, 1, 1, 1800, 32, 32);
    c.mask = MASK_DEC, c.mask_p = 0.99, c.lse = 1;
    EDGE(c, "decode [B, S2] mask, long kv");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 2, 8, 2000, 16, 16);
    c.sparse_mode = 4, c.pre = 100, c.next = 50, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "band at the end of a long kv");
    c.pre = 1200, c.next = -600;
    EDGE(c, "band in the middle of a long kv (negative next)");
    c.sparse_mode = 0, c.mask = MASK_2D, c.mask_p = 0.0, c.pre = -900, c.next = 1500;
    EDGE(c, "mode 0 window ahead of the diagonal (negative pre)");
    /* Many requests. */
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, MAXB, 4, 2, 1, 700, 16, 16);
    for (int64_t b = 0; b < MAXB; b++) c.kvlen[b] = (b * 157) % 701;
    c.kvform = LEN_B, c.lse = 1;
    set_paged(&c, 4, 16);
    EDGE(c, "16 decode requests, paged bs 16");
    /* TND rows beyond the last cumulative length: no batch owns them; 0 / +inf as rows beyond
     * a batch's query length (fia.h does not say; a NaN there would escape into the model). */
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_FLOAT16, 2, 2, 1, 0, 0, 16, 16);
    set_lens(&c, (const int64_t[]){3, 2}, (const int64_t[]){4, 6});
    c.tnd_pad = 3, c.lse = 1;
    EDGE(c, "TND with trailing rows");

    /* Long prefill: several query and kv tiles, causal tile skipping. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 4, 2, 300, 300, 64, 64);
    c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
    EDGE(c, "prefill 300 causal fp16");
    c = base_case(FIA_LAYOUT_TND, FIA_DTYPE_BFLOAT16, 2, 2, 1, 0, 0, 64, 64);
    set_lens(&c, (const int64_t[]){200, 120}, (const int64_t[]){200, 260});
    c.sparse_mode = 3, c.mask = MASK_C3, c.lse = 1;
    EDGE(c, "prefill TND causal bf16");
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT32, 1, 2, 2, 256, 384, 32, 32);
    c.sparse_mode = 4, c.pre = 64, c.next = 16, c.mask = MASK_C4, c.lse = 1;
    EDGE(c, "prefill band fp32");
    c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 1, 4, 4, 256, 256, 64, 64);
    c.sparse_mode = 2, c.mask = MASK_C2;
    EDGE(c, "prefill 256 mode 2");
    c = base_case(FIA_LAYOUT_BNSD_BSND, FIA_DTYPE_FLOAT32, 1, 2, 1, 200, 200, 16, 16);
    c.lse = 1;
    EDGE(c, "prefill 200 full attention fp32");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 2, 1, 160, 200, 32, 32);
    c.mask = MASK_2D, c.mask_p = 0.2, c.pre = 40, c.next = 0;
    EDGE(c, "prefill mode 0 mask + window");
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 1, 4, 2, 200, 600, 64, 64);
    set_paged(&c, 4, 128);
    set_quant(&c, AQ_C4, 1, FIA_DTYPE_FLOAT16);
    c.sparse_mode = 3, c.mask = MASK_C2;
    EDGE(c, "prefill paged antiquant causal");
#undef EDGE
    printf("edge: %lld cases, %.1f s\n", (long long)(g_cases_run - before), now_s() - t0);
}

/* ------------------------------------------------------------------------------------------ */
/* Oracle self-checks (hand-computed expectations; no library call)                           */
/* ------------------------------------------------------------------------------------------ */

/* Logical index of (b, n, s, d) in a dense layout whose S dim is S (T for TND). */
static int64_t dense_index(fia_layout l, int64_t b, int64_t n, int64_t s, int64_t d, int64_t N,
                           int64_t S, int64_t D) {
    if (l == FIA_LAYOUT_TND) return (s * N + n) * D + d;
    if (l == FIA_LAYOUT_BNSD) return ((b * N + n) * S + s) * D + d;
    return ((b * S + s) * N + n) * D + d; /* BSH, BSND, and the BSND out of BNSD_BSND */
}

static int same_doubles(const double *a, const double *b, int64_t n, double tol) {
    for (int64_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || fabs(a[i] - b[i]) <= tol)) return 0;
    return 1;
}

static void test_oracle_self(uint64_t seed) {
    tu_rng r = tu_rng_make(seed ^ 0x5e1f);
    fbuf f, g;
    double *o1, *l1, *o2, *l2;
    fcase c;

    /* One key: out = v, lse = scale * q.k. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 1, 1, 1, 1, 4, 3);
    c.lse = 1, c.scale = 0.7;
    fbuild(&c, &r, &f);
    int ok = oracle(&f, &o1, &l1) == 0;
    double dot = 0;
    for (int d = 0; d < 4; d++) dot += fia_ref_load(&f.q.t, d) * fia_ref_load(&f.k.t, d);
    for (int d = 0; d < 3 && ok; d++) ok = o1[d] == fia_ref_load(&f.v.t, d);
    tu_check(ok && fabs(l1[0] - 0.7 * dot) < 1e-15, "oracle: one key gives out = v, lse = s");
    free(o1), free(l1), fbuf_free(&f);

    /* Equal scores (q = 0): out = mean of the visible v, lse = log(n). */
    c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_FLOAT16, 2, 2, 1, 3, 5, 8, 6);
    set_lens(&c, NULL, (const int64_t[]){5, 2});
    c.lse = 1;
    fbuild(&c, &r, &f);
    memset(f.q.buf, 0, f.q.bytes);
    ok = oracle(&f, &o1, &l1) == 0;
    for (int64_t b = 0; b < 2 && ok; b++)
        for (int64_t h = 0; h < 2; h++)
            for (int64_t i = 0; i < 3; i++) {
                const int64_t n = b ? 2 : 5;
                ok &= fabs(l1[(b * 2 + h) * 3 + i] - log((double)n)) < 1e-14;
                for (int64_t d = 0; d < 6; d++) {
                    double m = 0;
                    for (int64_t j = 0; j < n; j++) m += fia_ref_load(&f.v.t, dense_index(FIA_LAYOUT_BNSD, b, 0, j, d, 1, 5, 6));
                    ok &= fabs(o1[dense_index(FIA_LAYOUT_BNSD, b, h, i, d, 2, 3, 6)] - m / (double)n) < 1e-14;
                }
            }
    tu_check(ok, "oracle: equal scores give the mean of v and lse = log(n)");
    free(o1), free(l1), fbuf_free(&f);

    /* A fully masked row (mode 1): 0 / +inf; the other rows are finite. */
    c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 1, 1, 1, 3, 4, 4, 4);
    c.sparse_mode = 1, c.mask = MASK_2D, c.lse = 1;
    fbuild(&c, &r, &f);
    memset((uint8_t *)f.mask.buf + 4, 1, 4); /* row 1 */
    ok = oracle(&f, &o1, &l1) == 0 && isinf(l1[1]) && !isinf(l1[0]) && !isinf(l1[2]);
    for (int d = 0; d < 4 && ok; d++) ok = o1[4 + d] == 0.0;
    tu_check(ok, "oracle: a masked row gives 0 / +inf");
    free(o1), free(l1), fbuf_free(&f);

    /* Paged (both forms) equals the same cache laid out densely. */
    for (int form = 3; form <= 4; form++) {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT16, 2, 4, 2, 3, 13, 8, 5);
        set_lens(&c, NULL, (const int64_t[]){13, 7});
        set_paged(&c, form, 4);
        c.lse = 1, c.sparse_mode = 3, c.mask = MASK_C2;
        fbuild(&c, &r, &f);
        fcase cd = c;
        cd.paged = 0;
        fbuild(&cd, &r, &g);
        memcpy(g.q.buf, f.q.buf, f.q.bytes);
        for (int side = 0; side < 2; side++) {
            const tu_tensor *src = side ? &f.v : &f.k, *dst = side ? &g.v : &g.k;
            const int64_t nd = side ? 5 : 8;
            for (int64_t b = 0; b < 2; b++)
                for (int64_t t = 0; t < c.kvlen[b]; t++)
                    for (int64_t n = 0; n < 2; n++)
                        for (int64_t d = 0; d < nd; d++) {
                            const int64_t blk = ((int32_t *)f.bt.buf)[b * f.bt.t.shape[1] + t / 4];
                            const int64_t li = form == 3 ? (blk * 4 + t % 4) * 2 * nd + n * nd + d
                                                         : ((blk * 2 + n) * 4 + t % 4) * nd + d;
                            tu_store(&dst->t, dense_index(FIA_LAYOUT_BSND, b, n, t, d, 2, 13, nd),
                                     fia_ref_load(&src->t, li));
                        }
        }
        ok = oracle(&f, &o1, &l1) == 0 && oracle(&g, &o2, &l2) == 0 &&
             same_doubles(o1, o2, tu_numel(&f.out.t), 0) && same_doubles(l1, l2, tu_numel(&f.lse.t), 0);
        tu_check(ok, "oracle: paged cache (%s) equals the dense cache", form == 3 ? "BnBsH" : "BnNBsD");
        free(o1), free(l1), free(o2), free(l2), fbuf_free(&f), fbuf_free(&g);
    }

    /* Antiquant equals the float computation on dequantized values (exact: power-of-two
     * scales, integer offsets). */
    for (int shape = AQ_T; shape <= AQ_TOK; shape++) {
        c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 2, 4, 2, 1, 9, 8, 8);
        set_lens(&c, NULL, (const int64_t[]){9, 4});
        set_quant(&c, shape, 1, FIA_DTYPE_FLOAT32);
        c.lse = 1;
        fbuild(&c, &r, &f);
        for (int64_t i = 0; i < tu_numel(&f.aqs.t); i++) tu_store(&f.aqs.t, i, ldexp(1.0, -(int)tu_int(&r, 5, 8)));
        fcase cf = c;
        cf.kvdt = FIA_DTYPE_FLOAT32;
        fbuild(&cf, &r, &g);
        memcpy(g.q.buf, f.q.buf, f.q.bytes);
        for (int side = 0; side < 2; side++)
            for (int64_t b = 0; b < 2; b++)
                for (int64_t t = 0; t < 9; t++)
                    for (int64_t n = 0; n < 2; n++)
                        for (int64_t d = 0; d < 8; d++) {
                            const int64_t li = dense_index(FIA_LAYOUT_BSH, b, n, t, d, 2, 9, 8);
                            const double x = fia_ref_load(side ? &f.v.t : &f.k.t, li);
                            int64_t ai;
                            switch (shape) {
                            case AQ_T: ai = side; break;
                            case AQ_TOK: ai = (side * 2 + b) * f.aqs.t.shape[2] + t; break;
                            default: ai = (side * 2 + n) * 8 + d; break; /* every per-channel form */
                            }
                            tu_store(side ? &g.v.t : &g.k.t, li,
                                     (x + fia_ref_load(&f.aqo.t, ai)) * fia_ref_load(&f.aqs.t, ai));
                        }
        ok = oracle(&f, &o1, &l1) == 0 && oracle(&g, &o2, &l2) == 0 &&
             same_doubles(o1, o2, tu_numel(&f.out.t), 0) && same_doubles(l1, l2, tu_numel(&f.lse.t), 0);
        tu_check(ok, "oracle: antiquant shape %d equals the dequantized float computation", shape);
        free(o1), free(l1), free(o2), free(l2), fbuf_free(&f), fbuf_free(&g);
    }

    /* Every layout holds the same data (B = 1) and gives the same result. */
    {
        const fia_layout L[5] = {FIA_LAYOUT_BSH, FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND,
                                 FIA_LAYOUT_BNSD_BSND};
        double *first = NULL, *first_lse = NULL;
        ok = 1;
        for (int l = 0; l < 5; l++) {
            c = base_case(L[l], FIA_DTYPE_FLOAT32, 1, 4, 2, 5, 7, 6, 3);
            if (L[l] == FIA_LAYOUT_TND) set_lens(&c, (const int64_t[]){5}, (const int64_t[]){7});
            c.lse = 1, c.sparse_mode = 3, c.mask = MASK_C2;
            tu_rng r2 = tu_rng_make(seed);
            fbuild(&c, &r2, &f);
            const fia_layout ql = L[l] == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BNSD : L[l];
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 7; s++)
                    for (int64_t d = 0; d < 6; d++) {
                        if (s < 5) tu_store(&f.q.t, dense_index(ql, 0, n, s, d, 4, 5, 6), sin((double)(n * 100 + s * 10 + d)));
                        if (n < 2) tu_store(&f.k.t, dense_index(ql, 0, n, s, d, 2, 7, 6), cos((double)(n * 77 + s * 7 + d)));
                        if (n < 2 && d < 3) tu_store(&f.v.t, dense_index(ql, 0, n, s, d, 2, 7, 3), sin((double)(n * 31 + s * 3 + d) + 0.5));
                    }
            if (oracle(&f, &o1, &l1) != 0) ok = 0;
            /* normalize to BNSD order */
            const fia_layout ol = L[l] == FIA_LAYOUT_BNSD_BSND ? FIA_LAYOUT_BSND : L[l];
            double *o = malloc(sizeof(double) * 60);
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 5; s++)
                    for (int64_t d = 0; d < 3; d++)
                        o[(n * 5 + s) * 3 + d] = o1[dense_index(ol, 0, n, s, d, 4, 5, 3)];
            double lse_bnsd[20];
            for (int64_t n = 0; n < 4; n++)
                for (int64_t s = 0; s < 5; s++)
                    lse_bnsd[n * 5 + s] = L[l] == FIA_LAYOUT_TND ? l1[s * 4 + n] : l1[n * 5 + s];
            if (!first) {
                first = o;
                first_lse = malloc(sizeof lse_bnsd);
                memcpy(first_lse, lse_bnsd, sizeof lse_bnsd);
            } else {
                ok &= same_doubles(first, o, 60, 0) && same_doubles(first_lse, lse_bnsd, 20, 0);
                free(o);
            }
            free(o1), free(l1), fbuf_free(&f);
        }
        tu_check(ok, "oracle: every layout gives the same result");
        free(first), free(first_lse);
    }

    /* Mode identities: 3 == 2 when Sq == Skv; 4 with (pre, next) = (max, 0) == 3; mode 0 with a
     * zero mask and pre = next = 0 sees only the diagonal (out row i = v_i). */
    {
        c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 2, 2, 1, 6, 9, 4, 4);
        set_lens(&c, (const int64_t[]){6, 4}, (const int64_t[]){6, 9});
        c.lse = 1, c.mask = MASK_C2;
        double *o[4], *l[4];
        const int modes[4] = {2, 3, 4, 0};
        for (int m = 0; m < 4; m++) {
            tu_rng r2 = tu_rng_make(seed + 3);
            fcase cm = c;
            cm.sparse_mode = modes[m];
            if (modes[m] == 4) cm.pre = INT64_MAX, cm.next = 0;
            if (modes[m] == 0) cm.mask = MASK_2D, cm.mask_p = 0, cm.pre = 0, cm.next = 0;
            fbuild(&cm, &r2, &f);
            oracle(&f, &o[m], &l[m]);
            if (m == 3) {
                ok = 1;
                for (int64_t b = 0; b < 2; b++)
                    for (int64_t i = 0; i < cm.qlen[b]; i++)
                        for (int64_t d = 0; d < 4; d++)
                            ok &= o[3][dense_index(FIA_LAYOUT_BSND, b, 1, i, d, 2, 6, 4)] ==
                                  fia_ref_load(&f.v.t, dense_index(FIA_LAYOUT_BSND, b, 0, i, d, 1, 9, 4));
                tu_check(ok, "oracle: mode 0 with pre = next = 0 sees the diagonal only");
            }
            fbuf_free(&f);
        }
        /* batch 0 has Sq == Skv: modes 2 and 3 agree there; modes 3 and 4(max, 0) agree everywhere */
        ok = same_doubles(o[0], o[1], 6 * 2 * 4, 0) && same_doubles(o[1], o[2], 2 * 6 * 2 * 4, 0) &&
             same_doubles(l[1], l[2], 2 * 2 * 6, 0);
        tu_check(ok, "oracle: mode 3 == mode 2 (Sq == Skv), mode 4 (max, 0) == mode 3");
        for (int m = 0; m < 4; m++) free(o[m]), free(l[m]);
    }

    /* fia_ref_compare: +inf exact, NaN never passes, the tolerance bound is inclusive. */
    {
        float vals[4] = {INFINITY, NAN, 1.5f, 2.0f};
        const double want[4] = {INFINITY, 0.0, 1.25, 2.0};
        fia_tensor t;
        fia_tensor_init(&t, vals, FIA_DTYPE_FLOAT32, 1, (const int64_t[]){4}, NULL);
        ok = fia_ref_compare(NULL, &t, want, 0.25, 0.0) == 1; /* only the NaN */
        vals[0] = 1e30f;
        ok &= fia_ref_compare(NULL, &t, want, 0.25, 0.0) == 2;
        tu_check(ok, "oracle: fia_ref_compare rules");
    }
    printf("oracle self-checks done\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Determinism: threads and batch composition                                                 */
/* ------------------------------------------------------------------------------------------ */

static void coords_of(const fia_tensor *t, int64_t i, int64_t *c) {
    for (int32_t d = t->ndim - 1; d >= 0; d--) {
        c[d] = i % t->shape[d];
        i /= t->shape[d];
    }
}

static int64_t offset_of(const fia_tensor *t, const int64_t *c) {
    int64_t o = 0;
    for (int32_t d = 0; d < t->ndim; d++) o += c[d] * t->strides[d];
    return o;
}

/* Copies batch b of src into batch 0 of dst (same layout, dims of dst <= those of src). With
 * cmp set, compares instead and returns 1 when bitwise equal. */
static int batch_slice(const fia_tensor *dst, const fia_tensor *src, int64_t b, int cmp) {
    const size_t es = fia_dtype_size(dst->dtype);
    int64_t c[FIA_MAX_DIMS];
    for (int64_t i = 0; i < tu_numel(dst); i++) {
        coords_of(dst, i, c);
        char *pd = (char *)dst->data + offset_of(dst, c) * (int64_t)es;
        c[0] = b;
        const char *ps = (const char *)src->data + offset_of(src, c) * (int64_t)es;
        if (!cmp) memcpy(pd, ps, es);
        else if (memcmp(pd, ps, es) != 0) return 0;
    }
    return 1;
}

typedef struct dscen {
    const char *name;
    fcase c;
    int64_t rb; /* the request checked alone */
} dscen;

static void test_determinism(uint64_t seed) {
    const double t0 = now_s();
    dscen sc[4];
    sc[0].name = "decode S1=1 long kv, paged";
    sc[0].c = base_case(FIA_LAYOUT_BSH, FIA_DTYPE_FLOAT16, 4, 8, 2, 1, 2600, 128, 128);
    set_lens(&sc[0].c, NULL, (const int64_t[]){700, 2500, 31, 1800});
    set_paged(&sc[0].c, 3, 128); /* token-major: the heads per split item depend on the threads */
    sc[0].rb = 1;
    sc[1].name = "decode S1=1 long kv, dense int8";
    sc[1].c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 3, 4, 1, 1, 3000, 64, 64);
    set_lens(&sc[1].c, NULL, (const int64_t[]){3000, 1200, 5});
    set_quant(&sc[1].c, AQ_C3, 1, FIA_DTYPE_FLOAT32);
    sc[1].rb = 0;
    sc[2].name = "small-S1 decode S1=4";
    sc[2].c = base_case(FIA_LAYOUT_BNSD, FIA_DTYPE_BFLOAT16, 3, 4, 1, 4, 1600, 64, 64);
    set_lens(&sc[2].c, (const int64_t[]){2, 4, 3}, (const int64_t[]){900, 1500, 77});
    sc[2].c.sparse_mode = 3, sc[2].c.mask = MASK_C2;
    sc[2].rb = 1;
    sc[3].name = "prefill";
    sc[3].c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_FLOAT32, 3, 4, 2, 160, 200, 64, 64);
    set_lens(&sc[3].c, (const int64_t[]){90, 160, 33}, (const int64_t[]){90, 160, 200});
    sc[3].c.sparse_mode = 3, sc[3].c.mask = MASK_C2;
    sc[3].rb = 1;
    const int threads[3] = {1, 2, 7};
    int checks = 0;
    for (int s = 0; s < 4; s++) {
        fcase c = sc[s].c;
        c.lse = 1;
        fcase_normalize(&c);
        tu_rng r = tu_rng_make(seed + 1000 + (uint64_t)s);
        fbuf f, a;
        fbuild(&c, &r, &f);
        /* The request alone: B = 1, its own lengths, the same data. */
        const int64_t rb = sc[s].rb, sq = c.qlen[rb], skv = c.kvlen[rb];
        fcase ca = c;
        ca.B = 1, ca.qlen[0] = sq, ca.kvlen[0] = skv;
        ca.qform = ca.S1 == 1 ? LEN_NULL : LEN_B, ca.kvform = LEN_B;
        if (ca.S1 > 1) ca.S1 = sq;
        if (!ca.paged) ca.S2 = skv;
        fbuild(&ca, &r, &a);
        batch_slice(&a.q.t, &f.q.t, rb, 0);
        if (c.paged) {
            a.t.key = &f.k.t, a.t.value = &f.v.t; /* the same pool, one row of the table */
            batch_slice(&a.bt.t, &f.bt.t, rb, 0);
            /* the alone table is shorter only if the pool row has -1 beyond it: both fine */
        } else {
            batch_slice(&a.k.t, &f.k.t, rb, 0);
            batch_slice(&a.v.t, &f.v.t, rb, 0);
        }
        if (c.kvdt == FIA_DTYPE_INT8) memcpy(a.aqs.buf, f.aqs.buf, f.aqs.bytes), memcpy(a.aqo.buf, f.aqo.buf, f.aqo.bytes);
        double *o_ref, *l_ref;
        oracle(&f, &o_ref, &l_ref);
        for (int i = 0; i < g_nctx; i++) {
            void *out1 = malloc(f.out.bytes), *lse1 = malloc(f.lse.bytes);
            int ok_threads = 1, ok_alone = 1, ok_ref = 1;
            for (int t = 0; t < 3; t++) {
                fia_context_options o = {threads[t], g_isa[i]};
                fia_context *ctx = NULL;
                if (fia_context_create(&o, &ctx) != FIA_STATUS_SUCCESS) {
                    tu_check(0, "determinism: context %d threads: %s", threads[t], fia_last_error());
                    continue;
                }
                reset_outputs(&f);
                reset_outputs(&a);
                const fia_status st1 = run_fia(ctx, &f, t == 1), st2 = run_fia(ctx, &a, t != 1);
                if (st1 != FIA_STATUS_SUCCESS || st2 != FIA_STATUS_SUCCESS) {
                    tu_check(0, "determinism %s: %s / %s: %s", sc[s].name, fia_status_string(st1),
                             fia_status_string(st2), fia_last_error());
                    fia_context_destroy(ctx);
                    ok_threads = ok_alone = 0;
                    continue;
                }
                if (t == 0) {
                    memcpy(out1, f.out.buf, f.out.bytes), memcpy(lse1, f.lse.buf, f.lse.bytes);
                    ok_ref = compare_outputs(&f, o_ref, l_ref) == 0;
                } else {
                    ok_threads &= memcmp(out1, f.out.buf, f.out.bytes) == 0 && memcmp(lse1, f.lse.buf, f.lse.bytes) == 0;
                }
                ok_alone &= batch_slice(&a.out.t, &f.out.t, rb, 1) && batch_slice(&a.lse.t, &f.lse.t, rb, 1);
                fia_context_destroy(ctx);
            }
            tu_check(ok_ref, "determinism %s [%s]: batch matches the oracle", sc[s].name, fia_isa_name(g_isa[i]));
            tu_check(ok_threads, "determinism %s [%s]: 1, 2, 7 threads bitwise identical", sc[s].name, fia_isa_name(g_isa[i]));
            tu_check(ok_alone, "determinism %s [%s]: request alone == request %lld of the batch (bitwise)",
                     sc[s].name, fia_isa_name(g_isa[i]), (long long)rb);
            checks += 3;
            free(out1), free(lse1);
        }
        free(o_ref), free(l_ref);
        fbuf_free(&f), fbuf_free(&a);
    }
    printf("determinism: 4 scenarios, %d checks, %.1f s\n", checks, now_s() - t0);
}


/* The bf16 prefill tiles on AMX (kernels/gqa_amx.h: bf16 Q and K on tiles with the scale after
 * the dot product, P split into bf16 hi + lo for P . V), taken on the AVX-512 context where the
 * CPU has AMX bf16 (elsewhere the same cases run the fp32 path): every combination of
 * causal / band / no mask, GQA group 1 / 4 / 8, one or three batches with ragged lengths not
 * multiples of 16 or 32, head dims 128 / 64 / 96 x 64 (and 80, which falls back), dense,
 * paged and TND, against the oracle at the unchanged tolerances; then 1 and 2 threads (and a
 * request alone) bitwise identical. */
static void test_amx_prefill(uint64_t seed) {
    const int64_t before = g_cases_run;
    const double t0 = now_s();
    static const int64_t groups[3] = {1, 4, 8};
    static const int64_t dims[4][2] = {{128, 128}, {64, 64}, {96, 64}, {80, 80}};
    const fia_layout L[3] = {FIA_LAYOUT_BSND, FIA_LAYOUT_BNSD, FIA_LAYOUT_TND};
    int k = 0, amx_plans = 0;
    char label[128];
    for (int gi = 0; gi < 3; gi++)
        for (int mode = 0; mode < 3; mode++)
            for (int bi = 0; bi < 2; bi++) {
                const int64_t G = groups[gi], N2 = bi ? 1 : 2, B = bi ? 3 : 1;
                const int64_t *d = dims[k % 4];
                const fia_layout lay = L[k % 3];
                const int64_t S1 = bi ? 45 : 100, S2 = bi ? 150 : 131;
                fcase c = base_case(lay, FIA_DTYPE_BFLOAT16, B, N2 * G, N2, lay_tnd(lay) ? 0 : S1,
                                    lay_tnd(lay) ? 0 : S2, d[0], d[1]);
                if (bi) {
                    set_lens(&c, (const int64_t[]){45, 17, 33}, (const int64_t[]){150, 17, 71});
                    if (!lay_tnd(lay)) c.qform = LEN_B, c.kvform = LEN_B;
                } else if (lay_tnd(lay)) {
                    set_lens(&c, (const int64_t[]){S1}, (const int64_t[]){S2});
                }
                if (mode == 1) c.sparse_mode = 3, c.mask = MASK_C2;
                if (mode == 2) c.sparse_mode = 4, c.mask = MASK_C2, c.pre = 40, c.next = 5;
                if (k % 4 == 3 && !lay_tnd(lay)) set_paged(&c, 3, 32);
                c.lse = 1, c.poison = 1;
                snprintf(label, sizeof label, "amx prefill %d G%lld B%lld mode %d D%lld/%lld", k,
                         (long long)G, (long long)B, mode, (long long)d[0], (long long)d[1]);
                run_case(&c, seed + 5000 + (uint64_t)k, label);
                k++;
            }
    /* threads and the plan's compute unit */
    fcase c = base_case(FIA_LAYOUT_BSND, FIA_DTYPE_BFLOAT16, 3, 16, 2, 77, 200, 128, 128);
    set_lens(&c, (const int64_t[]){77, 30, 61}, (const int64_t[]){200, 30, 99});
    c.qform = LEN_B, c.kvform = LEN_B, c.sparse_mode = 3, c.mask = MASK_C2, c.lse = 1;
    fcase_normalize(&c);
    tu_rng r = tu_rng_make(seed + 6000);
    fbuf f;
    fbuild(&c, &r, &f);
    double *o_ref, *l_ref;
    oracle(&f, &o_ref, &l_ref);
    const fia_isa best = g_isa[g_nctx - 1];
    void *out1 = malloc(f.out.bytes), *lse1 = malloc(f.lse.bytes);
    for (int t = 1; t <= 2; t++) {
        fia_context_options o = {t, best};
        fia_context *ctx = NULL;
        if (!tu_check(fia_context_create(&o, &ctx) == FIA_STATUS_SUCCESS, "amx prefill: context"))
            continue;
        fia_plan *plan = NULL;
        size_t ws = 0;
        if (fia_fused_infer_attention_score_plan(ctx, &f.t, &f.p, &plan, &ws) == FIA_STATUS_SUCCESS) {
            amx_plans += !strcmp(fia_plan_compute_unit(plan), "amx_bf16");
            fia_plan_destroy(plan);
        }
        reset_outputs(&f);
        tu_check(run_fia(ctx, &f, 0) == FIA_STATUS_SUCCESS, "amx prefill %d threads: run", t);
        tu_check(compare_outputs(&f, o_ref, l_ref) == 0, "amx prefill %d threads: oracle", t);
        if (t == 1) {
            memcpy(out1, f.out.buf, f.out.bytes), memcpy(lse1, f.lse.buf, f.lse.bytes);
        } else {
            tu_check(!memcmp(out1, f.out.buf, f.out.bytes) && !memcmp(lse1, f.lse.buf, f.lse.bytes),
                     "amx prefill: 1 and 2 threads bitwise identical");
        }
        fia_context_destroy(ctx);
    }
    free(out1), free(lse1), free(o_ref), free(l_ref);
    fbuf_free(&f);
    printf("amx prefill: %lld cases, threads 1/2 bitwise; AMX bf16 tiles %s, %.1f s\n",
           (long long)(g_cases_run - before),
           amx_plans ? "exercised (plan unit amx_bf16)" : "not available (fp32 path tested)",
           now_s() - t0);
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20250611, "test_fia");
    const double t0 = now_s();
    cmask_create(seed);
    test_oracle_self(seed);
    open_contexts(1);
    if (g_nctx > 0) {
        test_random(seed);
        if (tu_env_long("FIA_TEST_ONLY", -1) < 0) {
            test_edges(seed);
            test_determinism(seed);
            test_amx_prefill(seed);
        }
    }
    print_worst_errors();
    close_contexts();
    cmask_destroy();
    printf("total %.1f s\n", now_s() - t0);
    return tu_summary();
}
