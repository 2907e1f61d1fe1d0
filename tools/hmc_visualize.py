#!/usr/bin/env python
"""Generative visualization (section 3.4): HMC samples from
p_y(x) ~ exp(f_y(x)) q(x) for a node y of a trained Caffe net.

    python tools/hmc_visualize.py --model DEPLOY --weights W --blob B --unit U \\
        [--position y,x] [--num-chains N] [--iters K] [--step-size E] \\
        [--leapfrog-steps L] [--mass M] [--sigma S] [--seed] [--workers W] \\
        [--preset lenet|alexnet] --out DIR

Writes to --out: samples.npz (x: final states, chains x input shape in
the net's input units; y: each chain's unit; chain_mean; trace: f_y per
iteration and chain;
accepted, accept_prob, delta_h, divergent, sq_norm, step_size), summary.json,
grid.png (the samples as images, one row per unit when several units are
given: final states, or chain averages with --show mean), grid_mean.png (or
grid_final.png: the other of the two) and trajectory.png (chain 0 over the
iterations, and f_y of every chain). The sampler, the node set-up and the
figures are the library gencnn/visualization/ (node, figures) around the sampler
of gencnn/sampling/; the mass convention is described in gencnn/sampling/hmc.py
and in docs/visualization.md.

Presets (an explicit option always wins):
  lenet         the paper's LeNet setting (section 4.2) read literally:
                100 iterations, step 0.1, 50 leapfrog steps, mass 0.01,
                sigma 1. Read literally this mass accepts ~0 proposals.
  lenet-digits  what docs/visualization_results.md found to give digit-like LeNet
                samples with a white q: q fitted to MNIST (mean 0.1306, std
                0.3075), temperature 0.03, 50 iterations of step-size
                adaptation, then 100 iterations of 50 leapfrog steps.
  lenet-fitted  the paper's model at T = 1 with q a full-covariance Gaussian
                on logit(x) fitted to --reference-lmdb (--reference
                fit-gaussian, --bounds 0,1, --pixel-model logit: every
                sample a valid image), HMC in q's whitened coordinates (mass
                matrix Sigma^-1, unit inverse mass):
                50 iterations of step adaptation to 0.65 acceptance, then
                100 iterations of 10 leapfrog steps.
  alexnet       the paper's AlexNet setting: step 1, 25 leapfrog steps,
                mass 0.3, sigma 1; 100 iterations for a convolutional node,
                500 for a fully connected one.
  auto          (default) alexnet for 3-channel inputs, lenet otherwise.
"""
import argparse
import json
import math
import os
import sys

import _init_paths  # noqa: F401
from gencnn import cli, config, files
from gencnn.sampling.reference import GAUSSIAN_KINDS

os.environ.setdefault("MPLBACKEND", "Agg")          # no display needed
os.environ.setdefault("GLOG_minloglevel", "2")      # quiet net construction

# The settings each preset fills in; docs/visualization_results.md has the experiment
# behind lenet-digits. Its reference q is --reference fit-global's answer for
# data/mnist/mnist_train_lmdb (first 10,000 images, pixels / 256), fixed here
# so the preset needs no LMDB.
COMMON = dict(mass_convention="paper", sigma=1.0, ref_mean=0.0, temperature=1.0, adapt=0,
              show="final", reference="fixed", bounds=None, pixel_model="box", target_accept=0.7)
PRESETS = {
    "lenet": dict(COMMON, iters=100, step_size=0.1, leapfrog_steps=50, mass=0.01,
                  display="lenet"),
    "lenet-digits": dict(COMMON, iters=100, step_size=0.1, leapfrog_steps=50, mass=0.01,
                         sigma=0.3075, ref_mean=0.1306, temperature=0.03, adapt=50,
                         display="lenet"),
    "lenet-fitted": dict(COMMON, iters=100, step_size=0.1, leapfrog_steps=10, mass=1.0,
                         mass_convention="inverse", reference="fit-gaussian", bounds="0,1",
                         pixel_model="logit",
                         adapt=50, target_accept=0.65, display="lenet"),
    "alexnet": dict(COMMON, iters=None, step_size=1.0, leapfrog_steps=25, mass=0.3,
                    display="imagenet"),
}
DEFAULT_MODEL = os.path.join(config.REPO_ROOT, "prototxt", "alexnet_deploy.prototxt")
ALEXNET_URL = "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel"


# Bad input: reported by gencnn.cli.run as one line on stderr, exit status 2.
UsageError = cli.UserError


def default_weights():
    return os.path.join(config.data_dir(), "models", "bvlc_alexnet.caffemodel")


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--model", default=DEFAULT_MODEL,
        help="deploy prototxt (default: the project's AlexNet, %(default)s)")
    add("--weights", default=None,
        help="caffemodel (default: $GENCNN_DATA/models/bvlc_alexnet.caffemodel, "
             "now %s)" % default_weights())
    add("--blob", default="fc8", help="blob of the node (default %(default)s)")
    add("--unit", default="9",
        help="channel of the node: one unit, a list 0,3,7, a range 0-9 or all (every "
             "channel of the blob); several units share the net, --num-chains chains "
             "each (default %(default)s)")
    add("--position", default=None,
        help="y,x of the node in a convolutional blob (default: the map's centre)")
    add("--input-blob", default=None, help="input blob (default: the net's first input)")
    add("--preset", default="auto",
        choices=["auto", "lenet", "lenet-digits", "lenet-fitted", "alexnet"],
        help="default settings, see above (default %(default)s)")
    add("--num-chains", type=cli.positive_int, default=8, help="chains per unit (default %(default)s)")
    add("--iters", type=cli.positive_int, default=None,
        help="HMC iterations after adaptation (default: the preset's)")
    add("--step-size", type=cli.positive_float, default=None,
        help="leapfrog step size epsilon (default: the preset's)")
    add("--leapfrog-steps", type=cli.positive_int, default=None,
        help="leapfrog steps per iteration (default: the preset's)")
    add("--mass", type=cli.positive_float, default=None,
        help="particle mass, read as --mass-convention says (default: the preset's)")
    add("--mass-convention", default=None, choices=["paper", "inverse"],
        help="paper: K = |phi|^2/2m, x += eps phi/m; inverse: --mass is 1/m "
             "(default: the preset's; paper for lenet and alexnet)")
    add("--sigma", type=cli.positive_float, default=None,
        help="std of the reference q = N(ref-mean, sigma^2) in input units "
             "(default: the preset's, 1)")
    add("--ref-mean", type=cli.finite_float, default=None,
        help="mean of the reference q in input units (default: the preset's, 0)")
    add("--reference", default=None,
        choices=["fixed", "fit-global", "fit-pixel", "fit-gaussian", "fit-spectrum"],
        help="fixed: q from --ref-mean/--sigma; fit-global: one mean and marginal std "
             "fitted to --reference-lmdb; fit-pixel: mean image and per-pixel std; "
             "fit-gaussian: a Gaussian with the images' covariance (--gaussian-kind, "
             "--shrinkage); "
             "fit-spectrum: a stationary Gaussian, its power spectrum per colour "
             "channel fitted to the photos of --reference-images (samples the "
             "whole input: such a q does not factorize over pixels) "
             "(default: the preset's, fixed; lenet-fitted: fit-gaussian)")
    add("--gaussian-kind", default="full", choices=list(GAUSSIAN_KINDS),
        help="fit-gaussian: full covariance; lowrank: the top --rank principal components "
             "+ an isotropic residual; diagonal: per-pixel variances (default %(default)s)")
    add("--shrinkage", type=cli.positive_float, default=1e-3,
        help="fit-gaussian: variance added to every direction (MNIST's border pixels "
             "never vary), in input units squared (default %(default)s)")
    add("--rank", type=cli.positive_int, default=50,
        help="fit-gaussian lowrank: principal components kept (default %(default)s)")
    add("--bounds", default=None,
        help="lo,hi: restrict p_y to the box lo <= x <= hi in input units (valid pixels: "
             "0,1 for LeNet), HMC trajectories reflecting off its walls; none: no box "
             "(default: the preset's; none, lenet-fitted 0,1)")
    add("--pixel-model", default=None, choices=["box", "logit"],
        help="how --bounds enters the model: box: q truncated to the box, trajectories "
             "reflecting off its walls; logit: q a Gaussian on u = logit of the box "
             "coordinates, fitted to the dequantized --reference-lmdb images (steps of "
             "--reference-scale), HMC on u (default: the preset's; box, lenet-fitted logit)")
    add("--reference-images", default=None,
        help="folder of photos for --reference fit-spectrum: each read as BGR 0-255 "
             "(grayscale for a 1-channel net), short side resized to 256/227 of the "
             "input side, centre-cropped to the input, minus --display-mean (the "
             "net's per-channel mean), times --image-scale")
    add("--spectrum-colour", default="channels", choices=["channels", "decorrelated"],
        help="fit-spectrum: one spectrum per colour channel, channels independent; or "
             "per principal colour axis of the photos (luminance, two opponent axes), "
             "so q has their colour correlations (default %(default)s)")
    add("--spectrum-window", default="none", choices=["none", "hann"],
        help="fit-spectrum: plain periodograms, or through a Hann window (no cross of "
             "border-jump power on the frequency axes) (default %(default)s)")
    add("--image-scale", type=cli.positive_float, default=1.0,
        help="pixel -> input units for --reference-images (default %(default)s; "
             "0.00390625 for LeNet)")
    add("--mass-matrix", default="auto", choices=["auto", "identity", "q"],
        help="identity: m I; q: m Sigma^-1, Sigma q's covariance (momenta drawn and "
             "positions moved in q's whitened basis); auto: q for fit-spectrum and "
             "fit-gaussian, identity otherwise (default %(default)s)")
    add("--reference-lmdb",
        default=os.path.join(config.data_dir(), "mnist", "mnist_train_lmdb"),
        help="LMDB of training images for --reference fit-* (default %(default)s)")
    add("--reference-scale", type=cli.positive_float, default=0.00390625,
        help="pixel -> input units for --reference-lmdb, as the training net's "
             "transform_param scale (default %(default)s)")
    add("--reference-count", type=cli.positive_int, default=20000,
        help="images read from --reference-lmdb, its first ones (default %(default)s)")
    add("--compare-lmdb", default=None,
        help="labeled images (scaled by --reference-scale) to compare the samples "
             "with: summary.json gets each shown sample's correlation with the mean "
             "image of its unit's class, and how often that class mean is the "
             "closest (by correlation) of all classes (default: none)")
    add("--temperature", type=cli.positive_float, default=None,
        help="T in U = -f_y/T + |x-mu|^2/2sigma^2; the paper's model is T = 1 "
             "(default: the preset's, 1; lenet-digits 0.03)")
    add("--full-input", action="store_true",
        help="sample the whole input for a convolutional node (default: only its "
             "receptive field, the rest drawn from q: exact and much faster)")
    add("--adapt", type=cli.nonneg_int, default=None,
        help="dual-averaging step-size adaptation iterations before sampling "
             "(default: the preset's, 0 = off; lenet-digits 50)")
    add("--target-accept", type=cli.open_fraction, default=None,
        help="target acceptance of --adapt (default: the preset's, 0.7; lenet-fitted 0.65)")
    add("--show", default=None, choices=["final", "mean"],
        help="what grid.png shows: final states or each chain's average over the "
             "sampling iterations (default: the preset's, final)")
    add("--display", default=None, choices=["lenet", "imagenet", "raw"],
        help="input units -> pixels: lenet x255; imagenet + --display-mean, BGR->RGB; "
             "raw min-max per image (default: the preset's)")
    add("--display-mean", default="104,117,123",
        help="per-channel (BGR) mean added back by --display imagenet "
             "(default %(default)s)")
    add("--no-crop", action="store_true",
        help="show the whole input for a convolutional node (default: crop to its "
             "receptive field)")
    add("--seed", type=cli.seed, default=0,
        help="random seed; chain i (chains are numbered unit by unit) draws from its own "
             "stream of it, whatever --workers or the chains after it (default %(default)s)")
    add("--chain-offset", type=cli.nonneg_int, default=0,
        help="this run's chains are chains K, K+1, ... of a larger run (their random "
             "streams): runs over disjoint ranges with a fixed --step-size and --adapt 0 "
             "are shards of one run (docs/scaling.md) (default %(default)s)")
    add("--workers", type=cli.positive_int, default=os.cpu_count() or 1,
        help="processes to split the chains over, one OpenBLAS thread each; 1 samples in "
             "this process with $OPENBLAS_NUM_THREADS threads (default: this machine's "
             "cores, %(default)s)")
    add("--out", default=None,
        help="output folder (default: results/hmc/<blob>_unit<unit>)")
    return parser.parse_args(argv)


def parse_units(text):
    """[units] from '3', '0,3,7', '0-9'; None for 'all' (every channel)."""
    if text.strip() == "all":
        return None
    units = []
    try:
        for part in text.split(","):
            if "-" in part.strip()[1:]:
                lo, hi = part.split("-")
                units += list(range(int(lo), int(hi) + 1))
            else:
                units.append(int(part))
    except ValueError:
        raise UsageError("--unit must be an integer, a list 0,3,7, a range 0-9 or all; "
                         "got '%s'" % text)
    if not units:
        raise UsageError("--unit is empty")
    return units


def resolve(args):
    """Check the options that need no net; fill in the preset's defaults."""
    units = parse_units(args.unit)
    if units is not None and any(u < 0 for u in units):
        raise UsageError("unit %d out of range: units are >= 0" % min(units))
    position = None
    if args.position is not None:
        try:
            position = tuple(int(v) for v in args.position.split(","))
        except ValueError:
            raise UsageError("--position must be y,x; got '%s'" % args.position)
    # (The numeric options are checked by their argparse types, gencnn.cli.)
    try:
        display_mean = [float(v) for v in args.display_mean.split(",")]
    except ValueError:
        raise UsageError("--display-mean must be comma-separated numbers")
    if not all(math.isfinite(v) for v in display_mean):
        raise UsageError("--display-mean must be finite numbers, got '%s'" % args.display_mean)
    # The preset's q and box, when the preset is named (auto's presets: none).
    preset = PRESETS.get(args.preset, COMMON)
    args.reference = args.reference or preset["reference"]
    bounds = parse_bounds(args.bounds if args.bounds is not None else preset["bounds"])
    args.pixel_model = args.pixel_model or preset["pixel_model"]
    if bounds is not None and args.pixel_model == "logit" and \
            args.reference not in ("fit-global", "fit-pixel", "fit-gaussian"):
        raise UsageError("--pixel-model logit needs q fitted to images on the logit scale: "
                         "--reference fit-gaussian, fit-pixel or fit-global")
    if not os.path.isfile(args.model):
        raise UsageError("prototxt not found: %s" % args.model)
    weights = args.weights or default_weights()
    if not os.path.isfile(weights):
        if args.weights is None:
            raise UsageError("weights not found: download %s to %s (or set GENCNN_DATA, "
                             "or pass --weights)" % (ALEXNET_URL, weights))
        raise UsageError("weights not found: %s" % weights)
    if args.compare_lmdb and not os.path.isdir(args.compare_lmdb):
        raise UsageError("--compare-lmdb %s not found" % args.compare_lmdb)
    if args.reference == "fit-spectrum":
        if args.reference_images is None:
            raise UsageError("--reference fit-spectrum needs --reference-images DIR")
        if not os.path.isdir(args.reference_images):
            raise UsageError("--reference-images %s is not a folder" % args.reference_images)
    elif args.reference != "fixed" and not os.path.isdir(args.reference_lmdb):
        raise UsageError("--reference %s needs the LMDB %s (not found)"
                         % (args.reference, args.reference_lmdb))
    out_dir = args.out or os.path.join(config.REPO_ROOT, "results", "hmc",
                                       "%s_unit%s" % (args.blob.replace("/", "_"), args.unit))
    cli.check_writable(out_dir)          # now, not after minutes of sampling
    return units, position, weights, display_mean, bounds, out_dir


def parse_bounds(text):
    """(lo, hi) from 'lo,hi'; None for None or 'none'."""
    if text is None or text.strip() == "none":
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError("--bounds must be lo,hi or none; got '%s'" % text)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError("--bounds needs finite lo < hi; got '%s'" % text)
    return lo, hi


def preset_settings(args, channels, is_conv):
    """The preset's values, overridden by any option given explicitly."""
    name = args.preset
    if name == "auto":
        name = "alexnet" if channels == 3 else "lenet"
    settings = dict(PRESETS[name])
    if settings["iters"] is None:
        settings["iters"] = 100 if is_conv else 500
    for key in ("iters", "step_size", "leapfrog_steps", "mass", "mass_convention",
                "sigma", "ref_mean", "temperature", "adapt", "show", "display",
                "target_accept"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["preset"] = name
    return settings


def fit_q(args, node, settings, display_mean, logit_bounds=None):
    """The reference q of the options: fixed, or fitted to --reference-lmdb
    (on the logit scale of `logit_bounds` when given) or (fit-spectrum) to
    --reference-images."""
    from gencnn.data.lmdb_io import lmdb_images
    from gencnn.sampling import reference as ref
    if args.reference == "fixed":
        return ref.DiagonalGaussian(settings["ref_mean"], settings["sigma"])
    try:
        if args.reference == "fit-spectrum":
            if len(node.input_shape) != 3:
                raise ValueError("--reference fit-spectrum needs an image input (C x H x W), "
                                 "the net's is %s" % (node.input_shape,))
            return ref.fit_spectrum(ref.load_images(args.reference_images, node.input_shape,
                                                    display_mean, args.image_scale),
                                    decorrelate_colour=args.spectrum_colour == "decorrelated",
                                    window=args.spectrum_window == "hann")
        images, _ = lmdb_images(args.reference_lmdb, args.reference_scale,
                                args.reference_count, node.input_shape,
                                name="--reference-lmdb %s" % args.reference_lmdb)
        kind = {"fit-global": "global", "fit-pixel": "pixel"}.get(args.reference,
                                                                  args.gaussian_kind)
        logit = None if logit_bounds is None else (args.reference_scale, logit_bounds)
        return ref.fit_q(images, kind, shrinkage=args.shrinkage, rank=args.rank, logit=logit,
                         seed=args.seed)
    except ValueError as err:
        raise UsageError(str(err))


def run(args):
    units, position, weights, display_mean, bounds, out_dir = resolve(args)
    import numpy as np
    from tqdm import tqdm
    from gencnn.visualization import figures
    from gencnn.visualization.node import (class_means, compare_with_classes, open_node,
                                           sample_node, save_samples)

    try:
        node = open_node(args.model, weights, args.blob, units, args.num_chains, position,
                         args.input_blob, crop_display=not args.no_crop)
        compare = (class_means(args.compare_lmdb, args.reference_scale, args.reference_count,
                               node.input_shape) if args.compare_lmdb else None)
    except ValueError as err:       # unknown blob or input blob, unit out of range, bad LMDB
        raise UsageError(str(err))
    units, input_shape, is_conv = node.units, node.input_shape, node.is_conv
    settings = preset_settings(args, node.channels, is_conv)
    if settings["display"] == "imagenet" and len(display_mean) < node.channels:
        raise UsageError("--display-mean needs one value per input channel (%d), got %d"
                         % (node.channels, len(display_mean)))
    logit = bounds is not None and args.pixel_model == "logit"
    q = fit_q(args, node, settings, display_mean, bounds if logit else None)
    mass_matrix = args.mass_matrix
    if mass_matrix == "auto":
        mass_matrix = "q" if args.reference in ("fit-spectrum", "fit-gaussian") else "identity"
    precondition = mass_matrix == "q"

    warnings_shown = [0]

    def warn(message):
        warnings_shown[0] += 1
        if warnings_shown[0] <= 3:
            tqdm.write("warning: " + message, file=sys.stderr)
        elif warnings_shown[0] == 4:
            tqdm.write("warning: more divergences; see summary.json", file=sys.stderr)

    iters, adapt = settings["iters"], settings["adapt"]
    # samples.npz (final states and chain means, float32; per chain and
    # iteration six float64 traces) and the figures: refused now, not after
    # the sampling, when writing them would fail
    files.check_disk(out_dir, 8 * int(np.prod(input_shape)) * node.num_chains +
                     48 * node.num_chains * (adapt + iters) + (16 << 20),
                     "the samples and figures")
    bar = tqdm(total=adapt + iters, desc="HMC %s unit %s" % (args.blob, args.unit),
               file=sys.stderr, unit="it", dynamic_ncols=True)

    def progress(it, out):
        bar.update(1)
        bar.set_postfix(acc="%.2f" % out["accepted"][:it + 1].mean(),
                        f="%.2f" % out["f"][it].mean(), eps="%.3g" % out["step_size"][it])

    result = sample_node(node, q, iters, step_size=settings["step_size"],
                         leapfrog_steps=settings["leapfrog_steps"], mass=settings["mass"],
                         mass_convention=settings["mass_convention"],
                         temperature=settings["temperature"], adapt=adapt,
                         target_accept=settings["target_accept"], full_input=args.full_input,
                         precondition=precondition, bounds=bounds,
                         pixel_model=args.pixel_model if bounds else None,
                         seed=args.seed, warn=warn, callback=progress,
                         workers=args.workers, first_chain=args.chain_offset)
    bar.close()
    out, sampler, crop, wall = result.out, result.sampler, result.crop, result.wall
    chain_units = node.chain_units

    os.makedirs(out_dir, exist_ok=True)
    sampling = slice(adapt, None)
    summary = {
        "model": args.model, "weights": weights, "blob": args.blob, "units": units,
        "position": list(node.position) if is_conv else None,
        "receptive_field_box": list(node.box) if node.box else None,
        "input_shape": list(input_shape), "sampled_input_shape": list(result.sample_shape),
        "input_crop_box": list(crop[0]) if crop else None,
        "temperature": settings["temperature"], "chains_per_unit": args.num_chains,
        "num_chains": node.num_chains, "preset": settings["preset"], "iters": iters,
        "adapt": adapt, "target_accept": settings["target_accept"] if adapt else None,
        "step_size": settings["step_size"], "final_step_size": out["final_step_size"],
        "leapfrog_steps": settings["leapfrog_steps"], "mass": settings["mass"],
        "mass_convention": settings["mass_convention"], "inv_mass": sampler.inv_mass,
        "effective_unit_mass_step": out["final_step_size"] * np.sqrt(sampler.inv_mass),
        "reference": args.reference,
        "reference_images": args.reference_images if args.reference == "fit-spectrum" else None,
        "spectrum": ({"colour": args.spectrum_colour, "window": args.spectrum_window}
                     if args.reference == "fit-spectrum" else None),
        "mass_matrix": mass_matrix, "bounds": list(bounds) if bounds else None,
        "pixel_model": args.pixel_model if bounds else None,
        "gaussian": ({"kind": args.gaussian_kind, "shrinkage": args.shrinkage,
                      "rank": args.rank if args.gaussian_kind == "lowrank" else None,
                      "images": args.reference_count}
                     if args.reference == "fit-gaussian" else None),
        "reflections": sampler.reflections,
        "rejected_reflecting": sampler.rejected_reflecting,
        "pixels_out_of_bounds": (float(((out["samples"] < bounds[0]) |
                                        (out["samples"] > bounds[1])).mean())
                                 if bounds else None),
        "sigma": sampler.reference.std_value, "ref_mean": sampler.reference.mean_value,
        "seed": args.seed, "chain_offset": args.chain_offset, "workers": result.workers,
        "acceptance_rate": float(out["accepted"][sampling].mean()),
        "acceptance_rate_adapt": float(out["accepted"][:adapt].mean()) if adapt else None,
        "divergences": int(out["divergent"].sum()),
        "f_final_mean": float(out["f"][-1].mean()), "f_final_std": float(out["f"][-1].std()),
        "f_final_per_unit": [float(out["f"][-1][chain_units == u].mean()) for u in units],
        "predicted_as_unit_fraction": result.predicted_fraction,
        "sq_norm_final_mean": float(out["sq_norm"][-1].mean()),
        "evaluations": sampler.evaluations, "wall_s": round(wall, 2),
        "s_per_leapfrog_step": wall / max(sampler.evaluations, 1),
        "s_per_sample": wall / node.num_chains,
        "show": settings["show"],
    }
    for name, states in (("final", out["samples"]), ("mean", out["chain_mean"])):
        if compare is not None:
            summary["compare_" + name] = compare_with_classes(states, chain_units, *compare)

    def pixels(state):
        return figures.to_pixels(state, settings["display"], display_mean, node.box)

    rows, cols = figures.grid_shape(len(units), args.num_chains)
    other = "mean" if settings["show"] == "final" else "final"
    states = {"final": out["samples"], "mean": out["chain_mean"]}
    figures.save_grid(os.path.join(out_dir, "grid.png"), states[settings["show"]], pixels,
                      rows, cols)
    figures.save_grid(os.path.join(out_dir, "grid_%s.png" % other), states[other], pixels,
                      rows, cols)
    figures.save_trajectory(os.path.join(out_dir, "trajectory.png"), out, pixels,
                            "%s unit %d, chain 0: preset %s, eps %.3g, L %d, mass %g (%s), "
                            "q = %s, T %g" % (
                                args.blob, units[0], settings["preset"],
                                out["final_step_size"], settings["leapfrog_steps"],
                                settings["mass"], settings["mass_convention"], q.describe(),
                                settings["temperature"]))
    save_samples(os.path.join(out_dir, "samples.npz"), out, chain_units)
    files.write_atomic(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    print("%s unit %s: acceptance %.3f, divergences %d, f_y %.2f, %.1f s -> %s"
          % (args.blob, args.unit, summary["acceptance_rate"], summary["divergences"],
             summary["f_final_mean"], wall, out_dir))
    return summary


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
