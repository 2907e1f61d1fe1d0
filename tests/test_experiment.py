"""The experiment runner (gencnn/experiment.py) on a small MNIST subset with
a 3-epoch LeNet protocol, real Caffe: all four arms over two seeds side by
side, per-seed data order, GG+DG from GG's switch weights, the report, and a
fresh-clone restart that re-runs GG to the switch and reproduces it."""
import collections
import json
import os
import shutil

import pytest

from gencnn import experiment, netgen, protocols
from gencnn.config import REPO_ROOT
from gencnn.data.lmdb_io import read_lmdb
from gencnn.reports import stats
from conftest import run_tool as tool


@pytest.fixture(scope="module")
def study_repo(tmp_path_factory, shared_dir):
    """A folder laid out like the repository (solvers/, prototxt/) for a tiny
    protocol: 1,000 training images (15.6 iterations per epoch), 3 epochs,
    switch after epoch 2, inv schedule as LeNet's."""
    root = tmp_path_factory.mktemp("study")
    data = root / "data"
    tool("get_mnist.py", "--from", os.path.join(shared_dir, "data", "mnist"), "--out", data,
         "--train-limit", 1000, "--test-limit", 500)
    protocol = protocols.Protocol(
        "lenet", "LeNet (tiny)", 1000 / 64.0, 3, 2, 0.01,
        {"lr_policy": "inv", "gamma": 0.01, "power": 0.75},
        net="prototxt/lenet_train_test_%s.prototxt", test_iter=5, test_interval=16,
        weight_decay=0.0005, display=10, snapshot=16, stage2_snapshot=16,
        snapshot_dir="snapshots")
    (root / "prototxt").mkdir()
    (root / "solvers").mkdir()
    for loss in ("dg", "gg"):
        (root / "prototxt" / ("lenet_train_test_%s.prototxt" % loss)).write_text(
            str(netgen.train_test_net(netgen.LENET, loss,
                                      train_source=str(data / "mnist_train_lmdb"),
                                      test_source=str(data / "mnist_test_lmdb"))))
    for key, generated in netgen.protocol_solvers(protocol).items():
        (root / "solvers" / ("%s.prototxt" % key)).write_text(generated.text)
    labels = collections.OrderedDict([("dg", "DG"), ("gg", "GG"),
                                      ("gg_dg_aligned", "GG+DG(aligned)"),
                                      ("gg_dg_restart", "GG+DG(restart)")])
    spec = experiment.StudySpec(
        "tiny", protocol, labels, runs_dir="kept", json_path="tiny.json",
        md_path="tiny.md", png_path="tiny.png",
        comparisons=[("GG+DG(aligned)", "DG"), ("GG+DG(restart)", "DG")],
        shuffle_per_seed=True, layout="arms", title="tiny study")
    return root, spec


@pytest.mark.slow
def test_runner_runs_every_arm_and_reports(study_repo):
    root, spec = study_repo
    runner = experiment.Runner(spec, [1, 2], work_dir=str(root / "work"), jobs=2,
                               repo=str(root), log=lambda m: None)
    assert [r.name for r in runner.plan()][:4] == ["gg_seed1", "dg_seed1",
                                                  "gg_dg_restart_seed1", "gg_dg_aligned_seed1"]
    runner.run(poll=0.5)
    assert runner.plan() == []                           # everything done and kept

    # each seed trained on its own order of the same images
    orders = [[label for _, label in read_lmdb(runner.shuffled_lmdb(s))] for s in (1, 2)]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])

    histories = runner.histories()
    switch = spec.protocol.switch_iter                    # ceil(2 x 15.625) = 32
    for seed in (1, 2):
        for arm in ("gg_dg_restart", "gg_dg_aligned"):
            run = histories[arm][seed]
            assert run["config"]["start_epoch"] == 32 / 15.625     # the switch iteration
            assert run["config"]["total_iters"] == spec.protocol.max_iter - switch
            # stage 2 ends where DG ends (47 iterations = epoch 3.008)
            assert run["stages"]["stage1"][-1]["epoch"] == \
                histories["dg"][seed]["stages"]["stage1"][-1]["epoch"] == 3.008
            log = open(os.path.join(str(root), "kept", "%s_seed%d" % (arm, seed),
                                    "two_stage.log")).read()
            assert "from %s" % runner.switch_weights(seed) in log
        # the two stage-2 schedules differ (lr 0.003 decaying from the switch on,
        # or restarted), so their training losses do
        assert histories["gg_dg_restart"][seed]["stages"]["stage1"][0]["train_loss"] != \
            histories["gg_dg_aligned"][seed]["stages"]["stage1"][0]["train_loss"]
        assert 0 < histories["gg"][seed]["ess_at_switch"] <= 1
    # seeds differ (initialization and data order)
    assert histories["dg"][1]["stages"]["stage1"][0]["train_loss"] != \
        histories["dg"][2]["stages"]["stage1"][0]["train_loss"]

    report = json.load(open(str(root / "tiny.json")))
    assert report["seeds"] == [1, 2] and report["complete"]
    assert set(report["arms"]) == {"DG", "GG", "GG+DG(aligned)", "GG+DG(restart)"}
    assert report["arms"]["DG"] == [round(histories["dg"][s]["final_test_error_pct"], 4)
                                   for s in (1, 2)]
    for key in ("GG+DG(aligned) vs DG", "GG+DG(restart) vs DG"):
        assert 0.0 <= report["welch_p"][key] <= 1.0
    assert all(w > 0 for w in report["wall_s"]["GG"])
    table = open(str(root / "tiny.md")).read()
    assert "| GG+DG(aligned) |" in table and "±" in table and "p = " in table
    assert open(str(root / "tiny.png"), "rb").read(4) == b"\x89PNG"


@pytest.mark.slow
def test_fresh_clone_reruns_gg_to_the_switch_and_reproduces_it(study_repo):
    """Without the work folder (a fresh clone keeps only the committed
    histories), a missing GG+DG arm needs GG's switch weights: GG is re-run up
    to the switch only, reproduces its committed test errors exactly (one
    OpenBLAS thread), and the arm then matches its earlier run."""
    root, spec = study_repo
    kept = root / "kept" / "gg_dg_aligned_seed1"
    before = json.load(open(str(kept / "history.json")))
    shutil.rmtree(str(root / "work"))
    shutil.rmtree(str(kept))
    runner = experiment.Runner(spec, [1, 2], work_dir=str(root / "work"), jobs=1,
                               repo=str(root), log=lambda m: None)
    assert [r.name for r in runner.plan()] == ["gg_to_switch_seed1", "gg_dg_aligned_seed1"]
    runner.run(poll=0.5)
    assert runner.reproduction()["1"]["identical"]
    assert runner.reproduction()["1"]["epochs_compared"] == 2
    after = json.load(open(str(kept / "history.json")))
    assert after["final_test_error_pct"] == before["final_test_error_pct"]
    assert "re-run to the switch" in open(str(root / "tiny.md")).read()


def test_arms_run_the_default_and_restart_solvers():
    """The aligned arm runs the default stage-2 solver <net>_gg_dg, the
    restart arm <net>_gg_dg_restart; the reports keep their labels."""
    for spec in experiment.STUDIES.values():
        key = spec.protocol.key
        assert spec.solver_path("gg_dg_aligned") == os.path.join("solvers",
                                                                 "%s_gg_dg.prototxt" % key)
        assert spec.solver_path("gg_dg_restart") == os.path.join(
            "solvers", "%s_gg_dg_restart.prototxt" % key)
        for arm in spec.arms:
            assert os.path.exists(os.path.join(REPO_ROOT, spec.solver_path(arm))), arm
        assert "(aligned)" in open(os.path.join(REPO_ROOT, spec.solver_path(
            "gg_dg_aligned"))).read().splitlines()[1]
    assert dict(experiment.STUDIES["table1"].labels) == {
        "dg": "DG", "gg": "GG", "gg_dg_restart": "GG+DG", "gg_dg_aligned": "GG+DG(aligned)"}
    assert dict(experiment.STUDIES["cifar10"].labels) == {
        "dg": "DG", "gg": "GG", "gg_dg_restart": "GG+DG(restart)",
        "gg_dg_aligned": "GG+DG(aligned)"}


def test_welch_and_interval():
    assert stats.welch_p([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]) < 0.001
    assert stats.welch_p([1.0, 1.2, 0.8], [1.0, 1.2, 0.8]) == pytest.approx(1.0)
    assert stats.welch_p([1.0], [2.0, 3.0]) is None
    mean, sd, half = stats.mean_sd_ci([1.0, 2.0, 3.0, None])
    # t(0.975, 2) = 4.303: 4.303 x 1 / sqrt(3)
    assert (mean, sd, half) == pytest.approx((2.0, 1.0, 2.4841), abs=1e-4)


@pytest.mark.slow
def test_a_broken_run_is_redone_and_a_report_covers_the_finished_runs(study_repo):
    """A committed history.json that is empty ({}) does not count
    as done, and a run killed before its first checkpoint (state.json, no
    checkpoint) starts afresh instead of failing 'nothing to resume'. A
    runner given no seeds reports the seeds whose runs exist; negative seeds
    are refused."""
    root, spec = study_repo
    runner = experiment.Runner(spec, work_dir=str(root / "work"), repo=str(root),
                               log=lambda m: None)
    assert runner.seeds == [1, 2]
    kept = root / "kept" / "dg_seed2" / "history.json"
    before = json.load(open(str(kept)))
    kept.write_text("{}")
    work = root / "work" / "dg_seed2"
    shutil.rmtree(str(work), ignore_errors=True)
    work.mkdir(parents=True)
    (work / "state.json").write_text(json.dumps({"config": {}, "checkpoint": None,
                                                 "done": False}))
    assert [r.name for r in runner.plan()] == ["dg_seed2"]
    runner.run(poll=0.5)
    after = json.load(open(str(kept)))
    assert after["final_test_error_pct"] == before["final_test_error_pct"]
    with pytest.raises(experiment.UserError, match="seeds must be >= 0"):
        experiment.Runner(spec, [-1], repo=str(root))
