#!/usr/bin/env python
"""Generative visualization (section 3.4): HMC samples from
p_y(x) ~ exp(f_y(x)) q(x) for a node y of a trained Caffe net.

    python tools/hmc_visualize.py --model DEPLOY --weights W --blob B --unit U \\
        [--position y,x] [--num-chains N] [--iters K] [--step-size E] \\
        [--leapfrog-steps L] [--mass M] [--sigma S] [--seed] [--workers W] \\
        [--chain-offset K] [--scheduler local|ADDRESS [--shard-chains N]] \\
        [--preset lenet|alexnet] --out DIR

Writes to --out: samples.npz (x: final states, chains x input shape in
the net's input units; y: each chain's unit; chain_mean; trace: f_y per
iteration and chain;
accepted, accept_prob, delta_h, divergent, sq_norm, step_size; meta: the
run's seed, net, q and settings and its chain ids, as JSON, which
tools/hmc_merge.py checks), summary.json,
grid.png (the samples as images, one row per unit when several units are
given: final states, or chain averages with --show mean), grid_mean.png (or
grid_final.png: the other of the two) and trajectory.png (chain 0 over the
iterations, and f_y of every chain); with --scheduler also shards/ (one
chains_FIRST-LAST.npz per Dask task, merged into samples.npz; see
tools/hmc_merge.py and docs/scaling.md). The options and presets are the table of
gencnn/visualization/settings.py, the run gencnn/visualization/visualize.py,
around the sampler of gencnn/sampling/; the mass convention is described in
gencnn/sampling/hmc.py and in docs/visualization.md.

"""
import argparse
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli
from gencnn.visualization import settings

os.environ.setdefault("MPLBACKEND", "Agg")          # no display needed
os.environ.setdefault("GLOG_minloglevel", "2")      # quiet net construction


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__ + settings.presets_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from gencnn.visualization import visualize
    visualize.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
