"""Datasets over a corpus (`atst.training.corpus`): random crops decoded by `atst.audio_io.read_crop`, turned into
training samples by a method's sample maker.

A sample maker is a callable `(wave [crop samples] float32 16 kHz, valid samples) -> dict` with a `crop_seconds`
attribute. Files that cannot be decoded are skipped: the sample is replaced by another one and the path travels
with it (`sample["skipped"]`), so the training module counts and reports it.
"""
from __future__ import annotations

import io
import logging
import math
import random
import tarfile
from typing import Iterator, Optional, Protocol

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from atst.audio_io import AudioDecodeError, is_audio_path, read_crop

log = logging.getLogger("atst.training.corpus")

MAX_RETRIES = 20


class SampleMaker(Protocol):
    """Turns one decoded crop into a training sample (a dict of tensors and numbers)."""

    crop_seconds: float

    def __call__(self, wave: Tensor, valid_samples: int) -> dict: ...


def collate(samples: list[dict]) -> dict:
    """Stack every tensor field (`[B, ...]`), make numbers a `[B]` tensor, concatenate the skipped paths."""
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
        skipped: list[str] = []
        for _ in range(MAX_RETRIES):
            path = self.files[index]
            try:
                wave, valid = read_crop(path, self.make_sample.crop_seconds)
            except AudioDecodeError as error:
                log.warning("skipping undecodable file: %s", error)
                skipped.append(path)
                index = random.randrange(len(self.files))
                continue
            return {**self.make_sample(wave, valid), "skipped": skipped}
        raise RuntimeError(f"{MAX_RETRIES} files in a row could not be decoded (last: {skipped[-1]}); "
                           f"check --data_path")


def iter_tar_audio(path: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every audio member of a tar shard, streamed in archive order."""
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if member.isfile() and is_audio_path(member.name):
                handle = archive.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


class ShardDataset(IterableDataset):
    """Endless stream over WebDataset tar shards, split across ranks and data-loader workers.

    With at least as many shards as consumers (ranks x workers) each consumer reads its own shards; otherwise
    every consumer reads all shards and keeps every n-th clip. Each pass reshuffles the shard order (seeded) and
    clips go through a small shuffle buffer. `subset` caps the clips of one pass (over all consumers).
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

    def _raw_stream(self, consumer: int, consumers: int) -> Iterator[tuple[str, bytes]]:
        epoch = 0
        while True:
            order = list(self.shards)
            random.Random(self.seed * 100003 + epoch).shuffle(order)  # same order on every consumer
            per_shard = len(order) >= consumers
            mine = order[consumer::consumers] if per_shard else order
            limit = math.ceil(self.subset / consumers) if self.subset else None
            produced, counter = 0, 0
            for shard in mine:
                try:
                    for name, payload in iter_tar_audio(shard):
                        counter += 1
                        if not per_shard and (counter - 1) % consumers != consumer:
                            continue
                        yield f"{shard}:{name}", payload
                        produced += 1
                        if limit and produced >= limit:
                            break
                except (tarfile.TarError, OSError) as error:
                    log.warning("skipping unreadable shard %s (%s)", shard, error)
                    yield shard, b""
                if limit and produced >= limit:
                    break
            epoch += 1

    def __iter__(self) -> Iterator[dict]:
        consumer, consumers = self._consumer()
        rng = random.Random(self.seed * 7919 + consumer)
        buffer: list[tuple[str, bytes]] = []
        skipped: list[str] = []
        for item in self._raw_stream(consumer, consumers):
            buffer.append(item)
            if len(buffer) < self.shuffle_buffer:
                continue
            name, payload = buffer.pop(rng.randrange(len(buffer)))
            sample = self._make(name, payload, skipped)
            if sample is not None:
                yield sample
                skipped = []

    def _make(self, name: str, payload: bytes, skipped: list[str]) -> Optional[dict]:
        if len(skipped) >= MAX_RETRIES:
            raise RuntimeError(f"{MAX_RETRIES} clips in a row could not be decoded (last: {skipped[-1]})")
        try:
            if not payload:
                raise AudioDecodeError(f"{name}: unreadable")
            wave, valid = read_crop(io.BytesIO(payload), self.make_sample.crop_seconds, name=name)
        except AudioDecodeError as error:
            log.warning("skipping undecodable clip: %s", error)
            skipped.append(name)
            return None
        return {**self.make_sample(wave, valid), "skipped": list(skipped)}
