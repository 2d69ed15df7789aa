"""The `jaxinv` command: thin over `pipeline.run(config, workdir)` and `train_and_evaluate`.

  jaxinv run zskd.py:mnist --workdir runs/zskd_mnist [--config.key=value ...]
  jaxinv train teacher.py:mnist --workdir runs/teacher_mnist
  jaxinv demo [--workdir runs/demo]

A config is `path/to/file.py[:arg]`, or the bare name of a bundled config (experiments/configs).
`--config.key=value` overrides any entry (nested keys with dots; the value is a Python
literal, or a bare word for a string). A rerun with the same --workdir resumes.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import os
import signal
import sys
import threading

import ml_collections

import jaxinv
from jaxinv import experiment_configs, pipeline, report, train
from jaxinv import workdir as workdir_lib


def _split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    rest, overrides = [], []
    for arg in argv:
        if arg.startswith("--config."):
            key, sep, value = arg[len("--config."):].partition("=")
            if not sep:
                raise SystemExit(f"jaxinv: error: {arg} needs a value, as in --config.{key}=VALUE")
            overrides.append((key, value))
        else:
            rest.append(arg)
    return rest, overrides


def _all_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        keys += (_all_keys(v, f"{prefix}{k}.") if isinstance(v, ml_collections.ConfigDict)
                 else [f"{prefix}{k}"])
    return keys


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets the dotted `key` to the Python literal in `text`, keeping the field's type.

    Raises:
      ValueError: `key` is not in the config (the message names the closest valid keys), or
        the value's type does not fit the field.
    """
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node.get(name) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        close = difflib.get_close_matches(key, _all_keys(config), n=3, cutoff=0.5)
        hint = (f" Did you mean {', '.join('--config.' + c for c in close)}?" if close
                else " `jaxinv run --help` says how to list them.")
        raise ValueError(f"--config.{key}: no such config key.{hint}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word such as `cosine` is a string
    if isinstance(node[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        node[leaf] = value
    except TypeError as err:
        raise ValueError(f"--config.{key}={text}: {err}") from err


def build_parser() -> argparse.ArgumentParser:
    """Arguments of the `jaxinv` command."""
    parser = argparse.ArgumentParser(prog="jaxinv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"jaxinv {jaxinv.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    overrides_help = ("--config.KEY=VALUE overrides any entry of the config, e.g. "
                      "--config.distill.num_steps=500; --config.help=1 lists the keys.")
    for name, help_text in [("run", "run a pipeline config: teacher -> synthesis -> task"),
                            ("train", "supervised training of a classifier")]:
        cmd = sub.add_parser(name, help=help_text, description=help_text, epilog=overrides_help)
        cmd.add_argument("config", help="path/to/config.py[:arg], or a bundled config name "
                         f"({', '.join(sorted(experiment_configs.list_bundled()))})")
        cmd.add_argument("--workdir", required=True, help="run folder; a rerun resumes it")
    demo = sub.add_parser("demo", help="the whole pipeline on scikit-learn's bundled digits")
    demo.add_argument("--workdir", default=os.path.join("runs", "demo"))
    return parser


def _summary(results: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in results.items():
        if isinstance(value, dict) and key not in ("paper", "stage_seconds"):
            rows += _summary(value, f"{prefix}{key}.")
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            rows.append((f"{prefix}{key}", value))
    return rows


def run_demo(workdir: str) -> dict:
    """Both demo variants into `workdir`, their comparison table, and `results.json`."""
    results = {variant: pipeline.run(
        experiment_configs.load_config(f"demo.py:{variant}"), os.path.join(workdir, variant))
        for variant in ("data_impressions", "class_impressions")}
    di, ci = results["data_impressions"], results["class_impressions"]
    print(report.markdown_table(["model", "digits test accuracy (%)"], [
        ("teacher (digits_cnn, real labels)", di["teacher_test_accuracy"]),
        ("Student-KD (digits_cnn_half, real images)", di["distill"]["student_kd_test_accuracy"]),
        (f"ZSKD student on {di['num_transfer_images']} Data Impressions",
         di["distill"]["student_test_accuracy"]),
        (f"student on {ci['num_transfer_images']} Class Impressions",
         ci["distill"]["student_test_accuracy"])]))
    report.write_json(os.path.join(workdir, "results.json"), results)
    return results


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_directly():
    """Within it, Ctrl-C raises KeyboardInterrupt wherever the run is. In place of Python's
    own handler, `asyncio.run` (jax's array serialization calls it) installs one that only
    cancels its task, and code that catches the cancellation would swallow the interrupt. A
    SIGINT ignored on purpose (a background job) stays ignored; the previous handler is back
    on exit."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    previous = signal.signal(signal.SIGINT, _raise_keyboard_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    with _interrupt_directly():
        return _main(argv)


def _main(argv: list[str]) -> int:
    rest, overrides = _split_overrides(argv)
    args = build_parser().parse_args(rest)
    try:
        if args.command == "demo":
            run_demo(args.workdir)
            print(f"\nresults and figures: {args.workdir}")
            return 0
        config = experiment_configs.load_config(args.config)
        for key, value in overrides:
            apply_override(config, key, value)
        if args.command == "train":
            train.check_train_config(config)
            with workdir_lib.locked(args.workdir):
                results = train.train_and_evaluate(config, args.workdir)
        else:
            results = pipeline.run(config, args.workdir)
    except KeyboardInterrupt:
        print(f"\njaxinv: interrupted; rerun the same command to resume {args.workdir}.",
              file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"jaxinv: error: {err}", file=sys.stderr)
        return 2
    print(report.markdown_table(["result", "value"], _summary(results)))
    print(f"\nresults: {os.path.join(args.workdir, 'results.json')}")
    if os.path.isdir(os.path.join(args.workdir, "figures")):
        print(f"figures: {os.path.join(args.workdir, 'figures')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
