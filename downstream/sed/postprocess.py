"""Per-class median filters chosen on the validation split (beyond the official code, which filters every class with
7 frames): for each class, the candidate length whose decoded events (threshold 0.5, `decode.scores_to_events`)
give the best event-based F1 of that class against the validation labels (`evaluate.sed_eval_f1`: sed_eval, 200 ms
collar, 20 % of the length, as the test metric); ties go to the candidate nearer the official 7 frames.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from torch import Tensor

OFFICIAL_MEDIAN = 7
MEDIAN_CANDIDATES = (1, 3, 5, 7, 9, 13, 19, 27)  # frames of 40 ms: 40 ms .. 1.08 s
SELECTION_THRESHOLD = 0.5


def choose_median_filters(scores: Mapping[str, Tensor], ground_truth: Mapping[str, Sequence[tuple]],
                          durations: Mapping[str, float], class_names: Sequence[str], frame_seconds: float = 0.04,
                          candidates: Sequence[int] = MEDIAN_CANDIDATES) -> list[int]:
    """The median filter length (frames) of each class (module docstring). `scores`: {file: `[T, C]`};
    `ground_truth`: {file: [(onset_s, offset_s, label name)]}. A class without validation events keeps 7."""
    from .decode import scores_to_events
    from .evaluate import sed_eval_f1

    chosen = []
    for column, label in enumerate(class_names):
        truth = {name: [event for event in events if event[2] == label] for name, events in ground_truth.items()}
        if not any(truth.values()):
            chosen.append(OFFICIAL_MEDIAN)
            continue
        best = (-1.0, 0, OFFICIAL_MEDIAN)
        for median in candidates:
            detections = {name: scores_to_events(scores[name][:, column : column + 1].double().numpy(), [label],
                                                 threshold=SELECTION_THRESHOLD, median=median,
                                                 frame_seconds=frame_seconds, duration=durations.get(name))
                          for name in truth}
            f1 = sed_eval_f1(detections, truth, durations, [label])[0]["macro"] or 0.0
            key = (round(f1, 9), -abs(median - OFFICIAL_MEDIAN), median)
            best = max(best, key)
        chosen.append(int(best[2]))
    return chosen


__all__ = ["MEDIAN_CANDIDATES", "OFFICIAL_MEDIAN", "SELECTION_THRESHOLD", "choose_median_filters"]
