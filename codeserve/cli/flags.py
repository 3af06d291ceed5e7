"""The flags every command spells the same way, defined once.

    --base-url URL   OpenAI-compatible base URL (`http://host:port` means `http://host:port/v1`)
    --model NAME     model name sent in requests
    --api-key KEY    bearer token (default: $CODESERVE_API_KEY or $OPENAI_API_KEY)
    -n N             candidates per task or request
    --limit K        only the first K tasks of a benchmark
    --data-dir DIR   folder holding the benchmark files
    --out DIR        output folder (results.json, report.html, ...)
    --log-level L    debug, info, warning or error

Old spellings stay for one release as hidden aliases: they are missing from `--help`, still
work, and print one deprecation line on stderr. Checks that need more than argparse's `type`
(`base_url`, `data_dir`, `out_dir`, `positive`) raise `CliError`: one line, no usage dump.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from codeserve.common.errors import CliError

LOG_LEVELS = ("debug", "info", "warning", "error")
RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"

Group = Any  # an ArgumentParser or one of its argument groups


def deprecated(old: str, new: str) -> None:
    print(
        f"codeserve: warning: {old} is deprecated and goes in the next release; use {new}",
        file=sys.stderr,
    )


class _Alias(argparse.Action):
    """A hidden old spelling of a flag: stores into the new flag's dest, and says so."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs
        )
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        deprecated(option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, values)


def add_alias(group: Group, old: str, *, dest: str, new: str, **kwargs: Any) -> None:
    """Accept `old` (hidden from --help) as a deprecated spelling of `new`."""
    group.add_argument(old, dest=dest, action=_Alias, new=new, **kwargs)


class _EndpointAlias(_Alias):
    """The old `--endpoint`: a URL under `eval` (now --base-url), completions|chat under
    `loadtest` (now --api). Either value works with either command that has the new flag."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, apis: Sequence[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(option_strings, dest, new="--base-url", **kwargs)
        self.apis = tuple(apis)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if values in self.apis:
            deprecated(f"--endpoint {values}", f"--api {values}")
            namespace.api = values
        else:
            deprecated("--endpoint URL", "--base-url URL")
            namespace.base_url = values


def add_target_flags(
    parser: argparse.ArgumentParser,
    *,
    model_help: str,
    timeout_s: float,
    apis: Sequence[str] = (),
    repeatable: bool = False,
) -> Group:
    """--base-url, --model, --api-key, --timeout (and --api when the command can choose the
    completions or the chat API). Returns the group, for the command's own target flags.
    `repeatable`: --base-url and --model may be given several times (lists; no old spellings)."""
    group = parser.add_argument_group("target")
    many: dict[str, Any] = {"action": "append"} if repeatable else {}
    group.add_argument(
        "--base-url",
        metavar="URL",
        **many,
        help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 "
        "(http://host:port means http://host:port/v1)"
        + ("; repeat for several endpoints" if repeatable else ""),
    )
    group.add_argument("--model", help=model_help, **many)
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help="bearer token (default: $CODESERVE_API_KEY or $OPENAI_API_KEY)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=timeout_s,
        help=f"seconds per request (default {timeout_s:g})",
    )
    if apis:
        group.add_argument(
            "--api", choices=apis, default=apis[0], help=f"which API to call (default {apis[0]})"
        )
    if not repeatable:
        group.add_argument("--endpoint", dest="base_url", action=_EndpointAlias, apis=apis)
        add_alias(group, "--url", dest="base_url", new="--base-url")
    return group


def add_candidates_flag(group: Group, *, default: int, help: str) -> None:
    """-n (the old `--n` is a hidden alias)."""
    group.add_argument(
        "-n", type=int, default=default, metavar="N", help=f"{help} (default {default})"
    )
    add_alias(group, "--n", dest="n", new="-n", type=int)


def add_limit_flag(
    group: Group,
    *,
    default: int | None = None,
    help: str = "only the first K tasks",
    aliases: Sequence[str] = (),
) -> None:
    """--limit K (with hidden aliases, e.g. loadtest's old `--tasks`)."""
    group.add_argument(
        "--limit",
        type=int,
        default=default,
        metavar="K",
        help=help + (f" (default {default})" if default is not None else ""),
    )
    for old in aliases:
        add_alias(group, old, dest="limit", new="--limit", type=int)


def add_data_dir_flag(group: Group) -> None:
    group.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="folder holding the benchmark files (default: the dataset cache, "
        "then downloads where a network allows)",
    )


def add_output_flags(
    parser: argparse.ArgumentParser, *, help: str, default: Path | None = None
) -> Group:
    """--out DIR: always a folder. Returns the group, for the command's own output flags."""
    group = parser.add_argument_group("output")
    group.add_argument("--out", type=Path, default=default, metavar="DIR", help=help)
    return group


def add_log_level_flag(parser: argparse.ArgumentParser, *, default: str = "warning") -> None:
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help=f"log verbosity on stderr (default {default})",
    )


def add_compare_command(
    parser: argparse.ArgumentParser,
    *,
    dest: str,
    help: str,
    what: str,
    given_as: str,
    func: Callable[[argparse.Namespace], int],
) -> None:
    """`codeserve COMMAND compare A B`: two runs side by side. `what` names a run ("run",
    "bake-off") and `given_as` the paths that name one ("its results.json or --out folder")."""
    nested = parser.add_subparsers(dest=dest, metavar="{compare}")
    compare = nested.add_parser("compare", help=help)
    compare.add_argument("a", type=Path, help=f"{what} A: {given_as}")
    compare.add_argument("b", type=Path, help=f"{what} B: {given_as}")
    add_log_level_flag(compare)
    compare.set_defaults(func=func)


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; called again (serve reads its level from its settings) it only
    changes the level."""
    logging.basicConfig(stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level.upper())
    # Client libraries log every request at INFO; that is an access log's job, and it is off.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- checks after parsing: each failure is one CliError line -----------------------------------


def base_url(url: str) -> str:
    """The normalized base URL (`http://host:port` gets `/v1`)."""
    import httpx

    from codeserve.client.endpoint import normalize_base_url

    try:
        return normalize_base_url(url)
    except (CliError, httpx.InvalidURL):
        raise CliError(
            f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}"
        ) from None


def positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise CliError(f"{flag} must be a positive integer, got {value}")


def data_dir(path: Path | None) -> Path | None:
    if path is not None and not path.is_dir():
        raise CliError(f"--data-dir {path} is not a directory")
    return path


def out_dir(path: Path, flag: str = "--out") -> Path:
    """Check that the output folder exists or can be created, so a bad one fails before any
    work (without creating it: a later check may still stop the run)."""
    if path.exists() and not path.is_dir():
        raise CliError(f"{flag} {path} exists and is not a directory")
    ancestor = path.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: cannot create a folder in {ancestor}")
    return path


def results_file(path: Path) -> Path:
    """A results.json given directly or as the --out folder that holds it."""
    return path / RESULTS_FILE if path.is_dir() else path
