#!/bin/bash
# Section-5 learning on CIFAR-10 and its T = 1 samples, one step per call;
# every step is resumable and skipped once done. Run from the repository
# root after `. ./env.sh`, one core per call (two calls side by side):
#
#   studies/cifar10_sec5.sh data              # LMDBs + mean (tools/cifar10_data.py)
#   studies/cifar10_sec5.sh dg SEED           # a DG cifar10_quick, the reference
#                                             # schedule (seed 99: the judge)
#   studies/cifar10_sec5.sh sec5 SEED [EPOCHS [START]]
#                                             # section-5 learning from the DG net
#                                             # of seed START (default 1)
#   studies/cifar10_sec5.sh samples NAME      # T = 1 samples of nets/NAME from q
#   studies/cifar10_sec5.sh buffer SEED       # the persistent chains of sec5 SEED (final,
#                                             # else its newest checkpoint's)
#   studies/cifar10_sec5.sh qalone            # draws of the fitted q alone
#   studies/cifar10_sec5.sh report            # results/sample_quality_cifar10.json
#   studies/cifar10_sec5.sh park SEED         # commit-able copy of sec5 SEED's run
#                                             # (its newest checkpoint), which a
#                                             # later session's `sec5 SEED` resumes
#   studies/cifar10_sec5.sh checkpoint SEED   # nets/sec5_seedSEED_iterN*: the newest
#                                             # checkpoint as a finished run's files
#                                             # (weights, history, curves), to sample
#
# Nets, histories and sample sets go to results/sample_quality_cifar10/
# (committed); runs in progress to scratch/runs/cifar10_sec5/.
set -euo pipefail
shared="${GENCNN_SHARED:-../shared}"
runs=scratch/runs/cifar10_sec5
out=results/sample_quality_cifar10
nets=$out/nets
samples=$out/samples
figures=results/figures
# The sampler of every T = 1 set: q fitted to 20,000 training images on the
# logit scale, 100 chains per class from q, 20 adaptation + 40 sampling
# transitions of 5 leapfrog steps (the trial's protocol).
t1=(--net cifar10_quick --q-images 20000 --shrinkage 0.01 --chains-per-class 100
    --adapt 20 --iters 40 --leapfrog-steps 5)
export OPENBLAS_NUM_THREADS=1
mkdir -p "$runs" "$nets" "$samples" "$figures"

resume_flag() {  # RUN: --resume when RUN holds a started run
  if [ -f "$1/state.json" ]; then echo --resume; fi
}

case "${1:-}" in
  data)
    if [ ! -d data/cifar10/cifar10_test_lmdb ]; then
      python tools/cifar10_data.py "$shared/data/cifar10/cifar10-jpeg.tar.gz" \
          --sha256sums "$shared/data/cifar10/SHA256SUMS"
    fi ;;
  dg)
    seed=$2; run="$runs/dg_seed$seed"
    name=$( [ "$seed" = 99 ] && echo judge_dg_seed99 || echo "dg_seed$seed" )
    if [ ! -f "$run/history.json" ]; then
      # shellcheck disable=SC2046  # resume_flag prints one word or none
      python tools/two_stage.py --stage1 solvers/cifar10_quick_dg.prototxt --seed "$seed" \
          --out "$run" --no-progress $(resume_flag "$run")
    fi
    cp "$run/stage1_final.caffemodel" "$nets/$name.caffemodel"
    cp "$run/history.json" "$nets/${name}_history.json" ;;
  sec5)
    seed=$2; epochs=${3:-10}; start=${4:-1}; run="$runs/sec5_seed$seed"
    name="sec5_seed$seed"
    if [ ! -d "$run" ] && [ -d "$out/runs/$name" ]; then   # parked by an earlier session
      cp -a "$out/runs/$name" "$run"
    fi
    if [ ! -f "$run/history.json" ]; then
      # shellcheck disable=SC2046
      python tools/generative_learning.py --net cifar10_quick --out "$run" --seed "$seed" \
          --weights "$nets/dg_seed$start.caffemodel" --epochs "$epochs" --no-progress \
          $(resume_flag "$run")
    fi
    cp "$run/final.caffemodel" "$nets/$name.caffemodel"
    cp "$run/history.json" "$nets/${name}_history.json"
    cp "$run/train.log" "$nets/${name}_train.log"
    cp "$run/iterations.tsv" "$nets/${name}_iterations.tsv"
    cp "$run/curves.png" "$figures/cifar10_${name}_curves.png" ;;
  samples)
    name=$2; set_path="$samples/${name}_fitted_q_T1.npz"
    if [ ! -f "$set_path" ]; then
      python studies/class_samples_t1.py "${t1[@]}" --weights "$nets/$name.caffemodel" \
          --out "$set_path" --grid "$figures/cifar10_${name}_fitted_q_T1.png"
    fi ;;
  buffer)
    # The persistent chains as they are, scored under the net they trained:
    # the finished run's final chains, or its newest checkpoint's (written
    # by `checkpoint SEED` first).
    seed=$2; run="$runs/sec5_seed$seed"
    if [ -f "$run/history.json" ]; then
      name="sec5_seed$seed"; chains="$run/chains.npz"
    else
      it=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint']['iter'])" \
           "$run/state.json")
      name="sec5_seed${seed}_iter$it"; chains="$run/chains_iter$it.npz"
    fi
    python studies/class_samples_t1.py --net cifar10_quick --chains-from "$chains" \
        --chains-per-class 100 --weights "$nets/$name.caffemodel" \
        --out "$samples/${name}_buffer.npz"
    python studies/class_samples_t1.py --net cifar10_quick \
        --grid-from "$samples/${name}_buffer.npz" --out "$figures/cifar10_${name}_buffer.png" ;;
  park)
    run="$runs/sec5_seed$2"; parked="$out/runs/sec5_seed$2"
    rm -rf "$parked.tmp" && mkdir -p "$out/runs"
    # the lock goes, and the chains `checkpoint` exported (made again from the
    # checkpoint on demand)
    cp -a "$run" "$parked.tmp" && rm -f "$parked.tmp/.lock" "$parked.tmp"/chains_iter*.npz
    rm -rf "$parked" && mv "$parked.tmp" "$parked" ;;
  checkpoint)
    python studies/sec5_checkpoint.py "$runs/sec5_seed$2" --name "sec5_seed$2" --nets "$nets" \
        --curves "$figures/cifar10_sec5_seed$2_iterN_curves.png" ;;
  qalone)
    if [ ! -f "$samples/fitted_q_alone.npz" ]; then
      python studies/class_samples_t1.py "${t1[@]}" --no-net --out "$samples/fitted_q_alone.npz"
    fi ;;
  report)
    sets=(--set "cifar10_dg_fitted_q_T1=$samples/dg_seed1_fitted_q_T1.npz")
    # Per seed: the finished run's sets, else those of its newest exported
    # checkpoint (sec5_seedS_iterN: a run of N iterations, see `checkpoint`).
    for seed in 1 2 3; do
      suffix=$( [ "$seed" = 1 ] && echo "" || echo "_seed$seed" )
      name=""
      if [ -f "$samples/sec5_seed${seed}_fitted_q_T1.npz" ]; then
        name="sec5_seed$seed"
      else
        for set_path in "$samples/sec5_seed${seed}"_iter*_fitted_q_T1.npz; do
          [ -f "$set_path" ] || continue
          candidate=$(basename "$set_path" _fitted_q_T1.npz)
          if [ -z "$name" ] || [ "${candidate##*_iter}" -gt "${name##*_iter}" ]; then
            name=$candidate
          fi
        done
      fi
      [ -n "$name" ] || continue
      sets+=(--set "cifar10_sec5_fitted_q_T1$suffix=$samples/${name}_fitted_q_T1.npz")
      if [ -f "$samples/${name}_buffer.npz" ]; then
        sets+=(--set "cifar10_sec5_buffer$suffix=$samples/${name}_buffer.npz")
      fi
    done
    python tools/sample_quality.py --judge-model prototxt/cifar10_quick_deploy.prototxt \
        --judge-weights "$nets/judge_dg_seed99.caffemodel" \
        --train-lmdb data/cifar10/cifar10_train_lmdb --test-lmdb data/cifar10/cifar10_test_lmdb \
        --scale 1 --mean-file data/cifar10/mean.binaryproto "${sets[@]}" \
        --q-alone "fitted q alone=$samples/fitted_q_alone.npz" \
        --out results/sample_quality_cifar10.json ;;
  *)
    echo "usage: $0 data | dg SEED | sec5 SEED [EPOCHS [START]] | samples NAME | buffer SEED |" \
         "qalone | report | park SEED | checkpoint SEED" >&2
    exit 2 ;;
esac
