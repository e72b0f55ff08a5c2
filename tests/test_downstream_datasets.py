"""The downstream door's data layer: label spaces, folds per protocol, the generic sources, the TASK argument."""
from __future__ import annotations

import pytest
import torch

from atst.synthetic import make_tasks
from conftest import CORRUPT_WAV, write_test_wav
from downstream.datasets import ClipDataset, Clip, LabelSpace, Task, collate_clips, get_dataset, load_task


@pytest.fixture(scope="module")
def hear_tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("hear")
    return {p.name.split("-")[0]: p for p in make_tasks(root, size="tiny", seed=5,
                                                        tasks=["synth_scene", "synth_timbre", "synth_events"])}


def test_label_space_encodes_names_and_refuses_unknown_ones():
    single = LabelSpace(("cat", "dog"), multi_label=False)
    assert single.encode(["dog"]) == (1,) and single.target_tensor((1,)).item() == 1
    with pytest.raises(ValueError, match=r"x\.wav: unknown label\(s\) \['cow'\]; the classes are: cat, dog"):
        single.encode(["cow"], "x.wav")
    with pytest.raises(ValueError, match="exactly one label"):
        single.encode(["cat", "dog"])
    multi = LabelSpace(("a", "b", "c"), multi_label=True)
    assert multi.encode(["c", "a", "c"]) == (0, 2)
    assert torch.equal(multi.target_tensor((0, 2)), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="duplicates"):
        LabelSpace(("a", "a"), multi_label=False)


def _kfold_task(k: int) -> Task:
    labels = LabelSpace(("x",), multi_label=False)
    splits = {f"fold{i:02d}": (Clip(f"f{i}.wav", f"/f{i}.wav", (0,)),) for i in range(k)}
    return Task("kfold", labels, splits, num_folds=k)


def test_kfold_protocols_choose_the_validation_fold_differently():
    task = _kfold_task(4)
    ours = task.fold(1, "hear")
    assert [c.key for c in ours.test] == ["f1.wav"] and [c.key for c in ours.valid] == ["f2.wav"]
    assert sorted(c.key for c in ours.train) == ["f0.wav", "f3.wav"]
    official = task.fold(1, "official")
    assert official.valid == official.test and len(official.train) == 3 and "optimistic" in official.note
    with pytest.raises(ValueError, match="at least 3"):
        _kfold_task(2).fold(0, "hear")
    with pytest.raises(ValueError, match="folds 0..3"):
        task.fold(4)


def test_hear_scene_tasks_load_with_splits_or_folds(hear_tasks):
    scene = load_task(str(hear_tasks["synth_scene"]))
    assert scene.num_folds == 1 and scene.metric == "top1_acc" and scene.labels.num_labels == 5
    assert {name: len(clips) for name, clips in scene.splits.items()} == {"train": 10, "valid": 10, "test": 10}
    timbre = load_task(str(hear_tasks["synth_timbre"]))
    assert timbre.num_folds == 3 and len(timbre.fold(2).test) == 6
    with pytest.raises(ValueError, match="event.*use `sed`"):
        load_task(str(hear_tasks["synth_events"]))


def test_class_folders_split_by_key_or_by_folder(tmp_path):
    for label in ("bird", "car"):
        for i in range(20):
            write_test_wav(tmp_path / "flat" / label / f"{i:02d}.wav", 0.1, seed=i)
            split = ("train", "valid", "test")[i % 3]
            write_test_wav(tmp_path / "presplit" / split / label / f"{i:02d}.wav", 0.1, seed=i)
    flat = load_task(str(tmp_path / "flat"))
    assert flat.labels.names == ("bird", "car") and sum(len(c) for c in flat.splits.values()) == 40
    assert load_task(str(tmp_path / "flat")).splits == flat.splits  # the split of a clip depends on its key only
    presplit = load_task(str(tmp_path / "presplit"))
    assert {k: len(v) for k, v in presplit.splits.items()} == {"train": 14, "valid": 14, "test": 12}
    assert all(c.key.startswith("valid/") for c in presplit.splits["valid"])


def test_clip_dataset_passes_undecodable_files_on_as_errors(tmp_path):
    good = write_test_wav(tmp_path / "good.wav", 0.5, rate=44100, channels=2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(CORRUPT_WAV)
    labels = LabelSpace(("a", "b"), multi_label=False)
    dataset = ClipDataset([Clip("good.wav", str(good), (1,)), Clip("bad.wav", str(bad), (0,))], labels)
    batch = collate_clips([dataset[0], dataset[1]])
    assert batch["audio"].shape == (1, 8000) and batch["targets"].tolist() == [1] and batch["keys"] == ["good.wav"]
    assert len(batch["errors"]) == 1 and "bad.wav: cannot decode audio" in batch["errors"][0]
    assert collate_clips([dataset[1]])["audio"] is None


def test_task_arguments_that_cannot_be_used_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist; expected NAME=PATH"):
        load_task(str(tmp_path / "nope"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is a \.json file; expected"):
        load_task(str(tmp_path / "x.json"))
    with pytest.raises(KeyError, match="'nope' is not registered"):
        get_dataset("nope")
