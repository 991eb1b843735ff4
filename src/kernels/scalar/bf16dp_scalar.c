/*
 * bf16dp_scalar.c - the scalar emulation of vdpbf16ps and the scalar MLA bf16 Q.K^T (bf16dp.h).
 */
#include <math.h>

#include "kernels/bf16dp.h"

/* denormal in -> 0 (sign kept), denormal out -> 0 (sign kept) */
static inline float daz(float x) { return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x; }

float fia_dpbf16_emul(float acc, uint32_t a, uint32_t b) {
    const float a0 = daz(fia_bf16_bits_to_f32((uint16_t)a)), a1 = daz(fia_bf16_bits_to_f32((uint16_t)(a >> 16)));
    const float b0 = daz(fia_bf16_bits_to_f32((uint16_t)b)), b1 = daz(fia_bf16_bits_to_f32((uint16_t)(b >> 16)));
    acc = daz(fmaf(a1, b1, daz(acc)));
    acc = daz(fmaf(a0, b0, acc));
    return acc;
}

void fia_bf16_pack_kt(int64_t n, const uint16_t *const *krows, const uint16_t *const *rrows,
                      uint32_t *kt) {
    for (int64_t j = 0; j < FIA_BF16_KT_KEYS; j++) {
        if (j >= n) {
            for (int64_t d2 = 0; d2 < FIA_BF16_MLA_D2; d2++) kt[d2 * FIA_BF16_KT_KEYS + j] = 0;
            continue;
        }
        for (int64_t d2 = 0; d2 < 256; d2++) {
            uint32_t v;
            memcpy(&v, krows[j] + 2 * d2, sizeof v);
            kt[d2 * FIA_BF16_KT_KEYS + j] = v;
        }
        for (int64_t d2 = 0; d2 < 32; d2++) {
            uint32_t v;
            memcpy(&v, rrows[j] + 2 * d2, sizeof v);
            kt[(256 + d2) * FIA_BF16_KT_KEYS + j] = v;
        }
    }
}

void fia_bf16_qk_scalar(int64_t m, int64_t n, const uint16_t *q, int64_t ldq, const uint32_t *kt,
                        float scale, float *s, int64_t lds) {
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (int64_t d2 = 0; d2 < FIA_BF16_MLA_D2; d2++) {
                uint32_t a;
                memcpy(&a, q + r * ldq + 2 * d2, sizeof a);
                acc = fia_dpbf16_emul(acc, a, kt[d2 * FIA_BF16_KT_KEYS + j]);
            }
            s[r * lds + j] = acc * scale;
        }
}
