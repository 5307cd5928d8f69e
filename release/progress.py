"""Progress for people, silence for machines.

Stages report steps through `Progress`; on a terminal that becomes rich progress bars on
stderr, elsewhere one plain line per step (CI logs), and nothing at all with --json.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import Any


class Progress:
    """Per-item step bars. Thread-safe: platforms build concurrently."""

    def __init__(self, *, enabled: bool = True, steps: int = 1) -> None:
        self.enabled = enabled
        self.steps = steps
        self._lock = threading.Lock()
        self._rich: Any = None
        self._tasks: dict[str, Any] = {}
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import (
                Progress as RichProgress,
            )

            self._rich = RichProgress(
                TextColumn("[bold]{task.fields[item]:<10}"),
                BarColumn(bar_width=24),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._rich.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._rich is not None:
            self._rich.stop()

    def step(self, item: str, text: str, *, advance: int = 1) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._rich is not None:
                if item not in self._tasks:
                    self._tasks[item] = self._rich.add_task(text, total=self.steps, item=item)
                    advance = 0
                self._rich.update(self._tasks[item], description=text, advance=advance)
            else:
                elapsed = time.monotonic() - self._start
                print(f"[{elapsed:6.1f}s] {item}: {text}", file=sys.stderr, flush=True)

    def done(self, item: str, text: str) -> None:
        if self._rich is not None and item in self._tasks:
            with self._lock:
                self._rich.update(self._tasks[item], description=text, completed=self.steps)
        elif self.enabled:
            self.step(item, text)
