#!/usr/bin/env python
"""One iteration of section-5 learning (tools/generative_learning.py) against
the machine's floor, CPU, one thread: cifar10_quick on CIFAR-10 by default
(--net lenet for LeNet on MNIST), the net's default configuration (M
synthesized chains moved by K HMC transitions of L leapfrog steps, then the
solver step on the N observed + M synthesized images).

The floor is the iteration's FLOPs at the float32 GEMM rate numpy reaches
here with one thread (bench/hmc_speed.py's GEMM and FLOP counts):

- the sampler: M x (1 + K L) gradients df/dx (one at the drawn states, one
  per leapfrog step), each a forward and a backward to the data: 4 x the
  multiply-adds of every Convolution and InnerProduct per image;
- the solver step: N + M images forward, backward to the data and the
  weight gradients: 6 x the multiply-adds per image.

Not counted: pooling, ReLU, im2col, the Data layer, q's products (their
measured share is printed: with the fitted full-covariance q every leapfrog
step multiplies the M chains by a D x D matrix, D = 3,072 for CIFAR-10) and
the test passes (the run tests once, at its end, outside the timed rows).
The run's own per-iteration seconds come from its iterations.tsv, its first
--skip iterations left out.

  OPENBLAS_NUM_THREADS=1 python bench/sec5_speed.py --iters 12
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hmc_speed  # noqa: E402  (bench/hmc_speed.py: GEMM rate, FLOP count; sets sys.path)
import numpy as np  # noqa: E402

from gencnn import caffe_utils, config, generative_learning, netgen  # noqa: E402


def iteration_flops(net_name, opts):
    """(sampler FLOPs, solver FLOPs) of one iteration."""
    entry = netgen.NETS[net_name]
    deploy = os.path.join(config.REPO_ROOT, "prototxt", "%s_deploy.prototxt" % net_name)
    net = caffe_utils.load_net(deploy, None, 1)
    per_gradient = hmc_speed.leapfrog_flops(net, entry["scores"])     # 4 x MACs
    m, k, steps = opts["synthesized"], opts["mcmc_iters"], opts["leapfrog_steps"]
    n = entry["data_args"]["train_batch"]
    return m * (1 + k * steps) * per_gradient, (n + m) * 1.5 * per_gradient


def q_seconds_per_iteration(net_name, opts, train_lmdb):
    """Measured seconds of q's products in one iteration: per gradient the
    preconditioned leapfrog multiplies the M chains by Sigma (the drift) and
    by Sigma^-1 (q's gradient), one dense product each (EigenGaussian keeps
    both matrices)."""
    transform = generative_learning.InputTransform.of_net(netgen.NETS[net_name])
    shape = netgen.NETS[net_name]["input_shape"][1:]
    q = generative_learning.fit_q(train_lmdb, 2000, shape, bool(opts["fitted_q"]),
                                  opts["shrinkage"], transform)
    m = opts["synthesized"]
    x = np.random.RandomState(0).standard_normal((m,) + shape)
    best = float("inf")
    for _ in range(3):
        start = time.time()
        q.cov_power(q.cov_power(x, 1.0), -1.0)
        best = min(best, time.time() - start)
    return best * (1 + opts["mcmc_iters"] * opts["leapfrog_steps"])


def run_seconds(net_name, iters, skip):
    """Median seconds per iteration (and of its sampling) of a real run."""
    out = tempfile.mkdtemp(prefix="sec5_speed_")
    entry = netgen.NETS[net_name]
    from gencnn.data.lmdb_io import lmdb_count
    per_epoch = lmdb_count(entry["data_args"]["train_source"]) / float(
        entry["data_args"]["train_batch"])
    try:
        subprocess.run([sys.executable, "tools/generative_learning.py", "--net", net_name,
                        "--out", os.path.join(out, "run"), "--epochs",
                        "%.6f" % ((iters + skip) / per_epoch), "--no-progress",
                        "--checkpoint-every", "100000", "--reference-count", "2000"],
                       cwd=config.REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
        rows = np.loadtxt(os.path.join(out, "run", "iterations.tsv"), ndmin=2)[skip:]
        return float(np.median(rows[:, 11])), float(np.median(rows[:, 10])), len(rows)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--net", default="cifar10_quick", choices=generative_learning.NETS,
                        help="(default %(default)s)")
    parser.add_argument("--iters", type=int, default=12, help="timed iterations (default 12)")
    parser.add_argument("--skip", type=int, default=2, help="untimed first iterations")
    parser.add_argument("--gemm-size", type=int, default=1024)
    parser.add_argument("--out", help="also write the numbers to this JSON")
    args = parser.parse_args(argv)
    opts = dict(generative_learning.DEFAULTS, **generative_learning.NET_DEFAULTS[args.net])
    gemm = hmc_speed.gemm_gflops(1, args.gemm_size, 5)
    sampler_flops, solver_flops = iteration_flops(args.net, opts)
    floor = (sampler_flops + solver_flops) / (gemm * 1e9)
    train_lmdb = netgen.NETS[args.net]["data_args"]["train_source"]
    q_s = q_seconds_per_iteration(args.net, opts, train_lmdb)
    total, sampling, timed = run_seconds(args.net, args.iters, args.skip)
    result = {
        "net": args.net, "synthesized_M": opts["synthesized"], "transitions_K": opts["mcmc_iters"],
        "leapfrog_L": opts["leapfrog_steps"], "fitted_q": opts["fitted_q"],
        "gemm_gflops_1_thread": gemm, "sampler_gflop": sampler_flops / 1e9,
        "solver_gflop": solver_flops / 1e9, "floor_s": floor,
        "measured_s_per_iter": total, "measured_sampling_s": sampling, "timed_iters": timed,
        "ratio_to_floor": total / floor, "q_s_per_iter": q_s, "q_share": q_s / total,
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    print("%s: %.3f s per section-5 iteration (sampling %.3f s), floor %.3f s "
          "(%.1f GFLOP at %.1f GFLOP/s) -> %.2fx the floor; q's products %.3f s (%.0f %%)"
          % (args.net, total, sampling, floor, (sampler_flops + solver_flops) / 1e9, gemm,
             total / floor, q_s, 100 * q_s / total))
    if args.out:
        from gencnn.files import write_atomic
        write_atomic(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
