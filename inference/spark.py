"""Score a corpus on Apache Spark: `python -m inference.spark --input PATH... --output OUT.jsonl|OUT.parquet`.

PATH: JSONL, CSV or Parquet files with `id` and `text`, or directories of them (read recursively; files of
other types are skipped), local or any Hadoop-compatible URI (hdfs://, s3a://...), globs allowed. OUT: a
directory of part files, the Spark way: .jsonl holds one score record per line, .parquet the same fields
with `sentences` and `spans` as arrays of structs. One output row per input row, keyed by the input's id; a
row that cannot be scored gets a record with `error` set. Exit status 2 only when the command cannot run.

How rows are scored: `mapInArrow`, not `mlflow.pyfunc.spark_udf`. Each executor's Python worker loads the
Detector once (workers are reused across tasks) with the batch command's settings and scores Arrow batches
with the batch command's code (`inference.run_detector.score_batch`): the same validation and error records, the
same quantize and threshold settings, texts batched together for the encoder. spark_udf would call the pyfunc,
which loads the model as it was logged (no threshold or precision from configs/inference.yaml) and keys a
row without an id by its position. mapInArrow rather than mapInPandas keeps values as Python types: an id of
7 stays an int (the batch command writes "7"), a number given as text stays a number (an error record) and a
missing value is None, not NaN.

The model is fetched once, on the driver, and shipped to the executors as an archive (SparkFiles), so
executors need no access to the MLflow store.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings

from inference import settings
from inference.io.inputs import BOM, Record, jsonl_record, make_record
from inference.io.outputs import check_not_an_input
from inference.model.record import spark_ddl
from inference.run_detector import load_detector, score_batch

# The score record (inference/model/record.py) as Spark types, a DDL string: "id string, score double, ...".
RECORD = spark_ddl()
INPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
COMPRESSED = (".gz", ".bz2", ".deflate", ".xz", ".zst", ".lz4", ".snappy")  # Spark reads these transparently
OUTPUT_FORMATS = {".jsonl": "json", ".parquet": "parquet"}
CODE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds the inference package


def session(cfg: settings.SparkConfig, progress: bool = True, conf: list[str] = ()):
    """The Spark session: its own embedded master (`cfg.master`), or spark-submit's when launched by it."""
    from pyspark.sql import SparkSession

    # pyspark warns about pandas 3 on every Arrow map; this module hands Python Arrow batches, never pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    builder = SparkSession.builder.appName(cfg.app_name)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit, whose --master and --conf decide
        builder = builder.master(cfg.master)
        if cfg.master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # an embedded master listens on loopback only
            # its Python workers run this interpreter and import this same unspin, wherever they start
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            os.environ["PYTHONPATH"] = os.pathsep.join([CODE_ROOT, *(p for p in paths if p != CODE_ROOT)])
    builder = (builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", cfg.arrow_batch_rows)
               .config("spark.ui.showConsoleProgress", str(progress).lower()))
    for item in conf:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--conf {item!r}: expected KEY=VALUE")
        builder = builder.config(key, value)
    return builder.getOrCreate()


# ---- input --------------------------------------------------------------------------------------

def input_format(path: str) -> str | None:
    name = path.lower()
    for ext in COMPRESSED:
        name = name.removesuffix(ext)
    return INPUT_FORMATS.get(os.path.splitext(name)[1])


def input_files(spark, paths: list[str]) -> dict[str, list[str]]:
    """The files to read, by format. Spark lists them (any Hadoop file system, globs), without reading any,
    and leaves out hidden files and its own markers (_SUCCESS)."""
    found: dict[str, list[str]] = {}
    for path in paths:
        listed = spark.read.option("recursiveFileLookup", "true").text(path).inputFiles()
        files = [(input_format(f), f) for f in sorted(listed)]
        if not any(kind for kind, _ in files):
            raise ValueError(f"no JSONL, CSV or Parquet file in {path} (by name: .jsonl .json .csv .parquet)")
        for kind, f in files:
            if kind:
                found.setdefault(kind, []).append(f)
    return found


def read_inputs(spark, paths: list[str]) -> list:
    """One DataFrame per input format: JSONL as lines (parsed in Python, as the batch command parses them, so
    a number given as text stays a number), CSV and Parquet as their `id` and `text` columns."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    source = F.col("_metadata.file_path").alias("source")
    frames = []
    for kind, files in input_files(spark, paths).items():
        if kind == "jsonl":  # blank lines are not records, as in the batch command; lines go to Python as bytes,
            # since Spark does not check that they are UTF-8 (a line that is not gets an error record there)
            frames.append(spark.read.text(files).where(F.col("value").rlike(r"\S"))
                          .select(F.col("value").cast("binary").alias("line"), source))
            continue
        # CSV as RFC 4180 (a quote is escaped by doubling it; quoted cells may span lines), every cell a string
        df = (spark.read.csv(files, header=True, multiLine=True, escape='"') if kind == "csv"
              else spark.read.parquet(*files))
        df = df.toDF(*[c.removeprefix("\ufeff") for c in df.columns])  # a byte order mark before the header
        missing = [c for c in ("id", "text") if c not in df.columns]
        if missing:
            raise ValueError(f"{kind} input has no column {', '.join(missing)} (columns: {', '.join(df.columns)}): "
                             f"{files[0]}{' ...' if len(files) > 1 else ''}")
        # CSV text is decoded with bad bytes replaced; do the same for Parquet strings, which Python could not take
        frames.append(df.select(*[F.make_valid_utf8(c).alias(c) if isinstance(df.schema[c].dataType, StringType)
                                  else c for c in ("id", "text")], source))
    return frames


def to_record(row: dict, max_bytes: int) -> Record:
    """The batch command's Record of an input row. With no usable id there is nothing to key it by: its id
    stays null and the error names the file."""
    rec = (jsonl_record(row["line"].removeprefix(BOM), None, max_bytes) if "line" in row
           else make_record(row, None, max_bytes))
    if rec.id is None:
        rec.error = f"{rec.error} (in {row['source']})"
    return rec


# ---- scoring on the executors -------------------------------------------------------------------

_loaded: dict = {}  # this Python worker's detector, by model archive


def worker_detector(cfg: settings.InferenceConfig, archive: str):
    """The detector of this Python worker, loaded on first use; Spark reuses the worker for later tasks."""
    if archive not in _loaded:
        from pyspark import SparkFiles, TaskContext

        # torch threads: a task's share of the executor's cores (spark.task.cpus), so tasks do not oversubscribe
        os.environ["UNSPIN_THREADS"] = str(TaskContext.get().cpus())
        settings.process_defaults(cfg)
        _loaded.clear()
        _loaded[archive] = load_detector(dataclasses.replace(cfg, model=SparkFiles.get(archive)))
    return _loaded[archive]


def score_partition(batches, cfg: settings.InferenceConfig, archive: str, schema):
    """mapInArrow's function: one score record per row, scored `cfg.batch_size` texts at a time."""
    import pyarrow as pa

    for batch in batches:
        records = [to_record(row, cfg.max_bytes) for row in batch.to_pylist()]
        det = worker_detector(cfg, archive)  # not before the first row: an empty partition loads nothing
        out = [rec for i in range(0, len(records), cfg.batch_size)
               for rec in score_batch(det, records[i:i + cfg.batch_size])]
        yield pa.RecordBatch.from_pylist(out, schema=schema)


def ship_model(spark, model: str, workdir: str) -> str:
    """Fetch the model on the driver and add it to the session as an archive, which every executor gets
    unpacked (SparkFiles); returns its name there."""
    from inference.model.detector import Detector

    name = f"unspin-model-{uuid.uuid4().hex[:12]}"  # unique: a session refuses a second archive of the same name
    # uncompressed tar (weights barely compress) of the detector's directory, which Detector.load finds inside
    src = Detector.fetch(model, tempfile.mkdtemp(dir=workdir))
    path = shutil.make_archive(os.path.join(workdir, name), "tar", root_dir=src.parent, base_dir=src.name)
    spark.sparkContext.addArchive(path)
    return os.path.basename(path)


# ---- the job ------------------------------------------------------------------------------------

def output_format(path: str) -> str:
    fmt = OUTPUT_FORMATS.get(os.path.splitext(path.rstrip("/"))[1].lower())
    if fmt is None:
        raise ValueError(f"output must end in .jsonl or .parquet: {path}")
    return fmt


def score(spark, inputs: list[str], output: str, cfg: settings.SparkConfig) -> dict:
    """Score `inputs` into the directory `output` (refused when it exists); returns the summary figures."""
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    fmt = output_format(output)
    check_not_an_input(output, inputs)
    if "://" not in output and os.path.exists(output):  # early and plain; Spark refuses any existing output later
        raise FileExistsError(f"the output {output} already exists: remove it or write elsewhere")
    frames = read_inputs(spark, inputs)
    schema = StructType.fromDDL(RECORD)
    partitions = cfg.partitions or 4 * spark.sparkContext.defaultParallelism
    workdir = tempfile.mkdtemp(prefix="unspin-spark-")
    try:
        archive = ship_model(spark, cfg.inference.model, workdir)
        fn = functools.partial(score_partition, cfg=cfg.inference, archive=archive, schema=to_arrow_schema(schema))
        # repartition spreads rows evenly over the tasks (deterministically, so a retried task redoes the same rows)
        scored = functools.reduce(DataFrame.unionByName, [f.repartition(partitions).mapInArrow(fn, schema)
                                                          for f in frames])
        scored = scored.persist(StorageLevel.DISK_ONLY)  # kept as written, so the summary counts without rescoring
        t0 = time.time()
        # ignoreNullFields: JSON keeps `error: null` and `suggestion: null`, as the batch command writes them
        scored.write.format(fmt).option("ignoreNullFields", "false").save(output)
        seconds = time.time() - t0
        summary = scored.agg(
            F.count("*").alias("records"), F.count_if(F.col("label") == "spun").alias("spun"),
            F.count_if(F.col("label") == "clean").alias("clean"),
            F.count_if(F.col("error").isNotNull()).alias("errors"), F.first("model", ignorenulls=True).alias("model"),
            F.first("threshold", ignorenulls=True).alias("threshold")).first().asDict(recursive=True)
        scored.unpersist()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**summary, "seconds": round(seconds, 2),
            "articles_per_second": round(summary["records"] / max(seconds, 1e-9), 2)}


def run(inputs: list[str], output: str, cfg: settings.SparkConfig, progress: bool = True, conf: list[str] = ()) -> dict:
    spark = session(cfg, progress, conf)
    try:
        return score(spark, inputs, output, cfg)
    finally:
        spark.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH")
    ap.add_argument("--output", "-o", required=True, metavar="OUT")
    settings.add_common_args(ap, "Spark command config (default configs/spark.yaml)")
    ap.add_argument("--master", help="Spark master (default `master`: local[*]); ignored under spark-submit")
    ap.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                    help="a Spark setting, as spark-submit's --conf (repeatable)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    try:
        cfg = settings.load_spark(args.config, settings.overrides(args))
        settings.process_defaults(cfg.inference)
        summary = run(args.input, args.output, cfg, progress=not args.quiet, conf=args.conf)
    except Exception as e:  # noqa: BLE001 - the command cannot run: say why, exit non-zero
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    model = summary["model"] or {}
    print(f"{summary['records']} records: {summary['spun']} spun, {summary['clean']} clean, "
          f"{summary['errors']} errors; {summary['articles_per_second']} articles/s; model {model.get('name')} "
          f"v{model.get('version')}, threshold {summary['threshold'] or 0:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    # Run as inference.spark, not __main__, so the functions Spark sends to executors are pickled by reference.
    from inference.spark import main as _main

    sys.exit(_main())
