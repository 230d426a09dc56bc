"""Which checkpoint a run resumes from, and which config changes may resume it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medssl.config import to_dict
from medssl.errors import ConfigError, MedSSLError
from medssl.train.checkpoint_rotation import CheckpointManager
from medssl.train.config import load_pretrain_config
from medssl.train.resume import SAFE_ON_RESUME, check_resume, config_changes, find_resume, flatten


def _with_checkpoints(tmp_path: Path, steps: list) -> CheckpointManager:
    ckpts = CheckpointManager(tmp_path, keep_last=5)
    for s in steps:
        ckpts.save({"step": s}, s)
    return ckpts


def test_false_never_resumes_even_with_checkpoints(tmp_path: Path) -> None:
    assert find_resume(False, _with_checkpoints(tmp_path, [2])) is None


def test_true_and_auto_take_the_newest(tmp_path: Path) -> None:
    ckpts = _with_checkpoints(tmp_path, [2, 4])
    assert find_resume(True, ckpts) == find_resume("auto", ckpts) == tmp_path / "checkpoints" / "step_00000004.pt"


def test_auto_without_checkpoints_starts_afresh_but_true_is_an_error(tmp_path: Path) -> None:
    ckpts = CheckpointManager(tmp_path)
    assert find_resume("auto", ckpts) is None
    with pytest.raises(MedSSLError, match=r"train.resume is true but .*checkpoints holds no checkpoint"):
        find_resume(True, ckpts)


def test_a_path_must_exist(tmp_path: Path) -> None:
    ckpts = _with_checkpoints(tmp_path, [2])
    given = tmp_path / "checkpoints" / "step_00000002.pt"
    assert find_resume(str(given), ckpts) == given
    with pytest.raises(MedSSLError, match=r"train.resume points at .*nope.pt, which does not exist"):
        find_resume(str(tmp_path / "nope.pt"), ckpts)


REPO = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str) -> dict:
    return to_dict(load_pretrain_config(REPO / "configs" / "demo.yaml", list(overrides)))


def test_flatten_and_changes_name_dotted_keys() -> None:
    assert flatten({"optim": {"lr": 1, "betas": (0.9, 0.99)}, "seed": 0}) == {
        "optim.lr": 1, "optim.betas": [0.9, 0.99], "seed": 0}
    old, new = {"objective": {"name": "pnnclr"}}, {"objective": {"name": "pnnclr", "alpha": 0.5}}
    assert config_changes(old, new) == {"objective.alpha": ("(not set)", 0.5)}
    assert config_changes(new, new) == {}


def test_every_safe_key_exists_in_the_schema() -> None:
    keys = set(flatten(_cfg())) | {"val_data"}
    assert SAFE_ON_RESUME <= keys, SAFE_ON_RESUME - keys


@pytest.mark.parametrize("overrides", [
    ("train.epochs=50", "train.max_steps=7"),
    ("train.log_every=5", "train.ckpt_every=3", "train.keep_last=9", "train.knn_every=0", "train.knn_k=3"),
    ("train.num_workers=0", "train.device=cpu", "train.resume=true", "out_dir=elsewhere"),
    ("train.threads=1", "train.compile=true"),
    ("val_data={name: pcam, root: other, split: test}",),
])
def test_budget_logging_and_machine_changes_are_allowed(overrides: tuple, tmp_path: Path) -> None:
    changes = check_resume(_cfg(), _cfg(*overrides), checkpoint=tmp_path / "c.pt", run_dir=tmp_path)
    assert set(changes) == {o.split("=")[0] for o in overrides}


@pytest.mark.parametrize("override,key", [
    ("data.root=other_data", "data.root"),
    ("objective.name=simclr", "objective.name"),
    ("objective.alpha=0.5", "objective.alpha"),
    ("model.backbone=resnet50", "model.backbone"),
    ("optim.name=sgd", "optim.name"),
    ("optim.lr=0.1", "optim.lr"),
    ("augment.image_size=32", "augment.image_size"),
    ("seed=7", "seed"),
    ("train.batch_size=16", "train.batch_size"),
])
def test_changes_to_what_is_trained_are_refused_with_a_diff(override: str, key: str, tmp_path: Path) -> None:
    old, new = _cfg(), _cfg(override)
    value = override.split("=")[1]
    with pytest.raises(ConfigError, match=rf"cannot resume .*c\.pt: this config differs .* in 1 key\(s\) that change "
                                          rf"what is trained \({key}: .* -> .*{value}.*\)\. .*--resume-force"):
        check_resume(old, new, checkpoint=tmp_path / "c.pt", run_dir=tmp_path)
    forced = check_resume(old, new, checkpoint=tmp_path / "c.pt", run_dir=tmp_path, force=True)
    assert list(forced) == [key]


def test_a_checkpoint_without_a_recorded_config_is_not_compared(tmp_path: Path) -> None:
    assert check_resume(None, _cfg("seed=5"), checkpoint=tmp_path / "c.pt", run_dir=tmp_path) == {}


def test_a_checkpoint_from_before_same_image_exclusion_resumes_as_it_trained() -> None:
    """Its config has no support_set.exclude_same_image: it trained without exclusion, so the
    new default (on) is a change that is refused with the key to set; set, it resumes."""
    from medssl.errors import ConfigError
    from medssl.train.resume import check_resume

    new = {"objective": {"name": "pnnclr"}, "support_set": {"size": 64, "exclude_same_image": True,
                                                            "exclude_same_slide": False, "size_fraction": None},
           "train": {"export_steps": []}}
    old = {"objective": {"name": "pnnclr"}, "support_set": {"size": 64}}
    kw = dict(checkpoint=Path("ckpt.pt"), run_dir=Path("run"))
    with pytest.raises(ConfigError, match=r"exclude_same_image: False -> True.*set support_set.exclude_same_image: False"):
        check_resume(old, new, **kw)
    as_before = {**new, "support_set": {**new["support_set"], "exclude_same_image": False}}
    assert check_resume(old, as_before, **kw) == {}
    # a SimCLR run has no support set: the key changes nothing it trains
    simclr = {**new, "objective": {"name": "simclr"}}
    assert check_resume({**old, "objective": {"name": "simclr"}}, simclr, **kw) == {}


def test_per_rank_batch_keeps_the_checkpoints_global_batch(tmp_path: Path) -> None:
    from medssl.train.resume import per_rank_batch

    ckpt = tmp_path / "step_00000003.pt"
    assert per_rank_batch(None, 4, 8, checkpoint=ckpt) == 8  # an old checkpoint: as launched
    assert per_rank_batch({"world_size": 2, "batch_size": 8}, 2, 8, checkpoint=ckpt) == 8
    assert per_rank_batch({"world_size": 2, "batch_size": 8}, 1, 8, checkpoint=ckpt) == 16
    assert per_rank_batch({"world_size": 8, "batch_size": 32}, 4, 32, checkpoint=ckpt) == 64
    assert per_rank_batch({"world_size": 1, "batch_size": 16}, 2, 16, checkpoint=ckpt) == 8
    with pytest.raises(ConfigError, match=r"cannot resume .*step_00000003\.pt on 3 processes: it was trained on 2 "
                                          r"with a global batch of 16 images.*divides 16"):
        per_rank_batch({"world_size": 2, "batch_size": 8}, 3, 8, checkpoint=ckpt)
