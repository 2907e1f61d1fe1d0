#!/usr/bin/env python
"""Merge shards of one HMC run into one samples.npz: the samples.npz of
`tools/hmc_visualize.py --chain-offset K` runs (e.g. the tasks of a Slurm
array job) or the chains_FIRST-LAST.npz files of a `--scheduler` run.

    python tools/hmc_merge.py shards/*/samples.npz --out merged/samples.npz

A shard may be given as its file or as the folder holding its samples.npz.
The shards must be of one run: the same seed, net (prototxt and weights), q
and settings (sampler, step size, mass, schedule, --chain-block, ...), and
their chain ids must follow each other with no gap or overlap; otherwise
nothing is written and one line says which shards differ and in what. The
merged file holds the chains in chain-id order: the same arrays, bit for
bit, as one run over all of them (snapshots: of the first shard's first
chain).
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards", nargs="+",
                        help="samples.npz files of the shards, or folders holding one")
    parser.add_argument("--out", required=True,
                        help="the merged samples.npz to write (required)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    from gencnn.sampling import shards
    paths = [os.path.join(p, "samples.npz") if os.path.isdir(p) else p for p in args.shards]
    for path in paths:
        if not os.path.isfile(path):
            raise cli.UserError("shard not found: %s" % path)
    cli.check_writable(args.out, folder=False)
    arrays, meta = shards.merge(paths)
    out = shards.as_out(arrays, meta)
    # (float32 states, as hmc_visualize writes them)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    shards.save(args.out, out, arrays["y"], meta, dtype=np.float32)
    print("merged chains %d-%d from %d shards -> %s"
          % (meta["first_chain"], meta["first_chain"] + meta["num_chains"] - 1, len(paths),
             args.out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
