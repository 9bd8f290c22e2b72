#!/bin/bash
# Training seeds 1 and 2 of the continual page's four models (issue 14), each with its shipped recipe:
# `python -m nested train --preset languages-<model> --seed k`; Hope with its shipped config (inner clip 1,
# CMS lr 1e-3, CMS clip 1, eta bias -2: the defaults when it was trained) and its second stage (900 more
# steps from those weights with a fresh optimizer). Resumable: run it again after a stop.
# Then: python bench/continual_study.py --training-seeds runs
source "$(dirname "$0")/resumable.sh"
HOPE='model_args={"d_model":64,"n_layers":2,"cms_periods":[16,64],"inner_clip":1.0,"cms_lr":0.001,"cms_clip":1.0,"eta_init_bias":-2.0}'
for s in 1 2; do
  train runs/lang-transformer-swa-s$s --preset languages-transformer-swa --seed $s --steps 1500 || exit 1
  train runs/lang-transformer-s$s --preset languages-transformer --seed $s --steps 1500 || exit 1
  train runs/lang-titans-s$s --preset languages-titans --seed $s --steps 1200 || exit 1
done
for s in 1 2; do
  train runs/lang-hope-s$s --preset languages-hope --seed $s --steps 1750 --set "$HOPE" || exit 1
  train runs/lang-hope-s$s-cont --preset languages-hope --seed $s --init runs/lang-hope-s$s/model --steps 900 || exit 1
done
