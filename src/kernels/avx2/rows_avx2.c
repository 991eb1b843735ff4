/*
 * rows_avx2.c - decode kernels that read K/V rows in place (AVX2 + FMA + F16C).
 *
 * Same contract as rows_avx512.c (see kernels.h); int8 rows widen in registers (vpmovsxbd +
 * vcvtdq2ps, 8 bytes per 8 elements). qk_rows: blocks of RB rows x KB keys with
 * RB*KB = 8 ymm accumulators ((1,8), (2,4), (4,2)), head dim in 8-wide steps with a scalar-safe
 * tail (a zero-padded copy of the last partial chunk), folded by a 3-level shuffle/add tree.
 * pv_rows: blocks of up to 4 rows x 16 columns (8 ymm accumulators); column tails go through a
 * scratch vector so nothing outside the sizes is read or written.
 */
#include <immintrin.h>
#include <string.h>

#include "core/convert.h"
#include "kernels/prefetch.h"
#include "kernels/registry.h"

#define FIA_AI static inline __attribute__((always_inline))

/* 8 elements of a row (all in bounds) as fp32. */
FIA_AI __m256 fia_load8(const void *row, int64_t i, fia_dtype dt) {
    if (dt == FIA_DTYPE_FLOAT16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    if (dt == FIA_DTYPE_BFLOAT16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i))), 16));
    if (dt == FIA_DTYPE_INT8) {
        int64_t x8;
        memcpy(&x8, (const int8_t *)row + i, 8);
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(x8)));
    }
    return _mm256_loadu_ps((const float *)row + i);
}

FIA_AI int64_t fia_dt_bytes(fia_dtype dt) {
    return dt == FIA_DTYPE_FLOAT32 ? 4 : dt == FIA_DTYPE_INT8 ? 1 : 2;
}

/* The last n < 8 elements from i, zero padded, as fp32 (reads only the n elements). */
FIA_AI __m256 fia_load8_tail(const void *row, int64_t i, int64_t n, fia_dtype dt) {
    float buf[8] = {0};
    for (int64_t k = 0; k < n; k++) {
        if (dt == FIA_DTYPE_FLOAT16) buf[k] = fia_cvt_f16_to_f32(((const uint16_t *)row)[i + k]);
        else if (dt == FIA_DTYPE_BFLOAT16) buf[k] = fia_cvt_bf16_to_f32(((const uint16_t *)row)[i + k]);
        else if (dt == FIA_DTYPE_INT8) buf[k] = (float)((const int8_t *)row)[i + k];
        else buf[k] = ((const float *)row)[i + k];
    }
    return _mm256_loadu_ps(buf);
}

FIA_AI __m256 fia_loadq8(const float *q, int64_t i, int64_t n) {
    if (n >= 8) return _mm256_loadu_ps(q + i);
    float buf[8] = {0};
    memcpy(buf, q + i, (size_t)n * sizeof(float));
    return _mm256_loadu_ps(buf);
}

/* Lane i = horizontal sum of a[i]. */
FIA_AI __m256 fia_hsum8(const __m256 *a) {
    __m256 r[4], s[2];
    for (int i = 0; i < 4; i++) r[i] = _mm256_hadd_ps(a[2 * i], a[2 * i + 1]);
    for (int i = 0; i < 2; i++) s[i] = _mm256_hadd_ps(r[2 * i], r[2 * i + 1]);
    /* s[k] lane (half h, e) holds vector 4k + e's half-h partial */
    const __m256 lo = _mm256_permute2f128_ps(s[0], s[1], 0x20);
    const __m256 hi = _mm256_permute2f128_ps(s[0], s[1], 0x31);
    return _mm256_add_ps(lo, hi);
}

FIA_AI void fia_qk_block8(int RB, int KB, int64_t rb, int64_t kb, int64_t d, const float *q,
                          int64_t ldq, const void *const *krows, fia_dtype dt, float *s,
                          int64_t lds) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < d; c += 8) {
        const int64_t w = d - c;
        __m256 qv[4];
        for (int rr = 0; rr < RB; rr++)
            qv[rr] = rr < rb ? fia_loadq8(q + rr * ldq, c, w) : _mm256_setzero_ps();
        for (int kk = 0; kk < KB; kk++) {
            if (kk >= kb) break;
            const __m256 kv = w >= 8 ? fia_load8(krows[kk], c, dt) : fia_load8_tail(krows[kk], c, w, dt);
            for (int rr = 0; rr < RB; rr++)
                acc[rr * KB + kk] = _mm256_fmadd_ps(qv[rr], kv, acc[rr * KB + kk]);
        }
    }
    float out[8];
    _mm256_storeu_ps(out, fia_hsum8(acc));
    for (int64_t rr = 0; rr < rb; rr++)
        for (int64_t kk = 0; kk < kb; kk++) s[rr * lds + kk] = out[rr * KB + kk];
}

FIA_AI void fia_qk_rows8_dt(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                            const void *const *krows, fia_dtype dt, float *s, int64_t lds) {
    int64_t r0 = 0;
    for (; r0 + 4 <= m; r0 += 4)
        for (int64_t j0 = 0; j0 < n; j0 += 2)
            fia_qk_block8(4, 2, 4, n - j0 < 2 ? n - j0 : 2, d, q + r0 * ldq, ldq, krows + j0, dt,
                          s + r0 * lds + j0, lds);
    for (; r0 + 2 <= m; r0 += 2)
        for (int64_t j0 = 0; j0 < n; j0 += 4)
            fia_qk_block8(2, 4, 2, n - j0 < 4 ? n - j0 : 4, d, q + r0 * ldq, ldq, krows + j0, dt,
                          s + r0 * lds + j0, lds);
    for (; r0 < m; r0++)
        for (int64_t j0 = 0; j0 < n; j0 += 8)
            fia_qk_block8(1, 8, 1, n - j0 < 8 ? n - j0 : 8, d, q + r0 * ldq, ldq, krows + j0, dt,
                          s + r0 * lds + j0, lds);
}

void fia_qk_rows__avx2_kmajor_8acc(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                      const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                      const void *const *pf, int64_t npf) {
    const int64_t row_bytes = d * fia_dt_bytes(dt);
    fia_prefetch_rows(pf, 0, npf, row_bytes);
    switch (dt) {
    case FIA_DTYPE_FLOAT16: fia_qk_rows8_dt(m, n, d, q, ldq, krows, FIA_DTYPE_FLOAT16, s, lds); break;
    case FIA_DTYPE_BFLOAT16: fia_qk_rows8_dt(m, n, d, q, ldq, krows, FIA_DTYPE_BFLOAT16, s, lds); break;
    case FIA_DTYPE_INT8: fia_qk_rows8_dt(m, n, d, q, ldq, krows, FIA_DTYPE_INT8, s, lds); break;
    default: fia_qk_rows8_dt(m, n, d, q, ldq, krows, FIA_DTYPE_FLOAT32, s, lds); break;
    }
}

/* Rows [0, rb) x columns [c0, c0 + 16) of O. */
FIA_AI void fia_pv_block8(int64_t rb, int64_t n, int64_t c0, int64_t dv, const float *p,
                          int64_t ldp, const void *const *vrows, fia_dtype dt, float *o,
                          int64_t ldo, const float *row_scale) {
    const int64_t w = dv - c0 < 16 ? dv - c0 : 16;
    __m256 acc[4][2];
    for (int rr = 0; rr < 4; rr++) {
        if (rr < rb && row_scale) {
            const __m256 sc = _mm256_set1_ps(row_scale[rr]);
            acc[rr][0] = _mm256_mul_ps(sc, fia_loadq8(o + rr * ldo, c0, w));
            acc[rr][1] = w > 8 ? _mm256_mul_ps(sc, fia_loadq8(o + rr * ldo, c0 + 8, w - 8))
                               : _mm256_setzero_ps();
        } else {
            acc[rr][0] = acc[rr][1] = _mm256_setzero_ps();
        }
    }
    for (int64_t j = 0; j < n; j++) {
        __m256 v0, v1 = _mm256_setzero_ps();
        if (w == 16) {
            v0 = fia_load8(vrows[j], c0, dt);
            v1 = fia_load8(vrows[j], c0 + 8, dt);
        } else if (w > 8) {
            v0 = fia_load8(vrows[j], c0, dt);
            v1 = fia_load8_tail(vrows[j], c0 + 8, w - 8, dt);
        } else {
            v0 = w == 8 ? fia_load8(vrows[j], c0, dt) : fia_load8_tail(vrows[j], c0, w, dt);
        }
        for (int rr = 0; rr < 4; rr++) {
            if (rr >= rb) break;
            const __m256 pj = _mm256_broadcast_ss(p + rr * ldp + j);
            acc[rr][0] = _mm256_fmadd_ps(pj, v0, acc[rr][0]);
            acc[rr][1] = _mm256_fmadd_ps(pj, v1, acc[rr][1]);
        }
    }
    for (int rr = 0; rr < rb; rr++) {
        float buf[16];
        _mm256_storeu_ps(buf, acc[rr][0]);
        _mm256_storeu_ps(buf + 8, acc[rr][1]);
        memcpy(o + rr * ldo + c0, buf, (size_t)w * sizeof(float));
    }
}

FIA_AI void fia_pv_rows8_dt(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                            const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                            const float *row_scale) {
    for (int64_t r0 = 0; r0 < m; r0 += 4) {
        const int64_t rb = m - r0 < 4 ? m - r0 : 4;
        for (int64_t c0 = 0; c0 < dv; c0 += 16)
            fia_pv_block8(rb, n, c0, dv, p + r0 * ldp, ldp, vrows, dt, o + r0 * ldo, ldo,
                          row_scale ? row_scale + r0 : NULL);
    }
}

void fia_pv_rows__avx2_4x16(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                      const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                      const float *row_scale, const void *const *pf, int64_t npf) {
    const int64_t row_bytes = dv * fia_dt_bytes(dt);
    fia_prefetch_rows(pf, 0, npf, row_bytes);
    switch (dt) {
    case FIA_DTYPE_FLOAT16:
        fia_pv_rows8_dt(m, n, dv, p, ldp, vrows, FIA_DTYPE_FLOAT16, o, ldo, row_scale);
        break;
    case FIA_DTYPE_BFLOAT16:
        fia_pv_rows8_dt(m, n, dv, p, ldp, vrows, FIA_DTYPE_BFLOAT16, o, ldo, row_scale);
        break;
    case FIA_DTYPE_INT8:
        fia_pv_rows8_dt(m, n, dv, p, ldp, vrows, FIA_DTYPE_INT8, o, ldo, row_scale);
        break;
    default: fia_pv_rows8_dt(m, n, dv, p, ldp, vrows, FIA_DTYPE_FLOAT32, o, ldo, row_scale); break;
    }
}
