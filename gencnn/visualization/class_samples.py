"""Class samples of an ImageNet net: the recommended sampler, a temperature
ladder of the same model, and the field's activation maximisation at equal
compute, each measured the same way (gencnn.visualization.class_measures).

The model is the paper's p_y(x) ~ exp(f-bar_y(x) / T) q(x) with
- f-bar_y the class score averaged over random integer shifts of up to 16
  pixels (gencnn.sampling.transforms, one shift per gradient),
- q white noise of 64 (the photos' pixel standard deviation) blurred by a
  Gaussian of 1 pixel (gencnn.sampling.separable.blur_gaussian): the
  smoothness that activation maximisation gets from a blur step, written
  as the prior's covariance,
- pixels kept valid (0..255 after the mean is added back) by folding each
  step back into the box,
sampled by unadjusted Langevin dynamics in q's whitened coordinates
(gencnn.sampling.langevin). SETTINGS names every set; RECOMMENDED is what
tools/hmc_visualize.py --preset imagenet runs.

Each set is sampled once into <out>/<name>.npz (x: chains x 3 x H x W, the
net's input units rounded to whole pixels, int16; y: class per chain; and
the run's traces), and reused when the file exists with the same settings:
an interrupted study resumes set by set.
"""
import json
import os
import time

import numpy as np

from gencnn import files

# The classes sampled: ostrich, flamingo and strawberry (the ones tried first
# outside the project), and seven more kinds of object.
CLASSES = (9, 130, 949, 1, 94, 291, 323, 417, 817, 980)
CHAINS_PER_CLASS = 4
STEPS = 150                # forward + backward passes per chain, every set
MEAN_BGR = (104.0, 117.0, 123.0)

SAMPLER = dict(sampler="langevin", q="blur", sigma=64.0, blur=1.0, step_size=0.2,
               precondition=True, transforms="shift:16", transform_mode="random",
               box="image")
RECOMMENDED_TEMPERATURE = 1e-3
LADDER = (1.0, 1e-2, 3e-3, 1e-3, 1e-4)
BASELINE = dict(sampler="activation-maximization", q="white", sigma=10.0, step_size=1.5,
                decay=1e-3, blur_every=10, blur_sigma=0.5, precondition=False,
                transforms="shift:16", transform_mode="random", box="image",
                temperature=1.0)


def ladder_name(temperature):
    return "langevin_T%g" % temperature


RECOMMENDED = ladder_name(RECOMMENDED_TEMPERATURE)
# (in the order a study samples them: the recommended set and the baseline first)
SETTINGS = dict([(RECOMMENDED, dict(SAMPLER, temperature=RECOMMENDED_TEMPERATURE)),
                 ("activation_maximization", BASELINE)] +
                [(ladder_name(t), dict(SAMPLER, temperature=t)) for t in sorted(LADDER)
                 if t != RECOMMENDED_TEMPERATURE])


def make_reference(setting, input_shape):
    from gencnn.sampling.reference import DiagonalGaussian
    from gencnn.sampling.separable import blur_gaussian
    if setting["q"] == "blur":
        return blur_gaussian(input_shape, setting["sigma"], setting["blur"])
    return DiagonalGaussian(0.0, setting["sigma"])


def sampler_options(setting, mean=MEAN_BGR, channels=3):
    """The sampler's own options of a setting (the box of valid pixels, the
    recipe's regularisers)."""
    from gencnn.sampling.langevin import image_box
    options = {}
    if setting.get("box") == "image":
        options["box"] = image_box(mean, channels)
    if setting["sampler"] == "activation-maximization":
        options.update(decay=setting["decay"], blur_every=setting["blur_every"],
                       blur_sigma=setting["blur_sigma"])
    return options


def sample_set(model, weights, blob, setting, classes=CLASSES, chains=CHAINS_PER_CLASS,
               steps=STEPS, seed=0, workers=1, callback=None):
    """Sample one setting: (out dict of sample_node, wall seconds)."""
    from gencnn.sampling.transforms import TransformSet
    from gencnn.visualization.node import open_node, sample_node
    node = open_node(model, weights, blob, list(classes), chains)
    q = make_reference(setting, node.input_shape)
    result = sample_node(node, q, steps, step_size=setting["step_size"], leapfrog_steps=1,
                         mass=1.0, mass_convention="inverse",
                         temperature=setting["temperature"], precondition=setting["precondition"],
                         seed=seed, callback=callback, workers=workers,
                         sampler=setting["sampler"],
                         sampler_options=sampler_options(setting, channels=node.channels),
                         transforms=TransformSet.parse(setting["transforms"]),
                         transform_mode=setting["transform_mode"])
    return result, node


def compact(x):
    """Samples in input units rounded to whole pixels (the mean is whole):
    int16, what an 8-bit image of them holds."""
    return np.round(np.asarray(x, dtype=np.float64)).astype(np.int16)


def set_record(setting, classes, chains, steps, seed, model, weights):
    return {"setting": setting, "classes": [int(c) for c in classes], "chains": int(chains),
            "steps": int(steps), "seed": int(seed), "model": os.path.basename(model),
            "weights": os.path.basename(weights)}


def run_set(name, out_dir, model, weights, blob="pool_final", classes=CLASSES,
            chains=CHAINS_PER_CLASS, steps=STEPS, seed=0, workers=1, log=print):
    """Sample set `name` of SETTINGS into out_dir/name.npz unless it is there
    with the same record; returns the path."""
    path = os.path.join(out_dir, name + ".npz")
    record = set_record(SETTINGS[name], classes, chains, steps, seed, model, weights)
    if os.path.isfile(path):
        with np.load(path) as stored:
            if json.loads(str(stored["record"])) == record:
                log("%s: sampled already (%s)" % (name, path))
                return path
        log("%s: %s holds another setting: sampling again" % (name, path))
    start = time.time()

    def progress(it, out):
        if (it + 1) % 25 == 0:
            log("%s: step %d/%d, mean f %.1f, %.0f s" % (name, it + 1, steps,
                                                        out["f"][it].mean(),
                                                        time.time() - start))
    result, node = sample_set(model, weights, blob, SETTINGS[name], classes, chains, steps,
                              seed, workers, progress)
    out = result.out
    os.makedirs(out_dir, exist_ok=True)
    with files.atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, x=compact(out["samples"]), y=node.chain_units,
                                temperature=SETTINGS[name]["temperature"],
                                f=out["f"].astype(np.float32),
                                divergent=out["divergent"], accepted=out["accepted"],
                                evaluations=out["evaluations"], wall_s=result.wall,
                                record=json.dumps(record))
    log("%s: %d chains x %d steps in %.0f s -> %s" % (name, node.num_chains, steps,
                                                     result.wall, path))
    return path
