#!/usr/bin/env python3
"""Scores a (partitioned) Parquet dataset with Dask and a model `pipe`
trained: `dask.dataframe.read_parquet`, then `map_partitions` with the
classifier loaded once per worker process from a model bundle (`pipe bundle
PIPELINE DIR`). The output is Parquet with the id column, the predicted
`Category` and its `Probability`, the same rows `pipe score` writes.

    scripts/pipe bundle pipelines/from_raw.yaml out/model
    python examples/dask_score.py --model out/model --input records/ --output scored/ \
        --id-column Id --workers 2

On a cluster, pass `--scheduler tcp://host:8786` instead of `--workers`, put the
bundle where every worker can read it and install the `pipe` wheel in the
workers' Python.
"""

import argparse
import functools

import pandas as pd


@functools.lru_cache(maxsize=None)
def _classifier(model_dir: str, threads: int):
    """One classifier per worker process, kept for every partition it scores."""
    import torch

    import pipe

    # Dask runs one worker process per core here: more torch threads per
    # worker would oversubscribe the cores.
    torch.set_num_threads(threads)
    return pipe.TextClassifier.load(model_dir)


def score_partition(part: pd.DataFrame, model_dir: str, text_column: str, id_column: str, threads: int) -> pd.DataFrame:
    """The partition's id column with `Category` and `Probability`."""
    import pyarrow as pa

    model = _classifier(model_dir, threads)
    texts = pa.table({text_column: pa.array(part[text_column].tolist(), pa.string())})
    scored = model.predict_arrow(texts, text_column=text_column).to_pandas()
    return pd.DataFrame(
        {
            id_column: part[id_column].to_numpy(),
            "Category": pd.Series(scored["Category"].to_numpy(), index=part.index, dtype="string"),
            "Probability": scored["Probability"].to_numpy(),
        },
        index=part.index,
    )


def scored(input_path: str, model_dir: str, text_column: str = "Text", id_column: str = "Id", threads_per_worker: int = 1):
    """The input's id column with `Category` and `Probability`, lazily (a Dask DataFrame)."""
    import dask.dataframe as dd

    records = dd.read_parquet(input_path, columns=[id_column, text_column])
    meta = pd.DataFrame(
        {id_column: pd.Series(dtype=records[id_column].dtype), "Category": pd.Series(dtype="string"), "Probability": pd.Series(dtype="float32")}
    )
    return records.map_partitions(score_partition, model_dir, text_column, id_column, threads_per_worker, meta=meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a bundle written by `pipe bundle`")
    ap.add_argument("--input", required=True, help="a Parquet file or a partitioned directory")
    ap.add_argument("--output", required=True)
    ap.add_argument("--text-column", default="Text")
    ap.add_argument("--id-column", default="Id")
    ap.add_argument("--threads-per-worker", type=int, default=1, help="torch threads in each worker process")
    ap.add_argument("--workers", type=int, default=2, help="local worker processes (ignored with --scheduler)")
    ap.add_argument("--scheduler", help="address of a running Dask scheduler")
    a = ap.parse_args()
    from distributed import Client, LocalCluster

    cluster = None if a.scheduler else LocalCluster(n_workers=a.workers, threads_per_worker=1, processes=True)
    with Client(a.scheduler or cluster):
        scored(a.input, a.model, a.text_column, a.id_column, a.threads_per_worker).to_parquet(a.output, write_index=False)
    if cluster is not None:
        cluster.close()


if __name__ == "__main__":
    main()
