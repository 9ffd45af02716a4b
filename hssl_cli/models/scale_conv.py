"""Scale-equivariant convolutions: lifting (image -> scale group) and group (scale -> scale).

Layouts: an image is ``[B, C, H, W]``; a map on the scale group is ``[B, C, S, H, W]``,
each of the ``C`` fields with a fiber of ``S`` scales (the layout of
:mod:`hssl_cli.structured`). Kernels are rebuilt from the learned coefficients and the
fixed basis (:mod:`hssl_cli.models.scale_basis`) at each call: one ``einsum``, cheap
next to the convolution, and one ``conv2d`` call covers every scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.models.scale_basis import ScaleBasisSpec, kaiming_std, scale_basis


class LiftingScaleConv(nn.Module):
    """Image to scale group, ``[B, Cin, H, W] -> [B, Cout, S, H', W']``.

    Output scale ``s`` convolves the image with the kernel at ``sigma_s``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, spec: ScaleBasisSpec, stride: int = 1
    ) -> None:
        super().__init__()
        self.spec, self.stride = spec, stride
        self.out_channels = out_channels
        self.register_buffer("basis", scale_basis(spec), persistent=False)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, spec.functions)
            * kaiming_std(in_channels * spec.functions)
        )

    def kernels(self) -> torch.Tensor:
        """``[Cout * S, Cin, K, K]``, field-major so the output splits into ``[Cout, S]``."""
        kernel = torch.einsum("oib,bskl->osikl", self.weight, self.basis)
        return kernel.flatten(0, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(
            images, self.kernels(), stride=self.stride, padding=self.spec.kernel_size // 2
        )
        batch, _, height, width = out.shape
        return out.view(batch, self.out_channels, self.spec.scales, height, width)


class ScaleGroupConv(nn.Module):
    """``[B, Cin, S, H, W] -> [B, Cout, S, H', W']`` mixing ``scale_size`` neighbouring scales.

    Output scale ``s`` reads input scales ``s .. s + scale_size - 1``, each with its own
    coefficients and the kernel at ``sigma_s`` (SESN's ``scale_size``, the interaction
    range). Input scales past the coarsest are zero: that edge is where the equivariance
    of the top ``scale_size - 1`` scales breaks, one more per layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        spec: ScaleBasisSpec,
        scale_size: int = 1,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= scale_size <= spec.scales:
            raise ValueError(f"scale_size {scale_size} must be 1..{spec.scales}")
        self.spec, self.stride, self.scale_size = spec, stride, scale_size
        self.out_channels = out_channels
        self.register_buffer("basis", scale_basis(spec), persistent=False)
        fan_in = in_channels * scale_size * spec.functions
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, scale_size, spec.functions) * kaiming_std(fan_in)
        )

    def kernels(self) -> torch.Tensor:
        """``[S * Cout, Cin * scale_size, K, K]``: one group of a grouped conv per output scale."""
        kernel = torch.einsum("oijb,bskl->soijkl", self.weight, self.basis)
        return kernel.flatten(2, 3).flatten(0, 1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        batch, channels, scales, height, width = maps.shape
        if self.scale_size > 1:
            padded = F.pad(maps, (0, 0, 0, 0, 0, self.scale_size - 1))
            windows = padded.unfold(2, self.scale_size, 1)  # [B, Cin, S, H, W, m]
            stacked = windows.permute(0, 2, 1, 5, 3, 4)  # [B, S, Cin, m, H, W]
        else:
            stacked = maps.transpose(1, 2)  # [B, S, Cin, H, W]
        flat = stacked.reshape(batch, scales * channels * self.scale_size, height, width)
        out = F.conv2d(
            flat,
            self.kernels(),
            stride=self.stride,
            padding=self.spec.kernel_size // 2,
            groups=scales,
        )
        out_h, out_w = out.shape[-2:]
        return out.view(batch, scales, self.out_channels, out_h, out_w).transpose(1, 2)


class ScalePointwiseConv(nn.Module):
    """A 1x1 convolution applied alike at every scale (a ResNet shortcut): trivially equivariant."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 1, stride=(1, stride, stride), bias=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.conv(maps)
