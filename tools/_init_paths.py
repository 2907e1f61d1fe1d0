"""Put the project library and python_layers/ on sys.path (as py-faster-rcnn's
tools/_init_paths.py does), so tools run with or without env.sh."""
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (os.path.join(_root, "python_layers"), _root):
    if _path not in sys.path:
        sys.path.insert(0, _path)
