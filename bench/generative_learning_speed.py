#!/usr/bin/env python
"""Cost of one iteration of generative learning (tools/generative_learning.py)
against one DG iteration (solvers/lenet_dg.prototxt, SoftmaxWithLoss), LeNet,
CPU, measured alternately in fresh processes (--repeats times each) under the
same load; prints and writes the medians and their ratio.

  OPENBLAS_NUM_THREADS=1 python bench/generative_learning_speed.py \\
      --out results/bench/generative_learning_speed.json -- --synthesized 32 --mcmc-iters 10

Everything after `--` is passed to tools/generative_learning.py (the
configuration to time). Each timed run skips its first iteration.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DG_SNIPPET = r"""
import os, sys, time
os.environ["GLOG_minloglevel"] = "2"
import caffe
caffe.set_mode_cpu()
solver = caffe.get_solver(sys.argv[1])
solver.step(1)
start = time.time()
solver.step(int(sys.argv[2]))
print((time.time() - start) / int(sys.argv[2]))
"""


def dg_s_per_iter(iters):
    proc = subprocess.run([sys.executable, "-c", DG_SNIPPET, "solvers/lenet_dg.prototxt",
                           str(iters)], cwd=REPO, check=True, stdout=subprocess.PIPE,
                          universal_newlines=True)
    return float(proc.stdout.strip().splitlines()[-1])


def generative_s_per_iter(iters, extra):
    out = tempfile.mkdtemp(prefix="gl_speed_")
    try:
        epochs = (iters + 1) / 937.5
        subprocess.run([sys.executable, "tools/generative_learning.py", "--out",
                        os.path.join(out, "run"), "--epochs", "%.6f" % epochs, "--no-progress",
                        "--checkpoint-every", "100000"] + extra,
                       cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        rows = [line.split("\t") for line in open(os.path.join(out, "run", "iterations.tsv"))]
        times = [float(row[11]) for row in rows[1:]]
        return sum(times) / len(times)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=40, help="timed iterations per run")
    parser.add_argument("--dg-iters", type=int, default=300, help="timed DG iterations per run")
    parser.add_argument("--out", help="JSON to write")
    args = parser.parse_args(argv)
    dg, gen = [], []
    for r in range(args.repeats):
        dg.append(dg_s_per_iter(args.dg_iters))
        gen.append(generative_s_per_iter(args.iters, extra))
        print("repeat %d: DG %.4f s/it, generative %.4f s/it" % (r + 1, dg[-1], gen[-1]),
              flush=True)
    median = lambda v: sorted(v)[len(v) // 2]  # noqa: E731
    result = {"dg_s_per_iter": median(dg), "generative_s_per_iter": median(gen),
              "ratio": median(gen) / median(dg), "dg_runs": dg, "generative_runs": gen,
              "generative_args": extra, "repeats": args.repeats,
              "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    print(json.dumps(result, indent=1))
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
