"""Fused spectral channel mixing of the Fourier layer, forward and backward, as Triton kernels.

A spectral convolution computes ``y = irfftn(mix(rfftn(x)))``. The FFTs stay in torch (cuFFT,
float32); this module does ``mix`` in one pass per direction. A pass reads the kept modes
straight out of the full spectrum (gather addressing), multiplies them by the per-mode complex
``(in_channels, out_channels)`` matrices, and writes the whole destination spectrum, zeros
included. The plain-torch path needs a gather copy per corner block, an einsum, a zero-filled
allocation and a scatter copy; those round trips through memory dominate, because each
per-mode matrix product is small.

Mode mapping
------------
For every spatial dim ``d`` but the last, three index arrays of one length ``K_d`` say which
positions take part: ``in_index[d][k]`` in the input spectrum, ``out_index[d][k]`` in the
output spectrum, ``w_index[d][k]`` in the weight's mode dim ``d``. Along the last dim the kept
modes are positions ``0 .. n_last - 1`` everywhere. A kept mode combination is one ``k_d`` per
non-last dim plus one last-dim position.

A *row* of a spectrum is one combination of its non-last indices: a contiguous run along its
last dim. The host turns the index arrays into small int32 tables, built once per mode set and
device: per kept row, where it starts (in complex elements) in the input, the output and the
weight; per destination row, whether it holds kept modes.

Kernel
------
One kernel serves the three products, all of the form
``C[p, q, c_row + j] = sum_k A[p, k, a_row + j] * B[k, q, b_row + j]`` (complex, optional
conjugates) for each kept row and ``j < n_last``, and ``C = 0`` elsewhere:

============  ====================  ====================  =================
pass          A (p, k)              B (k, q)              C (p, q)
============  ====================  ====================  =================
forward       x_ft (b, i)           weight (i, o)         out_ft (b, o)
grad of x     grad_out_ft (b, o)    conj weight (o, i)    grad_x_ft (b, i)
grad of W     conj x_ft (i, b)      grad_out_ft (b, o)    grad_weight (i, o)
============  ====================  ====================  =================

One launch per pass: the first programs each do a small complex GEMM over ``k`` for a tile of
kept modes and a tile of ``(p, q)``, with ``tl.dot`` on real and imaginary parts; the others
store the zeros (see ``_launch_mode_gemm`` for tiles, precision and the zero-fill choice).

Complex tensors go in and out as real views (``torch.view_as_real``): trailing dim 2 holds the
real and imaginary parts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from nol_fast.ops import launch

_ACCEPTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_BLOCK_DOT = 16  # tile of the dims fed to tl.dot (see _launch_mode_gemm)
_BLOCK_M = 2  # kept modes per GEMM program


@triton.jit
def _complex_mode_gemm_kernel(
    a_ptr, b_ptr, c_ptr, kept_ptr, row_kept_ptr,
    P, Q, K, n_kept, n_last, row_len, n_dst, n_p_tiles, n_q_tiles, n_mix_programs, n_z_tiles,
    stride_ap, stride_ak, stride_bk, stride_bq, stride_cp, stride_cq,
    CONJ_A: tl.constexpr, CONJ_B: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_Z: tl.constexpr,
):
    """Per-mode complex GEMM over k for a tile of kept modes, or zeros for a tile of the rest.

    Programs ``0 .. n_mix_programs - 1`` each take BLOCK_M kept modes (in the order of the
    kept table) and a (BLOCK_P, BLOCK_Q) channel tile. The others each take BLOCK_R rows of
    ``c`` (one per (p, q) pair) and BLOCK_Z consecutive destination positions, and store zeros
    at the positions without a kept mode. Together they write every element of ``c`` once.
    """
    # a: (P or K, K or P, *a_spectrum, 2), b: (K or Q, Q or K, *b_spectrum, 2), real views
    # c: (P, Q, n_dst, 2) float32 contiguous; kept: (kept rows, 3); row_kept: (n_dst // row_len,)
    pid = tl.program_id(0)
    if pid < n_mix_programs:
        # Channel tiles vary fastest: neighbouring programs share the modes' rows of a and b.
        modes = pid // (n_p_tiles * n_q_tiles) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_p = pid // n_q_tiles % n_p_tiles * BLOCK_P + tl.arange(0, BLOCK_P)
        offs_q = pid % n_q_tiles * BLOCK_Q + tl.arange(0, BLOCK_Q)
        reim = tl.arange(0, 2)
        # Offsets in int64: batch * channels * spectrum can pass 2**31 floats.
        offs_p64 = offs_p.to(tl.int64)
        offs_q64 = offs_q.to(tl.int64)
        mode_ok = modes < n_kept
        # A kept mode is (kept row, column < n_last); its three rows start at kept[row, :].
        kept_row = 3 * (modes // n_last)
        col = modes % n_last
        # a_modes, b_modes, c_modes: (BLOCK_M,) float offsets of the real parts
        a_modes = 2 * (tl.load(kept_ptr + kept_row, mask=mode_ok, other=0) + col).to(tl.int64)
        b_modes = 2 * (tl.load(kept_ptr + kept_row + 1, mask=mode_ok, other=0) + col).to(tl.int64)
        c_modes = 2 * (tl.load(kept_ptr + kept_row + 2, mask=mode_ok, other=0) + col).to(tl.int64)
        offs_k = tl.arange(0, BLOCK_K)
        # a tile: (BLOCK_M, BLOCK_P, BLOCK_K, 2), b tile: (BLOCK_M, BLOCK_K, BLOCK_Q, 2); the
        # pointers step along k, the masks of the other axes stay
        a_ptrs = a_ptr + (a_modes[:, None, None, None] + offs_p64[None, :, None, None] * stride_ap
                          + offs_k.to(tl.int64)[None, None, :, None] * stride_ak
                          + reim[None, None, None, :])
        b_ptrs = b_ptr + (b_modes[:, None, None, None]
                          + offs_k.to(tl.int64)[None, :, None, None] * stride_bk
                          + offs_q64[None, None, :, None] * stride_bq + reim[None, None, None, :])
        a_mask = mode_ok[:, None, None, None] & (offs_p < P)[None, :, None, None]
        b_mask = mode_ok[:, None, None, None] & (offs_q < Q)[None, None, :, None]
        acc_re = tl.full((BLOCK_M, BLOCK_P, BLOCK_Q), 0.0, tl.float32)
        acc_im = tl.full((BLOCK_M, BLOCK_P, BLOCK_Q), 0.0, tl.float32)
        # Steps along k in int64: a stride below 2**31 arrives as int32, and BLOCK_K times
        # it can pass 2**31 (a 1024**2 grid at 128 channels), which would wrap in int32.
        a_step = stride_ak.to(tl.int64) * BLOCK_K
        b_step = stride_bk.to(tl.int64) * BLOCK_K
        for k0 in range(0, K, BLOCK_K):
            k_ok = offs_k < K - k0
            # Upcast right after the load: no arithmetic in half precision.
            a_re, a_im = tl.split(tl.load(a_ptrs, mask=a_mask & k_ok[None, None, :, None],
                                          other=0.0).to(tl.float32))
            b_re, b_im = tl.split(tl.load(b_ptrs, mask=b_mask & k_ok[None, :, None, None],
                                          other=0.0).to(tl.float32))
            if CONJ_A:
                a_im = -a_im
            if CONJ_B:
                b_im = -b_im
            # (a_re + i a_im)(b_re + i b_im) as four real dots batched over the mode axis.
            # "ieee": exact float32 products, as torch's complex64 einsum; see the launcher.
            acc_re = tl.dot(a_re, b_re, acc_re, input_precision="ieee")
            acc_re = tl.dot(-a_im, b_im, acc_re, input_precision="ieee")
            acc_im = tl.dot(a_re, b_im, acc_im, input_precision="ieee")
            acc_im = tl.dot(a_im, b_re, acc_im, input_precision="ieee")
            a_ptrs += a_step
            b_ptrs += b_step
        # c tile: (BLOCK_M, BLOCK_P, BLOCK_Q, 2)
        c_offs = (c_modes[:, None, None, None] + offs_p64[None, :, None, None] * stride_cp
                  + offs_q64[None, None, :, None] * stride_cq + reim[None, None, None, :])
        c_mask = (mode_ok[:, None, None, None] & (offs_p < P)[None, :, None, None]
                  & (offs_q < Q)[None, None, :, None])
        tl.store(c_ptr + c_offs, tl.join(acc_re, acc_im), mask=c_mask)
    else:
        zid = pid - n_mix_programs
        # rows: (BLOCK_R,) flattened (p, q) pairs; floats: (2 * BLOCK_Z,) offsets in a row
        rows = zid // n_z_tiles * BLOCK_R + tl.arange(0, BLOCK_R)
        floats = zid % n_z_tiles * (2 * BLOCK_Z) + tl.arange(0, 2 * BLOCK_Z)
        pos = floats // 2
        in_range = pos < n_dst
        kept = ((tl.load(row_kept_ptr + pos // row_len, mask=in_range, other=0) != 0)
                & (pos % row_len < n_last))
        # zero tile: (BLOCK_R, 2 * BLOCK_Z), contiguous along its last axis
        offs = rows.to(tl.int64)[:, None] * stride_cq + floats[None, :]
        mask = (rows < P * Q)[:, None] & (in_range & ~kept)[None, :]
        tl.store(c_ptr + offs, tl.full((BLOCK_R, 2 * BLOCK_Z), 0.0, tl.float32), mask=mask)


INTERPRETED = isinstance(_complex_mode_gemm_kernel, InterpretedFunction)


class _PassTables(NamedTuple):
    """Mode tables of one pass (one destination tensor), int32, on the tensors' device."""

    kept: torch.Tensor  # (kept rows, 3): where each kept row starts in a, b and c
    row_kept: torch.Tensor  # (destination rows,): 1 where the row holds kept modes, else 0


class _ModeTables(NamedTuple):
    """Mode tables of one mode set for the three passes."""

    forward: _PassTables  # a = x_ft, b = weight, c = out_ft
    grad_x: _PassTables  # a = grad_out_ft, b = weight, c = grad_x_ft
    grad_weight: _PassTables  # a = x_ft, b = grad_out_ft, c = grad_weight


def _row(position: Sequence[int], spec: Sequence[int]) -> int:
    """Row-major row number of the non-last ``position`` in a spectrum of shape ``spec``."""
    row = 0
    for index, size in zip(position, spec[:-1], strict=True):
        row = row * size + index
    return row


@launch.pinned_cache(maxsize=64)  # pinned while a CUDA graph captures a launch that reads it
def _mode_tables(
    in_pos: tuple[tuple[int, ...], ...], out_pos: tuple[tuple[int, ...], ...],
    w_pos: tuple[tuple[int, ...], ...], in_spec: tuple[int, ...], out_spec: tuple[int, ...],
    kept: tuple[int, ...], device: torch.device,
) -> _ModeTables:
    """Check one mode set against the spectrum shapes and build its tables on ``device``."""
    for d, positions in enumerate(zip(in_pos, out_pos, w_pos, strict=True)):
        if len(set(map(len, positions))) != 1:
            raise ValueError(
                f"in_index[{d}], out_index[{d}] and w_index[{d}] must have one length, got "
                f"{tuple(map(len, positions))}"
            )
        for name, pos, size in zip(("in_index", "out_index", "w_index"), positions,
                                   (in_spec[d], out_spec[d], kept[d]), strict=True):
            if len(set(pos)) != len(pos) or not all(0 <= p < size for p in pos):
                raise ValueError(
                    f"{name}[{d}] must hold distinct positions in [0, {size}), got {list(pos)}"
                )
    specs = (in_spec, out_spec, kept)
    # rows: (kept rows, 3) row numbers in x_ft (or grad_x_ft), out_ft (or grad_out_ft), weight
    rows = torch.tensor(
        [[_row(combo, spec) for combo, spec in zip(combos, specs, strict=True)]
         for combos in zip(itertools.product(*in_pos), itertools.product(*out_pos),
                           itertools.product(*w_pos), strict=True)],
        dtype=torch.int64,
    ).reshape(-1, 3)
    starts = (rows * torch.tensor([spec[-1] for spec in specs])).to(torch.int32)

    def tables(a: int, b: int, c: int) -> _PassTables:
        row_kept = torch.zeros(math.prod(specs[c][:-1]), dtype=torch.int32)
        row_kept[rows[:, c]] = 1
        return _PassTables(starts[:, [a, b, c]].contiguous().to(device), row_kept.to(device))

    return _ModeTables(forward=tables(0, 2, 1), grad_x=tables(1, 2, 0),
                       grad_weight=tables(0, 1, 2))


def _launch_mode_gemm(
    a: torch.Tensor, a_strides: tuple[int, int], b: torch.Tensor, b_strides: tuple[int, int],
    out: torch.Tensor, tables: _PassTables, k: int, n_last: int, conj_a: bool, conj_b: bool,
) -> None:
    """Launch the per-mode complex GEMM writing all of ``out``.

    ``a_strides`` are the (p, k) strides of ``a``, ``b_strides`` the (k, q) strides of ``b``,
    in elements of the real views; ``out`` is a contiguous (P, Q, *spectrum, 2) float32 tensor.
    """
    if out.numel() == 0:
        return
    p, q, row_len = out.shape[0], out.shape[1], out.shape[-2]
    n_dst = out[0, 0, ..., 0].numel()
    n_kept = tables.kept.shape[0] * n_last
    # Tiles. P, Q and K feed tl.dot: 16 each, the GPU minimum, with BLOCK_M = 2 kept modes as
    # the dot's batch axis. With float32 operands the dot runs on FMAs and every thread holds
    # the K-slices of its rows of a and columns of b for four products, so registers grow with
    # BLOCK_M * BLOCK_K * (BLOCK_P + BLOCK_Q): compiled for sm_80 and sm_90 at 4 warps this
    # tile takes 175 to 180 registers and no spills, while doubling BLOCK_M or any dot tile
    # spills. Kept modes are numbered row by row, so a tile reads contiguous modes.
    # Precision: float32 operands would go through TF32 by default (10-bit mantissa, ~1e-3
    # relative error); "ieee" keeps torch's complex64 accuracy. With n = P = Q = K a pass
    # does 8 n^3 flops per mode on 24 n^2 bytes, n / 3 flop/byte: 5 to 21 for 16 to 64
    # channels, below or at the FP32 FMA ridge of an H100 or H200 (~14 to 20), so exact FMAs
    # cost little against tensor-core TF32 here.
    # Zero-fill: extra programs of the same launch store zeros over tiles of BLOCK_R rows of
    # the output (one per channel pair) by BLOCK_Z consecutive positions, skipping kept ones,
    # so every output byte is written once, by one launch, in contiguous runs of 2 * BLOCK_Z
    # floats (up to 4 KiB; a zero tile holds at most 4096 floats). torch.zeros followed by a
    # kernel over the kept modes alone writes the kept part twice and adds a launch; one grid
    # of destination tiles that all run the reduction wastes it on tiles straddling the end of
    # a kept row (up to ~2x at n_last = 17). The split grid has neither cost. The grid is 1-D
    # so the two kinds of program can tile differently.
    block_z = min(512, triton.next_power_of_2(n_dst))
    block_r = min(2048 // block_z, triton.next_power_of_2(p * q))
    n_p_tiles, n_q_tiles = triton.cdiv(p, _BLOCK_DOT), triton.cdiv(q, _BLOCK_DOT)
    n_mix_programs = triton.cdiv(n_kept, _BLOCK_M) * n_p_tiles * n_q_tiles
    n_z_tiles = triton.cdiv(n_dst, block_z)
    n_zero_programs = triton.cdiv(p * q, block_r) * n_z_tiles
    with launch.device_guard(out.device):  # Triton launches on the current device
        _complex_mode_gemm_kernel[(n_mix_programs + n_zero_programs,)](
            a, b, out, tables.kept, tables.row_kept,
            p, q, k, n_kept, n_last, row_len, n_dst, n_p_tiles, n_q_tiles, n_mix_programs,
            n_z_tiles, *a_strides, *b_strides, out.stride(0), out.stride(1),
            CONJ_A=conj_a, CONJ_B=conj_b, BLOCK_M=_BLOCK_M, BLOCK_P=_BLOCK_DOT,
            BLOCK_Q=_BLOCK_DOT, BLOCK_K=_BLOCK_DOT, BLOCK_R=block_r, BLOCK_Z=block_z,
            num_warps=4,
        )


def _check_spectrum(name: str, t: torch.Tensor) -> None:
    """Raise unless ``t`` is a real view (channels, channels, 1-3 spatial dims, 2) we accept."""
    if not isinstance(t, torch.Tensor) or t.is_complex():
        raise TypeError(
            f"{name} must be a real tensor (a torch.view_as_real view), got "
            f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}"
        )
    if t.dtype not in _ACCEPTED_DTYPES:
        raise TypeError(f"{name} must be float32, bfloat16 or float16, got {t.dtype}")
    if not 4 <= t.dim() <= 6 or t.shape[-1] != 2:
        raise ValueError(
            f"{name} must have shape (n, c, *spatial, 2) with 1 to 3 spatial dims, got "
            f"{tuple(t.shape)}"
        )


def _check_operands(x_ft: torch.Tensor, weight: torch.Tensor) -> None:
    """Raise unless ``x_ft`` and ``weight`` are accepted real views with matching channels."""
    _check_spectrum("x_ft", x_ft)
    _check_spectrum("weight", weight)
    if weight.dim() != x_ft.dim() or weight.shape[0] != x_ft.shape[1]:
        raise ValueError(
            f"weight must have shape ({x_ft.shape[1]}, out_channels, *kept, 2) for x_ft of shape "
            f"{tuple(x_ft.shape)}, got {tuple(weight.shape)}"
        )


def _check_device(**tensors: torch.Tensor) -> torch.device:
    """Return the one device of ``tensors``: CUDA, or any device under the interpreter."""
    devices = {name: t.device for name, t in tensors.items()}
    device = next(iter(devices.values()))
    if any(d != device for d in devices.values()):
        raise ValueError(f"tensors must share one device, got {devices}")
    if device.type != "cuda" and not INTERPRETED:
        raise ValueError(
            f"the Triton spectral kernels need CUDA tensors, got device {device} (CPU tensors "
            "run only under the Triton interpreter, TRITON_INTERPRET=1)"
        )
    return device


def _check_shape(name: str, shape: Sequence[int], n_dims: int) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ``n_dims`` positive ints, or raise ``ValueError``."""
    dims = tuple(shape)
    if len(dims) != n_dims or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in dims
    ):
        raise ValueError(f"{name} must be {n_dims} positive ints, got {shape!r}")
    return dims


def _positions(
    name: str, arrays: Sequence[torch.Tensor], n_dims: int
) -> tuple[tuple[int, ...], ...]:
    """Return the index ``arrays`` (one per non-last spatial dim) as tuples of ints."""
    if len(arrays) != n_dims:
        raise ValueError(
            f"{name} must hold one index array per non-last spatial dim ({n_dims}), "
            f"got {len(arrays)}"
        )
    for d, arr in enumerate(arrays):
        if not isinstance(arr, torch.Tensor) or arr.dim() != 1 or arr.dtype not in (
            torch.int32, torch.int64
        ):
            raise TypeError(f"{name}[{d}] must be a 1-D int32 or int64 tensor, got {arr!r}")
    return tuple(tuple(arr.tolist()) for arr in arrays)


def _tables(
    in_index: Sequence[torch.Tensor], out_index: Sequence[torch.Tensor],
    w_index: Sequence[torch.Tensor], in_spec: tuple[int, ...], out_spec: tuple[int, ...],
    kept: tuple[int, ...], device: torch.device,
) -> _ModeTables:
    """Validate the index arrays and return the (cached) mode tables on ``device``."""
    n_dims = len(in_spec) - 1
    return _mode_tables(_positions("in_index", in_index, n_dims),
                        _positions("out_index", out_index, n_dims),
                        _positions("w_index", w_index, n_dims), in_spec, out_spec, kept, device)


def _check_n_last(n_last: int, in_spec: Sequence[int], out_spec: Sequence[int],
                  kept: Sequence[int]) -> None:
    """Raise unless the last-dim mode count fits the input, output and weight alike."""
    limit = min(in_spec[-1], out_spec[-1], kept[-1])
    if isinstance(n_last, bool) or not isinstance(n_last, int) or not 0 <= n_last <= limit:
        raise ValueError(
            f"n_last must be an int in [0, {limit}] (last dims: input {in_spec[-1]}, output "
            f"{out_spec[-1]}, weight {kept[-1]}), got {n_last!r}"
        )


def spectral_mix_forward(
    x_ft: torch.Tensor, weight: torch.Tensor, in_index: Sequence[torch.Tensor],
    out_index: Sequence[torch.Tensor], w_index: Sequence[torch.Tensor], n_last: int,
    out_spec_shape: Sequence[int],
) -> torch.Tensor:
    """Mix channels per kept mode and write the whole output spectrum, zeros included.

    Parameters
    ----------
    x_ft : torch.Tensor
        Real view of the input spectrum, ``(batch, in_channels, *in_spec, 2)``, float32,
        bfloat16 or float16 (read as float32).
    weight : torch.Tensor
        Real view of the complex weight, ``(in_channels, out_channels, *kept, 2)``, float32,
        bfloat16 or float16 (read as float32).
    in_index, out_index, w_index : sequence of torch.Tensor
        One 1-D int32 tensor per non-last spatial dim: positions of the kept modes in the
        input spectrum, output spectrum and weight; index arrays of one dim share a length.
    n_last : int
        Modes kept along the last dim: positions ``0 .. n_last - 1`` everywhere.
    out_spec_shape : sequence of int
        Spatial shape of the output spectrum.

    Returns
    -------
    torch.Tensor
        ``(batch, out_channels, *out_spec_shape, 2)`` float32: ``sum_i x * W`` (complex) at the
        kept modes, exactly zero elsewhere.

    Notes
    -----
    The index arrays are read on the host (CPU tensors spare a device synchronisation) and
    must each hold distinct positions; the tables built from them are cached per mode set,
    shapes and device.
    """
    _check_operands(x_ft, weight)
    device = _check_device(x_ft=x_ft, weight=weight)
    in_spec, kept = tuple(x_ft.shape[2:-1]), tuple(weight.shape[2:-1])
    out_spec = _check_shape("out_spec_shape", out_spec_shape, len(in_spec))
    _check_n_last(n_last, in_spec, out_spec, kept)
    tables = _tables(in_index, out_index, w_index, in_spec, out_spec, kept, device)
    x_ft, weight = x_ft.contiguous(), weight.contiguous()
    # out_ft: (batch, out_channels, *out_spec, 2); the kernel writes every element
    out_ft = torch.empty((x_ft.shape[0], weight.shape[1], *out_spec, 2), dtype=torch.float32,
                         device=device)
    _launch_mode_gemm(x_ft, (x_ft.stride(0), x_ft.stride(1)),
                      weight, (weight.stride(0), weight.stride(1)),
                      out_ft, tables.forward, x_ft.shape[1], n_last, conj_a=False, conj_b=False)
    return out_ft


def spectral_mix_backward(
    grad_out_ft: torch.Tensor, x_ft: torch.Tensor, weight: torch.Tensor,
    in_index: Sequence[torch.Tensor], out_index: Sequence[torch.Tensor],
    w_index: Sequence[torch.Tensor], n_last: int, in_spec_shape: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of :func:`spectral_mix_forward` with PyTorch's complex convention.

    Parameters
    ----------
    grad_out_ft : torch.Tensor
        Real view of the gradient of the output spectrum, ``(batch, out_channels, *out_spec,
        2)``, float32, bfloat16 or float16.
    x_ft, weight, in_index, out_index, w_index, n_last
        As given to :func:`spectral_mix_forward`.
    in_spec_shape : sequence of int
        Spatial shape of the input spectrum; must match ``x_ft``.

    Returns
    -------
    grad_x_ft : torch.Tensor
        ``(batch, in_channels, *in_spec_shape, 2)`` float32: ``sum_o grad_out * conj(W)`` at
        the kept modes, zero elsewhere.
    grad_weight : torch.Tensor
        ``(in_channels, out_channels, *kept, 2)`` float32: ``sum_b conj(x) * grad_out`` at the
        weight positions in use, zero elsewhere.
    """
    _check_operands(x_ft, weight)
    _check_spectrum("grad_out_ft", grad_out_ft)
    batch, in_channels, out_channels = x_ft.shape[0], x_ft.shape[1], weight.shape[1]
    if grad_out_ft.dim() != x_ft.dim() or grad_out_ft.shape[:2] != (batch, out_channels):
        raise ValueError(
            f"grad_out_ft must have shape ({batch}, {out_channels}, *out_spec, 2), got "
            f"{tuple(grad_out_ft.shape)}"
        )
    device = _check_device(grad_out_ft=grad_out_ft, x_ft=x_ft, weight=weight)
    in_spec = _check_shape("in_spec_shape", in_spec_shape, x_ft.dim() - 3)
    if in_spec != tuple(x_ft.shape[2:-1]):
        raise ValueError(
            f"in_spec_shape must match x_ft's spectrum {tuple(x_ft.shape[2:-1])}, got {in_spec}"
        )
    out_spec, kept = tuple(grad_out_ft.shape[2:-1]), tuple(weight.shape[2:-1])
    _check_n_last(n_last, in_spec, out_spec, kept)
    tables = _tables(in_index, out_index, w_index, in_spec, out_spec, kept, device)
    g, x_ft, weight = grad_out_ft.contiguous(), x_ft.contiguous(), weight.contiguous()
    # grad_x_ft: (batch, in_channels, *in_spec, 2) = grad_out (b, o) @ conj(W) (o, i)
    grad_x = torch.empty((batch, in_channels, *in_spec, 2), dtype=torch.float32, device=device)
    _launch_mode_gemm(g, (g.stride(0), g.stride(1)), weight, (weight.stride(1), weight.stride(0)),
                      grad_x, tables.grad_x, out_channels, n_last, conj_a=False, conj_b=True)
    # grad_weight: (in_channels, out_channels, *kept, 2) = conj(x) (i, b) @ grad_out (b, o)
    grad_w = torch.empty((in_channels, out_channels, *kept, 2), dtype=torch.float32,
                         device=device)
    _launch_mode_gemm(x_ft, (x_ft.stride(1), x_ft.stride(0)), g, (g.stride(0), g.stride(1)),
                      grad_w, tables.grad_weight, batch, n_last, conj_a=True, conj_b=False)
    return grad_x, grad_w
