"""Reproduce the paper's Table 1: LeNet on MNIST by DG, GG and GG+DG.

Each run is a tools/two_stage.py subprocess (one OpenBLAS thread each, so two
run side by side on two cores). GG+DG is not trained twice: its stage 2 starts
from the GG run's epoch-16 snapshot (`--keep-epochs 16`) with
solvers/lenet_gg_dg.prototxt, and can start as soon as the GG run passes epoch
16. A seed sets the solvers' random_seed (weight initialization); the data
order is the LMDB's and is the same for every seed. Interrupted runs resume.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from gencnn import config
from gencnn.cli import write_atomic

PAPER = {"DG": 1.03, "GG": 0.85, "GG+DG": 0.78}
SWITCH_EPOCH = 16


def runs_for(seeds):
    """[(name, approach, seed, two_stage args)], GG before DG for each seed."""
    runs = []
    for seed in seeds:
        runs.append(("gg_seed%d" % seed, "GG", seed,
                     ["--stage1", "solvers/lenet_gg.prototxt", "--keep-epochs", str(SWITCH_EPOCH)]))
        runs.append(("dg_seed%d" % seed, "DG", seed, ["--stage1", "solvers/lenet_dg.prototxt"]))
        runs.append(("gg_dg_seed%d" % seed, "GG+DG", seed,
                     ["--stage1", "solvers/lenet_gg_dg.prototxt",
                      "--weights", None,    # filled in from the GG run
                      "--start-epoch", str(SWITCH_EPOCH)]))
    return runs


class Table1(object):
    def __init__(self, seeds, work_dir, jobs=2, log=print):
        self.seeds = list(seeds)
        self.work = os.path.abspath(work_dir)
        self.jobs = jobs
        self.log = log

    def run_dir(self, name):
        return os.path.join(self.work, name)

    def finished(self, name):
        path = os.path.join(self.run_dir(name), "state.json")
        return os.path.exists(path) and json.load(open(path)).get("done", False)

    def _ready(self, name, approach, seed):
        if approach != "GG+DG":
            return True
        return os.path.exists(os.path.join(self.run_dir("gg_seed%d" % seed),
                                           "epoch%d.caffemodel" % SWITCH_EPOCH))

    def _start(self, name, seed, args):
        out = self.run_dir(name)
        args = list(args)
        if "--weights" in args:
            args[args.index("--weights") + 1] = os.path.join(
                self.run_dir("gg_seed%d" % seed), "epoch%d.caffemodel" % SWITCH_EPOCH)
        cmd = [sys.executable, os.path.join(config.REPO_ROOT, "tools", "two_stage.py")] + args + \
            ["--seed", str(seed), "--out", out, "--no-progress"]
        if os.path.exists(os.path.join(out, "state.json")):
            cmd.append("--resume")
        os.makedirs(self.work, exist_ok=True)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        stdout = open(os.path.join(self.work, name + ".out"), "a")
        self.log("start %s%s" % (name, " (resume)" if "--resume" in cmd else ""))
        return subprocess.Popen(cmd, cwd=config.REPO_ROOT, env=env, stdout=stdout,
                                stderr=subprocess.STDOUT)

    def run(self):
        pending = [r for r in runs_for(self.seeds) if not self.finished(r[0])]
        running = {}
        while pending or running:
            for name, proc in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    if proc.returncode != 0:
                        raise RuntimeError("run %s failed (exit %d); see %s.out"
                                           % (name, proc.returncode, self.run_dir(name)))
                    self.log("finished %s" % name)
            for run in list(pending):
                if len(running) >= self.jobs:
                    break
                name, approach, seed, args = run
                if self._ready(name, approach, seed):
                    pending.remove(run)
                    running[name] = self._start(name, seed, args)
            if not running and pending:
                raise RuntimeError("no run can start: %s" % [r[0] for r in pending])
            time.sleep(5)

    # ---------------------------------------------------------------- report
    def collect(self):
        table = {"DG": [], "GG": [], "GG+DG": [], "seeds": self.seeds,
                 "wall_s": {"DG": [], "GG": [], "GG+DG": []}, "curves": {}}
        for name, approach, seed, _ in runs_for(self.seeds):
            path = os.path.join(self.run_dir(name), "history.json")
            if not self.finished(name) or not os.path.exists(path):
                table[approach].append(None)
                table["wall_s"][approach].append(None)
                continue
            history = json.load(open(path))
            table[approach].append(round(history["final_test_error_pct"], 4))
            table["wall_s"][approach].append(_wall_seconds(self.run_dir(name)))
            table["curves"][name] = history["stages"]
        return table

    def report(self, results_dir):
        table = self.collect()
        curves = table.pop("curves")
        os.makedirs(results_dir, exist_ok=True)
        write_atomic(os.path.join(results_dir, "table1.json"), json.dumps(table, indent=1) + "\n")
        runs = {}
        for name, stages in curves.items():
            runs[name] = stages
            keep = os.path.join(results_dir, "mnist_table1", name)
            os.makedirs(keep, exist_ok=True)
            for f in ("history.json", "two_stage.log", "curves.png"):
                src = os.path.join(self.run_dir(name), f)
                if os.path.exists(src):
                    shutil.copyfile(src, os.path.join(keep, f))
        if runs:
            plot_table1(runs, os.path.join(results_dir, "table1_curves.png"))
        write_atomic(os.path.join(results_dir, "table1.md"), markdown(table))
        return table


COLORS = {"DG": "tab:blue", "GG": "tab:orange", "GG+DG": "tab:green"}


def plot_table1(runs, path):
    """Test error per epoch, one colour per approach; and GG's ESS per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_err, ax_ess) = plt.subplots(1, 2, figsize=(11, 4))
    labelled = set()
    for name, stages in sorted(runs.items()):
        approach = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG"}[name.rsplit("_seed", 1)[0]]
        records = stages["stage1"] + stages.get("stage2", [])
        ax_err.plot([r["epoch"] for r in records], [r["test_error_pct"] for r in records],
                    color=COLORS[approach], alpha=0.8,
                    label=None if approach in labelled else approach)
        labelled.add(approach)
        if approach == "GG":
            ax_ess.plot([r["epoch"] for r in records], [r["train_ess"] for r in records],
                        color=COLORS["GG"], alpha=0.8)
    ax_err.set(xlabel="epoch", ylabel="test error (%)", yscale="log",
               title="LeNet on MNIST, one line per seed")
    ax_err.axvline(SWITCH_EPOCH, color="gray", linestyle=":", linewidth=1)
    ax_err.legend()
    ax_err.grid(True, which="both", alpha=0.3)
    ax_ess.set(xlabel="epoch", ylabel="ESS / batch (epoch mean)",
               title="GG: effective sample size of the importance weights")
    ax_ess.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _wall_seconds(run_dir):
    """From the first to the last line of the run's log (training + testing)."""
    lines = [l for l in open(os.path.join(run_dir, "two_stage.log")) if l.strip()]
    stamp = lambda line: time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))  # noqa
    return stamp(lines[-1]) - stamp(lines[0])


def mean_sd(values):
    done = [v for v in values if v is not None]
    if not done:
        return "—"
    if len(done) == 1:
        return "%.2f (1 run)" % done[0]
    return "%.2f ± %.2f" % (np.mean(done), np.std(done, ddof=1))


def markdown(table):
    lines = ["# Table 1 reproduced: LeNet on MNIST, test error (%)", "",
             "| approach | paper | this repo, mean ± sd over seeds | per seed (%s) | wall s per run |"
             % ", ".join(map(str, table["seeds"])), "|---|---|---|---|---|"]
    for approach in ("DG", "GG", "GG+DG"):
        values = table[approach]
        walls = [w for w in table["wall_s"][approach] if w is not None]
        lines.append("| %s | %.2f | %s | %s | %s |" % (
            approach, PAPER[approach], mean_sd(values),
            ", ".join("—" if v is None else "%.2f" % v for v in values),
            "%.0f" % np.mean(walls) if walls else "—"))
    lines += ["", "25 epochs of batch 64 (23,438 iterations); GG+DG = GG for 16 epochs, then DG "
              "from those weights at base_lr 0.003 for 9 epochs (its GG stage is the GG run's "
              "epoch-16 snapshot; its wall time counts only the DG stage). Error of the final "
              "model on the 10,000 test images. Seeds set random_seed (weight init); the data "
              "order is the same for all seeds. — = not finished.",
              "", "Curves: `table1_curves.png`; per-run logs and histories: `mnist_table1/`."]
    return "\n".join(lines) + "\n"
