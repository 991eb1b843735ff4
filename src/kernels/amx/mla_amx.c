/*
 * mla_amx.c - the AMX bf16 MLA decode step (contract: kernels/amx.h).
 *
 * Layouts (all 1 KiB tiles of 16 rows x 64 bytes):
 *   qt  [hb][db][d2][h][2]  Q^T in the pair (VNNI) layout: B operand of S^T = K . Q^T; hb a block
 *       of 16 rows, db a block of 32 of the 576 dims (16 latent + 2 rope blocks).
 *   K   A operand read straight from the cache: 16 consecutive keys at a constant stride (rows
 *       that are not, a partial block, or PA_NZ rows gathered from their 32-byte chunks, are
 *       first copied to a zero-padded stage; V is packed from where K is read).
 *   st  [j][rows_pad] fp32 S^T (scaled and masked in place for a row block with masked keys).
 *   pa  [part][hb][kk][h][32 keys] bf16: P (hi, lo) as the A operand of O = P . V, written by
 *       the softmax straight from its registers (16 x 16 dword transposes of P^T key pairs).
 *   vp  [kk][cb][j2][c][2] V in the pair layout (two key rows interleaved): B operand of P . V.
 * Tile registers: QK uses 0-3 (C: 2 key blocks x 2 row blocks), 4-5 (K), 6-7 (Q^T); PV uses 0-3
 * (C: 4 column blocks of O), 4-5 (P hi, lo), 6-7 (V, alternating).
 * AMLA: the softmax keeps P relative to 2^-e per row (e, c from kernels/amla.h) and P . V rescales
 * O by an exponent add instead of a multiply (fia_amx_mla_ext).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/amla.h"
#include "kernels/amx.h"
#include "kernels/avx512/exp_avx512.h"
#include "kernels/amx/amx_tiles.h"
#include "kernels/prefetch.h"

#define FIA_AI static inline __attribute__((always_inline))
enum { DN = FIA_AMX_MLA_DN, DR = FIA_AMX_MLA_DR, DK = DN + DR, T = FIA_AMX_MLA_STEP,
       NDB = DK / 32, NCB = DN / 16, TILE = 512 /* bf16 per tile */ };

typedef struct amx_scratch {
    float *st;
    uint16_t *pa, *vp, *kstage, *rstage;
} amx_scratch;

static size_t carve(int64_t rows_pad, char *base, amx_scratch *s) {
    size_t off = 0;
#define TAKE(field, type, bytes) FIA_AMX_TAKE(s, base, off, field, type, bytes)
    TAKE(st, float, (size_t)T * (size_t)rows_pad * 4);
    TAKE(pa, uint16_t, 2 * (size_t)(rows_pad / 16) * (T / 32) * TILE * 2);
    TAKE(vp, uint16_t, (size_t)(T / 32) * NCB * TILE * 2);
    TAKE(kstage, uint16_t, (size_t)T * DN * 2);
    TAKE(rstage, uint16_t, (size_t)T * DR * 2);
#undef TAKE
    return off;
}

size_t fia_amx_mla_scratch_bytes(int64_t rows_pad) { return carve(rows_pad, NULL, NULL); }

void fia_amx_mla_pack_q(int64_t rows, int64_t rows_pad, const uint16_t *const *qn,
                        const uint16_t *const *qr, uint16_t *qt) {
    /* dword view: qt32[((hb NDB + db) 16 + d2) 16 + h] = pair (2 d2, 2 d2 + 1) of block db */
    uint32_t *q32 = (uint32_t *)(void *)qt;
    for (int64_t hb = 0; hb < rows_pad / 16; hb++)
        for (int h = 0; h < 16; h++) {
            const int64_t r = hb * 16 + h;
            uint32_t *dst = q32 + hb * NDB * 256 + h;
            if (r >= rows) {
                for (int i = 0; i < NDB * 16; i++) dst[i * 16] = 0;
                continue;
            }
            for (int i = 0; i < DN / 2; i++) {
                uint32_t v;
                memcpy(&v, qn[r] + 2 * i, 4);
                dst[i * 16] = v;
            }
            for (int i = 0; i < DR / 2; i++) {
                uint32_t v;
                memcpy(&v, qr[r] + 2 * i, 4);
                dst[(DN / 2 + i) * 16] = v;
            }
        }
}

/* ---- prefetching the next rows ---------------------------------------------------------- */

/* The lines of the next rows (fia_pf_cursor: array 0's rows, then array 1's), issued a share at
 * a time between tile operations (fia_pf_until). */
static fia_pf_cursor pf_next(const fia_amx_mla_next *nx) {
    if (!nx) return fia_pf_init(NULL, 0, NULL, 0, 0);
    return fia_pf_init(nx->rows[0], nx->row_bytes[0], nx->rows[1], nx->row_bytes[1], nx->n);
}

/* ---- S^T = K . Q^T ----------------------------------------------------------------------- */

/* Base and byte stride of key block kb (16 keys) for the latent and rope parts: the cache rows
 * in place when they are 16 full rows at one stride, else a zero-padded copy (PA_NZ rows:
 * gathered from their 32-byte chunks, chunk-major so that each chunk's 16 rows, adjacent in
 * the cache, are read in order). */
static void key_block(const fia_amx_mla_args *a, const fia_amx_mla_ext *x, const amx_scratch *s,
                      int64_t kb, const void **kp, int64_t *ks, const void **rp, int64_t *rs) {
    const int64_t j0 = kb * 16, cnt = a->n - j0 < 16 ? a->n - j0 : 16;
    const bool nz = x->k_chunk_bytes || x->r_chunk_bytes;
    bool direct = cnt == 16 && !nz;
    if (direct) {
        const char *k0 = (const char *)a->krows[j0], *r0 = (const char *)a->rrows[j0];
        const int64_t kst = (const char *)a->krows[j0 + 1] - k0;
        const int64_t rst = (const char *)a->rrows[j0 + 1] - r0;
        for (int i = 2; i < 16 && direct; i++)
            direct = (const char *)a->krows[j0 + i] == k0 + i * kst &&
                     (const char *)a->rrows[j0 + i] == r0 + i * rst;
        if (direct) {
            *kp = k0, *ks = kst, *rp = r0, *rs = rst;
            return;
        }
    }
    uint16_t *kd = s->kstage + j0 * DN, *rd = s->rstage + j0 * DR;
    if (nz) {
        const int64_t kc = x->k_chunk_bytes ? x->k_chunk_bytes : 32;
        const int64_t rc = x->r_chunk_bytes ? x->r_chunk_bytes : 32;
        for (int c = 0; c < DN / 16; c++)
            for (int64_t i = 0; i < cnt; i++)
                _mm256_store_si256((__m256i *)(void *)(kd + i * DN + c * 16),
                                   _mm256_loadu_si256((const __m256i *)(const void *)(
                                       (const char *)a->krows[j0 + i] + c * kc)));
        for (int c = 0; c < DR / 16; c++)
            for (int64_t i = 0; i < cnt; i++)
                _mm256_store_si256((__m256i *)(void *)(rd + i * DR + c * 16),
                                   _mm256_loadu_si256((const __m256i *)(const void *)(
                                       (const char *)a->rrows[j0 + i] + c * rc)));
    } else {
        for (int64_t i = 0; i < cnt; i++) {
            memcpy(kd + i * DN, a->krows[j0 + i], DN * 2);
            memcpy(rd + i * DR, a->rrows[j0 + i], DR * 2);
        }
    }
    for (int64_t i = cnt; i < 16; i++) {
        memset(kd + i * DN, 0, DN * 2);
        memset(rd + i * DR, 0, DR * 2);
    }
    *kp = kd, *ks = DN * 2, *rp = rd, *rs = DR * 2;
}

typedef struct kblock {
    const char *kp, *rp; /* latent and rope parts of 16 keys: tile base addresses */
    int64_t ks, rs;      /* their byte strides */
} kblock;

#define A_ADDR(b, db) ((db) < DN / 32 ? (b)->kp + (db) * 64 : (b)->rp + ((db) - DN / 32) * 64)
#define A_STRIDE(b, db) ((db) < DN / 32 ? (b)->ks : (b)->rs)

/* ---- softmax on S^T, P packing ------------------------------------------------------------ */

/* e^x: kernels/avx512/exp_avx512.h (every argument here is x - max <= 0). */
/* P of row block hb, keys kk 32 .. kk 32 + 31 (p[jj]: the 16 rows of key kk 32 + jj) into the
 * A tiles of P . V: pa[part][hb][kk], 16 rows x 32 keys (16 x 16 dword transposes of key pairs). */
FIA_AI void pack_p_block(const fia_amx_mla_args *a, const amx_scratch *s, int64_t hb, int64_t kk,
                         const __m512 p[32]) {
    const int64_t part = (a->rows_pad / 16) * (T / 32) * TILE;
    /* words [bf16(p0[0..15]), bf16(p1[0..15])] -> dword i = (bf16(p0[i]), bf16(p1[i])) */
    const __m512i il = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24,
                                        8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i top = _mm512_set1_epi32((int32_t)0xffff0000u);
    __m512i hi[16], lo[16];
    for (int j2 = 0; j2 < 16; j2++) {
        const __m512 p0 = p[2 * j2], p1 = p[2 * j2 + 1];
        hi[j2] = _mm512_permutexvar_epi16(il, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        if (!a->p_bf16) {
            /* the parts as fp32: p0's in the low, p1's in the high word of each dword */
            const __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(hi[j2], 16));
            const __m512 h1 = _mm512_castsi512_ps(_mm512_and_si512(hi[j2], top));
            lo[j2] = _mm512_permutexvar_epi16(
                il, (__m512i)_mm512_cvtne2ps_pbh(_mm512_sub_ps(p1, h1), _mm512_sub_ps(p0, h0)));
        }
    }
    uint16_t *dh = s->pa + (hb * (T / 32) + kk) * TILE;
    fia_amx_transpose16(hi);
    for (int h = 0; h < 16; h++) _mm512_store_si512(dh + h * 32, hi[h]);
    if (!a->p_bf16) {
        fia_amx_transpose16(lo);
        for (int h = 0; h < 16; h++) _mm512_store_si512(dh + part + h * 32, lo[h]);
    }
}

/* Online softmax of the step, 16 rows per vector, fused with the packing of P (pack_p_block).
 * Returns whether any row saw a key; alpha (rows_pad entries) gets each row's rescale factor
 * (AMLA: dexp gets its exponent delta, softmax_tile_amla's row_exp, instead).
 * The state and update rule are those of fia_kernels.softmax_tile (_amla). When every row of a block
 * sees every key of the step and the scale is positive, the max is taken over the raw scores
 * and scaled once (scaling by a positive number is monotone: the same value) and S^T is not
 * rewritten; otherwise S^T is scaled and masked in place first. */
static bool amx_softmax(const fia_amx_mla_args *a, const fia_amx_mla_ext *ext, const amx_scratch *s,
                        float *alpha, int32_t *dexp) {
    const int64_t ld = a->rows_pad, n = a->n, nkk = (n + 31) / 32;
    const __m512 ninf = _mm512_set1_ps(-INFINITY), vscale = _mm512_set1_ps(a->scale);
    bool any = false;
    for (int64_t h0 = 0; h0 < a->rows_pad; h0 += 16) {
        const int64_t left = a->rows - h0;
        const __mmask16 km = left >= 16 ? (__mmask16)0xffff
                             : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
        const __m512 m_old = _mm512_mask_loadu_ps(ninf, km, a->m + h0);
        const __m512 l_old = _mm512_maskz_loadu_ps(km, a->l + h0);
        const __m512i ka = _mm512_maskz_loadu_epi32(km, a->ka + h0);
        const __m512i ke = _mm512_maskz_loadu_epi32(km, a->ke + h0);
        const bool full = a->scale > 0.0f &&
                          !_mm512_mask_cmpgt_epi32_mask(km, ka, _mm512_setzero_si512()) &&
                          !_mm512_mask_cmplt_epi32_mask(km, ke, _mm512_set1_epi32((int32_t)n));
        const float *st = s->st + h0;
        __m512 mx = m_old;
        if (full) {
            __m512 r0 = _mm512_loadu_ps(st), r1 = r0;
            int64_t j = 1;
            for (; j + 1 < n; j += 2) {
                r0 = _mm512_max_ps(r0, _mm512_loadu_ps(st + j * ld));
                r1 = _mm512_max_ps(r1, _mm512_loadu_ps(st + (j + 1) * ld));
            }
            if (j < n) r0 = _mm512_max_ps(r0, _mm512_loadu_ps(st + j * ld));
            /* a NaN score may be lost from the max (as in the in-place form); its e^x is NaN
             * and the row ends NaN through the sum either way */
            mx = _mm512_max_ps(mx, _mm512_mul_ps(_mm512_max_ps(r0, r1), vscale));
        } else {
            for (int64_t j = 0; j < n; j++) {
                float *sp = s->st + j * ld + h0;
                const __m512i vj = _mm512_set1_epi32((int32_t)j);
                const __mmask16 vis = _mm512_cmpge_epi32_mask(vj, ka) & _mm512_cmplt_epi32_mask(vj, ke);
                const __m512 x = _mm512_mask_mul_ps(ninf, vis, _mm512_loadu_ps(sp), vscale);
                _mm512_storeu_ps(sp, x);
                mx = _mm512_max_ps(mx, x);
            }
        }
        const __mmask16 seen = _mm512_cmp_ps_mask(mx, ninf, _CMP_NEQ_UQ) & km;
        if (seen) any = true;
        /* rows that see nothing: P = 0, alpha = 1, state unchanged */
        const __m512 al = _mm512_mask_blend_ps(
            seen, _mm512_set1_ps(1.0f),
            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_old, ninf, _CMP_NEQ_UQ),
                                fia_avx512_exp16(_mm512_sub_ps(m_old, mx))));
        const __m512 mxs = _mm512_mask_blend_ps(seen, _mm512_setzero_ps(), mx);
        const __m512 sc = full ? vscale : _mm512_set1_ps(1.0f);
        /* AMLA, 16 rows at a time: e = round(-mx / ln2) in double as kernels/amla.h computes it
         * (|e| clamped to 2^30, NaN to 2^30), c = exp(mx + e ln2) (the argument in double, in
         * [-ln2 / 2, ln2 / 2], the exp in fp32: c within a few ulp of the reference's), the
         * exponent delta d = max(e - e_old, -255) (e never grows: the max only rises), -255
         * where the row saw nothing before (its accumulator is flushed to zero), 0 for rows that
         * see nothing */
        __m512 vc = _mm512_set1_ps(1.0f);
        __m512i ve = _mm512_setzero_si512(), vd = _mm512_setzero_si512();
        __mmask16 fresh = 0;
        if (ext->amla && seen) {
            const __m512d ln2 = _mm512_set1_pd(0.69314718055994530942);
            const __m512d emax = _mm512_set1_pd((double)FIA_AMLA_MAX_E);
            __m256i eh[2];
            __m256 th[2];
            for (int hh = 0; hh < 2; hh++) {
                const __m512d md = _mm512_cvtps_pd(hh ? _mm512_extractf32x8_ps(mx, 1)
                                                      : _mm512_castps512_ps256(mx));
                __m512d xd = _mm512_div_pd(_mm512_sub_pd(_mm512_setzero_pd(), md), ln2);
                xd = _mm512_mask_blend_pd(_mm512_cmp_pd_mask(xd, emax, _CMP_LT_OQ), emax, xd);
                xd = _mm512_max_pd(xd, _mm512_sub_pd(_mm512_setzero_pd(), emax));
                const __m512d r = _mm512_roundscale_pd(xd, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                eh[hh] = _mm512_cvtpd_epi32(r);
                th[hh] = _mm512_cvtpd_ps(_mm512_add_pd(md, _mm512_mul_pd(r, ln2)));
            }
            ve = _mm512_inserti64x4(_mm512_castsi256_si512(eh[0]), eh[1], 1);
            vc = fia_avx512_exp16(_mm512_insertf32x8(_mm512_castps256_ps512(th[0]), th[1], 1));
            const __mmask16 had = _mm512_cmp_ps_mask(m_old, ninf, _CMP_NEQ_UQ) & seen;
            fresh = seen & ~had;
            const __m512i dd = _mm512_sub_epi32(ve, _mm512_maskz_loadu_epi32(km, ext->e + h0));
            vd = _mm512_maskz_mov_epi32(
                had, _mm512_min_epi32(_mm512_max_epi32(dd, _mm512_set1_epi32(-255)),
                                      _mm512_setzero_si512()));
            vd = _mm512_mask_mov_epi32(vd, fresh, _mm512_set1_epi32(-255));
        }
        __m512 sum = _mm512_setzero_ps();
        for (int64_t kk = 0; kk < nkk; kk++) {
            __m512 p[32];
            for (int jj = 0; jj < 32; jj++) {
                const int64_t j = kk * 32 + jj;
                if (j < n) {
                    const __m512 x = _mm512_mul_ps(_mm512_loadu_ps(st + j * ld), sc);
                    __m512 e = fia_avx512_exp16(_mm512_sub_ps(x, mxs));
                    if (ext->amla) e = _mm512_mul_ps(e, vc);
                    p[jj] = _mm512_maskz_mov_ps(seen, e);
                    sum = _mm512_add_ps(sum, p[jj]);
                } else {
                    p[jj] = _mm512_setzero_ps();
                }
            }
            pack_p_block(a, s, h0 / 16, kk, p);
        }
        _mm512_mask_storeu_ps(a->m + h0, seen, mx);
        if (ext->amla) {
            /* l = l 2^d + sum (fresh rows: sum), as softmax_tile_amla's ldexpf */
            const __m512 ls = _mm512_scalef_ps(l_old, _mm512_cvtepi32_ps(vd));
            const __m512 ln = _mm512_add_ps(_mm512_mask_mov_ps(ls, fresh, _mm512_setzero_ps()), sum);
            _mm512_storeu_si512(dexp + h0, vd);
            _mm512_mask_storeu_ps(a->l + h0, seen, ln);
            _mm512_mask_storeu_epi32(ext->e + h0, seen, ve);
        } else {
            _mm512_storeu_ps(alpha + h0, al);
            _mm512_mask_storeu_ps(a->l + h0, seen, _mm512_fmadd_ps(l_old, al, sum));
        }
    }
    return any;
}

/* ---- V packing ------------------------------------------------------------------------------ */

/* Latent row j of the step where S^T reads it: in place, or in the stage of key_block. */
FIA_AI const uint16_t *key_row(const kblock *kb, int64_t j) {
    const kblock *b = &kb[j / 16];
    return (const uint16_t *)(const void *)(b->kp + (j % 16) * b->ks);
}

/* Unit u = kk 16 + j2 of the V packing: keys kk 32 + 2 j2 and + 1 (the first 512 of each latent
 * row) into the pair layout vp[kk][cb][j2][c][2] (B operand of P . V). */
FIA_AI void vpack_unit(const fia_amx_mla_args *a, const amx_scratch *s, const kblock *kb,
                       int64_t u) {
    const int64_t n = a->n, kk = u / 16;
    const int j2 = (int)(u % 16);
    const __m512i i0 = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40,
                                        8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i i1 = _mm512_add_epi16(i0, _mm512_set1_epi16(16));
    const int64_t j = kk * 32 + 2 * j2;
    const uint16_t *ra = j < n ? key_row(kb, j) : NULL;
    const uint16_t *rb = j + 1 < n ? key_row(kb, j + 1) : NULL;
    uint16_t *dst = s->vp + kk * NCB * TILE + j2 * 32;
    for (int cc = 0; cc < DN / 32; cc++) {
        const __m512i va = ra ? _mm512_loadu_si512(ra + cc * 32) : _mm512_setzero_si512();
        const __m512i vb = rb ? _mm512_loadu_si512(rb + cc * 32) : _mm512_setzero_si512();
        _mm512_store_si512(dst + (2 * cc) * TILE, _mm512_permutex2var_epi16(va, i0, vb));
        _mm512_store_si512(dst + (2 * cc + 1) * TILE, _mm512_permutex2var_epi16(va, i1, vb));
    }
}

/* ---- S^T = K . Q^T -------------------------------------------------------------------------- */

/* Tiles 0-3: 2 key blocks x 2 row blocks, 4-5: K, 6-7: Q^T; key pairs outer, so that the K
 * tiles of a pair (read from the cache rows in place, at their stride) stay in L1 while the
 * packed query tiles stream. */
static void amx_qk(const fia_amx_mla_args *a, const amx_scratch *s, const kblock *kb_,
                   fia_pf_cursor *pf, int64_t slot0, int64_t slots) {
    const int64_t nkb = (a->n + 15) / 16, nhb = a->rows_pad / 16, ld = a->rows_pad;
    int64_t slot = slot0;
    for (int64_t kb = 0; kb < nkb; kb += 2) {
        const bool two = kb + 1 < nkb;
        const kblock *b0 = &kb_[kb], *b1 = &kb_[two ? kb + 1 : kb];
        for (int64_t hb = 0; hb < nhb; hb += 2) {
            const bool twoh = hb + 1 < nhb;
            const uint16_t *q0 = a->qt + hb * NDB * TILE, *q1 = q0 + NDB * TILE;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int db = 0; db < NDB; db++) {
                _tile_loadd(4, A_ADDR(b0, db), A_STRIDE(b0, db));
                _tile_loadd(6, q0 + db * TILE, 64);
                _tile_dpbf16ps(0, 4, 6);
                if (twoh) {
                    _tile_loadd(7, q1 + db * TILE, 64);
                    _tile_dpbf16ps(1, 4, 7);
                }
                if (two) {
                    _tile_loadd(5, A_ADDR(b1, db), A_STRIDE(b1, db));
                    _tile_dpbf16ps(2, 5, 6);
                    if (twoh) _tile_dpbf16ps(3, 5, 7);
                }
                if (db % 6 == 5) fia_pf_until(pf, ++slot, slots);
            }
            float *c = s->st + kb * 16 * ld + hb * 16;
            _tile_stored(0, c, ld * 4);
            if (twoh) _tile_stored(1, c + 16, ld * 4);
            if (two) {
                _tile_stored(2, c + 16 * ld, ld * 4);
                if (twoh) _tile_stored(3, c + 16 * ld + 16, ld * 4);
            }
        }
    }
}

/* ---- O = alpha . O + P . V ---------------------------------------------------------------- */


/* Rescales rows [16 hb, 16 hb + 16), columns [64 cg, 64 cg + 64) of O by alpha (AMLA: by the
 * exponent add of dexp); rows whose factor is 1 (delta 0) are only brought into L1. */
FIA_AI void rescale_block(const fia_amx_mla_args *a, const float *alpha, const int32_t *dexp,
                          int64_t cg, int64_t hb) {
    float *ob = a->o + hb * 16 * a->ldo + cg * 64;
    for (int r = 0; r < 16; r++) {
        float *o = ob + r * a->ldo;
        const bool one = dexp ? dexp[hb * 16 + r] == 0 : alpha[hb * 16 + r] == 1.0f;
        if (one) {
            for (int c = 0; c < 64; c += 16) _mm_prefetch((const char *)(o + c), _MM_HINT_T0);
        } else if (dexp) {
            const __m512i sh = _mm512_set1_epi32(dexp[hb * 16 + r] * (1 << 23));
            for (int c = 0; c < 64; c += 16)
                _mm512_storeu_ps(o + c, fia_avx512_exp_add16(_mm512_loadu_ps(o + c), sh));
        } else {
            const __m512 f = _mm512_set1_ps(alpha[hb * 16 + r]);
            for (int c = 0; c < 64; c += 16)
                _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_loadu_ps(o + c), f));
        }
    }
}

/* Column groups of 64 on tiles 0-3, P (hi, lo) on 4-5, V on 6-7 (alternating); column groups
 * outer, so that the V tiles of a group (16 KiB) stay in L1 across the row blocks. The 16 x 64
 * blocks of O start from zero tiles on the first step; later, each block is rescaled one block
 * ahead, between the tile multiplies of the block before it, so that its vector stores have
 * left the store buffer when its tiles are loaded (a tile load right after stores to the same
 * lines waits for them to drain). */
static void amx_pv(const fia_amx_mla_args *a, const amx_scratch *s, const float *alpha,
                   const int32_t *dexp, fia_pf_cursor *pf, int64_t slot0, int64_t slots) {
    int64_t slot = slot0;
    const int64_t nhb = a->rows_pad / 16, nkk = (a->n + 31) / 32;
    const int64_t part = nhb * (T / 32) * TILE;
    const bool two = !a->p_bf16;
    const int64_t st = a->ldo * 4;
    if (!a->first) rescale_block(a, alpha, dexp, 0, 0);
    for (int64_t cg = 0; cg < NCB / 4; cg++)
    for (int64_t hb = 0; hb < nhb; hb++) {
        float *ob = a->o + hb * 16 * a->ldo + cg * 64;
        if (a->first) {
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
        } else {
            _tile_loadd(0, ob, st);
            _tile_loadd(1, ob + 16, st);
            _tile_loadd(2, ob + 32, st);
            _tile_loadd(3, ob + 48, st);
        }
        for (int64_t kk = 0; kk < nkk; kk++) {
            const uint16_t *ph = s->pa + (hb * (T / 32) + kk) * TILE;
            const uint16_t *v = s->vp + (kk * NCB + cg * 4) * TILE;
            _tile_loadd(4, ph, 64);
            if (two) _tile_loadd(5, ph + part, 64);
            _tile_loadd(6, v, 64);
            _tile_dpbf16ps(0, 4, 6);
            if (two) _tile_dpbf16ps(0, 5, 6);
            _tile_loadd(7, v + TILE, 64);
            _tile_dpbf16ps(1, 4, 7);
            if (two) _tile_dpbf16ps(1, 5, 7);
            _tile_loadd(6, v + 2 * TILE, 64);
            _tile_dpbf16ps(2, 4, 6);
            if (two) _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(7, v + 3 * TILE, 64);
            _tile_dpbf16ps(3, 4, 7);
            if (two) _tile_dpbf16ps(3, 5, 7);
            if (kk == 0 && !a->first) { /* the next block, (cg, hb + 1) or (cg + 1, 0) */
                if (hb + 1 < nhb) rescale_block(a, alpha, dexp, cg, hb + 1);
                else if (cg + 1 < NCB / 4) rescale_block(a, alpha, dexp, cg + 1, 0);
            }
            fia_pf_until(pf, ++slot, slots);
        }
        _tile_stored(0, ob, st);
        _tile_stored(1, ob + 16, st);
        _tile_stored(2, ob + 32, st);
        _tile_stored(3, ob + 48, st);
    }
}

/* One step: the V packing, S^T, the softmax with the P packing, then P . V; the next rows are
 * prefetched between the tile operations of S^T and P . V. */
bool fia_amx_mla_step_ext(const fia_amx_mla_args *a, const fia_amx_mla_ext *xo,
                          const fia_amx_mla_next *next) {
    static const fia_amx_mla_ext none;
    const fia_amx_mla_ext *x = xo ? xo : &none;
    if (a->rows_pad > 256) return false; /* rows_pad is at most 128 (fia_mla.c MLA_ROWS) */
    /* no row with a visible key: nothing to do (and nothing is changed) */
    bool vis = false;
    for (int64_t r = 0; r < a->rows && !vis; r++) {
        const int64_t lo = a->ka[r] > 0 ? a->ka[r] : 0, hi = a->ke[r] < a->n ? a->ke[r] : a->n;
        vis = hi > lo;
    }
    fia_pf_cursor pf = pf_next(next);
    if (!vis) {
        fia_pf_until(&pf, 1, 1);
        return false;
    }
    amx_scratch s;
    carve(a->rows_pad, a->scratch, &s);
    kblock kb[T / 16];
    const int64_t nkb = (a->n + 15) / 16, nhb = a->rows_pad / 16;
    for (int64_t i = 0; i < nkb; i++) {
        const void *kp, *rp;
        key_block(a, x, &s, i, &kp, &kb[i].ks, &rp, &kb[i].rs);
        kb[i].kp = kp;
        kb[i].rp = rp;
    }
    for (int64_t u = 0; u < (a->n + 31) / 32 * 16; u++) vpack_unit(a, &s, kb, u);
    /* prefetch slots (a few lines each, so that the line fill buffers never fill up): three
     * per S^T block (key pair x row pair), one per 32 keys of each P . V block */
    const int64_t qk_slots = (nkb + 1) / 2 * ((nhb + 1) / 2) * (NDB / 6);
    const int64_t slots = qk_slots + NCB / 4 * nhb * ((a->n + 31) / 32);
    fia_amx_config();
    amx_qk(a, &s, kb, &pf, 0, slots);
    _Alignas(64) float alpha[256];
    _Alignas(64) int32_t dexp[256];
    if (!amx_softmax(a, x, &s, alpha, dexp)) {
        fia_pf_until(&pf, 1, 1);
        return false;
    }
    amx_pv(a, &s, alpha, x->amla ? dexp : NULL, &pf, qk_slots, slots);
    return true;
}

bool fia_amx_mla_step_next(const fia_amx_mla_args *a, const fia_amx_mla_next *next) {
    return fia_amx_mla_step_ext(a, NULL, next);
}

bool fia_amx_mla_step(const fia_amx_mla_args *a) { return fia_amx_mla_step_ext(a, NULL, NULL); }
