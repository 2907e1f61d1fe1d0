"""One error convention for every tool: bad
input gives exactly one stderr line `error: ...`, exit status 2, no
traceback, and nothing written: no Caffe abort on a bad caffemodel, no
sampling before a bad --out or --compare-lmdb is found, no silently accepted
nonsense numbers. Each tool runs for real in a subprocess."""
import json
import os
import subprocess
import sys

import lmdb
import numpy as np
import pytest

import caffe
from caffe.proto import caffe_pb2
from conftest import REPO
from gencnn.data.lmdb_io import write_lmdb

LENET = os.path.join(REPO, "prototxt", "lenet_deploy.prototxt")
TOOLS = sorted(name for name in os.listdir(os.path.join(REPO, "tools"))
               if name.endswith(".py") and not name.startswith("_"))
# Tools whose bad-input cases live in their own test file
# (tests/test_generative_learning.py); listed so that a new tool without a
# case fails below.
ELSEWHERE = {"generative_learning.py"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Bad inputs of every kind, and the good files around them."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"root": str(root), "lenet": LENET, "file": str(root / "a_file")}
    (root / "a_file").write_text("not a folder\n")
    good = str(root / "lenet.caffemodel")
    caffe.Net(LENET, caffe.TEST).save(good)
    data = open(good, "rb").read()
    paths["good"] = good
    paths["text_weights"] = str(root / "text.caffemodel")        # a text file, `echo hi`
    (root / "text.caffemodel").write_text("hi\n")
    paths["empty_weights"] = str(root / "empty.caffemodel")      # parses as nothing
    (root / "empty.caffemodel").write_bytes(b"")
    paths["truncated"] = str(root / "truncated.caffemodel")
    (root / "truncated.caffemodel").write_bytes(data[:len(data) // 2])
    wider = root / "wider.prototxt"                              # ip1 500 -> 400 outputs
    wider.write_text(open(LENET).read().replace("num_output: 500", "num_output: 400"))
    paths["mismatched"] = str(root / "mismatched.caffemodel")
    caffe.Net(str(wider), caffe.TEST).save(paths["mismatched"])
    model = caffe_pb2.NetParameter()
    model.ParseFromString(data)
    kept = [layer for layer in model.layer if layer.name != "conv2"]
    del model.layer[:]
    model.layer.extend(kept)
    paths["missing_layer"] = str(root / "no_conv2.caffemodel")
    (root / "no_conv2.caffemodel").write_bytes(model.SerializeToString())
    # the right shapes, but ip2's weights short (100 of 5,000) or one NaN / inf
    for name in ("short", "nan", "inf"):
        model = caffe_pb2.NetParameter()
        model.ParseFromString(data)
        blob = [layer for layer in model.layer if layer.name == "ip2"][0].blobs[0]
        if name == "short":
            del blob.data[100:]
        else:
            blob.data[17] = float(name)
        paths[name + "_weights"] = str(root / (name + ".caffemodel"))
        (root / (name + ".caffemodel")).write_bytes(model.SerializeToString())
    # LMDBs: garbage in data.mdb; a real LMDB whose values are no Datums;
    # Datums of the wrong size for LeNet.
    os.makedirs(str(root / "corrupt_lmdb"))
    (root / "corrupt_lmdb" / "data.mdb").write_bytes(b"not an lmdb " * 1000)
    paths["corrupt_lmdb"] = str(root / "corrupt_lmdb")
    paths["not_datums"] = str(root / "not_datums_lmdb")
    env = lmdb.open(paths["not_datums"], map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"00000000", b"\xff\xff\xff")
    env.close()
    paths["cifar_sized"] = str(root / "cifar_sized_lmdb")
    write_lmdb(paths["cifar_sized"], ((np.zeros((3, 32, 32), np.uint8), i % 10)
                                      for i in range(20)), map_size=1 << 24)
    # MNIST-sized, but only classes 0 to 2 (hmc() samples unit 3)
    paths["few_classes"] = str(root / "few_classes_lmdb")
    write_lmdb(paths["few_classes"], ((np.full((1, 28, 28), 10 * i, np.uint8), i % 3)
                                      for i in range(12)), map_size=1 << 24)
    # reference images: all one grey; float images with a NaN pixel
    paths["constant"] = str(root / "constant_lmdb")
    write_lmdb(paths["constant"], ((np.full((1, 28, 28), 128, np.uint8), 0)
                                   for i in range(12)), map_size=1 << 24)
    nan = [np.full((1, 28, 28), 0.5, np.float32) for i in range(12)]
    nan[4][0, 5, 5] = np.nan
    paths["nan_pixel"] = str(root / "nan_pixel_lmdb")
    write_lmdb(paths["nan_pixel"], ((image, 0) for image in nan), map_size=1 << 24)
    # a sample set of one image (FID needs a covariance)
    paths["one_sample"] = str(root / "one_sample.npz")
    np.savez(paths["one_sample"], x=np.zeros((1, 1, 28, 28), np.float32), y=np.array([3]))
    # an image list with one real image, for evaluate.py
    import cv2
    cv2.imwrite(str(root / "photo.jpg"), np.full((256, 256, 3), 128, np.uint8))
    (root / "list.txt").write_text("photo.jpg 3\n")
    paths["list"] = str(root / "list.txt")
    (root / "list_label12.txt").write_text("photo.jpg 12\n")
    paths["list_label12"] = str(root / "list_label12.txt")
    (root / "labels.txt").write_text("0 tench, Tinca tinca\n")
    paths["labels"] = str(root / "labels.txt")
    return paths


def run_tool(script, args):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", script)] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, cwd=REPO, timeout=300,
                          env=dict(os.environ, GLOG_minloglevel="2"))
    return proc


def hmc(*args):
    return ["--model", "{lenet}", "--weights", "{good}", "--blob", "ip2", "--unit", "3",
            "--iters", "2", "--num-chains", "2", "--out", "{root}/hmc_out"] + list(args)


def evaluate(*args):
    return ["--deploy", "{lenet}", "--weights", "{good}", "--images", "{list}",
            "--root", "{root}", "--out", "{root}/eval.json"] + list(args)


# (tool, arguments with {placeholders} from `bad`, a part of the error line)
CASES = [
    # get_mnist.py
    ("get_mnist.py", ["--out", "{file}"], "exists and is not a folder"),
    ("get_mnist.py", ["--out", "{file}/mnist"], "is a file"),
    ("get_mnist.py", ["--train-limit", "-5", "--out", "{root}/m"],
     "--train-limit must be a positive integer, got -5"),
    ("get_mnist.py", ["--train-limit", "0", "--out", "{root}/m"],
     "--train-limit must be a positive integer, got 0"),
    ("get_mnist.py", ["--test-limit", "10001", "--out", "{root}/m"], "MNIST has 10000"),
    ("get_mnist.py", ["--from", "{root}/nowhere", "--out", "{root}/m"], "does not exist"),
    # cifar10_data.py
    ("cifar10_data.py", ["{text_weights}", "--out", "{root}/c", "--snapshots", "{root}/s"],
     "cannot read archive"),
    ("cifar10_data.py", ["{root}", "--seed", "-1", "--out", "{root}/c"],
     "--seed must be an integer in [0, 2^32), got -1"),
    ("cifar10_data.py", ["{root}", "--out", "{file}"], "exists and is not a folder"),
    ("cifar10_data.py", ["{file}", "--sha256sums", "{root}/NO_SUMS", "--out", "{root}/c",
                         "--snapshots", "{root}/s"], "NO_SUMS: No such file"),
    # imagenet_data.py
    ("imagenet_data.py", ["--out", "{root}/i", "--snapshots", "{root}/s"],
     "--train-dir is required"),
    ("imagenet_data.py", ["--synsets", "{root}/none.txt", "--train-dir", "{root}",
                          "--val-dir", "{root}", "--out", "{root}/i",
                          "--snapshots", "{root}/s"], "synset list"),
    ("imagenet_data.py", ["--out", "{file}/i"], "is a file"),
    # named_image_list.py
    ("named_image_list.py", ["{root}/nowhere", "{labels}", "{root}/l.txt"],
     "image folder {root}/nowhere not found"),
    ("named_image_list.py", ["{root}", "{file}", "{root}/l.txt"], "expected '<index> <name>'"),
    ("named_image_list.py", ["{root}", "{labels}", "{file}/l.txt"], "is a file"),
    # evaluate.py: a bad caffemodel is one line, not Caffe's abort (exit 134)
    ("evaluate.py", evaluate("--weights", "{text_weights}"), "does not parse"),
    ("evaluate.py", evaluate("--weights", "{empty_weights}"), "no layer with weights"),
    ("evaluate.py", evaluate("--weights", "{truncated}"), "truncated.caffemodel"),
    ("evaluate.py", evaluate("--weights", "{mismatched}"),
     "layer ip1: blob 0 has shape 400x800, the net expects 500x800"),
    ("evaluate.py", evaluate("--weights", "{missing_layer}"), "layer conv2 missing"),
    ("evaluate.py", evaluate("--weights", "{inf_weights}"),
     "layer ip2: blob 0 holds a non-finite weight (inf)"),
    ("evaluate.py", evaluate("--batch", "0"), "--batch must be a positive integer"),
    # a label the net has no class for (it counted as an error)
    ("evaluate.py", evaluate("--images", "{list_label12}"), "has label 12; the net's ip2 has "
                                                            "10 classes (0 to 9)"),
    ("evaluate.py", evaluate("--input-scale", "nan"), "--input-scale must be a positive"),
    ("evaluate.py", evaluate("--out", "{file}/eval.json"), "is a file"),
    # hmc_merge.py: a shard that is missing or not a samples file (the checks
    # of shards against each other: tests/test_shards.py)
    ("hmc_merge.py", ["{root}/no_shard.npz", "--out", "{root}/m"],
     "shard not found: {root}/no_shard.npz"),
    ("hmc_merge.py", ["{text_weights}", "--out", "{root}/m"], "not a readable samples file"),
    # hmc_visualize.py: everything checked before sampling
    ("hmc_visualize.py", hmc("--weights", "{text_weights}"), "does not parse"),
    ("hmc_visualize.py", hmc("--weights", "{truncated}"), "truncated.caffemodel"),
    ("hmc_visualize.py", hmc("--weights", "{mismatched}"),
     "layer ip1: blob 0 has shape 400x800, the net expects 500x800"),
    ("hmc_visualize.py", hmc("--weights", "{missing_layer}"), "layer conv2 missing"),
    ("hmc_visualize.py", hmc("--unit", "all", "--weights", "{missing_layer}"),
     "layer conv2 missing"),
    ("hmc_visualize.py", hmc("--weights", "{nan_weights}"),
     "layer ip2: blob 0 holds a non-finite weight (nan)"),
    ("hmc_visualize.py", hmc("--weights", "{short_weights}"),
     "layer ip2: blob 0 holds 100 values, its shape 10x500 needs 5000"),
    ("hmc_visualize.py", hmc("--compare-lmdb", "{few_classes}"),
     "has no image of class 3"),
    ("hmc_visualize.py", hmc("--out", "{root}"), "which is not an output of hmc_visualize"),
    ("hmc_visualize.py", hmc("--input-blob", "nope"), "unknown input blob 'nope'"),
    ("hmc_visualize.py", hmc("--compare-lmdb", "{corrupt_lmdb}"), "not a readable LMDB"),
    ("hmc_visualize.py", hmc("--compare-lmdb", "{not_datums}"), "is not a Caffe Datum"),
    ("hmc_visualize.py", hmc("--compare-lmdb", "{cifar_sized}"),
     "do not match the net's input"),
    ("hmc_visualize.py", hmc("--reference", "fit-global", "--reference-lmdb",
                             "{corrupt_lmdb}"), "not a readable LMDB"),
    ("hmc_visualize.py", hmc("--out", "{file}/hmc"), "is a file"),
    ("hmc_visualize.py", hmc("--out", "{file}"), "exists and is not a folder"),
    ("hmc_visualize.py", hmc("--seed", "-1"), "--seed must be an integer in [0, 2^32)"),
    ("hmc_visualize.py", hmc("--chain-offset", str(2 ** 64)),
     "--chain-offset must be an integer in [0, 2^32)"),
    ("hmc_visualize.py", hmc("--reference", "fit-global", "--reference-lmdb", "{constant}"),
     "the 12 images are constant (every pixel 0.5)"),
    ("hmc_visualize.py", hmc("--reference", "fit-pixel", "--reference-lmdb", "{nan_pixel}"),
     "image 4 (in key order) holds a non-finite pixel"),
    ("hmc_visualize.py", hmc("--target-accept", "1.5"), "--target-accept must be a number in"),
    ("hmc_visualize.py", hmc("--reference-count", "0"), "--reference-count must be a positive"),
    ("hmc_visualize.py", hmc("--ref-mean", "inf"), "--ref-mean must be a finite number"),
    # demo.py: refused before any step starts
    ("demo.py", ["--gg-epochs", "0", "--out", "{root}/demo"],
     "--gg-epochs must be a positive integer"),
    ("demo.py", ["--out", "{file}"], "exists and is not a folder"),
    # two_stage.py (its other checks: tests/test_mnist_two_stage.py)
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--stage2", "{root}/none2",
                      "--switch-epoch", "1", "--out", "{root}/run"], "does not exist"),
    # two_stage.py: numbers checked by their types (these were tracebacks)
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--out", "{root}/run", "--seed",
                      "99999999999999999999"], "--seed must be an integer in [0, 2^32)"),
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--out", "{root}/run",
                      "--start-epoch", "nan"], "--start-epoch must be a number >= 0"),
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--out", "{root}/run",
                      "--stop-epoch", "inf"], "--stop-epoch must be a positive number"),
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--out", "{root}/run",
                      "--keep-epochs", "4,nan"], "--keep-epochs must be a number >= 0"),
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--stage2", "{root}/none2",
                      "--switch", "ess:2", "--out", "{root}/run"], "0 < T <= 1"),
    ("two_stage.py", ["--stage1", "{root}/none.prototxt", "--stage2", "{root}/none2",
                      "--switch", "3", "--switch-epoch", "3", "--out", "{root}/run"],
     "not both"),
    # run_study.py: refused before any run starts
    ("run_study.py", ["table1", "--seeds", "-1", "--report-only"],
     "--seeds must be comma-separated integers in [0, 2^32)"),
    ("run_study.py", ["cifar10", "--seeds", "1,x"], "--seeds must be comma-separated integers"),
    ("run_study.py", ["cifar10", "--seeds", "1,1"], "--seeds needs distinct seeds"),
    ("run_study.py", ["cifar10", "--jobs", "0"], "--jobs must be a positive integer"),
    ("run_study.py", ["nope"], "invalid choice"),
    ("run_study.py", ["cifar10", "--work", "{file}"], "exists and is not a folder"),
    # generate_prototxt.py
    ("generate_prototxt.py", ["--out", "{file}"], "exists and is not a folder"),
    # sample_quality.py (its sample-file cases: tests/test_sample_quality.py)
    ("sample_quality.py", ["--judge-weights", "{text_weights}", "--set", "a={root}/a.npz",
                           "--train-lmdb", "{cifar_sized}", "--test-lmdb", "{cifar_sized}",
                           "--out", "{root}/q.json"], "does not parse"),
    ("sample_quality.py", ["--judge-weights", "{short_weights}", "--set", "a={one_sample}",
                           "--train-lmdb", "{cifar_sized}", "--test-lmdb", "{cifar_sized}",
                           "--out", "{root}/q.json"], "holds 100 values"),
    ("sample_quality.py", ["--judge-weights", "{nan_weights}", "--set", "a={one_sample}",
                           "--train-lmdb", "{cifar_sized}", "--test-lmdb", "{cifar_sized}",
                           "--out", "{root}/q.json"], "holds a non-finite weight (nan)"),
    ("sample_quality.py", ["--judge-weights", "{good}", "--set", "a={one_sample}",
                           "--train-lmdb", "{cifar_sized}", "--test-lmdb", "{cifar_sized}",
                           "--out", "{root}/q.json"],
     "set a holds 1 image; FID's covariance needs at least 2"),
    ("sample_quality.py", ["--judge-weights", "{good}", "--set", "a"],
     "--set must be NAME=PATH, got 'a'"),
    ("sample_quality.py", ["--judge-weights", "{good}", "--set", "a=b", "--out", "{file}/q.json"],
     "is a file"),
    # imagenet_classes.py: refused before any set is sampled
    ("imagenet_classes.py", ["--weights", "{root}/none.caffemodel"], "weights not found"),
    ("imagenet_classes.py", ["--weights", "{text_weights}"], "does not parse"),
    ("imagenet_classes.py", ["--only", "nope"], "--only must be one of"),
    ("imagenet_classes.py", ["--jobs", "0"], "--jobs must be a positive integer"),
    ("imagenet_classes.py", ["--samples-dir", "{file}"], "exists and is not a folder"),
    # generative_learning_report.py
    ("generative_learning_report.py", ["--runs", "{root}/nope", "--judge-weights", "{good}",
                                       "--out", "{root}/r.json"], "has no history.json"),
    ("generative_learning_report.py", ["--runs", "{root}/nope", "--judge-weights", "{good}",
                                       "--speed", "{file}", "--out", "{root}/r.json"],
     "is not the JSON of bench/generative_learning_speed.py"),
]


def case_id(index):
    tool, _, message = CASES[index]
    return "%s-%d-%s" % (tool[:-3], index, message[:40])


@pytest.mark.parametrize("tool,args,message", CASES, ids=[case_id(i) for i in range(len(CASES))])
def test_bad_input_is_one_error_line_and_exit_2(bad, tool, args, message):
    proc = run_tool(tool, [a.format(**bad) for a in args])
    lines = proc.stderr.splitlines()     # a progress bar (\r) would add lines
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message.format(**bad) in lines[0]
    for out in ("hmc_out", "eval.json", "m", "c", "s", "i", "l.txt", "demo", "run"):
        assert not os.path.exists(os.path.join(bad["root"], out)), out


def test_every_tool_has_a_case():
    covered = {tool for tool, _, _ in CASES}
    assert set(TOOLS) - ELSEWHERE == covered


@pytest.mark.slow
def test_good_inputs_still_pass(bad, tmp_path):
    """The checks refuse only what is wrong: good weights and a good
    --compare-lmdb (now read before sampling) still give a run."""
    mnist_like = str(tmp_path / "mnist_like_lmdb")
    write_lmdb(mnist_like, ((np.full((1, 28, 28), 10 * i, np.uint8), i) for i in range(10)),
               map_size=1 << 24)
    out = tmp_path / "hmc"
    proc = run_tool("hmc_visualize.py", [a.format(**bad) for a in hmc(
        "--out", str(out), "--leapfrog-steps", "2", "--compare-lmdb", mnist_like)])
    assert proc.returncode == 0, proc.stderr
    summary = json.load(open(str(out / "summary.json")))
    assert 0 <= summary["compare_final"]["closest_class_mean_is_unit"] <= 1


def legacy_copy(src, dest, bias_count=None):
    """`src` rewritten in Caffe's V1 format (`layers`, 4-D legacy blob dims),
    as old BVLC caffemodels are stored; bias_count changes ip2's bias size."""
    model = caffe_pb2.NetParameter()
    model.ParseFromString(open(src, "rb").read())
    legacy = caffe_pb2.NetParameter()
    for layer in model.layer:
        old = legacy.layers.add()
        old.name = layer.name
        for blob in layer.blobs:
            dims = list(blob.shape.dim)
            if layer.name == "ip2" and len(dims) == 1 and bias_count:
                dims = [bias_count]
            new = old.blobs.add()
            new.num, new.channels, new.height, new.width = [1] * (4 - len(dims)) + dims
            new.data.extend([0.0] * int(np.prod(dims)))
    open(dest, "wb").write(legacy.SerializeToString())


def test_check_weights_reads_legacy_models_as_caffe_does(bad, tmp_path):
    from gencnn import caffe_utils, cli
    good, wrong = str(tmp_path / "v1.caffemodel"), str(tmp_path / "v1_wrong.caffemodel")
    legacy_copy(bad["good"], good)
    legacy_copy(bad["good"], wrong, bias_count=9)
    net = caffe.Net(LENET, caffe.TEST)
    caffe_utils.load_weights(net, good)              # Caffe copies it too
    assert not net.params["ip2"][1].data.any()
    with pytest.raises(cli.UserError, match="layer ip2: blob 1 has shape 1x1x1x9, "
                                            "the net expects 10$"):
        caffe_utils.check_weights(LENET, wrong)


def test_without_the_environment_every_tool_says_so_in_one_line(tmp_path):
    """A tool run without `. ./env.sh` (no venv, no pycaffe) gives
    one line naming what to do, not a ModuleNotFoundError traceback."""
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None
    if python is None or subprocess.run([python, "-c", "import numpy"], env=bare,
                                        stderr=subprocess.DEVNULL).returncode == 0:
        pytest.skip("no bare system python3 without numpy on this machine")
    for tool in TOOLS:
        proc = subprocess.run([python, os.path.join(REPO, "tools", tool), "--help"], env=bare,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, cwd=str(tmp_path))
        assert proc.returncode == 2, (tool, proc.stderr)
        assert proc.stderr.splitlines() == [proc.stderr.strip()], (tool, proc.stderr)
        assert "env.sh" in proc.stderr, (tool, proc.stderr)
