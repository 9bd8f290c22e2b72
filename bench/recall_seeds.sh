#!/bin/bash
# Training seeds 1 and 2 of the recall lab's memory models (issue 15: "is it memorising?" over training seeds),
# each by its shipped recipe: MQAR over 4-32 pairs (recall-mixed-<m>, 2,000 steps), then MQAR + needles from
# those weights (recall-mix-<m>, 800 steps). MODELS and SEEDS pick models and seeds. Resumable: run it again after a stop.
# Then: python bench/recall_study.py --family F --training-seeds runs
source "$(dirname "$0")/resumable.sh"
for m in ${MODELS:-titans hope}; do
  for s in ${SEEDS:-1 2}; do
    train runs/recall-$m-s$s --preset recall-mixed-$m --seed $s --steps 2000 || exit 1
    train runs/recall-$m-s$s-mix --preset recall-mix-$m --seed $s --init runs/recall-$m-s$s/model --steps 800 || exit 1
  done
done
