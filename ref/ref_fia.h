/*
 * ref_fia.h - double-precision oracles, written straight from the operator contracts.
 *
 * Slow and obvious on purpose: never optimised, never sharing code with src/ (beyond the public
 * fia.h types and the public fp16/bf16 conversions). The inputs are assumed valid (the library's
 * plan validated them); the oracle reads them through their strides.
 */
#ifndef FIA_REF_FIA_H
#define FIA_REF_FIA_H

#include <stdint.h>

#include "fia.h"
#include "ref_util.h" /* fia_ref_load and the other element readers */
#include "tolerance.h" /* the tolerance table and fia_ref_check_tensor */

/* FusedInferAttentionScore in double precision, semantics as documented in fia.h.
 * out: compact row-major double array with the logical shape of tensors->attention_out
 *      (elements = fia_tensor_numel(attention_out)); rows that see no key are 0.
 * lse: NULL, or compact double array [B, N1, S1] (TND: [T1, N1]); +inf for rows that see no key
 *      (and rows beyond a batch's actual query length).
 * tensors->attention_out / softmax_lse give only the output shapes; their data is not touched.
 * Returns 0 on success, -1 for an input it cannot interpret (message on stderr). */
int fia_ref_fused_infer_attention_score(const fia_fused_infer_attention_score_tensors *tensors,
                                        const fia_fused_infer_attention_score_params *params,
                                        double *out, double *lse);

/* Compares a tensor (float32/float16/bfloat16, read through its strides) with a compact double
 * array under tolerance.h's FIA_REF_TOL_CLOSE rule at atol / rtol: element i passes when
 * |got - want| <= atol + rtol * |want| (want == +-inf needs the same infinity; NaN never
 * passes). Returns the number of failing elements; when > 0 and name is not NULL, prints the
 * count and the worst element (index, got, want) to stderr. The tolerances themselves come from
 * fia_ref_tolerance_of (tolerance.h). */
int64_t fia_ref_compare(const char *name, const fia_tensor *got, const double *want, double atol,
                        double rtol);

#endif /* FIA_REF_FIA_H */
