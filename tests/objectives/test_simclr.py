"""SimCLR views, readouts and the group augmentation."""

import torch

from hssl_cli.config import AugmentConfig, ModelConfig, SimclrConfig
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective


def test_invariant_readout_ignores_group_augmentation() -> None:
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group="rot4", widths=[2, 4]), 1).eval()
    only_rotation = AugmentConfig(
        crop_scale=(1, 1), crop_ratio=(1, 1), hflip=0, jitter_p=0, grayscale=0, group_element=True
    )
    images = torch.rand(8, 1, 16, 16)
    invariant = build_objective(
        SimclrConfig(readout="invariant", augment=only_rotation), backbone
    ).eval()
    fiber = build_objective(SimclrConfig(readout="fiber", augment=only_rotation), backbone).eval()
    with torch.no_grad():
        inv_views = [invariant.read(backbone(invariant.augment(images))) for _ in range(2)]
        fib_views = [fiber.read(backbone(fiber.augment(images))) for _ in range(2)]
    assert torch.allclose(inv_views[0], inv_views[1], atol=1e-5)
    assert not torch.allclose(fib_views[0], fib_views[1], atol=1e-3)


def test_two_forwards_per_step() -> None:
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group="rot4", widths=[2]), 1)
    calls = []
    backbone.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    objective = build_objective(SimclrConfig(projector_hidden_dim=8, projector_out_dim=4), backbone)
    values = objective(backbone, torch.rand(6, 1, 16, 16))
    assert calls == [6, 6]
    assert set(values) == {"loss", "pair_acc"}
