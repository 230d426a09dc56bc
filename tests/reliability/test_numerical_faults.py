"""Numerical faults: a non-finite loss, exploding gradients, collapsed embeddings, fp16
overflow. Each either stops the run through the CLI with exit 2, a one-line message and
the last good checkpoint kept, or is bounded and reported in the metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
import torch

from medssl.checkpoint_io import load_checkpoint

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml


def _rows(run: Path) -> List[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _args(sample: Path, tmp: Path, objective: str = "simclr", **train: Any) -> List[str]:
    cfg = write_yaml(tmp / "cfg.yaml", tiny_cfg(sample, tmp / "run", objective, **train))
    return ["pretrain", str(cfg), "--no-progress"]


def test_nan_loss_through_the_cli_exits_2_and_keeps_the_last_good_checkpoint(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.objectives.simclr import SimCLR

    forward = SimCLR.forward
    calls = {"n": 0}

    def poisoned(self: Any, outputs: Any, support: Any = None, **kw: Any) -> Any:
        calls["n"] += 1
        loss, diag = forward(self, outputs, support, **kw)
        return (loss * float("inf") * 0 if calls["n"] >= 3 else loss), diag

    monkeypatch.setattr(SimCLR, "forward", poisoned)
    rc, _, err = run_cli(_args(sample_dir, tmp_path, max_steps=6, ckpt_every=1))
    assert_clean_cli_error(rc, err, r"the loss became nan at step 3\. The last good checkpoint is "
                                    r".*step_00000002\.pt\. Lower optim\.lr, set optim\.grad_clip")
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == ["step_00000001.pt", "step_00000002.pt"]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "encoder.safetensors").exists()  # no encoder from a broken run


def test_grad_clip_bounds_the_update_and_logs_the_norm(sample_dir: Path, tmp_path: Path) -> None:
    """With a huge lr and optim.grad_clip, the logged grad_norm is the pre-clip norm and the
    SGD update of every step is at most lr * clip (plain SGD, no momentum/decay)."""
    lr, clip = 1e3, 1e-3
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, ckpt_every=1)
    cfg["optim"] = {"name": "sgd", "lr": lr, "momentum": 0.0, "weight_decay": 0.0, "grad_clip": clip}
    rc, _, err = run_cli(["pretrain", str(write_yaml(tmp_path / "cfg.yaml", cfg)), "--no-progress"])
    assert rc == 0, err
    rows = _rows(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["grad_norm"] > clip for r in rows)  # the gradients really were clipped
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000001.pt")
    b = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000002.pt")
    lr_step2 = rows[0]["lr"]  # the scheduler's lr used by step 2 (logged after step 1)
    trainable = [k for k in a["model"] if a["model"][k].is_floating_point() and "running" not in k
                 and not k.startswith("target")]
    delta = torch.cat([(b["model"][k] - a["model"][k]).flatten() for k in trainable])
    assert 0 < float(delta.norm()) <= lr_step2 * clip * (1 + 1e-3)


def test_huge_lr_without_clipping_stops_instead_of_training_on(sample_dir: Path, tmp_path: Path) -> None:
    args = _args(sample_dir, tmp_path, max_steps=30, ckpt_every=100, collapse_patience=3)
    rc, _, err = run_cli(args + ["optim.lr=1e12", "optim.momentum=0"])
    assert_clean_cli_error(rc, err, r"(the loss became (nan|inf)|the embeddings collapsed).*No checkpoint was "
                                    r"written before this step")
    assert not (tmp_path / "run" / "encoder.safetensors").exists()


def test_collapsed_embeddings_stop_the_run_through_the_cli(sample_dir: Path, tmp_path: Path) -> None:
    args = _args(sample_dir, tmp_path, max_steps=4, ckpt_every=1, collapse_std=10.0, collapse_patience=2)
    rc, _, err = run_cli(args)
    assert_clean_cli_error(rc, err, r"the embeddings collapsed: emb_std stayed below 10\.0 for 2 steps .* "
                                    r"The last good checkpoint is .*step_00000001\.pt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 GradScaler overflow handling needs CUDA")
def test_fp16_overflow_is_skipped_by_the_grad_scaler(sample_dir: Path, tmp_path: Path) -> None:
    """A step whose fp16 gradients overflow is skipped (weights unchanged, scale halved)
    rather than writing inf into the weights. Runs only where CUDA is available."""
    from medssl.train.config import load_pretrain_config
    from medssl.train.loop import Pretrainer

    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, device="cuda", amp="fp16",
                   deterministic=False)
    trainer = Pretrainer(load_pretrain_config(data=cfg), progress=False)
    assert trainer.scaler.is_enabled()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.scaler.update(new_scale=torch.tensor(2.0 ** 120, device="cuda"))  # guarantees an fp16 overflow
    batch = next(iter(trainer.loader))
    trainer.train_step(batch)
    after = trainer.model.state_dict()
    assert trainer.scaler.get_scale() < 2.0 ** 120
    for k, v in before.items():
        if v.is_floating_point() and not k.startswith("target") and "running" not in k and "num_batches" not in k:
            assert torch.equal(after[k], v), k
