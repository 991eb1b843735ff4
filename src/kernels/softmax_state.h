/*
 * softmax_state.h - the online-softmax state of one query row and its merge, written once and
 * shared by every path that splits the keys of a row (split-KV decode, MLA, sparse attention).
 *
 * A partial state over a set of keys is (m, l, o[Dv]): m the largest score, l = sum exp(s - m),
 * o = sum exp(s - m) v (unnormalised). An empty set is (-inf, 0, anything). Merging is the
 * log-sum-exp rule; merging partials in a fixed order makes the result independent of who
 * computed them.
 */
#ifndef FIA_KERNELS_SOFTMAX_STATE_H
#define FIA_KERNELS_SOFTMAX_STATE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* (m, l, o) <- merge((m, l, o), (m2, l2, o2)). o2 is read only when m2 > -inf. */
static inline void fia_softmax_state_merge(float *m, float *l, float *o, float m2, float l2,
                                           const float *o2, int64_t dv) {
    if (m2 == -INFINITY) return;
    if (*m == -INFINITY) {
        *m = m2;
        *l = l2;
        memcpy(o, o2, (size_t)dv * sizeof *o);
        return;
    }
    const float mx = *m > m2 ? *m : m2;
    const float a = expf(*m - mx), b = expf(m2 - mx);
    for (int64_t d = 0; d < dv; d++) o[d] = o[d] * a + o2[d] * b;
    *l = *l * a + l2 * b;
    *m = mx;
}

/* Normalises o in place (o / l; all 0 for an empty state) and returns the log-sum-exp
 * (m + log l; +inf for an empty state, the contract's mark of a row that sees no key). */
static inline float fia_softmax_state_finish(float m, float l, float *o, int64_t dv) {
    if (m == -INFINITY || !(l > 0.0f)) {
        memset(o, 0, (size_t)dv * sizeof *o);
        return INFINITY;
    }
    const float inv = 1.0f / l;
    for (int64_t d = 0; d < dv; d++) o[d] *= inv;
    return m + logf(l);
}

#endif /* FIA_KERNELS_SOFTMAX_STATE_H */
