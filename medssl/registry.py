"""Name -> builder tables: the one place that maps config names to code.

Each table is a :class:`Registry`. Modules register their builders with the decorator
form at import time; :func:`ensure_registered` imports the packages that do so, so a
lookup by name works whichever module the caller imported first.

>>> from medssl.registry import DATASETS
>>> ds = DATASETS.build({"name": "medmnist", "root": "data", "flag": "bloodmnist", "split": "train"})
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, TypeVar

from medssl.config import check_kwargs, closest
from medssl.errors import RegistryError

T = TypeVar("T", bound=Callable[..., Any])

# Packages whose import registers entries; imported lazily on first lookup so that
# ``import medssl.registry`` stays cheap and free of import cycles.
_PROVIDERS: Dict[str, tuple[str, ...]] = {
    "dataset": ("medssl.data",),
    "augmentation": ("medssl.augment",),
    "objective": ("medssl.objectives",),
    "neighbour": ("medssl.objectives",),
}


class Registry:
    """A table from names to builders of one kind (``kind`` names it in errors)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: Dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``fn`` under ``name`` (lower-case); duplicates are an error."""
        key = name.lower()

        def deco(fn: T) -> T:
            if key in self._entries and self._entries[key] is not fn:
                raise RegistryError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = fn
            return fn

        return deco

    def _load(self) -> None:
        for mod in _PROVIDERS.get(self.kind, ()):
            importlib.import_module(mod)

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name``; an unknown name lists the valid ones."""
        self._load()
        key = str(name).lower()
        if key not in self._entries:
            close = closest(key, list(self._entries))
            hint = f" Did you mean {close!r}?" if close else ""
            raise RegistryError(
                f"unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(sorted(self._entries))}"
            )
        return self._entries[key]

    def split(self, spec: Any, where: str = "") -> Tuple[str, Dict[str, Any]]:
        """``(name, kwargs)`` of a spec given as a name (``"pnn"``) or a mapping
        ``{"name": ..., **kwargs}``; anything else is a :class:`RegistryError` naming ``where``."""
        label = where or f"a {self.kind} config"
        if isinstance(spec, str):
            return spec, {}
        if isinstance(spec, Mapping):
            if "name" not in spec:
                raise RegistryError(f"{label} needs a 'name' key ({', '.join(self.names())}); got keys {sorted(spec)}")
            return str(spec["name"]), {k: v for k, v in spec.items() if k != "name"}
        raise RegistryError(f"{label} must be a {self.kind} name or a mapping with 'name', got {spec!r}")

    def check(self, cfg: Mapping[str, Any], source: Optional[str] = None, section: str = "",
              provided: tuple = ()) -> Callable[..., Any]:
        """Check a ``{"name": ..., **kwargs}`` mapping without building: the name is known and
        every other key is an argument of its builder (:func:`medssl.config.check_kwargs`).
        ``source`` (a file) and ``section`` (its dotted key) are named in errors;
        ``provided`` are argument names the caller supplies itself. Returns the builder."""
        at = f" in {source}" if source else ""
        if not isinstance(cfg, Mapping) or "name" not in cfg:
            got = f"got keys {sorted(cfg)}" if isinstance(cfg, Mapping) else f"got {cfg!r}"
            label = f"'{section}'" if section else f"a {self.kind} config"
            raise RegistryError(f"{label} needs a 'name' key{at} ({', '.join(self.names())}); {got}")
        try:
            builder = self.get(cfg["name"])
        except RegistryError as exc:
            if not section and not source:
                raise
            raise RegistryError(f"{section + '.name' if section else 'name'}{at}: {exc}") from exc
        where = f"{source} ({self.kind} {cfg['name']!r})" if source else f"{self.kind} {cfg['name']!r}"
        given = {k: v for k, v in cfg.items() if k != "name"}
        given.update({k: None for k in provided})
        check_kwargs(builder, given, where, section)
        return builder

    def build(self, cfg: Mapping[str, Any], **extra: Any) -> Any:
        """Call the builder named by ``cfg['name']`` with the remaining keys (and ``extra``) as
        keyword arguments, after :meth:`check` has checked them against its signature."""
        kwargs = {k: v for k, v in cfg.items() if k != "name"}
        kwargs.update(extra)
        builder = self.check({"name": cfg.get("name"), **kwargs} if "name" in cfg else cfg)
        return builder(**kwargs)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return str(name).lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


DATASETS = Registry("dataset")
AUGMENTATIONS = Registry("augmentation")
OBJECTIVES = Registry("objective")
NEIGHBOURS = Registry("neighbour")
