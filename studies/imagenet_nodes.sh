#!/usr/bin/env bash
# Intermediate nodes of SqueezeNet (the paper's Fig. 3): channels 0-7 of
# conv1, fire3, fire5 and fire9 at the centre of their maps, one chain each,
# at the recommended class-sample setting (--preset imagenet, T = 1e-3) and
# at the paper's T = 1; each grid is cropped to the node's receptive field.
# Without the preset's random shifts (--transforms none): a node at one
# position is itself tied to a place, and shifts of 16 px move the pattern
# out of a 7 px (conv1) or 27 px (fire3) receptive field.
#   bash studies/imagenet_nodes.sh [ITERS]      (default 100; ~15 min on 2 cores)
# -> results/figures/imagenet_nodes_<layer>_T<T>.png, summaries in scratch/imagenet_nodes/
set -euo pipefail
cd "$(dirname "$0")/.."
iters="${1:-100}"
model="${GENCNN_SHARED:-../shared}/models/squeezenet_v1.0"
for blob in conv1 fire3/concat fire5/concat fire9/concat; do
  for temperature in 0.001 1; do
    name="imagenet_nodes_${blob%%/*}_T${temperature}"
    python tools/hmc_visualize.py --model "$model/SqueezeNet_deploy.prototxt" \
      --weights "$model/squeezenet_v1.0_deepcompressed.caffemodel" --preset imagenet \
      --blob "$blob" --unit 0-7 --num-chains 1 --iters "$iters" --temperature "$temperature" --transforms none \
      --out "scratch/imagenet_nodes/$name"
    cp "scratch/imagenet_nodes/$name/grid.png" "results/figures/$name.png"
  done
done
