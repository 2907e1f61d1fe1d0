"""Everything gencnn does with Caffe's own files and tools, in one place:

- prototxt: read solvers and nets (caffe_pb2 + text_format), write solver
  variants, the lr a solver gives at an iteration (Caffe's formula);
- weights: check a caffemodel against a net before Caffe sees it;
- a net ready for df/dx with frozen weights (load_net: the sampler's);
- tools: find and run Caffe's binaries (caffe, convert_imageset,
  compute_image_mean) and parse the glog output of `caffe train`.
"""
import os
import re
import shutil
import subprocess

import numpy as np

from google.protobuf import text_format
from google.protobuf.message import DecodeError

from caffe.proto import caffe_pb2
from gencnn.cli import UserError
from gencnn.files import atomic_output, write_atomic

# Layer types whose blobs are learned; their names must match for a
# fine-tune (Caffe copies weights by layer name).
LEARNED_TYPES = {"Convolution", "InnerProduct", "Deconvolution", "BatchNorm", "Scale",
                 "PReLU", "Bias", "Embed", "LSTM", "RNN"}


def read_proto(path, message):
    """The one prototxt reader: a text-format Caffe message (SolverParameter,
    NetParameter) from `path`; a missing or unparsable file is one UserError."""
    if not os.path.isfile(path):
        raise UserError("%s does not exist" % path)
    try:
        with open(path) as f:
            text_format.Merge(f.read(), message)
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise UserError("%s does not parse: %s" % (path, str(err).splitlines()[0]))
    return message


def read_solver(path):
    solver = read_proto(path, caffe_pb2.SolverParameter())
    if not solver.net and not solver.train_net:
        raise UserError("%s names no net" % path)
    return solver


def solver_net_path(solver, base_dir):
    """The solver's net, relative paths taken from base_dir (Caffe: the cwd)."""
    net = solver.net or solver.train_net
    return net if os.path.isabs(net) else os.path.join(base_dir, net)


def read_net(path):
    return read_proto(path, caffe_pb2.NetParameter())


# ---------------------------------------------------------------------------
# Weights: checked before Caffe sees them
# ---------------------------------------------------------------------------

def net_input_shape(net_param):
    """The first input's shape (with the batch axis) as a deploy
    NetParameter declares it, without building the net: an Input layer's
    shape, or the old-style input_shape / input_dim fields; None if neither."""
    if net_param.input:
        if net_param.input_shape:
            return tuple(net_param.input_shape[0].dim)
        if net_param.input_dim:
            return tuple(net_param.input_dim[:4])
    for layer in net_param.layer:
        if layer.type == "Input" and layer.input_param.shape:
            return tuple(layer.input_param.shape[0].dim)
    return None


def check_weights(net, caffemodel_path):
    """Raise UserError (one line) unless `caffemodel_path` holds weights of
    the right shapes for every layer of `net` that has learned parameters.

    `net` is a pycaffe caffe.Net, or a NetParameter or prototxt path, built
    here as caffe.Net(..., caffe.TEST) to learn its blob shapes (that opens
    a train/test net's TEST data source, so check the data first).

    Caffe copies weights by layer name (Net::CopyTrainedLayersFrom): a layer
    the file lacks silently keeps its random fillers, and a blob of another
    shape or with fewer values than its shape, or a file that does not
    parse, aborts the process (exit 134); a NaN or infinite weight makes
    every output NaN. Each becomes the one line naming the first missing or
    bad layer.
    HDF5 weights (*.h5, which Caffe reads by their suffix) are not checked.
    """
    if caffemodel_path.endswith(".h5"):
        return
    stored = _stored_blobs(caffemodel_path)
    expected = _net_blob_shapes(net)
    for name, shapes in expected.items():
        if not shapes and not stored.get(name):
            continue                  # no parameters here and none given
        if name not in stored:
            raise UserError("%s: layer %s missing" % (caffemodel_path, name))
        blobs = stored[name]
        if len(blobs) != len(shapes):
            raise UserError("%s: layer %s has %d blobs, the net expects %d"
                            % (caffemodel_path, name, len(blobs), len(shapes)))
        for i, (blob, shape) in enumerate(zip(blobs, shapes)):
            if not _shape_equals(blob, shape):
                raise UserError("%s: layer %s: blob %d has shape %s, the net expects %s"
                                % (caffemodel_path, name, i, _fmt(_blob_shape(blob)),
                                   _fmt(shape)))
            values = _blob_values(blob)
            count = int(np.prod(shape, dtype=np.int64))
            if len(values) != count:
                raise UserError("%s: layer %s: blob %d holds %d values, its shape %s needs %d"
                                % (caffemodel_path, name, i, len(values), _fmt(shape), count))
            if not np.all(np.isfinite(values)):
                raise UserError("%s: layer %s: blob %d holds a non-finite weight (%s)"
                                % (caffemodel_path, name, i,
                                   values[~np.isfinite(values)][0]))


def load_weights(net, caffemodel_path):
    """check_weights, then Caffe's own copy into the pycaffe net (what
    caffe.Net(prototxt, phase, weights=...) does, without its abort)."""
    check_weights(net, caffemodel_path)
    net.copy_from(caffemodel_path)
    return net


def _stored_blobs(path):
    """{layer name: [BlobProto]} of a binary caffemodel, in all three of
    Caffe's layer formats (layer, V1 layers, V0 layers { layer })."""
    if not os.path.isfile(path):
        raise UserError("weights %s not found" % path)
    model = caffe_pb2.NetParameter()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UserError("cannot read weights %s: %s" % (path, err.strerror))
    try:
        model.ParseFromString(data)
    except DecodeError:
        raise UserError("%s is not a Caffe model (it does not parse as a binary "
                        "NetParameter)" % path)
    stored = {layer.name: list(layer.blobs) for layer in model.layer}
    for old in model.layers:
        layer = old.layer if old.HasField("layer") else old
        stored[layer.name] = list(layer.blobs)
    if not any(stored.values()):
        # Some bytes (even some text) parse as an empty NetParameter.
        raise UserError("%s is not a Caffe model (no layer with weights)" % path)
    return stored


def _net_blob_shapes(net):
    """{layer name: [shape tuple]} of every layer of a pycaffe net, [] for
    layers without parameters, in the net's order."""
    import caffe
    if not isinstance(net, caffe.Net):
        net = net_from_param(read_net(net) if isinstance(net, str) else net)
    params = net.params
    return {name: [tuple(b.data.shape) for b in params[name]] if name in params else []
            for name in net._layer_names}


def net_from_param(net_param, phase=None):
    """The one way gencnn builds a pycaffe caffe.Net (TEST phase unless
    `phase` says otherwise) from a NetParameter: pycaffe builds nets only
    from a file, so the message goes through a temporary prototxt, removed
    as soon as the net is built."""
    import tempfile
    import caffe
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", prefix="gencnn_net_") as f:
        f.write(text_format.MessageToString(net_param))
        f.flush()
        return caffe.Net(f.name, caffe.TEST if phase is None else phase)


# ---------------------------------------------------------------------------
# A net ready for df/dx (the sampler's: gencnn/sampling/)
# ---------------------------------------------------------------------------

# Layers whose parameter blobs get a gradient unless lr_mult is 0, with their
# number of parameter blobs. HMC only needs df/dx, so freezing them lets Caffe
# skip the weight gradients (and their accumulation across calls), once
# force_backward is off (what it saves: docs/measurements.md).
_PARAM_BLOBS = {
    "Convolution": lambda l: 1 + int(l.convolution_param.bias_term),
    "Deconvolution": lambda l: 1 + int(l.convolution_param.bias_term),
    "InnerProduct": lambda l: 1 + int(l.inner_product_param.bias_term),
    "Scale": lambda l: 1 + int(l.scale_param.bias_term),
    "Bias": lambda l: 1,
    "PReLU": lambda l: 1,
    "Embed": lambda l: 1 + int(l.embed_param.bias_term),
}


# The layer prepare_net_param puts on each input blob of a frozen net.
INPUT_GRADIENT_LAYER = "gencnn_input_gradient_%s"


def prepare_net_param(net_param, freeze_weights=True):
    """Copy of `net_param` ready for sampling: Caffe computes the gradient
    with respect to the input, and (freeze_weights) no weight gradient.

    force_backward alone would do the first, but Caffe's Net::Init then turns
    every parameter's gradient back on, whatever its lr_mult (it calls
    set_param_propagate_down(i, true) on every layer). So a frozen net gets,
    instead: lr_mult 0 on every weight; on each input blob an in-place
    scalar Bias (INPUT_GRADIENT_LAYER, value 0, the one learnable parameter:
    it makes the layers above need backward) with propagate_down to the
    input; and loss_weight 1 on the net's outputs (tops no layer reads), so
    Caffe's loss pass keeps every layer below them in the backward pass.
    load_net hides the Bias from net.params and keeps it at 0.
    freeze_weights=False: force_backward, weights as given (what a prototxt
    with force_backward gets; bench/hmc_speed.py compares the two).
    """
    prepared = caffe_pb2.NetParameter()
    prepared.CopyFrom(net_param)
    if not freeze_weights:
        prepared.force_backward = True
        return prepared
    prepared.force_backward = False
    for layer in prepared.layer:
        count = _PARAM_BLOBS.get(layer.type)
        if count is None:
            continue
        while len(layer.param) < count(layer):
            layer.param.add()
        for spec in layer.param:
            spec.lr_mult = 0
            spec.decay_mult = 0
    layers = list(prepared.layer)
    for i, layer in enumerate(layers):
        if len(layer.loss_weight) == 0:
            read_later = set(b for later in layers[i + 1:] for b in later.bottom)
            layer.loss_weight.extend(0.0 if top in read_later else 1.0 for top in layer.top)
    anchored = []
    for layer in layers:
        anchored.append(layer)
        for top in layer.top if layer.type == "Input" else ():
            anchored.append(_input_gradient_layer(top))
    del prepared.layer[:]
    prepared.layer.extend([_input_gradient_layer(name) for name in prepared.input] + anchored)
    return prepared


def _input_gradient_layer(blob):
    layer = caffe_pb2.LayerParameter(name=INPUT_GRADIENT_LAYER % blob, type="Bias",
                                     bottom=[blob], top=[blob], propagate_down=[True])
    layer.bias_param.axis, layer.bias_param.num_axes = 0, 0       # a scalar, filled with 0
    layer.param.add(lr_mult=1, decay_mult=0)
    return layer


def truncate_net_param(net_param, blob):
    """Copy of `net_param` with only the layers `blob` depends on, up to its
    last writer: what a node of that blob needs, and a net that can take an
    input of another size (no InnerProduct above the node to object)."""
    layers = list(net_param.layer)
    last = max(i for i, layer in enumerate(layers) if blob in layer.top)
    needed, keep = {blob}, []
    for i in range(last, -1, -1):
        layer = layers[i]
        if needed & set(layer.top):
            keep.append(i)
            needed |= set(layer.bottom)
    truncated = caffe_pb2.NetParameter()
    truncated.CopyFrom(net_param)
    del truncated.layer[:]
    truncated.layer.extend(layers[i] for i in sorted(keep))
    return truncated


def load_net(model, weights=None, num_chains=1, input_blob=None, freeze_weights=True,
             input_shape=None):
    """caffe.Net in TEST phase from a prototxt (path or NetParameter), ready
    for df/dx with frozen weights (prepare_net_param), the input reshaped to `num_chains`
    x `input_shape` (default: the prototxt's; another size for a net
    truncated to a receptive field, `truncate_net_param`).

    The prototxt is rewritten through caffe_pb2/text_format into a temporary
    file, so the user's file needs neither force_backward nor anything else.
    """
    os.environ.setdefault("GLOG_minloglevel", "2")   # quiet net construction
    net_param = read_net(model) if isinstance(model, str) else model
    if weights is not None and not os.path.isfile(weights):
        raise ValueError("weights not found: %s" % weights)
    net = net_from_param(prepare_net_param(net_param, freeze_weights))
    for name in list(net.params):
        if name.startswith(INPUT_GRADIENT_LAYER % ""):
            net.params.pop(name)[0].data[...] = 0     # not a weight of the user's net
    if weights is not None:
        # Checked first: Caffe's own copy aborts the process on a bad file
        # and leaves layers the file lacks at their random fillers.
        load_weights(net, weights)
    if input_blob is not None and input_blob not in net.inputs:
        raise ValueError("unknown input blob '%s'; the net's inputs: %s"
                         % (input_blob, ", ".join(net.inputs)))
    input_blob = input_blob or net.inputs[0]
    if input_shape is None:
        input_shape = net.blobs[input_blob].data.shape[1:]
    net.blobs[input_blob].reshape(num_chains, *input_shape)
    net.reshape()
    return net


def _blob_values(blob):
    """A BlobProto's weights as Caffe reads them (double_data if any, else
    data), a float64 array."""
    return np.asarray(blob.double_data if len(blob.double_data) else blob.data,
                      dtype=np.float64)


def _blob_shape(blob):
    if blob.HasField("shape"):
        return tuple(blob.shape.dim)
    return (blob.num, blob.channels, blob.height, blob.width)


def _shape_equals(blob, shape):
    """Caffe's Blob::ShapeEquals: a legacy 4-D blob (num, channels, height,
    width) matches a shape of up to 4 axes padded with 1s on the left."""
    if blob.HasField("num") or blob.HasField("channels") or blob.HasField("height") \
            or blob.HasField("width"):
        return len(shape) <= 4 and (1,) * (4 - len(shape)) + tuple(shape) == _blob_shape(blob)
    return tuple(blob.shape.dim) == tuple(shape)


def _fmt(shape):
    return "x".join(str(d) for d in shape) or "scalar"


def train_data_layer(net):
    """The TRAIN-phase Data layer of a NetParameter (source, batch size)."""
    for layer in net.layer:
        phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
        if layer.type == "Data" and (not phases or caffe_pb2.TRAIN in phases):
            return layer
    raise UserError("net %s has no TRAIN-phase Data layer" % net.name)


def label_classes(net):
    """(the scores' layer, its class count) of a train/test NetParameter:
    the InnerProduct or Convolution whose output a layer compares with the
    Data layer's labels (the loss, the accuracy); None if there is none."""
    labels = {layer.top[1] for layer in net.layer if layer.type == "Data" and
              len(layer.top) > 1}
    for layer in net.layer:
        if len(layer.bottom) > 1 and layer.bottom[1] in labels:
            producers = [l for l in net.layer if layer.bottom[0] in l.top]
            if producers and producers[-1].type == "InnerProduct":
                return producers[-1].name, producers[-1].inner_product_param.num_output
            if producers and producers[-1].type == "Convolution":
                return producers[-1].name, producers[-1].convolution_param.num_output
    return None


def check_data_labels(net, net_path):
    """Every label of the LMDBs the Data layers of NetParameter `net` read
    must be a class of its scores' layer (lmdb_io.check_labels): checked
    before training, as Caffe's loss would read past the scores."""
    from gencnn.data.lmdb_io import check_labels
    found = label_classes(net)
    if found is None:
        return
    name, classes = found
    for layer in net.layer:
        if layer.type == "Data" and os.path.isdir(layer.data_param.source):
            check_labels(layer.data_param.source, classes, "the net %s's %s" % (net_path, name))


def learned_layers(net):
    """{name: type} of the layers with learned parameters."""
    return {layer.name: layer.type for layer in net.layer if layer.type in LEARNED_TYPES}


def solver_variant(solver, **fields):
    """A copy of SolverParameter `solver` with some fields replaced (net,
    max_iter, ...; test_iter takes one number or a list, [] clears it).
    The one way gencnn derives a solver, so the committed ones stay the paper's."""
    variant = caffe_pb2.SolverParameter()
    variant.CopyFrom(solver)
    for key, value in fields.items():
        if key in ("test_iter", "stepvalue"):
            del getattr(variant, key)[:]
            getattr(variant, key).extend(value if isinstance(value, (list, tuple))
                                         else [value])
        else:
            setattr(variant, key, value)
    return variant


def write_solver_variant(src, dest, **fields):
    """Solver file `src` written to `dest` as solver_variant(**fields) says
    (shortened or re-pointed runs: demo, tests, benches)."""
    write_atomic(dest, str(solver_variant(read_solver(src), **fields)))
    return dest


def learning_rate(solver, it):
    """The lr Caffe's SGDSolver uses at iteration `it` (sgd_solver.cpp,
    GetLearningRate), for the policies our solvers use and Caffe's others."""
    import math
    policy, base = solver.lr_policy, solver.base_lr
    if policy == "fixed":
        return base
    if policy == "step":
        return base * solver.gamma ** (it // solver.stepsize)
    if policy == "exp":
        return base * solver.gamma ** it
    if policy == "inv":
        return base * (1.0 + solver.gamma * it) ** (-solver.power)
    if policy == "multistep":
        return base * solver.gamma ** sum(1 for v in solver.stepvalue if it >= v)
    if policy == "poly":
        return base * (1.0 - float(it) / solver.max_iter) ** solver.power
    if policy == "sigmoid":
        return base / (1.0 + math.exp(-solver.gamma * (it - solver.stepsize)))
    raise UserError("unknown lr_policy %r" % policy)


# ---------------------------------------------------------------------------
# Caffe's binaries: $CAFFE_BIN/<tool> when env.sh is sourced, else PATH
# ---------------------------------------------------------------------------

def tool_path(name):
    caffe_bin = os.environ.get("CAFFE_BIN")
    if caffe_bin and os.path.exists(os.path.join(caffe_bin, name)):
        return os.path.join(caffe_bin, name)
    found = shutil.which(name)
    if found is None:
        raise UserError("Caffe tool %s not found: source env.sh (or put Caffe's tools on PATH)"
                        % name)
    return found


def run_tool(name, args, log_path=None):
    """Run a Caffe tool; its glog output goes to `log_path` (or is kept in
    memory). A missing tool or a failure is a UserError with the tool's last log line."""
    env = dict(os.environ, GLOG_logtostderr="1")
    cmd = [tool_path(name)] + [str(a) for a in args]
    if log_path:
        with open(log_path, "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        with open(log_path) as log:
            lines = log.read().splitlines()
    else:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, universal_newlines=True)
        lines = proc.stdout.splitlines()
    if proc.returncode != 0:
        last = next((l for l in reversed(lines) if l.strip()), "(no output)")
        raise UserError("%s failed (exit %d): %s" % (name, proc.returncode, last.strip()))
    return lines


def compute_image_mean(lmdb_path, mean_path, log_path=None):
    """Mean image of an LMDB with Caffe's compute_image_mean, written under a
    temporary name and renamed, so `mean_path` is complete or absent."""
    with atomic_output(mean_path) as tmp:
        run_tool("compute_image_mean", ["-backend", "lmdb", lmdb_path, tmp], log_path)


def finish_dataset(train_lmdb, mean_path, snapshots, log_path=None):
    """The last step of every data tool: the training set's mean image (what
    the nets' transform_param subtracts) and the solvers' snapshot folder,
    without which `caffe train` aborts."""
    compute_image_mean(train_lmdb, mean_path, log_path)
    print("wrote %s" % mean_path)
    os.makedirs(snapshots, exist_ok=True)


# ---------------------------------------------------------------------------
# The glog output of `caffe train` (BVLC Caffe 1.0 format)
# ---------------------------------------------------------------------------

# "Iteration 100 (12.3 iter/s, 8.1s/100 iters), loss = 0.2345"  (1.0)
# "Iteration 100, loss = 0.2345"                                  (older)
_TRAIN_LOSS = re.compile(r"Iteration (\d+)(?: \([^)]*\))?, loss = ([-+0-9.eEnaif]+)")
# "Iteration 500, Testing net (#0)" then "    Test net output #0: accuracy = 0.98"
_TEST_START = re.compile(r"Iteration (\d+), Testing net \(#(\d+)\)")
_TEST_OUTPUT = re.compile(r"Test net output #\d+: (\S+) = ([-+0-9.eEnaif]+)")


def train_losses(text):
    """[(iteration, smoothed loss)] in log order."""
    return [(int(it), float(loss)) for it, loss in _TRAIN_LOSS.findall(text)]


def test_outputs(text):
    """[(iteration, {output name: value})] for test net #0, in log order."""
    results, current = [], None
    for line in text.splitlines():
        start = _TEST_START.search(line)
        if start:
            current = {} if start.group(2) == "0" else None
            if current is not None:
                results.append((int(start.group(1)), current))
            continue
        out = _TEST_OUTPUT.search(line)
        if out and current is not None:
            current[out.group(1)] = float(out.group(2))
    return results
