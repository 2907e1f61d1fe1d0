#!/usr/bin/env python
"""Generative learning with synthesized images (paper section 5): LeNet on
MNIST (--net lenet, the default) or cifar10_quick on CIFAR-10.

  # a 2-epoch DG LeNet to start from, then one epoch of generative learning
  python tools/two_stage.py --stage1 solvers/lenet_dg.prototxt --seed 1 --stop-epoch 2 \
      --out results/generative_learning/dg_init_seed1
  python tools/generative_learning.py --out results/generative_learning/dgw100_seed1 --seed 1 \
      --weights results/generative_learning/dg_init_seed1/stage1_final.caffemodel

  # the same under the fitted q of the T = 1 samples (half an
  # epoch from Table 1's 25-epoch DG LeNet, studies/sec5_fitted_q.sh)
  python tools/generative_learning.py --out scratch/runs/sec5/sec5_w100_seed1 --seed 1 \
      --weights results/sample_quality/nets/dg_seed1.caffemodel --fitted-q 1 \
      --reference-count 20000 --epochs 0.5 --step-size 0.3 --max-step 2

  # cifar10_quick from a DG net (tools/cifar10_data.py makes the LMDBs and mean),
  # its own defaults: fitted q, 50 synthesized, 2 HMC transitions of 5 steps
  python tools/generative_learning.py --net cifar10_quick --out scratch/runs/c10 \
      --seed 1 --weights DG.caffemodel --epochs 2

Trains p_y(x) = exp(f_y(x)) q(x) / Z_y: every iteration moves a batch
of persistent chains (a replay buffer per class) by K HMC transitions of the
current model at temperature T, then steps the solver on the net's training
batch (LeNet 64, cifar10_quick 100) of observed images + M synthesized images (SynthesisLossLayer, plus SoftmaxWithLoss on the observed
half with --dg-weight). Every epoch it tests on the 10,000 test images and
logs the chains' acceptance, the energy gap mean f_y(data) - mean f_y(samples),
the step size and divergent trajectories. A NaN or exploding score stops the
run with one error line; the last good checkpoint stays for inspection.

Writes to --out: train.log, iterations.tsv (per iteration: iter, DG loss,
synthesis loss, energy gap, f data, f samples, acceptance, step size,
divergent, restarts, sampling s, total s), history.json (per epoch),
curves.png, final.caffemodel, chains.npz (the final buffer), net.prototxt,
solver.prototxt, snapshots/ and state.json (for --resume). Run it from the
repository root. Sample the result at T = 1 with studies/class_samples_t1.py
--net NET --weights OUT/final.caffemodel (under the q it was trained with).
"""
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "1")
import _init_paths  # noqa: F401,E402
from gencnn import cli  # noqa: E402
from gencnn.generative_learning import NET_DEFAULTS, NETS, OPTIONS  # noqa: E402


def option_type(option):
    """argparse type of an OPTIONS entry: its type and range, one message."""
    def parse(text):
        try:
            return option.parse(text)
        except ValueError as err:
            raise cli.argparse.ArgumentTypeError(str(err))
    parse.__name__ = option.name
    return parse


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=cli.seed, help="solver random_seed and chain seed")
    parser.add_argument("--weights", help="initialize from this .caffemodel (e.g. a DG LeNet)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--net", default="lenet", choices=NETS,
                        help="the net and its data (default %(default)s)")
    parser.add_argument("--train-lmdb",
                        help="training LMDB (default: the net's, data/mnist/mnist_train_lmdb "
                             "or data/cifar10/cifar10_train_lmdb)")
    parser.add_argument("--test-lmdb",
                        help="test LMDB, tested on whole after every epoch (default: the "
                             "net's, data/mnist/mnist_test_lmdb or data/cifar10/cifar10_test_lmdb)")
    parser.add_argument("--mean-file",
                        help="cifar10_quick: the mean image its Data layer subtracts (default "
                             "data/cifar10/mean.binaryproto)")
    for option in OPTIONS:
        others = "".join("; %s: %s" % (net, NET_DEFAULTS[net][option.name])
                         for net in NETS if option.name in NET_DEFAULTS[net])
        # default None: the net's default applies (gencnn.generative_learning)
        parser.add_argument("--" + option.name.replace("_", "-"), type=option_type(option),
                            default=None,
                            help="%s (default %s%s)" % (option.help, option.default, others))
    args = parser.parse_args(argv)
    cli.check_writable(args.out)
    opts = {option.name: getattr(args, option.name) for option in OPTIONS
            if getattr(args, option.name) is not None}
    import caffe
    caffe.set_mode_cpu()
    from gencnn import generative_learning
    learner = generative_learning.GenerativeLearner(
        args.out, opts, seed=args.seed, weights=args.weights, progress=not args.no_progress,
        train_source=args.train_lmdb, test_source=args.test_lmdb, net=args.net,
        mean_file=args.mean_file)
    learner.run(resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
