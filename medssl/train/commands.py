"""``medssl pretrain CONFIG [key.sub=value ...]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def _pretrain(args: argparse.Namespace) -> int:
    from medssl.config import to_dict
    from medssl.train.config import load_pretrain_config

    overrides = list(args.overrides)
    if args.resume or args.resume_force:
        overrides.append("train.resume=auto")
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    run_dir = Path(args.config).parent
    if Path(args.config).name == "config.yaml" and ((run_dir / "checkpoints").is_dir()
                                                     or (run_dir / "encoder.safetensors").exists()):
        from medssl.train.run_dir import read_run_config

        read_run_config(run_dir)  # a run's own config, as when resuming with it: refused if torn
    cfg = load_pretrain_config(args.config, overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return 0
    from medssl.train.loop import pretrain

    result = pretrain(cfg, progress=not args.no_progress, resume_force=args.resume_force,
                      resume_asked=bool(args.resume or args.resume_force), overwrite=args.overwrite)
    if result.encoder is not None:
        steps = f"{result.steps} step" + ("" if result.steps == 1 else "s")
        if result.steps_run == 0:  # resumed at its last step: no loss to show
            print(f"medssl: the run was already complete ({steps}); nothing to train, the encoder was re-exported.")
        else:
            print(f"medssl: finished {steps} (last loss {result.last_loss:.4f}).")
        print(f"  run directory : {result.run_dir}")
        print(f"  encoder       : {result.encoder}")
        print(f"  checkpoint    : {result.checkpoint}")
        print(f"  metrics       : {result.run_dir / 'metrics.csv'} (plots: loss.png, monitor.png)")
    if result.stop_signal is not None:  # checkpointed, not finished: "resume me"
        from medssl.train.signals import exit_status

        return exit_status(result.stop_signal)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining from a YAML config",
        description="Pretrain an encoder with a self-supervised objective. Dotted overrides after the "
        "config change single keys, e.g. `medssl pretrain configs/pcam.yaml objective.alpha=0.1 "
        "train.epochs=5`. Launch with `torchrun --nproc_per_node=N -m medssl pretrain ...` for DDP.",
    )
    p.add_argument("config", help="YAML config file (see configs/ and docs/configuration.md)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted config overrides")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")
    p.add_argument("--resume-force", action="store_true",
                   help="resume even if the config changes what is trained (dataset, objective, model, "
                   "optimiser, seed ...); each change is recorded in out_dir/history.jsonl")
    p.add_argument("--overwrite", action="store_true",
                   help="train a new run into an out_dir that holds a finished run (its encoder, metrics and "
                   "checkpoints are replaced); without it such a directory is refused")
    p.add_argument("--out-dir", help="run directory (default: the config's out_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrain)
