"""How the reference index is stored: its files, segments and the writes that a crash cannot tear.

On disk (`index_dir`):
- `refs.sqlite`: every reference's id, title, text and sentence spans (with prose flags), rows
  numbered in insertion order (the text is what inputs are aligned against);
- `segments/*.npz`: features of a batch of references (immutables as strings, word hashes, sampled
  3-gram hashes), one per `add`, merged when there are more than `max_segments`;
- `manifest.json`: the segment list, how far rows are indexed, the feature settings (a different
  setting is an error, not a silently mixed index), and fingerprints of the reference inputs already read.
Files are replaced by renaming a synced temporary file of their own (`atomic_write`). The writer lock, the
opening, adding and healing are inference.matching.index's.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


class IndexStateError(RuntimeError):
    pass


# --- segments ------------------------------------------------------------------------------------

@dataclass
class Segment:
    rows: np.ndarray        # int64 sqlite row numbers
    imm_indptr: np.ndarray  # int64, len(rows)+1
    imm: np.ndarray         # int32 ids into `vocab`
    vocab: list[str]
    w_indptr: np.ndarray    # int64
    words: np.ndarray       # uint32 sorted per reference
    s_indptr: np.ndarray    # int64
    shingles: np.ndarray    # uint32 sorted per reference

    @classmethod
    def empty(cls) -> Segment:
        return SegmentBuilder().build()

    def save(self, path: Path):
        blob = np.frombuffer("\n".join(self.vocab).encode("utf-8", "surrogatepass"), dtype=np.uint8)
        atomic_write(path, lambda f: np.savez(
            f, rows=self.rows, imm_indptr=self.imm_indptr, imm=self.imm, vocab=blob, n_vocab=np.array([len(self.vocab)]),
            w_indptr=self.w_indptr, words=self.words, s_indptr=self.s_indptr, shingles=self.shingles))

    @classmethod
    def load(cls, path: Path) -> Segment:
        with np.load(path, allow_pickle=False) as z:
            n = int(z["n_vocab"][0])
            vocab = z["vocab"].tobytes().decode("utf-8", "surrogatepass").split("\n") if n else []
            return cls(z["rows"], z["imm_indptr"], z["imm"], vocab, z["w_indptr"], z["words"], z["s_indptr"],
                       z["shingles"])

    @classmethod
    def merge(cls, segs: list[Segment]) -> Segment:
        vocab: dict[str, int] = {}
        imms = []
        for s in segs:
            remap = np.array([vocab.setdefault(t, len(vocab)) for t in s.vocab], dtype=np.int32)
            imms.append(remap[s.imm] if len(s.imm) else s.imm)
        return cls(np.concatenate([s.rows for s in segs]), _cat_indptr([s.imm_indptr for s in segs]),
                   np.concatenate(imms).astype(np.int32), list(vocab), _cat_indptr([s.w_indptr for s in segs]),
                   np.concatenate([s.words for s in segs]), _cat_indptr([s.s_indptr for s in segs]),
                   np.concatenate([s.shingles for s in segs]))


class SegmentBuilder:
    """Collects references' features compactly (token ids, not strings) until they make a segment."""

    def __init__(self):
        self.rows: list[int] = []
        self.vocab: dict[str, int] = {}
        self.imm: list[np.ndarray] = []
        self.words: list[np.ndarray] = []
        self.shingles: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: int, toks: list[str], words: np.ndarray, shingles: np.ndarray):
        v = self.vocab
        self.rows.append(row)
        self.imm.append(np.fromiter((v.setdefault(t, len(v)) for t in toks), dtype=np.int32, count=len(toks)))
        self.words.append(words.astype(np.uint32, copy=False))
        self.shingles.append(shingles.astype(np.uint32, copy=False))

    def build(self) -> Segment:
        return Segment(np.asarray(self.rows, dtype=np.int64), indptr([len(x) for x in self.imm]),
                       np.concatenate(self.imm) if self.imm else np.zeros(0, np.int32), list(self.vocab),
                       indptr([len(w) for w in self.words]),
                       np.concatenate(self.words) if self.words else np.zeros(0, np.uint32),
                       indptr([len(x) for x in self.shingles]),
                       np.concatenate(self.shingles) if self.shingles else np.zeros(0, np.uint32))


def atomic_write(path: Path, write) -> None:
    """Write `path` via `write(binary file)` into a temporary file of its own (unique: two writers never share
    one) that is synced, then renamed over it (and the rename synced): a crash leaves the old file or the new
    one, never a torn or empty one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def indptr(lengths: list[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _cat_indptr(parts: list[np.ndarray]) -> np.ndarray:
    out, base = [np.zeros(1, np.int64)], 0
    for p in parts:
        out.append(p[1:] + base)
        base += int(p[-1])
    return np.concatenate(out)


# --- the index directory -------------------------------------------------------------------------

INDEX_FILES = frozenset({"manifest.json", "refs.sqlite", "refs.sqlite-wal", "refs.sqlite-shm", "segments", ".lock"})
TMP_SUFFIX = ".tmp"
SCHEMA = ("CREATE TABLE IF NOT EXISTS refs (num INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, "
          "title TEXT, text TEXT NOT NULL, spans BLOB)")


def empty_manifest() -> dict:
    return {"version": FORMAT_VERSION, "segments": [], "indexed_upto": 0, "next_segment": 1, "sources": {},
            "features": None}


def is_index(directory: str | Path) -> bool:
    """Whether `directory` holds an unspin reference index: its manifest, or the database of one that an
    older version created and never added to (not just any manifest.json)."""
    directory = Path(directory)
    try:
        m = json.loads((directory / "manifest.json").read_text())
        return isinstance(m, dict) and {"version", "segments", "indexed_upto", "sources"} <= set(m)
    except (OSError, ValueError):
        return (directory / "refs.sqlite").is_file()


def foreign_entries(directory: Path) -> list[str]:
    """Entries of `directory` that are not an index's own (nor its temporary files)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in INDEX_FILES and not p.name.endswith(TMP_SUFFIX))


def remove_index(directory: str | Path) -> None:
    """Delete the index in `directory` (--rebuild): its own files only, and nothing at all in a directory
    that is not an unspin reference index."""
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir() or (not is_index(directory) and foreign_entries(directory)):
        raise IndexStateError(f"{directory} is not an unspin reference index (no manifest.json or refs.sqlite of "
                              f"one): not deleting anything in it; check --index")
    for p in directory.iterdir():
        if p.name in INDEX_FILES or p.name.endswith(TMP_SUFFIX):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    if not any(directory.iterdir()):
        directory.rmdir()

