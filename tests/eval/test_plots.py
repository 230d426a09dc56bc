"""Figures: files are real PNGs of the expected size; the reliability bins match the ECE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medssl.eval.metrics import evaluate_predictions, expected_calibration_error
from medssl.eval.plots import reliability_bins, tsne_embedding, write_plots


def _data(n: int = 120, c: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 2.0 * np.eye(c)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    emb = rng.normal(size=(n, 16)) + 3.0 * np.eye(c, 16)[y]
    return y, p, emb


@pytest.mark.parametrize("task,c", [("multiclass", 3), ("binary", 2)])
def test_write_plots_makes_nontrivial_pngs(tmp_path: Path, task: str, c: int) -> None:
    y, p, emb = _data(c=c)
    names = [f"class{i}" for i in range(c)]
    m = evaluate_predictions(y, p, task, names, ci=False)
    files = write_plots(tmp_path, y, p, task, names, m, embeddings=emb, tsne_max_points=60)
    assert set(files) == {"roc", "confusion", "reliability", "tsne"}
    sizes = {"roc": (600, 500), "reliability": (500, 600), "tsne": (600, 500)}
    for name, fname in files.items():
        path = tmp_path / fname
        assert path.stat().st_size > 5_000, name
        with Image.open(path) as im:
            assert im.format == "PNG"
            if name in sizes:
                assert im.size == sizes[name], name


def test_reliability_bins_add_up_to_the_ece() -> None:
    y, p, _ = _data()
    b = reliability_bins(y, p, "multiclass", 15)
    assert b["count"].sum() == len(y)
    ok = b["count"] > 0
    ece = np.sum(b["count"][ok] / len(y) * np.abs(b["accuracy"][ok] - b["confidence"][ok]))
    assert ece == pytest.approx(expected_calibration_error(y, p, "multiclass"))


def test_tsne_subsamples_and_is_seeded() -> None:
    y, _, emb = _data(n=120)
    xy, yy, idx = tsne_embedding(emb, y, seed=3, max_points=50)
    xy2, _, idx2 = tsne_embedding(emb, y, seed=3, max_points=50)
    assert xy.shape == (50, 2) and np.array_equal(idx, idx2) and np.allclose(xy, xy2)
    assert np.array_equal(yy, y[idx])


def test_every_title_names_the_seed_and_reliability_the_ece_across_seeds(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.figure

    titles = {}
    real = matplotlib.figure.Figure.savefig

    def keep(fig, path, *a, **kw):
        texts = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
        # the figure is written to a temporary ".roc.png.XXXX.tmp" next to roc.png, then renamed
        titles[Path(str(path)).name.lstrip(".").split(".")[0]] = " | ".join(t for t in texts if t)
        real(fig, path, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    y, p, emb = _data()
    names = ["a", "b", "c"]
    m = evaluate_predictions(y, p, "multiclass", names, ci=False)
    write_plots(tmp_path, y, p, "multiclass", names, m, embeddings=emb, tsne_max_points=60,
                shown="seed 0 (first of 3 seeds)", ece_across_seeds="0.283 ± 0.022")
    assert set(titles) == {"roc", "confusion", "reliability", "tsne"}
    assert all("seed 0 (first of 3 seeds)" in t for t in titles.values()), titles
    assert f"ECE {m['ece']:.3f}" in titles["reliability"] and "ECE across seeds 0.283 ± 0.022" in titles["reliability"]
