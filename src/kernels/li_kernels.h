/*
 * li_kernels.h - the scoring kernels of the lightning indexer (lightning_indexer and
 * quant_lightning_indexer), one small table per ISA.
 *
 * Both kernels score a tile of n keys of one query token against all of its heads at once:
 *
 *   float: out[j] = sum_{h < nh} w[h] * ReLU( sum_{c < d} qt[c * ldq + h] * k[j * ldk + c] )
 *   int8:  out[j] = sk[j] * sum_{h < nh} ws[h] * ReLU( sum_{c < d} q[h][c] * k[j][c] )
 *                   with the dot product exact in int32
 *
 * so the [nh x n] intermediate lives in registers only. The operator (src/ops/lightning_indexer.c)
 * converts or re-biases a tile of keys once (fp32 rows, or uint8 rows for the int8 form) and
 * calls the kernel for every query token that reads the tile.
 *
 * Operand layouts (prepared once per query token by the operator):
 *   qt  [d x ldq] fp32: the query heads transposed (column h is head h). ldq is nh rounded up to
 *       a multiple of 16 (FIA_LI_HEAD_PAD); columns nh..ldq-1 must be finite (zeros).
 *   w   [ldq] fp32 head weights; entries beyond nh are ignored.
 *   k   [n x ldk] fp32 key rows (ldk >= d).
 *   qp  [d4 x ldq x 4] int8 (d4 = ceil(d / 4)): qp[(c4 * ldq + h) * 4 + t] = q[h][4 c4 + t],
 *       zero beyond d and beyond nh.
 *   ku  [n x ldk] uint8 keys re-biased by +128 (k ^ 0x80), ldk >= 4 d4, zero-padded to 4 d4
 *       bytes per row with the value 128 (a zero key). Then sum_c ku[j][c] * q[h][c]
 *       = q.k + 128 * sum_c q[h][c], and qbias[h] = 128 * sum_c q[h][c] is subtracted exactly.
 *   ws  [ldq] fp32 per-head factors (weight x query dequant scale); sk [n] key scales.
 * Sizes: n >= 0, 1 <= nh <= 64, 1 <= d. Outputs out[0..n). NaN / inf inputs propagate through
 * fp32 arithmetic (ReLU of NaN is 0 on AVX-512 and NaN in the scalar code: the operator ranks NaN
 * scores last either way). No allocation; kernels may run concurrently on disjoint outputs.
 *
 * The scalar table is the reference the others are tested against (tests/test_lightning_indexer.c):
 * the float kernel sums in a different order per ISA (fp32 rounding differences), the int8
 * kernel's integer part is exact everywhere.
 */
#ifndef FIA_LI_KERNELS_H
#define FIA_LI_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "fia.h"

enum { FIA_LI_HEAD_PAD = 16, FIA_LI_MAX_HEADS = 64 };

typedef struct fia_li_kernels {
    const char *name;
    /* dst[j * ldk + c] = fp32(rows[j][c]) for j < n, c < d; rows are float16 or bfloat16 (dt).
     * Exact conversions; an fp16 signalling NaN may come out quiet (it scores like any NaN). */
    void (*keys_to_f32)(int64_t n, int64_t d, const void *const *rows, fia_dtype dt, float *dst,
                        int64_t ldk);
    /* dst[j * ldk + c] = rows[j][c] ^ 0x80 (int8 k as uint8 k + 128) for c < d, and 0x80 for
     * d <= c < d4 * 4 (a zero key), j < n. */
    void (*keys_to_u8)(int64_t n, int64_t d, int64_t d4, const void *const *rows, uint8_t *dst,
                       int64_t ldk);
    void (*score_f32)(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                      const float *qt, int64_t ldq, const float *w, float *out);
    void (*score_i8)(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                     const int8_t *qp, int64_t ldq, const int32_t *qbias, const float *ws,
                     const float *sk, float *out);
} fia_li_kernels;

extern const fia_li_kernels fia_li_kernels_scalar;
extern const fia_li_kernels fia_li_kernels_avx2;   /* avx2 float and int8 (vpmaddwd) kernels */
extern const fia_li_kernels fia_li_kernels_avx512; /* avx512 float, int8 without VNNI: scalar */
extern const fia_li_kernels fia_li_kernels_avx512_vnni;

/* The table for a context's level (vnni: the context found AVX-512 VNNI). */
static inline const fia_li_kernels *fia_li_kernels_for(fia_isa isa, bool vnni) {
    if (isa == FIA_ISA_AVX512) return vnni ? &fia_li_kernels_avx512_vnni : &fia_li_kernels_avx512;
    if (isa == FIA_ISA_AVX2) return &fia_li_kernels_avx2;
    return &fia_li_kernels_scalar;
}

/* The kernels of each ISA shared between the tables. */
void fia_li_keys_to_f32_scalar(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                               float *dst, int64_t ldk);
void fia_li_keys_to_f32_avx512(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                               float *dst, int64_t ldk);
void fia_li_keys_to_u8_scalar(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                              uint8_t *dst, int64_t ldk);
void fia_li_keys_to_u8_avx512(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                              uint8_t *dst, int64_t ldk);
void fia_li_score_i8_scalar(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                            const int8_t *qp, int64_t ldq, const int32_t *qbias, const float *ws,
                            const float *sk, float *out);
void fia_li_score_f32_avx512(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                             const float *qt, int64_t ldq, const float *w, float *out);

#endif /* FIA_LI_KERNELS_H */
