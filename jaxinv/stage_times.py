"""Wall seconds of a run's stages, kept in the workdir so that a rerun reports them truly.

A rerun resumes: a stage that an earlier process finished only loads its result, in seconds, and
a stage that an earlier process was stopped in carries on from its last checkpoint. Timing each
stage in the finishing process alone would report the first as nearly free and the second as
cheaper than it was. So the seconds of every finished stage are written to
`workdir/stage_seconds.json` as soon as it ends and reported from there by later processes, and
a stage begun by an earlier process is named in `resumed`: its seconds are those of the
process that finished it, a lower bound on its cost.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from jaxinv import report

FILE = "stage_seconds.json"


class StageTimes:
    """The stage ledger of one workdir.

    Usage: `times = StageTimes(workdir)`, then `with times.stage("synthesis"): ...` around each
    stage; `times.seconds` ({stage: wall seconds}) and `times.resumed` (stages begun by an
    earlier process) go into results.json.
    """

    def __init__(self, workdir: str):
        self._path = os.path.join(workdir, FILE)
        saved = (report.read_json(self._path) if os.path.exists(self._path)
                 else {"seconds": {}, "started": []})
        self.seconds: dict[str, float] = dict(saved["seconds"])
        self._started: list[str] = list(saved["started"])
        self.resumed: list[str] = []

    def _save(self) -> None:
        report.write_json(self._path, {"seconds": self.seconds, "started": self._started})

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times the body as stage `name`, unless an earlier process already finished it."""
        if name in self.seconds:
            yield  # the body only loads the finished stage's result
            return
        if name in self._started:
            self.resumed.append(name)
        else:
            # Written before the stage runs, so that a process stopped inside it is known.
            self._started.append(name)
            self._save()
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self._save()
