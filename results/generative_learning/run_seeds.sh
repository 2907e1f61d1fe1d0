#!/bin/bash
# The three runs behind results/generative_learning.json (run from the repository root,
# after `. ./env.sh`; add --resume to continue after a kill). Each starts from a
# 2-epoch DG LeNet of the same seed (results/generative_learning/dg_init_seed$s, made by
#   python tools/two_stage.py --stage1 solvers/lenet_dg.prototxt --seed $s --stop-epoch 2 \
#       --out results/generative_learning/dg_init_seed$s).
s=$1; shift
python tools/generative_learning.py --out results/generative_learning/seed$s --seed $s \
    --weights results/generative_learning/dg_init_seed$s/stage1_final.caffemodel \
    --epochs 1 --base-lr 0.0003 --dg-weight 10 --alpha 0.0001 --synthesized 32 \
    --mcmc-iters 10 --leapfrog-steps 1 --step-size 0.05 --buffer-size 100 \
    --restart-prob 0.05 --match-labels 1 --no-progress "$@"
