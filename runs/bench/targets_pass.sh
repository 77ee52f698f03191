#!/usr/bin/env bash
# Issue 15's two open bench targets, re-measured with more rounds on the quiet machine (both cores free, 2
# threads, shuffled order) and the three ratio estimators (medians, minimums, paired): resnet50 224x224
# training (<= 1.03x dense), cached eval at batch 1 and 64 (<= 1.02x its dense twin); then 28x28 training with
# the all-convs floor. Usage: TAG=v5 bash runs/bench/targets_pass.sh   (repo root; ~25 min on the 2-core EPYC)
set -eu
TAG=${TAG:-v5}
PY=.venv/bin/python
$PY scripts/bench.py --architectures resnet50 --image-size 224 --train-batch 16 --precisions fp32 \
  --sections training --repeats 7 --steps 2 --threads 2 --output runs/bench/bench_224_r50_${TAG}.json \
  > runs/bench/bench_224_r50_${TAG}.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --inference-batches 1 64 --sections inference \
  --repeats 21 --steps 3 --threads 2 --output runs/bench/bench_28px_cached_${TAG}.json \
  > runs/bench/bench_28px_cached_${TAG}.log 2>&1
$PY scripts/bench.py --image-size 28 --precisions fp32 --sections training --repeats 5 --steps 2 --threads 2 \
  --output runs/bench/bench_28px_train_${TAG}.json > runs/bench/bench_28px_train_${TAG}.log 2>&1
