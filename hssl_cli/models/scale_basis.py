"""The fixed multiscale steerable basis of scale-equivariant convolutions (SESN).

A kernel at scale ``sigma`` is a learned combination of Hermite polynomials times a
Gaussian, ``psi_{n,m}(x, y) = H_n(x/sigma) H_m(y/sigma) exp(-(x^2 + y^2) / 2 sigma^2) / sigma^2``,
for ``n, m < basis_size``, at the scales ``sigma_i = min_scale * q^i`` (Sosnovik, Szmaja and
Smeulders, ICLR 2020, arXiv:1910.11093). The same weights at every scale make the layer
scale-equivariant: the ``1/sigma^2`` factor keeps ``psi_sigma(x) = psi_1(x / sigma) / sigma^2``,
so a response at width ``q sigma`` on an image equals the response at width ``sigma`` on
the image shrunk by ``q``. Each function is cut off at the same number of its own widths
(the coarsest scale just fills the kernel), so truncation is scale-consistent too, up to
the one-pixel ramp that softens the cut on the grid.

The basis depends only on its configuration, so it is computed once per configuration
and cached: building a ResNet-sized network reuses one tensor per layer shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class ScaleBasisSpec:
    """What fixes a basis: kernel side, Hermite orders per axis, the scales' widths."""

    kernel_size: int
    basis_size: int
    widths: tuple[float, ...]

    @classmethod
    def geometric(
        cls, kernel_size: int, basis_size: int, scales: int, min_scale: float, step: float
    ) -> ScaleBasisSpec:
        widths = tuple(float(min_scale * step**i) for i in range(scales))
        return cls(kernel_size, basis_size, widths)

    @property
    def functions(self) -> int:
        return self.basis_size**2

    @property
    def scales(self) -> int:
        return len(self.widths)


def hermite(order: int, x: torch.Tensor) -> torch.Tensor:
    """The physicists' Hermite polynomial ``H_order`` (``H_{n+1} = 2x H_n - 2n H_{n-1}``)."""
    previous, current = torch.ones_like(x), 2 * x
    if order == 0:
        return previous
    for n in range(1, order):
        previous, current = current, 2 * x * current - 2 * n * previous
    return current


@lru_cache(maxsize=64)
def _basis(spec: ScaleBasisSpec) -> torch.Tensor:
    half = spec.kernel_size // 2
    grid = torch.arange(-half, half + 1, dtype=torch.float64)
    reach = (half + 0.5) / max(spec.widths)  # cut-off in units of each function's width
    per_scale = []
    for width in spec.widths:
        u = grid / width
        # A cut-off rounded to whole pixels would give neighbouring widths the same
        # support (0.9 and 1.27 px both 3x3 in a 7-pixel kernel); a one-pixel linear ramp
        # moves it smoothly with the width.
        inside = (reach * width + 0.5 - grid.abs()).clamp(0.0, 1.0)
        envelope = torch.exp(-0.5 * u**2) * inside  # separable: x and y alike
        polys = torch.stack([hermite(n, u) * envelope for n in range(spec.basis_size)])
        # [n, m, y, x]: H_n(y) H_m(x) envelope(y) envelope(x) / sigma^2
        per_scale.append(torch.einsum("ny,mx->nmyx", polys, polys) / width**2)
    basis = torch.stack(per_scale, 2).flatten(0, 1)  # [functions, scales, K, K]
    # One constant per function (not per scale, which would break equivariance) so that
    # every function has unit norm at the finest scale: weights start on an equal footing.
    norms = basis[:, 0].flatten(1).norm(dim=1).clamp_min(1e-12)
    basis = basis / norms.view(-1, 1, 1, 1)
    return basis.to(torch.float32)


def scale_basis(spec: ScaleBasisSpec) -> torch.Tensor:
    """``[basis_size^2, scales, K, K]`` (cached per spec; callers must not modify it)."""
    return _basis(spec)


def basis_cache_info() -> str:
    return str(_basis.cache_info())


def kaiming_std(fan_in: int) -> float:
    """He initialisation for weights over unit-norm basis functions feeding a ReLU."""
    return math.sqrt(2.0 / max(1, fan_in))
