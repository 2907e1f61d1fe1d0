"""`make demo`'s script end to end, shortened: data, GG+DG training, HMC
samples measured against the real test digits, and the summary."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from gencnn import caffe_utils


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, shared_dir):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "demo.py"), "--gg-epochs", "1",
         "--dg-epochs", "1", "--hmc-chains", "1", "--hmc-iters", "4", "--hmc-adapt", "4",
         "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", GENCNN_SHARED=shared_dir),
        timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:]
    history = json.load(open(str(out / "gg_dg" / "history.json")))
    assert history["switch_iter"] == 938                      # ceil(1 x 937.5)
    # stage 2 is the default (aligned) reading, derived by two_stage for the
    # demo's own switch: DG's lr decay continued from iteration 938, not from
    # the full run's 15,000
    stage2 = caffe_utils.read_solver(str(out / "gg_dg" / "stage2_solver.prototxt"))
    dg_solver = caffe_utils.read_solver(os.path.join(REPO, "solvers", "lenet_dg.prototxt"))
    lr = caffe_utils.learning_rate
    assert stage2.max_iter == 1875 - 938 and lr(stage2, 0) == pytest.approx(0.003)
    for t in (1, 500, stage2.max_iter):
        assert lr(stage2, t) / lr(stage2, 0) == pytest.approx(
            lr(dg_solver, 938 + t) / lr(dg_solver, 938), rel=1e-6), t
    assert history["final_test_error_pct"] < 5.0              # two epochs of LeNet
    dg = json.load(open(str(out / "dg" / "history.json")))
    assert dg["config"]["total_iters"] == 1875 and dg["final_test_error_pct"] < 5.0
    sampled = json.load(open(str(out / "hmc" / "summary.json")))
    assert sampled["weights"].endswith(os.path.join("dg", "stage1_final.caffemodel"))
    # the paper's T = 1 with q fitted to MNIST, every sample a valid image
    assert sampled["num_chains"] == 10 and sampled["temperature"] == 1.0
    assert sampled["preset"] == "lenet-fitted" and sampled["pixel_model"] == "logit"
    assert sampled["pixels_out_of_bounds"] == 0.0
    report = json.load(open(str(out / "sample_quality.json")))
    assert list(report["sets"]) == ["demo_dg_fitted_q_T1"]
    assert report["sets"]["demo_dg_fitted_q_T1"]["n"] == 10
    assert report["sets"]["demo_dg_fitted_q_T1"]["pixels_out_of_range"] == 0.0
    assert set(report["baselines"]) >= {"real training digits", "white q", "class template",
                                        "class template + q noise"}
    summary = open(str(out / "summary.md")).read()
    assert "| this demo, GG+DG (epoch 2) | %.2f |" % history["final_test_error_pct"] in summary
    assert "| this demo, DG (epoch 2) | %.2f |" % dg["final_test_error_pct"] in summary
    assert "| real training digits (baseline) |" in summary
    assert "| demo_dg_fitted_q_T1 |" in summary
    assert open(str(out / "hmc" / "grid.png"), "rb").read(4) == b"\x89PNG"
