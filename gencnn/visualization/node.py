"""Sample one node of a trained net: what tools/hmc_visualize.py runs.

    node = open_node(model, weights, blob, units, chains_per_unit)   # checks, loads
    result = sample_node(node, reference, step_size=..., ...)        # HMC
    result.out["samples"]                 # chains x input shape, input units

`open_node` loads the net and checks the blob, units, position and input
blob (ValueError with a one-line reason); `units=None` means every channel
of the blob. `sample_node` draws the chains from q, runs HMCSampler, and
for a convolutional node whose receptive field lies inside the image and a
q that factorizes over pixels samples only that field (exact: see
gencnn.visualization.receptive_field.input_crop), then puts the samples
back into whole inputs with fresh draws from q outside the field. For a
fully connected node it also reports which class the net gives the final
samples.
"""
import time
import warnings

import numpy as np

from gencnn import caffe_utils, config
from gencnn.data.lmdb_io import lmdb_images
from gencnn.sampling import hmc, parallel, shards
from gencnn.sampling.langevin import SAMPLERS
from gencnn.visualization.receptive_field import input_crop, receptive_field


class Node(object):
    """A node of a loaded net: net_param, weights, blob, units, chains_per_unit,
    num_chains, chain_units (the unit of each chain), input_blob, input_shape, channels
    (of the input), is_conv, position (in the whole input; None for a fully
    connected node), box (the receptive field to crop the display to, or
    None), and the loaded `net` and `score` (NodeScore, one unit per chain)."""


def open_node(model, weights, blob, units=None, chains_per_unit=1, position=None,
              input_blob=None, crop_display=True):
    """Load `model` (prototxt path or NetParameter) with `weights` for
    chains_per_unit chains per unit of `blob`; ValueError for an unknown
    blob or input blob, a unit or position out of range, or bad weights."""
    net_param = caffe_utils.read_net(model) if isinstance(model, str) else model
    if not (net_param.input or any(layer.type == "Input" for layer in net_param.layer)):
        # (a train_test net's data layers would open their LMDBs, or abort)
        raise ValueError("the net has no Input layer to sample: give a deploy prototxt, "
                         "not a train/test one")
    probe = caffe_utils.load_net(net_param, weights, 1, input_blob)
    hmc.NodeScore(probe, blob, 0)       # the unknown-blob error, if any
    if units is None:                   # every channel of the blob
        units = list(range(probe.blobs[blob].data.shape[1]))
    check_memory(probe, int(chains_per_unit) * len(units))
    del probe
    node = Node()
    node.net_param, node.weights, node.blob = net_param, weights, blob
    node.units, node.chains_per_unit = list(units), int(chains_per_unit)
    node.num_chains = node.chains_per_unit * len(node.units)
    node.chain_units = np.repeat(node.units, node.chains_per_unit)
    node.net = caffe_utils.load_net(net_param, weights, node.num_chains, input_blob)
    node.input_blob = input_blob or node.net.inputs[0]
    node.score = hmc.NodeScore(node.net, blob, node.chain_units, position,
                               node.input_blob)
    node.input_shape = tuple(node.net.blobs[node.input_blob].data.shape[1:])
    node.channels = node.input_shape[0] if len(node.input_shape) == 3 else 1
    node.is_conv = node.score.is_conv
    node.position = node.score.position if node.is_conv else None
    node.box = None
    if node.is_conv and len(node.input_shape) == 3 and crop_display:
        node.box = receptive_field(net_param, blob, node.score.position, node.input_shape)
    return node


# Caffe counts a blob's elements in an int.
CAFFE_MAX_COUNT = 2 ** 31 - 1


def check_memory(probe, num_chains):
    """ValueError, before anything big is allocated, when `num_chains` chains
    of the one-chain net `probe` would overflow a Caffe blob or need more
    memory than this machine has available: every blob's data and diff
    (float32) and the sampler's float64 state (position, momentum,
    gradient, chain sum and their temporaries: ~8 copies of the input)."""
    largest = max(blob.count for blob in probe.blobs.values())
    per_chain = 8 * sum(blob.count for blob in probe.blobs.values()) + \
        64 * probe.blobs[probe.inputs[0]].count
    if largest * num_chains > CAFFE_MAX_COUNT:
        raise ValueError("%d chains overflow a Caffe blob (%d elements per chain in the "
                         "largest): use fewer chains or units" % (num_chains, largest))
    available = config.available_memory()
    if available is not None and per_chain * num_chains > available:
        raise ValueError("%d chains need ~%.1f GB (%.2f MB each), more than the %.1f GB "
                         "available: use fewer chains or units"
                         % (num_chains, per_chain * num_chains / 1e9, per_chain / 1e6,
                            available / 1e9))


class NodeSamples(object):
    """What sample_node returns: `out` (HMCSampler.sample's dict, samples,
    chain_mean and snapshots as whole inputs), `sampler`, `crop` ((box,
    position in the crop) or None), `sample_shape` (what was sampled),
    `wall` seconds, `predicted_fraction` (fully connected nodes: the
    fraction of final samples the net scores highest at their own unit)."""


def sample_node(node, reference, iters, step_size=hmc.STEP_SIZE, leapfrog_steps=50, mass=0.01,
                mass_convention="paper", temperature=1.0, adapt=0, target_accept=0.7,
                precondition=False, full_input=False, seed=0, warn=None, callback=None,
                num_snapshots=8, bounds=None, pixel_model="box", workers=1,
                threads_per_worker=1, first_chain=0, sampler="hmc", sampler_options=None,
                transforms=None, transform_mode="random", chain_block=hmc.CHAIN_BLOCK,
                scheduler=None, shard_chains=None, shard_dir=None, engine="auto",
                shard_callback=None):
    """HMC samples of `node` (from open_node) under q = `reference`
    (gencnn.sampling.reference), `adapt` + `iters` iterations.

    sampler: "hmc", or another key of gencnn.sampling.langevin.SAMPLERS
    ("langevin": unadjusted Langevin steps of `step_size`;
    "activation-maximization": the field's regularised gradient ascent),
    with its own `sampler_options` (e.g. box, decay, blur_every).
    transforms: a TransformSet (gencnn.sampling.transforms): the node's
    score averaged over it, enumerated each evaluation (transform_mode
    "enumerate": exact) or one random member per chain and evaluation
    ("random").

    full_input=False samples a convolutional node on its receptive field
    when that is exact (the field lies inside the image, q factorizes over
    pixels, no `bounds`); chain 0 is snapshotted at `num_snapshots` iterations.
    callback(it, out) is called after every iteration (a progress bar).
    bounds=(lo, hi) restricts p_y to valid pixels: pixel_model "box" (q
    truncated to the box, HMCSampler's reflecting trajectories) or "logit"
    (`reference` is a q on u = logit of the box coordinates, the chains move
    in u through hmc.LogitScore, and what is returned is in pixels again;
    chain_mean is then x of each chain's mean u).
    workers > 1 splits the chains over that many processes: with a fixed step
    (adapt 0) as shards on a Dask LocalCluster (scheduler "local", below,
    the shard files in a temporary folder), with step-size adaptation in
    the project's lockstep pool (gencnn.sampling.parallel, `threads_per_worker`
    OpenBLAS threads each), which averages the acceptance over all chains
    every iteration; engine "pool" or "dask" forces one (bench/hmc_engines.py
    compares them). Either gives the same chains as workers=1, which runs in
    this process, bit for bit: every chain is computed in a Caffe batch of
    `chain_block` chains (hmc.chain_blocks), the same whatever the workers
    and chains.
    Chain n of the node is chain first_chain + n of a larger run (its random
    stream; docs/scaling.md: one shard of a run split over machines).
    scheduler: None samples here (workers as above); "local" on a Dask
    LocalCluster of `workers` processes started here, or the address of a
    running Dask scheduler: shards of `shard_chains` chains as tasks, each
    writing its file into `shard_dir`, merged (gencnn.sampling.shards; a
    fixed step: adapt 0); shard_callback(done, total) is called per shard.
    (A LocalCluster starts its workers by multiprocessing's spawn, which
    imports the calling script again: a script must call this under
    `if __name__ == "__main__":`, as the tools do.)
    """
    if node.net is None:
        raise ValueError("this node was sampled on its receptive field, which freed its "
                         "net: open_node again")
    if sampler != "hmc" and adapt:
        raise ValueError("step-size adaptation needs a Metropolis test: the %s sampler "
                         "takes a fixed step (adapt 0)" % sampler)
    if scheduler is not None and adapt:
        raise ValueError("shards run with a fixed step (adapt 0): the adaptation averages "
                         "the acceptance over all chains every iteration")
    input_shape = node.input_shape
    crop = None
    if node.is_conv and len(input_shape) == 3 and not full_input and reference.factorized \
            and bounds is None:
        crop = input_crop(node.net_param, node.blob, node.score.position, input_shape)
    net_param, sample_shape = node.net_param, input_shape
    position, sampled_reference = node.score.position, reference
    logit = bounds is not None and pixel_model == "logit"
    if crop is not None:
        # Sample only the node's receptive field: a truncated net reshaped to the crop.
        (cy0, cy1, cx0, cx1), position = crop
        net_param = caffe_utils.truncate_net_param(node.net_param, node.blob)
        sample_shape = (input_shape[0], cy1 - cy0, cx1 - cx0)
        sampled_reference = reference.crop(crop[0])
        node.net = node.score = None     # the whole-input net, freed first (memory)
    options = dict(step_size=step_size, leapfrog_steps=leapfrog_steps, mass=mass,
                   mass_convention=mass_convention, seed=seed, temperature=temperature,
                   reference=sampled_reference, precondition=precondition,
                   bounds=None if logit else bounds, **(sampler_options or {}))
    # This process's sampler: the options for the summary, and the warnings
    # (workers never warn: the loop here does, hmc.run_chains).
    sampler_kind = sampler
    sampler = SAMPLERS[sampler_kind](None, warn=warn or warnings.warn,
                                     chain_ids=first_chain + np.arange(node.num_chains),
                                     **options)
    total = adapt + iters
    snapshot_iters = np.unique(np.linspace(0, total, num_snapshots).round().astype(int))
    spec = parallel.ChainSpec(net_param, node.weights, node.input_blob, sample_shape,
                              node.blob, node.chain_units, position, options, first_chain,
                              logit_bounds=bounds if logit else None, sampler=sampler_kind,
                              transforms=transforms, transform_mode=transform_mode,
                              block=chain_block)
    plan = SamplingPlan(spec, dict(step_size=step_size, iters=iters, adapt=adapt,
                                   target_accept=target_accept, snapshot_iters=snapshot_iters),
                        # (the whole input's q only fills a crop's surroundings: not
                        # shipped to every task otherwise)
                        crop[0] if crop else None, reference if crop else None,
                        input_shape)
    meta = shards.describe_run(plan)
    worker_rows = parallel.split_chains(node.num_chains, workers, chain_block, first_chain)
    if scheduler is None and len(worker_rows) > 1 and \
            (engine == "dask" or (engine == "auto" and not adapt)):
        # Shards on a local cluster: measured faster than the lockstep pool,
        # whose every iteration waits for its slowest worker (README)
        scheduler = "local"
    start = time.time()
    if scheduler is not None:
        out = shards.sample_on_dask(plan, meta, scheduler, workers, shard_chains, shard_dir,
                                    shard_callback)
        hmc.warn_divergences(out["divergent"], sampler.warn)
    else:
        if len(worker_rows) > 1:
            with parallel.WorkerChains(spec, workers, threads_per_worker) as chains:
                out = hmc.run_chains(chains, warn=sampler.warn, callback=callback,
                                     **plan.schedule)
        else:
            # (the node's own net serves when the whole input is sampled)
            chains = spec.build(np.arange(node.num_chains),
                                net=node.net if crop is None else None)
            out = hmc.run_chains(chains, warn=sampler.warn, callback=callback,
                                 **plan.schedule)
        plan.finish(out, first_chain)
    wall = time.time() - start
    for name in hmc.COUNTERS:          # (counted where the chains ran)
        setattr(sampler, name, out[name])

    predicted_fraction = None
    if not node.is_conv:             # (never cropped: node.net is the whole net)
        shape = node.net.blobs[node.input_blob].data.shape
        if shape[0] != node.num_chains:           # (batched for an enumerated set S)
            node.net.blobs[node.input_blob].reshape(node.num_chains, *shape[1:])
            node.net.reshape()
        node.net.blobs[node.input_blob].data[...] = out["samples"]
        node.net.forward(end=node.score.layer)
        scores = node.net.blobs[node.blob].data.reshape(node.num_chains, -1)
        predicted_fraction = float((scores.argmax(axis=1) == node.score.units).mean())

    result = NodeSamples()
    result.out, result.sampler, result.crop = out, sampler, crop
    result.sample_shape, result.wall = sample_shape, wall
    result.predicted_fraction = predicted_fraction
    # (processes: of the pool or of a LocalCluster; unknown for a scheduler
    # given by address; a Dask run's task count is out["shards"])
    result.workers = {None: len(worker_rows), "local": workers}.get(scheduler)
    result.meta = shards.shard_meta(meta, out, first_chain)
    return result


class SamplingPlan(object):
    """What sampling a node's chains needs, anywhere (pickled to Dask
    workers): `spec` (parallel.ChainSpec), `schedule` (hmc.run_chains's
    step_size, iters, adapt, target_accept, snapshot_iters), and what turns
    the sampled states into whole inputs (`finish`): the crop `box` sampled
    (or None), the whole input's `reference` q (for a crop) and `input_shape`."""

    def __init__(self, spec, schedule, box, reference, input_shape):
        self.spec, self.schedule = spec, schedule
        self.box, self.reference, self.input_shape = box, reference, tuple(input_shape)

    def finish(self, out, first_chain):
        """run_chains's `out` of chains first_chain, ... as whole inputs in
        pixels: the logit pixel model's u mapped to x; a crop put back into
        whole inputs, the rest fresh draws from q (exact, f ignores those
        pixels; chain i's from its own second stream, hmc.chain_rng(seed, i,
        1)), its averages and snapshots q's mean there."""
        if self.spec.logit_bounds is not None:
            for key in ("samples", "chain_mean", "snapshots"):
                out[key] = hmc.logit_to_pixels(out[key], self.spec.logit_bounds)
        if self.box is None:
            return
        cy0, cy1, cx0, cx1 = self.box
        seed, shape = self.spec.sampler_options.get("seed", 0), self.input_shape
        full_mean = np.broadcast_to(self.reference.mean, shape)
        noise = np.array([hmc.chain_rng(seed, first_chain + n, 1).standard_normal(shape)
                          for n in range(len(out["samples"]))])
        for key, fill in (("samples", full_mean + self.reference.std * noise),
                          ("chain_mean", full_mean + 0 * noise),
                          ("snapshots", np.broadcast_to(full_mean, (len(out["snapshots"]),)
                                                        + shape))):
            full = np.array(fill)
            full[..., cy0:cy1, cx0:cx1] = out[key]
            out[key] = full


# ---------------------------------------------------------------------------
# Comparison with class means, the samples file
# ---------------------------------------------------------------------------

def class_means(lmdb_path, scale, count, input_shape):
    """(classes, mean image of each class, flattened) of a labeled LMDB; read
    before sampling, so a bad --compare-lmdb costs no sampling time.
    UserError for an empty LMDB or images of another shape."""
    images, labels = lmdb_images(lmdb_path, scale, count, input_shape,
                                 name="--compare-lmdb %s" % lmdb_path)
    images = images.reshape(len(labels), -1)
    classes = np.unique(labels)
    return classes, np.array([images[labels == c].mean(axis=0) for c in classes])


def compare_with_classes(states, units, classes, means):
    """How digit-like are the states? Correlation with their class's mean
    training image, and how often that class mean correlates best."""
    states = states.reshape(len(states), -1)

    def standardize(a):
        a = a - a.mean(axis=1, keepdims=True)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    corr = standardize(states).dot(standardize(means).T)       # states x classes
    own = corr[np.arange(len(units)), np.searchsorted(classes, units)]
    return {"corr_with_own_class_mean": float(own.mean()),
            "closest_class_mean_is_unit": float((classes[corr.argmax(axis=1)] == units).mean())}


def save_samples(path, out, units, meta=None):
    """samples.npz (see tools/hmc_visualize.py), written atomically, with the
    run's and chains' description `meta` (gencnn.sampling.shards)."""
    shards.save(path, out, units, meta)
