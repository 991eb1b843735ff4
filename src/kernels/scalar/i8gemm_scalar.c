/*
 * i8gemm_scalar.c - the portable int8 GEMM table (fia_i8_kernels_scalar, name "scalar") and the
 * table selector fia_i8_kernels_for().
 *
 * Contract and packed-B format: src/kernels/i8gemm.h. This is the reference the VNNI table is
 * tested against, so it stays simple: straight loops over the packed layout. Integer sums are
 * kept in uint32 (wrapping like vpdpbusd, so no signed-overflow UB even past the k <= 65536
 * exactness bound); the epilogue is x = (float)dot, x *= scale, c = beta * c + x, in that order.
 */
#include <string.h>

#include "kernels/registry.h"

size_t fia_i8_pack_bytes(int64_t n, int64_t k) {
    if (n <= 0) return 0;
    if (k < 0) k = 0;
    const size_t k4 = (size_t)((k + 3) / 4), panels = (size_t)((n + 15) / 16);
    return panels * (64 * k4 + 64);
}

static void put_colsums(int8_t *panel, int64_t k4, const int32_t *cs) {
    memcpy(panel + 64 * k4, cs, 16 * sizeof(int32_t));
}

void fia_i8_pack_b_nk__scalar(const int8_t *const *rows, int64_t n, int64_t k, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    int8_t *out = (int8_t *)packed;
    for (int64_t p = 0; p * 16 < n; p++) {
        int8_t *panel = out + p * pb;
        int32_t cs[16];
        for (int64_t c = 0; c < 16; c++) {
            const int64_t j = 16 * p + c;
            const int8_t *row = j < n ? rows[j] : NULL;
            int32_t s = 0;
            for (int64_t t = 0; t < 4 * k4; t++) {
                const int8_t v = (row && t < k) ? row[t] : 0;
                panel[64 * (t / 4) + 4 * c + (t % 4)] = v;
                s += v;
            }
            cs[c] = s;
        }
        put_colsums(panel, k4, cs);
    }
}

void fia_i8_pack_b_kn__scalar(const int8_t *const *rows, int64_t k, int64_t n, void *packed) {
    if (n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    int8_t *out = (int8_t *)packed;
    for (int64_t p = 0; p * 16 < n; p++) {
        int8_t *panel = out + p * pb;
        int32_t cs[16] = {0};
        for (int64_t t = 0; t < 4 * k4; t++) {
            for (int64_t c = 0; c < 16; c++) {
                const int64_t j = 16 * p + c;
                const int8_t v = (t < k && j < n) ? rows[t][j] : 0;
                panel[64 * (t / 4) + 4 * c + (t % 4)] = v;
                cs[c] += v;
            }
        }
        put_colsums(panel, k4, cs);
    }
}

void fia_i8_gemm__scalar(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                        const void *packed, float *c, int64_t ldc, const float *row_scale,
                        const float *row_beta, int32_t a_offset) {
    if (m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    const int64_t k4 = (k + 3) / 4, pb = 64 * k4 + 64;
    const int8_t *b = (const int8_t *)packed;
    for (int64_t r = 0; r < m; r++) {
        const uint8_t *ar = a + r * lda;
        float *cr = c + r * ldc;
        for (int64_t p = 0; p * 16 < n; p++) {
            const int8_t *panel = b + p * pb;
            uint32_t acc[16] = {0};
            for (int64_t t = 0; t < k; t++) {
                const int32_t av = ar[t];
                const int8_t *bg = panel + 64 * (t / 4) + (t % 4);
                for (int c16 = 0; c16 < 16; c16++) acc[c16] += (uint32_t)(av * (int32_t)bg[4 * c16]);
            }
            int32_t cs[16];
            memcpy(cs, panel + 64 * k4, sizeof cs);
            const int64_t nc = n - 16 * p < 16 ? n - 16 * p : 16;
            for (int64_t c16 = 0; c16 < nc; c16++) {
                /* uint32 -> int32 is modular with gcc and clang (the result fits by contract) */
                const int32_t dot = (int32_t)(acc[c16] - (uint32_t)a_offset * (uint32_t)cs[c16]);
                float x = (float)dot;
                if (row_scale) x *= row_scale[r];
                float *cj = cr + 16 * p + c16;
                if (row_beta)
                    *cj = row_beta[r] * *cj + x;
                else
                    *cj = x;
            }
        }
    }
}

void fia_i8_s8_to_u8_offset__scalar(const int8_t *src, uint8_t *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = (uint8_t)((uint8_t)src[i] ^ 0x80u);
}


