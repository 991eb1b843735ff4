/*
 * chain_avx512.c - the AVX-512 chain kernels of chain_kernels.h: chain_rows.inc over 16-lane fp32
 * vectors (chain_avx512.h); no AVX512-BF16 instructions (avx512bf16/chain_avx512bf16.c has the
 * bf16-store variant). Compiled with the AVX-512 F/BW/DQ/VL flags.
 */
#include "kernels/avx512/chain_avx512.h"

#define CV_NAME(x) x##_avx512
#define CV_K(slot) fia_chain_##slot##__avx512_u16

#include "kernels/chain_rows.inc"
