/*
 * convert.h - scalar fp16 / bf16 <-> fp32 conversions, written once for the whole library.
 * Round to nearest even; NaN stays NaN (quiet); fp16 overflow gives +-inf.
 */
#ifndef FIA_CORE_CONVERT_H
#define FIA_CORE_CONVERT_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fia_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float fia_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float fia_cvt_bf16_to_f32(uint16_t b) { return fia_bits_f32((uint32_t)b << 16); }

static inline uint16_t fia_cvt_f32_to_bf16(float f) {
    uint32_t u = fia_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float fia_cvt_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1fu) return fia_bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf / NaN */
    if (exp != 0) return fia_bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return fia_bits_f32(sign);
    /* subnormal: value = mant * 2^-24 */
    float v = (float)mant * (1.0f / 16777216.0f);
    return sign ? -v : v;
}

static inline uint16_t fia_cvt_f32_to_f16(float f) {
    const uint32_t u = fia_f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((abs >> 13) & 0x3ffu)); /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {                                     /* below 2^-14: subnormal */
        if (abs < 0x33000000u) return sign;                      /* below 2^-25: zero */
        const uint32_t e = abs >> 23;
        const uint32_t m = (abs & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* 14..24 */
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = abs - 0x38000000u; /* rebias exponent 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

#endif /* FIA_CORE_CONVERT_H */
