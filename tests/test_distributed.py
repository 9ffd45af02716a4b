"""Several training processes compute what one process computes on the global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from hssl_cli import distributed
from hssl_cli.distributed import GlobalBatchNorm, local_batch_size, synchronise_batch_norms
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import load_recipe
from hssl_cli.run_files import CHECKPOINT_NAME, METRICS_NAME
from hssl_cli.training import pretrain

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
# Adam turns a gradient that is rounding noise (VICReg's and BYOL's last projector bias, whose
# loss does not depend on it; any near-zero entry) into a full-size step whose sign depends
# on the summation order, which differs between one process and two. SGD keeps such
# parameters where they are, so equal weights mean an equal computation.
SGD = ["optim.name=sgd", "optim.lr=0.01"]
TINY = [
    "data.limit_train=64",
    "train.batch_size=32",
    "train.epochs=1",
    "model.widths=[4,8]",
    "method.projector_hidden_dim=32",
    "method.projector_out_dim=16",
    *SGD,
]
DIGITS = ["data.name=digits", "data.root=null", "data.image_size=null"]
AUGMENT = "method.augment={crop_scale: [0.5, 1.0], hflip: 0.0, jitter: [0.4, 0.4, 0.0, 0.0]}"
CASES = {
    "simclr": ("recipes/digits_rot4_simclr.yaml", []),
    "hssl_rotation": ("recipes/digits_rot4.yaml", ["method.augment=null"]),
    "hssl_augmented": ("recipes/digits_rot4.yaml", [AUGMENT]),
    "vicreg": ("recipes/fashion_rot4_vicreg.yaml", DIGITS),
    "byol": ("recipes/fashion_rot4_byol.yaml", [*DIGITS, "method.predictor_hidden_dim=32"]),
}


def errors(stderr: str) -> str:
    """The lines of a failed launch worth reading (no warnings), last first."""
    lines = [line for line in stderr.splitlines() if "Warning" not in line and line.strip()]
    return "\n".join(lines[-40:])


def torchrun(nproc: int, *args: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc_per_node={nproc}", *args]


def quiet_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def relative_differences(a: Path, b: Path) -> dict[str, float]:
    first, second = load_file(a / CHECKPOINT_NAME), load_file(b / CHECKPOINT_NAME)
    assert set(first) == set(second)
    return {
        key: (
            (first[key].double() - second[key].double()).norm()
            / first[key].double().norm().clamp_min(1e-12)
        ).item()
        for key in first
        if first[key].is_floating_point() and first[key].numel()
    }


def launch_two(cases: dict, out: Path) -> None:
    """Train ``cases`` with two gloo processes, in one torchrun launch."""
    spec = out / "cases.json"
    spec.write_text(json.dumps(cases))
    result = subprocess.run(
        torchrun(2, str(WORKER), str(spec), str(out)),
        capture_output=True,
        text=True,
        env=quiet_env(),
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, errors(result.stderr)


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case trained once with two gloo processes (one torchrun launch for all)."""
    out = tmp_path_factory.mktemp("ddp")
    cases = {
        name: {"recipe": str(ROOT / recipe), "overrides": [*TINY, *extra]}
        for name, (recipe, extra) in CASES.items()
    }
    cases["resumed_first"] = {"recipe": str(ROOT / CASES["simclr"][0]), "overrides": TINY}
    launch_two(cases, out)
    resumed = {
        "resumed_first": {
            "recipe": str(ROOT / CASES["simclr"][0]),
            "overrides": [*TINY, "train.epochs=2"],
            "resume": True,
        }
    }
    launch_two(resumed, out)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_train_the_weights_one_process_trains(
    case: str, two_process_runs: Path, tmp_path: Path
) -> None:
    recipe, extra = CASES[case]
    pretrain(
        load_recipe(ROOT / recipe, [*TINY, *extra]),
        tmp_path / "one",
        torch.device("cpu"),
        quiet=True,
    )
    differences = relative_differences(tmp_path / "one", two_process_runs / case)
    worst = max(differences, key=differences.get)
    assert differences[worst] <= 1e-5, (worst, differences[worst])
    assert len((two_process_runs / case / METRICS_NAME).read_text().splitlines()) == 1


def test_a_resumed_two_process_run_continues_exactly(
    two_process_runs: Path, tmp_path: Path
) -> None:
    recipe = load_recipe(ROOT / CASES["simclr"][0], [*TINY, "train.epochs=2"])
    pretrain(recipe, tmp_path / "straight", torch.device("cpu"), quiet=True)
    differences = relative_differences(tmp_path / "straight", two_process_runs / "resumed_first")
    assert max(differences.values()) <= 1e-5
    lines = (two_process_runs / "resumed_first" / METRICS_NAME).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_pretrain_nproc_starts_torchrun_and_matches_one_process(tmp_path: Path) -> None:
    from hssl_cli.cli.main import app

    args = ["pretrain", "--recipe", str(ROOT / "recipes/digits_rot4.yaml"), "--device", "cpu", "-q"]
    args += [f"--set={text}" for text in TINY]
    result = subprocess.run(
        [sys.executable, "-m", "hssl_cli", *args, "--out", str(tmp_path / "two"), "--nproc", "2"],
        capture_output=True,
        text=True,
        env=quiet_env(),
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, errors(result.stderr)
    assert result.stdout.count("trained 1 epochs") == 1  # rank 0 alone reports
    single = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    assert max(relative_differences(tmp_path / "one", tmp_path / "two").values()) <= 1e-5


def test_global_batch_must_split_evenly() -> None:
    assert local_batch_size(32, 2) == 16
    with pytest.raises(HsslUserError, match="multiple of 3"):
        local_batch_size(32, 3)


def test_single_process_draws_and_gathers_are_the_identity() -> None:
    values = torch.arange(6.0)
    assert distributed.world() == distributed.SINGLE
    assert distributed.global_count(6) == 6
    assert distributed.local_rows(values) is values
    assert distributed.gather_rows(values) is values


def test_global_batch_norm_is_batch_norm_in_one_process_and_converts_escnn() -> None:
    from hssl_cli.config import ModelConfig
    from hssl_cli.models import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(widths=[4, 8]), 1)
    images = torch.rand(4, 1, 16, 16)
    expected = backbone(images).fibers
    converted = synchronise_batch_norms(backbone, torch.device("cpu"))
    norms = [m for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, GlobalBatchNorm) for m in norms)
    torch.testing.assert_close(converted(images).fibers, expected)
