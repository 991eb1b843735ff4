/*
 * rows_avx512.c - decode kernels that read K/V rows in place (AVX-512).
 *
 * qk_rows_avx512: S[r][j] = sum_d Q[r][d] * K_j[d]   (r < m, j < n)
 *   K rows come as an array of row pointers (paged caches need no copy) in float16, bfloat16,
 *   float32 or int8 and are converted in registers (int8: vpmovsxbd + vcvtdq2ps, 16 bytes per
 *   16 elements). Blocks of RB query rows x KB keys with RB*KB = 16 zmm accumulators ((1,16),
 *   (2,8), (4,4), (8,2)), key-major: each key row is read front to back in 16-wide steps (the
 *   tail masked), every step feeding the RB rows (Q from L1), so that the cache sees one
 *   sequential stream the hardware prefetchers follow (a head-dim-major order touches KB rows
 *   in turn and defeats them: 10 GB/s instead of 27 GB/s on one Zen 4 core without software
 *   prefetch). The 16 accumulators are folded into one vector of 16 dot products by a 4-level
 *   shuffle/add tree (45 ops per 16 dot products). 8-row blocks gather 8 such vectors (16 keys)
 *   and store them as 8 row vectors after an 8 x 8 pair transpose (fia_qk_rowblock8).
 * pv_rows_avx512: O[r][c] = (row_scale ? row_scale[r] * O[r][c] : 0) + sum_j P[r][j] * V_j[c]
 *   Blocks of RB rows x NV 16-wide column vectors, RB * NV <= 16 zmm accumulators: 8 rows x 32
 *   columns while 8 rows remain (each V element converted once per 8 rows), then 4 or 3 rows x
 *   64 columns, 1 or 2 rows x 128 columns (a 128-wide value row read whole, converted once);
 *   P broadcast from memory; full blocks without masks. With row_scale NULL, O is never read.
 * qk_heads_avx512 / pv_heads_avx512: the m = 1 forms for nh heads whose slices of a token row
 *   lie hs elements apart, read in token order (every head of key j before key j + 1), so that
 *   one call reads a block of whole token rows of a token-major cache. qk_heads: the (head, key)
 *   pairs in token order, 16 per fold, each a 16-lane FMA chain over the head dim exactly as
 *   fia_qk_sums builds a key's, folded by the same fia_hsum16 (whose lanes all add in one
 *   order): the bits of qk_rows with m = 1. pv_heads: O of the nh heads (L1) as the
 *   accumulators, started as pv_rows starts them (row_scale times O, or 0), then per pair of
 *   keys and per head the two keys' FMAs in key order: each element the FMA chain of pv_rows
 *   with m = 1. Both read a cache line at a time with its prefetch and no test in the loop: the
 *   scalar work of the pair addressing and per-step prefetch tests took the FMA / conversion
 *   ports (one thread, 32 heads x 64 keys in L2: 48.5 GB/s for qk_heads, 50 for qk_rows head by
 *   head; 38 before). Read from memory, token order streams no faster than qk_rows' head-by-head
 *   steps here (one thread: 19-20 against 21-23 GB/s); the operator gains from the items of
 *   16 heads they allow (fia_plan.c).
 * All prefetch the next tile's rows (pf) spread over their own loop.
 * Preconditions: Q, P, O fp32 with unit inner stride; row pointers valid for d (dv) elements.
 * Nothing is read or written beyond the sizes given (masked loads and stores at the tails).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/prefetch.h"
#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))

FIA_AI __mmask16 fia_mask16(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* 16 elements (all in bounds) of a row in dtype dt, as fp32. */
FIA_AI __m512 fia_load16_full(const void *row, int64_t i, fia_dtype dt) {
    if (dt == FIA_DTYPE_FLOAT16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
    if (dt == FIA_DTYPE_BFLOAT16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i))),
            16));
    if (dt == FIA_DTYPE_INT8)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)((const int8_t *)row + i))));
    return _mm512_loadu_ps((const float *)row + i);
}

/* 16 elements (masked) of a row in dtype dt, as fp32. Full chunks take plain loads (masked
 * loads cost more on some cores, e.g. Zen 4). */
FIA_AI __m512 fia_load16(const void *row, int64_t i, fia_dtype dt, __mmask16 mk) {
    if (mk == (__mmask16)0xffff) return fia_load16_full(row, i, dt);
    if (dt == FIA_DTYPE_FLOAT16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)row + i));
    if (dt == FIA_DTYPE_BFLOAT16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)row + i)), 16));
    if (dt == FIA_DTYPE_INT8)
        return _mm512_cvtepi32_ps(
            _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mk, (const int8_t *)row + i)));
    return _mm512_maskz_loadu_ps(mk, (const float *)row + i);
}

/* BODY(DT) with the row dtype dt as a compile-time constant: each kernel entry compiles one
 * copy of its loops per dtype, the conversions inlined (fp32 for any other dtype). */
#define FIA_BY_DTYPE(dt, BODY)                                                                    \
    switch (dt) {                                                                                 \
    case FIA_DTYPE_FLOAT16: BODY(FIA_DTYPE_FLOAT16); break;                                       \
    case FIA_DTYPE_BFLOAT16: BODY(FIA_DTYPE_BFLOAT16); break;                                     \
    case FIA_DTYPE_INT8: BODY(FIA_DTYPE_INT8); break;                                             \
    default: BODY(FIA_DTYPE_FLOAT32); break;                                                      \
    }

/* Part `part` of `parts` (about equal) of the lines of the npf rows of pf (fia_pf_cursor, in
 * address order), and in *per_key the lines per key that spread it over n keys. The pv_rows
 * passes of 32 or 64 columns used to prefetch their own columns' line of every row, a stride of
 * one line in four (D 128 fp16), which left that to software alone (SmallQ q8 kv16k, two
 * threads, 13.8 -> 12.2 ms). */
FIA_AI fia_pf_cursor fia_pf_part(const void *const *pf, int64_t npf, int64_t row_bytes,
                                 int64_t part, int64_t parts, int64_t n, int64_t *per_key) {
    fia_pf_cursor c = fia_pf_init(pf, row_bytes, NULL, 0, npf);
    const int64_t per = (c.total + parts - 1) / parts;
    fia_pf_range(&c, part * per, per);
    *per_key = n > 0 ? (c.left + n - 1) / n : c.left;
    return c;
}

FIA_AI int64_t fia_dt_size(fia_dtype dt) {
    return dt == FIA_DTYPE_FLOAT32 ? 4 : dt == FIA_DTYPE_INT8 ? 1 : 2;
}

/* Lane i of the result = horizontal sum of a_i. */
FIA_AI __m512 fia_hadd_pair(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
}
FIA_AI __m512 fia_hadd_quad(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x44), _mm512_shuffle_ps(x, y, 0xEE));
}
FIA_AI __m512 fia_hadd_lane(__m512 x, __m512 y) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
}
FIA_AI __m512 fia_hsum16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5,
                         __m512 a6, __m512 a7, __m512 a8, __m512 a9, __m512 a10, __m512 a11,
                         __m512 a12, __m512 a13, __m512 a14, __m512 a15) {
    const __m512 s0 = fia_hadd_quad(fia_hadd_pair(a0, a1), fia_hadd_pair(a2, a3));
    const __m512 s1 = fia_hadd_quad(fia_hadd_pair(a4, a5), fia_hadd_pair(a6, a7));
    const __m512 s2 = fia_hadd_quad(fia_hadd_pair(a8, a9), fia_hadd_pair(a10, a11));
    const __m512 s3 = fia_hadd_quad(fia_hadd_pair(a12, a13), fia_hadd_pair(a14, a15));
    return fia_hadd_lane(fia_hadd_lane(s0, s1), fia_hadd_lane(s2, s3));
}

/* RB rows x KB keys (RB * KB == 16, compile-time constants), key-major (see the top of the
 * file): a loop over groups of U keys, their U x RB dot products in named accumulators,
 * whose 16-lane partial sums are parked in L1 and folded for all 16 (row, key) pairs at once. kptr
 * has KB valid pointers (the caller repeats the last one for a partial block); only kb
 * columns are stored. Row kk of the next tile (pf) is prefetched as key kk is read. (A fully
 * unrolled key loop is no faster and takes clang minutes to compile under the sanitizers.) */
/* Keeps a loaded Q vector in a register: without it gcc folds the load into each of the row's
 * U FMAs as a memory operand, U loads instead of one (8 rows x 2 keys: 18 vector loads per 16
 * FMAs, more than the 2 a cycle the load ports take while the FMA ports retire 2). SmallQ q8
 * kv2048 in L2, one thread: 5% faster; outputs unchanged. */
#define FIA_IN_REG(x) __asm__("" : "+v"(x))
#define FIA_QK_ROW(rr, qoff, mk)                                                                  \
    if (RB > rr) {                                                                                \
        __m512 qq = _mm512_maskz_loadu_ps(mk, q + rr * ldq + qoff);                               \
        FIA_IN_REG(qq);                                                                           \
        a##rr = _mm512_fmadd_ps(qq, k0, a##rr);                                                   \
        b##rr = _mm512_fmadd_ps(qq, k1, b##rr);                                                   \
        if (U > 2) {                                                                              \
            e##rr = _mm512_fmadd_ps(qq, k2, e##rr);                                               \
            f##rr = _mm512_fmadd_ps(qq, k3, f##rr);                                               \
        }                                                                                         \
    }
#define FIA_QK_ROWS(qoff, mk)                                                                     \
    FIA_QK_ROW(0, qoff, mk) FIA_QK_ROW(1, qoff, mk) FIA_QK_ROW(2, qoff, mk)                       \
    FIA_QK_ROW(3, qoff, mk) FIA_QK_ROW(4, qoff, mk) FIA_QK_ROW(5, qoff, mk)                       \
    FIA_QK_ROW(6, qoff, mk) FIA_QK_ROW(7, qoff, mk)
#define FIA_QK_PARK(rr)                                                                           \
    if (RB > rr) {                                                                                \
        _mm512_store_ps(part[rr * KB + kk], a##rr);                                               \
        _mm512_store_ps(part[rr * KB + kk + 1], b##rr);                                           \
        if (U > 2) {                                                                              \
            _mm512_store_ps(part[rr * KB + kk + 2], e##rr);                                       \
            _mm512_store_ps(part[rr * KB + kk + 3], f##rr);                                       \
        }                                                                                         \
    }
FIA_AI __m512 fia_qk_sums(const int RB, const int KB, int64_t d, const float *q, int64_t ldq,
                          const void *const *kptr, fia_dtype dt, const void *const *pf,
                          int64_t npf) {
    const int64_t es = fia_dt_size(dt);
    const __mmask16 tail = fia_mask16(d & 15), full = (__mmask16)0xffff;
    float part[16][16] __attribute__((aligned(64)));
    /* U keys per iteration (U divides KB): U independent FMA chains per row, U * RB <= 16
     * accumulators. One row takes 2 keys: 4 rows read in turn streamed 10% slower from
     * memory, while the extra chains gain nothing there (the conversions bind). */
    const int U = RB == 1 || RB == 8 ? 2 : 4;
    for (int kk = 0; kk < KB; kk += U) {
        const void *r0 = kptr[kk], *r1 = kptr[kk + 1], *r2 = kptr[kk + (U > 2 ? 2 : 0)],
                   *r3 = kptr[kk + (U > 2 ? 3 : 0)];
        /* Rows kk .. kk+U-1 of the next tile, one cache line each per 64 bytes of the head-dim
         * loop below (spread over the loop rather than issued in one burst). */
        const int npk = kk + U <= npf ? U : kk < npf ? (int)(npf - kk) : 0;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0,
               e0 = a0, e1 = a0, e2 = a0, e3 = a0, e4 = a0, e5 = a0, e6 = a0, e7 = a0, f0 = a0,
               f1 = a0, f2 = a0, f3 = a0, f4 = a0, f5 = a0, f6 = a0, f7 = a0;
        int64_t c = 0;
        for (; c + 16 <= d; c += 16) {
            if (npk && ((c * es) & 63) == 0)
                for (int u = 0; u < npk; u++)
                    _mm_prefetch((const char *)pf[kk + u] + c * es, _MM_HINT_T1);
            const __m512 k0 = fia_load16_full(r0, c, dt), k1 = fia_load16_full(r1, c, dt);
            const __m512 k2 = U > 2 ? fia_load16_full(r2, c, dt) : k0;
            const __m512 k3 = U > 2 ? fia_load16_full(r3, c, dt) : k1;
            FIA_QK_ROWS(c, full)
        }
        if (c < d) {
            if (npk && ((c * es) & 63) == 0)
                for (int u = 0; u < npk; u++)
                    _mm_prefetch((const char *)pf[kk + u] + c * es, _MM_HINT_T1);
            const __m512 k0 = fia_load16(r0, c, dt, tail), k1 = fia_load16(r1, c, dt, tail);
            const __m512 k2 = U > 2 ? fia_load16(r2, c, dt, tail) : k0;
            const __m512 k3 = U > 2 ? fia_load16(r3, c, dt, tail) : k1;
            FIA_QK_ROWS(c, tail)
        }
        FIA_QK_PARK(0) FIA_QK_PARK(1) FIA_QK_PARK(2) FIA_QK_PARK(3)
        FIA_QK_PARK(4) FIA_QK_PARK(5) FIA_QK_PARK(6) FIA_QK_PARK(7)
    }
#define FIA_QK_P(i) _mm512_load_ps(part[i])
    const __m512 sum = fia_hsum16(FIA_QK_P(0), FIA_QK_P(1), FIA_QK_P(2), FIA_QK_P(3), FIA_QK_P(4),
                                  FIA_QK_P(5), FIA_QK_P(6), FIA_QK_P(7), FIA_QK_P(8), FIA_QK_P(9),
                                  FIA_QK_P(10), FIA_QK_P(11), FIA_QK_P(12), FIA_QK_P(13),
                                  FIA_QK_P(14), FIA_QK_P(15));
#undef FIA_QK_P
    return sum;
}

/* One block of RB rows x KB keys: the 16 dot products folded (lane rr * KB + key), each row's
 * kb values stored into S. */
FIA_AI void fia_qk_block(const int RB, const int KB, int64_t kb, int64_t d, const float *q,
                         int64_t ldq, const void *const *kptr, fia_dtype dt, float *s,
                         int64_t lds, const void *const *pf, int64_t npf) {
    const __m512 sum = fia_qk_sums(RB, KB, d, q, ldq, kptr, dt, pf, npf);
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (int rr = 0; rr < RB; rr++) {
        const __m512 v =
            rr ? _mm512_permutexvar_ps(_mm512_add_epi32(iota, _mm512_set1_epi32(rr * KB)), sum)
               : sum;
        _mm512_mask_storeu_ps(s + rr * lds, fia_mask16(kb < KB ? kb : KB), v);
    }
}
#undef FIA_QK_PARK
#undef FIA_QK_ROWS
#undef FIA_QK_ROW
#undef FIA_IN_REG

/* All keys for RB rows in blocks of KB; prefetches the rows of pf as it goes. */
FIA_AI void fia_qk_rowblock(const int RB, const int KB, int64_t n, int64_t d, const float *q,
                            int64_t ldq, const void *const *krows, fia_dtype dt, float *s,
                            int64_t lds, const void *const *pf, int64_t npf) {
    int64_t j0 = 0;
    for (; j0 + KB <= n; j0 += KB) {
        const int64_t np = npf - j0 < 0 ? 0 : npf - j0 > KB ? KB : npf - j0;
        fia_qk_block(RB, KB, KB, d, q, ldq, krows + j0, dt, s + j0, lds, np ? pf + j0 : NULL, np);
    }
    if (j0 < n) {
        const void *kp[16];
        for (int kk = 0; kk < KB; kk++) kp[kk] = krows[j0 + kk < n ? j0 + kk : n - 1];
        fia_qk_block(RB, KB, n - j0, d, q, ldq, kp, dt, s + j0, lds, npf > j0 ? pf + j0 : NULL,
                     npf > j0 ? npf - j0 : 0);
        j0 += KB; /* the partial block prefetched KB rows of pf */
    }
    if (npf > j0) fia_prefetch_rows(pf, j0, npf, d * fia_dt_size(dt));
}

/* 8 rows x 2 keys per block (as fia_qk_rowblock(8, 2)), the blocks' folded sums (lane
 * 2 rr + key) gathered 8 at a time and transposed as 8 x 8 pairs into 16-key row vectors of S:
 * one store per row and 16 keys (24 shuffles) instead of 8 permutes and 8 two-lane masked stores
 * per 2 keys (whose pieces the softmax then reloaded as whole vectors). The same sums, the same
 * bits; the same prefetches. */
FIA_AI void fia_qk_rowblock8(int64_t n, int64_t d, const float *q, int64_t ldq,
                             const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                             const void *const *pf, int64_t npf) {
    float vb[8][16] __attribute__((aligned(64)));
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int64_t nb = n - j0 >= 16 ? 8 : (n - j0 + 1) / 2;
        for (int64_t b = 0; b < nb; b++) {
            const int64_t j = j0 + 2 * b;
            const void *kp[2] = {krows[j], krows[j + 1 < n ? j + 1 : n - 1]};
            const int64_t np = npf - j < 0 ? 0 : npf - j > 2 ? 2 : npf - j;
            _mm512_store_ps(vb[b], fia_qk_sums(8, 2, d, q, ldq, kp, dt, np ? pf + j : NULL, np));
        }
        for (int64_t b = nb; b < 8; b++) _mm512_store_ps(vb[b], _mm512_setzero_ps());
#define FIA_V(b) _mm512_load_pd((const double *)vb[b])
        const __m512d t0 = _mm512_unpacklo_pd(FIA_V(0), FIA_V(1)),
                      t1 = _mm512_unpackhi_pd(FIA_V(0), FIA_V(1)),
                      t2 = _mm512_unpacklo_pd(FIA_V(2), FIA_V(3)),
                      t3 = _mm512_unpackhi_pd(FIA_V(2), FIA_V(3)),
                      t4 = _mm512_unpacklo_pd(FIA_V(4), FIA_V(5)),
                      t5 = _mm512_unpackhi_pd(FIA_V(4), FIA_V(5)),
                      t6 = _mm512_unpacklo_pd(FIA_V(6), FIA_V(7)),
                      t7 = _mm512_unpackhi_pd(FIA_V(6), FIA_V(7));
#undef FIA_V
        /* u0: pairs 0 and 4 of blocks 0-3, u2: pairs 2 and 6, u1: 1 and 5, u3: 3 and 7; u4..u7
         * the same of blocks 4-7 */
        const __m512d u0 = _mm512_shuffle_f64x2(t0, t2, 0x88), u2 = _mm512_shuffle_f64x2(t0, t2, 0xDD),
                      u1 = _mm512_shuffle_f64x2(t1, t3, 0x88), u3 = _mm512_shuffle_f64x2(t1, t3, 0xDD),
                      u4 = _mm512_shuffle_f64x2(t4, t6, 0x88), u6 = _mm512_shuffle_f64x2(t4, t6, 0xDD),
                      u5 = _mm512_shuffle_f64x2(t5, t7, 0x88), u7 = _mm512_shuffle_f64x2(t5, t7, 0xDD);
        const __mmask16 mk = fia_mask16(n - j0);
#define FIA_ROW(r, x) _mm512_mask_storeu_ps(s + (r) * lds + j0, mk, _mm512_castpd_ps(x))
        FIA_ROW(0, _mm512_shuffle_f64x2(u0, u4, 0x88));
        FIA_ROW(4, _mm512_shuffle_f64x2(u0, u4, 0xDD));
        FIA_ROW(1, _mm512_shuffle_f64x2(u1, u5, 0x88));
        FIA_ROW(5, _mm512_shuffle_f64x2(u1, u5, 0xDD));
        FIA_ROW(2, _mm512_shuffle_f64x2(u2, u6, 0x88));
        FIA_ROW(6, _mm512_shuffle_f64x2(u2, u6, 0xDD));
        FIA_ROW(3, _mm512_shuffle_f64x2(u3, u7, 0x88));
        FIA_ROW(7, _mm512_shuffle_f64x2(u3, u7, 0xDD));
#undef FIA_ROW
    }
    const int64_t done = (n + 1) / 2 * 2; /* rows of pf the blocks prefetched */
    if (npf > done) fia_prefetch_rows(pf, done, npf, d * fia_dt_size(dt));
}

/* Row blocks of 8, 4, 2, 1; the first block issues the prefetches of the next tile. */
FIA_AI void fia_qk_rows_dt(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                           const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                           const void *const *pf, int64_t npf) {
    int64_t r0 = 0;
#define FIA_QK_ARGS n, d, q + r0 * ldq, ldq, krows, dt, s + r0 * lds, lds, pf, r0 ? 0 : npf
    for (; r0 + 8 <= m; r0 += 8) fia_qk_rowblock8(FIA_QK_ARGS);
    for (; r0 + 4 <= m; r0 += 4) fia_qk_rowblock(4, 4, FIA_QK_ARGS);
    for (; r0 + 2 <= m; r0 += 2) fia_qk_rowblock(2, 8, FIA_QK_ARGS);
    for (; r0 < m; r0++) fia_qk_rowblock(1, 16, FIA_QK_ARGS);
#undef FIA_QK_ARGS
}

void fia_qk_rows__avx512_kmajor_16acc(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                        const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                        const void *const *pf, int64_t npf) {
#define FIA_CALL(DT) fia_qk_rows_dt(m, n, d, q, ldq, krows, DT, s, lds, pf, npf)
    FIA_BY_DTYPE(dt, FIA_CALL)
#undef FIA_CALL
}

/* PV accumulators: a<r><v> is row r (< RB), column vector v (< NV) of the block. */
#define FIA_PV_INIT1(r, v)                                                                        \
    if (NV > v)                                                                                   \
        a##r##v = _mm512_mul_ps(sc, FULL ? _mm512_loadu_ps(orow + 16 * v)                         \
                                         : _mm512_maskz_loadu_ps(m##v, orow + 16 * v));
#define FIA_PV_INIT_HI(r)                                                                         \
    if (RB > r && row_scale) {                                                                    \
        const __m512 sc = _mm512_set1_ps(row_scale[r]);                                           \
        const float *orow = o + r * ldo + c0;                                                     \
        FIA_PV_INIT1(r, 0) FIA_PV_INIT1(r, 1)                                                     \
    }
#define FIA_PV_INIT(r)                                                                            \
    if (RB > r && row_scale) {                                                                    \
        const __m512 sc = _mm512_set1_ps(row_scale[r]);                                           \
        const float *orow = o + r * ldo + c0;                                                     \
        FIA_PV_INIT1(r, 0) FIA_PV_INIT1(r, 1) FIA_PV_INIT1(r, 2) FIA_PV_INIT1(r, 3)               \
        FIA_PV_INIT1(r, 4) FIA_PV_INIT1(r, 5) FIA_PV_INIT1(r, 6) FIA_PV_INIT1(r, 7)               \
    }
#define FIA_PV_LOAD(k)                                                                            \
    const __m512 v##k = NV > k ? (FULL ? fia_load16_full(row, c0 + 16 * k, dt)                    \
                                       : fia_load16(row, c0 + 16 * k, dt, m##k))                  \
                               : zero;
#define FIA_PV_FMA1(r, k)                                                                         \
    if (NV > k) a##r##k = _mm512_fmadd_ps(pj, v##k, a##r##k);
#define FIA_PV_FMA_HI(r)                                                                          \
    if (RB > r) {                                                                                 \
        const __m512 pj = _mm512_set1_ps(p[r * ldp + j]);                                         \
        FIA_PV_FMA1(r, 0) FIA_PV_FMA1(r, 1)                                                       \
    }
#define FIA_PV_FMA(r)                                                                             \
    if (RB > r) {                                                                                 \
        const __m512 pj = _mm512_set1_ps(p[r * ldp + j]);                                         \
        FIA_PV_FMA1(r, 0) FIA_PV_FMA1(r, 1) FIA_PV_FMA1(r, 2) FIA_PV_FMA1(r, 3)                   \
        FIA_PV_FMA1(r, 4) FIA_PV_FMA1(r, 5) FIA_PV_FMA1(r, 6) FIA_PV_FMA1(r, 7)                   \
    }
#define FIA_PV_STORE1(r, v)                                                                       \
    if (NV > v) {                                                                                 \
        if (FULL) _mm512_storeu_ps(orow + 16 * v, a##r##v);                                       \
        else _mm512_mask_storeu_ps(orow + 16 * v, m##v, a##r##v);                                 \
    }
#define FIA_PV_STORE_HI(r)                                                                        \
    if (RB > r) {                                                                                 \
        float *orow = o + r * ldo + c0;                                                           \
        FIA_PV_STORE1(r, 0) FIA_PV_STORE1(r, 1)                                                   \
    }
#define FIA_PV_STORE(r)                                                                           \
    if (RB > r) {                                                                                 \
        float *orow = o + r * ldo + c0;                                                           \
        FIA_PV_STORE1(r, 0) FIA_PV_STORE1(r, 1) FIA_PV_STORE1(r, 2) FIA_PV_STORE1(r, 3)           \
        FIA_PV_STORE1(r, 4) FIA_PV_STORE1(r, 5) FIA_PV_STORE1(r, 6) FIA_PV_STORE1(r, 7)           \
    }
#define FIA_PV_MASK(v)                                                                            \
    const __mmask16 m##v = c0 + 16 * v < dv ? fia_mask16(dv - c0 - 16 * v) : 0;

/* RB rows x NV * 16 columns [c0, c0 + 16 NV) of O (RB * NV <= 16, RB <= 4, NV <= 8,
 * compile-time constants; named accumulators so that they stay in registers). FULL: all
 * NV * 16 columns are inside dv (plain loads and stores, no mask tests in the loop). */
FIA_AI void fia_pv_block(const int RB, const int NV, const int FULL, int64_t n, int64_t c0,
                         int64_t dv, const float *p, int64_t ldp, const void *const *vrows,
                         fia_dtype dt, float *o, int64_t ldo, const float *row_scale,
                         const void *const *pf, int64_t npf) {
    FIA_PV_MASK(0) FIA_PV_MASK(1) FIA_PV_MASK(2) FIA_PV_MASK(3)
    FIA_PV_MASK(4) FIA_PV_MASK(5) FIA_PV_MASK(6) FIA_PV_MASK(7)
    const __m512 zero = _mm512_setzero_ps();
    __m512 a00 = zero, a01 = zero, a02 = zero, a03 = zero, a04 = zero, a05 = zero, a06 = zero,
           a07 = zero, a10 = zero, a11 = zero, a12 = zero, a13 = zero, a14 = zero, a15 = zero,
           a16 = zero, a17 = zero, a20 = zero, a21 = zero, a22 = zero, a23 = zero, a24 = zero,
           a25 = zero, a26 = zero, a27 = zero, a30 = zero, a31 = zero, a32 = zero, a33 = zero,
           a34 = zero, a35 = zero, a36 = zero, a37 = zero, a40 = zero, a41 = zero, a50 = zero,
           a51 = zero, a60 = zero, a61 = zero, a70 = zero, a71 = zero;
    FIA_PV_INIT(0) FIA_PV_INIT(1) FIA_PV_INIT(2) FIA_PV_INIT(3)
    FIA_PV_INIT_HI(4) FIA_PV_INIT_HI(5) FIA_PV_INIT_HI(6) FIA_PV_INIT_HI(7)
    /* The next tile's rows, in address order: this column block (pass) prefetches its share
     * of their lines (fia_pf_part), a few per key, and any rest after its loop. */
    const int64_t es = fia_dt_size(dt), passes = (dv + 16 * NV - 1) / (16 * NV);
    int64_t per_key;
    fia_pf_cursor pc = fia_pf_part(pf, npf, dv * es, c0 / (16 * NV), passes, n, &per_key);
    int64_t j = 0;
    for (; j < n && pc.left > 0; j++) {
        fia_pf_lines(&pc, per_key);
        const void *row = vrows[j];
        FIA_PV_LOAD(0) FIA_PV_LOAD(1) FIA_PV_LOAD(2) FIA_PV_LOAD(3)
        FIA_PV_LOAD(4) FIA_PV_LOAD(5) FIA_PV_LOAD(6) FIA_PV_LOAD(7)
        FIA_PV_FMA(0) FIA_PV_FMA(1) FIA_PV_FMA(2) FIA_PV_FMA(3)
        FIA_PV_FMA_HI(4) FIA_PV_FMA_HI(5) FIA_PV_FMA_HI(6) FIA_PV_FMA_HI(7)
    }
    for (; j < n; j++) {
        const void *row = vrows[j];
        FIA_PV_LOAD(0) FIA_PV_LOAD(1) FIA_PV_LOAD(2) FIA_PV_LOAD(3)
        FIA_PV_LOAD(4) FIA_PV_LOAD(5) FIA_PV_LOAD(6) FIA_PV_LOAD(7)
        FIA_PV_FMA(0) FIA_PV_FMA(1) FIA_PV_FMA(2) FIA_PV_FMA(3)
        FIA_PV_FMA_HI(4) FIA_PV_FMA_HI(5) FIA_PV_FMA_HI(6) FIA_PV_FMA_HI(7)
    }
    fia_pf_lines(&pc, pc.left);
    FIA_PV_STORE(0) FIA_PV_STORE(1) FIA_PV_STORE(2) FIA_PV_STORE(3)
    FIA_PV_STORE_HI(4) FIA_PV_STORE_HI(5) FIA_PV_STORE_HI(6) FIA_PV_STORE_HI(7)
}
#undef FIA_PV_INIT1
#undef FIA_PV_INIT
#undef FIA_PV_INIT_HI
#undef FIA_PV_FMA_HI
#undef FIA_PV_STORE_HI
#undef FIA_PV_LOAD
#undef FIA_PV_FMA1
#undef FIA_PV_FMA
#undef FIA_PV_STORE1
#undef FIA_PV_STORE
#undef FIA_PV_MASK

/* All columns for RB rows in blocks of NV vectors; each column block prefetches its share of the
 * next tile's rows (fia_pf_part). */
FIA_AI void fia_pv_rowblock(const int RB, const int NV, int64_t n, int64_t dv, const float *p,
                            int64_t ldp, const void *const *vrows, fia_dtype dt, float *o,
                            int64_t ldo, const float *row_scale, const void *const *pf,
                            int64_t npf) {
    for (int64_t c0 = 0; c0 < dv; c0 += 16 * NV) {
        const int64_t np = npf;
        if (c0 + 16 * NV <= dv)
            fia_pv_block(RB, NV, 1, n, c0, dv, p, ldp, vrows, dt, o, ldo, row_scale, pf, np);
        else
            fia_pv_block(RB, NV, 0, n, c0, dv, p, ldp, vrows, dt, o, ldo, row_scale, pf, np);
    }
}

/* Row blocks of 8 rows x 32 columns, then 4 x 64, the rest as 3 x 64, 2 x 128 or 1 x 128. 8 x 32
 * converts each V element once per 8 rows (4 x 64: twice) for 8 broadcasts per 2 loads: on an Intel
 * Xeon (AVX-512, 2 FMA ports, broadcasts on the load ports) SmallQ q8 in cache ran 4% faster. Each
 * output element is the same FMA chain in j order whatever the block, so results do not depend on
 * the blocking. */
FIA_AI void fia_pv_rows_dt(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                           const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                           const float *row_scale, const void *const *pf, int64_t npf) {
    int64_t r0 = 0;
#define FIA_PV_ARGS                                                                               \
    n, dv, p + r0 * ldp, ldp, vrows, dt, o + r0 * ldo, ldo, row_scale ? row_scale + r0 : NULL,    \
        pf, r0 ? 0 : npf
    for (; r0 + 8 <= m; r0 += 8) fia_pv_rowblock(8, 2, FIA_PV_ARGS);
    for (; r0 + 4 <= m; r0 += 4) fia_pv_rowblock(4, 4, FIA_PV_ARGS);
    if (m - r0 == 3) fia_pv_rowblock(3, 4, FIA_PV_ARGS);
    else if (m - r0 == 2) fia_pv_rowblock(2, 8, FIA_PV_ARGS);
    else if (m - r0 == 1) fia_pv_rowblock(1, 8, FIA_PV_ARGS);
#undef FIA_PV_ARGS
}

void fia_pv_rows__avx512_4x64(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                        const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                        const float *row_scale, const void *const *pf, int64_t npf) {
#define FIA_CALL(DT) fia_pv_rows_dt(m, n, dv, p, ldp, vrows, DT, o, ldo, row_scale, pf, npf)
    FIA_BY_DTYPE(dt, FIA_CALL)
#undef FIA_CALL
}

/* The full 16-wide steps c of [c, len) a cache line (LC steps, a compile-time 1, 2 or 4) at a
 * time: PF(c) once per line (and once for the last partial line), STEP(c) per step, c left at
 * the first step of the tail. */
#define FIA_BY_LINES(len, PF, STEP)                                                               \
    for (; c + 16 * LC <= (len); c += 16 * LC) {                                                  \
        PF(c)                                                                                     \
        STEP(c)                                                                                   \
        if (LC > 1) STEP(c + 16)                                                                  \
        if (LC > 2) {                                                                             \
            STEP(c + 32)                                                                          \
            STEP(c + 48)                                                                          \
        }                                                                                         \
    }                                                                                             \
    if (c < (len)) PF(c)                                                                          \
    for (; c + 16 <= (len); c += 16) STEP(c)

/* Four (head, key) dot products q_i . r_i (d elements each), parked in part[0..3]: every pair
 * one FMA chain from zero over the head dim in 16-wide steps (the tail masked), as fia_qk_sums
 * accumulates a key; four independent chains. Read a cache line (LC steps) at a time, each line
 * of pair i prefetching the same line of f_i (the pair's own slice when there is nothing to
 * prefetch: no test in the loop, whose scalar work would take the vector ports' cycles). */
FIA_AI void fia_qk_quad(int64_t d, const float *q0, const float *q1, const float *q2,
                        const float *q3, const void *r0, const void *r1, const void *r2,
                        const void *r3, const char *f0, const char *f1, const char *f2,
                        const char *f3, fia_dtype dt, float (*part)[16]) {
    const int64_t es = fia_dt_size(dt), LC = 64 / (16 * es) ? 64 / (16 * es) : 1;
    const __mmask16 tail = fia_mask16(d & 15);
    __m512 a = _mm512_setzero_ps(), b = a, e = a, f = a;
#define FIA_QH_PF(c)                                                                              \
    {                                                                                             \
        _mm_prefetch(f0 + (c) * es, _MM_HINT_T1);                                                 \
        _mm_prefetch(f1 + (c) * es, _MM_HINT_T1);                                                 \
        _mm_prefetch(f2 + (c) * es, _MM_HINT_T1);                                                 \
        _mm_prefetch(f3 + (c) * es, _MM_HINT_T1);                                                 \
    }
#define FIA_QH_STEP(c)                                                                            \
    {                                                                                             \
        a = _mm512_fmadd_ps(_mm512_loadu_ps(q0 + (c)), fia_load16_full(r0, (c), dt), a);          \
        b = _mm512_fmadd_ps(_mm512_loadu_ps(q1 + (c)), fia_load16_full(r1, (c), dt), b);          \
        e = _mm512_fmadd_ps(_mm512_loadu_ps(q2 + (c)), fia_load16_full(r2, (c), dt), e);          \
        f = _mm512_fmadd_ps(_mm512_loadu_ps(q3 + (c)), fia_load16_full(r3, (c), dt), f);          \
    }
    int64_t c = 0;
    FIA_BY_LINES(d, FIA_QH_PF, FIA_QH_STEP)
#undef FIA_QH_STEP
#undef FIA_QH_PF
    if (c < d) {
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q0 + c), fia_load16(r0, c, dt, tail), a);
        b = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q1 + c), fia_load16(r1, c, dt, tail), b);
        e = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q2 + c), fia_load16(r2, c, dt, tail), e);
        f = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, q3 + c), fia_load16(r3, c, dt, tail), f);
    }
    _mm512_store_ps(part[0], a);
    _mm512_store_ps(part[1], b);
    _mm512_store_ps(part[2], e);
    _mm512_store_ps(part[3], f);
}

/* The 16 parked chains folded as fia_qk_sums folds its 16 (fia_hsum16: every lane adds in the
 * same order), so lane u is pair u's score with the bits of qk_rows. */
FIA_AI __m512 fia_qk_fold16(float (*part)[16]) {
#define FIA_QK_P(i) _mm512_load_ps(part[i])
    return fia_hsum16(FIA_QK_P(0), FIA_QK_P(1), FIA_QK_P(2), FIA_QK_P(3), FIA_QK_P(4), FIA_QK_P(5),
                      FIA_QK_P(6), FIA_QK_P(7), FIA_QK_P(8), FIA_QK_P(9), FIA_QK_P(10),
                      FIA_QK_P(11), FIA_QK_P(12), FIA_QK_P(13), FIA_QK_P(14), FIA_QK_P(15));
#undef FIA_QK_P
}

/* The (head, key) pairs in token order (key-major, heads inner), 16 per fold. With nh a
 * multiple of 16 a fold is 16 heads of one key, addressed by strides; otherwise the pairs run
 * on through the keys, addressed by a list, and a partial last fold repeats its last pair in
 * the unused lanes (computed, not stored). */
FIA_AI void fia_qk_heads_dt(int64_t nh, int64_t n, int64_t d, const float *q, int64_t ldq,
                            const void *const *krows, int64_t hs, fia_dtype dt, float *s,
                            int64_t lds, const void *const *pf, int64_t npf) {
    const int64_t es = fia_dt_size(dt), hb = hs * es;
    float part[16][16] __attribute__((aligned(64)));
    float sum[16] __attribute__((aligned(64)));
    if (nh % 16 == 0) {
        for (int64_t j = 0; j < n; j++) {
            const char *row = (const char *)krows[j];
            const char *prow = j < npf ? (const char *)pf[j] : row;
            for (int64_t h0 = 0; h0 < nh; h0 += 16) {
                for (int u = 0; u < 16; u += 4) {
                    const int64_t h = h0 + u;
                    const float *qh = q + h * ldq;
                    const char *kh = row + h * hb, *ph = prow + h * hb;
                    fia_qk_quad(d, qh, qh + ldq, qh + 2 * ldq, qh + 3 * ldq, kh, kh + hb,
                                kh + 2 * hb, kh + 3 * hb, ph, ph + hb, ph + 2 * hb, ph + 3 * hb,
                                dt, part + u);
                }
                _mm512_store_ps(sum, fia_qk_fold16(part));
                for (int u = 0; u < 16; u++) s[(h0 + u) * lds + j] = sum[u];
            }
        }
    } else {
        const float *qp[16];
        const char *kp[16], *pfp[16];
        int64_t sj[16], sh[16];
        for (int64_t j = 0, h = 0; nh > 0 && j < n;) {
            int cnt = 0;
            for (; cnt < 16 && j < n; cnt++) {
                qp[cnt] = q + h * ldq;
                kp[cnt] = (const char *)krows[j] + h * hb;
                pfp[cnt] = j < npf ? (const char *)pf[j] + h * hb : kp[cnt];
                sj[cnt] = j;
                sh[cnt] = h;
                if (++h == nh) h = 0, j++;
            }
            for (int u = cnt; u < 16; u++) {
                qp[u] = qp[cnt - 1];
                kp[u] = kp[cnt - 1];
                pfp[u] = pfp[cnt - 1];
            }
            for (int u = 0; u < 16; u += 4)
                fia_qk_quad(d, qp[u], qp[u + 1], qp[u + 2], qp[u + 3], kp[u], kp[u + 1],
                            kp[u + 2], kp[u + 3], pfp[u], pfp[u + 1], pfp[u + 2], pfp[u + 3], dt,
                            part + u);
            _mm512_store_ps(sum, fia_qk_fold16(part));
            for (int u = 0; u < cnt; u++) s[sh[u] * lds + sj[u]] = sum[u];
        }
    }
    if (nh > 0 && npf > n) fia_prefetch_rows(pf, n, npf, ((nh - 1) * hs + d) * es);
}

void fia_qk_heads__avx512_tok_4acc(int64_t nh, int64_t n, int64_t d, const float *q, int64_t ldq,
                                   const void *const *krows, int64_t hs, fia_dtype dt, float *s,
                                   int64_t lds, const void *const *pf, int64_t npf) {
#define FIA_CALL(DT) fia_qk_heads_dt(nh, n, d, q, ldq, krows, hs, DT, s, lds, pf, npf)
    FIA_BY_DTYPE(dt, FIA_CALL)
#undef FIA_CALL
}

/* O[h][c0 .. dv) += P[h][j] V_j + P[h][j + 1] V_{j+1} (JB = 2; JB = 1: key j alone), 16 columns
 * at a time: loaded, one FMA per key in key order, stored (each element the FMA chain of
 * fia_pv_block, parked in O between key blocks). Read a cache line (LC steps) at a time, each
 * line prefetching the same line of f0 / f1 (the slice itself when there is nothing to fetch). */
FIA_AI void fia_pv_head_keys(const int JB, int64_t dv, const float *pj, const void *v0,
                             const void *v1, const char *f0, const char *f1, fia_dtype dt,
                             float *oh) {
    const int64_t es = fia_dt_size(dt), LC = 64 / (16 * es) ? 64 / (16 * es) : 1;
    const __m512 p0 = _mm512_set1_ps(pj[0]), p1 = JB > 1 ? _mm512_set1_ps(pj[1]) : p0;
#define FIA_PH_PF(c)                                                                              \
    {                                                                                             \
        _mm_prefetch(f0 + (c) * es, _MM_HINT_T1);                                                 \
        if (JB > 1) _mm_prefetch(f1 + (c) * es, _MM_HINT_T1);                                     \
    }
#define FIA_PH_STEP(c)                                                                            \
    {                                                                                             \
        __m512 acc = _mm512_fmadd_ps(p0, fia_load16_full(v0, (c), dt), _mm512_loadu_ps(oh + (c))); \
        if (JB > 1) acc = _mm512_fmadd_ps(p1, fia_load16_full(v1, (c), dt), acc);                \
        _mm512_storeu_ps(oh + (c), acc);                                                          \
    }
    int64_t c = 0;
    FIA_BY_LINES(dv, FIA_PH_PF, FIA_PH_STEP)
#undef FIA_PH_STEP
#undef FIA_PH_PF
    if (c < dv) {
        const __mmask16 tail = fia_mask16(dv - c);
        __m512 acc = _mm512_fmadd_ps(p0, fia_load16(v0, c, dt, tail), _mm512_maskz_loadu_ps(tail, oh + c));
        if (JB > 1) acc = _mm512_fmadd_ps(p1, fia_load16(v1, c, dt, tail), acc);
        _mm512_mask_storeu_ps(oh + c, tail, acc);
    }
}

/* O[h] as the accumulators (nh x dv floats, in L1 for decode heads): started as fia_pv_block
 * starts its registers (row_scale[h] times O, or 0), then per pair of keys, per head, both keys'
 * FMAs in key order (two token rows read side by side, every head of both before the next
 * pair). */
FIA_AI void fia_pv_heads_dt(int64_t nh, int64_t n, int64_t dv, const float *p, int64_t ldp,
                            const void *const *vrows, int64_t hs, fia_dtype dt, float *o,
                            int64_t ldo, const float *row_scale, const void *const *pf,
                            int64_t npf) {
    const int64_t es = fia_dt_size(dt), hb = hs * es;
    for (int64_t h = 0; h < nh; h++) {
        float *oh = o + h * ldo;
        const __m512 sc = _mm512_set1_ps(row_scale ? row_scale[h] : 0.0f);
        for (int64_t c = 0; c < dv; c += 16) {
            const __mmask16 mk = fia_mask16(dv - c);
            const __m512 x = row_scale ? _mm512_mul_ps(sc, _mm512_maskz_loadu_ps(mk, oh + c))
                                       : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(oh + c, mk, x);
        }
    }
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        const char *r0 = (const char *)vrows[j], *r1 = (const char *)vrows[j + 1];
        const char *g0 = j < npf ? (const char *)pf[j] : r0;
        const char *g1 = j + 1 < npf ? (const char *)pf[j + 1] : r1;
        for (int64_t h = 0; h < nh; h++)
            fia_pv_head_keys(2, dv, p + h * ldp + j, r0 + h * hb, r1 + h * hb, g0 + h * hb,
                             g1 + h * hb, dt, o + h * ldo);
    }
    if (j < n) {
        const char *r0 = (const char *)vrows[j], *g0 = j < npf ? (const char *)pf[j] : r0;
        for (int64_t h = 0; h < nh; h++)
            fia_pv_head_keys(1, dv, p + h * ldp + j, r0 + h * hb, r0, g0 + h * hb, g0, dt,
                             o + h * ldo);
    }
    if (nh > 0 && npf > n) fia_prefetch_rows(pf, n, npf, ((nh - 1) * hs + dv) * es);
}

void fia_pv_heads__avx512_tok(int64_t nh, int64_t n, int64_t dv, const float *p, int64_t ldp,
                              const void *const *vrows, int64_t hs, fia_dtype dt, float *o,
                              int64_t ldo, const float *row_scale, const void *const *pf,
                              int64_t npf) {
#define FIA_CALL(DT) fia_pv_heads_dt(nh, n, dv, p, ldp, vrows, hs, DT, o, ldo, row_scale, pf, npf)
    FIA_BY_DTYPE(dt, FIA_CALL)
#undef FIA_CALL
}
#undef FIA_BY_LINES
#undef FIA_BY_DTYPE
