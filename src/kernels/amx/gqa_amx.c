/*
 * gqa_amx.c - the AMX bf16 GQA / MHA prefill tile kernels (contract: kernels/gqa_amx.h).
 *
 * Layouts (1 KiB tiles of 16 rows x 64 bytes):
 *   qb  [r][D] bf16: A operand of S = Q . K^T (tile (hb, db) at row 16 hb, column 32 db).
 *   kt  [kb][db][d2][j][2]: K^T in the pair layout, B operand (16 keys x 32 dims per tile),
 *       from 16 x 16 dword transposes of the key rows (keys n .. up to 16 zero).
 *   ph, pl [r % 32][nkp] bf16: P's hi and lo parts, A operands of P . V (keys n .. nkp zero),
 *       a ring of two row blocks (block hb + 1 written while the tiles read block hb: in L1).
 *   vp  [kk][cb][j2][c][2]: V rows interleaved in pairs, B operand (32 keys x 16 columns).
 * Tile registers: QK uses 0-3 (C: 2 row blocks x 2 key blocks), 4-5 (Q), 6-7 (K^T); PV uses
 * 0-3 (C: 4 column blocks of O), 4-5 (P hi, lo), 6-7 (V, alternating).
 * The softmax (row max, alpha) runs alone; e^x and P of row block hb + 1 run in fia_amx_gqa_pv,
 * a slice of rows after each group of tile operations of block hb (the tile unit works through
 * them while the vector units compute), so the exp work and the P . V tiles overlap.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/amx/amx_tiles.h"
#include "kernels/avx512/exp_avx512.h"
#include "kernels/gqa_amx.h"
#include "kernels/prefetch.h"

#define FIA_AI static inline __attribute__((always_inline))
enum { TILE = 512 /* bf16 per tile */ };

/* The step fia_amx_gqa_softmax leaves to fia_amx_gqa_pv: the scores, the state arrays (row_max
 * and alpha final, row_sum to be finished) and the shapes. */
typedef struct gqa_pending {
    const float *s;
    int64_t lds, n, rows;
    float scale;
    const float *row_max;
    float *row_sum;
    const float *alpha;
} gqa_pending;

typedef struct gqa_scratch {
    gqa_pending *pend;
    uint16_t *kt, *vp, *ph, *pl;
    float *ot; /* 16 x 64: a partial row block of O */
} gqa_scratch;

/* The scratch of rows_pad rows, head dims D / Dv and nk keys. The kernels carve it with the
 * dims they use and know (qk: Dv 16, softmax: D 32, Dv 16, pv: D 32), which never places a
 * field beyond the size fia_amx_gqa_scratch_bytes reserved for the real dims. The pending step
 * lives from fia_amx_gqa_softmax to fia_amx_gqa_pv: it comes first, at the same place for both;
 * P (ph, pl, two row blocks whatever rows_pad is) lives within fia_amx_gqa_pv. */
static size_t carve(int64_t rows_pad, int64_t D, int64_t Dv, int64_t nk, char *base,
                    gqa_scratch *s) {
    size_t off = 0;
    const int64_t nkp = (nk + 31) / 32 * 32;
#define TAKE(field, type, bytes) FIA_AMX_TAKE(s, base, off, field, type, bytes)
    TAKE(pend, gqa_pending, sizeof(gqa_pending));
    TAKE(ph, uint16_t, (size_t)(32 * nkp) * 2); /* two row blocks (a ring) */
    TAKE(pl, uint16_t, (size_t)(32 * nkp) * 2);
    TAKE(kt, uint16_t, (size_t)(nkp * D) * 2);
    TAKE(vp, uint16_t, (size_t)(nkp * Dv) * 2);
    TAKE(ot, float, 16 * 64 * 4);
#undef TAKE
    return off;
}

size_t fia_amx_gqa_scratch_bytes(int64_t rows_pad, int64_t D, int64_t Dv, int64_t nk) {
    return carve(rows_pad, D, Dv, nk, NULL, NULL);
}

/* ---- S = Q . K^T ------------------------------------------------------------------------ */

/* Key block kb (keys 16 kb ..) into its D / 32 B tiles; row j of the next step prefetched as
 * key j is read. */
FIA_AI void pack_k_block(int64_t n, int64_t D, const void *const *krows, int64_t kb,
                         const void *const *pf, int64_t npf, uint16_t *kt) {
    const int64_t j0 = kb * 16, ndb = D / 32;
    const uint16_t *src[16];
    if (npf > j0) fia_prefetch_rows(pf, j0, npf < j0 + 16 ? npf : j0 + 16, D * 2);
    for (int j = 0; j < 16; j++) src[j] = j0 + j < n ? (const uint16_t *)krows[j0 + j] : NULL;
    for (int64_t db = 0; db < ndb; db++) {
        __m512i r[16];
        for (int j = 0; j < 16; j++)
            r[j] = src[j] ? _mm512_loadu_si512(src[j] + db * 32) : _mm512_setzero_si512();
        fia_amx_transpose16(r);
        uint16_t *dst = kt + (kb * ndb + db) * TILE;
        for (int i = 0; i < 16; i++) _mm512_store_si512(dst + i * 32, r[i]);
    }
}

void fia_amx_gqa_qk(int64_t rows, int64_t n, int64_t D, const uint16_t *qb,
                    const void *const *krows, float scale, float *s, int64_t lds,
                    const void *const *pf, int64_t npf, void *scratch) {
    gqa_scratch sc;
    const int64_t nkb = (n + 15) / 16, nhb = (rows + 15) / 16, ndb = D / 32;
    const int64_t nkp = (n + 31) / 32 * 32;
    carve(nhb * 16, D, 16, nkp, scratch, &sc);
    /* the first key block pair now, each next one while the tiles multiply the one before it
     * (first row block pair) */
    for (int64_t kb = 0; kb < 2 && kb < nkb; kb++) pack_k_block(n, D, krows, kb, pf, npf, sc.kt);
    fia_amx_config();
    const int64_t qs = D * 2, cs = lds * 4;
    for (int64_t hb = 0; hb < nhb; hb += 2) {
        const bool twoh = hb + 1 < nhb;
        const uint16_t *q0 = qb + hb * 16 * D, *q1 = q0 + 16 * D;
        for (int64_t kb = 0; kb < nkb; kb += 2) {
            const bool twok = kb + 1 < nkb;
            const uint16_t *k0 = sc.kt + kb * ndb * TILE, *k1 = k0 + ndb * TILE;
            fia_amx_bf16_2x2(q0, q1, qs, k0, k1, ndb, twoh, twok);
            if (hb == 0)
                for (int64_t kn = kb + 2; kn < kb + 4 && kn < nkb; kn++)
                    pack_k_block(n, D, krows, kn, pf, npf, sc.kt);
            float *c = s + hb * 16 * lds + kb * 16;
            _tile_stored(0, c, cs);
            if (twok) _tile_stored(1, c + 16, cs);
            if (twoh) {
                _tile_stored(2, c + 16 * lds, cs);
                if (twok) _tile_stored(3, c + 16 * lds + 16, cs);
            }
        }
    }
    /* the scale after the dot product (1: left to fia_amx_gqa_softmax) */
    if (scale == 1.0f) return;
    const __m512 vs = _mm512_set1_ps(scale);
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1u);
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        int64_t j = 0;
        for (; j + 16 <= n; j += 16) _mm512_storeu_ps(sr + j, _mm512_mul_ps(_mm512_loadu_ps(sr + j), vs));
        if (j < n)
            _mm512_mask_storeu_ps(sr + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, sr + j), vs));
    }
}

/* ---- O = alpha . O + P . V -------------------------------------------------------------- */

/* Stores 32 probabilities (p0: keys j .. j + 15, p1: the next 16) as their bf16 hi and lo
 * parts. The hi parts widen back to fp32 with one zero-masked word permute each (bf16 word i
 * into the high half of dword i). */
FIA_AI void store_p32(uint16_t *h, uint16_t *l, __m512 p0, __m512 p1) {
    const __m512i w0 = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0, 7,
                                        0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    const __m512i w1 = _mm512_add_epi16(w0, _mm512_set1_epi16(16));
    const __m512i hi = (__m512i)_mm512_cvtne2ps_pbh(p1, p0);
    const __m512 h0 = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, w0, hi));
    const __m512 h1 = _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xAAAAAAAAu, w1, hi));
    _mm512_storeu_si512(h, hi);
    _mm512_storeu_si512(l, (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(p1, h1), _mm512_sub_ps(p0, h0)));
}

void fia_amx_gqa_softmax(int64_t rows, int64_t n, const float *s, int64_t lds, float scale,
                         float *row_max, float *row_sum, float *alpha, void *scratch) {
    gqa_scratch sc;
    const int64_t rows_pad = (rows + 15) / 16 * 16, nkp = (n + 31) / 32 * 32;
    carve(rows_pad, 32, 16, nkp, scratch, &sc);
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < rows; r++) {
        const float *sr = s + r * lds;
        /* the row max of the raw scores, then scaled (scale > 0: the max of the scaled
         * scores); NaN scores are skipped as softmax_tile skips them */
        __m512 vm0 = ninf, vm1 = ninf;
        for (int64_t j = 0; j < nkp; j += 32) {
            const int64_t left0 = n - j, left1 = n - j - 16;
            const __mmask16 m0 = left0 >= 16 ? 0xffff : left0 <= 0 ? 0 : (__mmask16)((1u << left0) - 1u);
            const __mmask16 m1 = left1 >= 16 ? 0xffff : left1 <= 0 ? 0 : (__mmask16)((1u << left1) - 1u);
            vm0 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m0, sr + j), vm0);
            vm1 = _mm512_max_ps(_mm512_mask_loadu_ps(ninf, m1, sr + j + 16), vm1);
        }
        float mx = _mm512_reduce_max_ps(_mm512_max_ps(vm0, vm1)) * scale;
        const float old = row_max[r];
        if (old > mx) mx = old;
        if (mx == -INFINITY) { /* row_max stays -inf: fia_amx_gqa_pv writes a zero P */
            alpha[r] = 1.0f;
            continue;
        }
        alpha[r] = old != -INFINITY ? _mm512_cvtss_f32(fia_avx512_exp16(_mm512_set1_ps(old - mx)))
                                    : 0.0f;
        row_max[r] = mx;
    }
    /* e^x, the row sums and P follow in fia_amx_gqa_pv, between its tile operations */
    *sc.pend = (gqa_pending){s, lds, n, rows, scale, row_max, row_sum, alpha};
}

/* P of rows r0 .. r1 - 1 (the step fia_amx_gqa_softmax left pending): e^(scale S - row max)
 * as bf16 hi and lo parts (zero for masked keys, fully masked rows and rows past `rows`), and
 * row_sum = row_sum alpha + the row's sum of e^x (two 16-lane accumulators, one reduction);
 * with alpha, O row r (r < rows) times alpha[r] first, just before the tiles load its block. */
FIA_AI void p_rows(const gqa_pending *pd, const gqa_scratch *sc, int64_t nkp, int64_t r0,
                   int64_t r1, float *o, int64_t ldo, int64_t Dv, const float *alpha) {
    const int64_t n = pd->n;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), vs = _mm512_set1_ps(pd->scale);
    for (int64_t r = r0; r < r1; r++) {
        if (alpha && r < pd->rows && alpha[r] != 1.0f) {
            const __m512 f = _mm512_set1_ps(alpha[r]);
            float *orow = o + r * ldo;
            for (int64_t c = 0; c < Dv; c += 16)
                _mm512_storeu_ps(orow + c, _mm512_mul_ps(_mm512_loadu_ps(orow + c), f));
        }
        uint16_t *h = sc->ph + (r & 31) * nkp, *l = sc->pl + (r & 31) * nkp;
        if (r >= pd->rows || pd->row_max[r] == -INFINITY) {
            memset(h, 0, (size_t)nkp * 2);
            memset(l, 0, (size_t)nkp * 2);
            continue;
        }
        const float *sr = pd->s + r * pd->lds;
        const __m512 vmx = _mm512_set1_ps(pd->row_max[r]);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        for (int64_t j = 0; j < nkp; j += 32) {
            const int64_t left0 = n - j, left1 = n - j - 16;
            const __mmask16 m0 = left0 >= 16 ? 0xffff : left0 <= 0 ? 0 : (__mmask16)((1u << left0) - 1u);
            const __mmask16 m1 = left1 >= 16 ? 0xffff : left1 <= 0 ? 0 : (__mmask16)((1u << left1) - 1u);
            const __m512 x0 = _mm512_mul_ps(_mm512_mask_loadu_ps(ninf, m0, sr + j), vs);
            const __m512 x1 = _mm512_mul_ps(_mm512_mask_loadu_ps(ninf, m1, sr + j + 16), vs);
            /* 32 masked keys (the causal diagonal): their e^x is 0, skip it */
            if (!(_mm512_cmp_ps_mask(x0, ninf, _CMP_NEQ_UQ) | _mm512_cmp_ps_mask(x1, ninf, _CMP_NEQ_UQ))) {
                memset(h + j, 0, 64);
                memset(l + j, 0, 64);
                continue;
            }
            const __m512 e0 = _mm512_maskz_mov_ps(m0, fia_avx512_exp16(_mm512_sub_ps(x0, vmx)));
            const __m512 e1 = _mm512_maskz_mov_ps(m1, fia_avx512_exp16(_mm512_sub_ps(x1, vmx)));
            acc0 = _mm512_add_ps(acc0, e0);
            acc1 = _mm512_add_ps(acc1, e1);
            store_p32(h + j, l + j, e0, e1);
        }
        const float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        pd->row_sum[r] = pd->row_sum[r] * pd->alpha[r] + sum;
    }
}

/* Keys 2 j2 and 2 j2 + 1 of block kk (32 keys) into the pair layout; zero beyond n. */
static void pack_v(int64_t n, int64_t nkp, int64_t Dv, const void *const *vrows,
                   const void *const *pf, int64_t npf, uint16_t *vp) {
    const __m512i i0 = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40,
                                        8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i i1 = _mm512_add_epi16(i0, _mm512_set1_epi16(16));
    const int64_t ncb = Dv / 16;
    for (int64_t j = 0; j < nkp; j += 2) {
        if (npf > j) fia_prefetch_rows(pf, j, npf < j + 2 ? npf : j + 2, Dv * 2);
        const uint16_t *ra = j < n ? (const uint16_t *)vrows[j] : NULL;
        const uint16_t *rb = j + 1 < n ? (const uint16_t *)vrows[j + 1] : NULL;
        const int64_t kk = j / 32, j2 = (j % 32) / 2;
        uint16_t *dst = vp + kk * ncb * TILE + j2 * 32;
        for (int64_t cc = 0; cc < Dv / 32; cc++) {
            const __m512i va = ra ? _mm512_loadu_si512(ra + cc * 32) : _mm512_setzero_si512();
            const __m512i vb = rb ? _mm512_loadu_si512(rb + cc * 32) : _mm512_setzero_si512();
            _mm512_store_si512(dst + (2 * cc) * TILE, _mm512_permutex2var_epi16(va, i0, vb));
            _mm512_store_si512(dst + (2 * cc + 1) * TILE, _mm512_permutex2var_epi16(va, i1, vb));
        }
    }
}

void fia_amx_gqa_pv(int64_t rows, int64_t n, int64_t Dv, const void *const *vrows, float *o, int64_t ldo, const float *alpha,
                    const void *const *pf, int64_t npf, void *scratch) {
    gqa_scratch sc;
    const int64_t nhb = (rows + 15) / 16, rows_pad = nhb * 16, nkp = (n + 31) / 32 * 32;
    const int64_t nkk = nkp / 32, ncb = Dv / 16, ncg = Dv / 64;
    carve(rows_pad, 32, Dv, nkp, scratch, &sc);
    const gqa_pending pd = *sc.pend;
    pack_v(n, nkp, Dv, vrows, pf, npf, sc.vp);
    p_rows(&pd, &sc, nkp, 0, 16, o, ldo, Dv, alpha);
    fia_amx_config();
    const int64_t ps = nkp * 2, nsteps = ncg * nkk;
    /* row block hb on the tiles while the vector units compute P of block hb + 1, a slice of
     * its rows after each group of tile operations (the tile unit runs them asynchronously) */
    for (int64_t hb = 0; hb < nhb; hb++) {
        const int64_t left = rows - hb * 16, next = hb + 1 < nhb ? (hb + 1) * 16 : -1;
        const uint16_t *h = sc.ph + (hb & 1) * 16 * nkp, *l = sc.pl + (hb & 1) * 16 * nkp;
        for (int64_t cg = 0; cg < ncg; cg++) {
            float *ob = o + hb * 16 * ldo + cg * 64;
            float *cb = ob;
            int64_t st = ldo * 4;
            if (left < 16) { /* a partial block: through the 16 x 64 stage */
                cb = sc.ot;
                st = 64 * 4;
                for (int64_t r = 0; r < 16; r++) {
                    if (r < left && alpha) memcpy(cb + r * 64, ob + r * ldo, 64 * 4);
                    else memset(cb + r * 64, 0, 64 * 4);
                }
            }
            if (alpha) {
                _tile_loadd(0, cb, st);
                _tile_loadd(1, cb + 16, st);
                _tile_loadd(2, cb + 32, st);
                _tile_loadd(3, cb + 48, st);
            } else {
                _tile_zero(0);
                _tile_zero(1);
                _tile_zero(2);
                _tile_zero(3);
            }
            for (int64_t kk = 0; kk < nkk; kk++) {
                const uint16_t *v = sc.vp + (kk * ncb + cg * 4) * TILE;
                _tile_loadd(4, h + kk * 32, ps);
                _tile_loadd(5, l + kk * 32, ps);
                _tile_loadd(6, v, 64);
                _tile_loadd(7, v + TILE, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(0, 5, 6);
                _tile_dpbf16ps(1, 5, 7);
                _tile_loadd(6, v + 2 * TILE, 64);
                _tile_loadd(7, v + 3 * TILE, 64);
                _tile_dpbf16ps(2, 4, 6);
                _tile_dpbf16ps(3, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
                if (next >= 0) {
                    const int64_t t = cg * nkk + kk;
                    p_rows(&pd, &sc, nkp, next + 16 * t / nsteps, next + 16 * (t + 1) / nsteps, o, ldo,
                           Dv, alpha);
                }
            }
            _tile_stored(0, cb, st);
            _tile_stored(1, cb + 16, st);
            _tile_stored(2, cb + 32, st);
            _tile_stored(3, cb + 48, st);
            if (left < 16)
                for (int64_t r = 0; r < left; r++) memcpy(ob + r * ldo, cb + r * 64, 64 * 4);
        }
    }
}
