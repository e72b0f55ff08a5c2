"""LightningDataModule: the corpus of `--data_path` as a data loader of two-view batches."""
from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from .data import Corpus, FileDataset, ShardDataset, ViewMaker, collate, take_subset


class PretrainData(pl.LightningDataModule):
    """Batches: `mel_t`, `mel_s` `[B, n_mels, F]`, `mask` `[B, T]`, `valid_tokens` `[B]`, `skipped` (paths)."""

    def __init__(self, corpus: Corpus, hp: dict[str, Any]) -> None:
        super().__init__()
        self.corpus = corpus
        self.hp = hp

    def _views(self) -> ViewMaker:
        hp = self.hp
        return ViewMaker(anchor_len=hp["anchor_len"], n_mels=hp["n_mels"], win_length=hp["win_length"],
                         patch_w=hp["patch_w"], mask_type=hp["mask_type"], mask_ratio=hp["mask_ratio"],
                         mask_len=hp["mask_len"], aug_tea=hp["aug_tea"], aug_stu=hp["aug_stu"],
                         mix_up=hp["mix_up"], freq_wrap=hp["freq_wrap"], mixup_bank=hp["mixup_bank"])

    def train_dataloader(self) -> DataLoader:
        hp = self.hp
        workers = hp["num_workers"]
        common = dict(batch_size=hp["batch_size_per_gpu"], num_workers=workers, collate_fn=collate, drop_last=True,
                      persistent_workers=workers > 0, pin_memory=hp["accelerator"] == "gpu")
        if self.corpus.kind == "shards":
            trainer = self.trainer
            rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
            # the step joins the seed so a resumed run does not replay the stream from its beginning
            seed = hp["seed"] + (trainer.global_step if trainer else 0)
            dataset = ShardDataset(self.corpus.items, self._views(), rank, world, seed=seed, subset=hp["subset"])
            return DataLoader(dataset, **common)
        files = take_subset(self.corpus.items, hp["subset"])
        world = self.trainer.world_size if self.trainer else 1
        if len(files) // world < hp["batch_size_per_gpu"]:
            raise ValueError(f"{len(files)} files give fewer than --batch_size_per_gpu "
                             f"({hp['batch_size_per_gpu']}) per device on {world} device(s); add files or lower "
                             f"the batch size")
        return DataLoader(FileDataset(files, self._views()), shuffle=True, **common)
