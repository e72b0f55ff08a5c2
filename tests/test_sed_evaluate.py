"""SED decoding and evaluation: the median filter and padding trim at boundaries, PSDS (psds_eval at 50 operating
points and sed_scores_eval threshold-independent) and sed_eval F1 on predictions whose answer is known."""
from __future__ import annotations

import json

import numpy as np
import pytest

from downstream.datasets.strong import merge_same_class_events
from downstream.sed import evaluate as evaluate_module
from downstream.sed.decode import median_filter_scores, scores_to_events
from downstream.sed.evaluate import evaluate_sed, psds_eval_thresholds

CLASSES = ("alarm", "dog", "speech")
FRAMES = 250  # 10 s at 40 ms


def toy_set():
    """6 files with events on the 40 ms grid (one short file padded to 10 s, one without events)."""
    truth = {
        "a.wav": [(1.0, 2.0, "alarm"), (4.0, 6.0, "dog")],
        "b.wav": [(0.0, 1.2, "speech"), (3.0, 3.6, "alarm")],
        "c.wav": [(2.4, 7.2, "dog")],
        "d.wav": [(5.0, 9.0, "speech"), (0.4, 0.8, "dog")],
        "short.wav": [(1.0, 3.0, "alarm")],  # 6.5 s recording, scored as a padded 10 s window
        "quiet.wav": [],
    }
    durations = {name: 10.0 for name in truth}
    durations["short.wav"] = 6.5
    return truth, durations


def perfect_scores(truth):
    return {name: perfect_like(events, CLASSES) for name, events in truth.items()}


def numbers(result):
    return {key: value for key, value in result.items() if key != "protocol"}


@pytest.fixture(scope="module")
def perfect_result():
    truth, durations = toy_set()
    return evaluate_sed(perfect_scores(truth), truth, durations, CLASSES)


# ------------------------------------------------------------------------------------------------ decoding

def test_runs_become_events_with_40ms_times_sorted_by_onset():
    scores = np.zeros((FRAMES, 2))
    scores[10:20, 0] = 0.9
    scores[3:8, 1] = 0.8
    events = scores_to_events(scores, ["a", "b"], threshold=0.5, median=1)
    assert events == [(0.12, 0.32, "b"), (0.4, 0.8, "a")]


def test_threshold_is_strict_and_per_class():
    scores = np.full((20, 2), 0.5)
    assert scores_to_events(scores, ["a", "b"], threshold=0.5, median=1) == []
    assert scores_to_events(scores, ["a", "b"], threshold=[0.4, 0.6], median=1) == [(0.0, 0.8, "a")]


def test_median_filter_removes_blips_and_fills_gaps_but_keeps_runs_at_the_edges():
    scores = np.zeros((40, 1))
    scores[0:4, 0] = 1.0    # a run at the start, longer than half the filter: kept whole (mirrored boundary)
    scores[10, 0] = 1.0     # a one-frame blip: removed
    scores[20:26, 0] = 1.0
    scores[27:32, 0] = 1.0  # a one-frame gap at 26: filled
    scores[36:40, 0] = 1.0  # a run at the end: kept whole
    filtered = median_filter_scores(scores, 7)
    assert filtered[0:4, 0].tolist() == [1.0] * 4 and filtered[4, 0] == 0.0
    assert filtered[10, 0] == 0.0
    assert filtered[20:32, 0].min() == 1.0
    assert filtered[36:40, 0].tolist() == [1.0] * 4 and filtered[35, 0] == 0.0
    events = scores_to_events(scores, ["a"], median=7)
    assert events == [(0.0, 0.16, "a"), (0.8, 1.28, "a"), (1.44, 1.6, "a")]


def test_median_filter_per_class_lengths():
    scores = np.zeros((30, 2))
    scores[10:12, :] = 1.0  # a two-frame run in both classes
    filtered = median_filter_scores(scores, [1, 7])
    assert filtered[10:12, 0].tolist() == [1.0, 1.0]  # length 1: unchanged
    assert filtered[:, 1].max() == 0.0                 # length 7: removed
    with pytest.raises(ValueError, match="one value per class"):
        median_filter_scores(scores, [3, 3, 3])
    with pytest.raises(ValueError, match="ints >= 1"):
        median_filter_scores(scores, 0)


def test_filtering_scores_equals_filtering_the_binary_map():
    rng = np.random.default_rng(3)
    scores = rng.random((200, 4))
    from scipy.ndimage import median_filter

    for threshold in (0.3, 0.5, 0.71):
        binary_first = median_filter((scores > threshold).astype(float), size=(7, 1), mode="reflect") > 0.5
        assert np.array_equal(median_filter_scores(scores, 7) > threshold, binary_first)


def test_padding_is_trimmed_before_filtering_and_the_last_offset_clipped():
    scores = np.zeros((FRAMES, 1))
    scores[150:FRAMES, 0] = 1.0  # active from 6.0 s into the padding of a 6.5 s recording
    assert scores_to_events(scores, ["a"], duration=6.5) == [(6.0, 6.5, "a")]
    assert scores_to_events(scores, ["a"]) == [(6.0, 10.0, "a")]
    padding_only = np.zeros((FRAMES, 1))
    padding_only[170:200, 0] = 1.0  # only in the padding (6.8-8.0 s)
    assert scores_to_events(padding_only, ["a"], duration=6.5) == []
    with pytest.raises(ValueError, match="recording lasts"):
        scores_to_events(scores, ["a"], duration=12.0)


def test_decode_rejects_bad_scores():
    with pytest.raises(ValueError, match="3 classes"):
        scores_to_events(np.zeros((10, 2)), CLASSES)
    bad = np.zeros((10, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN.*frame 4, class 1"):
        scores_to_events(bad, CLASSES)
    with pytest.raises(ValueError, match="one value per class"):
        scores_to_events(np.zeros((10, 3)), CLASSES, threshold=[0.5, 0.5])


def test_merge_same_class_events_sorts_then_merges_overlapping_and_touching():
    events = [(5.0, 6.0, "a"), (1.0, 3.0, "a"), (2.0, 4.0, "a"), (4.0, 4.5, "a"), (2.5, 3.5, "b")]
    assert merge_same_class_events(events) == [(1.0, 4.5, "a"), (2.5, 3.5, "b"), (5.0, 6.0, "a")]
    assert merge_same_class_events(events, touching=False) == [(1.0, 4.0, "a"), (2.5, 3.5, "b"),
                                                                (4.0, 4.5, "a"), (5.0, 6.0, "a")]


# ------------------------------------------------------------------------------------------------ metrics

def test_perfect_predictions_score_one_by_both_libraries_and_f1(perfect_result):
    for scenario in ("psds1", "psds2"):
        assert perfect_result[scenario]["psds_eval_50_thresholds"] == pytest.approx(1.0, abs=1e-9)
        assert perfect_result[scenario]["sed_scores_eval"] == pytest.approx(1.0, abs=1e-9)
    assert perfect_result["event_f1_200ms"] == {"macro": pytest.approx(1.0), "micro": pytest.approx(1.0)}
    assert perfect_result["segment_f1_1s"]["micro"] == pytest.approx(1.0)
    json.dumps(perfect_result)  # results.json takes it as it is


def test_protocol_settings_are_reported(perfect_result):
    protocol = perfect_result["protocol"]
    assert protocol["psds_scenarios"]["psds1"] == {"dtc_threshold": 0.7, "gtc_threshold": 0.7,
                                                   "cttc_threshold": None, "alpha_ct": 0.0, "alpha_st": 1.0,
                                                   "max_efpr": 100.0, "unit_of_time": "hour"}
    assert protocol["psds_scenarios"]["psds2"]["cttc_threshold"] == 0.3
    assert protocol["psds_scenarios"]["psds2"]["alpha_ct"] == 0.5
    assert protocol["psds_eval"]["thresholds"][:2] == [0.01, 0.03] and len(protocol["psds_eval"]["thresholds"]) == 50
    assert protocol["median_filter_frames"] == 7 and protocol["files_without_events"] == 1


def test_official_thresholds():
    assert np.allclose(psds_eval_thresholds(50), np.arange(1 / 100, 1, 1 / 50))


def test_predictions_shifted_past_the_collar_score_lower(perfect_result):
    truth, durations = toy_set()
    shifted = {name: np.roll(array, 15, axis=0) for name, array in perfect_scores(truth).items()}  # 600 ms late
    result = evaluate_sed(shifted, truth, durations, CLASSES)
    for scenario in ("psds1", "psds2"):
        for library in ("psds_eval_50_thresholds", "sed_scores_eval"):
            assert result[scenario][library] < perfect_result[scenario][library] - 0.1
    assert result["event_f1_200ms"]["micro"] < 0.5


def test_all_zero_predictions_score_zero():
    truth, durations = toy_set()
    zeros = {name: np.zeros((FRAMES, len(CLASSES))) for name in truth}
    result = evaluate_sed(zeros, truth, durations, CLASSES, n_thresholds=5)
    assert numbers(result) == {
        "psds1": {"psds_eval_5_thresholds": 0.0, "sed_scores_eval": 0.0},
        "psds2": {"psds_eval_5_thresholds": 0.0, "sed_scores_eval": 0.0},
        "event_f1_200ms": {"macro": 0.0, "micro": 0.0}, "segment_f1_1s": {"macro": 0.0, "micro": 0.0}}


def test_false_positives_in_an_event_free_file_lower_psds(perfect_result):
    truth, durations = toy_set()
    scores = perfect_scores(truth)
    scores["quiet.wav"][50:100, 0] = 1.0  # a 2 s false alarm in the file without events
    result = evaluate_sed(scores, truth, durations, CLASSES)
    assert result["psds1"]["sed_scores_eval"] < perfect_result["psds1"]["sed_scores_eval"]
    assert result["event_f1_200ms"]["micro"] < 1.0


def test_false_positives_in_the_padding_do_not_count(perfect_result):
    truth, durations = toy_set()
    scores = perfect_scores(truth)
    scores["short.wav"][180:240, 1] = 1.0  # 7.2-9.6 s: past the 6.5 s recording
    trimmed = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5)
    assert trimmed["psds1"]["sed_scores_eval"] == pytest.approx(1.0)
    assert trimmed["event_f1_200ms"]["micro"] == pytest.approx(1.0)
    kept = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5, trim_padding=False)
    assert kept["event_f1_200ms"]["micro"] < 1.0


def test_a_random_score_lies_between_and_the_two_libraries_differ():
    """On graded scores the threshold-independent PSDS is not the 50-point one: both are really computed."""
    truth, durations = toy_set()
    rng = np.random.default_rng(0)
    scores = {name: np.clip(array * 0.4 + rng.random(array.shape) * 0.8, 0, 1)
              for name, array in perfect_scores(truth).items()}
    result = evaluate_sed(scores, truth, durations, CLASSES)
    values = result["psds1"]
    assert 0.0 < values["psds_eval_50_thresholds"] < 1.0 and 0.0 < values["sed_scores_eval"] < 1.0
    # sampling the ROC at 50 points can only lose area (spec 5.3)
    assert values["psds_eval_50_thresholds"] < values["sed_scores_eval"] - 0.01


def test_both_psds_numbers_come_from_the_libraries(monkeypatch):
    truth, durations = toy_set()
    scores = perfect_scores(truth)
    import psds_eval
    import sed_scores_eval.intersection_based as intersection_based

    class FakePSDS:
        value = 0.123

    monkeypatch.setattr(psds_eval.PSDSEval, "psds", lambda self, **kwargs: FakePSDS())
    monkeypatch.setattr(intersection_based, "psds", lambda **kwargs: (0.456, {}, None, {}))
    result = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=3)
    assert result["psds1"] == {"psds_eval_3_thresholds": 0.123, "sed_scores_eval": 0.456}
    assert result["psds2"] == {"psds_eval_3_thresholds": 0.123, "sed_scores_eval": 0.456}


def test_psds_eval_can_be_left_out_for_validation():
    truth, durations = toy_set()
    result = evaluate_sed(perfect_scores(truth), truth, durations, CLASSES, include_psds_eval=False)
    assert result["psds1"] == {"sed_scores_eval": pytest.approx(1.0)} and not result["protocol"]["psds_eval"]["computed"]


def test_psds_eval_number_equals_a_direct_library_call():
    import pandas as pd
    from psds_eval import PSDSEval

    truth, durations = toy_set()
    rng = np.random.default_rng(1)
    scores = {name: np.clip(array * 0.7 + rng.random(array.shape) * 0.4, 0, 1)
              for name, array in perfect_scores(truth).items()}
    ours = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=4)["psds1"]["psds_eval_4_thresholds"]
    columns = ["filename", "onset", "offset", "event_label"]
    evaluator = PSDSEval(0.7, 0.7, 0.3, ground_truth=pd.DataFrame(
        [(f, *event) for f, events in truth.items() for event in events], columns=columns),
        metadata=pd.DataFrame(list(durations.items()), columns=["filename", "duration"]))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for threshold in (0.125, 0.375, 0.625, 0.875):
            rows = [(f, *event) for f, array in scores.items()
                    for event in scores_to_events(array, CLASSES, threshold, 7, duration=durations[f])]
            evaluator.add_operating_point(pd.DataFrame(rows, columns=columns))
        direct = evaluator.psds(alpha_ct=0.0, alpha_st=1.0, max_efpr=100).value
    assert ours == pytest.approx(direct, abs=1e-12)


def one_class_set():
    """The toy set reduced to its "dog" events (one class; a.wav, b.wav, quiet.wav without events)."""
    truth, durations = toy_set()
    return {name: [event for event in events if event[2] == "dog"] for name, events in truth.items()}, durations


def test_a_single_class_task_scores_one_on_perfect_predictions_by_every_library():
    """psds_eval's NaN cross-trigger mean made every one-class PSDS 0; sed_scores_eval raised on PSDS2."""
    truth, durations = one_class_set()
    result = evaluate_sed({name: perfect_like(events, ["dog"]) for name, events in truth.items()}, truth, durations,
                          ["dog"], n_thresholds=5)
    for scenario in ("psds1", "psds2"):
        assert result[scenario] == {"psds_eval_5_thresholds": pytest.approx(1.0, abs=1e-9),
                                    "sed_scores_eval": pytest.approx(1.0, abs=1e-9)}
    assert result["event_f1_200ms"] == {"macro": pytest.approx(1.0), "micro": pytest.approx(1.0)}
    assert result["segment_f1_1s"] == {"macro": pytest.approx(1.0), "micro": pytest.approx(1.0)}
    assert result["protocol"]["classes_evaluated"] == ["dog"]


def test_a_single_class_task_with_false_alarms_scores_below_one_by_every_library():
    truth, durations = one_class_set()
    scores = {name: 0.6 * perfect_like(events, ["dog"]) for name, events in truth.items()}
    scores["quiet.wav"][50:100, 0] = 0.9  # a 2 s false alarm scored above every true event
    result = evaluate_sed(scores, truth, durations, ["dog"], n_thresholds=5)
    # the ROC: TPR 0 at 1 false alarm in 56.5 s (63.7 per hour), then TPR 1; its area up to 100 per hour
    expected = 1.0 - 3600 / sum(durations.values()) / 100
    for scenario in ("psds1", "psds2"):
        assert result[scenario] == {"psds_eval_5_thresholds": pytest.approx(expected, abs=1e-9),
                                    "sed_scores_eval": pytest.approx(expected, abs=1e-9)}
    assert result["event_f1_200ms"]["micro"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # 3 TP, 1 FP, 0 FN


def test_classes_without_ground_truth_events_are_left_out_of_psds_and_of_the_class_average():
    """Only "dog" has events. PSDS: both libraries evaluate the classes of the ground truth, so the false alarms
    of "alarm" do not count (psds_eval infers its classes from the ground truth; a class without reference events
    has an undefined TP ratio in sed_scores_eval). F1: sed_eval's F of a class without reference events is
    undefined (0/0 recall) and its class-wise average skips it, while the overall (micro) F counts its false
    alarms."""
    truth, durations = one_class_set()
    scores = {name: perfect_like(events, CLASSES) for name, events in truth.items()}
    scores["quiet.wav"][50:100, CLASSES.index("alarm")] = 1.0
    result = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5)
    for scenario in ("psds1", "psds2"):
        assert result[scenario] == {"psds_eval_5_thresholds": pytest.approx(1.0, abs=1e-9),
                                    "sed_scores_eval": pytest.approx(1.0, abs=1e-9)}
    assert result["event_f1_200ms"]["macro"] == pytest.approx(1.0)
    assert result["event_f1_200ms"]["micro"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # 3 TP, 1 FP, 0 FN
    assert result["protocol"]["classes_evaluated"] == ["dog"]


def test_two_of_three_classes_with_events_score_one_when_perfect():
    truth, durations = toy_set()
    truth = {name: [event for event in events if event[2] != "speech"] for name, events in truth.items()}
    result = evaluate_sed(perfect_scores(truth), truth, durations, CLASSES, n_thresholds=5)
    for scenario in ("psds1", "psds2"):
        assert result[scenario] == {"psds_eval_5_thresholds": pytest.approx(1.0, abs=1e-9),
                                    "sed_scores_eval": pytest.approx(1.0, abs=1e-9)}
    assert result["protocol"]["classes_evaluated"] == ["alarm", "dog"]


def test_unscored_durations_count_like_files_scored_without_detections():
    """The official DESED test drops its files without events but keeps their durations: a file given only by its
    duration gives the PSDS of the same file scored with zeros (no detection at any threshold), in both libraries,
    and raises PSDS1 against leaving its duration out."""
    truth, durations = toy_set()
    scores = {name: 0.6 * array for name, array in perfect_scores(truth).items()}
    scores["quiet.wav"][:] = 0.0
    scores["a.wav"][100:130, CLASSES.index("speech")] = 0.9  # a false alarm above every true event
    scored = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5)
    seconds = durations.pop("quiet.wav")
    del scores["quiet.wav"], truth["quiet.wav"]
    unscored = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5,
                            unscored_durations={"quiet.wav": seconds})
    left_out = evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=5)
    for key, values in numbers(scored).items():  # the F1 scores too: the file has no event and no detection
        assert unscored[key] == pytest.approx(values, abs=1e-12), key
    for library in ("psds_eval_5_thresholds", "sed_scores_eval"):
        # the same false alarms over a longer total duration: a lower false-positive rate, a higher PSDS
        assert unscored["psds1"][library] > left_out["psds1"][library] + 0.05
    assert unscored["event_f1_200ms"] == left_out["event_f1_200ms"]
    assert unscored["protocol"]["files_without_scores"]["count"] == 1
    assert unscored["protocol"]["files_without_scores"]["seconds"] == pytest.approx(seconds)


def test_unscored_durations_enter_the_false_positive_rate_denominator():
    truth, durations = one_class_set()
    scores = {name: 0.6 * perfect_like(events, ["dog"]) for name, events in truth.items()}
    scores["quiet.wav"][50:100, 0] = 0.9  # one false alarm above every true event
    extra = {"x1.wav": 100.0, "x2.wav": 43.5}  # 56.5 s scored + 143.5 s unscored: 1 false alarm in 200 s
    result = evaluate_sed(scores, truth, durations, ["dog"], n_thresholds=5, unscored_durations=extra)
    for scenario in ("psds1", "psds2"):
        assert result[scenario] == {"psds_eval_5_thresholds": pytest.approx(1 - 3600 / 200 / 100, abs=1e-9),
                                    "sed_scores_eval": pytest.approx(1 - 3600 / 200 / 100, abs=1e-9)}


@pytest.mark.parametrize("unscored, message", [
    ({"a.wav": 10.0}, r"unscored_durations names 1 scored file\(s\), e.g. \['a.wav'\]"),
    ({"x.wav": 0.0}, r"duration of x.wav must be a finite number of seconds > 0"),
])
def test_bad_unscored_durations_are_a_clear_value_error(unscored, message):
    truth, durations = toy_set()
    with pytest.raises(ValueError, match=message):
        evaluate_sed(perfect_scores(truth), truth, durations, CLASSES, n_thresholds=2, unscored_durations=unscored)


def test_psds_eval_refuses_pandas_3(monkeypatch):
    import pandas

    monkeypatch.setattr(pandas, "__version__", "3.0.1")
    with pytest.raises(RuntimeError, match="pandas<3 and numpy<2.4"):
        evaluate_module.check_psds_eval_versions()


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("case, message", [
    ("shape", r"scores of a.wav.*3 classes, got shape \(250, 2\)"),
    ("nan", r"scores of a.wav: scores hold 1 NaN"),
    ("unknown_class", r"ground truth of b.wav: unknown class 'cat'"),
    ("missing_duration", r"no duration for 1 scored file\(s\), e.g. \['c.wav'\]"),
    ("bad_duration", r"duration of c.wav must be a finite number"),
    ("unscored_truth", r"ground truth names 1 file\(s\) without scores"),
    ("onset_after_offset", r"ground truth of b.wav: an event needs 0 <= onset < offset"),
    ("no_events", r"holds no event"),
])
def test_bad_input_is_a_clear_value_error(case, message):
    truth, durations = toy_set()
    scores = perfect_scores(truth)
    if case == "shape":
        scores["a.wav"] = scores["a.wav"][:, :2]
    elif case == "nan":
        scores["a.wav"][3, 0] = np.nan
    elif case == "unknown_class":
        truth["b.wav"] = truth["b.wav"] + [(1.0, 2.0, "cat")]
    elif case == "missing_duration":
        del durations["c.wav"]
    elif case == "bad_duration":
        durations["c.wav"] = float("nan")
    elif case == "unscored_truth":
        truth["extra.wav"] = [(1.0, 2.0, "dog")]
    elif case == "onset_after_offset":
        truth["b.wav"] = [(3.0, 2.0, "dog")]
    elif case == "no_events":
        truth = {name: [] for name in truth}
    with pytest.raises(ValueError, match=message):
        evaluate_sed(scores, truth, durations, CLASSES, n_thresholds=2)


def test_ground_truth_from_a_desed_test_split(tmp_path):
    from atst.synthetic.sed_layouts import make_desed
    from downstream.datasets import load_strong_task
    from downstream.sed.evaluate import ground_truth_from_clips

    task = load_strong_task(f"desed={make_desed(tmp_path / 'desed')}")
    truth, durations = ground_truth_from_clips(task.split("test") + task.split("valid"), task.labels.names)
    short = "audio/validation/validation/val_short.wav"
    assert truth[short] == [(1.0, 3.0, "Alarm_bell_ringing"), (5.0, 7.5, "Cat")] and durations[short] == 7.5
    assert truth["audio/validation/validation/val_quiet.wav"] == []
    assert len(truth) == 6  # 4 test + 2 synthetic validation clips; the weak-only clip has no ground truth
    assert durations["audio/validation/synthetic21_validation/soundscapes/synth_val_0.wav"] == 10.0
    scores = {key: perfect_like(events, task.labels.names) for key, events in truth.items()}
    result = evaluate_sed(scores, truth, durations, task.labels.names, n_thresholds=3)
    assert result["psds1"]["sed_scores_eval"] == pytest.approx(1.0)


def perfect_like(events, class_names):
    array = np.zeros((FRAMES, len(class_names)))
    for onset, offset, label in events:
        array[round(onset / 0.04):round(offset / 0.04), list(class_names).index(label)] = 1.0
    return array
