"""A PNG grid of original images and their augmented views, to eyeball a recipe.

Rows are images, the first column the original, the next ``views`` columns its views
(de-normalised for display). Used by ``medssl augment preview``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from medssl.augment.pipeline import check_image
from medssl.augment.presets import build_augmentation, resolve_params
from medssl.augment.views import MultiView, parse_augment_section
from medssl.errors import ConfigError, DataError
from medssl.text import no_such_file

AugmentSpec = Union[str, Mapping[str, Any], List[Mapping[str, Any]]]


def load_augment_spec(config_or_preset: str) -> Tuple[AugmentSpec, Optional[int]]:
    """A preset name, or a YAML file with an ``augment:`` mapping -> (view spec, image_size).

    The mapping is read by :func:`medssl.augment.views.parse_augment_section`; a
    ``views`` list gives per-view specs (asymmetric recipes); ``device`` is ignored here.
    """
    path = Path(config_or_preset)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return config_or_preset, None
    if not path.is_file():
        raise ConfigError(no_such_file("augmentation config", path))
    from medssl.config import load_yaml

    doc = load_yaml(path)
    section = parse_augment_section(doc.get("augment") if isinstance(doc, dict) else None, source=str(path))
    return section.views, section.image_size


def denormalise(view: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """A normalised ``(C, H, W)`` tensor -> ``(H, W, C)`` float in [0, 1] for display."""
    x = view.detach().cpu().float().numpy().transpose(1, 2, 0)
    return np.clip(x * np.asarray(std, np.float32) + np.asarray(mean, np.float32), 0.0, 1.0)


def render_grid(
    images: Sequence[np.ndarray],
    views: MultiView,
    out: Union[str, Path],
    seed: int = 0,
    title: str = "",
) -> Path:
    """Write the grid PNG to ``out`` (parents created) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    n, cols = len(images), 1 + views.n_views
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n), squeeze=False)
    for r, image in enumerate(images):
        img = check_image(image)
        axes[r, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255)
        for c, (t, v) in enumerate(zip(views.transforms, views(img, rng)), start=1):
            mean, std = t.plan.normalisation(v.shape[0])
            shown = denormalise(v, mean, std)
            axes[r, c].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
    for c in range(cols):
        axes[0, c].set_title("original" if c == 0 else f"view {c}", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    from medssl.fileio import atomic_savefig

    out = Path(out)
    try:
        atomic_savefig(fig, out, "the preview", dpi=100)
    finally:
        plt.close(fig)
    return out


def pick_images(dataset: Any, n: int) -> List[np.ndarray]:
    """``n`` images spread evenly over the dataset (deterministic)."""
    length = len(dataset)
    if length == 0:
        raise DataError("the dataset to preview is empty")
    idx = np.unique(np.linspace(0, length - 1, num=min(n, length)).round().astype(int))
    return [dataset[int(i)][0] for i in idx]


def preview(
    config_or_preset: str,
    data: Union[str, Mapping[str, Any]],
    out: Union[str, Path],
    split: Optional[str] = "train",
    n: int = 8,
    n_views: int = 4,
    seed: int = 0,
    image_size: Optional[int] = None,
) -> Path:
    """Open ``data`` with :func:`medssl.data.open_dataset`, augment ``n`` images into
    ``n_views`` views each and write the grid PNG to ``out``."""
    if n < 1 or n_views < 1:
        raise ConfigError(f"--n and --views must be positive, got {n} and {n_views}")
    raw, cfg_size = load_augment_spec(config_or_preset)
    # resolved once, before any data is read, so a config mistake fails first
    spec = [resolve_params(v) for v in raw] if isinstance(raw, list) else resolve_params(raw)
    try:
        from medssl.data import open_dataset
    except ImportError as exc:  # pragma: no cover - depends on the data package's progress
        raise DataError("medssl.data.open_dataset is not available in this installation") from exc
    dataset = open_dataset(data, split=split)
    images = pick_images(dataset, n)
    size = image_size or cfg_size or int(check_image(images[0]).shape[0])
    if isinstance(spec, list):
        views = MultiView([build_augmentation(s, size) for s in spec])
    else:
        aug = build_augmentation(spec, size)
        views = MultiView([aug] * n_views)
    return render_grid(images, views, out, seed=seed, title=f"{config_or_preset} @ {size}px")
