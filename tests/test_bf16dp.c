/*
 * test_bf16dp.c - the bf16 dot-product kernels (src/kernels/bf16dp.h):
 *   - fia_bf16_rne: round to nearest even (ties, carries into the exponent, NaN, inf);
 *   - fia_dpbf16_emul (the scalar emulation of one vdpbf16ps lane) against double products,
 *     everywhere, and bit for bit against the instruction where the CPU has AVX512-BF16
 *     (normal, denormal, zero, inf and large inputs);
 *   - the MLA Q.K^T kernels: scalar against a double dot product (everywhere), the AVX512-BF16
 *     kernel bit for bit against the scalar one (where the CPU has it), every row count 1..20
 *     and key count 1..32.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "kernels/bf16dp.h"
#include "test_util.h"

static int has_bf16(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    if (!(b & (1u << 16))) return 0; /* avx512f */
    unsigned lo, hi;
    __get_cpuid(1, &a, &b, &c, &d);
    if (!(c & (1u << 27))) return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1;
#else
    return 0;
#endif
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) static float dp_hw(float acc, uint32_t a, uint32_t b) {
    const __m512 r = _mm512_dpbf16_ps(_mm512_set1_ps(acc), (__m512bh)_mm512_set1_epi32((int32_t)a),
                                      (__m512bh)_mm512_set1_epi32((int32_t)b));
    return _mm512_cvtss_f32(r);
}
#endif

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* a random bf16: mostly moderate normals, sometimes zero, denormal, huge, inf */
static uint16_t rand_bf16(tu_rng *r) {
    const int k = (int)tu_int(r, 0, 19);
    const uint16_t sign = tu_chance(r, 0.5) ? 0x8000 : 0;
    if (k == 0) return sign;
    if (k == 1) return (uint16_t)(sign | tu_int(r, 1, 0x7f)); /* denormal */
    if (k == 2) return (uint16_t)(sign | 0x7f80);               /* inf */
    if (k == 3) return (uint16_t)(sign | tu_int(r, 0x7e00, 0x7f7f)); /* huge */
    if (k == 4) return (uint16_t)(sign | tu_int(r, 0x0080, 0x0200)); /* tiny normal */
    return (uint16_t)(sign | tu_int(r, 0x3a00, 0x4200));
}

static void test_rne(void) {
    tu_check(fia_bf16_rne(1.0f) == 0x3f80, "rne(1)");
    float f;
    uint32_t u = 0x3f808000u; /* tie, even below: stays */
    memcpy(&f, &u, 4);
    tu_check(fia_bf16_rne(f) == 0x3f80, "rne tie to even (down)");
    u = 0x3f818000u; /* tie, odd below: up */
    memcpy(&f, &u, 4);
    tu_check(fia_bf16_rne(f) == 0x3f82, "rne tie to even (up)");
    u = 0x3f7fffffu; /* carry into the exponent */
    memcpy(&f, &u, 4);
    tu_check(fia_bf16_rne(f) == 0x3f80, "rne carry");
    tu_check(fia_bf16_rne(INFINITY) == 0x7f80, "rne inf");
    tu_check((fia_bf16_rne(NAN) & 0x7fc0) == 0x7fc0, "rne NaN stays NaN");
    u = 0x7f7fffffu; /* FLT_MAX rounds to inf */
    memcpy(&f, &u, 4);
    tu_check(fia_bf16_rne(f) == 0x7f80, "rne overflow");
}

static double daz(float x) { return fabsf(x) < 1.17549435e-38f ? 0.0 : (double)x; }

static void test_emul(tu_rng *r, int hw) {
    int bad_ref = 0, bad_hw = 0, n_hw = 0;
    for (int i = 0; i < 200000; i++) {
        const uint32_t a = (uint32_t)rand_bf16(r) | (uint32_t)rand_bf16(r) << 16;
        const uint32_t b = (uint32_t)rand_bf16(r) | (uint32_t)rand_bf16(r) << 16;
        float acc = (float)tu_uniform(r, -4, 4);
        if (tu_chance(r, 0.05)) acc = 0.0f;
        if (tu_chance(r, 0.02)) acc = 1e-39f; /* a denormal accumulator */
        const float e = fia_dpbf16_emul(acc, a, b);
        /* double reference for moderate inputs (no denormal, inf or overflow involved) */
        /* denormal inputs read as zero (the instruction's rule) */
        const double a0 = daz(fia_bf16_bits_to_f32((uint16_t)a)), a1 = daz(fia_bf16_bits_to_f32((uint16_t)(a >> 16)));
        const double b0 = daz(fia_bf16_bits_to_f32((uint16_t)b)), b1 = daz(fia_bf16_bits_to_f32((uint16_t)(b >> 16)));
        const double t1 = (double)acc + a1 * b1;
        const double ref = (double)(float)t1 + a0 * b0;
        const double mag = fabs(acc) + fabs(a1 * b1) + fabs(a0 * b0);
        if (fabs(acc) > 1e-30 && mag > 1e-30 && mag < 1e30 && fabs(a0 * b0) > 1e-30 &&
            fabs(a1 * b1) > 1e-30 && fabs(e - ref) > 1.2e-7 * mag)
            bad_ref++;
#if defined(__x86_64__)
        if (hw) {
            const float h = dp_hw(acc, a, b);
            n_hw++;
            if (!(isnan(h) && isnan(e)) && fbits(h) != fbits(e)) {
                if (bad_hw < 5)
                    printf("  hw %08x emul %08x (acc %08x a %08x b %08x)\n", fbits(h), fbits(e),
                           fbits(acc), a, b);
                bad_hw++;
            }
        }
#endif
    }
    tu_check(bad_ref == 0, "dpbf16 emulation vs double: %d mismatches", bad_ref);
    if (hw) tu_check(bad_hw == 0, "dpbf16 emulation vs vdpbf16ps: %d of %d differ", bad_hw, n_hw);
    printf("vdpbf16ps emulation: %s\n", hw ? "checked bit for bit against the instruction"
                                           : "CPU has no AVX512-BF16 (checked against double only)");
}

static void test_qk(tu_rng *r, int hw) {
    enum { D = 576 };
    uint16_t *q = malloc(20 * D * 2), *k = malloc(32 * 512 * 2), *kr = malloc(32 * 64 * 2);
    uint32_t *kt = malloc(FIA_BF16_MLA_D2 * FIA_BF16_KT_KEYS * 4);
    float s1[20 * 40], s2[20 * 40];
    for (int it = 0; it < 60; it++) {
        const int64_t m = tu_int(r, 1, 20), n = tu_int(r, 1, 32);
        for (int i = 0; i < 20 * D; i++) q[i] = fia_bf16_rne((float)tu_uniform(r, -1, 1));
        for (int i = 0; i < 32 * 512; i++) k[i] = fia_bf16_rne((float)tu_uniform(r, -1, 1));
        for (int i = 0; i < 32 * 64; i++) kr[i] = fia_bf16_rne((float)tu_uniform(r, -1, 1));
        const uint16_t *kp[32], *rp[32];
        for (int j = 0; j < 32; j++) kp[j] = k + j * 512, rp[j] = kr + j * 64;
        fia_bf16_pack_kt(n, kp, rp, kt);
        const float scale = (float)tu_uniform(r, 0.03, 0.2);
        for (int i = 0; i < 20 * 40; i++) s1[i] = s2[i] = -7.0f;
        fia_bf16_qk_scalar(m, n, q, D, kt, scale, s1, 40);
        int bad = 0;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < 40; j++) {
                if (j >= n) {
                    bad += s1[i * 40 + j] != -7.0f;
                    continue;
                }
                double ref = 0, mag = 0;
                for (int d = 0; d < D; d++) {
                    const double x = fia_bf16_bits_to_f32(q[i * D + d]);
                    const double y = fia_bf16_bits_to_f32(d < 512 ? kp[j][d] : rp[j][d - 512]);
                    ref += x * y;
                    mag += fabs(x * y);
                }
                ref *= scale;
                bad += fabs(s1[i * 40 + j] - ref) > 1e-5 * mag * scale + 1e-7;
            }
        tu_check(bad == 0, "scalar bf16 Q.K^T m=%lld n=%lld: %d wrong", (long long)m, (long long)n, bad);
        if (hw) {
            fia_bf16_qk_avx512bf16(m, n, q, D, kt, scale, s2, 40);
            tu_check(memcmp(s1, s2, sizeof s1) == 0, "AVX512-BF16 Q.K^T m=%lld n=%lld differs from scalar",
                     (long long)m, (long long)n);
        }
    }
    free(q), free(k), free(kr), free(kt);
}

int main(int argc, char **argv) {
    const uint64_t seed = tu_seed(argc, argv, 20261202, "test_bf16dp");
    tu_rng r = tu_rng_make(seed);
    const int hw = has_bf16();
    test_rne();
    test_emul(&r, hw);
    test_qk(&r, hw);
    return tu_summary();
}
