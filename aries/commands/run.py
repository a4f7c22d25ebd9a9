"""`aries run`: the whole loop from one YAML file; `aries status`: where a run stands."""

from __future__ import annotations

import argparse
import json

from aries.pipeline.methods import StageNames


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run (or resume) ARIES iterations from a YAML config",
        description="Run collect → score → select → pairs → train → eval for every iteration "
        "of a run config. Killed at any point, the same command resumes where it stopped.",
    )
    parser.add_argument("--config", required=True, help="run config YAML (see configs/)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a config key, e.g. --set train.beta=0.05 --set iterations=2 (repeatable)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an existing run folder that holds a different configuration",
    )
    parser.add_argument(
        "--stop-before",
        choices=StageNames(),  # every declared method's iteration stages
        help="stop when this stage is next (e.g. train: run it with `accelerate launch -m "
        "aries.cli train RUN --iteration t`, then rerun `aries run` to continue)",
    )
    parser.add_argument(
        "--launcher",
        metavar="COMMAND",
        help="run every training stage under this command prefix (sets train.launcher), e.g. "
        "'torchrun --nproc_per_node 8' or 'accelerate launch --config_file "
        "accelerate/deepspeed_zero2.yaml'",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config completely and print the resolved plan (stages, models, what "
        "each iteration collects and trains) without running anything",
    )
    parser.set_defaults(func=run)

    status = subparsers.add_parser("status", help="print where a run stands")
    status.add_argument("run_dir", help="the run folder (runs/<name>)")
    status.set_defaults(func=show_status)


def run(args: argparse.Namespace) -> int:
    from aries import AriesError
    from aries.core.config import located_error
    from aries.pipeline.loop import run as run_loop
    from aries.pipeline.plan import check_config, check_max_length, describe_plan
    from aries.pipeline.runconfig import load_run_config
    from aries.pipeline.rundir import RunDir
    from aries.pipeline.status import summary_table

    overrides = list(args.overrides)
    if args.launcher is not None:
        overrides.append(f"train.launcher={json.dumps(args.launcher)}")
    config = load_run_config(args.config, overrides)
    if config.train.launcher:
        from aries.pipeline.launch import describe_launch, launcher_words

        launcher_words(config)  # a program not on PATH: one line, before anything runs
    try:  # --check: everything the run reads; a run: what would fail only after collection
        if args.check:
            check_config(config)
        else:
            check_max_length(config)
    except AriesError as error:
        raise AriesError(located_error(args.config, str(error), overrides)) from None
    if args.check:
        print(f"{args.config}: valid\n{describe_plan(config)}")
        if config.train.launcher:
            print(f"training stages:\n{describe_launch(config)}")
        return 0
    manifest = run_loop(
        config, overwrite=args.overwrite, progress=not args.quiet, stop_before=args.stop_before
    )
    print(summary_table(RunDir(config.run_dir), manifest))
    return 0


def show_status(args: argparse.Namespace) -> int:
    import json

    from aries import AriesError
    from aries.core.docs import page
    from aries.pipeline.rundir import RunDir
    from aries.pipeline.status import summary_table

    run = RunDir(args.run_dir)
    if not run.manifest.is_file():
        raise AriesError(
            f"{args.run_dir}: no manifest.json (not a run folder, or not started; "
            f"{page('concepts', 'the-run-directory')})"
        )
    print(summary_table(run, json.loads(run.manifest.read_text())))
    return 0
