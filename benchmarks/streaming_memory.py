"""Peak memory of one pretraining epoch over an image folder, streamed against decoded in memory.

Writes a folder of N 224x224 JPEGs (smooth random blobs: compressible, about 1 GB decoded for
7000 images), then runs ``hssl pretrain`` for one epoch with a tiny model, in a subprocess
under ``/usr/bin/time -v``, three times: ``data.in_memory=false`` with N and with N/10 images,
and ``data.in_memory=true`` with N. Streaming should keep the peak flat in N; in memory it
grows by the decoded set (N x 3 x 224 x 224 bytes).

Two figures per run: GNU time's maximum resident set size (the largest single process; it
does not add up DataLoader workers), and the peak proportional set size (PSS) of the whole
process tree, sampled from /proc every 0.2 s (shared pages counted once).

    python benchmarks/streaming_memory.py [--images 7000] [--workers 4] [--device cpu]

Needs GNU time (``apt-get install -y time``) and a trainer that reads its data through
``hssl_cli.data.batches.open_batches``; it says so and stops when either is missing
(``--force`` runs anyway, e.g. to try the script on ``--images 50``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TIME = Path("/usr/bin/time")
SIZE = 224
CLASSES = 10
RECIPE = REPO / "recipes" / "digits_rot4.yaml"
SAMPLE_SECONDS = 0.2
TINY_MODEL = [
    "data.name=imagefolder",
    f"data.image_size={SIZE}",
    "model.widths=[4,8]",
    "model.convs_per_stage=1",
    "method.projector_hidden_dim=64",
    "method.projector_out_dim=32",
    "train.epochs=1",
]
BATCH_SIZE = 64  # or the small run's image count, if fewer


def blob_image(seed: int) -> np.ndarray:
    """A smooth random picture: a few coloured Gaussian blobs on a smooth gradient."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(0.0, 1.0, SIZE, dtype=np.float32)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    image = rng.uniform(0, 1, 3).astype(np.float32) * (0.5 + 0.5 * x[..., None] * y[..., None])
    for _ in range(rng.integers(3, 8)):
        cy, cx = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.05, 0.3)
        weight = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))
        image += weight[..., None] * rng.uniform(-0.8, 0.8, 3).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _write_chunk(root: str, start: int, stop: int) -> None:
    from PIL import Image

    for index in range(start, stop):
        path = Path(root) / "train" / f"class{index % CLASSES}" / f"{index:06d}.jpg"
        Image.fromarray(blob_image(index)).save(path, quality=90)


def make_folder(root: Path, count: int) -> None:
    """root/train/class<k>/<i>.jpg for i < count; reused when already complete."""
    marker = root / f"complete-{count}"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    for label in range(CLASSES):
        (root / "train" / f"class{label}").mkdir(parents=True)
    chunk = 250
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        jobs = [
            pool.submit(_write_chunk, str(root), start, min(start + chunk, count))
            for start in range(0, count, chunk)
        ]
        for job in jobs:
            job.result()
    marker.touch()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except (OSError, ValueError):
        return []


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def tree_pss_kib(root: int) -> int:
    """PSS of ``root`` and all its descendants."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kib(pid)
        stack.extend(_children(pid))
    return total


def run_epoch(
    root: Path, in_memory: bool, workers: int, device: str, batch_size: int
) -> dict[str, float]:
    """One epoch of hssl pretrain under /usr/bin/time -v; peak RSS and sampled tree PSS (MiB)."""
    with tempfile.TemporaryDirectory(prefix="hssl-streaming-run-") as out:
        command = [str(TIME), "-v", sys.executable, "-m", "hssl_cli", "pretrain"]
        command += ["--recipe", str(RECIPE), "--out", out, "--device", device, "--quiet"]
        settings = [
            *TINY_MODEL,
            f"data.root={root}",
            f"data.in_memory={str(in_memory).lower()}",
            f"data.workers={workers}",
            f"train.batch_size={batch_size}",
        ]
        command += [f"--set={setting}" for setting in settings]
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(SAMPLE_SECONDS):
                peak = max(peak, tree_pss_kib(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = process.communicate()
        stop.set()
        sampler.join()
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = "\n".join((stdout + stderr).strip().splitlines()[-30:])
        raise SystemExit(f"hssl pretrain failed (exit {process.returncode}):\n{tail}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if found is None:
        raise SystemExit(f"no 'Maximum resident set size' in /usr/bin/time's output:\n{stderr}")
    return {"max_rss": int(found.group(1)) / 1024, "peak_pss": peak / 1024, "seconds": seconds}


def trainer_streams() -> bool:
    """Whether the training package reads its data through open_batches (else a streaming run
    would silently decode everything into memory)."""
    training = REPO / "hssl_cli" / "training"
    return any("open_batches" in path.read_text() for path in training.glob("*.py"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=7000, help="N (the small run has N/10)")
    parser.add_argument("--workers", type=int, default=4, help="data.workers")
    parser.add_argument("--device", default="cpu", help="--device of hssl pretrain")
    parser.add_argument(
        "--folder",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hssl-streaming-images",
        help="where to write the images (kept and reused; N/10 gets a folder beside it)",
    )
    parser.add_argument("--force", action="store_true", help="run even if checks fail")
    args = parser.parse_args()

    problems = []
    if not TIME.exists():
        problems.append(f"{TIME} is missing: install GNU time (apt-get install -y time)")
    if not trainer_streams():
        problems.append(
            "the trainer (hssl_cli/training) does not read its data through "
            "hssl_cli.data.batches.open_batches yet, so data.in_memory=false would still "
            "decode the whole folder into memory and the figures would mean nothing"
        )
    if problems and (not args.force or not TIME.exists()):
        for problem in problems:
            print(f"cannot measure: {problem}", file=sys.stderr)
        if TIME.exists():
            print("(--force runs anyway)", file=sys.stderr)
        raise SystemExit(2)
    for problem in problems:
        print(f"warning (--force): {problem}", file=sys.stderr)

    small = max(args.images // 10, 8)
    batch_size = min(BATCH_SIZE, small)
    runs = [(args.images, False), (small, False), (args.images, True)]
    decoded = {count: count * 3 * SIZE * SIZE / 2**20 for count, _ in runs}
    rows = []
    for count, in_memory in runs:
        folder = args.folder if count == args.images else Path(f"{args.folder}-{count}")
        print(f"writing {count} JPEGs to {folder} (reused if already there) ...", flush=True)
        make_folder(folder, count)
        mode = "in memory" if in_memory else "streamed"
        print(f"one epoch, {count} images, {mode} ...", flush=True)
        result = run_epoch(folder, in_memory, args.workers, args.device, batch_size)
        rows.append((count, mode, result))

    print()
    print(f"{'images':>7}  {'data':>9}  {'decoded MiB':>11}  {'max RSS MiB':>11}  ", end="")
    print(f"{'tree PSS MiB':>12}  {'seconds':>7}")
    for count, mode, result in rows:
        print(
            f"{count:>7}  {mode:>9}  {decoded[count]:>11.0f}  {result['max_rss']:>11.0f}  "
            f"{result['peak_pss']:>12.0f}  {result['seconds']:>7.1f}"
        )
    print(
        "\nmax RSS: GNU time, the largest single process; tree PSS: the sampled peak over the "
        f"process and its DataLoader workers ({args.workers}), shared pages counted once."
    )


if __name__ == "__main__":
    main()
