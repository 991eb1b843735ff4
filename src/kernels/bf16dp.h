/*
 * bf16dp.h - Q.K^T on bf16 dot products (AVX512-BF16 vdpbf16ps) and its scalar emulation.
 *
 * vdpbf16ps, per fp32 lane j: acc += a[2j+1] * b[2j+1]; acc += a[2j] * b[2j], each step an fp32
 * fused multiply-add with bf16 inputs (denormal inputs read as 0, denormal results flushed to 0,
 * round to nearest even; MXCSR is not used). A product of two bf16 values is exact in fp32, so
 * with bf16 data (the MLA query and latent cache) the dot product is exact up to the fp32
 * additions: the same precision as the fp32 FMA path, at twice the products per instruction.
 * fia_dpbf16_emul is that lane in portable C (tested against the instruction where the CPU has
 * it, and against double dot products everywhere); fia_bf16_rne rounds fp32 to bf16 (nearest
 * even, NaN kept quiet) for inputs that are not bf16 already.
 *
 * The MLA Q.K^T kernels (576 = 512 latent + 64 rope):
 *   fia_bf16_pack_kt: n <= FIA_BF16_KT_KEYS key rows (krows[j] 512 bf16, rrows[j] 64 bf16) into
 *     kt[d2][FIA_BF16_KT_KEYS] (dword pairs of dims 2 d2, 2 d2 + 1; keys n.. zero);
 *   fia_bf16_qk_*: S[r][j] = scale * dot(q[r], K_j) for r < m, j < n, q rows of 576 bf16 at
 *     q + r ldq. Each S[r][j] is one fp32 chain over d2 = 0..287 in order (acc starts at +0,
 *     dpbf16 lane steps), then multiplied by scale: the scalar and the AVX512-BF16 kernels give
 *     bitwise identical results.
 */
#ifndef FIA_KERNELS_BF16DP_H
#define FIA_KERNELS_BF16DP_H

#include <stdint.h>
#include <string.h>

enum { FIA_BF16_KT_KEYS = 32, FIA_BF16_MLA_D2 = 288 };

static inline float fia_bf16_bits_to_f32(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t fia_bf16_rne(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* One vdpbf16ps lane: a, b hold two bf16 each (element 0 in the low half). */
float fia_dpbf16_emul(float acc, uint32_t a, uint32_t b);

void fia_bf16_pack_kt(int64_t n, const uint16_t *const *krows, const uint16_t *const *rrows,
                      uint32_t *kt);
void fia_bf16_qk_scalar(int64_t m, int64_t n, const uint16_t *q, int64_t ldq, const uint32_t *kt,
                        float scale, float *s, int64_t lds);
void fia_bf16_qk_avx512bf16(int64_t m, int64_t n, const uint16_t *q, int64_t ldq,
                            const uint32_t *kt, float scale, float *s, int64_t lds);

#endif /* FIA_KERNELS_BF16DP_H */
