#!/usr/bin/env python
"""LeNet iteration time, GenerativeLossLayer (GG) vs SoftmaxWithLoss (DG).

Both nets come from gencnn/netgen.py and differ only in the loss. They read
the same LMDB: MNIST if data/mnist/mnist_train_lmdb exists, otherwise random
28x28 images with varied labels (speed does not depend on the pixels).
Prints `caffe time` forward+backward ms per iteration and the training time of
a short `caffe train` (first iteration to the end, from Caffe's log time
stamps, so start-up is excluded) for each, alternating DG/GG runs, and the
GG/DG ratios.
The paper's claim (section 4.1): GG costs the same as DG; goal ratio <= 1.03.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import caffe_utils, config, netgen, protocols  # noqa: E402
from gencnn.data.lmdb_io import write_lmdb  # noqa: E402


def caffe(args, cwd):
    env = dict(os.environ, GLOG_minloglevel="0", GLOG_logtostderr="1")
    start = time.time()
    out = subprocess.run([caffe_utils.tool_path("caffe")] + args, cwd=cwd, env=env, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True).stdout
    return out, time.time() - start


def training_seconds(log):
    """Seconds from the first iteration to the end of `caffe train`, from glog's
    time stamps: excludes start-up (loading the data, the embedded Python)."""
    stamps = re.findall(r"^I\d{4,8} (\d\d):(\d\d):(\d\d\.\d+) .*(?:Iteration 0,|Optimization Done)",
                        log, re.M)
    if len(stamps) < 2:
        raise RuntimeError("cannot find iteration time stamps in the caffe train log")
    (h0, m0, s0), (h1, m1, s1) = stamps[0], stamps[-1]
    return (int(h1) - int(h0)) * 3600 + (int(m1) - int(m0)) * 60 + float(s1) - float(s0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-iters", type=int, default=100,
                        help="iterations of `caffe time` per run (default %(default)s)")
    parser.add_argument("--train-iters", type=int, default=300,
                        help="iterations of each `caffe train` run (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating DG/GG repeats; the median is reported "
                             "(default %(default)s)")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="gencnn_bench_")
    mnist = os.path.join(config.data_dir(), "mnist", "mnist_train_lmdb")
    if os.path.isdir(mnist):
        source, what = mnist, "MNIST"
    else:
        rng = np.random.RandomState(0)
        source, what = os.path.join(work, "random_lmdb"), "random 28x28 images"
        write_lmdb(source, ((rng.randint(0, 256, (1, 28, 28)).astype(np.uint8), i % 10)
                            for i in range(1280)))
    nets = {}
    for loss in ("dg", "gg"):
        nets[loss] = os.path.join(work, "lenet_%s.prototxt" % loss)
        with open(nets[loss], "w") as f:
            f.write(str(netgen.train_test_net(netgen.LENET, loss, train_source=source,
                                              test_source=source)))
    lenet = protocols.LENET_PROTOCOL          # the paper's LeNet solver, no tests or snapshots
    timings = {"dg": [], "gg": []}
    walls = {"dg": [], "gg": []}
    for _ in range(args.repeats):
        for loss in ("dg", "gg"):
            out, _ = caffe(["time", "-model", nets[loss], "-iterations", str(args.time_iters)], work)
            ms = float(re.search(r"Average Forward-Backward: ([0-9.]+) ms", out).group(1))
            timings[loss].append(ms)
            solver = os.path.join(work, "solver_%s.prototxt" % loss)
            with open(solver, "w") as f:
                f.write(str(netgen.solver(
                    nets[loss], lenet.base_lr, args.train_iters, lenet.schedule,
                    weight_decay=lenet.fields["weight_decay"], display=1000,
                    snapshot_after_train=False, random_seed=1)))
            out, _ = caffe(["train", "-solver", solver], work)
            walls[loss].append(training_seconds(out))
    med = {k: float(np.median(v)) for k, v in timings.items()}
    medw = {k: float(np.median(v)) for k, v in walls.items()}
    print("data: %s; batch 64; %d repeats, medians" % (what, args.repeats))
    print("caffe time  forward-backward ms/iter: DG %.2f  GG %.2f  ratio GG/DG %.3f"
          % (med["dg"], med["gg"], med["gg"] / med["dg"]))
    print("caffe train %d iters s:               DG %.2f  GG %.2f  ratio GG/DG %.3f"
          % (args.train_iters, medw["dg"], medw["gg"], medw["gg"] / medw["dg"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
