/*
 * gemm.h - the projections of the MLA prolog, hidden behind one small interface so that nothing
 * else in fia sees the GEMM library (oneDNN, when the build found it: gemm_dnnl.c).
 *
 * A gemm is planned once for fixed shapes and strides and run many times on new addresses:
 *   C[b][m][n] = sum_k A[b][m][k] * B[b][k][n]        b < batch, m < M, n < N, k < K
 * A and B are bfloat16, C is bfloat16 (rounded to nearest even from the fp32 accumulation) or
 * float32. Strides count elements; the innermost stride of each matrix is 1. The library picks
 * its kernels at run time from the CPU (AMX, AVX512-BF16, AVX-512, AVX2); fia's own ISA level
 * (FIA_ISA) does not apply to it. Where the library has no bf16 matmul (oneDNN 2.6 on a CPU
 * without AVX-512, or under ONEDNN_MAX_CPU_ISA=AVX2), a bf16 gemm is planned as an fp32 one:
 * B widened to fp32 once (packed_b) or per run, A widened per run into the scratch, fp32
 * accumulation, C rounded to bf16 (nearest even) or written as fp32 (fia_gemm_widened); at
 * decode sizes (desc.core) fia's own gemm_bf16b does the same from bf16 B.
 *
 * Planning may allocate and may take milliseconds (kernel generation); running never allocates
 * fia memory: the library's scratch memory comes from the caller (scratch_bytes, 64-aligned).
 * Determinism: the library runs on one thread per call in fia (see gemm_dnnl.c), and the prolog
 * cuts the work into fixed column panels, so a result never depends on the thread count.
 */
#ifndef FIA_OPS_PROLOG_GEMM_H
#define FIA_OPS_PROLOG_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fia.h"
#include "kernels/i8gemm.h"
#include "kernels/kernels.h"

typedef struct fia_gemm_desc {
    int64_t M, N, K;
    int64_t lda, ldb, ldc;  /* row strides of A, B and C (elements) */
    fia_dtype c_dtype;      /* FIA_DTYPE_BFLOAT16 or FIA_DTYPE_FLOAT32 with bfloat16 A and B;
                             * FIA_DTYPE_INT32: int8 A and B, exact int32 sums (the prolog's
                             * weight_quant_mode 1 and 2; the caller dequantizes) */
    bool packed_b;          /* B is run pre-packed (fia_gemm_pack_b) in the blocked layout the
                             * library prefers for this gemm, so that a run never re-packs it;
                             * ldb is then the stride of the plain B that pack_b reads */
    bool wt;                /* (with packed_b) run as C^T = B^T A^T: the packed form of B is
                             * B^T ([N x K], dense rows), the library's A operand, and A is its
                             * small B operand; C^T lands dense in the scratch and is written
                             * out transposed. For a small M (decode), where the library's
                             * kernels stream a large A faster than a packed B */
    const fia_i8_kernels *i8; /* (int32 C, may be NULL) fia's exact int8 kernels (VNNI, AMX
                             * int8, AVX2, scalar), which then run the gemm instead of the
                             * library: its packed B is fia's pack, made once by
                             * fia_gemm_pack_b (packed_b) or per run into the scratch. oneDNN
                             * 2.6's own s8 matmul re-packs plain weights on every call
                             * (DeepSeek-V3.2 prolog decode T=1, weight_quant_mode 2, cold
                             * caches: 10.2 ms against 2.6 ms on fia's kernels with the pack
                             * made at plan time)
                             * and is not exact below AVX-512 VNNI (vpmaddubsw sums u8 x s8
                             * pairs in saturating int16: AVX2 CPUs, Skylake-SP). Without i8
                             * an int8 gemm runs on the library where it is exact */
    const fia_kernels *core; /* (bf16 A and B, may be NULL) fia's core kernels: where the
                             * library has no bf16 matmul (oneDNN 2.6 below AVX-512) and M <=
                             * FIA_GEMM_BF16B_MAX_M, the gemm runs on their gemm_bf16b, which
                             * streams B as bf16 (fia_bf16b_pack, made once by
                             * fia_gemm_pack_b or per run into the scratch) instead of the
                             * library's fp32 matmul on B widened to fp32 (twice the bytes) */
} fia_gemm_desc;

/* The largest M that desc.core serves: the decode projections, which stream their weights;
 * larger M (prefill) keeps the library's fp32 matmul, whose blocking reuses B across rows. */
#define FIA_GEMM_BF16B_MAX_M 16

typedef struct fia_gemm fia_gemm;

/* Whether fia was built with a GEMM library; when not, *why (may be NULL) says what to install. */
bool fia_gemm_available(const char **why);

/* Plans one gemm, runnable from `slots` threads at once (slot = the thread's index). Returns
 * FIA_STATUS_UNSUPPORTED (message set) when no library was built in or it refuses the shapes,
 * FIA_STATUS_OUT_OF_MEMORY. *scratch_bytes: the scratch memory one run needs. */
fia_status fia_gemm_create(const fia_gemm_desc *d, int32_t slots, fia_gemm **g,
                           size_t *scratch_bytes);

/* Runs on the calling thread only (the library's own threading is held to one thread for the
 * call). Returns false when the library failed (it does not for a gemm it planned). */
bool fia_gemm_run(fia_gemm *g, int32_t slot, const void *a, const void *b, void *c,
                  void *scratch);

/* Pre-packed B (desc.packed_b): the bytes of the packed form (0 for a gemm planned without
 * packed_b), and the packing itself, plain B (row stride ldb) -> packed (64-aligned), done once
 * at plan time (it may use the library's threads: it only moves values). fia_gemm_run then
 * takes the packed copy as b. */
size_t fia_gemm_packed_b_bytes(const fia_gemm *g);
bool fia_gemm_pack_b(fia_gemm *g, const void *b, void *packed);
/* Whether two gemms planned with packed_b want B in the same packed layout (same K x N). */
bool fia_gemm_same_packing(const fia_gemm *x, const fia_gemm *y);

/* The implementation the library chose (for FIA_VERBOSE), e.g. "brg:avx512_core_amx_bf16";
 * "f32:..." for the fp32 fallback. */
const char *fia_gemm_impl(const fia_gemm *g);
/* Whether the gemm runs other arithmetic than the library's matmul of its dtypes: a bf16 one
 * as an fp32 matmul (no bf16 matmul in the library here), an int8 one on fia's kernels
 * (desc.i8). */
bool fia_gemm_widened(const fia_gemm *g);

void fia_gemm_destroy(fia_gemm *g); /* NULL is a no-op */

/* ---- A gemm cut into fixed tiles of mc rows x nc columns (at most 4 tile shapes), one task
 * per tile, so that fia's thread pool runs the tiles and the cut never depends on the thread
 * count. ---- */
typedef struct fia_tgemm {
    fia_gemm_desc d;
    int64_t mc, nc, mtiles, ntiles;
    fia_gemm *g[4];         /* [full rows | tail rows] x [full cols | tail cols] */
    size_t scratch_bytes;   /* per slot */
    /* pre-packed B (fia_tgemm_pack): per row variant (full rows / tail rows, the same buffer
     * when both want the same layout), per batch matrix and column tile, panels of
     * panel_bytes; owned by the tgemm */
    void *packed[2];
    int64_t batch;
    size_t panel_bytes;
} fia_tgemm;

fia_status fia_tgemm_plan(fia_tgemm *t, const fia_gemm_desc *d, int64_t mc, int64_t nc,
                          int32_t slots);
static inline int64_t fia_tgemm_tasks(const fia_tgemm *t) { return t->mtiles * t->ntiles; }
/* a, b: bfloat16 (int8 when c_dtype is FIA_DTYPE_INT32); c: c_dtype. */
bool fia_tgemm_run_task(fia_tgemm *t, int64_t task, int32_t slot, const void *a, const void *b,
                        void *c, void *scratch);
/* Pre-packing (d->packed_b set at fia_tgemm_plan): copies the `batch` plain B matrices at
 * b + i * batch_stride elements (i < batch) into tgemm-owned packed panels, once. Then
 * fia_tgemm_run_packed runs a tile of batch matrix bi without re-packing. */
fia_status fia_tgemm_pack(fia_tgemm *t, const void *b, int64_t batch, int64_t batch_stride);
bool fia_tgemm_run_packed(fia_tgemm *t, int64_t task, int32_t slot, const void *a, int64_t bi,
                          void *c, void *scratch);
void fia_tgemm_free(fia_tgemm *t); /* also frees the packed panels */

#endif /* FIA_OPS_PROLOG_GEMM_H */
