import pytest
import torch


def gaussian_blobs(size: int = 48, count: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth test images ``[count, 1, size, size]``: sums of wide Gaussians of both signs,
    kept inside the central half of the canvas so that shrinking loses nothing."""
    generator = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(
        torch.arange(size.__float__()), torch.arange(size.__float__()), indexing="ij"
    )
    images = torch.zeros(count, 1, size, size)
    centre = (size - 1) / 2
    for image in images:
        for _ in range(3):
            cy, cx = (centre + (torch.rand(2, generator=generator) - 0.5) * size / 3).tolist()
            width = 2.5 + 2 * float(torch.rand(1, generator=generator))
            sign = 1.0 if float(torch.rand(1, generator=generator)) > 0.3 else -0.5
            image[0] += sign * torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * width**2))
    return images


@pytest.fixture
def blobs() -> torch.Tensor:
    return gaussian_blobs()
