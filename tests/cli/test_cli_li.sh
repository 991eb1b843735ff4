#!/usr/bin/env bash
# test_cli_li.sh - end-to-end tests of `fia op lightning_indexer` and
# `fia op quant_lightning_indexer`: writes small .npy inputs with a python3 stdlib script (no
# numpy), runs the operators with --check, compares the indices of one call with a top-k computed
# independently in python, and checks that bad calls exit 2 with exactly one stderr line and no
# output file.
# Usage: test_cli_li.sh PATH/TO/fia
# Ends with "N passed, N failed"; exits nonzero when a check failed.
set -u

FIA=${1:?usage: test_cli_li.sh PATH/TO/fia}
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cli_setup fia_cli_li 5
ERR_OUT=sparse_indices

write_inputs q.npy <<'PY'
import random, sys, os
from npy_write import writer, f16, bf16
out = sys.argv[1]
npy = writer(out)
random.seed(5)

# decode: B 2, S1 1, S2 50, N1 8, D 16, k 7 (BSND, fp16); python computes the expected top-k
B, S2, N1, D, K = 2, 50, 8, 16, 7
q = [f16(random.uniform(-1, 1)) for _ in range(B * N1 * D)]
k = [f16(random.uniform(-1, 1)) for _ in range(B * S2 * D)]
w = [f16(random.uniform(-0.5, 1)) for _ in range(B * N1)]
npy('q.npy', '<f2', (B, 1, N1, D), q)
npy('k.npy', '<f2', (B, S2, 1, D), k)
npy('w.npy', '<f2', (B, 1, N1), w)
want = []
for b in range(B):
    sc = []
    for j in range(S2):
        s = 0.0
        for h in range(N1):
            dot = sum(q[(b * N1 + h) * D + c] * k[(b * S2 + j) * D + c] for c in range(D))
            s += w[b * N1 + h] * max(dot, 0.0)
        sc.append(s)
    order = sorted(range(S2), key=lambda j: (-sc[j], j))
    want += order[:K]
with open(os.path.join(out, 'want.txt'), 'w') as f:
    f.write(' '.join(str(x) for x in want) + '\n')

# TND query (lengths 3, 2) against a paged bf16 cache (block 4), fp32 weights, k 12
T, bs, nblk = 5, 4, 6
npy('qt.npy', '<u2', (T, N1, D), [bf16(random.uniform(-1, 1)) for _ in range(T * N1 * D)])
npy('kp.npy', '<u2', (nblk, bs, 1, D), [bf16(random.uniform(-1, 1)) for _ in range(nblk * bs * D)])
npy('wt.npy', '<f4', (T, N1), [random.uniform(-0.5, 1) for _ in range(T * N1)])
npy('bt.npy', '<i8', (2, 3), [4, 0, 2, 5, 1, -1])
# int8: the same geometry as the decode case
npy('qi.npy', '|i1', (B, 1, N1, D), [random.randint(-127, 127) for _ in range(B * N1 * D)])
npy('ki.npy', '|i1', (B, S2, 1, D), [random.randint(-127, 127) for _ in range(B * S2 * D)])
npy('sq.npy', '<f2', (B, 1, N1), [random.uniform(0.001, 0.02) for _ in range(B * N1)])
sk = [random.uniform(0.001, 0.02) for _ in range(B * S2)]
npy('sk.npy', '<f2', (B, S2, 1), sk)
sk[7] = -0.01
npy('sk_neg.npy', '<f2', (B, S2, 1), sk)
PY

# Prints the int32 payload of an npy file, space separated.
npy_ints() {
    python3 - "$1" <<'PY'
import ast, struct, sys
with open(sys.argv[1], 'rb') as f:
    f.read(8)
    n = struct.unpack('<H', f.read(2))[0]
    f.read(n)
    rest = f.read()
print(' '.join(str(x) for x in struct.unpack('<%di' % (len(rest) // 4), rest)))
PY
}

LI="$FIA op lightning_indexer"
QLI="$FIA op quant_lightning_indexer"

if run li_help 0 $LI --help && grep -q -- '--sparse_count' "$WORK/li_help.out"; then ok li_help; fi

# decode, fp16, checked against the oracle and against python's own top-k
if run li_decode 0 $LI --query "$WORK/q.npy" --key "$WORK/k.npy" --weights "$WORK/w.npy" \
    --sparse_count 7 --check --out sparse_indices="$WORK/i.npy" --out sparse_values="$WORK/v.npy"; then
    hi=$(npy_header "$WORK/i.npy")
    hv=$(npy_header "$WORK/v.npy")
    if ! grep -q '^check: pass' "$WORK/li_decode.out"; then
        bad "li_decode: check did not pass" "$WORK/li_decode.out"
    elif [ "$hi" != "<i4 (2, 1, 1, 7) 56" ] || [ "$hv" != "<f4 (2, 1, 1, 7) 56" ]; then
        bad "li_decode: headers '$hi' / '$hv'"
    elif [ "$(npy_ints "$WORK/i.npy")" != "$(cat "$WORK/want.txt")" ]; then
        bad "li_decode: indices $(npy_ints "$WORK/i.npy") differ from python's $(cat "$WORK/want.txt")"
    else
        ok "li_decode (indices equal python's top-k)"
    fi
fi

# TND query, paged bf16 cache, fp32 weights, k larger than what is visible: -1 padding
if run li_paged 0 $LI --query "$WORK/qt.npy:bf16" --key "$WORK/kp.npy:bf16" --weights "$WORK/wt.npy" \
    --block_table "$WORK/bt.npy" --layout_query TND --layout_key PA_BSND \
    --actual_seq_lengths_query 3,5 --actual_seq_lengths_key 9,6 --sparse_count 12 --sparse_mode 3 \
    --check --out sparse_indices="$WORK/ip.npy"; then
    hi=$(npy_header "$WORK/ip.npy")
    ints=$(npy_ints "$WORK/ip.npy")
    # row 0 (batch 0, i 0) sees 9 - 3 + 0 + 1 = 7 keys: 7 indices then 5 times -1
    row0=$(echo "$ints" | cut -d' ' -f1-12)
    if ! grep -q '^check: pass' "$WORK/li_paged.out"; then
        bad "li_paged: check did not pass" "$WORK/li_paged.out"
    elif [ "$hi" != "<i4 (5, 1, 12) 240" ]; then
        bad "li_paged: header '$hi'"
    elif [ "$(echo "$row0" | tr ' ' '\n' | grep -c '^-1$')" -ne 5 ]; then
        bad "li_paged: row 0 is '$row0', want 7 indices and 5 x -1"
    else
        ok "li_paged (row 0: $row0)"
    fi
fi

# int8
if run qli 0 $QLI --query "$WORK/qi.npy" --key "$WORK/ki.npy" --weights "$WORK/w.npy" \
    --query_dequant_scale "$WORK/sq.npy" --key_dequant_scale "$WORK/sk.npy" --sparse_count 7 \
    --sparse_mode 0 --check --out sparse_indices="$WORK/iq.npy"; then
    if grep -q '^check: pass' "$WORK/qli.out" && [ "$(npy_header "$WORK/iq.npy")" = "<i4 (2, 1, 1, 7) 56" ]; then
        ok qli
    else
        bad "qli" "$WORK/qli.out"
    fi
fi

# the contract's fp16 rounding (default) and --exact_ranking 1, both checked against their oracle;
# sparse_values in the query dtype
if run qli_exact 0 $QLI --query "$WORK/qi.npy" --key "$WORK/ki.npy" --weights "$WORK/w.npy" \
    --query_dequant_scale "$WORK/sq.npy" --key_dequant_scale "$WORK/sk.npy" --sparse_count 7 \
    --sparse_mode 0 --exact_ranking 1 --check --out sparse_indices="$WORK/iqe.npy"; then
    if grep -q '^check: pass' "$WORK/qli_exact.out"; then ok qli_exact_ranking; else bad qli_exact "$WORK/qli_exact.out"; fi
fi
if run li_values_f16 0 $LI --query "$WORK/q.npy" --key "$WORK/k.npy" --weights "$WORK/w.npy" \
    --sparse_count 7 --values_dtype float16 --check --out sparse_values="$WORK/v16.npy"; then
    if grep -q '^check: pass' "$WORK/li_values_f16.out" && [ "$(npy_header "$WORK/v16.npy")" = "<f2 (2, 1, 1, 7) 28" ]; then
        ok li_values_float16
    else bad li_values_f16 "$WORK/li_values_f16.out"; fi
fi
ERR_OUT=sparse_indices error_case exact_ranking_2 $QLI --query "$WORK/qi.npy" --key "$WORK/ki.npy" \
    --weights "$WORK/w.npy" --query_dequant_scale "$WORK/sq.npy" --key_dequant_scale "$WORK/sk.npy" \
    --exact_ranking 2
ERR_OUT=sparse_indices error_case values_dtype_int $LI --query "$WORK/q.npy" --key "$WORK/k.npy" \
    --weights "$WORK/w.npy" --values_dtype int32
# ':bf16' on an int32 output is refused (exit 2, no file)
rm -f "$WORK/ib.npy"
if run idx_bf16 2 $LI --query "$WORK/q.npy" --key "$WORK/k.npy" --weights "$WORK/w.npy" \
    --sparse_count 7 --out sparse_indices="$WORK/ib.npy:bf16"; then
    if ls "$WORK"/ib.npy* >/dev/null 2>&1; then bad "idx_bf16: a file was written"; else ok "int32 output :bf16 refused"; fi
fi

# errors: exit 2, one line, no output file
error_case neg_scale $QLI --query "$WORK/qi.npy" --key "$WORK/ki.npy" --weights "$WORK/w.npy" \
    --query_dequant_scale "$WORK/sq.npy" --key_dequant_scale "$WORK/sk_neg.npy"
error_case k_zero $LI --query "$WORK/q.npy" --key "$WORK/k.npy" --weights "$WORK/w.npy" --sparse_count 0
error_case no_block_table $LI --query "$WORK/qt.npy:bf16" --key "$WORK/kp.npy:bf16" \
    --weights "$WORK/wt.npy" --layout_query TND --layout_key PA_BSND \
    --actual_seq_lengths_query 3,5 --actual_seq_lengths_key 9,6
error_case bad_layout $LI --query "$WORK/q.npy" --key "$WORK/k.npy" --weights "$WORK/w.npy" \
    --layout_key BNSD
error_case int8_to_float $LI --query "$WORK/qi.npy" --key "$WORK/ki.npy" --weights "$WORK/w.npy"

finish
