"""Generative learning with synthesized images: the paper's section 5.

The model is the paper's eq. 1, p_y(x; w) = exp(f_y(x; w)) q(x) / Z_y. Its
log-likelihood gradient, df_y(x_i)/dw - E_{p_y}[df_y(x)/dw], is estimated on
each batch by N observed images and M images synthesized from the current p_y
(python_layers/synthesis_loss_layer.py). The synthesized images come from
persistent chains (a replay buffer, `buffer_size` images per class, each
drawn image re-initialised from q with probability `restart_prob`): every
iteration draws M of them (classes uniform), moves them by `mcmc_iters`
transitions of the project's own HMC sampler (gencnn/sampling/hmc.py, Metropolis
kept; `leapfrog_steps` 1 is Metropolis-adjusted Langevin) at temperature T
on a deploy net that shares the training net's weights, writes them back,
and steps the pycaffe solver on the observed + synthesized batch. The HMC
step size is adapted during training toward `target_accept`.

q is white noise fitted to the training images (section 3.4's q, the
default) or, with `fitted_q` 1, a full-covariance Gaussian on u = logit(x)
fitted to the dequantized training images: the q of
studies/class_samples_t1.py and hmc_visualize's lenet-fitted preset. Then the
chains live on u, HMC has the mass matrix Sigma^-1 (unit mass in q's
whitened coordinates), the solver sees x = sigmoid(u), a valid image, and no
clamp is needed.

Guard rails: per epoch, the chains' acceptance, the energy gap (mean f_y on
the data minus on the samples), the step size and the count of divergent
trajectories are logged; a NaN or an exploding score (|f| above
`max_abs_score`) stops the run with a one-line error, and the last good
checkpoint (every `checkpoint_every` iterations and each epoch end) is kept
for --resume.
"""
import collections
import json
import math
import os
import time

import numpy as np

import caffe
from gencnn import caffe_utils, config, netgen, protocols, run_folder
from gencnn.reports import curves
from gencnn.sampling import hmc, reference
from gencnn.cli import UserError
from gencnn.files import atomic_output, copy_atomic, write_atomic
from gencnn.data.lmdb_io import lmdb_count, lmdb_fingerprint, read_lmdb
from gencnn.data.transform import InputTransform

class Option(collections.namedtuple("Option", "name default type range help")):
    """One option of the training: its name, default, type (int or float),
    range (a key of RANGES) and help; tools/generative_learning.py makes a
    command-line flag of each, and GenerativeLearner checks each here."""
    RANGES = {">0": (lambda v: v > 0, "> 0"), ">=0": (lambda v: v >= 0, ">= 0"),
              "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
              "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
              "0|1": (lambda v: v in (0, 1), "0 or 1")}

    def check(self, value):
        """ValueError unless `value` is a finite number of the option's range."""
        test, words = self.RANGES[self.range]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (self.type is int and value != int(value)) or not math.isfinite(value) or \
                not test(value):
            raise ValueError("must be %s %s, got %r" % (
                "an integer" if self.type is int else "a number", words, value))
        return self.type(value)

    def parse(self, text):
        try:
            value = self.type(text)
        except ValueError:
            raise ValueError("must be %s, got %r" % (
                "an integer" if self.type is int else "a number", text))
        return self.check(value)


# Every option of the training. The defaults are the configuration measured
# in docs/visualization_results.md, "Learning from synthesized images" (one epoch from
# a 2-epoch DG LeNet as initial weights).
OPTIONS = (
    Option("epochs", 1.0, float, ">0", "training length in epochs of the training LMDB"),
    Option("synthesized", protocols.SYNTHESIS_DEFAULTS["synthesized"], int, ">0",
           "synthesized images M per batch (the batch also holds 64 observed)"),
    # 100 chains per class: in a one-epoch run each chain is drawn ~30 times
    # (~300 transitions); with 1,000 it would be ~3 and the buffer stays near q.
    Option("buffer_size", 100, int, ">0", "persistent chains kept per class"),
    Option("restart_prob", 0.05, float, "[0,1]",
           "probability that a drawn chain restarts from q"),
    Option("mcmc_iters", 10, int, ">0", "K: HMC transitions per training iteration"),
    Option("leapfrog_steps", 1, int, ">0",
           "leapfrog steps per transition (1 = Metropolis-adjusted Langevin)"),
    Option("step_size", 0.05, float, ">0",
           "initial leapfrog step size (unit mass: in input units for white q, in q's "
           "whitened coordinates for fitted_q)"),
    Option("target_accept", 0.65, float, "[0,1)",
           "the step size is adapted toward this mean acceptance (0 = fixed step)"),
    Option("adapt_rate", 0.05, float, ">=0",
           "adaptation: log step += rate * (acceptance - target) per iteration"),
    Option("min_step", 1e-4, float, ">0", "smallest adapted step size"),
    Option("max_step", 0.5, float, ">0", "largest adapted step size"),
    Option("temperature", 1.0, float, ">0", "T of the training chains (the paper's model: 1)"),
    Option("clamp_sigmas", 5.0, float, ">=0",
           "white q: clamp the chains to mu +- this many sigma of q (0 = off; fitted_q "
           "needs none: its images are sigmoid(u))"),
    # The synthesis gradient's norm is far above clip_gradients, so the
    # clipped step gives a small DG weight a small share (docs/measurements.md).
    Option("dg_weight", protocols.SYNTHESIS_DEFAULTS["dg_weight"], float, ">=0",
           "loss_weight of SoftmaxWithLoss on the observed half (0 = no DG)"),
    Option("alpha", protocols.SYNTHESIS_DEFAULTS["alpha"], float, ">=0",
           "energy penalty alpha * mean f_y^2 over the batch"),
    Option("base_lr", 0.0003, float, ">0",
           "solver base_lr (inv policy, gamma 1e-4, power 0.75, momentum 0.9)"),
    Option("clip_gradients", 10.0, float, ">=0",
           "Caffe clip_gradients: global L2 clip of the weight gradient (0 = off)"),
    Option("weight_decay", 0.0005, float, ">=0", "solver weight decay"),
    Option("max_abs_score", 1e5, float, ">0",
           "a score |f_y| above this is a divergence: the run stops"),
    Option("checkpoint_every", 100, int, ">0", "iterations between resumable checkpoints"),
    Option("reference_count", 10000, int, ">0",
           "training images q is fitted to"),
    Option("fitted_q", 0, int, "0|1",
           "0: q = N(mean, std^2) white noise (section 3.4); 1: q a full-covariance "
           "Gaussian on logit(x) fitted to the dequantized images, chains on logit(x) "
           "preconditioned by its covariance"),
    Option("shrinkage", 1e-3, float, ">0",
           "fitted_q 1: q's covariance is S + shrinkage I (S the images' covariance)"),
    Option("match_labels", 1, int, "0|1",
           "1: the synthesized images take the classes of the observed batch (each class "
           "column gets equal pushes up and down); 0: uniform classes"),
)
DEFAULTS = {option.name: option.default for option in OPTIONS}

# The nets section-5 learning trains (gencnn.netgen.NETS entries) and the
# defaults that differ from DEFAULTS for each. cifar10_quick's are the
# configuration of the outside trial on CIFAR-10 (docs/cifar10_sec5.md): a
# 3,072-d image needs the fitted q (white noise gives clouds) and whole HMC
# trajectories, 2 transitions of 5 leapfrog steps, on 50 synthesized images
# beside the 100 observed; its weight decay is cifar10_quick's own.
NETS = ("lenet", "cifar10_quick")
NET_DEFAULTS = {
    "lenet": {},
    "cifar10_quick": {"synthesized": 50, "mcmc_iters": 2, "leapfrog_steps": 5,
                      "fitted_q": 1, "reference_count": 20000, "shrinkage": 1e-2,
                      "step_size": 0.1, "max_step": 2.0, "weight_decay": 0.004},
}


# q's dequantization noise: reference.dequantization_seed's rule at seed 0,
# the samplers' default --seed (studies/class_samples_t1.py, hmc_visualize's
# lenet-fitted preset), whatever the run's seed: a net learned with
# fitted_q 1 is sampled there under the q it was trained with.
Q_SEED = 0


def fit_q(train_lmdb, count, shape, fitted=False, shrinkage=1e-3, transform=None):
    """q fitted to the first `count` training images (in input units of
    `transform`, default LeNet's): section 3.4's white noise with the images'
    mean and marginal variance (a DiagonalGaussian of scalars) or, `fitted`,
    a full-covariance Gaussian on the logits of the dequantized images (an
    EigenGaussian of u = logit of the box coordinates)."""
    transform = transform or InputTransform.of_net(netgen.LENET)
    images, _ = transform.lmdb_images(train_lmdb, count, shape)
    if len(images) < 2:
        raise UserError("training LMDB %s has fewer than 2 images to fit q to" % train_lmdb)
    if not fitted:
        return reference.fit_q(images, "global")
    return reference.fit_q(images, "full", shrinkage=shrinkage,
                           logit=(transform.quantum, transform.bounds), seed=Q_SEED)


def input_shape(deploy):
    """One image's shape (C, H, W) as a deploy net declares its input."""
    return caffe_utils.net_input_shape(deploy)[1:]


def solver_text(net_path, opts, max_iter, snapshot_prefix, seed, test_iter=100):
    """The pycaffe solver of a fine-tuning: momentum 0.9, LeNet's protocol's
    inv lr policy, base_lr, weight decay and clip_gradients from the options
    (for every net: section 5 starts from a trained net)."""
    fields = {"clip_gradients": opts["clip_gradients"]} if opts["clip_gradients"] > 0 else {}
    if seed is not None:
        fields["random_seed"] = seed
    return str(netgen.solver(
        net_path, opts["base_lr"], max_iter, protocols.LENET_PROTOCOL.schedule,
        test_iter=test_iter,
        test_interval=1073741824, test_initialization=False, weight_decay=opts["weight_decay"],
        display=0, snapshot=0, snapshot_after_train=False, snapshot_prefix=snapshot_prefix,
        **fields))


def chain_images(states, fitted_q, transform):
    """The images (input units) of chain states: the states themselves, or
    the pixels of the logit chains of fitted_q."""
    return hmc.logit_to_pixels(states, transform.bounds) if fitted_q else states


def write_chains(path, states, fitted_q, transform):
    """A run's chains file (chains.npz): "images", the chains as the net sees
    them (input units), and for fitted_q their "states" (logits, the
    coordinates the chains move in). A checkpoint keeps only the states, in
    its own format (for --resume)."""
    arrays = {"images": chain_images(states, fitted_q, transform)}
    if fitted_q:
        arrays["states"] = states
    with atomic_output(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


class ChainBuffer(object):
    """Persistent chains: `size` states per class, initialised from q (a
    reference.py Gaussian of the chains' coordinates)."""

    def __init__(self, num_classes, size, shape, q, rng):
        self.q = q
        self.images = q.sample(rng, (num_classes * size,) + shape).reshape(
            (num_classes, size) + shape).astype(np.float32)

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
            x[restart] = self.q.sample(rng, (int(restart.sum()),) + x.shape[1:])
        return labels, slots, x, int(restart.sum())

    def store(self, labels, slots, x):
        self.images[labels, slots] = x


class GenerativeLearner(object):
    """Train a net (NETS: LeNet on MNIST, cifar10_quick on CIFAR-10) by the
    synthesized-image gradient (+ DG).

    opts: DEFAULTS, then NET_DEFAULTS[net], overridden by the caller. The
    net's LMDBs (default: its data_args), input transform and class count
    come from its gencnn.netgen entry; mean_file overrides its mean image. Files in out_dir: net.prototxt,
    solver.prototxt, iterations.tsv, state.json, snapshots/, history.json,
    curves.png, final.caffemodel, chains.npz (the final buffer), train.log.
    """

    def __init__(self, out_dir, opts=None, seed=None, weights=None, progress=True,
                 train_source=None, test_source=None, net="lenet", mean_file=None):
        if net not in NETS:
            raise UserError("net %r: generative learning trains %s" % (net, ", ".join(NETS)))
        self.net_name, self.net = net, netgen.NETS[net]
        self.opts = dict(DEFAULTS, **NET_DEFAULTS[net])
        unknown = set(opts or {}) - set(DEFAULTS)
        if unknown:
            raise ValueError("unknown options: %s" % ", ".join(sorted(unknown)))
        self.opts.update(opts or {})
        self.folder = run_folder.RunFolder(out_dir, "train.log")
        self.out_dir = self.folder.out_dir
        self.seed = seed
        self.weights = weights
        self.progress = progress
        args = self.net["data_args"]
        self.train_source = train_source or args["train_source"]
        self.test_source = test_source or args["test_source"]
        self.mean_file = mean_file or args.get("mean_file")
        self.batch = args["train_batch"]
        tool = {"lenet": "tools/get_mnist.py"}.get(net, "tools/cifar10_data.py")
        for path in (self.train_source, self.test_source):
            if not os.path.isdir(path):
                raise UserError("LMDB %s does not exist (see %s)" % (path, tool))
        self.transform = InputTransform.of_net(self.net, self._data_overrides())
        if os.path.realpath(self.train_source) == os.path.realpath(self.test_source):
            # Two Data layers on one LMDB deadlock in Caffe's DataReader.
            raise UserError("the test LMDB %s is the training LMDB" % self.test_source)
        if weights and not os.path.isfile(weights):
            raise UserError("initial weights %s do not exist" % weights)
        self._check_opts()
        self.train_size = lmdb_count(self.train_source)
        self.train_labels = None
        if self.opts["match_labels"]:
            self.train_labels = np.array([label for _, label in read_lmdb(self.train_source)])
        self.epoch_iters = self.train_size / float(self.batch)
        self.max_iter = protocols.epoch_iteration(self.opts["epochs"], self.epoch_iters)
        if self.max_iter < 1:
            raise UserError("%g epochs of %d images is less than one iteration"
                            % (self.opts["epochs"], self.train_size))
        self.data_period = run_folder.data_period(self.train_size, self.batch)
        test_batch = args["test_batch"]
        self.test_iters = run_folder.whole_test_iters(self.test_source, test_batch)

    def _check_opts(self):
        o = self.opts
        for option in OPTIONS:
            try:
                o[option.name] = option.check(o[option.name])
            except ValueError as err:
                raise UserError("option %s %s" % (option.name, err))
        if not o["min_step"] <= o["step_size"] <= o["max_step"]:
            raise UserError("step_size %r must lie in [min_step %r, max_step %r]"
                            % (o["step_size"], o["min_step"], o["max_step"]))

    # --------------------------------------------------------------- files
    def path(self, *parts):
        return self.folder.path(*parts)

    def _data_overrides(self):
        """The net's data_args as this run reads them (absolute paths: Caffe
        resolves them against its working directory)."""
        args = {"train_source": os.path.abspath(self.train_source),
                "test_source": os.path.abspath(self.test_source)}
        if self.mean_file:
            args["mean_file"] = os.path.abspath(self.mean_file)
        return args

    def describe(self):
        return {"net": self.net_name, "opts": self.opts, "seed": self.seed,
                "weights": self.weights, "mean_file": self.mean_file,
                "train_source": self.train_source, "test_source": self.test_source,
                "batch_observed": self.batch, "epoch_iters": self.epoch_iters,
                "max_iter": self.max_iter, "inputs": self._inputs}

    # The configuration a resume must not change.
    RESUME_KEYS = {"net": "net", "opts": "options", "seed": "seed", "inputs": "inputs"}

    def inputs(self):
        """Fingerprints of what the run reads (a resume with others is refused)."""
        inputs = {"training LMDB": lmdb_fingerprint(self.train_source),
                  "test LMDB": lmdb_fingerprint(self.test_source)}
        if self.weights:
            inputs["initial weights"] = run_folder.file_fingerprint(self.weights)
        if self.mean_file:
            inputs["mean file"] = run_folder.file_fingerprint(self.mean_file)
        return inputs

    def validate(self):
        """What would fail only after the run folder is written: the data's
        shape, the initial weights, the memory the chains and nets need."""
        deploy = netgen.deploy_net(self.net)
        shape = input_shape(deploy)
        for path in (self.train_source, self.test_source):
            for image, _ in read_lmdb(path, 1):
                if tuple(image.shape) != shape:
                    raise UserError("LMDB %s holds %s images; %s takes %s" % (
                        path, "x".join(map(str, image.shape)), self.net["name"],
                        "x".join(map(str, shape))))
        if self.weights:
            caffe_utils.check_weights(deploy, self.weights)
        caffe_utils.check_data_labels(netgen.train_test_net(
            netgen.LENET, "dg", train_source=self.train_source, test_source=self.test_source),
            "LeNet")
        o = self.opts
        pixels = int(np.prod(shape))
        # float32 chains, and per image in a net about 25 values per pixel
        # (LeNet's blobs and their diffs; docs/measurements.md).
        need = 4 * pixels * (10 * o["buffer_size"] + 25 * (2 * o["synthesized"] + self.batch))
        available = config.available_memory()
        if available is not None and need > available:
            raise UserError("the chains (buffer size %d) and nets (%d synthesized) need about "
                            "%.1f GiB, more than the %.1f GiB available"
                            % (o["buffer_size"], o["synthesized"], need / 2.0 ** 30,
                               available / 2.0 ** 30))

    # ---------------------------------------------------------------- nets
    def _fit_q(self):
        return fit_q(self.train_source, self.opts["reference_count"],
                     input_shape(netgen.deploy_net(self.net)),
                     bool(self.opts["fitted_q"]), self.opts["shrinkage"], self.transform)

    def _q_record(self, q):
        """q as state.json and history.json record it."""
        if not self.opts["fitted_q"]:
            return {"mean": q.mean_value, "std": q.std_value}
        return {"describe": "logit-space " + q.describe(), "images": self.opts["reference_count"],
                "shrinkage": self.opts["shrinkage"],
                "dequantization_seed": reference.dequantization_seed(Q_SEED)}

    def _build(self):
        o = self.opts
        net_text = str(netgen.synthesis_net(
            self.net, synthesized=o["synthesized"], alpha=o["alpha"], dg_weight=o["dg_weight"],
            **self._data_overrides()))
        write_atomic(self.path("net.prototxt"), net_text)
        write_atomic(self.path("solver.prototxt"), solver_text(
            self.path("net.prototxt"), o, self.max_iter, self.path("snapshots", "iter"),
            self.seed, self.test_iters))
        solver = caffe.get_solver(self.path("solver.prototxt"))
        deploy = netgen.deploy_net(self.net)
        sampler_net = caffe_utils.load_net(deploy, num_chains=o["synthesized"])
        sampler_net.share_with(solver.net)       # same weight blobs, no copy
        test_net = solver.test_nets[0]
        test_net.share_with(solver.net)
        return solver, sampler_net, test_net

    # --------------------------------------------------------- checkpoints
    def _checkpoint(self, solver, state):
        """Caffe's snapshot plus the chains, the step size and both RNGs."""
        chains = os.path.join("snapshots", "chains_iter_%d.npz" % solver.iter)
        self.folder.make_room(solver, state, self.buffer.images.nbytes)
        with atomic_output(self.path(chains), suffix=".npz") as tmp:
            np.savez(tmp, images=self.buffer.images, step_size=self.step_size,
                     rng=np.array(json.dumps(_rng_state(self.rng))),
                     hmc_rng=np.array(json.dumps(_rng_state(self.sampler.rng))))
        state["iter"] = solver.iter
        self.folder.checkpoint(solver, state, "iter", files=[chains], chains=chains)

    def _restore(self, solver, checkpoint):
        """The solver, chains, step size and RNG states of `checkpoint`."""
        self.folder.restore(solver, checkpoint)
        data = np.load(self.path(checkpoint["chains"]))
        self.buffer.images[...] = data["images"]
        self.step_size = float(data["step_size"])
        self.rng.set_state(_rng_from(json.loads(str(data["rng"]))))
        run_folder.skip_batches(solver.net, solver.iter % self.data_period)
        return json.loads(str(data["hmc_rng"]))

    # ----------------------------------------------------------------- run
    def run(self, resume=False):
        o = self.opts
        self._inputs = self.inputs()
        state = self.folder.start(resume, self.describe(), self.RESUME_KEYS)
        if state is None:
            self.validate()
        elif state["done"]:
            self.folder.log("already finished; nothing to resume")
            return state
        # Fitted once per start; a resume fits it anew: the same images (the
        # LMDB's fingerprint is checked) and seeds give the same q.
        self.q = self._fit_q()
        if state is None:
            state = self.folder.create({
                "config": self.describe(), "iter": 0, "done": False, "checkpoint": None,
                "q": self._q_record(self.q), "history": [], "diverged": None})
        solver, sampler_net, test_net = self._build()
        shape = tuple(sampler_net.blobs["data"].data.shape[1:])
        seed = 0 if self.seed is None else self.seed
        self.rng = np.random.RandomState(seed + 1)
        num_classes = sampler_net.blobs[self.net["scores"]].data.shape[1]
        self.buffer = ChainBuffer(num_classes, o["buffer_size"], shape, self.q, self.rng)
        self.step_size = o["step_size"]
        # two rotating checkpoints (weights, solver state, chains), the final
        # weights and chains, iterations.tsv (~220 bytes a row)
        self.folder.reserve(solver, 2 + 1.0 / run_folder.CHECKPOINT_FLOATS_PER_WEIGHT,
                            3 * self.buffer.images.nbytes + 220 * (self.max_iter - solver.iter))
        tsv_path = self.path("iterations.tsv")
        hmc_state = None
        if state["checkpoint"]:
            hmc_state = self._restore(solver, state["checkpoint"])
            run_folder.truncate_tsv(tsv_path, solver.iter)
            self.folder.log("resumed at iteration %d" % solver.iter)
        else:
            if self.weights:
                solver.net.copy_from(str(self.weights))
            open(tsv_path, "w").close()
            self.folder.log("generative learning: %d iterations (%g epochs), %d observed + %d "
                            "synthesized per batch, q = %s%s"
                            % (self.max_iter, o["epochs"], self.batch, o["synthesized"],
                               self.q.describe() if not o["fitted_q"] else state["q"]["describe"],
                               ", from %s" % self.weights if self.weights else ""))
        state["iter"] = solver.iter
        self.sampler = hmc.HMCSampler(
            None, step_size=self.step_size, leapfrog_steps=o["leapfrog_steps"], mass=1.0,
            mass_convention="inverse", reference=self.q, precondition=bool(o["fitted_q"]),
            temperature=o["temperature"], warn=lambda message: None,
            # one stream for all rows: they are drawn from the buffer anew each
            # iteration, not fixed chains; checkpointed with the run
            rng=np.random.RandomState(seed + 2))
        if hmc_state is not None:
            self.sampler.rng.set_state(_rng_from(hmc_state))
        self.clamp = None
        if o["clamp_sigmas"] > 0 and not o["fitted_q"]:
            mean, std = self.q.mean, self.q.std
            self.clamp = (mean - o["clamp_sigmas"] * std, mean + o["clamp_sigmas"] * std)
        epoch_rows = run_folder.rows_since(tsv_path, state["history"][-1]["iter"]
                                           if state["history"] else 0)
        self.state, self.solver = state, solver
        self.sampler_net, self.test_net = sampler_net, test_net
        try:
            with self.folder.progress(self.progress, self.max_iter, solver.iter):
                self.folder.train(solver, self.max_iter, tsv_path, epoch_rows, self)
        finally:        # the nets and their data readers go with the run
            self.solver = self.sampler_net = self.test_net = None

        def outputs():
            copy_atomic(self.path(state["checkpoint"]["caffemodel"]),
                        self.path("final.caffemodel"))
            write_chains(self.path("chains.npz"), self.buffer.images, self.opts["fitted_q"],
                         self.transform)
            self.write_outputs(state)
        self.folder.finish(state, outputs)
        return state

    # ------------------------------------------- RunFolder.train's steps
    @property
    def checkpoint_every(self):
        return self.opts["checkpoint_every"]

    def step(self):
        """Synthesize the batch's M images, step the solver on it; the row:
        iteration, the scores (_scores), the chains' numbers (_synthesize),
        seconds sampling and in all."""
        solver, started = self.solver, time.time()
        labels, x, sampled = self._synthesize(self.state, solver.iter, self.sampler_net)
        sampling_s = time.time() - started
        solver.net.blobs["synthesized_data"].data[...] = x
        solver.net.blobs["synthesized_label"].data[...] = labels
        solver.step(1)
        it = solver.iter
        return [it] + self._scores(self.state, solver.net, it) + sampled + \
            [sampling_s, time.time() - started]

    def check(self, row):
        """(A divergence has stopped the run in step already.)"""

    def is_epoch_end(self, it):
        return run_folder.is_epoch_end(it, self.epoch_iters)

    def end_epoch(self, it, rows, last):
        record = self._epoch_record(self.test_net, it, rows, last)
        self.state["history"].append(record)
        return record

    def checkpoint(self, it, due, record):
        if due:
            self._checkpoint(self.solver, self.state)
        return False

    def _synthesize(self, state, it, sampler_net):
        """The M synthesized images of iteration `it` + 1: chains drawn from
        the buffer, moved by K HMC transitions of the current model, clamped
        and written back; the step size adapted. Returns (labels, images,
        [acceptance, step size, divergent, restarts])."""
        o = self.opts
        wanted = None
        if o["match_labels"]:
            # The classes of the batch the Data layer will read (the LMDB in
            # key order, wrapping around).
            rows = (it * self.batch + np.arange(o["synthesized"]) % self.batch) \
                % self.train_size
            wanted = self.train_labels[rows]
        self._wanted = wanted
        labels, slots, x, restarts = self.buffer.draw(o["synthesized"], o["restart_prob"],
                                                      self.rng, wanted)
        self.sampler.score = hmc.NodeScore(sampler_net, self.net["scores"], labels)
        if self.opts["fitted_q"]:
            self.sampler.score = hmc.LogitScore(self.sampler.score, self.transform.bounds)
        f, grad = self.sampler.evaluate(x)
        accept, divergent = [], 0
        for _ in range(o["mcmc_iters"]):
            x, f, grad, _acc, prob, _dh, div = self.sampler.transition(x, f, grad,
                                                                       self.step_size)
            accept.append(float(prob.mean()))
            divergent += int(div.sum())
        if self.clamp is not None:
            x = np.clip(x, *self.clamp)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():
            raise self._diverged(state, it + 1, "%d synthesized images are not finite"
                                 % (~finite).sum())
        self.buffer.store(labels, slots, x)
        accept = float(np.mean(accept))
        if o["target_accept"] > 0 and o["adapt_rate"] > 0:
            self.step_size = float(np.clip(
                self.step_size * math.exp(o["adapt_rate"] * (accept - o["target_accept"])),
                o["min_step"], o["max_step"]))
        return labels, self.to_images(x), [accept, self.step_size, divergent, restarts]

    def to_images(self, states):
        return chain_images(states, self.opts["fitted_q"], self.transform)

    def _scores(self, state, net, it):
        """[DG loss, synthesis loss, energy gap, f data, f samples] of the
        step just taken; stops the run when the scores diverged."""
        o = self.opts
        if self._wanted is not None:
            seen = net.blobs["observed_label"].data.astype(int)
            if not np.array_equal(seen[np.arange(len(self._wanted)) % self.batch],
                                  self._wanted):
                raise RuntimeError("iteration %d: the Data layer's labels are not "
                                   "the LMDB's in key order" % it)
        scores = net.blobs[self.net["scores"]].data.reshape(len(net.blobs["label"].data), -1)
        fy = scores[np.arange(len(scores)), net.blobs["label"].data.astype(int)]
        f_data, f_syn = float(fy[:self.batch].mean()), float(fy[self.batch:].mean())
        dg = float(net.blobs["loss"].data.ravel()[0]) if "loss" in net.outputs \
            else float("nan")
        synth = float(net.blobs["synthesis_loss"].data.ravel()[0])
        if not (np.isfinite(scores).all() and np.isfinite(synth)) or \
                np.abs(scores).max() > o["max_abs_score"]:
            raise self._diverged(state, it, "scores %s (max |f| %.3g, limit "
                                 "max_abs_score %g)" % (
                                     "not finite" if not np.isfinite(scores).all()
                                     else "exploded", np.nanmax(np.abs(scores)),
                                     o["max_abs_score"]))
        return [dg, synth, f_data - f_syn, f_data, f_syn]

    def _diverged(self, state, it, what):
        return self.folder.diverged(state, it, what,
                                    "try a smaller base_lr or step_size, or a larger alpha")

    def _epoch_record(self, test_net, it, rows, last):
        results = run_folder.test_means(test_net, self.test_iters)
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
        self.folder.log("epoch %.2f iter %d: test error %.2f%% | energy gap %.1f (f data %.1f, "
                        "samples %.1f) | acceptance %.3f, step %.4g, %d divergent | %.3f s/it"
                        % (record["epoch"], it, record["test_error_pct"],
                           record["energy_gap"], record["f_data"], record["f_synthesized"],
                           record["acceptance"], record["step_size"],
                           record["divergent_trajectories"], record["s_per_iter"]))
        return record

    def write_outputs(self, state):
        finals = [r for r in state["history"] if r["final"]]
        result = {"config": state["config"], "q": state["q"], "epochs": state["history"],
                  "final_test_error_pct": finals[-1]["test_error_pct"] if finals else None}
        self.folder.write_json("history.json", result)
        curves.generative_learning(self.path("iterations.tsv"), state["history"],
                                   self.path("curves.png"))
        self.folder.log("done: final test error %.2f%%" % result["final_test_error_pct"])


# ---------------------------------------------------------------- helpers
def _rng_state(rng):
    name, keys, pos, has_gauss, gauss = rng.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _rng_from(state):
    name, keys, pos, has_gauss, gauss = state
    return (name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss)
