#!/usr/bin/env bash
# Issue 17: distillation from the dense parent vs CSG from scratch on the same short schedules, and the
# init x loss ablation. Usage: bash runs/convert/run_distill.sh NAME [NAME ...] from the repo root (runs in
# the order given; two chains of names run on the two cores). CODE=DIR runs another checkout's code (a
# frozen worktree); outputs go to ./runs/convert/NAME.
# Recipe: the zoo's 28x28 fp32 recipe (train.py defaults, label smoothing 0.1) with warm-up = 10% of the
# schedule (1 epoch at 10 epochs, as in the 10-epoch zoo runs; a full warm-up epoch would leave a 1-epoch
# run at its peak learning rate). Student: the default CSG setting (paper policy, slice 12, code_dim 72).
set -u
PY=${PY:-.venv/bin/python}
CODE=${CODE:-.}
P=runs/zoo/resnet18-dense-28px-10ep/model
DATA="--dataset data/fashion_mnist --label-smoothing 0.1"
sched() { echo "--epochs $1 --warmup-epochs $(python3 -c "print($1/10)")"; }
# the ablation: 15,000 training images seen once (a quarter epoch), every init x loss
ABL="--epochs 1 --warmup-epochs 0.1 --train-limit 15000"
declare -A LOSS=([labels]="--alpha 0" [kd]="--no-labels" [both]="")
for name in "$@"; do
  out=runs/convert/$name
  mkdir -p "$out"
  case $name in
    kd-ls-*ep) cmd="scripts/convert.py --parent $P --init least_squares $DATA $(sched ${name//[!0-9]/})" ;;
    scratch-*ep) cmd="scripts/train.py --model resnet18 --csg --image-size 28 $DATA $(sched ${name//[!0-9]/}) --dense-baseline runs/zoo/resnet18-dense-28px-10ep/metrics.json" ;;
    abl-*) init=${name#abl-}; init=${init%-*}; loss=${name##*-}
      cmd="scripts/convert.py --parent $P --init $init $DATA $ABL ${LOSS[$loss]}" ;;
    *) echo "unknown run $name" >&2; exit 2 ;;
  esac
  echo "$(date -u +%FT%TZ) start $name: $cmd" >> runs/convert/chain.log
  OMP_NUM_THREADS=1 PYTHONPATH=$CODE $PY $CODE/$cmd --output-dir "$out" >> "$out/run.log" 2>&1
  rc=$?  # before the echo: its $(date) would set $? to date's status
  echo "$(date -u +%FT%TZ) end $name rc=$rc" >> runs/convert/chain.log
done
