/*
 * ref_li.h - the double-precision oracle of lightning_indexer and quant_lightning_indexer,
 * written straight from the contract in fia.h:
 *
 *   score[t, j] = sum_h w[t, h] * ReLU(q[t, h] . k[j])                      (float form)
 *   score[t, j] = sum_h w[t, h] * sq[t, h] * sk[j] * ReLU(q[t, h] . k[j])   (int8 form)
 *
 * then a stable sort by descending score (the lower index first on equal scores) of the keys
 * visible to row t (sparse_mode 0: all keys of the batch, 3: j <= Skv - Sq + i).
 *
 * Slow and obvious on purpose: nothing shared with src/ (only the public fia.h types and fp16 /
 * bf16 conversions); every element is read through its strides, every score is a double sum.
 * Inputs are assumed valid (the library's plan validated them).
 */
#ifndef FIA_REF_LI_H
#define FIA_REF_LI_H

#include <stdint.h>

#include "fia.h"

/* Number of output rows: B * S1 (BSND query) or T1 (TND query). */
int64_t fia_ref_li_num_rows(const fia_lightning_indexer_tensors *t,
                            const fia_lightning_indexer_params *prm);

/* Scores of output row r (row-major over [B, S1] or [T1]) for its visible keys 0..n-1, in double;
 * tol[j] (may be NULL) is a bound on the rounding error of an fp32 evaluation of score j (2e-5
 * times the sum of the absolute values of every product involved). scores / tol must hold the
 * longest key length. Returns n (0 for rows that see nothing, padding rows included). quant
 * selects the int8 formula (query_dequant_scale and key_dequant_scale are read). */
int64_t fia_ref_li_row_scores(const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, int quant, int64_t r,
                              double *scores, double *tol);

/* order[0..n) = 0..n-1 sorted stably by descending scores (NaN last). */
void fia_ref_li_sort(const double *scores, int64_t n, int32_t *order);

/* The whole operator: idx compact int32 [rows, k] (-1 padding), val compact double [rows, k]
 * (-inf padding; may be NULL). Returns 0, or -1 when out of memory. */
int fia_ref_lightning_indexer(const fia_lightning_indexer_tensors *t,
                              const fia_lightning_indexer_params *prm, int quant, int32_t *idx,
                              double *val);

#endif /* FIA_REF_LI_H */
