"""LightningDataModule: the corpus of `--data_path` as a data loader of a method's training samples."""
from __future__ import annotations

from functools import partial
from typing import Any

from torch.utils.data import DataLoader

from atst.training.corpus import Corpus, take_subset
from atst.training.corpus_datasets import FileDataset, ShardDataset, collate
from atst.training.interrupt import loader_worker_init
from atst.training.lightning import pl

from .methods import PretrainMethod


def check_corpus_size(corpus: Corpus, hp: dict[str, Any], world: int) -> None:
    """ValueError when a files corpus (after `--subset`) cannot fill one batch per device (shards stream endlessly)."""
    if corpus.kind != "files":
        return
    files = len(take_subset(corpus.items, hp["subset"]))
    if files // world < hp["batch_size_per_gpu"]:
        raise ValueError(f"{files} files give fewer than --batch_size_per_gpu ({hp['batch_size_per_gpu']}) per "
                         f"device on {world} device(s); add files or lower the batch size")


class PretrainData(pl.LightningDataModule):
    """Batches of `method`'s samples (collated: tensors stacked to `[B, ...]`) plus `skipped` ((name, reason)
    pairs)."""

    def __init__(self, corpus: Corpus, hp: dict[str, Any], method: PretrainMethod) -> None:
        super().__init__()
        self.corpus = corpus
        self.hp = hp
        self.method = method

    def train_dataloader(self) -> DataLoader:
        hp = self.hp
        workers = hp["num_workers"]
        make_sample = self.method.sample_maker(hp)
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        common = dict(batch_size=hp["batch_size_per_gpu"], num_workers=workers, collate_fn=collate, drop_last=True,
                      persistent_workers=workers > 0, pin_memory=hp["accelerator"] == "gpu",
                      worker_init_fn=partial(loader_worker_init, rank=rank))
        if self.corpus.kind == "shards":
            # the step joins the seed so a resumed run does not replay the stream from its beginning
            seed = hp["seed"] + (trainer.global_step if trainer else 0)
            dataset = ShardDataset(self.corpus.items, make_sample, rank, world, seed=seed, subset=hp["subset"])
            return DataLoader(dataset, **common)
        check_corpus_size(self.corpus, hp, world)
        return DataLoader(FileDataset(take_subset(self.corpus.items, hp["subset"]), make_sample), **common,
                          shuffle=True)
