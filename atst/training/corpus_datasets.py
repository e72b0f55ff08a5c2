"""Datasets over a corpus (`atst.training.corpus`): random crops decoded by `atst.audio_io.read_crop`, turned into
training samples by a method's sample maker.

A sample maker is a callable `(wave [crop samples] float32 16 kHz, valid samples) -> dict` with a `crop_seconds`
attribute. Files that cannot be decoded are skipped: the sample is replaced by another one and (name, reason)
travels with it (`sample["skipped"]`); the training process counts them and warns once per file
(`SkippedFiles`), however often the loader meets them again.

Tar shards are streamed: a member is decoded where the stream stands (copied to a spooled temporary file, in memory
up to `SPOOL_BYTES`, on disk beyond, because the decoder must seek), so one member at most is held at a time; the
shuffle buffer holds decoded crops. Members larger than `MAX_TAR_MEMBER_BYTES` are skipped unread.
"""
from __future__ import annotations

import logging
import math
import random
import shutil
import tarfile
import tempfile
from typing import Iterable, Iterator, Optional, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from atst.audio_io import AUDIO_SUFFIXES, AudioDecodeError, is_audio_path, read_crop

log = logging.getLogger("atst.training.corpus")

MAX_RETRIES = 20
MAX_TAR_MEMBER_BYTES = 1 << 30  # 1 GiB: about 9 hours of 16 kHz 16-bit mono; a longer recording belongs in a folder
SPOOL_BYTES = 32 << 20  # the part of one tar member kept in memory while it is decoded (the rest goes to disk)

Skip = tuple[str, str]  # (file or `shard:member` name, why it was skipped)


class SampleMaker(Protocol):
    """Turns one decoded crop into a training sample (a dict of tensors and numbers)."""

    crop_seconds: float

    def __call__(self, wave: Tensor, valid_samples: int) -> dict: ...


def collate(samples: list[dict]) -> dict:
    """Stack every tensor field (`[B, ...]`), make numbers a `[B]` tensor, concatenate the `skipped` lists."""
    out: dict = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key == "skipped":
            out[key] = [path for paths in values for path in paths]
        elif isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.tensor(values)
    return out


class SkippedFiles:
    """The files a training process has skipped: `note` the `skipped` list of every batch; each file is warned about
    once, the first time, however often the loader meets it again (every epoch, in any worker). `reasons` keeps
    the first reason given for each name."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    @property
    def names(self) -> set[str]:
        return set(self.reasons)

    def __len__(self) -> int:
        return len(self.reasons)

    def note(self, skips: Iterable[Skip]) -> None:
        for name, reason in skips:
            if name not in self.reasons:
                self.reasons[name] = reason
                log.warning("skipping undecodable file (reported once): %s", reason)


class FileDataset(Dataset):
    """Map-style dataset over audio paths (Lightning adds the DistributedSampler)."""

    def __init__(self, files: tuple[str, ...], make_sample: SampleMaker) -> None:
        if not files:
            raise ValueError("the corpus is empty")
        self.files = files
        self.make_sample = make_sample

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        skipped: list[Skip] = []
        for _ in range(MAX_RETRIES):
            path = self.files[index]
            try:
                wave, valid = read_crop(path, self.make_sample.crop_seconds)
            except AudioDecodeError as error:
                skipped.append((path, str(error)))
                index = random.randrange(len(self.files))
                continue
            return {**self.make_sample(wave, valid), "skipped": skipped}
        raise RuntimeError(f"{MAX_RETRIES} files in a row could not be decoded (last: {skipped[-1][1]}); "
                           f"check --data_path")


def read_tar_crop(archive: tarfile.TarFile, member: tarfile.TarInfo, seconds: float, name: str
                  ) -> tuple[Tensor, int]:
    """`read_crop` of the member of a streamed tar archive the stream stands at: (float32 `[crop samples]`, valid
    samples). The member is copied in small chunks to a spooled temporary file (memory up to `SPOOL_BYTES`, disk
    beyond), decoded, and dropped. AudioDecodeError for members over `MAX_TAR_MEMBER_BYTES` (not read) or
    undecodable ones."""
    if member.size > MAX_TAR_MEMBER_BYTES:
        raise AudioDecodeError(f"{name}: tar member of {member.size} bytes is larger than the limit of "
                               f"{MAX_TAR_MEMBER_BYTES} bytes per clip; cut it into shorter clips or use a folder "
                               f"corpus")
    handle = archive.extractfile(member)
    if handle is None:
        raise AudioDecodeError(f"{name}: tar member has no data")
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        shutil.copyfileobj(handle, spool)
        spool.seek(0)
        return read_crop(spool, seconds, name=name)


class ShardDataset(IterableDataset):
    """Endless stream over WebDataset tar shards, split across ranks and data-loader workers.

    With at least as many shards as consumers (ranks x workers) each consumer reads its own shards; otherwise
    every consumer reads all shards and keeps every n-th clip (the others are passed over unread). Each pass
    reshuffles the shard order (seeded) and decoded crops go through a small shuffle buffer. `subset` caps the clips
    of one pass (over all consumers).
    """

    def __init__(self, shards: tuple[str, ...], make_sample: SampleMaker, rank: int = 0, world_size: int = 1,
                 seed: int = 0, subset: Optional[int] = None, shuffle_buffer: int = 64) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards, self.make_sample = shards, make_sample
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.subset, self.shuffle_buffer = subset, shuffle_buffer

    def _consumer(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _crops(self, consumer: int, consumers: int) -> Iterator[tuple[str, Optional[tuple[Tensor, int]], str]]:
        """(name, (crop, valid samples) or None, why it was skipped) of this consumer's clips, pass after pass."""
        epoch = 0
        seconds = self.make_sample.crop_seconds
        while True:
            order = list(self.shards)
            random.Random(self.seed * 100003 + epoch).shuffle(order)  # same order on every consumer
            per_shard = len(order) >= consumers
            mine = order[consumer::consumers] if per_shard else order
            limit = math.ceil(self.subset / consumers) if self.subset else None
            produced, counter, passed = 0, 0, 0
            for shard in mine:
                try:
                    with tarfile.open(shard, mode="r|*") as archive:
                        for member in archive:
                            if not (member.isfile() and is_audio_path(member.name)):
                                continue
                            counter += 1
                            if not per_shard and (counter - 1) % consumers != consumer:
                                continue
                            name = f"{shard}:{member.name}"
                            passed += 1
                            try:
                                yield name, read_tar_crop(archive, member, seconds, name), ""
                            except AudioDecodeError as error:
                                yield name, None, str(error)
                            produced += 1
                            if limit and produced >= limit:
                                break
                except (tarfile.TarError, OSError) as error:
                    passed += 1
                    yield shard, None, f"{shard}: unreadable shard ({type(error).__name__}: {error})"
                if limit and produced >= limit:
                    break
            if not passed:  # another pass would find nothing either: fail instead of spinning
                raise RuntimeError(f"the shards {', '.join(mine)} hold no audio member for data-loader consumer "
                                   f"{consumer} of {consumers} (audio members end in {', '.join(AUDIO_SUFFIXES)})")
            epoch += 1

    def __iter__(self) -> Iterator[dict]:
        consumer, consumers = self._consumer()
        rng = random.Random(self.seed * 7919 + consumer)
        buffer: list[tuple[Tensor, int]] = []
        skipped: list[Skip] = []
        failures = 0
        for name, crop, reason in self._crops(consumer, consumers):
            if crop is None:
                skipped.append((name, reason))
                failures += 1
                if failures >= MAX_RETRIES:
                    raise RuntimeError(f"{MAX_RETRIES} clips in a row could not be decoded (last: {reason})")
                continue
            failures = 0
            buffer.append(crop)
            if len(buffer) < self.shuffle_buffer:
                continue
            wave, valid = buffer.pop(rng.randrange(len(buffer)))
            yield {**self.make_sample(wave, valid), "skipped": skipped}
            skipped = []
