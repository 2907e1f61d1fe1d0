#!/usr/bin/env python
"""The newest checkpoint of a generative_learning run (paper section 5), as
the artifacts of a finished run: NAME_iterN.caffemodel, NAME_iterN_history.json
(config, q and the epochs tested up to N), NAME_iterN_iterations.tsv (the rows
up to N), curves (energy gap, acceptance, step size, test error), and in the
run folder chains_iterN.npz, its persistent chains as a finished run's
chains.npz holds them (images in input units; states). For runs
too long for one session: the inv learning-rate policy does not depend on the
run's length, so iteration N of a longer run is the net a run of N iterations
ends with. Prints NAME_iterN.

    python studies/sec5_checkpoint.py scratch/runs/cifar10_sec5/sec5_seed1 \
        --name sec5_seed1 --nets results/sample_quality_cifar10/nets \
        --curves results/figures/cifar10_sec5_seed1_iterN_curves.png
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402

import numpy as np  # noqa: E402

from gencnn import cli, files, generative_learning, netgen  # noqa: E402
from gencnn.data.transform import InputTransform  # noqa: E402
from gencnn.cli import UserError  # noqa: E402
from gencnn.reports import curves  # noqa: E402


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a generative_learning --out folder")
    parser.add_argument("--name", required=True, help="prefix of the written files")
    parser.add_argument("--nets", required=True, help="folder of the written files")
    parser.add_argument("--curves", default=None,
                        help="the curves figure (N in the name is replaced by the "
                             "iteration; default: none)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    state_path = os.path.join(args.run, "state.json")
    if not os.path.isfile(state_path):
        raise UserError("%s: not a generative_learning run (no state.json)" % args.run)
    with open(state_path) as f:
        state = json.load(f)
    checkpoint = state.get("checkpoint")
    if not checkpoint:
        raise UserError("%s has no checkpoint yet" % args.run)
    it = int(checkpoint["iter"])
    name = "%s_iter%d" % (args.name, it)
    out = os.path.join(args.nets, name)
    os.makedirs(args.nets, exist_ok=True)
    files.copy_atomic(os.path.join(args.run, checkpoint["caffemodel"]), out + ".caffemodel")
    epochs = [r for r in state["history"] if r["iter"] <= it]
    tested = [r for r in epochs if r["iter"] == it]
    files.write_json(out + "_history.json", {
        "config": state["config"], "q": state["q"], "epochs": epochs, "checkpoint_iter": it,
        # the test error of the net at N, when N ended an epoch (tested there)
        "final_test_error_pct": tested[0]["test_error_pct"] if tested else None})
    # A killed run's TSV may run past its checkpoint; keep the rows up to it.
    with open(os.path.join(args.run, "iterations.tsv")) as f:
        lines = [line for line in f if line.strip() and float(line.split("\t")[0]) <= it]
    tsv = out + "_iterations.tsv"
    files.write_atomic(tsv, "".join(lines))
    # The checkpoint's chains hold the buffer's states (logits for fitted_q)
    # under "images"; write them as a finished run's chains.npz.
    config = state["config"]
    transform = InputTransform.of_net(netgen.NETS[config["net"]], {
        "mean_file": config["mean_file"]} if config.get("mean_file") else None)
    with np.load(os.path.join(args.run, checkpoint["chains"])) as npz:
        states = npz["images"]
    generative_learning.write_chains(os.path.join(args.run, "chains_iter%d.npz" % it), states,
                                     config["opts"]["fitted_q"], transform)
    if args.curves:
        curves.generative_learning(tsv, epochs, args.curves.replace("iterN", "iter%d" % it))
    print(name)


if __name__ == "__main__":
    sys.exit(cli.run(main))
