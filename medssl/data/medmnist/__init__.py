"""MedMNIST v2 (2-D) ``.npz`` files, official or in the same layout.

Modules by job: :mod:`~medssl.data.medmnist.files` (official metadata, md5, file names,
sidecar task / class names), :mod:`~medssl.data.medmnist.fetch` (where to get a file, and
the opt-in download), :mod:`~medssl.data.medmnist.npy_cache` (the memory-map copies),
:mod:`~medssl.data.medmnist.dataset` (:class:`MedMNISTDataset`) and
:mod:`~medssl.data.medmnist.writer` (:func:`write_medmnist_npz`).

Registry name ``medmnist``::

    DATASETS.build({"name": "medmnist", "root": "data/medmnist", "flag": "bloodmnist",
                    "split": "train"})

Config keys (all keyword arguments of :class:`MedMNISTDataset`):

* ``flag`` -- dataset flag, e.g. ``bloodmnist``, ``pathmnist``, ``chestmnist``. Official
  flags are those in ``medmnist.INFO`` (2-D ones only); any other flag is a *custom* file.
* ``root`` -- the directory holding the file. Required unless ``path`` is given: medssl
  never falls back to a hidden default such as ``~/.medmnist``.
* ``split`` -- ``train`` | ``val`` | ``test`` (``valid`` is accepted for ``val``).
* ``size`` -- ``None`` or 28 (file ``{flag}.npz``), 64, 128 or 224 (file
  ``{flag}_{size}.npz``).
* ``path`` -- an explicit ``.npz`` file instead of ``root`` + ``flag``; the flag is then the
  file stem without any ``_{size}`` suffix (``bloodmnist_64.npz`` -> ``bloodmnist``, size 64).
* ``task``, ``class_names`` -- overrides, meant for custom files (see below).
* ``verify`` (default ``False``) -- check the file's md5 against ``medmnist.INFO``.
* ``mmap`` (default ``None`` = automatic: on for images of 128 px or more) -- keep the
  images on disk instead of in RAM (see "Large sizes").
* ``cache_dir`` -- where the on-disk ``.npy`` copies go (default: next to the npz).

File layout (the official one): a numpy ``.npz`` archive with keys ``{split}_images``
(uint8, ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB) and ``{split}_labels``
(``(N, 1)`` integer class index, or ``(N, K)`` 0/1 for multi-label ChestMNIST) for each
split present. A file may hold only some splits (e.g. a train-only subset).

Items are ``(image, label)``: ``image`` is HWC uint8 (grayscale gets ``C = 1``);
``label`` is a Python ``int`` for binary / multi-class / ordinal flags and a
``float32`` vector of length ``num_classes`` for multi-label flags.

Task and class names: for official flags they come from ``medmnist.INFO`` (its task
strings map to ours: ``binary-class`` -> ``binary``, ``multi-class`` -> ``multiclass``,
``multi-label, binary-class`` -> ``multilabel``, ``ordinal-regression`` -> ``ordinal``).
For a custom flag, medssl reads a sidecar ``<stem>.json`` next to the npz with keys
``task`` (one of ours or MedMNIST's strings), ``class_names`` (a list, or MedMNIST's
``{"0": name}`` dict) and optional ``description``; ``task`` / ``class_names``
arguments override it. :func:`write_medmnist_npz` writes both files.

Where to get the files: the official files are on Zenodo,
https://zenodo.org/records/10519652 (``medmnist.INFO[flag]["url"]`` is the direct link
of each; ``python -m medmnist download --size=28 --root=DIR`` fetches *all* flags of one
size). Put ``{flag}.npz`` / ``{flag}_{size}.npz`` in ``root``: medssl never downloads.

Large sizes: numpy cannot memory-map arrays inside an ``.npz``, so with ``mmap`` on, the
split's images are copied once (streamed, never whole in RAM) to
``{stem}.{split}_images.{key}.npy`` in ``cache_dir`` (default: the npz's directory),
written atomically, and read one item at a time with ``os.pread``
(:mod:`medssl.data.rowreader`), opened lazily in each DataLoader worker, so resident
memory stays at one image whatever the file size. The copy is keyed by the npz's
*content*, never its timestamp: ``key`` (16 hex digits) hashes the npz size, the sha256 of
its first and last MiB and the CRC-32 and size the zip archive records for the member's
whole uncompressed content (checked by ``zipfile`` when the copy is made). A replaced
npz, even one carrying an older mtime (``cp -p``, ``tar``), gets a new key and a new
copy; copies of other keys for the same split are deleted then.
"""

from medssl.data.medmnist.dataset import MedMNISTDataset
from medssl.data.medmnist.files import SIZES, SPLITS, file_md5, npz_filename, official_info, official_md5, parse_stem
from medssl.data.medmnist.writer import write_medmnist_npz

__all__ = [
    "MedMNISTDataset", "write_medmnist_npz", "official_info", "official_md5", "npz_filename",
    "parse_stem", "file_md5", "SPLITS", "SIZES",
]  # fmt: skip
