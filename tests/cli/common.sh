# common.sh - the helpers every tests/cli/*.sh script sources (after setting FIA):
#   cli_setup TAG [SEED]  needs python3 (else "0 passed, 1 failed", exit 1); makes $WORK (removed
#                         on exit), zeroes PASS / FAIL, prints the seed and $WORK when SEED given
#   write_inputs FILE     runs the python script on stdin with $WORK as argv[1] and npy_write.py
#                         importable; FILE must exist in $WORK afterwards (else exit 1)
#   ok NAME / bad NAME [FILE]   count a passed / failed check (bad prints FILE indented)
#   run NAME STATUS CMD...      runs CMD, stdout/stderr to $WORK/NAME.{out,err}; returns 0 when
#                               it exits STATUS, else counts a failure and returns 1
#   error_case NAME CMD...      CMD --out $ERR_OUT=... (default attention_out) must exit 2 with
#                               exactly one "fia: error: " line on stderr and write no file
#   npy_header FILE             prints "descr shape payload-bytes" of an npy file
#   finish                      prints "N passed, N failed"; its status is the script's
CLI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cli_setup() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo "python3 is needed"
        echo "0 passed, 1 failed"
        exit 1
    fi
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    if [ -n "${2:-}" ]; then echo "seed $2 (fixed), work dir $WORK"; fi
    PASS=0
    FAIL=0
}

write_inputs() {
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$CLI_DIR${PYTHONPATH:+:$PYTHONPATH}" python3 - "$WORK"
    [ -f "$WORK/$1" ] || { echo "cannot write the inputs"; echo "0 passed, 1 failed"; exit 1; }
}

ok() { PASS=$((PASS + 1)); echo "ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     /' "$2"; }

run() {
    local name=$1 want=$2
    shift 2
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local got=$?
    if [ "$got" -ne "$want" ]; then
        bad "$name: exit status $got, want $want"
        cat "$WORK/$name.out" "$WORK/$name.err" | sed 's/^/     /'
        return 1
    fi
    return 0
}

error_case() {
    local name=$1
    shift
    rm -f "$WORK/err_out.npy"
    if run "$name" 2 "$@" --out "${ERR_OUT:-attention_out}"="$WORK/err_out.npy"; then
        if [ "$(wc -l <"$WORK/$name.err")" -ne 1 ] || ! grep -q '^fia: error: ' "$WORK/$name.err"; then
            bad "$name: stderr is not one 'fia: error:' line" "$WORK/$name.err"
        elif ls "$WORK"/err_out.npy* >/dev/null 2>&1; then
            bad "$name: an output file was written"
        else
            ok "$name ($(cat "$WORK/$name.err"))"
        fi
    fi
}

npy_header() {
    python3 - "$1" <<'PY'
import ast, struct, sys
with open(sys.argv[1], 'rb') as f:
    magic = f.read(8)
    assert magic[:6] == b'\x93NUMPY', magic
    n = struct.unpack('<H', f.read(2))[0] if magic[6] == 1 else struct.unpack('<I', f.read(4))[0]
    h = ast.literal_eval(f.read(n).decode())
    rest = f.read()
print(h['descr'], tuple(h['shape']), len(rest))
PY
}

finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
