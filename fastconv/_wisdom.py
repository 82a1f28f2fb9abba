"""Persistent JSON stores for what fastconv learns about this machine: autotune winners ("wisdom")
and fitted cost-model coefficients (calibration).

Guarantees, because several processes may tune at once and a cache directory may be read-only:

* writes are atomic — a temporary file in the same directory, then ``os.replace`` — so a reader
  never sees half a file;
* concurrent writers merge instead of losing each other's entries: read-merge-write happens under
  an exclusive ``flock`` on a sibling lock file;
* a corrupt or unreadable file gives one warning and is ignored (and replaced on the next write);
* an unwritable location gives one warning and the store keeps working in memory only.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import warnings
from pathlib import Path

try:  # POSIX advisory locks; elsewhere concurrent writers fall back to last-writer-wins
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

FORMAT_VERSION = 1


class JsonStore:
    """A ``dict[str, object]`` persisted as one JSON file, safe against concurrent processes."""

    def __init__(self, path: Path, kind: str):
        self.path = Path(path)
        self.kind = kind  # names the file in warnings ("wisdom", "calibration")
        self._entries: dict | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    # -- reading ----------------------------------------------------------------------------
    def _read_file(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as error:
            self._warn_once("read", f"cannot read {self.kind} file {self.path}: {error}; ignoring it")
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
                raise ValueError("unexpected layout or format version")
            entries = data["entries"]
            if not isinstance(entries, dict):
                raise ValueError("entries is not an object")
            return entries
        except (ValueError, KeyError) as error:
            self._warn_once(
                "corrupt", f"{self.kind} file {self.path} is corrupt ({error}); ignoring it"
            )
            return {}

    def entries(self) -> dict:
        with self._lock:
            if self._entries is None:
                self._entries = self._read_file()
            return self._entries

    def get(self, key: str):
        return self.entries().get(key)

    # -- writing ----------------------------------------------------------------------------
    def update(self, new_entries: dict) -> None:
        """Add ``new_entries`` in memory and merge them into the file (best effort)."""
        with self._lock:
            if self._entries is None:
                self._entries = self._read_file()
            self._entries.update(new_entries)
            try:
                self._merge_into_file(new_entries)
            except OSError as error:
                self._warn_once(
                    "write",
                    f"cannot write {self.kind} file {self.path} ({error}); keeping it in memory only",
                )

    def replace_all(self, entries: dict) -> None:
        """Overwrite the whole store (used by calibration, which owns its file)."""
        with self._lock:
            self._entries = dict(entries)
            try:
                self._write_atomically(self._entries, merge=False)
            except OSError as error:
                self._warn_once(
                    "write",
                    f"cannot write {self.kind} file {self.path} ({error}); keeping it in memory only",
                )

    def clear_memory(self) -> None:
        with self._lock:
            self._entries = None

    def _merge_into_file(self, new_entries: dict) -> None:
        self._write_atomically(new_entries, merge=True)

    def _write_atomically(self, entries: dict, merge: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock_file:
            if fcntl is not None:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                merged = {**self._read_file(), **entries} if merge else dict(entries)
                descriptor, temporary = tempfile.mkstemp(
                    dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp"
                )
                try:
                    with os.fdopen(descriptor, "w") as handle:
                        json.dump({"format": FORMAT_VERSION, "entries": merged}, handle, indent=1,
                                  sort_keys=True)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(temporary, self.path)
                except BaseException:
                    if os.path.exists(temporary):
                        os.unlink(temporary)
                    raise
            finally:
                if fcntl is not None:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message, RuntimeWarning, stacklevel=4)


# --- where fastconv keeps what it learns ---------------------------------------------------------
# Kept here, not in the modules that use the files, so that the dispatcher (which reads both) and
# the calibration CLI (which writes one) need not import each other.
CALIBRATION_FILE = "calibration.json"
CPU_FILE = "cpu.json"


def wisdom_path() -> Path:
    """The wisdom file: ``$FASTCONV_WISDOM``, else ``wisdom.json`` in the fastconv cache directory."""
    from ._config import cache_dir

    override = os.environ.get("FASTCONV_WISDOM")
    return Path(override).expanduser() if override else cache_dir() / "wisdom.json"


def calibration_store() -> JsonStore:
    """The calibration file in the fastconv cache directory."""
    from ._config import cache_dir

    return JsonStore(cache_dir() / CALIBRATION_FILE, "calibration")


def cpu_store() -> JsonStore:
    """What was measured about this CPU (``fastconv._fma_width``), in the fastconv cache directory."""
    from ._config import cache_dir

    return JsonStore(cache_dir() / CPU_FILE, "cpu")


def machine_fingerprint() -> str:
    """Coefficients are valid for one CPU model and the instruction set the kernels are compiled
    for (a process restricted to AVX2 on an AVX-512 host has its own); the thread count is a
    feature, not part of the key."""
    from ._cpu import target_cpu

    cpu = target_cpu()
    return f"{platform.machine()}-{cpu.name}-{cpu.isa}"


def load_calibration() -> dict | None:
    """The stored coefficients if they were fitted on this CPU model, else None."""
    record = calibration_store().get("model")
    if not isinstance(record, dict) or record.get("machine") != machine_fingerprint():
        return None
    coefficients = record.get("coefficients")
    return coefficients if isinstance(coefficients, dict) else None
