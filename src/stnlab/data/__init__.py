"""Data: MNIST and SVHN sources, distortion recipes and the LightningDataModules built on them.

``digits`` holds the shared DataModule machinery (split, fixed evaluation sets, seeded training
stream), ``loading`` the datasets and loaders under it; each task's DataModule has its own
module (``distorted``, ``multidigit``); ``distortions`` the recipes, one family a module.
"""

from stnlab.data.colocalisation import ColocalisationMNIST
from stnlab.data.cub import CUBData
from stnlab.data.digits import DigitDataModule
from stnlab.data.distorted import DistortedMNIST
from stnlab.data.fixed_batch import FixedBatch
from stnlab.data.image_folder import ImageFolderData
from stnlab.data.mnist import DataSourceError, Digits, download, load_idx, load_sample, read_idx
from stnlab.data.multidigit import MultiDigitMNIST
from stnlab.data.svhn import SVHNSequences, load_svhn, read_digit_struct
from stnlab.data.svhn_sequences import SVHNSequenceData

__all__ = ["DataSourceError", "DigitDataModule", "Digits", "DistortedMNIST", "MultiDigitMNIST",
           "SVHNSequenceData", "SVHNSequences", "download", "load_idx", "load_sample", "load_svhn",
           "read_digit_struct", "read_idx"]
__all__ += ["CUBData", "ColocalisationMNIST", "FixedBatch", "ImageFolderData"]
