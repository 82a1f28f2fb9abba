"""Register tile shapes compared on a few layers: single thread, interleaved, best of 15, PyTorch in the
same loop.  Usage: python bench/bench_tile_shapes.py 8x3,8x2,16x1   (add the `bench --isa avx2`
variables, see fastconv._cpu.restricted_environment, for the AVX2 side)."""
import sys, time
import numpy as np
import fastconv, torch
from fastconv import _cpu
fastconv.set_num_threads(1); torch.set_num_threads(1)
cpu = _cpu.target_cpu()
print("target:", cpu.name, cpu.isa, "torch", torch.backends.cpu.get_cpu_capability())
shapes = sys.argv[1].split(",")
layers = [("resnet3x3 64 28", (2, 64, 28, 28), (64, 64, 3, 3), 1),
          ("1x1 256->64 28", (2, 256, 28, 28), (64, 256, 1, 1), 0),
          ("lenet conv2 N32", (32, 6, 14, 14), (16, 6, 5, 5), 0),
          ("3x3 128 14", (2, 128, 14, 14), (128, 128, 3, 3), 1)]
for name, xs, ws, pad in layers:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32); w = rng.standard_normal(ws).astype(np.float32)
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    fns = {"torch": lambda: torch.nn.functional.conv2d(tx, tw, padding=pad)}
    for sh in shapes:
        _cpu.set_tile_shape(sh); fastconv.conv2d(x, w, padding=pad, algorithm="direct")
    best = {k: 1e9 for k in ["torch"] + shapes}
    for rnd in range(15):
        for k in best:
            if k == "torch":
                f = fns["torch"]
            else:
                _cpu.set_tile_shape(k); f = lambda: fastconv.conv2d(x, w, padding=pad, algorithm="direct")
            t = time.perf_counter(); f(); best[k] = min(best[k], time.perf_counter() - t)
    flops = 2 * np.prod(fns["torch"]().shape) * np.prod(ws[1:])
    print(f"{name:16s} " + " ".join(f"{k} {flops/v/1e9:5.1f}" for k, v in best.items()), "GF/s", flush=True)
