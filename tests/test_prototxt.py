"""prototxt/ and solvers/ are generated from gencnn/netgen.py and stay valid."""
import os

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from gencnn import netgen
from gencnn.config import REPO_ROOT


@pytest.mark.parametrize("rel", list(netgen.all_files()))
def test_committed_file_matches_generator(rel):
    path = os.path.join(REPO_ROOT, rel)
    assert os.path.exists(path), "%s missing: run tools/generate_prototxt.py" % rel
    assert open(path).read() == netgen.all_files()[rel], \
        "%s drifted from gencnn/netgen.py: run tools/generate_prototxt.py" % rel


def parse_net(rel):
    net = caffe_pb2.NetParameter()
    text_format.Merge(open(os.path.join(REPO_ROOT, rel)).read(), net)
    return net


@pytest.mark.parametrize("key", list(netgen.NETS))
def test_dg_and_gg_differ_only_in_the_loss(key):
    dg = parse_net("prototxt/%s_train_test_dg.prototxt" % key)
    gg = parse_net("prototxt/%s_train_test_gg.prototxt" % key)
    assert [l for l in dg.layer if l.name != "loss"] == [l for l in gg.layer if l.name != "loss"]
    (dg_loss,) = [l for l in dg.layer if l.name == "loss"]
    (gg_loss,) = [l for l in gg.layer if l.name == "loss"]
    assert dg_loss.type == "SoftmaxWithLoss"
    assert gg_loss.type == "Python"
    assert gg_loss.python_param.layer == "GenerativeLossLayer"
    assert list(dg_loss.bottom) == list(gg_loss.bottom)


@pytest.mark.parametrize("key", list(netgen.NETS))
def test_deploy_net_builds_and_matches_train_layers(key):
    path = os.path.join(REPO_ROOT, "prototxt/%s_deploy.prototxt" % key)
    net = caffe.Net(path, caffe.TEST)
    scores = netgen.NETS[key]["scores"]
    assert list(net.blobs)[-1] == scores
    train = parse_net("prototxt/%s_train_test_dg.prototxt" % key)
    deploy = parse_net("prototxt/%s_deploy.prototxt" % key)
    assert deploy.force_backward
    learned = lambda n: [l for l in n.layer if l.type not in  # noqa: E731
                         ("Data", "Input", "Accuracy", "SoftmaxWithLoss")]
    assert learned(train) == learned(deploy)
    net.blobs["data"].data[...] = np.random.RandomState(0).rand(*net.blobs["data"].data.shape)
    out = net.forward()[scores]
    assert np.all(np.isfinite(out))


def test_lenet_solvers_follow_the_paper():
    def solver(name):
        s = caffe_pb2.SolverParameter()
        text_format.Merge(open(os.path.join(REPO_ROOT, "solvers/%s.prototxt" % name)).read(), s)
        return s
    for name in ("lenet_dg", "lenet_gg"):
        s = solver(name)
        assert (s.base_lr, s.momentum, s.weight_decay) == pytest.approx((0.01, 0.9, 0.0005), rel=1e-6)
        assert s.max_iter == 23438          # 25 epochs of 937.5 iterations
        assert s.test_iter[0] * 100 == 10000
    s = solver("lenet_gg_dg")
    assert s.base_lr == pytest.approx(0.003) and s.max_iter == 23438 - 15000
    assert s.net.endswith("_dg.prototxt")


def solver_param(name):
    s = caffe_pb2.SolverParameter()
    text_format.Merge(open(os.path.join(REPO_ROOT, "solvers/%s.prototxt" % name)).read(), s)
    return s


@pytest.mark.parametrize("key", ["alexnet", "zf"])
def test_imagenet_solvers_follow_the_paper(key):
    # 70 epochs of 1,281,167 images at batch 256; GG+DG switches at epoch 45
    epoch = 1281167 / 256.0
    assert 350320 == int(np.ceil(70 * epoch)) and 225206 == int(np.ceil(45 * epoch))
    for variant in ("dg", "gg"):
        s = solver_param("%s_%s" % (key, variant))
        assert s.net == "prototxt/%s_train_test_%s.prototxt" % (key, variant)
        assert (s.base_lr, s.momentum, s.weight_decay, s.gamma) == pytest.approx(
            (0.01, 0.9, 0.0005, 0.1), rel=1e-6)
        assert s.lr_policy == "step" and s.max_iter == 350320
        assert s.stepsize == 77849            # BVLC's 100,000 of 450,000, scaled
        assert s.test_iter[0] * 50 == 50000
    assert 225206 % solver_param("%s_gg" % key).snapshot == 0   # the switch is saved
    s = solver_param("%s_gg_dg" % key)
    assert s.net == "prototxt/%s_train_test_dg.prototxt" % key
    assert s.base_lr == pytest.approx(0.003) and s.max_iter == 125114 == 350320 - 225206
    assert s.lr_policy == "step" and s.stepsize == 77849
    for variant in ("dg", "gg", "gg_dg"):
        assert not solver_param("%s_%s" % (key, variant)).HasField("random_seed")


@pytest.mark.parametrize("key", ["alexnet", "zf"])
def test_imagenet_data_layers(key):
    net = parse_net("prototxt/%s_train_test_dg.prototxt" % key)
    train, test = [l for l in net.layer if l.type == "Data"]
    assert train.include[0].phase == caffe_pb2.TRAIN and test.include[0].phase == caffe_pb2.TEST
    assert train.data_param.batch_size == 256
    assert train.data_param.source == "data/ilsvrc12/ilsvrc12_train_lmdb"
    assert test.data_param.source == "data/ilsvrc12/ilsvrc12_val_lmdb"
    for layer, mirror in ((train, True), (test, False)):
        assert layer.transform_param.crop_size == 227
        assert layer.transform_param.mirror == mirror
        assert layer.transform_param.mean_file == "data/ilsvrc12/imagenet_mean.binaryproto"
        assert layer.data_param.backend == caffe_pb2.DataParameter.LMDB


def test_alexnet_matches_bvlc():
    """Layer shapes and parameter count of BVLC's bvlc_alexnet (60,965,224)."""
    net = caffe.Net(os.path.join(REPO_ROOT, "prototxt/alexnet_deploy.prototxt"), caffe.TEST)
    shapes = {name: blob.data.shape[1:] for name, blob in net.blobs.items()}
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool2"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6) and shapes["fc8"] == (1000,)
    assert sum(p.data.size for ps in net.params.values() for p in ps) == 60965224
    layers = {l.name: l for l in parse_net("prototxt/alexnet_deploy.prototxt").layer}
    for name, group, bias in (("conv1", 1, 0), ("conv2", 2, 0.1), ("conv3", 1, 0),
                              ("conv4", 2, 0.1), ("conv5", 2, 0.1)):
        conv = layers[name].convolution_param
        assert (conv.group, conv.bias_filler.value, conv.weight_filler.std) == pytest.approx(
            (group, bias, 0.01))
    for name, std, bias in (("fc6", 0.005, 0.1), ("fc7", 0.005, 0.1), ("fc8", 0.01, 0)):
        ip = layers[name].inner_product_param
        assert (ip.weight_filler.std, ip.bias_filler.value) == pytest.approx((std, bias))
    assert layers["norm1"].lrn_param.local_size == 5
    assert layers["drop6"].dropout_param.dropout_ratio == pytest.approx(0.5)


def test_zf_shapes():
    net = caffe.Net(os.path.join(REPO_ROOT, "prototxt/zf_deploy.prototxt"), caffe.TEST)
    shapes = {name: blob.data.shape[1:] for name, blob in net.blobs.items()}
    assert shapes["conv1"] == (96, 114, 114) and shapes["conv2"] == (256, 29, 29)
    assert shapes["conv5"] == (256, 15, 15) and shapes["pool5"] == (256, 7, 7)
    assert shapes["fc8"] == (1000,)


def test_cifar10_solvers_scale_the_protocol():
    dg, gg, gg_dg = (solver_param("cifar10_quick_%s" % v) for v in ("dg", "gg", "gg_dg"))
    assert dg.max_iter == gg.max_iter == netgen.CIFAR10_MAX_ITER
    assert netgen.CIFAR10_SWITCH_ITER == pytest.approx(dg.max_iter * 45 / 70.0, abs=0.5)
    assert netgen.CIFAR10_SWITCH_ITER % gg.snapshot == 0
    assert gg_dg.max_iter == dg.max_iter - netgen.CIFAR10_SWITCH_ITER
    assert gg_dg.base_lr == pytest.approx(0.3 * dg.base_lr)
    assert gg_dg.net.endswith("_dg.prototxt") and gg.net.endswith("_gg.prototxt")
    for s in (dg, gg, gg_dg):             # the last test falls on max_iter
        assert s.max_iter % s.test_interval == 0 and s.test_iter[0] * 100 == 10000


@pytest.mark.parametrize("rel", [r for r in netgen.all_files() if r.startswith("solvers/")])
def test_solver_snapshot_folder_exists(rel):
    """`caffe train -solver solvers/X.prototxt` from the repo root aborts when
    the snapshot_prefix folder is missing: each one ships in the repository."""
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(open(os.path.join(REPO_ROOT, rel)).read(), solver)
    folder = os.path.dirname(os.path.join(REPO_ROOT, solver.snapshot_prefix))
    assert os.path.isdir(folder), folder
    assert os.path.exists(os.path.join(folder, ".gitignore")), "add %s/.gitignore" % folder
