/*
 * ref_sfa.h - double-precision oracles of sparse_flash_attention and
 * kv_quant_sparse_flash_attention, written straight from the contracts in fia.h.
 *
 * Slow and obvious on purpose, sharing no code with src/. Inputs are assumed valid (the
 * library's plan validated them); every element is read through its strides. The C8 oracle
 * follows the contract's rounding points: the dequantized k_nope (int8 * scale of the tile, an
 * fp32 product) cast to the query dtype, and P cast to the query dtype before P.V as fia.h
 * states it (the mantissa of exp(s - max), independent of the max); the rest in double. Sinks (tensors->sinks) join the
 * softmax denominator of both forms.
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

/* The same, also filling the softmax_max / softmax_sum of each row and head (smax, ssum:
 * [n_rows x N1] each, like lse; 0 and 0 for a row with no valid token). */
int fia_ref_sparse_flash_attention_stats(const fia_sparse_flash_attention_tensors *tensors,
                                         const fia_sparse_flash_attention_params *params,
                                         const int64_t *rows, int64_t n_rows, double *out,
                                         double *lse, double *smax, double *ssum);

int fia_ref_kv_quant_sparse_flash_attention(
    const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params, const int64_t *rows,
    int64_t n_rows, double *out, double *lse);

/* C8 with softmax_max / softmax_sum and slack (NULL, or out's shape): per output element the
 * largest change one query-dtype ulp of a single probability makes (|p| ulp |v|). The cast of P
 * is a rounding decision: fp32 arithmetic before it may land a probability on the other side of
 * a rounding tie than the double oracle, which moves the output by that much. */
int fia_ref_kv_quant_sparse_flash_attention_stats(
    const fia_kv_quant_sparse_flash_attention_tensors *tensors,
    const fia_kv_quant_sparse_flash_attention_params *params, const int64_t *rows,
    int64_t n_rows, double *out, double *lse, double *smax, double *ssum, double *slack);

#endif /* FIA_REF_SFA_H */
