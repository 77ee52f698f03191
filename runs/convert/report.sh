#!/usr/bin/env bash
# Issue 17's table, ablation and curve from the committed runs (repo root): runs/convert/conversion.{md,png}
set -eu
.venv/bin/python scripts/conversion_report.py runs/convert/resnet18-28px-least_squares-0ep \
  runs/convert/resnet18-28px-random-0ep runs/convert/kd-ls-*ep runs/convert/scratch-*ep \
  runs/zoo/resnet18-csg-28px-10ep runs/convert/abl-* --reference runs/zoo/resnet18-csg-20ep --output runs/convert
