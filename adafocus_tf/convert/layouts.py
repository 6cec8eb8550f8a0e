"""PyTorch tensor layouts -> Keras variable layouts (pure numpy).

| PyTorch                                  | Keras                        |
| ---------------------------------------- | ---------------------------- |
| Conv2d weight [O, I, kh, kw] (OIHW)      | Conv2D kernel [kh, kw, I, O] |
| Conv3d weight [O, I, kt, kh, kw]         | Conv3D kernel                |
|                                          |   [kt, kh, kw, I, O]         |
| Conv2d along time, weight [O, I, kt, 1]  | Conv1D kernel [kt, I, O]     |
|   (on [B, C, T, 1])                      |                              |
| depthwise Conv2d weight [C, 1, kh, kw]   | DepthwiseConv2D kernel       |
|   (``groups == C``)                      |   [kh, kw, C, 1]             |
| Linear weight [out, in]                  | Dense kernel [in, out]       |
| Linear after ``Flatten`` of an NCHW map  | Dense kernel whose rows are  |
|   (inputs ordered c, h, w)               |   ordered h, w, c (NHWC)     |
| BatchNorm weight, bias, running_mean,    | gamma, beta, moving_mean,    |
|   running_var                            |   moving_variance            |
| GRU weight_ih [3H, I], weight_hh [3H, H],| GRU(reset_after=True) kernel |
|   bias_ih [3H], bias_hh [3H]; gate rows  |   [I, 3H], recurrent_kernel  |
|   r, z, n                                |   [H, 3H], bias [2, 3H];     |
|                                          |   gate columns z, r, h       |

The GRU formulations agree once the gates are reordered: PyTorch computes
n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) and h' = (1 - z) n + z h;
Keras with ``reset_after=True`` computes hh = tanh(x W_h + b_h + r * (h U_h
+ b_rh)) and h' = z h + (1 - z) hh, with its input bias in row 0 and its
recurrent bias in row 1 of ``bias``.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def _check_rank(w: np.ndarray, rank: int, what: str) -> None:
  if w.ndim != rank:
    raise ValueError(f"{what} must have rank {rank}, got shape {w.shape}")


def conv_kernel(w: np.ndarray) -> np.ndarray:
  """Conv2d OIHW -> Conv2D HWIO."""
  _check_rank(w, 4, "a Conv2d weight")
  return np.transpose(w, (2, 3, 1, 0))


def conv3d_kernel(w: np.ndarray) -> np.ndarray:
  """Conv3d [O, I, kt, kh, kw] -> Conv3D [kt, kh, kw, I, O]."""
  _check_rank(w, 5, "a Conv3d weight")
  return np.transpose(w, (2, 3, 4, 1, 0))


def time_conv_kernel(w: np.ndarray) -> np.ndarray:
  """A Conv2d of kernel (kt, 1) over [B, C, T, 1] -> Conv1D [kt, I, O]."""
  _check_rank(w, 4, "a Conv2d weight")
  if w.shape[3] != 1:
    raise ValueError(f"a convolution along time has kernel width 1, got "
                     f"shape {w.shape}")
  return np.transpose(w[..., 0], (2, 1, 0))


def depthwise_kernel(w: np.ndarray) -> np.ndarray:
  """Depthwise Conv2d [C, 1, kh, kw] -> DepthwiseConv2D [kh, kw, C, 1]."""
  _check_rank(w, 4, "a depthwise Conv2d weight")
  if w.shape[1] != 1:
    raise ValueError(f"a depthwise weight has 1 input channel per group, got "
                     f"shape {w.shape}")
  return np.transpose(w, (2, 3, 0, 1))


def dense_kernel(w: np.ndarray) -> np.ndarray:
  """Linear [out, in] -> Dense [in, out]."""
  _check_rank(w, 2, "a Linear weight")
  return np.ascontiguousarray(w.T)


def flattened_dense_kernel(w: np.ndarray, chw: Tuple[int, int, int]
                           ) -> np.ndarray:
  """Linear after ``Flatten`` of an NCHW map -> Dense after an NHWC flatten.

  PyTorch flattens a [C, H, W] map channel-major, Keras flattens [H, W, C]
  channel-minor, so the input rows are permuted as well as transposed.

  Args:
    w: Linear weight [out, C*H*W].
    chw: (C, H, W) of the flattened map.
  """
  _check_rank(w, 2, "a Linear weight")
  c, h, wd = chw
  if w.shape[1] != c * h * wd:
    raise ValueError(f"a Linear weight over a flattened {chw} map has "
                     f"{c * h * wd} inputs, got shape {w.shape}")
  out = w.reshape(w.shape[0], c, h, wd).transpose(2, 3, 1, 0)
  return np.ascontiguousarray(out.reshape(h * wd * c, w.shape[0]))


def batch_norm(weight, bias, running_mean, running_var):
  """BatchNorm tensors in Keras' variable order (gamma, beta, mean, var)."""
  return [weight, bias, running_mean, running_var]


def _reorder_gates(x: np.ndarray, units: int, axis: int) -> np.ndarray:
  """PyTorch gate blocks (r, z, n) -> Keras gate blocks (z, r, h)."""
  r, z, n = (np.take(x, range(i * units, (i + 1) * units), axis=axis)
             for i in range(3))
  return np.concatenate([z, r, n], axis=axis)


def gru(weight_ih: np.ndarray, weight_hh: np.ndarray, bias_ih: np.ndarray,
        bias_hh: np.ndarray):
  """A one-layer PyTorch GRU -> Keras ``reset_after=True`` GRU variables.

  Args:
    weight_ih: [3H, I], gate rows r, z, n.
    weight_hh: [3H, H].
    bias_ih: [3H].
    bias_hh: [3H].

  Returns:
    (kernel [I, 3H], recurrent_kernel [H, 3H], bias [2, 3H]), gates z, r, h.
  """
  _check_rank(weight_ih, 2, "GRU weight_ih")
  _check_rank(weight_hh, 2, "GRU weight_hh")
  if weight_ih.shape[0] % 3 or weight_hh.shape != (weight_ih.shape[0],
                                                   weight_ih.shape[0] // 3):
    raise ValueError(f"GRU weights of shapes {weight_ih.shape} and "
                     f"{weight_hh.shape} are not [3H, I] and [3H, H]")
  units = weight_hh.shape[1]
  if bias_ih.shape != (3 * units,) or bias_hh.shape != (3 * units,):
    raise ValueError(f"GRU biases of shapes {bias_ih.shape} and "
                     f"{bias_hh.shape} are not [{3 * units}]")
  kernel = _reorder_gates(weight_ih, units, 0).T
  recurrent = _reorder_gates(weight_hh, units, 0).T
  bias = np.stack([_reorder_gates(bias_ih, units, 0),
                   _reorder_gates(bias_hh, units, 0)])
  return (np.ascontiguousarray(kernel), np.ascontiguousarray(recurrent),
          bias)
