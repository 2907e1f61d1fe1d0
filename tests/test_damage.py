"""Damaged inputs and interrupted runs: an LMDB rewritten in the middle, or
holding what would abort Caffe (an image of another size, no entry, a NaN
pixel, a label past the net's classes); weights of the right shapes but
short or non-finite data; a per-iteration log torn by a kill; damaged
checkpoints and outputs of a run folder; leftovers of a killed writer; a
study stopped by a signal. Each is refused in one line or repaired, never
run on silently. Real Caffe, small data."""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import caffe
import lmdb
from caffe.proto import caffe_pb2
from conftest import REPO, one_line_error, run_tool as tool
from gencnn import caffe_utils, cli, files, run_folder
from gencnn.data import lmdb_io

LENET = os.path.join(REPO, "prototxt", "lenet_deploy.prototxt")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def digits(subset, count):
    """The first `count` (image, label) pairs of the subset's training LMDB."""
    return list(lmdb_io.read_lmdb(str(subset / "mnist_train_lmdb"), count))


# ------------------------------------------------------------------ LMDBs
def test_the_fingerprint_sees_a_rewrite_in_the_middle(tmp_path, subset):
    entries = digits(subset, 64)
    path = str(tmp_path / "db_lmdb")
    lmdb_io.write_lmdb(path, entries, map_size=1 << 24)
    before = lmdb_io.lmdb_fingerprint(path)
    changed = list(entries)
    changed[30] = (255 - changed[30][0], (changed[30][1] + 1) % 10)
    lmdb_io.write_lmdb(path, changed, map_size=1 << 24)
    after = lmdb_io.lmdb_fingerprint(path)
    assert after != before
    # A run recorded before full hashing stored only the count and a hash
    # of the first and last 8 entries: still the same content for a resume.
    digest = hashlib.sha256()
    for key, value in _raw(path)[:8] + _raw(path)[::-1][:8]:
        digest.update(key)
        digest.update(value)
    recorded = "64 entries, sha256 %s" % digest.hexdigest()[:16]
    assert lmdb_io.same_fingerprint(recorded, after)
    assert not lmdb_io.same_fingerprint(before, after)
    assert not lmdb_io.same_fingerprint("63 entries, sha256 0123456789abcdef", before)


def _raw(path):
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        entries = list(txn.cursor())
    env.close()
    return entries


def _bad_lmdbs(tmp_path, subset):
    """LMDBs that pass a first-entry check but would abort Caffe or train on
    nonsense, with the part of the error line each must give."""
    entries = digits(subset, 200)
    cases = {}

    def make(name, examples, message):
        path = str(tmp_path / (name + "_lmdb"))
        lmdb_io.write_lmdb(path, examples, map_size=1 << 26)
        cases[name] = (path, message)
    make("mixed", entries[:100] + [(np.zeros((1, 32, 32), np.uint8), 3)] + entries[100:],
         "entry '00000100' holds a 1x32x32 image, the first entry ('00000000') a 1x28x28")
    make("labels", [(image, 12 if i % 5 == 4 else label)
                    for i, (image, label) in enumerate(entries)],
         "entry '00000004' has label 12")
    nan = [(image.astype(np.float32), label) for image, label in entries]
    nan[7][0][0, 3, 3] = np.nan
    make("nan", nan, "entry '00000007' holds a non-finite pixel (nan)")
    make("empty", [], "is empty")
    encoded = caffe_pb2.Datum(channels=1, height=28, width=28, data=b"\xff\xd8\xff" * 10,
                              encoded=True, label=1)
    path = str(tmp_path / "encoded_lmdb")
    shutil.copytree(cases["labels"][0], path)
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"00000050", encoded.SerializeToString())
    env.close()
    cases["encoded"] = (path, "entry '00000050' is an encoded (compressed) image")
    return cases


@pytest.mark.slow
def test_lmdbs_that_would_abort_caffe_are_one_line_before_training(tmp_path, subset,
                                                                   small_solvers):
    """two_stage.py (DG and GG) refuses each before its run folder holds a
    run; on main they were Caffe aborts (rc 134, the labels' only after the
    whole training) or a divergence blamed on the learning rate."""
    for name, (path, message) in sorted(_bad_lmdbs(tmp_path, subset).items()):
        for solver in ("dg", "gg"):
            out = tmp_path / ("run_%s_%s" % (name, solver))
            proc = tool("two_stage.py", "--stage1", small_solvers[solver], "--train-lmdb",
                        path, "--no-progress", "--out", out, check=False)
            line = one_line_error(proc)
            assert message in line, (name, line)
            assert not (out / "snapshots").exists() or not os.listdir(str(out / "snapshots"))
            if name != "labels":
                break       # read by the same scan whatever the loss


@pytest.mark.slow
def test_generative_learning_refuses_bad_labels_and_pixels(tmp_path, subset):
    cases = _bad_lmdbs(tmp_path, subset)
    for name in ("labels", "nan", "mixed"):
        path, message = cases[name]
        out = tmp_path / ("gl_" + name)
        proc = tool("generative_learning.py", "--out", out, "--train-lmdb", path,
                    "--test-lmdb", subset / "mnist_test_lmdb", "--synthesized", 8,
                    "--buffer-size", 20, "--mcmc-iters", 2, "--reference-count", 100,
                    "--no-progress", check=False, cwd=REPO)
        line = one_line_error(proc)
        assert message in line, (name, line)
        assert not (out / "state.json").exists()


# ---------------------------------------------------------------- weights
def _damaged_weights(tmp_path):
    good = str(tmp_path / "good.caffemodel")
    caffe.Net(LENET, caffe.TEST).save(good)
    paths = {"good": good}
    for name in ("short", "inf", "nan"):
        model = caffe_pb2.NetParameter()
        model.ParseFromString(open(good, "rb").read())
        blob = [layer for layer in model.layer if layer.name == "ip2"][0].blobs[0]
        if name == "short":
            del blob.data[100:]
        else:
            blob.data[17] = float(name)
        paths[name] = str(tmp_path / (name + ".caffemodel"))
        open(paths[name], "wb").write(model.SerializeToString())
    return paths


def test_check_weights_refuses_short_and_non_finite_data(tmp_path):
    paths = _damaged_weights(tmp_path)
    caffe_utils.check_weights(LENET, paths["good"])
    for name, message in (("short", "layer ip2: blob 0 holds 100 values, its shape 10x500 "
                                    "needs 5000"),
                          ("inf", "layer ip2: blob 0 holds a non-finite weight (inf)"),
                          ("nan", "layer ip2: blob 0 holds a non-finite weight (nan)")):
        with pytest.raises(cli.UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            caffe_utils.check_weights(LENET, paths[name])


def test_tools_refuse_short_and_non_finite_weights_in_one_line(tmp_path):
    """As --weights of hmc_visualize (on main: exit 0 with f_y NaN, or
    Caffe's abort) and of evaluate."""
    paths = _damaged_weights(tmp_path)
    for name in ("short", "nan", "inf"):
        out = tmp_path / ("hmc_" + name)
        line = one_line_error(tool("hmc_visualize.py", "--model", LENET, "--weights",
                                   paths[name], "--blob", "ip2", "--unit", 3, "--iters", 2,
                                   "--num-chains", 2, "--out", out, check=False))
        assert "layer ip2: blob 0 holds" in line, line
        assert not out.exists()


# -------------------------------------------------------------- run folder
def test_a_torn_row_is_dropped_and_the_next_rows_follow_it(tmp_path):
    """A kill mid-write tears the last row ("4" of "41\\t..."): on main the
    resume kept it and glued the next row to it."""
    path = str(tmp_path / "iterations.tsv")
    with open(path, "w") as f:
        for it in range(1, 41):
            f.write("%d\t%.17g\t0.5\n" % (it, 1.0 / it))
        f.write("4")
    run_folder.truncate_tsv(path, 40)
    with open(path, "a") as f:
        f.write("41\t0.25\t0.5\n")
    assert [row[0] for row in run_folder.rows_since(path, 0)] == list(range(1, 42))
    assert run_folder.rows_since(path, 39) == [[40, 1.0 / 40, 0.5], [41, 0.25, 0.5]]
    # a bad row before the end is damage, not a torn write
    with open(path, "a") as f:
        f.write("garbage\n42\t0.1\t0.5\n")
    with pytest.raises(cli.UserError, match="iterations.tsv: line 42 is not a row of numbers"):
        run_folder.rows_since(path, 0)


@pytest.fixture(scope="module")
def finished_run(small_solvers, tmp_path_factory):
    """A one-epoch DG run of two_stage.py (checkpoints every 10 iterations):
    its folder and arguments."""
    out = tmp_path_factory.mktemp("finished") / "run"
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 1,
            "--checkpoint-every", 10, "--no-progress", "--out", out]
    tool("two_stage.py", *args)
    return out, args


def _copy_run(finished_run, tmp_path, done=False):
    """A copy of the finished run; done=False: as if killed after its last
    checkpoint, before it was marked done (a resume restores it)."""
    src, args = finished_run
    out = tmp_path / "run"
    shutil.copytree(str(src), str(out))
    state = json.load(open(str(out / "state.json")))
    state["done"] = done
    (out / "state.json").write_text(json.dumps(state))
    args = list(args)
    args[args.index("--out") + 1] = out
    return out, args + ["--resume"], state


@pytest.mark.parametrize("damage", ["truncated caffemodel", "missing caffemodel",
                                    "truncated solverstate", "wrong types"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(finished_run, tmp_path, damage):
    out, args, state = _copy_run(finished_run, tmp_path)
    ck = state["checkpoint"]
    what, kind = damage.split()[1], damage.split()[0]
    if damage == "wrong types":
        state["checkpoint"]["iter"] = "32"
        (out / "state.json").write_text(json.dumps(state))
        named = "state.json"
    else:
        named = ck[what]
        path = out / named
        if kind == "missing":
            path.unlink()
        else:
            data = path.read_bytes()
            path.write_bytes(data[:len(data) // 2])
    line = one_line_error(tool("two_stage.py", *args, check=False))
    assert str(out / named) in line, line
    assert ("missing" if kind == "missing" else "damaged" if damage != "wrong types"
            else "unreadable") in line, line


def test_a_damaged_checkpoint_recorded_before_checksums_is_still_caught(finished_run,
                                                                       tmp_path):
    """A run folder from before the checksums: the solver state is parsed
    and the weights checked instead."""
    out, args, state = _copy_run(finished_run, tmp_path)
    state["checkpoint"].pop("sha256", None)
    (out / "state.json").write_text(json.dumps(state))
    caffemodel = out / state["checkpoint"]["caffemodel"]
    data = caffemodel.read_bytes()
    caffemodel.write_bytes(data[:1000])
    line = one_line_error(tool("two_stage.py", *args, check=False))
    assert str(caffemodel) in line, line


def test_a_damaged_final_weights_file_is_copied_again(finished_run, tmp_path):
    """A finished run whose stage1_final.caffemodel was cut short: on main
    --resume said 'already finished' and kept it."""
    out, args, state = _copy_run(finished_run, tmp_path, done=True)
    final = out / "stage1_final.caffemodel"
    whole = final.read_bytes()
    final.write_bytes(whole[:1000])
    proc = tool("two_stage.py", *args)
    assert "copied again" in proc.stdout and "already finished" in proc.stdout
    assert final.read_bytes() == whole
    # and without an intact checkpoint to copy from: one line
    final.write_bytes(whole[:1000])
    (out / state["checkpoint"]["caffemodel"]).unlink()
    line = one_line_error(tool("two_stage.py", *args, check=False))
    assert "stage1_final.caffemodel is missing or damaged" in line, line


# ------------------------------------------------------- leftovers, signals
def test_a_killed_figure_writers_temporary_is_removed_by_the_next_write(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    path = str(tmp_path / "grid.png")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = "%s.%d-0123abcd.tmp.png" % (path, dead.pid)
    live = "%s.%d-0123abcd.tmp.png" % (path, os.getppid())
    for name in (stale, live):
        open(name, "wb").write(b"half a png")
    fig = plt.figure()
    files.save_figure(fig, path)
    plt.close(fig)
    assert os.path.exists(path) and not os.path.exists(stale) and os.path.exists(live)


def _descendants(pid):
    """Pids of the living processes below `pid` (zombies count as dead)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = open("/proc/%s/stat" % name).read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid):
    try:
        stat = open("/proc/%d/stat" % pid).read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


# A study of one long DG run (spawned children import this script again:
# hence the guard).
STUDY = """
import os, sys
from gencnn import cli, experiment
if __name__ == "__main__":
    spec = experiment.study("table1")
    root = sys.argv[1]
    spec.shuffle_per_seed = False
    spec.solver_path = lambda arm: sys.argv[2]
    runner = experiment.Runner(spec, [1], work_dir=os.path.join(root, "work"), repo=root,
                               log=lambda m: None)
    runner.plan = lambda: [experiment.Run(runner, "dg", 1)]
    sys.exit(cli.run(lambda argv: runner.run(poll=0.2)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_stopped_study_stops_its_training(small_solvers, tmp_path, sig):
    """Ctrl-C (SIGINT), SIGTERM or kill -9 of a study: its training run (a
    child process) and the resource tracker end with it. On main the
    training kept running: Ctrl-C waited for it, the others orphaned it."""
    solver = caffe_utils.write_solver_variant(str(small_solvers["dg"]),
                                              str(tmp_path / "long.prototxt"), max_iter=100000)
    script = tmp_path / "study.py"
    script.write_text(STUDY)
    # The study gets SIGINT's default disposition, as under a terminal: a
    # suite started in the background by a non-interactive shell (CI) runs
    # with SIGINT ignored, which children inherit, and Python then never
    # raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path), solver], cwd=REPO,
                            env=dict(ENV, PYTHONPATH=os.pathsep.join([REPO] + sys.path)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    tsv = tmp_path / "work" / "dg_seed1" / "iterations_stage1.tsv"
    deadline = time.time() + 300
    while not (tsv.exists() and tsv.stat().st_size > 0):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    below = _descendants(proc.pid)
    assert below
    try:
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        deadline = time.time() + 30
        while any(_alive(pid) for pid in below) and time.time() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in below if _alive(pid)]
    finally:        # a failure leaves no training behind either
        for pid in [proc.pid] + below:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------ hmc_visualize
# A rerun into a used --out, killed (SIGKILL, by itself) while writing its
# figures: after the grids, before the trajectory.
KILLED_WHILE_WRITING = """
import os, runpy, signal, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tools"))
from gencnn.visualization import figures
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
figures.save_trajectory = killed
sys.argv = sys.argv[1:]
sys.argv[0] = os.path.join(sys.argv[0], "tools", "hmc_visualize.py")
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_killed_rerun_leaves_the_previous_outputs_whole(tmp_path):
    """On main the killed rerun left its grid.png beside the first run's
    samples and summary; now the folder is replaced as a whole, and the
    next run clears the killed one's leftovers."""
    weights = str(tmp_path / "lenet.caffemodel")
    caffe.Net(LENET, caffe.TEST).save(weights)
    out = tmp_path / "hmc"
    args = ["--model", LENET, "--weights", weights, "--blob", "ip2", "--unit", 3,
            "--iters", 3, "--leapfrog-steps", 2, "--num-chains", 2, "--out", out]
    tool("hmc_visualize.py", *(args + ["--seed", 1]))
    first = {name: (out / name).read_bytes() for name in os.listdir(str(out))}
    assert {"grid.png", "trajectory.png", "samples.npz", "summary.json"} <= set(first)
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WHILE_WRITING)
    proc = subprocess.run([sys.executable, str(script), REPO] + list(map(str, args)) +
                          ["--seed", "2"], env=ENV, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert {name: (out / name).read_bytes() for name in os.listdir(str(out))} == first
    assert [name for name in os.listdir(str(tmp_path)) if ".tmp" in name]   # the killed run's
    tool("hmc_visualize.py", *(args + ["--seed", 2]))
    assert json.load(open(str(out / "summary.json")))["seed"] == 2
    assert not [name for name in os.listdir(str(tmp_path)) if ".tmp" in name]


# ----------------------------------------------------------- sample_quality
def test_a_test_lmdb_of_one_image_is_refused_before_judging(tmp_path, subset):
    """FID's reference covariance of one test image is NaN, on which scipy's
    sqrtm crawled for hours; refused before the judge runs."""
    from gencnn import sample_quality
    one = str(tmp_path / "one_lmdb")
    lmdb_io.write_lmdb(one, digits(subset, 1), map_size=1 << 20)
    with pytest.raises(cli.UserError, match="the test LMDB .*one_lmdb holds 1 image; FID's "
                                            "covariance needs at least 2"):
        sample_quality.load_reference(None, str(subset / "mnist_train_lmdb"), one)


def test_sample_sets_of_fewer_than_two_images_are_refused(tmp_path):
    from gencnn import sample_quality
    for n in (0, 1):
        path = str(tmp_path / ("set%d.npz" % n))
        np.savez(path, x=np.zeros((n, 1, 28, 28), np.float32), y=np.zeros(n, np.int64))
        with pytest.raises(cli.UserError, match="set s holds %d images?; FID's covariance "
                                                "needs at least 2" % n):
            sample_quality.read_sample_set(path, (1, 28, 28), 10, "set s")


@pytest.mark.slow
def test_generative_learning_names_a_truncated_chains_file(tmp_path, subset):
    """Its checkpoint's own file (the chains) is checked like Caffe's: on main
    a truncated chains .npz was numpy's traceback."""
    out = tmp_path / "run"
    args = ["--out", out, "--train-lmdb", subset / "mnist_train_lmdb", "--test-lmdb",
            subset / "mnist_test_lmdb", "--synthesized", 8, "--buffer-size", 20,
            "--mcmc-iters", 2, "--reference-count", 100, "--no-progress", "--epochs", 0.1,
            "--seed", 3, "--checkpoint-every", 2]
    tool("generative_learning.py", *args, cwd=REPO)
    state = json.load(open(str(out / "state.json")))
    state["done"] = False           # as if killed after its last checkpoint
    (out / "state.json").write_text(json.dumps(state))
    chains = out / state["checkpoint"]["chains"]
    chains.write_bytes(chains.read_bytes()[:500])
    line = one_line_error(tool("generative_learning.py", *(args + ["--resume"]), check=False,
                               cwd=REPO))
    assert str(chains) in line and "damaged" in line, line


def _hmc_with_workers(tmp_path, *extra):
    """hmc_visualize sampling long in 2 workers (16 chains: a block of 8 each):
    (process, worker pids)."""
    tmp_path.mkdir()
    weights = str(tmp_path / "lenet.caffemodel")
    caffe.Net(LENET, caffe.TEST).save(weights)
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "hmc_visualize.py"),
                             "--model", LENET, "--weights", weights, "--blob", "ip2",
                             "--unit", "3", "--iters", "50", "--leapfrog-steps", "20000",
                             "--num-chains", "16", "--workers", "2",
                             "--out", str(tmp_path / "hmc")] + list(extra),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    deadline = time.time() + 120
    while len(_descendants(proc.pid)) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    time.sleep(5)       # the workers have built their nets and are sampling
    return proc, _descendants(proc.pid)


@pytest.mark.slow
def test_hmc_workers_die_with_their_coordinator_and_a_killed_one_is_one_line(tmp_path):
    proc, workers = _hmc_with_workers(tmp_path / "a")
    try:
        proc.kill()
        proc.wait()
        deadline = time.time() + 5
        while any(_alive(pid) for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    # one worker of the process pool (step adaptation keeps the chains in
    # lockstep there; a Dask run reruns a killed worker's shard instead:
    # tests/test_shards.py) killed: the coordinator says so in one line (on
    # main a RuntimeError traceback), and stops the other
    proc, workers = _hmc_with_workers(tmp_path / "b", "--adapt", "5")
    try:
        os.kill(workers[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        # the progress bar's lines end in \r: the last line is the error
        assert proc.returncode == 2 and "Traceback" not in err, err
        line = err.strip().splitlines()[-1]
        assert re.search(r"HMC worker [01] died \(exit status -9\)", line), line
    finally:
        for pid in [proc.pid] + workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_damaged_checkpoint_falls_back_to_the_newest_kept_one(small_solvers, tmp_path):
    """A run with a kept epoch whose newest checkpoint is damaged resumes
    from the kept one, as the run stood then, and ends with the weights and
    records of an uninterrupted run (on main: Caffe's abort)."""
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 2,
            "--keep-epochs", 1, "--checkpoint-every", 10, "--no-progress"]
    whole, out = tmp_path / "whole", tmp_path / "run"
    tool("two_stage.py", *(args + ["--out", whole]))
    shutil.copytree(str(whole), str(out))
    state = json.load(open(str(out / "state.json")))
    state["done"] = False           # as if killed after its last checkpoint
    (out / "state.json").write_text(json.dumps(state))
    newest = out / state["checkpoint"]["caffemodel"]
    newest.write_bytes(newest.read_bytes()[:1000])
    (out / "stage1_final.caffemodel").unlink()
    tool("two_stage.py", *(args + ["--out", out, "--resume"]))
    log = open(str(out / "two_stage.log")).read()
    assert "resuming from the kept checkpoint of iteration 32" in log, log
    assert (out / "stage1_final.caffemodel").read_bytes() == \
        (whole / "stage1_final.caffemodel").read_bytes()
    assert json.load(open(str(out / "history.json")))["stages"] == \
        json.load(open(str(whole / "history.json")))["stages"]
    iters = [row[0] for row in run_folder.rows_since(str(out / "iterations_stage1.tsv"), 0)]
    assert iters == list(range(1, len(iters) + 1))


@pytest.mark.slow
def test_a_resume_refuses_an_lmdb_rewritten_in_place(small_solvers, subset, tmp_path):
    """The probe's case: entries 100 to 539 of the training LMDB rewritten in
    place (labels shifted, pixels inverted) between a run and its resume.
    On main the fingerprint saw only the first and last 8 entries: rc 0."""
    train = str(tmp_path / "train_lmdb")
    lmdb_io.write_lmdb(train, digits(subset, 640), map_size=1 << 26)
    out = tmp_path / "run"
    args = ["--stage1", small_solvers["dg"], "--train-lmdb", train, "--seed", 1,
            "--stop-epoch", 1, "--no-progress", "--out", out]
    tool("two_stage.py", *args)
    env = lmdb.open(train, map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(digits(subset, 540)[100:], 100):
            txn.put(b"%08d" % i, lmdb_io.make_datum(255 - image, (label + 1) % 10)
                    .SerializeToString())
    env.close()
    line = one_line_error(tool("two_stage.py", *(args + ["--resume"]), check=False))
    assert "cannot resume" in line and "training LMDB" in line, line
