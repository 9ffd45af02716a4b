"""``hssl pretrain``: train a backbone from a recipe, in one process or several."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hssl_cli.cli.options import DeviceOption, QuietOption, RecipeOption, SetOption, report_errors
from hssl_cli.errors import HsslUserError
from hssl_cli.output_paths import check_output_folder

if TYPE_CHECKING:
    import torch

    from hssl_cli.config import Recipe
    from hssl_cli.training.stop import TrainingStopped


@report_errors
def pretrain(
    recipe: RecipeOption,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<recipe name>).")
    ] = None,
    overrides: SetOption = None,
    device: DeviceOption = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last epoch.")
    ] = False,
    quiet: QuietOption = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Train with N processes on this machine (one per GPU; gloo on CPU), "
            "started through torchrun. train.batch_size stays the global batch.",
        ),
    ] = 1,
) -> None:
    """Pretrain a backbone with the recipe's SSL method; writes DIR/checkpoint.safetensors."""
    from hssl_cli.api import load_recipe

    resolved = load_recipe(recipe, overrides or [])  # a bad recipe fails here, once, not per rank
    out_dir = out or Path("runs") / recipe.stem
    check_output_folder(out_dir, "--out")
    from hssl_cli import distributed
    from hssl_cli.api import pretrain as run_pretrain
    from hssl_cli.training import select_device

    if nproc > 1:
        check_launch(resolved, out_dir, select_device(device), nproc, resume)
        command = [*torchrun_command(nproc), "pretrain", "--recipe", str(recipe)]
        command += ["--out", str(out_dir), "--device", device]
        command += [f"--set={text}" for text in overrides or []]
        command += ["--resume"] * resume + ["--quiet"] * quiet
        launch = subprocess.Popen(command)
        forward_stop_signals(launch)
        try:
            raise typer.Exit(launch.wait())
        except KeyboardInterrupt:
            launch.wait()  # torchrun got the Ctrl-C too and stops every rank
            print(resume_hint(recipe, out_dir, overrides), file=sys.stderr)
            raise typer.Exit(130) from None

    from hssl_cli.training.stop import TrainingStopped

    try:
        result = run_pretrain(resolved, out_dir, device=device, resume=resume, quiet=quiet)
        here = distributed.world()  # before the process group is gone
    except TrainingStopped as stopped:
        if distributed.world().is_main:
            print(resume_hint(recipe, out_dir, overrides, stopped), file=sys.stderr)
        raise typer.Exit(stopped.exit_code) from None
    except KeyboardInterrupt:
        if distributed.world().is_main:
            print(resume_hint(recipe, out_dir, overrides), file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        distributed.stop()
    if here.is_main:
        typer.echo(
            f"trained {result.epochs_done} epochs, final loss {result.last_loss:.4f}: "
            f"{result.checkpoint}"
        )


def resume_hint(
    recipe: Path,
    out_dir: Path,
    overrides: list[str] | None = None,
    stopped: TrainingStopped | None = None,
) -> str:
    """The line printed when a run stops early: what it saved and the command to continue."""
    import shlex

    command = ["hssl", "pretrain", "--recipe", str(recipe), "--out", str(out_dir)]
    command += [f"--set={text}" for text in overrides or []]
    continue_with = f"continue with: {shlex.join([*command, '--resume'])}"
    if stopped is None:
        return f"interrupted: the run folder holds the last saved position; {continue_with}"
    return f"stopped by {stopped}: {stopped.saved}; {continue_with}"


def forward_stop_signals(launch: subprocess.Popen) -> None:
    """Pass SIGTERM and SIGUSR1 on to torchrun as SIGTERM: torchrun forwards SIGTERM and
    SIGINT to every rank, but SIGUSR1 would end torchrun itself and orphan the ranks."""
    import signal

    def forward(signum: int, frame: object) -> None:
        launch.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, forward)


def check_launch(
    recipe: Recipe, out_dir: Path, device: torch.device, nproc: int, resume: bool
) -> None:
    """What every rank would refuse, refused once before torchrun starts them."""
    import torch

    from hssl_cli.distributed import local_batch_size
    from hssl_cli.run_lock import check_not_in_use
    from hssl_cli.runtime import check_precision
    from hssl_cli.training.run_log import check_log_kinds
    from hssl_cli.training.state import check_resumable

    local_batch_size(recipe.train.batch_size, nproc)
    check_not_in_use(out_dir)
    check_resumable(out_dir, recipe, resume)
    check_precision(device, recipe.train.precision, "train.precision")
    check_log_kinds(recipe.train.log)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise HsslUserError(
            f"--nproc {nproc} but {torch.cuda.device_count()} GPUs are visible; "
            "use at most one process per GPU"
        )


def torchrun_command(nproc: int) -> list[str]:
    """torchrun for ``nproc`` processes on this machine, running ``python -m hssl_cli``."""
    from hssl_cli.distributed import launched_by_torchrun

    if launched_by_torchrun():
        raise HsslUserError("--nproc inside a torchrun launch; drop --nproc (torchrun set it)")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, f"--nproc_per_node={nproc}", "-m", "hssl_cli"]
