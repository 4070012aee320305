#!/usr/bin/env python3
"""Benchmark: scoring many texts with one trained model, side by side in one
invocation. The model is notebook.yaml's (the notebook's own LSTMClassifier,
so PyTorch can load the same weights), trained `--epochs` epochs; the input is
`--rows` rows made by repeating data/corpus's test texts, written as a
partitioned Parquet dataset (`--files` files).

Contenders, each its own process, all scoring every row with the same weights:
  pytorch     the notebook's prediction code (its tokenizer, the model's
              forward, argmax, LabelEncoder names) on the same rows, in chunks
              of --batch-rows (the notebook's one pass over all rows would not
              fit in memory at a million rows)
  score-1     pipe score BUNDLE, one process (threads: one per physical core)
  score-2     pipe score --shard 0/2 and 1/2, two processes at once, one
              torch thread each; their parts together must equal score-1's
  python      pipe.TextClassifier.load(BUNDLE).predict_arrow(table): the
              whole table in memory, one call
  spark-pipe  Spark local[2], examples/spark_score.py (predict_batch_udf,
              the bundle loaded once per Python worker, one torch thread each)
  spark-pytorch  the same UDF running the notebook's tokenizer and model in
              PyTorch instead (one torch thread per worker)

For each: wall seconds, rows/s and peak RSS (the largest of a contender's
processes; not measured for Spark, whose JVM and Python workers the
driver does not wait for).
Spark needs Java (scripts/setup/ensure-java.sh). Records the CPU as scripts/bench/bench.py does.

    source scripts/setup/env.sh
    python scripts/bench/bench_score.py [--rows 1000000] [--files 4] [--batch-rows 10000]
                                  [--epochs 1] [--contenders pytorch,score-1,score-2,python,spark-pipe,spark-pytorch]
                                  [--pipe target/release/pipe] [--json out.json]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, textwrap, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import ROOT, machine  # noqa: E402


def wait(procs):
    """Waits for every (Popen, log) pair; returns the largest peak RSS in MB."""
    peak = 0.0
    for proc, log in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        peak = max(peak, usage.ru_maxrss / 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            sys.exit(f"failed: {' '.join(proc.args)}\n{log.read().decode(errors='replace')[-3000:]}")
    return peak


def timed(commands, env):
    """Runs the commands at once; returns (wall seconds, peak RSS MB)."""
    start = time.perf_counter()
    procs = []
    for cmd in commands:
        log = tempfile.TemporaryFile()
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), log))
    peak = wait(procs)
    return time.perf_counter() - start, peak


def make_input(rows, files, out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [r["Text"] for r in json.load(open(os.path.join(ROOT, "data", "corpus", "test.json")))]
    repeated = (texts * (rows // len(texts) + 1))[:rows]
    per_file = -(-rows // files)
    for f in range(files):
        lo, hi = f * per_file, min(rows, (f + 1) * per_file)
        os.makedirs(os.path.join(out, f"part={f}"), exist_ok=True)
        table = pa.table({"Id": list(range(lo, hi)), "Text": repeated[lo:hi]})
        pq.write_table(table, os.path.join(out, f"part={f}", "data.parquet"), row_group_size=100_000)


PYTORCH = textwrap.dedent(
    """
    import json, re, sys, time
    import joblib, numpy as np, pyarrow.dataset as ds, torch
    from safetensors.torch import load_file
    sys.path.insert(0, sys.argv[4])
    from notebook_model import LSTMClassifier
    bundle, data_dir, batch_rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = json.load(open(f"{bundle}/model/spec.json"))
    model = LSTMClassifier(spec["vocab_size"], spec["embed_dim"], spec["hidden_dim"], spec["num_classes"], spec["pad_id"])
    model.load_state_dict(load_file(f"{bundle}/model/model.safetensors"), strict=True)
    model.eval()
    stoi = joblib.load(f"{data_dir}/vocab_stoi.pkl")
    le = joblib.load(f"{data_dir}/label_encoder.pkl")
    max_len = np.load(f"{data_dir}/X_test_seq.npy", mmap_mode="r").shape[1]
    tok = lambda s: re.findall(r"\\w+|[^\\w\\s]", s.lower())
    rows = 0
    for batch in ds.dataset(sys.argv[5], format="parquet").to_batches(columns=["Text"], batch_size=batch_rows):
        texts = batch.column(0).to_pylist()
        X = np.zeros((len(texts), max_len), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = [stoi.get(w, 1) for w in tok(t)][:max_len]
            X[i, : len(ids)] = ids
        with torch.no_grad():
            preds = torch.argmax(model(torch.from_numpy(X)), dim=1).numpy()
        cats = le.inverse_transform(preds)
        rows += len(cats)
    print(rows)
    """
)

# Spark local[2], the same predict_batch_udf either way: examples/spark_score.py
# loading the bundle into pipe, or a predict function running the notebook's
# tokenizer and model in PyTorch (the UDF a Spark user would write without pipe).
SPARK = textwrap.dedent(
    """
    import os, re, sys
    import numpy as np
    sys.path.insert(0, sys.argv[5])
    sys.path.insert(0, sys.argv[6])
    from pyspark.sql import SparkSession
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import FloatType, StringType, StructField, StructType
    import spark_score
    which, bundle, data_dir, records = sys.argv[1:5]
    out = sys.argv[7]

    scripts_dir = sys.argv[6]

    def pytorch_fn():
        sys.path.insert(0, scripts_dir)  # a Python worker starts with its own sys.path
        import joblib, json, torch
        from safetensors.torch import load_file
        from notebook_model import LSTMClassifier
        torch.set_num_threads(1)
        spec = json.load(open(f"{bundle}/model/spec.json"))
        model = LSTMClassifier(spec["vocab_size"], spec["embed_dim"], spec["hidden_dim"], spec["num_classes"], spec["pad_id"])
        model.load_state_dict(load_file(f"{bundle}/model/model.safetensors"), strict=True)
        model.eval()
        stoi = joblib.load(f"{data_dir}/vocab_stoi.pkl")
        classes = np.array(joblib.load(f"{data_dir}/label_encoder.pkl").classes_, dtype=object)
        max_len = np.load(f"{data_dir}/X_test_seq.npy", mmap_mode="r").shape[1]
        word = re.compile(r"\\w+|[^\\w\\s]")

        def predict(texts):
            X = np.zeros((len(texts), max_len), dtype=np.int64)
            for i, t in enumerate(texts):
                ids = [stoi.get(w, 1) for w in word.findall(t.lower())][:max_len]
                X[i, : len(ids)] = ids
            with torch.no_grad():
                p = torch.softmax(model(torch.from_numpy(X)), dim=1)
            best = p.argmax(dim=1)
            return {"Category": classes[best.numpy()], "Probability": p[torch.arange(len(best)), best].numpy()}

        return predict

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (SparkSession.builder.master("local[2]").appName("bench")
             .config("spark.python.worker.reuse", "true").config("spark.ui.enabled", "false")
             .config("spark.driver.memory", "2g").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    if which == "pipe":
        result = spark_score.scored(spark, bundle, records, batch_size=4096)
    else:
        schema = StructType([StructField("Category", StringType()), StructField("Probability", FloatType())])
        udf = predict_batch_udf(pytorch_fn, return_type=schema, batch_size=4096)
        result = spark.read.parquet(records).select("Id", udf("Text").alias("s")).select("Id", "s.Category", "s.Probability")
    result.write.mode("overwrite").parquet(out)
    spark.stop()
    """
)

PYTHON = textwrap.dedent(
    """
    import sys
    import pyarrow.dataset as ds
    import pipe
    table = ds.dataset(sys.argv[2], format="parquet").to_table(columns=["Id", "Text"])
    scored = pipe.TextClassifier.load(sys.argv[1]).predict_arrow(table)
    print(scored.num_rows)
    """
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--batch-rows", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--contenders", default="pytorch,score-1,score-2,python,spark-pipe,spark-pytorch")
    ap.add_argument("--pipe", default=os.path.join(ROOT, "target", "release", "pipe"))
    ap.add_argument("--json")
    a = ap.parse_args()
    contenders = a.contenders.split(",")
    work = tempfile.mkdtemp(prefix="pipe-bench-score-")
    env = dict(os.environ)
    try:
        bundle, records = os.path.join(work, "bundle"), os.path.join(work, "records")
        cache = ["--cache-dir", os.path.join(work, "cache")]
        subprocess.run([a.pipe, *cache, "bundle", "pipelines/notebook.yaml", bundle, "--set", f"train.epochs={a.epochs}", "-q"], check=True, cwd=ROOT, env=env)
        make_input(a.rows, a.files, records)
        score = lambda out, shard: [a.pipe, "score", bundle, "--input", records, "--output", out, "--id-column", "Id", "--batch-rows", str(a.batch_rows), "--shard", shard, "-q"]
        results = {}
        for name in contenders:
            if name == "pytorch":
                cmd = [sys.executable, "-c", PYTORCH, bundle, os.path.join(ROOT, "data", "wordnet"), str(a.batch_rows), os.path.join(ROOT, "scripts", "fixtures"), records]
                wall, rss = timed([cmd], env)
            elif name == "score-1":
                wall, rss = timed([score(os.path.join(work, "one"), "0/1")], env)
            elif name == "score-2":
                one_thread = dict(env, PIPE_THREADS="1")
                wall, rss = timed([score(os.path.join(work, "two"), f"{i}/2") for i in range(2)], one_thread)
            elif name in ("spark-pipe", "spark-pytorch"):
                which = name.split("-")[1]
                cmd = [sys.executable, "-c", SPARK, which, bundle, os.path.join(ROOT, "data", "wordnet"), records,
                       os.path.join(ROOT, "examples"), os.path.join(ROOT, "scripts", "fixtures"), os.path.join(work, name)]
                wall, _ = timed([cmd], env)
                rss = None  # the JVM and its Python workers are not the driver's waited children
            elif name == "python":
                wall, rss = timed([[sys.executable, "-c", PYTHON, bundle, records]], env)
            else:
                sys.exit(f"unknown contender {name}")
            results[name] = {"seconds": round(wall, 2), "rows_per_second": round(a.rows / wall), "peak_rss_mb": None if rss is None else round(rss)}
            shown = "n/a" if rss is None else f"{rss:.0f} MB"
            print(f"{name:13} {wall:7.1f} s {a.rows / wall:9.0f} rows/s  peak RSS {shown}", flush=True)
        if "score-1" in results and "score-2" in results:
            import pyarrow.parquet as pq

            one = pq.read_table(os.path.join(work, "one", "part-00000-of-00001.parquet"))
            two = [pq.read_table(os.path.join(work, "two", f"part-0000{i}-of-00002.parquet")) for i in range(2)]
            import pyarrow as pa

            results["score-2"]["identical_to_score-1"] = pa.concat_tables(two).equals(one)
            print(f"2 shards identical to 1: {results['score-2']['identical_to_score-1']}")
        report = {"machine": machine(), "rows": a.rows, "files": a.files, "batch_rows": a.batch_rows, "model": f"notebook.yaml, {a.epochs} epoch(s)", "results": results}
        if a.json:
            with open(a.json, "w") as f:
                json.dump(report, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
