"""Chains sampled as shards: Dask tasks (gencnn/sampling/shards.py, a
LocalCluster of 2 process workers with one thread each), the checked merge
(tools/hmc_merge.py), a worker killed mid-task. Real Caffe, LeNet at its
seeded fillers."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import caffe
from gencnn import cli
from gencnn.config import REPO_ROOT
from gencnn.sampling import reference, shards
from gencnn.visualization import node as node_lib

TOOL = os.path.join(REPO_ROOT, "tools", "hmc_visualize.py")
MERGE = os.path.join(REPO_ROOT, "tools", "hmc_merge.py")
LENET = os.path.join(REPO_ROOT, "prototxt", "lenet_deploy.prototxt")


@pytest.fixture(scope="module")
def lenet_weights(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("lenet") / "lenet_random.caffemodel")
    caffe.set_random_seed(0)
    caffe.Net(LENET, caffe.TEST).save(path)
    return path


def run_tool(tool, args, **env):
    return subprocess.run([sys.executable, tool] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=600,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", **env))


def sample_args(weights, out, *extra):
    return ["--model", LENET, "--weights", weights, "--blob", "ip2", "--unit", "2,7",
            "--iters", "6", "--leapfrog-steps", "10", "--adapt", "0", "--step-size", "0.05",
            "--mass", "1", "--mass-convention", "inverse", "--sigma", "0.3",
            "--ref-mean", "0.1", "--seed", "5", "--chain-block", "4",
            "--out", str(out)] + list(extra)


def arrays(path):
    with np.load(str(path)) as data:
        return {name: data[name] for name in data.files}


def assert_same_files(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=a[name].dtype.kind == "f"), name


def test_dask_run_equals_one_process_and_the_merge_checks(tmp_path, lenet_weights):
    """hmc_visualize --scheduler local (2 worker processes), 2 units x 5
    chains in shards of one block (4 chains): 3 tasks, chains 0-3, 4-7,
    8-9; the merged samples.npz equals the one-process run's array for
    array, its description included. tools/hmc_merge.py merges the
    --chain-offset shards of the same run to the same file, and refuses
    shards of another seed, a gap and an overlap with one line."""
    one = run_tool(TOOL, sample_args(lenet_weights, tmp_path / "one", "--num-chains", "5",
                                     "--workers", "1"))
    assert one.returncode == 0, one.stderr
    dask = run_tool(TOOL, sample_args(lenet_weights, tmp_path / "dask", "--num-chains", "5",
                                      "--workers", "2", "--scheduler", "local",
                                      "--shard-chains", "4"))
    assert dask.returncode == 0, dask.stderr
    assert sorted(os.listdir(str(tmp_path / "dask" / "shards"))) == [
        "chains_000000-000003.npz", "chains_000004-000007.npz", "chains_000008-000009.npz"]
    reference_set = arrays(tmp_path / "one" / "samples.npz")
    assert reference_set["accepted"].any() and not reference_set["accepted"].all()
    assert_same_files(reference_set, arrays(tmp_path / "dask" / "samples.npz"))
    summary = json.load(open(str(tmp_path / "dask" / "summary.json")))
    assert summary["scheduler"] == "local" and summary["num_chains"] == 10
    assert summary["shards"] == 3 and summary["workers"] == 2

    # the same run as --chain-offset shards (unit 2's chains, then unit 7's)
    for unit, offset in (("2", "0"), ("7", "5")):
        proc = run_tool(TOOL, [a if a != "2,7" else unit for a in sample_args(
            lenet_weights, tmp_path / ("shard" + offset), "--num-chains", "5",
            "--workers", "1", "--chain-offset", offset)])
        assert proc.returncode == 0, proc.stderr
    merged = tmp_path / "merged.npz"
    proc = run_tool(MERGE, [str(tmp_path / "shard5"), str(tmp_path / "shard0"),
                            "--out", str(merged)])
    assert proc.returncode == 0, proc.stderr
    assert "chains 0-9 from 2 shards" in proc.stdout
    assert_same_files(reference_set, arrays(merged))

    # refused: another seed, a gap, an overlap
    proc = run_tool(TOOL, sample_args(lenet_weights, tmp_path / "seed6", "--num-chains", "5",
                                      "--workers", "1", "--chain-offset", "5", "--seed", "6"))
    assert proc.returncode == 0, proc.stderr
    proc = run_tool(TOOL, sample_args(lenet_weights, tmp_path / "gap", "--num-chains", "2",
                                      "--workers", "1", "--chain-offset", "6"))
    assert proc.returncode == 0, proc.stderr
    for shard_list, message in (
            (["shard0", "seed6"], "differ in their seed (5 against 6)"),
            (["shard0", "gap"], "chains 5-5 are in no shard"),
            (["shard0", "shard5", "gap"], "shards overlap")):
        proc = run_tool(MERGE, [str(tmp_path / s) for s in shard_list] +
                        ["--out", str(tmp_path / "never.npz")])
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: ") and message in lines[0], lines
        assert not os.path.exists(str(tmp_path / "never.npz"))


def test_merge_refuses_other_settings(tmp_path, lenet_weights):
    """Shards that differ in a setting (the leapfrog steps) or in q are not
    one run: shards.merge says which and in what; a damaged shard or one
    without a description is named."""
    paths = []
    for name, first, steps, sigma in (("a", 0, 3, 0.3), ("b", 2, 4, 0.3), ("c", 2, 3, 0.4)):
        node = node_lib.open_node(LENET, lenet_weights, "ip2", [3], 2)
        result = node_lib.sample_node(node, reference.DiagonalGaussian(0.1, sigma), iters=1,
                                      leapfrog_steps=steps, step_size=0.05, mass=1.0,
                                      seed=1, warn=len, first_chain=first)
        paths.append(str(tmp_path / (name + ".npz")))
        node_lib.save_samples(paths[-1], result.out, node.chain_units, result.meta)
    with pytest.raises(cli.UserError, match="differ in leapfrog_steps \\(3 against 4\\)"):
        shards.merge(paths[:2])
    with pytest.raises(cli.UserError, match="differ in their reference q"):
        shards.merge([paths[0], paths[2]])
    merged, meta = shards.merge([paths[0]])          # one shard alone: itself
    assert meta["num_chains"] == 2 and len(merged["x"]) == 2
    # a shard cut short (a copy torn mid-transfer), a file without a description
    torn = str(tmp_path / "torn.npz")
    with open(paths[1], "rb") as f, open(torn, "wb") as g:
        g.write(f.read()[:500])
    with pytest.raises(cli.UserError, match="torn.npz: not a readable samples file"):
        shards.merge([paths[0], torn])
    bare = str(tmp_path / "bare.npz")
    np.savez(bare, x=np.zeros((2, 1, 28, 28)))
    with pytest.raises(cli.UserError, match="bare.npz has no description"):
        shards.merge([paths[0], bare])


def test_a_worker_killed_mid_shard_is_rerun(tmp_path, lenet_weights):
    """kill -9 of a Dask worker process while it samples a shard: the
    scheduler reruns that shard elsewhere (or on the restarted worker) and
    the merged chains equal the one-process run's, bit for bit. The cluster
    is given by address (as a jobqueue cluster would be)."""
    from distributed import Client, LocalCluster
    q = reference.DiagonalGaussian(0.1, 0.3)
    options = dict(iters=40, leapfrog_steps=20, step_size=0.05, mass=1.0, seed=9, warn=len,
                   chain_block=4)

    def node():
        return node_lib.open_node(LENET, lenet_weights, "ip2", [1, 5], 8)

    expected = node_lib.sample_node(node(), q, **options).out
    env = {"OPENBLAS_NUM_THREADS": "1"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", env=env) as cluster, \
            Client(cluster) as watcher:
        result = {}

        def sample():
            try:
                result["out"] = node_lib.sample_node(
                    node(), q, scheduler=cluster.scheduler_address, shard_chains=4,
                    shard_dir=str(tmp_path / "shards"), **options).out
            except BaseException as err:        # reported by the test thread
                result["error"] = err
        thread = threading.Thread(target=sample)
        thread.start()
        pids = watcher.run(os.getpid)           # worker address -> pid
        victim, deadline = None, time.time() + 120
        while victim is None and time.time() < deadline:
            busy = {worker: tasks for worker, tasks in watcher.processing().items()
                    if any("gencnn-shard" in str(t) for t in tasks)}
            if busy:
                time.sleep(0.5)                 # well inside its shard (a few s)
                busy = {w: t for w, t in watcher.processing().items()
                        if any("gencnn-shard" in str(k) for k in t)}
                victim = sorted(busy)[0] if busy else None
            else:
                time.sleep(0.1)
        assert victim is not None, "no shard ever ran"
        killed_task = [str(t) for t in watcher.processing()[victim]]
        os.kill(pids[victim], signal.SIGKILL)
        thread.join(300)
        assert not thread.is_alive()
        assert "error" not in result, result.get("error")
    assert killed_task                          # it died mid-shard
    out = result["out"]
    assert len(os.listdir(str(tmp_path / "shards"))) == 4
    for key in ("samples", "chain_mean", "snapshots", "f", "accepted", "accept_prob",
                "delta_h", "sq_norm", "step_size"):
        assert np.array_equal(out[key], expected[key], equal_nan=True), key


@pytest.mark.parametrize("args,message", [
    (["--scheduler", "local", "--adapt", "5"], "--scheduler runs shards with a fixed step"),
    (["--shard-chains", "4"], "--shard-chains sizes the tasks of --scheduler"),
    (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
])
def test_cli_dask_misuse_is_one_line(tmp_path, lenet_weights, args, message):
    base = sample_args(lenet_weights, tmp_path / "never", "--num-chains", "2", "--workers", "1")
    # (argparse: the last --adapt wins; dask's connect timeout shortened)
    proc = run_tool(TOOL, base + args, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="3s")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines
