"""End-to-end pretraining on the embedded sample (a few CPU steps each), exact resume,
health stops and run-directory rules."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from medssl.checkpoint_io import load_checkpoint
from medssl.errors import ConfigError, MedSSLError
from medssl.models.export import load_encoder
from medssl.train.config import load_pretrain_config
from medssl.train.loop import Pretrainer, pretrain
from medssl.train.monitor import TrainingStopped
from pretrain_helpers import tiny_cfg

@pytest.mark.parametrize("objective", ["simclr", "nnclr", "pnnclr", "snclr", "psm"])
def test_every_objective_trains_end_to_end(sample_dir: Path, tmp_path: Path, objective: str) -> None:
    overrides = ["objective.k=4"] if objective in ("snclr", "psm") else []
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / objective, objective, max_steps=3), overrides=overrides)
    res = pretrain(cfg, progress=False)
    assert res.steps == 3 and torch.isfinite(torch.tensor(res.last_loss))
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all("lr" in r and "emb_std" in r for r in rows)
    if objective != "simclr":
        assert any("nn_purity" in r for r in rows[1:])  # the sample is labelled: purity is logged
    for name in ("config.yaml", "metrics.csv", "loss.png", "encoder.safetensors", "encoder.json"):
        assert (res.run_dir / name).is_file(), name
    model, preprocess = load_encoder(res.run_dir)
    x = preprocess([torch.zeros(28, 28, 3, dtype=torch.uint8).numpy()] * 2)
    assert model(x).shape == (2, model.num_features)


def _state(trainer: Pretrainer) -> Dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    if trainer.support is not None:
        out.update({f"support.{k}": v for k, v in trainer.support.state_dict().items() if torch.is_tensor(v)})
    return out


@pytest.mark.parametrize("objective", ["pnnclr", "psm"])
def test_interrupted_and_resumed_run_is_bitwise_identical(sample_dir: Path, tmp_path: Path, objective: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    extra = ["objective.k=4"] if objective == "psm" else []
    full = Pretrainer(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "full", objective, max_steps=5),
                                           overrides=extra), progress=False)
    full.fit()
    expected = _state(full)

    cfg = tiny_cfg(sample_dir, tmp_path / "cut", objective, max_steps=5, ckpt_every=100)
    first = Pretrainer(load_pretrain_config(data=cfg, overrides=extra), progress=False)
    original = first.train_step

    def stop_after_two(batch: Any) -> Any:
        out = original(batch)
        if first.step == 2:
            first._stop_signal = 15  # as if SIGTERM arrived during step 2
        return out

    monkeypatch.setattr(first, "train_step", stop_after_two)
    res = first.fit()
    assert res.steps == 2 and res.encoder is None and res.checkpoint is not None
    assert load_checkpoint(res.checkpoint)["step"] == 2

    resumed = Pretrainer(load_pretrain_config(data=cfg, overrides=extra + ["train.resume=auto"]), progress=False)
    res2 = resumed.fit()
    assert res2.steps == 5 and res2.encoder is not None
    got = _state(resumed)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    steps = [json.loads(line)["step"] for line in (res2.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_nan_loss_stops_and_names_last_checkpoint(sample_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Pretrainer(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "nan", "simclr",
                                                            max_steps=6, ckpt_every=2)), progress=False)
    forward = trainer.objective.forward

    def poisoned(outputs: Any, support: Any = None, **kw: Any) -> Any:
        loss, diag = forward(outputs, support, **kw)
        return (loss * float("nan") if trainer.step >= 3 else loss), diag

    monkeypatch.setattr(trainer.objective, "forward", poisoned)
    with pytest.raises(TrainingStopped, match=r"loss became nan at step 4.*step_00000002.pt"):
        trainer.fit()
    ckpts = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert ckpts == ["step_00000002.pt"]  # nothing written after the bad step


def test_collapse_stops_the_run(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "c", "simclr", max_steps=4,
                                             collapse_std=10.0, collapse_patience=2))
    with pytest.raises(TrainingStopped, match="collapsed: emb_std stayed below 10.0 for 2 steps"):
        pretrain(cfg, progress=False)


def test_second_run_in_same_directory_is_refused(sample_dir: Path, tmp_path: Path) -> None:
    data = tiny_cfg(sample_dir, tmp_path / "same", "simclr", max_steps=2)
    pretrain(load_pretrain_config(data=data), progress=False)
    with pytest.raises(MedSSLError, match="already holds checkpoints of another run"):
        pretrain(load_pretrain_config(data=data), progress=False)


def test_batch_larger_than_dataset_is_a_config_error(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "b", "simclr", batch_size=4096))
    with pytest.raises(ConfigError, match="fewer than one batch of train.batch_size=4096"):
        Pretrainer(cfg, progress=False)


def test_dataloader_workers_give_the_same_first_step(sample_dir: Path, tmp_path: Path) -> None:
    losses = []
    for workers in (0, 2):
        cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / f"w{workers}", "simclr", max_steps=1,
                                                 num_workers=workers))
        losses.append(pretrain(cfg, progress=False).last_loss)
    assert losses[0] == losses[1]


def test_batched_augmentation_path_trains_and_resumes_exactly(sample_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`augment.device: batch` is the on-device pipeline (the CUDA path) run on the CPU."""
    extra = ["augment.device=batch"]
    full = Pretrainer(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "full", "pnnclr", max_steps=4),
                                           overrides=extra), progress=False)
    assert full.on_device_aug
    full.fit()
    cfg = tiny_cfg(sample_dir, tmp_path / "cut", "pnnclr", max_steps=4, ckpt_every=100)
    first = Pretrainer(load_pretrain_config(data=cfg, overrides=extra), progress=False)
    original = first.train_step

    def stop_after_one(batch: Any) -> Any:
        out = original(batch)
        if first.step == 1:
            first._stop_signal = 15
        return out

    monkeypatch.setattr(first, "train_step", stop_after_one)
    first.fit()
    resumed = Pretrainer(load_pretrain_config(data=cfg, overrides=extra + ["train.resume=auto"]), progress=False)
    resumed.fit()
    expected, got = _state(full), _state(resumed)
    for k in expected:
        assert torch.equal(got[k], expected[k]), k


def test_explicit_train_threads_win_over_the_environment_and_are_restored(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "t", "simclr", max_steps=1, threads=1))
    trainer = Pretrainer(cfg, progress=False)
    assert torch.get_num_threads() == 1 and trainer.thread_plan is not None
    assert "1 torch thread (train.threads=1)" in capsys.readouterr().err
    torch.set_num_threads(before)
    pretrain(dataclasses.replace(cfg, out_dir=str(tmp_path / "t2")), progress=False)
    assert torch.get_num_threads() == before  # the caller's setting comes back


def test_auto_threads_split_the_cores_between_local_ranks(sample_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from medssl.threads import available_cores

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for ranks in (1, 2, 64):
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
        cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / f"a{ranks}", "simclr", max_steps=1))
        plan = Pretrainer(cfg, progress=False).thread_plan
        assert plan is not None and plan.threads == max(1, available_cores() // ranks)
        assert plan.threads * min(ranks, available_cores()) <= available_cores()
    torch.set_num_threads(before)


def test_cpu_autocast_is_bf16_only_when_asked_and_native(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import medssl.train.loop as loop

    cpu = torch.device("cpu")
    monkeypatch.setattr("medssl.precision.cpu_has_native_bf16", lambda: True)
    assert loop.resolve_amp("bf16", cpu) is torch.bfloat16
    assert loop.resolve_amp("auto", cpu) is None and loop.resolve_amp("fp16", cpu) is None
    monkeypatch.setattr("medssl.precision.cpu_has_native_bf16", lambda: False)
    assert loop.resolve_amp("bf16", cpu) is None
    assert "no native bf16" in capsys.readouterr().err


def test_bf16_autocast_trains_on_a_cpu(sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl.train.loop as loop

    monkeypatch.setattr("medssl.precision.cpu_has_native_bf16", lambda: True)
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "bf", "pnnclr", max_steps=2, amp="bf16",
                                             device="cpu"))
    trainer = Pretrainer(cfg, progress=False)
    assert trainer.amp_dtype is torch.bfloat16
    res = trainer.fit()
    assert res.steps == 2 and math.isfinite(res.last_loss)


def _probe_answers(monkeypatch: pytest.MonkeyPatch, dtype: Any) -> None:
    """Make the precision probe of ``train.amp: auto`` answer ``dtype`` (timings injected)."""
    import medssl.train.loop as loop
    from medssl.precision import PrecisionChoice

    fp32_s, bf16_s = (2.0, 1.0) if dtype is torch.bfloat16 else (1.0, 2.0)
    monkeypatch.setattr(loop, "choose_cpu_precision",
                        lambda model, step, shape: PrecisionChoice(dtype, fp32_s, bf16_s, "probe"))


def _probe_must_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import medssl.train.loop as loop

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("the precision probe ran")
    monkeypatch.setattr(loop, "choose_cpu_precision", refuse)


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "bf16"), (None, "float32")])
def test_auto_on_a_cpu_trains_in_what_the_probe_chose_and_records_it(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        dtype: Any, name: str) -> None:
    _probe_answers(monkeypatch, dtype)
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, device="cpu"))
    assert cfg.train.amp == "auto"
    res = pretrain(cfg, progress=False)
    assert f"train.amp=auto: {name} (one step" in capsys.readouterr().err
    assert load_checkpoint(res.checkpoint)["precision"] == name


def test_a_resumed_run_keeps_its_precision_unless_told(sample_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    _probe_answers(monkeypatch, torch.bfloat16)
    monkeypatch.setattr("medssl.train.loop.cpu_has_native_bf16", lambda: True)
    pretrain(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2, device="cpu")),
             progress=False)
    _probe_must_not_run(monkeypatch)  # a resumed run is not probed again
    capsys.readouterr()
    res = pretrain(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=3,
                                                      device="cpu", resume=True)), progress=False)
    assert "bf16, the precision the resumed run was trained in" in capsys.readouterr().err
    assert load_checkpoint(res.checkpoint)["precision"] == "bf16"
    # train.amp is a machine key: an explicit value wins on resume, and is not a config change to force
    res = pretrain(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=4,
                                                      device="cpu", resume=True, amp="off")), progress=False)
    assert res.steps == 4 and load_checkpoint(res.checkpoint)["precision"] == "float32"


def test_explicit_precisions_and_a_cpu_without_bf16_are_never_probed(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _probe_must_not_run(monkeypatch)
    res = pretrain(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "off", "simclr", max_steps=1,
                                                      device="cpu", amp="off")), progress=False)
    assert load_checkpoint(res.checkpoint)["precision"] == "float32"
    import medssl.precision
    import medssl.train.loop as loop

    monkeypatch.setattr(loop, "choose_cpu_precision", medssl.precision.choose_cpu_precision)
    monkeypatch.setattr(medssl.precision, "cpu_has_native_bf16", lambda: False)
    res = pretrain(load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "auto", "simclr", max_steps=1,
                                                      device="cpu")), progress=False)
    assert "train.amp=auto: float32 (this CPU has no native bf16)" in capsys.readouterr().err
    assert load_checkpoint(res.checkpoint)["precision"] == "float32"


def test_compile_reports_the_first_step_time(sample_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "c", "simclr", max_steps=2, compile="eager"))
    res = pretrain(cfg, progress=False)
    assert res.steps == 2
    assert "medssl: torch.compile: the first step (tracing and compiling) took" in capsys.readouterr().err
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["compile_s"] > 0 and "compile_s" not in rows[1]


def test_unknown_compile_backend_is_a_config_error(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "u", "simclr", compile="warp_drive"))
    with pytest.raises(ConfigError, match="train.compile: unknown torch.compile backend 'warp_drive'"):
        Pretrainer(cfg, progress=False)


def test_warmup_fraction_reaches_the_learning_rate_and_a_too_long_warmup_is_announced(
        sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def lrs(out: Path, optim: Dict[str, Any]) -> list:
        data = tiny_cfg(sample_dir, out, "simclr", max_steps=4)
        data["optim"].update(optim)
        res = pretrain(load_pretrain_config(data=data), progress=False)
        return [json.loads(line)["lr"] for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]

    scaled = lrs(tmp_path / "fraction", {"warmup_fraction": 0.5})
    assert max(scaled) == pytest.approx(0.05) and scaled[0] < 0.05
    assert "never reaches optim.lr" not in capsys.readouterr().err
    stuck = lrs(tmp_path / "steps", {"warmup_steps": 10})
    assert max(stuck) < 0.05 * 0.5
    assert "optim.warmup_steps=10 is not shorter than this run's 4 steps" in capsys.readouterr().err


def test_projector_shape_follows_the_config(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r", "simclr", max_steps=1,
                                             model={"proj_layers": 2, "proj_last_bn": False}))
    trainer = Pretrainer(cfg, progress=False)
    kinds = [type(m).__name__ for m in trainer.model.projector.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert trainer.model.per_view_bn is False


def test_per_view_bn_reaches_the_model_and_trains(sample_dir: Path, tmp_path: Path) -> None:
    # (tests/models/test_ssl_model.py checks the per-view forward itself, predictor and target included)
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r", "simclr", max_steps=1,
                                             model={"per_view_bn": True}))
    trainer = Pretrainer(cfg, progress=False)
    assert trainer.model.per_view_bn is True
    res = trainer.fit()
    assert res.steps == 1 and math.isfinite(res.last_loss)
    with pytest.raises(ConfigError, match="key 'model.per_view_bn' must be true or false, got 'yes'"):
        load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r2", "pnnclr", model={"per_view_bn": "yes"}))


def test_predictor_false_reaches_the_model_and_trains(sample_dir: Path, tmp_path: Path) -> None:
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r", "pnnclr", max_steps=2,
                                             model={"predictor": False}))
    trainer = Pretrainer(cfg, progress=False)
    assert isinstance(trainer.model.predictor, torch.nn.Identity)
    res = trainer.fit()
    assert res.steps == 2 and math.isfinite(res.last_loss)
    # SimCLR never reads predictions: asking for a head is refused when the config loads
    with pytest.raises(ConfigError, match="model.predictor=true, but objective 'simclr' never reads predictions"):
        load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r2", "simclr", model={"predictor": True}))


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_is_the_cpu_layout_unless_turned_off(sample_dir: Path, tmp_path: Path, channels_last: bool) -> None:
    """On a CPU channels_last measured 1.1-1.3x faster (docs/benchmarks.md, "CPU fast path"):
    the model and every batch of views use it by default."""
    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "r", "pnnclr", max_steps=1,
                                             channels_last=channels_last))
    trainer = Pretrainer(cfg, progress=False)
    convs = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) == channels_last for p in convs
                         if p.shape[2] * p.shape[3] > 1)
    views, _, _ = trainer._views(next(iter(trainer.loader)))
    assert all(v.is_contiguous(memory_format=torch.channels_last) == channels_last for v in views)



def test_warmup_notice_names_the_key_that_filled_the_run(tmp_path: Path) -> None:
    from medssl.train.builders import warmup_notice

    def notice(optim: Dict[str, Any], steps: int) -> Any:
        cfg = load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)}, "optim": optim})
        return warmup_notice(cfg, steps)

    # a fraction that rounds up to the whole of a 2-step run is named as the fraction
    msg = notice({"warmup_fraction": 0.8, "warmup_steps": 0}, 2)
    assert msg is not None and "optim.warmup_fraction=0.8 gives 2 warm-up steps" in msg and "warmup_steps" not in msg
    assert notice({"warmup_fraction": 0.8}, 100) is None
    assert "optim.warmup_steps=10 is not shorter than this run's 10 steps" in notice({"warmup_steps": 10}, 10)
    assert notice({"warmup_steps": 10}, 11) is None
