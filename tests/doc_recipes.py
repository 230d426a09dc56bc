"""The documented commands of README.md, docs/*.md and the shipped configs, as data.

A recipe is the list of shell commands in the ```bash blocks of one document (or the
``#   medssl ...`` lines at the top of a shipped config), in reading order. Each
``medssl`` command is parsed with the real ``medssl`` argument parser and its config is
resolved with medssl's own loaders, so what a command reads (an encoder, a run
directory, a data set, tiles) and what it writes (``out_dir``, ``out``, ...) come from the
same code the user runs. Importable from any test (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
# Places a user fills with their own files (docs/data.md says what goes where): a read
# there needs no earlier command. Everything else a command reads must be written first.
# (configs/: a shipped config named as a data source, e.g. `augment preview --data configs/x.yaml`)
USER_INPUTS = ("data/", "slides/", "slides.csv", "/shared/", "HOST:", "configs/")
# The README first (a new user starts there), then the documents it links, in its order.
DOCS = ("README.md", "docs/pretraining.md", "docs/configuration.md", "docs/data.md", "docs/transfer.md",
        "docs/evaluation.md", "docs/api.md", "docs/distributed.md", "docs/reliability.md",
        "docs/augmentation.md", "docs/methods.md", "docs/architecture.md", "docs/benchmarks.md")


@dataclass
class Command:
    """One documented shell command: where it is written and what it says."""

    source: str          # "docs/transfer.md:222" or "configs/transfer/wsi.yaml:5"
    argv: List[str]      # shell words, comment removed
    comment: str = ""    # the text after ``#`` on its line


@dataclass
class Effects:
    """What a ``medssl`` command reads and writes (paths as the user types them)."""

    products: List[Tuple[str, str]] = field(default_factory=list)  # (what, path) written by an earlier step
    inputs: List[Tuple[str, str]] = field(default_factory=list)    # (what, path) data: user files or products
    writes: List[str] = field(default_factory=list)
    run_config: Optional[Dict[str, Any]] = None  # pretrain: the resolved config it trains
    resumes: bool = False                          # pretrain: continues a run in out_dir if one is there


def bash_blocks(text: str) -> List[Tuple[int, str]]:
    """``(first line number, body)`` of every ```bash / ```sh / ```console block."""
    out = []
    for m in re.finditer(r"^```(?:bash|sh|console)[ \t]*\n(.*?)^```", text, re.S | re.M):
        out.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return out


def split_commands(body: str, source: str, first_line: int) -> List[Command]:
    """The commands of one block: ``\\`` continuations joined, ``&&`` chains split, ``$ ``
    prompts dropped (console blocks: lines without a prompt are output)."""
    console = any(line.startswith("$ ") for line in body.splitlines())
    out: List[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        if console:
            if not text.startswith("$ "):
                continue
            text = text[2:]
        lex = shlex.shlex(text, posix=True)
        lex.whitespace_split, lex.commenters = True, "#"
        words = list(lex)
        m = re.search(r"(?:^|\s)#\s*(.*)$", text)
        comment = m.group(1).strip() if m else ""
        chain: List[List[str]] = [[]]
        for w in words:
            if w == "&&":
                chain.append([])
            else:
                chain[-1].append(w)
        out += [Command(f"{source}:{first_line + start}", argv, comment) for argv in chain if argv]
    return out


PYTHON_READ = "<python reads>"


def python_reads(text: str, source: str) -> List[Tuple[int, Command]]:
    """``(line, Command)`` for each ``"runs/..."`` literal in the ```python blocks: a
    documented snippet loading a run (``medssl.load_encoder("runs/demo")``) reads it."""
    out = []
    for m in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.S | re.M):
        first = text.count("\n", 0, m.start(1)) + 1
        for n, line in enumerate(m.group(1).splitlines()):
            for hit in re.finditer(r"[\"'](runs/[^\"']+)[\"']", line):
                path = hit.group(1)
                if re.search(r"\bout(?:_dir)?[\"']?\s*[:=]\s*$", line[:hit.start()]):
                    continue  # where the snippet writes, not what it reads
                out.append((first + n, Command(f"{source}:{first + n}", [PYTHON_READ, path])))
    return out


def doc_recipes(names: Sequence[str] = DOCS) -> Dict[str, List[Command]]:
    """Each document's commands (shell commands and Python snippets' reads of ``runs/``),
    in reading order."""
    out: Dict[str, List[Command]] = {}
    for name in names:
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_text()
        items: List[Tuple[int, Command]] = []
        for line, body in bash_blocks(text):
            items += [(line, c) for c in split_commands(body, name, line)]
        items += python_reads(text, name)
        out[name] = [c for _, c in sorted(items, key=lambda t: t[0])]
    return out


def config_recipe(path: Path) -> List[Command]:
    """The ``#   medssl ...`` example commands in a shipped config's header comment."""
    rel = str(path.relative_to(REPO))
    cmds = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r"#\s+(medssl .*)$", line)
        if m:
            cmds += split_commands(m.group(1), rel, n)
    return cmds


def medssl_argv(argv: Sequence[str]) -> Optional[List[str]]:
    """The ``medssl`` arguments of a command (also under ``torchrun ... -m medssl`` and
    ``python -m medssl``, behind ``VAR=value`` prefixes), or None for other programs."""
    words = [w for w in argv if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)] if argv else []
    if not words:
        return None
    if words[0] == "medssl":
        return list(words[1:])
    if "-m" in words:
        i = words.index("-m")
        if i + 1 < len(words) and words[i + 1] == "medssl":
            return list(words[i + 2:])
    return None


def parse(args: Sequence[str]) -> argparse.Namespace:
    """The namespace the real ``medssl`` parser gives (overrides after options joined, as
    the CLI does); argparse's SystemExit on an unknown option or command."""
    from medssl.cli import build_parser

    parser = build_parser()
    ns, extra = parser.parse_known_args(list(args))
    if extra and isinstance(getattr(ns, "overrides", None), list) and all("=" in e and not e.startswith("-")
                                                                          for e in extra):
        ns.overrides.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return ns


def _spec_paths(spec: Any) -> List[str]:
    """The files / folders a data spec (a path or a registry mapping) points at."""
    if spec is None:
        return []
    if isinstance(spec, (str, Path)):
        return [str(spec)]
    out = []
    for key in ("root", "path", "csv", "labels"):
        if spec.get(key) is not None:
            out.append(str(spec[key]))
    return out


def effects(args: Sequence[str], cwd: Path = REPO) -> Effects:
    """What ``medssl ARGS`` reads and writes, from its parsed flags and resolved config.

    Config files are opened relative to ``cwd``. Unknown commands read and write nothing.
    """
    ns = parse(args)
    e = Effects()
    cmd = ns.command
    if cmd == "pretrain":
        from medssl.train.config import load_pretrain_config

        overrides = list(ns.overrides) + ([f"out_dir={ns.out_dir}"] if ns.out_dir else [])
        from medssl.config import to_dict

        cfg = load_pretrain_config(cwd / ns.config, overrides)
        for spec in (cfg.data, cfg.val_data):
            e.inputs += [("data", p) for p in _spec_paths(spec)]
        if ns.resume or ns.resume_force:
            e.products.append(("run to resume", cfg.out_dir))
        if not ns.print_config:  # --print-config prints and exits
            e.writes.append(cfg.out_dir)
            e.run_config = to_dict(cfg)
            e.resumes = bool(ns.resume or ns.resume_force or cfg.train.resume)
    elif cmd in ("transfer", "evaluate"):
        from medssl.eval.commands import _flag_mapping
        from medssl.eval.config import load_transfer_config

        mapping = _flag_mapping(ns)
        config = getattr(ns, "config", None)
        if cmd == "evaluate":
            mapping.update({"encoder": ns.run_dir, "data": {"name": "pcam", "root": "<its config.yaml>"}})
            mapping.setdefault("out", str(Path(ns.run_dir) / f"eval_{mapping.get('protocol', 'linear')}"))
        cfg = load_transfer_config(cwd / config if config else None, mapping, ns.overrides)
        e.products.append(("encoder", str(cfg.encoder)))
        if cmd == "transfer":
            for spec in (cfg.data, cfg.test_data):
                e.inputs += [("data", p) for p in _spec_paths(spec)]
        e.writes.append(str(cfg.out))
    elif cmd == "embed":
        e.products.append(("encoder", ns.encoder))
        e.inputs.append(("data", ns.data))
        e.writes.append(ns.out)
    elif cmd == "report":
        e.products += [("evaluation", d) for d in ns.dirs]
        if ns.out:
            e.writes.append(ns.out)
    elif cmd == "data":
        sub = ns.data_command if hasattr(ns, "data_command") else None
        _data_effects(ns, sub, e)
    elif cmd == "augment":
        if getattr(ns, "data", None):
            e.inputs.append(("data", ns.data))
        if getattr(ns, "out", None):
            e.writes.append(ns.out)
    return e


def _data_effects(ns: argparse.Namespace, sub: Optional[str], e: Effects) -> None:
    if sub == "sample":
        e.writes.append(ns.out_dir)
    elif sub == "tile":
        e.inputs += [("slides", s) for s in ns.slides]
        e.writes.append(ns.out)
    elif sub == "split" and getattr(ns, "by", "slide") != "slide":
        e.inputs.append(("data", ns.dir))  # a DICOM / NIfTI folder or manifest: the user's own files
    elif sub == "split":
        e.products.append(("tiles", ns.dir))
    elif sub in ("info", "stats"):
        e.inputs.append(("data", ns.path))


def _norm(path: str) -> str:
    return str(Path(path)).rstrip("/")


def covered(path: str, written: Iterable[str]) -> bool:
    """True when ``path`` is one of ``written`` or lies under one of them."""
    p = _norm(path)
    return any(p == w or p.startswith(w + "/") for w in map(_norm, written))


def user_input(path: str) -> bool:
    return any(_norm(path) == u.rstrip("/") or path.startswith(u) for u in USER_INPUTS)


def broken_links(commands: Sequence[Command], written: Sequence[str] = ()) -> List[str]:
    """One line per read in ``commands`` that no earlier command (nor ``written``) wrote
    and that is not a user's own input (:data:`USER_INPUTS`)."""
    have = list(written)
    problems: List[str] = []
    runs: Dict[str, Tuple[str, Dict[str, Any]]] = {}  # out_dir -> (where, config) of this recipe's runs
    for c in commands:
        if c.argv[0] == PYTHON_READ:
            if not covered(c.argv[1], have):
                problems.append(f"{c.source}: the Python snippet reads {c.argv[1]}, which no earlier documented "
                                "command writes")
            continue
        args = medssl_argv(c.argv)
        if args is None:
            continue
        eff = effects(args)
        for what, path in eff.products:
            if not covered(path, have):
                problems.append(f"{c.source}: `{' '.join(c.argv)}` reads {what} {path}, which no earlier "
                                f"documented command writes (written so far: {sorted(set(have))})")
        for what, path in eff.inputs:
            if not (covered(path, have) or user_input(path)):
                problems.append(f"{c.source}: `{' '.join(c.argv)}` reads {what} {path}, which is neither "
                                f"written by an earlier command nor a user input ({', '.join(USER_INPUTS)})")
        if eff.run_config is not None:
            problems += _run_clash(c, eff, runs)
        have += eff.writes
    return problems


def _run_clash(c: Command, eff: Effects, runs: Dict[str, Tuple[str, Dict[str, Any]]]) -> List[str]:
    """A second pretraining into an ``out_dir`` an earlier command of the recipe trained:
    refused unless it resumes, and a resume of another recipe is refused too."""
    from medssl.train.resume import SAFE_ON_RESUME, config_changes

    out_dir, cfg = eff.writes[0], eff.run_config
    assert cfg is not None
    problems = []
    if out_dir in runs:
        where, old = runs[out_dir]
        unsafe = sorted(k for k in config_changes(old, cfg) if k not in SAFE_ON_RESUME)
        if not eff.resumes:
            problems.append(f"{c.source}: `{' '.join(c.argv)}` trains into {out_dir}, which {where} already "
                            "filled with checkpoints: medssl refuses it (give it its own out_dir)")
        elif unsafe and not getattr(parse(medssl_argv(c.argv) or []), "resume_force", False):
            problems.append(f"{c.source}: `{' '.join(c.argv)}` resumes the run {where} wrote in {out_dir} with "
                            f"another recipe ({', '.join(unsafe)}): medssl refuses it")
    runs[out_dir] = (c.source, cfg)
    return problems


def claimed_writes(command: Command) -> List[str]:
    """``runs/...`` paths a command's comment says it writes (``-> runs/x``, ``writes runs/x``)."""
    return re.findall(r"(?:->|→|writes)\s+(runs/[\w./-]+)", command.comment)


# ------------------------------------------------------------------ toy-scale runs
# Appended to each documented command so a chain runs in seconds on the embedded sample:
# timm's tiny test ResNet, two steps, small images, few bootstrap resamples, no figures.
TOY_PRETRAIN = ("model.backbone=test_resnet", "model.proj_hidden=32", "model.proj_dim=16", "model.pred_hidden=32",
                "train.max_steps=2", "train.batch_size=8", "train.num_workers=0", "train.knn_every=0",
                "support_set.size=16", "augment.image_size=32", "train.ckpt_every=1000")
TOY_TRANSFER = ("report.n_boot=20", "report.plots=false", "num_workers=0", "batch_size=64", "seeds=1",
                "finetune.epochs=1")
# The real data sets a recipe names, as the sample's files of the same format.
SAMPLE_FOR = {"stl10": "stl10", "pcam": "pcam", "medmnist": "medmnist"}


def toy_data_dir(sample_dir: Path, cwd: Path) -> None:
    """``cwd/data/<format>`` pointing at the embedded sample, and ``cwd/configs`` at the
    repository's configs, so documented paths resolve as they do in a clone."""
    (cwd / "data").mkdir(exist_ok=True)
    for name, sub in SAMPLE_FOR.items():
        link = cwd / "data" / name
        if not link.exists():
            link.symlink_to(sample_dir / sub, target_is_directory=True)
    if not (cwd / "configs").exists():
        (cwd / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    if not (cwd / "sample_data").exists():
        (cwd / "sample_data").symlink_to(sample_dir, target_is_directory=True)


def toy_argv(args: Sequence[str], cwd: Path) -> List[str]:
    """``args`` of a documented ``medssl`` command with the toy-scale overrides added.

    MedMNIST recipes name real flags (pathmnist, bloodmnist) that the sample does not
    have: they read the sample's MedMNIST-format file (``ihcstain``) instead."""
    ns = parse(args)
    extra: List[str] = []
    if ns.command == "pretrain":
        extra += TOY_PRETRAIN
    elif ns.command in ("transfer", "evaluate"):
        extra += TOY_TRANSFER
        config = getattr(ns, "config", None)
        if config and "=" not in config:
            import yaml

            data = yaml.safe_load((cwd / config).read_text()).get("data")
            if isinstance(data, dict) and data.get("name") == "medmnist":
                extra.append("data.flag=ihcstain")
    elif ns.command == "embed":
        extra += ["--batch-size", "64"]
    if ns.command in ("transfer", "evaluate", "embed", "pretrain"):
        extra.append("--no-progress")
    return list(args) + extra
