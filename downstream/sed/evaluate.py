"""Sound event detection metrics from frame scores, computed by the field's libraries (never our own PSDS).

* PSDS, the psds_eval way (psds_eval 0.5.3): the median-filtered scores binarised at `n_thresholds` operating points
  (0.01, 0.03, ..., 0.99 for 50, as the official DESED / AudioSet-strong test code), each decoded into events and
  added to `PSDSEval`; the area under the PSD-ROC sampled at those points. Comparable with published ATST numbers.
* PSDS, threshold-independent (sed_scores_eval 0.0.4 `intersection_based.psds`) on the same median-filtered scores:
  every distinct score is an operating point. It comes out higher than the 50-point value on the same scores
  (spec 5.3: 0.827 vs 0.813 PSDS1 on a toy); never compare numbers across the two.
* Event-based F1 (sed_eval `EventBasedMetrics`, 200 ms onset collar, offset collar max(200 ms, 20 % of the event),
  "zero_score" for empty output) and segment-based F1 (sed_eval `SegmentBasedMetrics`, 1 s segments), both on the
  events decoded at `f1_threshold` (0.5) after the median filter; macro = class-wise average (what the official
  code reports), micro = overall.

PSDS1: dtc 0.7, gtc 0.7, cttc None (psds_eval gets 0.3, unused with alpha_ct 0), alpha_ct 0, alpha_st 1.
PSDS2: dtc 0.1, gtc 0.1, cttc 0.3, alpha_ct 0.5, alpha_st 1. max_efpr 100 per hour for both.

Inputs: `scores` {file id: `[T, C]` probabilities, 40 ms frames}, `ground_truth` {file id: [(onset_s, offset_s,
label)]}, `durations` {file id: seconds}. The scored files are the evaluated set: each needs a duration; a scored
file without a ground-truth entry has no event (as in a DCASE TSV) and still counts for the false-positive rate.
Frames past a file's duration (padding) are dropped before filtering (the official code kept them).
Ground truth is checked, then overlapping or touching same-class events are merged (both libraries need it).
Classes without any ground-truth event in the evaluated set are left out of the PSDS (psds_eval infers its classes
from the ground truth; sed_scores_eval is given the same classes). sed_eval's F of such a class is undefined (0/0
recall), so the macro F1 skips it, while the micro F1 counts its false alarms. With one evaluated class there is no
cross trigger: the cross-trigger term of PSDS2 is 0 in both libraries (both fail on it as released; see
`_one_class_safe_psds_eval` and `sed_scores_eval_psds`).
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping, Optional, Sequence

import numpy as np

from downstream.datasets.strong import TOKEN_SECONDS, StrongClip, merge_same_class_events
from downstream.datasets.strong_audio import clip_duration

from .decode import FilterSpec, ThresholdSpec, check_scores, frame_times, frames_within, median_filter_scores, \
    scores_to_events

Events = Sequence[tuple[float, float, str]]

PSDS_SCENARIOS = {
    "psds1": {"dtc_threshold": 0.7, "gtc_threshold": 0.7, "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0},
    "psds2": {"dtc_threshold": 0.1, "gtc_threshold": 0.1, "cttc_threshold": 0.3, "alpha_ct": 0.5, "alpha_st": 1.0},
}
MAX_EFPR = 100.0
# what psds_eval is given as cttc when a scenario has none (the official value; unused because alpha_ct is 0)
PSDS_EVAL_UNUSED_CTTC = 0.3
EVENT_COLLAR_SECONDS = 0.2
EVENT_PERCENTAGE_OF_LENGTH = 0.2
SEGMENT_SECONDS = 1.0
TIME_DECIMALS = 6


def psds_eval_thresholds(n_thresholds: int = 50) -> np.ndarray:
    """The official operating points: `n` thresholds 1/(2n), 3/(2n), ..., 1 - 1/(2n) (0.01 ... 0.99 for 50)."""
    if isinstance(n_thresholds, bool) or not isinstance(n_thresholds, (int, np.integer)) or n_thresholds < 1:
        raise ValueError(f"n_thresholds must be an int >= 1, got {n_thresholds!r}")
    return np.round((np.arange(n_thresholds) + 0.5) / n_thresholds, 10)


def psds_eval_key(n_thresholds: int) -> str:
    """The results key of the psds_eval-way PSDS (`psds_eval_50_thresholds` by default)."""
    return f"psds_eval_{n_thresholds}_thresholds"


# ------------------------------------------------------------------------------------------------ checked inputs

def ground_truth_from_clips(clips: Sequence[StrongClip], class_names: Sequence[str]
                            ) -> tuple[dict[str, list[tuple[float, float, str]]], dict[str, float]]:
    """The `ground_truth` and `durations` arguments of `evaluate_sed` for the strongly labelled clips of a split,
    keyed by `clip.key` (weak-only and unlabelled clips are left out). Durations: the source's, else the file
    header's (`clip_duration`)."""
    truth, durations = {}, {}
    for clip in clips:
        if clip.events is None:
            continue
        truth[clip.key] = [(event.onset, event.offset, str(class_names[event.label])) for event in clip.events]
        durations[clip.key] = clip_duration(clip)
    return truth, durations


def check_ground_truth(ground_truth: Mapping[str, Events], class_names: Sequence[str],
                       scored: Sequence[str]) -> dict[str, list[tuple[float, float, str]]]:
    """Every scored file's events, validated and merged (see the module docstring); a ground-truth entry for a
    file that was not scored, an unknown label or an event with onset >= offset is a ValueError naming it."""
    known = set(class_names)
    unscored = sorted(set(ground_truth) - set(scored))
    if unscored:
        raise ValueError(f"ground truth names {len(unscored)} file(s) without scores, e.g. {unscored[:3]}; score "
                         f"every evaluated file")
    checked: dict[str, list[tuple[float, float, str]]] = {}
    for file_id in scored:
        events = []
        for event in ground_truth.get(file_id, ()):
            if len(event) != 3:
                raise ValueError(f"ground truth of {file_id}: events are (onset_s, offset_s, label), got {event!r}")
            onset, offset, label = float(event[0]), float(event[1]), str(event[2])
            if label not in known:
                raise ValueError(f"ground truth of {file_id}: unknown class {label!r}; the classes are "
                                 f"{list(class_names)}")
            if not (math.isfinite(onset) and math.isfinite(offset)) or onset < 0 or offset <= onset:
                raise ValueError(f"ground truth of {file_id}: an event needs 0 <= onset < offset (seconds), got "
                                 f"{event!r}")
            events.append((round(onset, TIME_DECIMALS), round(offset, TIME_DECIMALS), label))
        checked[file_id] = merge_same_class_events(events, touching=True)
    return checked


def check_durations(durations: Mapping[str, float], scored: Sequence[str]) -> dict[str, float]:
    missing = [file_id for file_id in scored if file_id not in durations]
    if missing:
        raise ValueError(f"no duration for {len(missing)} scored file(s), e.g. {missing[:3]}; every evaluated file "
                         f"needs its duration in seconds (it is the false-positive-rate denominator)")
    checked = {}
    for file_id in scored:
        value = durations[file_id]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or value <= 0:
            raise ValueError(f"duration of {file_id} must be a finite number of seconds > 0, got {value!r}")
        checked[file_id] = float(value)
    return checked


def check_unscored_durations(durations: Mapping[str, float], scored: Sequence[str]) -> dict[str, float]:
    """The durations of evaluated files without scores, checked: a file both scored and listed here is a
    ValueError (its duration belongs in `durations`)."""
    durations = {str(key): value for key, value in durations.items()}
    both = sorted(set(durations) & set(scored))
    if both:
        raise ValueError(f"unscored_durations names {len(both)} scored file(s), e.g. {both[:3]}; list only files "
                         f"without scores there (a scored file's duration goes in durations)")
    return check_durations(durations, sorted(durations))


def _prepare(scores: Mapping[str, np.ndarray], durations: Mapping[str, float], class_names: Sequence[str],
             median: FilterSpec, frame_seconds: float, trim_padding: bool) -> dict[str, np.ndarray]:
    """Per file: the checked scores, padding trimmed (unless `trim_padding` is False), median-filtered."""
    filtered = {}
    for file_id, array in scores.items():
        array = check_scores(array, len(class_names), f"scores of {file_id}")
        if trim_padding:
            array = array[:frames_within(durations[file_id], array.shape[0], frame_seconds)]
        filtered[file_id] = median_filter_scores(array, median)
    return filtered


# ------------------------------------------------------------------------------------------------ the libraries

def check_psds_eval_versions() -> None:
    """psds_eval 0.5.3 breaks on pandas >= 3 (`fillna(method=)`) and numpy >= 2.4 (`int()` of a 2-D array):
    refuse with the pins instead of a traceback from inside the library (spec 5.3)."""
    import pandas

    def major_minor(version: str) -> tuple[int, int]:
        parts = (version.split(".") + ["0"])[:2]
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)

    if major_minor(pandas.__version__) >= (3, 0) or major_minor(np.__version__) >= (2, 4):
        raise RuntimeError(f"psds_eval 0.5.3 needs pandas<3 and numpy<2.4, found pandas {pandas.__version__} and "
                           f"numpy {np.__version__}; install requirements/sed.txt")


def _one_class_safe_psds_eval():
    """psds_eval's `PSDSEval` whose effective FP rate is its FP rate when a single class is evaluated.

    psds_eval averages each class's cross-trigger rates over the other classes with `nanmean` and adds
    `alpha_ct x` that mean; with one class there is no other class, the mean is NaN, and so is the effective FP
    rate even with alpha_ct 0 (NaN x 0), which turns every PSDS into 0. With no other class there is no cross
    trigger: the term is 0 (sed_scores_eval's definition, see `sed_scores_eval_psds`)."""
    from psds_eval import PSDSEval

    class OneClassSafePSDSEval(PSDSEval):
        def _effective_fp_rate(self, alpha_ct=0.0):
            rates = super()._effective_fp_rate(alpha_ct)
            if len(self.class_names) - 1 > 1:  # class_names holds psds_eval's injected "world" label too
                return rates
            return rates._replace(effective_fp_rate=rates.fp_rate)

    return OneClassSafePSDSEval


def psds_eval_psds(filtered: Mapping[str, np.ndarray], ground_truth: Mapping[str, Events],
                   durations: Mapping[str, float], class_names: Sequence[str], scenario: Mapping[str, float],
                   thresholds: Sequence[float], frame_seconds: float = TOKEN_SECONDS,
                   trim_padding: bool = True, unscored_durations: Optional[Mapping[str, float]] = None) -> float:
    """PSDS with psds_eval from `len(thresholds)` operating points of already median-filtered scores;
    `unscored_durations` {file id: seconds} of evaluated files without scores (no event, no detection) go into
    the metadata table, the false-positive-rate denominator, as the official test code does."""
    import pandas as pd

    check_psds_eval_versions()
    _OneClassSafePSDSEval = _one_class_safe_psds_eval()
    columns = ["filename", "onset", "offset", "event_label"]
    truth = pd.DataFrame([(f, on, off, label) for f, events in ground_truth.items() for on, off, label in events],
                         columns=columns)
    metadata = pd.DataFrame(sorted({**durations, **(unscored_durations or {})}.items()),
                            columns=["filename", "duration"])
    cttc = scenario["cttc_threshold"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)  # numpy 2.3 warns inside psds_eval
        warnings.simplefilter("ignore", category=FutureWarning)  # pandas concat of empty frames
        warnings.simplefilter("ignore", category=RuntimeWarning)  # NaN rates of a class without detections
        # thresholds that decode to the same events give one operating point; psds_eval warns for each repeat
        warnings.filterwarnings("ignore", message="A similar operating point exists")
        evaluator = _OneClassSafePSDSEval(dtc_threshold=scenario["dtc_threshold"], gtc_threshold=scenario["gtc_threshold"],
                             cttc_threshold=PSDS_EVAL_UNUSED_CTTC if cttc is None else cttc,
                             ground_truth=truth, metadata=metadata, duration_unit="hour")
        evaluated = set(evaluator.class_names)
        for threshold in thresholds:
            rows = []
            for file_id, array in filtered.items():
                duration = durations[file_id] if trim_padding else None
                rows.extend((file_id, on, off, label) for on, off, label in
                            scores_to_events(array, class_names, threshold, 1, frame_seconds, duration)
                            if label in evaluated)
            evaluator.add_operating_point(pd.DataFrame(rows, columns=columns), info={"threshold": float(threshold)})
        result = evaluator.psds(alpha_ct=scenario["alpha_ct"], alpha_st=scenario["alpha_st"], max_efpr=MAX_EFPR)
    return float(result.value)


def sed_scores_eval_psds(filtered: Mapping[str, np.ndarray], ground_truth: Mapping[str, Events],
                         durations: Mapping[str, float], class_names: Sequence[str], scenario: Mapping[str, float],
                         frame_seconds: float = TOKEN_SECONDS, trim_padding: bool = True,
                         unscored_durations: Optional[Mapping[str, float]] = None) -> float:
    """Threshold-independent PSDS with sed_scores_eval on already median-filtered scores (evaluated classes only:
    the ones with a ground-truth event). `unscored_durations`: see `psds_eval_psds`; sed_scores_eval sums the
    durations of the files it has statistics for, so each such file enters with empty statistics (no change point:
    no detection at any threshold) through `psds`'s `deltas` argument."""
    from sed_scores_eval.base_modules.scores import create_score_dataframe
    from sed_scores_eval.intersection_based import intermediate_statistics_deltas, psds

    evaluated = sorted({label for events in ground_truth.values() for _, _, label in events})
    columns = [class_names.index(name) for name in evaluated]
    frames = {}
    for file_id, array in filtered.items():
        times = frame_times(array.shape[0], durations[file_id] if trim_padding else None, frame_seconds)
        # a writeable copy: sed_scores_eval's Cython code takes a writeable memoryview of the scores
        frames[file_id] = create_score_dataframe(np.array(array[:, columns], dtype=np.float64), times,
                                                 list(evaluated))
    cttc, alpha_ct = scenario["cttc_threshold"], scenario["alpha_ct"]
    if len(evaluated) == 1:
        # no other class, no cross trigger: the cross-trigger term is 0 (sed_scores_eval 0.0.4 would index the
        # empty {other class: counts} dict and raise "unhashable type: 'numpy.ndarray'")
        cttc, alpha_ct = None, 0.0
    truth = {k: list(v) for k, v in ground_truth.items()}
    audio_durations, deltas = dict(durations), None
    if unscored_durations:
        deltas = intermediate_statistics_deltas(
            scores=frames, ground_truth=truth, dtc_threshold=scenario["dtc_threshold"],
            gtc_threshold=scenario["gtc_threshold"], cttc_threshold=cttc, time_decimals=TIME_DECIMALS)
        nothing = _no_change_points(next(iter(deltas.values())))
        for file_id, seconds in unscored_durations.items():
            deltas[file_id], truth[file_id], audio_durations[file_id] = nothing, [], seconds
        frames = None
    value, *_ = psds(scores=frames, ground_truth=truth, deltas=deltas,
                     audio_durations=audio_durations, dtc_threshold=scenario["dtc_threshold"],
                     gtc_threshold=scenario["gtc_threshold"], cttc_threshold=cttc,
                     alpha_ct=alpha_ct, alpha_st=scenario["alpha_st"], unit_of_time="hour",
                     max_efpr=MAX_EFPR, time_decimals=TIME_DECIMALS)
    return float(value)


def _no_change_points(deltas):
    """The sed_scores_eval statistics deltas of a file with no change point: `deltas` with every array emptied."""
    if isinstance(deltas, Mapping):
        return {key: _no_change_points(value) for key, value in deltas.items()}
    if isinstance(deltas, tuple):
        return tuple(_no_change_points(value) for value in deltas)
    return np.asarray(deltas)[:0]


def sed_eval_f1(detections: Mapping[str, Events], ground_truth: Mapping[str, Events],
                durations: Mapping[str, float], class_names: Sequence[str]) -> tuple[dict, dict]:
    """sed_eval event-based (200 ms collar, 20 % of length) and segment-based (1 s) F1: ({macro, micro} x 2)."""
    import sed_eval

    used = sorted({label for events in list(ground_truth.values()) + list(detections.values())
                   for _, _, label in events}, key=list(class_names).index)
    if not used:
        zero = {"macro": 0.0, "micro": 0.0}
        return dict(zero), dict(zero)
    event_metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=used, t_collar=EVENT_COLLAR_SECONDS, percentage_of_length=EVENT_PERCENTAGE_OF_LENGTH,
        empty_system_output_handling="zero_score")
    segment_metric = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=used,
                                                              time_resolution=SEGMENT_SECONDS)

    def as_list(file_id: str, events: Events) -> list[dict]:
        return [{"filename": file_id, "onset": on, "offset": off, "event_label": label} for on, off, label in events]

    for file_id in ground_truth:
        reference = as_list(file_id, ground_truth[file_id])
        estimated = as_list(file_id, detections.get(file_id, ()))
        event_metric.evaluate(reference, estimated)
        segment_metric.evaluate(reference, estimated, evaluated_length_seconds=durations[file_id])

    def f_measures(metric) -> dict:
        macro = metric.results_class_wise_average_metrics()["f_measure"]["f_measure"]
        micro = metric.results_overall_metrics()["f_measure"]["f_measure"]
        return {"macro": _finite(macro), "micro": _finite(micro)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # nanmean over classes with no F
        event = f_measures(event_metric)
        segment = f_measures(segment_metric)
    if not any(detections.values()):
        # no detection at all: precision is 0/0 and sed_eval's segment F is NaN; score it 0, the convention
        # ("zero_score") the event-based metric applies to empty output
        segment = {"macro": 0.0, "micro": 0.0}

    return event, segment


def _finite(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------ the entry point

def evaluate_sed(scores: Mapping[str, np.ndarray], ground_truth: Mapping[str, Events],
                 durations: Mapping[str, float], class_names: Sequence[str], median: FilterSpec = 7,
                 frame_seconds: float = TOKEN_SECONDS, n_thresholds: int = 50, f1_threshold: ThresholdSpec = 0.5,
                 trim_padding: bool = True, include_psds_eval: bool = True,
                 unscored_durations: Optional[Mapping[str, float]] = None) -> dict:
    """PSDS1/PSDS2 (psds_eval at `n_thresholds` operating points and sed_scores_eval threshold-independent),
    event-based F1 (200 ms) and segment-based F1 (1 s) of frame `scores` (see the module docstring).

    `scores` {file id: `[T, C]`}, `ground_truth` {file id: [(onset_s, offset_s, label)]}, `durations`
    {file id: seconds}, `class_names` the C labels, `median` the filter length in frames (one, or one per class),
    `f1_threshold` the decision threshold of the F1 scores (one, or one per class). `trim_padding=False` keeps
    scores past each duration (the official code's behaviour). `include_psds_eval=False` leaves out the
    psds_eval numbers (seconds per PSDS on a few dozen clips, minutes on DESED's 1 168: for per-epoch validation
    the sed_scores_eval numbers are enough). `unscored_durations` {file id: seconds}: evaluated files that have no
    scores and no ground truth (the official DESED test drops its files without events but keeps their durations):
    they add their length to the PSDS false-positive-rate denominator with no detection; the F1 scores, which
    such files cannot change, leave them out. Returns a JSON-able dict:
    {"psds1": {"psds_eval_50_thresholds": x, "sed_scores_eval": y}, "psds2": {...},
     "event_f1_200ms": {"macro": f, "micro": f}, "segment_f1_1s": {"macro": f, "micro": f}, "protocol": {...}}.
    """
    names = [str(name) for name in class_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names must be non-empty and unique, got {list(class_names)}")
    if not scores:
        raise ValueError("no scores: nothing to evaluate")
    thresholds = psds_eval_thresholds(n_thresholds)
    if not (isinstance(frame_seconds, (int, float)) and math.isfinite(frame_seconds) and frame_seconds > 0):
        raise ValueError(f"frame_seconds must be > 0, got {frame_seconds!r}")
    scored = sorted(str(key) for key in scores)
    scores = {str(key): value for key, value in scores.items()}
    checked_durations = check_durations(durations, scored)
    unscored = check_unscored_durations(unscored_durations or {}, scored)
    truth = check_ground_truth({str(k): v for k, v in ground_truth.items()}, names, scored)
    if not any(truth.values()):
        raise ValueError(f"the ground truth of the {len(scored)} scored file(s) holds no event: PSDS and F1 are "
                         f"undefined")
    filtered = _prepare(scores, checked_durations, names, median, frame_seconds, trim_padding)
    detections = {file_id: scores_to_events(array, names, f1_threshold, 1, frame_seconds,
                                            checked_durations[file_id] if trim_padding else None)
                  for file_id, array in filtered.items()}
    event_f1, segment_f1 = sed_eval_f1(detections, truth, checked_durations, names)
    results: dict = {}
    for name, scenario in PSDS_SCENARIOS.items():
        results[name] = {}
        if include_psds_eval:
            results[name][psds_eval_key(n_thresholds)] = psds_eval_psds(
                filtered, truth, checked_durations, names, scenario, thresholds, frame_seconds, trim_padding,
                unscored)
        results[name]["sed_scores_eval"] = sed_scores_eval_psds(filtered, truth, checked_durations, names, scenario,
                                                                 frame_seconds, trim_padding, unscored)
    results["event_f1_200ms"] = event_f1
    results["segment_f1_1s"] = segment_f1
    results["protocol"] = protocol_description(names, truth, median, frame_seconds, thresholds, f1_threshold,
                                               trim_padding, len(scored), include_psds_eval, unscored)
    return results


def protocol_description(class_names: Sequence[str], truth: Mapping[str, Events], median: FilterSpec,
                         frame_seconds: float, thresholds: np.ndarray, f1_threshold: ThresholdSpec,
                         trim_padding: bool, num_files: int, include_psds_eval: bool = True,
                         unscored_durations: Optional[Mapping[str, float]] = None) -> dict:
    """The settings behind the numbers, for results.json."""
    import pandas
    import psds_eval
    import sed_eval
    from importlib.metadata import version

    evaluated = sorted({label for events in truth.values() for _, _, label in events}, key=list(class_names).index)
    return {
        "psds_scenarios": {name: dict(s, max_efpr=MAX_EFPR, unit_of_time="hour") for name, s in PSDS_SCENARIOS.items()},
        "psds_eval": {"thresholds": [float(t) for t in thresholds], "version": psds_eval.__version__,
                      "cttc_when_none": PSDS_EVAL_UNUSED_CTTC, "computed": bool(include_psds_eval)},
        "sed_scores_eval": {"version": version("sed_scores_eval"), "threshold_independent": True},
        "sed_eval": {"version": getattr(sed_eval, "__version__", version("sed_eval")),
                     "event_collar_s": EVENT_COLLAR_SECONDS, "percentage_of_length": EVENT_PERCENTAGE_OF_LENGTH,
                     "segment_s": SEGMENT_SECONDS, "f1_threshold": _jsonable(f1_threshold),
                     "macro": "class-wise average F (sed_eval results_class_wise_average_metrics)",
                     "micro": "overall F (sed_eval results_overall_metrics)"},
        "median_filter_frames": _jsonable(median),
        "frame_seconds": float(frame_seconds),
        "padding_trimmed": bool(trim_padding),
        "files": int(num_files),
        "files_without_events": int(sum(1 for events in truth.values() if not events)),
        "files_without_scores": {"count": len(unscored_durations or {}),
                                 "seconds": round(float(sum((unscored_durations or {}).values())), 3),
                                 "counted_in": "the PSDS false-positive-rate denominator (no detection)"},
        "ground_truth_events": int(sum(len(events) for events in truth.values())),
        "classes_evaluated": list(evaluated),
        "ground_truth": "same-class overlapping or touching events merged",
        "versions": {"numpy": np.__version__, "pandas": pandas.__version__},
    }


def _jsonable(value):
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return value.item() if hasattr(value, "item") else value
    return [v.item() if hasattr(v, "item") else v for v in value]


__all__ = ["MAX_EFPR", "PSDS_SCENARIOS", "check_ground_truth", "evaluate_sed", "ground_truth_from_clips", "psds_eval_key", "psds_eval_psds",
           "psds_eval_thresholds", "sed_eval_f1", "sed_scores_eval_psds"]
