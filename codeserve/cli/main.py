"""`codeserve` command line: one entry point, subcommands registered by each part.

Each module in `_PARTS` exposes `register(subparsers)` (adding its subcommands, each with a
`func` default) and imports its heavy dependencies only inside the handler, so `codeserve --help`
stays fast. Every domain error, and any OSError (a path that cannot be read or written), ends as
one line on stderr and a non-zero exit, never a traceback (`--log-level debug` shows the
traceback of an OSError). Shared flags are defined once, in `codeserve.cli.flags`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from codeserve.cli.flags import configure_logging
from codeserve.common.errors import CodeserveError

# Modules that contribute subcommands; a part that is not installed simply contributes none.
_PARTS = (
    "codeserve.cli.serve",
    "codeserve.cli.score",
    "codeserve.cli.eval",
    "codeserve.cli.loadtest",
    "codeserve.cli.bakeoff",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeserve",
        description="Serve and score small code models behind one OpenAI-compatible endpoint.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _PARTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log_level = getattr(args, "log_level", None) or "warning"
    configure_logging(log_level)
    try:
        return int(args.func(args) or 0)
    except CodeserveError as exc:
        print(f"codeserve: error: {_one_line(str(exc))}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except OSError as exc:
        if log_level == "debug":
            raise
        print(f"codeserve: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codeserve: interrupted", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "unknown error"


if __name__ == "__main__":
    sys.exit(main())
