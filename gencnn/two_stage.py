"""Two-stage training: GG pre-training, then DG fine-tuning (paper section 4.1).

Stage 1 runs the first solver (e.g. GenerativeLossLayer, base_lr 0.01) up to
the switch; stage 2 starts a second solver (SoftmaxWithLoss, base_lr 0.003)
from the stage-1 weights at the switch and runs to the end of the schedule.
The switch is a fixed epoch (the paper: 16 of 25 for LeNet, 45 of 70 for
ImageNet), or the first epoch whose mean effective sample size of the
generative importance weights falls below a threshold (section 3.2: switch
once the weights become skewed). With no stage 2 it is a plain training run
with the same logging, testing and resuming.

Epochs are counted in iterations of the training LMDB: epoch e ends at
iteration ceil(e * entries / batch_size). After every epoch, and at the end of
each stage, the model is tested on the whole test set (test_iter x test batch).

The run folder (state.json, checkpoints every `checkpoint_every` iterations,
resume, logs) is gencnn/run_folder.py's; a resume restores the newest
checkpoint of whichever stage was running and sees the same batches as an
uninterrupted run.
"""
import math
import os

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from gencnn import caffe_utils, multi_gpu, protocols, run_folder
from gencnn.reports import curves
from gencnn.cli import UserError
from gencnn.files import copy_atomic, write_atomic
from gencnn.data.lmdb_io import lmdb_fingerprint, scan_lmdb


def kept_weights(run_dir, iteration):
    """The weights a run in `run_dir` kept at (global) `iteration`
    (keep_iters / keep_epochs), or None: looked up in its state.json, not
    re-derived from a file name."""
    state = run_folder.RunFolder(run_dir, "two_stage.log").load_state()
    name = (state or {}).get("kept_weights", {}).get(str(iteration))
    path = os.path.join(run_dir, name) if name else None
    return path if path and os.path.exists(path) else None


class Stage(object):
    """One solver of the schedule, with its net and data facts.

    `train_lmdb` replaces the source of the net's TRAIN-phase Data layer (a
    per-seed shuffled copy of the training set, so seeds also change the data
    order); the edited net is written to `net_copy`, which the solver uses.
    """

    def __init__(self, index, solver_path, train_lmdb=None, net_copy=None):
        self.index = index
        self.solver_path = solver_path
        self.param = caffe_utils.read_solver(solver_path)
        self.net_path = caffe_utils.solver_net_path(self.param, os.getcwd())
        self.net = caffe_utils.read_net(self.net_path)
        self.net_file = self.net_path          # as written (net_path may become a copy)
        data = caffe_utils.train_data_layer(self.net)
        if train_lmdb:
            data.data_param.source = os.path.abspath(train_lmdb)
            self.net_text = "# %s with its TRAIN source set to %s by two_stage.py\n%s" % (
                self.net_path, train_lmdb, self.net)
            self.net_path = net_copy
        else:
            self.net_text = None
        self.source = data.data_param.source
        self.batch_size = data.data_param.batch_size
        if not os.path.isdir(self.source):
            raise UserError("%s: training LMDB %s does not exist (see tools/get_mnist.py)"
                            % (self.net_path, self.source))
        # Every entry read once, here: an LMDB that would abort Caffe (empty,
        # an image of another shape, a NaN pixel) is refused before the run.
        self.train_size = scan_lmdb(self.source).entries
        self.epoch_iters = self.train_size / float(self.batch_size)
        self.data_period = run_folder.data_period(self.train_size, self.batch_size)
        if not self.param.test_iter:
            raise UserError("%s has no test_iter: cannot test each epoch" % solver_path)
        # The whole test set every time (docs/training.md): test_iter batches cover
        # test_iter x batch images, which need not be the test LMDB's count.
        self.test_iters, self.test_note = self.param.test_iter[0], None
        test = [layer for layer in self.net.layer if layer.type == "Data" and any(
            rule.phase == caffe_pb2.TEST for rule in layer.include)]
        if len(test) == 1 and os.path.isdir(test[0].data_param.source):
            self.test_source = test[0].data_param.source
            count, batch = scan_lmdb(self.test_source).entries, test[0].data_param.batch_size
            whole = max(1, -(-count // batch))
            if whole != self.test_iters:
                self.test_note = ("testing the whole test set, %d images: %d batches of %d "
                                  "(the solver's test_iter %d covers %d)"
                                  % (count, whole, batch, self.test_iters,
                                     self.test_iters * batch))
                self.test_iters = whole
        else:
            self.test_source = None
        if self.test_source:
            # Train and test nets share their weights: images of another
            # shape abort Caffe at the first test, after an epoch of training.
            shapes = {path: scan_lmdb(path).shape for path in (self.source, self.test_source)}
            if len(set(shapes.values())) > 1:
                raise UserError("the training LMDB %s holds %s images, the test LMDB %s %s"
                                % (self.source, "x".join(map(str, shapes[self.source])),
                                   self.test_source,
                                   "x".join(map(str, shapes[self.test_source]))))

    def inputs(self):
        """Fingerprints of what this stage reads (run_folder: a resume with
        other inputs is refused)."""
        name = "stage %d " % self.index
        inputs = {name + "solver": run_folder.file_fingerprint(self.solver_path),
                  name + "net": run_folder.file_fingerprint(self.net_file),
                  "training LMDB": lmdb_fingerprint(self.source)}
        if self.test_source:
            inputs["test LMDB"] = lmdb_fingerprint(self.test_source)
        return inputs


class TwoStageRunner(object):
    """Stage 1 up to the switch, then stage 2 from its weights, in a run
    folder (gencnn/run_folder.py: state, checkpoints, resume, logs)."""

    # The configuration a resume must not change; the other options
    # (checkpoint_every, keep_epochs, progress) may.
    RESUME_KEYS = {"inputs": "inputs", "seed": "seed", "switch": "switch",
                   "start_epoch": "start epoch", "stop_iter": "stop"}

    def __init__(self, stage1, out_dir, stage2=None, switch=None, seed=None, weights=None,
                 start_epoch=0.0, keep_epochs=(), checkpoint_every=100, progress=True,
                 stop_epoch=None, train_lmdb=None, gpus=(), start_iter=None, keep_iters=(),
                 stop_iter=None):
        """`switch`: (kind, value), kind "epoch", "iter" or "ess" (the first
        epoch whose mean ESS falls below value). Points of the schedule are
        epochs (start_epoch, stop_epoch, keep_epochs) or, the same as
        iterations, start_iter, stop_iter, keep_iters; all become iterations
        here. Epochs and iterations are global: the run starts at start_epoch
        (numbering only: a fine-tune from weights taken at that point)."""
        self.folder = run_folder.RunFolder(out_dir, "two_stage.log")
        self.out_dir = self.folder.out_dir
        self.gpus = list(gpus)
        self.train_lmdb = train_lmdb
        self.stages = [self._stage(1, stage1)]
        self.seed = seed
        self.weights = weights
        self.checkpoint_every = int(checkpoint_every)
        self.progress = progress
        first = self.stages[0]
        # With G GPUs every iteration reads G batches (Caffe shards the data).
        self.epoch_iters = first.epoch_iters / max(1, len(self.gpus))
        self.start_epoch = float(start_epoch) if start_iter is None \
            else start_iter / self.epoch_iters
        self.total_iters = first.param.max_iter     # the whole schedule
        if stop_epoch is not None:
            stop_iter = self.epoch_end(stop_epoch)
        if stop_iter is not None:
            # Train only up to `stop_iter` of the schedule (e.g. GG to the
            # switch, to recreate its snapshot): the lr schedule is unchanged.
            if not 0 < stop_iter <= self.total_iters:
                raise UserError("the stop at epoch %g lies outside the %g epochs of %s" % (
                    self.epoch_of(stop_iter), self.epoch_of(self.total_iters), stage1))
            if stage2:
                raise UserError("a stop before the end is for one-solver runs (no stage 2)")
            self.total_iters = stop_iter
        self.stop_iter = stop_iter
        # Iterations whose weights are kept, and their file names.
        self.keep = {self.epoch_end(e): "epoch%g.caffemodel" % e for e in keep_epochs}
        for it in keep_iters:
            self.keep.setdefault(it, "epoch%g.caffemodel" % self.epoch_of(it))
        past = [it for it in self.keep if not 0 < it <= self.total_iters]
        if past:
            raise UserError("weights to keep (%s) lie outside the run's epochs %g to %g"
                            % (", ".join(self.keep[it] for it in sorted(past)),
                               self.start_epoch, self.epoch_of(self.total_iters)))
        self.switch = tuple(switch) if switch else None
        self.switch_at, self.switch_ess = None, None
        if self.switch:
            kind, value = self.switch
            if kind == "ess":
                self.switch_ess = float(value)
            else:
                self.switch_at = self.epoch_end(value) if kind == "epoch" else int(value)
        if weights and not os.path.isfile(weights):
            raise UserError("initial weights %s do not exist" % weights)
        if self.checkpoint_every < 1:
            raise UserError("checkpoints must be at least 1 iteration apart")
        if stage2:
            self.stages.append(self._stage(2, stage2))
            self._check_stage2()
        elif switch:
            raise UserError("a switch needs a stage-2 solver")
        if len(self.gpus) > 1 and self.switch_ess is not None:
            raise UserError("an ESS switch needs one device: with several GPUs the other "
                            "ranks cannot learn of the switch; switch at an epoch")

    # ------------------------------------------------------------- checks
    def _check_stage2(self):
        first, second = self.stages
        if self.switch is None:
            raise UserError("a stage-2 solver needs a switch (an epoch, or ess:T)")
        if self.switch_at is not None and not 0 < self.switch_at < self.total_iters:
            raise UserError("switch epoch %g (iteration %d) must lie between %g and the %g "
                            "epochs of %s" % (self.epoch_of(self.switch_at), self.switch_at,
                                              self.start_epoch,
                                              self.epoch_of(self.total_iters),
                                              first.solver_path))
        if self.switch_ess is not None:
            if not 0 < self.switch_ess <= 1:
                raise UserError("an ESS switch needs 0 < T <= 1, got %g" % self.switch_ess)
            tops = {top for layer in first.net.layer for top in layer.top}
            if "ess" not in tops:
                raise UserError("an ESS switch needs the stage-1 net %s to output 'ess' "
                                "(GenerativeLossLayer's second top)" % first.net_path)
        a, b = caffe_utils.learned_layers(first.net), caffe_utils.learned_layers(second.net)
        if a != b:
            missing = sorted(set(a.items()) ^ set(b.items()))
            raise UserError("stage-2 net %s does not match stage 1's learned layers: %s"
                            % (second.net_path, ", ".join("%s (%s)" % m for m in missing)))
        if second.batch_size != first.batch_size or second.source != first.source:
            raise UserError("stage 2 must train on the same data as stage 1")
        if self.switch_at is not None:      # an ESS switch is checked when it happens
            protocols.aligned_stage2(first.param, second.param, self.switch_at, self.total_iters)

    def validate(self):
        """What would otherwise fail only after the run folder is written: the
        nets' outputs two_stage reads, the test data, the initial weights."""
        for stage in self.stages:
            tops = {top for layer in stage.net.layer for top in layer.top}
            if "loss" not in tops:
                raise UserError("%s has no 'loss' output (two_stage logs the top named "
                                "'loss')" % stage.net_path)
            if "accuracy" not in tops:
                raise UserError("%s has no 'accuracy' output for the TEST phase"
                                % stage.net_path)
            for layer in stage.net.layer:
                phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
                if layer.type == "Data" and caffe_pb2.TEST in phases and \
                        os.path.abspath(layer.data_param.source) == \
                        os.path.abspath(stage.source):
                    raise UserError("%s: the TEST net reads the training LMDB %s"
                                    % (stage.net_path, stage.source))
        if self.weights:
            caffe_utils.check_weights(self.stages[0].net, self.weights)
        for stage in self.stages:
            caffe_utils.check_data_labels(stage.net, stage.net_path)

    def _stage(self, index, solver_path):
        return Stage(index, solver_path, self.train_lmdb,
                     self.folder.path("stage%d_net.prototxt" % index))

    def epoch_end(self, epoch):
        """Global iteration at which (absolute) epoch `epoch` ends."""
        return protocols.epoch_iteration(epoch - self.start_epoch, self.epoch_iters)

    def epoch_of(self, it):
        return self.start_epoch + it / self.epoch_iters

    def path(self, *parts):
        return self.folder.path(*parts)

    # ------------------------------------------------------------- solvers
    def _make_solver(self, stage, stage_iters, schedule=None):
        if stage.net_text is not None:
            write_atomic(stage.net_path, stage.net_text)
        # Testing and snapshots are driven from here: epochs are fractional.
        param = caffe_utils.solver_variant(
            stage.param, net=stage.net_path, max_iter=stage_iters, test_interval=2 ** 30,
            test_initialization=False, snapshot=0, snapshot_after_train=False,
            snapshot_prefix=self.path("snapshots", "stage%d" % stage.index), **(schedule or {}))
        if self.seed is not None:
            param.random_seed = self.seed
        solver_file = self.path("stage%d_solver.prototxt" % stage.index)
        write_atomic(solver_file, str(param))
        if self.gpus:
            multi_gpu.set_device(self.gpus, 0)
        return caffe.get_solver(solver_file)

    def _test(self, solver, stage):
        net = solver.test_nets[0]
        net.share_with(solver.net)
        means = run_folder.test_means(net, stage.test_iters)
        if "accuracy" not in means:
            raise UserError("test net of %s has no 'accuracy' output" % stage.solver_path)
        return means

    # -------------------------------------------------------------- state
    def _fresh_state(self):
        return {"stage": 1, "global_iter": 0, "checkpoint": None,
                "init_weights": os.path.abspath(self.weights) if self.weights else None,
                "switch_iter": None, "switch_reason": None, "done": False,
                "config": self.describe(), "history": {"stage1": [], "stage2": []}}

    def describe(self):
        return {"stages": [s.solver_path for s in self.stages], "seed": self.seed,
                "switch": None if not self.switch else ["ess", self.switch_ess]
                if self.switch_ess is not None else ["iter", self.switch_at],
                "start_epoch": self.start_epoch, "epoch_iters": self.epoch_iters,
                "total_iters": self.total_iters, "train_size": self.stages[0].train_size,
                "batch_size": self.stages[0].batch_size, "stop_iter": self.stop_iter,
                "train_lmdb": self.train_lmdb,
                "weights": os.path.abspath(self.weights) if self.weights else None,
                "inputs": self._inputs}

    # ---------------------------------------------------------------- run
    def run(self, resume=False):
        self._inputs = {}
        for stage in self.stages:
            self._inputs.update(stage.inputs())
        if self.weights:
            self._inputs["initial weights"] = run_folder.file_fingerprint(self.weights)
        state = self.folder.start(resume, self.describe(), self.RESUME_KEYS)
        if state is None:
            self.validate()
            state = self.folder.create(self._fresh_state())
        elif state["done"]:
            self.folder.check_outputs(state)
            self.folder.log("already finished; nothing to resume")
            return state
        with self.folder.progress(self.progress, self.total_iters, state["global_iter"]):
            for stage in self.stages[state["stage"] - 1:]:
                self._run_stage(stage, state)
        self.folder.finish(state, lambda: self.write_outputs(state))
        return state

    def _stage_iters(self, stage, state):
        if stage.index == 1:
            return state["switch_iter"] or self.switch_at or self.total_iters
        return self.total_iters - state["switch_iter"]

    def _run_stage(self, stage, state):
        """One stage in the run folder's step loop (RunFolder.train: step,
        log, test at each epoch end, checkpoint); a resume continues from the
        checkpoint."""
        offset = 0 if stage.index == 1 else state["switch_iter"]
        # For an ESS switch stage 1 may run to the end; the switch cuts it short.
        stage_iters = self._stage_iters(stage, state)
        schedule = None
        if stage.index == 2:
            schedule = protocols.aligned_stage2(self.stages[0].param, stage.param, offset,
                                      self.total_iters)
        solver = self._make_solver(stage, stage_iters, schedule)
        iters_log = self.path("iterations_stage%d.tsv" % stage.index)
        checkpoint = state["checkpoint"]
        restore = checkpoint if checkpoint and checkpoint["stage"] == stage.index else None
        if restore:
            self.folder.restore(solver, restore)
            run_folder.skip_batches(solver.net, solver.iter % stage.data_period)
            run_folder.truncate_tsv(iters_log, solver.iter)
            self.folder.log("resumed stage %d at iteration %d" % (stage.index, solver.iter))
        else:
            weights = state["init_weights"] if stage.index == 1 else \
                self.path(state["switch_weights"])
            if weights:
                for net in [solver.net] + list(solver.test_nets):
                    caffe_utils.load_weights(net, str(weights))
            self.folder.log("stage %d: %s (%s), %d iterations%s%s"
                            % (stage.index, stage.solver_path, os.path.basename(stage.net_path),
                               stage_iters, ", from %s" % weights if weights else "",
                               "; lr schedule aligned to the switch at iteration %d: %s"
                               % (offset, schedule) if schedule else ""))
            open(iters_log, "w").close()
            if stage.test_note:
                self.folder.log("stage %d: %s" % (stage.index, stage.test_note))
        # two rotating checkpoints, the stage's last (kept), its final weights
        # and the kept epochs' (weights only), iterations_stage*.tsv (~60 bytes a row)
        self.folder.reserve(solver, 3 + (1.0 + len(self.keep)) /
                            run_folder.CHECKPOINT_FLOATS_PER_WEIGHT,
                            60 * (stage_iters - solver.iter))
        workers = []
        if len(self.gpus) > 1:
            # Caffe keeps only a raw pointer to the NCCL object: held while stepping.
            workers, self._nccl = multi_gpu.start_workers(
                solver, self.path("stage%d_solver.prototxt" % stage.index), self.gpus,
                stage_iters, self.out_dir, restore)
        history = state["history"]["stage%d" % stage.index]
        rows = run_folder.rows_since(iters_log, history[-1]["stage_iter"] if history else 0)
        self.folder.train(solver, stage_iters, iters_log, rows,
                          _StageSteps(self, stage, solver, state, offset, stage_iters))
        for worker in workers:
            worker.join()
            if worker.exitcode != 0:
                raise UserError("GPU worker %s failed (exit %s)" % (worker.name, worker.exitcode))
        self.folder.copy_output(state, state["checkpoint"]["caffemodel"],
                                "stage%d_final.caffemodel" % stage.index)
        if stage.index == 1 and len(self.stages) == 2:
            state["switch_iter"] = offset + solver.iter
            state["switch_weights"] = "stage1_final.caffemodel"
            state["switch_reason"] = state["switch_reason"] or (
                "epoch %g" % self.switch[1] if self.switch[0] == "epoch"
                else "iteration %d" % self.switch_at)
            state["stage"] = 2
            self.folder.write_json("state.json", state)
            self.folder.log("switch at iteration %d (%s)"
                            % (state["switch_iter"], state["switch_reason"]))
        del solver  # release the data reader before another solver opens the LMDB

    def _epoch_record(self, solver, stage, global_iter, epoch, losses, ess, last):
        results = self._test(solver, stage)
        record = {"stage": stage.index, "iter": global_iter, "stage_iter": solver.iter,
                  "epoch": round(epoch, 4), "train_loss": float(np.mean(losses)),
                  "train_ess": float(np.nanmean(ess)) if not np.all(np.isnan(ess)) else None,
                  "test_accuracy": results["accuracy"],
                  "test_error_pct": 100.0 * (1.0 - results["accuracy"]),
                  "test_loss": results.get("loss"), "final": bool(last)}
        self.folder.log("stage %d epoch %.2f iter %d: train loss %.4f%s | test error %.2f%% "
                        "loss %s" % (stage.index, epoch, global_iter, record["train_loss"],
                                     "" if record["train_ess"] is None
                                     else " ess %.3f" % record["train_ess"],
                                     record["test_error_pct"],
                                     "-" if record["test_loss"] is None
                                     else "%.4f" % record["test_loss"]))
        if self.folder.bar is not None:
            self.folder.bar.set_postfix(stage=stage.index, epoch="%.1f" % epoch,
                                        loss="%.4f" % record["train_loss"],
                                        test_err="%.2f%%" % record["test_error_pct"])
        return record

    # ------------------------------------------------------------ outputs
    def write_outputs(self, state):
        result = {"config": state["config"], "switch_iter": state["switch_iter"],
                  "switch_reason": state["switch_reason"], "stages": state["history"]}
        finals = [r for r in state["history"]["stage2"] or state["history"]["stage1"] if r["final"]]
        result["final_test_error_pct"] = finals[-1]["test_error_pct"] if finals else None
        self.folder.write_json("history.json", result)
        curves.two_stage({"run": state["history"]}, self.path("curves.png"))
        self.folder.log("done: final test error %.2f%%" % result["final_test_error_pct"])


class _StageSteps(object):
    """What one stage of a TwoStageRunner gives RunFolder.train: a solver
    step and its row (iteration, train loss, ESS), the loss check, epochs
    counted globally from the run's start epoch, the epoch records (and an
    ESS switch), checkpoints (and the kept epochs' weights)."""

    def __init__(self, runner, stage, solver, state, offset, stage_iters):
        self.runner, self.stage, self.solver, self.state = runner, stage, solver, state
        self.offset, self.stage_iters = offset, stage_iters
        self.checkpoint_every = runner.checkpoint_every
        self.history = state["history"]["stage%d" % stage.index]
        self.has_ess = "ess" in solver.net.outputs
        self.switched = False

    def step(self):
        self.solver.step(1)
        blobs = self.solver.net.blobs
        loss = float(blobs["loss"].data.ravel()[0])
        ess = float(blobs["ess"].data.ravel()[0]) if self.has_ess else float("nan")
        return [self.solver.iter, loss, ess]

    def check(self, row):
        it, loss = row[0], row[1]
        if not math.isfinite(loss):
            raise self.runner.folder.diverged(self.state, self.offset + it, "train loss %s" % loss,
                                              "try a smaller base_lr")

    def is_epoch_end(self, it):
        return run_folder.is_epoch_end(self.offset + it, self.runner.epoch_iters,
                                       self.runner.start_epoch)

    def end_epoch(self, it, rows, last):
        runner, global_iter = self.runner, self.offset + it
        epoch = runner.start_epoch + global_iter / runner.epoch_iters
        record = runner._epoch_record(self.solver, self.stage, global_iter, epoch,
                                      [r[1] for r in rows], [r[2] for r in rows], last)
        self.history.append(record)
        if self.stage.index == 1 and runner.switch_ess is not None \
                and record["train_ess"] < runner.switch_ess and not last:
            self.switched = True
            self.state["switch_reason"] = "ess %.4f < %g at epoch %g" % (
                record["train_ess"], runner.switch_ess, round(epoch, 3))
            # Saved with the checkpoint below, so a resume ends stage 1
            # here too instead of training on past it.
            self.state["switch_iter"] = global_iter
        return record

    def checkpoint(self, it, due, record):
        """Checkpoint when due, at the switch or at a kept epoch; True at the
        switch (the stage ends there)."""
        runner, global_iter = self.runner, self.offset + it
        self.state["global_iter"] = global_iter
        kept = runner.keep.get(global_iter)
        if due or self.switched or kept is not None:
            if kept is not None:
                # recorded with the checkpoint (a resume may start from its
                # state); kept_weights() looks for the file itself
                self.state.setdefault("kept_weights", {})[str(global_iter)] = kept
            model = runner.folder.checkpoint(
                self.solver, self.state, "stage%d" % self.stage.index, stage=self.stage.index,
                keep=kept is not None or it == self.stage_iters or self.switched)
            if kept is not None:
                copy_atomic(model, runner.path(kept))
        return self.switched
