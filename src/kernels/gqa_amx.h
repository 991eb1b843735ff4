/*
 * gqa_amx.h - AMX bf16 kernels of the GQA / MHA prefill tiles of fused_infer_attention_score
 * (src/kernels/amx/gqa_amx.c; the caller is src/ops/fia_exec.c, its GEMM tiles when the query,
 * key and value are bfloat16 and the context has amx_bf16).
 *
 * One KV head of one tile step is S = Q . K^T, the caller's mask, the online softmax, then
 * O = alpha . O + P . V:
 *   fia_amx_gqa_qk   S[r][j] = scale * (Q_r . K_j): the bf16 query rows as they are (copied
 *                    once per item into a row-major block) times the bf16 keys on tiles; every
 *                    product of two bf16 values is exact in fp32 and the tiles sum in fp32, the
 *                    scale is applied after the dot product (one fp32 multiply, here or, for a
 *                    positive scale, in fia_amx_gqa_softmax after the caller's mask).
 *   fia_amx_gqa_softmax  softmax_tile's rule (the same e^x, exp_avx512.h): the row max and
 *                    alpha here; e^x, the row sums and P (two bf16 parts in the scratch instead
 *                    of fp32 in S) in fia_amx_gqa_pv, between its tile operations.
 *   fia_amx_gqa_pv   O = alpha . O + P . V with P (fp32, from the softmax) split into two bf16
 *                    parts P = hi + lo + O(2^-17 P) (hi = bf16(P), lo = bf16(P - hi)), both
 *                    multiplied with the bf16 V on tiles into the same fp32 accumulators: the
 *                    result is within fp32 accuracy of the exact P . V (as kernels/amx.h's MLA).
 * Layouts: Q rows_pad x D bf16 (row-major, packed by the caller once per item); K^T in the pair (VNNI)
 * layout of B tiles, packed per call from the key rows (16 x 16 dword transposes); V rows
 * interleaved in pairs (B tiles); P hi / lo rows_pad x (n rounded up to 32) bf16 (A tiles).
 * Every result element depends only on its own row and the keys (a fixed order of tile
 * operations): results do not depend on the thread count or on how many rows a call has.
 * Shapes: D a multiple of 32, Dv a multiple of 64 (fia_amx_gqa_fits); n keys per call up to
 * the nk the scratch was sized for.
 */
#ifndef FIA_KERNELS_GQA_AMX_H
#define FIA_KERNELS_GQA_AMX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Whether the kernels take head dims D (Q.K^T) and Dv (P.V). */
static inline bool fia_amx_gqa_fits(int64_t D, int64_t Dv) {
    return D > 0 && D % 32 == 0 && D <= 512 && Dv > 0 && Dv % 64 == 0 && Dv <= 512;
}

/* Bytes of the per-thread scratch (64-byte aligned) for calls of up to rows_pad rows (a
 * multiple of 16) and nk keys (a multiple of 32). */
size_t fia_amx_gqa_scratch_bytes(int64_t rows_pad, int64_t D, int64_t Dv, int64_t nk);

/* S[r * lds + j] = scale * sum_{c<D} Q[r][c] K_j[c] (scale 1: the raw dot products, for a
 * scale fia_amx_gqa_softmax applies) for r < rows, j < n (K_j = krows[j], D
 * bf16); S rows up to rows rounded to 16 and columns up to n rounded to 16 are written too (S
 * has that room; lds >= n rounded up to 16). qb: the query rows, rows rounded up to 16 x D bf16
 * (row-major, the rows beyond `rows` zero or any finite values). pf: npf key rows of the
 * next step, brought into L2 while the keys are packed. */
void fia_amx_gqa_qk(int64_t rows, int64_t n, int64_t D, const uint16_t *qb,
                    const void *const *krows, float scale, float *s, int64_t lds,
                    const void *const *pf, int64_t npf, void *scratch);

/* The online-softmax step of fia_kernels.softmax_tile on S (r < rows, j < n, rows lds apart)
 * times scale (> 0; the max is taken over the raw scores and scaled once, which for a positive
 * scale is the max of the scaled scores), with the same state rules (row_max, row_sum, alpha)
 * and values, except that row_max and alpha are final on return, while row_sum and P (not
 * written back into S but kept in the scratch as its bf16 hi and lo parts) are computed by the
 * fia_amx_gqa_pv of the same rows and n that must follow (S, row_max, row_sum and alpha stay
 * in place until it returns). */
void fia_amx_gqa_softmax(int64_t rows, int64_t n, const float *s, int64_t lds, float scale,
                         float *row_max, float *row_sum, float *alpha, void *scratch);

/* O[r][c] = (alpha ? alpha[r] O[r][c] : 0) + sum_{j<n} P[r][j] V_j[c] for r < rows, c < Dv
 * (O rows ldo floats apart, only rows r < rows touched; with alpha NULL O is never read);
 * P and row_sum the step fia_amx_gqa_softmax left pending (row block hb + 1's P computed on the
 * vector units while the tiles multiply block hb), V_j = vrows[j] (Dv bf16).
 * pf: npf value rows of the next step (L2). */
void fia_amx_gqa_pv(int64_t rows, int64_t n, int64_t Dv, const void *const *vrows, float *o,
                    int64_t ldo, const float *alpha, const void *const *pf, int64_t npf,
                    void *scratch);

#endif /* FIA_KERNELS_GQA_AMX_H */
