#!/usr/bin/env python
"""Caffe image list ("file label" lines) for a folder of photos named by their
ImageNet class, such as ../shared/data/imagenet_stubs/images (beagle.jpg,
rock_crab.jpg, ...): each file name, underscores read as spaces, must equal
exactly one of the comma-separated names of one class in the label file.

Example:
    python tools/named_image_list.py ../shared/data/imagenet_stubs/images \\
        ../shared/data/imagenet_stubs/imagenet_labels.txt results/imagenet/stubs.txt
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli
from gencnn.data import imagenet


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of <class name>.jpg photos")
    parser.add_argument("labels", help="'<index> <names>' lines, one per class")
    parser.add_argument("out", help="image list to write")
    args = parser.parse_args(argv)
    cli.check_writable(args.out, folder=False)
    items = imagenet.list_named_photos(args.folder, imagenet.read_label_names(args.labels))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    imagenet.write_image_list(args.out, items)
    print("wrote %s (%d images)" % (args.out, len(items)))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
