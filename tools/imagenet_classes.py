#!/usr/bin/env python
"""Class samples of an ImageNet net (the paper's Figs. 3-5): the recommended
sampler, a temperature ladder of the same model and the field's activation
maximisation at equal compute, measured the same way, in one report.

    python tools/imagenet_classes.py [--model DEPLOY --weights W] [--jobs 2]

Samples every set of gencnn/visualization/class_samples.py SETTINGS
(10 classes x 4 chains, 150 forward + backward passes per chain each) into
--samples-dir/<set>.npz, skipping sets already sampled with the same
settings (an interrupted run resumes), then measures them (and the
--photos) and writes --report, the grids and the ladder figure.
--report-only measures the sets there without sampling.
"""
import argparse
import os
import subprocess
import sys

import _init_paths  # noqa: F401
from gencnn import cli, config, files

SQUEEZENET = os.path.join(config.shared_dir(), "models", "squeezenet_v1.0")


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default=os.path.join(SQUEEZENET, "SqueezeNet_deploy.prototxt"),
        help="deploy prototxt (default %(default)s)")
    add("--weights", default=os.path.join(SQUEEZENET, "squeezenet_v1.0_deepcompressed.caffemodel"),
        help="caffemodel (default %(default)s)")
    add("--blob", default="pool_final", help="class score blob (default %(default)s)")
    add("--photos", default=os.path.join(config.shared_dir(), "data", "imagenet_stubs"),
        help="folder with images/ (photos named by class) and imagenet_labels.txt: the "
             "real-photo reference of the measures (default %(default)s)")
    add("--samples-dir", default=os.path.join(config.REPO_ROOT, "results", "imagenet_classes"),
        help="where each set's .npz is kept (default %(default)s)")
    add("--report", default=os.path.join(config.REPO_ROOT, "results", "imagenet_classes.json"),
        help="report JSON (default %(default)s)")
    add("--only", default=None, help="sample this one set and stop (a name of SETTINGS)")
    add("--jobs", type=cli.positive_int, default=1,
        help="sets sampled side by side, one process and one BLAS thread each "
             "(default %(default)s)")
    add("--report-only", action="store_true", help="measure the sets there, sample nothing")
    add("--seed", type=cli.seed, default=0, help="random seed (default %(default)s)")
    return parser.parse_args(argv)


def check(args):
    from gencnn.visualization.class_samples import SETTINGS
    for path, what in ((args.model, "prototxt"), (args.weights, "weights")):
        if not os.path.isfile(path):
            raise cli.UserError("%s not found: %s" % (what, path))
    if args.only is not None and args.only not in SETTINGS:
        raise cli.UserError("--only must be one of %s; got '%s'"
                            % (", ".join(SETTINGS), args.only))
    cli.check_writable(args.samples_dir)
    cli.check_writable(os.path.dirname(os.path.abspath(args.report)))
    if args.only is None:       # (each --only process is started after this check)
        from gencnn import caffe_utils
        try:
            caffe_utils.load_net(args.model, args.weights, 1)   # weights that fit the net
        except ValueError as err:
            raise cli.UserError(str(err))


def sample_all(args):
    """Every missing set, --jobs at a time, each in its own process."""
    from gencnn.visualization.class_samples import SETTINGS
    names, running = list(SETTINGS), []
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    while names or running:
        while names and len(running) < args.jobs:
            name = names.pop(0)
            command = [sys.executable, os.path.abspath(__file__), "--only", name,
                       "--model", args.model, "--weights", args.weights, "--blob", args.blob,
                       "--samples-dir", args.samples_dir, "--seed", str(args.seed)]
            running.append((name, subprocess.Popen(command, env=env,
                                                   preexec_fn=files.die_with_parent)))
        name, process = running.pop(0)
        if process.wait() != 0:
            for _, other in running:
                other.terminate()
            raise cli.UserError("sampling set %s failed (exit %d)" % (name, process.returncode))


def main(argv=None):
    args = parse_args(argv)
    check(args)
    from gencnn.visualization import class_samples
    if args.only is not None:
        class_samples.run_set(args.only, args.samples_dir, args.model, args.weights, args.blob,
                              seed=args.seed, log=lambda m: print(m, flush=True))
        return 0
    if not args.report_only:
        sample_all(args)
    from gencnn.visualization import class_report
    report = class_report.write_report(args.samples_dir, args.report, args.model, args.weights,
                                       args.blob, args.photos)
    print("report -> %s (recommended: P(target) %.2f, held out %.2f)"
          % (args.report, report["recommended"]["measures"]["p_target"],
             report["recommended"]["measures"]["p_target_held_out_mean"]))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
