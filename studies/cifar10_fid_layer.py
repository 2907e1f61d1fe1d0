#!/usr/bin/env python
"""Which layer of the CIFAR-10 judge FID should use: for each candidate
blob, the FID of real training images and of every trivial fake (white q,
the fitted q alone, the class template, template + q noise) against the
test images, at one n. A layer fit for the measure ranks real images first
and every fake far behind; the ratio fake / real is printed per layer.

  python studies/cifar10_fid_layer.py \\
      --judge-weights results/sample_quality_cifar10/nets/judge_dg_seed99.caffemodel \\
      --q-alone results/sample_quality_cifar10/samples/fitted_q_alone.npz \\
      --out results/sample_quality_cifar10/fid_layer.json
"""
import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import cli, files  # noqa: E402
from gencnn import sample_quality as sq  # noqa: E402


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--judge-model", default="prototxt/cifar10_quick_deploy.prototxt")
    add("--judge-weights", required=True)
    add("--train-lmdb", default="data/cifar10/cifar10_train_lmdb")
    add("--test-lmdb", default="data/cifar10/cifar10_test_lmdb")
    add("--mean-file", default="data/cifar10/mean.binaryproto")
    add("--blobs", default="pool3,ip1,ip2", help="candidate layers (default %(default)s)")
    add("--q-alone", help='draws of the fitted q (.npz "x", "y"): a fake of its own')
    add("--n", type=cli.positive_int, default=1000, help="set size (default %(default)s)")
    add("--seed", type=cli.seed, default=0, help="(default %(default)s)")
    add("--out", help="JSON to write")
    args = parser.parse_args(argv)
    y = np.repeat(np.arange(10), args.n // 10)
    q_alone = None
    if args.q_alone:
        q_alone = ("fitted q alone", sq.read_sample_set(args.q_alone, (3, 32, 32), 10,
                                                        "--q-alone")["x"])
    table = collections.OrderedDict()
    reference = None
    for blob in args.blobs.split(","):
        judge = sq.Judge(args.judge_model, args.judge_weights, feature_blob=blob)
        if reference is None:
            reference = sq.load_reference(judge, args.train_lmdb, args.test_lmdb, 1.0,
                                          args.mean_file)
            from gencnn.data.transform import InputTransform
            from gencnn.evaluation import load_mean_file
            test_images, _ = InputTransform(1.0, load_mean_file(args.mean_file)).lmdb_images(
                args.test_lmdb)
        else:       # the same images, this layer's features of the test set
            reference.feature_fit = sq.gaussian_fit(judge.features(test_images))
        train = reference.train_images
        sets = sq.baseline_sets(reference, y, args.seed, float(train.mean()),
                                float(train.std()), q_alone=q_alone)
        row = collections.OrderedDict(
            (name, sq.lenet_fid(judge.features(x), reference.feature_fit))
            for name, (x, _) in sets.items())
        table[blob] = row
        real = row[sq.REAL]
        print("%-6s " % blob + "  ".join("%s %.2f (%.0fx)" % (name, fid, fid / real)
                                          for name, fid in row.items()), flush=True)
    if args.out:
        files.write_atomic(args.out, json.dumps({"n": args.n, "seed": args.seed,
                                                 "fid": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
