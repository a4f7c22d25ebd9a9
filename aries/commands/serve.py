"""`aries serve`: an OpenAI-compatible chat server with self-refinement (`refine_rounds`)."""

from __future__ import annotations

import argparse
import sys

from aries.commands.refine import add_model_arguments, backend_options_from_args
from aries.core.flags import add_flags, from_flags
from aries.pipeline.runconfig import GenerationConfig


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible API, with self-refinement",
        description="Serve /v1/chat/completions (stream and stop too), /v1/models and /health. "
        "The request body "
        "parameter refine_rounds=K makes the server answer, refine K rounds and return the "
        "last answer, with every round in the response field aries_chain. Concurrent "
        "requests are batched into one backend call.",
    )
    add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default: 127.0.0.1, this machine only; the server has no "
        "authentication, so expose it only on a trusted network)",
    )
    parser.add_argument(
        "--served-model-name",
        default=None,
        help="model id listed by /v1/models and echoed in responses (default: --model)",
    )
    add_flags(parser, GenerationConfig, ["max_new_tokens"], defaults={"max_new_tokens": 256})
    parser.add_argument(
        "--max-refine-rounds",
        type=int,
        default=8,
        help="largest refine_rounds a request may ask for (default: 8)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=32,
        help="most requests merged into one backend call (default: 32)",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long the first waiting request waits for others to join its batch (default: 5)",
    )
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default: info)")
    parser.set_defaults(func=run)


def _serve_module():
    """aries.serving.serve, or one line naming the extra when its packages are missing."""
    from aries import AriesError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from aries.serving import serve
    except ImportError as error:
        missing = error.name or "a package"
        raise AriesError(
            f"aries serve needs the serve extra ({missing} is not installed): "
            "pip install 'aries-llm[serve]'"
        ) from None
    return serve


def run(args: argparse.Namespace) -> int:
    module = _serve_module()
    is_loopback, serve = module.is_loopback, module.serve
    if not is_loopback(args.host):
        print(
            f"aries serve: warning: listening on {args.host}: anyone who can reach it can use "
            "the model (no authentication)",
            file=sys.stderr,
        )
    serve(
        args.model,
        port=args.port,
        host=args.host,
        backend=args.backend,
        backend_options=backend_options_from_args(args),
        served_model_name=args.served_model_name,
        log_level=args.log_level,
        max_new_tokens=from_flags(args, GenerationConfig, ["max_new_tokens"]).max_new_tokens,
        max_refine_rounds=args.max_refine_rounds,
        max_batch=args.max_batch,
        batch_wait=args.batch_wait_ms / 1000,
        system_prompt=args.system_prompt,
    )
    return 0
