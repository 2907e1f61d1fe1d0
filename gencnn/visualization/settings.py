"""The settings of a generative visualization run (tools/hmc_visualize.py):
every option, a table of Setting rows in the style of generative_learning's
Option table; the presets, rows that fill in the options a user leaves out;
and the checks and the reference q the options name.

    parser = cli.ArgumentParser(...)
    settings.add_options(parser)               # one flag per Setting
    args = parser.parse_args(argv)
    resolved = settings.resolve(args)          # checks before any net is loaded

A preset is one row of PRESETS (its --preset name, its help line, its
values); --preset takes every row's name, and --help lists them.
"""
import collections
import math
import os

from gencnn import cli, config, protocols
from gencnn.sampling import hmc
from gencnn.sampling.reference import GAUSSIAN_KINDS
from gencnn.visualization import class_samples

UsageError = cli.UserError

DEFAULT_MODEL = os.path.join(config.REPO_ROOT, "prototxt", "alexnet_deploy.prototxt")
ALEXNET_URL = "http://dl.caffe.berkeleyvision.org/bvlc_alexnet.caffemodel"


def default_weights():
    return os.path.join(config.data_dir(), "models", "bvlc_alexnet.caffemodel")


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------

class Preset(collections.namedtuple("Preset", "name help values")):
    """A named set of defaults: `values` fills in each option left out
    (iters None: 100 iterations for a convolutional node, 500 for a fully
    connected one); `help` describes it in --help."""


# What every preset starts from.
COMMON = dict(mass_convention="paper", sigma=1.0, ref_mean=0.0, temperature=1.0, adapt=0,
              show="final", reference="fixed", bounds=None, pixel_model="box",
              target_accept=0.7, sampler="hmc", transforms="none", transform_mode="random",
              blur=1.0, decay=1e-3, blur_every=10, blur_sigma=0.5, mass_matrix="auto")


def class_sample_preset(setting):
    """A preset's values from a setting of gencnn/visualization/class_samples.py
    (the ImageNet class samples are made by tools/imagenet_classes.py from
    those settings: one source for both)."""
    values = dict(COMMON, iters=class_samples.STEPS, step_size=setting["step_size"],
                  leapfrog_steps=1, mass=1.0, mass_convention="inverse",
                  sigma=setting["sigma"], temperature=setting["temperature"],
                  reference={"blur": "blur", "white": "fixed"}[setting["q"]],
                  bounds=setting["box"], sampler=setting["sampler"],
                  transforms=setting["transforms"], transform_mode=setting["transform_mode"],
                  mass_matrix="q" if setting["precondition"] else "identity",
                  display="imagenet")
    for key in ("blur", "decay", "blur_every", "blur_sigma"):
        if key in setting:
            values[key] = setting[key]
    return values
# docs/visualization_results.md has the experiment behind lenet-digits. Its
# reference q is --reference fit-global's answer for the MNIST training images
# (protocols.MNIST_MEAN, MNIST_STD), fixed here so the preset needs no LMDB.
PRESETS = collections.OrderedDict((preset.name, preset) for preset in (
    Preset("lenet",
           "the paper's LeNet setting (section 4.2) read literally: 100 iterations, step "
           "0.1, 50 leapfrog steps, mass 0.01, sigma 1. Read literally this mass accepts "
           "~0 proposals.",
           dict(COMMON, iters=100, step_size=hmc.STEP_SIZE, leapfrog_steps=50, mass=0.01,
                display="lenet")),
    Preset("lenet-digits",
           "what docs/visualization_results.md found to give digit-like LeNet samples "
           "with a white q: q fitted to MNIST (mean %g, std %g), temperature 0.03, 50 "
           "iterations of step-size adaptation, then 100 iterations of 50 leapfrog steps."
           % (protocols.MNIST_MEAN, protocols.MNIST_STD),
           dict(COMMON, iters=100, step_size=hmc.STEP_SIZE, leapfrog_steps=50, mass=0.01,
                sigma=protocols.MNIST_STD, ref_mean=protocols.MNIST_MEAN, temperature=0.03,
                adapt=50, display="lenet")),
    Preset("lenet-fitted",
           "the paper's model at T = 1 with q a full-covariance Gaussian on logit(x) "
           "fitted to --reference-lmdb (--reference fit-gaussian, --bounds 0,1, "
           "--pixel-model logit: every sample a valid image), HMC in q's whitened "
           "coordinates (mass matrix Sigma^-1, unit inverse mass): 50 iterations of step "
           "adaptation to 0.65 acceptance, then 100 iterations of 10 leapfrog steps.",
           dict(COMMON, iters=100, step_size=hmc.STEP_SIZE, leapfrog_steps=10, mass=1.0,
                mass_convention="inverse", reference="fit-gaussian", bounds="0,1",
                pixel_model="logit", adapt=50, target_accept=0.65, display="lenet")),
    Preset("alexnet",
           "the paper's AlexNet setting read literally: step 1, 25 leapfrog steps, mass "
           "0.3, sigma 1, T 1; 100 iterations for a convolutional node, 500 for a fully "
           "connected one (samples of an ImageNet class are q's noise).",
           dict(COMMON, iters=None, step_size=1.0, leapfrog_steps=25, mass=0.3,
                display="imagenet")),
    Preset("imagenet",
           "class samples a person recognises (docs/visualization_results.md): the "
           "paper's model at T = 1e-3 with the score averaged over random shifts of up to "
           "16 px and q white noise of sd 64 blurred by 1 px (--reference blur), pixels "
           "kept in 0..255 (--bounds image), unadjusted Langevin steps of 0.2 in q's "
           "whitened coordinates, 150 steps from a draw of q.",
           class_sample_preset(class_samples.SETTINGS[class_samples.RECOMMENDED])),
    Preset("imagenet-am",
           "the field's recipe, for comparison: activation maximisation with jitter "
           "(random shifts of up to 16 px), L2 decay 1e-3, a 0.5 px blur every 10 "
           "steps, normalised gradient steps of 1.5, clipped to 0..255, from N(0, 10^2); "
           "150 steps (no density, no temperature).",
           class_sample_preset(class_samples.SETTINGS["activation_maximization"])),
))
AUTO_HELP = "(default) imagenet for 3-channel inputs, lenet otherwise."


def auto_preset(channels):
    """The preset of --preset auto for a net with `channels` input channels."""
    return "imagenet" if channels == 3 else "lenet"


def presets_help(width=14):
    """The presets as --help lists them."""
    import textwrap
    lines = ["Presets (an explicit option always wins):"]
    for name, text in [(p.name, p.help) for p in PRESETS.values()] + [("auto", AUTO_HELP)]:
        lines += textwrap.wrap(text, 78, initial_indent="  %-*s" % (width, name),
                               subsequent_indent=" " * (width + 2), break_on_hyphens=False)
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

class Setting(collections.namedtuple("Setting", "name default type help choices")):
    """One option of the run: its name (the flag --name-with-dashes), default
    (None for most HMC settings: the preset's), type (a gencnn.cli argparse
    type; str; bool for an on/off flag), help and choices (or None)."""

    def add_to(self, parser):
        flag = "--" + self.name.replace("_", "-")
        if self.type is bool:
            parser.add_argument(flag, action="store_true", help=self.help)
        else:
            parser.add_argument(flag, default=self.default, choices=self.choices,
                                type=None if self.type is str else self.type, help=self.help)


def _setting(name, default, type, help, choices=None):
    return Setting(name, default, type, help, choices)


OPTIONS = (
    _setting("model", DEFAULT_MODEL, str,
             "deploy prototxt (default: the project's AlexNet, %(default)s)"),
    _setting("weights", None, str,
             "caffemodel (default: $GENCNN_DATA/models/bvlc_alexnet.caffemodel, now %s)"
             % default_weights()),
    _setting("blob", "fc8", str, "blob of the node (default %(default)s)"),
    _setting("unit", "9", str,
             "channel of the node: one unit, a list 0,3,7, a range 0-9 or all (every "
             "channel of the blob); several units share the net, --num-chains chains "
             "each (default %(default)s)"),
    _setting("position", None, str,
             "y,x of the node in a convolutional blob (default: the map's centre)"),
    _setting("input_blob", None, str, "input blob (default: the net's first input)"),
    _setting("preset", "auto", str, "default settings, see above (default %(default)s)",
             ["auto"] + list(PRESETS)),
    _setting("num_chains", 8, cli.positive_int, "chains per unit (default %(default)s)"),
    _setting("iters", None, cli.positive_int,
             "HMC iterations after adaptation (default: the preset's)"),
    _setting("step_size", None, cli.positive_float,
             "leapfrog step size epsilon (default: the preset's)"),
    _setting("leapfrog_steps", None, cli.positive_int,
             "leapfrog steps per iteration (default: the preset's)"),
    _setting("mass", None, cli.positive_float,
             "particle mass, read as --mass-convention says (default: the preset's)"),
    _setting("mass_convention", None, str,
             "paper: K = |phi|^2/2m, x += eps phi/m; inverse: --mass is 1/m "
             "(default: the preset's; paper for lenet and alexnet)", ["paper", "inverse"]),
    _setting("sigma", None, cli.positive_float,
             "std of the reference q = N(ref-mean, sigma^2) in input units "
             "(default: the preset's, 1)"),
    _setting("ref_mean", None, cli.finite_float,
             "mean of the reference q in input units (default: the preset's, 0)"),
    _setting("sampler", None, str,
             "hmc: HMC with Metropolis (exact); langevin: unadjusted Langevin steps of "
             "--step-size, no Metropolis test (approximate; for a stochastic score); "
             "activation-maximization: the field's regularised gradient ascent (--decay, "
             "--blur-every, --blur-sigma), no density (default: the preset's; hmc, "
             "imagenet langevin)", ["hmc", "langevin", "activation-maximization"]),
    _setting("transforms", None, str,
             "the score averaged over transforms of the input: shift:J (integer shifts "
             "up to J px)[,grid:G (shifts on a grid of G px)][,flip][,scale:0.9/1/1.1], or "
             "none (default: the preset's; none, imagenet shift:16)"),
    _setting("transform_mode", None, str,
             "random: one random transform per chain and gradient (a stochastic score: "
             "--sampler langevin); enumerate: every transform of the set each step, one "
             "batch (an exact energy: HMC stays exact, at |S| times the cost) "
             "(default: the preset's, random)", ["random", "enumerate"]),
    _setting("blur", None, cli.positive_float,
             "--reference blur: q is white noise of --sigma blurred by a Gaussian of this "
             "many pixels (default: the preset's, 1)"),
    _setting("decay", None, cli.nonneg_float,
             "activation-maximization: L2 decay per step (default: the preset's, 0.001)"),
    _setting("blur_every", None, cli.nonneg_int,
             "activation-maximization: blur every this many steps, 0 never (default: the "
             "preset's, 10)"),
    _setting("blur_sigma", None, cli.nonneg_float,
             "activation-maximization: that blur's Gaussian sigma in pixels (default: the "
             "preset's, 0.5)"),
    _setting("reference", None, str,
             "fixed: q from --ref-mean/--sigma; blur: white noise of --sigma blurred by "
             "--blur px (a smooth stationary q, sampled on the whole input); "
             "fit-global: one mean and marginal std "
             "fitted to --reference-lmdb; fit-pixel: mean image and per-pixel std; "
             "fit-gaussian: a Gaussian with the images' covariance (--gaussian-kind, "
             "--shrinkage); "
             "fit-spectrum: a stationary Gaussian, its power spectrum per colour "
             "channel fitted to the photos of --reference-images (samples the "
             "whole input: such a q does not factorize over pixels) "
             "(default: the preset's, fixed; lenet-fitted: fit-gaussian; imagenet: blur)",
             ["fixed", "blur", "fit-global", "fit-pixel", "fit-gaussian", "fit-spectrum"]),
    _setting("gaussian_kind", "full", str,
             "fit-gaussian: full covariance; lowrank: the top --rank principal components "
             "+ an isotropic residual; diagonal: per-pixel variances (default %(default)s)",
             list(GAUSSIAN_KINDS)),
    _setting("shrinkage", 1e-3, cli.positive_float,
             "fit-gaussian: variance added to every direction (MNIST's border pixels "
             "never vary), in input units squared (default %(default)s)"),
    _setting("rank", 50, cli.positive_int,
             "fit-gaussian lowrank: principal components kept (default %(default)s)"),
    _setting("bounds", None, str,
             "lo,hi: restrict p_y to the box lo <= x <= hi in input units (valid pixels: "
             "0,1 for LeNet), HMC trajectories reflecting off its walls; image: pixels "
             "0..255 minus --display-mean per channel, each Langevin step folded back "
             "into them (--sampler langevin or activation-maximization); none: no box "
             "(default: the preset's; none, lenet-fitted 0,1, imagenet image)"),
    _setting("pixel_model", None, str,
             "how --bounds enters the model: box: q truncated to the box, trajectories "
             "reflecting off its walls; logit: q a Gaussian on u = logit of the box "
             "coordinates, fitted to the dequantized --reference-lmdb images (steps of "
             "--reference-scale), HMC on u (default: the preset's; box, lenet-fitted logit)",
             ["box", "logit"]),
    _setting("reference_images", None, str,
             "folder of photos for --reference fit-spectrum: each read as BGR 0-255 "
             "(grayscale for a 1-channel net), short side resized to 256/227 of the "
             "input side, centre-cropped to the input, minus --display-mean (the "
             "net's per-channel mean), times --image-scale"),
    _setting("spectrum_colour", "channels", str,
             "fit-spectrum: one spectrum per colour channel, channels independent; or "
             "per principal colour axis of the photos (luminance, two opponent axes), "
             "so q has their colour correlations (default %(default)s)",
             ["channels", "decorrelated"]),
    _setting("spectrum_window", "none", str,
             "fit-spectrum: plain periodograms, or through a Hann window (no cross of "
             "border-jump power on the frequency axes) (default %(default)s)",
             ["none", "hann"]),
    _setting("image_scale", 1.0, cli.positive_float,
             "pixel -> input units for --reference-images (default %%(default)s; "
             "%s for LeNet)" % protocols.MNIST_SCALE),
    _setting("mass_matrix", None, str,
             "identity: m I; q: m Sigma^-1, Sigma q's covariance (momenta drawn and "
             "positions moved in q's whitened basis); auto: q for fit-spectrum, "
             "fit-gaussian and blur, identity otherwise (default: the preset's, auto)",
             ["auto", "identity", "q"]),
    _setting("reference_lmdb", os.path.join(config.data_dir(), "mnist", "mnist_train_lmdb"),
             str, "LMDB of training images for --reference fit-* (default %(default)s)"),
    _setting("reference_scale", protocols.MNIST_SCALE, cli.positive_float,
             "pixel -> input units for --reference-lmdb, as the training net's "
             "transform_param scale (default %(default)s)"),
    _setting("reference_count", 20000, cli.positive_int,
             "images read from --reference-lmdb, its first ones (default %(default)s)"),
    _setting("compare_lmdb", None, str,
             "labeled images (scaled by --reference-scale) to compare the samples "
             "with: summary.json gets each shown sample's correlation with the mean "
             "image of its unit's class, and how often that class mean is the "
             "closest (by correlation) of all classes (default: none)"),
    _setting("temperature", None, cli.positive_float,
             "T in U = -f_y/T + |x-mu|^2/2sigma^2; the paper's model is T = 1 "
             "(default: the preset's, 1; lenet-digits 0.03)"),
    _setting("full_input", False, bool,
             "sample the whole input for a convolutional node (default: only its "
             "receptive field, the rest drawn from q: exact and much faster)"),
    _setting("adapt", None, cli.nonneg_int,
             "dual-averaging step-size adaptation iterations before sampling "
             "(default: the preset's, 0 = off; lenet-digits 50)"),
    _setting("target_accept", None, cli.open_fraction,
             "target acceptance of --adapt (default: the preset's, 0.7; lenet-fitted 0.65)"),
    _setting("show", None, str,
             "what grid.png shows: final states or each chain's average over the "
             "sampling iterations (default: the preset's, final)", ["final", "mean"]),
    _setting("display", None, str,
             "input units -> pixels: lenet x255; imagenet + --display-mean, BGR->RGB; "
             "raw min-max per image (default: the preset's)", ["lenet", "imagenet", "raw"]),
    _setting("display_mean", "104,117,123", str,
             "per-channel (BGR) mean added back by --display imagenet "
             "(default %(default)s)"),
    _setting("no_crop", False, bool,
             "show the whole input for a convolutional node (default: crop to its "
             "receptive field)"),
    _setting("seed", 0, cli.seed,
             "random seed; chain i (chains are numbered unit by unit) draws from its own "
             "stream of it, whatever --workers or the chains after it (default %(default)s)"),
    _setting("chain_offset", 0, cli.uint32,
             "this run's chains are chains K, K+1, ... of a larger run (their random "
             "streams): runs over disjoint ranges with a fixed --step-size and --adapt 0 "
             "are shards of one run (docs/scaling.md) (default %(default)s)"),
    _setting("chain_block", hmc.CHAIN_BLOCK, cli.positive_int,
             "chains per Caffe batch: every chain is computed in a block of this many "
             "(padded, the padding dropped), so its arithmetic, and so the chain bit for "
             "bit, is the same whatever --num-chains, --workers and --chain-offset; "
             "runs to be compared or merged need the same value (default %(default)s)"),
    _setting("workers", os.cpu_count() or 1, cli.positive_int,
             "processes to split the chains over (whole --chain-block blocks), one "
             "OpenBLAS thread each (see --scheduler); 1 samples in "
             "this process with $OPENBLAS_NUM_THREADS threads (default: this machine's "
             "cores, %(default)s)"),
    _setting("scheduler", None, str,
             "sample on Dask: local starts a LocalCluster of --workers processes (one "
             "thread each); an address (tcp://host:8786) uses a running scheduler, e.g. "
             "one of dask-jobqueue (docs/scaling.md). Each task samples one shard of "
             "--shard-chains chains with the fixed --step-size (--adapt 0) and writes "
             "OUT/shards/chains_FIRST-LAST.npz; the shards are checked and merged into "
             "the same chains as one process (default: none; --workers > 1 then runs "
             "shards on a LocalCluster too with --adapt 0, the shard files in a temporary "
             "folder, and with --adapt this tool's lockstep pool, which adapts the step on "
             "all chains at once)"),
    _setting("shard_chains", None, cli.positive_int,
             "chains per Dask task, rounded up to whole --chain-block blocks (default: "
             "the chains split evenly over the cluster's worker threads)"),
    _setting("out", None, str, "output folder (default: results/hmc/<blob>_unit<unit>)"),
)
# The options a preset fills in when they are left out (its q and box:
# resolve).
PRESET_OPTIONS = ("iters", "step_size", "leapfrog_steps", "mass", "mass_convention", "sigma",
                  "ref_mean", "temperature", "adapt", "show", "display", "target_accept",
                  "sampler", "transforms", "transform_mode", "blur", "decay", "blur_every",
                  "blur_sigma", "mass_matrix")


def add_options(parser):
    """One command-line flag per row of OPTIONS."""
    for option in OPTIONS:
        option.add_to(parser)


# ---------------------------------------------------------------------------
# Checks, the preset's values, the reference q
# ---------------------------------------------------------------------------
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
    if not os.path.isfile(args.model):
        raise UsageError("prototxt not found: %s" % args.model)
    if args.preset == "auto":           # by the input's channels, read from the prototxt
        from gencnn import caffe_utils
        try:
            shape = caffe_utils.net_input_shape(caffe_utils.read_net(args.model))
        except ValueError as err:
            raise UsageError(str(err))
        args.preset = auto_preset(shape[1] if shape and len(shape) > 1 else 1)
    # The preset's q and box.
    preset = PRESETS[args.preset].values
    args.reference = args.reference or preset["reference"]
    bounds = parse_bounds(args.bounds if args.bounds is not None else preset["bounds"])
    args.pixel_model = args.pixel_model or preset["pixel_model"]
    if bounds == "image" and args.pixel_model == "logit":
        raise UsageError("--bounds image is a box for Langevin steps: --pixel-model box")
    if bounds is not None and args.pixel_model == "logit" and \
            args.reference not in ("fit-global", "fit-pixel", "fit-gaussian"):
        raise UsageError("--pixel-model logit needs q fitted to images on the logit scale: "
                         "--reference fit-gaussian, fit-pixel or fit-global")
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
    elif args.reference not in ("fixed", "blur") and not os.path.isdir(args.reference_lmdb):
        raise UsageError("--reference %s needs the LMDB %s (not found)"
                         % (args.reference, args.reference_lmdb))
    out_dir = args.out or os.path.join(config.REPO_ROOT, "results", "hmc",
                                       "%s_unit%s" % (args.blob.replace("/", "_"), args.unit))
    cli.check_writable(out_dir)          # now, not after minutes of sampling
    return units, position, weights, display_mean, bounds, out_dir


def parse_bounds(text):
    """(lo, hi) from 'lo,hi'; None for None or 'none'; "image" for image
    (the per-channel pixel box, made once the net's channels are known)."""
    if text is None or text.strip() == "none":
        return None
    if text.strip() == "image":
        return "image"
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
        name = auto_preset(channels)
    settings = dict(PRESETS[name].values)
    if settings["iters"] is None:
        settings["iters"] = 100 if is_conv else 500
    for key in PRESET_OPTIONS:
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["preset"] = name
    return settings


def reference_q(args, node, settings, display_mean, logit_bounds=None):
    """The reference q of the options: fixed, or fitted to --reference-lmdb
    (on the logit scale of `logit_bounds` when given) or (fit-spectrum) to
    --reference-images."""
    from gencnn.data.lmdb_io import lmdb_images
    from gencnn.sampling import reference as ref
    if args.reference == "fixed":
        return ref.DiagonalGaussian(settings["ref_mean"], settings["sigma"])
    if args.reference == "blur":
        from gencnn.sampling.separable import blur_gaussian
        if len(node.input_shape) != 3:
            raise UsageError("--reference blur needs an image input (C x H x W), the net's "
                             "is %s" % (node.input_shape,))
        return blur_gaussian(node.input_shape, settings["sigma"], settings["blur"],
                             settings["ref_mean"])
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




def sampler_arguments(settings, bounds, display_mean, channels):
    """sample_node's sampler, sampler_options, transforms, transform_mode and
    bounds for the resolved `settings`; the per-channel box of
    --bounds image becomes the Langevin sampler's own box."""
    from gencnn.sampling.langevin import image_box
    from gencnn.sampling.transforms import TransformSet
    kind = settings["sampler"]
    try:
        transforms = TransformSet.parse(settings["transforms"])
    except ValueError as err:
        raise UsageError("--transforms: %s" % err)
    if kind != "hmc" and settings["adapt"]:
        raise UsageError("--adapt needs a Metropolis test: --sampler %s takes a fixed "
                         "--step-size (--adapt 0)" % kind)
    if kind == "hmc" and transforms is not None and settings["transform_mode"] == "random" \
            and not transforms.is_identity:
        raise UsageError("random transforms make the score stochastic, which HMC's "
                         "Metropolis test cannot use: --transform-mode enumerate, or "
                         "--sampler langevin")
    options = {}
    if bounds == "image":
        if kind == "hmc":
            raise UsageError("--bounds image folds Langevin steps into the pixel box: "
                             "--sampler langevin (HMC takes --bounds lo,hi)")
        options["box"] = image_box(display_mean, channels)
        bounds = None
    elif bounds is not None and kind != "hmc":
        raise UsageError("--sampler %s takes --bounds image or none" % kind)
    if kind == "activation-maximization":
        if not settings["decay"] < 1:
            raise UsageError("--decay must be below 1, got %g" % settings["decay"])
        options.update(decay=settings["decay"], blur_every=settings["blur_every"],
                       blur_sigma=settings["blur_sigma"])
    return dict(sampler=kind, sampler_options=options,
                transforms=None if transforms.is_identity else transforms,
                transform_mode=settings["transform_mode"], bounds=bounds)
