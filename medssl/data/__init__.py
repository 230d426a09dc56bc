"""Datasets: PCAM HDF5, MedMNIST npz, STL-10 binary, own image folders, embedded sample,
whole-slide tiles (``wsi_tiles``, written by ``medssl data tile``).

Importing this package registers every dataset in :data:`medssl.registry.DATASETS`.
"""

from medssl.data import dicom, folder, medmnist, nifti, pcam, sample, stl10, wsi_tiles  # noqa: F401  (registration)
from medssl.data.base import MedicalImageDataset
from medssl.data.open import open_dataset
from medssl.tasks import TASKS

__all__ = ["TASKS", "MedicalImageDataset", "open_dataset"]
