"""Execute an ablation: each run is the ``hssl pretrain`` then ``hssl linear-probe`` pair
that ``--dry-run`` prints; with ``--jobs N > 1`` each in child processes (one device each),
with one job the same two calls in this process.

A run is done when ``probe.json`` (the probe's ``--json`` report) parses; done runs are
skipped, so re-running the same command resumes an interrupted ablation, and pretrain
is always called with ``--resume`` to continue a run cut off mid-training. A failed run
leaves ``failure.json`` (its error line) and the others go on.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

from hssl_cli.ablation.study import Run
from hssl_cli.io import atomic_write_json, atomic_write_text
from hssl_cli.run_files import (
    CHECKPOINT_NAME,
    FAILURE_NAME,
    LOG_NAME,
    PROBE_NAME,
    RUNS_FOLDER,
    TIMING_NAME,
)

CHILD_GRACE_SECONDS = 60.0  # a child saving its checkpoint after Ctrl-C gets this long


@dataclass
class Outcome:
    run: Run
    status: str  # "done", "skipped" (done earlier) or "failed"
    seconds: float = 0.0
    error: str = ""


def run_folder(out_dir: Path, run: Run) -> Path:
    return out_dir / RUNS_FOLDER / run.name


def read_probe(folder: Path) -> dict[str, Any] | None:
    """The probe report of a finished run, or None (absent, empty or cut short)."""
    try:
        report = json.loads((folder / PROBE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and "top1" in report else None


def commands(run: Run, folder: Path, device: str) -> tuple[list[str], list[str]]:
    """The pretrain and probe argument lists of one run (the probe writes JSON to stdout)."""
    pretrain = ["hssl", "pretrain", "--recipe", str(run.recipe), "--out", str(folder)]
    for override in run.overrides:
        pretrain += ["--set", override]
    pretrain += ["--device", device, "--resume", "--quiet"]
    probe = ["hssl", "linear-probe", str(folder / CHECKPOINT_NAME)]
    probe += ["--device", device, "--json"]
    return pretrain, probe


def shell_lines(run: Run, folder: Path, device: str) -> list[str]:
    """What ``--dry-run`` prints: two lines a shell or a cluster scheduler runs as they are."""
    pretrain, probe = commands(run, folder, device)
    return [shlex.join(pretrain), f"{shlex.join(probe)} > {shlex.quote(str(folder / PROBE_NAME))}"]


class RunFailed(Exception):
    """A child exited non-zero; the message is its last stderr line."""


class Interrupted(Exception):
    """A child stopped on Ctrl-C (exit 130): stop the whole ablation."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _stop_gently(process: subprocess.Popen[str]) -> None:
    """A terminal's Ctrl-C reaches the child too; otherwise send it SIGINT. Either way let
    it finish saving its checkpoint before it exits, and kill it only if it hangs."""
    try:
        process.wait(timeout=2.0)
        return
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=CHILD_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _child(arguments: list[str], env: dict[str, str], log: Path) -> str:
    """Run ``hssl ...`` as ``python -m hssl_cli ...``; return stdout, append stderr to the log.

    On Ctrl-C the child receives SIGINT too and saves before it exits; wait for it rather
    than kill it mid-write.
    """
    command = [sys.executable, "-m", "hssl_cli", *arguments[1:]]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        stdout, stderr = process.communicate()
    except KeyboardInterrupt:
        _stop_gently(process)
        raise Interrupted() from None
    with log.open("a") as handle:
        shown = "" if "--json" in arguments else stdout  # a JSON report is the result
        handle.write(f"$ {shlex.join(arguments)}\n{stderr}{shown}")
    if process.returncode in (130, -signal.SIGINT):
        raise Interrupted()
    if process.returncode != 0:
        raise RunFailed(_last_line(stderr) or f"{arguments[1]} exited {process.returncode}")
    return stdout


def execute_run(run: Run, folder: Path, device: str, env: dict[str, str]) -> None:
    """Pretrain then probe one run in child processes; the probe report lands atomically."""
    pretrain, probe = commands(run, folder, device)
    log = folder / LOG_NAME
    _child(pretrain, env, log)
    atomic_write_text(folder / PROBE_NAME, _child(probe, env, log))


def execute_run_in_process(run: Run, folder: Path, device: str, env: dict[str, str]) -> None:
    """The same pretrain and probe, called in this process: with one job at a time this
    saves the ~5 s each child spends importing torch, escnn and scikit-learn."""
    import traceback

    from hssl_cli.errors import HsslUserError, TrainingDiverged
    from hssl_cli.probe import probe_checkpoint
    from hssl_cli.recipe import load_recipe
    from hssl_cli.training import pretrain, select_device

    pretrain_command, probe_command = commands(run, folder, device)
    with (folder / LOG_NAME).open("a") as log:
        log.write(f"$ {shlex.join(pretrain_command)}  (in process)\n")
        try:
            chosen = select_device(device)
            recipe = load_recipe(run.recipe, list(run.overrides))
            result = pretrain(recipe, folder, chosen, resume=True, quiet=True)
            log.write(f"trained {result.epochs_done} epochs, final loss {result.last_loss:.4f}\n")
            log.write(f"$ {shlex.join(probe_command)}  (in process)\n")
            report = probe_checkpoint(folder / CHECKPOINT_NAME, [], chosen, quiet=True)
        except (HsslUserError, TrainingDiverged) as err:
            log.write(f"error: {err}\n")
            raise RunFailed(f"error: {err}") from None
        except KeyboardInterrupt:
            raise Interrupted() from None
        except Exception as err:  # an internal error stays in its run, traceback in the log
            log.write(traceback.format_exc())
            raise RunFailed(f"internal error: {type(err).__name__}: {err}") from None
    atomic_write_json(folder / PROBE_NAME, report)


RunExecutor = Callable[[Run, Path, str, dict[str, str]], None]


def _attempt(
    run: Run, folder: Path, device: str, env: dict[str, str], execute: RunExecutor
) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        execute(run, folder, device, env)
    except RunFailed as err:
        seconds = time.perf_counter() - started
        atomic_write_json(folder / FAILURE_NAME, {"error": str(err), "seconds": seconds})
        return Outcome(run, "failed", seconds, str(err))
    seconds = time.perf_counter() - started
    (folder / FAILURE_NAME).unlink(missing_ok=True)
    atomic_write_json(folder / TIMING_NAME, {"wall_seconds": seconds})
    return Outcome(run, "done", seconds)


def job_environments(jobs: int, device: str) -> list[dict[str, str]]:
    """One environment per parallel slot: a GPU each where there are several, else a share
    of the CPU threads (oversubscribed threads make small ops many times slower)."""
    base = dict(os.environ)
    if jobs == 1:
        return [base]
    gpus = 0
    if device != "cpu":
        import torch

        gpus = torch.cuda.device_count()
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    environments = []
    for slot in range(jobs):
        env = dict(base)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
        else:
            env["OMP_NUM_THREADS"] = threads
        environments.append(env)
    return environments


def execute_study(
    runs: list[Run],
    out_dir: Path,
    device: str = "auto",
    jobs: int = 1,
    report: Callable[[Outcome], None] = lambda outcome: None,
    execute: RunExecutor | None = None,
) -> list[Outcome]:
    """Run every run that is not done yet; ``report`` sees each outcome as it arrives.

    One job runs in this process; several run as child processes (``execute_run``)."""
    if execute is None:
        execute = execute_run_in_process if jobs == 1 else execute_run
    outcomes: list[Outcome] = []
    pending = []
    for run in runs:
        if read_probe(run_folder(out_dir, run)) is not None:
            outcomes.append(Outcome(run, "skipped"))
            report(outcomes[-1])
        else:
            pending.append(run)
    environments = job_environments(jobs, device) if pending else []
    if jobs == 1:
        for run in pending:
            outcomes.append(
                _attempt(run, run_folder(out_dir, run), device, environments[0], execute)
            )
            report(outcomes[-1])
        return outcomes
    slots: Queue[dict[str, str]] = Queue()
    for env in environments:
        slots.put(env)
    with ThreadPoolExecutor(max_workers=jobs) as pool:

        def in_slot(run: Run) -> Outcome:
            env = slots.get()
            try:
                return _attempt(run, run_folder(out_dir, run), device, env, execute)
            finally:
                slots.put(env)

        futures = [pool.submit(in_slot, run) for run in pending]
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                report(outcomes[-1])
        except (KeyboardInterrupt, Interrupted):
            for future in futures:
                future.cancel()
            raise
    return outcomes
