#!/usr/bin/env python
"""Samples of a classifier's class nodes at the paper's T = 1 with a
data-fitted q: p_y(x) = exp(f_y(x)) q(x) / Z_y, q a Gaussian fitted to the
first --q-images training images, HMC in q's whitened coordinates (mass
matrix Sigma^-1); --net lenet (MNIST, the default) or cifar10_quick
(CIFAR-10, mean image subtracted). By default q is a Gaussian on the logits
of the dequantized images in their pixel box, so every sample is a valid
image (--pixels). Writes an .npz for tools/sample_quality.py: "x" (final
states, n x input shape, the net's input units), "y" (target classes),
"chain_mean" (each chain's average over the sampling iterations), "meta"
(JSON: net, q, temperature, sampler settings and diagnostics).

    python studies/class_samples_t1.py --weights NET.caffemodel --out S.npz
    python studies/class_samples_t1.py --no-net --out Q.npz     # q alone (f = 0)
    python studies/class_samples_t1.py --net cifar10_quick --weights C.caffemodel \
        --shrinkage 0.01 --out C.npz

--pixels logit samples the same model with q a Gaussian on logit(x);
--pixels free without any constraint (the model of the first trial), and
also writes <out>_clipped.npz, the same samples clipped to [0, 1]; --start test
starts the chains at test digits of their class instead of q's draws.
"""
import argparse
import io
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import caffe_utils, cli, files, netgen  # noqa: E402
from gencnn.data.transform import InputTransform  # noqa: E402
from gencnn.generative_learning import NETS, Q_SEED  # noqa: E402
from gencnn.sampling import hmc, reference  # noqa: E402

NUM_CLASSES = 10        # both nets' (LeNet's digits, CIFAR-10's classes)


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--net", default="lenet", choices=NETS,
        help="the sampled net and its data (default %(default)s)")
    add("--weights", help="the sampled net's caffemodel (required unless --no-net)")
    add("--no-net", action="store_true", help="f = 0: draws from q (truncated to the box)")
    add("--q", default="full", choices=list(reference.GAUSSIAN_KINDS),
        help="fitted Gaussian (default %(default)s)")
    add("--q-images", type=cli.positive_int, default=20000,
        help="first training images q is fitted to (default %(default)s)")
    add("--shrinkage", type=cli.positive_float, default=1e-3, help="(default %(default)s)")
    add("--rank", type=cli.positive_int, default=50, help="lowrank q (default %(default)s)")
    add("--pixels", default="logit", choices=["box", "logit", "free"],
        help="how x stays a valid image: box: q truncated to [0, 1], reflecting "
             "trajectories; logit: q a Gaussian on logit(x) fitted to dequantized "
             "images, HMC on u = logit(x) (x = sigmoid(u) is always in (0, 1)); free: no "
             "constraint (also writes <out>_clipped.npz) (default %(default)s)")
    add("--chains-per-digit", "--chains-per-class", dest="chains_per_digit",
        type=cli.positive_int, default=100, help="chains per class (default %(default)s)")
    add("--adapt", type=cli.nonneg_int, default=30,
        help="step-size adaptation iterations (default %(default)s)")
    add("--iters", type=cli.positive_int, default=100,
        help="sampling iterations (default %(default)s)")
    add("--leapfrog-steps", type=cli.positive_int, default=10, help="(default %(default)s)")
    add("--target-accept", type=cli.open_fraction, default=0.65, help="(default %(default)s)")
    add("--start", default="q", choices=["q", "test", "chains"],
        help="chains start at q's draws, at test digits of their class, or (chains) at "
             "the final chains of a generative_learning run, --chains NPZ "
             "(default %(default)s)")
    add("--chains", default=None, metavar="NPZ",
        help="--start chains: a generative_learning chains.npz (its chains of each digit "
             "in order)")
    add("--train-lmdb", help="(default: the net's, data/mnist/mnist_train_lmdb or "
                             "data/cifar10/cifar10_train_lmdb)")
    add("--test-lmdb", help="(default: the net's test LMDB)")
    add("--mean-file", help="cifar10_quick's mean image (default data/cifar10/mean.binaryproto)")
    add("--seed", type=cli.seed, default=Q_SEED,
        help="chains' and q's dequantization seed (default %(default)s: the q "
             "tools/generative_learning.py trains under)")
    add("--out", required=True, help="the .npz to write")
    add("--grid", default=None,
        help="also a PNG of the first 10 samples of each digit (rows 0-9)")
    add("--grid-from", default=None, metavar="NPZ",
        help="only draw --grid from an .npz this script wrote (no sampling)")
    add("--take-from", default=None, metavar="NPZ",
        help="only write to --out the first --chains-per-digit samples of each digit of "
             "an .npz this script wrote (a set at a smaller n; no sampling)")
    add("--chains-from", default=None, metavar="NPZ",
        help="only write to --out the first --chains-per-digit chains of each digit of a "
             "generative_learning chains.npz, as they are (its training's final persistent "
             "chains; no sampling; --weights names their net in the set's meta)")
    args = parser.parse_args(argv)
    data_args = netgen.NETS[args.net]["data_args"]
    args.train_lmdb = args.train_lmdb or data_args["train_source"]
    args.test_lmdb = args.test_lmdb or data_args["test_source"]
    if args.grid_from or args.take_from or args.chains_from:
        return args
    if not args.no_net and not (args.weights and os.path.isfile(args.weights)):
        raise cli.UserError("--weights: a caffemodel is required (or --no-net)")
    if (args.start == "chains") != bool(args.chains):
        raise cli.UserError("--chains goes with --start chains, and only with it")
    if args.chains and not os.path.isfile(args.chains):
        raise cli.UserError("--chains %s does not exist" % args.chains)
    for path in (args.train_lmdb,) + ((args.test_lmdb,) if args.start == "test" else ()):
        if not os.path.isdir(path):
            raise cli.UserError("LMDB not found: %s (python tools/%s)" % (
                path, "get_mnist.py" if args.net == "lenet" else "cifar10_data.py"))
    cli.check_writable(os.path.dirname(os.path.abspath(args.out)))
    return args


class ZeroScore(object):
    """f = 0: the sampler then draws from q (within the box)."""

    def __call__(self, x):
        return np.zeros(len(x)), np.zeros_like(x)


def start_at_chains(path, digits, logit, shape, bounds):
    """The first chains of each class in a generative_learning chains.npz
    (states: the chains' own coordinates, logit(x) for fitted_q; images: x)."""
    with np.load(path) as npz:
        key = "states" if logit and "states" in npz.files else "images"
        chains = npz[key]
        if key == "images" and logit:
            chains = reference.dequantized_logits(chains, np.random.RandomState(0), 0.0,
                                                  bounds)
    if chains.ndim != 5 or chains.shape[0] != NUM_CLASSES or chains.shape[2:] != shape:
        raise cli.UserError("%s holds %s chains, not %d classes x n x %s"
                            % (path, chains.shape, NUM_CLASSES, " x ".join(map(str, shape))))
    taken = np.zeros(NUM_CLASSES, int)
    x0 = np.empty((len(digits),) + shape)
    for n, d in enumerate(digits):
        if taken[d] == chains.shape[1]:
            raise cli.UserError("%s has %d chains per digit, fewer than asked"
                                % (path, chains.shape[1]))
        x0[n] = chains[d, taken[d]]
        taken[d] += 1
    return x0


def start_at_test_digits(path, digits, seed, transform, shape):
    images, labels = transform.lmdb_images(path, input_shape=shape)
    rng = np.random.RandomState(seed)
    picks = [rng.choice(np.flatnonzero(labels == d)) for d in digits]
    return images[picks].reshape((len(digits),) + shape)


def display(transform):
    """One state (input units) -> the image a person sees (uint8; colour
    images BGR -> RGB)."""
    from gencnn.visualization import figures
    if transform.mean is None:
        return lambda state: figures.to_pixels(state, "lenet", None)
    return lambda state: figures.to_pixels(transform.to_pixels(state), "imagenet", (0, 0, 0))


def save_digit_grid(path, x, y, transform, per_row=10):
    """The first `per_row` samples of each class, one row per class."""
    from gencnn.visualization import figures
    picks = np.concatenate([np.flatnonzero(y == d)[:per_row] for d in range(NUM_CLASSES)])
    figures.save_grid(path, x[picks], display(transform), NUM_CLASSES, per_row)


def save(path, x, y, chain_mean, meta):
    buffer = io.BytesIO()
    arrays = dict(x=x.astype(np.float32), y=y.astype(np.int64), meta=json.dumps(meta))
    if chain_mean is not None:
        arrays["chain_mean"] = chain_mean.astype(np.float32)
    np.savez_compressed(buffer, **arrays)
    files.write_atomic(path, buffer.getvalue())


def main(argv=None):
    args = parse_args(argv)
    net = netgen.NETS[args.net]
    transform = InputTransform.of_net(net, {"mean_file": args.mean_file} if args.mean_file
                                      else None)
    shape = tuple(net["input_shape"][1:])
    if args.grid_from:
        with np.load(args.grid_from) as npz:
            save_digit_grid(args.grid or args.out, npz["x"], npz["y"], transform)
        return 0
    if args.take_from:
        with np.load(args.take_from) as npz:
            picks = np.concatenate([np.flatnonzero(npz["y"] == d)[:args.chains_per_digit]
                                    for d in range(NUM_CLASSES)])
            meta = dict(json.loads(str(npz["meta"])), taken_from=args.take_from)
            save(args.out, npz["x"][picks], npz["y"][picks],
                 npz["chain_mean"][picks] if "chain_mean" in npz.files else None, meta)
        return 0
    if args.chains_from:
        digits = np.repeat(np.arange(NUM_CLASSES), args.chains_per_digit)
        x = start_at_chains(args.chains_from, digits, False, shape, transform.bounds)
        save(args.out, x, digits, None, {
            "net": args.weights, "q": "the q of the run's training (its history.json)",
            "temperature": 1.0, "chains": len(digits),
            "start": "the final persistent chains of a generative_learning run (%s), as they "
                     "are: no sampling of the final net" % args.chains_from,
            "command": "python studies/class_samples_t1.py " + " ".join(argv or sys.argv[1:])})
        return 0
    started = time.time()
    images, _ = transform.lmdb_images(args.train_lmdb, args.q_images, shape)
    logit = args.pixels == "logit"
    q = reference.fit_q(images, args.q, shrinkage=args.shrinkage, rank=args.rank,
                        logit=(transform.quantum, transform.bounds) if logit else None,
                        seed=args.seed)
    digits = np.repeat(np.arange(NUM_CLASSES), args.chains_per_digit)
    if args.no_net:
        score = ZeroScore()
    else:
        deploy = os.path.join("prototxt", "%s_deploy.prototxt" % args.net)
        caffe_utils.check_weights(deploy, args.weights)
        score = hmc.NodeScore(caffe_utils.load_net(deploy, args.weights, len(digits)),
                              net["scores"], digits)
    if logit:
        score = hmc.LogitScore(score, transform.bounds)
    bounds = transform.bounds if args.pixels == "box" else None
    sampler = hmc.HMCSampler(score, step_size=hmc.STEP_SIZE, leapfrog_steps=args.leapfrog_steps,
                             mass=1.0, mass_convention="inverse", reference=q,
                             precondition=True, bounds=bounds, seed=args.seed,
                             warn=lambda message: None)
    chains_shape = (len(digits),) + shape
    if args.start == "chains":
        x0 = start_at_chains(args.chains, digits, logit, shape, transform.bounds)
    else:
        x0 = (sampler.initial_state(chains_shape) if args.start == "q"
              else start_at_test_digits(args.test_lmdb, digits, args.seed, transform, shape))
    if logit and args.start == "test":
        x0 = reference.dequantized_logits(x0, np.random.RandomState(args.seed + 2),
                                          transform.quantum, transform.bounds)
    sampling = time.time()
    if args.no_net and bounds is None:
        # q alone needs no chain: x (or u) ~ q exactly
        x0 = q.sample(np.random.RandomState(args.seed), chains_shape)
        out = {"samples": x0, "chain_mean": None, "final_step_size": None,
               "accepted": np.ones((1, len(x0)), bool), "divergent": np.zeros((1, 1), bool),
               "f": np.zeros((1, len(x0)))}
        args.adapt = 0
    else:
        out = sampler.sample(x0, args.iters, adapt=args.adapt,
                             target_accept=args.target_accept)
    meta = {
        "net": args.weights if not args.no_net else None,
        "q": ("logit-space " if logit else "") + q.describe() +
        ", fitted to the first %d %s training images, shrinkage %g"
        % (args.q_images, "MNIST" if args.net == "lenet" else "CIFAR-10", args.shrinkage) + (" (rank %d)" % args.rank
                                            if args.q == "lowrank" else ""),
        "q_kind": args.q, "pixels": args.pixels, "temperature": 1.0,
        "bounds": [np.asarray(b).tolist() for b in bounds] if bounds else None,
        "start": args.start, "start_chains": args.chains, "chains": len(digits), "adapt": args.adapt, "iters": args.iters,
        "leapfrog_steps": args.leapfrog_steps, "mass_matrix": "Sigma^-1 (unit inverse mass)",
        "target_accept": args.target_accept, "final_step_size": out["final_step_size"],
        "acceptance_rate": float(out["accepted"][args.adapt:].mean()),
        "divergences": int(out["divergent"].sum()), "reflections": sampler.reflections,
        "rejected_reflecting": sampler.rejected_reflecting, "seed": args.seed,
        "sampling_s": round(time.time() - sampling, 1),
        "s_per_chain_step": (time.time() - sampling) / max(sampler.evaluations * len(digits), 1),
        "f_final_mean": float(np.nanmean(out["f"][-1])),
        "command": "python studies/class_samples_t1.py " + " ".join(argv or sys.argv[1:]),
    }
    samples, chain_mean = out["samples"], out["chain_mean"]
    if logit:       # back to pixels; the chain mean is sigmoid of the mean logit
        samples = hmc.logit_to_pixels(samples, transform.bounds)
        chain_mean = None if chain_mean is None else hmc.logit_to_pixels(chain_mean,
                                                                         transform.bounds)
        meta["chain_mean"] = "sigmoid of the chain's mean logit"
    save(args.out, samples, digits, chain_mean, meta)
    if args.grid:
        save_digit_grid(args.grid, samples, digits, transform)
    if args.pixels == "free":
        root, ext = os.path.splitext(args.out)
        lo, hi = transform.bounds
        save(root + "_clipped" + ext, np.clip(samples, lo, hi), digits,
             None if chain_mean is None else np.clip(chain_mean, lo, hi), dict(meta, clipped=True))
    print("%s: acceptance %.3f, step %s, %d reflections, %.0f s"
          % (args.out, meta["acceptance_rate"], meta["final_step_size"], meta["reflections"],
             time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
