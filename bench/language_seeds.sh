#!/bin/bash
# Training seeds 1 and 2 of the continual page's four models (issue 14), each with its shipped recipe:
# `python -m nested train --preset languages-<model> --seed k`; Hope (normalised inner writes, the recipe of
# hope-languages since session 14) with its second stage: 900 more steps from those weights with a fresh
# optimizer. MODELS picks models (default: all four); COMPILE=1 compiles the training step (the same function;
# at the languages' shape not faster than eager here: 3.5 s a step on a busy machine); SEEDS picks seeds (default "1 2").
# Resumable: run it again after a stop.
# Then: python bench/continual_study.py --training-seeds runs
source "$(dirname "$0")/resumable.sh"
C=(); [ -n "${COMPILE:-}" ] && C=(--compile)
for m in ${MODELS:-transformer-swa transformer titans hope}; do
  for s in ${SEEDS:-1 2}; do
    case $m in
      transformer-swa|transformer) train runs/lang-$m-s$s --preset languages-$m --seed $s --steps 1500 "${C[@]}" || exit 1 ;;
      titans) train runs/lang-titans-s$s --preset languages-titans --seed $s --steps 1200 "${C[@]}" || exit 1 ;;
      hope)
        train runs/lang-hope-s$s --preset languages-hope --seed $s --steps 1750 "${C[@]}" || exit 1
        train runs/lang-hope-s$s-cont --preset languages-hope --seed $s --init runs/lang-hope-s$s/model --steps 900 "${C[@]}" || exit 1 ;;
    esac
  done
done
