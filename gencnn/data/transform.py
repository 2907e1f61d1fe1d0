"""What a net's Data layer does to an LMDB's pixels, in numpy.

The project's nets read 8-bit images through Caffe's transform_param:
LeNet scales them (x = pixel / 256), cifar10_quick subtracts the training
set's mean image (x = pixel - mean). Section-5 learning, the T = 1 samplers
and the sample measures work in the same input units as the net, and the
logit pixel model needs the box a valid image lives in. One object says all
of it, read from the net's own description (gencnn.netgen), so nothing of a
particular data set is written into the tools:

    transform = InputTransform.of_net(netgen.NETS["cifar10_quick"])
    x = transform(pixels)                 # what the Data layer feeds the net
    lo, hi = transform.bounds             # the box: pixel levels 0 .. 256
    images, labels = transform.lmdb_images(path, limit, shape)

The box runs to 256, not 255: a dequantized pixel p + U(0, 1) of the logit
pixel model lies in (0, 256) (reference.dequantized_logits), which in
LeNet's units is the (0, 1) the project has always used.
"""
import os

import numpy as np

from caffe.proto import caffe_pb2
from gencnn.cli import UserError
from gencnn.data.lmdb_io import lmdb_images

LEVELS = 256            # 8-bit pixels: levels 0 .. 255, the box [0, 256]


class InputTransform(object):
    """x = (pixel - mean) * scale, Caffe's DataTransformer for uint8 data
    without crop or mirror. `mean` None (no mean_file) or a C x H x W array."""

    def __init__(self, scale=1.0, mean=None):
        self.scale = float(scale)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)

    @classmethod
    def of_net(cls, net, data_args=None):
        """The TRAIN-phase transform of a gencnn.netgen.NETS entry (its
        data_args, or `data_args` given: e.g. another mean_file)."""
        args = dict(net["data_args"], **(data_args or {}))
        params = net["transform"](caffe_pb2.TRAIN, args)
        unsupported = set(params) - {"scale", "mean_file"}
        if unsupported:
            raise ValueError("transform_param %s of %s is not an elementwise map"
                             % (", ".join(sorted(unsupported)), net["name"]))
        mean = None
        if "mean_file" in params:
            from gencnn.evaluation import load_mean_file    # imports caffe.io
            if not os.path.isfile(params["mean_file"]):
                raise UserError("mean file %s does not exist" % params["mean_file"])
            mean = load_mean_file(params["mean_file"], channels=net["input_shape"][1])
        return cls(params.get("scale", 1.0), mean)

    def __call__(self, pixels):
        """Input units (float64) of images in pixel levels."""
        x = np.asarray(pixels, dtype=np.float64)
        if self.mean is not None:
            x = x - self.mean
        return x * self.scale

    def to_pixels(self, x):
        """Pixel levels of input units (the inverse)."""
        pixels = np.asarray(x, dtype=np.float64) / self.scale
        return pixels if self.mean is None else pixels + self.mean

    @property
    def bounds(self):
        """(lo, hi): the box of valid images in input units, scalars for a
        net without a mean image, arrays of one image's shape with one."""
        lo, hi = self(0.0), self(float(LEVELS))
        # one number each: Python floats, so float32 arrays stay float32
        return (float(lo), float(hi)) if self.mean is None else (lo, hi)

    @property
    def quantum(self):
        """One pixel level in input units."""
        return self.scale

    def lmdb_images(self, path, limit=None, input_shape=None, **names):
        """(images in input units, labels) of an LMDB's first `limit` entries:
        lmdb_io.lmdb_images's checks, then this transform."""
        if self.mean is None:       # one multiplication, as the readers always did
            return lmdb_images(path, self.scale, limit, input_shape, **names)
        images, labels = lmdb_images(path, 1.0, limit, input_shape, **names)
        return self(images), labels
