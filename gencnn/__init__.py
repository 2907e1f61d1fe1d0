"""gencnn: generative modeling of CNNs (Dai, Lu & Wu, ICLR 2015) on real Caffe.

The importable library behind tools/: paths and configuration (config),
Caffe log parsing (caffe_log). The eq. 10 loss layer itself lives in
python_layers/generative_loss_layer.py, where Caffe's Python layer loader
finds it.
"""
