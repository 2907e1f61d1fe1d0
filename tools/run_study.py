#!/usr/bin/env python
"""Run one of the paper's comparisons (DG, GG, GG+DG) over seeds, then report.

  python tools/run_study.py table1  --seeds 1,2,3,4,5     # LeNet on MNIST (Table 1)
  python tools/run_study.py cifar10 --seeds 1,2,3,4,5     # cifar10_quick on CIFAR-10

Arms: DG, GG, GG+DG(aligned) and GG+DG(restart) (the two stage-2 lr schedules:
solvers/<net>_gg_dg.prototxt, the default, and <net>_gg_dg_restart.prototxt;
run folders <arm>_seed<N>, arms gg_dg_aligned and gg_dg_restart). GG+DG starts
from the GG run's weights at the switch. Each run is a tools/two_stage.py
subprocess with one OpenBLAS thread; --jobs runs side by side. Interrupted
runs resume; finished ones are copied under results/ (committed) and skipped
by later calls, even from a fresh clone. Writes the study's JSON, Markdown and
curves (results/table1.* or results/cifar10.*) after every finished run.
Needs the LMDBs: python tools/get_mnist.py / python tools/cifar10_data.py.

Long: about 1 h per seed on one core for either study. Run it in the background:
  OPENBLAS_NUM_THREADS=1 nohup python tools/run_study.py cifar10 > results/cifar10/study.out 2>&1 &
"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli, experiment


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", choices=list(experiment.STUDIES), help="which study")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the study's, "
                        "1,2,3,4,5; with --report-only, the seeds of the finished runs)")
    parser.add_argument("--jobs", type=cli.positive_int, default=1,
                        help="runs side by side, one core each (default %(default)s)")
    parser.add_argument("--work", help="where runs keep snapshots and logs (default "
                        "scratch/runs/<study>, git-ignored)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing; rewrite the report from the finished runs")
    args = parser.parse_args(argv)
    spec = experiment.study(args.study)
    seeds = None          # a report covers the finished runs; a study trains the default
    if args.seeds is not None:
        try:
            seeds = [cli.seed(s.strip()) for s in args.seeds.split(",") if s.strip()]
        except cli.argparse.ArgumentTypeError:
            raise cli.UserError("--seeds must be comma-separated integers in [0, 2^32), got %r"
                                % args.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise cli.UserError("--seeds needs distinct seeds, got %r" % args.seeds)
    elif not args.report_only:
        seeds = spec.default_seeds
    if args.work:
        cli.check_writable(args.work)
    runner = experiment.Runner(spec, seeds, work_dir=args.work, jobs=args.jobs)
    if not args.report_only:
        lmdb = spec.train_lmdb()
        if not os.path.isdir(lmdb):
            raise cli.UserError("%s missing: create the dataset first (tools/get_mnist.py "
                                "or tools/cifar10_data.py)" % lmdb)
        runner.run()
    result = runner.report()
    print(open(os.path.join(runner.repo, spec.md_path)).read())
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(cli.run(main))
