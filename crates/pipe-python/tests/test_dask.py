"""Scoring with Dask: examples/dask_score.py's `map_partitions` on a local
cluster of two worker processes, over a partitioned Parquet dataset, gives
`pipe score`'s rows."""

import sys

import pyarrow.parquet as pq

from conftest import ROOT, assert_same_scores, partitioned_records, pipe_scored

sys.path.insert(0, str(ROOT / "examples"))
import dask_score  # noqa: E402


def test_dask_scores_a_partitioned_dataset_like_pipe_score(workdir, model, tmp_path):
    rows = partitioned_records(tmp_path / "records")
    bundle = tmp_path / "bundle"
    model.save(bundle)
    expected = pipe_scored(bundle, tmp_path / "records", tmp_path / "pipe")

    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        result = dask_score.scored(str(tmp_path / "records"), str(bundle))
        assert result.npartitions >= 2
        result.to_parquet(str(tmp_path / "dask-out"), write_index=False)
        # Each worker process loaded the classifier at most once, whatever
        # number of partitions it scored.
        loads = client.run(lambda: dask_score._classifier.cache_info().misses)
        assert len(loads) == 2 and 1 <= sum(loads.values()) <= 2, loads

    assert_same_scores(pq.read_table(tmp_path / "dask-out").sort_by("Id"), expected, rows)
