"""The registered datasets in their native layouts (generated in miniature by `atst.synthetic.downstream_layouts`),
the manifest source, the audio cache, packing into shards and `DownstreamDataModule`."""
from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
import soundfile
import torch

from atst.audio_io import read_audio
from atst.synthetic import make_layout
from atst.synthetic.downstream_layouts import (AUDIOSET_MISSING, FSD50K_DEV, US8K_CLASSES, audioset_ids,
                                               fsd50k_vocabulary)
from conftest import CORRUPT_WAV, write_test_wav
from downstream.cli import main as downstream_main
from downstream.datasets import (AudioCache, ClipDataset, DownstreamDataModule, collate_clips, get_dataset,
                                 list_all_datasets, load_packed, load_task, pack_task)
from downstream.datasets.splitting import split_of


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return {name: make_layout(name, root / name, seed=3)
            for name in ("spcv2", "us8k", "nsynth", "voxceleb1", "fsd50k", "audioset")}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "audio_cache"
    monkeypatch.setenv("ATST_AUDIO_CACHE", str(folder))
    return folder


def counts(task):
    return {name: len(clips) for name, clips in task.splits.items()}


def test_the_registry_lists_every_native_layout_with_its_classes_and_folds():
    infos = {info.name: (info.num_labels, info.multi_label, info.num_folds) for info in list_all_datasets()}
    assert infos == {"spcv2": (35, False, 1), "us8k": (10, False, 10), "nsynth": (11, False, 1),
                     "voxceleb1": (1251, False, 1), "fsd50k": (200, True, 1), "audioset": (527, True, 1),
                     "audioset_b": (527, True, 1), "desed": (10, True, 1), "as_strong": (407, True, 1)}


def test_spcv2_keys_by_word_folder_and_splits_by_the_lists(layouts):
    task = load_task(f"spcv2={layouts['spcv2']}")
    assert counts(task) == {"train": 6, "valid": 3, "test": 3} and not task.skipped
    assert task.labels.names[:3] == ("right", "eight", "cat") and task.labels.num_labels == 35
    valid = {clip.key: clip.target for clip in task.splits["valid"]}
    # one file name in three word folders: three clips, three keys, three labels
    assert valid == {"no/2c4a6e8b_nohash_0.wav": (10,), "up/2c4a6e8b_nohash_0.wav": (22,),
                     "yes/2c4a6e8b_nohash_0.wav": (29,)}
    every = [clip.key for clips in task.splits.values() for clip in clips]
    assert not any("_background_noise_" in key for key in every)
    assert task.fold(0, "official").valid == task.fold(0, "hear").valid


def test_us8k_folds_classes_and_a_44k_stereo_file(layouts, cache_dir):
    task = load_task(f"us8k={layouts['us8k']}")
    assert task.num_folds == 10 and counts(task) == {f"fold{k:02d}": 2 for k in range(10)}
    assert task.labels.names == US8K_CLASSES
    assert Counter(clip.target[0] for clips in task.splits.values() for clip in clips) == {k: 2 for k in range(10)}
    first = task.splits["fold00"][0]
    assert first.key == "audio/fold1/100010-0-0-0.wav" and soundfile.info(first.path).samplerate == 44100
    item = ClipDataset([first], task.labels, cache=AudioCache.default())[0]
    assert item["error"] is None and item["audio"].shape == (8000,) and item["target"].item() == 0
    fold3 = task.fold(3)
    assert {c.key.split("/")[1] for c in fold3.test} == {"fold4"} and {c.key.split("/")[1] for c in fold3.valid} \
        == {"fold5"} and len(fold3.train) == 16
    assert task.fold(3, "official").valid == fold3.test


def test_nsynth_families_in_index_order(layouts):
    task = load_task(f"nsynth={layouts['nsynth']}")
    assert counts(task) == {"train": 11, "valid": 3, "test": 3}
    assert task.labels.names[0] == "bass" and task.labels.names[9] == "synth_lead"
    assert sorted(clip.target[0] for clip in task.splits["train"]) == list(range(11))
    assert all(clip.key.startswith("nsynth-test/audio/") for clip in task.splits["test"])


def test_voxceleb1_speakers_and_the_identification_split(layouts):
    task = load_task(f"voxceleb1={layouts['voxceleb1']}")
    assert counts(task) == {"train": 20, "valid": 8, "test": 4} and task.labels.num_labels == 1251
    assert {clip.target[0] for clip in task.splits["test"]} == {0, 1, 2, 3}  # id10001..id10004
    assert task.splits["test"][0].path.endswith(f"test/wav/{task.splits['test'][0].key}")


def test_fsd50k_multi_label_from_the_vocabulary_order(layouts):
    task = load_task(f"fsd50k={layouts['fsd50k']}")
    assert counts(task) == {"train": 8, "valid": 3, "test": 4} and task.metric == "mAP"
    assert task.labels.names == tuple(fsd50k_vocabulary()) and task.labels.multi_label
    three = next(clip for clip in task.splits["train"] if clip.key == "FSD50K.dev_audio/1000.wav")
    names = fsd50k_vocabulary()
    assert three.target == tuple(sorted(names.index(n) for n in FSD50K_DEV[0][1])) and len(three.target) == 3
    assert ClipDataset([three], task.labels)[0]["target"].sum().item() == 3.0


def test_audioset_splits_naming_schemes_and_a_missing_clip(layouts):
    root = layouts["audioset"]
    ids = audioset_ids()
    held_out = {y for y in ids["balanced_train"] if split_of(y, (("valid", 0.1),)) == "valid"}
    assert held_out  # the miniature's fixed ids leave at least one clip for valid
    full = load_task(f"audioset={root}")
    balanced = load_task(f"audioset_b={root}")
    assert counts(full) == {"train": 20 + 6 - len(held_out), "valid": len(held_out), "test": 4}
    assert counts(balanced) == {"train": 20 - len(held_out), "valid": len(held_out), "test": 4}
    assert full.splits["valid"] == balanced.splits["valid"]
    assert full.skipped == balanced.skipped and len(full.skipped) == 1 and AUDIOSET_MISSING in full.skipped[0]
    keys = {clip.key for clips in full.splits.values() for clip in clips}
    assert "audio/unbalanced_train/Yu00_-Qzx000.flac" in keys and "audio/eval/YYev00000000_30.000_40.000.wav" in keys
    assert full.labels.names[1] == "Speech, male" and full.labels.num_labels == 527
    first_eval = next(c for c in full.splits["test"] if "Yev00000000" in c.key)
    assert first_eval.target == (0, 1, 2)
    hear, official = balanced.fold(0, "hear"), balanced.fold(0, "official")
    assert hear.valid == balanced.splits["valid"] and hear.test == balanced.splits["test"]
    assert official.valid == official.test and len(official.train) == 20 and "optimistic" in official.note


def test_manifests_single_multi_label_and_folds(tmp_path):
    for i in range(6):
        write_test_wav(tmp_path / "clips" / f"c{i}.wav", 0.2, seed=i)
    (tmp_path / "single.csv").write_text("path,label,split\n" + "".join(
        f"clips/c{i}.wav,{'dog' if i % 2 else 'cat'},{('train', 'valid', 'test')[i % 3]}\n" for i in range(6)))
    single = load_task(str(tmp_path / "single.csv"))
    assert single.labels.names == ("cat", "dog") and not single.labels.multi_label
    assert counts(single) == {"train": 2, "valid": 2, "test": 2} and single.splits["train"][0].key == "clips/c0.wav"
    (tmp_path / "multi.tsv").write_text("path\tlabel\tfold\n" + "".join(
        f"{tmp_path}/clips/c{i}.wav\tdog;bird\t{i % 3 + 1}\n" if i == 0 else f"clips/c{i}.wav\tcat\t{i % 3 + 1}\n"
        for i in range(6)) + "clips/gone.wav\tcat\t1\n")
    multi = load_task(str(tmp_path / "multi.tsv"))
    assert multi.labels.multi_label and multi.num_folds == 3 and multi.metric == "mAP"
    assert multi.splits["fold00"][0].target == (0, 2) and len(multi.skipped) == 1 and "gone.wav" in multi.skipped[0]


def test_bad_inputs_are_named_with_what_is_accepted(tmp_path, layouts):
    with pytest.raises(FileNotFoundError, match=r"dataset us8k: .*nope does not exist; expected the UrbanSound8K"):
        load_task(f"us8k={tmp_path / 'nope'}")
    with pytest.raises(KeyError, match=r"'esc50' is not registered; registered: as_strong, audioset, audioset_b, desed, fsd50k"):
        load_task(f"esc50={tmp_path}")
    (tmp_path / "m.csv").write_text("path,lable\nx.wav,cat\n")
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['lable'\]; accepted: path, label or labels"):
        load_task(str(tmp_path / "m.csv"))
    with pytest.raises(FileNotFoundError, match=r"metadata/UrbanSound8K.csv is missing; expected the UrbanSound8K"):
        load_task(f"us8k={layouts['nsynth']}")
    spc = tmp_path / "spc"
    shutil.copytree(layouts["spcv2"], spc)
    (spc / "hello").mkdir()
    with pytest.raises(ValueError, match=r"folder\(s\) \['hello'\] that are not Speech Commands v0.02 words"):
        load_task(f"spcv2={spc}")
    us8k = tmp_path / "us8k"
    shutil.copytree(layouts["us8k"], us8k)
    table = us8k / "metadata" / "UrbanSound8K.csv"
    table.write_text(table.read_text().replace(",0,air_conditioner", ",0,dog_bark", 1))
    with pytest.raises(ValueError, match=r"UrbanSound8K.csv:2: classID 0 is 'air_conditioner'"):
        load_task(f"us8k={us8k}")


def test_the_audio_cache_decodes_each_non_native_file_once(tmp_path, cache_dir, monkeypatch):
    native = write_test_wav(tmp_path / "native.wav", 0.3)
    stereo = write_test_wav(tmp_path / "stereo.flac", 0.3, rate=44100, channels=2, seed=1)
    cache = AudioCache.default()
    assert cache.folder == cache_dir
    assert torch.equal(cache.read(native), read_audio(native)) and not cache_dir.exists()
    first = cache.read(stereo)
    entry = cache.entry(stereo)
    assert entry.is_file() and torch.equal(first, read_audio(stereo)) and first.shape == (4800,)
    assert torch.equal(cache.read(stereo), first)
    entry.write_bytes(b"not an npy")  # a damaged entry is decoded again and replaced
    assert torch.equal(cache.read(stereo), first) and entry.read_bytes() != b"not an npy"
    write_test_wav(stereo, 0.5, rate=44100, channels=2, seed=2)  # an edited file gets a new entry
    assert cache.entry(stereo) != entry and cache.read(stereo).shape == (8000,)
    (tmp_path / "bad.wav").write_bytes(CORRUPT_WAV)
    with pytest.raises(ValueError, match="bad.wav: cannot decode audio"):
        cache.read(tmp_path / "bad.wav")
    monkeypatch.setenv("ATST_AUDIO_CACHE", "off")
    assert AudioCache.default() is None


def test_pack_round_trip_resume_and_streaming(tmp_path, layouts):
    us8k = tmp_path / "us8k"
    shutil.copytree(layouts["us8k"], us8k)
    (us8k / "audio" / "fold3" / "100030-4-0-0.wav").write_bytes(CORRUPT_WAV)
    out = tmp_path / "shards"
    assert downstream_main(["pack", f"us8k={us8k}", "--out", str(out), "--shard-size", "1", "--quiet"]) == 1
    task = load_task(f"us8k={us8k}")
    packed = load_packed(out)
    assert packed.labels == task.labels and packed.num_folds == 10 and len(packed.skipped) == 1
    assert "100030-4-0-0.wav: cannot decode audio" in packed.skipped[0]
    train, valid, test = packed.datasets(fold=0)
    items = list(test)
    assert [i["key"] for i in items] == [c.key for c in task.fold(0).test]
    assert max((i["audio"] - read_audio(c.path)).abs().max().item() for i, c in zip(items, task.fold(0).test)) < 1e-6
    assert [i["target"].item() for i in items] == [c.target[0] for c in task.fold(0).test]
    assert len(train) == 15 and sorted(i["key"] for i in train) == sorted(
        c.key for c in task.fold(0).train if "100030" not in c.key)
    shard = out / "fold05" / "fold05-000001.tar"
    shard.unlink()
    report = pack_task(task, out, shard_size=1)
    assert (report.written, report.kept, report.clips) == (1, 19, 19) and shard.is_file()
    shard.write_bytes(b"garbage")
    errors = [i["error"] for i in packed.datasets(fold=5)[2] if i["error"]]
    assert len(errors) == 1 and "unreadable shard" in errors[0]
    meta = json.loads((out / "pack.json").read_text())
    assert meta["splits"]["fold00"][0] == {"path": "fold00/fold00-000000.tar", "clips": 1}
    assert downstream_main(["pack", f"us8k={tmp_path / 'nope'}", "--out", str(out)]) == 2
    assert downstream_main(["pack", f"us8k={us8k}", "--out", str(out), "--shard-size", "0"]) == 2
    with pytest.raises(ValueError, match="is a packed task"):
        load_task(str(out))


def test_the_data_module_serves_a_fold_of_a_native_layout_or_of_shards(tmp_path, layouts, cache_dir):
    dm = DownstreamDataModule(layouts["us8k"], "us8k", fold=9, batch_size_per_gpu=4, num_workers=0,
                              max_epochs=3)  # audiossl passes its whole namespace
    assert (dm.num_labels, dm.multi_label, dm.ignored_kwargs) == (10, False, ["max_epochs"])
    assert len(dm.dataset_train) == 16 and dm.fold_note == "validated on fold00"
    batches = list(dm.val_dataloader())
    assert batches[0]["audio"].shape == (2, 8000) and batches[0]["keys"][0] == "audio/fold1/100010-0-0-0.wav"
    assert any(cache_dir.rglob("*.npy"))  # the 44.1 kHz stereo clip went through the cache
    pack_task(load_task(f"fsd50k={layouts['fsd50k']}"), tmp_path / "fsd", shard_size=2)
    streamed = DownstreamDataModule(tmp_path / "fsd", batch_size_per_gpu=3, num_workers=0)
    assert streamed.multi_label and streamed.num_labels == 200
    batch = next(iter(streamed.train_dataloader()))
    assert batch["targets"].shape == (3, 200) and batch["audio"].shape[0] == 3
    info = get_dataset("nsynth")
    dataset = info.creator(layouts["nsynth"], split="valid", transform=lambda a: a[:100], cache=None)
    assert len(dataset) == 3 and dataset[0]["audio"].shape == (100,)
    with pytest.raises(TypeError, match="pass transform= and target_transform= by keyword"):
        info.creator(layouts["nsynth"], "train", lambda a: a)  # audiossl's positional order
    with pytest.raises(TypeError, match="list of three"):
        DownstreamDataModule(layouts["nsynth"], "nsynth", transforms=lambda a: a)


def test_the_synthetic_command_writes_a_layout_the_registry_reads(tmp_path, capsys):
    from atst.synthetic.cli import main as synthetic_main

    assert synthetic_main(["layout", "nsynth", str(tmp_path / "nsynth"), "--seed", "1"]) == 0
    assert "wrote a miniature nsynth" in capsys.readouterr().out
    assert counts(load_task(f"nsynth={tmp_path / 'nsynth'}")) == {"train": 11, "valid": 3, "test": 3}
