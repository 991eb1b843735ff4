/*
 * ref_mla.h - the double-precision oracle of the MLA path of FusedInferAttentionScore
 * (query_rope / key_rope given), written straight from the contract in fia.h ("MLA"). Slow and
 * obvious: every element read through its strides with fia_ref_load, double dot products,
 * two-pass softmax; the int8 form on the dequantized values. Nothing shared with src/.
 */
#ifndef FIA_REF_MLA_H
#define FIA_REF_MLA_H

#include "fia.h"

/* out: compact double array with the logical shape of tensors->attention_out; lse: NULL or
 * compact [B, N, S1] (TND: [T, N]); rows that see no key (or lie beyond a batch's query length)
 * are 0 with lse +inf. Returns 0, or -1 for an input it cannot interpret (message on stderr). */
int fia_ref_mla(const fia_fused_infer_attention_score_tensors *tensors,
                const fia_fused_infer_attention_score_params *params, double *out, double *lse);

#endif /* FIA_REF_MLA_H */
