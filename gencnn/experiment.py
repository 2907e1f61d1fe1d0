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
only the post-switch iterations. Every run is gencnn.two_stage's
TwoStageRunner in its own process with one OpenBLAS thread, `jobs` of them
side by side, given the protocol's iterations (switch, stop, start); the
per-epoch test errors come from its history.json.

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
import os
import sys
import time

import numpy as np

from gencnn import config, files, protocols, run_folder
from gencnn.cli import UserError
from gencnn.files import copy_atomic, write_atomic
from gencnn.reports import study as study_report

# arm key -> (solver suffix, needs GG's switch weights), in the order a seed's
# runs are planned (GG first: GG+DG starts from its switch weights). The arm
# keys name the run folders (<arm>_seed<N>); the aligned arm runs the default
# <net>_gg_dg (protocols.STAGE2_SOLVERS).
ARMS = collections.OrderedDict([
    ("gg", ("gg", False)), ("dg", ("dg", False))] +
    [("gg_dg_" + variant, (protocols.STAGE2_SOLVERS[variant], True))
     for variant in ("restart", "aligned")])


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


# -------------------------------------------------------------------- runs
def _train(options, resume, out_path, parent):
    """A run in its own process (multiprocessing target): TwoStageRunner with
    `options`, its output appended to `out_path`; exit status as the tools'
    (2 and one line for bad input or data)."""
    # A study killed however (kill -9 included) takes its training with it.
    files.die_with_parent(parent)
    fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import caffe
    caffe.set_mode_cpu()
    from gencnn import two_stage
    from gencnn.cli import run

    def main(argv):
        two_stage.TwoStageRunner(**options).run(resume=resume)
    sys.exit(run(main))


class Run(object):
    """One two_stage run of the study (an arm and a seed, or GG to the switch)."""

    def __init__(self, runner, arm, seed, to_switch=False):
        self.runner, self.arm, self.seed, self.to_switch = runner, arm, seed, to_switch
        self.name = ("gg_to_switch_seed%d" % seed) if to_switch else "%s_seed%d" % (arm, seed)
        self.work = os.path.join(runner.work_dir, self.name)
        self.kept = os.path.join(runner.repo, runner.spec.runs_dir, self.name)

    def done(self):
        if self.to_switch:
            return self.runner.switch_weights(self.seed) is not None
        return finished_history(os.path.join(self.kept, "history.json")) is not None

    def ready(self):
        return not ARMS[self.arm][1] or self.runner.switch_weights(self.seed) is not None

    def options(self):
        """TwoStageRunner's arguments for this run; schedule points are the
        protocol's iterations (GG+DG's epochs line up with DG's)."""
        spec = self.runner.spec
        switch = spec.protocol.switch_iter
        options = {"stage1": spec.solver_path(self.arm), "seed": self.seed,
                   "out_dir": self.work, "progress": False}
        if self.arm == "gg":
            options["keep_iters"] = [switch]
        if self.to_switch:
            options["stop_iter"] = switch
        if ARMS[self.arm][1]:
            options.update(weights=self.runner.switch_weights(self.seed), start_iter=switch)
        if spec.shuffle_per_seed:
            options["train_lmdb"] = self.runner.shuffled_lmdb(self.seed)
        return options

    def resume(self):
        """Resume only a run that has a checkpoint (one killed before its
        first is started afresh)."""
        folder = run_folder.RunFolder(self.work, "two_stage.log")
        return folder.holds_run(folder.load_state())

    def start(self):
        """Start the run in its own process (one OpenBLAS thread) from the
        repository folder, as Caffe reads the solvers' relative paths."""
        import multiprocessing
        if self.runner.spec.shuffle_per_seed:
            self.runner.make_shuffled_lmdb(self.seed)
        os.makedirs(self.runner.work_dir, exist_ok=True)
        resume = self.resume()
        self.runner.log("start %s%s" % (self.name, " (resume)" if resume else ""))
        process = multiprocessing.get_context("spawn").Process(
            target=_train, name=self.name,
            args=(self.options(), resume, os.path.join(self.runner.work_dir,
                                                       self.name + ".out"), os.getpid()))
        # The child reads these when it starts (the parent's OpenBLAS is loaded already).
        saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "GLOG_minloglevel")}
        os.environ.update(OPENBLAS_NUM_THREADS="1", GLOG_minloglevel="1")
        cwd = os.getcwd()
        try:
            os.chdir(self.runner.repo)
            process.start()
        finally:
            os.chdir(cwd)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key)
                else:
                    os.environ[key] = value
        return process

    def finish(self):
        """Copy the finished run's history, log and curves to the committed
        folder; for a GG re-run to the switch, record in the committed GG
        history whether it reproduced that run's per-epoch test errors."""
        if self.to_switch:
            kept = os.path.join(self.runner.repo, self.runner.spec.runs_dir,
                                "gg_seed%d" % self.seed, "history.json")
            gg = finished_history(kept)
            rerun = finished_history(os.path.join(self.work, "history.json"))
            if gg is not None and rerun is not None:
                new = {r["iter"]: r["test_error_pct"] for r in rerun["stages"]["stage1"]}
                old = {r["iter"]: r["test_error_pct"] for r in gg["stages"]["stage1"]}
                common = sorted(set(new) & set(old))
                diff = max(abs(new[i] - old[i]) for i in common) if common else None
                gg["rerun_to_switch"] = {"epochs_compared": len(common),
                                         "max_abs_diff_pct": diff, "identical": diff == 0.0}
                write_atomic(kept, json.dumps(gg, indent=1, sort_keys=True))
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


def finished_history(path):
    """The history.json of a finished run, or None (missing, unreadable, or
    without a final test error: such a run is redone)."""
    try:
        with open(path) as f:
            history = json.load(f)
        return history if history.get("final_test_error_pct") is not None else None
    except (OSError, ValueError, AttributeError):
        return None


class Runner(object):
    def __init__(self, spec, seeds=None, work_dir=None, jobs=1, repo=config.REPO_ROOT, log=None):
        """`seeds` None: the seeds of the study's finished runs (a report of
        what exists), or the study's default seeds when there are none."""
        self.spec, self.jobs, self.repo = spec, int(jobs), repo
        self.seeds = list(seeds) if seeds is not None else \
            self.finished_seeds() or list(spec.default_seeds)
        if any(seed < 0 for seed in self.seeds):
            raise UserError("seeds must be >= 0, got %s" % self.seeds)
        self.work_dir = os.path.abspath(work_dir or os.path.join(repo, "scratch", "runs",
                                                                 spec.name))
        self._log = log or (lambda msg: print(msg, flush=True))

    def log(self, message):
        self._log("%s %s" % (time.strftime("%Y-%m-%d %H:%M:%S"), message))

    def finished_seeds(self):
        """Seeds with a finished run of any arm in the committed folder."""
        folder = os.path.join(self.repo, self.spec.runs_dir)
        seeds = set()
        for name in os.listdir(folder) if os.path.isdir(folder) else ():
            arm, _, seed = name.rpartition("_seed")
            if arm in self.spec.arms and seed.isdigit() and finished_history(
                    os.path.join(folder, name, "history.json")) is not None:
                seeds.add(int(seed))
        return sorted(seeds)

    # ------------------------------------------------------------- paths
    def switch_weights(self, seed):
        """GG's weights at the switch, from its full run or a run to the
        switch (as the run recorded them); None when neither has them."""
        from gencnn.two_stage import kept_weights
        for run in ("gg_seed%d" % seed, "gg_to_switch_seed%d" % seed):
            path = kept_weights(os.path.join(self.work_dir, run), self.spec.protocol.switch_iter)
            if path:
                return path
        return None

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
            if needs_switch and gg.done() and self.switch_weights(seed) is None:
                todo.insert(0, Run(self, "gg", seed, to_switch=True))
            runs += todo
        return runs

    def run(self, poll=5.0):
        """Every run of the plan, `jobs` at a time; an interrupted study
        (Ctrl-C, an error) stops its runs before it returns."""
        running = {}
        try:
            self._run(poll, running)
        finally:
            for _, proc in running.values():
                if proc.is_alive():
                    proc.terminate()
            for _, proc in running.values():
                proc.join()

    def _run(self, poll, running):
        pending, failed = self.plan(), []
        self.log("%s: %d runs to do: %s" % (self.spec.name, len(pending),
                                             ", ".join(r.name for r in pending) or "none"))
        while pending or running:
            for name, (run, proc) in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del running[name]
                if proc.exitcode != 0:
                    failed.append(name)
                    self.log("FAILED %s (exit %d); see %s.out" % (
                        name, proc.exitcode, os.path.join(self.work_dir, name)))
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
                history = finished_history(os.path.join(run.kept, "history.json"))
                if history is not None:
                    found.setdefault(arm, {})[seed] = history
        return found

    def reproduction(self):
        """{seed: comparison} for the GG runs re-run to the switch, as
        recorded in their committed histories (Run.finish), so a fresh clone
        regenerates the same report."""
        out = {}
        for seed in self.seeds:
            gg = finished_history(os.path.join(self.repo, self.spec.runs_dir,
                                               "gg_seed%d" % seed, "history.json"))
            if gg is not None and "rerun_to_switch" in gg:
                out[str(seed)] = {key: gg["rerun_to_switch"][key] for key in
                                  ("epochs_compared", "max_abs_diff_pct", "identical")}
        return out

    def report(self):
        """Write the study's JSON, Markdown and curves from the finished runs
        (gencnn/reports/study.py)."""
        return study_report.write_report(self.spec, self.seeds, self.repo, self.histories(),
                                         self.reproduction())


