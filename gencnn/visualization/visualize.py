"""A generative visualization run end to end, what tools/hmc_visualize.py
does with its options (gencnn/visualization/settings.py): open the node,
make q, sample it (node.sample_node), and write samples.npz, summary.json
and the figures to the output folder."""
import json
import os
import sys

from gencnn import files
from gencnn.visualization import settings as options
from gencnn.visualization.settings import UsageError


# What a run writes to its --out folder.
OUTPUTS = ("samples.npz", "summary.json", "grid.png", "grid_final.png", "grid_mean.png",
           "trajectory.png", "shards")


def run(args):
    """The run of the parsed options `args` (settings.OPTIONS); its summary."""
    units, position, weights, display_mean, bounds, out_dir = options.resolve(args)
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
    if compare is not None:
        missing = sorted(set(node.units) - set(compare[0].tolist()))
        if missing:
            raise UsageError("--compare-lmdb %s has no image of class %d (unit %d's): "
                             "compare with an LMDB holding every sampled unit's class"
                             % (args.compare_lmdb, missing[0], missing[0]))
    if os.path.isdir(out_dir):
        # A run's outputs replace the folder as a whole (files.atomic_folder).
        foreign = sorted(set(os.listdir(out_dir)) - set(OUTPUTS))
        if foreign:
            raise UsageError("--out %s holds %s, which is not an output of hmc_visualize: "
                             "a run replaces its --out folder as a whole, so give a new or "
                             "empty folder" % (out_dir, foreign[0]))
    units, input_shape, is_conv = node.units, node.input_shape, node.is_conv
    settings = options.preset_settings(args, node.channels, is_conv)
    if settings["display"] == "imagenet" and len(display_mean) < node.channels:
        raise UsageError("--display-mean needs one value per input channel (%d), got %d"
                         % (node.channels, len(display_mean)))
    sampling_kind = options.sampler_arguments(settings, bounds, display_mean, node.channels)
    bounds = sampling_kind.pop("bounds")
    logit = bounds is not None and args.pixel_model == "logit"
    q = options.reference_q(args, node, settings, display_mean, bounds if logit else None)
    mass_matrix = settings["mass_matrix"]
    if mass_matrix == "auto":
        mass_matrix = "q" if args.reference in ("fit-spectrum", "fit-gaussian", "blur") \
            else "identity"
    precondition = mass_matrix == "q"

    warnings_shown = [0]

    def warn(message):
        warnings_shown[0] += 1
        if warnings_shown[0] <= 3:
            tqdm.write("warning: " + message, file=sys.stderr)
        elif warnings_shown[0] == 4:
            tqdm.write("warning: more divergences; see summary.json", file=sys.stderr)

    iters, adapt = settings["iters"], settings["adapt"]
    if args.shard_chains is not None and args.scheduler is None:
        raise UsageError("--shard-chains sizes the tasks of --scheduler: give --scheduler "
                         "local or an address")
    if args.scheduler is not None and adapt:
        raise UsageError("--scheduler runs shards with a fixed step: give --adapt 0 and "
                         "--step-size (e.g. the final_step_size of a short --adapt run; "
                         "docs/scaling.md)")
    # samples.npz (final states and chain means, float32; per chain and
    # iteration six float64 traces) and the figures: refused now, not after
    # the sampling, when writing them would fail
    files.check_disk(out_dir, 8 * int(np.prod(input_shape)) * node.num_chains +
                     48 * node.num_chains * (adapt + iters) + (16 << 20),
                     "the samples and figures")
    description = "%s %s unit %s" % (
        {"hmc": "HMC", "langevin": "Langevin"}.get(settings["sampler"], "act. max."),
        args.blob, args.unit)
    bars = []

    def bar(total, unit):
        if not bars:
            bars.append(tqdm(total=total, desc=description, file=sys.stderr, unit=unit,
                             dynamic_ncols=True))
        return bars[0]

    def progress(it, out):
        bar(adapt + iters, "it").update(1)
        bars[0].set_postfix(acc="%.2f" % out["accepted"][:it + 1].mean(),
                            f="%.2f" % out["f"][it].mean(),
                            eps="%.3g" % out["step_size"][it])

    def shard_done(done, total):
        # Dask: a bar of shards, from the first one done (a scheduler that
        # cannot be reached is then one error line, not a bar and a line)
        bar(total, "shard").update(1)

    try:
        result = sample_node(node, q, iters, step_size=settings["step_size"],
                             leapfrog_steps=settings["leapfrog_steps"], mass=settings["mass"],
                             mass_convention=settings["mass_convention"],
                             temperature=settings["temperature"], adapt=adapt,
                             target_accept=settings["target_accept"], full_input=args.full_input,
                             precondition=precondition, bounds=bounds,
                             pixel_model=args.pixel_model if bounds else None,
                             seed=args.seed, warn=warn, callback=progress,
                             shard_callback=shard_done,
                             workers=args.workers, first_chain=args.chain_offset,
                             chain_block=args.chain_block, scheduler=args.scheduler,
                             shard_chains=args.shard_chains,
                             shard_dir=os.path.join(out_dir, "shards") if args.scheduler else None,
                             **sampling_kind)
    finally:        # the error line, if any, comes after the bar
        for started in bars:
            started.close()
    out, sampler, crop, wall = result.out, result.sampler, result.crop, result.wall
    chain_units = node.chain_units

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
        "sampler": sampling_kind["sampler"],
        "transforms": settings["transforms"] if sampling_kind["transforms"] else None,
        "transform_mode": settings["transform_mode"] if sampling_kind["transforms"] else None,
        "blur": settings["blur"] if args.reference == "blur" else None,
        "box": "image" if "box" in sampling_kind["sampler_options"] else None,
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
        "chain_block": args.chain_block, "scheduler": args.scheduler,
        "shards": out.get("shards"),
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
    # One unit: a kill while writing leaves the previous run's complete set.
    with files.atomic_folder(out_dir) as folder:
        figures.save_grid(os.path.join(folder, "grid.png"), states[settings["show"]], pixels,
                          rows, cols)
        figures.save_grid(os.path.join(folder, "grid_%s.png" % other), states[other], pixels,
                          rows, cols)
        figures.save_trajectory(os.path.join(folder, "trajectory.png"), out, pixels,
                                "%s unit %d, chain 0: preset %s, eps %.3g, L %d, mass %g "
                                "(%s), q = %s, T %g" % (
                                    args.blob, units[0], settings["preset"],
                                    out["final_step_size"], settings["leapfrog_steps"],
                                    settings["mass"], settings["mass_convention"],
                                    q.describe(), settings["temperature"]))
        save_samples(os.path.join(folder, "samples.npz"), out, chain_units, result.meta)
        shards = os.path.join(out_dir, "shards")
        if args.scheduler and os.path.isdir(shards):    # the tasks' files stay with the run
            os.rename(shards, os.path.join(folder, "shards"))
        files.write_atomic(os.path.join(folder, "summary.json"), json.dumps(summary, indent=1))
    print("%s unit %s: acceptance %.3f, divergences %d, f_y %.2f, %.1f s -> %s"
          % (args.blob, args.unit, summary["acceptance_rate"], summary["divergences"],
             summary["f_final_mean"], wall, out_dir))
    return summary


