"""A cached `hear_atst.load_model("atstframe_base")` against loading the same file by path.

    python benchmarks/cached_load.py [--repeats 5] [--threads 2] [--json out.json]

The released file cannot be fetched here, so a random-weight ATST-Frame base checkpoint of the real file's layout
and size (official Lightning layout, 4096 -> 256 heads, AdamW moments: 1392 MiB; `embed_throughput.py` writes it
once into `$ATST_BENCH_CKPT_DIR`) is served from a loopback HTTP server through `$ATST_CHECKPOINT_URLS` and
downloaded by name into a fresh cache folder (first use: download, manifest check, SHA-256). Then each loader runs
in a fresh process (page cache warm), round-robin, `--repeats` times, with `ATST_OFFLINE=1`: `load_model(NAME)`
and `load_model(PATH)`; medians are printed, and the cost of the name lookup alone (`resolve_checkpoint` on the
cached file) in this process. Numbers are noisy on a shared machine; this script prints, it never asserts.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
NAME = "atstframe_base"
PROBE = ("import sys, time, torch; torch.set_num_threads(int(sys.argv[2])); import hear_atst; "
         "start = time.perf_counter(); hear_atst.load_model(sys.argv[1]); print(time.perf_counter() - start)")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _probe(target: str, threads: int, env: dict) -> float:
    result = subprocess.run([sys.executable, "-c", PROBE, target, str(threads)], env=env, capture_output=True,
                            text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from embed_throughput import DEFAULT_CKPT_DIR, ensure_checkpoint

    source = ensure_checkpoint(DEFAULT_CKPT_DIR, "base", optimizer_state=True)
    server = _serve(source.parent)
    cache = Path(tempfile.mkdtemp(prefix="atst_cache_"))
    url = f"http://127.0.0.1:{server.server_address[1]}/{source.name}"
    os.environ.update(ATST_CACHE=str(cache), ATST_CHECKPOINT_URLS=json.dumps({NAME: url}))
    from atst.hub import resolve_checkpoint

    start = time.perf_counter()
    cached = resolve_checkpoint(NAME, progress=False)
    first_use = time.perf_counter() - start
    server.shutdown()
    lookups = []
    for _ in range(200):
        start = time.perf_counter()
        resolve_checkpoint(NAME)
        lookups.append(time.perf_counter() - start)

    repo = str(HERE.parent)
    env = dict(os.environ, ATST_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, (repo, os.environ.get(
        "PYTHONPATH")))))
    times = {"name": [], "path": []}
    _probe(str(cached), args.threads, env)  # warm the page cache
    for _ in range(args.repeats):
        times["name"].append(_probe(NAME, args.threads, env))
        times["path"].append(_probe(str(cached), args.threads, env))
    result = {
        "file_mib": round(cached.stat().st_size / 2 ** 20, 1),
        "first_use_s": round(first_use, 2),
        "lookup_ms_median": round(statistics.median(lookups) * 1e3, 3),
        "load_by_name_s_median": round(statistics.median(times["name"]), 3),
        "load_by_path_s_median": round(statistics.median(times["path"]), 3),
        "load_by_name_s": [round(t, 3) for t in times["name"]],
        "load_by_path_s": [round(t, 3) for t in times["path"]],
        "threads": args.threads,
    }
    print(f"{NAME} (generated, {result['file_mib']} MiB), served from loopback and cached in {cache}")
    print(f"first use (download + manifest check + SHA-256 + rename): {result['first_use_s']:.2f} s")
    print(f"name lookup on the cached file (resolve_checkpoint): {result['lookup_ms_median']:.3f} ms (median of 200)")
    print(f"load_model({NAME!r}), cached : {result['load_by_name_s_median']:.3f} s (median of {args.repeats}: "
          f"{result['load_by_name_s']})")
    print(f"load_model(path)               : {result['load_by_path_s_median']:.3f} s (median of {args.repeats}: "
          f"{result['load_by_path_s']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    for item in cache.iterdir():
        item.unlink()
    cache.rmdir()


if __name__ == "__main__":
    main()
