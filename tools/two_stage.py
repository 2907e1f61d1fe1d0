#!/usr/bin/env python
"""GG pre-training then DG fine-tuning (or any one- or two-solver schedule).

  python tools/two_stage.py --stage1 solvers/lenet_gg.prototxt \\
      --stage2 solvers/lenet_gg_dg.prototxt --switch 16 --out results/mnist/gg_dg

Stage 2 starts from the stage-1 weights at the switch and runs to the end of
the stage-1 solver's max_iter (the whole schedule; 25 epochs for LeNet).
The switch is an epoch (--switch 16, or epoch:16), an iteration
(--switch iter:15000) or the first epoch whose mean ESS of the generative
importance weights falls below a threshold (--switch ess:0.3, section 3.2);
--switch-epoch 16 is the same as --switch 16.
Epoch size comes from the training LMDB's entry count and the batch size. The
model is tested on the whole test set after every epoch and at the end of each
stage. Writes to --out: two_stage.log, history.json (per-epoch test error and
loss of each stage), curves.png, iterations_stage*.tsv (per-iteration loss and
ESS), stage*_final.caffemodel, snapshots/ and state.json (for --resume).
Relative paths in the solvers are taken from the current directory, as caffe
does: run it from the repository root.

Stage 2's lr schedule: a stage-2 solver whose schedule is stage 1's is used as
written (the `restart` reading, solvers/<net>_gg_dg_restart.prototxt); any
other is the `aligned` reading (solvers/<net>_gg_dg.prototxt, the default):
DG's decay continued from the switch, derived here from stage 1's schedule
for the switch this run takes (gencnn/protocols.py aligned_schedule).
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "1")   # Caffe's INFO lines go to the log, not here
import _init_paths  # noqa: F401,E402
from gencnn import cli  # noqa: E402


def switch(text):
    """EPOCH, epoch:EPOCH, iter:ITERATION or ess:THRESHOLD -> (kind, value)."""
    kind, _, value = text.rpartition(":")
    kind = kind or "epoch"
    if kind == "epoch":
        return kind, cli.positive_float(value)
    if kind == "iter":
        return kind, cli.positive_int(value)
    if kind == "ess":
        threshold = cli.positive_float(value)
        if threshold > 1:
            raise argparse.ArgumentTypeError("ess:T needs 0 < T <= 1, got %s" % value)
        return kind, threshold
    raise argparse.ArgumentTypeError("must be EPOCH, epoch:EPOCH, iter:ITERATION or "
                                     "ess:THRESHOLD, got '%s'" % text)


def epoch_list(text):
    """Comma-separated epochs, each a finite number >= 0."""
    return [cli.nonneg_float(e.strip()) for e in text.split(",") if e.strip()]


def gpu_list(text):
    gpus = [cli.nonneg_int(g.strip()) for g in text.split(",") if g.strip()]
    if len(set(gpus)) != len(gpus):
        raise argparse.ArgumentTypeError("must be distinct GPU ids, got '%s'" % text)
    return gpus


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True, help="solver of stage 1 (e.g. GG)")
    parser.add_argument("--stage2", help="solver of stage 2 (e.g. DG at base_lr 0.003)")
    parser.add_argument("--switch", type=switch, metavar="EPOCH|iter:N|ess:T",
                        help="switch to stage 2 after this epoch (the paper: 16 for LeNet), "
                             "at iteration N, or at the first epoch whose mean ESS of the "
                             "generative importance weights falls below T (section 3.2)")
    parser.add_argument("--switch-epoch", type=cli.positive_float, metavar="EPOCH",
                        help="the same as --switch EPOCH")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=cli.seed, help="solver random_seed (weight init); "
                        "the data order is the LMDB's and does not change")
    parser.add_argument("--weights", help="initialize stage 1 from this .caffemodel")
    parser.add_argument("--start-epoch", type=cli.nonneg_float, default=0.0,
                        help="epoch number the run starts at, for numbering (default %(default)s)")
    parser.add_argument("--keep-epochs", type=epoch_list, default=[],
                        help="comma-separated epochs (fractions allowed) whose weights to "
                             "keep as epochE.caffemodel (e.g. 16)")
    parser.add_argument("--stop-epoch", type=cli.positive_float,
                        help="stop a one-solver run after this epoch of its schedule "
                             "(e.g. GG up to the switch); the lr schedule is unchanged")
    parser.add_argument("--train-lmdb",
                        help="train on this LMDB instead of the nets' TRAIN source (e.g. a "
                             "per-seed shuffled copy, so the seed changes the data order)")
    parser.add_argument("--checkpoint-every", type=cli.positive_int, default=100,
                        help="iterations between resumable checkpoints; a kill loses at most "
                             "this many minus one (default %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--gpus", type=gpu_list, default=[],
                        help="comma-separated GPU ids (default: CPU). One id: train on that "
                             "GPU; several: one process per GPU joined by NCCL, as BVLC's "
                             "python/train.py (each GPU takes the net's batch; eq. 10's "
                             "reference is then estimated per GPU, see docs/scaling.md). "
                             "Needs a Caffe built with CUDA (and NCCL for several)")
    args = parser.parse_args(argv)
    if args.switch_epoch is not None and args.switch:
        raise cli.UserError("give --switch-epoch or --switch, not both")
    if args.switch_epoch is not None:
        args.switch = ("epoch", args.switch_epoch)
    # (the other combinations of options are checked by TwoStageRunner)
    cli.check_writable(args.out)
    from gencnn import multi_gpu, two_stage
    import caffe
    multi_gpu.check_gpus(args.gpus)
    if not args.gpus:
        caffe.set_mode_cpu()
    runner = two_stage.TwoStageRunner(
        args.stage1, args.out, stage2=args.stage2, switch=args.switch, seed=args.seed,
        weights=args.weights, start_epoch=args.start_epoch, keep_epochs=args.keep_epochs,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
        stop_epoch=args.stop_epoch, train_lmdb=args.train_lmdb, gpus=args.gpus)
    runner.run(resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
