#!/usr/bin/env python
"""Measure sets of samples against MNIST (or CIFAR-10: --mean-file and a
cifar10_quick judge), with baselines at the same n (gencnn/sample_quality.py,
the report gencnn/reports/sample_quality.py).

  python tools/sample_quality.py \\
      --judge-weights results/sample_quality/judge_dg_seed99.caffemodel \\
      --set dg_fitted_q_T1=results/sample_quality/dg_fitted_q_T1.npz \\
      --q-alone "fitted q alone=results/sample_quality/fitted_q.npz" \\
      --out results/sample_quality.json

A set's .npz holds "x" (n x 1 x 28 x 28 floats, the net's input units:
pixels / 256), "y" (n target classes), optionally "chain_mean" (like x) and
"meta" (a JSON object string: net, q, temperature, ... copied into the
report). The baselines (real training digits, white q, class template,
class template + q noise, and the --q-alone draws) are drawn at the n and
class counts of the first --set. LeNet-FID is the headline: judge accuracy
and IS are fooled by a class template. Use n >= 1,000 for headline numbers
(FID is biased upwards at small n); a set or test LMDB of fewer than 2 images
is refused (FID fits a covariance).

  python tools/sample_quality.py --judge-model prototxt/cifar10_quick_deploy.prototxt \
      --judge-weights results/sample_quality_cifar10/nets/judge_dg_seed99.caffemodel \
      --train-lmdb data/cifar10/cifar10_train_lmdb --test-lmdb data/cifar10/cifar10_test_lmdb \
      --scale 1 --mean-file data/cifar10/mean.binaryproto --set NAME=S.npz --out R.json

  python tools/sample_quality.py --recompute-check results/sample_quality.json

recomputes a report from the files it names and fails (exit 2) if any
number differs by more than 1e-6 relative.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
import _init_paths  # noqa: F401,E402
from gencnn import cli, files, sample_quality  # noqa: E402
from gencnn.reports import sample_quality as sq_report  # noqa: E402


def named_path(text):
    """NAME=PATH, both non-empty."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("must be NAME=PATH, got '%s'" % text)
    return name, path


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--judge-model", default="prototxt/lenet_deploy.prototxt",
        help="deploy prototxt of the judge (default %(default)s)")
    add("--judge-weights", help="caffemodel of the judge, an independently trained LeNet "
        "(required unless --recompute-check)")
    add("--judge-test-error", type=cli.nonneg_float, default=None,
        help="the judge's test error in %% to report (default: measured on --test-lmdb)")
    add("--train-lmdb", default="data/mnist/mnist_train_lmdb",
        help="training digits: class means, real-digit baseline, nearest-train distances "
             "(default %(default)s)")
    add("--test-lmdb", default="data/mnist/mnist_test_lmdb",
        help="test digits: the FID reference (default %(default)s)")
    add("--scale", type=cli.positive_float, default=sample_quality.MNIST_SCALE,
        help="LMDB pixels -> the judge's input units, as the nets' transform_param "
             "(default %(default)s)")
    add("--mean-file", default=None,
        help="the mean image the judge's Data layer subtracts (CIFAR-10's "
             "data/cifar10/mean.binaryproto; default none: MNIST)")
    add("--judge-feature", default="ip1",
        help="the judge's blob FID is computed on (default %(default)s)")
    add("--set", dest="sets", type=named_path, action="append", default=[], metavar="NAME=PATH",
        help="a set of samples (.npz with x, y[, chain_mean, meta]); repeatable, at least one")
    add("--q-alone", type=named_path, default=None, metavar="NAME=PATH",
        help='baseline: draws of the chosen q (.npz with "x", at least the first set\'s n)')
    add("--white-mean", type=cli.finite_float, default=None,
        help="mean of the white q baseline (default %s without --mean-file, else the "
             "training images' mean)" % sample_quality.WHITE_Q_MEAN)
    add("--white-std", type=cli.positive_float, default=None,
        help="sd of the white q baseline and of the template's noise (default %s without "
             "--mean-file, else the training images' sd)" % sample_quality.WHITE_Q_STD)
    add("--real-pool", type=cli.positive_int, default=sample_quality.REAL_POOL,
        help="real training digits are drawn from the last this many training images "
             "(default %(default)s)")
    add("--seed", type=cli.seed, default=0, help="seed of the baselines (default %(default)s)")
    add("--out", default="results/sample_quality.json",
        help="report to write (default %(default)s)")
    add("--recompute-check", metavar="REPORT", default=None,
        help="recompute this report from the files it names (relative paths from the "
             "current folder, as written); fail if a number differs beyond 1e-6 relative "
             "(other options are ignored)")
    args = parser.parse_args(argv)

    if args.recompute_check:
        report = sq_report.recompute_check(args.recompute_check)
        print(sq_report.markdown_table(report))
        print("%s reproduced (every number within 1e-6 relative)" % args.recompute_check)
        return 0
    if args.judge_weights is None:
        raise cli.UserError("--judge-weights is required")
    if not args.sets:
        raise cli.UserError("give at least one --set NAME=PATH")
    cli.check_writable(args.out, folder=False)
    report = sq_report.make_report(
        args.judge_model, args.judge_weights, args.train_lmdb, args.test_lmdb, args.sets,
        q_alone=args.q_alone, seed=args.seed, judge_test_error=args.judge_test_error,
        scale=args.scale, white_mean=args.white_mean, white_std=args.white_std,
        real_pool=args.real_pool, mean_file=args.mean_file, feature_blob=args.judge_feature)
    folder = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    files.write_atomic(args.out, json.dumps(report, indent=1) + "\n")
    print(sq_report.markdown_table(report))
    for note in sq_report.report_notes(report):
        print(note)
    print("judge test error %.2f %% (%s); wrote %s"
          % (report["judge"]["test_error_pct"], report["judge"]["test_error_source"], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
