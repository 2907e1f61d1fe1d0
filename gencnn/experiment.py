"""One experiment runner for the paper's comparison: DG, GG and GG+DG.

A study is a net's protocol (gencnn.protocols.Protocol: solvers, epoch size,
switch, the paper's numbers) run for several seeds and several arms:

    dg              DG for the whole schedule
    gg              GG for the whole schedule; its weights at the switch are kept
    gg_dg_aligned   GG+DG(aligned): stage 2 = <net>_gg_dg.prototxt, the default
                    stage-2 solver, from GG's switch weights (DG's lr decays at
                    the same global iterations as DG)
    gg_dg_restart   GG+DG(restart): stage 2 = <net>_gg_dg_restart.prototxt (its
                    lr schedule restarts at the switch: the literal reading)

GG+DG's stage 1 is the GG run itself (its snapshot at the switch), so it costs
only the post-switch iterations. Every run is a tools/two_stage.py subprocess
with one OpenBLAS thread, `jobs` of them side by side; the per-epoch test
errors come from two_stage's history.json.

Resumable at two levels: an interrupted run resumes from its last checkpoint
(two_stage --resume, in the git-ignored work folder), and a finished run's
history is copied to the study's committed folder, where a later session (a
fresh clone) finds it done. A GG run that is done but whose switch weights are
gone (fresh clone) is re-run up to the switch only (`gg_to_switch`), and the
report says whether it reproduced the committed per-epoch errors exactly.

Seeds set the solvers' random_seed; with `shuffle_per_seed` each seed also
trains on its own shuffled copy of the training LMDB (data order varies too).
"""
import collections
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from gencnn import config, protocols
from gencnn.cli import UserError
from gencnn.files import copy_atomic, save_figure, write_atomic

# arm key -> (solver suffix, needs GG's switch weights), in the order a seed's
# runs are planned (GG first: GG+DG starts from its switch weights). The arm
# keys name the run folders (<arm>_seed<N>); the aligned arm runs the default
# <net>_gg_dg (protocols.STAGE2_SOLVERS).
ARMS = collections.OrderedDict([
    ("gg", ("gg", False)), ("dg", ("dg", False))] +
    [("gg_dg_" + variant, (protocols.STAGE2_SOLVERS[variant], True))
     for variant in ("restart", "aligned")])
COLORS = {"dg": "tab:blue", "gg": "tab:orange", "gg_dg_restart": "tab:green",
          "gg_dg_aligned": "tab:red"}


class StudySpec(object):
    """What differs between studies: the protocol, the arms' labels, where
    results go and the shape of the summary JSON."""

    def __init__(self, name, protocol, labels, runs_dir, json_path, md_path, png_path,
                 comparisons, shuffle_per_seed, layout, title, notes="", default_seeds=(1,)):
        self.name, self.protocol, self.labels = name, protocol, labels
        self.arms = list(labels)
        self.runs_dir = runs_dir            # committed: <run>/history.json, two_stage.log
        self.json_path, self.md_path, self.png_path = json_path, md_path, png_path
        self.comparisons = comparisons      # [(label, label)] for Welch's t-test
        self.shuffle_per_seed = shuffle_per_seed
        self.layout = layout                # "flat" (table1.json) or "arms" (cifar10.json)
        self.title, self.notes = title, notes
        self.default_seeds = list(default_seeds)

    def train_lmdb(self, repo=config.REPO_ROOT):
        """The training LMDB named by the DG net."""
        from gencnn import caffe_utils
        solver = caffe_utils.read_solver(os.path.join(repo, self.solver_path("dg")))
        net = caffe_utils.read_net(caffe_utils.solver_net_path(solver, repo))
        return os.path.join(repo, caffe_utils.train_data_layer(net).data_param.source)

    def solver_path(self, arm):
        """Relative to the runner's folder (the repository), as Caffe reads it."""
        return os.path.join("solvers", "%s.prototxt"
                            % self.protocol.solver_name(ARMS[arm][0]))


_R = "results"
STUDIES = collections.OrderedDict([
    ("table1", StudySpec(
        "table1", protocols.LENET_PROTOCOL,
        collections.OrderedDict([("dg", "DG"), ("gg", "GG"), ("gg_dg_restart", "GG+DG"),
                                 ("gg_dg_aligned", "GG+DG(aligned)")]),
        runs_dir=os.path.join(_R, "mnist_table1"), json_path=os.path.join(_R, "table1.json"),
        md_path=os.path.join(_R, "table1.md"), png_path=os.path.join(_R, "table1_curves.png"),
        comparisons=[("GG+DG", "DG"), ("GG+DG", "GG"), ("GG+DG(aligned)", "DG"),
                     ("GG+DG(aligned)", "GG")],
        shuffle_per_seed=False, layout="flat", default_seeds=(1, 2, 3, 4, 5),
        title="Table 1 reproduced: LeNet on MNIST, test error (%)",
        notes="25 epochs of batch 64 (23,438 iterations). GG+DG = GG for 16 epochs (the GG "
              "run's epoch-16 weights), then DG at base_lr 0.003 for 9 epochs: GG+DG is the "
              "`restart` schedule (solvers/lenet_gg_dg_restart.prototxt: the stage-1 `inv` "
              "schedule restarted, 0.003 -> 0.0019), GG+DG(aligned) continues DG's decay "
              "from the switch (solvers/lenet_gg_dg.prototxt, the default: 0.003 -> "
              "0.0024). Seeds set random_seed (weight init); the data order is the LMDB's, "
              "the same for every seed. Wall time of GG+DG counts only its DG stage.")),
    ("cifar10", StudySpec(
        "cifar10", protocols.CIFAR10_PROTOCOL,
        collections.OrderedDict([("dg", "DG"), ("gg", "GG"),
                                 ("gg_dg_aligned", "GG+DG(aligned)"),
                                 ("gg_dg_restart", "GG+DG(restart)")]),
        runs_dir=os.path.join(_R, "cifar10", "runs"), json_path=os.path.join(_R, "cifar10.json"),
        md_path=os.path.join(_R, "cifar10.md"), png_path=os.path.join(_R, "cifar10_curves.png"),
        comparisons=[("GG+DG(aligned)", "DG"), ("GG+DG(restart)", "DG"),
                     ("GG+DG(aligned)", "GG+DG(restart)")],
        shuffle_per_seed=True, layout="arms", default_seeds=(1, 2, 3, 4, 5),
        title="CIFAR-10 study v2: DG vs GG vs GG+DG (cifar10_quick), test error (%)",
        notes="Caffe's cifar10_quick reference schedule: 10 epochs of batch 100 (4,000 "
              "iterations at lr 0.001, then 1,000 at 0.0001). GG+DG switches at 45/70 of "
              "training as the paper's ImageNet runs (epoch 6.43, iteration 3,215) and runs "
              "DG from GG's weights there at base_lr 0.0003 for 1,785 iterations: "
              "`aligned` (solvers/cifar10_quick_gg_dg.prototxt, the default) decays x0.1 "
              "at global iteration 4,000 as DG does, `restart` "
              "(solvers/cifar10_quick_gg_dg_restart.prototxt) never decays. Each seed "
              "sets random_seed and trains on its own shuffled copy of the training LMDB "
              "(data order varies with the seed). Data: the "
              "JPEG re-encoding of CIFAR-10 (../shared/data/cifar10), mean image "
              "subtracted, no augmentation.")),
])


def study(name):
    if name not in STUDIES:
        raise UserError("unknown study %r (known: %s)" % (name, ", ".join(STUDIES)))
    return STUDIES[name]


# ------------------------------------------------------------------- stats
def mean_sd_ci(values):
    """(mean, sd, half-width of the 95% t interval) of the finished values."""
    from scipy import stats
    done = np.asarray([v for v in values if v is not None], np.float64)
    if done.size == 0:
        return None, None, None
    if done.size == 1:
        return float(done[0]), None, None
    sd = float(done.std(ddof=1))
    half = float(stats.t.ppf(0.975, done.size - 1) * sd / math.sqrt(done.size))
    return float(done.mean()), sd, half


def welch_p(a, b):
    """Two-sided p of Welch's t-test (unequal variances), None below 2 + 2 runs."""
    from scipy import stats
    a = [v for v in a if v is not None]
    b = [v for v in b if v is not None]
    if len(a) < 2 or len(b) < 2:
        return None
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def wall_seconds(log_path, max_gap=600):
    """Seconds a run spent, from its two_stage.log time stamps; gaps longer
    than `max_gap` (the run was down between sessions) are not counted."""
    stamps = []
    for line in open(log_path):
        try:
            stamps.append(time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")))
        except ValueError:
            continue
    return float(sum(d for d in np.diff(stamps) if d <= max_gap)) if stamps else None


# -------------------------------------------------------------------- runs
def switch_epoch(protocol):
    return protocol.switch_iter / float(protocol.epoch_iters)


class Run(object):
    """One two_stage.py run of the study (an arm and a seed, or GG to the switch)."""

    def __init__(self, runner, arm, seed, to_switch=False):
        self.runner, self.arm, self.seed, self.to_switch = runner, arm, seed, to_switch
        self.name = ("gg_to_switch_seed%d" % seed) if to_switch else "%s_seed%d" % (arm, seed)
        self.work = os.path.join(runner.work_dir, self.name)
        self.kept = os.path.join(runner.repo, runner.spec.runs_dir, self.name)

    def done(self):
        if self.to_switch:
            return os.path.exists(self.runner.switch_weights(self.seed))
        return os.path.exists(os.path.join(self.kept, "history.json"))

    def ready(self):
        return not ARMS[self.arm][1] or os.path.exists(self.runner.switch_weights(self.seed))

    def command(self):
        spec = self.runner.spec
        # The switch as an epoch that lands exactly on the switch iteration, so
        # GG+DG's epochs line up with DG's (3215 / 500 = 6.43, not 45/70 x 10).
        switch = "%r" % switch_epoch(spec.protocol)
        args = ["--stage1", spec.solver_path(self.arm), "--seed", str(self.seed),
                "--out", self.work, "--no-progress"]
        if self.arm == "gg":
            args += ["--keep-epochs", switch]
        if self.to_switch:
            args += ["--stop-epoch", switch]
        if ARMS[self.arm][1]:
            args += ["--weights", self.runner.switch_weights(self.seed),
                     "--start-epoch", switch]
        if spec.shuffle_per_seed:
            args += ["--train-lmdb", self.runner.shuffled_lmdb(self.seed)]
        if os.path.exists(os.path.join(self.work, "state.json")):
            args.append("--resume")
        return [sys.executable, os.path.join(config.REPO_ROOT, "tools", "two_stage.py")] + args

    def start(self):
        if self.runner.spec.shuffle_per_seed:
            self.runner.make_shuffled_lmdb(self.seed)
        os.makedirs(self.runner.work_dir, exist_ok=True)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", GLOG_minloglevel="1")
        cmd = self.command()
        self.out = open(os.path.join(self.runner.work_dir, self.name + ".out"), "a")
        self.runner.log("start %s%s" % (self.name, " (resume)" if "--resume" in cmd else ""))
        return subprocess.Popen(cmd, cwd=self.runner.repo, env=env, stdout=self.out,
                                stderr=subprocess.STDOUT)

    def finish(self):
        """Copy the finished run's history, log and curves to the committed folder."""
        self.out.close()
        if self.to_switch:
            return
        os.makedirs(self.kept, exist_ok=True)
        extra = {}
        if self.arm == "gg":
            extra["ess_at_switch"] = self.runner.ess_at_switch(self.work)
        for name in ("two_stage.log", "curves.png", "history.json"):   # history last: done
            src = os.path.join(self.work, name)
            if name == "history.json":
                history = json.load(open(src))
                history.update(extra)
                write_atomic(os.path.join(self.kept, name), json.dumps(history, indent=1,
                                                                       sort_keys=True))
            elif os.path.exists(src):
                copy_atomic(src, os.path.join(self.kept, name))


class Runner(object):
    def __init__(self, spec, seeds, work_dir=None, jobs=1, repo=config.REPO_ROOT, log=None):
        self.spec, self.seeds, self.jobs, self.repo = spec, list(seeds), int(jobs), repo
        self.work_dir = os.path.abspath(work_dir or os.path.join(repo, "results", "runs",
                                                                 spec.name))
        self._log = log or (lambda msg: print(msg, flush=True))

    def log(self, message):
        self._log("%s %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), message))

    # ------------------------------------------------------------- paths
    def switch_weights(self, seed):
        """GG's weights at the switch: from its full run, or a run to the switch."""
        from gencnn.two_stage import keep_name
        name = keep_name(switch_epoch(self.spec.protocol))
        for run in ("gg_seed%d" % seed, "gg_to_switch_seed%d" % seed):
            path = os.path.join(self.work_dir, run, name)
            if os.path.exists(path):
                return path
        return os.path.join(self.work_dir, "gg_seed%d" % seed, name)

    def shuffled_lmdb(self, seed):
        return "%s_seed%d" % (self.spec.train_lmdb(self.repo).rstrip("/"), seed)

    def make_shuffled_lmdb(self, seed):
        """A copy of the training LMDB in a seed's own random order."""
        from gencnn.data import lmdb_io
        path = self.shuffled_lmdb(seed)
        if os.path.isdir(path):
            return path
        source = self.spec.train_lmdb(self.repo)
        if not os.path.isdir(source):
            raise UserError("%s missing: create the dataset first" % source)
        self.log("writing %s (training set in seed %d's order)" % (path, seed))
        lmdb_io.shuffled_copy(source, path, seed)
        return path

    def ess_at_switch(self, run_dir, window=100):
        """GG's mean ESS (fraction of the batch) over the `window` training
        iterations before the switch, from its per-iteration log."""
        tsv = os.path.join(run_dir, "iterations_stage1.tsv")
        if not os.path.exists(tsv):
            return None
        switch = self.spec.protocol.switch_iter
        ess = [float(line.split("\t")[2]) for line in open(tsv)
               if switch - window < int(line.split("\t")[0]) <= switch]
        return float(np.mean(ess)) if ess else None

    # --------------------------------------------------------------- plan
    def plan(self):
        """The runs still to do, in order: per seed GG (or GG to the switch,
        when GG is done but its switch weights are gone), DG, then GG+DG."""
        runs = []
        for seed in self.seeds:
            arms = [a for a in ARMS if a in self.spec.arms]
            todo = [Run(self, arm, seed) for arm in arms]
            todo = [r for r in todo if not r.done()]
            needs_switch = any(ARMS[r.arm][1] for r in todo)
            gg = Run(self, "gg", seed)
            if needs_switch and gg.done() and not os.path.exists(self.switch_weights(seed)):
                todo.insert(0, Run(self, "gg", seed, to_switch=True))
            runs += todo
        return runs

    def run(self, poll=5.0):
        pending, running, failed = self.plan(), {}, []
        self.log("%s: %d runs to do: %s" % (self.spec.name, len(pending),
                                             ", ".join(r.name for r in pending) or "none"))
        while pending or running:
            for name, (run, proc) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                if proc.returncode != 0:
                    failed.append(name)
                    run.out.close()
                    self.log("FAILED %s (exit %d); see %s.out" % (
                        name, proc.returncode, os.path.join(self.work_dir, name)))
                    continue
                run.finish()
                self.log("finished %s" % name)
                self.report()
            for run in list(pending):
                if len(running) >= self.jobs:
                    break
                if run.ready():
                    pending.remove(run)
                    running[run.name] = (run, run.start())
            if not running and pending:
                blocked = ", ".join(r.name for r in pending)
                raise UserError("no run can start (%s)%s" % (
                    blocked, "; failed: %s" % ", ".join(failed) if failed else ""))
            time.sleep(poll)
        self.report()
        if failed:
            raise UserError("runs failed: %s" % ", ".join(failed))

    # ------------------------------------------------------------- report
    def histories(self):
        """{arm: {seed: history}} of the finished (committed) runs."""
        found = {}
        for arm in self.spec.arms:
            for seed in self.seeds:
                run = Run(self, arm, seed)
                if run.done():
                    found.setdefault(arm, {})[seed] = json.load(
                        open(os.path.join(run.kept, "history.json")))
        return found

    def reproduction(self):
        """For each seed re-run to the switch: does GG reproduce its committed
        per-epoch test errors exactly?"""
        out = {}
        for seed in self.seeds:
            path = os.path.join(self.work_dir, "gg_to_switch_seed%d" % seed, "history.json")
            kept = os.path.join(self.repo, self.spec.runs_dir, "gg_seed%d" % seed,
                                "history.json")
            if not (os.path.exists(path) and os.path.exists(kept)):
                continue
            new = {r["iter"]: r["test_error_pct"] for r in json.load(open(path))["stages"]["stage1"]}
            old = {r["iter"]: r["test_error_pct"] for r in json.load(open(kept))["stages"]["stage1"]}
            common = sorted(set(new) & set(old))
            diff = max(abs(new[i] - old[i]) for i in common) if common else None
            out[str(seed)] = {"epochs_compared": len(common), "max_abs_diff_pct": diff,
                              "identical": diff == 0.0}
        return out

    def summary(self):
        histories = self.histories()
        labels = self.spec.labels
        errors, walls = {}, {}
        for arm, label in labels.items():
            runs = histories.get(arm, {})
            errors[label] = [round(runs[s]["final_test_error_pct"], 4) if s in runs else None
                             for s in self.seeds]
            walls[label] = []
            for s in self.seeds:
                log = os.path.join(self.repo, self.spec.runs_dir, "%s_seed%d" % (arm, s),
                                   "two_stage.log")
                walls[label].append(wall_seconds(log) if s in runs and os.path.exists(log)
                                    else None)
        stats = {}
        for label, values in errors.items():
            mean, sd, half = mean_sd_ci(values)
            stats[label] = {"mean": mean, "sd": sd, "ci95": None if half is None else
                            [mean - half, mean + half], "n": sum(v is not None for v in values)}
        pvalues = {"%s vs %s" % (a, b): welch_p(errors[a], errors[b])
                   for a, b in self.spec.comparisons}
        ess = {str(s): h.get("ess_at_switch") for s, h in histories.get("gg", {}).items()}
        complete = all(v is not None for vs in errors.values() for v in vs)
        return {"errors": errors, "walls": walls, "stats": stats, "welch_p": pvalues,
                "ess_at_switch": ess, "complete": complete, "histories": histories,
                "reproduction": self.reproduction()}

    def report(self):
        """Write the study's JSON, Markdown and curves from the finished runs."""
        data = self.summary()
        spec, repo = self.spec, self.repo
        protocol = spec.protocol
        meta = {"seeds": self.seeds, "welch_p": data["welch_p"], "complete": data["complete"],
                "summary": data["stats"], "ess_at_switch": data["ess_at_switch"],
                "switch_iter": protocol.switch_iter, "switch_epoch": protocol.switch_epoch,
                "max_iter": protocol.max_iter,
                "solvers": {spec.labels[a]: spec.solver_path(a) for a in spec.arms},
                "command": "python tools/run_study.py %s --seeds %s" % (
                    spec.name, ",".join(map(str, self.seeds)))}
        if data["reproduction"]:
            meta["gg_rerun_to_switch"] = data["reproduction"]
        if spec.layout == "flat":
            out = dict(data["errors"], wall_s=data["walls"], **meta)
        else:
            out = dict(arms=data["errors"], wall_s=data["walls"], **meta)
        write_atomic(os.path.join(repo, spec.json_path), json.dumps(out, indent=1) + "\n")
        write_atomic(os.path.join(repo, spec.md_path), self.markdown(data, meta))
        if data["histories"]:
            plot_study(data["histories"], spec, os.path.join(repo, spec.png_path))
        return out

    def markdown(self, data, meta):
        spec = self.spec
        paper = spec.protocol.paper
        fmt = lambda v: "—" if v is None else "%.2f" % v   # noqa: E731
        lines = ["# %s" % spec.title, "",
                 "Generated by `%s`%s." % (meta["command"], "" if data["complete"] else
                                          " (**incomplete: — = not finished yet**)"), "",
                 "| arm | paper | mean ± sd | 95%% interval | per seed (%s) | wall s per run |"
                 % ", ".join(map(str, self.seeds)), "|---|---|---|---|---|---|"]
        for label, values in data["errors"].items():
            st = data["stats"][label]
            walls = [w for w in data["walls"][label] if w is not None]
            if st["mean"] is None:
                cell = "—"
            elif st["sd"] is None:
                cell = "%.2f (1 run)" % st["mean"]
            else:
                cell = "%.2f ± %.2f" % (st["mean"], st["sd"])
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                label, fmt(paper.get(label)), cell,
                "—" if st["ci95"] is None else "%.2f – %.2f" % tuple(st["ci95"]),
                ", ".join(fmt(v) for v in values), "%.0f" % np.mean(walls) if walls else "—"))
        lines += ["", "Welch's t-test (two-sided, unequal variances) on the per-seed errors:", ""]
        for pair, p in data["welch_p"].items():
            lines.append("- %s: p = %s" % (pair, "— (fewer than 2 runs each)" if p is None
                                           else "%.3g" % p))
        ess = {s: v for s, v in data["ess_at_switch"].items() if v is not None}
        if ess:
            lines += ["", "GG's effective sample size (fraction of the batch, section 3.2) over "
                      "the 100 training iterations before the switch, by seed: %s." % ", ".join(
                          "%s: %.3f" % kv for kv in sorted(ess.items()))]
        for seed, rep in sorted(data["reproduction"].items()):
            lines.append("" if seed != sorted(data["reproduction"])[0] else "")
            lines.append("GG seed %s re-run to the switch (its weights were not kept): %d "
                         "per-epoch test errors compared with the committed run, %s." % (
                             seed, rep["epochs_compared"], "identical" if rep["identical"]
                             else "max difference %.2f points" % rep["max_abs_diff_pct"]))
        lines += ["", spec.notes, "",
                  "Curves: `%s`; per-run histories and logs: `%s/`." % (
                      os.path.basename(spec.png_path),
                      os.path.relpath(spec.runs_dir, os.path.dirname(spec.md_path)))]
        return "\n".join(lines) + "\n"


def plot_study(histories, spec, path):
    """Test error per epoch, one colour per arm, one line per seed; GG's ESS."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_err, ax_ess) = plt.subplots(1, 2, figsize=(11, 4))
    for arm, runs in histories.items():
        for i, (seed, history) in enumerate(sorted(runs.items())):
            records = history["stages"]["stage1"] + history["stages"].get("stage2", [])
            ax_err.plot([r["epoch"] for r in records], [r["test_error_pct"] for r in records],
                        color=COLORS[arm], alpha=0.7, label=None if i else spec.labels[arm])
            if arm == "gg":
                ax_ess.plot([r["epoch"] for r in records],
                            [r["train_ess"] for r in records], color=COLORS[arm], alpha=0.7)
    ax_err.axvline(spec.protocol.switch_epoch, color="gray", linestyle=":", linewidth=1)
    ax_err.set(xlabel="epoch", ylabel="test error (%)", yscale="log",
               title="%s, one line per seed" % spec.protocol.title)
    ax_err.legend(fontsize=8)
    ax_err.grid(True, which="both", alpha=0.3)
    ax_ess.set(xlabel="epoch", ylabel="ESS / batch (epoch mean)",
               title="GG: effective sample size of the importance weights")
    ax_ess.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
