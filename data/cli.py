"""What every command line shares: --config and --set, the offline environment, and exit status 2 with a
one-line reason when a command cannot run."""
from __future__ import annotations

import os
import sys


def config_args(parser, default: str | None = None, help: str = "config file") -> None:
    parser.add_argument("--config", default=default, help=help)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set seed=7 (repeatable)")


def offline() -> None:
    """Models load from installed packages only: nothing asks a model hub (the environment wins if set)."""
    for key, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(key, value)


def fail(e: BaseException, name_the_error: bool = False) -> int:
    """Say why the command cannot run, on one line; the exit status for it."""
    print(f"error: {type(e).__name__ + ': ' if name_the_error else ''}{e}", file=sys.stderr)
    return 2
