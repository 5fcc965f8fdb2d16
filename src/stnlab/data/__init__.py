"""Data: MNIST sources, distortion recipes and the LightningDataModules built from them."""

from stnlab.data.datamodule import DigitDataModule, DistortedMNIST, MultiDigitMNIST
from stnlab.data.mnist import DataSourceError, Digits, download, load_idx, load_sample, read_idx

__all__ = ["DataSourceError", "DigitDataModule", "Digits", "DistortedMNIST", "MultiDigitMNIST",
           "download", "load_idx", "load_sample", "read_idx"]
