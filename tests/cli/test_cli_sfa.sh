#!/usr/bin/env bash
# test_cli_sfa.sh - end-to-end tests of `fia op sparse_flash_attention` and
# `fia op kv_quant_sparse_flash_attention`: small .npy inputs written by a python3 stdlib script
# (no numpy), runs with --check (BSND, TND + paged, C8, softmax_lse), output headers, and bad
# calls that must exit 2 with exactly one stderr line and no output file.
# Usage: test_cli_sfa.sh PATH/TO/fia        Ends with "N passed, N failed".
set -u

FIA=${1:?usage: test_cli_sfa.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_sfa 1

write_inputs q.npy <<'PY'
import random, struct, sys, os
from npy_write import writer, rnd, bf16
out = sys.argv[1]
npy = writer(out)
random.seed(1)

# BSND: B 2, S1 2, N1 4, S2 10, K 6 (sbs 1); one row ends early, one row is all -1
B, S1, N1, S2, K = 2, 2, 4, 10, 6
npy('q.npy', '<f2', (B, S1, N1, 512), rnd(B * S1 * N1 * 512))
npy('qr.npy', '<f2', (B, S1, N1, 64), rnd(B * S1 * N1 * 64))
npy('k.npy', '<f2', (B, S2, 1, 512), rnd(B * S2 * 512))
npy('kr.npy', '<f2', (B, S2, 1, 64), rnd(B * S2 * 64))
npy('k_other.npy', '<f2', (B, S2, 1, 512), rnd(B * S2 * 512))
idx = [3, 0, 9, 5, -1, 2,   1, 8, 4, 7, 6, 0,   -1, 1, 2, 3, 4, 5,   9, 8, 7, 6, 5, 4]
npy('idx.npy', '<i8', (B, S1, 1, K), idx)
npy('idx_bad_shape.npy', '<i4', (B, S1, 2, K), idx + idx)
# TND query (lengths 1, 2) over a paged bf16 cache: 4 blocks of 8, block table int32 [2, 2]
T, BS = 3, 8
npy('tq.npy', '<u2', (T, N1, 512), [bf16(x) for x in rnd(T * N1 * 512)])
npy('tqr.npy', '<u2', (T, N1, 64), [bf16(x) for x in rnd(T * N1 * 64)])
npy('pk.npy', '<u2', (4, BS, 1, 512), [bf16(x) for x in rnd(4 * BS * 512)])
npy('pkr.npy', '<u2', (4, BS, 1, 64), [bf16(x) for x in rnd(4 * BS * 64)])
npy('bt.npy', '<i4', (2, 2), [2, 0, 3, 1])
npy('bt_bad.npy', '<i4', (2, 2), [2, 0, 7, 1])
npy('tidx.npy', '<i4', (T, 1, 4), [0, 2, 1, -1,   3, 0, 1, 2,   0, 1, -1, 3])
# C8: 656-byte rows, paged like above; query 576 wide
rows = []
for r in range(4 * BS):
    vals = [random.randint(-127, 127) for _ in range(512)]
    rope = struct.pack('<64H', *[bf16(x) for x in rnd(64)])
    scales = struct.pack('<4f', *[random.uniform(0.002, 0.012) for _ in range(4)])
    rows += vals + list(struct.unpack('<144b', rope + scales))
npy('c8k.npy', '|i1', (4, BS, 1, 656), rows)
npy('c8q.npy', '<u2', (T, N1, 576), [bf16(x) for x in rnd(T * N1 * 576)])
npy('sinks.npy', '<f4', (N1,), [0.5, -1.0, 2.0, 0.0])
PY

SFA="$FIA op sparse_flash_attention"
C8="$FIA op kv_quant_sparse_flash_attention"
BASE="--query $WORK/q.npy --query_rope $WORK/qr.npy --key $WORK/k.npy --key_rope $WORK/kr.npy \
--sparse_indices $WORK/idx.npy --scale_value 0.0417"

if run help 0 $SFA --help && grep -q -- '--sparse_block_size' "$WORK/help.out"; then ok help; fi

# BSND, sparse_mode 3 (default), value given as the key file, softmax_lse, the oracle.
if run bsnd 0 $SFA $BASE --value "$WORK/k.npy" --actual_seq_lengths_kv 10,7 --check \
    --out attention_out="$WORK/o.npy" --out softmax_lse="$WORK/lse.npy"; then
    h=$(npy_header "$WORK/o.npy")
    l=$(npy_header "$WORK/lse.npy")
    if ! grep -q '^check: pass' "$WORK/bsnd.out"; then bad "bsnd: check" "$WORK/bsnd.out"
    elif [ "$h" != "<f2 (2, 2, 4, 512) 16384" ]; then bad "bsnd: attention_out header '$h'"
    elif [ "$l" != "<f4 (2, 4, 2, 1) 64" ]; then bad "bsnd: softmax_lse header '$l'"
    else ok "bsnd ($(grep 'check attention_out' "$WORK/bsnd.out"))"; fi
fi
# sparse_mode 0, sparse_block_size 2 (entries cover pairs of tokens; 9*2 is beyond the kv: skipped)
if run bsnd_sbs2 0 $SFA $BASE --sparse_mode 0 --sparse_block_size 2 --check; then
    if grep -q '^check: pass' "$WORK/bsnd_sbs2.out"; then ok bsnd_sbs2_mode0; else bad bsnd_sbs2 "$WORK/bsnd_sbs2.out"; fi
fi
# TND query over a paged bf16 cache, 1 thread and 2 threads give the same bytes.
TND="--query $WORK/tq.npy:bf16 --query_rope $WORK/tqr.npy:bf16 --key $WORK/pk.npy:bf16 \
--key_rope $WORK/pkr.npy:bf16 --sparse_indices $WORK/tidx.npy --scale_value 0.05 \
--layout_query TND --layout_kv PA_BSND --actual_seq_lengths_query 1,3 --actual_seq_lengths_kv 12,16"
if run tnd_paged 0 $SFA $TND --block_table "$WORK/bt.npy" --check --threads 1 \
    --out attention_out="$WORK/t1.npy" &&
    run tnd_paged2 0 $SFA $TND --block_table "$WORK/bt.npy" --threads 2 --out attention_out="$WORK/t2.npy"; then
    if grep -q '^check: pass' "$WORK/tnd_paged.out" && cmp -s "$WORK/t1.npy" "$WORK/t2.npy" &&
        [ "$(npy_header "$WORK/t1.npy")" = "<u2 (3, 4, 512) 12288" ]; then
        ok tnd_paged_bf16
    else bad tnd_paged "$WORK/tnd_paged.out"; fi
fi
# C8 cache, paged, with softmax_lse.
C8ARGS="--query $WORK/c8q.npy:bf16 --key $WORK/c8k.npy --sparse_indices $WORK/tidx.npy \
--scale_value 0.05 --layout_query TND --layout_kv PA_BSND --actual_seq_lengths_query 1,3 \
--actual_seq_lengths_kv 12,16 --block_table $WORK/bt.npy"
if run c8 0 $C8 $C8ARGS --check --out attention_out="$WORK/c8o.npy" --out softmax_lse="$WORK/c8l.npy"; then
    if grep -q '^check: pass' "$WORK/c8.out" && [ "$(npy_header "$WORK/c8o.npy")" = "<u2 (3, 4, 512) 12288" ]; then
        ok "c8 ($(grep 'check attention_out' "$WORK/c8.out"))"
    else bad c8 "$WORK/c8.out"; fi
fi
# torch_npu's softmax_max / softmax_sum with sinks (TND: [1, T1, N1]), checked; C8 too.
if run maxsum 0 $SFA $TND --block_table "$WORK/bt.npy" --sinks "$WORK/sinks.npy" --check \
    --out softmax_max="$WORK/mx.npy" --out softmax_sum="$WORK/sm.npy"; then
    if grep -q '^check: pass' "$WORK/maxsum.out" &&
        [ "$(npy_header "$WORK/mx.npy")" = "<f4 (1, 3, 4) 48" ] &&
        [ "$(npy_header "$WORK/sm.npy")" = "<f4 (1, 3, 4) 48" ] && [ ! -e "$WORK/lse_none.npy" ]; then
        ok "softmax_max / softmax_sum with sinks"
    else bad maxsum "$WORK/maxsum.out"; fi
fi
if run c8_maxsum 0 $C8 $C8ARGS --sinks "$WORK/sinks.npy" --check --out softmax_lse="$WORK/c8l2.npy" \
    --out softmax_max="$WORK/c8mx.npy" --out softmax_sum="$WORK/c8sm.npy"; then
    if grep -q '^check: pass' "$WORK/c8_maxsum.out"; then ok "c8 lse + max + sum with sinks"
    else bad c8_maxsum "$WORK/c8_maxsum.out"; fi
fi
# --out NAME=PATH:bf16 writes bfloat16 bits under PATH (never a file named PATH:bf16)
if run out_bf16 0 $SFA $BASE --out attention_out="$WORK/ob.npy:bf16" --out softmax_lse="$WORK/lb.npy:bf16"; then
    if [ "$(npy_header "$WORK/ob.npy")" = "<u2 (2, 2, 4, 512) 16384" ] &&
        [ "$(npy_header "$WORK/lb.npy")" = "<u2 (2, 4, 2, 1) 32" ] && ! ls "$WORK"/*:bf16 >/dev/null 2>&1; then
        ok "out :bf16 suffix"
    else bad "out :bf16: $(npy_header "$WORK/ob.npy") / $(npy_header "$WORK/lb.npy")"; fi
fi
ERR_OUT="attention_out" error_case out_bad_suffix $SFA $BASE --out softmax_lse="$WORK/err_out.npy:f16"

# Bad calls: exit 2, one line, no output.
error_case value_not_key $SFA $BASE --value "$WORK/k_other.npy"
error_case sbs_3 $SFA $BASE --sparse_block_size 3
error_case mode_1 $SFA $BASE --sparse_mode 1
error_case attention_mode_0 $SFA $BASE --attention_mode 0
error_case idx_shape $SFA --query "$WORK/q.npy" --query_rope "$WORK/qr.npy" --key "$WORK/k.npy" \
    --key_rope "$WORK/kr.npy" --sparse_indices "$WORK/idx_bad_shape.npy" --scale_value 1
error_case block_id $SFA $TND --block_table "$WORK/bt_bad.npy"
error_case no_block_table $SFA $TND
error_case c8_tile $C8 $C8ARGS --tile_size 64
error_case c8_bf16_key $C8 --query "$WORK/c8q.npy:bf16" --key "$WORK/pk.npy:bf16" \
    --sparse_indices "$WORK/tidx.npy" --scale_value 1 --layout_query TND --layout_kv PA_BSND \
    --actual_seq_lengths_query 1,3 --actual_seq_lengths_kv 12,16 --block_table "$WORK/bt.npy"
error_case missing_rope $SFA --query "$WORK/q.npy" --key "$WORK/k.npy" \
    --sparse_indices "$WORK/idx.npy" --scale_value 1
error_case sinks_shape $SFA $BASE --sinks "$WORK/bt.npy"

finish
