#!/usr/bin/env bash
# Issue 13's check: on every committed zoo folder, top-1 through eval.py and through transformers'
# pipeline("image-classification") on the same 10,000 Fashion-MNIST test images.
# Usage (repo root): bash runs/zoo/pipeline_check/run.sh
set -eu
for folder in model_cards/*/; do
  name=$(basename "$folder")
  OMP_NUM_THREADS=1 .venv/bin/python scripts/eval.py --model "$folder" --dataset data/fashion_mnist --split test \
    --pipeline --output "runs/zoo/pipeline_check/$name.json" > "runs/zoo/pipeline_check/$name.log" 2>&1
  echo "$name: $(python3 -c "import json,sys; r=json.load(open('runs/zoo/pipeline_check/$name.json')); print(r['top1'], r['pipeline_top1'], r['pipeline_disagreements'])")"
done
