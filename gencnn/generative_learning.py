"""Generative learning with synthesized images: the paper's section 5.

The model is the paper's eq. 1, p_y(x; w) = exp(f_y(x; w)) q(x) / Z_y, with q
white noise fitted to the training images. Its log-likelihood gradient,
df_y(x_i)/dw - E_{p_y}[df_y(x)/dw], is estimated on each batch by N observed
images and M images synthesized from the current p_y
(python_layers/synthesis_loss_layer.py). The synthesized images come from
persistent chains (a replay buffer, `buffer_size` images per class, each
drawn image re-initialised from q with probability `restart_prob`): every
iteration draws M of them (classes uniform), moves them by `mcmc_iters`
transitions of the project's own HMC sampler (gencnn/visualization/hmc.py, Metropolis
kept; `leapfrog_steps` 1 is Metropolis-adjusted Langevin) at temperature T
on a deploy net that shares the training net's weights, writes them back,
and steps the pycaffe solver on the observed + synthesized batch. The HMC
step size is adapted during training toward `target_accept`.

Guard rails: per epoch, the chains' acceptance, the energy gap (mean f_y on
the data minus on the samples), the step size and the count of divergent
trajectories are logged; a NaN or an exploding score (|f| above
`max_abs_score`) stops the run with a one-line error, and the last good
checkpoint (every `checkpoint_every` iterations and each epoch end) is kept
for --resume.
"""
import json
import math
import os
import time

import numpy as np

import caffe
from gencnn import netgen, protocols
from gencnn.visualization import hmc
from gencnn.cli import UserError
from gencnn.files import (atomic_output, copy_atomic, log_line, save_figure, write_atomic,
                          write_json)
from gencnn.data.lmdb_io import lmdb_count, read_lmdb
from gencnn.two_stage import skip_batches

# Every option of the training, with its default (tools/generative_learning.py
# documents each one in its --help). The defaults are the configuration measured
# in docs/visualization.md, "Learning from synthesized images" (one epoch from a
# 2-epoch DG LeNet, --weights).
DEFAULTS = {
    "epochs": 1.0,              # training length in epochs of the training LMDB
    # M synthesized images per batch (N = 64 observed)
    "synthesized": protocols.SYNTHESIS_DEFAULTS["synthesized"],
    # 100 chains per class: in a one-epoch run each chain is drawn ~30 times
    # (~300 transitions); with 1,000 it would be ~3 and the buffer stays near q.
    "buffer_size": 100,         # persistent chains per class
    "restart_prob": 0.05,       # chance a drawn chain restarts from q
    "mcmc_iters": 10,           # K HMC transitions per training iteration
    "leapfrog_steps": 1,        # L per transition; 1 = Metropolis-adjusted Langevin
    "step_size": 0.05,          # initial leapfrog step (unit mass, input units)
    "target_accept": 0.65,      # step-size adaptation target (0 = fixed step)
    "adapt_rate": 0.05,         # log step += rate * (mean acceptance - target) per iteration
    "min_step": 1e-4,
    "max_step": 0.5,
    "temperature": 1.0,         # T of the training chains (the paper's model: 1)
    "clamp_sigmas": 5.0,        # chains clamped to mu +- this many sigma (0 = off)
    # loss_weight of SoftmaxWithLoss on the observed half. The synthesis
    # gradient's norm is far above clip_gradients, so the clipped step gives a DG
    # loss of weight 10 a small share: test error 5.05 % after the epoch, against
    # 3.0 % at weight 100 (docs/visualization.md).
    "dg_weight": protocols.SYNTHESIS_DEFAULTS["dg_weight"],
    "alpha": protocols.SYNTHESIS_DEFAULTS["alpha"],      # energy penalty alpha * mean f_y^2
    "base_lr": 0.0003,
    "clip_gradients": 10.0,     # Caffe's global L2 clip of the weight gradient (0 = off)
    "weight_decay": 0.0005,
    "max_abs_score": 1e5,       # |f_y| above this counts as divergence
    "checkpoint_every": 100,
    "reference_count": 10000,   # training images q is fitted to
    "match_labels": 1,          # 1: synthesized classes = the observed batch's; 0: uniform
}
SCALE = 0.00390625              # pixels -> input units, as the nets' transform_param
DEPLOY = "prototxt/lenet_deploy.prototxt"


def fit_q(train_lmdb, count):
    """(mean, std) of q fitted to `count` training images (section 3.4's
    white noise with the images' mean and marginal variance)."""
    images = [image for image, _ in read_lmdb(train_lmdb, count)]
    if not images:
        raise UserError("training LMDB %s is empty" % train_lmdb)
    return hmc.fit_reference(np.array(images, dtype=np.float64) * SCALE)


def solver_text(net_path, opts, max_iter, snapshot_prefix, seed):
    """The pycaffe solver: LeNet's (momentum 0.9, its protocol's inv lr
    policy), with base_lr, weight decay and clip_gradients from the options."""
    fields = {"clip_gradients": opts["clip_gradients"]} if opts["clip_gradients"] > 0 else {}
    if seed is not None:
        fields["random_seed"] = seed
    return str(netgen.solver(
        net_path, opts["base_lr"], max_iter, protocols.LENET_PROTOCOL.schedule, test_iter=100,
        test_interval=1073741824, test_initialization=False, weight_decay=opts["weight_decay"],
        display=0, snapshot=0, snapshot_after_train=False, snapshot_prefix=snapshot_prefix,
        **fields))


class ChainBuffer(object):
    """Persistent chains: `size` images per class, initialised from q."""

    def __init__(self, num_classes, size, shape, mean, std, rng):
        self.mean, self.std = mean, std
        self.images = (mean + std * rng.standard_normal((num_classes, size) + shape)
                       ).astype(np.float32)

    def draw(self, count, restart_prob, rng, labels=None):
        """(labels, slots, x, restarts): `count` chains of the given classes
        (default: uniformly drawn), each restarted from q with probability
        restart_prob."""
        num_classes, size = self.images.shape[:2]
        if labels is None:
            labels = rng.randint(num_classes, size=count)
        labels = np.asarray(labels, dtype=int)
        slots = rng.randint(size, size=count)
        x = self.images[labels, slots].astype(np.float64)
        restart = rng.uniform(size=count) < restart_prob
        if restart.any():
            x[restart] = self.mean + self.std * rng.standard_normal(
                (int(restart.sum()),) + x.shape[1:])
        return labels, slots, x, int(restart.sum())

    def store(self, labels, slots, x):
        self.images[labels, slots] = x


class GenerativeLearner(object):
    """Train LeNet on MNIST by the synthesized-image gradient (+ DG).

    opts: DEFAULTS overridden by the caller. Files in out_dir: net.prototxt,
    solver.prototxt, iterations.tsv, state.json, snapshots/, history.json,
    curves.png, final.caffemodel, chains.npz (the final buffer), train.log.
    """

    def __init__(self, out_dir, opts=None, seed=None, weights=None, progress=True,
                 train_source=None, test_source=None):
        self.opts = dict(DEFAULTS)
        unknown = set(opts or {}) - set(DEFAULTS)
        if unknown:
            raise ValueError("unknown options: %s" % ", ".join(sorted(unknown)))
        self.opts.update(opts or {})
        self.out_dir = os.path.abspath(out_dir)
        self.seed = seed
        self.weights = weights
        self.progress = progress
        args = netgen.LENET["data_args"]
        self.train_source = train_source or args["train_source"]
        self.test_source = test_source or args["test_source"]
        self.batch = args["train_batch"]
        for path in (self.train_source, self.test_source):
            if not os.path.isdir(path):
                raise UserError("LMDB %s does not exist (see tools/get_mnist.py)" % path)
        if weights and not os.path.isfile(weights):
            raise UserError("--weights %s does not exist" % weights)
        self._check_opts()
        self.train_size = lmdb_count(self.train_source)
        self.train_labels = None
        if self.opts["match_labels"]:
            self.train_labels = np.array([label for _, label in read_lmdb(self.train_source)])
        self.epoch_iters = self.train_size / float(self.batch)
        self.max_iter = int(math.ceil(self.opts["epochs"] * self.epoch_iters - 1e-9))
        self.data_period = self.train_size // math.gcd(self.train_size, self.batch)
        test_batch = netgen.LENET["data_args"]["test_batch"]
        self.test_iters = max(1, int(math.ceil(lmdb_count(self.test_source) / float(test_batch))))
        self._bar = None

    def _check_opts(self):
        o = self.opts
        positive = ("epochs", "synthesized", "buffer_size", "mcmc_iters", "leapfrog_steps",
                    "step_size", "temperature", "base_lr", "max_abs_score",
                    "checkpoint_every", "reference_count", "min_step", "max_step")
        for key in positive:
            if not o[key] > 0:
                raise UserError("%s must be positive, got %r" % (key.replace("_", "-"), o[key]))
        for key in ("alpha", "dg_weight", "clip_gradients", "clamp_sigmas", "weight_decay",
                    "adapt_rate"):
            if not o[key] >= 0:
                raise UserError("%s must be >= 0, got %r" % (key.replace("_", "-"), o[key]))
        if o["match_labels"] not in (0, 1):
            raise UserError("match-labels must be 0 or 1, got %r" % o["match_labels"])
        if not 0 <= o["restart_prob"] <= 1:
            raise UserError("restart-prob must be in [0, 1], got %r" % o["restart_prob"])
        if not 0 <= o["target_accept"] < 1:
            raise UserError("target-accept must be in [0, 1), got %r" % o["target_accept"])
        if not o["min_step"] <= o["step_size"] <= o["max_step"]:
            raise UserError("step-size %r must lie in [min-step %r, max-step %r]"
                            % (o["step_size"], o["min_step"], o["max_step"]))

    # --------------------------------------------------------------- files
    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    def log(self, message):
        log_line(self.path("train.log"), message, self._bar)

    def _write_json(self, name, obj):
        write_json(self.path(name), obj)

    def describe(self):
        return {"opts": self.opts, "seed": self.seed, "weights": self.weights,
                "train_source": self.train_source, "test_source": self.test_source,
                "batch_observed": self.batch, "epoch_iters": self.epoch_iters,
                "max_iter": self.max_iter}

    # ---------------------------------------------------------------- nets
    def _build(self):
        o = self.opts
        net_text = str(netgen.synthesis_net(
            synthesized=o["synthesized"], alpha=o["alpha"], dg_weight=o["dg_weight"],
            train_source=os.path.abspath(self.train_source),
            test_source=os.path.abspath(self.test_source)))
        write_atomic(self.path("net.prototxt"), net_text)
        write_atomic(self.path("solver.prototxt"), solver_text(
            self.path("net.prototxt"), o, self.max_iter, self.path("snapshots", "iter"),
            self.seed))
        solver = caffe.get_solver(self.path("solver.prototxt"))
        deploy = netgen.deploy_net(netgen.LENET)
        sampler_net = hmc.load_net(deploy, num_chains=o["synthesized"])
        sampler_net.share_with(solver.net)       # same weight blobs, no copy
        test_net = solver.test_nets[0]
        test_net.share_with(solver.net)
        return solver, sampler_net, test_net

    # --------------------------------------------------------- checkpoints
    def _checkpoint(self, solver, state, buffer, rngs, step_size):
        solver.snapshot()
        it = solver.iter
        # paths in state.json are relative to the run folder, so a copied run
        # resumes from its own files
        prefix = os.path.join("snapshots", "iter_iter_%d" % it)
        chains = os.path.join("snapshots", "chains_iter_%d.npz" % it)
        with atomic_output(self.path(chains), suffix=".npz") as tmp:
            np.savez(tmp, images=buffer.images, step_size=step_size,
                     rng=np.array(json.dumps(_rng_state(rngs["train"]))),
                     hmc_rng=np.array(json.dumps(_rng_state(rngs["hmc"]))))
        previous = state.get("checkpoint")
        state["checkpoint"] = {"iter": it, "solverstate": prefix + ".solverstate",
                               "caffemodel": prefix + ".caffemodel", "chains": chains}
        state["iter"] = it
        self._write_json("state.json", state)
        if previous and previous["iter"] != it:
            for key in ("solverstate", "caffemodel", "chains"):
                if os.path.exists(self.path(previous[key])):
                    os.remove(self.path(previous[key]))

    # ----------------------------------------------------------------- run
    def run(self, resume=False):
        os.makedirs(self.path("snapshots"), exist_ok=True)
        o = self.opts
        state_file = self.path("state.json")
        if resume:
            if not os.path.exists(state_file):
                raise UserError("nothing to resume in %s (no state.json)" % self.out_dir)
            state = json.load(open(state_file))
            if state["config"]["opts"] != json.loads(json.dumps(o)):
                raise UserError("%s was started with other options: %s"
                                % (self.out_dir, json.dumps(state["config"]["opts"],
                                                           sort_keys=True)))
            if state["done"]:
                self.log("already finished; nothing to resume")
                return state
        else:
            if os.path.exists(state_file):
                raise UserError("%s already holds a run: use --resume or another --out"
                                % self.out_dir)
            mean, std = fit_q(self.train_source, o["reference_count"])
            state = {"config": self.describe(), "iter": 0, "done": False, "checkpoint": None,
                     "q": {"mean": mean, "std": std}, "history": [], "diverged": None}
            self._write_json("state.json", state)
        mean, std = state["q"]["mean"], state["q"]["std"]
        solver, sampler_net, test_net = self._build()
        shape = tuple(sampler_net.blobs["data"].data.shape[1:])
        seed = 0 if self.seed is None else self.seed
        rngs = {"train": np.random.RandomState(seed + 1), "hmc": None}
        buffer = ChainBuffer(10, o["buffer_size"], shape, mean, std, rngs["train"])
        step_size = o["step_size"]
        tsv_path = self.path("iterations.tsv")
        hmc_seed = seed + 2
        if state["checkpoint"]:
            ck = state["checkpoint"]
            solver.restore(str(self.path(ck["solverstate"])))
            data = np.load(self.path(ck["chains"]))
            buffer.images[...] = data["images"]
            step_size = float(data["step_size"])
            rngs["train"].set_state(_rng_from(json.loads(str(data["rng"]))))
            hmc_state = json.loads(str(data["hmc_rng"]))
            skip_batches(solver.net, solver.iter % self.data_period)
            _truncate_tsv(tsv_path, solver.iter)
            self.log("resumed at iteration %d" % solver.iter)
        else:
            hmc_state = None
            if self.weights:
                solver.net.copy_from(str(self.weights))
            open(tsv_path, "w").close()
            self.log("generative learning: %d iterations (%g epochs), %d observed + %d "
                     "synthesized per batch, q = N(%.4f, %.4f^2)%s"
                     % (self.max_iter, o["epochs"], self.batch, o["synthesized"], mean, std,
                        ", from %s" % self.weights if self.weights else ""))
        state["iter"] = solver.iter
        hmc_sampler = hmc.HMCSampler(
            None, step_size=step_size, leapfrog_steps=o["leapfrog_steps"], mass=1.0,
            mass_convention="inverse", sigma=std, ref_mean=mean,
            temperature=o["temperature"], warn=lambda message: None,
            # one stream for all rows: they are drawn from the buffer anew each
            # iteration, not fixed chains; checkpointed with the run
            rng=np.random.RandomState(hmc_seed))
        if hmc_state is not None:
            hmc_sampler.rng.set_state(_rng_from(hmc_state))
        rngs["hmc"] = hmc_sampler.rng
        lo, hi = mean - o["clamp_sigmas"] * std, mean + o["clamp_sigmas"] * std
        has_dg = "loss" in solver.net.outputs
        if self.progress:
            from tqdm import tqdm
            self._bar = tqdm(total=self.max_iter, initial=solver.iter, unit="it",
                             dynamic_ncols=True, mininterval=1.0)
        epoch_rows = _rows_since(tsv_path, state["history"][-1]["iter"]
                                 if state["history"] else 0)
        try:
            with open(tsv_path, "a") as tsv:
                while solver.iter < self.max_iter:
                    started = time.time()
                    wanted = None
                    if o["match_labels"]:
                        # The classes of the batch the Data layer will read
                        # (the LMDB in key order, wrapping around).
                        rows = (solver.iter * self.batch + np.arange(o["synthesized"])
                                % self.batch) % self.train_size
                        wanted = self.train_labels[rows]
                    labels, slots, x, restarts = buffer.draw(
                        o["synthesized"], o["restart_prob"], rngs["train"], wanted)
                    score = hmc.NodeScore(sampler_net, "ip2", labels)
                    hmc_sampler.score = score
                    f, grad = hmc_sampler.evaluate(x)
                    accept, divergent = [], 0
                    for _ in range(o["mcmc_iters"]):
                        x, f, grad, _acc, prob, _dh, div = hmc_sampler.transition(
                            x, f, grad, step_size)
                        accept.append(float(prob.mean()))
                        divergent += int(div.sum())
                    if o["clamp_sigmas"] > 0:
                        x = np.clip(x, lo, hi)
                    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
                    if not finite.all():
                        raise self._diverged(state, solver.iter + 1, "%d synthesized images "
                                             "are not finite" % (~finite).sum())
                    buffer.store(labels, slots, x)
                    accept = float(np.mean(accept))
                    if o["target_accept"] > 0 and o["adapt_rate"] > 0:
                        step_size = float(np.clip(
                            step_size * math.exp(o["adapt_rate"] * (accept - o["target_accept"])),
                            o["min_step"], o["max_step"]))
                    sampling_s = time.time() - started
                    solver.net.blobs["synthesized_data"].data[...] = x
                    solver.net.blobs["synthesized_label"].data[...] = labels
                    solver.step(1)
                    it = solver.iter
                    net = solver.net
                    if wanted is not None:
                        seen = net.blobs["observed_label"].data.astype(int)
                        if not np.array_equal(seen[np.arange(len(wanted)) % self.batch], wanted):
                            raise RuntimeError("iteration %d: the Data layer's labels are not "
                                               "the LMDB's in key order" % it)
                    scores = net.blobs["ip2"].data.reshape(len(net.blobs["label"].data), -1)
                    fy = scores[np.arange(len(scores)), net.blobs["label"].data.astype(int)]
                    f_data, f_syn = float(fy[:self.batch].mean()), float(fy[self.batch:].mean())
                    dg = float(net.blobs["loss"].data.ravel()[0]) if has_dg else float("nan")
                    synth = float(net.blobs["synthesis_loss"].data.ravel()[0])
                    if not (np.isfinite(scores).all() and np.isfinite(synth)) or \
                            np.abs(scores).max() > o["max_abs_score"]:
                        raise self._diverged(state, it, "scores %s (max |f| %.3g, limit "
                                             "--max-abs-score %g)" % (
                                                 "not finite" if not np.isfinite(scores).all()
                                                 else "exploded", np.nanmax(np.abs(scores)),
                                                 o["max_abs_score"]))
                    row = [it, dg, synth, f_data - f_syn, f_data, f_syn, accept, step_size,
                           divergent, restarts, sampling_s, time.time() - started]
                    tsv.write("\t".join("%.7g" % v for v in row) + "\n")
                    tsv.flush()
                    epoch_rows.append(row)
                    if self._bar is not None:
                        self._bar.update(1)
                    epoch = it / self.epoch_iters
                    at_epoch_end = it == int(math.ceil(math.floor(epoch + 1e-9)
                                                       * self.epoch_iters - 1e-9))
                    last = it == self.max_iter
                    if at_epoch_end or last:
                        state["history"].append(self._epoch_record(test_net, it, epoch_rows,
                                                                   last))
                        epoch_rows = []
                    if it % o["checkpoint_every"] == 0 or at_epoch_end or last:
                        tsv.flush()
                        self._checkpoint(solver, state, buffer, rngs, step_size)
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        final = self.path(state["checkpoint"]["caffemodel"])
        copy_atomic(final, self.path("final.caffemodel"))
        np.savez_compressed(self.path("chains.npz"), images=buffer.images)
        state["done"] = True
        self._write_json("state.json", state)
        self.write_outputs(state)
        return state

    def _diverged(self, state, it, what):
        ck = state.get("checkpoint")
        state["diverged"] = {"iter": it, "what": what}
        self._write_json("state.json", state)
        self.log("diverged at iteration %d: %s" % (it, what))
        return UserError("diverged at iteration %d: %s; the last good checkpoint (%s) is kept "
                        "in %s (try a smaller --base-lr or --step-size, or a larger --alpha)"
                        % (it, what, "iteration %d" % ck["iter"] if ck else "none",
                           self.out_dir))

    def _test(self, test_net):
        totals = {}
        for _ in range(self.test_iters):
            outputs = test_net.forward()
            for key, value in outputs.items():
                totals[key] = totals.get(key, 0.0) + float(np.asarray(value).ravel()[0])
        return {k: v / self.test_iters for k, v in totals.items()}

    def _epoch_record(self, test_net, it, rows, last):
        results = self._test(test_net)
        rows = np.array(rows, dtype=np.float64)
        record = {"iter": it, "epoch": round(it / self.epoch_iters, 4), "final": bool(last),
                  "test_error_pct": 100.0 * (1.0 - results["accuracy"]),
                  "test_loss": results.get("loss"),
                  "train_dg_loss": float(np.nanmean(rows[:, 1])) if np.isfinite(
                      rows[:, 1]).any() else None,
                  "train_synthesis_loss": float(rows[:, 2].mean()),
                  "energy_gap": float(rows[:, 3].mean()),
                  "f_data": float(rows[:, 4].mean()), "f_synthesized": float(rows[:, 5].mean()),
                  "acceptance": float(rows[:, 6].mean()), "step_size": float(rows[-1, 7]),
                  "divergent_trajectories": int(rows[:, 8].sum()),
                  "restarts": int(rows[:, 9].sum()),
                  "s_per_iter": float(rows[:, 11].mean()),
                  "s_per_iter_sampling": float(rows[:, 10].mean())}
        self.log("epoch %.2f iter %d: test error %.2f%% | energy gap %.1f (f data %.1f, "
                 "samples %.1f) | acceptance %.3f, step %.4g, %d divergent | %.3f s/it"
                 % (record["epoch"], it, record["test_error_pct"], record["energy_gap"],
                    record["f_data"], record["f_synthesized"], record["acceptance"],
                    record["step_size"], record["divergent_trajectories"],
                    record["s_per_iter"]))
        return record

    def write_outputs(self, state):
        finals = [r for r in state["history"] if r["final"]]
        result = {"config": state["config"], "q": state["q"], "epochs": state["history"],
                  "final_test_error_pct": finals[-1]["test_error_pct"] if finals else None}
        self._write_json("history.json", result)
        plot_curves(self.path("iterations.tsv"), state["history"], self.path("curves.png"))
        self.log("done: final test error %.2f%%" % result["final_test_error_pct"])


# ---------------------------------------------------------------- helpers
def _rng_state(rng):
    name, keys, pos, has_gauss, gauss = rng.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _rng_from(state):
    name, keys, pos, has_gauss, gauss = state
    return (name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss)


def _truncate_tsv(path, last_iter):
    if not os.path.exists(path):
        return
    keep = [line for line in open(path)
            if line.strip() and float(line.split("\t")[0]) <= last_iter]
    write_atomic(path, "".join(keep))


def _rows_since(path, done):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            if line.strip():
                row = [float(v) for v in line.rstrip("\n").split("\t")]
                if row[0] > done:
                    rows.append(row)
    return rows


def plot_curves(tsv_path, history, path):
    """Energy gap, acceptance and step size per iteration; test error per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = np.array(_rows_since(tsv_path, 0)).reshape(-1, 12)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))

    def smooth(v, w=25):
        if len(v) < w:
            return v
        return np.convolve(v, np.ones(w) / w, mode="valid")
    if len(rows):
        it = rows[:, 0]
        for col, label in ((4, "f_y data"), (5, "f_y samples"), (3, "gap")):
            v = smooth(rows[:, col])
            axes[0].plot(it[len(it) - len(v):], v, label=label)
        axes[0].set(xlabel="iteration", ylabel="score (25-it mean)")
        axes[0].legend(fontsize=8)
        v = smooth(rows[:, 6])
        axes[1].plot(it[len(it) - len(v):], v)
        axes[1].set(xlabel="iteration", ylabel="chain acceptance", ylim=(0, 1))
        axes[2].semilogy(it, rows[:, 7])
        axes[2].set(xlabel="iteration", ylabel="HMC step size")
    if history:
        axes[3].plot([r["epoch"] for r in history], [r["test_error_pct"] for r in history], "o-")
    axes[3].set(xlabel="epoch", ylabel="test error (%)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------ judge
def judge(samples, units, model, weights):
    """Fraction of `samples` (N x 1 x 28 x 28, input units) that a separately
    trained classifier (deploy prototxt + caffemodel) assigns to `units`."""
    from gencnn import sample_quality
    probs = sample_quality.Judge(model, weights).probs(samples)
    return sample_quality.judge_accuracy(probs, units)


def summarize(runs, hmc_name, judge_model, judge_weights, speed=None):
    """results/generative_learning.json's content from training runs (their
    history.json) and the T = 1 HMC samples tools/hmc_visualize.py wrote in
    <run>/<hmc_name> (summary.json with --compare-lmdb, samples.npz), judged
    by a separately trained classifier. `speed`: bench output with
    s_per_iter of DG and of this training, or None."""
    seeds, errors, per_seed = [], [], []
    for run in runs:
        history = json.load(open(os.path.join(run, "history.json")))
        seeds.append(history["config"]["seed"])
        errors.append(history["final_test_error_pct"])
        folder = os.path.join(run, hmc_name)
        summary = json.load(open(os.path.join(folder, "summary.json")))
        if "compare_final" not in summary:
            raise UserError("%s has no compare_final: run hmc_visualize with --compare-lmdb"
                            % folder)
        if summary["temperature"] != 1.0:
            raise UserError("%s was sampled at T = %g, not 1" % (folder, summary["temperature"]))
        samples = np.load(os.path.join(folder, "samples.npz"))
        per_seed.append({
            "seed": history["config"]["seed"], "run": run,
            "test_error_pct": history["final_test_error_pct"],
            "closest_class_mean_is_unit": summary["compare_final"]["closest_class_mean_is_unit"],
            "corr_with_own_class_mean": summary["compare_final"]["corr_with_own_class_mean"],
            "chain_mean_closest_class_mean_is_unit":
                summary["compare_mean"]["closest_class_mean_is_unit"],
            "judge_correct": judge(samples["x"], samples["y"], judge_model,
                                   judge_weights),
            "own_net_predicts_unit": summary["predicted_as_unit_fraction"],
            "acceptance_rate": summary["acceptance_rate"],
            "divergences": summary["divergences"],
            "hmc": {k: summary[k] for k in ("iters", "adapt", "leapfrog_steps", "final_step_size",
                                            "num_chains", "sigma", "ref_mean")},
            "train_s_per_iter": float(np.mean([r["s_per_iter"] for r in history["epochs"]])),
        })
    mean = lambda key: float(np.mean([s[key] for s in per_seed]))  # noqa: E731
    result = {
        "seeds": seeds, "test_error_pct": errors,
        "samples_T1": {"temperature": 1.0,
                       "closest_class_mean_is_unit": mean("closest_class_mean_is_unit"),
                       "corr_with_own_class_mean": mean("corr_with_own_class_mean"),
                       "judge_correct": mean("judge_correct"),
                       "acceptance_rate": mean("acceptance_rate")},
        "cost_ratio_vs_dg": (speed["generative_s_per_iter"] / speed["dg_s_per_iter"]
                             if speed else None),
        "per_seed": per_seed, "judge": {"model": judge_model, "weights": judge_weights},
        "speed": speed,
        "note": "samples_T1 values are means over the seeds; per_seed has each one.",
    }
    return result
