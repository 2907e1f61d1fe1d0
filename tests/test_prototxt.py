"""prototxt/ and solvers/ are generated from gencnn/netgen.py and stay valid."""
import os

import numpy as np
import pytest
from google.protobuf import text_format

import caffe
from caffe.proto import caffe_pb2
from gencnn import caffe_utils, netgen, protocols
from gencnn.config import REPO_ROOT

FILES = netgen.all_files()


@pytest.mark.parametrize("rel", list(FILES))
def test_committed_file_parses_to_the_generators_message(rel):
    """Each committed file, parsed by text_format, is the generator's
    NetParameter / SolverParameter, field by field and layer by layer (the
    messages Caffe runs, whatever the text's layout and comments)."""
    generated = FILES[rel].message
    committed = caffe_utils.read_proto(os.path.join(REPO_ROOT, rel), type(generated)())
    if isinstance(generated, caffe_pb2.NetParameter):
        assert [l.name for l in committed.layer] == [l.name for l in generated.layer], rel
        for ours, theirs in zip(generated.layer, committed.layer):
            assert theirs == ours, "%s: layer %s differs" % (rel, ours.name)
    assert committed == generated, rel


@pytest.mark.parametrize("rel", list(FILES))
def test_committed_file_matches_generator(rel):
    path = os.path.join(REPO_ROOT, rel)
    assert os.path.exists(path), "%s missing: run tools/generate_prototxt.py" % rel
    assert open(path).read() == FILES[rel].text, \
        "%s drifted from gencnn/netgen.py: run tools/generate_prototxt.py" % rel


@pytest.mark.parametrize("folder", ["prototxt", "solvers"])
def test_no_stale_file(folder):
    """Every .prototxt there is one netgen writes: a renamed solver's old file
    (say <net>_gg_dg_aligned, now <net>_gg_dg) is removed, not left behind."""
    stale = sorted(set("%s/%s" % (folder, name)
                       for name in os.listdir(os.path.join(REPO_ROOT, folder))
                       if name.endswith(".prototxt")) - set(FILES))
    assert not stale, "not written by gencnn/netgen.py: git rm %s" % " ".join(stale)


def test_stage2_solvers_are_named_by_reading():
    """<net>_gg_dg is the aligned reading (the default, chosen by the CIFAR-10
    study, docs/cifar10.md), <net>_gg_dg_restart the restart one; each says so."""
    stage2 = [r for r in FILES if r.startswith("solvers/") and "_gg_dg" in r]
    assert sorted(stage2) == sorted("solvers/%s_%s.prototxt" % (key, suffix)
                                    for key in protocols.PROTOCOLS
                                    for suffix in ("gg_dg", "gg_dg_restart"))
    for key in protocols.PROTOCOLS:
        for suffix, reading in (("gg_dg", "aligned"), ("gg_dg_restart", "restart")):
            header = FILES["solvers/%s_%s.prototxt" % (key, suffix)].header
            assert "stage 2 (%s)" % reading in header
            assert "docs/cifar10.md" in header


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
    for name in ("lenet_gg_dg", "lenet_gg_dg_restart"):     # aligned (default), restart
        s = solver(name)
        assert s.base_lr == pytest.approx(0.003) and s.max_iter == 23438 - 15000
        assert s.net.endswith("_dg.prototxt")
    # aligned: DG's inv decay continued from iteration 15,000 (gamma / (1 + gamma s))
    assert solver("lenet_gg_dg").gamma == pytest.approx(1e-4 / (1 + 1e-4 * 15000))
    assert solver("lenet_gg_dg_restart").gamma == pytest.approx(1e-4)


def solver_param(name):
    s = caffe_pb2.SolverParameter()
    text_format.Merge(open(os.path.join(REPO_ROOT, "solvers/%s.prototxt" % name)).read(), s)
    return s


@pytest.mark.parametrize("key", ["alexnet", "zf"])
def test_imagenet_solvers_follow_the_paper(key):
    # 70 epochs of 1,281,167 images at batch 256; GG+DG switches at epoch 45
    epoch = 1281167 / 256.0
    assert solver_param("%s_dg" % key).max_iter == int(np.ceil(70 * epoch))
    assert protocols.PROTOCOLS[key].switch_iter == int(np.ceil(45 * epoch)) == 225206
    for variant in ("dg", "gg"):
        s = solver_param("%s_%s" % (key, variant))
        assert s.net == "prototxt/%s_train_test_%s.prototxt" % (key, variant)
        assert (s.base_lr, s.momentum, s.weight_decay, s.gamma) == pytest.approx(
            (0.01, 0.9, 0.0005, 0.1), rel=1e-6)
        assert s.lr_policy == "step" and s.max_iter == 350320
        assert s.stepsize == 77849            # BVLC's 100,000 of 450,000, scaled
        assert s.test_iter[0] * 50 == 50000
    assert 225206 % solver_param("%s_gg" % key).snapshot == 0   # the switch is saved
    for variant in ("gg_dg", "gg_dg_restart"):
        s = solver_param("%s_%s" % (key, variant))
        assert s.net == "prototxt/%s_train_test_dg.prototxt" % key
        assert s.base_lr == pytest.approx(0.003) and s.max_iter == 125114 == 350320 - 225206
    s = solver_param("%s_gg_dg_restart" % key)
    assert s.lr_policy == "step" and s.stepsize == 77849
    s = solver_param("%s_gg_dg" % key)                  # aligned, the default
    # DG's decays at 233,547 and 311,396 are the two left after the switch
    assert s.lr_policy == "multistep" and list(s.stepvalue) == [233547 - 225206,
                                                                311396 - 225206]
    for variant in ("dg", "gg", "gg_dg", "gg_dg_restart"):
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
        assert layer.transform_param.crop_size == {"alexnet": 227, "zf": 224}[key]
        assert layer.transform_param.mirror == mirror
        assert layer.transform_param.mean_file == "data/ilsvrc12/imagenet_mean.binaryproto"
        assert layer.data_param.backend == caffe_pb2.DataParameter.LMDB


def blob_shapes(key):
    net = caffe.Net(os.path.join(REPO_ROOT, "prototxt/%s_deploy.prototxt" % key), caffe.TEST)
    shapes = {name: blob.data.shape[1:] for name, blob in net.blobs.items()}
    params = {name: [p.data.shape for p in ps] for name, ps in net.params.items()}
    return shapes, params, sum(p.data.size for ps in net.params.values() for p in ps)


# Every blob of the two ImageNet nets (deploy, batch 1), from pycaffe.
IMAGENET_SHAPES = {
    "alexnet": {"data": (3, 227, 227), "conv1": (96, 55, 55), "norm1": (96, 55, 55),
                "pool1": (96, 27, 27), "conv2": (256, 27, 27), "norm2": (256, 27, 27),
                "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
                "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,),
                "fc7": (4096,), "fc8": (1000,)},
    # SPP-net's ZF-5 (Zeiler_conv5.prototxt) without the pyramid
    "zf": {"data": (3, 224, 224), "conv1": (96, 110, 110), "norm1": (96, 110, 110),
           "pool1": (96, 55, 55), "conv2": (256, 26, 26), "norm2": (256, 26, 26),
           "pool2": (256, 13, 13), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
           "conv5": (256, 13, 13), "pool5": (256, 6, 6), "fc6": (4096,), "fc7": (4096,),
           "fc8": (1000,)},
}
PARAM_COUNTS = {"alexnet": 60965224, "zf": 62357608}


@pytest.mark.parametrize("key", ["alexnet", "zf"])
def test_imagenet_blob_shapes_and_parameter_counts(key):
    shapes, params, count = blob_shapes(key)
    assert shapes == IMAGENET_SHAPES[key]
    assert params["fc6"][0] == (4096, 9216)          # 6 x 6 x 256 inputs to fc6
    assert count == PARAM_COUNTS[key]


def test_alexnet_matches_bvlc():
    """Fillers and layer settings of BVLC's bvlc_alexnet."""
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


def test_zf_matches_spp_net():
    """conv1-fc8 of SPP-net's Zeiler_conv5.prototxt, field by field."""
    layers = {l.name: l for l in parse_net("prototxt/zf_deploy.prototxt").layer}
    convs = {"conv1": (96, 7, 2, 1, 0), "conv2": (256, 5, 2, 0, 1),
             "conv3": (384, 3, 1, 1, 0), "conv4": (384, 3, 1, 1, 1),
             "conv5": (256, 3, 1, 1, 1)}
    for name, (out, kernel, stride, pad, bias) in convs.items():
        conv = layers[name].convolution_param
        assert conv.num_output == out and list(conv.kernel_size) == [kernel]
        assert list(conv.stride or [1]) == [stride] and list(conv.pad or [0]) == [pad]
        assert conv.group == 1
        assert conv.weight_filler.type == "gaussian"
        assert (conv.weight_filler.std, conv.bias_filler.value) == pytest.approx((0.01, bias))
    for name in ("fc6", "fc7", "fc8"):
        ip = layers[name].inner_product_param
        assert (ip.weight_filler.std, ip.bias_filler.value) == pytest.approx((0.01, 1))
    for name in list(convs) + ["fc6", "fc7", "fc8"]:
        # blobs_lr 1 / 2 and no weight_decay fields (so decay 1 on both)
        assert [(p.lr_mult, p.decay_mult) for p in layers[name].param] == [(1, 1), (2, 1)]
    for name in ("norm1", "norm2"):
        lrn = layers[name].lrn_param
        assert (lrn.local_size, lrn.alpha, lrn.beta) == pytest.approx((3, 5e-5, 0.75))
        assert lrn.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL
    for name in ("pool1", "pool2", "pool5"):
        pool = layers[name].pooling_param
        assert (pool.pool, pool.kernel_size, pool.stride, pool.pad) == (
            caffe_pb2.PoolingParameter.MAX, 3, 2, 0)


def test_cifar10_solvers_follow_cifar10_quick():
    """BVLC cifar10_quick: 4,000 iterations at 0.001, then 1,000 at 0.0001."""
    dg, gg, restart, aligned = (solver_param("cifar10_quick_%s" % v)
                                for v in ("dg", "gg", "gg_dg_restart", "gg_dg"))
    for s in (dg, gg):
        assert s.max_iter == 5000 and s.base_lr == pytest.approx(0.001)
        assert [caffe_utils.learning_rate(s, it) for it in (0, 3999, 4000, 4999)] == \
            pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
        assert (s.momentum, s.weight_decay) == pytest.approx((0.9, 0.004))
    assert protocols.CIFAR10_SWITCH_ITER == 3215 == int(np.ceil(5000 * 45 / 70.0))
    for s in (restart, aligned):
        assert s.max_iter == 5000 - 3215 and s.base_lr == pytest.approx(0.0003)
        assert s.net.endswith("_dg.prototxt") and gg.net.endswith("_gg.prototxt")
    for s in (dg, gg, restart, aligned):           # the last test falls on max_iter
        assert s.max_iter % s.test_interval == 0 and s.test_iter[0] * 100 == 10000


@pytest.mark.parametrize("key", list(protocols.PROTOCOLS))
def test_aligned_stage2_follows_dg_schedule(key):
    """GG+DG(aligned) starts at 0.3 x DG's base_lr and then decays exactly as
    DG does from the switch on (Caffe's lr formula at many iterations);
    GG+DG(restart) is DG's solver with base_lr x0.3 and its own clock."""
    protocol = protocols.PROTOCOLS[key]
    s = protocol.switch_iter
    dg = solver_param(protocol.solver_name("dg"))
    aligned = solver_param(protocol.solver_name("gg_dg"))             # the default
    restart = solver_param(protocol.solver_name("gg_dg_restart"))
    assert aligned.max_iter == restart.max_iter == dg.max_iter - s
    lr = caffe_utils.learning_rate
    assert lr(aligned, 0) == pytest.approx(0.3 * dg.base_lr, rel=1e-6)
    for t in np.linspace(0, aligned.max_iter - 1, 41).astype(int):
        assert lr(aligned, t) / lr(aligned, 0) == pytest.approx(lr(dg, s + t) / lr(dg, s),
                                                                rel=1e-6), t
        assert lr(restart, t) == pytest.approx(0.3 * lr(dg, t), rel=1e-6)
    # both end at the same point of DG's decay
    assert lr(aligned, aligned.max_iter) / lr(aligned, 0) == pytest.approx(
        lr(dg, dg.max_iter) / lr(dg, s), rel=1e-6)


@pytest.mark.parametrize("key", list(protocols.PROTOCOLS))
def test_gg_solver_snapshots_at_the_switch(key):
    """Plain `caffe train -solver <net>_gg.prototxt` saves the weights GG+DG
    starts from."""
    protocol = protocols.PROTOCOLS[key]
    gg = solver_param(protocol.solver_name("gg"))
    assert protocol.switch_iter % gg.snapshot == 0 and protocol.switch_iter < gg.max_iter
    assert protocol.switch_iter == int(np.ceil(protocol.switch_epoch * protocol.epoch_iters
                                               - 1e-9))


def test_learning_rate_matches_caffe_log(tmp_path):
    """caffe_utils.learning_rate against the lr Caffe itself logs ("lr = ")
    for the inv and multistep schedules of the aligned solvers."""
    import re
    from conftest import run_caffe
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "d" type: "DummyData" top: "x" top: "y" dummy_data_param {'
                   ' shape { dim: 2 dim: 3 } shape { dim: 2 dim: 3 } } }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z"'
                   ' inner_product_param { num_output: 3 } }\n'
                   'layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "l" }\n')
    for key in ("lenet", "cifar10_quick"):
        solver = solver_param("%s_gg_dg" % key)                   # aligned
        solver.net = str(net)
        solver.ClearField("test_iter")
        solver.test_interval = 0
        solver.display = 1
        solver.max_iter = min(solver.max_iter, 900)
        solver.snapshot = 0
        solver.snapshot_after_train = False
        path = tmp_path / ("%s.prototxt" % key)
        path.write_text(str(solver))
        _, log = run_caffe(["train", "-solver", str(path)], cwd=str(tmp_path))
        logged = {int(i): float(v) for i, v in
                  re.findall(r"Iteration (\d+), lr = ([-+0-9.eE]+)", log)}
        assert len(logged) > 800
        for it, value in logged.items():
            assert value == pytest.approx(caffe_utils.learning_rate(solver, it), rel=1e-5), it


@pytest.mark.parametrize("rel", [r for r in FILES if r.startswith("solvers/")])
def test_solver_snapshot_folder_exists(rel):
    """`caffe train -solver solvers/X.prototxt` from the repo root aborts when
    the snapshot_prefix folder is missing: each one ships in the repository."""
    solver = caffe_pb2.SolverParameter()
    text_format.Merge(open(os.path.join(REPO_ROOT, rel)).read(), solver)
    folder = os.path.dirname(os.path.join(REPO_ROOT, solver.snapshot_prefix))
    assert os.path.isdir(folder), folder
    assert os.path.exists(os.path.join(folder, ".gitignore")), "add %s/.gitignore" % folder
