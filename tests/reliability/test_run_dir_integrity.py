"""A run directory is never left torn, never trained over, and never read when damaged.

Every file medssl writes into a run directory goes through one atomic write
(:func:`medssl.fileio.atomic_write`), so a full disk keeps the previous file and stops
with one line; a ``config.yaml`` that does not parse or lost keys is refused wherever it
is read (``evaluate``, ``transfer --encoder RUN``, ``pretrain RUN/config.yaml``); a
finished run is not replaced without ``--overwrite``; ``--resume`` with nothing to resume
says so and stops; links planted in the run directory that lead out of it are refused.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path
from typing import Dict, Tuple

import pytest

from tests.reliability.harness import assert_clean_cli_error, run_cli, tiny_cfg, write_yaml


def _digest(run: Path) -> Dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != ".medssl.lock"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Tuple[Path, Path]:
    """(config file, run directory) of a finished 2-step simclr run; copy before changing it."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = write_yaml(tmp / "cfg.yaml", tiny_cfg(sample_dir, tmp / "run", "simclr", max_steps=2, ckpt_every=1,
                                                knn_every=0))
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert rc == 0, err
    return cfg, tmp / "run"


def _copy_run(finished_run: Tuple[Path, Path], tmp_path: Path) -> Tuple[Path, Path]:
    import yaml

    cfg, run = finished_run
    new_run = tmp_path / "run"
    shutil.copytree(run, new_run)
    raw = yaml.safe_load(cfg.read_text())
    raw["out_dir"] = str(new_run)
    return write_yaml(tmp_path / "cfg.yaml", raw), new_run


def test_a_full_disk_while_config_yaml_is_rewritten_keeps_the_old_file(
        finished_run: Tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--resume with a changed safe key rewrites config.yaml; the disk fills after 300
    bytes. One line saying so; config.yaml byte for byte the old one, no temporary left."""
    cfg, run = _copy_run(finished_run, tmp_path)
    before = (run / "config.yaml").read_bytes()
    real = Path.write_text

    def fills_up(self: Path, data: str, *a: object, **kw: object) -> int:
        if "config.yaml" in self.name:
            real(self, data[:300], *a, **kw)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *a, **kw)

    monkeypatch.setattr(Path, "write_text", fills_up)
    rc, _, err = run_cli(["pretrain", str(cfg), "--resume", "--no-progress", "train.max_steps=3", "train.log_every=2"])
    monkeypatch.undo()
    assert_clean_cli_error(rc, err, r"cannot write .*config\.yaml: disk full .*free some space.*--resume")
    assert (run / "config.yaml").read_bytes() == before
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["torn", "lost_train", "not_yaml", "a_list"])
@pytest.mark.parametrize("command", ["evaluate", "transfer", "embed", "pretrain_with_it"])
def test_a_damaged_config_yaml_is_refused_wherever_it_is_read(
        finished_run: Tuple[Path, Path], tmp_path: Path, sample_dir: Path, damage: str, command: str) -> None:
    _, run = _copy_run(finished_run, tmp_path)
    cfg_file = run / "config.yaml"
    text = cfg_file.read_text()
    if damage == "torn":
        cut = text[: len(text) // 2]
        cfg_file.write_text(cut[: cut.rfind("\n") + 1])  # a clean line boundary: still valid YAML
    elif damage == "lost_train":
        cfg_file.write_text(text[: text.index("\ntrain:") + 1] + text[text.index("\nseed:") + 1:])
    elif damage == "not_yaml":
        cfg_file.write_text(text + "\n  bad: [unclosed\n")
    else:
        cfg_file.write_text("- a\n- list\n")
    before = _digest(run)
    argv = {"evaluate": ["evaluate", str(run), "--protocol", "knn", "--seeds", "1", "--no-plots"],
            "transfer": ["transfer", "--encoder", str(run), "--data", str(sample_dir / "medmnist" / "ihcstain.npz"),
                         "--seeds", "1", "--no-plots", "--out", str(tmp_path / "t")],
            "embed": ["embed", "--encoder", str(run), "--data", str(sample_dir / "medmnist" / "ihcstain.npz"),
                      "--out", str(tmp_path / "e.npz")],
            "pretrain_with_it": ["pretrain", str(cfg_file), "--resume", "--no-progress"]}[command]
    rc, _, err = run_cli(argv)
    assert_clean_cli_error(rc, err, r"config\.yaml.*(lacks \d+ key|not valid YAML|must be a mapping|damaged)")
    assert _digest(run) == before  # nothing written, the checkpoints untouched


def test_a_finished_run_is_not_trained_over_without_overwrite(finished_run: Tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    """checkpoints/ pruned to save space: a new pretrain and a --resume are both refused,
    the encoder and metrics untouched; --overwrite trains a new run there."""
    cfg, run = _copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "checkpoints")
    before = _digest(run)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"holds the exported encoder of a finished run.*--overwrite")
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--resume", "train.max_steps=4"])
    assert_clean_cli_error(rc, err, r"--resume: .*no checkpoint to resume from.*nothing was changed")
    assert _digest(run) == before
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--overwrite", "train.max_steps=1"])
    assert rc == 0, err
    assert json.loads((run / "encoder.json").read_text())["steps"] == 1
    assert [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1]


def test_another_runs_checkpoints_are_replaced_only_with_overwrite(finished_run: Tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"already holds checkpoints of another run.*--overwrite")
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--overwrite", "train.max_steps=1"])
    assert rc == 0, err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001.pt"]


def test_resume_where_nothing_would_be_lost_starts_afresh_and_says_so(sample_dir: Path, tmp_path: Path) -> None:
    """No run in out_dir yet (a job script that always passes --resume): it starts, and
    says there was no checkpoint. (A finished run without checkpoints stops: above.)"""
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "empty", "simclr", max_steps=1))
    rc, _, err = run_cli(["pretrain", str(cfg), "--resume", "--no-progress"])
    assert rc == 0, err
    assert "--resume: no checkpoint in" in err and "no run there yet" in err


def test_a_metrics_line_that_is_json_but_not_an_object_is_skipped_on_resume(
        finished_run: Tuple[Path, Path], tmp_path: Path) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("null\n[1, 2]\n\"text\"\n{\"step\": \"x\"}\n")
    rc, _, err = run_cli(["pretrain", str(cfg), "--resume", "--no-progress", "train.max_steps=3"])
    assert rc == 0, err
    assert "Traceback" not in err and "not metrics rows" in err
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.parametrize("name", ["checkpoints/step_99999999.pt", "metrics.jsonl", "config.yaml"])
def test_a_link_out_of_the_run_directory_is_refused_by_name(finished_run: Tuple[Path, Path], tmp_path: Path,
                                                           name: str) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"a file that is not the run's\n")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(outside)
    argv = (["evaluate", str(run), "--protocol", "knn", "--seeds", "1", "--no-plots"] if name == "config.yaml"
            else ["pretrain", str(cfg), "--resume", "--no-progress", "train.max_steps=3"])
    rc, _, err = run_cli(argv)
    assert_clean_cli_error(rc, err, rf"{name.split('/')[-1]} \(.*\) is a link to .*outside\.bin, outside")
    assert outside.read_bytes() == b"a file that is not the run's\n"


class SafetensorError(Exception):
    """The class safetensors raises (a Rust error, no errno) when its write fails."""


def test_a_full_disk_during_encoder_export_says_the_checkpoint_is_intact_and_resume_exports(
        sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_cfg(sample_dir, tmp_path / "run", "simclr", max_steps=2))
    real = safetensors.torch.save_file

    def fills_up(tensors: object, filename: str, *a: object, **kw: object) -> None:
        Path(filename).write_bytes(b"partial")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                              'space left on device" })')

    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress"])
    assert_clean_cli_error(rc, err, r"cannot write the encoder .*encoder\.safetensors: disk full .*the training "
                                    r"finished and its checkpoint .*step_00000002\.pt is intact.*--resume")
    assert not (tmp_path / "run" / "encoder.safetensors").exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", "--resume"])
    assert rc == 0, err
    assert (tmp_path / "run" / "encoder.safetensors").is_file()


@pytest.mark.parametrize("victim", ["report.json", "predictions.csv", "report.md"])
def test_a_full_disk_while_transfer_writes_its_out_is_one_line(finished_run: Tuple[Path, Path], tmp_path: Path,
                                                              sample_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                              victim: str) -> None:
    import os

    real_replace = os.replace

    def full(src: object, dst: object) -> None:
        if Path(str(dst)).name == victim:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    rc, _, err = run_cli(["transfer", "--encoder", str(finished_run[1]), "--data",
                          str(sample_dir / "medmnist" / "ihcstain.npz"), "--protocol", "knn", "--seeds", "1",
                          "--no-plots", "--out", str(tmp_path / "t")])
    assert_clean_cli_error(rc, err, rf"cannot write .*{victim.replace('.', '[.]')}: disk full \(No space left on "
                                    r"device; \d+ MB free.*free some space")
    assert not (tmp_path / "t" / victim).exists()


@pytest.fixture(scope="module")
def evaluation(finished_run: Tuple[Path, Path], sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "ev"
    rc, _, err = run_cli(["transfer", "--encoder", str(finished_run[1]), "--data",
                          str(sample_dir / "medmnist" / "ihcstain.npz"), "--protocol", "knn", "--seeds", "1",
                          "--no-plots", "--out", str(out)])
    assert rc == 0, err
    return out


@pytest.mark.parametrize("damage, pattern", [
    (lambda r: [r], r"report\.json holds a JSON list, not a medssl evaluation report"),
    (lambda r: {k: v for k, v in r.items() if k != "aggregate"}, r"report\.json has no valid 'aggregate'"),
    (lambda r: {**r, "aggregate": {**r["aggregate"], "auc": None}}, r"has no valid 'aggregate\.auc'"),
    (lambda r: {**r, "protocol": "knn"}, r"has no valid 'protocol'"),
    (lambda r: {**r, "protocol": {**r["protocol"], "seeds": 3}}, r"has no valid 'protocol\.seeds'"),
    (lambda r: None, r"report\.json holds a JSON NoneType"),
])
def test_medssl_report_on_a_damaged_report_json_is_one_line(evaluation: Path, tmp_path: Path, damage: object,
                                                            pattern: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(evaluation, bad)
    report = json.loads((bad / "report.json").read_text())
    (bad / "report.json").write_text(json.dumps(damage(report)))  # type: ignore[operator]
    rc, _, err = run_cli(["report", str(evaluation), str(bad)])
    assert_clean_cli_error(rc, err, pattern)


def test_medssl_report_out_under_a_missing_folder_is_created(evaluation: Path, tmp_path: Path) -> None:
    out = tmp_path / "not" / "there" / "table.md"
    rc, _, err = run_cli(["report", str(evaluation), "--out", str(out)])
    assert rc == 0, err
    assert out.read_text().startswith("| Evaluation") or "| Evaluation" in out.read_text()
    (tmp_path / "a_file").write_text("x")
    rc, _, err = run_cli(["report", str(evaluation), "--out", str(tmp_path / "a_file" / "t.md")])
    assert_clean_cli_error(rc, err, r"a_file is a file, not a directory")


def test_damaged_history_and_deeply_nested_metrics_do_not_stop_a_resume(finished_run: Tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    with (run / "history.jsonl").open("ab") as fh:
        fh.write(b"\xff\xfe not utf-8, not json")  # no newline either
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    before = (run / "history.jsonl").read_bytes()
    rc, _, err = run_cli(["pretrain", str(cfg), "--resume", "--no-progress", "train.max_steps=3"])
    assert rc == 0, err
    assert "Traceback" not in err
    after = (run / "history.jsonl").read_bytes()
    assert after.startswith(before) and json.loads(after.splitlines()[-1])["event"] == "resume"


def test_a_checkpoint_from_elsewhere_is_not_continued_over_a_finished_run(finished_run: Tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    other = tmp_path / "other.pt"
    shutil.copy(run / "checkpoints" / "step_00000001.pt", other)
    shutil.rmtree(run / "checkpoints")
    before = _digest(run)
    rc, _, err = run_cli(["pretrain", str(cfg), "--no-progress", f"train.resume={other}"])
    assert_clean_cli_error(rc, err, r"train\.resume points at .*other\.pt, outside .*finished run.*--overwrite")
    assert _digest(run) == before


def test_a_linked_checkpoints_folder_is_the_users_own_and_still_resumes(finished_run: Tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    cfg, run = _copy_run(finished_run, tmp_path)
    scratch = tmp_path / "scratch"
    shutil.move(str(run / "checkpoints"), str(scratch))
    (run / "checkpoints").symlink_to(scratch, target_is_directory=True)
    rc, _, err = run_cli(["pretrain", str(cfg), "--resume", "--no-progress", "train.max_steps=3"])
    assert rc == 0, err
    assert (scratch / "step_00000003.pt").is_file()
