"""`codeserve serve`, `codeserve quickstart` and `codeserve demo-model`."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from codeserve.cli import flags
from codeserve.common.errors import CliError, validation_message


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway and its models")
    _gateway_flags(serve)
    serve.set_defaults(func=run_serve)

    quick = sub.add_parser(
        "quickstart",
        help="serve the default models and score them on a "
        "HumanEval slice through the gateway, then keep serving",
    )
    _gateway_flags(quick)
    scoring = quick.add_argument_group("scoring")
    flags.add_limit_flag(scoring, default=10, help="HumanEval tasks per model")
    flags.add_candidates_flag(scoring, default=4, help="candidates per task")
    flags.add_data_dir_flag(scoring)
    output = flags.add_output_flags(
        quick,
        default=Path("runs/quickstart"),
        help="output folder: one folder of results and reports per model (default runs/quickstart)",
    )
    output.add_argument("--exit", action="store_true", help="stop after scoring")
    quick.set_defaults(func=run_quickstart)

    demo = sub.add_parser("demo-model", help="build a tiny random-weight model of a family")
    demo.add_argument("out_dir", type=Path, help="directory to write the model to")
    demo.add_argument("--family", default="qwen2.5-coder", help="model family")
    demo.add_argument("--seed", type=int, default=0)
    flags.add_log_level_flag(demo)
    demo.set_defaults(func=run_demo_model)


def _gateway_flags(parser: argparse.ArgumentParser) -> None:
    gateway = parser.add_argument_group("gateway")
    gateway.add_argument(
        "--models-file",
        type=Path,
        metavar="FILE",
        help="YAML models file (default: built-in "
        "defaults: real models when reachable, else two demo models)",
    )
    gateway.add_argument("--host", help="listen address (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="listen port (default 8000)")
    flags.add_log_level_flag(parser, default="$CODESERVE_LOG_LEVEL, else info")


def check_listen(host: str, port: int) -> None:
    """Fail with one line, before any engine starts, when the address cannot be listened on
    (a port in use, an unknown host); uvicorn would find out only after the lifespan start-up."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind(address)
    except OSError as exc:  # socket.gaierror included
        reason = exc.strerror or str(exc)
        raise CliError(f"cannot listen on {host}:{port}: {reason}") from None


def load_settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from codeserve.server.config import Settings

    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "models_file": args.models_file,
            "log_level": args.log_level,
        }.items()
        if v is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise CliError(f"invalid setting {validation_message(exc)}") from None


def settings_and_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from codeserve.server.config import load_models_file
    from codeserve.server.defaults import default_models, prepare_models

    settings = load_settings(args)
    flags.configure_logging(settings.log_level)
    # A bad models file or a busy port fails here, before any model is fetched or started.
    models = load_models_file(settings.models_file) if settings.models_file is not None else None
    check_listen(settings.host, settings.port)
    if models is not None:
        return settings, prepare_models(models, settings)
    models, demo = default_models(settings)
    if demo:
        print(
            "codeserve: no model hub reachable and no local weights: serving two tiny "
            "random-weight demo models (qwen-demo, starcoder2-demo); their text is "
            "meaningless",
            file=sys.stderr,
        )
    return settings, models


def run_serve(args: argparse.Namespace) -> int:
    settings, models = settings_and_models(args)  # user errors first, before the heavy imports
    from codeserve.server.app import create_app
    from codeserve.server.shutdown import serve

    app = create_app(settings, models)
    serve(
        app,
        app.state.drain,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        grace_s=settings.shutdown_grace_s,
    )
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    flags.positive("--limit", args.limit)
    flags.positive("-n", args.n)
    flags.data_dir(args.data_dir)
    flags.out_dir(args.out)
    settings, models = settings_and_models(args)
    from codeserve.cli.quickstart import quickstart

    if settings.log_level != "debug":
        # Engine start-up chatter drowns the summary; a failing engine still gets its last
        # lines logged by the supervisor.
        logging.getLogger("codeserve.engine").setLevel(logging.WARNING)
    return quickstart(
        settings,
        models,
        limit=args.limit,
        n=args.n,
        out_dir=args.out,
        keep_serving=not args.exit,
        data_dir=args.data_dir,
    )


def run_demo_model(args: argparse.Namespace) -> int:
    from codeserve.server.demo_models import build_demo_model, family

    family(args.family)  # validate before importing torch
    flags.out_dir(args.out_dir, flag="DIR")
    path = build_demo_model(args.out_dir, args.family, seed=args.seed)
    print(
        f"codeserve: built a {args.family} demo model in {path} (random weights: its text is "
        "meaningless)"
    )
    return 0
