"""The loop the batch commands share (`inference.score`, `inference.match`): read the input records, skip
those the output already answers (--resume), turn the rest into output records, write them, show progress.

Guarantee: one output record per input record, in input order, with the input's id.

--resume counts, per id, the records already in the output, and skips as many occurrences of that id,
the earliest, in the input: the n-th record with id X is skipped only when the output holds at least n
records with id X. On the same inputs this skips exactly the records written before the crash, repeated
ids included, so a resumed run ends with the output an uninterrupted run writes. The output is read as
a stream; what is kept is a count per distinct id (a 16-byte digest of it).
"""
from __future__ import annotations

import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

from inference.io.inputs import Record, iter_records
from inference.io.outputs import id_key, open_writer

Process = Callable[[Iterable[Record]], Iterable[dict]]


def run_batch(inputs: list[str], output: str, process: Process, kind: Callable[[dict], str], max_bytes: int,
              resume: bool = False, progress: bool = True, unit: str = "article", desc: str | None = None,
              observe: Callable[[Record, dict], None] | None = None, follow_symlinks: bool = False) -> Counter:
    """Write process(records) of `inputs` to `output`. `process` must yield one record per record it takes,
    in order (it may read ahead); `kind(record)` names the count a record adds to; `observe(input record,
    output record)`, if given, sees each pair once written (the HTML report); `follow_symlinks` as for
    `iter_records`. Returns the counts: records, skipped and one per kind."""
    from tqdm import tqdm

    counts: Counter = Counter()
    with open_writer(output, resume) as writer, \
            tqdm(unit=unit, desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        todo = _unanswered(iter_records(inputs, max_bytes, follow_symlinks=follow_symlinks), writer.answered, counts)
        taken: deque[Record] = deque()  # read ahead by `process`, not answered yet
        for rec in process(_remember(todo, taken)):
            expected = taken.popleft() if taken else None
            if expected is None or rec.get("id") != expected.id:
                raise RuntimeError(f"output record {rec.get('id')!r} out of step with input record "
                                   f"{expected and expected.id!r}")
            writer.write(rec)
            if observe is not None:
                observe(expected, rec)
            counts["records"] += 1
            counts[kind(rec)] += 1
            bar.update()
        if taken:
            raise RuntimeError(f"{len(taken)} input records got no output record")
    return counts


def _unanswered(records: Iterable[Record], answered: Counter, counts: Counter) -> Iterator[Record]:
    for r in records:
        key = id_key(r.id)
        if answered[key] > 0:
            answered[key] -= 1
            counts["skipped"] += 1
        else:
            yield r


def _remember(records: Iterable[Record], taken: deque) -> Iterator[Record]:
    for r in records:
        taken.append(r)
        yield r
