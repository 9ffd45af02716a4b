"""``hssl linear-probe --baseline`` and ``--plot`` on a tiny run."""

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hssl_cli.cli.main import app

METRICS = ("top1", "top5", "knn_top1", "knn_top5")


def hssl(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_run) -> dict[str, Path]:
    """A trained checkpoint and the ``train.epochs=0`` checkpoint of the same recipe."""
    folder = tmp_path_factory.mktemp("probe")
    recipe = folder / "tiny.yaml"
    settings = tiny_run(data={"limit_train": 128, "limit_test": 64}, seed=3)
    recipe.write_text(yaml.safe_dump(settings))
    checkpoints = {}
    for name, epochs in (("trained", 1), ("init", 0)):
        out = folder / name
        result = hssl(
            "pretrain", "-r", str(recipe), "-o", str(out), "-q", f"--set=train.epochs={epochs}"
        )
        assert result.exit_code == 0, result.output
        checkpoints[name] = out / "checkpoint.safetensors"
    return checkpoints


@pytest.fixture(scope="module")
def baseline_report(runs: dict[str, Path]) -> dict:
    result = hssl("linear-probe", str(runs["trained"]), "--baseline", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_baseline_is_the_epochs_0_checkpoint_probed(
    runs: dict[str, Path], baseline_report: dict
) -> None:
    alone = hssl("linear-probe", str(runs["trained"]), "--json")
    init = hssl("linear-probe", str(runs["init"]), "--json")
    assert alone.exit_code == 0 and init.exit_code == 0, alone.output + init.output
    alone_report, init_report = json.loads(alone.stdout), json.loads(init.stdout)
    assert init_report["epoch"] == 0
    for kind in ("invariant", "full"):
        # the trained numbers are unchanged by --baseline; the baseline's are epochs=0's
        assert baseline_report[kind] == alone_report[kind]
        assert baseline_report["random_init"][kind] == init_report[kind]
        for metric in METRICS:
            gain = baseline_report["gain"][kind][metric]
            assert gain == pytest.approx(alone_report[kind][metric] - init_report[kind][metric])
    assert baseline_report["random_init"] != {k: alone_report[k] for k in ("invariant", "full")}


def test_baseline_table_shows_trained_random_init_and_gain(
    runs: dict[str, Path], baseline_report: dict
) -> None:
    result = hssl("linear-probe", str(runs["trained"]), "--baseline", "-q")
    assert result.exit_code == 0, result.output
    assert "against its random init" in result.stdout
    lines = result.stdout.splitlines()
    for kind in ("invariant", "full"):
        start = next(i for i, line in enumerate(lines) if f" {kind} " in line)
        trained, random_init, gain = lines[start : start + 3]
        assert "trained" in trained and "random init" in random_init and "gain" in gain
        for row, values in (
            (trained, baseline_report[kind]),
            (random_init, baseline_report["random_init"][kind]),
        ):
            assert re.findall(r"\d+\.\d\d", row) == [f"{values[m]:.2f}" for m in METRICS]
        signed = [f"{baseline_report['gain'][kind][m]:+.2f}" for m in METRICS]
        assert re.findall(r"[-+]\d+\.\d\d", gain) == signed


def test_plot_writes_a_png_with_a_row_per_encoder(runs: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image

    heights = {}
    for args in ((), ("--baseline",)):
        path = tmp_path / "new folder" / f"probe{len(args)}.png"
        result = hssl("linear-probe", str(runs["trained"]), "--plot", str(path), "--json", *args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["plot"] == str(path)
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(path) as image:
            heights[len(args)] = image.size[1]
    assert heights[1] > 1.5 * heights[0]  # the random init's row below the trained one


def test_bad_plot_paths_exit_2_with_one_line_before_any_work(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    cases = [
        (tmp_path / "probe.pdf", "give a .png path"),
        (a_file / "probe.png", "not a writable folder"),
        (tmp_path, "give a .png path"),
    ]
    for path, problem in cases:
        result = hssl("linear-probe", str(runs["trained"]), "--plot", str(path))
        assert result.exit_code == 2, (path, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --plot "), result.stderr
        assert problem in lines[0]
        assert result.stdout == ""  # refused before the probe ran


def test_paths_that_look_like_markup_are_printed_as_they_are(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "odd[/x]" / "[bold]"
    folder.mkdir(parents=True)
    checkpoint = folder / "checkpoint.safetensors"
    checkpoint.write_bytes(runs["trained"].read_bytes())
    plot = folder / "[/y].png"
    result = hssl("linear-probe", str(checkpoint), "--plot", str(plot))
    assert result.exit_code == 0, result.output
    printed = "".join(result.stdout.split())  # the title may wrap anywhere in the path
    assert str(checkpoint) in printed and f"plot:{plot}" in printed and plot.is_file()
