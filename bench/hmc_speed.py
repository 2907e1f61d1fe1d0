#!/usr/bin/env python
"""HMC generative visualization speed against the machine's floor, CPU.

The floor of a leapfrog step is its FLOPs at the float32 GEMM rate numpy
reaches on this machine with the same number of threads:

- FLOPs, counted from the loaded net's layer shapes, up to the node's layer:
  2 x the multiply-adds of every Convolution, Deconvolution and InnerProduct
  (forward), and the same again for the gradient with respect to their
  inputs (backward to the data). Weight gradients are not counted (the
  sampler's weights are frozen and Caffe skips them: checked below), nor
  pooling, ReLU, LRN, bias additions, im2col or the sampler's own numpy.
- GEMM: C = A B, A and B float32 N x N (--gemm-size), in a fresh process
  with OPENBLAS_NUM_THREADS = the threads used, best of a few repeats.

ratio = measured time / floor time. Every run of chains below is in worker
processes (gencnn.sampling.parallel), so each configuration gets the
thread count it names whatever this process has: one process with 1 thread,
one process with all cores' threads, and one worker per core with 1 thread
each (what `hmc_visualize --workers` does). Wall times exclude the workers'
start-up (loading Python, Caffe and the net: printed separately).

LeNet ip2, 64 chains (--lenet-chains), the paper's schedule (section 4.2:
100 iterations x 50 leapfrog steps), and the cost of a step with the weight
gradients a net with force_backward computes (in this process, with its
OPENBLAS_NUM_THREADS). LeNet ip2, 1,000 chains with a full-covariance q
fitted to MNIST (reference.fit_gaussian), a few leapfrog steps timed and
extrapolated to 1,000, and the q's share of a step. SqueezeNet v1.0 (../shared/models/squeezenet_v1.0;
skipped if absent): pool_final (whole 227x227 input), seconds per
chain-step with all cores.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import caffe_utils, config, protocols  # noqa: E402
from gencnn.sampling import hmc, parallel  # noqa: E402

LENET = os.path.join(config.REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
SQUEEZENET = os.path.join(config.shared_dir(), "models", "squeezenet_v1.0")

GEMM = """
import sys, time, numpy as np
n = int(sys.argv[1])
a, b = [np.random.RandomState(i).standard_normal((n, n)).astype(np.float32) for i in (0, 1)]
a.dot(b)
best = float("inf")
for _ in range(int(sys.argv[2])):
    start = time.time()
    a.dot(b)
    best = min(best, time.time() - start)
print(2.0 * n ** 3 / best / 1e9)
"""


def gemm_gflops(threads, size, repeats):
    """float32 GEMM GFLOP/s of numpy in a fresh process with `threads` threads."""
    out = subprocess.check_output([sys.executable, "-c", GEMM, str(size), str(repeats)],
                                  env=parallel.worker_env(threads), universal_newlines=True)
    return float(out.split()[-1])


def leapfrog_flops(net, end_layer):
    """FLOPs per chain of one forward to `end_layer` and one backward from it
    to the input (see the module docstring for what is counted)."""
    macs = 0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type in ("Convolution", "Deconvolution", "InnerProduct"):
            weights = net.params[name][0].data.size
            if layer.type == "InnerProduct":
                macs += weights
            else:   # one weight per output position (conv) or input position (deconv)
                side = net.top_names[name][0] if layer.type == "Convolution" \
                    else net.bottom_names[name][0]
                macs += weights * int(np.prod(net.blobs[side].data.shape[2:]))
        if name == end_layer:
            break
    return 2 * (2 * macs)          # (forward + backward to the data) x 2 FLOPs per MAC


def sample_chains(spec, workers, threads, iters):
    """(start-up s, wall s of `iters` HMC iterations) for the chains of
    `spec` in `workers` processes with `threads` each."""
    start = time.time()
    with parallel.WorkerChains(spec, workers, threads) as chains:
        ready = time.time()
        hmc.run_chains(chains, spec.sampler_options["step_size"], iters,
                       warn=lambda message: None)
        return ready - start, time.time() - ready


def score_time(net, score, shape, repeats):
    """Median wall seconds of one forward + backward for all chains, here."""
    x = np.random.RandomState(0).standard_normal(shape) * 0.3
    score(x)                                      # warm-up (allocations)
    times = []
    for _ in range(repeats):
        start = time.time()
        score(x)
        times.append(time.time() - start)
    return float(np.median(times))


def full_q_line(args, weights, gemm, cores):
    """LeNet ip2 with a full-covariance q fitted to MNIST and the matching
    mass matrix (precondition): --q-chains chains in one worker per core,
    --q-steps leapfrog steps timed and extrapolated to 1,000; the q's share
    of a step (its two D x D products: Sigma phi for the drift, Sigma^-1
    (x - mu) for the gradient) timed here on one worker's block of chains."""
    from gencnn.data.lmdb_io import lmdb_images
    from gencnn.sampling import reference
    if not os.path.isdir(args.mnist_lmdb):
        print("full-covariance q skipped: %s not found" % args.mnist_lmdb)
        return
    images, _ = lmdb_images(args.mnist_lmdb, protocols.MNIST_SCALE, 10000, (1, 28, 28))
    q = reference.fit_q(images, "full")
    chains = args.q_chains
    net = caffe_utils.load_net(LENET, weights, 1)
    net_flops = leapfrog_flops(net, "ip2")
    q_flops = 2 * 2 * q.dim ** 2             # two D x D matrix-vector products per chain
    options = dict(step_size=0.01, leapfrog_steps=args.q_steps, mass=1.0,
                   mass_convention="paper", seed=0, reference=q, precondition=True)
    spec = parallel.ChainSpec(caffe_utils.read_net(LENET), weights, "data", (1, 28, 28),
                              "ip2", np.arange(chains) % 10, None, options)
    _, wall = sample_chains(spec, cores, 1, 1)
    step = wall / args.q_steps
    floor = chains * (net_flops + q_flops) / (gemm[cores] * 1e9)
    block = -(-chains // cores)                                    # one worker's chains
    rng = np.random.RandomState(0)
    phi, x = rng.standard_normal((2, block, 1, 28, 28))
    times = []
    for _ in range(args.repeats):
        start = time.time()
        q.cov_power(phi, 1.0)
        q.grad(x)
        times.append(time.time() - start)
    q_time = float(np.median(times))
    print("LeNet ip2, full-covariance q fitted to %s (D = %d), preconditioned, %d chains in "
          "%d processes x 1 thread:" % (args.mnist_lmdb, q.dim, chains, cores))
    print("  %.3f s per leapfrog step (%d timed) -> %.0f s for 1,000 steps (extrapolated); "
          "floor %.3f s (net %.2f + q %.2f MFLOP per chain-step), ratio %.1fx"
          % (step, args.q_steps, 1000 * step, floor, net_flops / 1e6, q_flops / 1e6,
             step / floor))
    print("  the q's two products for one worker's %d chains (float64, here, "
          "OPENBLAS_NUM_THREADS=%s): %.3f s = %.0f %% of a step"
          % (block, os.environ.get("OPENBLAS_NUM_THREADS", "unset"), q_time,
             100 * q_time / step))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lenet-weights",
                        default=os.path.join(config.REPO_ROOT, "results", "hmc",
                                             "lenet_dg_iter_3000.caffemodel"),
                        help="LeNet weights; a copy of the prototxt's fillers if missing "
                             "(the speed does not depend on them) (default %(default)s)")
    parser.add_argument("--lenet-chains", type=int, default=64,
                        help="LeNet chains (default %(default)s)")
    parser.add_argument("--lenet-iters", type=int, default=100,
                        help="HMC iterations (paper: 100) (default %(default)s)")
    parser.add_argument("--lenet-steps", type=int, default=50,
                        help="leapfrog steps per iteration (paper: 50) (default %(default)s)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(),
                        help="threads or workers for 'all cores' (default: this machine's, "
                             "%(default)s)")
    parser.add_argument("--gemm-size", type=int, default=2048,
                        help="N of the N x N float32 GEMM (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of a GEMM, a frozen/free step, a SqueezeNet "
                             "step (default %(default)s)")
    parser.add_argument("--mnist-lmdb",
                        default=os.path.join(config.data_dir(), "mnist", "mnist_train_lmdb"),
                        help="training images the full-covariance q is fitted to (its first "
                             "10,000); the line is skipped without them (default %(default)s)")
    parser.add_argument("--q-chains", type=int, default=1000,
                        help="chains of the full-covariance q line (default %(default)s)")
    parser.add_argument("--q-steps", type=int, default=20,
                        help="leapfrog steps timed for it, extrapolated to 1,000 "
                             "(default %(default)s)")
    parser.add_argument("--squeezenet-chains", type=int, default=None,
                        help="SqueezeNet chains (default: --cores, one per worker)")
    args = parser.parse_args(argv)
    cores = max(1, args.cores)
    print("%d cores, load average %s (other jobs slow every number here)"
          % (os.cpu_count(), " ".join("%.1f" % v for v in os.getloadavg())))

    gemm = {threads: gemm_gflops(threads, args.gemm_size, args.repeats)
            for threads in sorted({1, cores})}
    for threads, rate in gemm.items():
        print("float32 GEMM %d^2, numpy, %d thread(s): %.1f GFLOP/s"
              % (args.gemm_size, threads, rate))

    weights = args.lenet_weights
    if not os.path.isfile(weights):
        weights = os.path.join(os.environ.get("TMPDIR", "/tmp"), "hmc_speed_lenet.caffemodel")
        caffe_utils.load_net(LENET, None, 1, freeze_weights=False).save(weights)
        print("LeNet: %s not found, the prototxt's random fillers instead" % args.lenet_weights)
    chains, iters, steps = args.lenet_chains, args.lenet_iters, args.lenet_steps
    net = caffe_utils.load_net(LENET, weights, chains)
    per_chain = leapfrog_flops(net, "ip2")
    step_flops = per_chain * chains
    print("LeNet ip2: %.2f MFLOP per chain-step (forward + backward to the data), "
          "%.3f GFLOP per %d-chain step" % (per_chain / 1e6, step_flops / 1e9, chains))
    options = dict(step_size=0.01, leapfrog_steps=steps, mass=1.0, mass_convention="paper",
                   seed=0, reference=hmc.DiagonalGaussian(0.1, 0.3))
    spec = parallel.ChainSpec(caffe_utils.read_net(LENET), weights, "data", (1, 28, 28),
                              "ip2", np.arange(chains) % 10, None, options)
    print("LeNet ip2, %d chains, %d iterations x %d leapfrog steps:" % (chains, iters, steps))
    print("  %-28s %8s %8s %10s %9s %7s" % ("", "start s", "wall s", "ms/step", "floor ms",
                                           "ratio"))
    for workers, threads in [(1, 1), (1, cores), (cores, 1)]:
        if (workers, threads) == (1, cores) and cores == 1:
            continue
        startup, wall = sample_chains(spec, workers, threads, iters)
        step = wall / (iters * steps)
        floor = step_flops / (gemm[workers * threads] * 1e9)
        print("  %-28s %8.1f %8.1f %10.2f %9.2f %6.1fx"
              % ("%d process(es) x %d thread(s)" % (workers, threads), startup, wall,
                 1e3 * step, 1e3 * floor, step / floor))

    print("LeNet ip2, %d chains, one forward + backward in this process "
          "(OPENBLAS_NUM_THREADS=%s), median of %d:"
          % (chains, os.environ.get("OPENBLAS_NUM_THREADS", "unset"), args.repeats))
    for freeze in (True, False):
        net = caffe_utils.load_net(LENET, weights, chains, freeze_weights=freeze)
        seconds = score_time(net, hmc.NodeScore(net, "ip2", np.arange(chains) % 10),
                             (chains, 1, 28, 28), args.repeats)
        weight_diff = sum(float(np.abs(b.diff).sum()) for blobs in net.params.values()
                          for b in blobs)
        print("  weights %-36s %6.2f ms per step; |weight gradients| summed: %.3g"
              % ("frozen (the sampler's default)" if freeze else
                 "free (force_backward, as a prototxt)", 1e3 * seconds, weight_diff))

    full_q_line(args, weights, gemm, cores)

    squeeze_weights = os.path.join(SQUEEZENET, "squeezenet_v1.0_deepcompressed.caffemodel")
    if not os.path.isfile(squeeze_weights):
        print("SqueezeNet skipped: %s not found" % squeeze_weights)
        return 0
    net_param = caffe_utils.read_net(os.path.join(SQUEEZENET, "SqueezeNet_deploy.prototxt"))
    chains = args.squeezenet_chains or cores
    net = caffe_utils.load_net(net_param, squeeze_weights, 1)
    per_chain = leapfrog_flops(net, "pool_final")
    del net
    print("SqueezeNet v1.0 pool_final (3x227x227): %.2f GFLOP per chain-step; %d chains, "
          "%d leapfrog steps:" % (per_chain / 1e9, chains, args.repeats))
    spec = parallel.ChainSpec(net_param, squeeze_weights, "data", (3, 227, 227), "pool_final",
                              np.full(chains, 9), None,
                              dict(options, step_size=1e-3, leapfrog_steps=args.repeats,
                                   reference=hmc.DiagonalGaussian()))
    for workers, threads in [(cores, 1), (1, cores)]:
        _, wall = sample_chains(spec, workers, threads, 1)
        per_step = wall / (args.repeats * chains)
        floor = per_chain / (gemm[workers * threads] * 1e9)
        print("  %d process(es) x %d thread(s): %.3f s per chain-step, floor %.4f s, "
              "ratio %.1fx" % (workers, threads, per_step, floor, per_step / floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
