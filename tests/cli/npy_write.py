"""npy_write.py - the .npy writer of the tests/cli/*.sh scripts (python3 stdlib only, no numpy).

writer(out_dir) returns npy(name, descr, shape, values, fortran=False, version=1), which writes
out_dir/name: an npy header of format version 1, 2 or 3 (padded to a multiple of 64 bytes) and
the values packed little-endian with struct ('<u2' holds bfloat16 bits, see bf16). The helpers
rnd, f16 and bf16 draw from / round like the scripts expect (rnd uses the global `random`
state, so the script's random.seed fixes every value).
"""
import os
import random
import struct

_FMT = {'<f2': 'e', '<f4': 'f', '|i1': 'b', '|u1': 'B', '|b1': 'B', '<i4': 'i', '<i8': 'q',
        '<u2': 'H'}


def write_npy(path, descr, shape, values, fortran=False, version=1):
    fmt = _FMT[descr]
    shape_txt = '(' + ', '.join(str(d) for d in shape) + (',)' if len(shape) == 1 else ')')
    head = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, 'True' if fortran else 'False', shape_txt)
    pre = 10 if version == 1 else 12
    pad = 64 - (pre + len(head) + 1) % 64
    head = head + ' ' * (pad % 64) + '\n'
    with open(path, 'wb') as f:
        if version == 1:
            f.write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(head)) + head.encode())
        else:
            f.write(b'\x93NUMPY' + bytes([version, 0]) + struct.pack('<I', len(head)) +
                    head.encode())
        f.write(struct.pack('<%d%s' % (len(values), fmt), *values))


def writer(out_dir):
    def npy(name, descr, shape, values, fortran=False, version=1):
        write_npy(os.path.join(out_dir, name), descr, shape, values, fortran, version)
    return npy


def rnd(n):
    """n uniform values in [-1, 1)."""
    return [random.uniform(-1, 1) for _ in range(n)]


def f16(x):
    """x rounded through float16."""
    return struct.unpack('<e', struct.pack('<e', x))[0]


def bf16(x):
    """The bfloat16 bits of x (round to nearest even)."""
    b = struct.unpack('<I', struct.pack('<f', x))[0]
    return (b + 0x7fff + ((b >> 16) & 1)) >> 16
