"""Workdir outputs: config.json, metrics.jsonl, results.json, markdown tables and figures.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a truncated JSON file behind. Only process 0 writes in a multi-host run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np


def is_writer() -> bool:
    """True on the one process that writes reports (process 0)."""
    return jax.process_index() == 0


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray | jax.Array):
        return to_jsonable(np.asarray(value).tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path: str, value: Any) -> None:
    """Atomically writes `value` (dicts, lists, numbers, arrays) as indented JSON."""
    if not is_writer():
        return
    write_text(path, json.dumps(to_jsonable(value), indent=2, sort_keys=True) + "\n")


def write_text(path: str, text: str) -> None:
    """Atomically writes `text` to `path`: a reader sees the old file or the new, never half."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    """Reads a JSON file written by :func:`write_json`."""
    with open(path) as f:
        return json.load(f)


def append_metrics(workdir: str, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends one JSON line `{"step": step, **metrics}` to `workdir/metrics.jsonl`."""
    if not is_writer():
        return
    line = json.dumps(to_jsonable({"step": int(step), **metrics}), sort_keys=True)
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(line + "\n")


def read_metrics(workdir: str) -> list[dict]:
    """All records of `workdir/metrics.jsonl`, in the order they were written."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats are shown with two decimals."""
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def update_markdown_section(path: str, name: str, body: str) -> None:
    """Replaces (or appends) the block between `<!-- begin:name -->` and `<!-- end:name -->`.

    Benchmarks and experiments each own one named section of BENCHMARKS.md, so rerunning one
    refreshes its figures without touching the others.
    """
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = open(path).read() if os.path.exists(path) else "# jaxinv benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text)


def publish_section(path: str, name: str, body: str, write: bool) -> None:
    """Prints a benchmark's markdown section and, if `write`, replaces it in the file at `path`."""
    print(body)
    if write:
        update_markdown_section(path, name, body)
