/*
 * case_util.h - what the per-operator case descriptions (case_chain.c, case_attention.c, case_sparse.c, case_prolog.c) share
 * with case.c: a seeded generator and compact tensors owned by the case.
 */
#ifndef FIA_REF_CASE_UTIL_H
#define FIA_REF_CASE_UTIL_H

#include <stdint.h>

#include "case.h"

uint64_t fia_case_rand(uint64_t *state);
double fia_case_uniform(uint64_t *state, double lo, double hi);
int64_t fia_case_int(uint64_t *state, int64_t lo, int64_t hi); /* in [lo, hi] */

/* Nonzero when d[0..n) are each in [1, big] and their product is at most big. */
int fia_case_dims_ok(const int64_t *d, int n, int64_t big);
/* float32, float16 or bfloat16. */
int fia_case_float_dtype(fia_dtype dt);

/* Element i of a compact tensor set to v (rounded to its dtype). */
void fia_case_store(fia_tensor *t, int64_t i, double v);

/* A compact tensor owned by c, filled uniformly in [lo, hi] (rng NULL: zeros); NULL when c
 * holds FIA_CASE_MAX_TENSORS already, the shape is negative or huge, or out of memory. */
fia_tensor *fia_case_tensor(fia_case *c, fia_dtype dt, int32_t ndim, const int64_t *shape,
                            uint64_t *rng, double lo, double hi);

/* Elements 0..n-1 of compact t: n distinct values of [0, range) in random order (n = range: a
 * permutation); 0, or -1 (n > range, out of memory). */
int fia_case_distinct(fia_tensor *t, int64_t n, int64_t range, uint64_t *rng);

/* An int32 [rows, cols] block table owned by c holding a permutation of 0..rows*cols-1 (every
 * block id once: distinct rows use distinct blocks); NULL as fia_case_tensor. */
fia_tensor *fia_case_perm_table(fia_case *c, int64_t rows, int64_t cols, uint64_t *rng);

/* An output slot of c (inplace: got is also an input, snapshotted by fia_case_prepare). */
static inline void fia_case_out(fia_case *c, const char *name, fia_tensor *got, int inplace) {
    c->out[c->n_out].name = name;
    c->out[c->n_out].got = got;
    c->out[c->n_out].inplace = inplace;
    c->n_out++;
}

#endif /* FIA_REF_CASE_UTIL_H */
