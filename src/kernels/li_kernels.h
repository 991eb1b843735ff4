/*
 * li_kernels.h - the scoring kernels of the lightning indexer (lightning_indexer and
 * quant_lightning_indexer): the li family of the kernel registry (registry.inc).
 *
 * Both kernels score a tile of n keys of one query token against all of its heads at once:
 *
 *   float: out[j] = sum_{h < nh} w[h] * ReLU( sum_{c < d} qt[c * ldq + h] * k[j * ldk + c] )
 *   int8:  out[j] = sk[j] * sum_{h < nh} ws[h] * R( ReLU( sum_{c < d} q[h][c] * k[j][c] ) )
 *                   with the dot product exact in int32; R(x) = x, or with f16 set the
 *                   contract's rounding point: R(x) = fp16(x / 1024) (x converted to fp32,
 *                   divided by 1024, rounded to fp16 nearest even, widened back)
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
 * bf16 (slot score_bf16, AMX only: NULL where the CPU has no AMX bf16 or FIA_AMX=0; then the
 * float kernels run):
 *   out[j] = sum_{h < nh} w[h] * ReLU( sum_{c < d} q[h][c] * k[j][c] )   with bf16 q and k,
 *       every product exact in fp32, sums in fp32 in a fixed order (per 32-dim block); it is
 *       tested against the scalar score_f32 on the same (exactly widened) values.
 *   rows  n pointers to the bf16 key rows (d values each, any addresses);
 *   qp    [dpad / 2 x ldq x 2] bf16 (dpad = d rounded up to 32): qp[(c2 * ldq + h) * 2 + t] =
 *         q[h][2 c2 + t], zero beyond d and beyond nh (the pair layout of the tile unit);
 *   w     [ldq] fp32, zero beyond nh; scratch: FIA_LI_BF16_SCRATCH(d) bytes, 64-byte aligned.
 *
 * The scalar kernels are the reference the others are tested against (tests/test_lightning_indexer.c):
 * the float kernel sums in a different order per ISA (fp32 rounding differences), the int8
 * kernel's integer part is exact everywhere.
 */
#ifndef FIA_LI_KERNELS_H
#define FIA_LI_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "fia.h"

enum { FIA_LI_HEAD_PAD = 16, FIA_LI_MAX_HEADS = 64 };

/* The kernel signatures (one typedef per slot: the registry declares every kernel with it). */
typedef void fia_li_keys_to_f32_fn(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                                   float *dst, int64_t ldk);
typedef void fia_li_keys_to_u8_fn(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                                  uint8_t *dst, int64_t ldk);
typedef void fia_li_score_f32_fn(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                                 const float *qt, int64_t ldq, const float *w, float *out);
typedef void fia_li_score_i8_fn(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                                const int8_t *qp, int64_t ldq, const int32_t *qbias,
                                const float *ws, const float *sk, int f16, float *out);

typedef void fia_li_score_bf16_fn(int64_t n, int64_t d, int64_t nh, const void *const *rows,
                                  const uint16_t *qp, int64_t ldq, const float *w, float *out,
                                  void *scratch);

/* The scratch of score_bf16: 16 x 64 fp32 scores and a 16-key stage of dpad bf16. */
#define FIA_LI_BF16_SCRATCH(d) ((size_t)(16 * 64 * 4) + (size_t)(16 * 2) * (size_t)(((d) + 31) / 32 * 32))

typedef struct fia_li_kernels {
    const char *name;  /* the highest CPU feature its kernels use: "scalar", "avx2", ... */
    uint32_t features; /* the FIA_CPU_* bits its kernels use (registry.h) */
    /* dst[j * ldk + c] = fp32(rows[j][c]) for j < n, c < d; rows are float16 or bfloat16 (dt).
     * Exact conversions; an fp16 signalling NaN may come out quiet (it scores like any NaN). */
    fia_li_keys_to_f32_fn *keys_to_f32;
    /* dst[j * ldk + c] = rows[j][c] ^ 0x80 (int8 k as uint8 k + 128) for c < d, and 0x80 for
     * d <= c < d4 * 4 (a zero key), j < n. */
    fia_li_keys_to_u8_fn *keys_to_u8;
    fia_li_score_f32_fn *score_f32;
    fia_li_score_i8_fn *score_i8;
    fia_li_score_bf16_fn *score_bf16; /* NULL unless the CPU has AMX bf16 */
} fia_li_kernels;

#endif /* FIA_LI_KERNELS_H */
