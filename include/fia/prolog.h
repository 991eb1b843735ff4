/*
 * fia/prolog.h - the MLA pre-processing operator of DeepSeek-V3.2 / GLM-5 (npu_mla_prolog_v3):
 * the query and latent-KV projections, their RMSNorms and RoPE, and the write of the latent
 * and rope caches that sparse_flash_attention / fused_infer_attention_score (MLA) then read.
 */
#ifndef FIA_PROLOG_H
#define FIA_PROLOG_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parameters, named after the torch_npu keywords of npu_mla_prolog_v3. Call
 * fia_mla_prolog_v3_params_init() first: it sets the defaults listed here. */
typedef struct fia_mla_prolog_v3_params {
    uint32_t struct_size;         /* sizeof the struct: set by _params_init */
    double rmsnorm_epsilon_cq;    /* default 1e-5 */
    double rmsnorm_epsilon_ckv;   /* default 1e-5 */
    fia_layout cache_mode;        /* PA_BSND (default), PA_NZ, BSND or TND */
    int32_t query_norm_flag;      /* nonzero: write query_norm (default 0) */
    int32_t weight_quant_mode;    /* 0 (default), 1, 2: see "Int8 weights" below (3-5:
                                   * FIA_STATUS_UNSUPPORTED) */
    int32_t kv_cache_quant_mode;  /* 0 (default), 1, 2, 3: see "Quantized caches" below */
    int32_t query_quant_mode;     /* 0 (default), 1 (with kv_cache_quant_mode 1) */
    int32_t ckvkr_repo_mode;      /* 1 with kv_cache_quant_mode 3, else 0 (default) */
    int32_t quant_scale_repo_mode; /* 1 with kv_cache_quant_mode 3, else 0 (default) */
    int64_t tile_size;            /* default 128 (kv_cache_quant_mode 3: must be 128) */
    double qc_qr_scale;           /* alpha_q, default 1.0 */
    double kc_scale;              /* alpha_kv, default 1.0 */
    int32_t prepack_weights;      /* 1 (default): fia_mla_prolog_v3_plan packs the four weight
                                   * matrices once into plan-owned memory (bf16 ones in the GEMM
                                   * library's blocked layout, int8 ones in the pack of fia's
                                   * int8 kernels; see "Weights" below); 0: the plan keeps the
                                   * caller's pointers and they are packed per call. The
                                   * one-shot fia_mla_prolog_v3 never packs. */
} fia_mla_prolog_v3_params;

/* Sets the defaults listed above. */
FIA_API void fia_mla_prolog_v3_params_init(fia_mla_prolog_v3_params *p);

/* Tensors of one call. Optional tensors are NULL when absent. The quantization tensors belong to
 * their modes (below) and must be NULL otherwise ("<name> is given, but only read when ...");
 * actual_seq_len (the PA_BLK modes) is not implemented and must be NULL. */
typedef struct fia_mla_prolog_v3_tensors {
    const fia_tensor *token_x;
    const fia_tensor *weight_dq;
    const fia_tensor *weight_uq_qr;
    const fia_tensor *weight_uk;
    const fia_tensor *weight_dkv_kr;
    const fia_tensor *rmsnorm_gamma_cq;
    const fia_tensor *rmsnorm_gamma_ckv;
    const fia_tensor *rope_sin;
    const fia_tensor *rope_cos;
    fia_tensor *kv_cache;             /* updated in place */
    fia_tensor *kr_cache;             /* updated in place */
    const fia_tensor *cache_index;    /* int64, required for PA_BSND */
    const fia_tensor *dequant_scale_x;
    const fia_tensor *dequant_scale_w_dq;
    const fia_tensor *dequant_scale_w_uq_qr;
    const fia_tensor *dequant_scale_w_dkv_kr;
    const fia_tensor *quant_scale_ckv;
    const fia_tensor *quant_scale_ckr;
    const fia_tensor *smooth_scales_cq;
    const fia_tensor *actual_seq_len;
    const fia_tensor *k_nope_clip_alpha;
    fia_tensor *query_out;            /* output */
    fia_tensor *query_rope_out;       /* output */
    fia_tensor *dequant_scale_q_nope; /* output of query_quant_mode 1, else NULL */
    fia_tensor *query_norm;           /* output, required iff query_norm_flag */
    fia_tensor *dequant_scale_q_norm; /* output: weight_quant_mode 1, 2 with query_norm_flag */
} fia_mla_prolog_v3_tensors;

/*
 * fia_mla_prolog_v3_plan - validates an MLA prolog call and plans it.
 *
 * Dimensions: T tokens (token_x [T, He], or [B, S, He] with T = B*S, b-major); He hidden;
 * Hcq the query latent; N heads (1..128); D the nope head dim; Dr = 64 the rope dim;
 * Hckv = 512 the KV latent. Any He, Hcq, D >= 1 are accepted (DeepSeek-V3.2: He 7168, Hcq 1536,
 * N 128, D 128; GLM-5: He 6144, Hcq 2048, N 64, D 192).
 *
 *   c_q    = bf16( x . W_DQ )                                       [T, Hcq]
 *   cq     = bf16( qc_qr_scale * RmsNorm(c_q; gamma_cq, eps_cq) )   (= query_norm)
 *   qcqr   = bf16( cq . W_UQ_QR )                                   [T, N*(D+Dr)], per head [D|Dr]
 *   query_out[t, n]      = bf16( qcqr[t, n, :D] . W_UK[n] )        [T, N, Hckv]
 *   query_rope_out[t, n] = bf16( RoPE(qcqr[t, n, D:]) )            [T, N, Dr]
 *   kvkr   = bf16( x . W_DKV_KR )                                   [T, Hckv + Dr]
 *   kv row = bf16( kc_scale * RmsNorm(kvkr[:Hckv]; gamma_ckv, eps_ckv) )
 *   kr row = bf16( RoPE(kvkr[Hckv:]) )
 * with RmsNorm(x) = x / sqrt(mean(x^2) + eps) * gamma, and the MLA "interleave-half" RoPE:
 * x' = [x[0::2], x[1::2]], y = x' * cos + [-x'[32:], x'[:32]] * sin (cos, sin of the token, in
 * half layout), so the rope outputs and the kr cache are de-interleaved (evens first), q and k
 * alike. The bf16() steps are the rounding points of the contract's golden; fia rounds there
 * too (accumulation in fp32).
 *
 * Shapes and dtypes (bfloat16 unless said):
 *   token_x        [T, He] or [B, S, He]
 *   weight_dq      [He, Hcq]            row-major (ND); the NPU's NZ storage is not taken
 *   weight_uq_qr   [Hcq, N*(D+Dr)]
 *   weight_uk      [N, D, Hckv]
 *   weight_dkv_kr  [He, Hckv+Dr]
 *   rmsnorm_gamma_cq [Hcq], rmsnorm_gamma_ckv [Hckv]
 *   rope_sin, rope_cos  [T, Dr] or [B, S, Dr] (as token_x); bfloat16, float16 or float32
 *   kv_cache / kr_cache:
 *     PA_BSND  [blocks, block_size, 1, Hckv] / [.., Dr] (or 3-D without the 1): token t goes
 *              to slot cache_index[t] = row slot % block_size of block slot / block_size, the
 *              same slot in both; a negative cache_index skips the write; an index
 *              >= blocks * block_size is invalid (checked at plan time, nothing written).
 *     PA_NZ    [blocks, 1, Hckv / 16, block_size, 16] / [blocks, 1, Dr / 16, block_size, 16]:
 *              the same slots, each block in FRACTAL_NZ order (element d of row r at
 *              [block][0][d / 16][r][d % 16]), as fused_infer_attention_score (MLA) reads it.
 *     BSND     [B, S, 1, Hckv] (token_x 3-D) and TND [T, 1, Hckv]: token t writes row t.
 *   cache_index    int64 [T] or [B, S] (copied at plan time)
 *   query_out      [T, N, Hckv] or [B, S, N, Hckv]; query_rope_out [.., N, Dr]
 *   query_norm     [T, Hcq] (or [B, S, Hcq]) when query_norm_flag
 *
 * Int8 weights (scales float32, copied at plan time; int8 GEMMs with exact int32 sums on fia's
 * int8 kernels):
 *   weight_quant_mode 1: weight_uq_qr int8 with dequant_scale_w_uq_qr [1, N*(D+Dr)], optional
 *            smooth_scales_cq [1, Hcq] (or [1]). The normalized c_q (fp32, from bf16(x . W_DQ))
 *            times smooth is quantized per token: s_t = max|cq * smooth| / 127,
 *            q = sat_int8(rint(cq * smooth / s_t)); qcqr = (float)(q . W_UQ_QR) * s_t *
 *            dequant_scale_w_uq_qr[col]. query_norm is then int8 (q) and dequant_scale_q_norm
 *            float32 [T, 1] (any shape of T elements) gets s_t.
 *   weight_quant_mode 2: also token_x, weight_dq, weight_dkv_kr int8, with dequant_scale_x
 *            [T, 1] (any shape of T elements), dequant_scale_w_dq [1, Hcq],
 *            dequant_scale_w_dkv_kr [1, Hckv+Dr]: c_q = (float)(x . W_DQ) * dequant_scale_x[t] *
 *            dequant_scale_w_dq[col] (not rounded to bf16, as the golden), likewise kvkr.
 * Quantized caches and query (the scale tensors are float32, copied at plan time; int8 stores
 * are sat_int8(rint(v)), round half to even, all arithmetic in fp32; y is the normalized latent
 * row kc_scale * RmsNorm(bf16(kvkr[:512])) in fp32, not rounded to bf16):
 *   kv_cache_quant_mode 1: kv_cache int8, kv[c] = int8(y[c] * quant_scale_ckv[0]),
 *            quant_scale_ckv [1] (or [1, 1]); kr_cache bf16 as in mode 0.
 *   kv_cache_quant_mode 2: kv[c] = int8(y[c] * quant_scale_ckv[c]), quant_scale_ckv [1, 512]
 *            (or [512]); kr_cache int8, kr[d] = int8(rope[d] * quant_scale_ckr[d]) with the
 *            rope in fp32, quant_scale_ckr [1, 64].
 *            Modes 1 and 2 take every cache_mode; PA_NZ int8 caches are
 *            [blocks, 1, W / 32, block_size, 32] (32-byte chunks).
 *   kv_cache_quant_mode 3 (needs ckvkr_repo_mode 1, quant_scale_repo_mode 1, tile_size 128;
 *            PA_BSND, BSND or TND): per 128-tile i of y: amax = max(max|y|, 1e-8) *
 *            k_nope_clip_alpha[0] (float32 [1]; NULL: 1), y clipped to [-amax, amax],
 *            scale_i = amax / 127, q = int8(y / scale_i); kv_cache int8 [blocks, block_size, 1,
 *            656] (or [.., 656] / BSND [B, S, 1, 656] / TND [T, 1, 656]) gets the C8 row of
 *            kv_quant_sparse_flash_attention (fia/sparse.h): q[512] | bf16 rope[64] | fp32
 *            scale[4]. kr_cache is neither read nor written (may be NULL).
 *   query_quant_mode 1 (needs kv_cache_quant_mode 1): per token and head, with q the bf16
 *            query_out of mode 0: s = max|q| / 127, query_out int8 = int8(q / s),
 *            dequant_scale_q_nope float32 [T, N, 1] (also [B, S, N, 1] or [B*S, N, 1] with 3-D
 *            token_x) = s, query_rope_out = bf16(bf16 rope * quant_scale_ckv / s) (0 when s = 0).
 * The golden (cann-recipes test_npu_mla_prolog_v3.py) quantizes the same fp32 latent with
 * torch.round (half to even); fia matches it except where fp32 and its inputs' bf16 rounding
 * decide a tie differently (one step).
 *
 * Threads and determinism: the bf16 projections run on oneDNN (bf16 matmul: AMX, AVX512-BF16
 * or AVX-512, chosen at run time from the CPU, whatever FIA_ISA says; without AVX-512, fia's
 * bf16-weight kernel for T <= 16 and oneDNN's fp32 matmul on widened operands above), the int8
 * ones on fia's int8 kernels, cut into fixed tiles run by the context's threads one tile per
 * thread, so outputs are bitwise identical for any thread count. The norms and RoPE are
 * per-token. A token's results can depend on T (the library picks kernels by shape).
 *
 * Weights (prepack_weights = 1, the default): the plan copies the four weight matrices, once,
 *   into plan-owned memory in the blocked layout their kernels run fastest on (about the
 *   weights' own size again; bf16: the GEMM library's, int8: fia's exact int8 kernels', which
 *   run every int8 projection), so that executing never re-packs them: a plan run many times
 *   streams only the packed copy. The plan therefore captures the weights' VALUES at plan time:
 *   weights changed after planning are not seen by fia_plan_execute; to refresh them, destroy
 *   the plan and plan again. (The other inputs, as for every plan, are read at execute time from
 *   the addresses given at plan time; cache_index is copied at plan time.) Planning with packing
 *   reads and writes every weight once, about the cost of one execution, so it pays off from the
 *   second execution on; the one-shot fia_mla_prolog_v3 and prepack_weights = 0 do not pack
 *   (the plan reads the caller's weights at execute time and packs them per call).
 *
 * Returns FIA_STATUS_INVALID_ARGUMENT for anything that breaks the rules above (the message
 *   names the tensor, the dim and the values; a mode's tensor given to another mode, a
 *   missing one, a non-finite scale, k_nope_clip_alpha <= 0); FIA_STATUS_UNSUPPORTED for
 *   what fia does not implement (weight_quant_mode 3-5, actual_seq_len,
 *   kv_cache_quant_mode 3 with separate scales or rope, or with PA_NZ), for non-unit
 *   innermost strides, and when fia was built without oneDNN; FIA_STATUS_OUT_OF_MEMORY.
 *   Nothing is written on a failed call.
 * Memory: *plan is owned by the caller (fia_plan_destroy); with prepack_weights it holds the
 *   packed weights. *plan and *workspace_bytes are
 *   written only on success; workspace_bytes may be NULL.
 */
FIA_API fia_status fia_mla_prolog_v3_plan(fia_context *ctx, const fia_mla_prolog_v3_tensors *t,
                                          const fia_mla_prolog_v3_params *params,
                                          fia_plan **plan, size_t *workspace_bytes);

/* One-shot form: plan (without packing the weights, whatever prepack_weights says), allocate the
 * workspace, execute, free. */
FIA_API fia_status fia_mla_prolog_v3(fia_context *ctx, const fia_mla_prolog_v3_tensors *t,
                                     const fia_mla_prolog_v3_params *params);

#ifdef __cplusplus
}
#endif

#endif /* FIA_PROLOG_H */
