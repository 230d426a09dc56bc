"""``python -m medssl`` (also how ``torchrun -m medssl`` starts the CLI)."""

from medssl.cli import main

raise SystemExit(main())
