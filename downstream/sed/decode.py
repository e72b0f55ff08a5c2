"""Frame scores -> events: a median filter along time, a threshold, contiguous active runs.

Scores are per label frame (one ATST-Frame token, 40 ms): `[T, C]` floats, frame k covering
[k * frame_seconds, (k + 1) * frame_seconds). A run of active frames k0..k1 becomes the event
(k0 * frame_seconds, (k1 + 1) * frame_seconds, label), as the official decoder turns frames into times
(spec `downstream_frame_spec.md` 1.11). A median is an order statistic, so filtering the scores and then
thresholding gives exactly the events of thresholding and then filtering the binary map (the official order).
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
from scipy.ndimage import median_filter

from downstream.datasets.strong import TOKEN_SECONDS

FilterSpec = Union[int, Sequence[int]]
ThresholdSpec = Union[float, Sequence[float]]
# times are rounded to this many decimals (k * 0.04 is 0.12000000000000001 in floats for k = 3)
TIME_DECIMALS = 6


def check_scores(scores: np.ndarray, num_classes: int, where: str = "scores") -> np.ndarray:
    """`scores` as a float64 `[T, C]` array with C = `num_classes` and only finite values; else a ValueError
    naming `where`, the shape or the first bad frame."""
    array = np.asarray(scores)
    if array.ndim != 2 or array.shape[1] != num_classes:
        raise ValueError(f"{where}: scores must be [frames, classes] with {num_classes} classes, got shape "
                         f"{tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{where}: scores must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        frame, column = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{where}: scores hold {int(bad.sum())} NaN/inf value(s), first at frame {frame}, "
                         f"class {column}; scores must be finite (probabilities in [0, 1])")
    return array


def per_class(value, num_classes: int, name: str, kind: type) -> list:
    """A scalar repeated for every class, or a sequence of exactly `num_classes` values."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return [kind(value)] * num_classes
    values = list(value)
    if len(values) != num_classes:
        raise ValueError(f"{name}: one value per class needed ({num_classes}), got {len(values)}")
    return [kind(v) for v in values]


def _filter_lengths(filter_frames: FilterSpec, num_classes: int) -> list[int]:
    lengths = per_class(filter_frames, num_classes, "median filter", lambda v: v)
    for length in lengths:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise ValueError(f"median filter lengths must be ints >= 1 (frames; 1 = no filter), got {length!r}")
    return [int(length) for length in lengths]


def median_filter_scores(scores: np.ndarray, filter_frames: FilterSpec) -> np.ndarray:
    """Median filter along time: `scores` `[T, C]` -> float64 `[T, C]`.

    `filter_frames`: one length for every class or a sequence of C lengths (frames; 1 leaves a class unchanged).
    Boundaries are mirrored (scipy's "reflect", as the official decoder), so a run touching the first or last
    frame is not eaten away by the filter."""
    array = np.asarray(scores)
    num_classes = array.shape[1] if array.ndim == 2 else 0
    array = check_scores(array, num_classes)
    lengths = _filter_lengths(filter_frames, num_classes)
    out = array.copy()
    if array.shape[0] == 0:
        return out
    for length in sorted(set(lengths)):
        if length == 1:
            continue
        columns = [c for c, n in enumerate(lengths) if n == length]
        out[:, columns] = median_filter(array[:, columns], size=(length, 1), mode="reflect")
    return out


def frames_within(duration: float, num_frames: int, frame_seconds: float = TOKEN_SECONDS) -> int:
    """How many of `num_frames` label frames start before `duration` seconds (the rest is padding).

    A duration longer than the frames cover (by more than one frame) means the scores do not belong to the
    recording: ValueError."""
    if not (isinstance(duration, (int, float, np.floating)) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite number of seconds > 0, got {duration!r}")
    needed = math.ceil(round(duration / frame_seconds, 9))
    if needed > num_frames + 1:
        raise ValueError(f"the scores cover {num_frames} frames ({num_frames * frame_seconds:.2f} s) but the "
                         f"recording lasts {duration:.3f} s; score the whole recording")
    return min(needed, num_frames)


def frame_times(num_frames: int, duration: float | None = None,
                frame_seconds: float = TOKEN_SECONDS) -> np.ndarray:
    """The `num_frames + 1` frame boundaries in seconds (k * frame_seconds), the last clipped to `duration`."""
    times = np.round(np.arange(num_frames + 1) * frame_seconds, TIME_DECIMALS)
    if duration is not None and num_frames:
        times[-1] = min(times[-1], round(float(duration), TIME_DECIMALS))
    return times


def scores_to_events(scores: np.ndarray, class_names: Sequence[str], threshold: ThresholdSpec = 0.5,
                     median: FilterSpec = 7, frame_seconds: float = TOKEN_SECONDS,
                     duration: float | None = None) -> list[tuple[float, float, str]]:
    """Detected events of one recording: `(onset_s, offset_s, label)` sorted by onset (then label).

    `scores` `[T, C]` (probabilities), `class_names` the C labels. Frames starting at or after `duration`
    (seconds; padding of the last window) are dropped first and the last offset is clipped to it; then the median
    filter (`median_filter_scores`) and the threshold (a frame is active when its score is strictly above it; one
    value or one per class) give the active runs."""
    names = [str(name) for name in class_names]
    array = check_scores(scores, len(names))
    thresholds = per_class(threshold, len(names), "threshold", float)
    if not all(math.isfinite(t) for t in thresholds):
        raise ValueError(f"thresholds must be finite, got {thresholds}")
    if duration is not None:
        array = array[:frames_within(duration, array.shape[0], frame_seconds)]
    filtered = median_filter_scores(array, median)
    times = frame_times(filtered.shape[0], duration, frame_seconds)
    active = filtered > np.asarray(thresholds)[None, :]
    events: list[tuple[float, float, str]] = []
    for column, name in enumerate(names):
        padded = np.concatenate(([False], active[:, column], [False])).astype(np.int8)
        changes = np.flatnonzero(np.diff(padded))
        for start, stop in zip(changes[0::2], changes[1::2]):
            events.append((float(times[start]), float(times[stop]), name))
    events.sort(key=lambda event: (event[0], event[1], event[2]))
    return events


__all__ = ["check_scores", "frame_times", "frames_within", "median_filter_scores", "scores_to_events"]
