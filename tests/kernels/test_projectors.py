from __future__ import annotations

import pytest
import torch

from assay.errors import ConfigError, InputError
from assay.kernels.projectors import BlockProjector, DenseProjector, make_projector


@pytest.mark.parametrize("kind", ["rademacher", "normal"])
@pytest.mark.parametrize(("p", "block"), [(1000, 128), (777, 1000), (64, 7)])
def test_block_equals_dense(kind: str, p: int, block: int) -> None:
    g = torch.randn(5, p, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dense = DenseProjector(p, 32, seed=3, kind=kind, block=block)  # type: ignore[arg-type]
    fast = BlockProjector(p, 32, seed=3, kind=kind, block=block)  # type: ignore[arg-type]
    assert torch.allclose(dense.project(g), fast.project(g), rtol=1e-10, atol=1e-10)


def test_reference_is_the_matrix_product_and_seeded() -> None:
    g = torch.randn(3, 50, dtype=torch.float64)
    d = DenseProjector(50, 8, seed=0, block=16)
    m = d.matrix(torch.device("cpu"), torch.float64)
    assert m.shape == (50, 8) and set(m.mul(8**0.5).round().unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(d.project(g), g @ m)
    assert not torch.equal(
        m, DenseProjector(50, 8, seed=1, block=16).matrix(torch.device("cpu"), torch.float64)
    )


def test_preserves_inner_products_approximately() -> None:
    torch.manual_seed(0)
    g = torch.randn(20, 4000, dtype=torch.float64)
    proj = BlockProjector(4000, 2048, seed=5, block=1000).project(g)
    cos = torch.nn.functional.cosine_similarity
    exact = cos(g[:, None], g[None], dim=-1)
    approx = cos(proj[:, None], proj[None], dim=-1)
    assert (exact - approx).abs().max() < 0.1


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown projector 'trak'; valid: block, dense"):
        make_projector("trak", 10, 2)
    with pytest.raises(InputError, match=r"expected gradients of shape \(B, 10\), got \(2, 9\)"):
        BlockProjector(10, 2).project(torch.zeros(2, 9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    g = torch.randn(4, 3000, dtype=torch.float32)
    cpu = BlockProjector(3000, 64, seed=2, block=512).project(g)
    gpu = BlockProjector(3000, 64, seed=2, block=512).project(g.cuda()).cpu()
    assert torch.allclose(cpu, gpu, rtol=1e-4, atol=1e-4)
