/*
 * ref_prolog.h - double-precision oracle of mla_prolog_v3 (bf16 path), written from the
 * contract in fia/prolog.h (spec: ascend-ops.md section 5).
 *
 * Slow and obvious, sharing no code with src/. Every element is read through its strides.
 * rounding: 0 computes every step in double; 1 rounds to bfloat16 only what feeds a bf16
 * matmul (the normalized c_q and each head's q_c); 2 rounds where the contract's golden does:
 * also x . W_DQ, all of cq . W_UQ_QR and x . W_DKV_KR (fia's rounding points). With int8
 * weights (weight_quant_mode 1, 2) the normalized c_q is quantized per token (smooth scales,
 * scale max / 127, rint) and the int8 sums are dequantized by the per-token and per-column
 * scales (mode 2: x . W_DQ is not rounded to bf16, as the golden). The final
 * outputs are returned unrounded (double).
 */
#ifndef FIA_REF_PROLOG_H
#define FIA_REF_PROLOG_H

#include "fia.h"

/* Per-token results, compact, token t = b * S + s:
 *   qo [T, N, 512]   query_out          qr [T, N, 64]   query_rope_out
 *   qn [T, Hcq]      query_norm (may be NULL)
 *   kv [T, 512]      the latent cache row of token t
 *   kr [T, 64]       the rope cache row of token t
 * The slack arrays (each may be NULL; same shapes) get, per output element, how far it moves
 * when each bf16-rounded intermediate it reads directly moves by one bf16 ulp (a rounding tie
 * decided differently by fp32 and double accumulation; rounding 2 only, else 0); for
 * query_out, flips of its two largest q_c terms (at most two ties per dot product). Beside
 * these, query_out and query_rope_out carry the flips of the rounded c_q (bf16, or the int8
 * quant with int8 W_UQ_QR) whose value lies near a rounding midpoint (ref_prolog.c); with int8
 * W_UQ_QR, sqn is how far the real value of query_norm may move, in int8 steps.
 * Output and cache tensors in `t` give only shapes. Returns 0, -1 on bad input. */
typedef struct ref_prolog_out {
    double *qo, *qr, *qn, *kv, *kr;
    double *sqo, *sqr, *sqn, *skv, *skr;
    double *qns; /* weight_quant_mode 1, 2: [T] the scale of the int8 query_norm (may be NULL);
                  * qn then holds the real value the int8 rounds (cq * smooth / scale) */
    double *sqns; /* [T] how far that scale may move, relative (c_q flips; may be NULL) */
} ref_prolog_out;

int fia_ref_mla_prolog_v3(const fia_mla_prolog_v3_tensors *t,
                          const fia_mla_prolog_v3_params *params, int rounding,
                          const ref_prolog_out *out);

/* The quantized outputs (kv_cache_quant_mode 1, 2, 3; query_quant_mode 1), from the unrounded
 * outputs of fia_ref_mla_prolog_v3 (in `o`) and the quant tensors of `t`, in double, at the
 * contract's rounding points. The int8 values are returned as the real number the contract
 * rounds (before rint and saturation), so a caller can tell a rounding tie from an error:
 *   kvq [T, 512]      mode 1: kv * quant_scale_ckv; mode 2: kv[c] * quant_scale_ckv[c];
 *                     mode 3: per 128-tile, amax = max(max|kv|, 1e-8) * k_nope_clip_alpha
 *                     (1 when NULL), kv clipped to [-amax, amax], scale = amax / 127,
 *                     kvq = kv / scale
 *   kscale [T, 4]     mode 3: the tile scales
 *   krq [T, 64]       mode 2: kr[d] * quant_scale_ckr[d]
 *   qs [T, N]         query_quant_mode 1: s = max|bf16(qo)| / 127 per token and head
 *   qoq [T, N, 512]   bf16(qo) / s
 *   qrq [T, N, 64]    bf16(qr) * quant_scale_ckv / s (0 where s is 0)
 * Arrays of modes not in use may be NULL. Returns 0, -1 on bad input. */
typedef struct ref_prolog_quant {
    double *kvq, *kscale, *krq, *qs, *qoq, *qrq;
} ref_prolog_quant;

int fia_ref_mla_prolog_v3_quant(const fia_mla_prolog_v3_tensors *t,
                                const fia_mla_prolog_v3_params *params, const ref_prolog_out *o,
                                const ref_prolog_quant *q);

#endif /* FIA_REF_PROLOG_H */
