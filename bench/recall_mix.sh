#!/bin/bash
# The recall lab's second stage (issue 15): each shipped recall model (MQAR over 4-32 pairs) trained on, from
# its weights with a fresh optimizer, on MQAR and needles in haystacks of 56-128 bytes (`recall-mix-<model>`),
# so the needle views show models that learned needles. Resumable: run it again after a stop.
# Then: python -m nested ship <name> --from runs/mix-<model>   (cards), python bench/recall_study.py
source "$(dirname "$0")/resumable.sh"
for m in ${MODELS:-transformer transformer-swa titans hope}; do
  name=$m; [ "$m" = transformer-swa ] && name=swa
  steps=800; [ "${m#transformer}" != "$m" ] && steps=1500
  train runs/mix-$m --preset recall-mix-$m --init assets/checkpoints/$name-recall --steps $steps || exit 1
done
