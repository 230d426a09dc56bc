"""``python -m medssl`` (also how ``torchrun -m medssl`` starts the CLI)."""

import sys

# One try around the import and the call: Ctrl-C in the first milliseconds, or between the
# import and the first line of ``main`` on a busy machine, ends with one line too.
try:
    from medssl.cli import main

    status = main()
except KeyboardInterrupt:
    print("medssl: interrupted", file=sys.stderr)
    raise SystemExit(130) from None
raise SystemExit(status)
