/*
 * i8gemm.h - the int8 GEMM kernel table: u8 x s8 -> exact int32 dot products with a fused fp32
 * epilogue. Used by the int8 MLA path of fused_infer_attention_score (S = Q8 . K8^T over the
 * 512-deep latent, O = beta . O + P8 . V8) and by the quantized lightning indexer.
 *
 * Variants with one contract (the i8 family of registry.inc): scalar (plain C, the reference),
 * AVX2 (vpmaddwd on int16-widened bytes; bit identical to scalar), AVX-512 VNNI (vpdpbusd) and,
 * for the gemm slot only, AMX int8 tiles (amx/i8gemm_amx.c: tdpbusd reading the VNNI pack in
 * place, results bitwise the VNNI gemm's), chosen by the context from the CPU features. All read
 * and write the same packed B format, so a panel packed by one may be used by another's gemm.
 *
 * Packed B panel (B is the logical k x n matrix, b[t][j], t < k depth, j < n columns):
 *   k4 = ceil(k / 4), panels = ceil(n / 16), panel_bytes = 64 * k4 + 64,
 *   pack_bytes(n, k) = panels * panel_bytes (0 when n == 0).
 *   Panel p (columns 16p .. 16p+15) starts at byte p * panel_bytes of the pack and holds
 *     int8    [64 * g + 4 * c + t] = b[4g + t][16p + c]   for g < k4, c < 16, t < 4
 *                                     (0 where 4g + t >= k or 16p + c >= n)
 *     int32   colsum[c] at byte 64 * k4 + 4 * c = sum_{t<k} b[t][16p + c]   (0 past n)
 *   i.e. each 64-byte group is one zmm in the vpdpbusd layout (16 columns x 4 depth bytes),
 *   followed by the column sums used for the u8 offset correction. Every byte of the pack is
 *   written (padding included); nothing past pack_bytes is. The pack may have any alignment;
 *   64-byte alignment is best for speed.
 *
 * Entries:
 *   pack_bytes(n, k)                    the size above (n, k >= 0).
 *   pack_b_nk(rows, n, k, packed)       B given as n rows of k int8 each: rows[j][t] = b[t][j]
 *                                       (row j = column j of B, e.g. the keys of a K tile; the
 *                                       rows are separate pointers so paged caches need no copy).
 *   pack_b_kn(rows, k, n, packed)       B given as k rows of n int8 each: rows[t][j] = b[t][j]
 *                                       (e.g. V rows: depth = keys, columns = channels).
 *                                       Both read exactly the named bytes (rows[i][0 .. len-1]).
 *   gemm(m, n, k, a, lda, packed, c, ldc, row_scale, row_beta, a_offset)
 *       for r < m, j < n:
 *         dot      = sum_{t<k} (int32)a[r * lda + t] * (int32)b[t][j] - a_offset * colsum[j]
 *         c[r*ldc + j] = (row_beta ? row_beta[r] * c[r*ldc + j] : 0)
 *                        + (row_scale ? row_scale[r] : 1) * (float)dot
 *       a: m rows of k unsigned bytes (lda >= k; only a[r*lda + t], t < k, is read).
 *       packed: a pack of exactly this n and k (made by either variant's pack_b_*).
 *       c: fp32, ldc >= n; with row_beta NULL, c is only written (never read: NaN garbage is
 *          fine). Elements outside the m x n block are never touched.
 *       a_offset: 0 for a naturally unsigned A (probabilities quantized to 0..255); 128 when the
 *          caller turned a signed int8 A into unsigned bytes with s8_to_u8_offset (x ^ 0x80):
 *          then dot is exactly the s8 x s8 product sum_t a_s8[r][t] * b[t][j].
 *       The integer part is exact (vpdpbusd semantics: u8 x s8 products summed in int32, no
 *       saturation) provided the true sums fit in int32: k <= 65536 guarantees it. It is then
 *       converted to float once (round to nearest even). The epilogue is
 *       x = (float)dot; x *= row_scale[r]; c = row_beta[r] * c + x; the VNNI table may fuse
 *       the last step into one FMA (so results agree with the scalar table to ~1 ulp of the
 *       larger term; with row_beta NULL they are bit identical).
 *       m, n == 0: no-op. k == 0: dot = 0 (the epilogue still runs).
 *   s8_to_u8_offset(src, dst, n)        dst[i] = (uint8_t)(src[i] ^ 0x80), i < n (src == dst ok).
 *
 * Common rules (as kernels.h): sizes >= 0, any alignment, no allocation, no global state;
 * kernels may run concurrently on disjoint outputs.
 */
#ifndef FIA_KERNELS_I8GEMM_H
#define FIA_KERNELS_I8GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The kernel signatures (one typedef per slot: the registry declares every kernel with it). */
typedef size_t fia_i8_pack_bytes_fn(int64_t n, int64_t k);
typedef void fia_i8_pack_b_nk_fn(const int8_t *const *rows, int64_t n, int64_t k, void *packed);
typedef void fia_i8_pack_b_kn_fn(const int8_t *const *rows, int64_t k, int64_t n, void *packed);
typedef void fia_i8_gemm_fn(int64_t m, int64_t n, int64_t k, const uint8_t *a, int64_t lda,
                            const void *packed, float *c, int64_t ldc, const float *row_scale,
                            const float *row_beta, int32_t a_offset);
typedef void fia_i8_s8_to_u8_offset_fn(const int8_t *src, uint8_t *dst, int64_t n);

typedef struct fia_i8_kernels {
    const char *name;  /* the highest CPU feature its kernels use: "scalar", "avx2", ... */
    uint32_t features; /* the FIA_CPU_* bits its kernels use (registry.h) */

    fia_i8_pack_bytes_fn *pack_bytes;
    fia_i8_pack_b_nk_fn *pack_b_nk;
    fia_i8_pack_b_kn_fn *pack_b_kn;
    fia_i8_gemm_fn *gemm;
    fia_i8_s8_to_u8_offset_fn *s8_to_u8_offset;
} fia_i8_kernels;

#endif /* FIA_KERNELS_I8GEMM_H */
