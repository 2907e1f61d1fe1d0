#!/usr/bin/env python
"""The DG-weight trade curve of section 5 learning with the fitted q, in the
sample measures of tools/sample_quality.py (section 5 with the fitted q).

Reads a sample_quality report holding, for each DG weight W, the sets
"sec5_[Lk_]wW_seedS" (T = 1 samples of the learned net from q) and
"sec5_[Lk_]wW_seedS_persistent" (the training's final persistent chains), and
the learned nets' histories (results/sample_quality/nets/<set>_history.json,
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
SET = re.compile(r"^(?P<stem>sec5_(L(?P<leapfrog>\d+)_)?w(?P<weight>[0-9.]+)_seed(?P<seed>\d+))"
                 r"(?P<persistent>_persistent)?$")


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
    """[(weight, seed, persistent, test error %, measures, leapfrog steps of the
    training chains)] of the report's sec5 sets."""
    found = []
    for name, measures in report["sets"].items():
        match = SET.match(name)
        if not match:
            continue
        stem = match.group("stem")
        history = os.path.join(nets, stem + "_history.json")
        if not os.path.isfile(history):
            raise cli.UserError("%s: no history %s" % (name, history))
        error = json.load(open(history))["final_test_error_pct"]
        found.append((float(match.group("weight")), int(match.group("seed")),
                      bool(match.group("persistent")), error, measures,
                      int(match.group("leapfrog") or 1)))
    if not found:
        raise cli.UserError("%s has no sets named sec5_[Lk_]wW_seedS[_persistent]" % report)
    return sorted(found, key=lambda p: (p[5], p[2], p[0]))


def chains_label(leapfrog):
    return "training HMC L = %d" % leapfrog if leapfrog > 1 else "training MALA"


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

    print("| training chains | DG weight | test error % | samples | n | LeNet-FID | x real | "
          "judged % | within-class corr |")
    print("|---|---|---|---|---|---|---|---|---|")
    for weight, seed, persistent, error, m, leapfrog in found:
        print("| %s | %g | %.2f | %s | %d | %.1f | %.1f | %.1f | %.2f |" % (
            chains_label(leapfrog), weight, error,
            "persistent chains" if persistent else "T = 1 from q", m["n"],
            m["lenet_fid"], m["lenet_fid"] / real, 100 * m["judge_accuracy"],
            m["within_class_corr"]))
    print("| real training digits | | | | %d | %.1f | 1.0 | | |" % (n, real))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = iter(("o-", "s--", "^-", "v--", "D-", "x--"))
    series = 0
    for leapfrog in sorted({p[5] for p in found}):
        for persistent in (False, True):
            pts = [p for p in found if p[5] == leapfrog and p[2] == persistent]
            if not pts:
                continue
            ax.plot([p[3] for p in pts], [p[4]["lenet_fid"] for p in pts], next(styles),
                    label="%s: %s" % (chains_label(leapfrog), "persistent chains" if persistent
                                      else "T = 1 samples from q"))
            for weight, _, _, error, m, _ in pts:
                # points of several series share a test error: their labels
                # go right of the point, one column per series
                ax.annotate("%g" % weight, (error, m["lenet_fid"]), textcoords="offset points",
                            xytext=(5 + 22 * series, -3), fontsize=7,
                            color=ax.lines[-1].get_color())
            series += 1
    ax.axhline(real, color="k", lw=1, label="real training digits")
    ax.axhline(2 * real, color="k", lw=1, ls=":", label="2x real digits at this n")
    for (label, fid), colour in zip(lines, ("tab:red", "tab:purple", "tab:brown")):
        ax.axhline(fid, color=colour, lw=1, ls="-.", label=label)
    ax.set(xlabel="test error % of the learned net", ylabel="LeNet-FID (n = %d)" % n,
           title="Section 5 learning, fitted q: DG weight (labels), seed 1")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.save_figure(fig, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
