"""The generated HEAR tasks follow the hear-preprocess layout and the pre-training corpus lists every clip, both
deterministically (fast, no harness)."""
from __future__ import annotations

import csv
import json

import pytest
from conftest import SAMPLE_RATE, pcm16_rms, wav_header

from atst.synthetic import SIZES, espeak_available, make_corpus, make_tasks
from atst.synthetic.hear_tasks import task_dir_name

METADATA_KEYS = {"task_name", "version", "embedding_type", "prediction_type", "split_mode", "sample_duration",
                 "evaluation", "download_urls", "default_mode", "tmp_dir", "mode", "splits"}
VALID_SCORES = {"top1_acc", "pitch_acc", "chroma_acc", "mAP", "d_prime", "aucroc", "event_onset_200ms_fms",
                "event_onset_50ms_fms", "event_onset_offset_50ms_20perc_fms", "segment_1s_er"}


@pytest.fixture(scope="module")
def tiny_tasks(tmp_path_factory) -> list:
    return make_tasks(tmp_path_factory.mktemp("tasks"), size="tiny", seed=7,
                      tasks=["synth_scene", "synth_timbre", "synth_events"])


def test_task_dirs_follow_hear_preprocess_layout(tiny_tasks):
    names = [p.name for p in tiny_tasks]
    assert names == [task_dir_name(n) for n in ("synth_scene", "synth_timbre", "synth_events")]
    assert names[0] == "synth_scene-v1-full"
    for task in tiny_tasks:
        meta = json.loads((task / "task_metadata.json").read_text())
        assert METADATA_KEYS <= set(meta), METADATA_KEYS - set(meta)
        assert f"{meta['task_name']}-{meta['version']}-{meta['mode']}" == task.name
        assert set(meta["evaluation"]) <= VALID_SCORES
        rows = list(csv.reader((task / "labelvocabulary.csv").open()))
        assert rows[0] == ["idx", "label"]
        labels = [r[1] for r in rows[1:]]
        assert [int(r[0]) for r in rows[1:]] == list(range(len(labels))) and labels == sorted(labels)
        expected_frames = int(round(meta["sample_duration"] * SAMPLE_RATE))
        for split in meta["splits"]:
            data = json.loads((task / f"{split}.json").read_text())
            on_disk = sorted(p.name for p in (task / str(SAMPLE_RATE) / split).iterdir())
            assert sorted(data) == on_disk, "every wav has a key and every key a wav"
            for name in on_disk:
                assert wav_header(task / str(SAMPLE_RATE) / split / name) == (1, 2, SAMPLE_RATE, expected_frames)
            for value in data.values():
                if meta["embedding_type"] == "scene":
                    assert len(value) == 1 and value[0] in labels
                else:
                    for event in value:
                        assert set(event) == {"label", "start", "end"} and event["label"] in labels
                        assert 0 <= event["start"] < event["end"] <= meta["sample_duration"] * 1000


def test_split_modes_and_label_types(tiny_tasks):
    meta = {p.name.split("-")[0]: json.loads((p / "task_metadata.json").read_text()) for p in tiny_tasks}
    assert meta["synth_scene"]["split_mode"] == "trainvaltest"
    assert meta["synth_scene"]["splits"] == ["train", "valid", "test"]
    assert meta["synth_timbre"]["split_mode"] == "new_split_kfold"
    assert meta["synth_timbre"]["splits"] == ["fold00", "fold01", "fold02"] and meta["synth_timbre"]["nfolds"] == 3
    assert (meta["synth_events"]["embedding_type"], meta["synth_events"]["prediction_type"]) == ("event",
                                                                                               "multilabel")
    assert meta["synth_events"]["evaluation"][0] == "event_onset_200ms_fms"


def test_scene_splits_are_balanced_and_audible(tiny_tasks):
    scene = tiny_tasks[0]
    train = json.loads((scene / "train.json").read_text())
    counts = {}
    for labels in train.values():
        counts[labels[0]] = counts.get(labels[0], 0) + 1
    assert len(counts) == 5 and max(counts.values()) - min(counts.values()) <= 1
    assert 0.01 < pcm16_rms(scene / str(SAMPLE_RATE) / "train" / sorted(train)[0]) < 0.9


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path, tiny_tasks):
    again = make_tasks(tmp_path / "a", size="tiny", seed=7, tasks=["synth_events"])[0]
    other = make_tasks(tmp_path / "b", size="tiny", seed=8, tasks=["synth_events"])[0]
    original = tiny_tasks[2]
    first_wav = f"{SAMPLE_RATE}/train/train_0000.wav"
    for rel in ["test.json", "task_metadata.json", first_wav]:
        assert (again / rel).read_bytes() == (original / rel).read_bytes(), rel
    assert (other / first_wav).read_bytes() != (original / first_wav).read_bytes()


def test_sizes_scale_clip_counts(tmp_path):
    small = make_tasks(tmp_path, size="small", seed=1, tasks=["synth_scene"])[0]
    assert len(json.loads((small / "train.json").read_text())) == SIZES["small"].scene_per_split
    assert len(json.loads((small / "train.json").read_text())) > SIZES["tiny"].scene_per_split


def test_bad_requests_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown size 'huge'"):
        make_tasks(tmp_path, size="huge")
    with pytest.raises(ValueError, match="unknown task"):
        make_tasks(tmp_path, size="tiny", tasks=["synth_nope"])


def test_tasks_carry_a_param_grid_heareval_understands(tiny_tasks):
    # heareval merges `task_specific_param_grid` into its own grid: unknown keys would reach its MLP builder
    from heareval.predictions.task_predictions import PARAM_GRID

    for task in tiny_tasks:
        grid = json.loads((task / "task_metadata.json").read_text())["evaluation_params"]["task_specific_param_grid"]
        assert set(grid) <= set(PARAM_GRID), set(grid) - set(PARAM_GRID)
        assert all(isinstance(v, list) and v for v in grid.values())
        # one optimizer step per epoch on these tasks: the grid must train for tens of epochs, not 10
        assert min(grid["max_epochs"]) >= 50


def test_corpus_manifest_lists_every_clip_deterministically(tmp_path):
    paths = make_corpus(tmp_path / "a", n_clips=4, seconds=1.5, seed=3, speech=False)
    rows = (tmp_path / "a" / "manifest.csv").read_text().splitlines()
    assert rows[0] == "files" and rows[1:] == [str(p.resolve()) for p in paths]
    for path in paths:
        assert 0.005 < pcm16_rms(path) < 0.9
        assert wav_header(path) == (1, 2, SAMPLE_RATE, int(1.5 * SAMPLE_RATE))
    again = make_corpus(tmp_path / "b", n_clips=4, seconds=1.5, seed=3, speech=False)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_corpus_speech_follows_espeak(tmp_path, monkeypatch):
    without = make_corpus(tmp_path / "n", n_clips=3, seconds=2.0, seed=3, speech=False)
    if espeak_available():  # what `make install-system` gives CI and the demo
        default = make_corpus(tmp_path / "s", n_clips=3, seconds=2.0, seed=3)
        assert default[0].read_bytes() == without[0].read_bytes()  # clip 0 is a scene clip either way
        assert default[2].read_bytes() != without[2].read_bytes()  # clip 2 is spoken words
        assert pcm16_rms(default[2]) > 0.02
    monkeypatch.setattr("atst.synthetic.speech.espeak_available", lambda: False)
    fallback = make_corpus(tmp_path / "f", n_clips=3, seconds=2.0, seed=3)
    assert [p.read_bytes() for p in fallback] == [p.read_bytes() for p in without]
    with pytest.raises(RuntimeError, match="espeak-ng"):
        make_corpus(tmp_path / "x", n_clips=3, seconds=2.0, speech=True)


def test_corpus_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="n_clips >= 1"):
        make_corpus(tmp_path, n_clips=0)
    with pytest.raises(ValueError, match="seconds > 0"):
        make_corpus(tmp_path, n_clips=2, seconds=0)
