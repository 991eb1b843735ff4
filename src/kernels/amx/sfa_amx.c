/*
 * sfa_amx.c - the AMX bf16 kernels of the C8 sparse flash attention step (contract:
 * kernels/sfa_amx.h).
 *
 * Layouts (tiles of 16 rows x 64 bytes):
 *   qt  [hb][db][d2][h][2]  Q^T in the pair (VNNI) layout: B operand of S^T = K . Q^T; hb a
 *       block of 16 rows, db a block of 32 of the 576 dims.
 *   ks  [j][576] bf16 K rows (the rounded k_nope, then k_rope): A operand of S^T, 16 keys at
 *       a stride of 1152 bytes.
 *   vs  [kk][cb][j2][c][2] V in the pair layout (keys 2 j2 and 2 j2 + 1 of block kk
 *       interleaved): B operand of O = P . V.
 *   pb  [r][64] bf16 P rounded: A operand of P . V (16 rows x 32 keys at a stride of 128 bytes).
 *   ct  4 fp32 tiles: S^T blocks on their way to S (16 x 16 transposes, times the scale).
 * Tile registers: S^T uses 0-3 (2 key blocks x 2 row blocks), 4-5 (K), 6-7 (Q^T); P . V uses
 * 0-3 (4 column blocks of O), 4 (P), 6-7 (V).
 *
 * bf16 conversions use vcvtne2ps2bf16 (nearest even, like the scalar cast); it flushes
 * denormal results to zero, as the tile multiplies treat bf16 denormals as zero anyway (a
 * value below 2^-126: nothing the tolerances can see).
 */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/amx/amx_tiles.h"
#include "kernels/sfa_amx.h"
#include "kernels/sfa_kernels.h"

#define FIA_AI static inline __attribute__((always_inline))
enum { DN = 512, DR = 64, DK = DN + DR, T = FIA_SFA_AMX_KEYS, NDB = DK / 32, NCB = DN / 16,
       TILE = 512 /* bf16 per tile */ };

typedef struct amx_scratch {
    uint16_t *ks, *vs, *pb;
    float *ct;
} amx_scratch;

static size_t carve(int64_t rows_pad, char *base, amx_scratch *s) {
    size_t off = 0;
#define TAKE(field, type, bytes) FIA_AMX_TAKE(s, base, off, field, type, bytes)
    TAKE(ks, uint16_t, (size_t)T * DK * 2);
    TAKE(vs, uint16_t, (size_t)(T / 32) * NCB * TILE * 2);
    TAKE(pb, uint16_t, (size_t)rows_pad * T * 2);
    TAKE(ct, float, 4 * 256 * 4);
#undef TAKE
    return off;
}

size_t fia_sfa_amx_scratch_bytes(int64_t rows_pad) { return carve(rows_pad, NULL, NULL); }

/* ---- prefetching the next rows ---------------------------------------------------------- */

/* Line u of the next rows: row u / PF, line u % PF (PF lines cover a 656-byte row at any
 * alignment: offsets 0, 64, .., 640 and 655). */
enum { PF = 12 };
FIA_AI void pf_lines(const void *const *next, int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; u++) {
        const int l = (int)(u % PF);
        _mm_prefetch((const char *)next[u / PF] + (l < PF - 1 ? 64 * l : FIA_C8_ROW_BYTES - 1),
                     _MM_HINT_T1);
    }
}

/* Slot i of slots: the lines [lo + (hi - lo) i / slots, lo + (hi - lo) (i + 1) / slots). */
FIA_AI void pf_slot(const void *const *next, int64_t lo, int64_t hi, int64_t i, int64_t slots) {
    if (hi > lo) pf_lines(next, lo + (hi - lo) * i / slots, lo + (hi - lo) * (i + 1) / slots);
}

void fia_sfa_amx_pack_q(int64_t rows, int64_t rows_pad, const uint16_t *const *q, uint16_t *qt) {
    /* dword view: qt32[((hb NDB + db) 16 + d2) 16 + h] = pair (2 d2, 2 d2 + 1) of block db:
     * per block, the 16 rows' 16 dwords transposed */
    for (int64_t hb = 0; hb < rows_pad / 16; hb++)
        for (int db = 0; db < NDB; db++) {
            __m512i x[16];
            for (int h = 0; h < 16; h++) {
                const int64_t r = hb * 16 + h;
                x[h] = r < rows ? _mm512_loadu_si512(q[r] + db * 32) : _mm512_setzero_si512();
            }
            fia_amx_transpose16(x);
            uint16_t *dst = qt + (hb * NDB + db) * TILE;
            for (int d2 = 0; d2 < 16; d2++) _mm512_storeu_si512(dst + d2 * 32, x[d2]);
        }
}

/* ---- staging ---------------------------------------------------------------------------- */

/* 32 k_nope values of a C8 row from column c0 (one 128-value tile): bf16(int8 * scale). */
FIA_AI __m512i dequant32(const unsigned char *r, int c0, __m512 sc) {
    const __m512 x0 = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r + c0)))), sc);
    const __m512 x1 = _mm512_mul_ps(
        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r + c0 + 16)))),
        sc);
    return (__m512i)_mm512_cvtne2ps_pbh(x1, x0);
}

/* Keys j, j + 1 (j even) of rows[0..n): the K rows and the V pair layout. */
FIA_AI void stage_pair(const amx_scratch *s, const void *const *rows, int64_t n, int64_t j) {
    /* pair interleave: words [a0..a31], [b0..b31] -> dwords (a c, b c), c < 16 / c >= 16 */
    const __m512i i0 = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40,
                                        8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i i1 = _mm512_add_epi16(i0, _mm512_set1_epi16(16));
    const unsigned char *ra = j < n ? rows[j] : NULL, *rb = j + 1 < n ? rows[j + 1] : NULL;
    float sa[4] = {0}, sb[4] = {0};
    if (ra) memcpy(sa, ra + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sa);
    if (rb) memcpy(sb, rb + FIA_C8_NOPE + 2 * FIA_C8_ROPE, sizeof sb);
    uint16_t *ka = s->ks + j * DK, *kb = ka + DK;
    uint16_t *vd = s->vs + (j / 32) * NCB * TILE + (j % 32) / 2 * 32;
    for (int cc = 0; cc < DN / 32; cc++) {
        const int t = cc / (FIA_C8_TILE / 32);
        const __m512i a = ra ? dequant32(ra, cc * 32, _mm512_set1_ps(sa[t])) : _mm512_setzero_si512();
        const __m512i b = rb ? dequant32(rb, cc * 32, _mm512_set1_ps(sb[t])) : _mm512_setzero_si512();
        _mm512_storeu_si512(ka + cc * 32, a);
        _mm512_storeu_si512(kb + cc * 32, b);
        _mm512_store_si512(vd + (2 * cc) * TILE, _mm512_permutex2var_epi16(a, i0, b));
        _mm512_store_si512(vd + (2 * cc + 1) * TILE, _mm512_permutex2var_epi16(a, i1, b));
    }
    for (int h = 0; h < DR; h += 32) {
        _mm512_storeu_si512(ka + DN + h, ra ? _mm512_loadu_si512(ra + FIA_C8_NOPE + 2 * h)
                                            : _mm512_setzero_si512());
        _mm512_storeu_si512(kb + DN + h, rb ? _mm512_loadu_si512(rb + FIA_C8_NOPE + 2 * h)
                                            : _mm512_setzero_si512());
    }
}

void fia_sfa_amx_c8_stage(const void *const *rows, int64_t n, int64_t rows_pad, void *scratch) {
    amx_scratch s;
    carve(rows_pad, scratch, &s);
    for (int64_t j = 0; j < (n + 31) / 32 * 32; j += 2) stage_pair(&s, rows, n, j);
}

/* ---- S = scale . Q . K^T ------------------------------------------------------------------ */

/* The 16 x 16 block of S^T at ct (keys x rows) into S (rows h0.., columns j0..), scaled;
 * rows >= rows are not written. */
FIA_AI void put_block(const float *ct, float scale, float *s, int64_t lds, int64_t h0, int64_t j0,
                      int64_t rows) {
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(ct + 16 * i);
    fia_amx_transpose16(r);
    const __m512 vs = _mm512_set1_ps(scale);
    const int64_t nr = rows - h0 < 16 ? rows - h0 : 16;
    for (int64_t i = 0; i < nr; i++)
        _mm512_storeu_ps(s + (h0 + i) * lds + j0, _mm512_mul_ps(_mm512_castsi512_ps(r[i]), vs));
}

void fia_sfa_amx_scores(int64_t rows, int64_t rows_pad, int64_t n, const uint16_t *qt,
                        float scale, float *s, int64_t lds, const void *const *next, int64_t nn,
                        void *scratch) {
    amx_scratch sc;
    carve(rows_pad, scratch, &sc);
    fia_amx_config();
    const int64_t nkb = (n + 15) / 16, nhb = rows_pad / 16, kst = DK * 2;
    const int64_t slots = (nkb + 1) / 2 * ((nhb + 1) / 2), half = nn * PF / 2;
    int64_t slot = 0;
    for (int64_t kb = 0; kb < nkb; kb += 2) {
        const bool two = kb + 1 < nkb;
        const uint16_t *k0 = sc.ks + kb * 16 * DK, *k1 = k0 + 16 * DK;
        for (int64_t hb = 0; hb < nhb; hb += 2) {
            const bool twoh = hb + 1 < nhb;
            const uint16_t *q0 = qt + hb * NDB * TILE, *q1 = q0 + NDB * TILE;
            fia_amx_bf16_2x2(k0, k1, kst, q0, q1, NDB, two, twoh);
            pf_slot(next, 0, half, slot++, slots);
            _tile_stored(0, sc.ct, 64);
            put_block(sc.ct, scale, s, lds, hb * 16, kb * 16, rows);
            if (twoh) {
                _tile_stored(1, sc.ct + 256, 64);
                put_block(sc.ct + 256, scale, s, lds, hb * 16 + 16, kb * 16, rows);
            }
            if (two) {
                _tile_stored(2, sc.ct + 512, 64);
                put_block(sc.ct + 512, scale, s, lds, hb * 16, kb * 16 + 16, rows);
                if (twoh) {
                    _tile_stored(3, sc.ct + 768, 64);
                    put_block(sc.ct + 768, scale, s, lds, hb * 16 + 16, kb * 16 + 16, rows);
                }
            }
        }
    }
}

/* ---- O = f . O + bf16(P c) . V ------------------------------------------------------------ */

void fia_sfa_amx_pv(int64_t rows, int64_t rows_pad, int64_t n, const float *p, int64_t ldp,
                    const float *c, const float *f, float *o, int64_t ldo, const float *post,
                    const void *const *next, int64_t nn, void *scratch) {
    amx_scratch sc;
    carve(rows_pad, scratch, &sc);
    const int64_t nkk = (n + 31) / 32, nhb = rows_pad / 16;
    /* P rounded on the rows' scales into the A tiles (keys >= n and rows >= rows zero) */
    for (int64_t r = 0; r < rows_pad; r++) {
        uint16_t *dst = sc.pb + r * T;
        if (r >= rows) {
            for (int64_t j = 0; j < nkk * 32; j += 32) _mm512_store_si512(dst + j, _mm512_setzero_si512());
            continue;
        }
        const __m512 vc = _mm512_set1_ps(c[r]);
        const float *src = p + r * ldp;
        for (int64_t j = 0; j < nkk * 32; j += 32) {
            const int64_t a = n - j, b = n - j - 16;
            const __mmask16 m0 = a >= 16 ? (__mmask16)0xffff : a <= 0 ? 0 : (__mmask16)((1u << a) - 1u);
            const __mmask16 m1 = b >= 16 ? (__mmask16)0xffff : b <= 0 ? 0 : (__mmask16)((1u << b) - 1u);
            const __m512 x0 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m0, src + j), vc);
            const __m512 x1 = _mm512_mul_ps(_mm512_maskz_loadu_ps(m1, src + j + 16), vc);
            _mm512_store_si512(dst + j, (__m512i)_mm512_cvtne2ps_pbh(x1, x0));
        }
    }
    fia_amx_config();
    const int64_t st = ldo * 4;
    const int64_t slots = NCB / 4 * nhb, lo = nn * PF / 2, hi = nn * PF;
    int64_t slot = 0;
    for (int64_t cg = 0; cg < NCB / 4; cg++)
        for (int64_t hb = 0; hb < nhb; hb++) {
            float *ob = o + hb * 16 * ldo + cg * 64;
            for (int r = 0; r < 16; r++) {
                float *orow = ob + r * ldo;
                const float fr = f[hb * 16 + r];
                if (fr == 0.0f) {
                    for (int d = 0; d < 64; d += 16) _mm512_storeu_ps(orow + d, _mm512_setzero_ps());
                } else if (fr != 1.0f) {
                    const __m512 vf = _mm512_set1_ps(fr);
                    for (int d = 0; d < 64; d += 16)
                        _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), vf));
                }
            }
            _tile_loadd(0, ob, st);
            _tile_loadd(1, ob + 16, st);
            _tile_loadd(2, ob + 32, st);
            _tile_loadd(3, ob + 48, st);
            for (int64_t kk = 0; kk < nkk; kk++) {
                const uint16_t *v = sc.vs + (kk * NCB + cg * 4) * TILE;
                _tile_loadd(4, sc.pb + hb * 16 * T + kk * 32, T * 2);
                _tile_loadd(6, v, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_loadd(7, v + TILE, 64);
                _tile_dpbf16ps(1, 4, 7);
                _tile_loadd(6, v + 2 * TILE, 64);
                _tile_dpbf16ps(2, 4, 6);
                _tile_loadd(7, v + 3 * TILE, 64);
                _tile_dpbf16ps(3, 4, 7);
            }
            pf_slot(next, lo, hi, slot++, slots);
            _tile_stored(0, ob, st);
            _tile_stored(1, ob + 16, st);
            _tile_stored(2, ob + 32, st);
            _tile_stored(3, ob + 48, st);
            if (post) /* the block as it left the tiles, still in L1 */
                for (int64_t r = 0; r < 16 && hb * 16 + r < rows; r++) {
                    const float g = post[hb * 16 + r];
                    if (g == 1.0f) continue;
                    float *orow = ob + r * ldo;
                    for (int d = 0; d < 64; d += 16)
                        _mm512_storeu_ps(orow + d, _mm512_mul_ps(_mm512_loadu_ps(orow + d), _mm512_set1_ps(g)));
                }
        }
}
