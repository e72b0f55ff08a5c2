"""Strong-label sources (sound event detection): DESED and AudioSet-strong in their native layouts (generated
miniatures), HEAR event tasks, strong-label TSVs; splits per protocol, the 40 ms label encoding, bad input."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from atst.synthetic.hear_tasks import make_tasks
from atst.synthetic.sed_layouts import make_as_strong, make_desed
from conftest import CORRUPT_WAV, write_test_wav
from downstream.datasets import get_dataset, list_all_datasets, load_strong_task, load_task
from downstream.datasets.audio_cache import AudioCache
from downstream.datasets.splitting import split_of
from downstream.datasets.strong import encode_events
from downstream.datasets.strong_audio import clip_duration, read_strong_clip

DESED_CLASSES = get_dataset("desed").loader.__globals__["CLASSES"]
WEAK_HELD_OUT = "Y06weak_0.000_10.000.wav"  # pandas sample(frac=0.9, random_state=42) of the 10-row weak.tsv


@pytest.fixture(scope="module")
def desed_root(tmp_path_factory) -> Path:
    return make_desed(tmp_path_factory.mktemp("desed") / "dataset")


@pytest.fixture(scope="module")
def as_root(tmp_path_factory) -> Path:
    return make_as_strong(tmp_path_factory.mktemp("as_strong") / "as")


def by_name(clips):
    return {Path(clip.path).name: clip for clip in clips}


def counts(task):
    return {name: len(clips) for name, clips in task.splits.items()}


# ------------------------------------------------------------------------------------------------ DESED

def test_desed_splits_follow_the_official_layout(desed_root):
    task = load_strong_task(f"desed={desed_root}")
    assert counts(task) == {"train_strong": 4, "train_weak": 9, "valid": 3, "train_unlabelled": 2, "test": 4}
    assert task.labels.names == DESED_CLASSES and task.skipped == []
    assert WEAK_HELD_OUT in by_name(task.split("valid"))
    assert WEAK_HELD_OUT not in by_name(task.split("train_weak"))
    assert all(clip.events is None and clip.weak is None for clip in task.split("train_unlabelled"))


def test_desed_weak_only_clip_has_no_events_and_its_clip_labels(desed_root):
    clip = by_name(load_strong_task(f"desed={desed_root}").split("valid"))[WEAK_HELD_OUT]
    assert clip.events is None and clip.is_weak_only
    assert [DESED_CLASSES[i] for i in clip.weak] == ["Frying", "Vacuum_cleaner"]
    for weak_clip in load_strong_task(f"desed={desed_root}").split("train_weak"):
        assert weak_clip.events is None and weak_clip.weak


def test_desed_labels_at_40ms_onset_floor_offset_ceil_clipped(desed_root):
    clips = by_name(load_strong_task(f"desed={desed_root}").split("train_strong"))
    index = {name: i for i, name in enumerate(DESED_CLASSES)}

    def active(clip, label):
        target = encode_events(clips[clip].events, 250, len(DESED_CLASSES))
        frames = np.flatnonzero(target[:, index[label]].numpy())
        return int(frames[0]), int(frames[-1]) + 1

    assert active("synth_0.wav", "Dog") == (3, 25)          # 0.12 s is frame 3 exactly (float-safe), 1.0 s -> 25
    assert active("synth_2.wav", "Blender") == (75, 100)    # floor(3.01 * 25) = 75, ceil(3.99 * 25) = 100
    assert active("synth_2.wav", "Frying") == (247, 250)    # 9.9-10.3 s: clipped to the 250 frames
    assert active("synth_1.wav", "Alarm_bell_ringing") == (212, 250)
    assert active("synth_0.wav", "Speech") == (50, 125)     # 2.0-4.5 and 4.0-5.0 merged
    assert [(e.onset, e.offset) for e in clips["synth_0.wav"].events if e.label == index["Speech"]] == [(2.0, 5.0)]


def test_desed_test_file_without_events_per_protocol(desed_root):
    ours = by_name(load_strong_task(f"desed={desed_root}").split("test"))
    assert ours["val_quiet.wav"].events == () and ours["val_quiet.wav"].duration == 10.0
    assert ours["val_short.wav"].duration == 7.5
    official = load_strong_task(f"desed={desed_root}", protocol="official")
    assert sorted(by_name(official.split("test"))) == ["val_0.wav", "val_1.wav", "val_short.wav"]
    assert "1 test file(s) without events dropped" in official.source
    # its duration stays in the PSDS false-positive-rate denominator, as in the official test
    assert official.unscored_test_durations == {ours["val_quiet.wav"].key: 10.0}
    assert load_strong_task(f"desed={desed_root}").unscored_test_durations == {}


def test_desed_44k_clip_is_read_at_16k_through_the_cache(desed_root, tmp_path):
    clip = by_name(load_strong_task(f"desed={desed_root}").split("train_strong"))["synth_2.wav"]
    assert soundfile.info(clip.path).samplerate == 44100
    cache = AudioCache(tmp_path / "cache")
    audio = read_strong_clip(clip, cache)
    assert audio.shape == (160000,) and clip_duration(clip) == pytest.approx(10.0)
    assert cache.entry(clip.path).is_file()  # resampled once, read back from now on
    assert np.array_equal(read_strong_clip(clip, cache).numpy(), audio.numpy())


def test_desed_accepts_the_16k_folder_names(desed_root, tmp_path):
    root = shutil.copytree(desed_root, tmp_path / "dataset")
    (root / "audio/validation/validation").rename(root / "audio/validation/validation_16k")
    task = load_strong_task(f"desed={root}")
    assert all("/validation_16k/" in clip.path for clip in task.split("test")) and len(task.split("test")) == 4


def test_desed_unusable_audio_is_skipped_and_named(desed_root, tmp_path):
    root = shutil.copytree(desed_root, tmp_path / "dataset")
    weak = root / "audio/train/weak"
    (weak / "Y01weak_0.000_10.000.wav").write_bytes(CORRUPT_WAV)
    (weak / "Y02weak_0.000_10.000.wav").write_bytes(b"")
    (root / "audio/validation/validation/val_1.wav").unlink()
    task = load_strong_task(f"desed={root}")
    assert counts(task)["train_weak"] == 7 and counts(task)["test"] == 3
    reasons = "\n".join(task.skipped)
    assert len(task.skipped) == 3
    assert "Y01weak_0.000_10.000.wav: unreadable audio" in reasons
    assert "Y02weak_0.000_10.000.wav: empty file" in reasons and "val_1.wav: missing (listed in validation.tsv)" \
        in reasons


def test_desed_missing_folder_and_unknown_label_are_clear_errors(desed_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"audio/train/weak is missing.*expected the DESED"):
        root = shutil.copytree(desed_root, tmp_path / "a")
        shutil.rmtree(root / "audio/train/weak")
        load_strong_task(f"desed={root}")
    root = shutil.copytree(desed_root, tmp_path / "b")
    table = root / "metadata/train/synthetic21_train/soundscapes.tsv"
    table.write_text(table.read_text() + "synth_3.wav\t1.0\t2.0\tTrumpet\n")
    with pytest.raises(ValueError, match=r"soundscapes.tsv \(synth_3.wav\): unknown label\(s\) \['Trumpet'\]; "
                                         r"the classes are: Alarm_bell_ringing"):
        load_strong_task(f"desed={root}")


def test_strong_datasets_are_listed_and_refused_by_clip_training(desed_root, capsys):
    from downstream.commands import datasets as command

    assert command.run(argparse.Namespace(json=True)) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["desed"]["labels"] == "strong" and rows["desed"]["classes"] == 10
    assert rows["as_strong"]["labels"] == "strong" and rows["as_strong"]["classes"] == 407
    assert rows["us8k"]["labels"] == "clip"
    assert {info.name for info in list_all_datasets() if info.kind == "strong"} == {"desed", "as_strong"}
    with pytest.raises(ValueError, match="train it with `atst-downstream sed`"):
        load_task(f"desed={desed_root}")
    with pytest.raises(ValueError, match="strong labels"):
        get_dataset("desed").creator(desed_root)


# ------------------------------------------------------------------------------------------------ AudioSet strong

def test_as_strong_common_classes_sorted_other_labels_dropped_events_merged(as_root):
    task = load_strong_task(f"as_strong={as_root}")
    assert task.labels.names == ("/m/07yv9", "/m/09x0r", "/m/0k")  # the TSV lists /m/0k first
    keys = {Path(clip.path).stem for clips in task.splits.values() for clip in clips}
    assert "trainonly_000" not in keys and "evalonly_000" not in keys
    clip = by_name(task.split("train_strong"))["train_000_0.wav"]
    assert [(e.onset, e.offset, task.labels.names[e.label]) for e in clip.events] == [(1.0, 6.0, "/m/0k")]
    assert "Yeval_001_0.wav" in by_name(task.split("test"))
    assert any("segment train_023_0" in reason and "no audio file" in reason for reason in task.skipped)


def test_as_strong_validates_on_held_out_train_and_on_eval_only_when_official(as_root):
    task = load_strong_task(f"as_strong={as_root}")
    held_out = sorted(f"train_{i:03d}_0" for i in range(23) if split_of(f"train_{i:03d}_0", (("valid", 0.1),))
                      == "valid")
    assert sorted(Path(c.path).stem for c in task.split("valid")) == held_out and held_out
    assert counts(task) == {"train_strong": 23 - len(held_out), "valid": len(held_out), "test": 6}
    assert task.official_selects_on_test
    official = load_strong_task(f"as_strong={as_root}", protocol="official")
    assert [c.key for c in official.split("valid")] == [c.key for c in official.split("test")]
    assert len(official.split("train_strong")) == 23 and official.official_selects_on_test


# ------------------------------------------------------------------------------------------------ HEAR, TSV

def test_hear_event_task_reads_ms_events(tmp_path):
    task_dir = make_tasks(tmp_path, size="tiny", tasks=["synth_events"])[0]
    task = load_strong_task(str(task_dir))
    assert counts(task) == {"train_strong": 6, "valid": 6, "test": 6}
    listing = json.loads((task_dir / "test.json").read_text())
    name, events = sorted(listing.items())[0]
    clip = by_name(task.split("test"))[name]
    assert clip.duration == 3.0
    expected = sorted((e["start"] / 1000, e["end"] / 1000, e["label"]) for e in events)
    got = sorted((e.onset, e.offset, task.labels.names[e.label]) for e in clip.events)
    # same-class overlaps would be merged; the generated clip's events are compared class by class
    for label in {e[2] for e in expected}:
        spans = [e[:2] for e in expected if e[2] == label]
        merged = [e[:2] for e in got if e[2] == label]
        assert merged[0][0] == pytest.approx(min(s[0] for s in spans))
        assert merged[-1][1] == pytest.approx(max(s[1] for s in spans))


def write_strong_folder(folder: Path) -> Path:
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "w1.wav", "w2.wav", "quiet.wav"):
        write_test_wav(folder / "audio" / name, 1.0, rate=22050)
    (folder / "train.tsv").write_text("filename\tonset\toffset\tevent_label\naudio/a.wav\t0.1\t0.5\tknock\n"
                                      "audio/a.wav\t0.3\t0.9\tknock\naudio/b.wav\t0.0\t0.4\tbeep\n")
    (folder / "train_weak.tsv").write_text("filename\tevent_labels\naudio/w1.wav\tknock,beep\naudio/w2.wav\tbeep\n")
    (folder / "valid.tsv").write_text("filename\tonset\toffset\tevent_label\naudio/c.wav\t0.2\t0.6\tbeep\n")
    (folder / "test.tsv").write_text("filename\tonset\toffset\tevent_label\naudio/d.wav\t0.2\t0.6\tknock\n"
                                     "audio/quiet.wav\t\t\t\n")
    return folder


def test_strong_tsv_folder(tmp_path):
    task = load_strong_task(str(write_strong_folder(tmp_path / "mine")))
    assert task.labels.names == ("beep", "knock")
    assert counts(task) == {"train_strong": 2, "valid": 1, "test": 2, "train_weak": 2}
    a = by_name(task.split("train_strong"))["a.wav"]
    assert [(e.onset, e.offset, e.label) for e in a.events] == [(0.1, 0.9, 1)]
    assert by_name(task.split("train_weak"))["w1.wav"].weak == (0, 1)
    assert by_name(task.split("test"))["quiet.wav"].events == ()


def test_strong_tsv_file_with_and_without_split_column(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        write_test_wav(tmp_path / name, 1.0)
    table = tmp_path / "events.tsv"
    table.write_text("filename\tonset\toffset\tevent_label\tsplit\na.wav\t0.1\t0.5\tdog\ttrain\n"
                     "b.wav\t0.1\t0.5\tcat\tvalid\nc.wav\t0.2\t0.3\tdog\ttest\n")
    task = load_strong_task(str(table))
    assert {name: [Path(c.path).name for c in clips] for name, clips in task.splits.items()} == {
        "train_strong": ["a.wav"], "valid": ["b.wav"], "test": ["c.wav"]}
    names = [f"clip{i:02d}.wav" for i in range(40)]
    for name in names:
        write_test_wav(tmp_path / "many" / name, 0.2)
    (tmp_path / "many" / "events.tsv").write_text("filename\tonset\toffset\tevent_label\n" + "".join(
        f"{name}\t0.0\t0.1\tdog\n" for name in names))
    task = load_strong_task(str(tmp_path / "many" / "events.tsv"))
    expected = {"train": "train_strong", "valid": "valid", "test": "test"}
    for split, clips in task.splits.items():
        assert all(expected[split_of(Path(c.path).name, (("valid", 0.1), ("test", 0.1)))] == split for c in clips)


@pytest.mark.parametrize("case, error, message", [
    ("missing_column", ValueError, r"train.tsv: missing column\(s\) \['offset'\]; it has"),
    ("onset_after_offset", ValueError, r"train.tsv:2: onset 0.5 must be before offset 0.1"),
    ("unknown_weak_label", ValueError, r"train_weak.tsv:3: unknown label\(s\) \['meow'\]; the classes are: beep, "
                                       r"knock"),
    ("bad_split", ValueError, r"events.tsv:2: split must be one of \['test', 'train', 'valid'\], got 'dev'"),
    ("missing_path", FileNotFoundError, r"does not exist; expected NAME=PATH for a registered strong-label"),
    ("plain_folder", ValueError, r"without task_metadata.json, train.tsv or train_weak.tsv"),
])
def test_strong_tsv_bad_input_names_file_and_accepted_forms(tmp_path, case, error, message):
    folder = write_strong_folder(tmp_path / "mine")
    spec = str(folder)
    if case == "missing_column":
        (folder / "train.tsv").write_text("filename\tonset\tevent_label\naudio/a.wav\t0.1\tknock\n")
    elif case == "onset_after_offset":
        (folder / "train.tsv").write_text("filename\tonset\toffset\tevent_label\naudio/a.wav\t0.5\t0.1\tknock\n")
    elif case == "unknown_weak_label":
        (folder / "train_weak.tsv").write_text("filename\tevent_labels\naudio/w1.wav\tknock\naudio/w2.wav\tmeow\n")
    elif case == "bad_split":
        spec = str(folder / "events.tsv")
        (folder / "events.tsv").write_text("filename\tonset\toffset\tevent_label\tsplit\naudio/a.wav\t0\t1\tx\tdev\n")
    elif case == "missing_path":
        spec = str(tmp_path / "nowhere")
    elif case == "plain_folder":
        spec = str(folder / "audio")
    with pytest.raises(error, match=message):
        load_strong_task(spec)
