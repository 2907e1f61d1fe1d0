"""results/generative_learning.json: the section-5 runs (their
history.json) and their T = 1 samples judged by a separately trained
classifier (tools/generative_learning_report.py)."""
import json
import os

import numpy as np

from gencnn.cli import UserError


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
