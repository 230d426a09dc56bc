from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple

import pytest

from medssl.config import (
    apply_overrides,
    builder_keywords,
    check_choice,
    check_keys,
    check_kwargs,
    check_range,
    closest,
    from_mapping,
    load_yaml,
    parse_override,
    to_dict,
)
from medssl.errors import ConfigError


@dataclass
class Optim:
    name: Literal["adam", "sgd", "lars"] = "adam"
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_range("optim.lr", self.lr, lo=0.0, lo_open=True)


@dataclass
class Train:
    epochs: int = 10
    amp: bool = False
    out_dir: Path = Path("runs")
    milestones: List[int] = field(default_factory=list)
    optim: Optim = field(default_factory=Optim)
    resume: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)


@dataclass
class Needs:
    root: str
    split: str = "train"


def test_defaults_and_nested_values() -> None:
    cfg = from_mapping(Train, {"epochs": 3, "optim": {"lr": 0.1, "name": "sgd"}, "milestones": [1, 2]})
    assert cfg.epochs == 3 and cfg.optim.lr == 0.1 and cfg.optim.name == "sgd"
    assert cfg.milestones == [1, 2] and cfg.amp is False and cfg.out_dir == Path("runs")


def test_int_accepted_for_float_but_not_reverse() -> None:
    assert from_mapping(Optim, {"lr": 1}).lr == 1.0
    assert isinstance(from_mapping(Optim, {"lr": 1}).lr, float)
    with pytest.raises(ConfigError, match=r"'epochs'.*must be an integer, got 2.5"):
        from_mapping(Train, {"epochs": 2.5})
    assert from_mapping(Train, {"epochs": 4.0}).epochs == 4


def test_unknown_key_names_key_file_and_closest() -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(Train, {"optim": {"lrr": 0.1}}, source="configs/x.yaml")
    msg = str(err.value)
    assert "optim.lrr" in msg and "configs/x.yaml" in msg and "Did you mean 'lr'" in msg


def test_unknown_key_without_close_match_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match="Valid keys: .*epochs"):
        from_mapping(Train, {"zzzzzz": 1})


def test_wrong_types_are_named() -> None:
    with pytest.raises(ConfigError, match=r"key 'epochs'.*integer.*'ten'"):
        from_mapping(Train, {"epochs": "ten"})
    with pytest.raises(ConfigError, match=r"key 'amp'.*true or false"):
        from_mapping(Train, {"amp": "yes please"})
    with pytest.raises(ConfigError, match=r"key 'optim' .*mapping"):
        from_mapping(Train, {"optim": 3})
    with pytest.raises(ConfigError, match=r"key 'milestones' .*list"):
        from_mapping(Train, {"milestones": 3})
    with pytest.raises(ConfigError, match=r"optim.betas.*2 items"):
        from_mapping(Train, {"optim": {"betas": [0.9]}})


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match="integer"):
        from_mapping(Train, {"epochs": True})


def test_literal_suggests_closest_choice() -> None:
    with pytest.raises(ConfigError, match=r"must be one of adam, sgd, lars, got 'adamw'\. Did you mean 'adam'"):
        from_mapping(Optim, {"name": "adamw"})


def test_optional_accepts_none_and_value() -> None:
    assert from_mapping(Train, {"resume": None}).resume is None
    assert from_mapping(Train, {"resume": "auto"}).resume == "auto"
    with pytest.raises(ConfigError, match="resume"):
        from_mapping(Train, {"resume": 3})


def test_range_check_in_post_init_names_file() -> None:
    with pytest.raises(ConfigError, match=r"cfg.yaml: optim: optim.lr must be > 0.0, got -1"):
        from_mapping(Train, {"optim": {"lr": -1}}, source="cfg.yaml")


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="missing required key.*root"):
        from_mapping(Needs, {"split": "val"})


def test_parse_override_types() -> None:
    assert parse_override("train.epochs=5") == (["train", "epochs"], 5)
    assert parse_override("optim.lr=1e-3") == (["optim", "lr"], 1e-3)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=resnet50") == (["a"], "resnet50")
    with pytest.raises(ConfigError, match="key.subkey=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="empty key part"):
        parse_override("train..epochs=3")


def test_apply_overrides_then_validate() -> None:
    base = {"optim": {"lr": 0.1}}
    out = apply_overrides(base, ["optim.lr=0.5", "epochs=7", "extra.new.deep=1"])
    assert base == {"optim": {"lr": 0.1}}  # input untouched
    cfg = from_mapping(Train, out)
    assert cfg.optim.lr == 0.5 and cfg.epochs == 7 and cfg.extra == {"new": {"deep": 1}}
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'"):
        from_mapping(Train, apply_overrides(base, ["optim.lrr=3"]))
    with pytest.raises(ConfigError, match="'epochs' is a value, not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_load_yaml_safe_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "a.yaml"
    good.write_text("train:\n  epochs: 3\n")
    assert load_yaml(good) == {"train": {"epochs": 3}}
    bad = tmp_path / "b.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"b.yaml: not valid YAML at line"):
        load_yaml(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text("x: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(evil)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(lst)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}


def test_to_dict_round_trip() -> None:
    cfg = from_mapping(Train, {"epochs": 2, "optim": {"name": "sgd"}})
    data = to_dict(cfg)
    assert data["out_dir"] == "runs" and data["optim"]["betas"] == [0.9, 0.999]
    again = from_mapping(Train, data)
    assert again == cfg


def test_closest() -> None:
    assert closest("lrr", ["lr", "epochs"]) == "lr"
    assert closest("qqqq", ["lr", "epochs"]) is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_range_refuses_nan_and_infinity_even_without_bounds(value: float) -> None:
    with pytest.raises(ConfigError, match=r"x must be a finite number in \[0, 1\]"):
        check_range("x", value, lo=0, hi=1)
    with pytest.raises(ConfigError, match="must be a finite number"):
        check_range("x", value)
    with pytest.raises(ConfigError, match="finite"):
        from_mapping(Optim, {"lr": value})


def test_range_bounds_types_and_return_value() -> None:
    assert check_range("x", 1, lo=0, hi=1) == 1.0 and isinstance(check_range("x", 1, lo=0), float)
    assert check_range("k", 3, lo=1, integer=True) == 3
    with pytest.raises(ConfigError, match=r"x must be in \(0, 1\), got 1"):
        check_range("x", 1, lo=0, hi=1, lo_open=True, hi_open=True)
    with pytest.raises(ConfigError, match="x must be <= 2, got 3"):
        check_range("x", 3, hi=2)
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0.5"):
        check_range("k", 0.5, lo=1, integer=True)
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        check_range("k", 0, lo=1, integer=True)
    for bad in (True, "1", None, [1]):
        with pytest.raises(ConfigError, match="must be a number"):
            check_range("x", bad, lo=0)


def test_check_keys_message_names_key_place_hint_and_valid_keys() -> None:
    check_keys(["lr"], ["lr", "epochs"], "a.yaml")
    with pytest.raises(ConfigError, match=r"^unknown key 'optim.lrr' in a.yaml\. Did you mean 'lr'\? Valid keys: lr, epochs\.$"):
        check_keys(["lr", "lrr"], ["lr", "epochs"], "a.yaml", prefix="optim")
    with pytest.raises(ConfigError, match=r"^unknown key 'zzz'\. Valid keys: none\.$"):
        check_keys(["zzz"], [])


def test_check_choice() -> None:
    assert check_choice("mode", "b", ("a", "b")) == "b"
    with pytest.raises(ConfigError, match="mode must be one of 1, 3, got True"):
        check_choice("mode", True, (1, 3))


class _Thing:
    def __init__(self, size: int, scale: float = 1.0) -> None:
        self.size, self.scale = size, scale


def _make_thing(**kwargs) -> "_Thing":
    return _Thing(**kwargs)


def test_builder_keywords_and_check_kwargs_read_the_signature() -> None:
    assert builder_keywords(_Thing) == ["size", "scale"]
    assert builder_keywords(_make_thing) == ["size", "scale"]  # **kwargs: the annotated return class
    check_kwargs(_make_thing, {"size": 2})
    with pytest.raises(ConfigError, match=r"unknown key 'sise' in thing 'x'\. Did you mean 'size'"):
        check_kwargs(_Thing, {"sise": 2}, "thing 'x'")
    with pytest.raises(ConfigError, match="missing required key\\(s\\) size in thing 'x'"):
        check_kwargs(_Thing, {"scale": 2.0}, "thing 'x'")


# ------------------------------------------------------------------ hostile YAML
def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path: Path) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text("optim:\n  lr: 0.05\ntrain:\n  epochs: 3\noptim:\n  lr: 100\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: duplicate key 'optim' at lines 1 and 5"):
        load_yaml(p)
    p.write_text("optim: {name: sgd, lr: 0.05,\n        lr: 100}\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'lr' at lines 1 and 2"):
        load_yaml(p)


def test_aliases_are_refused_even_as_merge_keys(tmp_path: Path) -> None:
    p = tmp_path / "cfg.yaml"
    p.write_text("base: &b {lr: 0.1}\noptim: *b\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: YAML aliases are not allowed.*line 1"):
        load_yaml(p)
    p.write_text("base: &b {lr: 0.1}\noptim:\n  <<: *b\n  name: sgd\n")
    with pytest.raises(ConfigError, match=r"aliases are not allowed"):
        load_yaml(p)
    p.write_text("optim: &a {lr: 0.1}\n")  # an anchor nobody refers to is harmless
    assert load_yaml(p) == {"optim": {"lr": 0.1}}


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """Nine levels of ten aliases each would expand to 10^9 elements; refused at once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    p = tmp_path / "bomb.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert p.stat().st_size < 1200
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        load_yaml(p)


def test_files_over_the_size_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    from medssl.config import MAX_YAML_BYTES

    p = tmp_path / "big.yaml"
    item = "- some/long/path/to/an/image_000000.png\n"
    p.write_text("files:\n" + item * (5 * MAX_YAML_BYTES // len(item)))
    with pytest.raises(ConfigError, match=r"big\.yaml is 5\.\d MB; medssl reads YAML files of at most 1 MiB.*CSV"):
        load_yaml(p)
    p.write_text("files:\n" + item * (MAX_YAML_BYTES // 2 // len(item)))  # under the limit: read
    assert len(load_yaml(p)["files"]) == MAX_YAML_BYTES // 2 // len(item)


def test_non_utf8_yaml_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("seed: 0\nout_dir: runs/caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8 text \(byte 0xe9 at line 2\); save it as UTF-8"):
        load_yaml(p)


def test_the_libyaml_loader_is_used_where_available() -> None:
    """The C loader parses ~10x faster; the duplicate/alias checks above ran through it."""
    import yaml

    from medssl import config

    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML built without libyaml")
    assert config._SafeLoader is yaml.CSafeLoader


@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_are_refused_in_typed_and_free_sections(text: str) -> None:
    with pytest.raises(ConfigError, match=r"key 'optim\.lr' in c\.yaml must be a finite number"):
        from_mapping(Train, apply_overrides({}, [f"optim.lr={text}"]), source="c.yaml")
    with pytest.raises(ConfigError, match=r"key 'optim\.betas\[1\]' .*finite"):
        from_mapping(Train, apply_overrides({}, [f"optim.betas=[0.9, {text}]"]))
    # a free-form mapping (the objective, data and augment.params sections) is walked too
    with pytest.raises(ConfigError, match=r"key 'extra\.jitter\.sigma' .*finite"):
        from_mapping(Train, apply_overrides({}, [f"extra.jitter.sigma={text}"]))
