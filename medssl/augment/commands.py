"""``medssl augment ...`` commands: ``preview`` (a PNG grid of augmented views)."""

from __future__ import annotations

import argparse


def _preview(args: argparse.Namespace) -> int:
    from medssl.augment.preview import preview

    out = preview(
        args.config,
        args.data,
        args.out,
        split=args.split,
        n=args.n,
        n_views=args.views,
        seed=args.seed,
        image_size=args.size,
    )
    print(f"wrote {out}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``augment`` command group."""
    group = subparsers.add_parser("augment", help="inspect augmentation presets")
    sub = group.add_subparsers(dest="augment_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda _args: (group.print_help(), 0)[1])

    p = sub.add_parser("preview", help="write a PNG grid of images and their augmented views")
    p.add_argument("config", metavar="CONFIG_OR_PRESET", help="preset name (histo, natural, gray, radiology, eval) or a YAML file with an 'augment:' mapping")
    p.add_argument("--data", required=True, help="dataset file or folder (as for 'medssl data info')")
    p.add_argument("--split", default="train", help="dataset split (default: train)")
    p.add_argument("--n", type=int, default=8, help="number of images (rows; default 8)")
    p.add_argument("--views", type=int, default=4, help="views per image (columns; default 4; a YAML 'views' list overrides)")
    p.add_argument("--size", type=int, default=None, help="output size in px (default: augment.image_size, else the image's own)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.set_defaults(func=_preview)
