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
LENET_TEST_DATA = """\
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
""" + LENET_TEST_DATA


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

# ZF-fast, the ImageNet-classification "ZF-5" the paper trained, as SPP-net
# defines it (ShaoqingRen/SPP_net, model-defs/Zeiler_conv5.prototxt): 224x224
# crops, conv1 7x7/2 pad 1 (110x110), LRN local_size 3 alpha 5e-5 beta 0.75
# WITHIN_CHANNEL, pool1 3/2 (55), conv2 5x5/2 (26), pool2 3/2 (13), conv3-5
# 3x3 pad 1, and a plain 3/2 max pool5 (6x6x256 = 9,216 inputs to fc6): the
# `pool5_spm6` level of SPP-net's pyramid alone, i.e. the no-SPP baseline of
# the SPP-net paper. Fillers as there: Gaussian std 0.01 everywhere, biases
# 0 (conv1, conv3) or 1 (conv2, conv4, conv5, fc6-fc8); lr multipliers 1/2
# and weight decay on all blobs (its blobs_lr 1/2, no weight_decay fields).
_ZF_OPTS = {"bias_decay": True}
ZF_BODY = (
    _gauss_conv("conv1", "data", 96, 7, 0.01, stride=2, pad=1, **_ZF_OPTS) +
    _relu("relu1", "conv1") +
    _lrn("norm1", "conv1", 3, 0.00005, 0.75, within_channel=True) +
    _pool("pool1", "norm1", "MAX", 3, 2) +
    _gauss_conv("conv2", "pool1", 256, 5, 0.01, 1.0, stride=2, **_ZF_OPTS) +
    _relu("relu2", "conv2") +
    _lrn("norm2", "conv2", 3, 0.00005, 0.75, within_channel=True) +
    _pool("pool2", "norm2", "MAX", 3, 2) +
    _gauss_conv("conv3", "pool2", 384, 3, 0.01, pad=1, **_ZF_OPTS) + _relu("relu3", "conv3") +
    _gauss_conv("conv4", "conv3", 384, 3, 0.01, 1.0, pad=1, **_ZF_OPTS) +
    _relu("relu4", "conv4") +
    _gauss_conv("conv5", "conv4", 256, 3, 0.01, 1.0, pad=1, **_ZF_OPTS) +
    _relu("relu5", "conv5") +
    _pool("pool5", "conv5", "MAX", 3, 2) +           # 6x6x256 at 224
    _gauss_fc("fc6", "pool5", 4096, 0.01, 1.0, **_ZF_OPTS) + _relu("relu6", "fc6") +
    _dropout("drop6", "fc6") +
    _gauss_fc("fc7", "fc6", 4096, 0.01, 1.0, **_ZF_OPTS) + _relu("relu7", "fc7") +
    _dropout("drop7", "fc7") +
    _gauss_fc("fc8", "fc7", 1000, 0.01, 1.0, **_ZF_OPTS))

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
    "data_args": dict(IMAGENET_DATA_ARGS, crop=224),
    "input_shape": (1, 3, 224, 224),
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


# ------------------------------------------ learning with synthesized images
# Section 5's future work (gencnn/generative_learning.py): each training batch
# holds `observed` images from the LMDB and `synthesized` images that the
# training tool writes into an Input blob (HMC samples of the current model,
# with their class labels). The two halves are concatenated into "data" and
# "label", so the net body is the DG/GG one unchanged; SynthesisLossLayer
# (python_layers/synthesis_loss_layer.py) takes the whole batch, and a
# SoftmaxWithLoss on the observed half only (a Slice of the scores), weighted
# by `dg_weight`, keeps the net a classifier. The TEST phase is the DG net's.
SYNTHESIS_DATA = """\
layer {
  name: "mnist"
  type: "Data"
  top: "observed_data"
  top: "observed_label"
  include { phase: TRAIN }
  transform_param { scale: 0.00390625 }
  data_param { source: "%(train_source)s" batch_size: %(train_batch)d backend: LMDB }
}
layer {
  name: "synthesized"
  type: "Input"
  top: "synthesized_data"
  top: "synthesized_label"
  include { phase: TRAIN }
  input_param { shape { dim: %(synthesized)d dim: 1 dim: 28 dim: 28 } shape { dim: %(synthesized)d } }
}
layer {
  name: "concat_data"
  type: "Concat"
  bottom: "observed_data"
  bottom: "synthesized_data"
  top: "data"
  include { phase: TRAIN }
  concat_param { axis: 0 }
}
layer {
  name: "concat_label"
  type: "Concat"
  bottom: "observed_label"
  bottom: "synthesized_label"
  top: "label"
  include { phase: TRAIN }
  concat_param { axis: 0 }
}
""" + LENET_TEST_DATA

SYNTHESIS_LOSS = """\
layer {
  name: "synthesis_loss"
  type: "Python"
  bottom: "%(scores)s"
  bottom: "label"
  top: "synthesis_loss"
  top: "energy_gap"
  include { phase: TRAIN }
  python_param {
    module: "synthesis_loss_layer"
    layer: "SynthesisLossLayer"
    param_str: '{"observed": %(train_batch)d, "alpha": %(alpha)r}'
  }
  loss_weight: 1
  loss_weight: 0
}
layer {
  name: "slice_scores"
  type: "Slice"
  bottom: "%(scores)s"
  top: "observed_scores"
  top: "synthesized_scores"
  include { phase: TRAIN }
  slice_param { axis: 0 slice_point: %(train_batch)d }
}
layer {
  name: "silence_synthesized"
  type: "Silence"
  bottom: "synthesized_scores"
  include { phase: TRAIN }
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "observed_scores"
  bottom: "observed_label"
  top: "loss"
  include { phase: TRAIN }
  loss_weight: %(dg_weight)r
}
layer {
  name: "loss"
  type: "SoftmaxWithLoss"
  bottom: "%(scores)s"
  bottom: "label"
  top: "loss"
  include { phase: TEST }
}
"""

# tools/generative_learning.py's defaults for the net (gencnn/generative_learning.py
# DEFAULTS says why dg_weight is 100)
SYNTHESIS_DEFAULTS = {"synthesized": 32, "alpha": 0.0001, "dg_weight": 100.0}


def synthesis_net(net=None, synthesized=SYNTHESIS_DEFAULTS["synthesized"],
                  alpha=SYNTHESIS_DEFAULTS["alpha"], dg_weight=SYNTHESIS_DEFAULTS["dg_weight"],
                  **data_overrides):
    """Train/test prototxt text of LeNet for learning with synthesized images:
    batches of the LMDB's batch size of observed images plus `synthesized`
    images from an Input blob; SynthesisLossLayer with energy penalty `alpha`
    on all of them, SoftmaxWithLoss with loss_weight `dg_weight` on the
    observed ones (dg_weight 0 drops it). TEST phase: DG's loss and accuracy."""
    net = net or LENET
    if net is not LENET:
        raise ValueError("synthesis_net is written for LeNet (28 x 28 x 1 inputs)")
    args = dict(net["data_args"], synthesized=int(synthesized), alpha=float(alpha),
                dg_weight=float(dg_weight), scores=net["scores"], **data_overrides)
    header = ("# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.\n"
              "# %s learning with synthesized images (paper section 5): %d observed + %d\n"
              "# synthesized images per batch, SynthesisLossLayer (alpha %r) on all of them,\n"
              "# SoftmaxWithLoss (weight %r) on the observed ones. Used by\n"
              "# tools/generative_learning.py, which writes its own copy with its options.\n"
              "name: \"%s\"\n" % (net["name"], args["train_batch"], args["synthesized"],
                                  args["alpha"], args["dg_weight"], net["name"]))
    loss = SYNTHESIS_LOSS % args
    if not dg_weight:
        loss = loss.replace(SYNTHESIS_LOSS_DG_PART % args, "")
    return header + SYNTHESIS_DATA % args + net["body"] + ACCURACY % net + loss


# The observed-half DG loss block, dropped when dg_weight is 0.
SYNTHESIS_LOSS_DG_PART = SYNTHESIS_LOSS[SYNTHESIS_LOSS.index('layer {\n  name: "slice_scores"'):
                                        SYNTHESIS_LOSS.index('layer {\n  name: "loss"\n  type: '
                                                             '"SoftmaxWithLoss"\n  bottom: '
                                                             '"%(scores)s"')]


# -------------------------------------------------------------------- solvers
# Every solver is one template (SOLVER) filled from a record: the net, base_lr,
# the lr schedule, max_iter and the snapshot interval. The lr schedule is a
# small dict in Caffe's own terms ({"lr_policy": "step", "gamma": 0.1,
# "stepsize": 4000}), so GG+DG's stage-2 variants can be derived from DG's
# schedule instead of written by hand (aligned_schedule below).
SOLVER = """\
# Generated by tools/generate_prototxt.py from gencnn/netgen.py; do not edit.
%(comment)s
net: "%(net)s"
test_iter: %(test_iter)d%(test_note)s
test_interval: %(test_interval)d
base_lr: %(base_lr)g
momentum: 0.9
weight_decay: %(weight_decay)g
%(schedule)sdisplay: %(display)d
max_iter: %(max_iter)d
snapshot: %(snapshot)d%(snapshot_note)s
snapshot_prefix: "%(prefix)s"
solver_mode: CPU%(mode_note)s
"""

# The two readings of the paper's "stage 2 starts with a base learning rate of
# 0.003" (section 4.1). `restart`: the stage-1 solver with base_lr x0.3, its
# schedule counted from the switch. `aligned`: base_lr x0.3, then the same
# decays as DG at the same global iterations, so both end at the same relative
# point of their schedules. `aligned` is the default, <net>_gg_dg.prototxt,
# chosen by the CIFAR-10 study (docs/cifar10.md); `restart` is
# <net>_gg_dg_restart.prototxt.
STAGE2_SOLVERS = {"restart": "gg_dg_restart", "aligned": "gg_dg"}   # variant -> solver suffix
STAGE2_LR_SCALE = 0.3       # 0.01 -> 0.003 (paper); 0.001 -> 0.0003 (cifar10_quick)


def _iters(epochs, epoch_iters):
    return int(round(epochs * epoch_iters + 0.4999))   # ceil for half iterations


def schedule_text(schedule):
    """Solver lines of an lr schedule dict, in Caffe's field order."""
    lines = ['lr_policy: "%s"' % schedule["lr_policy"]]
    for key in ("gamma", "power", "stepsize"):
        if key in schedule:
            lines.append("%s: %s" % (key, "%d" % schedule[key] if key == "stepsize"
                                     else "%.10g" % schedule[key]))
    lines += ["stepvalue: %d" % v for v in schedule.get("stepvalue", ())]
    return "".join(line + "\n" for line in lines)


def aligned_schedule(schedule, switch_iter, max_iter):
    """DG's schedule continued from global iteration `switch_iter`, counted
    from 0 at the switch: lr(t) / lr(0) = lr_DG(switch + t) / lr_DG(switch).

    step / multistep: DG's remaining boundaries, shifted by the switch, as a
    multistep; inv: base (1 + g (s + t))^-p = base (1 + g s)^-p (1 + g' t)^-p
    with g' = g / (1 + g s), the same power; fixed stays fixed.
    """
    policy = schedule["lr_policy"]
    if policy == "fixed":
        return dict(schedule)
    if policy == "inv":
        gamma = schedule["gamma"] / (1.0 + schedule["gamma"] * switch_iter)
        return {"lr_policy": "inv", "gamma": gamma, "power": schedule["power"]}
    if policy == "step":
        bounds = range(schedule["stepsize"], max_iter, schedule["stepsize"])
    elif policy == "multistep":
        bounds = schedule["stepvalue"]
    else:
        raise ValueError("no aligned form for lr_policy %r" % policy)
    return {"lr_policy": "multistep", "gamma": schedule["gamma"],
            "stepvalue": [b - switch_iter for b in bounds if switch_iter < b < max_iter]}


class Protocol(object):
    """One net's training protocol: what the solvers and the experiment
    runner (gencnn/experiment.py) share. Iterations are global (DG's)."""

    def __init__(self, key, title, epoch_iters, epochs, switch_epoch, base_lr, schedule,
                 paper=None, **solver_fields):
        self.key, self.title = key, title
        self.epoch_iters = epoch_iters
        self.epochs = epochs
        self.max_iter = _iters(epochs, epoch_iters)
        self.switch_epoch = switch_epoch
        self.switch_iter = _iters(switch_epoch, epoch_iters)
        self.base_lr = base_lr
        self.schedule = schedule
        self.paper = paper or {}            # {arm: test error %} where the paper has one
        self.fields = solver_fields

    def solver_name(self, arm):
        """'dg', 'gg', 'gg_dg' (aligned, the default) or 'gg_dg_restart' -> solver key."""
        return "%s_%s" % (self.key, arm)

    def stage2_schedule(self, variant):
        if variant == "restart":
            return self.schedule
        return aligned_schedule(self.schedule, self.switch_iter, self.max_iter)

    def solvers(self):
        """[(key, text)] of DG, GG and both stage-2 variants."""
        f = self.fields
        stage2_iters = self.max_iter - self.switch_iter
        common = dict(test_iter=f["test_iter"], test_note=f.get("test_note", ""),
                      test_interval=f["test_interval"], weight_decay=f["weight_decay"],
                      display=f["display"], mode_note=f.get("mode_note", ""))
        snapshot_note = "   # divides the switch iteration %d: GG+DG's start is saved" \
            % self.switch_iter
        out = []
        for loss, what in (("dg", "discriminative gradient (DG)"),
                           ("gg", "generative gradient (GG)")):
            comment = "# %s, %s: %g epochs (%d iterations)%s.%s" % (
                self.title, what, self.epochs, self.max_iter,
                ";\n# GG+DG switches at epoch %g, iteration %d" % (self.switch_epoch,
                                                                   self.switch_iter)
                if loss == "gg" else "", f.get("note", ""))
            out.append((self.solver_name(loss), SOLVER % dict(
                common, comment=comment, net=f["net"] % loss, base_lr=self.base_lr,
                schedule=schedule_text(self.schedule), max_iter=self.max_iter,
                snapshot=f["snapshot"] if loss == "gg" else f.get("dg_snapshot", f["snapshot"]),
                snapshot_note=snapshot_note if loss == "gg" else "",
                prefix="%s/%s_%s" % (f["snapshot_dir"], self.key, loss))))
        for variant, name in STAGE2_SOLVERS.items():
            if variant == "restart":
                how = ("# restart: the DG solver with base_lr x%g, its lr schedule counted "
                       "from the switch\n# (the paper's words read literally). Not the "
                       "default: %s_gg_dg.prototxt (aligned) is,\n# chosen by the CIFAR-10 "
                       "study (docs/cifar10.md)." % (STAGE2_LR_SCALE, self.key))
            else:
                how = ("# aligned: base_lr x%g, then DG's lr decays at the same global "
                       "iterations as DG\n# (its schedule continued from the switch: "
                       "see gencnn/netgen.py aligned_schedule).\n# The default GG+DG "
                       "stage 2, chosen by the CIFAR-10 study (docs/cifar10.md);\n# the "
                       "literal reading is %s_gg_dg_restart.prototxt." % (STAGE2_LR_SCALE,
                                                                        self.key))
            comment = ("# %s GG+DG, stage 2 (%s): DG from GG's weights at epoch %g "
                       "(iteration %d)\n# to epoch %g, %d iterations.\n%s" % (
                           self.title, variant, self.switch_epoch, self.switch_iter,
                           self.epochs, stage2_iters, how))
            out.append((self.solver_name(name), SOLVER % dict(
                common, **dict(comment=comment, net=f["net"] % "dg",
                base_lr=float("%.6g" % (self.base_lr * STAGE2_LR_SCALE)),
                schedule=schedule_text(self.stage2_schedule(variant)),
                max_iter=stage2_iters, snapshot=f["stage2_snapshot"], snapshot_note="",
                test_interval=f.get("stage2_test_interval", f["test_interval"]),
                prefix="%s/%s_%s" % (f["snapshot_dir"], self.key, name)))))
        return out


# Paper section 4.1 (MNIST): batch 64, base_lr 0.01, momentum 0.9, weight decay
# 0.0005, 25 epochs; GG+DG: GG for 16 epochs, then DG from base_lr 0.003.
# The lr policy is Caffe's LeNet example ("inv", gamma 1e-4, power 0.75), the
# paper's "settings identical to Jia et al. (2014)". Snapshots every 5,000
# iterations as Caffe's example; 15,000 is the switch (epoch 16 x 937.5).
MNIST_TRAIN_SIZE = 60000
MNIST_EPOCH_ITERS = MNIST_TRAIN_SIZE / 64.0          # 937.5
LENET_PROTOCOL = Protocol(
    "lenet", "LeNet", MNIST_EPOCH_ITERS, 25, 16, 0.01,
    {"lr_policy": "inv", "gamma": 0.0001, "power": 0.75},
    paper={"DG": 1.03, "GG": 0.85, "GG+DG": 0.78},
    net="prototxt/lenet_train_test_%s.prototxt", test_iter=100,
    test_note="            # 100 x 100 = the whole 10,000-image test set",
    test_interval=938, weight_decay=0.0005, display=100, snapshot=5000,
    stage2_snapshot=5000, snapshot_dir="results/mnist/snapshots")

# CIFAR-10 (our CPU-sized stand-in for the paper's ImageNet protocol,
# docs/cifar10.md): Caffe's cifar10_quick reference schedule, 10 epochs of
# batch 100: 4,000 iterations at 0.001 then 1,000 at 0.0001 (BVLC's two
# solver files written as one "step" schedule), momentum 0.9, weight decay
# 0.004. GG+DG switches at 45/70 of training as the paper's ImageNet runs do
# (epoch 6.43, iteration 3,215).
CIFAR10_TRAIN_SIZE = 50000
CIFAR10_EPOCH_ITERS = CIFAR10_TRAIN_SIZE // 100      # 500 at batch 100
CIFAR10_PROTOCOL = Protocol(
    "cifar10_quick", "CIFAR-10 quick", CIFAR10_EPOCH_ITERS, 10, 10 * 45 / 70.0, 0.001,
    {"lr_policy": "step", "gamma": 0.1, "stepsize": 4000},
    net="prototxt/cifar10_quick_train_test_%s.prototxt", test_iter=100,
    test_note="            # 100 x 100 = the whole 10,000-image test set",
    test_interval=500, weight_decay=0.004, display=100, snapshot=643, dg_snapshot=500,
    stage2_test_interval=357,     # 1,785 = 5 x 357: the last test falls on max_iter
    stage2_snapshot=500, snapshot_dir="results/cifar10/snapshots")
CIFAR10_MAX_ITER = CIFAR10_PROTOCOL.max_iter          # 5,000
CIFAR10_SWITCH_ITER = CIFAR10_PROTOCOL.switch_iter    # 3,215

# ImageNet (paper section 4.1): batch 256, base_lr 0.01, momentum 0.9, weight
# decay 0.0005, 70 epochs of ILSVRC-2012's 1,281,167 training images; GG+DG:
# GG for 45 epochs, then DG from base_lr 0.003. Iteration counts round up.
# BVLC's AlexNet solver steps lr x0.1 every 100,000 of its 450,000 iterations
# (~90 epochs). The paper trains 70 epochs, so the step is scaled by the same
# factor, 100,000 x 350,320 / 450,000 = 77,849 iterations (15.6 epochs): the
# same four decays at the same fractions of training, ending at 1e-6.
IMAGENET_TRAIN_SIZE = 1281167
IMAGENET_EPOCH_ITERS = IMAGENET_TRAIN_SIZE / 256.0  # 5004.56
IMAGENET_MAX_ITER = _iters(70, IMAGENET_EPOCH_ITERS)         # 350,320
IMAGENET_SWITCH_ITER = _iters(45, IMAGENET_EPOCH_ITERS)      # 225,206
IMAGENET_STEPSIZE = int(round(100000 * IMAGENET_MAX_ITER / 450000.0))


def _imagenet_protocol(key, title):
    return Protocol(
        key, title, IMAGENET_EPOCH_ITERS, 70, 45, 0.01,
        {"lr_policy": "step", "gamma": 0.1, "stepsize": IMAGENET_STEPSIZE},
        net="prototxt/%s_train_test_%%s.prototxt" % key, test_iter=1000,
        test_note="           # 1000 x 50 = the 50,000 val images",
        test_interval=5005, weight_decay=0.0005, display=20,
        snapshot=IMAGENET_SWITCH_ITER // 2, dg_snapshot=10000, stage2_snapshot=10000,
        snapshot_dir="results/imagenet/snapshots",
        note="\n# lr x0.1 every %d iterations: BVLC's step of 100,000 in 450,000 iterations\n"
             "# scaled to 70 epochs (100,000 x 350,320 / 450,000); four decays, ending at 1e-6."
             % IMAGENET_STEPSIZE,
        mode_note="          # run on a GPU with `caffe train -gpu 0` (docs/imagenet.md)")


PROTOCOLS = collections.OrderedDict([
    ("lenet", LENET_PROTOCOL), ("cifar10_quick", CIFAR10_PROTOCOL),
    ("alexnet", _imagenet_protocol("alexnet", "AlexNet")),
    ("zf", _imagenet_protocol("zf", "ZF-fast"))])

SOLVERS = collections.OrderedDict(
    item for protocol in PROTOCOLS.values() for item in protocol.solvers())


def all_files():
    """{relative path: text} of every generated prototxt and solver."""
    files = collections.OrderedDict()
    for key, net in NETS.items():
        for loss in LOSSES:
            files["prototxt/%s_train_test_%s.prototxt" % (key, loss)] = train_test_net(net, loss)
        files["prototxt/%s_deploy.prototxt" % key] = deploy_net(net)
    for key, text in SOLVERS.items():
        files["solvers/%s.prototxt" % key] = text
    files["prototxt/lenet_train_test_synthesis.prototxt"] = synthesis_net(**SYNTHESIS_DEFAULTS)
    return files
