"""Embedding throughput, load time and memory of `atst`, against an official-style baseline in the same run.

    python benchmarks/embed_throughput.py            # small + base, batch 1/8, 10 s/60 s, hear/official, fp32/bf16
    python benchmarks/embed_throughput.py --quick    # a few minutes: fewer cells and repeats
    python benchmarks/embed_throughput.py --device cuda --json out.json

What is measured (all on random-weight checkpoints in the exact official Lightning layout, written once into
`--ckpt-dir`; projector 4096 -> 256 and, unless `--no-optimizer-state`, fake AdamW moments for every student
parameter so the file has the size of a real training checkpoint):

* load: a fresh Python process per loader and repeat (`hear_atst.load_model` vs the official-style loader of
  `_official_style.py`), page cache warm; wall time of the load call, peak RSS of the process (VmHWM) and RSS
  after the load. Median over `--load-repeats`. The load-memory line sets the peak against the imports plus the
  encoder's weights once (1.00 = no copy of the weights beyond the mapped file's pages).
* throughput: `timestamp_embeddings` (the official `get_timestamp_embedding` for the baseline) on synthetic audio;
  every variant of a cell runs once per round, rounds repeated `--repeats` times (round-robin, so background load
  hits all variants alike), median reported. One untimed warm-up round per cell (skipped for cells above
  `--warmup-limit` audio seconds; their shapes were warmed by the smaller cells). Before timing, the baseline output
  is checked against mode="official" fp32 (max abs diff <= 1e-4) -- this is what makes the baseline trustworthy.
* `--onnx`: an onnxruntime row (the `atst export --format onnx` graph, CPU, the same thread count) in every cell of
  at most one window, its max |diff| against PyTorch hear mode fp32 on the same audio in the last column.
* call memory: CPU: peak RSS rise during a call (VmHWM reset through /proc/self/clear_refs after malloc_trim);
  CUDA: torch.cuda.max_memory_allocated rise.

Numbers are noisy on a shared machine; this script prints, it never asserts timings.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# a per-user cache, not a shared temporary folder; a cached file is reused only after `_trusted_cache` checks it
DEFAULT_CKPT_DIR = Path(os.environ.get("ATST_BENCH_CKPT_DIR", Path.home() / ".cache" / "hear-atst" / "benchmarks"))
CHECK_TOL = 1e-4


# ---------------------------------------------------------------------------------------------- memory helpers
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak_rss() -> bool:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- checkpoints
def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _trusted_cache(path: Path, record: Path, expected: dict) -> bool:
    """A cached checkpoint is reused only if this user owns it and its record, nobody else can write them, the record
    describes the wanted file and the file's SHA-256 matches the record."""
    try:
        for item in (path, record):
            info = item.stat()
            if info.st_uid != os.getuid() or info.st_mode & 0o022 or not item.is_file() or item.is_symlink():
                return False
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    return saved == {**expected, "sha256": saved.get("sha256")} and saved["sha256"] == _sha256(path)


def ensure_checkpoint(ckpt_dir: Path, arch: str, optimizer_state: bool) -> Path:
    """Write (once, atomically) a random-weight official-layout ATST-Frame checkpoint of full size."""
    import torch
    from atst.fileio import atomic_path, atomic_write_text
    from atst.synthetic import write_official_checkpoint

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"atstframe_{arch}{'_optim' if optimizer_state else ''}.ckpt"
    record = path.with_name(path.name + ".json")
    expected = {"format": 1, "arch": arch, "optimizer_state": optimizer_state}
    if path.exists() and _trusted_cache(path, record, expected):
        return path
    with atomic_path(path) as tmp:
        write_official_checkpoint(tmp, arch=arch, family="frame", seed=0, projector_hidden=4096, projector_out=256)
        if optimizer_state:
            checkpoint = torch.load(tmp, weights_only=True)
            student = [k for k, v in checkpoint["state_dict"].items()
                       if k.startswith("model.student.") and v.is_floating_point() and "running_" not in k]
            decayed = [i for i, k in enumerate(student) if checkpoint["state_dict"][k].ndim >= 2]
            other = [i for i in range(len(student)) if i not in decayed]
            state = {}
            for index, key in enumerate(student):
                value = checkpoint["state_dict"][key]
                state[index] = {"step": torch.tensor(1000.0), "exp_avg": torch.randn_like(value) * 1e-4,
                                "exp_avg_sq": torch.rand_like(value) * 1e-8}
            checkpoint["optimizer_states"] = [{"state": state, "param_groups": [
                {"params": decayed, "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.04},
                {"params": other, "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.0}]}]
            torch.save(checkpoint, tmp)
            del checkpoint, state
    atomic_write_text(record, json.dumps({**expected, "sha256": _sha256(path)}))
    return path


# ---------------------------------------------------------------------------------------------- load probe
def probe_load(loader: str, path: str, threads: int) -> dict:
    """Runs inside a fresh process: time one load and report the process's memory."""
    import torch

    torch.set_num_threads(threads)
    import hear_atst  # noqa: F401  (imports are not part of the load time)
    import _official_style

    rss_before = _status_mb("VmRSS")
    start = time.perf_counter()
    if loader == "project":
        model = hear_atst.load_model(path)
    else:
        model = _official_style.load_official_style(path)
    seconds = time.perf_counter() - start
    gc.collect()
    params = sum(p.numel() for p in model.parameters())
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return {"loader": loader, "load_s": seconds, "peak_rss_mb": _status_mb("VmHWM"),
            "rss_after_mb": _status_mb("VmRSS"), "rss_before_mb": rss_before, "params": params,
            "weights_mb": weights_mb}


def measure_load(loader: str, path: Path, threads: int, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "--_probe-load", loader, str(path), "--threads", str(threads)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"load probe {loader} failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "loader": loader,
        "load_s": statistics.median(r["load_s"] for r in runs),
        "load_s_runs": [round(r["load_s"], 3) for r in runs],
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "rss_after_mb": statistics.median(r["rss_after_mb"] for r in runs),
        "rss_before_mb": statistics.median(r["rss_before_mb"] for r in runs),
        "params": runs[0]["params"],
        "weights_mb": runs[0]["weights_mb"],
    }


# ---------------------------------------------------------------------------------------------- throughput
def synthetic_audio(batch: int, seconds: float, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    n = int(round(seconds * 16000))
    t = torch.arange(n, dtype=torch.float64) / 16000
    freqs = 200 + 1800 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
    wave = 0.2 * torch.sin(2 * torch.pi * freqs * t * (1 + 0.05 * torch.sin(2 * torch.pi * 0.3 * t)))
    wave = wave + 0.02 * torch.randn(batch, n, generator=generator, dtype=torch.float64)
    return wave.float()


class Timer:
    def __init__(self, device) -> None:
        self.device = device

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, fn):
        """(seconds, peak memory rise MB, output) of one call; `self.last_cpu_s` = process CPU time it used."""
        import torch

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        else:
            _reset_peak_rss()
            base = _status_mb("VmRSS")
        self.sync()
        cpu_start = time.process_time()
        start = time.perf_counter()
        out = fn()
        self.sync()
        seconds = time.perf_counter() - start
        self.last_cpu_s = time.process_time() - cpu_start
        if self.device.type == "cuda":
            peak = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        else:
            peak = _status_mb("VmHWM") - base
        return seconds, peak, out


def bench_arch(arch: str, path: Path, args, device, variants: list[tuple[str, str]],
               cells: list[tuple[int, float]]) -> list[dict]:
    import atst
    import _official_style

    loaded = atst.load_checkpoint(path)
    encoder = loaded.encoder.to(device)
    embedders = {}
    for mode, dtype in variants:
        embedder = atst.Embedder(encoder, loaded.frontend_config, mode=mode,
                                 autocast=None if dtype == "fp32" else dtype).eval().to(device)
        embedders[(mode, dtype)] = embedder
    reference_key = ("official", "fp32")
    checker = embedders.get(reference_key)
    if checker is None:
        checker = atst.Embedder(encoder, loaded.frontend_config, mode="official").eval()
    baseline = _official_style.load_official_style(str(path)).to(device)
    timer = Timer(device)
    onnx = OnnxRow(arch, loaded, path, args) if args.onnx else None

    rows = []
    for batch, seconds in sorted(cells, key=lambda c: c[0] * c[1]):
        audio = synthetic_audio(batch, seconds, seed=batch * 1000 + int(seconds)).to(device)
        calls = {"baseline": lambda: _official_style.get_timestamp_embedding(audio, baseline)[0]}
        for key, embedder in embedders.items():
            calls[key] = (lambda e=embedder: e.timestamp_embeddings(audio)[0])
        if reference_key not in calls:
            calls[reference_key] = lambda: checker.timestamp_embeddings(audio)[0]
        if onnx is not None and onnx.fits(audio):
            calls[ONNX_KEY] = lambda: onnx.run(audio)
        warm = batch * seconds <= args.warmup_limit
        times = {key: [] for key in calls}
        peaks = {key: [] for key in calls}
        cpu = {key: [] for key in calls}
        errors: dict = {}
        errors_vs_hear: dict = {}
        for round_index in range(args.repeats + int(warm)):
            timed = round_index >= int(warm)  # with a warm-up, round 0 is untimed
            outputs = {}
            for key, fn in calls.items():
                seconds_taken, peak, out = timer.run(fn)
                if round_index == 0:
                    outputs[key] = out
                del out
                if timed:
                    times[key].append(seconds_taken)
                    peaks[key].append(peak)
                    cpu[key].append(timer.last_cpu_s)
            if round_index == 0:
                # correctness gate: the baseline must give the official-mode numbers (checked on the first round,
                # before any number of this cell is reported)
                ref = outputs[reference_key].float()
                base_out = outputs["baseline"]
                diff = (base_out.float() - ref).abs().max().item()
                if base_out.shape != ref.shape or not diff <= CHECK_TOL:
                    raise SystemExit(f"baseline check failed for {arch} batch {batch} {seconds} s: shape "
                                     f"{tuple(base_out.shape)} vs {tuple(ref.shape)}, max abs diff {diff:.3g} > "
                                     f"{CHECK_TOL}")
                for key, out in outputs.items():
                    official = key == "baseline" or key[0] == "official"
                    errors[key] = (out.float() - ref).abs().max().item() if official else float("nan")
                if ONNX_KEY in outputs:  # against PyTorch hear mode fp32 on the same audio
                    errors_vs_hear[ONNX_KEY] = (outputs[ONNX_KEY] - onnx.reference(audio)).abs().max().item()
                del outputs, ref, base_out
        if reference_key not in embedders:
            del calls[reference_key]
        base_median = statistics.median(times["baseline"])
        for key in calls:
            median = statistics.median(times[key])
            mode, dtype = ("official-style baseline", "fp32") if key == "baseline" else key
            rows.append({
                "arch": arch, "device": device.type, "batch": batch, "seconds": seconds, "variant": mode,
                "dtype": dtype, "median_s": median, "runs_s": [round(t, 4) for t in times[key]],
                "best_s": min(times[key]), "cpu_s": statistics.median(cpu[key]),
                "cpu_speedup_vs_baseline": statistics.median(cpu["baseline"]) / statistics.median(cpu[key]), "audio_s_per_s": batch * seconds / median,
                "speedup_vs_baseline": base_median / median,
                "speedup_vs_baseline_best": min(times["baseline"]) / min(times[key]),
                "call_peak_mb": max(peaks[key]), "max_abs_diff_vs_official_fp32": errors.get(key),
                "max_abs_diff_vs_hear_fp32": errors_vs_hear.get(key),
                "warmed_up": warm, "loadavg_1min_after": os.getloadavg()[0],
            })
        print_progress(rows[-len(calls):])
    del embedders, baseline, encoder, checker, onnx
    gc.collect()
    return rows


ONNX_KEY = ("hear (onnxruntime)", "fp32")


class OnnxRow:
    """The `--onnx` variant: the arch's checkpoint exported by `atst export --format onnx` (into a temporary folder,
    checked against PyTorch there) and run by onnxruntime on the CPU with the benchmark's thread count; cells of
    one window only (the graph's input range)."""

    def __init__(self, arch: str, loaded, path: Path, args) -> None:
        import tempfile

        import atst
        from atst.onnx_export import export_onnx, onnx_session

        self.folder = tempfile.TemporaryDirectory(prefix="atst-bench-onnx-")
        self.embedder = atst.Embedder(loaded.encoder, loaded.frontend_config).eval()
        start = time.perf_counter()
        done = export_onnx(self.embedder, Path(self.folder.name) / f"atstframe_{arch}.onnx", source=str(path))
        print(f"  .. onnx export {arch}: {time.perf_counter() - start:.1f} s, "
              f"{done.path.stat().st_size / 2**20:.0f} MB, onnxruntime vs PyTorch max |diff| {done.max_abs_diff:.2g} "
              f"on {done.checked_shape}", file=sys.stderr, flush=True)
        self.max_samples = int(done.metadata["max_samples"])
        self.session = onnx_session(done.path, threads=args.threads)

    def fits(self, audio) -> bool:
        return self.embedder.backbone.frontend.min_samples <= audio.shape[1] <= self.max_samples

    def run(self, audio):
        import torch

        (out,) = self.session.run(None, {"audio": audio.cpu().numpy()})
        return torch.from_numpy(out)

    def reference(self, audio):
        return self.embedder.timestamp_embeddings(audio.cpu())[0]


def print_progress(rows: list[dict]) -> None:
    for r in rows:
        print(f"  .. {r['arch']} b{r['batch']} {r['seconds']:g}s {r['variant']}/{r['dtype']}: "
              f"{r['median_s']:.3f} s ({r['audio_s_per_s']:.1f}x rt, {r['speedup_vs_baseline']:.2f}x baseline) "
              f"runs {r['runs_s']}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- tables
def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.rjust(w) if c[:1].isdigit() or c[:1] in "-+" else c.ljust(w)
                              for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def format_load(loads: list[dict]) -> str:
    rows = []
    for entry in loads:
        base = next(e for e in loads if e["arch"] == entry["arch"] and e["loader"] == "official-style")
        rows.append([entry["arch"], entry["loader"], f"{entry['file_mb']:.0f}", f"{entry['load_s']:.2f}",
                     " ".join(f"{t:.2f}" for t in entry["load_s_runs"]), f"{entry['peak_rss_mb']:.0f}",
                     f"{entry['rss_after_mb']:.0f}", f"{entry['peak_rss_mb'] - entry['rss_before_mb']:.0f}",
                     f"{base['load_s'] / entry['load_s']:.1f}x",
                     f"{entry['peak_rss_mb'] / base['peak_rss_mb']:.2f}"])
    return table(["arch", "loader", "file MB", "load s (median)", "runs s", "peak RSS MB", "RSS after MB",
                  "peak - imports MB", "speed vs official", "peak RSS / official"], rows)


def format_load_memory(loads: list[dict]) -> str:
    """One line per load: peak RSS against imports + the encoder's weights once (the target of a copy-free load)."""
    lines = []
    for entry in loads:
        floor = entry["rss_before_mb"] + entry["weights_mb"]
        lines.append(f"load memory {entry['arch']} {entry['loader']}: peak RSS {entry['peak_rss_mb']:.0f} MB = imports "
                     f"{entry['rss_before_mb']:.0f} MB + {entry['peak_rss_mb'] - entry['rss_before_mb']:.0f} MB; "
                     f"encoder weights {entry['weights_mb']:.0f} MB; peak / (imports + weights once) "
                     f"{entry['peak_rss_mb'] / floor:.2f}")
    return "\n".join(lines)


def format_throughput(rows: list[dict]) -> str:
    out = []
    for r in rows:
        err = r["max_abs_diff_vs_official_fp32"]
        out.append([r["arch"], r["device"], str(r["batch"]), f"{r['seconds']:g}", r["variant"], r["dtype"],
                    f"{r['median_s']:.3f}", f"{r['best_s']:.3f}", f"{r['audio_s_per_s']:.1f}",
                    f"{r['speedup_vs_baseline']:.2f}x", f"{r['speedup_vs_baseline_best']:.2f}x",
                    f"{r['cpu_s']:.2f}", f"{r['cpu_speedup_vs_baseline']:.2f}x",
                    f"{r['call_peak_mb']:.0f}", "-" if err is None or err != err else f"{err:.1e}",
                    "-" if r.get("max_abs_diff_vs_hear_fp32") is None else f"{r['max_abs_diff_vs_hear_fp32']:.1e}"])
    return table(["arch", "dev", "batch", "clip s", "variant", "dtype", "median s", "best s", "audio s / s",
                  "vs baseline", "vs baseline (best)", "CPU s", "vs baseline (CPU s)",
                  "call peak MB", "max|diff| vs off. fp32", "max|diff| vs hear fp32"], out)


def format_long_vs_short(rows: list[dict], long_s: float, short_s: float) -> str:
    out = []
    for r in rows:
        if r["seconds"] != long_s:
            continue
        short = next((s for s in rows if s["seconds"] == short_s and s["arch"] == r["arch"] and
                      s["batch"] == r["batch"] and s["variant"] == r["variant"] and s["dtype"] == r["dtype"]), None)
        if short is None:
            continue
        ratio = r["median_s"] / short["median_s"]
        target = long_s / short_s
        out.append([r["arch"], str(r["batch"]), r["variant"], r["dtype"], f"{ratio:.2f}x",
                    "yes" if ratio <= target else "NO", f"{short['call_peak_mb']:.0f}", f"{r['call_peak_mb']:.0f}"])
    return table(["arch", "batch", "variant", "dtype", f"time {long_s:g} s / {short_s:g} s",
                  f"<= {long_s / short_s:g}x", f"call peak MB {short_s:g} s", f"call peak MB {long_s:g} s"], out)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["small", "base"], choices=["tiny", "small", "base"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--seconds", nargs="+", type=float, default=[10.0, 60.0])
    parser.add_argument("--modes", nargs="+", default=["hear", "official"], choices=["hear", "official"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per cell (median reported)")
    parser.add_argument("--load-repeats", type=int, default=3, help="fresh processes per loader")
    parser.add_argument("--warmup-limit", type=float, default=80.0,
                        help="untimed warm-up round only for cells of at most this many audio seconds")
    parser.add_argument("--no-load", action="store_true", help="skip the load-time / RSS probes")
    parser.add_argument("--no-throughput", action="store_true", help="only the load probes")
    parser.add_argument("--no-optimizer-state", action="store_true",
                        help="checkpoints without the fake AdamW moments (smaller files)")
    parser.add_argument("--ckpt-dir", type=Path, default=DEFAULT_CKPT_DIR)
    parser.add_argument("--quick", action="store_true",
                        help="only the cells batch 1 / 10 s, batch 8 / 10 s, batch 1 / 60 s; 1 load probe per loader")
    parser.add_argument("--json", type=Path, default=None, help="write every measurement here")
    parser.add_argument("--onnx", action="store_true",
                        help="add an onnxruntime row (the `atst export --format onnx` graph, CPU, --threads) beside "
                             "PyTorch in cells of at most one 10 s window (needs the onnx extra)")
    parser.add_argument("--_probe-load", nargs=2, metavar=("LOADER", "PATH"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args._probe_load:
        print(json.dumps(probe_load(args._probe_load[0], args._probe_load[1], args.threads)))
        return
    import torch

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.onnx and device.type != "cpu":
        raise SystemExit("--onnx runs onnxruntime on the CPU beside PyTorch: use --device cpu")
    if args.quick:
        args.load_repeats = 1
    variants = [(m, d) for m in args.modes for d in args.dtypes]
    env = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
           "repeats": args.repeats, "load_repeats": args.load_repeats, "optimizer_state": not args.no_optimizer_state,
           "argv": sys.argv[1:]}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    env["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    print(f"# atst embedding benchmark: {json.dumps(env)}", flush=True)
    started = time.perf_counter()

    loads, rows = [], []
    for arch in args.archs:
        path = ensure_checkpoint(args.ckpt_dir, arch, not args.no_optimizer_state)
        if not args.no_load:
            with open(path, "rb") as handle:  # page cache warm for both loaders
                while handle.read(1 << 24):
                    pass
            for loader in ("project", "official-style"):
                entry = measure_load("project" if loader == "project" else "official", path, args.threads,
                                     args.load_repeats)
                entry.update(arch=arch, loader=loader, file_mb=path.stat().st_size / 2**20)
                loads.append(entry)
                print(f"  .. load {arch} {loader}: {entry['load_s']:.2f} s, peak RSS {entry['peak_rss_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
        if not args.no_throughput:
            if args.quick:
                cells = [(1, 10.0), (8, 10.0), (1, 60.0)]
            else:
                cells = [(b, s) for s in args.seconds for b in args.batches]
            arch_rows = bench_arch(arch, path, args, device, variants, cells)
            rows.extend(arch_rows)

    print()
    if loads:
        print(f"## Model load (fresh process per loader, page cache warm, median of {args.load_repeats}; "
              f"{'with' if not args.no_optimizer_state else 'without'} fake AdamW state in the file)")
        print(format_load(loads))
        print(format_load_memory(loads))
        print()
    if rows:
        print(f"## timestamp_embeddings throughput on {device.type} ({env['threads']} threads); median of "
              f"{args.repeats} round-robin rounds; 'vs baseline' = official-style fp32 time / this time, same cell "
              f"(medians; '(best)' uses the fastest round of each; 'CPU s' = median process CPU time of a call)")
        print(format_throughput(rows))
        print()
        seconds = sorted({r["seconds"] for r in rows})
        if len(seconds) >= 2:
            print(f"## {seconds[-1]:g} s clip cost relative to {seconds[0]:g} s (same batch and variant)")
            print(format_long_vs_short(rows, seconds[-1], seconds[0]))
            print()
    print(f"# total benchmark time {time.perf_counter() - started:.0f} s; load average (1/5/15 min) at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "load": loads, "throughput": rows}, indent=1))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
