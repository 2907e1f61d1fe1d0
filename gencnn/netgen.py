"""One source for every net and solver in prototxt/ and solvers/.

Each net is written once as a body of layers; its DG and GG train/test
variants differ only in the loss block, and its deploy variant swaps the data
layers for an Input layer and drops loss and accuracy. tools/generate_prototxt.py
writes the files, and tests/test_prototxt.py checks the committed files match,
so variants cannot drift apart. Everything emitted is plain BVLC Caffe 1.0
prototxt (no fork-only fields).
"""
import collections

# --------------------------------------------------------------------- losses
DG_LOSS = """\
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "%(scores)s"
  bottom: "label"
  top: "loss"
}
"""

# The generative loss (eq. 10) with the effective sample size of its
# importance weights as a second, zero-weight output (section 3.2).
GG_LOSS = """\
layer {
  name: "loss"
  type: "Python"
  bottom: "%(scores)s"
  bottom: "label"
  top: "loss"
  top: "ess"
  python_param {
    module: "generative_loss_layer"
    layer: "GenerativeLossLayer"
  }
  loss_weight: 1
  loss_weight: 0
}
"""

ACCURACY = """\
layer {
  name: "accuracy"
  type: "Accuracy"
  bottom: "%(scores)s"
  bottom: "label"
  top: "accuracy"
  include { phase: TEST }
}
"""

LOSSES = collections.OrderedDict([("dg", DG_LOSS), ("gg", GG_LOSS)])


def _param(lr_mult, decay_mult=None):
    if decay_mult is None:
        return "  param { lr_mult: %g }\n" % lr_mult
    return "  param { lr_mult: %g decay_mult: %g }\n" % (lr_mult, decay_mult)


# ---------------------------------------------------------------------- LeNet
# Caffe's examples/mnist/lenet_train_test.prototxt.
LENET_DATA = """\
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(train_source)s" batch_size: %(train_batch)d backend: LMDB }
}
layer {
  name: "mnist"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TEST }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(test_source)s" batch_size: %(test_batch)d backend: LMDB }
}
"""


def _conv(name, bottom, num_output, kernel):
    return ("layer {\n  name: \"%s\"\n  type: \"Convolution\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            % (name, bottom, name) + _param(1) + _param(2) +
            "  convolution_param {\n    num_output: %d\n    kernel_size: %d\n    stride: 1\n"
            "    weight_filler { type: \"xavier\" }\n    bias_filler { type: \"constant\" }\n"
            "  }\n}\n" % (num_output, kernel))


def _ip(name, bottom, num_output):
    return ("layer {\n  name: \"%s\"\n  type: \"InnerProduct\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            % (name, bottom, name) + _param(1) + _param(2) +
            "  inner_product_param {\n    num_output: %d\n"
            "    weight_filler { type: \"xavier\" }\n    bias_filler { type: \"constant\" }\n"
            "  }\n}\n" % num_output)


def _maxpool(name, bottom, kernel, stride):
    return ("layer {\n  name: \"%s\"\n  type: \"Pooling\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            "  pooling_param { pool: MAX kernel_size: %d stride: %d }\n}\n"
            % (name, bottom, name, kernel, stride))


def _relu(name, blob):
    return ("layer {\n  name: \"%s\"\n  type: \"ReLU\"\n  bottom: \"%s\"\n  top: \"%s\"\n}\n"
            % (name, blob, blob))


LENET_BODY = (_conv("conv1", "data", 20, 5) + _maxpool("pool1", "conv1", 2, 2) +
              _conv("conv2", "pool1", 50, 5) + _maxpool("pool2", "conv2", 2, 2) +
              _ip("ip1", "pool2", 500) + _relu("relu1", "ip1") + _ip("ip2", "ip1", 10))

LENET = {
    "name": "LeNet",
    "data": LENET_DATA,
    "data_args": {"train_source": "data/mnist/mnist_train_lmdb", "train_batch": 64,
                  "test_source": "data/mnist/mnist_test_lmdb", "test_batch": 100},
    "input_shape": (1, 1, 28, 28),
    "body": LENET_BODY,
    "scores": "ip2",
}

# ------------------------------------------------- BVLC-style layer builders
# The ImageNet and CIFAR-10 nets are written as in BVLC's models/ and
# examples/: Gaussian weight fillers with explicit std, constant bias fillers
# with explicit value, and (ImageNet) no weight decay on biases.
def _bvlc_params(bias_decay):
    if bias_decay:       # cifar10_quick: lr_mult only
        return _param(1) + _param(2)
    return _param(1, 1) + _param(2, 0)


def _gauss_conv(name, bottom, num_output, kernel, std, bias=0.0, stride=1, pad=0, group=1,
                bias_decay=False):
    opts = "".join("    %s: %d\n" % (key, value) for key, value, default in
                   (("pad", pad, 0), ("stride", stride, 1), ("group", group, 1))
                   if value != default)
    return ("layer {\n  name: \"%s\"\n  type: \"Convolution\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            % (name, bottom, name) + _bvlc_params(bias_decay) +
            "  convolution_param {\n    num_output: %d\n    kernel_size: %d\n%s"
            "    weight_filler { type: \"gaussian\" std: %g }\n"
            "    bias_filler { type: \"constant\" value: %g }\n"
            "  }\n}\n" % (num_output, kernel, opts, std, bias))


def _gauss_fc(name, bottom, num_output, std, bias=0.0, bias_decay=False):
    return ("layer {\n  name: \"%s\"\n  type: \"InnerProduct\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            % (name, bottom, name) + _bvlc_params(bias_decay) +
            "  inner_product_param {\n    num_output: %d\n"
            "    weight_filler { type: \"gaussian\" std: %g }\n"
            "    bias_filler { type: \"constant\" value: %g }\n"
            "  }\n}\n" % (num_output, std, bias))


def _pool(name, bottom, method, kernel, stride, pad=0):
    pad_text = " pad: %d" % pad if pad else ""
    return ("layer {\n  name: \"%s\"\n  type: \"Pooling\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            "  pooling_param { pool: %s kernel_size: %d stride: %d%s }\n}\n"
            % (name, bottom, name, method, kernel, stride, pad_text))


def _lrn(name, bottom, local_size, alpha, beta, within_channel=False):
    region = " norm_region: WITHIN_CHANNEL" if within_channel else ""
    return ("layer {\n  name: \"%s\"\n  type: \"LRN\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            "  lrn_param { local_size: %d alpha: %g beta: %g%s }\n}\n"
            % (name, bottom, name, local_size, alpha, beta, region))


def _dropout(name, blob, ratio=0.5):
    return ("layer {\n  name: \"%s\"\n  type: \"Dropout\"\n  bottom: \"%s\"\n  top: \"%s\"\n"
            "  dropout_param { dropout_ratio: %g }\n}\n" % (name, blob, blob, ratio))


def _fc_head(bottom):
    """fc6, fc7 (4096, ReLU, dropout 0.5) and fc8 (1000 scores), as BVLC AlexNet."""
    return (_gauss_fc("fc6", bottom, 4096, 0.005, 0.1) + _relu("relu6", "fc6") +
            _dropout("drop6", "fc6") +
            _gauss_fc("fc7", "fc6", 4096, 0.005, 0.1) + _relu("relu7", "fc7") +
            _dropout("drop7", "fc7") +
            _gauss_fc("fc8", "fc7", 1000, 0.01, 0.0))


# ------------------------------------------------------------------- CIFAR-10
# The layout of Caffe's examples/cifar10/cifar10_quick_train_test.prototxt:
# three 5x5 conv layers (32, 32, 64) with max then average pooling, a
# 64-unit and a 10-unit inner product. Data from tools/cifar10_data.py
# (32x32 BGR, mean image subtracted, no crop or mirror as in the example).
CIFAR10_DATA = """\
layer {
  name: "cifar"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  transform_param { mean_file: "%(mean_file)s" }
  data_param { source: "%(train_source)s" batch_size: %(train_batch)d backend: LMDB }
}
layer {
  name: "cifar"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TEST }
  transform_param { mean_file: "%(mean_file)s" }
  data_param { source: "%(test_source)s" batch_size: %(test_batch)d backend: LMDB }
}
"""

CIFAR10_QUICK_BODY = (
    _gauss_conv("conv1", "data", 32, 5, 0.0001, pad=2, bias_decay=True) +
    _pool("pool1", "conv1", "MAX", 3, 2) + _relu("relu1", "pool1") +
    _gauss_conv("conv2", "pool1", 32, 5, 0.01, pad=2, bias_decay=True) +
    _relu("relu2", "conv2") + _pool("pool2", "conv2", "AVE", 3, 2) +
    _gauss_conv("conv3", "pool2", 64, 5, 0.01, pad=2, bias_decay=True) +
    _relu("relu3", "conv3") + _pool("pool3", "conv3", "AVE", 3, 2) +
    _gauss_fc("ip1", "pool3", 64, 0.1, bias_decay=True) +
    _gauss_fc("ip2", "ip1", 10, 0.1, bias_decay=True))

CIFAR10_QUICK = {
    "name": "CIFAR10_quick",
    "data": CIFAR10_DATA,
    "data_args": {"train_source": "data/cifar10/cifar10_train_lmdb", "train_batch": 100,
                  "test_source": "data/cifar10/cifar10_test_lmdb", "test_batch": 100,
                  "mean_file": "data/cifar10/mean.binaryproto"},
    "input_shape": (1, 3, 32, 32),
    "body": CIFAR10_QUICK_BODY,
    "scores": "ip2",
}

# ------------------------------------------------------------------- ImageNet
# LMDBs and mean written by tools/imagenet_data.py (256x256 BGR). Training
# takes random 227x227 crops and mirrors; testing the centre crop, as BVLC.
IMAGENET_DATA = """\
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TRAIN }
  transform_param {
    mirror: true
    crop_size: %(crop)d
    mean_file: "%(mean_file)s"
  }
  data_param { source: "%(train_source)s" batch_size: %(train_batch)d backend: LMDB }
}
layer {
  name: "data"
  type: "Data"
  top: "data"
  top: "label"
  include { phase: TEST }
  transform_param {
    mirror: false
    crop_size: %(crop)d
    mean_file: "%(mean_file)s"
  }
  data_param { source: "%(test_source)s" batch_size: %(test_batch)d backend: LMDB }
}
"""

IMAGENET_DATA_ARGS = {"train_source": "data/ilsvrc12/ilsvrc12_train_lmdb", "train_batch": 256,
                      "test_source": "data/ilsvrc12/ilsvrc12_val_lmdb", "test_batch": 50,
                      "mean_file": "data/ilsvrc12/imagenet_mean.binaryproto", "crop": 227}

# Top-1 (the paper's Table 2 measure) and top-5 on the TEST phase.
IMAGENET_ACCURACY = ACCURACY + """\
layer {
  name: "accuracy_top5"
  type: "Accuracy"
  bottom: "%(scores)s"
  bottom: "label"
  top: "accuracy_top5"
  include { phase: TEST }
  accuracy_param { top_k: 5 }
}
"""

# BVLC models/bvlc_alexnet/train_val.prototxt (Krizhevsky et al. 2012, with
# the two-GPU split kept as group: 2 on conv2, conv4 and conv5).
ALEXNET_BODY = (
    _gauss_conv("conv1", "data", 96, 11, 0.01, stride=4) + _relu("relu1", "conv1") +
    _lrn("norm1", "conv1", 5, 0.0001, 0.75) + _pool("pool1", "norm1", "MAX", 3, 2) +
    _gauss_conv("conv2", "pool1", 256, 5, 0.01, 0.1, pad=2, group=2) + _relu("relu2", "conv2") +
    _lrn("norm2", "conv2", 5, 0.0001, 0.75) + _pool("pool2", "norm2", "MAX", 3, 2) +
    _gauss_conv("conv3", "pool2", 384, 3, 0.01, pad=1) + _relu("relu3", "conv3") +
    _gauss_conv("conv4", "conv3", 384, 3, 0.01, 0.1, pad=1, group=2) + _relu("relu4", "conv4") +
    _gauss_conv("conv5", "conv4", 256, 3, 0.01, 0.1, pad=1, group=2) + _relu("relu5", "conv5") +
    _pool("pool5", "conv5", "MAX", 3, 2) +          # 6x6x256 at 227
    _fc_head("pool5"))

# ZF-fast (Zeiler & Fergus 2013's smaller model) as SPP-net and py-faster-rcnn
# define it: pads, strides and LRN settings (local_size 3, alpha 5e-5,
# beta 0.75, WITHIN_CHANNEL) follow py-faster-rcnn's models/pascal_voc/ZF
# conv1-conv5. Its RoI pooling is replaced by a plain 3/2 max pool5 (7x7x256
# at 227), followed by the AlexNet classifier head. Fillers follow BVLC AlexNet
# (Gaussian 0.01, fc6/fc7 0.005, bias 0.1 where AlexNet has it).
ZF_BODY = (
    _gauss_conv("conv1", "data", 96, 7, 0.01, stride=2, pad=3) + _relu("relu1", "conv1") +
    _lrn("norm1", "conv1", 3, 0.00005, 0.75, within_channel=True) +
    _pool("pool1", "norm1", "MAX", 3, 2, pad=1) +
    _gauss_conv("conv2", "pool1", 256, 5, 0.01, 0.1, stride=2, pad=2) + _relu("relu2", "conv2") +
    _lrn("norm2", "conv2", 3, 0.00005, 0.75, within_channel=True) +
    _pool("pool2", "norm2", "MAX", 3, 2, pad=1) +
    _gauss_conv("conv3", "pool2", 384, 3, 0.01, pad=1) + _relu("relu3", "conv3") +
    _gauss_conv("conv4", "conv3", 384, 3, 0.01, 0.1, pad=1) + _relu("relu4", "conv4") +
    _gauss_conv("conv5", "conv4", 256, 3, 0.01, 0.1, pad=1) + _relu("relu5", "conv5") +
    _pool("pool5", "conv5", "MAX", 3, 2) +
    _fc_head("pool5"))

ALEXNET = {
    "name": "AlexNet",
    "data": IMAGENET_DATA,
    "data_args": IMAGENET_DATA_ARGS,
    "input_shape": (1, 3, 227, 227),
    "body": ALEXNET_BODY,
    "scores": "fc8",
    "accuracy": IMAGENET_ACCURACY,
}

ZF = {
    "name": "ZF",
    "data": IMAGENET_DATA,
    "data_args": IMAGENET_DATA_ARGS,
    "input_shape": (1, 3, 227, 227),
    "body": ZF_BODY,
    "scores": "fc8",
    "accuracy": IMAGENET_ACCURACY,
}

NETS = collections.OrderedDict([("lenet", LENET), ("cifar10_quick", CIFAR10_QUICK),
                                ("alexnet", ALEXNET), ("zf", ZF)])


def _input_layer(shape):
    return ("layer {\n  name: \"data\"\n  type: \"Input\"\n  top: \"data\"\n"
            "  input_param { shape { %s } }\n}\n" % " ".join("dim: %d" % d for d in shape))


def train_test_net(net, loss, **data_overrides):
    """Train/test prototxt text of `net` (a NETS entry) with loss 'dg' or 'gg'."""
    args = dict(net["data_args"], **data_overrides)
    header = "# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.\n"
    header += "# %s, %s loss.\nname: \"%s\"\n" % (
        net["name"], {"dg": "discriminative (SoftmaxWithLoss)",
                      "gg": "generative (GenerativeLossLayer, eq. 10)"}[loss], net["name"])
    return (header + net["data"] % args + net["body"] +
            net.get("accuracy", ACCURACY) % net + LOSSES[loss] % net)


def deploy_net(net):
    """Deploy prototxt: Input -> scores, force_backward for HMC visualization."""
    header = ("# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.\n"
              "# %s deploy net: ends at the class scores %s (no softmax), with\n"
              "# force_backward so tools/hmc_visualize.py gets df/dx.\n"
              "name: \"%s\"\nforce_backward: true\n" % (net["name"], net["scores"], net["name"]))
    return header + _input_layer(net["input_shape"]) + net["body"]


# -------------------------------------------------------------------- solvers
# Paper section 4.1 (MNIST): batch 64, base_lr 0.01, momentum 0.9, weight decay
# 0.0005, 25 epochs; GG+DG: GG for 16 epochs, then DG from base_lr 0.003.
# The lr policy is Caffe's LeNet example ("inv", gamma 1e-4, power 0.75), the
# paper's "settings identical to Jia et al. (2014)".
MNIST_TRAIN_SIZE = 60000
MNIST_EPOCH_ITERS = MNIST_TRAIN_SIZE / 64.0          # 937.5
LENET_SOLVER = """\
# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.
# %(comment)s
net: "%(net)s"
test_iter: 100            # 100 x 100 = the whole 10,000-image test set
test_interval: %(test_interval)d      # ~1 epoch (937.5 iterations at batch 64)
base_lr: %(base_lr)g
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: 100
max_iter: %(max_iter)d
snapshot: %(snapshot)d
snapshot_prefix: "%(prefix)s"
solver_mode: CPU
"""


def _iters(epochs, epoch_iters):
    return int(round(epochs * epoch_iters + 0.4999))   # ceil for half iterations


SOLVERS = collections.OrderedDict([
    ("lenet_dg", LENET_SOLVER % {
        "comment": "LeNet, discriminative gradient (DG): 25 epochs.",
        "net": "prototxt/lenet_train_test_dg.prototxt", "test_interval": 938,
        "base_lr": 0.01, "max_iter": _iters(25, MNIST_EPOCH_ITERS), "snapshot": 938,
        "prefix": "results/mnist/snapshots/lenet_dg"}),
    ("lenet_gg", LENET_SOLVER % {
        "comment": "LeNet, generative gradient (GG): 25 epochs (GG+DG switches at epoch 16).",
        "net": "prototxt/lenet_train_test_gg.prototxt", "test_interval": 938,
        "base_lr": 0.01, "max_iter": _iters(25, MNIST_EPOCH_ITERS), "snapshot": 938,
        "prefix": "results/mnist/snapshots/lenet_gg"}),
    ("lenet_gg_dg", LENET_SOLVER % {
        "comment": "LeNet GG+DG, stage 2: DG from the epoch-16 GG weights, base_lr 0.003, "
                   "epochs 16 -> 25.",
        "net": "prototxt/lenet_train_test_dg.prototxt", "test_interval": 938,
        "base_lr": 0.003,
        "max_iter": _iters(25, MNIST_EPOCH_ITERS) - _iters(16, MNIST_EPOCH_ITERS),
        "snapshot": 938, "prefix": "results/mnist/snapshots/lenet_gg_dg"}),
])


# CIFAR-10 (our CPU-sized study of the paper's protocol, docs/cifar10.md).
# Caffe's cifar10_quick solver: batch 100, base_lr 0.001, momentum 0.9,
# weight decay 0.004, lr x0.1 for the last fifth of training (its 4,000 +
# 1,000 iterations, written here as a "step" policy with stepsize 4/5 of
# max_iter). The epoch budget is cut from cifar10_quick's 10 to 7 so that two
# seeds of DG, GG and GG+DG fit about an hour of one CPU core (~0.2 s per
# iteration measured here); GG+DG switches at 45/70 of it, epoch 4.5, as the
# paper's ImageNet runs switch at epoch 45 of 70. Tests and snapshots every
# half epoch, so the switch (iteration 2,250) and the stage-2 end
# (1,250 iterations) both fall on one.
CIFAR10_TRAIN_SIZE = 50000
CIFAR10_EPOCH_ITERS = CIFAR10_TRAIN_SIZE // 100      # 500 at batch 100
CIFAR10_EPOCHS = 7
CIFAR10_MAX_ITER = CIFAR10_EPOCHS * CIFAR10_EPOCH_ITERS                 # 3,500
CIFAR10_SWITCH_ITER = CIFAR10_MAX_ITER * 45 // 70                       # 2,250
CIFAR10_SOLVER = """\
# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.
# %(comment)s
net: "%(net)s"
test_iter: 100            # 100 x 100 = the whole 10,000-image test set
test_interval: %(half_epoch)d       # half an epoch (250 x 100 = 25,000 images)
base_lr: %(base_lr)g
momentum: 0.9
weight_decay: 0.004
lr_policy: "step"         # cifar10_quick: lr x0.1 for the last fifth
gamma: 0.1
stepsize: %(stepsize)d
display: 50
max_iter: %(max_iter)d
snapshot: %(half_epoch)d            # resumable; GG's iteration-2,250 weights start GG+DG
snapshot_prefix: "%(prefix)s"
solver_mode: CPU
"""


def _cifar10_solver(comment, loss, base_lr, max_iter, prefix):
    return CIFAR10_SOLVER % {
        "comment": comment, "net": "prototxt/cifar10_quick_train_test_%s.prototxt" % loss,
        "half_epoch": CIFAR10_EPOCH_ITERS // 2, "base_lr": base_lr,
        "stepsize": CIFAR10_MAX_ITER * 4 // 5, "max_iter": max_iter,
        "prefix": "results/cifar10/snapshots/" + prefix}


# ImageNet (paper section 4.1): batch 256, base_lr 0.01, momentum 0.9, weight
# decay 0.0005, 70 epochs of ILSVRC-2012's 1,281,167 training images; GG+DG:
# GG for 45 epochs, then DG from base_lr 0.003. Iteration counts round up.
IMAGENET_TRAIN_SIZE = 1281167
IMAGENET_EPOCH_ITERS = IMAGENET_TRAIN_SIZE / 256.0  # 5004.56
IMAGENET_MAX_ITER = _iters(70, IMAGENET_EPOCH_ITERS)         # 350,320
IMAGENET_SWITCH_ITER = _iters(45, IMAGENET_EPOCH_ITERS)      # 225,206
# BVLC's AlexNet solver steps lr x0.1 every 100,000 of its 450,000 iterations
# (~90 epochs). The paper trains 70 epochs, so the step is scaled by the same
# factor, 100,000 x 350,320 / 450,000 = 77,849 iterations (15.6 epochs): the
# same four decays at the same fractions of training, ending at 1e-6.
IMAGENET_STEPSIZE = int(round(100000 * IMAGENET_MAX_ITER / 450000.0))
IMAGENET_SOLVER = """\
# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.
# %(comment)s
net: "%(net)s"
test_iter: 1000           # 1000 x 50 = the 50,000 val images
test_interval: 5005       # ~1 epoch (5,004.6 iterations at batch 256)
base_lr: %(base_lr)g
lr_policy: "step"
gamma: 0.1
# BVLC's step of 100,000 in 450,000 iterations scaled to 70 epochs:
# 100,000 x 350,320 / 450,000. %(step_note)s
stepsize: %(stepsize)d
display: 20
max_iter: %(max_iter)d
momentum: 0.9
weight_decay: 0.0005
snapshot: %(snapshot)d%(snapshot_note)s
snapshot_prefix: "%(prefix)s"
solver_mode: CPU          # run on a GPU with `caffe train -gpu 0` (docs/imagenet.md)
"""


def _imagenet_solvers(key, name):
    common = {"stepsize": IMAGENET_STEPSIZE}
    return [
        ("%s_dg" % key, IMAGENET_SOLVER % dict(
            common, comment="%s, discriminative gradient (DG): 70 epochs." % name,
            net="prototxt/%s_train_test_dg.prototxt" % key, base_lr=0.01,
            step_note="Four decays, ending at 1e-6.",
            max_iter=IMAGENET_MAX_ITER, snapshot=10000, snapshot_note="",
            prefix="results/imagenet/snapshots/%s_dg" % key)),
        ("%s_gg" % key, IMAGENET_SOLVER % dict(
            common, comment="%s, generative gradient (GG): 70 epochs "
                            "(GG+DG switches at epoch 45)." % name,
            net="prototxt/%s_train_test_gg.prototxt" % key, base_lr=0.01,
            step_note="Four decays, ending at 1e-6.",
            max_iter=IMAGENET_MAX_ITER, snapshot=IMAGENET_SWITCH_ITER // 2,
            snapshot_note="        # half of 225,206 (epoch 45): GG+DG's start is saved",
            prefix="results/imagenet/snapshots/%s_gg" % key)),
        ("%s_gg_dg" % key, IMAGENET_SOLVER % dict(
            common, comment="%s GG+DG, stage 2: DG from the epoch-45 GG weights "
                            "(iteration 225,206),\n# base_lr 0.003, epochs 45 -> 70." % name,
            net="prototxt/%s_train_test_dg.prototxt" % key, base_lr=0.003,
            step_note="This is the stage-1 solver with the\n# paper's new base_lr, "
                      "so its step counter restarts at the switch: one decay,\n"
                      "# 15.6 epochs in.",
            max_iter=IMAGENET_MAX_ITER - IMAGENET_SWITCH_ITER, snapshot=10000,
            snapshot_note="", prefix="results/imagenet/snapshots/%s_gg_dg" % key)),
    ]


SOLVERS.update([
    ("cifar10_quick_dg", _cifar10_solver(
        "CIFAR-10 quick, discriminative gradient (DG): %d epochs." % CIFAR10_EPOCHS,
        "dg", 0.001, CIFAR10_MAX_ITER, "cifar10_quick_dg")),
    ("cifar10_quick_gg", _cifar10_solver(
        "CIFAR-10 quick, generative gradient (GG): %d epochs (GG+DG switches at epoch %g)."
        % (CIFAR10_EPOCHS, CIFAR10_SWITCH_ITER / float(CIFAR10_EPOCH_ITERS)),
        "gg", 0.001, CIFAR10_MAX_ITER, "cifar10_quick_gg")),
    ("cifar10_quick_gg_dg", _cifar10_solver(
        "CIFAR-10 quick GG+DG, stage 2: DG from GG's iteration-%d weights (epoch %g),\n"
        "# base_lr x0.3, to epoch %d. The stage-1 solver with the new base_lr: its step\n"
        "# counter restarts at the switch, as in the ImageNet GG+DG solvers."
        % (CIFAR10_SWITCH_ITER, CIFAR10_SWITCH_ITER / float(CIFAR10_EPOCH_ITERS),
           CIFAR10_EPOCHS),
        "dg", 0.0003, CIFAR10_MAX_ITER - CIFAR10_SWITCH_ITER, "cifar10_quick_gg_dg")),
])
SOLVERS.update(_imagenet_solvers("alexnet", "AlexNet"))
SOLVERS.update(_imagenet_solvers("zf", "ZF-fast"))


def all_files():
    """{relative path: text} of every generated prototxt and solver."""
    files = collections.OrderedDict()
    for key, net in NETS.items():
        for loss in LOSSES:
            files["prototxt/%s_train_test_%s.prototxt" % (key, loss)] = train_test_net(net, loss)
        files["prototxt/%s_deploy.prototxt" % key] = deploy_net(net)
    for key, text in SOLVERS.items():
        files["solvers/%s.prototxt" % key] = text
    return files
