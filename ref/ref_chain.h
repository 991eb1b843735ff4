/*
 * ref_chain.h - double-precision oracles of the attention-chain helper operators, written from
 * the contracts (include/fia/{norm,rope,quant,cache}.h and the torch_npu docs they cite):
 * rms_norm / add_rms_norm, rotary_mul / interleave_rope, dynamic_quant, scatter_update,
 * scatter_nd_update and gather_selection_kv_cache. Slow and obvious: every element is read
 * through its strides (ref_util.h); outputs are compact double arrays over the output's logical
 * shape (row-major), or for the in-place operators a copy of the target that the oracle updates.
 */
#ifndef FIA_REF_CHAIN_H
#define FIA_REF_CHAIN_H

#include <stdint.h>

#include "fia.h"

/* rms_norm (x2 NULL) / add_rms_norm: y[x1's numel], rstd[rows], xsum[x1's numel] (may be NULL).
 * The sum x1 + x2 is rounded to x1's dtype first, as the contract's golden adds in that dtype. */
void fia_ref_rms_norm(const fia_tensor *x1, const fia_tensor *x2, const fia_tensor *gamma,
                      double eps, double *y, double *rstd, double *xsum);

/* rotary_mul (mode 0 half, 1 interleave) and interleave_rope (mode 2): y[x's numel]; cos / sin
 * broadcast over their size-1 dims (same ndim as x). */
void fia_ref_rope(const fia_tensor *x, const fia_tensor *cos, const fia_tensor *sin, int mode,
                  double *y);

/* dynamic_quant: q[x's numel] (the unsaturated rounded quotient x * s / scale, round half to
 * even), frac[x's numel] (the quotient before rounding, to recognise ties; may be NULL) and
 * scale[] (pertoken: rows, pertensor: 1, perchannel: x's numel / x.shape[-2]). mode 0
 * pertoken, 1 pertensor, 2 perchannel. smooth may be NULL; group_index (int32, with a 2-D
 * smooth) selects smooth row e for rows [group_index[e - 1], group_index[e]). */
void fia_ref_dynamic_quant(const fia_tensor *x, const fia_tensor *smooth,
                           const fia_tensor *group_index, int mode, double dst_max, double *q,
                           double *quot, double *scale);

/* The in-place operators update `target`, a compact double copy of the target tensor over its
 * logical shape (fia_ref_load order). They return 0, or -1 when an index is out of range (the
 * contract's error; target is then unchanged). */

/* scatter_update: data[b, .., p + j (axis), ..] = updates[k, .., j, ..]. */
int fia_ref_scatter_update(const fia_tensor *data, double *target, const fia_tensor *indices,
                           const fia_tensor *updates, int64_t axis);

/* scatter_nd_update; mode 0 plain N-d, 1 PA_BSND flat slots, 2 PA_NZ flat slots. */
int fia_ref_scatter_nd_update(const fia_tensor *input, double *target, const fia_tensor *indices,
                              const fia_tensor *updates, int mode);

/* gather_selection_kv_cache (the golden's all-host form): updates sel_kv / sel_rope (copies of
 * selection_kv_cache / selection_k_rope, sel_rope NULL without rope) and status (a copy of
 * selection_kv_block_status), writes out[B * S * H] (rows skipped keep 0). */
void fia_ref_gather_selection(const fia_tensor *sel_kv_t, double *sel_kv, const fia_tensor *sel_rope_t,
                              double *sel_rope, const fia_tensor *sel_table, double *status,
                              const fia_tensor *topk, const fia_tensor *full_rope,
                              const fia_tensor *full_kv, const fia_tensor *full_table,
                              const fia_tensor *kv_len, const fia_tensor *q_len, int64_t sbs,
                              int64_t *out);

#endif /* FIA_REF_CHAIN_H */
