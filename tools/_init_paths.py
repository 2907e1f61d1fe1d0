"""Put the project library and python_layers/ on sys.path (as py-faster-rcnn's
tools/_init_paths.py does), so tools run with or without env.sh."""
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(_root, "python_layers"), _root):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Without the environment (`. ./env.sh`) pycaffe and the venv's packages are
# not importable: say so in one line (exit 2, the tools' error convention)
# instead of a ModuleNotFoundError traceback.
import importlib.util  # noqa: E402

for _module in ("numpy", "google.protobuf", "caffe"):
    try:
        _found = importlib.util.find_spec(_module) is not None
    except ImportError:
        _found = False
    if not _found:
        print("error: Python module %s not found: run `make setup` once, then `. ./env.sh` "
              "in this shell" % _module, file=sys.stderr)
        sys.exit(2)
