"""The rest of the DeepSeek-V3.2 / GLM-5 attention chain (include/fia/norm.h, rope.h, quant.h):
npu_rms_norm, npu_add_rms_norm, npu_rotary_mul, npu_interleave_rope, npu_dynamic_quant."""

from . import _fia
from ._core import (FiaInvalidArgument, as_array, check_out, dtype_arg, empty, is_torch, run,
                    unsupported)

import numpy as np


def _arr(x):
    return x if type(x) is np.ndarray or is_torch(x) else as_array(x)


def _rstd_shape(x, gamma):
    xs, g = tuple(x.shape), len(tuple(gamma.shape))
    return xs[:len(xs) - g] + (1,) * min(g, len(xs))


def _norm_outputs(x, gamma, add):
    y = empty(x, tuple(x.shape), None)
    rstd = empty(x, _rstd_shape(x, gamma), "float32")
    return (y, rstd, empty(x, tuple(x.shape), None)) if add else (y, rstd)


def npu_rms_norm(self, gamma, epsilon=1e-06, *, out=None):
    """torch_npu.npu_rms_norm: y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + epsilon) over
    the trailing dims gamma has.

      self:  [..., trailing dims] float32 / float16 / bfloat16
      gamma: the trailing dims of self, self's dtype or float32
    Returns (y: self's shape and dtype, rstd: float32, self's leading dims then a 1 per gamma
    dim). fp32 arithmetic, y rounded once. out=(y, rstd) preallocates."""
    x, gamma = _arr(self), _arr(gamma)
    y, rstd = _norm_outputs(x, gamma, False) if out is None else check_out("npu_rms_norm", out, 2)
    return run(_fia.rms_norm, (x, None, gamma, y, rstd, None, float(epsilon)), (y, rstd))


def npu_add_rms_norm(x1, x2, gamma, epsilon=1e-06, *, out=None):
    """torch_npu.npu_add_rms_norm: x = x1 + x2 (rounded to x1's dtype), then rms_norm of x.

      x1, x2: [..., trailing dims] float32 / float16 / bfloat16, the same shape and dtype
      gamma:  the trailing dims, x1's dtype or float32
    Returns (y, rstd, x): y and x x1's shape and dtype, rstd float32 (x1's leading dims then
    1s). out=(y, rstd, x) preallocates (y or x may alias x1 / x2: the residual in place)."""
    x1, x2, gamma = _arr(x1), _arr(x2), _arr(gamma)
    outs = _norm_outputs(x1, gamma, True) if out is None else check_out("npu_add_rms_norm", out, 3)
    y, rstd, x = outs
    return run(_fia.rms_norm, (x1, x2, gamma, y, rstd, x, float(epsilon)), (y, rstd, x))


def npu_rotary_mul(self, r1, r2, rotary_mode="half", rotate=None, *, out=None):
    """torch_npu.npu_rotary_mul: y = x * r1 + rotate(x) * r2 over the last dim D (even, < 896);
    rotate(x) = cat(-x[D/2:], x[:D/2]) ("half") or (-x[2j+1], x[2j]) pairs ("interleave").

      self:   [..., D] float32 / float16 / bfloat16 (BSND, BNSD, SBND, TND: any leading dims)
      r1, r2: cos and sin, self's ndim, each dim self's or 1 (broadcast), self's dtype
    Returns y: self's shape and dtype. `rotate` (the NPU's rotation-matrix input) is not
    supported (NotImplementedError)."""
    if rotate is not None:
        unsupported("npu_rotary_mul", ["rotate"])
    x, c, s = _arr(self), _arr(r1), _arr(r2)
    y = empty(x, tuple(x.shape), None) if out is None else check_out("npu_rotary_mul", out, 1)
    return run(_fia.rotary_mul, (False, x, c, s, y, str(rotary_mode)), y)


def npu_interleave_rope(x, cos, sin, *, out=None):
    """torch_npu.npu_interleave_rope: the MLA k_rope RoPE: q = cat(x[..., 0::2], x[..., 1::2])
    (evens first), y = q * cos + rotate_half(q) * sin.

      x:        [B, N, S, 64] in torch_npu (fia: any shape npu_rotary_mul takes)
      cos, sin: [B, 1, S or 1, 64] (broadcast over size-1 dims), x's dtype
    Returns y: x's shape and dtype."""
    x, c, s = _arr(x), _arr(cos), _arr(sin)
    y = empty(x, tuple(x.shape), None) if out is None else check_out("npu_interleave_rope", out, 1)
    return run(_fia.rotary_mul, (True, x, c, s, y, "half"), y)


def _quant_scale_shape(x, quant_mode):
    xs = tuple(x.shape)
    if quant_mode == "pertensor":
        return (1,)
    if quant_mode == "perchannel":
        return xs[:-2] + xs[-1:]
    return xs[:-1]


def npu_dynamic_quant(input, *, smooth_scales=None, group_index=None, dst_type=None,
                      quant_mode="pertoken", dst_type_max=0.0, out=None):
    """torch_npu.npu_dynamic_quant: symmetric dynamic int8 quantization.

      v = input * smooth (per element of the last dim; 1 without smooth_scales)
      scale = max |v| / DTYPE_MAX per row ("pertoken"), over the tensor ("pertensor") or per
              column of dim -2 ("perchannel"); DTYPE_MAX = dst_type_max or 127
      y = sat_int8(round(v / scale)), round half to even (torch.round, as the golden)
    input float32 / float16 / bfloat16; smooth_scales [H] (with group_index: [E, H], rows of
    group e use row e); group_index int32 [E] cumulative row boundaries.
    Returns (y int8 input's shape, scale float32: pertoken input.shape[:-1], pertensor [1],
    perchannel input's shape without dim -2). dst_type must be None / int8 (quint4x2:
    NotImplementedError)."""
    op = "npu_dynamic_quant"
    dt = dtype_arg(dst_type)
    if dt not in (None, "int8"):
        unsupported(op, ["dst_type=%s" % dt])
    if quant_mode not in ("pertoken", "pertensor", "perchannel"):
        raise FiaInvalidArgument("%s: quant_mode is %r, expected pertoken, pertensor or "
                                 "perchannel" % (op, quant_mode))
    x = _arr(input)
    if out is None:
        y = empty(x, tuple(x.shape), "int8")
        scale = empty(x, _quant_scale_shape(x, quant_mode), "float32")
    else:
        y, scale = check_out(op, out, 2)
    sm = _arr(smooth_scales) if smooth_scales is not None else None
    gi = _arr(group_index) if group_index is not None else None
    return run(_fia.dynamic_quant, (x, sm, gi, y, scale, quant_mode, float(dst_type_max)),
               (y, scale))


def _rms_fake(self, gamma, epsilon=1e-06):
    return _norm_outputs(self, gamma, False)


def _add_rms_fake(x1, x2, gamma, epsilon=1e-06):
    return _norm_outputs(x1, gamma, True)


def _rotary_fake(self, r1, r2, rotary_mode="half", rotate=None):
    return empty(self, tuple(self.shape), None)


def _interleave_fake(x, cos, sin):
    return empty(x, tuple(x.shape), None)


def _quant_fake(input, *, smooth_scales=None, group_index=None, dst_type=None,
                quant_mode="pertoken", dst_type_max=0.0):
    return (empty(input, tuple(input.shape), "int8"),
            empty(input, _quant_scale_shape(input, quant_mode), "float32"))


OPS = {
    "npu_rms_norm": (npu_rms_norm, _rms_fake),
    "npu_add_rms_norm": (npu_add_rms_norm, _add_rms_fake),
    "npu_rotary_mul": (npu_rotary_mul, _rotary_fake),
    "npu_interleave_rope": (npu_interleave_rope, _interleave_fake),
    "npu_dynamic_quant": (npu_dynamic_quant, _quant_fake),
}
