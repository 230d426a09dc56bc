"""Typed configuration: YAML loading, dotted overrides, strict validation.

A config schema is a tree of dataclasses. :func:`from_mapping` turns a plain mapping
(from YAML) into that tree, checking every key and value once, at load time:

* an unknown key is a :class:`~medssl.errors.ConfigError` naming the key, its dotted
  location, the file and the closest valid key;
* a value of the wrong type (``epochs: ten``) or out of range names the same;
* ``int`` values are accepted where a ``float`` is expected, never the reverse.

YAML is read by :func:`load_yaml` with the safe loader only (no object construction from
a file), libyaml-accelerated where available, and refuses what would make a config mean
something other than what it shows: duplicate keys, aliases, non-UTF-8 bytes, and files
above :data:`MAX_YAML_BYTES`. Numbers must be finite: ``.nan`` / ``.inf`` are refused
wherever a config takes a number.

>>> @dataclass
... class Optim:
...     lr: float = 1e-3
>>> from_mapping(Optim, {"lr": 0.1}).lr
0.1
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import numbers
import types
import typing
from dataclasses import dataclass  # noqa: F401  (used in the module doctest)
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml

from medssl.errors import ConfigError
from medssl.fileio import PathLike
from medssl.text import no_such_file

T = TypeVar("T")


__all__ = [
    "MAX_YAML_BYTES",
    "load_yaml",
    "parse_yaml",
    "parse_override",
    "apply_overrides",
    "from_mapping",
    "to_dict",
    "closest",
    "check_keys",
    "check_choice",
    "check_kwargs",
    "check_range",
    "check_seed",
    "user_path",
    "builder_keywords",
]


def closest(name: str, valid: Sequence[str]) -> Optional[str]:
    """The valid name most similar to ``name``, or ``None`` when nothing is close."""
    hits = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return hits[0] if hits else None


def _where(source: Optional[str], dotted: str) -> str:
    loc = f"key '{dotted}'" if dotted else "the top level"
    return f"{loc} in {source}" if source else loc


#: Largest config / dataset YAML medssl reads. A config holds settings, not data; the
#: limit keeps a mistaken file (a 50 MB list) from taking minutes to parse.
MAX_YAML_BYTES = 1 << 20

# libyaml's parser (pure-Python constructors on top, so the safe tag set is unchanged) is
# ~10x faster than the pure-Python one; PyYAML built without libyaml falls back.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse aliases and duplicate mapping keys in a composed YAML node graph.

    The composer hands an alias back as the very node its anchor made, so a node met twice
    is an alias; checking the graph (not the constructed data) stays linear in the file
    size however far the aliases would expand.
    """
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise ConfigError(
                f"{source}: YAML aliases are not allowed in medssl configs (the anchor at line "
                f"{node.start_mark.line + 1} is used again with *name); write the values out in full"
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: Dict[Tuple[str, str], int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    line = key.start_mark.line + 1
                    if (key.tag, key.value) in first:
                        raise ConfigError(
                            f"{source}: duplicate key {key.value!r} at lines {first[(key.tag, key.value)]} "
                            f"and {line}; YAML would silently keep only the last one. Remove one of them"
                        )
                    first[(key.tag, key.value)] = line
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _compose_checked(text: str, source: str) -> Any:
    """Parse with the safe loader after :func:`_check_nodes`; YAML syntax errors propagate."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML ``text`` safely, refusing aliases and duplicate keys (errors name ``source``)."""
    try:
        return _compose_checked(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from exc


def load_yaml(path: PathLike) -> Dict[str, Any]:
    """Read a YAML mapping from a UTF-8 file of at most :data:`MAX_YAML_BYTES` with
    :func:`parse_yaml`; every error names the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(no_such_file("config file", p))
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(
                f"{p} is {size / 1e6:.1f} MB; medssl reads YAML files of at most {MAX_YAML_BYTES >> 20} MiB. "
                "A config holds settings, not data: put long lists (file names, labels) in a CSV and "
                "point the config at it"
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{p} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}); save it as UTF-8"
        ) from exc
    data = parse_yaml(text, str(p))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> Tuple[List[str], Any]:
    """Split ``"a.b.c=value"`` into ``(["a", "b", "c"], value)``; the value is parsed as YAML
    (so ``5`` is an int, ``1e-3`` a float, ``[1, 2]`` a list, ``null`` None)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.subkey=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key part in {key!r}")
    # The limits of config files hold here too: no aliases (an 80-byte value can expand to
    # 10^7 items, or refer to itself), at most MAX_YAML_BYTES.
    if len(raw.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise ConfigError(f"override {key}=...: the value is {len(raw) / 1e6:.1f} MB; medssl reads at most "
                          f"{MAX_YAML_BYTES >> 20} MiB of YAML per value. Put long lists in a file")
    try:
        value = _compose_checked(raw, f"override {key}") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads "1e-3" as a string; users mean a number.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return key.split("."), value


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Return a deep copy of ``data`` with each ``key.sub=value`` override applied.

    Missing intermediate mappings are created; validation of the result (unknown keys,
    types) happens in :func:`from_mapping`.
    """
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node = out
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"override {text!r}: '{'.'.join(parts[: i + 1])}' is a value, not a section"
                )
            node = nxt
        node[parts[-1]] = value
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_finite(value: Any, dotted: str, source: Optional[str]) -> None:
    """Refuse NaN / infinity anywhere in ``value``: every number a config takes (a learning
    rate, a temperature, a probability) is meaningless or silently disabling as NaN/inf."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{_where(source, dotted)} must be a finite number, got {value!r}")
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:
        raise ConfigError(f"{_where(source, dotted)} is {value!r}, beyond the largest float32 "
                          f"({FLOAT32_MAX:.3g}) that training computes with; give a sensible value")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ConfigError(f"{_where(source, dotted)} is {value!r}, too large for a 64-bit integer; "
                          "give a sensible value")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{dotted}.{k}" if dotted else str(k), source)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{dotted}[{i}]", source)


#: The largest finite float32: a config float beyond it overflows where torch uses it
#: (``optim.lr=1e300`` failed inside the optimiser step).
FLOAT32_MAX = 3.4028234663852886e38


def _convert(tp: Any, value: Any, dotted: str, source: Optional[str]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        _check_finite(value, dotted, source)
        return value
    if origin is Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        if value is None and type(None) in args:
            return None
        if isinstance(value, float):  # say "not finite" rather than "not a valid float or None"
            _check_finite(value, dotted, source)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, dotted, source)
            except ConfigError as exc:
                errors.append(str(exc))
        # a list alternative that failed on a non-finite item says the more useful thing
        finite = [e for e in errors if "must be a finite number" in e]
        if finite:
            raise ConfigError(finite[0])
        raise ConfigError(
            f"{_where(source, dotted)}: {value!r} is not a valid "
            f"{' or '.join(_type_name(a) for a in args)}"
        )
    if origin is typing.Literal:
        return check_choice(_where(source, dotted), value, args)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, dotted)} must be a mapping, got {value!r}")
        return from_mapping(tp, value, source=source, prefix=dotted)
    if origin in (list, List, Sequence, tuple, Tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(source, dotted)} must be a list, got {value!r}")
        if origin in (tuple, Tuple) and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(
                    f"{_where(source, dotted)} must have {len(args)} items, got {len(value)}"
                )
            return tuple(_convert(a, v, f"{dotted}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        conv = [_convert(item, v, f"{dotted}[{i}]", source) for i, v in enumerate(value)]
        return tuple(conv) if origin in (tuple, Tuple) else conv
    if origin in (dict, Dict, Mapping) or tp in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{_where(source, dotted)} must be a mapping, got {value!r}")
        _check_finite(value, dotted, source)  # registry sections (objective, data, augment.params)
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{_where(source, dotted)} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_finite(value, dotted, source)
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{_where(source, dotted)} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_finite(float(value), dotted, source)
            return float(value)
        raise ConfigError(f"{_where(source, dotted)} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{_where(source, dotted)} must be a string, got {value!r}")
    if tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise ConfigError(f"{_where(source, dotted)} must be a path, got {value!r}")
    raise TypeError(f"config type {tp!r} at {dotted} is not supported")  # a schema bug, not user error


def from_mapping(cls: Type[T], data: Mapping[str, Any], source: Optional[str] = None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, validating keys, types and ``__post_init__`` checks.

    Args:
        cls: a dataclass type (fields may be nested dataclasses, Optional, Literal, list, dict).
        data: the mapping, e.g. from :func:`load_yaml`.
        source: the file the data came from, named in errors.
        prefix: the dotted location of ``data`` inside the whole config, named in errors.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{_where(source, prefix)} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: Dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        check_keys([key], list(fields), source or "", prefix)
        kwargs[key] = _convert(hints[key], value, dotted, source)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        where = f" ({prefix})" if prefix else ""
        src = f" in {source}" if source else ""
        raise ConfigError(f"missing required key(s) {', '.join(missing)}{where}{src}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        where = f"{prefix}: " if prefix else ""
        src = f"{source}: " if source else ""
        raise ConfigError(f"{src}{where}{exc}") from exc


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain Python data (for YAML/JSON output); Paths become strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_keys(keys: Iterable[Any], valid: Sequence[str], where: str = "", prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first of ``keys`` not in ``valid``.

    The one unknown-key message of medssl: the key (dotted with ``prefix``), ``where`` it
    was found (a file, a section, a builder), the closest valid key and all valid keys.
    """
    for key in keys:
        if key in valid:
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        hint = closest(str(key), valid)
        extra = f" Did you mean '{hint}'?" if hint else ""
        at = f" in {where}" if where else ""
        listing = ", ".join(valid) if valid else "none"
        raise ConfigError(f"unknown key '{dotted}'{at}.{extra} Valid keys: {listing}.")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else :class:`ConfigError` listing them (with the
    closest one when there is one)."""
    if value in choices and not (isinstance(value, bool) and not any(isinstance(c, bool) for c in choices)):
        return value
    hint = closest(str(value), [str(c) for c in choices])
    extra = f". Did you mean {hint!r}?" if hint else ""
    raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}{extra}")


def builder_keywords(builder: Callable[..., Any]) -> Optional[List[str]]:
    """The keyword arguments a builder (function or class) accepts; for a ``**kwargs``-only
    builder, those of the class its return annotation names. ``None`` when that cannot be told."""
    sig = _builder_signature(builder)
    if sig is None:
        return None
    return [n for n, p in sig.parameters.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _builder_signature(builder: Callable[..., Any]) -> Optional[inspect.Signature]:
    try:
        sig = inspect.signature(builder)
    except (TypeError, ValueError):  # some builtins have no signature: no static check
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        try:
            ret = typing.get_type_hints(builder).get("return")
        except Exception:  # an annotation that does not resolve: no static check
            return None
        if not inspect.isclass(ret):
            return None
        sig = inspect.signature(ret)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            return None
    return sig


def check_kwargs(builder: Callable[..., Any], kwargs: Mapping[str, Any], where: str = "", prefix: str = "") -> None:
    """Check ``kwargs`` against ``builder``'s signature before calling it: an unknown key or
    a missing required one is a :class:`ConfigError` naming it and ``where`` (Python's own
    ``TypeError`` would not say which config it came from)."""
    sig = _builder_signature(builder)
    if sig is None:
        return
    valid = [n for n, p in sig.parameters.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    check_keys(kwargs, valid, where, prefix)
    missing = [n for n in valid if n not in kwargs and n != "self" and sig.parameters[n].default is inspect.Parameter.empty]
    if missing:
        at = f" in {where}" if where else ""
        raise ConfigError(f"missing required key(s) {', '.join(missing)}{at}")


#: Seeds go to Python's, NumPy's (32-bit) and torch's generators: 0 .. 2**32 - 1 suits all.
MAX_SEED = 2**32 - 1


def check_seed(name: str, value: int, count: int = 1) -> int:
    """``value`` if ``value .. value + count - 1`` (one seed per rank or per repeat) are all
    valid seeds, else a ConfigError naming ``name`` and the range."""
    check_range(name, value, lo=0, hi=MAX_SEED - (count - 1), integer=True)
    return int(value)


def user_path(name: str, value: Any) -> str:
    """A path key as the user wrote it, with ``~`` expanded (as every dataset path is);
    an empty or blank path is a ConfigError (it would mean the current directory)."""
    text = str(value)
    if not text.strip():
        raise ConfigError(f"{name} is empty; give a path (an empty path would write into the current directory)")
    import os

    return os.path.expanduser(text)


def check_range(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None,
                lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> Any:
    """``value`` if it is a finite number with ``lo <= value <= hi`` (strict at an open end),
    else :class:`ConfigError` naming ``name``, the allowed range and the value.

    NaN and infinities are always refused (a NaN fails every comparison, so a range test
    written the wrong way round would let it through). ``integer=True`` also refuses
    non-integers. Returns ``int(value)`` when ``integer``, else ``float(value)``.
    """
    if lo is None and hi is None:
        rng = ""
    elif hi is None:
        rng = f" {'>' if lo_open else '>='} {lo}"
    elif lo is None:
        rng = f" {'<' if hi_open else '<='} {hi}"
    else:
        rng = f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
        integer and not isinstance(value, numbers.Integral)
    ):
        raise ConfigError(f"{name} must be {kind}{rng}, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name} must be a finite number{rng}, got {value!r}")
    inside = (
        (lo is None or (v > lo if lo_open else v >= lo))
        and (hi is None or (v < hi if hi_open else v <= hi))
    )
    if not inside:
        raise ConfigError(f"{name} must be {kind + rng if integer else rng.lstrip()}, got {value!r}")
    return int(value) if integer else v
