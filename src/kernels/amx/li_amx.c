/*
 * li_amx.c - the lightning indexer's bf16 scoring on AMX tiles (contract: kernels/li_kernels.h,
 * slot score_bf16).
 *
 * Per group of 16 keys: S = K . Q^T on bf16 tiles, C[key][head] in fp32 (tile registers 0-3:
 * 16 keys x 16 heads each, up to 64 heads), A = 16 key rows x 32 dims (tile 4: read in place
 * when the 16 rows lie at a constant stride and d is a multiple of 32, else from a zero-padded
 * stage), B = the packed query block of 16 dim pairs x 16 heads (tiles 5, 6 alternating). Every
 * bf16 x bf16 product is exact in fp32 and the tile unit sums in fp32; the order of the tile
 * operations is fixed (dim blocks in order), so the scores do not depend on threads or on how
 * the keys are grouped. Then per key, in fp32 on AVX-512: ReLU (max with 0: NaN -> 0), times
 * the head weight, summed over the heads in a fixed order.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/amx/amx_tiles.h"
#include "kernels/li_kernels.h"

/* The 16 key rows of a group as an A operand: in place (returns the row stride in bytes) or
 * copied to stage (zero rows beyond m, zero dims beyond d). */
static const void *li_amx_keys(const void *const *rows, int64_t m, int64_t d, int64_t dpad,
                               uint16_t *stage, int64_t *stride) {
    if (m == 16 && d == dpad) {
        const ptrdiff_t step = (const char *)rows[1] - (const char *)rows[0];
        int same = step > 0;
        for (int j = 2; j < 16 && same; j++)
            same = (const char *)rows[j] - (const char *)rows[j - 1] == step;
        if (same) {
            *stride = (int64_t)step;
            return rows[0];
        }
    }
    for (int64_t j = 0; j < 16; j++) {
        uint16_t *dst = stage + j * dpad;
        if (j < m) {
            memcpy(dst, rows[j], (size_t)d * 2);
            memset(dst + d, 0, (size_t)(dpad - d) * 2);
        } else {
            memset(dst, 0, (size_t)dpad * 2);
        }
    }
    *stride = dpad * 2;
    return stage;
}

void fia_li_score_bf16__amx_16x64(int64_t n, int64_t d, int64_t nh, const void *const *rows,
                                  const uint16_t *qp, int64_t ldq, const float *w, float *out,
                                  void *scratch) {
    const int64_t dpad = (d + 31) / 32 * 32, ndb = dpad / 32, nhb = (nh + 15) / 16;
    float *st = scratch;                                  /* [16][64] fp32 */
    uint16_t *stage = (uint16_t *)(void *)(st + 16 * 64); /* [16][dpad] bf16 */
    const int64_t qstride = ldq * 4;                      /* bytes per dim pair of qp */
    fia_amx_config();
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int64_t m = n - j0 < 16 ? n - j0 : 16;
        int64_t kstride;
        const char *k = li_amx_keys(rows + j0, m, d, dpad, stage, &kstride);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        FIA_AMX_KEYS_X_HEADS(_tile_dpbf16ps, nhb, k, kstride, qp, qstride, ndb);
        _tile_stored(0, st, 256);
        _tile_stored(1, st + 16, 256);
        _tile_stored(2, st + 32, 256);
        _tile_stored(3, st + 48, 256);
        const __m512 zero = _mm512_setzero_ps();
        for (int64_t j = 0; j < m; j++) {
            __m512 acc = zero;
            for (int64_t hb = 0; hb < nhb; hb++) {
                const __m512 s = _mm512_max_ps(_mm512_loadu_ps(st + j * 64 + hb * 16), zero);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + hb * 16), s, acc);
            }
            out[j0 + j] = _mm512_reduce_add_ps(acc);
        }
    }
    _tile_release();
}
