"""MNIST data tool and tools/two_stage.py on a 2,000-image subset, real Caffe."""
import gzip
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
from conftest import one_line_error, run_tool
from caffe.proto import caffe_pb2
from gencnn import caffe_utils, netgen, protocols
from gencnn.config import REPO_ROOT
from gencnn.data.lmdb_io import lmdb_count, read_lmdb

TOOLS = os.path.join(REPO_ROOT, "tools")
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")
tool = run_tool


# ------------------------------------------------------------------ data tool


def test_data_tool_writes_verified_lmdbs(subset, shared_dir):
    train = str(subset / "mnist_train_lmdb")
    assert lmdb_count(train) == 2000 and lmdb_count(str(subset / "mnist_test_lmdb")) == 500
    images, labels = zip(*read_lmdb(train, limit=2000))
    assert images[0].shape == (1, 28, 28) and images[0].dtype == np.uint8
    # Labels and pixels are those of the IDX files, in order.
    with gzip.open(os.path.join(shared_dir, "data/mnist/train-labels-idx1-ubyte.gz")) as f:
        idx_labels = np.frombuffer(f.read(), np.uint8, offset=8)[:2000]
    with gzip.open(os.path.join(shared_dir, "data/mnist/train-images-idx3-ubyte.gz")) as f:
        idx_first = np.frombuffer(f.read(16 + 784), np.uint8, offset=16)
    assert list(labels) == idx_labels.tolist()
    assert np.array_equal(images[0].ravel(), idx_first)
    # A second run finds the LMDBs and does nothing.
    before = os.path.getmtime(os.path.join(train, "data.mdb"))
    proc = tool("get_mnist.py", "--from", os.path.join(shared_dir, "data", "mnist"), "--out",
                subset, "--train-limit", 2000, "--test-limit", 500)
    assert "already" in proc.stdout
    assert os.path.getmtime(os.path.join(train, "data.mdb")) == before


def _copy_idx(shared_dir, dest):
    os.makedirs(dest)
    for name in os.listdir(os.path.join(shared_dir, "data", "mnist")):
        if name.endswith(".gz"):
            shutil.copy(os.path.join(shared_dir, "data", "mnist", name), dest)


@pytest.mark.parametrize("damage", ["missing_dir", "truncated", "bad_magic", "bad_count"])
def test_data_tool_bad_input(tmp_path, shared_dir, damage):
    src, out = tmp_path / "idx", tmp_path / "out"
    if damage != "missing_dir":
        _copy_idx(shared_dir, str(src))
        path = src / "t10k-labels-idx1-ubyte.gz"
        raw = bytearray(gzip.open(str(path)).read())
        if damage == "truncated":
            raw = raw[:5000]
        elif damage == "bad_magic":
            raw[3] = 0x07
        else:
            raw[7] = 0x11
        path.unlink()
        (src / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    message = one_line_error(tool("get_mnist.py", "--from", src, "--out", out, check=False))
    expected = {"missing_dir": "does not exist", "truncated": "truncated",
                "bad_magic": "magic", "bad_count": "items"}[damage]
    assert expected in message
    assert not out.exists() or not any(out.iterdir())


# --------------------------------------------------------------- two_stage.py
def history(out):
    return json.load(open(os.path.join(str(out), "history.json")))


def final_error(out):
    return history(out)["final_test_error_pct"]


@pytest.mark.slow
def test_dg_gg_and_gg_dg_learn(small_solvers, tmp_path):
    """A few hundred iterations of each: loss falls, accuracy far above chance."""
    runs = {"dg": ["--stage1", small_solvers["dg"]],
            "gg": ["--stage1", small_solvers["gg"]],
            "gg_dg": ["--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
                      "--switch-epoch", 3]}
    for name, args in runs.items():
        tool("two_stage.py", *(args + ["--out", tmp_path / name, "--seed", 1, "--no-progress"]))
        stages = history(tmp_path / name)["stages"]
        first = stages["stage1"]
        assert first[-1]["train_loss"] < first[0]["train_loss"] - 0.3, (name, first)
        # What each must do, not one random draw: learn far above chance (90 %
        # error). The same seed draws other initial weights in other Caffe 1.0
        # builds (GG here 24.8 %, upstream BVLC 1.0 33.0 %), so no tighter bound.
        assert final_error(tmp_path / name) < 50.0, name
    gg_dg = history(tmp_path / "gg_dg")
    assert gg_dg["switch_iter"] == 94                            # ceil(3 * 2000 / 64)
    assert gg_dg["stages"]["stage2"][-1]["iter"] == 250
    assert gg_dg["stages"]["stage1"][-1]["final"] and gg_dg["stages"]["stage2"][-1]["final"]

    # Stage 2 really starts from the stage-1 weights: its first DG loss is the
    # DG loss of the stage-1 model on the first batch, not ~2.3 from scratch.
    first_loss = float(open(str(tmp_path / "gg_dg" / "iterations_stage2.tsv")).readline().split()[1])
    net = caffe.Net(str(small_solvers["dg"].parent / "lenet_dg.prototxt"), caffe.TRAIN,
                    weights=str(tmp_path / "gg_dg" / "stage1_final.caffemodel"))
    expected = float(net.forward()["loss"])
    del net   # (one live net per LMDB: see below)
    assert first_loss == pytest.approx(expected, rel=1e-4)
    scratch = float(open(str(tmp_path / "dg" / "iterations_stage1.tsv")).readline().split()[1])
    assert scratch > 2.0 and abs(first_loss - scratch) > 0.3


@pytest.mark.slow
def test_ess_switch(small_solvers, tmp_path):
    out = tmp_path / "ess"
    tool("two_stage.py", "--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
         "--switch", "ess:0.2", "--out", out, "--seed", 1, "--no-progress")
    result = history(out)
    ess = [r["train_ess"] for r in result["stages"]["stage1"]]
    assert ess[-1] < 0.2 and all(e >= 0.2 for e in ess[:-1]), ess
    assert result["switch_iter"] == result["stages"]["stage1"][-1]["iter"]
    assert result["stages"]["stage2"][-1]["iter"] == 250


def _kill_when(proc, tsv, iteration, timeout=300):
    start = time.time()
    while time.time() - start < timeout:
        if os.path.exists(tsv):
            lines = open(tsv).read().splitlines()
            if len(lines) >= iteration:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
        time.sleep(0.05)
    raise AssertionError("run did not reach iteration %d" % iteration)


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(small_solvers, tmp_path):
    args = ["--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
            "--switch-epoch", 3, "--seed", 2, "--checkpoint-every", 10, "--no-progress"]
    tool("two_stage.py", *(args + ["--out", tmp_path / "whole"]))

    out = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(TOOLS, "two_stage.py")] + list(map(str, args)) + \
        ["--out", str(out)]
    # Kill once in stage 1 and once in stage 2, resuming each time.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _kill_when(proc, str(out / "iterations_stage1.tsv"), 55)
    state = json.load(open(str(out / "state.json")))
    assert state["stage"] == 1 and 50 <= state["checkpoint"]["iter"] < 94
    proc = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=ENV)
    _kill_when(proc, str(out / "iterations_stage2.tsv"), 73)
    tool("two_stage.py", *(list(map(str, args)) + ["--out", out, "--resume"]))

    log = open(str(out / "two_stage.log")).read()
    assert len(re.findall(r"resumed stage 1 at iteration (50|60)\n", log)) == 1
    assert len(re.findall(r"resumed stage 2 at iteration (70|80)\n", log)) == 1
    for stage in (1, 2):   # the per-iteration log continues: every iteration exactly once
        iters = [int(l.split()[0]) for l in open(str(out / ("iterations_stage%d.tsv" % stage)))]
        assert iters == list(range(1, len(iters) + 1))
    # Deploy nets: this Caffe's DataReader deadlocks when two live nets in one
    # process read the same LMDB, and the comparison needs no data anyway.
    deploy = os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
    whole = caffe.Net(deploy, caffe.TEST, weights=str(tmp_path / "whole" / "stage2_final.caffemodel"))
    resumed = caffe.Net(deploy, caffe.TEST, weights=str(out / "stage2_final.caffemodel"))
    for name in whole.params:
        for a, b in zip(whole.params[name], resumed.params[name]):
            assert np.array_equal(a.data, b.data), name
    assert final_error(out) == final_error(tmp_path / "whole")
    # every per-epoch record too (the per-iteration log keeps full precision)
    assert history(out)["stages"] == history(tmp_path / "whole")["stages"]


@pytest.mark.slow
def test_bad_input_fails_before_training(small_solvers, tmp_path, subset):
    out = tmp_path / "never"
    cases = {
        "missing solver": ["--stage1", tmp_path / "nope.prototxt"],
        "switch too late": ["--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
                            "--switch-epoch", 8],
        "bad ess": ["--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
                    "--switch", "ess:2"],
    }
    # A stage-2 net whose layers are named differently.
    renamed = small_solvers["dg"].parent / "renamed_dg.prototxt"
    renamed.write_text(open(str(small_solvers["dg"].parent / "lenet_dg.prototxt")).read()
                       .replace('"ip2"', '"fc2"'))
    bad_stage2 = tmp_path / "bad_stage2.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["gg_dg"]), str(bad_stage2), net=str(renamed))
    cases["layer names"] = ["--stage1", small_solvers["gg"], "--stage2", bad_stage2,
                            "--switch-epoch", 3]
    # A net whose LMDB is missing.
    no_data = tmp_path / "no_data.prototxt"
    no_data.write_text(str(netgen.train_test_net(netgen.LENET, "dg",
                                                 train_source="/nonexistent_lmdb",
                                                 test_source="/nonexistent_lmdb")))
    no_data_solver = tmp_path / "no_data_solver.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["dg"]), str(no_data_solver),
                                     net=str(no_data))
    cases["missing lmdb"] = ["--stage1", no_data_solver]
    # colour images for LeNet (Caffe aborted after an epoch), and
    # weights to keep past the end (ignored)
    from gencnn.data.lmdb_io import write_lmdb
    colour = str(tmp_path / "colour_lmdb")
    write_lmdb(colour, ((np.zeros((3, 32, 32), np.uint8), i % 10) for i in range(100)),
               map_size=1 << 26)
    cases["colour"] = ["--stage1", small_solvers["dg"], "--train-lmdb", colour]
    cases["keep past end"] = ["--stage1", small_solvers["dg"], "--keep-epochs", "4,9"]
    expected = {"missing solver": "does not exist", "switch too late": "switch epoch",
                "bad ess": "ess", "layer names": "fc2", "missing lmdb": "LMDB",
                "colour": "holds 3x32x32 images, the test LMDB",
                "keep past end": "weights to keep (epoch9.caffemodel) lie outside"}
    for name, args in cases.items():
        message = one_line_error(tool("two_stage.py", *(args + ["--out", out]), check=False))
        assert expected[name] in message, (name, message)
        assert not out.exists(), name


@pytest.mark.slow
def test_ess_switch_survives_a_crash_at_the_switch(small_solvers, tmp_path):
    """A run stopped right after its ESS switch checkpoint (before
    stage1_final.caffemodel is written) switches at the same iteration when
    resumed, and ends as an uninterrupted run does."""
    args = ["--stage1", small_solvers["gg"], "--stage2", small_solvers["gg_dg"],
            "--switch", "ess:0.2", "--seed", 1, "--checkpoint-every", 10, "--no-progress"]
    tool("two_stage.py", *(args + ["--out", tmp_path / "whole"]))
    whole = history(tmp_path / "whole")
    out = tmp_path / "crashed"
    out.mkdir()
    # A folder in the way of the copy makes the run die exactly there.
    (out / "stage1_final.caffemodel").mkdir()
    assert tool("two_stage.py", *(args + ["--out", out]), check=False).returncode != 0
    state = json.load(open(str(out / "state.json")))
    assert state["stage"] == 1 and state["checkpoint"]["iter"] == whole["switch_iter"]
    (out / "stage1_final.caffemodel").rmdir()
    tool("two_stage.py", *(args + ["--out", out, "--resume"]))
    resumed = history(out)
    assert resumed["switch_iter"] == whole["switch_iter"]
    assert resumed["final_test_error_pct"] == whole["final_test_error_pct"]


@pytest.mark.slow
def test_resuming_a_copied_run_leaves_the_original_alone(small_solvers, tmp_path):
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--checkpoint-every", 10,
            "--no-progress"]
    original = tmp_path / "original"
    cmd = [sys.executable, os.path.join(TOOLS, "two_stage.py")] + list(map(str, args)) + \
        ["--out", str(original)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _kill_when(proc, str(original / "iterations_stage1.tsv"), 35)
    before = sorted(os.listdir(str(original / "snapshots")))
    copy = tmp_path / "copy"
    shutil.copytree(str(original), str(copy))
    tool("two_stage.py", *(args + ["--out", copy, "--resume"]))
    assert sorted(os.listdir(str(original / "snapshots"))) == before
    assert "resumed stage 1" in open(str(copy / "two_stage.log")).read()
    assert history(copy)["stages"]["stage1"][-1]["iter"] == 250


@pytest.mark.slow
def test_a_failed_start_does_not_block_its_folder(small_solvers, tmp_path):
    """Caffe aborts before the first iteration (an unknown Python layer
    module): the folder holds no run, so a plain rerun starts afresh."""
    broken_net = tmp_path / "broken_gg.prototxt"
    broken_net.write_text(open(str(small_solvers["gg"].parent / "lenet_gg.prototxt")).read()
                          .replace('module: "generative_loss_layer"', 'module: "no_such_module"'))
    broken = tmp_path / "broken_solver.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["gg"]), str(broken), net=str(broken_net),
                                   max_iter=20)
    out = tmp_path / "run"
    assert tool("two_stage.py", "--stage1", broken, "--out", out, "--no-progress",
                check=False).returncode != 0
    short = tmp_path / "short.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["gg"]), str(short), max_iter=20)
    tool("two_stage.py", "--stage1", short, "--out", out, "--no-progress")
    assert history(out)["stages"]["stage1"][-1]["iter"] == 20


@pytest.mark.slow
def test_resume_refuses_changed_options_and_bad_weights(small_solvers, tmp_path):
    out = tmp_path / "run"
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 1, "--no-progress"]
    tool("two_stage.py", *(args + ["--out", out]))
    assert history(out)["stages"]["stage1"][-1]["iter"] == 32      # ceil(2000 / 64)
    changed = list(args)
    changed[changed.index("--seed") + 1] = 7
    message = one_line_error(tool("two_stage.py", *(changed + ["--out", out, "--resume"]),
                                  check=False))
    assert "different seed" in message
    # Weights that are not a caffemodel, or of another net, fail before
    # anything is written (Caffe itself would abort or ignore them).
    text = tmp_path / "t.caffemodel"
    text.write_text("hi\n")
    other = tmp_path / "other.caffemodel"
    other.write_bytes(open(str(out / "stage1_final.caffemodel"), "rb").read())
    renamed = caffe_pb2.NetParameter()
    renamed.ParseFromString(open(str(other), "rb").read())
    for layer in renamed.layer:
        if layer.name == "ip2":
            layer.name = "fc2"
    other.write_bytes(renamed.SerializeToString())
    for weights, expected in ((text, "not a Caffe model"), (other, "layer ip2 missing")):
        fresh = tmp_path / ("never_" + weights.stem)
        message = one_line_error(tool("two_stage.py", "--stage1", small_solvers["dg"],
                                      "--weights", weights, "--out", fresh, check=False))
        assert expected in message, message
        assert not fresh.exists()


def test_gpus_fail_fast_without_cuda(small_solvers, tmp_path):
    """--gpus on a CPU-only Caffe (ours) is one line naming what is missing,
    before anything is written; with a CUDA build, the NCCL check instead."""
    from gencnn import multi_gpu
    cuda, nccl = multi_gpu.gpu_support()
    out = tmp_path / "gpu"
    if not cuda:
        message = one_line_error(tool("two_stage.py", "--stage1", small_solvers["dg"], "--out",
                                      out, "--gpus", "0", check=False))
        assert "CPU-only" in message
    elif not nccl:
        message = one_line_error(tool("two_stage.py", "--stage1", small_solvers["dg"], "--out",
                                      out, "--gpus", "0,1", check=False))
        assert "NCCL" in message
    else:
        pytest.skip("this Caffe has CUDA and NCCL: nothing to refuse")
    assert not out.exists()


@pytest.mark.slow
def test_stage2_schedule_follows_the_switch_taken(small_solvers, tmp_path):
    """The default (aligned) stage-2 solver is written for the protocol's
    switch (iteration 15,000); a run switching at iteration 94 derives its lr
    schedule again (protocols.aligned_schedule) and trains exactly as with a
    solver written for 94. `--switch 3`, `--switch iter:94` and the alias
    `--switch-epoch 3` are the same switch."""
    written = tmp_path / "aligned94.prototxt"
    caffe_utils.write_solver_variant(
        str(small_solvers["gg_dg"]), str(written),
        **protocols.aligned_schedule(protocols.LENET_PROTOCOL.schedule, 94, 250))
    runs = {"protocol": (small_solvers["gg_dg"], ["--switch", "3"]),
            "written": (written, ["--switch-epoch", "3"]),
            "iter": (small_solvers["gg_dg"], ["--switch", "iter:94"])}
    for name, (stage2, switch) in runs.items():
        tool("two_stage.py", "--stage1", small_solvers["gg"], "--stage2", stage2, *switch,
             "--seed", 1, "--out", tmp_path / name, "--no-progress")
    models = {name: open(str(tmp_path / name / "stage2_final.caffemodel"), "rb").read()
              for name in runs}
    assert models["protocol"] == models["written"] == models["iter"]
    used = caffe_utils.read_solver(str(tmp_path / "protocol" / "stage2_solver.prototxt"))
    assert abs(used.gamma - 1e-4 / (1 + 1e-4 * 94)) < 1e-9
    # the restart reading (stage 1's schedule) is used as written
    restart = tmp_path / "restart.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["gg_dg"]), str(restart), gamma=1e-4)
    tool("two_stage.py", "--stage1", small_solvers["gg"], "--stage2", restart, "--switch", 3,
         "--seed", 1, "--out", tmp_path / "restart", "--no-progress")
    used = caffe_utils.read_solver(str(tmp_path / "restart" / "stage2_solver.prototxt"))
    assert used.gamma == caffe_utils.read_solver(str(small_solvers["gg"])).gamma


# ------------------------------------------------------- runs that cannot be corrupted
def _killed_after_checkpoint(args, out, iteration):
    """Start two_stage with `args` in `out` and kill -9 it once its
    per-iteration log reaches `iteration`."""
    cmd = [sys.executable, os.path.join(TOOLS, "two_stage.py")] + list(map(str, args)) + \
        ["--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    _kill_when(proc, str(out / "iterations_stage1.tsv"), iteration)


def _same_weights(a, b):
    deploy = os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt")
    one, two = caffe.Net(deploy, caffe.TEST, weights=str(a)), caffe.Net(deploy, caffe.TEST,
                                                                          weights=str(b))
    return all(np.array_equal(x.data, y.data) for name in one.params
               for x, y in zip(one.params[name], two.params[name]))


@pytest.mark.slow
def test_a_copied_run_resumes_from_its_own_weights(small_solvers, tmp_path):
    """Caffe's .solverstate names its .caffemodel by absolute path: a copy
    must resume from its own, whether the original is deleted or reused."""
    args = ["--stage1", small_solvers["dg"], "--stop-epoch", 2, "--checkpoint-every", 10,
            "--no-progress"]
    tool("two_stage.py", *(args + ["--seed", 1, "--out", tmp_path / "whole"]))
    original = tmp_path / "A"
    _killed_after_checkpoint(args + ["--seed", 1], original, 25)
    for copy in ("deleted", "reused", "legacy"):
        shutil.copytree(str(original), str(tmp_path / copy))
    shutil.rmtree(str(original))
    # a run folder as two_stage wrote it before run_folder.py still resumes
    state = json.load(open(str(tmp_path / "legacy" / "state.json")))
    checkpoint = state.pop("checkpoint")
    state.update(solverstate=checkpoint["solverstate"], stage_iter=checkpoint["iter"])
    state["config"]["stop_epoch"] = 2.0
    for key in ("stop_iter", "inputs"):
        state["config"].pop(key)
    (tmp_path / "legacy" / "state.json").write_text(json.dumps(state))
    tool("two_stage.py", *(args + ["--seed", 1, "--out", tmp_path / "legacy", "--resume"]))
    tool("two_stage.py", *(args + ["--seed", 1, "--out", tmp_path / "deleted", "--resume"]))
    # another run in the original folder, with other weights at the same iterations
    _killed_after_checkpoint(args + ["--seed", 5], original, 25)
    tool("two_stage.py", *(args + ["--seed", 1, "--out", tmp_path / "reused", "--resume"]))
    for copy in ("deleted", "reused", "legacy"):
        assert _same_weights(tmp_path / copy / "stage1_final.caffemodel",
                             tmp_path / "whole" / "stage1_final.caffemodel"), copy
        assert final_error(tmp_path / copy) == final_error(tmp_path / "whole")


@pytest.mark.slow
def test_resume_refuses_other_inputs_and_a_second_runner(small_solvers, tmp_path, subset):
    """A resume checks the solver, net and LMDBs by content (a path spelled
    differently is the same file); a second runner on a folder in use is
    refused while the first holds its lock."""
    long_solver = tmp_path / "long.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["dg"]), str(long_solver), max_iter=5000)
    busy = tmp_path / "busy"
    args = ["--stage1", long_solver, "--seed", 1, "--checkpoint-every", 10, "--no-progress",
            "--out", busy]
    cmd = [sys.executable, os.path.join(TOOLS, "two_stage.py")] + list(map(str, args))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.time() + 300
        while not (busy / "snapshots").exists() or not os.listdir(str(busy / "snapshots")):
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.1)
        message = one_line_error(tool("two_stage.py", *(args + ["--resume"]), check=False))
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert "in use by another run" in message, message

    solver = tmp_path / "solver.prototxt"
    shutil.copy(str(small_solvers["dg"]), str(solver))
    out = tmp_path / "run"
    args = ["--stage1", solver, "--seed", 1, "--stop-epoch", 1, "--no-progress", "--out", out]
    tool("two_stage.py", *args)
    # the same solver file by a relative path is the same run
    proc = tool("two_stage.py", "--stage1", os.path.relpath(str(solver)), *(args[2:] +
                                                                            ["--resume"]))
    assert "already finished" in proc.stdout
    # an edited solver, or another training LMDB in the same place, is refused
    text = solver.read_text()
    solver.write_text(text.replace("base_lr: 0.01", "base_lr: 5"))
    message = one_line_error(tool("two_stage.py", *(args + ["--resume"]), check=False))
    assert "stage 1 solver" in message, message
    solver.write_text(text)
    other = tmp_path / "train_copy_lmdb"
    shutil.copytree(str(subset / "mnist_test_lmdb"), str(other))
    message = one_line_error(tool("two_stage.py", *(args + ["--resume", "--train-lmdb",
                                                           other]), check=False))
    assert "training LMDB" in message, message


@pytest.mark.slow
def test_outputs_are_complete_before_the_run_is_done(small_solvers, tmp_path):
    """A run that dies writing history.json is not `done`: a resume writes
    its outputs (on main it said 'already finished' with no history)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.json").mkdir()          # in the way: the write fails there
    args = ["--stage1", small_solvers["dg"], "--seed", 1, "--stop-epoch", 1, "--no-progress",
            "--out", out]
    assert tool("two_stage.py", *args, check=False).returncode == 2
    assert not json.load(open(str(out / "state.json")))["done"]
    (out / "history.json").rmdir()
    tool("two_stage.py", *(args + ["--resume"]))
    assert final_error(out) is not None and (out / "curves.png").exists()
    assert json.load(open(str(out / "state.json")))["done"]


def test_a_diverging_run_stops_at_the_first_nan(small_solvers, tmp_path):
    solver = tmp_path / "lr5.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["dg"]), str(solver), base_lr=5.0)
    out = tmp_path / "run"
    line = one_line_error(tool("two_stage.py", "--stage1", solver, "--seed", 1,
                               "--checkpoint-every", 5, "--no-progress", "--out", out,
                               check=False))
    assert "diverged at iteration" in line and "train loss nan" in line, line
    state = json.load(open(str(out / "state.json")))
    assert not state["done"] and state["diverged"]["iter"] < 250
    if state["checkpoint"]:
        assert state["checkpoint"]["iter"] < state["diverged"]["iter"]
        assert (out / state["checkpoint"]["caffemodel"]).exists()
    losses = [row.split("\t")[1] for row in open(str(out / "iterations_stage1.tsv"))]
    assert losses[-1] == "nan" and "nan" not in losses[:-1], losses


@pytest.mark.slow
def test_the_whole_test_set_is_tested(small_solvers, tmp_path):
    """test_iter 1 covers 100 of the subset's 500 test images: two_stage
    tests all 500 and says so; the errors equal a test_iter 5 run's."""
    partial = tmp_path / "test_iter1.prototxt"
    caffe_utils.write_solver_variant(str(small_solvers["dg"]), str(partial), test_iter=1)
    for name, solver in (("partial", partial), ("whole", small_solvers["dg"])):
        tool("two_stage.py", "--stage1", solver, "--seed", 1, "--stop-epoch", 1,
             "--no-progress", "--out", tmp_path / name)
    assert "testing the whole test set, 500 images: 5 batches of 100" in \
        open(str(tmp_path / "partial" / "two_stage.log")).read()
    assert final_error(tmp_path / "partial") == final_error(tmp_path / "whole")
