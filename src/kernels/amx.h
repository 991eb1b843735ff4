/*
 * amx.h - AMX (Intel Advanced Matrix Extensions) kernels.
 *
 * Whether AMX is usable is part of the context's CPU features (FIA_CPU_AMX_BF16 / _INT8 from
 * fia_cpu_features(): CPUID, XCR0 and the Linux tile-data permission); the kernels
 * (src/kernels/amx/) are built with -mamx-tile -mamx-bf16 plus AVX-512 BF16 and are called only
 * where the context found them (ctx->amx_bf16). FIA_AMX=0 in the environment when a context is
 * created turns AMX off for it (the AVX-512 paths run instead).
 *
 * MLA decode step (fia_amx_mla_step): one online-softmax step of the absorbed MLA attention over
 * up to FIA_AMX_MLA_STEP keys for a tile of query rows (heads x positions), with the bf16 query
 * and the bf16 latent cache used as they are (no conversion, no transposition of K):
 *   S^T = K . Q^T on bf16 tiles (each product of two bf16 values is exact in fp32, sums in fp32),
 *         times scale after the dot product;
 *   per row: mask to the visible keys [ka[r], ke[r]), online softmax in fp32 (the same state
 *         and update rule as fia_kernels.softmax_tile);
 *   O = alpha . O + P . V with V = the first 512 columns of the latent rows and P split into
 *         two bf16 parts P = hi + lo + O(2^-17 P) (hi = bf16(P), lo = bf16(P - hi)), both
 *         multiplied on tiles into the same fp32 accumulators; with p_bf16 set only hi is used
 *         (P rounded to bf16: the NPU numerics of the contract, an explicit option).
 * AMLA (fia_amx_mla_ext.amla): the softmax of fia_kernels.softmax_tile_amla instead:
 *   e = round(-mx / ln2), c = exp(mx + e ln2) per row (the argument in double, the exp in
 *   fp32), P = exp(s - mx) c, row_exp = max(e - e_old, -255), l = l 2^row_exp + sum P; and
 *   O = O . 2^row_exp + P . V with the rescale an integer add on the fp32 exponent bits (an
 *   element leaving the normal range becomes +-0; kernels.h gemm_f32_acc).
 * PA_NZ rows (fia_amx_mla_ext.k_chunk_bytes, r_chunk_bytes): each key block's rows are gathered
 *   from their 16-element chunks into a row-major stage first; the results are bitwise those of
 *   the same rows given contiguous.
 * Results are deterministic (a fixed order of tile operations) and independent of threads.
 */
#ifndef FIA_KERNELS_AMX_H
#define FIA_KERNELS_AMX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    FIA_AMX_MLA_DN = 512,  /* latent width (also V and O) */
    FIA_AMX_MLA_DR = 64,   /* rope width */
    FIA_AMX_MLA_STEP = 128  /* most keys per step (a multiple of 32) */
};

/* Bytes of the per-thread scratch of fia_amx_mla_step for rows_pad rows (a multiple of 16). */
size_t fia_amx_mla_scratch_bytes(int64_t rows_pad);

/* Packs the query tile (rows r < rows; rows up to rows_pad are zero) into qt, the layout the
 * tile multiplies read (rows_pad / 16 x 18 tiles of 1 KiB): qn[r] the 512 latent and qr[r] the
 * 64 rope bf16 values of row r. */
void fia_amx_mla_pack_q(int64_t rows, int64_t rows_pad, const uint16_t *const *qn,
                        const uint16_t *const *qr, uint16_t *qt);

typedef struct fia_amx_mla_args {
    int64_t rows, rows_pad;         /* query rows, rounded up to 16 */
    int64_t n;                      /* keys of this step, 1..FIA_AMX_MLA_STEP */
    const uint16_t *const *krows;   /* n latent rows (512 bf16): K (512) and V */
    const uint16_t *const *rrows;   /* n rope rows (64 bf16) */
    const uint16_t *qt;             /* fia_amx_mla_pack_q */
    const int32_t *ka, *ke;         /* per row r < rows: visible keys [ka, ke) of the step */
    float scale;
    bool first;                     /* O holds nothing yet (it is overwritten, never read) */
    bool p_bf16;                    /* P rounded to bf16 (one part) instead of hi + lo */
    float *m, *l;                   /* per row: running max and sum (rows entries) */
    float *o;                       /* rows_pad x 512 fp32 accumulator, rows ldo apart */
    int64_t ldo;                    /* >= 512 */
    void *scratch;                  /* fia_amx_mla_scratch_bytes, 64-byte aligned */
} fia_amx_mla_args;

/* The cache layout and rescale variant of a step (fia_amx_mla_step_ext); all zero: rows
 * contiguous, the default (multiply) rescale, as fia_amx_mla_step. */
typedef struct fia_amx_mla_ext {
    int64_t k_chunk_bytes;          /* PA_NZ latent rows: krows[j] is chunk 0 of row j (16 bf16),
                                     * chunk c at krows[j] + c k_chunk_bytes; 0: rows contiguous */
    int64_t r_chunk_bytes;          /* the same for the rope rows */
    bool amla;                      /* AMLA rescale (kernels.h softmax_tile_amla): P relative to
                                     * 2^-e[r], O rescaled by an exponent add */
    int32_t *e;                     /* AMLA: per row its power-of-two exponent (rows entries) */
} fia_amx_mla_ext;

/* One step; returns whether any row saw a key (when not, nothing was changed). */
bool fia_amx_mla_step(const fia_amx_mla_args *a);

/* The rows of the next step (or of whatever the caller reads next): n rows of row_bytes[i]
 * bytes at rows[i][j] (i = 0, 1; rows[1] may be NULL). */
typedef struct fia_amx_mla_next {
    const void *const *rows[2];
    int64_t row_bytes[2];
    int64_t n;
} fia_amx_mla_next;

/* fia_amx_mla_step that also brings the rows of `next` (may be NULL) into L2, the prefetches
 * spread over the step's tile multiplies (a burst of them before the step stalls on the line
 * fill buffers); the results are those of fia_amx_mla_step. */
bool fia_amx_mla_step_next(const fia_amx_mla_args *a, const fia_amx_mla_next *next);

/* fia_amx_mla_step_next with a cache layout and rescale variant (x may be NULL: all zero). */
bool fia_amx_mla_step_ext(const fia_amx_mla_args *a, const fia_amx_mla_ext *x,
                          const fia_amx_mla_next *next);

#endif /* FIA_KERNELS_AMX_H */
