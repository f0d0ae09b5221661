#!/usr/bin/env bash
# The CAM stage of the pipeline on the embedded synthetic default, step by step:
# data, SupportNet (baseline), the MainNet variants against it, a baseline with
# the same total budget, CAMs of the train split, seed mIoU of every variant.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-.venv/bin/python}
P=${PARAMS:-params.yaml}
R=data/synthetic/VOC2012
O=results/synthetic
mkdir -p logs

step() { local name=$1; shift; echo "== $name"; "$PY" -m "pixsup.steps.$name" "$@"; }

step make_synthetic --params "$P" --out "$R" --log logs/make_synthetic.log --quiet
step validate_data --root "$R" --split train_aug --report "$O/validate_train_aug.json"
step train_cam --params "$P" --root "$R" --split train_aug --variant baseline \
    --out "$O/support/model.pt" --log logs/train_cam/support.log --quiet
for variant in rcm mam full baseline; do
    name=$variant; [ "$variant" = baseline ] && name=baseline_same_budget
    step train_cam --params "$P" --root "$R" --split train_aug --variant "$variant" \
        --support "$O/support/model.pt" --out "$O/$name/model.pt" --log "logs/train_cam/$name.log" --quiet
done
for name in support rcm mam full baseline_same_budget; do
    step make_cams --params "$P" --root "$R" --split train --model "$O/$name/model.pt" \
        --out "$O/$name/cams/train" --log "logs/make_cams/$name.log" --quiet
    step eval_cams --params "$P" --root "$R" --split train --cams "$O/$name/cams/train" \
        --out "$O/metrics/seeds_train_$name.json" --log "logs/eval_cams/$name.log" --quiet
done
