"""Whole-slide images: from slide files to tile shards (``medssl data tile``).

One job per module: :mod:`~medssl.wsi.slide` (open and read slides), :mod:`~medssl.wsi.grid`
(level choice from mpp, tile grid), :mod:`~medssl.wsi.tissue` (tissue mask),
:mod:`~medssl.wsi.thumbnail`, :mod:`~medssl.wsi.shards` (the HDF5 shard format),
:mod:`~medssl.wsi.manifest`, :mod:`~medssl.wsi.tiler` (one slide, and many over a process
pool), :mod:`~medssl.wsi.splits` (slide-level splits) and :mod:`~medssl.wsi.commands`.
The dataset that reads the shards is :mod:`medssl.data.wsi_tiles`.
"""
