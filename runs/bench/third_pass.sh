#!/usr/bin/env bash
# Third bench pass (issue 15's targets), both cores free, 2 threads, variant order rotating every round.
# Usage: bash runs/bench/third_pass.sh   (repo root; ~15 min on the 2-core AMD EPYC machine)
set -eu
PY=.venv/bin/python
# the targets first: 224x224 training steps (eager, compiled, floor) and cached eval at 28x28
$PY scripts/bench.py --architectures resnet18 --image-size 224 --train-batch 16 --precisions fp32 --compile \
  --sections training --repeats 9 --steps 2 --threads 2 --output runs/bench/bench_224_train_v3.json \
  > runs/bench/bench_224_train_v3.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --inference-batches 1 64 --sections inference \
  --repeats 11 --steps 3 --threads 2 --output runs/bench/bench_28px_cached_v3.json > runs/bench/bench_28px_cached_v3.log 2>&1
# then the rest of the table: resnet50 at 224, 28x28 training, inference at 224 with compile
$PY scripts/bench.py --architectures resnet50 --image-size 224 --train-batch 16 --precisions fp32 \
  --sections training --repeats 5 --steps 2 --threads 2 --output runs/bench/bench_224_r50_v3.json \
  > runs/bench/bench_224_r50_v3.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --sections training --repeats 5 --steps 2 --threads 2 \
  --output runs/bench/bench_28px_train_v3.json > runs/bench/bench_28px_train_v3.log 2>&1
