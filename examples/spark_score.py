#!/usr/bin/env python3
"""Scores a (partitioned) Parquet dataset inside Spark with a model `pipe`
trained: `pyspark.ml.functions.predict_batch_udf`, the classifier loaded once
per Python worker from a model bundle (`pipe bundle PIPELINE DIR`), batches
handed to it as numpy arrays. The output is Parquet with the id column, the
predicted `Category` and its `Probability`, the same rows `pipe score` writes.

    scripts/pipe bundle pipelines/from_raw.yaml out/model
    python examples/spark_score.py --model out/model --input records/ --output scored/ \
        --id-column Id --master 'local[2]'

On a cluster, put the bundle where every executor can read it (or ship it with
`--archives`) and install the `pipe` wheel in the executors' Python.
"""

import argparse

import numpy as np
from pyspark.ml.functions import predict_batch_udf
from pyspark.sql import SparkSession
from pyspark.sql.types import FloatType, StringType, StructField, StructType


def make_predict_fn(model_dir: str, threads_per_worker: int = 1):
    """Spark calls this once per Python worker; the returned function scores each batch."""

    def load():
        import torch

        import pipe

        # Spark runs one Python worker per task slot (core): more torch
        # threads per worker would oversubscribe the cores.
        torch.set_num_threads(threads_per_worker)

        model = pipe.TextClassifier.load(model_dir)
        classes = np.array(model.classes, dtype=object)

        def predict(texts: np.ndarray) -> dict:
            p = model.predict_proba(texts.tolist())
            best = p.argmax(axis=1)
            return {"Category": classes[best], "Probability": p[np.arange(len(best)), best]}

        return predict

    return load


def scored(spark: SparkSession, model_dir: str, input_path: str, text_column: str = "Text", id_column: str = "Id", batch_size: int = 4096, threads_per_worker: int = 1):
    """The input's id column with `Category` and `Probability`, lazily (a Spark DataFrame)."""
    classify = predict_batch_udf(
        make_predict_fn(model_dir, threads_per_worker),
        return_type=StructType([StructField("Category", StringType()), StructField("Probability", FloatType())]),
        batch_size=batch_size,
    )
    records = spark.read.parquet(input_path)
    return records.select(id_column, classify(text_column).alias("scored")).select(id_column, "scored.Category", "scored.Probability")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a bundle written by `pipe bundle`")
    ap.add_argument("--input", required=True, help="a Parquet file or a partitioned directory")
    ap.add_argument("--output", required=True)
    ap.add_argument("--text-column", default="Text")
    ap.add_argument("--id-column", default="Id")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--threads-per-worker", type=int, default=1, help="torch threads in each Python worker")
    ap.add_argument("--master", default="local[2]")
    a = ap.parse_args()
    spark = (
        SparkSession.builder.master(a.master)
        .appName("pipe-score")
        # Each Python worker keeps its classifier for the tasks it runs.
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    try:
        result = scored(spark, a.model, a.input, a.text_column, a.id_column, a.batch_size, a.threads_per_worker)
        result.write.mode("overwrite").parquet(a.output)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
