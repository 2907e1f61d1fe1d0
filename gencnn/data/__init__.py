"""Datasets to Caffe LMDBs: MNIST (mnist), CIFAR-10 (cifar10), ImageNet image
lists through Caffe's convert_imageset (imagenet), and the Datum LMDB reader
and writer they share (lmdb_io)."""
