"""Scoring inside Spark: examples/spark_score.py's `predict_batch_udf` in
local mode with two Python workers, over a partitioned Parquet dataset,
gives `pipe score`'s rows. Needs pyspark and a JRE (scripts/test installs
both)."""

import os
import sys

import pyarrow.parquet as pq

from conftest import ROOT, assert_same_scores, partitioned_records, pipe_scored

sys.path.insert(0, str(ROOT / "examples"))
import spark_score  # noqa: E402


def test_spark_scores_a_partitioned_dataset_like_pipe_score(workdir, model, tmp_path):
    rows = partitioned_records(tmp_path / "records")
    bundle = tmp_path / "bundle"
    model.save(bundle)
    expected = pipe_scored(bundle, tmp_path / "records", tmp_path / "pipe")

    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("pipe-test")
        .config("spark.python.worker.reuse", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", str(tmp_path / "spark"))
        .config("spark.sql.files.maxPartitionBytes", "8k")  # several tasks per file
        .getOrCreate()
    )
    try:
        result = spark_score.scored(spark, str(bundle), str(tmp_path / "records"), batch_size=64)
        assert result.rdd.getNumPartitions() >= 2
        result.write.parquet(str(tmp_path / "spark-out"))
    finally:
        spark.stop()

    assert_same_scores(pq.read_table(tmp_path / "spark-out").sort_by("Id"), expected, rows)
