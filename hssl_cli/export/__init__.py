"""Export a trained backbone to plain PyTorch, and load a backbone from an export or checkpoint.

An export folder holds two files and no code:

- ``backbone.json``: the format tag, where it came from (checkpoint, epoch, recipe), the
  input shape, ``|G|``, the group pooling, the feature sizes and the network as layer specs
  (:mod:`hssl_cli.export.plain_network`);
- ``backbone.safetensors``: the weights, keyed as the rebuilt network names them, plus the
  input normalisation.

Loading it needs torch and safetensors only: not escnn, not pickle, and none of this
package's model modules, so a downstream user can read features with ``load_backbone``
without installing escnn. Exported eval forwards are plain convolutions, so they are also
faster than escnn's (``benchmarks/export_speed.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hssl_cli import __version__
from hssl_cli.errors import HsslUserError, one_line
from hssl_cli.export.plain_network import ExportedBackbone, build_network

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone

EXPORT_FORMAT = "hssl.export/1"
SPEC_FILE = "backbone.json"
WEIGHTS_FILE = "backbone.safetensors"
# The export checks itself on random images: beyond this, conversion is wrong (a bug).
SELF_CHECK_TOLERANCE = 1e-5


@dataclass
class ExportSummary:
    """What ``hssl export`` wrote and how closely it reproduces the checkpoint's model."""

    out_dir: Path
    backbone: str
    group: str
    invariant_dim: int
    full_dim: int
    parameters: int
    relative_error: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "files": [SPEC_FILE, WEIGHTS_FILE],
            "backbone": self.backbone,
            "group": self.group,
            "invariant_dim": self.invariant_dim,
            "full_dim": self.full_dim,
            "parameters": self.parameters,
            "relative_error": self.relative_error,
        }


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm().clamp_min(1e-12)).item()


def export_backbone(backbone: Backbone) -> tuple[dict[str, Any], ExportedBackbone]:
    """A plain-torch copy of ``backbone`` in eval mode, and the description that rebuilds it.

    The description holds ``in_channels``, ``group_order``, ``group_pool``, the feature sizes
    and the network's layer specs; the copy's state dict is what the weights file holds.
    Switches ``backbone`` to eval mode (escnn's ``export()`` does, layer by layer).
    """
    from hssl_cli.export.conversion import describe_backbone

    described = describe_backbone(backbone)
    spec = {
        "in_channels": backbone.in_channels,
        "group_order": backbone.group.order,
        "group_pool": backbone.group_pool,
        "features": {
            "invariant": backbone.num_fields,
            "full": backbone.num_fields * backbone.group.order,
        },
        "network": described.spec,
    }
    tensors = {key: value.detach().clone() for key, value in described.tensors.items()}
    return spec, _assemble(spec, tensors, type(backbone).__name__)


def export_checkpoint(checkpoint_path: str | Path, out_dir: str | Path) -> ExportSummary:
    """Write ``out_dir/backbone.json`` and ``backbone.safetensors`` for a checkpoint's backbone.

    Before writing, the rebuilt network is compared with the escnn model on random images;
    a difference above ``SELF_CHECK_TOLERANCE`` is a bug in the conversion and raises.
    """
    from hssl_cli.checkpoint import atomic_save, read_checkpoint
    from hssl_cli.checkpoint import load_backbone as rebuild_backbone
    from hssl_cli.io import atomic_write_json

    checkpoint_path, out_dir = Path(checkpoint_path), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HsslUserError(f"--out {out_dir} is a file; give a folder for the export")
    checkpoint = read_checkpoint(checkpoint_path)
    backbone = rebuild_backbone(checkpoint, str(checkpoint_path))
    rebuilt, exported = export_backbone(backbone)
    error = _self_check(backbone, exported, checkpoint.input_shape)
    model = checkpoint.recipe.model
    spec = {
        "format": EXPORT_FORMAT,
        "hssl_version": __version__,
        "source": {"checkpoint": str(checkpoint_path), "epoch": checkpoint.epoch},
        "recipe": checkpoint.recipe.to_yaml(),
        "backbone": model.backbone,
        "group": model.group,
        "input_shape": checkpoint.input_shape,
        **rebuilt,
    }
    atomic_save(exported.state_dict(), {"format": EXPORT_FORMAT}, out_dir / WEIGHTS_FILE)
    atomic_write_json(out_dir / SPEC_FILE, spec, indent=1)  # last: marks the export complete
    return ExportSummary(
        out_dir=out_dir,
        backbone=model.backbone,
        group=model.group,
        invariant_dim=spec["features"]["invariant"],
        full_dim=spec["features"]["full"],
        parameters=sum(p.numel() for p in exported.parameters()),
        relative_error=error,
    )


def _self_check(backbone: nn.Module, exported: nn.Module, input_shape: list[int]) -> float:
    images = torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, actual = backbone(images), exported(images)
    error = max(
        relative_error(actual.invariant, expected.invariant),
        relative_error(actual.full, expected.full),
    )
    if not error <= SELF_CHECK_TOLERANCE:
        raise RuntimeError(f"exported backbone differs from the model (relative error {error:.2e})")
    return error


def _assemble(
    spec: dict[str, Any], tensors: dict[str, torch.Tensor], source: str
) -> ExportedBackbone:
    """Build the plain module of ``spec`` (on the meta device) and move ``tensors`` into it."""
    try:
        with torch.device("meta"):
            network = build_network(spec["network"])
            exported = ExportedBackbone(
                network, int(spec["in_channels"]), int(spec["group_order"]), spec["group_pool"]
            )
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise HsslUserError(
            f"{source} describes a network hssl cannot rebuild ({one_line(err)}); "
            "re-run 'hssl export' with this hssl version"
        ) from None
    try:
        exported.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as err:
        raise HsslUserError(
            f"the weights of {source} do not fit its description ({one_line(err)[:160]}); "
            "re-run 'hssl export'"
        ) from None
    return exported.eval()


def _read_export(folder: Path) -> ExportedBackbone:
    from hssl_cli.integrity import check_digest, read_tensors

    spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
    redo = f"re-run 'hssl export CHECKPOINT --out {folder}'"
    if not spec_path.is_file():
        raise HsslUserError(
            f"{folder} is not an hssl export folder (no {SPEC_FILE}); pass a folder written by "
            "'hssl export' or a checkpoint.safetensors"
        )
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HsslUserError(f"{spec_path} is not readable JSON ({one_line(err)}); {redo}") from None
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else None
        raise HsslUserError(
            f"{spec_path} is not an hssl export (format {found!r}, wanted {EXPORT_FORMAT!r}); "
            f"{redo}"
        )
    if not weights_path.is_file():
        raise HsslUserError(f"{folder} has {SPEC_FILE} but no {WEIGHTS_FILE}; {redo}")
    tensors, metadata = read_tensors(weights_path, "file", redo)
    # Exports written before digests have none: checked when present.
    check_digest(weights_path, tensors, metadata, required=False, fix=redo)
    return _assemble(spec, tensors, str(spec_path))


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A backbone in eval mode whose output has ``.invariant`` and ``.full`` features.

    ``path`` is an export folder (plain torch, escnn not needed; its ``backbone.json`` or
    ``backbone.safetensors`` also work) or a ``checkpoint.safetensors`` (the escnn model as
    trained, which needs escnn).
    """
    path = Path(path)
    if not path.exists():
        raise HsslUserError(
            f"{path} not found; pass an export folder written by 'hssl export' or a "
            "checkpoint.safetensors written by 'hssl pretrain'"
        )
    if path.is_dir():
        return _read_export(path).to(device)
    if path.name in (SPEC_FILE, WEIGHTS_FILE):
        return _read_export(path.parent).to(device)
    from hssl_cli.checkpoint import load_backbone as rebuild_backbone
    from hssl_cli.checkpoint import read_checkpoint

    return rebuild_backbone(read_checkpoint(path), str(path)).to(device)
