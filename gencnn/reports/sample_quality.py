"""The sample-quality report (results/sample_quality*.json, the table
tools/sample_quality.py prints): every set and baseline measured by
gencnn/sample_quality.py's measures against one reference, the settings
that reproduce a report, and its recompute check."""
import collections
import os

from gencnn.cli import UserError
from gencnn.sample_quality import (BASELINE_SEED_OFFSETS, MNIST_SCALE, REAL, REAL_POOL,
                                   TEMPLATE_NOISE, WHITE, WHITE_Q_MEAN, WHITE_Q_STD, Judge,
                                   baseline_sets, check_labels, image_array, load_reference,
                                   measure_set, npz_arrays, read_sample_set)


def make_report(judge_model, judge_weights, train_lmdb, test_lmdb, sets, q_alone=None, seed=0,
                judge_test_error=None, scale=MNIST_SCALE, white_mean=None,
                white_std=None, real_pool=REAL_POOL, log=print, mean_file=None,
                feature_blob="ip1"):
    """results/sample_quality.json's content (its format: docs/visualization_results.md):
    {"judge", "sets", "baselines"}. sets: [(name, samples .npz path)], at
    least one; the baselines are drawn like the first set (its n and class
    counts). q_alone: (name, .npz path of q draws, "x" only needed) or None.
    judge_test_error: the judge's stated test error (%), or None to use the
    one measured on test_lmdb. mean_file: the mean image the judge's Data
    layer subtracts (CIFAR-10), None for MNIST. white_mean / white_std: the
    white q baseline's, default MNIST's q (WHITE_Q_*) without a mean_file,
    else the training images' mean and marginal sd in input units.
    feature_blob: the judge's blob FID is computed on. Every input is
    checked before any work."""
    if not sets:
        raise UserError("no sample set given")
    names = [name for name, _ in sets]
    if len(set(names)) != len(names):
        raise UserError("set name %s given twice" % next(n for n in names if names.count(n) > 1))
    if q_alone is not None and q_alone[0] in BASELINE_SEED_OFFSETS:
        raise UserError("the q-alone baseline cannot be called %r (a baseline of its own)"
                        % q_alone[0])
    for path, what in ((judge_model, "judge model"), (judge_weights, "judge weights"),
                       (train_lmdb, "training LMDB"), (test_lmdb, "test LMDB"),
                       (mean_file, "mean file")):
        if path is not None and not os.path.exists(path):
            raise UserError("%s %s not found" % (what, path))
    judge = Judge(judge_model, judge_weights, feature_blob=feature_blob)
    loaded = collections.OrderedDict(
        (name, read_sample_set(path, judge.input_shape, judge.num_classes, "set %s" % name))
        for name, path in sets)
    q_draws = None
    if q_alone is not None:
        what = "q alone %s" % q_alone[0]
        q_set = image_array(npz_arrays(q_alone[1], what), "x", judge.input_shape, what,
                             "the draws of q")
        q_draws = (q_alone[0], q_set)
        like = loaded[names[0]]
        if len(q_set) < len(like["y"]):
            raise UserError("q alone %s: %d draws of q, %d needed (set %s's n)"
                            % (q_alone[0], len(q_set), len(like["y"]), names[0]))

    log("reading %s and %s, judging the test digits" % (train_lmdb, test_lmdb))
    reference = load_reference(judge, train_lmdb, test_lmdb, scale, mean_file)
    for name, data in loaded.items():
        check_labels(data["y"], reference, "set %s" % name)
    if white_mean is None:
        white_mean = WHITE_Q_MEAN if mean_file is None else float(reference.train_images.mean())
    if white_std is None:
        white_std = WHITE_Q_STD if mean_file is None else float(reference.train_images.std())

    judge_entry = collections.OrderedDict([
        ("model", judge_model), ("weights", judge_weights),
        ("test_error_pct", reference.test_error_pct if judge_test_error is None
         else float(judge_test_error)),
        ("test_error_source", "test LMDB" if judge_test_error is None else "given"),
        ("test_lmdb_error_pct", reference.test_error_pct),
        ("features", "%s as the net leaves it (LeNet: after relu1, which works in place)"
         % judge.feature_blob if mean_file is None and feature_blob == "ip1" else
         "%s of the judge as the net leaves it" % judge.feature_blob),
        ("train_lmdb", train_lmdb), ("test_lmdb", test_lmdb), ("scale", scale)]
        + ([("mean_file", mean_file)] if mean_file is not None else [])
        + ([("feature_blob", feature_blob)] if feature_blob != "ip1" else []) + [
        ("train_n", int(len(reference.train_images))), ("test_n", int(reference.test_n)),
        ("test_nearest_train_median", reference.test_median)])
    report = collections.OrderedDict([("judge", judge_entry),
                                      ("sets", collections.OrderedDict()),
                                      ("baselines", collections.OrderedDict())])
    for (name, path), data in zip(sets, loaded.values()):
        log("measuring set %s (n = %d)" % (name, len(data["y"])))
        entry = collections.OrderedDict(
            [("net", None), ("q", None), ("temperature", None)])
        entry.update(data["meta"])
        entry["samples"] = path
        entry.update(measure_set(judge, reference, data["x"], data["y"], data["chain_mean"]))
        report["sets"][name] = entry

    like_name = names[0]
    for name, (x, description) in baseline_sets(reference, loaded[like_name]["y"], seed,
                                                white_mean, white_std, real_pool,
                                                q_draws).items():
        log("measuring baseline %s" % name)
        entry = collections.OrderedDict([("source", description), ("like", like_name),
                                         ("seed", seed)])
        if name == WHITE:
            entry.update([("mean", white_mean), ("std", white_std)])
        elif name == TEMPLATE_NOISE:
            entry["std"] = white_std
        elif name == REAL:
            entry["pool"] = real_pool
        elif q_alone is not None and name == q_alone[0]:
            entry["samples"] = q_alone[1]
        entry.update(measure_set(judge, reference, x, loaded[like_name]["y"]))
        report["baselines"][name] = entry
    return report


def report_settings(report):
    """make_report's arguments that reproduce `report`."""
    judge = report["judge"]
    baselines = report["baselines"]
    settings = {"judge_model": judge["model"], "judge_weights": judge["weights"],
                "train_lmdb": judge["train_lmdb"], "test_lmdb": judge["test_lmdb"],
                "scale": judge["scale"], "mean_file": judge.get("mean_file"),
                "feature_blob": judge.get("feature_blob", "ip1"),
                "judge_test_error": (judge["test_error_pct"]
                                     if judge["test_error_source"] == "given" else None),
                "sets": [(name, entry["samples"]) for name, entry in report["sets"].items()],
                "seed": baselines[WHITE]["seed"], "white_mean": baselines[WHITE]["mean"],
                "white_std": baselines[WHITE]["std"], "real_pool": baselines[REAL]["pool"],
                "q_alone": None}
    for name, entry in baselines.items():
        if name not in BASELINE_SEED_OFFSETS:
            settings["q_alone"] = (name, entry["samples"])
    return settings


def report_differences(old, new, rtol=1e-6, where=""):
    """["where: old vs new"] for every number of `old` that `new` does not
    reproduce within rtol (relative; 1e-12 absolute near 0), and every key
    or other value that differs."""
    import math
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in list(old) + [k for k in new if k not in old]:
            path = "%s.%s" % (where, key) if where else key
            if key not in old or key not in new:
                found.append("%s: %s vs %s" % (path, "present" if key in old else "absent",
                                                "present" if key in new else "absent"))
            else:
                found.extend(report_differences(old[key], new[key], rtol, path))
        return found
    numbers = (int, float)
    if isinstance(old, numbers) and isinstance(new, numbers) \
            and not isinstance(old, bool) and not isinstance(new, bool):
        if math.isclose(old, new, rel_tol=rtol, abs_tol=1e-12):
            return []
    elif old == new:
        return []
    return ["%s: %r vs %r" % (where, old, new)]


def recompute_check(path, rtol=1e-6, log=print):
    """Recompute the report at `path` from the files it names; UserError
    naming the first difference beyond rtol. Returns the recomputed report."""
    import json
    try:
        with open(path) as f:
            report = json.load(f)
    except ValueError as err:
        raise UserError("%s is not JSON: %s" % (path, err))
    try:
        settings = report_settings(report)
    except (KeyError, TypeError) as err:
        raise UserError("%s is not a sample quality report (no %s)" % (path, err))
    new = json.loads(json.dumps(make_report(log=log, **settings)))
    differences = report_differences(report, new, rtol)
    if differences:
        raise UserError("%s is not reproduced (%d values differ), first %s"
                        % (path, len(differences), differences[0]))
    return new


TABLE_COLUMNS = (("n", "n", "%d"), ("judge_accuracy", "judged %", "%.1f"),
                 ("inception_score", "IS", "%.2f"), ("lenet_fid", "LeNet-FID", "%.1f"),
                 ("pixels_out_of_range", "out of the box %", "%.1f"),
                 ("within_class_corr", "within-class corr", "%.2f"),
                 ("nearest_train_distance_ratio", "nearest-train ratio", "%.2f"))
_PERCENT = {"judge_accuracy", "pixels_out_of_range"}


HEADLINE_N = 1000     # FID's small-n bias: headline numbers need at least this n


def report_notes(report):
    """Lines a reader of the table must see: sets below HEADLINE_N, and sets
    whose class counts differ from the ones the baselines were drawn like."""
    notes = []
    like = next(iter(report["baselines"].values()))["like"]
    counts = {name: entry.get("class_counts") for name, entry in report["sets"].items()}
    for name, entry in report["sets"].items():
        if entry["n"] < HEADLINE_N:
            notes.append("note: set %s has n = %d < %d: its FID is biased upwards, not a "
                         "headline number" % (name, entry["n"], HEADLINE_N))
        if counts[name] != counts[like]:
            notes.append("note: set %s has other class counts than %s, which the baselines "
                         "are drawn like: compare it with them with care" % (name, like))
    return notes


def markdown_table(report):
    """The measures of every set and baseline as a markdown table."""
    lines = ["| set | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |",
             "|---|" + "---|" * len(TABLE_COLUMNS)]
    for group in ("sets", "baselines"):
        for name, entry in report[group].items():
            cells = []
            for key, _, fmt in TABLE_COLUMNS:
                value = entry.get(key)
                cells.append("—" if value is None else
                             fmt % (100 * value if key in _PERCENT else value))
            label = name if group == "sets" else "%s (baseline)" % name
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
    return "\n".join(lines)
