"""``python -m medssl`` (also how ``torchrun -m medssl`` starts the CLI)."""

import sys

try:
    from medssl.cli import main
except KeyboardInterrupt:  # Ctrl-C in the first milliseconds: no traceback either
    print("medssl: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
