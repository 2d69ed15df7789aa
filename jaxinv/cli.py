"""The `jaxinv` command: thin over the library's `*_and_evaluate(config, workdir)` functions.

  jaxinv train experiments/configs/teacher.py:mnist --workdir runs/teacher_mnist
  jaxinv run experiments/configs/<file>.py[:arg] --workdir DIR [--config.key=value ...]
  jaxinv demo [--workdir runs/demo]
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxinv import config_files, demo, train, transfer_size, zskd


def _tasks() -> dict:
    return {"train": train.train_and_evaluate, "zskd": zskd.zskd_and_evaluate,
            "transfer_size": transfer_size.transfer_size_and_evaluate, "demo": demo.run_demo}


def _split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith("--config."):
            key, sep, value = arg[len("--config."):].partition("=")
            if not sep:
                raise SystemExit(f"error: {arg} needs a value, as in --config.{key}=VALUE")
            overrides.append((key, value))
        else:
            rest.append(arg)
    return rest, overrides


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the `jaxinv` command."""
    parser = argparse.ArgumentParser(prog="jaxinv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in [("train", "supervised training of a classifier"),
                            ("run", "run the task a config names (config.task)")]:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("config", help="path/to/config.py[:arg]")
        cmd.add_argument("--workdir", required=True, help="run folder; a rerun resumes it")
    demo = sub.add_parser("demo", help="the whole pipeline on scikit-learn's bundled digits")
    demo.add_argument("--workdir", default="runs/demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    rest, overrides = _split_overrides(argv)
    args = build_parser().parse_args(rest)
    try:
        if args.command == "demo":
            results = _tasks()["demo"](args.workdir)
        else:
            config = config_files.load_config(args.config)
            for key, value in overrides:
                config_files.apply_override(config, key, value)
            task = "train" if args.command == "train" else config.get("task", "train")
            tasks = _tasks()
            if task not in tasks:
                raise ValueError(f"config.task={task!r} is not a jaxinv task; "
                                 f"choose from {sorted(tasks)}.")
            results = tasks[task](config, args.workdir)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        print(f"jaxinv: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
