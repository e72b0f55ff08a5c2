"""The training kit's corpus: discovery (folders, manifests, shards), the fixed random subset, decoding of random
crops, the map-style and streaming datasets and their collate."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
import tarfile
import tracemalloc

import numpy as np
import pytest
import torch

from atst.audio_io import AudioDecodeError, read_crop
from atst.training.corpus import expand_braces, resolve_corpus, take_subset
from atst.training import corpus_datasets
from atst.training.corpus_datasets import FileDataset, ShardDataset, SkippedFiles, collate
from conftest import CORRUPT_WAV, SAMPLE_RATE, subprocess_env, wav_bytes, write_test_wav
from pretrain.methods.frame import ViewMaker


def test_decode_crop_resamples_downmixes_and_pads(tmp_path):
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(0.5, 44100, channels=2))
    wave, valid = read_crop(str(path), 2.0)
    assert wave.shape == (32000,) and wave.dtype == torch.float32
    assert abs(valid - 8000) <= 2 and float(wave[valid:].abs().max()) == 0.0
    long = tmp_path / "long.wav"
    long.write_bytes(wav_bytes(5.0, 22050))
    wave, valid = read_crop(str(long), 2.0)
    assert wave.shape == (32000,) and valid == 32000
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(AudioDecodeError, match="bad.wav"):
        read_crop(str(bad), 2.0)


def test_resolve_corpus_kinds(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/b/y.flac"):
        (tmp_path / name).write_bytes(wav_bytes(0.2, SAMPLE_RATE))
    corpus = resolve_corpus(tmp_path)
    assert corpus.kind == "files" and len(corpus.items) == 2
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\na/x.wav,1\na/b/y.flac,0\n")
    assert resolve_corpus(manifest).items == (str(tmp_path / "a/x.wav"), str(tmp_path / "a/b/y.flac"))
    tsv = tmp_path / "list.tsv"
    tsv.write_text(f"{tmp_path / 'a/x.wav'}\t3.0\n")
    assert resolve_corpus(tsv).items == (str(tmp_path / "a/x.wav"),)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        with tarfile.open(shards / f"{i:06d}.tar", "w"):
            pass
    corpus = resolve_corpus(str(shards / "{000000..000002}.tar"))
    assert corpus.kind == "shards" and len(corpus.items) == 3
    with pytest.raises(FileNotFoundError, match="do not exist"):
        resolve_corpus(str(shards / "{000000..000009}.tar"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_corpus(tmp_path / "nope")
    assert expand_braces("s/{08..10}.tar") == ["s/08.tar", "s/09.tar", "s/10.tar"]


def test_subset_is_fixed_and_sized():
    items = tuple(f"f{i}" for i in range(100))
    assert take_subset(items, 10) == take_subset(items, 10) and len(take_subset(items, 10)) == 10
    assert take_subset(items, 0) == items


def test_shard_stream_splits_consumers_and_skips_corrupt_members(tmp_path):
    shard = tmp_path / "000000.tar"
    with tarfile.open(shard, "w") as archive:
        for i in range(6):
            payload = wav_bytes(0.3, 8000) if i != 2 else b"garbage"
            info = tarfile.TarInfo(f"clip{i}.wav")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    views = ViewMaker(anchor_len=1.0, mask_len=2)
    seen = []
    for rank in range(2):
        stream = iter(ShardDataset((str(shard),), views, rank=rank, world_size=2, shuffle_buffer=1))
        samples = [next(stream) for _ in range(4)]
        seen.append(samples)
        batch = collate(samples)
        assert batch["mel_t"].shape == (4, 64, 101) and batch["mask"].shape == (4, 25)
        assert bool((batch["valid_tokens"] <= 25).all())
    skipped = [name for samples in seen for s in samples for name, _ in s["skipped"]]
    assert skipped and all(name.endswith("clip2.wav") for name in skipped)


def test_subset_is_a_random_spread_not_a_prefix():
    # fails when the random subset is replaced by the first k items
    items = tuple(f"clip{i:04d}.wav" for i in range(1000))
    chosen = take_subset(items, 100)
    assert chosen != items[:100] and len(set(chosen)) == 100 and set(chosen) <= set(items)
    positions = [items.index(item) for item in chosen]
    assert positions == sorted(positions)  # kept in corpus order
    assert all(any(q * 250 <= p < (q + 1) * 250 for p in positions) for q in range(4))  # from every quarter
    assert 300 < np.mean(positions) < 700


def test_subset_is_the_same_for_every_rank_whatever_their_random_state():
    import random

    items = tuple(f"clip{i:04d}.wav" for i in range(500))
    random.seed(99)
    torch.manual_seed(99)
    first = take_subset(items, 37)
    random.random()
    assert take_subset(items, 37) == first
    # another process (as another rank is) draws the same subset
    code = ("from atst.training.corpus import take_subset; import random; random.seed(7); "
            "print(','.join(take_subset(tuple(f'clip{i:04d}.wav' for i in range(500)), 37)))")
    env = subprocess_env(PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert tuple(out.stdout.strip().split(",")) == first


def test_file_dataset_skips_undecodable_files_and_reports_them(tmp_path):
    good = tmp_path / "good.wav"
    good.write_bytes(wav_bytes(0.5, SAMPLE_RATE))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    dataset = FileDataset((str(bad), str(good)), ViewMaker(anchor_len=1.0, mask_len=2))
    sample = dataset[0]  # bad -> replaced by a random other file until one decodes
    assert str(bad) in [name for name, _ in sample["skipped"]] and sample["mel_t"].shape == (64, 101)
    assert dataset[1]["skipped"] == []
    with pytest.raises(RuntimeError, match="could not be decoded"):
        FileDataset((str(bad),), ViewMaker(anchor_len=1.0, mask_len=2))[0]


def test_collate_stacks_tensors_numbers_and_concatenates_skipped():
    samples = [{"x": torch.full((2, 3), float(i)), "n": i, "skipped": [f"f{i}"] * i} for i in range(3)]
    batch = collate(samples)
    assert batch["x"].shape == (3, 2, 3) and batch["n"].tolist() == [0, 1, 2] and batch["n"].dtype == torch.long
    assert batch["skipped"] == ["f1", "f2", "f2"]


# ------------------------------------------------------------------------------------- skipped files, tar bounds
def test_a_skipped_file_is_warned_about_once_per_run_however_often_it_is_met(tmp_path, caplog):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    good.write_bytes(wav_bytes(0.5, SAMPLE_RATE))
    bad.write_bytes(CORRUPT_WAV)
    dataset = FileDataset((str(bad), str(good)), ViewMaker(anchor_len=1.0, mask_len=2))
    report = SkippedFiles()
    with caplog.at_level(logging.WARNING, logger="atst.training.corpus"):
        for _epoch in range(3):  # the loader meets the bad file every epoch
            for index in range(len(dataset)):
                report.note(collate([dataset[index]])["skipped"])
    warnings = [r.getMessage() for r in caplog.records if "bad.wav" in r.getMessage()]
    assert len(warnings) == 1 and "skipping undecodable file (reported once)" in warnings[0]
    assert "Malformed" in warnings[0] or "cannot decode" in warnings[0]  # the reason travels with the name
    assert report.names == {str(bad)} and len(report) == 1


def _shard(path, members: dict) -> None:
    with tarfile.open(path, "w") as archive:
        for name, source in members.items():
            if isinstance(source, bytes):
                info = tarfile.TarInfo(name)
                info.size = len(source)
                archive.addfile(info, io.BytesIO(source))
            else:
                archive.add(source, arcname=name)


def test_a_tar_member_over_the_size_limit_is_skipped_unread_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_datasets, "MAX_TAR_MEMBER_BYTES", 100_000)
    shard = tmp_path / "000000.tar"
    _shard(shard, {"a.wav": wav_bytes(0.5, 8000), "huge.wav": wav_bytes(4.0, SAMPLE_RATE),
                   "b.wav": wav_bytes(0.5, 8000, seed=1)})
    stream = iter(ShardDataset((str(shard),), ViewMaker(anchor_len=1.0, mask_len=2), shuffle_buffer=1))
    samples = [next(stream) for _ in range(4)]
    skipped = [entry for s in samples for entry in s["skipped"]]
    assert skipped and {name for name, _ in skipped} == {f"{shard}:huge.wav"}
    assert "tar member of 128044 bytes is larger than the limit of 100000 bytes" in skipped[0][1]


def test_tar_members_are_decoded_from_the_stream_without_reading_one_whole(tmp_path, monkeypatch):
    # a 20 MB member; the decoder may hold 1 MiB of it (the spool spills to disk beyond): a generous bound of a
    # quarter of the member on what Python allocates while samples are drawn
    monkeypatch.setattr(corpus_datasets, "SPOOL_BYTES", 1 << 20)
    long = write_test_wav(tmp_path / "long.wav", 640.0, SAMPLE_RATE)
    shard = tmp_path / "000000.tar"
    _shard(shard, {"short.wav": wav_bytes(0.5, SAMPLE_RATE), "long.wav": long})
    member_bytes = long.stat().st_size
    stream = iter(ShardDataset((str(shard),), ViewMaker(anchor_len=1.0, mask_len=2), shuffle_buffer=1))
    tracemalloc.start()
    try:
        samples = [next(stream) for _ in range(3)]  # both members, then the first again
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert member_bytes > 20_000_000 and peak < member_bytes / 4, (peak, member_bytes)
    assert all(s["mel_t"].shape == (64, 101) and not s["skipped"] for s in samples)


def test_shards_without_audio_members_fail_instead_of_spinning(tmp_path):
    shard = tmp_path / "000000.tar"
    _shard(shard, {"notes.txt": b"not audio"})
    with pytest.raises(RuntimeError, match=r"hold no audio member .*\.wav"):
        next(iter(ShardDataset((str(shard),), ViewMaker(anchor_len=1.0, mask_len=2), shuffle_buffer=1)))
