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

Resuming: every `checkpoint_every` iterations the solver state is snapshotted
and state.json (atomically replaced) records it together with the history.
`resume=True` restores the newest checkpoint of whichever stage was running,
truncates the per-iteration log to it, and replays the data layer's cursor
(Caffe does not save it) so the resumed run sees the same batches as an
uninterrupted one.
"""
import json
import math
import os

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from gencnn import caffe_utils
from gencnn.cli import UserError
from gencnn.files import copy_atomic, log_line, save_figure, write_atomic, write_json
from gencnn.data.lmdb_io import lmdb_count


def parse_switch(text):
    """'16' / 'epoch:16' -> ('epoch', 16.0); 'ess:0.3' -> ('ess', 0.3)."""
    kind, _, value = text.rpartition(":")
    kind = kind or "epoch"
    if kind not in ("epoch", "ess"):
        raise UserError("--switch must be EPOCH, epoch:EPOCH or ess:THRESHOLD, got %r" % text)
    try:
        number = float(value)
    except ValueError:
        raise UserError("--switch %r: %r is not a number" % (text, value))
    if kind == "ess" and not 0.0 < number <= 1.0:
        raise UserError("--switch ess:T needs 0 < T <= 1, got %g" % number)
    return kind, number


def gpu_support():
    """(CUDA, NCCL) of the pycaffe in use: a CPU-only build (ours) has neither.
    CUDA shows as the CUDA runtime or cuBLAS mapped into this process once
    caffe is imported; NCCL as caffe.NCCL.new_uid, which BVLC's _caffe.cpp
    defines only when built with USE_NCCL."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        maps = ""
    cuda = "libcudart" in maps or "libcublas" in maps
    nccl = hasattr(caffe, "NCCL") and hasattr(caffe.NCCL, "new_uid")
    return cuda, nccl


def check_gpus(gpus):
    """Fail fast, in one line, when this Caffe cannot train on `gpus`."""
    if not gpus:
        return
    cuda, nccl = gpu_support()
    where = os.path.dirname(os.path.dirname(os.path.abspath(caffe.__file__)))
    if not cuda:
        raise UserError("--gpus needs a Caffe built with CUDA; the one in use (%s) is "
                        "CPU-only: see docs/scaling.md" % where)
    if len(gpus) > 1 and not nccl:
        raise UserError("--gpus with %d GPUs needs a Caffe built with NCCL (USE_NCCL := 1); "
                        "the one in use (%s) has none: see docs/scaling.md" % (len(gpus), where))


def set_device(gpus, rank):
    caffe.set_mode_gpu()
    caffe.set_device(gpus[rank])
    if len(gpus) > 1:
        caffe.set_solver_count(len(gpus))
        caffe.set_solver_rank(rank)
        caffe.set_multiprocess(True)


def join_nccl(solver, uid):
    """Join the NCCL clique `uid`: take rank 0's weights, then all-reduce the
    gradients every iteration (per layer when layer_wise_reduce is set)."""
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    solver.add_callback(nccl)
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    return nccl


def _gpu_worker(solver_file, gpus, rank, uid, stage_iters, restore):
    """Rank > 0 of a multi-GPU stage (a separate process): step in lockstep."""
    set_device(gpus, rank)
    solver = caffe.get_solver(solver_file)
    if restore:
        solver.restore(restore)
    nccl = join_nccl(solver, uid)   # referenced until the steps are done
    solver.step(stage_iters - solver.iter)
    del nccl


def skip_batches(net, count):
    """Advance `net`'s Data layers by `count` batches: Caffe does not save the
    LMDB cursor, so a resumed run replays it to see the batches an
    uninterrupted one would."""
    names = [name for name, layer in zip(net._layer_names, net.layers) if layer.type == "Data"]
    for _ in range(count):
        for name in names:
            net.forward(start=name, end=name)


def keep_name(epoch):
    """File name of the weights kept at `epoch` (--keep-epochs): epoch16.caffemodel."""
    return "epoch%g.caffemodel" % epoch


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
        self.train_size = lmdb_count(self.source)
        self.epoch_iters = self.train_size / float(self.batch_size)
        # Caffe's LMDB cursor wraps around: the batch sequence repeats with this period.
        self.data_period = self.train_size // math.gcd(self.train_size, self.batch_size)
        if not self.param.test_iter:
            raise UserError("%s has no test_iter: cannot test each epoch" % solver_path)


class TwoStageRunner(object):
    def __init__(self, stage1, out_dir, stage2=None, switch=None, seed=None, weights=None,
                 start_epoch=0.0, keep_epochs=(), checkpoint_every=100, progress=True,
                 stop_epoch=None, train_lmdb=None, gpus=()):
        self.out_dir = os.path.abspath(out_dir)
        self.gpus = list(gpus)
        self.train_lmdb = train_lmdb
        self.stages = [self._stage(1, stage1)]
        self.seed = seed
        self.weights = weights
        self.start_epoch = float(start_epoch)
        self.keep_epochs = sorted(set(float(e) for e in keep_epochs))
        self.checkpoint_every = int(checkpoint_every)
        self.progress = progress
        first = self.stages[0]
        # With G GPUs every iteration reads G batches (Caffe shards the data).
        self.epoch_iters = first.epoch_iters / max(1, len(self.gpus))
        self.total_iters = first.param.max_iter     # the whole schedule
        if stop_epoch is not None:
            # Train only up to `stop_epoch` of the schedule (e.g. GG to the
            # switch, to recreate its snapshot): the lr schedule is unchanged.
            stop = self.epoch_end(stop_epoch)
            if not 0 < stop <= self.total_iters:
                raise UserError("--stop-epoch %g lies outside the %g epochs of %s" % (
                    stop_epoch, self.total_iters / self.epoch_iters, stage1))
            if stage2:
                raise UserError("--stop-epoch is for one-solver runs (no --stage2)")
            self.total_iters = stop
        self.stop_epoch = stop_epoch
        # Iterations whose weights are kept as epoch<E>.caffemodel.
        self.keep_iters = {self.epoch_end(e): e for e in self.keep_epochs}
        self.switch = switch
        if weights and not os.path.isfile(weights):
            raise UserError("--weights %s does not exist" % weights)
        if self.checkpoint_every < 1:
            raise UserError("--checkpoint-every must be >= 1")
        if stage2:
            self.stages.append(self._stage(2, stage2))
            self._check_stage2()
        elif switch:
            raise UserError("a switch needs --stage2")
        if len(self.gpus) > 1 and switch and switch[0] == "ess":
            raise UserError("--switch ess:T needs one device: with several GPUs the other "
                            "ranks cannot learn of the switch; use --switch-epoch")

    # ------------------------------------------------------------- checks
    def _check_stage2(self):
        first, second = self.stages
        if self.switch is None:
            raise UserError("--stage2 needs --switch-epoch E or --switch ess:T")
        kind, value = self.switch
        total_epochs = self.start_epoch + self.total_iters / self.epoch_iters
        if kind == "epoch" and not self.start_epoch < value < total_epochs:
            raise UserError("switch epoch %g must lie between %g and the %g epochs of %s"
                            % (value, self.start_epoch, total_epochs, first.solver_path))
        if kind == "ess":
            tops = {top for layer in first.net.layer for top in layer.top}
            if "ess" not in tops:
                raise UserError("--switch ess:T needs the stage-1 net %s to output 'ess' "
                                "(GenerativeLossLayer's second top)" % first.net_path)
        a, b = caffe_utils.learned_layers(first.net), caffe_utils.learned_layers(second.net)
        if a != b:
            missing = sorted(set(a.items()) ^ set(b.items()))
            raise UserError("stage-2 net %s does not match stage 1's learned layers: %s"
                            % (second.net_path, ", ".join("%s (%s)" % m for m in missing)))
        if second.batch_size != first.batch_size or second.source != first.source:
            raise UserError("stage 2 must train on the same data as stage 1")

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

    def _stage(self, index, solver_path):
        return Stage(index, solver_path, self.train_lmdb,
                     os.path.join(self.out_dir, "stage%d_net.prototxt" % index))

    def switch_iter(self):
        kind, value = self.switch
        if kind == "epoch":
            return self.epoch_end(value)
        return None        # decided while training

    def epoch_end(self, epoch):
        """Global iteration at which (absolute) epoch `epoch` ends."""
        return int(math.ceil((epoch - self.start_epoch) * self.epoch_iters - 1e-9))

    # --------------------------------------------------------------- files
    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    def _write_json(self, name, obj):
        write_json(self.path(name), obj)

    def log(self, message):
        log_line(self.path("two_stage.log"), message, self._bar)

    # ------------------------------------------------------------- solvers
    def _make_solver(self, stage, stage_iters):
        if stage.net_text is not None:
            write_atomic(stage.net_path, stage.net_text)
        # Testing and snapshots are driven from here: epochs are fractional.
        param = caffe_utils.solver_variant(
            stage.param, net=stage.net_path, max_iter=stage_iters, test_interval=2 ** 30,
            test_initialization=False, snapshot=0, snapshot_after_train=False,
            snapshot_prefix=self.path("snapshots", "stage%d" % stage.index))
        if self.seed is not None:
            param.random_seed = self.seed
        solver_file = self.path("stage%d_solver.prototxt" % stage.index)
        write_atomic(solver_file, str(param))
        if self.gpus:
            set_device(self.gpus, 0)
        solver = caffe.get_solver(solver_file)
        return solver, param

    def _test(self, solver, stage):
        net = solver.test_nets[0]
        net.share_with(solver.net)
        totals = {}
        for _ in range(stage.param.test_iter[0]):
            outputs = net.forward()
            for key, value in outputs.items():
                totals[key] = totals.get(key, 0.0) + float(np.asarray(value).ravel()[0])
        means = {k: v / stage.param.test_iter[0] for k, v in totals.items()}
        if "accuracy" not in means:
            raise UserError("test net of %s has no 'accuracy' output" % stage.solver_path)
        return means

    # -------------------------------------------------------------- state
    def _fresh_state(self):
        return {"stage": 1, "stage_iter": 0, "global_iter": 0, "solverstate": None,
                "init_weights": os.path.abspath(self.weights) if self.weights else None, "switch_iter": None, "switch_reason": None,
                "done": False, "config": self.describe(),
                "history": {"stage1": [], "stage2": []}}

    def describe(self):
        return {"stages": [s.solver_path for s in self.stages], "seed": self.seed,
                "switch": list(self.switch) if self.switch else None,
                "start_epoch": self.start_epoch, "epoch_iters": self.epoch_iters,
                "total_iters": self.total_iters, "train_size": self.stages[0].train_size,
                "batch_size": self.stages[0].batch_size, "stop_epoch": self.stop_epoch,
                "train_lmdb": self.train_lmdb,
                "weights": os.path.abspath(self.weights) if self.weights else None}

    def _inside(self, path):
        """A path in state.json: relative to the run folder, so a copied run
        resumes from its own snapshots (old absolute entries still resolve)."""
        return os.path.join(self.out_dir, path)

    def _checkpoint(self, solver, state, keep=False):
        solver.snapshot()
        prefix = os.path.join("snapshots", "stage%d_iter_%d" % (state["stage"], solver.iter))
        previous = state.get("solverstate")
        state["solverstate"] = prefix + ".solverstate"
        state["stage_iter"] = solver.iter
        self._write_json("state.json", state)
        if previous and previous != state["solverstate"] and previous not in state.get("kept", []):
            for ext in (".solverstate", ".caffemodel"):
                path = self._inside(previous[: -len(".solverstate")] + ext)
                if os.path.exists(path):
                    os.remove(path)
        if keep:
            state.setdefault("kept", []).append(state["solverstate"])
            self._write_json("state.json", state)
        return self._inside(prefix + ".caffemodel")

    # ---------------------------------------------------------------- run
    # Options that must not change between a run and its --resume; the others
    # (--checkpoint-every, --keep-epochs, --no-progress) may.
    RESUME_OPTIONS = (("stages", "--stage1/--stage2"), ("seed", "--seed"),
                      ("switch", "--switch/--switch-epoch"), ("start_epoch", "--start-epoch"),
                      ("stop_epoch", "--stop-epoch"), ("train_lmdb", "--train-lmdb"),
                      ("weights", "--weights"))

    def _load_state(self, state_file):
        try:
            with open(state_file) as f:
                state = json.load(f)
            state["config"]["stages"]
        except (ValueError, KeyError, TypeError, OSError) as err:
            raise UserError("%s is unreadable (%s): remove the folder to start over"
                            % (state_file, str(err).splitlines()[0] or type(err).__name__))
        return state

    @staticmethod
    def _started(state):
        """True once a run has a checkpoint: before that it blocks nothing."""
        return bool(state.get("solverstate") or state.get("global_iter") or state.get("done")
                    or state.get("stage", 1) != 1)

    def _check_same_options(self, saved):
        mine = self.describe()
        for key, option in self.RESUME_OPTIONS:
            if key in saved and key in mine and saved[key] != mine[key]:
                raise UserError("--resume with a different %s than the run in %s (%r, now %r):"
                                " resume with the original options or use another --out"
                                % (option, self.out_dir, saved[key], mine[key]))

    def run(self, resume=False):
        self._bar = None
        state_file = self.path("state.json")
        state = self._load_state(state_file) if os.path.exists(state_file) else None
        if state is not None and not self._started(state):
            # A start that failed before its first checkpoint (e.g. Caffe
            # aborted): it leaves nothing to resume and must not block a rerun.
            state = None
        if resume and state is not None:
            self._check_same_options(state["config"])
            if state["done"]:
                self.log("already finished; nothing to resume")
                return state
        elif resume:
            raise UserError("nothing to resume in %s (no run with a checkpoint)" % self.out_dir)
        elif state is not None:
            raise UserError("%s already holds a run: use --resume or another --out"
                            % self.out_dir)
        else:
            self.validate()
            os.makedirs(self.path("snapshots"), exist_ok=True)
            state = self._fresh_state()
            self._write_json("state.json", state)
        if self.progress:
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_iters, initial=state["global_iter"],
                             unit="it", dynamic_ncols=True, mininterval=1.0)
        try:
            while not state["done"]:
                self._run_stage(self.stages[state["stage"] - 1], state)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        self.write_outputs(state)
        return state

    def _stage_iters(self, stage, state):
        if stage.index == 1:
            switch = state["switch_iter"] or (self.switch_iter() if self.switch else None)
            return switch if switch else self.total_iters
        return self.total_iters - state["switch_iter"]

    def _run_stage(self, stage, state):
        offset = 0 if stage.index == 1 else state["switch_iter"]
        # For an ESS switch stage 1 may run to the end; the switch cuts it short.
        stage_iters = self._stage_iters(stage, state)
        solver, param = self._make_solver(stage, stage_iters)
        iters_log = self.path("iterations_stage%d.tsv" % stage.index)
        if state["solverstate"] and state["stage"] == stage.index:
            solver.restore(str(self._inside(state["solverstate"])))
            skip_batches(solver.net, solver.iter % stage.data_period)
            self._truncate_tsv(iters_log, solver.iter)
            self.log("resumed stage %d at iteration %d" % (stage.index, solver.iter))
        else:
            weights = state["init_weights"] if stage.index == 1 else \
                self._inside(state["switch_weights"])
            if weights:
                solver.net.copy_from(str(weights))
                for net in solver.test_nets:
                    net.copy_from(str(weights))
            self.log("stage %d: %s (%s), %d iterations%s"
                     % (stage.index, stage.solver_path, os.path.basename(stage.net_path),
                        stage_iters, ", from %s" % weights if weights else ""))
            open(iters_log, "w").close()
        workers = self._start_workers(solver, stage, stage_iters, state) \
            if len(self.gpus) > 1 else []
        history = state["history"]["stage%d" % stage.index]
        epoch_losses, epoch_ess = self._epoch_sums(iters_log, history)
        has_ess = "ess" in solver.net.outputs
        with open(iters_log, "a") as tsv:
            while solver.iter < stage_iters:
                solver.step(1)
                it = solver.iter
                loss = float(solver.net.blobs["loss"].data.ravel()[0])
                ess = float(solver.net.blobs["ess"].data.ravel()[0]) if has_ess else float("nan")
                tsv.write("%d\t%.7g\t%.7g\n" % (it, loss, ess))
                tsv.flush()   # what is logged has happened, even after a kill -9
                epoch_losses.append(loss)
                epoch_ess.append(ess)
                global_iter = offset + it
                if self._bar is not None:
                    self._bar.update(1)
                epoch = self.start_epoch + global_iter / self.epoch_iters
                at_epoch_end = global_iter == self.epoch_end(math.floor(epoch + 1e-9)) \
                    and global_iter > 0
                last = it == stage_iters
                switched = False
                if at_epoch_end or last:
                    tsv.flush()
                    record = self._epoch_record(solver, stage, global_iter, epoch,
                                                epoch_losses, epoch_ess, last)
                    history.append(record)
                    epoch_losses, epoch_ess = [], []
                    if stage.index == 1 and self.switch and self.switch[0] == "ess" \
                            and record["train_ess"] < self.switch[1] and not last:
                        switched = True
                        state["switch_reason"] = "ess %.4f < %g at epoch %g" % (
                            record["train_ess"], self.switch[1], round(epoch, 3))
                        # Saved with the checkpoint below, so a resume ends
                        # stage 1 here too instead of training on past it.
                        state["switch_iter"] = global_iter
                state["global_iter"] = global_iter
                kept_epoch = self.keep_iters.get(global_iter)
                if it % self.checkpoint_every == 0 or at_epoch_end or last or switched \
                        or kept_epoch is not None:
                    tsv.flush()
                    model = self._checkpoint(solver, state, keep=kept_epoch is not None
                                             or last or switched)
                    if kept_epoch is not None:
                        self._keep_copy(model, keep_name(kept_epoch))
                if switched:
                    break
        for worker in workers:
            worker.join()
            if worker.exitcode != 0:
                raise UserError("GPU worker %s failed (exit %s)" % (worker.name, worker.exitcode))
        final_model = self.path("snapshots", "stage%d_iter_%d.caffemodel"
                                % (stage.index, solver.iter))
        self._keep_copy(final_model, "stage%d_final.caffemodel" % stage.index)
        if stage.index == 1 and len(self.stages) == 2:
            state["switch_iter"] = offset + solver.iter
            state["switch_weights"] = "stage1_final.caffemodel"
            state["switch_reason"] = state["switch_reason"] or "epoch %g" % self.switch[1]
            state["stage"], state["solverstate"], state["stage_iter"] = 2, None, 0
            self.log("switch at iteration %d (%s)" % (state["switch_iter"], state["switch_reason"]))
        else:
            state["done"] = True
        self._write_json("state.json", state)
        del solver  # release the data reader before another solver opens the LMDB

    def _start_workers(self, solver, stage, stage_iters, state):
        """Several GPUs, as BVLC's python/train.py: one process per GPU, joined
        by NCCL (gradients summed, then averaged, every iteration). This
        process is rank 0 and does all testing and checkpointing; ranks 1.. only
        step, starting from rank 0's weights (NCCL broadcasts them)."""
        import multiprocessing
        uid = caffe.NCCL.new_uid()
        restore = self._inside(state["solverstate"]) \
            if state["solverstate"] and state["stage"] == stage.index else None
        context = multiprocessing.get_context("spawn")   # no CUDA state across a fork
        workers = []
        for rank in range(1, len(self.gpus)):
            worker = context.Process(
                target=_gpu_worker, name="rank%d" % rank,
                args=(self.path("stage%d_solver.prototxt" % stage.index), self.gpus, rank, uid,
                      stage_iters, restore))
            worker.start()
            workers.append(worker)
        # Caffe keeps only a raw pointer to the NCCL object: hold it while stepping.
        self._nccl = join_nccl(solver, uid)
        return workers

    def _keep_copy(self, model, name):
        copy_atomic(model, self.path(name))

    def _epoch_record(self, solver, stage, global_iter, epoch, losses, ess, last):
        results = self._test(solver, stage)
        record = {"stage": stage.index, "iter": global_iter, "stage_iter": solver.iter,
                  "epoch": round(epoch, 4), "train_loss": float(np.mean(losses)),
                  "train_ess": float(np.nanmean(ess)) if not np.all(np.isnan(ess)) else None,
                  "test_accuracy": results["accuracy"],
                  "test_error_pct": 100.0 * (1.0 - results["accuracy"]),
                  "test_loss": results.get("loss"), "final": bool(last)}
        self.log("stage %d epoch %.2f iter %d: train loss %.4f%s | test error %.2f%% loss %s"
                 % (stage.index, epoch, global_iter, record["train_loss"],
                    "" if record["train_ess"] is None else " ess %.3f" % record["train_ess"],
                    record["test_error_pct"],
                    "-" if record["test_loss"] is None else "%.4f" % record["test_loss"]))
        if self._bar is not None:
            self._bar.set_postfix(stage=stage.index, epoch="%.1f" % epoch,
                                  loss="%.4f" % record["train_loss"],
                                  test_err="%.2f%%" % record["test_error_pct"])
        return record

    @staticmethod
    def _truncate_tsv(path, last_iter):
        if not os.path.exists(path):
            return
        keep = [line for line in open(path) if line.strip() and int(line.split("\t")[0]) <= last_iter]
        write_atomic(path, "".join(keep))

    @staticmethod
    def _epoch_sums(path, history):
        """Losses and ESS of the iterations since the last recorded epoch."""
        done = history[-1]["stage_iter"] if history else 0
        losses, ess = [], []
        if os.path.exists(path):
            for line in open(path):
                it, loss, e = line.rstrip("\n").split("\t")
                if int(it) > done:
                    losses.append(float(loss))
                    ess.append(float(e))
        return losses, ess

    # ------------------------------------------------------------ outputs
    def write_outputs(self, state):
        result = {"config": state["config"], "switch_iter": state["switch_iter"],
                  "switch_reason": state["switch_reason"], "stages": state["history"]}
        finals = [r for r in state["history"]["stage2"] or state["history"]["stage1"] if r["final"]]
        result["final_test_error_pct"] = finals[-1]["test_error_pct"] if finals else None
        self._write_json("history.json", result)
        plot_curves({"run": state["history"]}, self.path("curves.png"))
        self.log("done: final test error %.2f%%" % result["final_test_error_pct"])


def plot_curves(runs, path, title=None):
    """Test error and train loss per epoch; runs = {label: {"stage1": [...], "stage2": [...]}}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_err, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for label, history in runs.items():
        for key, style in (("stage1", "-"), ("stage2", "--")):
            records = history.get(key) or []
            if not records:
                continue
            epochs = [r["epoch"] for r in records]
            name = label if key == "stage1" else "%s (stage 2)" % label
            ax_err.plot(epochs, [r["test_error_pct"] for r in records], style, label=name)
            ax_loss.plot(epochs, [r["train_loss"] for r in records], style, label=name)
    ax_err.set(xlabel="epoch", ylabel="test error (%)", yscale="log")
    ax_loss.set(xlabel="epoch", ylabel="train loss (epoch mean)")
    ax_err.legend(fontsize=8)
    ax_err.grid(True, which="both", alpha=0.3)
    ax_loss.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
