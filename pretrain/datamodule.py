"""LightningDataModule: the corpus of `--data_path` as a data loader of a method's training samples."""
from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from atst.training.corpus import Corpus, take_subset
from atst.training.corpus_datasets import FileDataset, ShardDataset, collate
from atst.training.lightning import pl

from .methods import PretrainMethod


class PretrainData(pl.LightningDataModule):
    """Batches of `method`'s samples (collated: tensors stacked to `[B, ...]`) plus `skipped` (paths)."""

    def __init__(self, corpus: Corpus, hp: dict[str, Any], method: PretrainMethod) -> None:
        super().__init__()
        self.corpus = corpus
        self.hp = hp
        self.method = method

    def train_dataloader(self) -> DataLoader:
        hp = self.hp
        workers = hp["num_workers"]
        make_sample = self.method.sample_maker(hp)
        common = dict(batch_size=hp["batch_size_per_gpu"], num_workers=workers, collate_fn=collate, drop_last=True,
                      persistent_workers=workers > 0, pin_memory=hp["accelerator"] == "gpu")
        if self.corpus.kind == "shards":
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
            # the step joins the seed so a resumed run does not replay the stream from its beginning
            seed = hp["seed"] + (trainer.global_step if trainer else 0)
            dataset = ShardDataset(self.corpus.items, make_sample, rank, world, seed=seed, subset=hp["subset"])
            return DataLoader(dataset, **common)
        files = take_subset(self.corpus.items, hp["subset"])
        world = self.trainer.world_size if self.trainer else 1
        if len(files) // world < hp["batch_size_per_gpu"]:
            raise ValueError(f"{len(files)} files give fewer than --batch_size_per_gpu "
                             f"({hp['batch_size_per_gpu']}) per device on {world} device(s); add files or lower "
                             f"the batch size")
        return DataLoader(FileDataset(files, make_sample), **common, shuffle=True)
