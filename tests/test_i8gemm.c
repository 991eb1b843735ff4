/*
 * test_i8gemm.c - the int8 GEMM tables (src/kernels/i8gemm.h): scalar against a plain
 * double-precision loop straight from the contract, and VNNI against both.
 *
 *   pack_b_nk / pack_b_kn: every n 1..70 and k 0..70 plus large / odd sizes; each B row is its
 *     own exactly sized allocation (ASan catches over-reads); the scalar pack is checked element
 *     by element against the documented layout (bytes, zero padding, column sums); the VNNI pack
 *     must be byte-identical; packing into buffers pre-filled with two different patterns gives
 *     the same bytes (every byte is written) and 64 canary bytes after pack_bytes stay intact.
 *   gemm: random shapes (m 1..130, n 1..530, k 0..600, with every small m / n / k tail swept),
 *     both pack forms, a_offset 0 (u8 A) and 128 (s8 A via s8_to_u8_offset), row_scale and
 *     row_beta NULL / non-NULL, padded lda / ldc, extreme bytes (0, 255, -128, 127):
 *       - scale and beta NULL: c == (float)dot bit-exactly, dot computed in int64;
 *       - otherwise |c - ref| <= 1e-6 (|beta c0| + |scale dot|) against the double loop;
 *       - VNNI == scalar bit-exactly when row_beta is NULL (the epilogue has no FMA then);
 *         AVX2 (no fused epilogue) == scalar bit-exactly always;
 *       - canaries in C's ldc padding and after the last row; A padding bytes are junk;
 *         C pre-filled with NaN when row_beta is NULL (must not be read).
 *     m == 0 / n == 0 leave C untouched.
 *   AMX (the amx-int8 table): the same cases plus the tile edges (m, n around 16 and 32, k around
 *     multiples of 64, k up to 65536), and bit for bit the VNNI gemm on the same pack, row_beta
 *     included (same exact integers, same epilogue).
 *   s8_to_u8_offset: all 256 values, lengths 0..200 at odd offsets, in place, canaries.
 * The VNNI part is skipped (reported) when the CPU lacks AVX-512 VNNI (the context decides).
 *
 * Usage: test_i8gemm [seed]. Prints the seed first and "N passed, N failed" last.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/convert.h"
#include "kernel_variants.h"
#include "test_util.h"

#define CANARY_BITS 0x7fa5a5a5u /* a NaN pattern no kernel produces */

static float canary(void) { return fia_bits_f32(CANARY_BITS); }
static int is_canary(float f) { return fia_f32_bits(f) == CANARY_BITS; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* A random byte: mostly uniform, sometimes an extreme (0 / 255 as u8, -128 / 127 as s8). */
static uint8_t rnd_byte(tu_rng *r, int extremes) {
    if (extremes && tu_chance(r, 0.5)) return tu_chance(r, 0.5) ? 0x80 : 0x7f;
    if (extremes == 2) return tu_chance(r, 0.5) ? 0 : 255;
    return (uint8_t)tu_next(r);
}

/* B as a logical k x n matrix (b[t * n + j]) given to the packers as separately allocated rows,
 * each exactly sized. */
typedef struct bmat {
    int64_t k, n;
    int8_t *b;        /* k x n */
    int8_t **rows_nk; /* n rows of k */
    int8_t **rows_kn; /* k rows of n */
} bmat;

static void bmat_make(bmat *B, tu_rng *r, int64_t k, int64_t n) {
    B->k = k, B->n = n;
    B->b = (int8_t *)xmalloc((size_t)(k * n));
    const int ext = tu_chance(r, 0.2);
    for (int64_t i = 0; i < k * n; i++) B->b[i] = (int8_t)rnd_byte(r, ext);
    B->rows_nk = (int8_t **)xmalloc((size_t)n * sizeof(int8_t *));
    B->rows_kn = (int8_t **)xmalloc((size_t)k * sizeof(int8_t *));
    for (int64_t j = 0; j < n; j++) {
        B->rows_nk[j] = (int8_t *)xmalloc((size_t)k);
        for (int64_t t = 0; t < k; t++) B->rows_nk[j][t] = B->b[t * n + j];
    }
    for (int64_t t = 0; t < k; t++) {
        B->rows_kn[t] = (int8_t *)xmalloc((size_t)n);
        memcpy(B->rows_kn[t], B->b + t * n, (size_t)n);
    }
}

static void bmat_free(bmat *B) {
    for (int64_t j = 0; j < B->n; j++) free(B->rows_nk[j]);
    for (int64_t t = 0; t < B->k; t++) free(B->rows_kn[t]);
    free(B->rows_nk), free(B->rows_kn), free(B->b);
}

/* Packs B with table kt in form kn (1) or nk (0) into a fresh buffer of pack_bytes + 64 canary
 * bytes; checks the canaries and that every byte was written. Returns the pack (caller frees). */
static uint8_t *pack_checked(const fia_i8_kernels *kt, const bmat *B, int kn, size_t *bytes_out) {
    const size_t bytes = kt->pack_bytes(B->n, B->k);
    uint8_t *p1 = (uint8_t *)xmalloc(bytes + 64), *p2 = (uint8_t *)xmalloc(bytes + 64);
    memset(p1, 0xa5, bytes + 64);
    memset(p2, 0x5a, bytes + 64);
    for (int pass = 0; pass < 2; pass++) {
        void *dst = pass ? p2 : p1;
        if (kn)
            kt->pack_b_kn((const int8_t *const *)B->rows_kn, B->k, B->n, dst);
        else
            kt->pack_b_nk((const int8_t *const *)B->rows_nk, B->n, B->k, dst);
    }
    int tail_ok = 1;
    for (size_t i = 0; i < 64; i++) tail_ok &= p1[bytes + i] == 0xa5 && p2[bytes + i] == 0x5a;
    tu_check(tail_ok, "%s pack_b_%s n=%" PRId64 " k=%" PRId64 ": wrote past pack_bytes %zu",
             kt->name, kn ? "kn" : "nk", B->n, B->k, bytes);
    tu_check(memcmp(p1, p2, bytes) == 0,
             "%s pack_b_%s n=%" PRId64 " k=%" PRId64 ": some pack byte not written", kt->name,
             kn ? "kn" : "nk", B->n, B->k);
    free(p2);
    *bytes_out = bytes;
    return p1;
}

/* The documented layout, element by element. */
static int check_layout(const uint8_t *pk, const bmat *B) {
    const int64_t k = B->k, n = B->n, k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    const int64_t panels = (n + 15) / 16;
    if (fia_i8_pack_bytes(n, k) != (size_t)(panels * pb)) return 0;
    for (int64_t p = 0; p < panels; p++) {
        const uint8_t *panel = pk + p * pb;
        for (int64_t c = 0; c < 16; c++) {
            const int64_t j = 16 * p + c;
            int32_t sum = 0;
            for (int64_t t = 0; t < 4 * k4; t++) {
                const int8_t want = (t < k && j < n) ? B->b[t * n + j] : 0;
                if ((int8_t)panel[64 * (t / 4) + 4 * c + t % 4] != want) return 0;
                sum += want;
            }
            int32_t got;
            memcpy(&got, panel + 64 * k4 + 4 * c, 4);
            if (got != sum) return 0;
        }
    }
    return 1;
}

static void pack_case(const fia_i8_kernels *vn, tu_rng *rng, int64_t n, int64_t k) {
    bmat B;
    bmat_make(&B, rng, k, n);
    for (int kn = 0; kn < 2; kn++) {
        size_t bytes, bytes2;
        uint8_t *ps = pack_checked(&tu_scalar_kernels()->i8, &B, kn, &bytes);
        tu_check(check_layout(ps, &B), "scalar pack_b_%s n=%" PRId64 " k=%" PRId64 ": layout",
                 kn ? "kn" : "nk", n, k);
        if (vn) {
            uint8_t *pv = pack_checked(vn, &B, kn, &bytes2);
            tu_check(bytes == bytes2 && memcmp(ps, pv, bytes) == 0,
                     "%s pack_b_%s n=%" PRId64 " k=%" PRId64 ": differs from scalar", vn->name,
                     kn ? "kn" : "nk", n, k);
            free(pv);
        }
        free(ps);
    }
    bmat_free(&B);
}

static void test_pack(const fia_i8_kernels *vn, tu_rng *rng) {
    for (int64_t n = 1; n <= 70; n++) pack_case(vn, rng, n, tu_int(rng, 0, 140));
    for (int64_t k = 0; k <= 70; k++) pack_case(vn, rng, tu_int(rng, 1, 140), k);
    static const int64_t big[][2] = {{64, 512}, {64, 576}, {512, 64}, {256, 128}, {530, 600},
                                     {1, 600},  {530, 1},  {17, 257}, {129, 63}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) pack_case(vn, rng, big[i][0], big[i][1]);
    /* n == 0: pack_bytes 0 and nothing written */
    tu_check(fia_i8_pack_bytes(0, 100) == 0 && fia_i8_pack_bytes(5, 0) == 64 &&
                 fia_i8_pack_bytes(17, 5) == 2 * (2 * 64 + 64),
             "pack_bytes small sizes");
}

/* ------------------------------------------------------------------------------------------ */
/* gemm                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct gemm_opts {
    int kn, offset, scale, beta;
} gemm_opts;

static void gemm_case(const fia_i8_kernels *vn, tu_rng *rng, int64_t m, int64_t n, int64_t k,
                      gemm_opts o) {
    const int32_t a_offset = o.offset ? 128 : 0;
    const int64_t lda = k + tu_int(rng, 0, 5), ldc = n + tu_int(rng, 0, 5);
    bmat B;
    bmat_make(&B, rng, k, n);
    size_t bytes;
    uint8_t *pk = pack_checked(&tu_scalar_kernels()->i8, &B, o.kn, &bytes);

    /* A: exactly sized; junk between rows. For a_offset 128 it comes from s8 via the helper. */
    const int64_t na = m > 0 && k > 0 ? (m - 1) * lda + k : 0;
    int8_t *as = (int8_t *)xmalloc((size_t)na);
    uint8_t *a = (uint8_t *)xmalloc((size_t)na), *a2 = (uint8_t *)xmalloc((size_t)na);
    const int ext = tu_chance(rng, 0.2) ? (o.offset ? 1 : 2) : 0;
    for (int64_t i = 0; i < na; i++) as[i] = (int8_t)rnd_byte(rng, ext);
    if (o.offset) {
        tu_scalar_kernels()->i8.s8_to_u8_offset(as, a, na);
        if (vn) {
            vn->s8_to_u8_offset(as, a2, na);
            tu_check(na == 0 || memcmp(a, a2, (size_t)na) == 0, "%s s8_to_u8_offset n=%" PRId64,
                     vn->name, na);
        }
    } else if (na) {
        memcpy(a, as, (size_t)na);
    }

    float *rs = (float *)xmalloc((size_t)m * sizeof(float));
    float *rb = (float *)xmalloc((size_t)m * sizeof(float));
    for (int64_t r = 0; r < m; r++) {
        const int pick = (int)tu_int(rng, 0, 5);
        rs[r] = pick == 0 ? 0.0f : pick == 1 ? 1.0f : (float)tu_uniform(rng, -1e-3, 1e-3);
        const int pick2 = (int)tu_int(rng, 0, 5);
        rb[r] = pick2 == 0 ? 0.0f : pick2 == 1 ? 1.0f : (float)tu_uniform(rng, -1.5, 1.5);
    }
    const float *row_scale = o.scale ? rs : NULL, *row_beta = o.beta ? rb : NULL;

    const int64_t nc = m * ldc + 16; /* ldc padding and a 16-float tail hold canaries */
    float *c0 = (float *)xmalloc((size_t)nc * sizeof(float));
    for (int64_t i = 0; i < nc; i++) {
        const int inside = i < m * ldc && (i % ldc) < n;
        c0[i] = inside ? (o.beta ? (float)tu_uniform(rng, -100, 100) : NAN) : canary();
    }
    float *cs = (float *)xmalloc((size_t)nc * sizeof(float));
    float *cv = (float *)xmalloc((size_t)nc * sizeof(float));
    memcpy(cs, c0, (size_t)nc * sizeof(float));
    memcpy(cv, c0, (size_t)nc * sizeof(float));
    tu_scalar_kernels()->i8.gemm(m, n, k, a, lda, pk, cs, ldc, row_scale, row_beta, a_offset);
    uint8_t *pv = NULL;
    if (vn) {
        size_t bytes2;
        pv = pack_checked(vn, &B, o.kn, &bytes2);
        vn->gemm(m, n, k, a, lda, pv, cv, ldc, row_scale, row_beta, a_offset);
    }
    /* The AMX gemm adds the same exact integers and runs the VNNI epilogue: bit for bit the VNNI
     * gemm's result, with row_beta too. */
    int ok_amx = 1;
    if (vn && vn->gemm == fia_i8_gemm__amx_32x32) {
        float *cw = (float *)xmalloc((size_t)nc * sizeof(float));
        memcpy(cw, c0, (size_t)nc * sizeof(float));
        fia_i8_gemm__avx512vnni_6x64(m, n, k, a, lda, pv, cw, ldc, row_scale, row_beta, a_offset);
        ok_amx = memcmp(cw, cv, (size_t)nc * sizeof(float)) == 0;
        free(cw);
    }

    /* AVX2 (no AVX-512: no fused epilogue) matches the scalar kernels bit for bit always */
    const int exact = vn && !(vn->features & FIA_CPU_AVX512);
    int ok_s = 1, ok_v = 1, ok_canary = 1;
    int64_t bad_r = -1, bad_j = -1;
    double bad_want = 0, bad_got = 0;
    int64_t *dot = (int64_t *)xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t r = 0; r < m && (ok_s || ok_v); r++) {
        for (int64_t j = 0; j < n; j++) dot[j] = 0;
        for (int64_t t = 0; t < k; t++) {
            /* the contract: s8 x s8 when a_offset == 128, u8 x s8 when 0 */
            const int64_t av = o.offset ? (int64_t)as[r * lda + t] : (int64_t)a[r * lda + t];
            const int8_t *bt = B.b + t * n;
            for (int64_t j = 0; j < n; j++) dot[j] += av * bt[j];
        }
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = r * ldc + j;
            const double sc = o.scale ? (double)rs[r] : 1.0;
            const double bterm = o.beta ? (double)rb[r] * c0[i] : 0.0;
            const double want = bterm + sc * (double)dot[j];
            const double tol = 1e-6 * (fabs(bterm) + fabs(sc * (double)dot[j])) + 1e-30;
            for (int t = 0; t < (vn ? 2 : 1); t++) {
                const float got = t ? cv[i] : cs[i];
                int good;
                if (!o.scale && !o.beta)
                    good = fia_f32_bits(got) == fia_f32_bits((float)dot[j]);
                else
                    good = fabs((double)got - want) <= tol;
                if (t && (!o.beta || exact)) good = good && fia_f32_bits(got) == fia_f32_bits(cs[i]);
                if (!good) {
                    if (t)
                        ok_v = 0;
                    else
                        ok_s = 0;
                    bad_r = r, bad_j = j, bad_want = want, bad_got = got;
                }
            }
        }
    }
    for (int64_t i = 0; i < nc; i++) {
        const int inside = i < m * ldc && (i % ldc) < n;
        if (inside) continue;
        if (!is_canary(cs[i]) || (vn && !is_canary(cv[i]))) ok_canary = 0;
    }
    char desc[200];
    snprintf(desc, sizeof desc,
             "m=%" PRId64 " n=%" PRId64 " k=%" PRId64 " lda=%" PRId64 " ldc=%" PRId64
             " %s off=%d scale=%d beta=%d",
             m, n, k, lda, ldc, o.kn ? "kn" : "nk", (int)a_offset, o.scale, o.beta);
    tu_check(ok_s, "scalar gemm %s: (%" PRId64 ",%" PRId64 ") got %.9g want %.9g", desc, bad_r,
             bad_j, bad_got, bad_want);
    if (vn)
        tu_check(ok_v, "%s gemm %s: (%" PRId64 ",%" PRId64 ") got %.9g want %.9g", vn->name, desc,
                 bad_r, bad_j, bad_got, bad_want);
    tu_check(ok_canary, "gemm %s: wrote outside C", desc);
    tu_check(ok_amx, "%s gemm %s: differs from the VNNI gemm", vn ? vn->name : "", desc);

    free(dot), free(pv), free(cv), free(cs), free(c0), free(rb), free(rs), free(a2), free(a),
        free(as), free(pk);
    bmat_free(&B);
}

/* Draws (in a fixed order, so every compiler replays the same cases for a seed) m, n, k in the
 * given ranges and random options, and runs one case. */
static void rnd_case(const fia_i8_kernels *vn, tu_rng *r, int64_t m0, int64_t m1, int64_t n0,
                     int64_t n1, int64_t k0, int64_t k1) {
    const int64_t m = tu_int(r, m0, m1);
    const int64_t n = tu_int(r, n0, n1);
    const int64_t k = tu_int(r, k0, k1);
    gemm_opts o;
    o.kn = (int)tu_int(r, 0, 1);
    o.offset = (int)tu_int(r, 0, 1);
    o.scale = (int)tu_int(r, 0, 1);
    o.beta = (int)tu_int(r, 0, 1);
    gemm_case(vn, r, m, n, k, o);
}

static void test_gemm(const fia_i8_kernels *vn, tu_rng *rng) {
    /* every option combination on a few odd shapes */
    for (int bits = 0; bits < 16; bits++) {
        const gemm_opts o = {bits & 1, (bits >> 1) & 1, (bits >> 2) & 1, (bits >> 3) & 1};
        gemm_case(vn, rng, 13, 37, 29, o);
        gemm_case(vn, rng, 7, 19, 130, o);
        gemm_case(vn, rng, 1, 1, 1, o);
    }
    /* every m 1..30 (all row-block splits, both the wide and the narrow tile), random n, k */
    for (int64_t m = 1; m <= 30; m++) {
        rnd_case(vn, rng, m, m, 1, 32, 0, 70);
        rnd_case(vn, rng, m, m, 33, 140, 0, 70);
    }
    /* every n 1..70 */
    for (int64_t n = 1; n <= 70; n++) rnd_case(vn, rng, 1, 14, n, n, 0, 70);
    /* every k 0..70 */
    for (int64_t k = 0; k <= 70; k++) rnd_case(vn, rng, 1, 14, 1, 70, k, k);
    /* the operator shapes and the largest sizes */
    static const int64_t big[][3] = {{128, 64, 512}, {128, 512, 64}, {64, 256, 128}, {128, 32, 576},
                                     {130, 530, 600}, {1, 530, 600},  {130, 1, 600},  {130, 530, 1}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        rnd_case(vn, rng, big[i][0], big[i][0], big[i][1], big[i][1], big[i][2], big[i][2]);
    /* AVX2 tile edges: m 1..9 (row blocks of 1..4) x n around the 8-column halves, k tails */
    static const int64_t edge[][3] = {{5, 7, 3},  {9, 9, 5},   {3, 15, 1},  {6, 17, 2},
                                      {1, 23, 7}, {4, 24, 4},  {8, 31, 33}, {2, 33, 65},
                                      {7, 8, 2049}, {3, 40, 1029}};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
        for (int bits = 0; bits < 16; bits++) {
            const gemm_opts o = {bits & 1, (bits >> 1) & 1, (bits >> 2) & 1, (bits >> 3) & 1};
            gemm_case(vn, rng, edge[i][0], edge[i][1], edge[i][2], o);
        }
    /* the AMX tile edges: m around 16 / 32 (row tiles, reconfigured tails), n around 16 / 32
     * (one or two B panels), k around multiples of 64 (full tile depth, the vpdpbusd depth tail
     * with a partial last group), m == 1, and a large k */
    static const int64_t em[] = {1, 2, 15, 16, 17, 31, 32, 33, 48, 63, 65, 97};
    static const int64_t en[] = {1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 80};
    static const int64_t ek[] = {63, 64, 65, 66, 67, 127, 128, 129, 190, 191, 192, 257, 1023};
    for (size_t i = 0; i < sizeof em / sizeof em[0]; i++)
        for (size_t j = 0; j < sizeof en / sizeof en[0]; j++)
            rnd_case(vn, rng, em[i], em[i], en[j], en[j], ek[(i + j) % 13], ek[(i + j) % 13]);
    for (size_t i = 0; i < sizeof ek / sizeof ek[0]; i++) rnd_case(vn, rng, 17, 40, 17, 40, ek[i], ek[i]);
    for (int bits = 0; bits < 16; bits++) {
        const gemm_opts o = {bits & 1, (bits >> 1) & 1, (bits >> 2) & 1, (bits >> 3) & 1};
        gemm_case(vn, rng, 33, 33, 4099, o);
    }
    gemm_case(vn, rng, 20, 18, 65536, (gemm_opts){1, 1, 1, 1});
    /* random shapes over the whole range */
    for (int i = 0; i < 40; i++)
        rnd_case(vn, rng, 1, 130, 1, 200, 0, 300);

    /* m == 0 / n == 0: no-op */
    const fia_i8_kernels *tabs[2] = {&tu_scalar_kernels()->i8, vn};
    for (int t = 0; t < (vn ? 2 : 1); t++) {
        float c[4] = {canary(), canary(), canary(), canary()};
        const uint8_t a[4] = {1, 2, 3, 4};
        uint8_t pk[128];
        memset(pk, 0, sizeof pk);
        const float one = 1.0f;
        tabs[t]->gemm(0, 4, 4, a, 4, pk, c, 4, &one, &one, 128);
        tabs[t]->gemm(1, 0, 4, a, 4, pk, c, 4, &one, &one, 128);
        tu_check(is_canary(c[0]) && is_canary(c[1]) && is_canary(c[2]) && is_canary(c[3]),
                 "%s gemm m/n == 0 touched C", tabs[t]->name);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* s8_to_u8_offset                                                                            */
/* ------------------------------------------------------------------------------------------ */

static void test_offset(const fia_i8_kernels *kt, tu_rng *rng) {
    int8_t all[256];
    uint8_t out[256];
    for (int i = 0; i < 256; i++) all[i] = (int8_t)(i - 128);
    kt->s8_to_u8_offset(all, out, 256);
    int ok = 1;
    for (int i = 0; i < 256; i++) ok &= out[i] == (uint8_t)i;
    tu_check(ok, "%s s8_to_u8_offset: all 256 values", kt->name);
    for (int64_t n = 0; n <= 200; n++) {
        const int64_t off = tu_int(rng, 0, 3);
        int8_t *src = (int8_t *)xmalloc((size_t)(n + off));
        uint8_t *dst = (uint8_t *)xmalloc((size_t)(n + off + 8));
        for (int64_t i = 0; i < n + off; i++) src[i] = (int8_t)tu_next(rng);
        memset(dst, 0xcc, (size_t)(n + off + 8));
        kt->s8_to_u8_offset(src + off, dst + off, n);
        int good = 1;
        for (int64_t i = 0; i < n + off + 8; i++) {
            const int in = i >= off && i < off + n;
            const uint8_t want = in ? (uint8_t)((uint8_t)src[i] ^ 0x80u) : 0xcc;
            good &= dst[i] == want;
        }
        /* in place */
        kt->s8_to_u8_offset(src + off, (uint8_t *)(src + off), n);
        for (int64_t i = 0; i < n; i++) good &= (uint8_t)src[off + i] == dst[off + i];
        tu_check(good, "%s s8_to_u8_offset n=%" PRId64 " off=%" PRId64, kt->name, n, off);
        free(src), free(dst);
    }
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261121, "test_i8gemm");
    tu_rng rng = tu_rng_make(seed);
    test_offset(&tu_scalar_kernels()->i8, &rng);
    /* every int8 variant this CPU runs (registry.inc), each against the scalar kernels */
    tu_kernel_variant v[16];
    const int nv = TU_KERNEL_VARIANTS(i8, v, 16);
    if (!nv) printf("no int8 variant runs on this CPU (scalar kernels still tested)\n");
    for (int t = 0; t < (nv ? nv : 1); t++) {
        const fia_i8_kernels *vn = nv ? &v[t].set.i8 : NULL;
        if (vn) test_offset(vn, &rng);
        test_pack(vn, &rng);
        test_gemm(vn, &rng);
        printf("scalar%s%s: done\n", vn ? " + " : "", vn ? vn->name : "");
        fflush(stdout);
    }
    return tu_summary();
}
