#!/usr/bin/env python
"""The DG-weight trade curve of section 5 learning with the fitted q, in the
sample measures of tools/sample_quality.py (issue 14 D).

Reads a sample_quality report holding, for each DG weight W, the sets
"sec5_wW_seedS" (T = 1 samples of the learned net from q) and
"sec5_wW_seedS_persistent" (the training's final persistent chains), and
the learned nets' histories (results/sample_quality/nets/sec5_wW_seedS_history.json,
their test error); plots LeNet-FID against test error, one point per weight
and set kind, with the report's real-digit baseline and any --reference
sets (e.g. the DG net the learning starts from) as lines; prints the table.

  python studies/sec5_trade_curve.py --report results/sample_quality_sec5_trade.json \\
      --reference "DG LeNet (start)=dg_seed1_fitted_q_T1" \\
      --out results/figures/sec5_dg_weight_trade.png
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
from gencnn import cli, files  # noqa: E402

NETS = os.path.join("results", "sample_quality", "nets")
SET = re.compile(r"^sec5_w(?P<weight>[0-9.]+)_seed(?P<seed>\d+)(?P<persistent>_persistent)?$")


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True, help="a tools/sample_quality.py report")
    parser.add_argument("--reference", action="append", default=[], metavar="LABEL=SET",
                        help="a set of the report drawn as a horizontal line")
    parser.add_argument("--nets", default=NETS,
                        help="folder of the learned nets' histories (default %(default)s)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    return parser.parse_args(argv)


def points(report, nets):
    """[(weight, seed, persistent, test error %, measures)] of the report's sec5 sets."""
    found = []
    for name, measures in report["sets"].items():
        match = SET.match(name)
        if not match:
            continue
        stem = "sec5_w%s_seed%s" % (match.group("weight"), match.group("seed"))
        history = os.path.join(nets, stem + "_history.json")
        if not os.path.isfile(history):
            raise cli.UserError("%s: no history %s" % (name, history))
        error = json.load(open(history))["final_test_error_pct"]
        found.append((float(match.group("weight")), int(match.group("seed")),
                      bool(match.group("persistent")), error, measures))
    if not found:
        raise cli.UserError("%s has no sets named sec5_wW_seedS[_persistent]" % report)
    return sorted(found, key=lambda p: (p[2], p[0]))


def main(argv=None):
    args = parse_args(argv)
    try:
        report = json.load(open(args.report))
    except (OSError, ValueError) as err:
        raise cli.UserError("cannot read %s: %s" % (args.report, err))
    found = points(report, args.nets)
    lines = []
    for text in args.reference:
        label, _, name = text.partition("=")
        if name not in report["sets"]:
            raise cli.UserError("--reference %s: no set %s in %s" % (text, name, args.report))
        lines.append((label, report["sets"][name]["lenet_fid"]))
    real = report["baselines"]["real training digits"]["lenet_fid"]
    n = found[0][4]["n"]

    print("| DG weight | test error % | samples | n | LeNet-FID | x real | judged % | "
          "within-class corr |")
    print("|---|---|---|---|---|---|---|---|")
    for weight, seed, persistent, error, m in found:
        print("| %g | %.2f | %s | %d | %.1f | %.1f | %.1f | %.2f |" % (
            weight, error, "persistent chains" if persistent else "T = 1 from q", m["n"],
            m["lenet_fid"], m["lenet_fid"] / real, 100 * m["judge_accuracy"],
            m["within_class_corr"]))
    print("| real training digits | | | %d | %.1f | 1.0 | | |" % (n, real))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for persistent, marker, label in ((False, "o-", "T = 1 samples from q (the model's)"),
                                      (True, "s--", "the training's persistent chains")):
        pts = [p for p in found if p[2] == persistent]
        ax.plot([p[3] for p in pts], [p[4]["lenet_fid"] for p in pts], marker, label=label)
        for weight, _, _, error, m in pts:
            ax.annotate("%g" % weight, (error, m["lenet_fid"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
    ax.axhline(real, color="k", lw=1, label="real training digits")
    ax.axhline(2 * real, color="k", lw=1, ls=":", label="2x real (the goal)")
    for (label, fid), colour in zip(lines, ("tab:red", "tab:purple", "tab:brown")):
        ax.axhline(fid, color=colour, lw=1, ls="-.", label=label)
    ax.set(xlabel="test error % of the learned net", ylabel="LeNet-FID (n = %d)" % n,
           title="Section 5 learning, fitted q: DG weight (labels)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.save_figure(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
