#!/usr/bin/env bash
# test_cli.sh - end-to-end tests of the `fia` command line (tools/): writes small .npy inputs
# with a python3 stdlib script (no numpy), runs `fia op fused_infer_attention_score` and
# `fia op smallq_flash_attention` with --check, and checks exit statuses, output files and their
# headers, and that bad calls exit 2 with exactly one line on stderr and no output file.
# Usage: test_cli.sh PATH/TO/fia
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u

FIA=${1:?usage: test_cli.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_test 1

# ---------------------------------------------------------------------------------------------
# Inputs: npy files written by npy_write.py (float16 via struct's 'e' format).
write_inputs q.npy <<'PY'
import random, sys, os
from npy_write import writer, rnd, bf16
out = sys.argv[1]
npy = writer(out)
random.seed(1)

B, S1, S2, N1, N2, D = 2, 3, 5, 4, 2, 8
q, k, v = rnd(B * S1 * N1 * D), rnd(B * S2 * N2 * D), rnd(B * S2 * N2 * D)
npy('q.npy', '<f2', (B, S1, N1, D), q)
npy('k.npy', '<f2', (B, S2, N2, D), k)
npy('v.npy', '<f2', (B, S2, N2, D), v)
npy('k_bad.npy', '<f2', (B, S2, N2, D - 2), rnd(B * S2 * N2 * (D - 2)))
# token-packed heads-outermost (NTD): T1 = 5 (lengths 2, 3), T2 = 9 (lengths 4, 5)
npy('qn.npy', '<f2', (N1, 5, D), rnd(N1 * 5 * D))
npy('kn.npy', '<f2', (N2, 9, D), rnd(N2 * 9 * D))
npy('vn.npy', '<f2', (N2, 9, D), rnd(N2 * 9 * D))
npy('q32.npy', '<f4', (B, S1, N1, D), q)
npy('k32.npy', '<f4', (B, S2, N2, D), k)
npy('v32.npy', '<f4', (B, S2, N2, D), v)
npy('qb.npy', '<u2', (B, S1, N1, D), [bf16(x) for x in q])
npy('kb.npy', '<u2', (B, S2, N2, D), [bf16(x) for x in k])
npy('vb.npy', '<u2', (B, S2, N2, D), [bf16(x) for x in v])
# causal mask [S1, S2] bool (bottom-right aligned by hand: j > i + S2 - S1 masked)
mask = [[1 if j > i + S2 - S1 else 0 for j in range(S2)] for i in range(S1)]
npy('mask.npy', '|b1', (S1, S2), [x for row in mask for x in row])
# the same mask in Fortran order, and the inputs in npy format versions 2.0 and 3.0
npy('mask_f.npy', '|b1', (S1, S2), [mask[i][j] for j in range(S2) for i in range(S1)], fortran=True)
npy('q_v2.npy', '<f2', (B, S1, N1, D), q, version=2)
npy('k_v3.npy', '<f2', (B, S2, N2, D), k, version=3)
# paged cache BnBsH: 4 blocks of 4 rows, N2*D wide; block table int64 [B, 2]
BS = 4
npy('kp.npy', '<f2', (4, BS, N2 * D), rnd(4 * BS * N2 * D))
npy('vp.npy', '<f2', (4, BS, N2 * D), rnd(4 * BS * N2 * D))
npy('bt.npy', '<i8', (B, 2), [2, 0, 3, 1])
npy('q1.npy', '<f2', (B, 1, N1 * D), rnd(B * N1 * D))
# smallq_flash_attention: Q [3, 2, 17], K/V [3, 37, 17] (an odd head dim); K with head dim 16
SN, SQ, SKV, SD = 3, 2, 37, 17
npy('sq_q.npy', '<f2', (SN, SQ, SD), rnd(SN * SQ * SD))
npy('sq_k.npy', '<f2', (SN, SKV, SD), rnd(SN * SKV * SD))
npy('sq_v.npy', '<f2', (SN, SKV, SD), rnd(SN * SKV * SD))
npy('sq_k_bad.npy', '<f2', (SN, SKV, SD - 1), rnd(SN * SKV * (SD - 1)))
# a truncated file and a file that is not npy
with open(os.path.join(out, 'q.npy'), 'rb') as f:
    data = f.read()
with open(os.path.join(out, 'trunc.npy'), 'wb') as f:
    f.write(data[:len(data) - 10])
with open(os.path.join(out, 'junk.npy'), 'wb') as f:
    f.write(b'this is not an npy file at all, just text\n')
PY

OP="$FIA op fused_infer_attention_score"
COMMON="--num_heads 4 --num_key_value_heads 2 --scale 0.35 --input_layout BSND"

# error_case outputs $ERR_OUT (default attention_out), see common.sh.

# ---------------------------------------------------------------------------------------------
# Basic commands.
if run version 0 "$FIA" --version && grep -q '^fia [0-9]' "$WORK/version.out"; then ok version; fi
if run help 0 "$FIA" help && grep -q 'usage: fia' "$WORK/help.out"; then ok help; fi
if run op_help 0 $OP --help && grep -q -- '--num_key_value_heads' "$WORK/op_help.out"; then
    ok op_help
fi

# GQA BSND float16 with softmax_lse, checked against the oracle.
if run gqa_f16 0 $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" $COMMON \
    --check --out attention_out="$WORK/o.npy" --out softmax_lse="$WORK/lse.npy"; then
    h=$(npy_header "$WORK/o.npy")
    l=$(npy_header "$WORK/lse.npy")
    if ! grep -q '^check: pass' "$WORK/gqa_f16.out"; then
        bad "gqa_f16: check did not pass" "$WORK/gqa_f16.out"
    elif [ "$h" != "<f2 (2, 3, 4, 8) 384" ]; then
        bad "gqa_f16: attention_out header is '$h'"
    elif [ "$l" != "<f4 (2, 4, 3, 1) 96" ]; then
        bad "gqa_f16: softmax_lse header is '$l'"
    elif ls "$WORK"/*.tmp.* >/dev/null 2>&1; then
        bad "gqa_f16: a temporary file was left behind"
    else
        ok "gqa_f16 ($(grep 'check attention_out' "$WORK/gqa_f16.out"))"
    fi
fi

# float32, causal with a full mask (sparse_mode 0 + mask) and with sparse_mode 3 + lengths.
if run f32_mask 0 $OP --query "$WORK/q32.npy" --key "$WORK/k32.npy" --value "$WORK/v32.npy" \
    $COMMON --atten_mask "$WORK/mask.npy" --check --out attention_out="$WORK/o32.npy"; then
    h=$(npy_header "$WORK/o32.npy")
    if grep -q '^check: pass' "$WORK/f32_mask.out" && [ "$h" = "<f4 (2, 3, 4, 8) 768" ]; then
        ok f32_mask
    else
        bad "f32_mask: header '$h'" "$WORK/f32_mask.out"
    fi
fi
# npy versions 2.0 / 3.0 and a Fortran-order mask (read through strides, or refused by the
# library with exit status 2 and its message if it needs a unit innermost stride).
if run versions 0 $OP --query "$WORK/q_v2.npy" --key "$WORK/k_v3.npy" --value "$WORK/v.npy" \
    $COMMON --check; then
    if grep -q '^check: pass' "$WORK/versions.out"; then ok npy_v2_v3; else
        bad npy_v2_v3 "$WORK/versions.out"; fi
fi
"$FIA" op fused_infer_attention_score --query "$WORK/q32.npy" --key "$WORK/k32.npy" \
    --value "$WORK/v32.npy" $COMMON --atten_mask "$WORK/mask_f.npy" --check \
    --out attention_out="$WORK/of.npy" >"$WORK/fortran.out" 2>"$WORK/fortran.err"
st=$?
if [ $st -eq 0 ] && grep -q '^check: pass' "$WORK/fortran.out" &&
    cmp -s <(tail -c 768 "$WORK/of.npy") <(tail -c 768 "$WORK/o32.npy"); then
    ok "fortran_mask (read through strides, same output as the C-order mask)"
elif [ $st -eq 2 ] && [ "$(wc -l <"$WORK/fortran.err")" -eq 1 ] && [ ! -e "$WORK/of.npy" ]; then
    ok "fortran_mask (refused: $(cat "$WORK/fortran.err"))"
else
    bad "fortran_mask: status $st" "$WORK/fortran.err"
fi

if run lengths 0 $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" $COMMON \
    --actual_seq_lengths 2,3 --actual_seq_lengths_kv 4,5 --check; then
    if grep -q '^check: pass' "$WORK/lengths.out"; then ok lengths; else
        bad lengths "$WORK/lengths.out"; fi
fi

# NTD_TND: NTD inputs, TND output [T1, N1, D]; lse [T1, N1, 1]
if run ntd_tnd 0 $OP --query "$WORK/qn.npy" --key "$WORK/kn.npy" --value "$WORK/vn.npy" \
    --num_heads 4 --num_key_value_heads 2 --scale 0.35 --input_layout NTD_TND --sparse_mode 3 \
    --actual_seq_lengths 2,5 --actual_seq_lengths_kv 4,9 --check \
    --out attention_out="$WORK/ont.npy" --out softmax_lse="$WORK/lnt.npy"; then
    if grep -q '^check: pass' "$WORK/ntd_tnd.out" && [ "$(npy_header "$WORK/ont.npy")" = "<f2 (5, 4, 8) 320" ] &&
        [ "$(npy_header "$WORK/lnt.npy")" = "<f4 (5, 4, 1) 80" ]; then
        ok "ntd_tnd ($(grep 'check attention_out' "$WORK/ntd_tnd.out"))"
    else bad ntd_tnd "$WORK/ntd_tnd.out"; fi
fi

# bfloat16 in and out (uint16 .npy with :bf16).
if run bf16 0 $OP --query "$WORK/qb.npy:bf16" --key "$WORK/kb.npy:bf16" \
    --value "$WORK/vb.npy:bf16" $COMMON --check --out attention_out="$WORK/ob.npy"; then
    h=$(npy_header "$WORK/ob.npy")
    if grep -q '^check: pass' "$WORK/bf16.out" && [ "$h" = "<u2 (2, 3, 4, 8) 384" ]; then
        ok bf16
    else
        bad "bf16: header '$h'" "$WORK/bf16.out"
    fi
fi

# Paged decode, BSH query, int64 block table narrowed to int32.
if run paged 0 $OP --query "$WORK/q1.npy" --key "$WORK/kp.npy" --value "$WORK/vp.npy" \
    --block_table "$WORK/bt.npy" --block_size 4 --actual_seq_lengths_kv 7,5 --num_heads 4 \
    --num_key_value_heads 2 --scale 0.35 --check --out attention_out="$WORK/op.npy"; then
    h=$(npy_header "$WORK/op.npy")
    if grep -q '^check: pass' "$WORK/paged.out" && [ "$h" = "<f2 (2, 1, 32) 128" ]; then
        ok paged
    else
        bad "paged: header '$h'" "$WORK/paged.out"
    fi
fi

# smallq_flash_attention: head dim 17, 3 heads, 2 query tokens; O is float16 [3, 2, 17].
SQOP="$FIA op smallq_flash_attention"
if run smallq 0 $SQOP --q "$WORK/sq_q.npy" --k "$WORK/sq_k.npy" --v "$WORK/sq_v.npy" \
    --threads 2 --check --out o="$WORK/sq_o.npy"; then
    h=$(npy_header "$WORK/sq_o.npy")
    if ! grep -q '^check: pass' "$WORK/smallq.out"; then
        bad "smallq: check did not pass" "$WORK/smallq.out"
    elif [ "$h" != "<f2 (3, 2, 17) 204" ]; then
        bad "smallq: o header is '$h'"
    else
        ok "smallq ($(grep 'check o' "$WORK/smallq.out"))"
    fi
fi

# ---------------------------------------------------------------------------------------------
# Bad calls: exit 2, one line on stderr, no output file.
error_case bad_head_dim $OP --query "$WORK/q.npy" --key "$WORK/k_bad.npy" --value "$WORK/v.npy" \
    $COMMON
error_case unknown_flag $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    $COMMON --no_such_flag 1
error_case missing_file $OP --query "$WORK/nope.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    $COMMON
error_case truncated_npy $OP --query "$WORK/trunc.npy" --key "$WORK/k.npy" \
    --value "$WORK/v.npy" $COMMON
error_case junk_npy $OP --query "$WORK/junk.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    $COMMON
error_case bf16_not_u2 $OP --query "$WORK/q.npy:bf16" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    $COMMON
error_case bad_heads $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    --num_heads 4 --num_key_value_heads 3 --input_layout BSND
error_case bad_layout $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy" \
    --num_heads 4 --num_key_value_heads 2 --input_layout XYZ
error_case missing_required $OP --query "$WORK/q.npy" --key "$WORK/k.npy" --value "$WORK/v.npy"
error_case unknown_op "$FIA" op no_such_operator --query "$WORK/q.npy"
# smallq: K's head dim differs from Q's (the line names K and dim 2); V missing.
ERR_OUT=o error_case smallq_bad_head_dim $SQOP --q "$WORK/sq_q.npy" --k "$WORK/sq_k_bad.npy" \
    --v "$WORK/sq_v.npy"
if grep -q 'K dim 2' "$WORK/smallq_bad_head_dim.err"; then ok "smallq_bad_head_dim names K dim 2"
else bad "smallq_bad_head_dim: the line does not name K dim 2" "$WORK/smallq_bad_head_dim.err"; fi
ERR_OUT=o error_case smallq_missing_v $SQOP --q "$WORK/sq_q.npy" --k "$WORK/sq_k.npy"

finish
