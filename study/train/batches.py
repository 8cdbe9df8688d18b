"""An endless, seeded, resumable stream of training batches from a map-style Dataset.

Batch ``k`` holds positions ``k*B .. k*B+B-1`` of an endless sequence of epochs; epoch ``e``
is a permutation of the dataset drawn from ``numpy.random.default_rng([seed, e])``. The
stream's state is just the number of batches drawn, so resuming at batch ``k`` reproduces
exactly the batches a straight run would have drawn (given a dataset whose item ``i`` is a
deterministic function of ``i`` (and of the epoch, set through ``set_epoch`` where the
dataset has it), as the samplers in ``study.data.samplers`` are).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler


class EndlessBatchSampler(Sampler):
    def __init__(
        self, n: int, batch_size: int, seed: int, start_batch: int = 0, global_index=False
    ):
        if n < 1:
            raise ValueError("the training sampler is empty (no training cases/samples)")
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.start_batch = int(start_batch)
        self.global_index = bool(global_index)  # yield epoch * n + i (see EpochIndexed)

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def __iter__(self) -> Iterator[list[int]]:
        pos = self.start_batch * self.batch_size
        epoch, offset = divmod(pos, self.n)
        perm = self._perm(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_size:
                if offset == self.n:
                    epoch, offset = epoch + 1, 0
                    perm = self._perm(epoch)
                take = min(self.batch_size - len(batch), self.n - offset)
                base = epoch * self.n if self.global_index else 0
                batch.extend(base + int(i) for i in perm[offset : offset + take])
                offset += take
            yield batch

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2**62


class EpochIndexed(torch.utils.data.Dataset):
    """Global index ``g = epoch * n + i`` -> ``dataset.set_epoch(epoch); dataset[i]``.

    Lets a dataset whose random draws depend on ``(seed, epoch, i)`` (the 3D patch
    sampler) draw fresh items each epoch, also inside DataLoader workers (each worker sets
    the epoch on its own copy before every item, so items do not depend on the worker).
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.n = len(dataset)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, g: int):
        epoch, i = divmod(int(g), self.n)
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[i]


def batch_stream(
    dataset,
    batch_size: int,
    seed: int,
    *,
    start_batch: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator:
    """Endless iterator of collated ``(x, y)`` batches starting at batch ``start_batch``."""
    epoch_aware = callable(getattr(dataset, "set_epoch", None))
    loader = DataLoader(
        EpochIndexed(dataset) if epoch_aware else dataset,
        batch_sampler=EndlessBatchSampler(
            len(dataset), batch_size, seed, start_batch, global_index=epoch_aware
        ),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        # a private generator: creating the iterator must not consume the global torch RNG
        generator=torch.Generator().manual_seed(int(seed)),
    )
    return iter(loader)
