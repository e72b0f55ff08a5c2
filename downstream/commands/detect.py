"""Detect sound events in recordings of any length and format with a model trained by `atst-downstream sed`.

    atst-downstream detect --model runs/desed field_recordings/ long.flac --out events/
    atst-downstream detect --model runs/desed/best.ckpt meeting.mp3 --out events/ --plot

--model is the --out folder of an `atst-downstream sed` run (its best.ckpt) or that file: the encoder, heads, class
names, per-class thresholds and median filters all come from it. AUDIO: files and folders (recursive), any format,
sample rate, channel count and length (scored in contiguous 10 s windows, 40 ms frames, joined without drift).

Writes OUT/events.tsv (`filename onset offset event_label score`, seconds, one row per event of every recording),
OUT/<name>.txt per recording (an Audacity label track: File > Import > Labels) and, with --plot, OUT/<name>.png
(each class's probability over time with its threshold and the detected events).

Exit status: 0 every file done; 1 some files were skipped (each named once on stderr, the others written); 2 a
usage error (nothing was done).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import report_skipped

HELP = "detect sound events in recordings of any length with a trained sed model (TSV, Audacity labels, plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("audio", nargs="+", metavar="AUDIO", help="audio files and/or folders (searched recursively)")
    a("--model", required=True, help="an `atst-downstream sed` run's --out folder (its best.ckpt) or a best.ckpt")
    a("--out", required=True, help="the folder to write events.tsv, the label files and the plots into")
    a("--plot", action="store_true", help="also a PNG per recording: event probabilities over time with the events")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from atst.audio_io import read_audio
    from atst.fileio import atomic_write_text

    from ..linear.run import resolve_device
    from ..predict import find_inputs
    from ..sed.detect import Detector, audacity_labels, events_tsv, output_stems, plot_recording

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name the folder to write into")
    sources = find_inputs(args.audio)
    detector = Detector.load(args.model, resolve_device(args.device))
    out.mkdir(parents=True, exist_ok=True)
    rows, skipped, audio_seconds = [], [], 0.0
    start = time.perf_counter()
    for source, stem in tqdm(list(zip(sources, output_stems(sources))), desc="detect", unit="file",
                             disable=args.quiet, file=sys.stderr):
        try:
            wave = read_audio(source, str(source))
        except ValueError as error:
            skipped.append(str(error) if str(source) in str(error) else f"{source}: {error}")
            continue
        scores, events = detector.detect(wave)
        audio_seconds += wave.shape[-1] / detector.model.backbone.sample_rate
        rows += [(str(source), event) for event in events]
        atomic_write_text(out / f"{stem}.txt", audacity_labels(events))
        if args.plot:
            plot_recording(out / f"{stem}.png", scores, events, detector.labels, detector.thresholds,
                           detector.frame_seconds, str(source))
    atomic_write_text(out / "events.tsv", events_tsv(rows))
    seconds = time.perf_counter() - start
    done = len(sources) - len(skipped)
    print(f"{len(rows)} event(s) in {done} recording(s) ({audio_seconds:.1f} s of audio in {seconds:.1f} s, "
          f"real-time factor {seconds / max(audio_seconds, 1e-9):.3f}); wrote {out / 'events.tsv'}")
    return report_skipped(skipped, "file(s) skipped; the others were written")
