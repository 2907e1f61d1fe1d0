#!/usr/bin/env python
"""Summarise generative-learning runs into results/generative_learning.json.

  python tools/generative_learning_report.py --runs R1 R2 R3 \\
      --judge-weights results/generative_learning/judge_dg_seed99/stage1_final.caffemodel \\
      --speed results/bench/generative_learning_speed.json --out results/generative_learning.json

Each run folder holds the training's history.json and, in --hmc-name, the
output of tools/hmc_visualize.py at T = 1 with --compare-lmdb. The judge, a
separately trained DG LeNet, classifies every sample; judge_correct is the
fraction it assigns to the sample's class. Values are means over the runs,
per_seed lists each.
"""
import json
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "2")
import _init_paths  # noqa: F401,E402
from gencnn import cli, files  # noqa: E402


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, help="training output folders")
    parser.add_argument("--hmc-name", default="hmc_T1",
                        help="subfolder of each run with the T = 1 samples (default %(default)s)")
    parser.add_argument("--judge-model", default="prototxt/lenet_deploy.prototxt",
                        help="deploy prototxt of the judge (default %(default)s)")
    parser.add_argument("--judge-weights", required=True, help="caffemodel of the judge")
    parser.add_argument("--speed", help="JSON of bench/generative_learning_speed.py")
    parser.add_argument("--out", required=True, help="summary JSON to write")
    args = parser.parse_args(argv)
    for path in [args.judge_model, args.judge_weights] + ([args.speed] if args.speed else []):
        if not os.path.isfile(path):
            raise cli.UserError("%s does not exist" % path)
    speed = None
    if args.speed:
        try:
            speed = json.load(open(args.speed))
            speed["generative_s_per_iter"] / speed["dg_s_per_iter"]
        except (ValueError, KeyError, TypeError, ZeroDivisionError) as err:
            raise cli.UserError("--speed %s is not the JSON of bench/generative_learning_speed.py"
                                " (%s)" % (args.speed, type(err).__name__))
    for run in args.runs:
        for name in ("history.json", os.path.join(args.hmc_name, "summary.json"),
                     os.path.join(args.hmc_name, "samples.npz")):
            if not os.path.isfile(os.path.join(run, name)):
                raise cli.UserError("%s has no %s" % (run, name))
    cli.check_writable(args.out, folder=False)
    import caffe
    caffe.set_mode_cpu()
    from gencnn.reports import generative_learning
    result = generative_learning.summarize(args.runs, args.hmc_name, args.judge_model,
                                           args.judge_weights, speed)
    files.write_atomic(args.out, json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("seeds", "test_error_pct", "samples_T1",
                                             "cost_ratio_vs_dg")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
