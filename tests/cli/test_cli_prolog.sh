#!/usr/bin/env bash
# test_cli_prolog.sh - end-to-end tests of `fia op mla_prolog_v3`: small bf16 .npy inputs
# written by a python3 stdlib script (odd He, N 2, D 16), run with --check (the double oracle of
# tests/ref/ref_prolog.c, caches compared slot by slot and untouched elsewhere) in the cache
# modes PA_BSND (with a negative cache_index), PA_NZ, BSND (token_x [B, S, He]) and TND, with
# query_norm; the caches written back; bad calls (a cache_index past the cache, an unsupported
# kv_cache_quant_mode) exiting 2 with one stderr line and no file.
# Usage: test_cli_prolog.sh PATH/TO/fia
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u

FIA=${1:?usage: test_cli_prolog.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_prolog 11

write_inputs x.npy <<'PY'
import random, sys
from npy_write import writer, bf16
npy = writer(sys.argv[1])
random.seed(11)
B, S, He, Hcq, N, D, DR, C = 2, 2, 33, 40, 2, 16, 64, 512
T = B * S
def rnd(n, a=1.0):
    return [bf16(random.uniform(-a, a)) for _ in range(n)]
npy('x.npy', '<u2', (T, He), rnd(T * He))
npy('x3.npy', '<u2', (B, S, He), rnd(T * He))
npy('wdq.npy', '<u2', (He, Hcq), rnd(He * Hcq, 0.3))
npy('wuq.npy', '<u2', (Hcq, N * (D + DR)), rnd(Hcq * N * (D + DR), 0.3))
npy('wuk.npy', '<u2', (N, D, C), rnd(N * D * C, 0.3))
npy('wkv.npy', '<u2', (He, C + DR), rnd(He * (C + DR), 0.3))
npy('gcq.npy', '<u2', (Hcq,), [bf16(random.uniform(0.5, 1.5)) for _ in range(Hcq)])
npy('gckv.npy', '<u2', (C,), [bf16(random.uniform(0.5, 1.5)) for _ in range(C)])
npy('sin.npy', '<u2', (T, DR), rnd(T * DR))
npy('cos.npy', '<u2', (T, DR), rnd(T * DR))
npy('sin3.npy', '<u2', (B, S, DR), rnd(T * DR))
npy('cos3.npy', '<u2', (B, S, DR), rnd(T * DR))
# PA_BSND: 3 blocks of 4 slots; token 2 skipped (negative index)
npy('kv.npy', '<u2', (3, 4, 1, C), rnd(3 * 4 * C))
npy('kr.npy', '<u2', (3, 4, 1, DR), rnd(3 * 4 * DR))
npy('ci.npy', '<i8', (T,), [5, 0, -1, 11])
npy('ci_bad.npy', '<i8', (T,), [5, 0, 12, 1])
# PA_NZ: 2 blocks of 8 slots
npy('kvnz.npy', '<u2', (2, 1, C // 16, 8, 16), rnd(2 * 8 * C))
npy('krnz.npy', '<u2', (2, 1, DR // 16, 8, 16), rnd(2 * 8 * DR))
npy('cinz.npy', '<i8', (T,), [9, 3, 15, 0])
# BSND [B, S, 1, C] and TND [T, 1, C]
npy('kvb.npy', '<u2', (B, S, 1, C), rnd(T * C))
npy('krb.npy', '<u2', (B, S, 1, DR), rnd(T * DR))
npy('kvt.npy', '<u2', (T, 1, C), rnd(T * C))
npy('krt.npy', '<u2', (T, 1, DR), rnd(T * DR))
PY

check_run() { # NAME CMD...: must exit 0 and print "check: pass"
    local name=$1
    shift
    if run "$name" 0 "$@" --check; then
        if grep -q '^check: pass' "$WORK/$name.out"; then ok "$name"; else bad "$name: no 'check: pass'" "$WORK/$name.out"; fi
    fi
}

W=$WORK
WTS=(--weight_dq "$W/wdq.npy:bf16" --weight_uq_qr "$W/wuq.npy:bf16" --weight_uk "$W/wuk.npy:bf16"
     --weight_dkv_kr "$W/wkv.npy:bf16" --rmsnorm_gamma_cq "$W/gcq.npy:bf16" --rmsnorm_gamma_ckv "$W/gckv.npy:bf16")
X2=(--token_x "$W/x.npy:bf16" --rope_sin "$W/sin.npy:bf16" --rope_cos "$W/cos.npy:bf16")
X3=(--token_x "$W/x3.npy:bf16" --rope_sin "$W/sin3.npy:bf16" --rope_cos "$W/cos3.npy:bf16")

check_run pa_bsnd "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" --kv_cache "$W/kv.npy:bf16" --kr_cache "$W/kr.npy:bf16" \
    --cache_index "$W/ci.npy" --query_norm_flag 1 --qc_qr_scale 0.75 --kc_scale 1.25 \
    --out query_out="$W/qo.npy" --out query_rope_out="$W/qr.npy" --out query_norm="$W/qn.npy" --out kv_cache="$W/kv2.npy"
[ "$(npy_header "$W/qo.npy")" = "<u2 (4, 2, 512) 8192" ] && ok "query_out shape" || bad "query_out shape: $(npy_header "$W/qo.npy")"
[ "$(npy_header "$W/qr.npy")" = "<u2 (4, 2, 64) 1024" ] && ok "query_rope_out shape" || bad "query_rope_out shape: $(npy_header "$W/qr.npy")"
[ "$(npy_header "$W/qn.npy")" = "<u2 (4, 40) 320" ] && ok "query_norm shape" || bad "query_norm shape: $(npy_header "$W/qn.npy")"
python3 - "$W/kv.npy" "$W/kv2.npy" <<'PY' && ok "kv_cache written back: slots 0, 5, 11 changed, the rest not" || bad "kv_cache write-back"
import sys
a, b = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
assert len(a) == len(b)
h = len(a) - 12 * 512 * 2
rows = [a[h + s * 1024:h + (s + 1) * 1024] != b[h + s * 1024:h + (s + 1) * 1024] for s in range(12)]
assert [s for s in range(12) if rows[s]] == [0, 5, 11], rows
PY
check_run pa_nz "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" --kv_cache "$W/kvnz.npy:bf16" --kr_cache "$W/krnz.npy:bf16" \
    --cache_index "$W/cinz.npy" --cache_mode PA_NZ --threads 2
check_run bsnd_3d "$FIA" op mla_prolog_v3 "${X3[@]}" "${WTS[@]}" --kv_cache "$W/kvb.npy:bf16" --kr_cache "$W/krb.npy:bf16" \
    --cache_mode BSND --query_norm_flag 1 --out query_out="$W/qo3.npy"
[ "$(npy_header "$W/qo3.npy")" = "<u2 (2, 2, 2, 512) 8192" ] && ok "query_out [B, S, N, 512]" || bad "query_out 3-D shape: $(npy_header "$W/qo3.npy")"
check_run tnd "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" --kv_cache "$W/kvt.npy:bf16" --kr_cache "$W/krt.npy:bf16" \
    --cache_mode TND --rmsnorm_epsilon_cq 1e-6 --rmsnorm_epsilon_ckv 1e-3

ERR_OUT=kv_cache error_case cache_index_out_of_range "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" \
    --kv_cache "$W/kv.npy:bf16" --kr_cache "$W/kr.npy:bf16" --cache_index "$W/ci_bad.npy"
ERR_OUT=query_out error_case kv_quant_unsupported "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" \
    --kv_cache "$W/kv.npy:bf16" --kr_cache "$W/kr.npy:bf16" --cache_index "$W/ci.npy" --kv_cache_quant_mode 1
ERR_OUT=query_out error_case bad_cache_mode "$FIA" op mla_prolog_v3 "${X2[@]}" "${WTS[@]}" \
    --kv_cache "$W/kv.npy:bf16" --kr_cache "$W/kr.npy:bf16" --cache_mode BNSD_X
finish
