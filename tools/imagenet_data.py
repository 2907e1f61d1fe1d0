#!/usr/bin/env python
"""ImageNet (ILSVRC-2012) images -> the train/val LMDBs and mean the AlexNet and
ZF nets read:

    OUT/ilsvrc12_train_lmdb          convert_imageset, 256x256, shuffled
    OUT/ilsvrc12_val_lmdb            convert_imageset, 256x256, shuffled
    OUT/imagenet_mean.binaryproto    compute_image_mean of the train LMDB
    OUT/train.txt, OUT/val.txt       the image lists used

and creates scratch/snapshots/imagenet/, where solvers/alexnet_*.prototxt and
zf_*.prototxt snapshot (Caffe refuses to start without that folder), so
`caffe train -solver solvers/alexnet_gg.prototxt` runs from the repository
root as soon as this has finished.

Each split comes either from a Caffe image list ("relative/path label" lines,
as BVLC's data/ilsvrc12/train.txt and val.txt) or, without one, from a folder
of <synset>/ subfolders labelled by their line in --synsets. Every output is
written under a temporary name and renamed when complete; convert_imageset's
logs go to OUT/*.log.

Example (BVLC's layout):
    python tools/imagenet_data.py --synsets synsets.txt \\
        --train-dir /data/ILSVRC2012/train --val-dir /data/ILSVRC2012/val \\
        --val-list val.txt
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import caffe_utils, cli, config
from gencnn.data import imagenet

SNAPSHOTS = os.path.join(config.REPO_ROOT, "scratch", "snapshots", "imagenet")


def split_items(name, root, list_path, synsets):
    if root is None:
        raise cli.UserError("--%s-dir is required" % name)
    num_classes = len(synsets) if synsets else None
    if list_path:
        return imagenet.read_image_list(list_path, root, num_classes)
    if not synsets:
        raise cli.UserError("--%s-list or --synsets is required to label %s"
                                 % (name, root))
    return imagenet.list_class_folders(root, synsets)


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", help="root folder of the training images")
    parser.add_argument("--val-dir", help="root folder of the validation images")
    parser.add_argument("--train-list", help="Caffe image list of --train-dir "
                        "(default: scan <synset>/ subfolders)")
    parser.add_argument("--val-list", help="Caffe image list of --val-dir "
                        "(default: scan <synset>/ subfolders)")
    parser.add_argument("--synsets", help="class ids, one a line; label = line index "
                        "(BVLC's synsets.txt or synset_words.txt)")
    parser.add_argument("--out", default=os.path.join(config.data_dir(), "ilsvrc12"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--snapshots", default=SNAPSHOTS,
                        help="snapshot folder of the ImageNet solvers, created "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    for folder in (args.out, args.snapshots):     # before the work, not after
        cli.check_writable(folder)
    synsets = imagenet.read_synsets(args.synsets) if args.synsets else None
    splits = [("train", args.train_dir, split_items("train", args.train_dir,
                                                     args.train_list, synsets)),
              ("val", args.val_dir, split_items("val", args.val_dir,
                                                 args.val_list, synsets))]
    os.makedirs(args.out, exist_ok=True)
    for name, root, items in splits:
        list_path = os.path.join(args.out, "%s.txt" % name)
        imagenet.write_image_list(list_path, items)
        lmdb_path = os.path.join(args.out, "ilsvrc12_%s_lmdb" % name)
        print("converting %d %s images -> %s" % (len(items), name, lmdb_path), flush=True)
        imagenet.convert_imageset(root, list_path, lmdb_path, len(items),
                                  os.path.join(args.out, "convert_%s.log" % name))
    caffe_utils.finish_dataset(os.path.join(args.out, "ilsvrc12_train_lmdb"),
                               os.path.join(args.out, "imagenet_mean.binaryproto"),
                               args.snapshots, os.path.join(args.out, "compute_image_mean.log"))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
