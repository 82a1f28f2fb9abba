"""``python -m fastconv bench --suite dask``: fastconv.dask on a local cluster.

Three tables, each on a ``LocalCluster`` of worker processes with one thread each (so tasks, not
Numba's threads, are the parallelism; every task runs its kernel with one thread):

1. throughput (megapixels of output per second) of ``fastconv.dask.correlate2d(image, kernel,
   "same", "symm")`` against ``dask_image.ndfilters.correlate(image, kernel, mode="reflect")`` —
   the same numbers (scipy.ndimage's ``reflect`` is scipy.signal's ``symm``, and for an odd kernel
   both centre it alike; checked on a crop before timing) — on the same cluster, the same
   persisted image and chunks, for several kernel sizes;
2. the same fastconv call on 1 and on 2 workers;
3. ``fastconv.dask.conv2d`` over a batch of images on 1 and 2 workers, next to in-memory
   ``fastconv.conv2d`` on all cores;

and the graph's task count with the scheduler's cost per task (a graph of as many do-nothing
tasks).  Times are of ``persist`` + ``wait`` on an image already in the workers' memory: the
result stays on the workers, so no transfer to the client is timed.  Each figure is the best of
``repeats`` runs after a warm-up that loads the kernels in every worker.
"""
from __future__ import annotations

import os
import time

import numpy as np


def _require_dask():
    try:
        import dask  # noqa: F401
        import dask_image.ndfilters  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"the dask suite needs the dask extra: pip install \"fastconv[dask]\" ({error})"
        ) from None


def _best_seconds(build, client, repeats, data):
    """Best wall time of ``persist`` + ``wait`` of the graph ``build(data)`` returns.

    Each repeat runs on a fresh copy of ``data`` (persisted, untimed): Dask names results after
    their inputs, so a repeat on the same input could find the previous result still in memory.
    """
    from distributed import wait

    best = float("inf")
    for repeat in range(repeats):
        fresh = client.persist(data + data.dtype.type(repeat))
        wait(fresh)
        lazy = build(fresh)
        start = time.perf_counter()
        result = client.persist(lazy)
        wait(result)
        best = min(best, time.perf_counter() - start)
        del result, fresh
    return best


def _cluster(workers):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return cluster, Client(cluster)


def _nothing(block):
    return block[:1, :1]


def _warm_up(client, function, *args, **kwargs):
    """Run ``function`` once in every worker process, so that loading Numba's compiled kernels
    from the cache (per process, on first use) is not timed."""
    client.run(lambda: function(*args, **kwargs) is None)


def _signal_table(size, chunk, kernel_sizes, repeats, workers):
    import dask.array as da
    import scipy.signal
    from dask_image.ndfilters import correlate as dask_image_correlate

    import fastconv
    import fastconv.dask as fd

    rng = np.random.default_rng(0)
    rows = []
    cluster, client = _cluster(workers)
    try:
        image = client.persist(da.random.default_rng(0).random((size, size), dtype=np.float32,
                                                               chunks=chunk))
        crop = image[:3 * chunk // 2, :3 * chunk // 2]
        for k in kernel_sizes:
            kernel = rng.standard_normal((k, k)).astype(np.float32)  # not separable
            block = np.zeros((chunk + k - 1, chunk + k - 1), np.float32)
            _warm_up(client, fastconv.correlate2d, block, kernel, "valid")
            # same numbers from both, checked (and both warmed up) on a crop with true edges
            ours = fd.correlate2d(crop, kernel, "same", "symm").compute()
            theirs = dask_image_correlate(crop, kernel, mode="reflect").compute()
            reference = scipy.signal.correlate2d(crop.compute().astype(np.float64), kernel, "same",
                                                 "symm")
            scale = np.abs(reference).max()
            for name, result in (("fastconv", ours), ("dask-image", theirs)):
                error = np.abs(result - reference).max() / scale
                if error > 1e-4:
                    raise AssertionError(f"{name} differs from scipy.signal by {error:.2g} (k={k})")
            lazy_ours = lambda x: fd.correlate2d(x, kernel, "same", "symm")  # noqa: E731
            lazy_theirs = lambda x: dask_image_correlate(x, kernel, mode="reflect")  # noqa: E731
            fastconv_s = _best_seconds(lazy_ours, client, repeats, image)
            dask_image_s = _best_seconds(lazy_theirs, client, 1 if k > 7 else repeats, image)
            graph = lazy_ours(image).__dask_graph__()
            rows.append({"k": k, "workers": workers, "fastconv_s": fastconv_s,
                         "dask_image_s": dask_image_s, "tasks": len(graph),
                         "blocks": image.npartitions})
        noop = lambda x: x.map_blocks(_nothing, chunks=((1,) * x.numblocks[0],  # noqa: E731
                                                        (1,) * x.numblocks[1]))
        noop_s = _best_seconds(noop, client, repeats, image)
    finally:
        client.close()
        cluster.close()
    return rows, noop_s, image.npartitions


def _in_memory_correlate(block, kernel):
    from . import correlate2d

    return correlate2d(block, kernel, "valid")


def _in_memory_conv2d(images, weight):
    from . import conv2d

    return conv2d(images, weight, None, 1, 1)


def _fastconv_only(size, chunk, k, repeats, workers):
    import dask.array as da

    import fastconv.dask as fd

    kernel = np.random.default_rng(0).standard_normal((k, k)).astype(np.float32)
    cluster, client = _cluster(workers)
    try:
        image = client.persist(da.random.default_rng(0).random((size, size), dtype=np.float32,
                                                               chunks=chunk))
        block = np.zeros((chunk + k - 1, chunk + k - 1), np.float32)
        _warm_up(client, _in_memory_correlate, block, kernel)
        return _best_seconds(lambda x: fd.correlate2d(x, kernel, "same", "symm"), client,
                             repeats, image)
    finally:
        client.close()
        cluster.close()


def _conv_batch(shape, weight_shape, batch_chunk, repeats, workers):
    import dask.array as da

    import fastconv.dask as fd

    weight = np.random.default_rng(1).standard_normal(weight_shape).astype(np.float32)
    cluster, client = _cluster(workers)
    try:
        images = client.persist(da.random.default_rng(0).random(
            shape, dtype=np.float32, chunks=(batch_chunk,) + shape[1:]))
        _warm_up(client, _in_memory_conv2d,
                 np.zeros((batch_chunk,) + shape[1:], np.float32), weight)
        return _best_seconds(lambda x: fd.conv2d(x, weight, None, 1, 1), client, repeats, images)
    finally:
        client.close()
        cluster.close()


def _in_memory_conv(shape, weight_shape, repeats):
    from . import conv2d

    images = np.random.default_rng(0).random(shape, dtype=np.float32)
    weight = np.random.default_rng(1).standard_normal(weight_shape).astype(np.float32)
    conv2d(images[:2], weight, None, 1, 1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        conv2d(images, weight, None, 1, 1)
        best = min(best, time.perf_counter() - start)
    return best


def main(args) -> int:
    _require_dask()
    from .info import _cpu_features

    quick = args.quick
    size, chunk = (2048, 512) if quick else (8192, 2048)
    kernel_sizes = (3, 7, 15) if quick else (3, 7, 15, 31)
    repeats = 2 if quick else 3
    batch_shape = (32, 16, 64, 64) if quick else (256, 16, 128, 128)
    weight_shape = (32, 16, 3, 3)
    batch_chunk = 8 if quick else 32
    megapixels = size * size / 1e6

    print(f"fastconv bench --suite dask ({'quick' if quick else 'full'})")
    print(f"CPU: {_cpu_features()}, {os.cpu_count()} logical cores")
    print(f"LocalCluster(processes=True, threads_per_worker=1); fastconv.dask threads_per_task "
          f"default (1 in a worker); image {size}x{size} float32 in {chunk}^2 chunks, "
          f"persisted in the workers; best of {repeats}")

    rows, noop_s, blocks = _signal_table(size, chunk, kernel_sizes, repeats, workers=2)
    print("\n== correlate2d 'same'/'symm' vs dask_image.ndfilters.correlate mode='reflect' "
          "(2 workers x 1 thread) ==")
    print(f"{'k':>4} {'fastconv Mpx/s':>15} {'dask-image Mpx/s':>17} {'ratio':>7} {'tasks':>7}")
    for row in rows:
        ratio = row["dask_image_s"] / row["fastconv_s"]
        print(f"{row['k']:>4} {megapixels / row['fastconv_s']:>15.1f} "
              f"{megapixels / row['dask_image_s']:>17.1f} {ratio:>6.1f}x {row['tasks']:>7}")
    print(f"scheduler: {blocks} do-nothing tasks take {noop_s:.3f} s "
          f"({noop_s / blocks * 1e3:.2f} ms per task)")

    k = 7
    one = _fastconv_only(size, chunk, k, repeats, workers=1)
    two = _fastconv_only(size, chunk, k, repeats, workers=2)
    print(f"\n== fastconv.dask.correlate2d k={k}: 1 -> 2 workers ==")
    print(f"1 worker {megapixels / one:.1f} Mpx/s, 2 workers {megapixels / two:.1f} Mpx/s: "
          f"{one / two:.2f}x")

    flops = 2 * batch_shape[0] * weight_shape[0] * batch_shape[2] * batch_shape[3] * (
        weight_shape[1] * weight_shape[2] * weight_shape[3])
    in_memory = _in_memory_conv(batch_shape, weight_shape, repeats)
    conv_one = _conv_batch(batch_shape, weight_shape, batch_chunk, repeats, workers=1)
    conv_two = _conv_batch(batch_shape, weight_shape, batch_chunk, repeats, workers=2)
    print(f"\n== fastconv.dask.conv2d, input {batch_shape} weight {weight_shape} padding 1, "
          f"{batch_chunk} images per block ==")
    for label, seconds in (("in-memory fastconv.conv2d, all cores", in_memory),
                           ("fastconv.dask.conv2d, 1 worker", conv_one),
                           ("fastconv.dask.conv2d, 2 workers", conv_two)):
        print(f"{label:<40} {batch_shape[0] / seconds:>8.0f} images/s "
              f"{flops / seconds / 1e9:>7.1f} GFLOP/s")
    print(f"1 -> 2 workers: {conv_one / conv_two:.2f}x")
    return 0
