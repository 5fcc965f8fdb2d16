"""Data: MNIST sources, distortion recipes and the LightningDataModules built from them."""

from stnlab.data.datamodule import DigitDataModule, DistortedMNIST, MultiDigitMNIST
from stnlab.data.mnist import DataSourceError, Digits, download, load_idx, load_sample, read_idx
from stnlab.data.svhn import SVHNSequences, load_svhn, read_digit_struct

__all__ = ["DataSourceError", "DigitDataModule", "Digits", "DistortedMNIST", "MultiDigitMNIST",
           "SVHNSequences", "download", "load_idx", "load_sample", "load_svhn", "read_digit_struct",
           "read_idx"]
