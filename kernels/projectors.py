"""Random projections of per-sample gradients to a low dimension (the LESS / TRAK projection step).

One interface, ``Projector.project(grads) -> projected``; a dense reference that materialises the
whole P×K matrix, and a blockwise variant that generates the same matrix one block of rows at a
time on the tensors' device (memory O(block·K) instead of O(P·K)), so both give the same result up
to float summation order. The matrix entries are Rademacher (±1) or standard normal, scaled by
1/sqrt(K) (Johnson-Lindenstrauss); block b of rows is drawn from a generator seeded with
``seed * 1_000_003 + b``, so any block can be regenerated independently on any device.
Device-agnostic torch: runs on CUDA when the inputs are there.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch

from assay.errors import ConfigError, InputError

Kind = Literal["rademacher", "normal"]


def _block_seed(seed: int, block: int) -> int:
    return (seed * 1_000_003 + block) % (2**63 - 1)


def projection_block(
    seed: int, block: int, rows: int, dim: int, kind: Kind, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Rows [block*B, block*B + rows) of the projection matrix: (rows, dim), already scaled."""
    # CPU generator for bit-identical matrices on every device; the block is moved afterwards.
    g = torch.Generator(device="cpu").manual_seed(_block_seed(seed, block))
    if kind == "rademacher":
        m = torch.randint(0, 2, (rows, dim), generator=g, dtype=torch.int8).to(dtype).mul_(2).sub_(1)
    else:
        m = torch.randn(rows, dim, generator=g, dtype=torch.float32).to(dtype)
    return m.div_(math.sqrt(dim)).to(device)


class Projector(ABC):
    """Projects (B, P) gradients to (B, K)."""

    def __init__(
        self, in_dim: int, out_dim: int, seed: int = 0, kind: Kind = "rademacher", block: int = 8192
    ):
        if in_dim < 1 or out_dim < 1:
            raise ConfigError(f"projector dimensions must be >= 1, got {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim, self.seed, self.kind, self.block = in_dim, out_dim, seed, kind, block

    def _check(self, grads: torch.Tensor) -> None:
        if grads.ndim != 2 or grads.shape[1] != self.in_dim:
            raise InputError(f"expected gradients of shape (B, {self.in_dim}), got {tuple(grads.shape)}")

    @abstractmethod
    def project(self, grads: torch.Tensor) -> torch.Tensor: ...


class DenseProjector(Projector):
    """Reference: the full (P, K) matrix, built from the same blocks as the blockwise projector."""

    def matrix(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        parts = []
        for b, start in enumerate(range(0, self.in_dim, self.block)):
            rows = min(self.block, self.in_dim - start)
            parts.append(projection_block(self.seed, b, rows, self.out_dim, self.kind, device, dtype))
        return torch.cat(parts, dim=0)  # (P, K)

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        self._check(grads)
        return grads @ self.matrix(grads.device, grads.dtype)  # (B, P) @ (P, K) -> (B, K)


class BlockProjector(Projector):
    """Blockwise: accumulates grads[:, block] @ M[block] without holding M; O(block·K) memory."""

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        self._check(grads)
        out = torch.zeros(grads.shape[0], self.out_dim, device=grads.device, dtype=grads.dtype)  # (B, K)
        for b, start in enumerate(range(0, self.in_dim, self.block)):
            rows = min(self.block, self.in_dim - start)
            m = projection_block(
                self.seed, b, rows, self.out_dim, self.kind, grads.device, grads.dtype
            )  # (r, K)
            out.addmm_(grads[:, start : start + rows], m)  # (B, r) @ (r, K)
        return out


def make_projector(
    name: str, in_dim: int, out_dim: int, seed: int = 0, kind: Kind = "rademacher", block: int = 8192
) -> Projector:
    classes: dict[str, type[Projector]] = {"dense": DenseProjector, "block": BlockProjector}
    if name not in classes:
        raise ConfigError(f"unknown projector {name!r}; valid: {', '.join(sorted(classes))}")
    return classes[name](in_dim, out_dim, seed=seed, kind=kind, block=block)
