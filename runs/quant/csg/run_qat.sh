#!/usr/bin/env bash
# Quantization-aware distillation of a CSG student against the dense parent (issue 32), one core:
#   bash runs/quant/csg/run_qat.sh NAME STUDENT DTYPE EPOCHS [extra convert.py flags]
set -euo pipefail
name=$1 student=$2 dtype=$3 epochs=$4; shift 4
out=runs/quant/csg/$name
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python scripts/convert.py --parent runs/zoo/resnet18-dense-28px-10ep/model --student "$student" --qat \
  --storage-dtype "$dtype" --storage-scope all --dataset data/fashion_mnist --label-smoothing 0.1 \
  --lr 0.01 --epochs "$epochs" --warmup-epochs 0.1 --output-dir "$out" "$@" > "$out/convert.log" 2>&1
