#!/usr/bin/env bash
# Linear-probe top-1 of the foundation comparisons on one data set, with the exact
# commands. Usage: benchmarks/foundation_table.sh RECIPE OUT_DIR [--set ...]
#   benchmarks/foundation_table.sh recipes/digits_rot4.yaml runs/table-digits
#   benchmarks/foundation_table.sh recipes/fashion_rot4.yaml runs/table-fashion
set -euo pipefail
recipe=$1; out=$2; shift 2
hssl=${HSSL:-hssl}
declare -a names=(
  "hssl+base-aug"
  "hssl rotation-only"
  "hssl+base-aug unstructured"
  "hssl rotation-only unstructured"
  "simclr+base-aug+rot"
  "random-init"
)
declare -a sets=(
  ""
  "--set method.augment=null"
  "--set model.structure=unstructured"
  "--set method.augment=null --set model.structure=unstructured"
  "--set method.name=simclr --set method.augment.group_element=true"
  "--set train.epochs=0"
)
mkdir -p "$out"
printf '| run | invariant top1 | full top1 | knn top1 | epoch s |\n|---|---|---|---|---|\n' > "$out/table.md"
for i in "${!names[@]}"; do
  dir="$out/run$i"
  rm -rf "$dir"
  echo "+ $hssl pretrain --recipe $recipe --out $dir $* ${sets[$i]} --quiet" >&2
  # shellcheck disable=SC2086
  $hssl pretrain --recipe "$recipe" --out "$dir" "$@" ${sets[$i]} --quiet >&2
  echo "+ $hssl linear-probe $dir/checkpoint.safetensors --json" >&2
  $hssl linear-probe "$dir/checkpoint.safetensors" --json > "$dir/probe.json"
  python3 - "$dir" "${names[$i]}" >> "$out/table.md" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1]); p = json.loads((d / "probe.json").read_text())
lines = (d / "metrics.jsonl").read_text().splitlines() if (d / "metrics.jsonl").exists() else []
secs = [json.loads(l)["epoch_seconds"] for l in lines]
med = sorted(secs)[len(secs) // 2] if secs else float("nan")
print(f"| {sys.argv[2]} | {p['invariant']['top1']:.2f} | {p['full']['top1']:.2f} | {p['knn_top1']:.2f} | {med:.1f} |")
PY
done
cat "$out/table.md"
