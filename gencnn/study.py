"""The paper's three-way comparison (DG, GG, GG+DG) run with `caffe train`.

Each run is one `caffe train` of a generated solver with the seed and the
snapshot prefix overridden (the copy lives beside the snapshots). GG+DG is
the paper's protocol: its stage 1 is the GG run itself, and stage 2 is
`caffe train -solver <net>_gg_dg.prototxt -weights <GG snapshot at the
switch>`, so it costs only the post-switch iterations.

Resumable: a finished run leaves <out>/runs/<run>.json and is skipped; an
interrupted one restarts from its latest .solverstate (`caffe train
-snapshot`), its log appended to.
"""
import glob
import json
import os
import re
import subprocess

import numpy as np
from google.protobuf import text_format

from caffe.proto import caffe_pb2
from gencnn import caffe_log, config
from gencnn.cli import write_atomic

APPROACHES = ("dg", "gg", "gg_dg")
_TRAIN_ITER = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ")
_TRAIN_OUTPUT = re.compile(r"Train net output #\d+: (\S+) = ([-+0-9.eEnaif]+)")
LABELS = {"dg": "DG", "gg": "GG", "gg_dg": "GG+DG"}


def train_outputs(text):
    """{iteration: {output: value}} of the training net at display iterations
    (e.g. GG's "ess" on its training batch)."""
    outputs, current = {}, None
    for line in text.splitlines():
        start = _TRAIN_ITER.search(line)
        if start:
            current = outputs.setdefault(int(start.group(1)), {})
            continue
        out = _TRAIN_OUTPUT.search(line)
        if out and current is not None:
            current[out.group(1)] = float(out.group(2))
    return outputs


class StudyError(RuntimeError):
    """A run failed or its inputs are missing; the message is one line."""


def read_solver(path):
    solver = caffe_pb2.SolverParameter()
    with open(path) as f:
        text_format.Merge(f.read(), solver)
    return solver


class Study(object):
    """Runs of one net: solvers {approach: solver path relative to the repo}."""

    def __init__(self, solvers, out_dir, seeds, switch_iter, epoch_iters, caffe=None,
                 repo_root=config.REPO_ROOT):
        self.solvers = {k: read_solver(os.path.join(repo_root, v)) for k, v in solvers.items()}
        self.solver_paths = solvers
        self.out_dir = os.path.abspath(out_dir)
        self.seeds = list(seeds)
        self.switch_iter = switch_iter
        self.epoch_iters = float(epoch_iters)
        self.caffe = caffe or config.caffe_binary()
        self.repo_root = repo_root
        gg = self.solvers["gg"]
        if switch_iter % gg.snapshot != 0 or switch_iter >= gg.max_iter:
            raise StudyError("the GG solver snapshots every %d iterations, so no snapshot "
                             "falls on the switch at %d" % (gg.snapshot, switch_iter))
        for sub in ("runs", "logs", "snapshots"):
            os.makedirs(os.path.join(self.out_dir, sub), exist_ok=True)

    # ----------------------------------------------------------------- paths
    def run_name(self, approach, seed):
        return "%s_seed%d" % (approach, seed)

    def summary_path(self, approach, seed):
        return os.path.join(self.out_dir, "runs", self.run_name(approach, seed) + ".json")

    def prefix(self, approach, seed):
        return os.path.join(self.out_dir, "snapshots", self.run_name(approach, seed))

    def done(self, approach, seed):
        return os.path.exists(self.summary_path(approach, seed))

    # ------------------------------------------------------------------ runs
    def _latest_state(self, prefix, max_iter):
        states = []
        for path in glob.glob(prefix + "_iter_*.solverstate"):
            match = re.search(r"_iter_(\d+)\.solverstate$", path)
            if match and int(match.group(1)) < max_iter:
                states.append((int(match.group(1)), path))
        return max(states)[1] if states else None

    def _train(self, approach, seed, weights=None):
        name = self.run_name(approach, seed)
        solver = caffe_pb2.SolverParameter()
        solver.CopyFrom(self.solvers[approach])
        solver.random_seed = seed
        solver.snapshot_prefix = self.prefix(approach, seed)
        solver.net = os.path.join(self.repo_root, solver.net)
        solver_path = self.prefix(approach, seed) + ".solver.prototxt"
        write_atomic(solver_path, "# %s with random_seed and snapshot_prefix set by "
                     "gencnn/study.py\n" % self.solver_paths[approach] +
                     text_format.MessageToString(solver))
        cmd = [self.caffe, "train", "-solver", solver_path]
        state = self._latest_state(self.prefix(approach, seed), solver.max_iter)
        if state:
            cmd += ["-snapshot", state]
        elif weights:
            cmd += ["-weights", weights]
        log_path = os.path.join(self.out_dir, "logs", name + ".log.full")
        env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        with open(log_path, "a") as log:
            log.write("# %s\n" % " ".join(cmd))
            log.flush()
            proc = subprocess.run(cmd, cwd=self.repo_root, stdout=log,
                                  stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            raise StudyError("%s: caffe train failed (exit %d); see %s"
                             % (name, proc.returncode, log_path))
        return self.summarize(approach, seed, " ".join(cmd), weights)

    def summarize(self, approach, seed, command, weights):
        """Parse a finished run's log into <out>/runs/<run>.json."""
        name = self.run_name(approach, seed)
        max_iter = self.solvers[approach].max_iter
        log_path = os.path.join(self.out_dir, "logs", name + ".log.full")
        with open(log_path) as f:
            text = f.read()
        tests = {}
        for iteration, outputs in caffe_log.test_outputs(text):
            tests[iteration] = outputs          # a resumed run re-logs: keep the last
        if max_iter not in tests:
            raise StudyError("%s: no test output at the last iteration %d in %s"
                             % (name, max_iter, log_path))
        offset = self.switch_iter if approach == "gg_dg" else 0
        curve = [[(offset + it) / self.epoch_iters, 1.0 - out["accuracy"]]
                 for it, out in sorted(tests.items())]
        train = sorted(dict(caffe_log.train_losses(text)).items())
        summary = {"run": name, "approach": approach, "seed": seed,
                   "solver": self.solver_paths[approach], "command": command,
                   "weights": weights, "max_iter": max_iter,
                   "test_error": 1.0 - tests[max_iter]["accuracy"],
                   "test_curve": curve,
                   "train_loss": [[(offset + it) / self.epoch_iters, loss]
                                  for it, loss in train]}
        if approach == "gg":
            # On training batches: they are shuffled, while a test batch of a
            # class-sorted test set holds one class and makes the test-phase
            # ess and loss of the generative layer meaningless.
            train_out = train_outputs(text)
            summary["ess_at_switch"] = train_out.get(self.switch_iter, {}).get("ess")
            summary["train_ess"] = [[it / self.epoch_iters, out["ess"]]
                                    for it, out in sorted(train_out.items()) if "ess" in out]
        write_atomic(self.summary_path(approach, seed), json.dumps(summary, indent=1) + "\n")
        return summary

    def resummarize(self):
        """Re-parse the logs of every finished run (after a parser change)."""
        for approach, runs in self.results().items():
            for seed, old in runs.items():
                self.summarize(approach, seed, old["command"], old.get("weights"))

    def run(self, approach, seed, report=print):
        if self.done(approach, seed):
            report("%s: done already" % self.run_name(approach, seed))
            return
        weights = None
        if approach == "gg_dg":
            if not self.done("gg", seed):
                raise StudyError("gg_dg_seed%d needs gg_seed%d first" % (seed, seed))
            weights = "%s_iter_%d.caffemodel" % (self.prefix("gg", seed), self.switch_iter)
            if not os.path.exists(weights):
                raise StudyError("GG snapshot at the switch, %s, is missing" % weights)
        report("%s: training" % self.run_name(approach, seed))
        summary = self._train(approach, seed, weights)
        report("%s: test error %.4f" % (summary["run"], summary["test_error"]))

    def run_all(self, report=print):
        for seed in self.seeds:
            for approach in APPROACHES:
                self.run(approach, seed, report)

    # --------------------------------------------------------------- results
    def results(self):
        """{approach: {seed: run summary}} of the finished runs."""
        found = {}
        for approach in APPROACHES:
            for seed in self.seeds:
                if self.done(approach, seed):
                    with open(self.summary_path(approach, seed)) as f:
                        found.setdefault(approach, {})[seed] = json.load(f)
        return found


def mean_sd(values):
    values = np.asarray(values, np.float64)
    sd = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), sd


def plot_curves(results, png_path, title):
    """Test error against epoch, one colour per approach, one line per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = {"dg": "tab:blue", "gg": "tab:orange", "gg_dg": "tab:green"}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for approach in APPROACHES:
        for i, (seed, run) in enumerate(sorted(results.get(approach, {}).items())):
            curve = np.asarray(run["test_curve"])
            ax.plot(curve[:, 0], 100 * curve[:, 1], color=colours[approach],
                    linestyle=("-", "--", ":", "-.")[i % 4], marker=".",
                    label="%s seed %d" % (LABELS[approach], seed))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = png_path + ".tmp"
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)


def write_report(study, json_path, md_path, png_path, meta):
    """results JSON (errors per approach and seed), Markdown (mean +- sd) and
    curves PNG from the finished runs; `meta` describes the protocol."""
    results = study.results()
    errors = {a: {str(s): r["test_error"] for s, r in sorted(runs.items())}
              for a, runs in results.items()}
    summary = {}
    for approach, runs in errors.items():
        mean, sd = mean_sd(list(runs.values()))
        summary[approach] = {"mean": mean, "sd": None if np.isnan(sd) else sd,
                             "n": len(runs)}
    complete = all(study.done(a, s) for a in APPROACHES for s in study.seeds)
    data = dict(meta, seeds=study.seeds, complete=complete, test_error=errors,
                summary=summary,
                ess_at_switch={str(s): r.get("ess_at_switch")
                               for s, r in sorted(results.get("gg", {}).items())},
                curves={a: {str(s): r["test_curve"] for s, r in sorted(runs.items())}
                        for a, runs in results.items()})
    write_atomic(json_path, json.dumps(data, indent=1) + "\n")
    if results:
        plot_curves(results, png_path, meta.get("title", ""))

    lines = ["# %s" % meta.get("title", "Results"), "",
             "Generated by `%s` from the runs under `%s/`%s." % (
                 meta.get("command", "?"), os.path.relpath(study.out_dir, study.repo_root),
                 "" if complete else " (**incomplete: not every run has finished**)"), "",
             meta.get("protocol", ""), "",
             "Test error (%%) on the %s test images after the last iteration:" %
             meta.get("test_images", "?"), "",
             "| approach | " + " | ".join("seed %d" % s for s in study.seeds) +
             " | mean ± sd |",
             "|---|" + "---:|" * (len(study.seeds) + 1)]
    for approach in APPROACHES:
        runs = errors.get(approach, {})
        cells = ["%.2f" % (100 * runs[str(s)]) if str(s) in runs else "–"
                 for s in study.seeds]
        if approach in summary:
            stat = summary[approach]
            cell = "%.2f" % (100 * stat["mean"])
            cell += " ± %.2f" % (100 * stat["sd"]) if stat["sd"] is not None else " (n=1)"
        else:
            cell = "–"
        lines.append("| %s | %s | %s |" % (LABELS[approach], " | ".join(cells), cell))
    ess = [v for v in data["ess_at_switch"].values() if v is not None]
    if ess:
        lines += ["", "GG's effective sample size (fraction of the batch, section 3.2) on its "
                  "training batch at the switch, by seed: %s." % ", ".join("%.3f" % v
                                                                            for v in ess)]
    if results:
        lines += ["", "![test error curves](%s)" % os.path.relpath(
            png_path, os.path.dirname(os.path.abspath(md_path))), "",
            "Curves: test error every half epoch; GG+DG's starts at the switch from GG's "
            "weights."]
    write_atomic(md_path, "\n".join(lines) + "\n")
    return data
