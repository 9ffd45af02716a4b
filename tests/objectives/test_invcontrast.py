"""Invariant contrastive loss (Mukuta & Harada 2023): blind to each view's group element,
unlike NT-Xent."""

import pytest
import torch

from hssl_cli.config import InvcontrastConfig, ModelConfig
from hssl_cli.groups import get_group
from hssl_cli.losses import nt_xent
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective


def make(group: str, pooling: str = "max", structure: str = "equivariant"):
    torch.manual_seed(0)
    model = build_backbone(ModelConfig(group=group, widths=[2, 4], structure=structure), 1)
    config = InvcontrastConfig(projector_hidden_dim=16, projector_out_dim=8, pooling=pooling)
    return model, build_objective(config, model)


def losses_before_and_after_rotating_views(group_name: str, pooling: str, structure: str):
    """(invariant loss, plain NT-Xent on flattened lifted embeddings) for views and their
    independently rotated copies, in training mode (batch statistics included)."""
    model, objective = make(group_name, pooling, structure)
    group = get_group(group_name)
    views = (torch.rand(6, 1, 16, 16), torch.rand(6, 1, 16, 16))
    generator = torch.Generator().manual_seed(3)
    elements = [torch.randint(group.order, (6,), generator=generator) for _ in views]
    rotated = tuple(
        group.act_on_images_per_sample(view, g) for view, g in zip(views, elements, strict=True)
    )
    ids = torch.arange(6).repeat(2)
    results = []
    with torch.no_grad():
        for pair in (views, rotated):
            lifted = objective.lift(torch.cat([model(view).fibers for view in pair]))
            results.append(
                (objective.loss(lifted, ids)["loss"], nt_xent(lifted.flatten(1), ids, 0.5))
            )
    return results


@pytest.mark.parametrize("pooling", ["max", "logsumexp"])
def test_loss_is_unchanged_when_each_view_is_rotated_independently(pooling: str) -> None:
    (invariant, plain), (invariant_rotated, plain_rotated) = losses_before_and_after_rotating_views(
        "rot4", pooling, "equivariant"
    )
    assert torch.allclose(invariant, invariant_rotated, atol=1e-5)
    assert not torch.allclose(plain, plain_rotated, atol=1e-3)


def test_unstructured_twin_is_not_invariant() -> None:
    (invariant, _), (invariant_rotated, _) = losses_before_and_after_rotating_views(
        "rot4", "max", "unstructured"
    )
    assert not torch.allclose(invariant, invariant_rotated, atol=1e-3)


def test_trivial_group_is_simclr_on_the_same_head() -> None:
    model, objective = make("trivial")
    views = (torch.rand(5, 1, 16, 16), torch.rand(5, 1, 16, 16))
    ids = torch.arange(5).repeat(2)
    lifted = objective.lift(torch.cat([model(view).fibers for view in views]))
    assert lifted.shape == (10, 1, 8)
    assert torch.allclose(objective.loss(lifted, ids)["loss"], nt_xent(lifted[:, 0], ids, 0.5))


def test_forward_logs_loss_and_pair_accuracy() -> None:
    model, objective = make("rot4")
    values = objective(model, torch.rand(4, 1, 16, 16))
    values["loss"].backward()
    assert set(values) == {"loss", "pair_acc"}
    assert torch.isfinite(values["loss"]) and 0 <= values["pair_acc"] <= 1
    assert all(p.grad is not None for p in model.parameters())
