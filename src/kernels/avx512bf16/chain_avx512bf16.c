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

#undef cv_store
#undef cv_stream
#define cv_store(p, dt, v) cv16b_store((p), (dt), (v))
#define cv_stream(p, dt, v) cv16b_stream((p), (dt), (v))

#define CV_NAME(x) x##_avx512bf16
#define CV_K(slot) fia_chain_##slot##__avx512bf16_cvtne_u16
#define CV_STORES_ONLY

#include "kernels/chain_rows.inc"
