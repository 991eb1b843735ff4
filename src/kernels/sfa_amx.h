/*
 * sfa_amx.h - AMX bf16 kernels of the C8 sparse flash attention step
 * (kv_quant_sparse_flash_attention, src/kernels/amx/sfa_amx.c; the caller is src/ops/sfa_exec.c).
 *
 * The contract casts each dequantized k_nope value to the query dtype, and with a bfloat16
 * query that rounded row (with the bf16 k_rope) is exactly a bf16 row: K for Q.K^T and V for
 * P.V. It also casts P to the query dtype before P.V. So both products run on AMX bf16 tiles
 * with no loss against the fp32 path: every product of two bf16 values is exact in fp32 and
 * the tiles sum in fp32. A step of up to FIA_SFA_AMX_KEYS keys is
 *   fia_sfa_amx_c8_stage   the C8 rows dequantized (one fp32 multiply per value, the tile's
 *                          scale, as c8_rows_to_f32) and rounded to bf16 (nearest even), into
 *                          the K rows and the V pair layout of the scratch;
 *   fia_sfa_amx_scores     S[r][j] = scale * (Q_r . K_j) in fp32 (the scale after the dot);
 *   (the caller's online-softmax step, fia_kernels.softmax_tile, turns S into p = exp(s - m))
 *   fia_sfa_amx_pv         O[r] = f[r] O[r] + sum_j bf16(p[r][j] * c[r]) V_j: P rounded to bf16
 *                          on the caller's scale c[r] (sparse.h: c = exp(m - k ln2), so that
 *                          the rounded mantissas do not depend on the running max), the
 *                          accumulator rescaled by f[r] first.
 * Every result element depends only on its own row and the keys: results do not depend on how
 * many rows a call has (the head block), so they are the same for every thread count.
 * The kernels are built with the AMX flags and called only where the context has amx_bf16.
 */
#ifndef FIA_KERNELS_SFA_AMX_H
#define FIA_KERNELS_SFA_AMX_H

#include <stddef.h>
#include <stdint.h>

enum {
    FIA_SFA_AMX_KEYS = 128,  /* most keys per step (a multiple of 32) */
    FIA_SFA_AMX_ROWS = 128   /* most rows (heads) per call */
};

/* Bytes of the scratch (64-byte aligned) of the step kernels for rows_pad rows (a multiple of
 * 16, at most FIA_SFA_AMX_ROWS). One scratch serves a sequence of steps. */
size_t fia_sfa_amx_scratch_bytes(int64_t rows_pad);

/* Packs the query (q[r]: 576 bf16, the 512 latent then the 64 rope values of row r < rows;
 * rows up to rows_pad are zero) into qt (rows_pad x 576 bf16), the layout the tiles read. */
void fia_sfa_amx_pack_q(int64_t rows, int64_t rows_pad, const uint16_t *const *q, uint16_t *qt);

/* Dequantizes the n (1..FIA_SFA_AMX_KEYS) C8 rows (kernels/sfa_kernels.h, any alignment) into
 * the scratch: k_nope[c] = bf16((float)int8[c] * scale[c / 128]), k_rope as it is; keys n up
 * to the next multiple of 32 are zero. */
void fia_sfa_amx_c8_stage(const void *const *rows, int64_t n, int64_t rows_pad, void *scratch);

/* S[r * lds + j] = scale * sum_c qt_r[c] K_j[c] (fp32) for r < rows, j < n (the staged keys);
 * columns j up to the next multiple of 16 are written too (lds >= that).
 * next: the nn C8 rows of the next step (may be NULL when nn is 0): scores brings the first
 * half of their cache lines into L2, pv the second half, spread over the tile multiplies (a
 * burst of prefetches stalls on the line fill buffers). */
void fia_sfa_amx_scores(int64_t rows, int64_t rows_pad, int64_t n, const uint16_t *qt,
                        float scale, float *s, int64_t lds, const void *const *next, int64_t nn,
                        void *scratch);

/* For r < rows_pad: O[r][0..512) (rows ldo >= 512 floats apart, rows_pad rows allocated):
 *   f[r] == 0: O[r] = 0 first (its old contents, maybe NaN garbage, are never read);
 *   f[r] == 1: kept; otherwise O[r] *= f[r];
 * then, for r < rows, O[r][d] += sum_{j<n} bf16(p[r * ldp + j] * c[r]) * V_j[d] (fp32 products
 * and sums on the tiles; bf16(): nearest even; V the staged keys). Rows r >= rows add
 * nothing. post (NULL: none): then O[r] *= post[r] for r < rows (an fp32 multiply; skipped
 * where post[r] == 1), while the block is still in L1. */
void fia_sfa_amx_pv(int64_t rows, int64_t rows_pad, int64_t n, const float *p, int64_t ldp,
                    const float *c, const float *f, float *o, int64_t ldo, const float *post,
                    const void *const *next, int64_t nn, void *scratch);

#endif /* FIA_KERNELS_SFA_AMX_H */
