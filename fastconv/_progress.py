"""A progress bar: tqdm when installed (optional extra), else one line rewritten in place."""
from __future__ import annotations

import sys


def progress(iterable, total: int | None = None, description: str = ""):
    try:
        from tqdm import tqdm
    except ImportError:
        return _LinePrinter(iterable, total, description)
    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


class _LinePrinter:
    def __init__(self, iterable, total, description):
        self.iterable = iterable
        self.total = total if total is not None else len(iterable)
        self.description = description

    def __iter__(self):
        interactive = sys.stderr.isatty()
        for index, item in enumerate(self.iterable, 1):
            if interactive:
                sys.stderr.write(f"\r{self.description} {index}/{self.total}")
                sys.stderr.flush()
            yield item
        if interactive:
            sys.stderr.write("\r" + " " * (len(self.description) + 24) + "\r")
