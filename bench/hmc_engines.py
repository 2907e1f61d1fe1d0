#!/usr/bin/env python
"""Sampling engines on one machine, and the cost of fixed chain blocks.

LeNet ip2 unit 3 at its seeded fillers (the cost of a step does not depend on
the weights), --chains chains (default 64), the paper's LeNet schedule (eps
0.1, mass 0.01, 50 leapfrog steps) for --iters iterations (the paper's 100 by
default), through node.sample_node as tools/hmc_visualize.py runs it:

- one process (--workers 1),
- the project's pool: --workers W processes driven in lockstep
  (gencnn.sampling.parallel, engine="pool"; what --adapt runs), start-up
  included,
- Dask: a LocalCluster of W processes with one thread each, one shard per
  worker (gencnn.sampling.shards; what --workers W runs with a fixed step),
  cluster start-up, task shipping, shard files and merge included; and the
  same with the cluster's start-up
  excluded (a long-lived cluster, given by address),

each the wall time of the sample_node call, --repeats times, interleaved
(the machine's load changes: each line prints the load average). Dask's
engine overhead is its median wall time over the pool's, less 1. Then the blocks
(hmc.chain_blocks), in one process: the chains in blocks of 8 (the default),
16 and all of them at once (one Caffe batch: no block), and 3 chains in a
block of 8 (5 padding chains) against a block of 3.

    . ./env.sh && OPENBLAS_NUM_THREADS=1 python bench/hmc_engines.py [--iters 100]

Every engine is also checked to give the one process's chains bit for bit
(blocks of 8). Prints one line per run and a JSON object of the medians.
"""
import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import config  # noqa: E402

LENET = os.path.join(config.REPO_ROOT, "prototxt", "lenet_deploy.prototxt")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=64, help="chains (default %(default)s)")
    parser.add_argument("--iters", type=int, default=100,
                        help="HMC iterations of 50 leapfrog steps (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2,
                        help="worker processes (default %(default)s)")
    parser.add_argument("--part", choices=["all", "engines", "blocks"], default="all",
                        help="what to measure (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each configuration, interleaved; the medians are "
                        "compared (default %(default)s)")
    args = parser.parse_args()
    import caffe
    from gencnn.sampling import reference
    from gencnn.visualization import node as node_lib

    scratch = tempfile.mkdtemp(prefix="hmc_engines.")
    weights = os.path.join(scratch, "lenet.caffemodel")
    caffe.set_random_seed(0)
    caffe.Net(LENET, caffe.TEST).save(weights)
    q = reference.DiagonalGaussian(0.0, 1.0)
    schedule = dict(iters=args.iters, leapfrog_steps=50, step_size=0.1, mass=0.01, seed=1,
                    warn=len)

    def timed(chains=args.chains, **options):
        node = node_lib.open_node(LENET, weights, "ip2", [3], chains)
        start = time.time()
        out = node_lib.sample_node(node, q, **dict(schedule, **options)).out
        return time.time() - start, out

    results = {}
    reference_out = {}

    def run(name, repeat, **options):
        seconds, out = timed(**options)
        results.setdefault(name, []).append(round(seconds, 2))
        same = ""
        if options.get("chains", args.chains) == args.chains and \
                options.get("chain_block", 8) == 8:       # the same chains as the first
            reference_out.setdefault("out", out)
            same = "  same chains: %s" % all(
                np.array_equal(out[k], reference_out["out"][k])
                for k in ("samples", "chain_mean", "f", "accepted"))
        print("%d %-50s %8.2f s  load %.1f%s" % (repeat, name, seconds, os.getloadavg()[0],
                                                  same), flush=True)

    if args.part in ("all", "engines"):
        engines(run, args, scratch)
    if args.part in ("all", "blocks"):
        for repeat in range(args.repeats):
            for block in (8, 16, args.chains):
                run("one process, blocks of %d chains" % block, repeat, workers=1,
                    chain_block=block)
            run("3 chains in a block of 8 (5 padding)", repeat, chains=3, workers=1,
                chain_block=8)
            run("3 chains in a block of 3", repeat, chains=3, workers=1, chain_block=3)
    median = {name: float(np.median(times)) for name, times in results.items()}
    summary = {"median_s": median, "runs_s": results,
               "settings": dict(chains=args.chains, iters=args.iters, leapfrog_steps=50,
                                workers=args.workers, repeats=args.repeats,
                                cpus=os.cpu_count())}
    pool = median.get("pool, %d workers" % args.workers)
    for name, key in (("dask LocalCluster, %d workers, start-up included", "dask_overhead_vs_pool"),
                      ("dask, a running cluster given by address",
                       "dask_running_cluster_overhead_vs_pool")):
        name = name % args.workers if "%d" in name else name
        if pool and name in median:
            summary[key] = round(median[name] / pool - 1, 4)
    print(json.dumps(summary, indent=1))


def engines(run, args, scratch):
    """The engines' runs, interleaved."""
    from distributed import Client, LocalCluster
    env = {"OPENBLAS_NUM_THREADS": "1"}
    w = args.workers
    with LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                      dashboard_address=":0", env=env) as cluster, Client(cluster):
        # interleaved, so that a change of the machine's load hits every engine alike
        for repeat in range(args.repeats):
            run("one process", repeat, workers=1)
            run("pool, %d workers" % w, repeat, workers=w, engine="pool")
            run("dask LocalCluster, %d workers, start-up included" % w, repeat, workers=w,
                scheduler="local", shard_dir=os.path.join(scratch, "shards1"))
            run("dask, a running cluster given by address", repeat, workers=w,
                scheduler=cluster.scheduler_address, shard_dir=os.path.join(scratch, "shards2"))


if __name__ == "__main__":
    main()
