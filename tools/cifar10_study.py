#!/usr/bin/env python
"""CIFAR-10: DG, GG and GG+DG with cifar10_quick, several seeds, then a report.

Runs, one after the other, for each seed:
    DG      caffe train -solver solvers/cifar10_quick_dg.prototxt
    GG      caffe train -solver solvers/cifar10_quick_gg.prototxt
    GG+DG   caffe train -solver solvers/cifar10_quick_gg_dg.prototxt
            -weights <GG's snapshot at the switch, iteration 2,250 = epoch 4.5>
(seed and snapshot prefix overridden in a copy of each solver), then writes
results/cifar10.json, results/cifar10.md and results/cifar10_curves.png.
Resumable: finished runs are skipped, interrupted ones resume from their
last snapshot. Needs the LMDBs of tools/cifar10_data.py under data/cifar10.

Example (one core, about an hour):
    OPENBLAS_NUM_THREADS=1 nohup python tools/cifar10_study.py --seeds 1 2 \\
        > results/cifar10/study.out 2>&1 &
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import netgen, study
from gencnn.config import REPO_ROOT

SOLVERS = {"dg": "solvers/cifar10_quick_dg.prototxt",
           "gg": "solvers/cifar10_quick_gg.prototxt",
           "gg_dg": "solvers/cifar10_quick_gg_dg.prototxt"}
DATA = ("data/cifar10/cifar10_train_lmdb", "data/cifar10/cifar10_test_lmdb",
        "data/cifar10/mean.binaryproto")


def protocol_text():
    e = netgen.CIFAR10_EPOCH_ITERS
    return (
        "Protocol: Caffe's cifar10_quick net and solver (batch 100, base_lr 0.001, "
        "momentum 0.9, weight decay 0.004, lr x0.1 for the last fifth) for %d epochs "
        "(%d iterations) instead of cifar10_quick's 10, to fit about an hour of one CPU "
        "core. GG+DG follows the paper's ImageNet schedule scaled: GG until 45/70 of the "
        "epochs (iteration %d, epoch %g), then DG from those weights at base_lr x0.3 = "
        "0.0003 for the remaining %d iterations (its step counter restarts, so it has no "
        "decay). Seeds change the weight initialization only (the training LMDB order is "
        "fixed). Data: the JPEG re-encoding of CIFAR-10 in ../shared/data/cifar10 "
        "(see its PROVENANCE), mean image subtracted, no augmentation."
        % (netgen.CIFAR10_EPOCHS, netgen.CIFAR10_MAX_ITER, netgen.CIFAR10_SWITCH_ITER,
           netgen.CIFAR10_SWITCH_ITER / float(e),
           netgen.CIFAR10_MAX_ITER - netgen.CIFAR10_SWITCH_ITER))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2],
                        help="solver random_seed values (default: %(default)s)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "cifar10"),
                        help="run folder: per-run JSON, logs, snapshots (default: %(default)s)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing; re-parse the finished runs' logs and "
                             "rewrite the report")
    args = parser.parse_args(argv)
    results_dir = os.path.dirname(os.path.abspath(args.out))
    command = "python tools/cifar10_study.py --seeds %s" % " ".join(map(str, args.seeds))
    meta = {"title": "CIFAR-10: DG vs GG vs GG+DG (cifar10_quick)", "command": command,
            "net": "cifar10_quick", "epochs": netgen.CIFAR10_EPOCHS, "batch": 100,
            "max_iter": netgen.CIFAR10_MAX_ITER, "switch_iter": netgen.CIFAR10_SWITCH_ITER,
            "switch_epoch": netgen.CIFAR10_SWITCH_ITER / float(netgen.CIFAR10_EPOCH_ITERS),
            "stage2_base_lr": 0.0003, "solvers": SOLVERS, "test_images": "10,000",
            "protocol": protocol_text()}
    try:
        if not args.report_only:
            missing = [p for p in DATA if not os.path.exists(os.path.join(REPO_ROOT, p))]
            if missing:
                raise study.StudyError("%s missing: run tools/cifar10_data.py first"
                                       % missing[0])
        runner = study.Study(SOLVERS, args.out, args.seeds, netgen.CIFAR10_SWITCH_ITER,
                             netgen.CIFAR10_EPOCH_ITERS)
        report = lambda msg: print(msg, flush=True)  # noqa: E731
        if args.report_only:
            runner.resummarize()
        if not args.report_only:
            for seed in args.seeds:
                for approach in study.APPROACHES:
                    runner.run(approach, seed, report)
                    study.write_report(runner, os.path.join(results_dir, "cifar10.json"),
                                       os.path.join(results_dir, "cifar10.md"),
                                       os.path.join(results_dir, "cifar10_curves.png"), meta)
        data = study.write_report(runner, os.path.join(results_dir, "cifar10.json"),
                                  os.path.join(results_dir, "cifar10.md"),
                                  os.path.join(results_dir, "cifar10_curves.png"), meta)
    except (study.StudyError, OSError) as exc:
        print("cifar10_study.py: error: %s" % exc, file=sys.stderr)
        return 1
    for approach, stat in sorted(data["summary"].items()):
        print("%-6s test error %.2f%% (n=%d)" % (study.LABELS[approach], 100 * stat["mean"],
                                                 stat["n"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
