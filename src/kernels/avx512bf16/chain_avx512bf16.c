/*
 * chain_avx512bf16.c - the chain kernels with dtype stores (rms_norm_row, rope_row and their _nt
 * forms) on AVX-512 with AVX512-BF16 conversions (vcvtneps2bf16: round to nearest even, NaN kept
 * quiet; denormal results flush to zero). The same template and vocabulary as
 * avx512/chain_avx512.c; only the bf16 stores differ, so the other slots keep their avx512
 * kernels. Compiled with the AVX-512 flags and -mavx512bf16.
 */
#include "kernels/avx512/chain_avx512.h"

static inline __m256i cv16b_bf16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }

static inline void cv16b_store(void *p, fia_dtype dt, __m512 v) {
    if (dt == FIA_DTYPE_BFLOAT16) _mm256_storeu_si256((__m256i *)p, cv16b_bf16(v));
    else cv16_store(p, dt, v);
}

static inline void cv16b_stream(void *p, fia_dtype dt, __m512 v) {
    if (dt == FIA_DTYPE_BFLOAT16 && (uintptr_t)p % 32 == 0) _mm256_stream_si256((__m256i *)p, cv16b_bf16(v));
    else if (dt == FIA_DTYPE_BFLOAT16) _mm256_storeu_si256((__m256i *)p, cv16b_bf16(v));
    else cv16_stream(p, dt, v);
}

/* The two unpack-ordered vectors of CV16_RMS_BF16_PASS2 to 32 bf16 in element order:
 * vcvtne2ps2bf16 puts lo's 16 values in words 0..15 and hi's in 16..31; vpermw interleaves
 * them back (element 8k + j is lo's word 4k + j for j < 4, hi's word 4k + j - 4 else). */
static inline __m512i cv16b_pack2_bf16(__m512 lo, __m512 hi) {
    const __m512i idx = _mm512_set_epi16(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10,
                                         9, 8, 23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2,
                                         1, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}
CV16_RMS_BF16_PASS2(cv16b_rms_bf16_pass2, cv16b_pack2_bf16)
#undef cv_rms_bf16_pass2
#define cv_rms_bf16_pass2(x, g, n, rstd, alpha, scaled, y, nt) \
    cv16b_rms_bf16_pass2((x), (g), (n), (rstd), (alpha), (scaled), (y), (nt))

#undef cv_store
#undef cv_stream
#define cv_store(p, dt, v) cv16b_store((p), (dt), (v))
#define cv_stream(p, dt, v) cv16b_stream((p), (dt), (v))

#define CV_NAME(x) x##_avx512bf16
#define CV_K(slot) fia_chain_##slot##__avx512bf16_cvtne_u16
#define CV_STORES_ONLY

#include "kernels/chain_rows.inc"
