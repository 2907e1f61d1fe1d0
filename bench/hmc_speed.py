#!/usr/bin/env python
"""HMC generative visualization speed (gencnn/visualization/hmc.py), CPU.

LeNet ip2 with the paper's schedule (section 4.2: 100 iterations x 50
leapfrog steps): seconds per sample with 1 chain and with 64 chains sharing
the net (the paper: 0.4 min per sample on a GTX Titan; goal here: 64 chains
in <= 5 min on 2 CPU cores). Also the cost of a leapfrog step with the
weight gradients Caffe would compute if the weights were not frozen.

SqueezeNet v1.0 (../shared/models/squeezenet_v1.0): seconds per leapfrog
step (one forward + backward for all chains) at a few chain counts, for the
class node pool_final (whole 227x227 input) and for a convolutional node
sampled on its receptive field only (input_crop).

Timings are wall-clock; set OPENBLAS_NUM_THREADS to fix the thread count.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import caffe_utils, config  # noqa: E402
from gencnn.visualization import hmc, receptive_field  # noqa: E402

LENET = os.path.join(config.REPO_ROOT, "prototxt", "lenet_deploy.prototxt")


def lenet_run(weights, chains, iters, steps, freeze=True):
    """Wall seconds of `iters` HMC iterations of `steps` leapfrog steps."""
    net = hmc.load_net(LENET, weights, chains, freeze_weights=freeze)
    score = hmc.NodeScore(net, "ip2", np.arange(chains) % 10)
    sampler = hmc.HMCSampler(score, step_size=0.1, leapfrog_steps=steps, mass=0.01,
                             mass_convention="paper", seed=0, warn=lambda m: None)
    x0 = sampler.initial_state((chains, 1, 28, 28))
    start = time.time()
    out = sampler.sample(x0, iters)
    return time.time() - start, out


def step_time(net, score, shape, repeats):
    """Median wall seconds of one forward + backward for all chains."""
    x = np.random.RandomState(0).standard_normal(shape) * 50
    score(x)                                      # warm-up (allocations)
    times = []
    for _ in range(repeats):
        start = time.time()
        score(x)
        times.append(time.time() - start)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lenet-weights",
                        default=os.path.join(config.REPO_ROOT, "results", "hmc",
                                             "lenet_dg_iter_3000.caffemodel"),
                        help="LeNet weights; the prototxt's fillers if missing "
                             "(the speed does not depend on them) (default %(default)s)")
    parser.add_argument("--lenet-iters", type=int, default=100,
                        help="HMC iterations (paper: 100) (default %(default)s)")
    parser.add_argument("--lenet-steps", type=int, default=50,
                        help="leapfrog steps per iteration (paper: 50) (default %(default)s)")
    parser.add_argument("--squeezenet-chains", default="1,4,16",
                        help="chain counts for SqueezeNet (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed SqueezeNet steps per setting (default %(default)s)")
    args = parser.parse_args(argv)
    weights = args.lenet_weights if os.path.isfile(args.lenet_weights) else None
    print("OPENBLAS_NUM_THREADS=%s" % os.environ.get("OPENBLAS_NUM_THREADS", "(unset)"))

    print("LeNet ip2, %d iterations x %d leapfrog steps (%s weights)"
          % (args.lenet_iters, args.lenet_steps, "trained" if weights else "random"))
    for chains in (1, 64):
        wall, out = lenet_run(weights, chains, args.lenet_iters, args.lenet_steps)
        steps = args.lenet_iters * args.lenet_steps
        print("  %2d chain(s): %7.1f s total, %6.2f s per sample, %5.2f ms per leapfrog "
              "step (all chains)" % (chains, wall, wall / chains, 1e3 * wall / steps))
    short = 4
    for freeze in (True, False):
        wall, _ = lenet_run(weights, 64, short, args.lenet_steps, freeze)
        print("  64 chains, weights %-6s: %5.2f ms per leapfrog step (%d iterations)"
              % ("frozen" if freeze else "free", 1e3 * wall / (short * args.lenet_steps),
                 short))

    model_dir = os.path.join(config.shared_dir(), "models", "squeezenet_v1.0")
    model = os.path.join(model_dir, "SqueezeNet_deploy.prototxt")
    squeeze_weights = os.path.join(model_dir, "squeezenet_v1.0_deepcompressed.caffemodel")
    if not os.path.isfile(squeeze_weights):
        print("SqueezeNet skipped: %s not found" % squeeze_weights)
        return 0
    net_param = caffe_utils.read_net(model)
    shape = (3, 227, 227)
    conv_blob, conv_position = "fire3/concat", (27, 27)
    (y0, y1, x0, x1), small_position = receptive_field.input_crop(net_param, conv_blob, conv_position,
                                                      shape)
    print("SqueezeNet v1.0, seconds per leapfrog step (forward + backward, all chains)")
    print("  chains  pool_final (3x227x227)  %s centre (3x%dx%d crop)"
          % (conv_blob, y1 - y0, x1 - x0))
    for chains in [int(c) for c in args.squeezenet_chains.split(",")]:
        net = hmc.load_net(net_param, squeeze_weights, chains)
        whole = step_time(net, hmc.NodeScore(net, "pool_final", 9), (chains,) + shape,
                          args.repeats)
        del net
        net = hmc.load_net(hmc.truncate_net_param(net_param, conv_blob), squeeze_weights,
                           chains)
        net.blobs["data"].reshape(chains, 3, y1 - y0, x1 - x0)
        net.reshape()
        crop = step_time(net, hmc.NodeScore(net, conv_blob, 7, small_position),
                         (chains, 3, y1 - y0, x1 - x0), args.repeats)
        del net
        print("  %6d  %8.3f (%.3f per chain)   %8.4f (%.4f per chain)"
              % (chains, whole, whole / chains, crop, crop / chains))
    return 0


if __name__ == "__main__":
    sys.exit(main())
