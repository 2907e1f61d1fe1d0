"""ImageNet pipeline on a CPU: a tiny synthetic ILSVRC-format data set through
tools/imagenet_data.py (Caffe's convert_imageset and compute_image_mean), two
iterations of every AlexNet and ZF solver (DG, GG, GG+DG stage 2) through the
real `caffe train`, and tools/evaluate.py's 5-crop evaluation, checked against
Caffe's own test-phase crop and on the 16 stub photos with SqueezeNet.

The real solvers and nets are not edited: each run gets a copy (written with
caffe_pb2/text_format) whose only changes are the data sources, batch size 2,
two iterations, one test batch and the snapshot prefix; crop 227, mirror,
the mean file and all solver hyperparameters stay as generated.
"""
import json
import os
import subprocess
import sys

import cv2
import lmdb
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from conftest import REPO, run_caffe
from gencnn import caffe_utils, evaluation
from gencnn.data.lmdb_io import datum_to_array, lmdb_count

caffe.set_mode_cpu()
SYNSETS = ["n01440764", "n01443537", "n01484850"]     # 3 classes, labels 0..2
SMOKE_BATCH = 2


def run_tool(script, *args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", script)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=REPO, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def synthetic_photo(rng, label):
    """A non-square colour photo whose dominant colour depends on the class."""
    h, w = rng.randint(240, 330), rng.randint(240, 330)
    image = rng.randint(0, 80, size=(h, w, 3)).astype(np.uint8)
    image[..., label] += 150
    cv2.circle(image, (w // 2, h // 2), min(h, w) // 4, (255, 255, 255), -1)
    return image


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """OUT of tools/imagenet_data.py on 3 classes x (3 train, 1 val) JPEGs."""
    root = tmp_path_factory.mktemp("ilsvrc")
    rng = np.random.RandomState(0)
    for split, per_class in (("train", 3), ("val", 1)):
        for label, synset in enumerate(SYNSETS):
            os.makedirs(str(root / split / synset))
            for i in range(per_class):
                cv2.imwrite(str(root / split / synset / ("%s_%d.JPEG" % (synset, i))),
                            synthetic_photo(rng, label))
    (root / "synsets.txt").write_text("\n".join(SYNSETS) + "\n")
    out = root / "out"
    code, stdout, stderr = run_tool("imagenet_data.py", "--synsets", str(root / "synsets.txt"),
                                    "--train-dir", str(root / "train"),
                                    "--val-dir", str(root / "val"), "--out", str(out),
                                    "--snapshots", str(root / "snapshots"))
    assert code == 0, stderr
    return {"root": root, "out": out,
            "train": str(out / "ilsvrc12_train_lmdb"), "val": str(out / "ilsvrc12_val_lmdb"),
            "mean": str(out / "imagenet_mean.binaryproto")}


def test_imagenet_data_writes_lmdbs_and_mean(ilsvrc):
    assert lmdb_count(ilsvrc["train"]) == 9 and lmdb_count(ilsvrc["val"]) == 3
    env = lmdb.open(ilsvrc["train"], readonly=True, lock=False)
    with env.begin() as txn:
        datums = []
        for _, value in txn.cursor():
            datum = caffe_pb2.Datum()
            datum.ParseFromString(value)
            datums.append(datum_to_array(datum))
    env.close()
    assert {image.shape for image, _ in datums} == {(3, 256, 256)}
    assert sorted(label for _, label in datums) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # class c's photos are dominated by channel c: the labels match the images
    for image, label in datums:
        assert np.argmax(image.reshape(3, -1).mean(axis=1)) == label
    mean = evaluation.load_mean_file(ilsvrc["mean"])
    expected = np.mean([image.astype(np.float64) for image, _ in datums], axis=0)
    assert np.allclose(mean, expected, atol=1e-3)
    assert not [p for p in os.listdir(str(ilsvrc["out"])) if p.endswith(".tmp")]
    assert os.path.isdir(str(ilsvrc["root"] / "snapshots"))


def test_imagenet_data_rejects_bad_input_in_one_line(ilsvrc, tmp_path):
    bad_list = tmp_path / "val.txt"
    bad_list.write_text("n01440764/missing.JPEG 0\n")
    code, _, stderr = run_tool("imagenet_data.py", "--synsets",
                               str(ilsvrc["root"] / "synsets.txt"),
                               "--train-dir", str(ilsvrc["root"] / "train"),
                               "--val-dir", str(ilsvrc["root"] / "val"),
                               "--val-list", str(bad_list), "--out", str(tmp_path / "out"))
    assert code == 2
    assert stderr.count("\n") == 1 and "not found" in stderr and "Traceback" not in stderr
    assert not os.path.exists(str(tmp_path / "out" / "ilsvrc12_train_lmdb"))


def smoke_copy(key, variant, ilsvrc, tmp, snapshot):
    """Copies of solvers/<key>_<variant>.prototxt and its net, reduced to two
    iterations at batch 2 on the synthetic data; returns the solver path."""
    solver = caffe_utils.read_solver(os.path.join(REPO, "solvers", "%s_%s.prototxt"
                                                  % (key, variant)))
    net = caffe_utils.read_net(os.path.join(REPO, solver.net))
    for layer in net.layer:
        if layer.type == "Data":
            train = layer.include[0].phase == caffe_pb2.TRAIN
            layer.data_param.source = ilsvrc["train" if train else "val"]
            layer.data_param.batch_size = SMOKE_BATCH
            layer.transform_param.mean_file = ilsvrc["mean"]
    net_path = os.path.join(tmp, "%s_%s_net.prototxt" % (key, variant))
    with open(net_path, "w") as f:
        f.write(str(net))
    path = os.path.join(tmp, "%s_%s_solver.prototxt" % (key, variant))
    with open(path, "w") as f:
        f.write(str(caffe_utils.solver_variant(
            solver, net=net_path, max_iter=2, display=1, test_iter=1, test_interval=2,
            test_initialization=False, snapshot=0, snapshot_after_train=snapshot,
            snapshot_prefix=os.path.join(tmp, "%s_%s" % (key, variant)), random_seed=1)))
    return path


def check_log(log, base_lr, outputs):
    losses = caffe_utils.train_losses(log)
    assert [it for it, _ in losses] == [0, 1, 2] and np.all(np.isfinite([l for _, l in losses]))
    assert "Iteration 0, lr = %g" % base_lr in log
    ((it, tested),) = caffe_utils.test_outputs(log)
    assert it == 2 and sorted(tested) == sorted(outputs)
    assert 0 <= tested["accuracy"] <= tested["accuracy_top5"] <= 1
    assert "Optimization Done." in log


@pytest.mark.parametrize("key", ["alexnet", "zf"])
@pytest.mark.slow
def test_every_solver_runs_two_iterations(key, ilsvrc, tmp_path):
    tmp = str(tmp_path)
    _, log = run_caffe(["train", "-solver", smoke_copy(key, "dg", ilsvrc, tmp, False)], cwd=REPO)
    check_log(log, 0.01, ["accuracy", "accuracy_top5", "loss"])

    _, log = run_caffe(["train", "-solver", smoke_copy(key, "gg", ilsvrc, tmp, True)], cwd=REPO)
    check_log(log, 0.01, ["accuracy", "accuracy_top5", "loss", "ess"])
    gg_weights = os.path.join(tmp, "%s_gg_iter_2.caffemodel" % key)
    assert os.path.exists(gg_weights)

    # GG+DG stage 2, both readings (aligned, the default, and restart): the DG
    # net from GG's weights at base_lr 0.003
    for variant in ("gg_dg", "gg_dg_restart"):
        _, log = run_caffe(["train", "-solver", smoke_copy(key, variant, ilsvrc, tmp, False),
                            "-weights", gg_weights], cwd=REPO)
        assert "Finetuning from %s" % gg_weights in log
        check_log(log, 0.003, ["accuracy", "accuracy_top5", "loss"])
    os.remove(gg_weights)                      # 250-300 MB each
    os.remove(gg_weights.replace(".caffemodel", ".solverstate"))


def test_centre_crop_matches_caffe_test_phase(ilsvrc, tmp_path):
    """The evaluator's centre crop and mean handling give the same scores as
    Caffe's own DataTransformer (TEST phase: centre 227 crop, mean file)."""
    solver = caffe_utils.read_solver(smoke_copy("alexnet", "dg", ilsvrc, str(tmp_path), False))
    test_net = caffe.Net(solver.net, caffe.TEST)
    deploy = caffe.Net(os.path.join(REPO, "prototxt", "alexnet_deploy.prototxt"), caffe.TEST)
    for name, params in deploy.params.items():
        for mine, theirs in zip(params, test_net.params[name]):
            mine.data[...] = theirs.data
    test_net.forward()
    caffe_scores = test_net.blobs["fc8"].data.copy()
    # The same two val images, as PNG (lossless) copies of the 256x256 datums
    env = lmdb.open(ilsvrc["val"], readonly=True, lock=False)
    paths = []
    with env.begin() as txn:
        for i, (_, value) in enumerate(txn.cursor()):
            if i == SMOKE_BATCH:
                break
            datum = caffe_pb2.Datum()
            datum.ParseFromString(value)
            image, _ = datum_to_array(datum)
            paths.append(str(tmp_path / ("val%d.png" % i)))
            cv2.imwrite(paths[-1], image.transpose(1, 2, 0))
    env.close()
    evaluator = evaluation.Evaluator(deploy, "fc8", evaluation.load_mean_file(ilsvrc["mean"]))
    scores = evaluator.scores(paths)
    assert scores.shape == (SMOKE_BATCH, 5, 1000)
    # The evaluator runs the 5 crops of each image in one batch (10 images),
    # the TEST net the 2 centre crops: fc6-fc8 are GEMMs over other batch
    # sizes, which a BLAS may round differently. Measured
    # (bench/allclose_margins.py): identical on our build and on upstream BVLC
    # 1.0 with OpenBLAS 0.3.21; the tolerance is about 25x the typical float32
    # rounding of fc6's 9,216-term sums (sqrt(9216) x 2^-24 = 5.7e-6 relative).
    assert np.allclose(scores[:, 0], caffe_scores, rtol=1e-4, atol=1e-5 * np.abs(
        caffe_scores).max())
    assert not np.allclose(scores[:, 1], caffe_scores, rtol=1e-4, atol=1e-5 * np.abs(
        caffe_scores).max())                   # a corner crop differs


def test_five_crops_are_centre_and_corners():
    assert evaluation.crop_offsets(256, 227) == [(14, 14), (0, 0), (0, 29), (29, 0), (29, 29)]


@pytest.mark.slow
def test_squeezenet_on_the_stub_photos(shared_dir, tmp_path):
    stubs = os.path.join(shared_dir, "data", "imagenet_stubs")
    model = os.path.join(shared_dir, "models", "squeezenet_v1.0")
    image_list = str(tmp_path / "stubs.txt")
    code, _, stderr = run_tool("named_image_list.py", os.path.join(stubs, "images"),
                               os.path.join(stubs, "imagenet_labels.txt"), image_list)
    assert code == 0, stderr
    out = str(tmp_path / "squeezenet.json")
    code, stdout, stderr = run_tool(
        "evaluate.py", "--deploy", os.path.join(model, "SqueezeNet_deploy.prototxt"),
        "--weights", os.path.join(model, "squeezenet_v1.0_deepcompressed.caffemodel"),
        "--images", image_list, "--root", os.path.join(stubs, "images"),
        "--mean-values", "104", "117", "123", "--output-blob", "pool_final", "--out", out)
    assert code == 0, stderr
    result = json.load(open(out))
    assert result["images"] == 16
    # OpenCV's Caffe importer gets 15/16 (PROVENANCE); so does this tool with
    # real Caffe (malamute -> Eskimo dog, a neighbouring class, within top 5).
    assert result["five_crop"]["top1_correct"] >= 15
    assert result["centre_crop"]["top1_correct"] >= 15
    assert result["five_crop"]["top5_correct"] == 16
    assert "evaluating" in stderr                   # the progress bar


def test_evaluate_rejects_bad_input_in_one_line(shared_dir, tmp_path):
    image_list = tmp_path / "list.txt"
    image_list.write_text("no_such.jpg 3\n")
    model = os.path.join(shared_dir, "models", "squeezenet_v1.0")
    code, _, stderr = run_tool(
        "evaluate.py", "--deploy", os.path.join(model, "SqueezeNet_deploy.prototxt"),
        "--weights", os.path.join(model, "squeezenet_v1.0_deepcompressed.caffemodel"),
        "--images", str(image_list), "--root", str(tmp_path), "--out",
        str(tmp_path / "out.json"))
    assert code == 2 and stderr.count("\n") == 1 and "not found" in stderr
    assert not os.path.exists(str(tmp_path / "out.json"))
