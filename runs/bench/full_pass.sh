#!/usr/bin/env bash
# Issue 15's benchmark table from one full pass, every setting, on a quiet machine (both cores free, 2 threads):
# the zoo's 28x28 input (training b128, cached eval b1/b64, verified loading, weight-VAE), resnet18 at 56x56
# (training), and the networks' own 224x224 input (training and eval b1/b16, eager and torch.compile'd). fp32
# only: the AVX2 machine of the earlier sessions had no bf16 instructions (autocast bf16 ~50x slower there). One call per variant and round
# (many short rounds pair the variants closely in time; each paired ratio comes with its bootstrap interval).
# Usage: TAG=v9 bash runs/bench/full_pass.sh   (repo root; ~30-40 min on the 2-core EPYC)
set -eu
TAG=${TAG:-full}
PY=.venv/bin/python
$PY scripts/bench.py --image-size 28 --precisions fp32 --sections training inference loading vae --repeats 41 \
  --steps 1 --inference-rounds 200 --threads 2 --output runs/bench/full_28px_${TAG}.json \
  > runs/bench/full_28px_${TAG}.log 2>&1
$PY scripts/bench.py --architectures resnet18 --image-size 56 --precisions fp32 --sections training --repeats 21 \
  --steps 1 --threads 2 --output runs/bench/full_56px_${TAG}.json > runs/bench/full_56px_${TAG}.log 2>&1
$PY scripts/bench.py --image-size 224 --train-batch 16 --precisions fp32 --inference-batches 1 16 --compile \
  --sections training inference --repeats 15 --steps 1 --inference-rounds 60 --threads 2 \
  --output runs/bench/full_224_${TAG}.json > runs/bench/full_224_${TAG}.log 2>&1
