#!/usr/bin/env python
"""Top-1 / top-5 error of a deploy net on an image list, with the paper's
5 crops (centre + 4 corners of the net's input size, 227, in the 256 x 256
image, scores averaged) and with the centre crop alone; writes JSON.

The list is Caffe's "relative/path label" format (BVLC's val.txt, or
tools/named_image_list.py's output). Give the training mean as a
compute_image_mean .binaryproto (--mean-file) or per-channel BGR values
(--mean-values). Works with old-style (input_dim) deploy prototxt too.

Example (SqueezeNet on the 16 stub photos):
    python tools/evaluate.py --deploy ../shared/models/squeezenet_v1.0/SqueezeNet_deploy.prototxt \\
        --weights ../shared/models/squeezenet_v1.0/squeezenet_v1.0_deepcompressed.caffemodel \\
        --images results/imagenet/stubs.txt --root ../shared/data/imagenet_stubs/images \\
        --mean-values 104 117 123 --output-blob pool_final \\
        --out results/imagenet/squeezenet_stubs.json
"""
import argparse
import json
import os
import sys

import _init_paths  # noqa: F401

os.environ.setdefault("GLOG_minloglevel", "2")   # before caffe: no net-construction log
import caffe  # noqa: E402
from tqdm import tqdm  # noqa: E402

from gencnn import caffe_utils, cli, evaluation, files  # noqa: E402
from gencnn.data import imagenet  # noqa: E402


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deploy", required=True, help="deploy prototxt")
    parser.add_argument("--weights", required=True, help=".caffemodel")
    parser.add_argument("--images", required=True, help="image list: 'path label' lines")
    parser.add_argument("--root", default="",
                        help="folder the list's paths are relative to (default: as listed)")
    mean = parser.add_mutually_exclusive_group()
    mean.add_argument("--mean-file", help="mean image .binaryproto (3 x 256 x 256)")
    mean.add_argument("--mean-values", type=cli.finite_float, nargs="+", metavar="V",
                      help="per-channel mean, BGR order (e.g. 104 117 123)")
    parser.add_argument("--output-blob", default=None,
                        help="blob with the class scores (default: the net's last output)")
    parser.add_argument("--resize", choices=("warp", "short"), default="warp",
                        help="warp: 256 x 256 as convert_imageset; short: short side 256, "
                             "centre 256 x 256 (default: %(default)s)")
    parser.add_argument("--input-scale", type=cli.positive_float, default=1.0,
                        help="multiply mean-subtracted pixels by this (default: %(default)s)")
    parser.add_argument("--batch", type=cli.positive_int, default=8,
                        help="images per forward pass, 5 crops each (default: %(default)s)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    cli.check_writable(args.out, folder=False)       # before the work, not after
    for path, what in ((args.deploy, "deploy prototxt"), (args.weights, "weights")):
        if not os.path.isfile(path):
            raise cli.UserError("%s %s not found" % (what, path))
    caffe_utils.read_net(args.deploy)
    items = imagenet.read_image_list(args.images, args.root)
    mean = (evaluation.load_mean_file(args.mean_file) if args.mean_file
            else args.mean_values)
    caffe.set_mode_cpu()
    # Weights checked before Caffe copies them (it aborts on a bad file, and
    # a layer the file lacks would keep its random fillers).
    net = caffe_utils.load_weights(caffe.Net(args.deploy, caffe.TEST), args.weights)
    evaluator = evaluation.Evaluator(net, args.output_blob, mean, args.resize,
                                     args.input_scale, args.batch)
    progress = None if args.quiet else (
        lambda batches: tqdm(batches, desc="evaluating", unit="batch"))
    result = evaluation.evaluate(
        evaluator, [(os.path.join(args.root, p), label) for p, label in items], progress)
    result.update({"deploy": args.deploy, "weights": args.weights, "image_list": args.images,
                   "output_blob": evaluator.output_blob,
                   "mean": args.mean_file or args.mean_values, "input_scale": args.input_scale})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    files.write_atomic(args.out, json.dumps(result, indent=1) + "\n")
    n = result["images"]
    for key, name in (("five_crop", "5 crops"), ("centre_crop", "centre crop")):
        r = result[key]
        print("%-12s top-1 %d/%d (error %.1f%%), top-5 %d/%d (error %.1f%%)"
              % (name, r["top1_correct"], n, 100 * r["top1_error"],
                 r["top5_correct"], n, 100 * r["top5_error"]))
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
