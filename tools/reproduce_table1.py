#!/usr/bin/env python
"""Reproduce Table 1 of the paper: LeNet on MNIST by DG, GG and GG+DG.

  python tools/reproduce_table1.py --seeds 1,2,3

Runs tools/two_stage.py for each approach and seed (--jobs side by side, one
OpenBLAS thread each), resuming any run that was interrupted, then writes
results/table1.json, results/table1.md, results/table1_curves.png and the
per-run histories and logs under results/mnist_table1/. Needs the MNIST LMDBs
(python tools/get_mnist.py). On 2 CPU cores one 25-epoch run takes about
20-25 minutes; 3 seeds take about 1.5-2 hours with --jobs 2.
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli, config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side (default %(default)s)")
    parser.add_argument("--work", default=os.path.join(config.REPO_ROOT, "results", "runs", "table1"),
                        help="where the runs (snapshots, per-iteration logs) live "
                             "(default %(default)s; git-ignored)")
    parser.add_argument("--results", default=os.path.join(config.REPO_ROOT, "results"),
                        help="where the summaries go (default %(default)s)")
    parser.add_argument("--report-only", action="store_true",
                        help="write the summaries from the finished runs; train nothing")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise cli.UserError("--seeds must be integers, got %r" % args.seeds)
    if not seeds or args.jobs < 1:
        raise cli.UserError("need at least one seed and --jobs >= 1")
    train_lmdb = os.path.join(config.REPO_ROOT, "data", "mnist", "mnist_train_lmdb")
    if not args.report_only and not os.path.isdir(train_lmdb):
        raise cli.UserError("%s missing: run python tools/get_mnist.py first" % train_lmdb)
    from gencnn.table1 import Table1
    table = Table1(seeds, args.work, jobs=args.jobs)
    if not args.report_only:
        try:
            table.run()
        except RuntimeError as err:
            raise cli.UserError(str(err))
    result = table.report(args.results)
    print(open(os.path.join(args.results, "table1.md")).read())
    return 0 if all(v is not None for v in result["DG"] + result["GG"] + result["GG+DG"]) else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))
