/*
 * ref_prolog.h - double-precision oracle of mla_prolog_v3 (bf16 path), written from the
 * contract in fia/prolog.h (spec: ascend-ops.md section 5).
 *
 * Slow and obvious, sharing no code with src/. Every element is read through its strides.
 * rounding: 0 computes every step in double; 1 rounds to bfloat16 only what feeds a bf16
 * matmul (the normalized c_q and each head's q_c); 2 rounds where the contract's golden does:
 * also x . W_DQ, all of cq . W_UQ_QR and x . W_DKV_KR (fia's rounding points). The final
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
 * query_out, flips of its two largest q_c terms (at most two ties per dot product).
 * Output and cache tensors in `t` give only shapes. Returns 0, -1 on bad input. */
typedef struct ref_prolog_out {
    double *qo, *qr, *qn, *kv, *kr;
    double *sqo, *sqr, *sqn, *skv, *skr;
} ref_prolog_out;

int fia_ref_mla_prolog_v3(const fia_mla_prolog_v3_tensors *t,
                          const fia_mla_prolog_v3_params *params, int rounding,
                          const ref_prolog_out *out);

#endif /* FIA_REF_PROLOG_H */
