#!/usr/bin/env python
"""White-noise q against a fitted-spectrum q for SqueezeNet nodes.

The q are fitted to the same photos (default ../shared/data/imagenet_stubs,
16 photos; resized to 256, centre 227 x 227, minus the mean 104/117/123):

  white            N(m, s^2 I), one mean and marginal std (--reference fit-global)
  spectrum         stationary N(mu, Sigma), Sigma diagonal in the 2-D Fourier
                   basis of each channel, the photos' power spectrum
                   (--reference fit-spectrum)
  spectrum-colour  the same per principal colour axis of the photos, spectra
                   through a Hann window (--spectrum-colour decorrelated
                   --spectrum-window hann)

and each node is sampled under both at equal compute: the same chains, the
same adaptation and sampling iterations and leapfrog steps (so the same
number of forward + backward passes), both with the mass matrix m Sigma^-1
(for white q a plain rescaling of the step), the whole input sampled.

Measured on the final samples:
  class nodes (pool_final): the net's softmax probability of the target
      class; the same after 8-pixel shifts (the four directions, np.roll)
      and after rescaling by 0.9 and 1.1 (about the centre; reflect-padded
      or centre-cropped back to 227);
  fire-module channels: f_y at the node, and what is left of it at the same
      node after the same shifts (the pattern misaligned by 8 / stride
      positions: 2 for fire3, 1 for fire5) and rescalings, as a fraction of
      f_y (ratio of the means over chains);
  both: the radially averaged power-spectrum slope (log power against log
      frequency, Hann-windowed, frequencies 4 to 90 cycles per 227 pixels;
      2 to 0.4 x side on a receptive-field crop) against the photos'.

Writes results/hmc/reference_q.json (with the command line) and one grid per
node, results/figures/squeezenet_refq_<node>.png: per q and unit a row,
first q's draw (that row's first chain's start), then the final states; for
a fire channel also <node>_raw.png, each image min-max stretched. The
class-node grids keep every second pixel (227 x 227 inputs, 9 rows).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import caffe_utils, cli, config, files  # noqa: E402
from gencnn.sampling import hmc, reference as ref  # noqa: E402
from gencnn.visualization import figures, node as node_lib  # noqa: E402

MEAN = [104.0, 117.0, 123.0]
SHIFTS = [(8, 0), (-8, 0), (0, 8), (0, -8)]
SCALES = [0.9, 1.1]


def squeezenet_dir():
    return os.path.join(config.shared_dir(), "models", "squeezenet_v1.0")


def shift(x, dy, dx):
    return np.roll(x, (dy, dx), axis=(-2, -1))


def rescale(x, factor):
    """C x H x W scaled by `factor` about the centre, back to H x W."""
    import cv2
    c, h, w = x.shape
    size = int(round(h * factor))
    big = np.stack([cv2.resize(ch, (size, size), interpolation=cv2.INTER_LINEAR) for ch in x])
    if size >= h:
        o = (size - h) // 2
        return big[:, o:o + h, o:o + w]
    lo = (h - size) // 2
    return np.pad(big, ((0, 0), (lo, h - size - lo), (lo, w - size - lo)), mode="reflect")


def radial_slope(images, box=None):
    """Slope of log radially averaged power against log frequency, per image
    and channel (Hann window), of the images cropped to `box`; (mean, std)
    over them (gencnn.visualization.class_measures.power_slope)."""
    from gencnn.visualization.class_measures import power_slope
    if box is not None:
        y0, y1, x0, x1 = box
        images = images[..., y0:y1, x0:x1]
    return power_slope(images)


class Judge(object):
    """The whole net, for scoring samples and their shifted/rescaled copies."""

    def __init__(self, model, weights):
        self.net_param = caffe_utils.read_net(model)
        self.weights = weights
        self.nets = {}

    def blob_values(self, blob, x):
        n = len(x)
        if n not in self.nets:
            self.nets[n] = caffe_utils.load_net(self.net_param, self.weights, n)
        net = self.nets[n]
        net.blobs["data"].data[...] = x
        net.forward(end=hmc.NodeScore(net, blob, 0)._producer(blob))
        return net.blobs[blob].data.astype(np.float64).copy()

    def class_probability(self, x, units):
        scores = self.blob_values("pool_final", x).reshape(len(x), -1)
        scores -= scores.max(axis=1, keepdims=True)
        prob = np.exp(scores)
        prob /= prob.sum(axis=1, keepdims=True)
        return prob[np.arange(len(x)), units], (prob.argmax(axis=1) == units)

    def class_measures(self, x, units):
        p, top1 = self.class_probability(x, units)
        shifted = [self.class_probability(np.array([shift(s, dy, dx) for s in x]), units)[0]
                   for dy, dx in SHIFTS]
        scaled = [self.class_probability(np.array([rescale(s, f) for s in x]), units)[0]
                  for f in SCALES]
        return {"target_probability": p.tolist(),
                "target_probability_mean": float(p.mean()),
                "top1_is_target": float(top1.mean()),
                "target_probability_shifted_8px_mean": float(np.mean(shifted)),
                "target_probability_rescaled_mean": float(np.mean(scaled)),
                "target_probability_rescaled_0.9": float(np.mean(scaled[0])),
                "target_probability_rescaled_1.1": float(np.mean(scaled[1]))}

    def conv_measures(self, x, blob, units, position):
        """f_y at the node, and at the same node after the image is shifted by
        8 pixels (so the pattern is misaligned by 8 / stride positions) or
        rescaled about the centre: kept = mean after / mean before."""
        y, xx = position

        def at_node(images):
            values = self.blob_values(blob, images)
            return values[np.arange(len(images)), units, y, xx]
        f = at_node(x)
        shifted = np.mean([at_node(np.array([shift(s, dy, dx) for s in x]))
                           for dy, dx in SHIFTS], axis=0)
        scaled = np.mean([at_node(np.array([rescale(s, fac) for s in x])) for fac in SCALES],
                         axis=0)
        f_mean = float(f.mean())
        return {"f": f.tolist(), "f_mean": f_mean,
                "f_shifted_8px_mean": float(shifted.mean()),
                "f_rescaled_mean": float(scaled.mean()),
                "kept_after_shift_8px": float(shifted.mean()) / f_mean if f_mean > 0 else None,
                "kept_after_rescale": float(scaled.mean()) / f_mean if f_mean > 0 else None}


def run_node(judge, spec, q, q_name, args, photos_slope):
    warnings = []
    node = node_lib.open_node(judge.net_param, judge.weights, spec["blob"], spec["units"],
                              args.chains)
    units, box, position = node.chain_units, node.box, node.position
    result = node_lib.sample_node(node, q, args.iters, step_size=args.step_size,
                                  leapfrog_steps=args.leapfrog_steps, mass=1.0,
                                  mass_convention="inverse", temperature=spec["temperature"],
                                  adapt=args.adapt, target_accept=0.7, precondition=True,
                                  full_input=True, seed=args.seed, warn=warnings.append)
    del node
    out = result.out
    samples = out["samples"]
    start = q.sample(np.random.RandomState(args.seed), samples.shape)   # = the chains' starts
    assert np.allclose(start[0], out["snapshots"][0])
    row = {"q": q_name, "wall_s": round(result.wall, 1),
           "evaluations": result.sampler.evaluations,
           "final_step_size": out["final_step_size"],
           "acceptance_rate": float(out["accepted"][args.adapt:].mean()),
           "divergences": int(out["divergent"].sum()),
           "f_start_mean": float(out["f"][0].mean()),
           # how far the chains moved: RMS of q-whitened (final - start), over
           # sqrt(2), the RMS between two independent draws of q (1 = as far)
           "moved_whitened_rms_over_sqrt2": (np.sqrt((q.cov_power(
               samples - start, -0.5) ** 2).reshape(len(start), -1).mean(axis=1)) /
               np.sqrt(2)).tolist(),
           "f_final_mean": float(out["f"][-1].mean()),
           "power_slope_samples": radial_slope(samples, box),
           "power_slope_q_draws": radial_slope(start, box),
           "power_slope_photos": photos_slope(box)}
    if spec["blob"] == "pool_final":
        row["samples"] = judge.class_measures(samples, units)
        row["q_draws"] = judge.class_measures(start, units)
    else:
        row["samples"] = judge.conv_measures(samples, spec["blob"], units, position)
        row["q_draws"] = judge.conv_measures(start, spec["blob"], units, position)
    return row, samples, start, box


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--photos", default=None,
        help="folder of photos q is fitted to (default: $GENCNN_SHARED/data/imagenet_stubs/images)")
    add("--chains", type=int, default=2, help="chains per unit (default %(default)s)")
    add("--adapt", type=int, default=20)
    add("--iters", type=int, default=30)
    add("--leapfrog-steps", type=int, default=5)
    add("--step-size", type=float, default=0.5,
        help="initial step in q's whitened units, then adapted (default %(default)s)")
    add("--class-temperatures", default="0.01")
    add("--qs", default="white,spectrum,spectrum-colour")
    add("--conv-temperature", type=float, default=1.0)
    add("--nodes", default="class,fire3,fire5")
    add("--seed", type=int, default=0)
    add("--out", default=os.path.join(config.REPO_ROOT, "results", "hmc", "reference_q.json"))
    add("--figures", default=os.path.join(config.REPO_ROOT, "results", "figures"))
    args = parser.parse_args(argv)
    photos_dir = os.path.abspath(args.photos or os.path.join(
        config.shared_dir(), "data", "imagenet_stubs", "images"))
    model = os.path.join(squeezenet_dir(), "SqueezeNet_deploy.prototxt")
    weights = os.path.join(squeezenet_dir(), "squeezenet_v1.0_deepcompressed.caffemodel")
    judge = Judge(model, weights)
    os.makedirs(args.figures, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    photos = ref.load_images(photos_dir, (3, 227, 227), MEAN)
    white = ref.fit_q(photos, "global")
    qs = {"white": white, "spectrum": ref.fit_spectrum(photos),
          "spectrum-colour": ref.fit_spectrum(photos, decorrelate_colour=True, window=True)}
    spectrum = qs["spectrum"]

    def photos_slope(box):
        return radial_slope(photos, box)

    specs = []
    wanted = args.nodes.split(",")
    if "class" in wanted:
        for t in [float(v) for v in args.class_temperatures.split(",")]:
            specs.append({"name": "pool_final_T%g" % t, "blob": "pool_final",
                          "units": [9, 130, 949], "temperature": t})
    # The fire channels: the first unit active at the map's centre in at least
    # 7 of 8 draws from both q (seed 1), so neither chain starts where the
    # ReLU is off and f_y is flat: fire3 unit 4, fire5 unit 3.
    if "fire3" in wanted:
        specs.append({"name": "fire3_unit4", "blob": "fire3/concat", "units": [4],
                      "temperature": args.conv_temperature})
    if "fire5" in wanted:
        specs.append({"name": "fire5_unit3", "blob": "fire5/concat", "units": [3],
                      "temperature": args.conv_temperature})

    report = {"command": "OPENBLAS_NUM_THREADS=1 python studies/hmc_reference_q.py "
                         + " ".join(sys.argv[1:] if argv is None else argv),
              "model": model, "weights": weights, "photos": photos_dir,
              "num_photos": len(photos),
              "white_q": {"mean": white.mean_value, "std": white.std_value},
              "spectrum_q": {"channel_means_bgr": spectrum.mean.ravel().tolist(),
                             "marginal_std_bgr": spectrum.marginal_std().tolist()},
              "spectrum_colour_q": {
                  "colour_basis_columns_bgr": qs["spectrum-colour"].colour_basis.tolist(),
                  "marginal_std_bgr": qs["spectrum-colour"].marginal_std().tolist()},
              "settings": {"chains_per_unit": args.chains, "adapt": args.adapt,
                           "iters": args.iters, "leapfrog_steps": args.leapfrog_steps,
                           "initial_step_whitened": args.step_size, "target_accept": 0.7,
                           "mass_matrix": "m Sigma^-1 (both q)", "seed": args.seed},
              "photos_power_slope_full": radial_slope(photos),
              "nodes": []}
    started = time.time()
    for spec in specs:
        entry = {k: v for k, v in spec.items()}
        rows, states = [], []
        for q_name in args.qs.split(","):
            q = qs[q_name]
            print("%s, q %s ..." % (spec["name"], q_name), flush=True)
            row, samples, start, box = run_node(judge, spec, q, q_name, args, photos_slope)
            print(json.dumps({k: row[k] for k in ("wall_s", "acceptance_rate", "f_final_mean",
                                                  "power_slope_samples")}), flush=True)
            rows.append(row)
            states.append((start, samples))
        entry["runs"] = rows
        report["nodes"].append(entry)
        # grid: per q and unit a row: chain 0's start, then the final states;
        # for a fire channel also min-max stretched per image (_raw), since
        # its samples saturate the 0-255 display
        per_unit = args.chains
        for display, suffix in [("imagenet", "")] + (
                [("raw", "_raw")] if spec["blob"] != "pool_final" else []):
            images = []
            for start, samples in states:
                for u in range(len(spec["units"])):
                    chains = slice(u * per_unit, (u + 1) * per_unit)
                    images += [figures.to_pixels(s, display, MEAN, box)
                               for s in [start[u * per_unit]] + list(samples[chains])]
            grid = figures.tile(images, len(states) * len(spec["units"]), per_unit + 1)
            if spec["blob"] == "pool_final":
                grid = grid[::2, ::2]    # every second pixel: 1 MB, not 4 (noise compresses badly)
            figures.save_png(os.path.join(args.figures, "squeezenet_refq_%s%s.png"
                                          % (spec["name"], suffix)), grid)
        report["wall_s_total"] = round(time.time() - started, 1)
        files.write_atomic(args.out, json.dumps(report, indent=1))
    print("-> %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
