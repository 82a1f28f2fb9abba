"""Measure mode and autotuning: time the eligible backends on the very problem, once, and remember
the winner in memory and in the wisdom file (``fastconv._wisdom``), keyed by everything the winner
can depend on."""
from __future__ import annotations

import threading
import time

from .._config import get_num_threads
from .._wisdom import JsonStore, wisdom_path
from .model import MODEL

_autotune = False
_measured: dict[str, dict] = {}
_measured_lock = threading.Lock()
_wisdom_store: JsonStore | None = None


def set_autotune(enabled: bool) -> None:
    """With autotuning on, ``algorithm="auto"`` behaves as ``"measure"``: the first call with a new
    problem times every eligible backend and remembers the winner (in memory and in the wisdom file)."""
    global _autotune
    _autotune = bool(enabled)
    MODEL.reset()  # memos of model decisions must not bypass the measurements


def get_autotune() -> bool:
    return _autotune


def measures(algorithm: str) -> bool:
    """Whether ``algorithm`` is decided by measurement (asked for, or autotuning on)."""
    return algorithm == "measure" or (_autotune and algorithm == "auto")


def wisdom() -> JsonStore:
    global _wisdom_store
    if _wisdom_store is None or _wisdom_store.path != wisdom_path():
        _wisdom_store = JsonStore(wisdom_path(), "wisdom")
    return _wisdom_store


def forget_measurements() -> None:
    """Drop in-memory measurements (the wisdom file is left alone)."""
    global _wisdom_store
    with _measured_lock:
        _measured.clear()
    _wisdom_store = None


def wisdom_key(params, operation: str = "forward") -> str:
    """Everything the winner can depend on: operation, shapes, dtype, all parameters, threads."""
    fields = ",".join(
        f"{name}={getattr(params, name)}" for name in params.__dataclass_fields__
    )
    return f"{operation}|{fields}|threads={get_num_threads()}"


def best_of_two(run) -> float:
    """Seconds ``run()`` takes: a warm-up call (it also compiles), then the better of two."""
    run()
    times = []
    for _ in range(2):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measured_times(key: str, measure) -> dict[str, float]:
    """Times remembered under ``key`` (in memory, else in the wisdom file), else ``measure()``d now
    and remembered in both."""
    record = _measured.get(key)
    if record is None:
        stored = wisdom().get(key)
        if isinstance(stored, dict) and isinstance(stored.get("times"), dict):
            record = stored
        else:
            record = {"times": measure()}
            wisdom().update({key: record})
        with _measured_lock:
            _measured[key] = record
    return record["times"]


def remembered_times(key: str, include_file: bool = True) -> dict[str, float] | None:
    """Times measured before under ``key`` (in memory, or in the wisdom file if ``include_file``),
    without measuring."""
    record = _measured.get(key) or (wisdom().get(key) if include_file else None)
    return record.get("times") if isinstance(record, dict) else None
