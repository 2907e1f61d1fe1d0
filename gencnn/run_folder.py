"""A training run's folder: what two_stage and generative_learning share.

A run folder holds state.json (the run's configuration, its per-epoch history
and its newest checkpoint; atomically replaced), snapshots/ (Caffe's
.solverstate and .caffemodel of each checkpoint, plus the loop's own files),
a per-iteration TSV, a time-stamped log and, once the run is finished,
history.json and curves.png. The training loops (TwoStageRunner,
GenerativeLearner) keep only what is theirs: the solver steps, what they
record per iteration and per epoch, and their outputs.

One resume policy (RunFolder.start):
- a folder without a checkpoint holds no run (a start that failed before its
  first checkpoint, e.g. Caffe aborted): a plain start begins afresh there,
  `resume` finds nothing to resume;
- a folder with a checkpoint holds a run: a plain start is refused; `resume`
  first checks that the configuration is the run's (the loop names which
  keys must not change; its inputs, the solvers, nets, LMDBs and weights,
  are compared by content fingerprints, so the same file by another path is
  no change), then continues from the checkpoint, or says the run is
  finished;
- the folder is locked (an OS lock held for the process's life: a second
  runner is refused, a killed one leaves no stale lock);
- a divergence (a non-finite loss) stops the run in one line, keeping the
  last good checkpoint; `done` is written last, after every output, so a
  run killed while writing them completes them when resumed.

Checkpoints are rotated: a new one removes the previous one's files unless
that was kept (a stage's end, a kept epoch). Paths in state.json are relative
to the folder, and a restore reads the weights of the folder's own snapshot
(not the absolute path Caffe stores in the .solverstate), so a copied or
moved run resumes from its own files. Each checkpoint records the SHA-256 of
its files, checked before a resume restores it (a damaged one is one line
naming the file, not Caffe's abort, unless an older kept checkpoint is
intact: the resume falls back to it); outputs copied from a checkpoint (a
stage's final weights) are checked, and copied again, when a finished run is
resumed.

Epochs: epoch e of E iterations ends at iteration ceil(e * E) (a fraction of
a batch counts as a batch): protocols.epoch_iteration, the one conversion.
"""
import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os

import numpy as np

from google.protobuf.message import DecodeError

from caffe.proto import caffe_pb2
from gencnn.caffe_utils import check_weights
from gencnn.cli import UserError
from gencnn.data.lmdb_io import lmdb_count, same_fingerprint
from gencnn.files import (atomic_output, check_disk, copy_atomic, log_line, write_atomic,
                          write_json)
from gencnn.protocols import epoch_iteration


# ---------------------------------------------------------------- epochs
def is_epoch_end(it, epoch_iters, start_epoch=0.0):
    """Does iteration `it` (counted from `start_epoch`) end a whole epoch?"""
    epoch = start_epoch + it / epoch_iters
    return it > 0 and it == epoch_iteration(math.floor(epoch + 1e-9) - start_epoch, epoch_iters)


def data_period(train_size, batch_size):
    """Caffe's LMDB cursor wraps around: the batch sequence repeats after
    this many iterations."""
    return train_size // math.gcd(train_size, batch_size)


def skip_batches(net, count):
    """Advance `net`'s Data layers by `count` batches: Caffe does not save the
    LMDB cursor, so a resumed run replays it to see the batches an
    uninterrupted one would."""
    names = [name for name, layer in zip(net._layer_names, net.layers) if layer.type == "Data"]
    for _ in range(count):
        for name in names:
            net.forward(start=name, end=name)


def whole_test_iters(test_lmdb, test_batch):
    """Test iterations that cover every image of `test_lmdb` (runs test on
    the whole test set; the last batch wraps around)."""
    return max(1, int(math.ceil(lmdb_count(test_lmdb) / float(test_batch))))


def test_means(net, iters):
    """Mean of each output of `net` over `iters` forward passes (its test set)."""
    totals = {}
    for _ in range(iters):
        outputs = net.forward()
        for key, value in outputs.items():
            totals[key] = totals.get(key, 0.0) + float(np.asarray(value).ravel()[0])
    return {key: value / iters for key, value in totals.items()}


# ------------------------------------------------------------------- TSV
def read_tsv(path):
    """The per-iteration rows of `path` (lists of floats), in file order.

    Rows are appended and flushed one at a time, so a kill can tear only
    the last one: a last line without its newline or numbers is dropped
    (the iteration is repeated by the resume). A bad row before the end is
    not a torn write: UserError naming the file and line."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    # after the final newline: b"" (a complete file) or the torn row
    for number, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            row = [float(v) for v in line.decode("ascii").split("\t")]
        except (UnicodeDecodeError, ValueError):
            row = None
        if row is None or (rows and len(row) != len(rows[0])) or not math.isfinite(row[0]):
            raise UserError("%s: line %d is not a row of numbers (the file is damaged: "
                            "remove the run folder to start over)" % (path, number))
        rows.append(row)
    return rows


def truncate_tsv(path, last_iter):
    """Drop the per-iteration rows after `last_iter` (a resume repeats them),
    and a row torn by a kill."""
    if not os.path.exists(path):
        return
    write_atomic(path, "".join("\t".join("%.17g" % v for v in row) + "\n"
                               for row in read_tsv(path) if row[0] <= last_iter))


def rows_since(path, done):
    """The per-iteration rows (as floats) after iteration `done`."""
    return [row for row in read_tsv(path) if row[0] > done]


def file_fingerprint(path):
    """SHA-256 of a file's bytes (a solver, a net, weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha256 %s" % digest.hexdigest()[:16]


def text_fingerprint(text):
    return "sha256 %s" % hashlib.sha256(text.encode()).hexdigest()[:16]


def _upgrade_two_stage(state):
    """two_stage's state.json before this module, in today's terms: the
    checkpoint was "solverstate" and "stage_iter", the switch and the stop
    epochs (now iterations), so that such a run still resumes."""
    old = state.pop("solverstate")
    state["checkpoint"] = old and {
        "iter": state.pop("stage_iter"), "stage": state["stage"], "solverstate": old,
        "caffemodel": old[:-len(".solverstate")] + ".caffemodel", "files": []}
    config = state["config"]
    start, epoch_iters = config.get("start_epoch", 0.0), config["epoch_iters"]
    if config.get("switch") and config["switch"][0] == "epoch":
        config["switch"] = ["iter", epoch_iteration(config["switch"][1] - start, epoch_iters)]
    if "stop_epoch" in config:
        stop = config.pop("stop_epoch")
        config["stop_iter"] = None if stop is None else epoch_iteration(stop - start, epoch_iters)


def _same(saved, now):
    """A configuration value as recorded and as asked for now: equal, or
    (inputs) the same content by their fingerprints."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return set(saved) == set(now) and all(_same(saved[k], now[k]) for k in saved)
    return saved == now or same_fingerprint(saved, now)


# ------------------------------------------------------------ the folder
# What one checkpoint writes per learned weight: the .caffemodel (the float
# weights) and the .solverstate (SGD's momentum history, one float each);
# Adam and the like keep two histories, hence 3.
CHECKPOINT_FLOATS_PER_WEIGHT = 3
MARGIN_BYTES = 1 << 20          # logs, state.json, protobuf framing


def weight_bytes(net):
    """Bytes of a pycaffe net's learned weights (float32), one copy."""
    return 4 * sum(blob.data.size for blobs in net.params.values() for blob in blobs)


def _check_types(state):
    """TypeError unless the fields both loops read have their types (a
    state.json edited or written by something else would fail later, in
    the middle of a resume)."""
    def need(value, kinds, what):
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise TypeError("%s is %r" % (what, value))
    need(state, dict, "the state")
    need(state["config"], dict, "config")
    need(state.get("done", False), (bool,), "done")
    need(state.get("history", {}), (dict, list), "history")
    ck = state.get("checkpoint")
    if ck is not None:
        need(ck, dict, "checkpoint")
        need(ck["iter"], (int,), "checkpoint iter")
        for key in ("solverstate", "caffemodel"):
            need(ck[key], (str,), "checkpoint " + key)
        need(ck.get("files", []), (list,), "checkpoint files")
        for name in ck.get("files", []):
            need(name, (str,), "a checkpoint file")
        need(ck.get("sha256", {}), (dict,), "checkpoint sha256")


class RunFolder(object):
    """The files of one run in `out_dir`; `log_name` is its text log."""

    def __init__(self, out_dir, log_name):
        self.out_dir = os.path.abspath(out_dir)
        self.log_name = log_name
        self.bar = None
        self._lock = None

    def lock(self):
        """Hold an OS lock on the folder for the life of this process: a
        second run in the same folder is refused; a crashed run holds none."""
        if self._lock is not None or not os.path.isdir(self.out_dir):
            return
        fd = os.open(self.path(".lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise UserError("%s is in use by another run" % self.out_dir)
            raise
        self._lock = fd

    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    def log(self, message):
        log_line(self.path(self.log_name), message, self.bar)

    def write_json(self, name, obj):
        write_json(self.path(name), obj)

    # ---------------------------------------------------------- state
    def load_state(self):
        """state.json, or None when there is none; unreadable: one line."""
        state_file = self.path("state.json")
        if not os.path.exists(state_file):
            return None
        try:
            with open(state_file) as f:
                state = json.load(f)
            state["config"].items()
            if "solverstate" in state:
                _upgrade_two_stage(state)
            _check_types(state)
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
            raise UserError("%s is unreadable (%s): remove the folder to start over"
                            % (state_file, str(err).splitlines()[0] or type(err).__name__))
        return state

    @staticmethod
    def holds_run(state):
        """A run exists once it has a checkpoint; before that it blocks nothing."""
        return bool(state and (state.get("checkpoint") or state.get("done")))

    def start(self, resume, config, what_changes):
        """The state to continue from: the folder's run on `resume`, else None
        (the caller starts a fresh one), by the one policy above.
        `what_changes` = {config key: its name}, the keys a resume must not
        change (from `config`, the configuration asked for now)."""
        self.lock()
        state = self.load_state()
        if not self.holds_run(state):
            if resume:
                raise UserError("nothing to resume in %s (no run with a checkpoint)"
                                % self.out_dir)
            return None
        if not resume:
            raise UserError("%s already holds a run: resume it or use another folder"
                            % self.out_dir)
        self.check_same(state["config"], config, what_changes)
        return self.intact_state(state)

    def intact_state(self, state):
        """`state`, or when its checkpoint is missing or damaged, the state
        of the newest kept checkpoint (a stage's end, a kept epoch) whose
        files are intact: the run resumes from there, as it stood then.
        Without one, the damaged checkpoint's one-line UserError."""
        checkpoint = state.get("checkpoint")
        if state.get("done") or not checkpoint:
            return state
        try:
            self.verify_checkpoint(checkpoint)
            return state
        except UserError as damaged:
            kept = state.get("kept_states", {})
            for name in reversed(state.get("kept", [])):
                older = kept.get(name)
                if older is None or older["checkpoint"]["iter"] == checkpoint["iter"] and \
                        older["checkpoint"].get("stage") == checkpoint.get("stage"):
                    continue
                try:
                    self.verify_checkpoint(older["checkpoint"])
                except UserError:
                    continue
                self.log("newest checkpoint unusable (%s): resuming from the kept checkpoint "
                         "of iteration %d" % (damaged, older["checkpoint"]["iter"]))
                return dict(older, kept=state["kept"], kept_states=kept)
            raise damaged

    def create(self, state):
        """A fresh run: the folder, locked, and its first state.json."""
        os.makedirs(self.path("snapshots"), exist_ok=True)
        self.lock()
        self.write_json("state.json", state)
        return state

    def diverged(self, state, it, what, hint):
        """Record a divergence at iteration `it` and return the error to
        raise: one line, naming the last good checkpoint, which is kept."""
        ck = state.get("checkpoint")
        state["diverged"] = {"iter": it, "what": what}
        self.write_json("state.json", state)
        self.log("diverged at iteration %d: %s" % (it, what))
        return UserError("diverged at iteration %d: %s; the last good checkpoint (%s) is kept "
                        "in %s (%s)" % (it, what, "iteration %d" % ck["iter"] if ck else "none",
                                        self.out_dir, hint))

    def check_same(self, saved, config, what_changes):
        mine = json.loads(json.dumps(config))        # as state.json stores it
        for key, name in what_changes.items():
            if key not in saved:
                continue        # a run from before the key was recorded
            if not _same(saved.get(key), mine.get(key)):
                old, new = saved.get(key), mine.get(key)
                if isinstance(old, dict) and isinstance(new, dict):
                    keys = sorted(k for k in set(old) | set(new) if not _same(old.get(k),
                                                                               new.get(k)))
                    old = {k: old.get(k) for k in keys}
                    new = {k: new.get(k) for k in keys}
                raise UserError("cannot resume the run in %s with a different %s (%r, now %r)"
                                % (self.out_dir, name, old, new))

    # ---------------------------------------------------- progress bar
    @contextlib.contextmanager
    def progress(self, show, total, initial):
        """A tqdm bar for the block (log lines go above it), or none."""
        if show:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True,
                            mininterval=1.0)
        try:
            yield self.bar
        finally:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    def advance(self, **postfix):
        if self.bar is not None:
            self.bar.update(1)
            if postfix:
                self.bar.set_postfix(**postfix)

    # ----------------------------------------------------- checkpoints
    def reserve(self, solver, copies, extra=0):
        """Refuse, before training, a run whose outputs cannot fit on the
        disk: `copies` checkpoints' worth of the solver's weights (rotating
        checkpoints overlap by one; kept epochs and final weights add) plus
        `extra` bytes of the loop's own files."""
        check_disk(self.out_dir, copies * CHECKPOINT_FLOATS_PER_WEIGHT * weight_bytes(solver.net)
                   + extra + MARGIN_BYTES, "this run's checkpoints and outputs")

    def make_room(self, solver, state, extra=0):
        """Stop the run with one line when the disk cannot take the next
        checkpoint (the solver's snapshot, plus `extra` bytes of the loop's
        own files), keeping the previous one for --resume."""
        need = CHECKPOINT_FLOATS_PER_WEIGHT * weight_bytes(solver.net) + extra + MARGIN_BYTES
        try:
            check_disk(self.out_dir, need, "the checkpoint of iteration %d" % solver.iter)
        except UserError as err:
            ck = state.get("checkpoint")
            self.log("stopped: %s" % err)
            raise UserError("%s; the last checkpoint (%s) is kept: free some space, then "
                            "--resume" % (err, "iteration %d" % ck["iter"] if ck else "none"))

    def checkpoint(self, solver, state, name, keep=False, files=(), **fields):
        """Snapshot `solver` (its snapshot_prefix is snapshots/<name>), record
        it in state.json with `fields`, then remove the previous checkpoint
        unless it was kept. `files`: the loop's own files of this checkpoint
        (relative to the folder, already written), rotated with it.

        A disk too full for the snapshot stops the run with one line before
        Caffe tries (it would abort): the previous checkpoint is kept for
        --resume once space is freed."""
        self.make_room(solver, state)
        solver.snapshot()
        prefix = os.path.join("snapshots", "%s_iter_%d" % (name, solver.iter))
        previous = state.get("checkpoint")
        saved = [prefix + ".solverstate", prefix + ".caffemodel"] + list(files)
        # What a resume verifies its files against (verify_checkpoint).
        sha256 = {path: file_fingerprint(self.path(path)) for path in saved}
        state["checkpoint"] = dict(fields, iter=solver.iter,
                                   solverstate=prefix + ".solverstate",
                                   caffemodel=prefix + ".caffemodel", files=list(files),
                                   sha256=sha256)
        if keep:
            state.setdefault("kept", []).append(state["checkpoint"]["solverstate"])
            # The run as it stood here: what a resume falls back to when a
            # newer checkpoint is damaged (intact_state).
            state.setdefault("kept_states", {})[state["checkpoint"]["solverstate"]] = \
                json.loads(json.dumps({k: v for k, v in state.items() if k != "kept_states"}))
        self.write_json("state.json", state)
        if previous and previous["solverstate"] != state["checkpoint"]["solverstate"] \
                and previous["solverstate"] not in state.get("kept", []):
            for path in [previous["solverstate"], previous["caffemodel"]] + \
                    list(previous.get("files", ())):
                if os.path.exists(self.path(path)):
                    os.remove(self.path(path))
        return self.path(state["checkpoint"]["caffemodel"])

    def restore(self, solver, checkpoint):
        """Restore `solver` from `checkpoint` with the weights of this folder's
        own .caffemodel: Caffe's .solverstate names the absolute path of the
        weights it was saved with, which in a copied or moved run is the
        original folder's (gone, or holding another run by now)."""
        self.verify_checkpoint(checkpoint, solver.net)
        solverstate = self.path(checkpoint["solverstate"])
        saved = caffe_pb2.SolverState()
        with open(solverstate, "rb") as f:
            saved.ParseFromString(f.read())
        saved.learned_net = self.path(checkpoint["caffemodel"])
        with atomic_output(solverstate, suffix=".solverstate") as tmp:
            with open(tmp, "wb") as f:
                f.write(saved.SerializeToString())
            solver.restore(str(tmp))

    def verify_checkpoint(self, checkpoint, net=None):
        """UserError (one line naming the file) unless every file of
        `checkpoint` is there as it was written: Caffe aborts on a
        truncated snapshot, numpy raises on a truncated .npz. Checked by
        the SHA-256 recorded at the checkpoint; a checkpoint recorded
        without them is checked by parsing its solver state and (with
        `net`) its weights."""
        names = [checkpoint["solverstate"], checkpoint["caffemodel"]] + \
            list(checkpoint.get("files", ()))
        recorded = checkpoint.get("sha256", {})
        for name in names:
            path = self.path(name)
            why = None
            if not os.path.isfile(path):
                why = "is missing"
            elif name in recorded and file_fingerprint(path) != recorded[name]:
                why = "is damaged (its content is not what the checkpoint wrote)"
            if why:
                raise UserError("cannot resume the run in %s: %s of the checkpoint of "
                                "iteration %d %s" % (self.out_dir, path, checkpoint["iter"], why))
        if not recorded:
            try:
                with open(self.path(checkpoint["solverstate"]), "rb") as f:
                    caffe_pb2.SolverState().ParseFromString(f.read())
            except DecodeError:
                raise UserError("cannot resume the run in %s: %s does not parse (damaged)"
                                % (self.out_dir, self.path(checkpoint["solverstate"])))
            if net is not None:
                check_weights(net, self.path(checkpoint["caffemodel"]))

    def copy_output(self, state, checkpoint_file, name):
        """Copy a checkpoint's file to the output `name` (a stage's final
        weights), recording its source and SHA-256 in state["outputs"], so
        that check_outputs can tell a damaged copy and write it again."""
        copy_atomic(self.path(checkpoint_file), self.path(name))
        state.setdefault("outputs", {})[name] = {
            "from": checkpoint_file, "sha256": file_fingerprint(self.path(name))}

    def check_outputs(self, state):
        """The outputs copy_output recorded, as written: a missing or damaged
        one is copied again from its checkpoint file when that is intact;
        otherwise UserError naming it. Returns the names copied again."""
        repaired = []
        for name, record in sorted(state.get("outputs", {}).items()):
            path = self.path(name)
            if os.path.isfile(path) and file_fingerprint(path) == record["sha256"]:
                continue
            source = self.path(record["from"])
            if not os.path.isfile(source) or file_fingerprint(source) != record["sha256"]:
                raise UserError("%s is missing or damaged, and so is its checkpoint %s: "
                                "remove the run folder to train again" % (path, source))
            copy_atomic(source, path)
            self.log("%s was missing or damaged: copied again from %s" % (name, record["from"]))
            repaired.append(name)
        return repaired

    # ------------------------------------------------------ the loop
    def train(self, solver, until, tsv_path, rows, trainer):
        """The step loop of both trainers (gencnn/two_stage.py's stages,
        gencnn/generative_learning.py), as py-faster-rcnn's
        SolverWrapper.train_model: until solver.iter reaches `until`,

        - trainer.step(): one step of the solver; the iteration's row of
          numbers (its iteration first), appended to `tsv_path` at full
          precision (a resume computes the epoch means from the rows) and
          flushed, so what is logged has happened, even after a kill -9;
        - trainer.check(row): after the row is written (a divergence stops
          the run here);
        - the progress bar advances;
        - at an epoch end (trainer.is_epoch_end(it)) or the last iteration,
          trainer.end_epoch(it, rows, last) tests and records the epoch from
          its rows (`rows`: those of the epoch so far, from the TSV on a
          resume);
        - trainer.checkpoint(it, due, record), `due` every
          trainer.checkpoint_every iterations, at each epoch end and at the
          last; True stops the loop there (two_stage's ESS switch).
        """
        with open(tsv_path, "a") as tsv:
            while solver.iter < until:
                row = trainer.step()
                tsv.write("\t".join("%.17g" % v for v in row) + "\n")
                tsv.flush()
                trainer.check(row)
                rows.append(row)
                self.advance()
                it = solver.iter
                at_epoch_end, last = trainer.is_epoch_end(it), it == until
                record = None
                if at_epoch_end or last:
                    record = trainer.end_epoch(it, rows, last)
                    rows = []
                due = it % trainer.checkpoint_every == 0 or at_epoch_end or last
                if trainer.checkpoint(it, due, record):
                    break

    # ----------------------------------------------------------- end
    def finish(self, state, write_outputs):
        """`write_outputs()` (history.json, curves, final weights), then mark
        the run done: written last, so a run killed on the way is resumed
        (from its last checkpoint) and completes its outputs."""
        write_outputs()
        state["done"] = True
        self.write_json("state.json", state)
