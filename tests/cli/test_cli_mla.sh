#!/usr/bin/env bash
# test_cli_mla.sh - `fia op fused_infer_attention_score` on the MLA path from the command line:
# small .npy inputs written by a python3 stdlib script (no numpy), bf16 decode on a paged
# PA_BSND cache and MTP on PA_NZ checked against the oracle (--check), the int8 form with its
# dequant scales, the AMLA variant, and bad calls (exit 2, one stderr line, no output file).
# Usage: test_cli_mla.sh PATH/TO/fia. Ends with "N passed, N failed".
set -u
FIA=${1:?usage: test_cli_mla.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_mla

write_inputs q.npy <<'PY'
import random, sys, os
from npy_write import writer, bf16
out = sys.argv[1]
npy = writer(out)
random.seed(3)
def rb(n):
    return [bf16(random.uniform(-1, 1)) for _ in range(n)]
def ri8(n):
    return [random.randint(-127, 127) for _ in range(n)]
B, N, BS, NB = 2, 8, 16, 6
npy('q.npy', '<u2', (B, 1, N, 512), rb(B * N * 512))
npy('qr.npy', '<u2', (B, 1, N, 64), rb(B * N * 64))
npy('kv.npy', '<u2', (NB, BS, 1, 512), rb(NB * BS * 512))
npy('kr.npy', '<u2', (NB, BS, 1, 64), rb(NB * BS * 64))
npy('bt.npy', '<i4', (B, 3), [4, 0, 2, 5, 1, -1])
# PA_NZ: [blocks, 1, D/16, block_size, 16]
npy('kvnz.npy', '<u2', (NB, 1, 32, BS, 16), rb(NB * BS * 512))
npy('krnz.npy', '<u2', (NB, 1, 4, BS, 16), rb(NB * BS * 64))
# MTP: 3 query tokens per request (TND, cumulative 3, 6)
npy('qt.npy', '<u2', (6, N, 512), rb(6 * N * 512))
npy('qrt.npy', '<u2', (6, N, 64), rb(6 * N * 64))
# int8 form
npy('q8.npy', '|i1', (B, 1, N, 512), ri8(B * N * 512))
npy('kv8.npy', '|i1', (NB, BS, 1, 512), ri8(NB * BS * 512))
npy('sq.npy', '<f4', (B, 1, N), [random.uniform(0.004, 0.012) for _ in range(B * N)])
npy('sk.npy', '<f4', (1,), [0.008])
npy('sv.npy', '<f4', (1,), [0.006])
npy('sk_neg_shape.npy', '<f4', (2,), [0.008, 0.008])
PY

OP="$FIA op fused_infer_attention_score"
MLA="--num_heads 8 --num_key_value_heads 1 --scale 0.1352 --input_layout BSND --block_size 16"

check_run() { # NAME ARGS...: exit 0 and "check: pass"
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local st=$?
    if [ $st -eq 0 ] && grep -q '^check: pass' "$WORK/$name.out"; then
        ok "$name ($(grep 'check attention_out' "$WORK/$name.out"))"
    else
        bad "$name: status $st" "$WORK/$name.err"
        sed 's/^/     /' "$WORK/$name.out"
    fi
}
check_run decode_pa_bsnd $OP --query "$WORK/q.npy:bf16" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv.npy:bf16" --value "$WORK/kv.npy:bf16" --key_rope "$WORK/kr.npy:bf16" \
    --block_table "$WORK/bt.npy" --actual_seq_lengths_kv 40,19 $MLA --check \
    --out attention_out="$WORK/o.npy" --out softmax_lse="$WORK/lse.npy"
check_run decode_amla $OP --query "$WORK/q.npy:bf16" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv.npy:bf16" --value "$WORK/kv.npy:bf16" --key_rope "$WORK/kr.npy:bf16" \
    --block_table "$WORK/bt.npy" --actual_seq_lengths_kv 40,19 $MLA --mla_rescale amla --check
check_run mtp_nz_tnd_ntd $OP --query "$WORK/qt.npy:bf16" --query_rope "$WORK/qrt.npy:bf16" \
    --key "$WORK/kvnz.npy:bf16" --value "$WORK/kvnz.npy:bf16" --key_rope "$WORK/krnz.npy:bf16" \
    --block_table "$WORK/bt.npy" --actual_seq_lengths 3,6 --actual_seq_lengths_kv 45,20 \
    --num_heads 8 --scale 0.1352 --input_layout TND_NTD --block_size 16 --sparse_mode 3 --check \
    --out attention_out="$WORK/ont.npy"
check_run int8 $OP --query "$WORK/q8.npy" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv8.npy" --value "$WORK/kv8.npy" --key_rope "$WORK/kr.npy:bf16" \
    --dequant_scale_query "$WORK/sq.npy" --dequant_scale_key "$WORK/sk.npy" \
    --dequant_scale_value "$WORK/sv.npy" --block_table "$WORK/bt.npy" \
    --actual_seq_lengths_kv 40,19 $MLA --check --out attention_out="$WORK/o8.npy"

error_case no_key_rope $OP --query "$WORK/q.npy:bf16" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv.npy:bf16" --value "$WORK/kv.npy:bf16" --block_table "$WORK/bt.npy" \
    --actual_seq_lengths_kv 40,19 $MLA
error_case too_long $OP --query "$WORK/q.npy:bf16" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv.npy:bf16" --value "$WORK/kv.npy:bf16" --key_rope "$WORK/kr.npy:bf16" \
    --block_table "$WORK/bt.npy" --actual_seq_lengths_kv 49,19 $MLA
error_case int8_scale_shape $OP --query "$WORK/q8.npy" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv8.npy" --value "$WORK/kv8.npy" --key_rope "$WORK/kr.npy:bf16" \
    --dequant_scale_query "$WORK/sq.npy" --dequant_scale_key "$WORK/sk_neg_shape.npy" \
    --dequant_scale_value "$WORK/sv.npy" --block_table "$WORK/bt.npy" \
    --actual_seq_lengths_kv 40,19 $MLA
error_case bad_rescale $OP --query "$WORK/q.npy:bf16" --query_rope "$WORK/qr.npy:bf16" \
    --key "$WORK/kv.npy:bf16" --value "$WORK/kv.npy:bf16" --key_rope "$WORK/kr.npy:bf16" \
    --block_table "$WORK/bt.npy" --actual_seq_lengths_kv 40,19 $MLA --mla_rescale fast

finish
