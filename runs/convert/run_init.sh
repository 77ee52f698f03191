#!/usr/bin/env bash
# Issue 17: which initialisation starts distillation from the better place. Epoch 0 = converted (or random),
# BatchNorm re-estimated on 20 training batches, evaluated on the 10,000 test images; parent evaluated too.
set -eu
P=runs/zoo/resnet18-dense-28px-10ep/model
for init in least_squares activations random; do
  out=runs/convert/resnet18-28px-$init-0ep
  mkdir -p $out
  OMP_NUM_THREADS=1 .venv/bin/python scripts/convert.py --parent $P --dataset data/fashion_mnist --init $init \
    --epochs 0 --output-dir $out > $out/convert.log 2>&1
  echo "$init: $(grep -o 'parent top-1.*' $out/convert.log)"
done
