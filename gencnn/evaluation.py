"""Top-1 / top-5 error of a deploy net with the paper's 5 crops and with the
single centre crop (section 4.1: "classifying the center and the four corner
crops").

Each image is prepared as Caffe's training data is: read as BGR, warped to
256 x 256 (convert_imageset's resize; or, with resize="short", the short side
to 256 then the centre 256 x 256), 0-255 pixel scale. The five crops of the
net's input size (227 for AlexNet/ZF/SqueezeNet) are the centre and the four
corners; the mean image is cropped at the same place (as Caffe's
DataTransformer does with a mean file) or per-channel mean values are used.
The net's output scores of the five crops are averaged (for a net ending in
a softmax, the probabilities); the centre-crop result is crop 0 alone.
"""
import cv2
import numpy as np

from caffe.proto import caffe_pb2
from gencnn.cli import UserError

CANVAS = 256


def load_mean_file(path, channels=3):
    """C x H x W float32 mean from a .binaryproto (compute_image_mean's output),
    read with caffe.io.blobproto_to_array; a bad file is one line."""
    import caffe.io
    blob = caffe_pb2.BlobProto()
    try:
        with open(path, "rb") as f:
            blob.ParseFromString(f.read())
        mean = caffe.io.blobproto_to_array(blob).astype(np.float32)
    except (IOError, OSError) as exc:
        raise UserError("cannot read mean file %s: %s" % (path, exc))
    except Exception:
        raise UserError("%s is not a Caffe BlobProto mean file" % path)
    mean = mean.reshape(mean.shape[-3:]) if mean.ndim >= 3 and mean.size == \
        int(np.prod(mean.shape[-3:])) else mean
    if mean.ndim != 3 or mean.shape[0] != channels:
        raise UserError("mean file %s holds shape %s: expected %d x H x W"
                              % (path, mean.shape, channels))
    return mean


def crop_offsets(canvas, crop):
    """(y, x) of the centre and the four corner crops, centre first."""
    if crop > canvas:
        raise UserError("crop %d larger than the %d x %d image" % (crop, canvas, canvas))
    c = (canvas - crop) // 2
    e = canvas - crop
    return [(c, c), (0, 0), (0, e), (e, 0), (e, e)]


def load_canvas(path, resize="warp", canvas=CANVAS):
    """BGR C x canvas x canvas float32 image, 0-255."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise UserError("cannot read image %s" % path)
    if resize == "warp":
        image = cv2.resize(image, (canvas, canvas), interpolation=cv2.INTER_LINEAR)
    elif resize == "short":
        h, w = image.shape[:2]
        scale = float(canvas) / min(h, w)
        size = (max(canvas, int(round(w * scale))), max(canvas, int(round(h * scale))))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        y, x = (image.shape[0] - canvas) // 2, (image.shape[1] - canvas) // 2
        image = image[y:y + canvas, x:x + canvas]
    else:
        raise UserError("unknown resize mode %r (warp or short)" % resize)
    return image.transpose(2, 0, 1).astype(np.float32)


class Evaluator(object):
    """A pycaffe deploy net scoring the five crops of images."""

    def __init__(self, net, output_blob=None, mean=None, resize="warp", input_scale=1.0,
                 batch_images=8):
        self.net = net
        self.input_blob = net.inputs[0]
        self.output_blob = output_blob or net.outputs[-1]
        if self.output_blob not in net.blobs:
            raise UserError("the net has no blob %r" % self.output_blob)
        shape = net.blobs[self.input_blob].data.shape
        if len(shape) != 4 or shape[2] != shape[3]:
            raise UserError("net input %r is %s, expected N x C x S x S"
                                  % (self.input_blob, shape))
        self.channels, self.crop = shape[1], shape[2]
        self.offsets = crop_offsets(CANVAS, self.crop)
        self.mean = self._mean_crops(mean)
        self.resize = resize
        self.input_scale = input_scale
        self.batch_images = batch_images

    def _mean_crops(self, mean):
        """5 x C x S x S mean to subtract from the crops."""
        n, c, s = len(self.offsets), self.channels, self.crop
        if mean is None:
            return np.zeros((n, c, s, s), np.float32)
        mean = np.asarray(mean, np.float32)
        if mean.ndim == 1:
            if mean.size != c:
                raise UserError("%d mean values for %d channels" % (mean.size, c))
            return np.broadcast_to(mean.reshape(1, c, 1, 1), (n, c, s, s)).copy()
        if mean.shape != (c, CANVAS, CANVAS):
            raise UserError("mean image is %s, expected %s"
                                  % (mean.shape, (c, CANVAS, CANVAS)))
        return np.stack([mean[:, y:y + s, x:x + s] for y, x in self.offsets])

    def crops(self, path):
        image = load_canvas(path, self.resize)
        if image.shape[0] != self.channels:
            raise UserError("net takes %d channels, image %s has %d"
                                  % (self.channels, path, image.shape[0]))
        s = self.crop
        batch = np.stack([image[:, y:y + s, x:x + s] for y, x in self.offsets])
        return (batch - self.mean) * self.input_scale

    def scores(self, paths):
        """len(paths) x 5 x classes output scores."""
        batch = np.concatenate([self.crops(p) for p in paths])
        blob = self.net.blobs[self.input_blob]
        if blob.data.shape[0] != batch.shape[0]:
            blob.reshape(*batch.shape)
            self.net.reshape()
        blob.data[...] = batch
        out = self.net.forward(blobs=[self.output_blob])[self.output_blob]
        return out.reshape(len(paths), len(self.offsets), -1).copy()


def topk(scores, k=5):
    """Indices of the k highest scores, best first (ties: lower index first)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def evaluate(evaluator, items, progress=None):
    """items [(path, label)] -> results dict (errors and per-image top-5).

    `progress` wraps the batch iterator (e.g. tqdm) if given.
    """
    batches = [items[i:i + evaluator.batch_images]
               for i in range(0, len(items), evaluator.batch_images)]
    per_image = []
    for batch in (progress(batches) if progress else batches):
        scores = evaluator.scores([p for p, _ in batch])
        for (path, label), s in zip(batch, scores):
            five, centre = topk(s.mean(axis=0)), topk(s[0])
            per_image.append({"image": path, "label": int(label),
                              "top5_five_crop": five, "top5_centre_crop": centre})
    n = len(per_image)

    def errors(key):
        top1 = sum(r[key][0] == r["label"] for r in per_image)
        top5 = sum(r["label"] in r[key] for r in per_image)
        return {"top1_correct": top1, "top5_correct": top5,
                "top1_error": 1.0 - top1 / float(n), "top5_error": 1.0 - top5 / float(n)}

    return {"images": n, "crop": evaluator.crop, "canvas": CANVAS, "resize": evaluator.resize,
            "five_crop": errors("top5_five_crop"), "centre_crop": errors("top5_centre_crop"),
            "per_image": per_image}
