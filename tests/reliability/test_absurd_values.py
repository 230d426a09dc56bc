"""Absurd values, through the CLI: one ``medssl: error:`` line naming the key, never a
traceback from a dependency and never a silently different run.

Seeds outside what the generators take, aliases and huge values in overrides (the limits
of config files hold there too), sizes that cannot be allocated (estimated before any
allocation), finite floats beyond float32, empty and ``~`` paths, and errors raised inside
DataLoader worker processes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml

ALIAS_BOMB = "[" + ",".join(["&a [x,x,x,x,x,x,x,x,x,x]"] + [f"&{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]"
                                                         for p, c in zip("abcdef", "bcdefg")]) + "]"

# name -> (overrides of the tiny pretraining config, pattern of the one error line)
PRETRAIN_CASES: Dict[str, Tuple[List[str], str]] = {
    "seed_negative": (["seed=-1"], r"seed must be an integer in \[0, 4294967295\], got -1"),
    "seed_beyond_64_bits": ([f"seed={2**70}"], r"'seed' .* too large for a 64-bit integer"),
    "seed_beyond_32_bits": ([f"seed={2**40}"], r"seed must be an integer in \[0, 4294967295\]"),
    "override_alias_to_itself": (["data.x=&a [*a]"], r"override data\.x: YAML aliases are not allowed"),
    "override_alias_bomb": ([f"objective.tau={ALIAS_BOMB}"], r"override objective\.tau: YAML aliases are not allowed"),
    "override_over_one_mib": (["data.x=[" + "1," * 600_000 + "1]"], r"override data\.x=\.\.\.: the value is 1\.2 MB"),
    "proj_hidden_huge": ([f"model.proj_hidden={10**12}"], r"cannot allocate [\d,.]+ GB for the projection head"),
    "pred_hidden_huge": ([f"model.pred_hidden={10**12}", "objective.name=nnclr"],
                         r"cannot allocate [\d,.]+ GB for the projection head.*pred_hidden"),
    "image_size_huge": (["augment.image_size=100000"], r"cannot allocate [\d,.]+ GB for one batch of views"),
    "batch_size_huge": ([f"train.batch_size={10**9}", "augment.image_size=64"],
                        r"cannot allocate [\d,.]+ GB for one batch of views"),
    "support_set_huge": ([f"support_set.size={10**13}"], r"cannot allocate [\d,.]+ GB for the support set"),
    "int_beyond_64_bits": ([f"model.proj_dim={2**70}"], r"model\.proj_dim.* too large for a 64-bit integer"),
    "lr_beyond_float32": (["optim.lr=1e300"], r"optim\.lr.* beyond the largest float32"),
    "weight_decay_beyond_float32": (["optim.weight_decay=1e39"], r"optim\.weight_decay.* beyond the largest float32"),
    "objective_float_beyond_float32": (["objective.tau=1e300"], r"objective\.tau.* beyond the largest float32"),
    "out_dir_empty": (["out_dir="], r"out_dir is empty"),
    "out_dir_blank": (["out_dir=' '"], r"out_dir is empty"),
}


@pytest.mark.parametrize("name", sorted(PRETRAIN_CASES))
def test_absurd_pretraining_values_give_one_line(name: str, sample_dir: Path, tmp_path: Path) -> None:
    overrides, pattern = PRETRAIN_CASES[name]
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=1))
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", *overrides])
    assert_clean_cli_error(rc, err, pattern)
    assert not (tmp_path / "run" / "encoder.safetensors").exists()


def _encoder(tmp: Path) -> Path:
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    net = build_backbone("test_resnet", in_chans=3, image_size=28, small_input_stem="auto")
    return export_encoder(net, tmp / "enc" / "encoder.safetensors", backbone="test_resnet", in_chans=3,
                          image_size=28, small_input_stem="auto", mean=[0.5] * 3, std=[0.25] * 3)


OTHER_SEED_CASES: Dict[str, Tuple[Callable[[Path, Path], List[str]], str]] = {
    "transfer_seed_negative": (lambda tmp, s: ["transfer", "--encoder", str(_encoder(tmp)), "--data",
                                               str(s / "medmnist" / "ihcstain.npz"), "--seed", "-1",
                                               "--out", str(tmp / "o")], r"seed must be an integer in \[0, "),
    "transfer_last_seed_beyond_range": (lambda tmp, s: ["transfer", "--encoder", str(_encoder(tmp)), "--data",
                                                        str(s / "medmnist" / "ihcstain.npz"), "--seed",
                                                        str(2**32 - 2), "--seeds", "3", "--out", str(tmp / "o")],
                                        r"seed must be an integer in \[0, 4294967293\]"),
    "sample_seed_negative": (lambda tmp, s: ["data", "sample", str(tmp / "smp"), "--seed", "-5"],
                             r"--seed must be an integer in \[0, 4294967295\], got -5"),
    "preview_seed_huge": (lambda tmp, s: ["augment", "preview", "histo", "--data", str(s / "medmnist" / "ihcstain.npz"),
                                          "--out", str(tmp / "p.png"), "--seed", str(2**64)],
                          r"--seed must be an integer in \[0, 4294967295\]"),
}


@pytest.mark.parametrize("name", sorted(OTHER_SEED_CASES))
def test_every_seed_flag_has_the_schema_range(name: str, sample_dir: Path, tmp_path: Path) -> None:
    build, pattern = OTHER_SEED_CASES[name]
    rc, _, err = run_cli(build(tmp_path, sample_dir))
    assert_clean_cli_error(rc, err, pattern)


def test_tilde_is_expanded_in_every_path_key(sample_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """out_dir, model.weights, train.resume (pretraining) and encoder / out / data (transfer)
    mean what a shell means by ~; nothing lands in a directory literally named ~."""
    import yaml

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "unused", "simclr", max_steps=1))
    rc, out, err = run_cli(["pretrain", str(cfg), "--print-config", "out_dir=~/runs/x",
                            "model.weights=~/w.safetensors", "train.resume=~/c.pt"])
    assert rc == 0, err
    shown = yaml.safe_load(out)
    home = str(tmp_path / "home")
    assert shown["out_dir"] == f"{home}/runs/x"
    assert shown["model"]["weights"] == f"{home}/w.safetensors" and shown["train"]["resume"] == f"{home}/c.pt"
    rc, out, err = run_cli(["transfer", "--encoder", "~/enc", "--data", "~/data.npz", "--out", "~/t", "--print-config"])
    assert rc == 0, err
    shown = yaml.safe_load(out)
    assert (shown["encoder"], shown["data"], shown["out"]) == (f"{home}/enc", f"{home}/data.npz", f"{home}/t")
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "out_dir=~/runs/y"])
    assert rc == 0, err
    assert (tmp_path / "home" / "runs" / "y" / "encoder.safetensors").is_file() and not (tmp_path / "~").exists()


def _zero_byte_folder(tmp: Path, sample: Path) -> Path:
    """Class folders whose images are zero-byte files, all but the first (which the run
    reads in the main process to learn the channel count), so the failure is in a worker."""
    root = tmp / "folder"
    shutil.copytree(sample / "folder", root, ignore=shutil.ignore_patterns("*.csv"))
    first = min(sorted(d.glob("*.png"))[0] for d in root.iterdir() if d.is_dir())
    for png in root.rglob("*.png"):
        if png != first:
            png.write_bytes(b"")
    return root


@pytest.mark.parametrize("workers", [0, 1])
def test_an_error_inside_a_dataloader_worker_is_the_same_one_line(workers: int, sample_dir: Path,
                                                                  tmp_path: Path) -> None:
    cfg = tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=1, num_workers=workers)
    cfg["data"] = {"name": "folder", "root": str(_zero_byte_folder(tmp_path, sample_dir))}
    cfg["augment"]["device"] = "cpu"
    rc, _, err = run_cli(["pretrain", str(write_yaml(tmp_path / "cfg.yaml", cfg)), "--no-progress"])
    assert_clean_cli_error(rc, err, r"^medssl: error: cannot read image .*\.png")
    assert "in DataLoader worker process" not in err and "Original Traceback" not in err


def test_user_message_unwraps_torchs_worker_reraise() -> None:
    from medssl.errors import DataError, user_message

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\n    raise DataError('boom: x')\n"
                        "medssl.errors.DataError: cannot read image a.png: empty file; fix it\n")
    assert user_message(wrapped) == "cannot read image a.png: empty file; fix it"
    assert user_message(DataError("plain: message")) == "plain: message"


def test_the_memory_estimate_is_a_lower_bound_that_passes_a_normal_run(sample_dir: Path, tmp_path: Path) -> None:
    from medssl.memory import check_allocation
    from medssl.train.config import load_pretrain_config
    from medssl.train.memory_plan import training_memory

    cfg = load_pretrain_config(data=tiny_cfg(sample_dir, tmp_path / "run", "simclr"))
    est = {what.split(" (")[0]: nbytes for nbytes, what, _ in training_memory(cfg, in_chans=3)}
    assert est["one batch of views"] == 8 * 2 * 3 * 28 * 28 * 4
    assert est["the support set"] == 64 * 16 * 4
    with pytest.raises(Exception, match=r"cannot allocate 2\.0 GB for x: this machine has 1\.0 GB available; do y"):
        check_allocation(2e9, "x", "do y", available=10**9)


def test_weights_of_another_architecture_are_refused_naming_keys_unless_partial(sample_dir: Path,
                                                                                tmp_path: Path) -> None:
    """A resnet18 encoder as model.weights of a test_resnet run used to be accepted with
    rc 0 (everything left at random init); now one line naming the keys, or -- asked for
    with model.partial_weights -- a run whose warning names them."""
    from medssl.models.backbone import build_backbone
    from medssl.models.export import export_encoder

    other = export_encoder(build_backbone("resnet18", in_chans=3, image_size=28), tmp_path / "r18.safetensors",
                           backbone="resnet18", in_chans=3, image_size=28, small_input_stem="auto",
                           mean=[0.5] * 3, std=[0.25] * 3)
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=1))
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", f"model.weights={other}"])
    assert_clean_cli_error(rc, err, r"model\.weights: backbone weights do not match the model: .*(missing|unexpected)"
                                    r".*model\.partial_weights: true")
    assert not (tmp_path / "run").exists() or not (tmp_path / "run" / "config.yaml").exists()
    with pytest.warns(UserWarning, match=r"unexpected in file \(ignored\)"):
        rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", f"model.weights={other}",
                              "model.partial_weights=true"])
    assert rc == 0, err
    own = export_encoder(build_backbone("test_resnet", in_chans=3, image_size=28), tmp_path / "own.safetensors",
                         backbone="test_resnet", in_chans=3, image_size=28, small_input_stem="auto",
                         mean=[0.5] * 3, std=[0.25] * 3)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", f"model.weights={own}", "--overwrite"])
    assert rc == 0, err  # the same architecture loads strictly


def test_a_full_disk_in_a_writer_medssl_does_not_wrap_is_still_one_line(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import medssl.data.commands as commands

    def full(out_dir: object, seed: int = 0) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "smp" / "x.h5"))

    monkeypatch.setattr(commands, "write_sample", full)
    rc, _, err = run_cli(["data", "sample", str(tmp_path / "smp")])
    assert_clean_cli_error(rc, err, r"cannot write .*x\.h5: No space left on device; free some space")


def test_a_tilde_in_a_flag_written_with_equals_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    rc, out, err = run_cli(["transfer", "--encoder=~/enc", "--data=~/d.npz", "--out=~/t", "--print-config"])
    assert rc == 0, err
    shown = yaml.safe_load(out)
    assert shown["out"] == str(tmp_path / "home" / "t") and shown["encoder"] == str(tmp_path / "home" / "enc")
