#!/usr/bin/env python
"""Section 5 learning with the fitted q over seeds: each arm's test error and T = 1 sample measures as
mean +- sd over its seeds, and Welch's t-test between arms, from a
tools/sample_quality.py report and the nets' histories.

  python studies/sec5_summary.py --report results/sample_quality.json \\
      --arm "DG (25 epochs)=dg_fitted_q_T1:dg_seed1,dg_seed2_fitted_q_T1:dg_seed2,..." \\
      --arm "..." --compare "learned (HMC L = 5)" "DG (25 epochs)"

An arm is LABEL=SET:NET,SET:NET,...: a report set and the net it sampled,
whose test error is in results/sample_quality/nets/NET_history.json
(final_test_error_pct). Prints a markdown table, then one line per
--compare pair and measure.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402
from gencnn import cli  # noqa: E402

NETS = os.path.join("results", "sample_quality", "nets")
MEASURES = (("test_error_pct", "test error %", "%.2f"), ("lenet_fid", "LeNet-FID", "%.1f"),
            ("fid_x_real", "x real", "%.2f"), ("judge_accuracy", "judged %", "%.1f"),
            ("inception_score", "IS", "%.2f"), ("within_class_corr", "within-class corr", "%.2f"))


def arm_values(report, spec, nets):
    label, _, pairs = spec.rpartition("=")   # set names hold no "="
    real = report["baselines"]["real training digits"]["lenet_fid"]
    rows = []
    for pair in pairs.split(","):
        name, _, net = pair.partition(":")
        if name not in report["sets"]:
            raise cli.UserError("--arm %s: no set %s in the report" % (label, name))
        history = os.path.join(nets, net + "_history.json")
        if not os.path.isfile(history):
            raise cli.UserError("--arm %s: no history %s" % (label, history))
        m = report["sets"][name]
        rows.append({"test_error_pct": json.load(open(history))["final_test_error_pct"],
                     "lenet_fid": m["lenet_fid"], "fid_x_real": m["lenet_fid"] / real,
                     "judge_accuracy": 100 * m["judge_accuracy"],
                     "inception_score": m["inception_score"],
                     "within_class_corr": m["within_class_corr"]})
    return label, {key: np.array([r[key] for r in rows]) for key, _, _ in MEASURES}


def main(argv=None):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", required=True)
    parser.add_argument("--arm", action="append", required=True, metavar="LABEL=SET:NET,...")
    parser.add_argument("--compare", nargs=2, action="append", default=[],
                        metavar=("ARM_A", "ARM_B"))
    parser.add_argument("--nets", default=NETS, help="(default %(default)s)")
    parser.add_argument("--fid-title", default="LeNet-FID",
                        help="the FID column's title (the judge's net; default %(default)s)")
    args = parser.parse_args(argv)
    measures = [(key, args.fid_title if key == "lenet_fid" else title, fmt)
                for key, title, fmt in MEASURES]
    report = json.load(open(args.report))
    arms = dict(arm_values(report, spec, args.nets) for spec in args.arm)
    print("| arm | seeds | " + " | ".join(title for _, title, _ in measures) + " |")
    print("|---|---|" + "---|" * len(measures))
    for label, values in arms.items():
        cells = []
        for key, _, fmt in measures:
            v = values[key]
            if len(v) == 1:          # one net: no spread to give
                cells.append(fmt % v[0])
                continue
            cells.append((fmt + " ± " + fmt) % (v.mean(), v.std(ddof=1)) + " (" +
                         ", ".join(fmt % x for x in v) + ")")
        print("| %s | %d | %s |" % (label, len(values["lenet_fid"]), " | ".join(cells)))
    from scipy import stats
    for a, b in args.compare:
        for arm in (a, b):
            if arm not in arms:
                raise cli.UserError("--compare: no arm %r" % arm)
        for key, title, fmt in measures:
            t, p = stats.ttest_ind(arms[a][key], arms[b][key], equal_var=False)
            print(("%s vs %s, %s: " + fmt + " vs " + fmt + ", Welch t = %.2f, p = %.2g")
                  % (a, b, title, arms[a][key].mean(), arms[b][key].mean(), t, p))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
