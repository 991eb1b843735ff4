/*
 * ref_smallq.h - the double-precision oracle of smallq_flash_attention, written straight from the
 * operator contract in fia.h:
 *
 *   O[h] = softmax(Q[h] . K[h]^T / sqrt(headDim)) . V[h]      per head h, no mask
 *
 * Slow and obvious on purpose: never optimised, nothing shared with src/ (only the public fia.h
 * types and fp16/bf16 conversions). Every element is read through its strides; scores are plain
 * double dot products, the softmax is two passes (max, then exp and sum).
 */
#ifndef FIA_REF_SMALLQ_H
#define FIA_REF_SMALLQ_H

#include <stdint.h>

#include "fia.h"

/*
 * Computes the rows of some heads (or all of them).
 *   q:     [numHeads, qLen, headDim]     k, v: [numHeads, kvLen, headDim]
 *          3-D views of a float dtype (float16, bfloat16, float32) with any non-negative strides.
 *   heads: the heads to compute, in the order wanted (repeats allowed); NULL: every head
 *          0..numHeads-1 (num_heads_to_check is then ignored).
 *   out:   compact double array [count, qLen, headDim], count = num_heads_to_check (numHeads when
 *          heads is NULL); out[(i * qLen + r) * headDim + d] is row r, channel d of heads[i].
 * Returns 0, or -1 (message on stderr) for inputs it cannot interpret: a NULL pointer, not 3-D,
 * a non-float dtype, a dim < 1, mismatching dims, a head index out of range.
 */
int fia_ref_smallq_flash_attention(const fia_tensor *q, const fia_tensor *k, const fia_tensor *v,
                                   const int64_t *heads, int64_t num_heads_to_check, double *out);

#endif /* FIA_REF_SMALLQ_H */
