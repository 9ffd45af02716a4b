"""``hssl pretrain``: train a backbone from a recipe."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hssl_cli.cli.options import DeviceOption, QuietOption, RecipeOption, SetOption, report_errors


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
) -> None:
    """Pretrain a backbone with the recipe's SSL method; writes DIR/checkpoint.safetensors."""
    from hssl_cli.recipe import load_recipe
    from hssl_cli.run_files import CHECKPOINT_NAME
    from hssl_cli.training import pretrain as run_pretrain
    from hssl_cli.training import select_device

    resolved = load_recipe(recipe, overrides)
    out_dir = out or Path("runs") / recipe.stem
    chosen = select_device(device)
    try:
        result = run_pretrain(resolved, out_dir, chosen, resume=resume, quiet=quiet)
    except KeyboardInterrupt:
        print(
            f"interrupted: {out_dir / CHECKPOINT_NAME} holds the last finished epoch; "
            f"continue with: hssl pretrain --recipe {recipe} --out {out_dir} --resume",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    typer.echo(
        f"trained {result.epochs_done} epochs, final loss {result.last_loss:.4f}: "
        f"{out_dir / CHECKPOINT_NAME}"
    )
