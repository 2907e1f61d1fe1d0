#!/usr/bin/env python
"""How much does splitting a GG batch across GPUs change the gradient?

With N GPUs (BVLC python/train.py + NCCL) or with `iter_size: N`, every
GenerativeLossLayer sees only its own sub-batch, so the reference
distribution of eq. 10 (the softmax across the batch of f_y(x_j)) is
estimated from 256/N images instead of 256; the solver then averages the N
sub-batch gradients. This script measures the effect on CPU, with pycaffe:

  g_256   the GG weight gradient of one batch of 256 images
  g_k     the mean of the gradients of 256/k consecutive sub-batches of k
          images over the same 256 images (k = 128, 64, 32: two, four, eight GPUs)

and reports cos(g_k, g_256) and |g_k - g_256| / |g_256| over the
concatenated weight gradients (every layer's blobs[0]; biases left out),
averaged over several disjoint sets of 256 test images drawn at random
(worst case in brackets). For scale it also reports the same numbers between g_256 of one
set and g_256 of the next set (a different batch of data), and a DG control
(SoftmaxWithLoss, per-example, so the split must be exact up to rounding).

Nets: LeNet (MNIST) and cifar10_quick (CIFAR-10), each untrained (the
solver's seeded fillers) and after a short GG training with pycaffe
(--train-iters, the GG solver's hyperparameters). Needs the LMDBs:
  python tools/get_mnist.py --from $GENCNN_SHARED/data/mnist
  python tools/cifar10_data.py ...   (see docs/cifar10.md)
Writes the table to results/studies/gg_batch_split.txt (--out).
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import _init_paths  # noqa: F401,E402
import numpy as np  # noqa: E402

from gencnn import protocols  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NETS = {
    # name: (GG train/test net, DG net, GG solver, test LMDB, shape, scale, mean file)
    "lenet": ("prototxt/lenet_train_test_gg.prototxt",
              "prototxt/lenet_train_test_dg.prototxt",
              "solvers/lenet_gg.prototxt",
              "data/mnist/mnist_test_lmdb", (1, 28, 28), protocols.MNIST_SCALE, None),
    "cifar10_quick": ("prototxt/cifar10_quick_train_test_gg.prototxt",
                      "prototxt/cifar10_quick_train_test_dg.prototxt",
                      "solvers/cifar10_quick_gg.prototxt",
                      "data/cifar10/cifar10_test_lmdb", (3, 32, 32), 1.0,
                      "data/cifar10/mean.binaryproto"),
}
SPLITS = (128, 64, 32)


def load_images(lmdb_path, count, scale, mean_file, seed):
    """`count` images drawn at random (seeded) from an LMDB, transformed as
    the Data layer does (minus the mean image, times scale), and their labels.
    Drawn, not the first ones: a test LMDB may be sorted by class (ours for
    CIFAR-10 is), and a batch of one class is no GG batch."""
    import caffe
    from caffe.proto import caffe_pb2
    from gencnn.data.lmdb_io import read_lmdb
    images, labels = [], []
    for image, label in read_lmdb(lmdb_path):
        images.append(image)
        labels.append(label)
    if len(images) < count:
        raise SystemExit("error: %s has %d images, need %d" % (lmdb_path, len(images), count))
    pick = np.random.RandomState(seed).permutation(len(images))[:count]
    data = np.stack([images[i] for i in pick]).astype(np.float32)
    labels = [labels[i] for i in pick]
    if mean_file:
        blob = caffe_pb2.BlobProto()
        with open(mean_file, "rb") as f:
            blob.ParseFromString(f.read())
        data -= caffe.io.blobproto_to_array(blob)[0]
    return data * scale, np.asarray(labels, dtype=np.float32)


def input_net(train_test, batch, shape):
    """The TRAIN phase of a train/test net with its Data layers replaced by an
    Input layer of `batch` images (so we choose the images and the split)."""
    import caffe
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    param = caffe_pb2.NetParameter()
    with open(train_test) as f:
        text_format.Merge(f.read(), param)
    layers = [l for l in param.layer if l.type != "Data"
              and not any(r.phase == caffe_pb2.TEST for r in l.include)]
    del param.layer[:]
    inp = param.layer.add(name="input", type="Input", top=["data", "label"])
    inp.input_param.shape.add(dim=[batch] + list(shape))
    inp.input_param.shape.add(dim=[batch])
    param.layer.extend(layers)
    param.force_backward = False
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
        f.write(text_format.MessageToString(param))
    try:
        return caffe.Net(f.name, caffe.TRAIN)
    finally:
        os.unlink(f.name)


def set_weights(net, weights):
    for name, blobs in weights.items():
        for blob, value in zip(net.params[name], blobs):
            blob.data[...] = value


def weight_gradient(net, data, labels):
    """Mean over consecutive sub-batches (net's batch size) of the weight
    gradients: what Caffe's iter_size or NCCL averaging computes."""
    batch = net.blobs["data"].shape[0]
    total = None
    for start in range(0, len(data), batch):
        net.blobs["data"].data[...] = data[start:start + batch]
        net.blobs["label"].data[...] = labels[start:start + batch]
        net.forward()
        for blobs in net.params.values():
            for blob in blobs:
                blob.diff[...] = 0
        net.backward()
        grad = np.concatenate([blobs[0].diff.ravel().astype(np.float64)
                               for blobs in net.params.values()])
        total = grad if total is None else total + grad
    return total / (len(data) // batch)


def compare(g, ref):
    cos = float(np.dot(g, ref) / (np.linalg.norm(g) * np.linalg.norm(ref)))
    rel = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))
    return cos, rel


def train(solver_path, iters, seed):
    """Weights after `iters` GG iterations with pycaffe (no tests, no snapshots)."""
    import caffe
    from gencnn import caffe_utils
    param = caffe_utils.solver_variant(
        caffe_utils.read_solver(solver_path), max_iter=iters, test_iter=[],
        test_interval=iters + 1, test_initialization=False, snapshot=0,
        snapshot_after_train=False, display=0)
    param.random_seed = seed
    param.solver_mode = param.CPU
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", dir=ROOT, delete=False) as f:
        f.write(str(param))
    try:
        solver = caffe.get_solver(f.name)
    finally:
        os.unlink(f.name)
    solver.step(iters)
    return {name: [b.data.copy() for b in blobs] for name, blobs in solver.net.params.items()}


def initial_weights(solver_path, seed):
    """The fillers' weights, seeded as `caffe train` seeds them."""
    return train(solver_path, 0, seed)


def accuracy(net, weights, data, labels):
    set_weights(net, weights)
    batch = net.blobs["data"].shape[0]
    score = [b for b in net.blobs if b.startswith("ip")][-1]
    correct = 0
    for start in range(0, len(data), batch):
        net.blobs["data"].data[...] = data[start:start + batch]
        net.blobs["label"].data[...] = labels[start:start + batch]
        net.forward()
        correct += int(np.sum(net.blobs[score].data.argmax(axis=1) == labels[start:start + batch]))
    return correct / float(len(data))


def measure(name, weights, sets, dg=False):
    """{label: (mean cos, mean rel, min cos, max rel)} for one net and weights."""
    gg, dgnet, _, _, shape, _, _ = NETS[name]
    proto = dgnet if dg else gg
    full = input_net(proto, 256, shape)
    set_weights(full, weights)
    refs = [weight_gradient(full, d, l) for d, l in sets]
    rows = {}
    for k in SPLITS:
        net = input_net(proto, k, shape)
        set_weights(net, weights)
        vals = [compare(weight_gradient(net, d, l), ref) for (d, l), ref in zip(sets, refs)]
        rows["%d x %d" % (256 // k, k)] = vals
    rows["other 256"] = [compare(refs[(i + 1) % len(refs)], refs[i]) for i in range(len(refs))]
    return {key: (np.mean([c for c, _ in v]), np.mean([r for _, r in v]),
                  min(c for c, _ in v), max(r for _, r in v)) for key, v in rows.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="lenet,cifar10_quick",
                        help="comma-separated, from %s (default %%(default)s)" % ", ".join(NETS))
    parser.add_argument("--sets", type=int, default=8,
                        help="disjoint sets of 256 test images to average over "
                             "(default %(default)s)")
    parser.add_argument("--train-iters", type=int, default=1000,
                        help="GG iterations of the 'trained' state (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1701, help="random_seed (default %(default)s)")
    parser.add_argument("--out", help="table file (default %(default)s)",
                        default=os.path.join(ROOT, "results", "studies", "gg_batch_split.txt"))
    args = parser.parse_args(argv)
    nets = args.nets.split(",")
    for n in nets:
        if n not in NETS:
            parser.error("unknown net %r (choose from %s)" % (n, ", ".join(NETS)))
    if args.sets < 2 or args.train_iters < 1:
        parser.error("--sets must be >= 2 and --train-iters >= 1")
    os.chdir(ROOT)  # the solvers name their nets and LMDBs relative to the root
    for n in nets:
        if not os.path.isdir(NETS[n][3]):
            parser.error("%s missing (see --help for how to make it)" % NETS[n][3])
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        parser.error("cannot write to %s" % out_dir)

    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    caffe.set_mode_cpu()

    lines = ["GG weight gradient: one batch of 256 vs the mean over 256/k sub-batches of k",
             "(the same 256 images; cos = cosine similarity, rel = |g_split - g_256| / |g_256|;",
             "mean over %d disjoint sets of 256 test images drawn at random, worst case in brackets;"
             % args.sets,
             "'other 256' = g_256 of the next set vs this set: the scale of batch-to-batch noise;",
             "DG control = SoftmaxWithLoss, exact up to float rounding;",
             "acc = the net's accuracy on those test images).",
             "",
             "%-14s %-24s %-10s %-18s %-18s" % ("net", "weights", "split", "cos", "rel"),
             "-" * 84]
    start = time.time()
    for n in nets:
        gg, _, solver, lmdb_path, shape, scale, mean_file = NETS[n]
        data, labels = load_images(lmdb_path, 256 * args.sets, scale, mean_file, args.seed)
        sets = [(data[i * 256:(i + 1) * 256], labels[i * 256:(i + 1) * 256])
                for i in range(args.sets)]
        probe = input_net(gg, 256, shape)
        states = [("untrained", initial_weights(solver, args.seed))]
        t0 = time.time()
        states.append(("GG %d iters" % args.train_iters, train(solver, args.train_iters, args.seed)))
        print("[%s] trained %d GG iterations in %.0f s" % (n, args.train_iters, time.time() - t0),
              flush=True)
        for label, weights in states:
            acc = accuracy(probe, weights, data, labels)
            desc = "%s (acc %.0f%%)" % (label, 100 * acc)
            for split, (cos, rel, cmin, rmax) in measure(n, weights, sets).items():
                line = "%-14s %-24s %-10s %.4f [%.4f]    %.4f [%.4f]" % (
                    n, desc, split, cos, cmin, rel, rmax)
                lines.append(line)
                print(line, flush=True)
            cos, rel, cmin, rmax = measure(n, weights, sets, dg=True)["4 x 64"]
            line = "%-14s %-24s %-10s %.4f [%.4f]    %.1e [%.1e]" % (
                n, desc, "DG 4 x 64", cos, cmin, rel, rmax)
            lines.append(line)
            print(line, flush=True)
    lines.append("")
    lines.append("%.0f s on %s, 1 thread (OPENBLAS_NUM_THREADS=%s); seed %d"
                 % (time.time() - start, os.uname().nodename,
                    os.environ.get("OPENBLAS_NUM_THREADS", "unset"), args.seed))
    tmp = args.out + ".tmp.%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, args.out)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
