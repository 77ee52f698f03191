#!/usr/bin/env bash
# After the 2026-11-30 runs: table and plot, Hub-ready exports (new runs, and the old folders re-exported
# in place with the storage table in their cards), pipeline-vs-eval on the new folders, the frontier.
set -eu
PY=.venv/bin/python
NEW="resnet18-csg-28px-10ep resnet18-csg-28px-s16c64"
$PY scripts/zoo_table.py --exclude resnet18-dense-28px --export-to model_cards > /tmp/zoo_table.log 2>&1
for name in $NEW; do
  OMP_NUM_THREADS=1 $PY scripts/eval.py --model model_cards/$name --dataset data/fashion_mnist --split test \
    --pipeline --output runs/zoo/pipeline_check/$name.json > runs/zoo/pipeline_check/$name.log 2>&1 &
done
OMP_NUM_THREADS=1 $PY scripts/frontier.py --models model_cards/resnet18-csg model_cards/resnet18-csg-20ep \
  model_cards/resnet18-csg-allconvs model_cards/resnet50-csg-allconvs model_cards/densenet121-csg-allconvs \
  model_cards/resnet18-csg-28px-10ep model_cards/resnet18-csg-28px-s16c64 --output runs/frontier \
  > runs/frontier/frontier.log 2>&1
wait
for name in $NEW; do
  echo "$name: $(python3 -c "import json; r=json.load(open('runs/zoo/pipeline_check/$name.json')); print(r['top1'], r['pipeline_top1'], r['pipeline_disagreements'])")" >> runs/zoo/pipeline_check/summary.txt
done
echo done
