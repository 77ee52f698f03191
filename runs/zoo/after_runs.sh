#!/usr/bin/env bash
# After new zoo runs: table and plot, Hub-ready exports (all CSG runs, re-exported in place), pipeline-vs-eval on
# the new folders, and the frontier (points already measured are kept; new ones are measured).
# Usage: bash runs/zoo/after_runs.sh NEW_FOLDER [NEW_FOLDER ...]   (from the repo root; the model_cards folder
# names: a run's name, or a flagship's Hub name from scripts/zoo_table.py's HUB_NAMES, e.g. resnet50-csg)
# Earlier uses: 2026-11-30 with resnet18-csg-28px-10ep resnet18-csg-28px-s16c64; then resnet18-csg-28px-c32.
set -eu
PY=.venv/bin/python
NEW="$*"
$PY scripts/zoo_table.py --exclude resnet18-dense-28px --export-to model_cards > /tmp/zoo_table.log 2>&1
for name in $NEW; do
  OMP_NUM_THREADS=1 $PY scripts/eval.py --model model_cards/$name --dataset data/fashion_mnist --split test \
    --pipeline --output runs/zoo/pipeline_check/$name.json > runs/zoo/pipeline_check/$name.log 2>&1 &
done
# every zoo CSG folder (train.py and convert.py runs), the small distilled conversions, the QAT runs
# (runs/quant/csg) and the baselines' points
OMP_NUM_THREADS=1 $PY scripts/frontier.py --cards model_cards --models runs/convert/kd-c32-2ep/model runs/convert/kd-s16c64-2ep/model \
  runs/convert/kd-s16c32-3ep/model --output runs/frontier > runs/frontier/frontier.log 2>&1
wait
for name in $NEW; do
  echo "$name: $(python3 -c "import json; r=json.load(open('runs/zoo/pipeline_check/$name.json')); print(r['top1'], r['pipeline_top1'], r['pipeline_disagreements'])")" >> runs/zoo/pipeline_check/summary.txt
done
echo done
