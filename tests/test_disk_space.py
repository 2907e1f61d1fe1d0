"""A full disk: Caffe aborts (rc 134, no cleanup) when a snapshot
cannot be written, so the tools check the free space themselves: a run whose
checkpoints and outputs cannot fit is refused in one line before training or
sampling, and a disk that fills up mid-run stops it in one line at the next
checkpoint, keeping the last one for --resume.

The tools run for real in a subprocess whose shutil.disk_usage reports a
chosen free space (the file system itself is left alone)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, one_line_error
from gencnn import files
from gencnn.cli import UserError

LENET = os.path.join(REPO, "prototxt", "lenet_deploy.prototxt")

# Runs tools/<name> with shutil.disk_usage reporting FAKE_FREE bytes free,
# from the moment a file matching FAKE_FREE_AFTER (a glob) exists, if set.
WRAPPER = r"""
import collections, glob, os, runpy, shutil, sys
real = shutil.disk_usage
def disk_usage(path):
    usage = real(path)
    after = os.environ.get("FAKE_FREE_AFTER")
    if after and not glob.glob(after):
        return usage
    return usage._replace(free=int(os.environ["FAKE_FREE"]))
shutil.disk_usage = disk_usage
tool = sys.argv[1]
sys.path.insert(0, os.path.dirname(tool))
sys.argv = sys.argv[1:]
runpy.run_path(tool, run_name="__main__")
"""


def run_with_free_disk(name, args, free, after=None):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", FAKE_FREE=str(free),
               FAKE_FREE_AFTER=after or "")
    return subprocess.run([sys.executable, "-c", WRAPPER, os.path.join(REPO, "tools", name)] +
                          list(map(str, args)), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, cwd=REPO, env=env)


def test_check_disk_compares_the_need_with_the_free_space(tmp_path, monkeypatch):
    real = files.shutil.disk_usage
    seen = []

    def fake(path):
        seen.append(path)
        return real(path)._replace(free=10 << 20)
    monkeypatch.setattr(files.shutil, "disk_usage", fake)
    files.check_disk(str(tmp_path / "not" / "made"), 9 << 20, "a run")
    assert seen == [str(tmp_path)]           # the nearest existing folder
    with pytest.raises(UserError, match=r"^not enough disk space for a run in .*: about "
                                        r"11\.0 MiB needed, 10\.0 MiB free$"):
        files.check_disk(str(tmp_path), 11 << 20, "a run")


@pytest.mark.slow
def test_two_stage_refuses_a_run_the_disk_cannot_hold(small_solvers, tmp_path):
    """LeNet's 431,080 weights: a checkpoint is ~5 MiB; 2 MiB free is too
    little. Nothing is trained or snapshotted, and the folder is not blocked."""
    out = tmp_path / "run"
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 1, "--out", out,
            "--no-progress"]
    line = one_line_error(run_with_free_disk("two_stage.py", args, 2 << 20))
    assert "not enough disk space for this run's checkpoints and outputs" in line
    assert not os.listdir(str(out / "snapshots"))
    assert not os.path.exists(str(out / "iterations_stage1.tsv")) or \
        not open(str(out / "iterations_stage1.tsv")).read()
    ok = run_with_free_disk("two_stage.py", args, 1 << 40)
    assert ok.returncode == 0, ok.stderr
    assert json.load(open(str(out / "state.json")))["done"]


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_stops_it_with_the_checkpoint_kept(small_solvers, tmp_path):
    """The space runs out after the first checkpoint (iteration 20): the run
    stops in one line at the next (the epoch's end, iteration 32 of the
    2,000-image subset), keeps iteration 20's, and resumes from it
    once there is room, to the same weights as an uninterrupted run."""
    out, straight = tmp_path / "run", tmp_path / "straight"
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 1,
            "--checkpoint-every", 20, "--no-progress"]
    # reserve() sees plenty; from the first snapshot on, 4 MiB: less than one checkpoint
    line = one_line_error(run_with_free_disk(
        "two_stage.py", args + ["--out", out], 4 << 20,
        after=str(out / "snapshots" / "*.caffemodel")))
    assert "not enough disk space for the checkpoint of iteration 32" in line
    assert "the last checkpoint (iteration 20) is kept" in line
    state = json.load(open(str(out / "state.json")))
    assert state["checkpoint"]["iter"] == 20 and not state["done"]
    assert sorted(os.listdir(str(out / "snapshots"))) == [
        "stage1_iter_20.caffemodel", "stage1_iter_20.solverstate"]
    resumed = run_with_free_disk("two_stage.py", args + ["--out", out, "--resume"], 1 << 40)
    assert resumed.returncode == 0, resumed.stderr
    done = run_with_free_disk("two_stage.py", args + ["--out", straight], 1 << 40)
    assert done.returncode == 0, done.stderr
    assert open(str(out / "stage1_final.caffemodel"), "rb").read() == \
        open(str(straight / "stage1_final.caffemodel"), "rb").read()


@pytest.mark.slow
def test_generative_learning_refuses_a_run_the_disk_cannot_hold(subset, tmp_path):
    out = tmp_path / "run"
    args = ["--out", out, "--train-lmdb", subset / "mnist_train_lmdb", "--test-lmdb",
            subset / "mnist_test_lmdb", "--synthesized", 8, "--buffer-size", 20,
            "--mcmc-iters", 2, "--reference-count", 200, "--no-progress", "--epochs", 0.2]
    line = one_line_error(run_with_free_disk("generative_learning.py", args, 2 << 20))
    assert "not enough disk space for this run's checkpoints and outputs" in line
    assert not os.listdir(str(out / "snapshots"))
    ok = run_with_free_disk("generative_learning.py", args, 1 << 40)   # not blocked
    assert ok.returncode == 0, ok.stderr


def test_hmc_visualize_refuses_before_sampling(tmp_path):
    """1,000 LeNet chains' samples and figures need ~22 MiB: refused with
    20 MiB free, before any sampling, and --out is not made."""
    import caffe
    weights, out = str(tmp_path / "lenet.caffemodel"), tmp_path / "hmc"
    caffe.Net(LENET, caffe.TEST).save(weights)
    line = one_line_error(run_with_free_disk(
        "hmc_visualize.py", ["--model", LENET, "--weights", weights, "--blob", "ip2", "--unit", 3,
                             "--num-chains", 1000, "--iters", 1, "--out", out], 20 << 20))
    assert "not enough disk space for the samples and figures" in line
    assert not os.path.exists(str(out))
