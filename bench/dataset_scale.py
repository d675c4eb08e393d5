"""Decoding a large image folder into the memory-mapped cache: time and peak memory.

- **generate**: a folder of ``--images`` distinct JPEG (or PNG) files in 10 class
  subfolders, each a random background, noise and one class-dependent shape, drawn at 1.5x
  the resolution so decoding resizes. Timed on its own; an existing complete folder of the
  same parameters is reused.
- **decode**: a fresh process loads the folder with ``engine.data.load_dataset`` into an
  empty cache folder: wall time, images/s, the cache entry's size on disk, and the
  process's peak resident memory (``ru_maxrss``) beside the size of the decoded set
  (N x 3 x R x R bytes). Decoding writes chunk by chunk into the cache file, so the peak
  should stay far below the decoded set.
- **train**: another fresh process loads the folder from the cache (time, peak RSS), then
  runs a few steps of the default SimCLR small-CNN config on it (peak RSS again): the
  images stay mapped, only the pages of the batches drawn become resident.

    python bench/dataset_scale.py [--images 100000] [--resolution 64] [--format jpeg|png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]
_CLASSES = 10
_MARKER = ".generated.json"  # hidden: the folder scan skips it
_GEN_VERSION = 1


def _peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # macOS: bytes; Linux: KiB


def _mapped_resident(cache_dir: str) -> int | None:
    """Bytes of the cache's mapped ``.npy`` files resident in this process (Linux), None
    where that cannot be read: how much of the set the process actually touched."""
    try:
        text = Path("/proc/self/smaps").read_text()
    except OSError:
        return None
    total, inside = 0, False
    prefix = str(Path(cache_dir).resolve())
    for line in text.splitlines():
        head = line.split(maxsplit=5)
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            inside = len(head) == 6 and head[5].startswith(prefix) and ".npy" in head[5]
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- generate


def _draw(args: tuple[Path, int, int, int, str]) -> int:
    """Draw and save images ``start..stop-1``; return the bytes written."""
    import numpy as np
    from PIL import Image, ImageDraw

    root, start, stop, size, fmt = args
    written = 0
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        k = i % _CLASSES
        bg = rng.integers(0, 256, 3)
        px = np.clip(bg + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        im = Image.fromarray(px)
        d = ImageDraw.Draw(im)
        r = rng.uniform(0.2, 0.4) * size
        cx, cy = rng.uniform(r, size - r, 2)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        if k % 2 == 0:
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            sides = 3 + k // 2
            turn = rng.uniform(0, 2 * math.pi)
            d.polygon([(cx + r * math.cos(turn + 2 * math.pi * j / sides),
                        cy + r * math.sin(turn + 2 * math.pi * j / sides))
                       for j in range(sides)], fill=fill)
        path = root / f"class_{k}" / f"{i:07d}.{'jpg' if fmt == 'jpeg' else 'png'}"
        if fmt == "jpeg":
            im.save(path, quality=90)
        else:
            im.save(path, compress_level=1)
        written += path.stat().st_size
    return written


def generate(root: Path, n: int, size: int, fmt: str) -> tuple[float, int, bool]:
    """The folder of ``n`` images (reused when complete): (seconds, bytes, reused)."""
    params = {"version": _GEN_VERSION, "images": n, "size": size, "format": fmt}
    marker = root / _MARKER
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            done = {}
        if done.get("params") == params:
            return float(done["seconds"]), int(done["bytes"]), True
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise SystemExit(f"{root} exists and is not a folder this bench generated; pass "
                         "another --folder or delete it")
    for d in root.glob("class_*"):
        shutil.rmtree(d)
    for k in range(_CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"params": None}))  # ours, but incomplete
    t0 = time.perf_counter()
    step = 2000
    jobs = [(root, s, min(n, s + step), size, fmt) for s in range(0, n, step)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as ex:
        total = sum(ex.map(_draw, jobs))
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({"params": params, "seconds": seconds, "bytes": total}))
    return seconds, total, False


# --------------------------------------------------------------------------- children


def _child_decode(folder: str, resolution: int, cache_dir: str) -> dict[str, Any]:
    from engine.data import load_dataset

    base = _peak_rss_bytes()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 10 or done == total:
            last[0] = now
            print(f"  decoding {done}/{total}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    ds = load_dataset(folder, resolution, cache_dir=cache_dir, progress=progress)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "n": len(ds), "skipped": len(ds.skipped),
            "from_cache": ds.from_cache, "rss_imports": base, "peak_rss": _peak_rss_bytes(),
            "mapped": _mapped_resident(cache_dir)}


def _child_train(folder: str, resolution: int, cache_dir: str, steps: int
                 ) -> dict[str, Any]:
    import gc

    from engine import events as ev
    from engine.data import load_dataset
    from engine.presets import default_config
    from engine.train import Trainer

    base = _peak_rss_bytes()
    t0 = time.perf_counter()
    ds = load_dataset(folder, resolution, cache_dir=cache_dir)
    load_seconds = time.perf_counter() - t0
    load = {"seconds": load_seconds, "from_cache": ds.from_cache, "peak_rss": _peak_rss_bytes()}
    del ds
    gc.collect()

    cfg = default_config("simclr", False)
    cfg.set("data.dataset", folder)
    cfg.set("data.resolution", resolution)
    cfg.set("optim.max_steps", steps)
    cfg.set("optim.warmup_steps", 0)
    cfg.set("monitor.monitor_size", 256)
    cfg.set("monitor.every_steps", 1_000_000)
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        from_cache, mapped = None, None
        for e in Trainer(cfg, runs, cache_dir=cache_dir).run():
            if isinstance(e, ev.DatasetReady):
                from_cache = e.from_cache
            elif isinstance(e, ev.Finished):
                mapped = _mapped_resident(cache_dir)
            elif isinstance(e, ev.Failed):
                raise SystemExit(f"run failed: {e.message}")
        train_seconds = time.perf_counter() - t0
    return {"load": load, "train_seconds": train_seconds, "train_from_cache": from_cache,
            "batch": cfg.optim.batch_size, "backbone": cfg.backbone.name,
            "rss_imports": base, "peak_rss": _peak_rss_bytes(), "mapped": mapped}


def _run_child(*args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", *args],
                         cwd=_REPO, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def _touched(mapped: int | None) -> str:
    return "" if mapped is None else f"; of the mapped cache {_mb(mapped)} resident"



def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, where, res, into, *rest = sys.argv[2:]
        if kind == "decode":
            result = _child_decode(where, int(res), into)
        else:
            result = _child_train(where, int(res), into, int(rest[0]))
        print(json.dumps(result))
        return

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # before the children's stderr
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    p.add_argument("--folder", type=Path, default=None,
                   help="where the generated images go (default: a folder in the temp dir, "
                        "kept and reused)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="an empty cache folder (default: a temp folder, deleted afterwards)")
    p.add_argument("--steps", type=int, default=5, help="training steps timed")
    args = p.parse_args()
    n, res = args.images, args.resolution
    size = res * 3 // 2
    folder = args.folder or Path(tempfile.gettempdir()) / f"selfsup-scale-{n}-{size}-{args.format}"

    import numpy
    import torch

    print(f"dataset scale: {n} images at {res} px ({args.format.upper()} {size} px, "
          f"{_CLASSES} classes), torch {torch.__version__}, numpy {numpy.__version__}, "
          f"Python {platform.python_version()}, {_cpu()}, {os.cpu_count()} cores, "
          f"{date.today()}")
    gen_s, gen_bytes, reused = generate(folder, n, size, args.format)
    print(f"generate: {n} files, {_mb(gen_bytes)} on disk, {gen_s:.1f} s "
          f"({n / gen_s:,.0f} images/s{', reused from an earlier run' if reused else ''}) "
          f"in {folder}")

    own_cache = args.cache_dir is None
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="selfsup-scale-cache-"))
    if cache_dir.exists() and any(cache_dir.iterdir()):
        raise SystemExit(f"--cache-dir {cache_dir} is not empty: the decode must start cold")
    decoded = n * 3 * res * res
    try:
        d = _run_child("decode", str(folder), str(res), str(cache_dir))
        assert not d["from_cache"]
        cache_bytes = sum(f.stat().st_size for f in cache_dir.iterdir() if f.is_file())
        secs = float(d["seconds"])
        peak, base = int(d["peak_rss"]), int(d["rss_imports"])
        print(f"decode (cold cache): {secs:.1f} s, {int(d['n']) / secs:,.0f} images/s "
              f"({d['skipped']} skipped); cache {_mb(cache_bytes)} on disk; decoded set "
              f"N*3*R*R = {_mb(decoded)}")
        print(f"  peak RSS {_mb(peak)} = {peak / decoded:.2f}x the decoded set "
              f"({_mb(base)} after imports, +{_mb(peak - base)} while decoding)"
              f"{_touched(d['mapped'])}")

        t = _run_child("train", str(folder), str(res), str(cache_dir), str(args.steps))
        load = t["load"]
        assert isinstance(load, dict) and load["from_cache"] and t["train_from_cache"]
        peak, base = int(t["peak_rss"]), int(t["rss_imports"])
        lpeak = int(load["peak_rss"])
        print(f"load from cache (fresh process): {float(load['seconds']):.2f} s, peak RSS "
              f"{_mb(lpeak)} = {lpeak / decoded:.2f}x the decoded set "
              f"(+{_mb(lpeak - base)} over imports)")
        print(f"train {args.steps} steps (simclr, {t['backbone']}, batch {t['batch']}, incl. "
              f"the step-0 and final monitor, {float(t['train_seconds']):.1f} s): peak RSS "
              f"{_mb(peak)} = {peak / decoded:.2f}x the decoded set "
              f"(+{_mb(peak - base)} over imports){_touched(t['mapped'])}")
    finally:
        if own_cache:
            shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
