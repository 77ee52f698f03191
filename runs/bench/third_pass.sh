#!/usr/bin/env bash
# Third bench pass (issue 15's targets), both cores free, 2 threads, variants interleaved (see TAG for the order).
# Usage: TAG=v4 bash runs/bench/third_pass.sh   (repo root; ~15 min on the 2-core AMD EPYC machine)
set -eu
TAG=${TAG:-v3}  # v3: order rotated each round (2026-11-30 12:49); v4: shuffled (seeded), the current code
PY=.venv/bin/python
# the targets first: 224x224 training steps (eager, compiled, floor) and cached eval at 28x28
$PY scripts/bench.py --architectures resnet18 --image-size 224 --train-batch 16 --precisions fp32 --compile \
  --sections training --repeats 9 --steps 2 --threads 2 --output runs/bench/bench_224_train_${TAG}.json \
  > runs/bench/bench_224_train_${TAG}.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --inference-batches 1 64 --sections inference \
  --repeats 11 --steps 3 --threads 2 --output runs/bench/bench_28px_cached_${TAG}.json > runs/bench/bench_28px_cached_${TAG}.log 2>&1
# then the rest of the table: resnet50 training at 224, and 28x28 training (resnet18, resnet50)
$PY scripts/bench.py --architectures resnet50 --image-size 224 --train-batch 16 --precisions fp32 \
  --sections training --repeats 5 --steps 2 --threads 2 --output runs/bench/bench_224_r50_${TAG}.json \
  > runs/bench/bench_224_r50_${TAG}.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --sections training --repeats 5 --steps 2 --threads 2 \
  --output runs/bench/bench_28px_train_${TAG}.json > runs/bench/bench_28px_train_${TAG}.log 2>&1
