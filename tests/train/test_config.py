from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medssl.cli import main
from medssl.errors import ConfigError
from medssl.train.config import PretrainConfig, load_pretrain_config

REPO = Path(__file__).resolve().parents[2]
# pretraining configs (configs/transfer/ holds transfer configs, tested in tests/eval)
CONFIGS = sorted([*(REPO / "configs").glob("*.yaml"), *(REPO / "configs" / "objectives").glob("*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_pretrain_config(path)
    assert isinstance(cfg, PretrainConfig) and cfg.data["name"] and cfg.objective["name"]


def test_shipped_configs_cover_every_objective() -> None:
    names = {load_pretrain_config(p).objective["name"] for p in CONFIGS}
    assert {"simclr", "nnclr", "pnnclr", "snclr", "psm"} <= names


def test_pcam_config_is_paper_scale() -> None:
    cfg = load_pretrain_config(REPO / "configs" / "pcam.yaml")
    assert cfg.model.backbone == "resnet50" and cfg.augment.image_size == 96
    assert cfg.model.proj_dim == 2048 and cfg.support_set.size == 10000 and cfg.train.batch_size == 64
    assert cfg.objective["name"] == "pnnclr" and cfg.optim.name == "adam" and cfg.optim.lr == 1e-3


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_misspelt_fixed_key_names_file_and_closest(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\ntrain: {epohcs: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train.epohcs' in .*c.yaml. Did you mean 'epochs'"):
        load_pretrain_config(p)


def test_the_instance_term_is_an_option_of_the_neighbour_objectives_only() -> None:
    blood = REPO / "configs" / "bloodmnist.yaml"
    for name in ("nnclr", "pnnclr", "snclr", "psm"):
        cfg = load_pretrain_config(blood, [f"objective.name={name}", "objective.instance_weight=0.5"])
        assert cfg.objective["instance_weight"] == 0.5
    # SimCLR's loss is the instance term: the key is unknown there, and the error says which keys exist
    with pytest.raises(ConfigError, match=r"unknown key 'objective.instance_weight' in .*bloodmnist.yaml.*Valid keys: tau"):
        load_pretrain_config(blood, ["objective.name=simclr", "objective.instance_weight=0.5"])


def test_misspelt_objective_and_dataset_keys_are_caught_at_load(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\nobjective: {name: pnnclr, alpah: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'objective.alpah' in .*c.yaml.*Did you mean 'alpha'"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {name: pcam, rooot: x}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.rooot'.*Did you mean 'root'"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {name: pcam, root: x}\naugment: {preset: histo, params: {hed_thta: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'augment.params.hed_thta' in .*c.yaml \(augmentation 'histo'\)"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {name: pcam, root: x}\naugment: {preset: histo, params: {hed_p: 2}}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: augment: augmentation 'histo': parameter 'hed_p' must be in \[0.0, 1.0\], got 2"):
        load_pretrain_config(p)


def test_augment_resolves_to_one_params_object() -> None:
    from medssl.augment.presets import HistoParams
    from medssl.train.config import AugmentConfig

    params = AugmentConfig(preset="histo", params={"pcam_safe": True, "hed_theta": "strong"}).resolve()
    assert isinstance(params, HistoParams) and params.pcam_safe and params.hed_theta == 0.2


def test_unknown_registry_names(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\nobjective: {name: pnnclrr}\n")
    with pytest.raises(ConfigError, match=r"objective.name .*unknown objective 'pnnclrr'.*Did you mean 'pnnclr'"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {root: x}\n")
    with pytest.raises(ConfigError, match="'data' needs a 'name' key"):
        load_pretrain_config(p)


def test_wrong_types_and_ranges(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\ntrain: {batch_size: many}\n")
    with pytest.raises(ConfigError, match=r"train.batch_size.*must be an integer, got 'many'"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {name: pcam, root: x}\noptim: {lr: -1}\n")
    with pytest.raises(ConfigError, match=r"optim.lr must be > 0.0, got -1"):
        load_pretrain_config(p)
    p = _write(tmp_path, "data: {name: pcam, root: x}\noptim: {name: adamw2}\n")
    with pytest.raises(ConfigError, match="Did you mean 'adamw'"):
        load_pretrain_config(p)


def test_dotted_overrides_apply_and_are_validated() -> None:
    cfg = load_pretrain_config(REPO / "configs" / "pcam.yaml",
                               ["objective.alpha=0.1", "train.epochs=5", "optim.lr=3e-4"])
    assert cfg.objective["alpha"] == 0.1 and cfg.train.epochs == 5 and cfg.optim.lr == 3e-4
    with pytest.raises(ConfigError, match="train.epochz"):
        load_pretrain_config(REPO / "configs" / "pcam.yaml", ["train.epochz=5"])


def test_cli_print_config_and_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["pretrain", str(REPO / "configs" / "demo.yaml"), "train.epochs=2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 2 and printed["objective"]["name"] == "pnnclr"
    bad = _write(tmp_path, "data: {name: pcam, root: x}\nmodle: {}\n")
    assert main(["pretrain", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'modle'" in err and "Did you mean 'model'" in err and "Traceback" not in err


def test_configuration_doc_names_every_key() -> None:
    import dataclasses

    from medssl.train import config as c

    doc = (REPO / "docs" / "configuration.md").read_text()
    sections = {"augment": c.AugmentConfig, "model": c.ModelConfig, "support_set": c.SupportSetConfig,
                "optim": c.OptimConfig, "train": c.TrainConfig}
    missing = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)
               if f"| `{f.name}` |" not in doc]
    missing += [f.name for f in dataclasses.fields(c.PretrainConfig)
                if f.name not in sections and f"| `{f.name}` |" not in doc]
    assert not missing, f"docs/configuration.md does not document: {missing}"


@pytest.mark.parametrize("old, new, value", [
    ("objective: {name: pnnclr, ema_base: 0.95}", ("model", "ema_base"), 0.95),
    ("support_set: {size: 8, gather_distributed: false}", ("train", "gather_distributed"), False),
])
def test_moved_keys_still_load_and_warn_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             old: str, new: tuple, value: object) -> None:
    from medssl.train import config as c

    monkeypatch.setattr(c, "_announced", set())
    p = _write(tmp_path, f"data: {{name: pcam, root: x}}\n{old}\n")
    with pytest.warns(FutureWarning, match=rf"{old.split(':')[0]}\.\w+ in .*c.yaml is deprecated.*{new[0]}\.{new[1]}"):
        cfg = load_pretrain_config(p)
    assert getattr(getattr(cfg, new[0]), new[1]) == value
    assert "ema_base" not in cfg.objective
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second load of the same key stays quiet
        assert getattr(getattr(load_pretrain_config(p), new[0]), new[1]) == value


def test_moved_key_and_new_key_disagreeing_is_an_error(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\nobjective: {name: pnnclr, ema_base: 0.9}\n"
                         "model: {ema_base: 0.99}\n")
    with pytest.raises(ConfigError, match=r"objective.ema_base in .*c.yaml is the deprecated name of model.ema_base"):
        load_pretrain_config(p)


def test_model_ema_base_is_range_checked(tmp_path: Path) -> None:
    p = _write(tmp_path, "data: {name: pcam, root: x}\nmodel: {ema_base: 1.5}\n")
    with pytest.raises(ConfigError, match="model.ema_base"):
        load_pretrain_config(p)


@pytest.mark.parametrize("override,message", [
    ("optim.betas=[2, 0.999]", r"optim\.betas\[0\] must be in \[0\.0, 1\.0\), got 2"),
    ("optim.betas=[0.9, 1.0]", r"optim\.betas\[1\] must be in \[0\.0, 1\.0\), got 1\.0"),
    ("optim.momentum=-1", r"optim\.momentum must be in \[0\.0, 1\.0\), got -1"),
    ("optim.momentum=1.5", r"optim\.momentum must be in \[0\.0, 1\.0\), got 1\.5"),
    ("train.collapse_std=-0.1", r"train\.collapse_std must be >= 0\.0, got -0\.1"),
    ("train.collapse_std=.nan", r"train\.collapse_std.*must be a finite number, got nan"),
    ("optim.lr=.nan", r"optim\.lr.*must be a finite number, got nan"),
])
def test_optimiser_and_monitor_values_are_checked_at_load(override: str, message: str) -> None:
    """Values torch would only refuse when the optimiser is built (a ValueError traceback
    after the data is loaded), or would silently accept (NaN), fail at load time."""
    with pytest.raises(ConfigError, match=message):
        load_pretrain_config(REPO / "configs" / "demo.yaml", [override])


def test_warmup_fraction_scales_with_the_run_and_excludes_warmup_steps(tmp_path: Path) -> None:
    cfg = load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)},
                                     "optim": {"warmup_fraction": 0.05}})
    assert cfg.optim.warmup_for(100) == 5 and cfg.optim.warmup_for(20000) == 1000
    assert load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)},
                                      "optim": {"warmup_steps": 7}}).optim.warmup_for(100) == 7
    with pytest.raises(ConfigError, match=r"optim.warmup_steps=7 and optim.warmup_fraction=0.1 are both set"):
        load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)},
                                   "optim": {"warmup_steps": 7, "warmup_fraction": 0.1}})
    with pytest.raises(ConfigError, match="optim.warmup_fraction"):
        load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)},
                                   "optim": {"warmup_fraction": 1.0}})


def test_projector_shape_keys_validate(tmp_path: Path) -> None:
    cfg = load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)},
                                     "model": {"proj_layers": 2, "proj_last_bn": False}})
    assert cfg.model.proj_layers == 2 and cfg.model.proj_last_bn is False
    with pytest.raises(ConfigError, match="model.proj_layers"):
        load_pretrain_config(data={"data": {"name": "folder", "root": str(tmp_path)}, "model": {"proj_layers": 0}})
