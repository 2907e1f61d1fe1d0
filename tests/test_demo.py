"""`make demo`'s script end to end, shortened: data, GG+DG training, HMC
samples measured against the real test digits, and the summary."""
import json
import os
import subprocess
import sys

from conftest import REPO


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
    assert history["final_test_error_pct"] < 5.0              # two epochs of LeNet
    dg = json.load(open(str(out / "dg" / "history.json")))
    assert dg["config"]["total_iters"] == 1875 and dg["final_test_error_pct"] < 5.0
    sampled = json.load(open(str(out / "hmc" / "summary.json")))
    assert sampled["weights"].endswith(os.path.join("dg", "stage1_final.caffemodel"))
    assert sampled["num_chains"] == 10 and sampled["temperature"] == 0.03
    compare = sampled["compare_final"]
    assert 0.0 <= compare["closest_class_mean_is_unit"] <= 1.0
    summary = open(str(out / "summary.md")).read()
    assert "| this demo, GG+DG (epoch 2) | %.2f |" % history["final_test_error_pct"] in summary
    assert "| this demo, DG (epoch 2) | %.2f |" % dg["final_test_error_pct"] in summary
    assert "nearest MNIST class mean is the sampled unit's | %.0f %%" % (
        100 * compare["closest_class_mean_is_unit"]) in summary
    assert open(str(out / "hmc" / "grid.png"), "rb").read(4) == b"\x89PNG"
