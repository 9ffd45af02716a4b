"""Scale-out settings of the trainer and the evaluators: precision (autocast, fp16 loss
scaling), device-side metrics and NaN checks, channels-last, compile, and the
``--precision`` of linear-probe and inspect-equivariance. ``cuda``-marked tests run on a
GPU machine (``pytest -m cuda``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import hssl_cli.objectives
import hssl_cli.runtime
import hssl_cli.training.loop as loop
from hssl_cli.checkpoint import read_checkpoint
from hssl_cli.cli.main import app
from hssl_cli.config import ModelConfig
from hssl_cli.data import ImageSet, load_images
from hssl_cli.data.batches import open_batches
from hssl_cli.equivariance import VERDICT_EXACT, VERDICT_NOT, measure
from hssl_cli.errors import HsslUserError, TrainingDiverged
from hssl_cli.evaluation import extract_features
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.recipe import load_recipe
from hssl_cli.run_files import CHECKPOINT_NAME, METRICS_NAME
from hssl_cli.runtime import check_precision, inference_precision
from hssl_cli.training import pretrain
from hssl_cli.training.loop import build_trainee, train_step

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "digits_rot4.yaml"
TINY = ["train.batch_size=32", "model.widths=[4,8]", "train.epochs=1"]
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def tiny(images: int = 64, *overrides: str):
    """64 images: a 2-step epoch; 32: one step."""
    return load_recipe(DIGITS, [f"data.limit_train={images}", *TINY, *overrides])


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_NAME).read_text().splitlines()]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(folder / CHECKPOINT_NAME).tensors


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {key for key in before if not torch.equal(before[key], after[key])}


def spy_objective(monkeypatch: pytest.MonkeyPatch, poison_from: int | None = None) -> list[dict]:
    """What each step's forward saw and returned; from step ``poison_from`` on, a NaN loss."""
    seen: list[dict] = []
    real_build = hssl_cli.objectives.build_objective

    def build(config, backbone):
        objective = real_build(config, backbone)
        forward = objective.forward

        def spied(backbone, images, labels=None):
            values = forward(backbone, images, labels)
            seen.append(
                {
                    "values": {k: float(v.detach()) for k, v in values.items()},
                    "loss_dtype": values["loss"].dtype,
                    "autocast": torch.get_autocast_dtype(images.device.type)
                    if torch.is_autocast_enabled(images.device.type)
                    else None,
                    # [B, 1, H, W]: only the channel stride tells the layouts apart
                    "channels_last": images.stride(1) == 1,
                }
            )
            if poison_from is not None and len(seen) >= poison_from:
                values["loss"] = values["loss"] * float("nan")
            return values

        objective.forward = spied
        return objective

    monkeypatch.setattr(hssl_cli.objectives, "build_objective", build)
    return seen


@pytest.fixture(scope="module")
def initial(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The tiny recipe's random-init weights (epochs=0 saves them; the seed fixes them)."""
    folder = tmp_path_factory.mktemp("runs") / "init"
    pretrain(tiny(64, "train.epochs=0"), folder, CPU, quiet=True)
    return weights(folder)


@pytest.fixture(scope="module")
def fp32_one_step(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "fp32"
    pretrain(tiny(32), folder, CPU, quiet=True)
    return folder


# ---------------------------------------------------------------- precision


def test_bf16_trains_on_cpu_close_to_fp32(
    initial, fp32_one_step, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = spy_objective(monkeypatch)
    two_steps = tmp_path / "bf16"
    pretrain(tiny(64, "train.precision=bf16"), two_steps, CPU, quiet=True)
    assert len(seen) == 2
    assert all(step["autocast"] == torch.bfloat16 for step in seen)
    assert all(step["loss_dtype"] == torch.float32 for step in seen)
    assert all(math.isfinite(step["values"]["loss"]) for step in seen)
    assert math.isfinite(records(two_steps)[0]["loss"])
    assert changed(initial, weights(two_steps))  # the optimiser stepped
    # The first step from the same seed: bf16 rounding moves the loss by far less than 1e-2.
    one_step = tmp_path / "bf16_one"
    pretrain(tiny(32, "train.precision=bf16"), one_step, CPU, quiet=True)
    fp32_loss, bf16_loss = records(fp32_one_step)[0]["loss"], records(one_step)[0]["loss"]
    assert bf16_loss != fp32_loss
    assert abs(bf16_loss - fp32_loss) < 1e-2


def test_fp32_runs_without_autocast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = spy_objective(monkeypatch)
    pretrain(tiny(32), tmp_path / "run", CPU, quiet=True)
    assert [step["autocast"] for step in seen] == [None]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_train_step_in_low_precision_on_cpu(precision: str) -> None:
    recipe = tiny(32, f"train.precision={precision}", "train.grad_clip=1.0")
    train_set = load_images(recipe.data, "train")
    torch.manual_seed(0)
    trainee = build_trainee(recipe, train_set, CPU, initialize=True)
    assert trainee.scaler.is_enabled() is (precision == "fp16")
    before = [p.detach().clone() for p in trainee.parameters]
    batch = train_set.images[:32].float() / 255
    values = train_step(trainee, recipe, batch, train_set.labels[:32])
    assert values["loss"].dtype == torch.float32 and torch.isfinite(values["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainee.parameters, strict=True))
    if precision == "fp16":  # no overflow at the initial scale: the step was taken, scale kept
        assert trainee.scaler.get_scale() == 65536.0


def test_unsupported_autocast_is_a_user_error_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(hssl_cli.runtime, "_autocast_enabled", lambda device_type, dtype: False)
    with pytest.raises(HsslUserError, match=r"train\.precision=fp16: .* use train\.precision=fp32"):
        pretrain(tiny(32, "train.precision=fp16"), tmp_path / "run", CPU, quiet=True)
    assert not (tmp_path / "run").exists()  # refused before any work
    check_precision(CPU, "fp32", "train.precision")  # fp32 needs no autocast


def test_cpu_autocast_supports_both_low_precisions() -> None:
    """This torch's CPU autocast runs fp16 as well as bf16 (no user error for either)."""
    for precision in ("bf16", "fp16"):
        check_precision(CPU, precision, "train.precision")


# ---------------------------------------------------------------- device-side metrics and NaN


def test_epoch_loss_is_the_mean_of_the_step_losses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = spy_objective(monkeypatch)
    folder = tmp_path / "run"
    pretrain(tiny(96, "train.epochs=2"), folder, CPU, quiet=True)  # 3 steps per epoch
    assert len(seen) == 6
    for epoch, record in enumerate(records(folder)):
        steps = seen[3 * epoch : 3 * epoch + 3]
        for name in ("loss", "pair_acc"):
            total = 0.0
            for step in steps:
                total += step["values"][name]
            assert record[name] == pytest.approx(total / 3, rel=1e-12, abs=0)


def test_the_device_is_read_once_per_epoch_between_status_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(loop, "STATUS_SECONDS", 1e9)
    reads = {"status": 0, "divergence": 0}
    meter = loop.EpochMeter
    for name in reads:
        real = getattr(meter, name)

        def counted(self, real=real, name=name):
            reads[name] += 1
            return real(self)

        monkeypatch.setattr(meter, name, counted)
    pretrain(tiny(96, "train.epochs=2"), tmp_path / "run", CPU, quiet=True)
    assert reads == {"status": 0, "divergence": 2}  # the end-of-epoch check only


def test_status_is_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    """``report`` gets a status only when STATUS_SECONDS have passed, with the last loss."""
    monkeypatch.setattr(loop, "STATUS_SECONDS", 0.0)
    recipe = tiny(96)
    train_set = load_images(recipe.data, "train")
    trainee = build_trainee(recipe, train_set, CPU, initialize=True)
    reports: list[tuple[int, str | None]] = []
    source = open_batches(recipe.data, "train", recipe.train.batch_size, CPU, recipe.seed)
    args = (trainee, recipe, source, 0, 0)
    record, step = loop.train_epoch(*args, lambda n, s: reports.append((n, s)))
    assert step == 3 and [n for n, _ in reports] == [1, 1, 1]
    assert all(s is not None and s.startswith("loss ") for _, s in reports)
    monkeypatch.setattr(loop, "STATUS_SECONDS", 1e9)
    reports.clear()
    loop.train_epoch(*args[:-2], 1, step, lambda n, s: reports.append((n, s)))
    assert reports == [(1, None)] * 3


@pytest.mark.parametrize("seconds", [0.0, 1e9])
def test_nan_loss_stops_before_the_checkpoint(
    seconds: float, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A NaN at step 1 of epoch 2 (3 steps per epoch): with a status every step the run stops
    at once; with none, after the epoch's last step. Either way epoch 1 stays on disk."""
    monkeypatch.setattr(loop, "STATUS_SECONDS", seconds)
    seen = spy_objective(monkeypatch, poison_from=4)
    folder = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        pretrain(tiny(96, "train.epochs=3"), folder, CPU, quiet=True)
    assert "loss became nan at epoch 2, step 1" in str(info.value)
    assert "the last good checkpoint (1 epochs) is intact" in str(info.value)
    assert len(seen) == (4 if seconds == 0.0 else 6)
    assert read_checkpoint(folder / CHECKPOINT_NAME).epoch == 1
    assert [r["epoch"] for r in records(folder)] == [1]


def test_infinite_loss_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = loop.EpochMeter(4)
    for loss in (1.0, float("inf"), float("nan")):
        meter.add({"loss": torch.tensor(loss)})
    assert meter.divergence() == (2, math.inf)
    with pytest.raises(TrainingDiverged, match="loss became inf at epoch 3, step 2"):
        loop._check_finite(meter, 2)


# ---------------------------------------------------------------- channels-last and compile


def test_channels_last_plain_cnn_trains_like_contiguous(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain = ["model.structure=unstructured", "train.epochs=2"]
    layouts = {}
    for channels_last in (False, True):
        seen = spy_objective(monkeypatch)
        folder = tmp_path / str(channels_last)
        pretrain(tiny(64, *plain, f"train.channels_last={channels_last}"), folder, CPU, quiet=True)
        assert all(step["channels_last"] is channels_last for step in seen)
        layouts[channels_last] = records(folder)
    for a, b in zip(layouts[False], layouts[True], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4)


def test_channels_last_model_weights_and_escnn_cnn(monkeypatch, tmp_path: Path) -> None:
    recipe = tiny(32, "model.structure=unstructured", "train.channels_last=true")
    trainee = build_trainee(recipe, load_images(recipe.data, "train"), CPU, initialize=True)
    convs = [p for p in trainee.backbone.parameters() if p.ndim == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    assert not any(p.is_contiguous() for p in convs)
    # escnn's CNN takes channels-last batches too, with the same loss.
    seen = spy_objective(monkeypatch)
    folder = tmp_path / "escnn"
    pretrain(tiny(32, "train.channels_last=true"), folder, CPU, quiet=True)
    assert seen[0]["channels_last"]
    assert read_checkpoint(folder / CHECKPOINT_NAME).epoch == 1


def test_channels_last_escnn_loss_matches_contiguous(fp32_one_step, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    pretrain(tiny(32, "train.channels_last=true"), folder, CPU, quiet=True)
    assert records(folder)[0]["loss"] == pytest.approx(records(fp32_one_step)[0]["loss"], 1e-5)


def compile_runs(tmp_path: Path, *overrides: str) -> float:
    started = time.perf_counter()
    folder = tmp_path / "compiled"
    pretrain(tiny(32, "train.compile=true", *overrides), folder, CPU, quiet=True)
    record = records(folder)[0]
    assert math.isfinite(record["loss"]) and record["step"] == 1
    # nn.Module.compile keeps the weights' names: the checkpoint loads as usual.
    assert not any("_orig_mod" in key for key in weights(folder))
    return time.perf_counter() - started


def test_compile_runs_a_step_of_a_plain_cnn(tmp_path: Path) -> None:
    """Inductor on the CPU (needs a C compiler): about 10-20 s for the plain CNN."""
    compile_runs(tmp_path, "model.structure=unstructured")


@pytest.mark.slow
def test_compile_runs_a_step_of_the_escnn_cnn(tmp_path: Path) -> None:
    """escnn's basis expansion breaks the graph in several places: about a minute on a CPU."""
    compile_runs(tmp_path)


# ---------------------------------------------------------------- inference precision


def test_inference_precision_choices() -> None:
    assert inference_precision("auto", "bf16", CPU) == "fp32"
    assert inference_precision("auto", "bf16", CUDA) == "bf16"
    assert inference_precision("recipe", "fp16", CPU) == "fp16"
    assert inference_precision("fp32", "bf16", CUDA) == "fp32"
    assert inference_precision("bf16", "fp32", CPU) == "bf16"
    with pytest.raises(HsslUserError, match="--precision 'half'"):
        inference_precision("half", "fp32", CPU)


@pytest.fixture(scope="module")
def rot4_cnn():
    torch.manual_seed(0)
    net = build_backbone(ModelConfig(group="rot4", widths=[4, 8]), 1)
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        net(torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(1)))
    return net


def test_bf16_features_are_fp32_and_close(rot4_cnn) -> None:
    generator = torch.Generator().manual_seed(2)
    images = ImageSet(
        torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8, generator=generator),
        torch.arange(6) % 3,
        3,
        "tiny/train",
    )
    exact = extract_features(rot4_cnn, images, CPU, batch_size=4)
    low = extract_features(rot4_cnn, images, CPU, batch_size=4, precision="bf16")
    assert low.invariant.dtype == low.full.dtype == torch.float32
    assert not torch.equal(low.full, exact.full)
    torch.testing.assert_close(low.full, exact.full, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_equivariance_in_low_precision_keeps_the_verdicts(precision: str) -> None:
    torch.manual_seed(0)
    wide = build_backbone(ModelConfig(group="rot4", widths=[16, 32, 32]), 1)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    report = measure(wide, images, get_group("rot4"), [0, 90], precision=precision)
    assert report.precision == precision and report.to_dict()["precision"] == precision
    assert 0 < report.worst_err <= report.exact_threshold  # rounding, under its threshold
    assert report.verdict == VERDICT_EXACT
    assert wide.training  # mode restored
    torch.manual_seed(0)
    twin = build_backbone(ModelConfig(group="rot4", widths=[4, 8], structure="unstructured"), 1)
    assert measure(twin, images, get_group("rot4"), [], precision=precision).verdict == VERDICT_NOT


INSPECT_RECIPE = {
    "data": {"name": "digits", "limit_test": 8, "limit_train": 32, "image_size": 12},
    "model": {"group": "rot4", "widths": [2, 3]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 0, "batch_size": 32, "precision": "bf16"},
}


def test_inspect_equivariance_precision_option(tmp_path: Path) -> None:
    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(INSPECT_RECIPE))
    runner = CliRunner()
    base = ["inspect-equivariance", "--recipe", str(recipe), "--json", "--angles", "none"]
    for option, expected in ([], "fp32"), (["--precision", "recipe"], "bf16"):
        result = runner.invoke(app, [*base, "--device", "cpu", *option])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["precision"] == expected
        assert report["verdict"] == VERDICT_EXACT
    result = runner.invoke(app, [*base, "--precision", "half"])
    assert result.exit_code == 2 and "--precision 'half'" in result.stderr


def test_linear_probe_precision_option(tmp_path: Path) -> None:
    run = tmp_path / "run"
    pretrain(tiny(32, "train.epochs=0", "data.limit_test=16"), run, CPU, quiet=True)
    runner = CliRunner()
    checkpoint = str(run / CHECKPOINT_NAME)
    results = {}
    for precision in ("fp32", "bf16"):
        result = runner.invoke(
            app, ["linear-probe", checkpoint, "--json", "--device", "cpu", "--precision", precision]
        )
        assert result.exit_code == 0, result.output
        results[precision] = json.loads(result.stdout)
    assert set(results["bf16"]) == set(results["fp32"])
    result = runner.invoke(app, ["linear-probe", checkpoint, "--precision", "half"])
    assert result.exit_code == 2 and "--precision 'half'" in result.stderr


# ---------------------------------------------------------------- CUDA (pytest -m cuda)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_train_step_in_low_precision(precision: str) -> None:
    recipe = tiny(32, f"train.precision={precision}", "train.grad_clip=1.0")
    train_set = load_images(recipe.data, "train")
    torch.manual_seed(0)
    trainee = build_trainee(recipe, train_set, CUDA, initialize=True)
    before = [p.detach().clone() for p in trainee.parameters]
    batch = train_set.images[:32].to(CUDA).float() / 255
    labels = train_set.labels[:32].to(CUDA)
    for _ in range(2):
        values = train_step(trainee, recipe, batch, labels)
        assert values["loss"].dtype == torch.float32
        assert torch.isfinite(values["loss"]).item()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainee.parameters, strict=True))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_pretrain_channels_last_close_to_fp32(precision: str, tmp_path: Path) -> None:
    losses = {}
    for name, overrides in (
        ("fp32", []),
        (precision, [f"train.precision={precision}", "train.channels_last=true"]),
    ):
        folder = tmp_path / name
        pretrain(tiny(32, *overrides), folder, CUDA, quiet=True)
        losses[name] = records(folder)[0]["loss"]
        assert math.isfinite(losses[name])
    assert abs(losses[precision] - losses["fp32"]) < 2e-2


@pytest.mark.cuda
def test_cuda_nan_loss_stops_before_the_checkpoint(monkeypatch, tmp_path: Path) -> None:
    spy_objective(monkeypatch, poison_from=4)
    folder = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 1"):
        pretrain(tiny(96, "train.epochs=3"), folder, CUDA, quiet=True)
    assert read_checkpoint(folder / CHECKPOINT_NAME).epoch == 1


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_cuda_features_match_cpu(rot4_cnn, precision: str) -> None:
    generator = torch.Generator().manual_seed(2)
    images = ImageSet(
        torch.randint(0, 256, (10, 1, 12, 12), dtype=torch.uint8, generator=generator),
        torch.arange(10) % 3,
        3,
        "tiny/train",
    )
    expected = extract_features(rot4_cnn, images, CPU, batch_size=4)
    model = rot4_cnn.to(CUDA)
    try:
        got = extract_features(model, images, CUDA, batch_size=4, precision=precision)
    finally:
        rot4_cnn.to(CPU)
    assert got.full.device.type == "cpu" and got.full.dtype == torch.float32
    tolerance = 1e-4 if precision == "fp32" else 5e-2
    torch.testing.assert_close(got.full, expected.full, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(got.invariant, expected.invariant, rtol=tolerance, atol=tolerance)
