"""ILSVRC-2012 style data: image lists, label names, and the LMDBs + mean
the AlexNet/ZF nets read, built with Caffe's own convert_imageset and
compute_image_mean (as BVLC's examples/imagenet/create_imagenet.sh and
make_imagenet_mean.sh do).

An image list is Caffe's format: one "relative/path label" a line, the path
relative to an image root folder (BVLC's data/ilsvrc12/train.txt, val.txt).
"""
import os
import shutil

from gencnn import caffe_utils
from gencnn.cli import UserError
from gencnn.files import replace_folder, temp_name, write_atomic
from gencnn.data.lmdb_io import lmdb_count

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp")
RESIZE = 256          # convert_imageset warps every image to 256 x 256


def read_image_list(path, root=None, num_classes=None, check_files=True):
    """[(relative path, label)] of a Caffe image list, checked line by line."""
    if not os.path.isfile(path):
        raise UserError("image list %s not found" % path)
    items = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.rsplit(None, 1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError("%s:%d: expected 'path label', got %r"
                                % (path, number, line.strip()))
            label = int(parts[1])
            if label < 0 or (num_classes is not None and label >= num_classes):
                raise UserError("%s:%d: label %d outside [0, %s)"
                                % (path, number, label, num_classes))
            items.append((parts[0].strip(), label))
    if not items:
        raise UserError("image list %s is empty" % path)
    if check_files and root is not None:
        missing = [p for p, _ in items if not os.path.isfile(os.path.join(root, p))]
        if missing:
            raise UserError("%d of %d images in %s not found under %s, e.g. %s"
                            % (len(missing), len(items), path, root, missing[0]))
    return items


def read_synsets(path):
    """Class ids (e.g. WordNet ids n01440764), one a line; label = line index.

    Also accepts "<id> <description>" lines (BVLC's synset_words.txt).
    """
    if not os.path.isfile(path):
        raise UserError("synset list %s not found" % path)
    with open(path) as f:
        synsets = [line.split()[0] for line in f if line.strip()]
    if not synsets:
        raise UserError("synset list %s is empty" % path)
    if len(set(synsets)) != len(synsets):
        raise UserError("synset list %s names a class twice" % path)
    return synsets


def list_class_folders(root, synsets):
    """[(relative path, label)] of images in root/<synset>/, sorted."""
    if not os.path.isdir(root):
        raise UserError("image folder %s not found" % root)
    index = {s: i for i, s in enumerate(synsets)}
    items = []
    for folder in sorted(os.listdir(root)):
        if not os.path.isdir(os.path.join(root, folder)):
            continue
        if folder not in index:
            raise UserError("folder %s/%s is not in the synset list" % (root, folder))
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                items.append(("%s/%s" % (folder, name), index[folder]))
    if not items:
        raise UserError("no images in %s/<class>/ folders" % root)
    return items


def write_image_list(path, items):
    """Caffe image list: "relative/path label" lines, written atomically."""
    for rel, _ in items:
        if any(c.isspace() for c in rel):
            raise UserError("image path %r has white space, which Caffe's list "
                            "format cannot hold" % rel)
    write_atomic(path, "".join("%s %d\n" % (rel, label) for rel, label in items))


def convert_imageset(root, list_path, lmdb_path, expected, log_path=None):
    """Caffe's convert_imageset (resize 256x256, shuffle) into `lmdb_path`,
    via a temporary name; checks that every listed image made it in."""
    tmp = temp_name(lmdb_path)
    try:
        caffe_utils.run_tool("convert_imageset", [
            "--resize_height=%d" % RESIZE, "--resize_width=%d" % RESIZE, "--shuffle",
            "--backend=lmdb", os.path.join(os.path.abspath(root), ""), list_path, tmp],
            log_path)
        count = lmdb_count(tmp)
        if count != expected:
            raise UserError("convert_imageset stored %d of %d images of %s (unreadable "
                            "images are skipped; see %s)" % (count, expected, list_path,
                                                            log_path or "its log"))
        replace_folder(tmp, lmdb_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return count


def read_label_names(path):
    """{label: name} from "<index> <names, comma separated>" lines
    (../shared/data/imagenet_stubs/imagenet_labels.txt)."""
    if not os.path.isfile(path):
        raise UserError("label names %s not found" % path)
    names = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().split(None, 1)
            if len(parts) != 2 or not parts[0].isdigit():
                raise UserError("%s:%d: expected '<index> <name>'" % (path, number))
            names[int(parts[0])] = parts[1]
    return names


def label_of_name(stem, names):
    """The label whose comma-separated synonyms include `stem` ("rock_crab" ->
    "rock crab, Cancer irroratus"), case-insensitively; exactly one must."""
    wanted = stem.replace("_", " ").strip().lower()
    hits = [label for label, text in names.items()
            if wanted in [s.strip().lower() for s in text.split(",")]]
    if len(hits) != 1:
        raise UserError("%r matches %s ImageNet class names" % (stem, len(hits) or "no"))
    return hits[0]


def list_named_photos(folder, names):
    """[(file name, label)] of photos named by their class (beagle.jpg)."""
    if not os.path.isdir(folder):
        raise UserError("image folder %s not found" % folder)
    items = [(f, label_of_name(os.path.splitext(f)[0], names))
             for f in sorted(os.listdir(folder)) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not items:
        raise UserError("no images in %s" % folder)
    return items
