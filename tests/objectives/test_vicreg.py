"""The VICReg objective and VICReg as H-SSL's base loss."""

import pytest
import torch

from hssl_cli.config import ModelConfig, VicregConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import validate_recipe


@pytest.mark.parametrize("layers", [2, 3])
def test_objective_logs_its_terms_and_builds_the_expander(layers: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group="rot4", widths=[2, 4]), 1)
    config = VicregConfig(projector_hidden_dim=16, projector_out_dim=8, expander_layers=layers)
    objective = build_objective(config, backbone)
    linears = [m for m in objective.expander if isinstance(m, torch.nn.Linear)]
    assert len(linears) == layers and linears[-1].out_features == 8
    values = objective(backbone, torch.rand(6, 1, 16, 16))
    assert set(values) == {"loss", "invariance", "variance", "covariance", "pair_acc"}
    weighted = 25 * values["invariance"] + 25 * values["variance"] + values["covariance"]
    assert values["loss"].item() == pytest.approx(weighted.item(), rel=1e-5)


HSSL_VICREG = {
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {
        "name": "hssl",
        "base_loss": "vicreg",
        "projector_hidden_dim": 16,
        "projector_out_dim": 8,
    },
}


@pytest.mark.parametrize("augment", [None, {"crop_scale": [0.5, 1.0]}])
def test_hssl_with_vicreg_base_loss_trains_one_step(augment: dict | None) -> None:
    method = {**HSSL_VICREG["method"], **({"augment": augment} if augment else {})}
    recipe = validate_recipe({**HSSL_VICREG, "method": method})
    torch.manual_seed(0)
    backbone = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, backbone)
    values = objective(backbone, torch.rand(6, 1, 16, 16))
    assert {"loss", "invariance", "variance", "covariance", "pair_acc"} <= set(values)
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    parameters = [*backbone.parameters(), *objective.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    assert any(p.grad.abs().sum() > 0 for p in backbone.parameters())


def test_hssl_vicreg_rejects_all_fibers_positive() -> None:
    method = {**HSSL_VICREG["method"], "all_fibers_positive": True}
    with pytest.raises(HsslUserError, match="all_fibers_positive=false"):
        validate_recipe({**HSSL_VICREG, "method": method})
