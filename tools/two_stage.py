#!/usr/bin/env python
"""GG pre-training then DG fine-tuning (or any one- or two-solver schedule).

  python tools/two_stage.py --stage1 solvers/lenet_gg.prototxt \\
      --stage2 solvers/lenet_gg_dg.prototxt --switch-epoch 16 --out results/mnist/gg_dg

Stage 2 starts from the stage-1 weights at the switch and runs to the end of
the stage-1 solver's max_iter (the whole schedule; 25 epochs for LeNet).
Epoch size comes from the training LMDB's entry count and the batch size. The
model is tested on the whole test set after every epoch and at the end of each
stage. Writes to --out: two_stage.log, history.json (per-epoch test error and
loss of each stage), curves.png, iterations_stage*.tsv (per-iteration loss and
ESS), stage*_final.caffemodel, snapshots/ and state.json (for --resume).
Relative paths in the solvers are taken from the current directory, as caffe
does: run it from the repository root.

solvers/<net>_gg_dg.prototxt is the default stage 2 (aligned: DG's lr decay
continued from the protocol's switch, epoch 16 for LeNet; another switch needs
its own schedule, gencnn/protocols.py aligned_schedule); the restart reading, the
lr schedule counted from the switch, is solvers/<net>_gg_dg_restart.prototxt.
"""
import argparse
import os
import sys

os.environ.setdefault("GLOG_minloglevel", "1")   # Caffe's INFO lines go to the log, not here
import _init_paths  # noqa: F401,E402
from gencnn import cli  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True, help="solver of stage 1 (e.g. GG)")
    parser.add_argument("--stage2", help="solver of stage 2 (e.g. DG at base_lr 0.003)")
    parser.add_argument("--switch-epoch", type=float,
                        help="switch to stage 2 after this many epochs (the paper: 16 for LeNet)")
    parser.add_argument("--switch", metavar="ess:T",
                        help="instead: switch at the first epoch whose mean ESS of the "
                             "generative importance weights falls below T (section 3.2)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, help="solver random_seed (weight init); "
                        "the data order is the LMDB's and does not change")
    parser.add_argument("--weights", help="initialize stage 1 from this .caffemodel")
    parser.add_argument("--start-epoch", type=float, default=0.0,
                        help="epoch number the run starts at, for numbering (default %(default)s)")
    parser.add_argument("--keep-epochs", default="",
                        help="comma-separated epochs (fractions allowed) whose weights to "
                             "keep as epochE.caffemodel (e.g. 16)")
    parser.add_argument("--stop-epoch", type=float,
                        help="stop a one-solver run after this epoch of its schedule "
                             "(e.g. GG up to the switch); the lr schedule is unchanged")
    parser.add_argument("--train-lmdb",
                        help="train on this LMDB instead of the nets' TRAIN source (e.g. a "
                             "per-seed shuffled copy, so the seed changes the data order)")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="iterations between resumable checkpoints; a kill loses at most "
                             "this many minus one (default %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--gpus", default="",
                        help="comma-separated GPU ids (default: CPU). One id: train on that "
                             "GPU; several: one process per GPU joined by NCCL, as BVLC's "
                             "python/train.py (each GPU takes the net's batch; eq. 10's "
                             "reference is then estimated per GPU, see docs/scaling.md). "
                             "Needs a Caffe built with CUDA (and NCCL for several)")
    args = parser.parse_args(argv)

    from gencnn import two_stage
    if args.switch_epoch is not None and args.switch:
        raise cli.UserError("give --switch-epoch or --switch, not both")
    switch = None
    if args.switch_epoch is not None:
        switch = ("epoch", args.switch_epoch)
    elif args.switch:
        switch = two_stage.parse_switch(args.switch)
    try:
        keep = [float(e) for e in args.keep_epochs.split(",") if e.strip()]
    except ValueError:
        raise cli.UserError("--keep-epochs must be numbers, got %r" % args.keep_epochs)
    if args.train_lmdb and not os.path.isdir(args.train_lmdb):
        raise cli.UserError("--train-lmdb %s is not an LMDB folder" % args.train_lmdb)
    try:
        gpus = [int(g) for g in args.gpus.split(",") if g.strip()]
    except ValueError:
        raise cli.UserError("--gpus must be comma-separated GPU ids, got %r" % args.gpus)
    if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise cli.UserError("--gpus must be distinct ids >= 0, got %r" % args.gpus)
    import caffe
    two_stage.check_gpus(gpus)
    if not gpus:
        caffe.set_mode_cpu()
    runner = two_stage.TwoStageRunner(
        args.stage1, args.out, stage2=args.stage2, switch=switch, seed=args.seed,
        weights=args.weights, start_epoch=args.start_epoch, keep_epochs=keep,
        checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
        stop_epoch=args.stop_epoch, train_lmdb=args.train_lmdb, gpus=gpus)
    runner.run(resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
