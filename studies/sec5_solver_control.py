#!/usr/bin/env python
"""The control of section-5 learning's test error: the same solver
(generative_learning.solver_text with a finished run's options: inv policy
from base_lr, momentum 0.9, weight decay, gradient clipping) and the same
DG-loss weight, on the observed images alone (SoftmaxWithLoss, no
synthesized images), from the same DG LeNet, for the same iterations. The
test error it ends at is what fine-tuning by that solver costs without
section 5. Prints one line per run and writes --out (JSON).

    python studies/sec5_solver_control.py --seeds 1 2 3 --base-lr 3e-4 1e-4 \\
        --out results/studies/sec5_solver_control.json
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import caffe  # noqa: E402

from gencnn import cli, files, generative_learning, netgen, run_folder  # noqa: E402

NETS = os.path.join("results", "sample_quality", "nets")


def test_error(solver, iters):
    """Test error % of the solver's net on its test net's `iters` batches."""
    return 100.0 * (1.0 - run_folder.test_means(solver.test_nets[0], iters)["accuracy"])


def control(seed, base_lr, args):
    """(start, end) test error % of one DG-only fine-tuning."""
    history = json.load(open(os.path.join(args.nets, "%s_seed%d_history.json"
                                          % (args.run_prefix, seed))))
    opts = dict(history["config"]["opts"], base_lr=base_lr)
    iters = int(history["epochs"][-1]["iter"])
    net = netgen.train_test_net(netgen.LENET, "dg", train_source=args.train_lmdb,
                                test_source=args.test_lmdb)
    for layer in net.layer:
        if layer.name == "loss":               # the section-5 net's DG weight
            layer.loss_weight[:] = [opts["dg_weight"]]
    test_iters = run_folder.whole_test_iters(args.test_lmdb,
                                             netgen.LENET["data_args"]["test_batch"])
    with tempfile.TemporaryDirectory(prefix="sec5_control_") as tmp:
        net_path = os.path.join(tmp, "net.prototxt")
        files.write_atomic(net_path, str(net))
        solver_path = os.path.join(tmp, "solver.prototxt")
        files.write_atomic(solver_path, generative_learning.solver_text(
            net_path, opts, iters, os.path.join(tmp, "snap"), seed, test_iter=test_iters))
        solver = caffe.SGDSolver(solver_path)
        solver.net.copy_from(os.path.join(args.nets, "dg_seed%d.caffemodel" % seed))
        solver.test_nets[0].share_with(solver.net)
        start = test_error(solver, test_iters)
        solver.step(iters)
        return start, test_error(solver, test_iters), iters


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--seeds", type=cli.positive_int, nargs="+", default=[1, 2, 3],
        help="DG LeNet seeds (default %(default)s)")
    add("--base-lr", type=cli.positive_float, nargs="+", default=[3e-4],
        help="base learning rates to try (default %(default)s, the runs')")
    add("--nets", default=NETS, help="the DG nets and runs' histories (default %(default)s)")
    add("--run-prefix", default="sec5_L5_w100",
        help="the section-5 runs whose options and length are copied: "
             "NETS/PREFIX_seedS_history.json (default %(default)s)")
    add("--train-lmdb", default="data/mnist/mnist_train_lmdb", help="(default %(default)s)")
    add("--test-lmdb", default="data/mnist/mnist_test_lmdb", help="(default %(default)s)")
    add("--out", help="write the results to this JSON")
    args = parser.parse_args(argv)
    caffe.set_mode_cpu()
    rows = []
    for base_lr in args.base_lr:
        for seed in args.seeds:
            start, end, iters = control(seed, base_lr, args)
            rows.append({"seed": seed, "base_lr": base_lr, "iters": iters,
                         "start_test_error_pct": start, "test_error_pct": end})
            print("seed %d, base_lr %g, %d iterations of DG alone: test error %.2f%% -> %.2f%%"
                  % (seed, base_lr, iters, start, end), flush=True)
    if args.out:
        files.write_json(args.out, {"runs": rows, "run_prefix": args.run_prefix,
                                    "command": "python studies/sec5_solver_control.py " +
                                    " ".join(argv if argv is not None else sys.argv[1:])})
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
