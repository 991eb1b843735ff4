"""Shared machinery of the operator wrappers: contexts, output allocation of the query's kind,
dtype helpers, plans and the NotImplementedError rules. torch is never imported here unless the
caller passes torch tensors."""

import sys
import threading

import numpy as np

from . import _fia

try:  # ml_dtypes gives numpy a bfloat16 dtype
    import ml_dtypes as _ml_dtypes

    BF16_NP = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is a dependency
    BF16_NP = None

FiaError = _fia.FiaError
FiaInvalidArgument = _fia.FiaInvalidArgument
FiaUnsupported = _fia.FiaUnsupported

INT32_MAX = 2147483647
INT64_MAX = 9223372036854775807

# ---------------------------------------------------------------------------------------------
# Contexts: one per OS thread by default, created lazily; `with fia.Context(n):` overrides it.
# ---------------------------------------------------------------------------------------------

_tls = threading.local()
_default = {"num_threads": 0, "isa": "auto", "gen": 0}


class Context:
    """A fia context: the kernel level and a thread pool of ``num_threads`` workers.

    ``Context(num_threads=0, isa="auto")``: 0 threads means ``FIA_NUM_THREADS`` if set, else the
    number of online CPUs; isa is "auto", "scalar", "avx2" or "avx512". Use it as a context
    manager to run the calls of the current Python thread on it::

        with fia.Context(num_threads=4):
            out, _ = fia.npu_fused_infer_attention_score(q, k, v, num_heads=32, ...)

    Calls on one context are serialized; give each Python thread its own context (the default
    contexts are per thread) to run calls in parallel.
    """

    __slots__ = ("_c", "_prev", "_gen")

    def __init__(self, num_threads=0, isa="auto"):
        self._c = _fia.Context(int(num_threads), str(isa))
        self._prev = []
        self._gen = -1  # never replaced by set_num_threads

    @property
    def num_threads(self):
        return self._c.num_threads

    @property
    def isa(self):
        return self._c.isa

    def __enter__(self):
        self._prev.append(getattr(_tls, "ctx", None))
        _tls.ctx = self
        return self

    def __exit__(self, *exc):
        prev = self._prev.pop()
        if prev is None:
            del _tls.ctx
        else:
            _tls.ctx = prev
        return False

    def __repr__(self):
        return "fia.Context(num_threads=%d, isa=%r)" % (self.num_threads, self.isa)


def current_context():
    """The context the calling Python thread uses (created on first use)."""
    c = getattr(_tls, "ctx", None)
    if c is None or (c._gen >= 0 and c._gen != _default["gen"]):
        c = Context(_default["num_threads"], _default["isa"])
        c._gen = _default["gen"]
        _tls.ctx = c
    return c


def set_num_threads(n):
    """Sets the thread count of the default contexts (every Python thread's, from its next call).
    0 restores the default: ``FIA_NUM_THREADS`` if set, else the number of online CPUs. Contexts
    made with ``fia.Context(...)`` keep theirs."""
    n = int(n)
    if n < 0:
        raise ValueError("set_num_threads: n is %d, must be >= 0" % n)
    _default["num_threads"] = n
    _default["gen"] += 1


def get_num_threads():
    """The thread count of the calling thread's current context."""
    return current_context().num_threads


# ---------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------

class Plan:
    """A validated, scheduled call that can be run again and again.

    ``fia.plan.<op>(...)`` takes exactly the arguments of ``fia.<op>`` and returns a Plan instead
    of running the call. ``plan.execute()`` (or ``plan()``) runs it and returns the same output
    objects the op would return. The plan keeps references to every tensor of the call: fia
    reads the inputs and writes the outputs at the addresses given at plan time, so the decode
    loop rewrites the input contents in place (``q[...] = new_q``, ``torch.Tensor.copy_``) and
    re-executes, with no validation or allocation. Lengths and block tables are copied at plan
    time: changing them needs a new plan.

    The workspace is owned by the plan (allocated on first execute), or passed in:
    ``plan.execute(workspace=buf)`` with any contiguous writable array of at least
    ``plan.workspace_size`` bytes.
    """

    __slots__ = ("_p", "_keep", "outputs", "_post")

    def __init__(self, p, keep, outputs, post):
        self._p = p
        self._keep = keep
        self.outputs = outputs
        self._post = post

    @property
    def workspace_size(self):
        return self._p.workspace_size

    def execute(self, workspace=None):
        self._p.execute(workspace)
        if self._post is not None:
            self._post()
        return self.outputs

    __call__ = execute


def run(fn, args, outputs, post=None):
    """Runs fn(ctx, make_plan, *args), or returns a Plan when called under fia.plan.<op>."""
    st = _tls.__dict__
    ctx = st.get("ctx")
    if ctx is None or (ctx._gen >= 0 and ctx._gen != _default["gen"]):
        ctx = current_context()
    if st.get("planning"):
        st["planning"] = False
        return Plan(fn(ctx._c, True, *args), args, outputs, post)
    fn(ctx._c, False, *args)
    if post is not None:
        post()
    return outputs


def planner(op):
    """fia.plan.<op>: the op with the same signature, returning a Plan."""
    import functools

    @functools.wraps(op)
    def plan_op(*args, **kwargs):
        _tls.planning = True
        try:
            res = op(*args, **kwargs)
        finally:
            _tls.planning = False
        if not isinstance(res, Plan):  # pragma: no cover - every op goes through run()
            raise RuntimeError("fia.plan: %s did not plan" % op.__name__)
        return res

    plan_op.__doc__ = ("Plans fia.%s (same arguments) and returns a fia.Plan; see fia.Plan.\n\n"
                       % op.__name__) + (op.__doc__ or "")
    return plan_op


# ---------------------------------------------------------------------------------------------
# Tensor kinds, dtypes and output allocation
# ---------------------------------------------------------------------------------------------

_TORCH_TYPES = set()


def is_torch(x):
    t = type(x)
    if t in _TORCH_TYPES:
        return True
    if t.__module__.startswith("torch") and "torch" in sys.modules and isinstance(
            x, sys.modules["torch"].Tensor):
        _TORCH_TYPES.add(t)
        return True
    return False


def as_array(x):
    """numpy arrays and torch tensors pass as they are; any other __dlpack__ / buffer object is
    viewed as a numpy array (zero-copy) so outputs can be made of a known kind."""
    if x is None or type(x) is np.ndarray or is_torch(x):
        return x
    if hasattr(x, "__dlpack__"):
        return np.from_dlpack(x)
    return np.asarray(x)


_TORCH_DT = {}


def _torch_dtype(name):
    d = _TORCH_DT.get(name)
    if d is None:
        import torch

        d = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
             "int8": torch.int8, "int32": torch.int32, "int64": torch.int64,
             "uint8": torch.uint8, "bool": torch.bool}[name]
        _TORCH_DT[name] = d
    return d


_NP_DT = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16), "bfloat16": BF16_NP,
          "int8": np.dtype(np.int8), "int32": np.dtype(np.int32), "int64": np.dtype(np.int64),
          "uint8": np.dtype(np.uint8), "bool": np.dtype(np.bool_)}


_NP_NAMES = {}
_TORCH_NAMES = {}


def dtype_name(x):
    """'float16', 'bfloat16', 'int8', ... of a numpy array or torch tensor (cached: numpy's
    dtype.name is a Python-level property costing microseconds)."""
    d = x.dtype
    if type(x) is np.ndarray:
        n = _NP_NAMES.get(d.num)
        if n is None:
            n = _NP_NAMES[d.num] = d.name
        return n
    n = _TORCH_NAMES.get(d)
    if n is None:
        n = _TORCH_NAMES[d] = str(d).rpartition(".")[2]
    return n


_torch_mod = []


def empty(like, shape, dtype):
    """An uninitialized output of like's kind (numpy or torch, like's device); dtype is a name
    or None for like's dtype."""
    if type(like) is np.ndarray:
        return np.empty(shape, like.dtype if dtype is None else _NP_DT[dtype])
    if not _torch_mod:
        import torch

        _torch_mod.append(torch)
    torch = _torch_mod[0]
    dt = like.dtype if dtype is None else _torch_dtype(dtype)
    if like.is_cpu:  # torch.empty(*shape) parses faster than a shape tuple plus device=
        return torch.empty(*shape, dtype=dt)
    return torch.empty(shape, dtype=dt, device=like.device)


def cast_into(dst, src):
    """dst[...] = src with a dtype conversion (both of one kind)."""
    if type(dst) is np.ndarray:
        np.copyto(dst, src, casting="unsafe")
    else:
        dst.copy_(src)


# c10 ScalarType values torch_npu's `int? xxx_dtype` arguments carry (op-plugin meta map).
_SCALAR_TYPE = {1: "int8", 3: "int32", 5: "float16", 6: "float32", 15: "bfloat16",
                16: "quint4x2", 290: "hifloat8"}


def dtype_arg(x):
    """The dtype name of a torch_npu `int? *_dtype` argument: a c10 ScalarType int, a torch
    dtype, a numpy dtype or a name; None stays None."""
    if x is None:
        return None
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return _SCALAR_TYPE.get(int(x), "scalar_type_%d" % int(x))
    if isinstance(x, str):
        return x
    if hasattr(x, "is_floating_point") or type(x).__module__ == "torch":
        return str(x)[6:]
    return np.dtype(x).name


def unsupported(op, names, why="not implemented by fia"):
    raise FiaUnsupported("%s: %s %s" % (op, ", ".join(names), why))


def check_out(op, out, n):
    """out= must be a tuple/list of n outputs (or one output when n == 1)."""
    if n == 1:
        if isinstance(out, (tuple, list)):
            if len(out) != 1:
                raise FiaInvalidArgument("%s: out has %d tensors, expected 1" % (op, len(out)))
            return out[0]
        return out
    if not isinstance(out, (tuple, list)) or len(out) != n:
        raise FiaInvalidArgument("%s: out must be a tuple of %d tensors" % (op, n))
    return tuple(out)


def check_out_shape(op, name, t, shape, dtype, query):
    """Validates one caller-supplied output against the expected shape / dtype (the C call
    checks it again; this gives torch_npu's [0] flag-off outputs their rule)."""
    if tuple(t.shape) != tuple(shape):
        raise FiaInvalidArgument("%s: %s has shape %s, expected %s" % (op, name, tuple(t.shape),
                                                                       tuple(shape)))
    want = dtype_name(query) if dtype is None else dtype
    if dtype_name(t) != want:
        raise FiaInvalidArgument("%s: %s has dtype %s, expected %s" % (op, name, dtype_name(t), want))
