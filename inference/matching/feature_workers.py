"""Featurising references for the index, in worker processes: at most 2 x workers chunks are in flight, so
memory stays bounded whatever the input size, and results come back in input order."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from inference.matching.features import FeaturesConfig, Featurizer

_WORKER: Featurizer | None = None


def _init_worker(cfg: FeaturesConfig):
    global _WORKER
    _WORKER = Featurizer(cfg)


def _featurize_with(f: Featurizer, texts: list[str]) -> list[tuple]:
    return [f.index_features(t) for t in texts]


def _featurize_chunk(texts: list[str]) -> list[tuple]:
    return _featurize_with(_WORKER, texts)



def featurized(records: Iterable, featurizer: Featurizer, chunk: int, workers: int) -> Iterator[tuple[list, list]]:
    """(records, their `index_features`) for chunks of `chunk` records, in input order. With `workers` > 1, forked
    workers featurise chunks while the caller reads input and stores results. Close the generator (or exhaust
    it) to close and join the workers."""
    pool = None
    if workers > 1:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(workers, _init_worker, (featurizer.cfg,))
    pending: deque = deque()  # (records, an AsyncResult), in input order
    try:
        for batch in _batches(records, chunk):
            texts = [r.text for r in batch]
            if pool is None:
                yield batch, _featurize_with(featurizer, texts)
                continue
            pending.append((batch, pool.apply_async(_featurize_chunk, (texts,))))
            while len(pending) > 2 * workers:
                done_batch, res = pending.popleft()
                yield done_batch, res.get()
        while pending:
            done_batch, res = pending.popleft()
            yield done_batch, res.get()
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _batches(it: Iterable, size: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch

