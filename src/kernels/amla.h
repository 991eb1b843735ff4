/*
 * amla.h - the power-of-two reference of AMLA ("multiply by add") rescaling, one definition for
 * every kernel table.
 *
 * For a running max mx, e = round(-mx / ln2) and c = exp(mx + e ln2), so that exp(s - mx) c =
 * exp(s) 2^e: probabilities are kept relative to 2^-e instead of e^mx, and a change of the max
 * rescales the accumulator by 2^(e_new - e_old), an integer add on the fp32 exponent bits. On
 * the NPU c is rounded to bf16 and AMLA adds a correction term for that rounding; here c stays
 * fp32 (P is never rounded to 16 bits), so the correction is below fp32 resolution and omitted.
 */
#ifndef FIA_KERNELS_AMLA_H
#define FIA_KERNELS_AMLA_H

#include <math.h>
#include <stdint.h>

#define FIA_AMLA_MAX_E (1 << 30)

/* e and c for the running max mx (finite or +inf; -inf is handled by the callers). Computed in
 * double so that c is right to fp32 rounding for any |mx| < 2^30 ln2. */
static inline void fia_amla_reference(float mx, int32_t *e, float *c) {
    const double ln2 = 0.69314718055994530942;
    double x = -(double)mx / ln2;
    if (!(x < FIA_AMLA_MAX_E)) x = FIA_AMLA_MAX_E; /* also NaN */
    if (x < -FIA_AMLA_MAX_E) x = -FIA_AMLA_MAX_E;
    const double r = nearbyint(x);
    *e = (int32_t)r;
    *c = (float)exp((double)mx + r * ln2);
}

#endif /* FIA_KERNELS_AMLA_H */
