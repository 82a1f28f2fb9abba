"""Filter an image larger than the cluster's memory with fastconv.dask and store it to Zarr.

The image is generated lazily, block by block (Dask's random generator), so it never exists in
one piece: not on the client, not on any worker.  ``fastconv.dask.correlate2d`` (``same`` mode,
mirrored edges) runs fastconv's kernel on each block plus its halo, and the result streams into a
Zarr store in a temporary directory.  Workers have a hard memory limit and spilling to disk is
switched off, so a run that needed more memory than the limit would fail instead of quietly using
the disk.  At the end each worker's peak resident memory (``ru_maxrss``) is printed, and one corner
of the stored result is checked against ``scipy.signal.correlate2d`` on the same input.

    python examples/dask_larger_than_memory.py                   # 40,000 x 40,000 float32 (6.4 GB)
    python examples/dask_larger_than_memory.py --size 8000       # a CI-sized run

Needs ``pip install "fastconv[dask]"``.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import dask
import dask.array as da
import numpy as np
import scipy.signal
import zarr
from dask.distributed import Client, LocalCluster

import fastconv.dask as fd


def _chunk_shape(text):
    rows, _, cols = text.partition("x")
    return int(rows), int(cols or rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=40_000, help="image side (default 40,000)")
    # Short, wide blocks: Dask works through the image a few rows of blocks at a time, and a block
    # waits in memory until the blocks around it have taken their halos from it, so what is in
    # memory at once grows with (block height x image width), not with the block count.
    parser.add_argument("--chunk", type=_chunk_shape, default=(256, 4096),
                        help="block shape, ROWSxCOLS or one side (default 256x4096)")
    parser.add_argument("--kernel", type=int, default=7, help="kernel side (default 7)")
    parser.add_argument("--band-rows", type=int, default=2048,
                        help="rows computed and stored per step (default 2048)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--memory-limit", default="1GiB", help="per worker (default 1GiB)")
    return parser.parse_args(argv)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def spilled_bytes(dask_worker) -> int:
    """Bytes this worker wrote to its spill directory (0 when spilling is off, as here)."""
    spilled = getattr(dask_worker.data, "spilled_total", None)  # a SpillBuffer's; a dict has none
    return 0 if spilled is None else int(spilled.disk)


def store_in_bands(filtered, store, band_rows):
    """Write ``filtered`` to a new Zarr array, one band of rows (whole rows of blocks) at a time.

    Given the whole image's graph at once, Dask's scheduler runs the cheap tasks that generate
    image blocks far ahead of the filter and store tasks that consume them, and the generated
    blocks pile up in memory; a band at a time bounds what can be in memory to about one band
    (each band regenerates the one row of blocks it shares with its neighbours as halo)."""
    target = zarr.open_array(store, mode="w", shape=filtered.shape, dtype=filtered.dtype,
                             chunks=tuple(c[0] for c in filtered.chunks))
    boundaries = np.cumsum((0,) + filtered.chunks[0])
    block_rows = max(1, band_rows // filtered.chunks[0][0])
    for first in range(0, len(filtered.chunks[0]), block_rows):
        top, bottom = int(boundaries[first]), int(boundaries[min(first + block_rows,
                                                                 len(boundaries) - 1)])
        da.store(filtered[top:bottom], target, regions=(slice(top, bottom), slice(None)),
                 lock=False)


def main(argv=None) -> int:
    args = parse_args(argv)
    kernel = np.random.default_rng(1).standard_normal((args.kernel, args.kernel)).astype(np.float32)
    image = da.random.default_rng(0).random((args.size, args.size), dtype=np.float32,
                                            chunks=args.chunk)
    filtered = fd.correlate2d(image, kernel, "same", "symm")

    # No spilling, no pausing: the memory limit is a hard wall (the nanny restarts a worker past
    # 95% of it, and with no retries allowed that fails the computation at once).
    no_spill = {"distributed.worker.memory.target": False,
                "distributed.worker.memory.spill": False,
                "distributed.worker.memory.pause": False,
                "distributed.scheduler.allowed-failures": 0}
    with dask.config.set(no_spill), tempfile.TemporaryDirectory() as directory, LocalCluster(
        n_workers=args.workers, threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit, processes=True, dashboard_address=None,
    ) as cluster, Client(cluster) as client:
        limit = cluster.workers[0].memory_manager.memory_limit
        print(f"image {args.size}x{args.size} float32 = {image.nbytes / 1e9:.2f} GB in "
              f"{image.npartitions} blocks of {args.chunk[0]}x{args.chunk[1]}; kernel {args.kernel}x{args.kernel}; "
              f"{args.workers} workers x {args.threads_per_worker} threads, memory limit "
              f"{limit / 2**30:.2f} GiB each ({args.workers * limit / 1e9:.2f} GB in all); "
              f"stored in bands of {args.band_rows} rows")
        store = f"{directory}/filtered.zarr"
        start = time.perf_counter()
        store_in_bands(filtered, store, args.band_rows)
        seconds = time.perf_counter() - start
        peaks = client.run(peak_rss_bytes)
        spilled = client.run(spilled_bytes)

        print(f"filtered and stored in {seconds:.1f} s: "
              f"{args.size**2 / seconds / 1e6:.0f} megapixels/s")
        for address, peak in sorted(peaks.items()):
            print(f"  worker {address}: peak RSS {peak / 2**20:.0f} MiB "
                  f"({peak / limit:.0%} of its limit), spilled {spilled[address]} bytes")

        # A corner of the stored result against scipy on the same (regenerated) input: the top-left
        # edges are true edges, the bottom/right ones are cut far enough from the window.
        window, margin = min(256, args.size), args.kernel
        corner_input = image[: window + margin, : window + margin].compute()
        expected = scipy.signal.correlate2d(corner_input, kernel, "same", "symm")[:window, :window]
        stored = da.from_zarr(store)[:window, :window].compute()
        np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-4)
        print(f"top-left {window}x{window} of the stored result matches scipy.signal.correlate2d")
    return 0


if __name__ == "__main__":
    sys.exit(main())
