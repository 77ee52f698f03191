#!/usr/bin/env bash
# Re-evaluate every zoo folder (model_cards/*) through scripts/eval.py --pipeline on the 10,000 Fashion-MNIST test
# images and compare both top-1s with the card's model-index value. Writes runs/zoo/pipeline_check/recheck/<name>.json
# and summary.md. Usage: bash runs/zoo/recheck_cards.sh  (from the repo root, after
# `python scripts/prepare_fashion_mnist.py --save-to-disk data/fashion_mnist`); JOBS parallel evaluations, 1 thread each.
set -eu
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
OUT=runs/zoo/pipeline_check/recheck
mkdir -p $OUT
ls -d model_cards/*/ | xargs -P "$JOBS" -I{} sh -c '
  name=$(basename {}); OMP_NUM_THREADS=1 '"$PY"' scripts/eval.py --model model_cards/$name --dataset data/fashion_mnist \
    --split test --pipeline --output '"$OUT"'/$name.json > '"$OUT"'/$name.log 2>&1 || echo "$name: eval failed"'
$PY - <<'PY'
import json, pathlib
from huggingface_hub import ModelCard
out = pathlib.Path("runs/zoo/pipeline_check/recheck")
rows, bad = [], 0
for folder in sorted(pathlib.Path("model_cards").iterdir()):
    result = json.loads((out / f"{folder.name}.json").read_text())
    card = [r.metric_value for r in ModelCard.load(folder / "README.md").data.eval_results or []
            if r.dataset_split == "test" and r.metric_type == "accuracy"]
    ok = card and round(result["top1"], 2) == card[0] and result["pipeline_top1"] == result["top1"]
    bad += not ok
    rows.append(f"| {folder.name} | {card[0] if card else 'none'} | {result['top1']:.2f} | {result['pipeline_top1']:.2f} "
                f"| {result['pipeline_disagreements']} | {'yes' if ok else 'NO'} |")
table = ["| folder | card top-1 | eval.py top-1 | pipeline top-1 | disagreements | reproduces |",
         "|---|---:|---:|---:|---:|---|", *rows]
(out / "summary.md").write_text("\n".join(table) + "\n")
print("\n".join(table))
raise SystemExit(bad)
PY
