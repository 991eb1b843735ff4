/*
 * ref_sfa.h - double-precision oracles of sparse_flash_attention and
 * kv_quant_sparse_flash_attention, written straight from the contracts in fia.h.
 *
 * Slow and obvious on purpose, sharing no code with src/. Inputs are assumed valid (the
 * library's plan validated them); every element is read through its strides. The C8 oracle
 * works on the dequantized cache (int8 * scale of the tile, in double).
 */
#ifndef FIA_REF_SFA_H
#define FIA_REF_SFA_H

#include <stdint.h>

#include "fia.h"

/* out: compact double array with the logical shape of attention_out (0 for rows that see no
 *      token or lie beyond a batch's query length).
 * lse: NULL, or compact double [rows, N1] (row-major by output row, see rows); +inf for rows
 *      with no token.
 * rows: NULL for every output row (row = b * S1 + i for BSND, the token t for TND), else the
 *      list of output rows to compute, n_rows of them; out and lse then hold only those rows,
 *      in list order ([n_rows, N1, 512] and [n_rows, N1]).
 * The tensors' output views give only shapes; their data is not touched.
 * Returns 0, or -1 (message on stderr) for an input it cannot interpret. */
int fia_ref_sparse_flash_attention(const fia_sparse_flash_attention_tensors *tensors,
                                   const fia_sparse_flash_attention_params *params,
                                   const int64_t *rows, int64_t n_rows, double *out, double *lse);

int fia_ref_kv_quant_sparse_flash_attention(
    const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params, const int64_t *rows,
    int64_t n_rows, double *out, double *lse);

#endif /* FIA_REF_SFA_H */
