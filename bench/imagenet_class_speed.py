#!/usr/bin/env python
"""Seconds per ImageNet class for 4 samples at the recommended setting
(gencnn/visualization/class_samples.py: unadjusted Langevin, random shifts,
the blurred-noise q; 150 forward + backward passes per chain), and its
ratio to the GEMM floor measured in the same run.

The floor is bench/hmc_speed.py's: the FLOPs of one forward to the class
blob and one backward to the data, counted from the net's layer shapes,
at numpy's float32 GEMM rate with the same cores; here per class:
4 chains x 150 steps x FLOPs per chain-step / (GEMM rate x cores). The
measured run is `--steps` steps of 4 chains of one class in `--workers`
worker processes (one BLAS thread each), extrapolated to 150; start-up
(loading the net in each worker) is printed apart.

    OPENBLAS_NUM_THREADS=1 python bench/imagenet_class_speed.py [--steps 20]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from hmc_speed import SQUEEZENET, gemm_gflops, leapfrog_flops  # noqa: E402
from gencnn import caffe_utils  # noqa: E402
from gencnn.visualization import class_samples  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20,
                        help="steps timed (default %%(default)s), extrapolated to %d"
                             % class_samples.STEPS)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes = cores used (default %(default)s)")
    parser.add_argument("--gemm-size", type=int, default=2048)
    args = parser.parse_args(argv)
    model = os.path.join(SQUEEZENET, "SqueezeNet_deploy.prototxt")
    weights = os.path.join(SQUEEZENET, "squeezenet_v1.0_deepcompressed.caffemodel")
    if not os.path.isfile(weights):
        print("skipped: %s not found" % weights)
        return 0
    net = caffe_utils.load_net(model, weights, 1)
    per_chain = leapfrog_flops(net, "pool_final")
    del net
    gemm = gemm_gflops(1, args.gemm_size, 3)
    chains = class_samples.CHAINS_PER_CLASS
    setting = class_samples.SETTINGS[class_samples.RECOMMENDED]
    start = time.time()
    result, _ = class_samples.sample_set(model, weights, "pool_final", setting, classes=(9,),
                                         chains=chains, steps=args.steps,
                                         workers=args.workers)
    total = time.time() - start
    per_step = result.wall / args.steps
    per_class = per_step * class_samples.STEPS
    floor = chains * class_samples.STEPS * per_chain / (gemm * 1e9 * args.workers)
    print("SqueezeNet pool_final, %d chains of one class, %d workers x 1 thread: "
          "%.2f GFLOP per chain-step, GEMM %.1f GFLOP/s per core" % (
              chains, args.workers, per_chain / 1e9, gemm))
    print("  %d steps in %.1f s (+ %.1f s start-up): %.3f s per step of the 4 chains"
          % (args.steps, result.wall, total - result.wall, per_step))
    print("  per class (4 samples, %d steps): %.1f s; floor %.1f s; ratio %.2fx"
          % (class_samples.STEPS, per_class, floor, per_class / floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
