#!/bin/bash
# Section 5 learning with the fitted q, one seed:
#   studies/sec5_fitted_q.sh SEED [DG_WEIGHT [CHAINS_PER_DIGIT [LEAPFROG_STEPS [BASE_LR [EPOCHS]]]]]
# fine-tunes the 25-epoch DG LeNet of that seed (results/sample_quality/nets/
# dg_seed$SEED.caffemodel) by half an epoch (EPOCHS) of generative learning under the
# fitted q, then draws T = 1 samples of the learned net from q (the protocol
# of the DG nets' samples: 30 adaptation + 100 iterations of 10 leapfrog
# steps), and keeps the training's final persistent chains as a second set.
# Resumable: a finished step is skipped. Run from the repository root after
# `. ./env.sh`; one core (OPENBLAS_NUM_THREADS=1) per seed.
set -euo pipefail
seed=$1; weight=${2:-100}; per_digit=${3:-100}; leapfrog=${4:-5}; base_lr=${5:-3e-4}
epochs=${6:-0.5}
# the training chains' HMC: 10 transitions of LEAPFROG_STEPS leapfrog steps per
# iteration (1 = Metropolis-adjusted Langevin, the white-q runs' setting)
name="sec5_w${weight}_seed${seed}"
if [ "$leapfrog" != 1 ]; then name="sec5_L${leapfrog}_w${weight}_seed${seed}"; fi
# BASE_LR other than the tool's default 3e-4 (1e-4: the solver control's
# rate that costs no test error, studies/sec5_solver_control.py)
if [ "$base_lr" != 3e-4 ]; then name="${name%_seed*}_lr${base_lr}_seed${seed}"; fi
if [ "$epochs" != 0.5 ]; then name="${name%_seed*}_ep${epochs}_seed${seed}"; fi
run="scratch/runs/sec5/$name"
samples=results/sample_quality/samples
nets=results/sample_quality/nets
suffix=""
if [ "$per_digit" != 100 ]; then suffix="_n$((10 * per_digit))"; fi
export OPENBLAS_NUM_THREADS=1
if [ ! -f "$run/history.json" ]; then
  resume=()
  if [ -f "$run/state.json" ]; then resume=(--resume); fi
  python tools/generative_learning.py --out "$run" --seed "$seed" \
      --weights "$nets/dg_seed$seed.caffemodel" --fitted-q 1 --reference-count 20000 \
      --epochs "$epochs" --dg-weight "$weight" --leapfrog-steps "$leapfrog" --step-size 0.3 \
      --max-step 2 --base-lr "$base_lr" --no-progress "${resume[@]}"
fi
cp "$run/final.caffemodel" "$nets/$name.caffemodel"
cp "$run/history.json" "$nets/${name}_history.json"
cp "$run/train.log" "$nets/${name}_train.log"
out="$samples/${name}_logit$suffix.npz"
if [ ! -f "$out" ]; then
  python studies/class_samples_t1.py --weights "$nets/$name.caffemodel" \
      --chains-per-digit "$per_digit" --out "$out" \
      --grid "results/figures/sample_quality_${name}_logit$suffix.png"
fi
python studies/class_samples_t1.py --chains-from "$run/chains.npz" --chains-per-digit "$per_digit" \
    --weights "$nets/$name.caffemodel" --out "$samples/${name}_buffer$suffix.npz"
