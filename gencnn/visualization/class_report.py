"""The report of tools/imagenet_classes.py: every committed class-sample set
measured the same way (gencnn.visualization.class_measures) beside the real
photos and q's own draws, the grids and the ladder figure.

    results/imagenet_classes.json:
    {"net": {"model", "weights", "blob"},
     "recommended": {"method", "temperature", "q", "transforms", "samples", "measures"},
     "ladder": [{"temperature", "samples", "measures"}, ...]   (T from 1 down),
     "baseline": {"method": "activation maximisation", "samples", "measures"},
     "references": {"photos": {...}, "q_draws": {...}}}

Every number is computed from the committed .npz files (and the photos), so
`measure_report` recomputes it exactly (tests/test_imagenet_classes.py).
"""
import json
import os

import numpy as np

from gencnn import config, files
from gencnn.visualization import class_measures, class_samples, figures

LABELS = "imagenet_labels.txt"
FEATURE_BLOB = "fire5/concat"        # the mid-layer of the diversity measure


def relative(path):
    return os.path.relpath(os.path.abspath(path), config.REPO_ROOT)


def load_set(path):
    with np.load(path) as stored:
        return {key: stored[key] for key in stored.files}


def sampler_measures(stored):
    """What the run itself tells: steps, divergences, acceptance (Langevin
    and the recipe have no test: every step is taken), seconds."""
    chains = stored["f"].shape[1]
    return {"steps": int(stored["f"].shape[0]), "chains": int(chains),
            "divergences": int(stored["divergent"].sum()),
            "acceptance": float(stored["accepted"].mean()),
            "f_final_mean": float(stored["f"][-1].mean()),
            "forward_backward_per_chain": int(stored["evaluations"]),
            "wall_s": round(float(stored["wall_s"]), 1),
            "s_per_chain_step": float(stored["wall_s"]) / (chains * int(stored["evaluations"]))}


def photo_set(photos_dir, input_shape, mean=class_samples.MEAN_BGR):
    """(x, y) of the labelled photos (resized to 256, centre crop)."""
    from gencnn.data import imagenet
    from gencnn.sampling.reference import load_images
    items = imagenet.list_named_photos(os.path.join(photos_dir, "images"),
                                       imagenet.read_label_names(
                                           os.path.join(photos_dir, LABELS)))
    x = load_images(os.path.join(photos_dir, "images"), input_shape, mean)
    if len(x) != len(items):
        raise ValueError("%d photos read of %d listed" % (len(x), len(items)))
    return x, np.array([label for _, label in items])


def q_draws(q, count, input_shape, seed=0):
    """The trivial fake: draws of q as they are, and folded into the box and
    rounded to whole pixels as a sample set is."""
    from gencnn.sampling.langevin import fold, image_box
    x = q.sample(np.random.default_rng(seed), (count,) + tuple(input_shape))
    return x, class_samples.compact(fold(x, *image_box(class_samples.MEAN_BGR)))


def q_energy_excess(x, q):
    """Per image, -log q(x) minus its mean over q's own draws (D / 2 nats
    above q's minimum, D the pixels): how far x lies from q's typical set,
    in nats (q's draws themselves spread over sd sqrt(D / 2))."""
    x = np.asarray(x, dtype=np.float64)
    return q.energy(x) - 0.5 * np.prod(x.shape[1:])


def measure_report(samples_dir, model, weights, blob, photos_dir):
    """The report dict (no files written)."""
    from gencnn import caffe_utils
    net = caffe_utils.load_net(model, weights, 1)
    judge = class_measures.Judge(net, blob, FEATURE_BLOB)
    input_shape = net.blobs[net.inputs[0]].data.shape[1:]
    mean = class_samples.MEAN_BGR

    def measured(name):
        path = os.path.join(samples_dir, name + ".npz")
        stored = load_set(path)
        result = class_measures.measure(judge, stored["x"], stored["y"], mean)
        result.update(sampler_measures(stored))
        return relative(path), result, stored

    recommended_path, recommended, stored = measured(class_samples.RECOMMENDED)
    setting = class_samples.SETTINGS[class_samples.RECOMMENDED]
    report = {"net": {"model": relative(model), "weights": relative(weights), "blob": blob},
              "recommended": {
                  "method": "unadjusted Langevin, %s transforms (%s), preconditioned by q"
                            % (setting["transforms"], setting["transform_mode"]),
                  "temperature": setting["temperature"],
                  "q": "white noise of sd %g blurred by a %g px Gaussian (marginal sd %.1f)"
                       % (setting["sigma"], setting["blur"],
                          class_samples.make_reference(setting, input_shape).marginal_std()),
                  "transforms": setting["transforms"], "step_size": setting["step_size"],
                  "samples": recommended_path, "measures": recommended},
              "ladder": []}
    for temperature in sorted(class_samples.LADDER, reverse=True):
        name = class_samples.ladder_name(temperature)
        if not os.path.isfile(os.path.join(samples_dir, name + ".npz")):
            continue
        path, result = (recommended_path, recommended) if name == class_samples.RECOMMENDED \
            else measured(name)[:2]
        report["ladder"].append({"temperature": temperature, "samples": path,
                                 "measures": result})
    name = "activation_maximization"
    if os.path.isfile(os.path.join(samples_dir, name + ".npz")):
        path, result, _ = measured(name)
        base = class_samples.BASELINE
        report["baseline"] = {
            "method": "activation maximisation",
            "recipe": "jitter (random shift <= 16 px), L2 decay %g, Gaussian blur %g px every "
                      "%d steps, normalised gradient steps of %g, clipped to the box, from "
                      "N(0, %g^2)" % (base["decay"], base["blur_sigma"], base["blur_every"],
                                      base["step_size"], base["sigma"]),
            "samples": path, "measures": result}
    photos_x, photos_y = photo_set(photos_dir, input_shape)
    photos = class_measures.measure(judge, photos_x, photos_y, mean)
    photos["diversity_across_classes"] = class_measures.diversity(judge.features(photos_x))
    photos["diversity_maps_across_classes"] = class_measures.diversity(judge.maps(photos_x))
    # why T = 1 gives q: what f gains on a photo of the class, what q charges
    # for it, and q's own spread (draws before rounding to pixels)
    q = class_samples.make_reference(class_samples.SETTINGS[class_samples.RECOMMENDED],
                                     input_shape)
    scores = judge.scores(photos_x)[np.arange(len(photos_y)), photos_y]
    photos["f_target_median"] = float(np.median(scores))
    photos["q_energy_excess_median"] = float(np.median(q_energy_excess(photos_x, q)))
    draws, fake_x = q_draws(q, len(stored["y"]), input_shape)
    fake_y = stored["y"]
    q_spread = {"q_energy_excess_sd_expected": float(np.sqrt(0.5 * np.prod(input_shape))),
                "q_energy_excess_sd_of_draws": float(np.std(q_energy_excess(draws, q)))}
    fakes = class_measures.measure(judge, fake_x, fake_y, mean)
    fakes.update(q_spread)
    report["references"] = {"photos": photos, "q_draws": fakes}
    return report


def save_figures(report, samples_dir, figure_dir):
    """The recommended and baseline grids (a row per class, a column per
    chain) and the ladder (a row per temperature, chain 0 of each class)."""
    mean = class_samples.MEAN_BGR

    def pixels(x):
        return figures.to_pixels(x, "imagenet", mean)

    def grid(name, stride=1):
        stored = load_set(os.path.join(samples_dir, name + ".npz"))
        y = stored["y"]
        classes = list(dict.fromkeys(int(c) for c in y))
        chains = int((y == classes[0]).sum())
        images = [pixels(x)[::stride, ::stride] for x in stored["x"]]
        return figures.tile(images, len(classes), chains, min_side=1)

    os.makedirs(figure_dir, exist_ok=True)
    written = []
    for name, key in ((class_samples.RECOMMENDED, "recommended"),
                      ("activation_maximization", "baseline")):
        if os.path.isfile(os.path.join(samples_dir, name + ".npz")):
            path = os.path.join(figure_dir, "imagenet_classes_%s.png" % key)
            figures.save_png(path, grid(name, stride=2))
            written.append(path)
    rows = []
    for entry in report["ladder"]:
        stored = load_set(os.path.join(config.REPO_ROOT, entry["samples"]))
        first = [int(np.flatnonzero(stored["y"] == c)[0]) for c in
                 dict.fromkeys(int(c) for c in stored["y"])]
        rows.append(("T = %g" % entry["temperature"],
                     [pixels(stored["x"][i])[::2, ::2] for i in first]))
    if "baseline" in report:
        stored = load_set(os.path.join(config.REPO_ROOT, report["baseline"]["samples"]))
        first = [int(np.flatnonzero(stored["y"] == c)[0]) for c in
                 dict.fromkeys(int(c) for c in stored["y"])]
        rows.append(("act. max.", [pixels(stored["x"][i])[::2, ::2] for i in first]))
    if rows:
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(len(rows), 1, figsize=(13, 1.45 * len(rows)), squeeze=False)
        for ax, (label, images) in zip(axes[:, 0], rows):
            ax.imshow(figures.tile(images, 1, len(images), min_side=1, gap=2))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        fig.suptitle("SqueezeNet class samples, chain 0 of classes %s: a row per temperature"
                     % ", ".join(str(c) for c in class_samples.CLASSES), fontsize=9)
        fig.subplots_adjust(left=0.085, right=0.995, top=0.93, bottom=0.01, hspace=0.1)
        path = os.path.join(figure_dir, "imagenet_classes_ladder.png")
        files.save_figure(fig, path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_report(samples_dir, report_path, model, weights, blob, photos_dir):
    report = measure_report(samples_dir, model, weights, blob, photos_dir)
    report["figures"] = [relative(p) for p in save_figures(
        report, samples_dir, os.path.join(config.REPO_ROOT, "results", "figures"))]
    files.write_atomic(report_path, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report
