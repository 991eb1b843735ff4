"""Helpers shared by the Python API tests: random inputs of a dtype, conversion to numpy or torch
(zero-copy), float64 views of results, tolerances."""

import os
import sys
import zlib

import ml_dtypes
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

try:
    import torch
except ImportError:  # torch is optional: the torch cases skip
    torch = None

import fia  # noqa: E402

KINDS = ["numpy", "torch"]
NP_DT = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32,
         "int8": np.int8, "int32": np.int32}
TOL = {"float16": 4e-3, "bfloat16": 3e-2, "float32": 2e-4}


def need(kind):
    if kind == "torch" and torch is None:
        pytest.skip("torch not installed")


def rnd(rng, shape, dtype="float16", scale=1.0):
    """Random normal values rounded to dtype, as a numpy array of that dtype."""
    if dtype == "int8":
        return rng.integers(-127, 128, size=shape).astype(np.int8)
    return (rng.standard_normal(shape) * scale).astype(NP_DT[dtype])


def to_kind(a, kind):
    """numpy array -> the same data as numpy or torch (zero-copy; bf16 via a uint16 view)."""
    if a is None or kind == "numpy":
        return a
    if a.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def f64(x):
    """Any result (numpy, torch, bf16) as a float64 numpy array."""
    if torch is not None and isinstance(x, torch.Tensor):
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.detach().numpy().astype(np.float64)
    return np.asarray(x).astype(np.float64)


def kind_of(x):
    return "torch" if torch is not None and isinstance(x, torch.Tensor) else "numpy"


def assert_close(got, want, dtype, what=""):
    got = f64(got)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    tol = TOL[dtype] * max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0)))
    with np.errstate(invalid="ignore"):
        err = np.abs(got - want)
    both_inf = np.isinf(got) & np.isinf(want) & (np.sign(got) == np.sign(want))
    err = np.where(both_inf, 0, err)
    assert np.all(err <= tol), "%s: max error %g > %g" % (what, np.nanmax(err), tol)


@pytest.fixture
def rng(request):
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)
