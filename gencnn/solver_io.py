"""Read Caffe solver and net prototxt files, resolve their relative paths."""
import os

from google.protobuf import text_format

from caffe.proto import caffe_pb2
from gencnn.cli import UserError, write_atomic

# Layer types whose blobs are learned; their names must match for a
# fine-tune (Caffe copies weights by layer name).
LEARNED_TYPES = {"Convolution", "InnerProduct", "Deconvolution", "BatchNorm", "Scale",
                 "PReLU", "Bias", "Embed", "LSTM", "RNN"}


def read_proto(path, message):
    if not os.path.isfile(path):
        raise UserError("%s does not exist" % path)
    try:
        text_format.Merge(open(path).read(), message)
    except text_format.ParseError as err:
        raise UserError("%s: %s" % (path, err))
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


def train_data_layer(net):
    """The TRAIN-phase Data layer of a NetParameter (source, batch size)."""
    for layer in net.layer:
        phases = [rule.phase for rule in layer.include if rule.HasField("phase")]
        if layer.type == "Data" and (not phases or caffe_pb2.TRAIN in phases):
            return layer
    raise UserError("net %s has no TRAIN-phase Data layer" % net.name)


def learned_layers(net):
    """{name: type} of the layers with learned parameters."""
    return {layer.name: layer.type for layer in net.layer if layer.type in LEARNED_TYPES}


def write_solver_variant(src, dest, **fields):
    """Copy solver `src` to `dest` with some fields replaced (e.g. net, max_iter).

    Used for shortened or re-pointed runs (demo, tests) so the committed
    solvers stay the paper's.
    """
    solver = read_solver(src)
    for key, value in fields.items():
        if key == "test_iter":
            del solver.test_iter[:]
            solver.test_iter.append(value)
        else:
            setattr(solver, key, value)
    write_atomic(dest, str(solver))
    return dest
