#!/usr/bin/env bash
# test_cli_chain.sh - end-to-end tests of the chain operators under `fia op` (rms_norm,
# add_rms_norm, rotary_mul, interleave_rope, dynamic_quant, scatter_update, scatter_nd_update,
# gather_selection_kv_cache): small .npy inputs written by a python3 stdlib script, every
# operator run with --check (the double oracles), the in-place outputs written back, and bad
# calls (an out-of-range scatter index, a bad shape) exiting 2 with one stderr line and no file.
# Usage: test_cli_chain.sh PATH/TO/fia
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u

FIA=${1:?usage: test_cli_chain.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_chain 7

write_inputs x.npy <<'PY'
import random, sys
from npy_write import writer, f16, bf16
npy = writer(sys.argv[1])
random.seed(7)
T, H = 3, 37
npy('x.npy', '<u2', (T, H), [bf16(random.uniform(-2, 2)) for _ in range(T * H)])
npy('x2.npy', '<u2', (T, H), [bf16(random.uniform(-2, 2)) for _ in range(T * H)])
npy('g.npy', '<u2', (H,), [bf16(random.uniform(0.5, 1.5)) for _ in range(H)])
npy('g_bad.npy', '<u2', (H + 1,), [bf16(1.0) for _ in range(H + 1)])
# rope: x [2, 4, 3, 64] BNSD, cos/sin [2, 1, 3, 64]
B, N, S, D = 2, 4, 3, 64
npy('rx.npy', '<f2', (B, N, S, D), [f16(random.uniform(-1, 1)) for _ in range(B * N * S * D)])
npy('rc.npy', '<f2', (B, 1, S, D), [f16(random.uniform(-1, 1)) for _ in range(B * S * D)])
npy('rs.npy', '<f2', (B, 1, S, D), [f16(random.uniform(-1, 1)) for _ in range(B * S * D)])
# quant: [4, 5, 33] fp16 with smooth [33]
npy('qx.npy', '<f2', (4, 5, 33), [f16(random.uniform(-3, 3)) for _ in range(4 * 5 * 33)])
npy('qs.npy', '<f2', (33,), [f16(random.uniform(0.5, 2)) for _ in range(33)])
npy('qc.npy', '<f2', (5,), [f16(random.uniform(0.5, 2)) for _ in range(5)])
# scatter_nd_update: a paged cache [4, 16, 1, 8] bf16, 3 slots (one duplicate)
npy('cache.npy', '<u2', (4, 16, 1, 8), [bf16(random.uniform(-1, 1)) for _ in range(4 * 16 * 8)])
npy('slots.npy', '<i8', (3, 1), [5, 63, 5])
npy('slots_bad.npy', '<i8', (3, 1), [5, 64, 1])
npy('rows.npy', '<u2', (3, 1, 8), [bf16(random.uniform(-1, 1)) for _ in range(3 * 8)])
# scatter_update: cache [2, 10, 6] (BSH), append 2 tokens at positions 3 and 8
npy('kv.npy', '<f4', (2, 10, 6), [random.uniform(-1, 1) for _ in range(120)])
npy('pos.npy', '<i4', (2,), [3, 8])
npy('pos_bad.npy', '<i4', (2,), [3, 9])
npy('new.npy', '<f4', (2, 2, 6), [random.uniform(-1, 1) for _ in range(24)])
# gather_selection: B 1, S 2, K 4, sbs 2, full cache 6 blocks of 4, selection 4 blocks of 4
npy('sk.npy', '<u2', (4, 4, 8), [bf16(0.0)] * 128)
npy('sr.npy', '<u2', (4, 4, 2), [bf16(0.0)] * 32)
npy('st.npy', '<i4', (2, 2), [0, 1, 2, 3])
npy('ss.npy', '<i4', (1, 2, 1, 5), [0] * 10)
npy('ti.npy', '<i4', (1, 2, 1, 4), [3, 0, 9, -1, 1, 1, 2, 0])
npy('fk.npy', '<u2', (6, 4, 8), [bf16(random.uniform(-1, 1)) for _ in range(192)])
npy('fr.npy', '<u2', (6, 4, 2), [bf16(random.uniform(-1, 1)) for _ in range(48)])
npy('ft.npy', '<i4', (1, 6), [5, 4, 3, 2, 1, 0])
npy('kl.npy', '<i4', (1,), [11])
npy('ql.npy', '<i4', (1,), [2])
PY

check_run() { # NAME CMD...: must exit 0 and print "check: pass"
    local name=$1
    shift
    if run "$name" 0 "$@" --check; then
        if grep -q '^check: pass' "$WORK/$name.out"; then ok "$name"; else bad "$name: no 'check: pass'" "$WORK/$name.out"; fi
    fi
}

W=$WORK
check_run rms_norm "$FIA" op rms_norm --x "$W/x.npy:bf16" --gamma "$W/g.npy:bf16" --out y="$W/y.npy" --out rstd="$W/rstd.npy"
[ "$(npy_header "$W/rstd.npy")" = "<f4 (3, 1) 12" ] && ok "rstd shape" || bad "rstd shape: $(npy_header "$W/rstd.npy")"
check_run add_rms_norm "$FIA" op add_rms_norm --x1 "$W/x.npy:bf16" --x2 "$W/x2.npy:bf16" --gamma "$W/g.npy:bf16" --epsilon 1e-5 --out x="$W/xs.npy"
check_run rotary_mul_half "$FIA" op rotary_mul --x "$W/rx.npy" --cos "$W/rc.npy" --sin "$W/rs.npy" --out y="$W/ry.npy"
check_run rotary_mul_interleave "$FIA" op rotary_mul --x "$W/rx.npy" --cos "$W/rc.npy" --sin "$W/rs.npy" --rotary_mode interleave
check_run interleave_rope "$FIA" op interleave_rope --x "$W/rx.npy" --cos "$W/rc.npy" --sin "$W/rs.npy"
check_run dynamic_quant "$FIA" op dynamic_quant --input "$W/qx.npy" --smooth_scales "$W/qs.npy" --out y="$W/qy.npy" --out scale="$W/qsc.npy"
[ "$(npy_header "$W/qsc.npy")" = "<f4 (4, 5) 80" ] && ok "scale shape" || bad "scale shape: $(npy_header "$W/qsc.npy")"
check_run dynamic_quant_pertensor "$FIA" op dynamic_quant --input "$W/qx.npy" --quant_mode pertensor
check_run dynamic_quant_perchannel "$FIA" op dynamic_quant --input "$W/qx.npy" --smooth_scales "$W/qc.npy" --quant_mode perchannel
check_run scatter_nd_update "$FIA" op scatter_nd_update --input "$W/cache.npy:bf16" --indices "$W/slots.npy" --updates "$W/rows.npy:bf16" --cache_mode PA_BSND --out input="$W/cache2.npy"
check_run scatter_update "$FIA" op scatter_update --data "$W/kv.npy" --indices "$W/pos.npy" --updates "$W/new.npy" --axis -2 --out data="$W/kv2.npy"
check_run gather_selection "$FIA" op gather_selection_kv_cache --selection_k_rope "$W/sr.npy:bf16" --selection_kv_cache "$W/sk.npy:bf16" --selection_kv_block_table "$W/st.npy" --selection_kv_block_status "$W/ss.npy" --selection_topk_indices "$W/ti.npy" --full_k_rope "$W/fr.npy:bf16" --full_kv_cache "$W/fk.npy:bf16" --full_kv_block_table "$W/ft.npy" --full_kv_actual_seq "$W/kl.npy" --full_q_actual_seq "$W/ql.npy" --selection_topk_block_size 2 --out selection_kv_actual_seq="$W/len.npy"
python3 - "$W/len.npy" <<'PY' && ok "gather lengths 4 and 8 (MTP offset, a skipped id, a -1 end, duplicates)" || bad "gather lengths"
import struct, sys
d = open(sys.argv[1], 'rb').read()
assert struct.unpack('<2i', d[-8:]) == (4, 8), struct.unpack('<2i', d[-8:])
PY

ERR_OUT=input error_case scatter_nd_out_of_range "$FIA" op scatter_nd_update --input "$W/cache.npy:bf16" --indices "$W/slots_bad.npy" --updates "$W/rows.npy:bf16" --cache_mode PA_BSND
ERR_OUT=data error_case scatter_update_out_of_range "$FIA" op scatter_update --data "$W/kv.npy" --indices "$W/pos_bad.npy" --updates "$W/new.npy"
ERR_OUT=y error_case rms_norm_bad_gamma "$FIA" op rms_norm --x "$W/x.npy:bf16" --gamma "$W/g_bad.npy:bf16"
ERR_OUT=y error_case rotary_bad_mode "$FIA" op rotary_mul --x "$W/rx.npy" --cos "$W/rc.npy" --sin "$W/rs.npy" --rotary_mode spiral
finish
