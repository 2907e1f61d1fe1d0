#!/usr/bin/env python
"""How much LeNet's float32 outputs move with the batch they are computed
in: Caffe's InnerProduct is one GEMM over the batch, and a BLAS may round an
image's dot products differently for another batch size (its kernels block
and vectorise by the matrix sizes; with OpenBLAS 0.3.21 on this project's
machines ip1 moved only for a batch of one image, ip2's 10 outputs for most
batch sizes), so the outputs of an image depend on how many images share its
forward pass. The tests that compare such results
(tests/test_sample_quality.py's judge against one plain forward, the
committed reports) take their tolerances from this measurement.

For each weight set (the committed judge/sampled nets, and LeNets at their
random fillers) and each way of cutting N digits into batches, against one
forward of all N: the largest |d ip1| relative to the magnitude of its
dot product, sum_k |x_k w_k| + |b| (float64; for float32 rounding this
ratio is below K u = 800 x 2^-24 = 4.8e-5 in the worst case and about
sqrt(K) u = 1.7e-6 typically), the largest |d ip1|, and the largest
|d softmax(ip2)|. Prints one JSON object; run it once per Caffe:

  . ./env.sh && OPENBLAS_NUM_THREADS=1 python bench/float32_batch_rounding.py

--reports BATCH: instead, every committed results/sample_quality*.json
recomputed (as tests/test_sample_quality.py does) with the judge run BATCH
images at a time instead of 500, a stand-in for another BLAS's rounding of
the same GEMMs: the largest relative change of any number of each report.
"""
import argparse
import glob
import gzip
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("GLOG_minloglevel", "2")


def mnist_digits(folder, n):
    with gzip.open(os.path.join(folder, "train-images-idx3-ubyte.gz")) as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16)
    return (raw[:n * 784].reshape(n, 1, 28, 28) * 0.00390625).astype(np.float32)


def forward(net, x, batch):
    """ip1 and ip2 of x, computed `batch` images at a time; pool2 too."""
    outs = {"ip1": [], "ip2": [], "pool2": []}
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        net.blobs["data"].reshape(*chunk.shape)
        net.reshape()
        net.blobs["data"].data[...] = chunk
        net.forward()
        for name in outs:
            outs[name].append(net.blobs[name].data.reshape(len(chunk), -1).astype(np.float64))
    return {name: np.concatenate(v) for name, v in outs.items()}


def softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def largest_relative_change(old, new):
    if isinstance(old, dict):
        return max([largest_relative_change(old[k], new[k]) for k in old] + [0.0])
    if isinstance(old, list):
        return max([largest_relative_change(a, b) for a, b in zip(old, new)] + [0.0])
    if isinstance(old, (int, float)) and not isinstance(old, bool) and old != new:
        return abs(old - new) / max(abs(old), abs(new))
    return 0.0


def report_sensitivity(batch, mnist):
    """{report: largest relative change} with the judge's batch set to `batch`."""
    import subprocess
    import tempfile
    from gencnn import sample_quality as sq
    from gencnn.reports import sample_quality as sq_report
    lmdbs = tempfile.mkdtemp(prefix="float32_rounding_")
    subprocess.check_call([sys.executable, os.path.join(REPO, "tools", "get_mnist.py"),
                           "--from", mnist, "--out", lmdbs], stdout=subprocess.DEVNULL)
    init = sq.Judge.__init__

    def with_batch(self, model, weights, batch_=batch, **kwargs):
        kwargs.pop("batch", None)
        init(self, model, weights, batch=batch_, **kwargs)
    sq.Judge.__init__ = with_batch
    os.chdir(REPO)
    out = {}
    for name in sorted(os.listdir(os.path.join(REPO, "results"))):
        if not (name.startswith("sample_quality") and name.endswith(".json")):
            continue
        report = json.load(open(os.path.join(REPO, "results", name)))
        settings = sq_report.report_settings(report)
        settings.update(train_lmdb=os.path.join(lmdbs, "mnist_train_lmdb"),
                        test_lmdb=os.path.join(lmdbs, "mnist_test_lmdb"))
        new = json.loads(json.dumps(sq_report.make_report(log=lambda message: None,
                                                           **settings)))
        for key in ("train_lmdb", "test_lmdb"):
            new["judge"][key] = report["judge"][key]
        out[name] = largest_relative_change(report, new)
    return out


def main():
    import caffe
    from gencnn import config
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=os.path.join(config.shared_dir(), "data", "mnist"))
    parser.add_argument("--n", type=int, default=700)
    parser.add_argument("--random-nets", type=int, default=3)
    parser.add_argument("--reports", type=int, metavar="BATCH")
    args = parser.parse_args()
    caffe.set_mode_cpu()
    if args.reports:
        print(json.dumps({"judge_batch": args.reports,
                          "largest_relative_change": report_sensitivity(args.reports, args.mnist)},
                         indent=1))
        return
    model = os.path.join(REPO, "prototxt", "lenet_deploy.prototxt")
    x = mnist_digits(args.mnist, args.n)
    weights = sorted(glob.glob(os.path.join(REPO, "results", "sample_quality", "nets",
                                            "*.caffemodel")))
    nets = [(os.path.basename(w), caffe.Net(model, caffe.TEST, weights=w)) for w in weights]
    for seed in range(args.random_nets):
        caffe.set_random_seed(seed)
        nets.append(("fillers seed %d" % seed, caffe.Net(model, caffe.TEST)))
    batches = [1, 7, 100, 200, 256, 500, args.n - 1]
    worst = {"ratio": 0.0, "ip1_abs": 0.0, "prob_abs": 0.0}
    per_net = {}
    for name, net in nets:
        whole = forward(net, x, args.n)
        w, b = net.params["ip1"][0].data.astype(np.float64), net.params["ip1"][1].data
        magnitude = np.abs(whole["pool2"]).dot(np.abs(w).T) + np.abs(b)
        row = {}
        for batch in batches:
            part = forward(net, x, batch)
            assert np.array_equal(part["pool2"], whole["pool2"])   # conv: per image
            d = np.abs(part["ip1"] - whole["ip1"])
            ratio = float((d / np.maximum(magnitude, 1e-30)).max())
            dprob = float(np.abs(softmax(part["ip2"]) - softmax(whole["ip2"])).max())
            row[batch] = {"ratio": ratio, "ip1_abs": float(d.max()), "prob_abs": dprob,
                          "ip1_values_differing": int((d > 0).sum())}
            worst = {"ratio": max(worst["ratio"], ratio),
                     "ip1_abs": max(worst["ip1_abs"], float(d.max())),
                     "prob_abs": max(worst["prob_abs"], dprob)}
        per_net[name] = row
    print(json.dumps({"n": args.n, "ip1_values": int(whole["ip1"].size),
                      "max_ip1_value": float(whole["ip1"].max()),
                      "worst": worst, "per_net": per_net}, indent=1))


if __name__ == "__main__":
    main()
