#!/usr/bin/env python
"""CIFAR-10 JPEGs -> train/test LMDBs and the training-set mean.

Reads a .tar.gz (or an extracted folder) laid out as <split>/<class>/*.jpg,
optionally verifies it against a SHA256SUMS file, and writes

    OUT/cifar10_train_lmdb   50,000 images in a fixed shuffled order
    OUT/cifar10_test_lmdb    10,000 images
    OUT/mean.binaryproto     mean image (Caffe's compute_image_mean)

the paths prototxt/cifar10_quick_*.prototxt read, and creates
scratch/snapshots/cifar10/, where solvers/cifar10_quick_*.prototxt snapshot
(Caffe refuses to start without that folder). Each output is written
under a temporary name and renamed when complete.

Example:
    python tools/cifar10_data.py ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
        --sha256sums ../shared/data/cifar10/SHA256SUMS
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import caffe_utils, cli, config
from gencnn.data import cifar10
from gencnn.data.lmdb_io import write_lmdb

SNAPSHOTS = os.path.join(config.REPO_ROOT, "scratch", "snapshots", "cifar10")


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="cifar10-jpeg.tar.gz or a folder with train/ and test/")
    parser.add_argument("--sha256sums", default=None,
                        help="SHA256SUMS file listing the archive by name (default: no check)")
    parser.add_argument("--out", default=os.path.join(config.data_dir(), "cifar10"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=cli.seed, default=0,
                        help="seed of the training-set shuffle (default: %(default)s)")
    parser.add_argument("--snapshots", default=SNAPSHOTS,
                        help="snapshot folder of the CIFAR-10 solvers, created "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    for folder in (args.out, args.snapshots):     # before the work, not after
        cli.check_writable(folder)
    if args.sha256sums:
        if not os.path.isfile(args.source):
            raise cli.UserError("--sha256sums checks an archive; %s is not a file"
                                    % args.source)
        cifar10.verify_sha256sums(args.sha256sums, os.path.dirname(os.path.abspath(
            args.source)), [os.path.basename(args.source)])
        print("checksum ok: %s" % args.source)
    data = cifar10.load(args.source)
    os.makedirs(args.out, exist_ok=True)
    for split in cifar10.SPLITS:
        images, labels, _ = data[split]
        if split == "train":
            images, labels = cifar10.shuffled(images, labels, args.seed)
        path = os.path.join(args.out, "cifar10_%s_lmdb" % split)
        count = write_lmdb(path, zip(images, labels))
        print("wrote %s (%d images)" % (path, count))
    caffe_utils.finish_dataset(os.path.join(args.out, "cifar10_train_lmdb"),
                               os.path.join(args.out, "mean.binaryproto"), args.snapshots)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
