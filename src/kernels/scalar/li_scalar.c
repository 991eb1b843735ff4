/*
 * li_scalar.c - the portable lightning-indexer scoring kernels (fia_li_kernels_scalar), the
 * reference of every other ISA. Contract: src/kernels/li_kernels.h. Straight loops: per key,
 * per head, an fp32 (float form) or int32 (int8 form) dot product in dimension order.
 */
#include "core/convert.h"
#include "kernels/li_kernels.h"

void fia_li_keys_to_f32_scalar(int64_t n, int64_t d, const void *const *rows, fia_dtype dt,
                               float *dst, int64_t ldk) {
    for (int64_t j = 0; j < n; j++) {
        const uint16_t *r = rows[j];
        float *o = dst + j * ldk;
        if (dt == FIA_DTYPE_BFLOAT16)
            for (int64_t c = 0; c < d; c++) o[c] = fia_cvt_bf16_to_f32(r[c]);
        else
            for (int64_t c = 0; c < d; c++) o[c] = fia_cvt_f16_to_f32(r[c]);
    }
}

void fia_li_keys_to_u8_scalar(int64_t n, int64_t d, int64_t d4, const void *const *rows,
                              uint8_t *dst, int64_t ldk) {
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *r = rows[j];
        uint8_t *o = dst + j * ldk;
        int64_t c = 0;
        for (; c < d; c++) o[c] = r[c] ^ 0x80u;
        for (; c < 4 * d4; c++) o[c] = 0x80u;
    }
}

static void li_score_f32_scalar(int64_t n, int64_t d, int64_t nh, const float *k, int64_t ldk,
                                const float *qt, int64_t ldq, const float *w, float *out) {
    for (int64_t j = 0; j < n; j++) {
        const float *kj = k + j * ldk;
        float s = 0.0f;
        for (int64_t h = 0; h < nh; h++) {
            float dot = 0.0f;
            for (int64_t c = 0; c < d; c++) dot += qt[c * ldq + h] * kj[c];
            s += w[h] * (dot > 0.0f ? dot : 0.0f);
        }
        out[j] = s;
    }
}

void fia_li_score_i8_scalar(int64_t n, int64_t d4, int64_t nh, const uint8_t *ku, int64_t ldk,
                            const int8_t *qp, int64_t ldq, const int32_t *qbias, const float *ws,
                            const float *sk, int f16, float *out) {
    for (int64_t j = 0; j < n; j++) {
        const uint8_t *kj = ku + j * ldk;
        float s = 0.0f;
        for (int64_t h = 0; h < nh; h++) {
            int32_t dot = 0;
            for (int64_t c4 = 0; c4 < d4; c4++)
                for (int t = 0; t < 4; t++)
                    dot += (int32_t)kj[c4 * 4 + t] * (int32_t)qp[(c4 * ldq + h) * 4 + t];
            dot -= qbias[h];
            float r = (float)(dot > 0 ? dot : 0);
            if (f16) r = fia_cvt_f16_to_f32(fia_cvt_f32_to_f16(r * (1.0f / 1024.0f)));
            s += ws[h] * r;
        }
        out[j] = sk[j] * s;
    }
}

const fia_li_kernels fia_li_kernels_scalar = {"scalar", fia_li_keys_to_f32_scalar,
                                              fia_li_keys_to_u8_scalar, li_score_f32_scalar,
                                              fia_li_score_i8_scalar};
