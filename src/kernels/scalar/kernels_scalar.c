/*
 * kernels_scalar.c - the portable kernel table, plain C, no ISA flags.
 *
 * Contract: src/kernels/kernels.h. This table is the reference that every SIMD table is tested
 * against, so it stays simple: straight loops, fp32 accumulation, libm expf.
 */
#include <math.h>
#include <string.h>

#include "core/convert.h"
#include "kernels/amla.h"
#include "kernels/registry.h"

void fia_gemm_f32__scalar(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const float *b, int64_t ldb, float *c, int64_t ldc,
                            const float *row_scale) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (row_scale) {
            for (int64_t j = 0; j < n; j++) ci[j] *= row_scale[i];
        } else {
            for (int64_t j = 0; j < n; j++) ci[j] = 0.0f;
        }
        for (int64_t p = 0; p < k; p++) {
            const float aip = a[i * lda + p];
            const float *bp = b + p * ldb;
            for (int64_t j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
    }
}

void fia_f16_to_f32__scalar(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fia_cvt_f16_to_f32(src[i]);
}

void fia_bf16_to_f32__scalar(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fia_cvt_bf16_to_f32(src[i]);
}

void fia_i8_to_f32__scalar(const int8_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

void fia_f32_to_f16__scalar(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fia_cvt_f32_to_f16(src[i]);
}

void fia_f32_to_bf16__scalar(const float *src, uint16_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = fia_cvt_f32_to_bf16(src[i]);
}

void fia_transpose_f32__scalar(const float *src, int64_t lds, float *dst, int64_t ldd,
                                 int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}

void fia_softmax_tile__scalar(float *s, int64_t lds, int64_t m, int64_t n, float *row_max,
                                float *row_sum, float *alpha) {
    for (int64_t r = 0; r < m; r++) {
        float *sr = s + r * lds;
        float mx = row_max[r];
        for (int64_t j = 0; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < n; j++) sr[j] = 0.0f;
            alpha[r] = 1.0f;
            continue;
        }
        alpha[r] = row_max[r] == -INFINITY ? 0.0f : expf(row_max[r] - mx);
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            sr[j] = expf(sr[j] - mx);
            sum += sr[j];
        }
        row_sum[r] = row_sum[r] * alpha[r] + sum;
        row_max[r] = mx;
    }
}

/* The exponent-bit add: |x| bits + (e << 23), +-0 when that leaves the normal range. */
static inline float fia_exp_add(float x, int32_t e) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint32_t sign = bits & 0x80000000u;
    const int32_t mag = (int32_t)(bits & 0x7fffffffu);
    if (mag >= 0x7f800000) return x; /* inf, NaN */
    int32_t r = mag + e * (1 << 23);
    if (r < (1 << 23)) r = 0;
    bits = sign | (uint32_t)r;
    memcpy(&x, &bits, sizeof x);
    return x;
}

void fia_exp_rescale_scalar(float *c, int64_t n, int32_t e) {
    if (e == 0) return;
    for (int64_t j = 0; j < n; j++) c[j] = fia_exp_add(c[j], e);
}

void fia_gemm_f32_acc__scalar(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                                const float *b, int64_t ldb, float *c, int64_t ldc,
                                const int32_t *row_exp) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (row_exp) fia_exp_rescale_scalar(ci, n, row_exp[i]);
        for (int64_t p = 0; p < k; p++) {
            const float aip = a[i * lda + p];
            const float *bp = b + p * ldb;
            for (int64_t j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
    }
}

void fia_softmax_tile_amla__scalar(float *s, int64_t lds, int64_t m, int64_t n, float *row_max,
                                  float *row_sum, int32_t *row_e, int32_t *row_exp) {
    for (int64_t r = 0; r < m; r++) {
        float *sr = s + r * lds;
        float mx = row_max[r];
        for (int64_t j = 0; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < n; j++) sr[j] = 0.0f;
            row_exp[r] = 0;
            continue;
        }
        int32_t e;
        float c;
        fia_amla_reference(mx, &e, &c);
        int32_t d = -255;
        if (row_max[r] != -INFINITY) {
            const int64_t dd = (int64_t)e - row_e[r];
            d = dd < -255 ? -255 : (int32_t)dd;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            sr[j] = expf(sr[j] - mx) * c;
            sum += sr[j];
        }
        row_exp[r] = d;
        row_sum[r] = (row_max[r] == -INFINITY ? 0.0f : ldexpf(row_sum[r], d)) + sum;
        row_max[r] = mx;
        row_e[r] = e;
    }
}

static float fia_row_elem(const void *row, int64_t i, fia_dtype dt) {
    if (dt == FIA_DTYPE_FLOAT16) return fia_cvt_f16_to_f32(((const uint16_t *)row)[i]);
    if (dt == FIA_DTYPE_BFLOAT16) return fia_cvt_bf16_to_f32(((const uint16_t *)row)[i]);
    if (dt == FIA_DTYPE_INT8) return (float)((const int8_t *)row)[i];
    return ((const float *)row)[i];
}

void fia_qk_rows__scalar(int64_t m, int64_t n, int64_t d, const float *q, int64_t ldq,
                        const void *const *krows, fia_dtype dt, float *s, int64_t lds,
                        const void *const *pf, int64_t npf) {
    (void)pf, (void)npf;
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < d; c++) acc += q[r * ldq + c] * fia_row_elem(krows[j], c, dt);
            s[r * lds + j] = acc;
        }
}

void fia_pv_rows__scalar(int64_t m, int64_t n, int64_t dv, const float *p, int64_t ldp,
                        const void *const *vrows, fia_dtype dt, float *o, int64_t ldo,
                        const float *row_scale, const void *const *pf, int64_t npf) {
    (void)pf, (void)npf;
    for (int64_t r = 0; r < m; r++) {
        float *orow = o + r * ldo;
        for (int64_t c = 0; c < dv; c++) orow[c] = row_scale ? orow[c] * row_scale[r] : 0.0f;
        for (int64_t j = 0; j < n; j++) {
            const float pj = p[r * ldp + j];
            for (int64_t c = 0; c < dv; c++) orow[c] += pj * fia_row_elem(vrows[j], c, dt);
        }
    }
}


float fia_p_to_u8__scalar(const float *p, int64_t n, uint8_t *q) {
    float mx = 0.0f;
    for (int64_t j = 0; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    if (!(mx > 0.0f)) {
        memset(q, 0, (size_t)n);
        return 0.0f;
    }
    const float f = 255.0f / mx;
    for (int64_t j = 0; j < n; j++) {
        /* a NaN probability (NaN inputs; the row sum is NaN too) becomes code 0 */
        const float x = p[j] * f + 0.5f;
        q[j] = x >= 1.0f ? (uint8_t)(int32_t)(x < 255.0f ? x : 255.0f) : 0;
    }
    return mx;
}

void fia_gemm_bf16b__scalar(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                            const uint16_t *packed, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t t = 0; t < k; t++)
                s += a[i * lda + t] * fia_cvt_bf16_to_f32(packed[fia_bf16b_index(k, t, j)]);
            c[i * ldc + j] = s;
        }
}
