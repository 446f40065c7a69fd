"""Resource sampling while a scenario runs: worker peak RSS, CPU seconds per process group."""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]


def _tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (gunicorn's master and workers), whichever are alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for proc in _tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


@dataclass
class Sampler:
    """Polls the workers' RSS every ``interval`` seconds on a thread; the peak is what counts."""

    worker_pids: list[int]
    interval: float = 0.1
    peaks: dict[int, int] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)  # each worker's first sample
    last: dict[int, int] = field(default_factory=dict)  # and its latest
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        for pid in self.worker_pids:
            rss = sum(_rss(p) for p in _tree(pid))
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss)
            self.first.setdefault(pid, rss)
            self.last[pid] = rss

    @property
    def peak_mb(self) -> float:
        """The largest single worker's peak (what one worker process needs)."""
        return self.largest(self.peaks)

    @staticmethod
    def largest(samples: dict[int, int]) -> float:
        return max(samples.values(), default=0) / 2**20


def _rss(proc: psutil.Process) -> int:
    try:
        rss: int = proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0
    return rss


@dataclass
class CpuMeter:
    """CPU seconds used by named process trees, and the machine's busy share, over a span."""

    groups: dict[str, list[int]]
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    machine_busy_pct: float = 0.0
    _machine0: object = None

    def __enter__(self) -> CpuMeter:
        self.start = {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.groups.items()}
        self._machine0 = psutil.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        for name, pids in self.groups.items():
            self.used[name] = round(sum(cpu_seconds(p) for p in pids) - self.start[name], 2)
        before = self._machine0
        after = psutil.cpu_times()
        assert isinstance(before, type(after))
        idle = (after.idle + after.iowait) - (before.idle + before.iowait)
        total = sum(after) - sum(before)
        self.machine_busy_pct = round(100 * (1 - idle / total), 1) if total > 0 else 0.0
