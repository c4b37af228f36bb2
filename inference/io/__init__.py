"""Batch I/O shared by the batch commands: `inputs` (files, directories, JSONL, CSV, stdin into validated
records), `outputs` (JSONL and CSV writers, --resume, refusing an output that is an input) and `batch` (the
loop that reads, scores or matches and writes: one output record per input record, in input order)."""
