"""Receptive field of a convolutional node: which input pixels it sees.

Used to crop the display of a convolutional node to its field, and to
sample the node on that field alone (`input_crop`), which is exact when q
factorizes over pixels: f_y ignores the other pixels, so under p_y they are
independent draws from q.
"""
from caffe.proto import caffe_pb2


def _window(layer):
    """(kernel, stride, pad, dilation) per spatial axis of a Convolution or
    Pooling layer, or None for a layer that keeps positions; 'global' for
    global pooling."""
    def pair(param, name, hw, default):
        """(h, w) as Caffe reads them: hw_h/hw_w when set, else the repeated
        (convolution) or single (pooling) field `name`, else the default."""
        if param.HasField(hw + "_h"):
            return getattr(param, hw + "_h"), getattr(param, hw + "_w")
        value = getattr(param, name)
        if not isinstance(value, int):                  # repeated field
            value = list(value)[0] if len(value) else default
        elif not param.HasField(name):
            value = default
        return value, value
    if layer.type == "Convolution":
        p = layer.convolution_param
        dilation = list(p.dilation)[0] if len(p.dilation) else 1
        return (pair(p, "kernel_size", "kernel", 1), pair(p, "stride", "stride", 1),
                pair(p, "pad", "pad", 0), (dilation, dilation))
    if layer.type == "Pooling":
        p = layer.pooling_param
        if p.global_pooling:
            return "global"
        return (pair(p, "kernel_size", "kernel", 1), pair(p, "stride", "stride", 1),
                pair(p, "pad", "pad", 0), (1, 1))
    if layer.type == "LRN" and layer.lrn_param.norm_region == caffe_pb2.LRNParameter.WITHIN_CHANNEL:
        size = layer.lrn_param.local_size
        return (size, size), (1, 1), ((size - 1) // 2,) * 2, (1, 1)
    if layer.type in ("ReLU", "Dropout", "LRN", "BatchNorm", "Scale", "Bias", "PReLU", "ELU",
                      "Sigmoid", "TanH", "Power", "AbsVal", "BNLL", "Eltwise", "Concat",
                      "Split", "Input", "Softmax"):
        return None
    return "unknown"


def blob_fields(net_param, input_shape):
    """Per blob, per spatial axis, (start, jump, size): position i of the blob
    sees input pixels start + i * jump ... + size - 1 (start < 0 where the
    field reaches into padding). None for blobs this cannot model.

    A window of kernel k, stride s, pad p, dilation d maps (start, jump, size)
    to (start - p jump, jump s, size + (k-1) d jump); branches joined by
    Concat/Eltwise take the widest view; global pooling sees everything.
    """
    height, width = input_shape[-2:]
    fields = {name: ((0, 1, 1), (0, 1, 1)) for name in net_param.input}
    for layer in net_param.layer:
        if layer.type == "Input":
            for top in layer.top:
                fields[top] = ((0, 1, 1), (0, 1, 1))
            continue
        if any(rule.phase == caffe_pb2.TRAIN for rule in layer.include):
            continue
        inputs = [fields.get(b) for b in layer.bottom]
        window = _window(layer)
        if window == "unknown" or any(f is None for f in inputs) or not inputs:
            for top in layer.top:
                fields[top] = None
            continue
        if window == "global":
            new = ((0, 1, height), (0, 1, width))
        else:
            new = tuple((min(f[a][0] for f in inputs), inputs[0][a][1],
                         max(f[a][0] + f[a][2] for f in inputs) - min(f[a][0] for f in inputs))
                        for a in range(2))
            if window is not None:
                kernel, stride, pad, dilation = window
                new = tuple((start - pad[a] * jump, jump * stride[a],
                             size + (kernel[a] - 1) * dilation[a] * jump)
                            for a, (start, jump, size) in enumerate(new))
        for top in layer.top:
            fields[top] = new
    return fields


def receptive_field(net_param, blob, position, input_shape):
    """Box (y0, y1, x0, x1), end exclusive, clipped to the input image, of the
    input pixels that node `position` (y, x) of `blob` can see; None when it
    sees the whole image or the net has a layer `blob_fields` does not model.
    """
    height, width = input_shape[-2:]
    field = blob_fields(net_param, input_shape).get(blob)
    if field is None:
        return None
    box = []
    for (start, jump, size), p, limit in zip(field, position, (height, width)):
        lo = start + p * jump
        box += [max(lo, 0), min(lo + size, limit)]
    if box == [0, height, 0, width]:
        return None
    return tuple(box)


def input_crop(net_param, blob, position, input_shape):
    """Sample a convolutional node on a crop of the input, not the whole image.

    f_y of node `position` depends only on the pixels of its receptive field,
    so under p_y the other pixels are independent draws from q: sampling the
    field alone (in a net whose input is reshaped to the crop) and drawing
    the rest from q is exact, and far cheaper for low layers. This holds when
    the field lies inside the image (it touches no padding); the net's
    layers are translation-equivariant, so the node at `small_position` of
    the cropped net computes the same function of the same pixels.

    Returns (crop box (y0, y1, x0, x1) in the input, small_position), or
    None when the field is the whole image, reaches into padding, or the
    net has a layer `blob_fields` does not model.
    """
    field = blob_fields(net_param, input_shape).get(blob)
    if field is None:
        return None
    crop, small_position = [], []
    for (start, jump, size), p, limit in zip(field, position, input_shape[-2:]):
        lo = start + p * jump
        if lo < 0 or lo + size > limit or size >= limit:
            return None
        first = -(start // jump)       # first position whose field starts at >= 0
        offset = start + first * jump  # where that field starts in the crop
        crop += [lo - offset, lo + size]
        small_position.append(first)
    return tuple(crop), tuple(small_position)
