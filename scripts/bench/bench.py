#!/usr/bin/env python3
"""Benchmark: the notebook's Python flow against `pipe`, on the same artifacts,
in one invocation, alternating the contenders round by round (absolute times on
these machines drift by up to 2x; only ratios measured side by side count).

Contenders:
  notebook  scripts/bench/notebook_reference.py (the notebook as a script, pinned torch)
  peer      scripts/bench/peer_lstm.py (a tuned PyTorch LSTM-64: last valid token,
            trimming, bucketing, fused Adam; the notebook's batch 32)
  peer-b128 the same at batch 128, lr 4e-3 (lstm.yaml's batch size)
  pipe-nb   pipe run pipelines/notebook.yaml (the same semantics)
  pipe-lstm pipe run pipelines/lstm.yaml (the best settings)
  pipe-lstm-plain  lstm.yaml with model.word_logits=false (what its linear
            bag-of-words term costs)
  pipe-nb-eager  notebook.yaml with train.cuda_graphs=false (on a GPU: what
            recording the step as a CUDA graph gains; the same as pipe-nb on a CPU)
  floor-lstm     scripts/bench/lstm_floor.py --shape lstm: torch's LSTM kernel alone,
            forward and backward, over an epoch of lstm.yaml's batches (CPU)
  floor-nb  the same at notebook.yaml's shapes: no pipeline keeping these
            models trains an epoch faster than its floor

For each: mean epoch time, end-to-end wall time, accuracy and macro-F1 on the
test labels, peak RSS of the whole run; then the prediction step alone (the
notebook with --epochs 0, and `pipe run --only predict` on the cached model):
its wall time, peak RSS and throughput. Throughput twice for `pipe`: over the
whole predict stage (building the model from its checkpoint, the pass,
writing the predictions to the cache) and over the pass alone, which is what
the notebook's own timing covers (forward, argmax, label names).

    source scripts/setup/env.sh
    python scripts/bench/bench.py [--data data/wordnet] [--rounds 1] [--seeds 42]
                            [--epochs 15] [--device cpu] [--contenders notebook,peer,pipe-nb,pipe-lstm]
                            [--isa AVX2] [--pipe target/release/pipe] [--json out.json]

Every result carries the machine: CPU model, ISA flags that matter here
(avx2, fma, avx512f, avx512_bf16, amx_bf16), core count, and the
ONEDNN_MAX_CPU_ISA cap. `--isa AVX2` sets that cap for every contender, so an
AVX-512 machine measures as an AVX2 one would (oneDNN obeys it; so does
`pipe`'s `precision: auto` and its optimizer kernel); it also sets
ATEN_CPU_CAPABILITY=avx2 and MKL_ENABLE_INSTRUCTIONS=AVX2, which cap torch's
own kernels and MKL's.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd, env=None, cwd=ROOT):
    """Runs a command; returns (wall seconds, peak RSS MB of the child, stdout)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 1024, text


def machine():
    """The CPU this run measures, recorded with every result."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    field = lambda name: next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith(name)), "")
    flags = set(field("flags").split())
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"]
    cores = {(l.split(":")[1].strip()) for l in info.splitlines() if l.startswith("core id")}
    isa = {f: f in flags for f in wanted}
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    native_bf16 = isa["avx512_bf16"] and (not cap or cap.upper().startswith(("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10", "ALL", "DEFAULT")))
    return {"cpu_model": field("model name"), "isa_flags": isa, "logical_cpus": os.cpu_count(),
            "physical_cores": len(cores) or None, "onednn_max_cpu_isa": cap or None,
            "aten_cpu_capability": os.environ.get("ATEN_CPU_CAPABILITY") or None,
            "mkl_enable_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS") or None,
            "cpu_class": "AVX-512 BF16" if native_bf16 else ("AVX2" if isa["avx2"] else "other")}


def notebook(a, seed, work, script="scripts/bench/notebook_reference.py", extra=()):
    report = os.path.join(work, "nb.json")
    cmd = [a.python, script, *extra, a.data, "--epochs", str(a.epochs), "--seed", str(seed),
           "--device", a.device, "--out", os.path.join(work, "nb.csv"), "--report", report]
    wall, rss, _ = run(cmd)
    r = json.load(open(report))
    predict_cmd = cmd[:]
    predict_cmd[predict_cmd.index("--epochs") + 1] = "0"
    p_wall, p_rss, _ = run(predict_cmd)
    p = json.load(open(report))
    return {
        "epoch_seconds": r["mean_epoch_seconds"], "epochs": len(r["epochs"]), "end_to_end_seconds": wall,
        "each_epoch_seconds": [e["seconds"] for e in r["epochs"]],
        "accuracy": r.get("accuracy"), "macro_f1": r.get("macro_f1"), "peak_rss_mb": rss,
        "predict_seconds": p["predict_seconds"], "predict_rows_per_second": p["predict_rows_per_second"],
        "predict_pass_seconds": p["predict_seconds"], "predict_pass_rows_per_second": p["predict_rows_per_second"],
        "predict_process_seconds": p_wall, "predict_peak_rss_mb": p_rss,
    }


def floor(a, shape, work):
    """The bare LSTM kernel's epoch at a pipeline's shapes: epoch time only."""
    if a.device != "cpu":
        sys.exit("floor-nb and floor-lstm measure the CPU's LSTM kernel: run them with --device cpu")
    report = os.path.join(work, "floor.json")
    cmd = [a.python, "scripts/bench/lstm_floor.py", a.data, "--shape", shape, "--epochs", "2", "--report", report]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    wall, rss, _ = run(cmd)
    r = json.load(open(report))
    missing = dict.fromkeys(["accuracy", "macro_f1", "predict_seconds", "predict_rows_per_second", "predict_pass_seconds",
                             "predict_pass_rows_per_second", "predict_process_seconds", "predict_peak_rss_mb"])
    return {"epoch_seconds": r["mean_epoch_seconds"], "epochs": len(r["epochs"]), "end_to_end_seconds": wall,
            "each_epoch_seconds": [e["seconds"] for e in r["epochs"]], "peak_rss_mb": rss,
            "dtype": r["dtype"], "gflop_per_second": r["gflop_per_second"], **missing}


def pipe(a, pipeline, seed, work, epochs_override, extra_sets=()):
    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    name = os.path.splitext(os.path.basename(pipeline))[0]
    sets = ["--set", f"load.dir={a.data}", "--set", f"submission.path={work}/{name}.csv",
            "--set", f"export_training.dir={work}/{name}/training", "--set", f"export_evaluation.dir={work}/{name}/evaluation"]
    if epochs_override:
        sets += ["--set", f"train.epochs={a.epochs}"]
    for setting in extra_sets:
        sets += ["--set", setting]
    base = [a.pipe, "--cache-dir", cache, "-q", "run", pipeline, "--device", a.device, "--seed", str(seed), "--json"] + sets
    env = dict(os.environ)
    if a.threads:
        env["PIPE_THREADS"] = str(a.threads)
    wall, rss, out = run(base, env=env)
    events = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    epochs = [e["values"] for e in events if e.get("event") == "metrics" and e.get("stage") == "train"]
    report = events[-1]["report"]
    ev_dir = next(s for s in report["stages"] if s["name"] == "evaluate")["outputs"]["metrics"]
    ev = json.load(open(os.path.join(ev_dir, "doc.json")))
    p_wall, p_rss, p_out = run(base + ["--only", "predict"], env=env)
    p_events = [json.loads(l) for l in p_out.splitlines() if l.startswith("{")]
    p_report = p_events[-1]["report"]
    p_pass = next(e["values"] for e in p_events if e.get("event") == "metrics" and e.get("stage") == "predict")
    predict = next(s for s in p_report["stages"] if s["name"] == "predict")
    rows = len(json.load(open(os.path.join(a.data, "test_mini.json"))))
    return {
        "epoch_seconds": statistics.mean(e["seconds"] for e in epochs), "epochs": len(epochs), "end_to_end_seconds": wall,
        "each_epoch_seconds": [e["seconds"] for e in epochs],
        "accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"], "peak_rss_mb": rss,
        "predict_seconds": predict["seconds"], "predict_rows_per_second": rows / predict["seconds"],
        "predict_pass_seconds": p_pass["seconds"], "predict_pass_rows_per_second": p_pass["rows_per_second"],
        "predict_process_seconds": p_wall, "predict_peak_rss_mb": p_rss,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/wordnet")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--epochs", type=int, default=15, help="for the notebook and notebook.yaml")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--contenders", default="notebook,peer,pipe-nb,pipe-lstm")
    ap.add_argument("--isa", default="", help="ONEDNN_MAX_CPU_ISA for every contender (e.g. AVX2)")
    ap.add_argument("--pipe", default=os.path.join(ROOT, "target/release/pipe"))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    a.data = os.path.abspath(a.data)
    if a.isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = a.isa
        if a.isa.upper() == "AVX2":
            # oneDNN (the LSTM) obeys the cap above; ATen's own vectorised
            # kernels (embedding, Adam, elementwise) and MKL's GEMMs have their
            # own switches, so an AVX2 run caps those too.
            os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
            os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    host = machine()
    print(f"machine: {host['cpu_model']} ({host['cpu_class']} class; flags {host['isa_flags']}; "
          f"{host['physical_cores']} cores; ONEDNN_MAX_CPU_ISA={host['onednn_max_cpu_isa']})", flush=True)
    contenders = a.contenders.split(",")
    results = {c: [] for c in contenders}
    with tempfile.TemporaryDirectory() as work:
        for rnd in range(a.rounds):
            for seed in a.seeds:
                for c in contenders:
                    if c == "notebook":
                        r = notebook(a, seed, work)
                    elif c == "peer":
                        r = notebook(a, seed, work, "scripts/bench/peer_lstm.py")
                    elif c == "peer-b128":
                        r = notebook(a, seed, work, "scripts/bench/peer_lstm.py", ["--batch-size", "128", "--lr", "4e-3"])
                    elif c == "pipe-nb":
                        r = pipe(a, "pipelines/notebook.yaml", seed, work, True)
                    elif c == "pipe-nb-eager":
                        r = pipe(a, "pipelines/notebook.yaml", seed, work, True, ["train.cuda_graphs=false"])
                    elif c == "pipe-lstm":
                        r = pipe(a, "pipelines/lstm.yaml", seed, work, False)
                    elif c == "pipe-lstm-plain":
                        r = pipe(a, "pipelines/lstm.yaml", seed, work, False, ["model.word_logits=false"])
                    elif c == "floor-lstm":
                        r = floor(a, "lstm", work)
                    elif c == "floor-nb":
                        r = floor(a, "notebook", work)
                    else:
                        sys.exit(f"unknown contender {c}")
                    r.update(round=rnd, seed=seed)
                    results[c].append(r)
                    print(f"[round {rnd} seed {seed}] {c}: " + ", ".join(f"{k} {v:.4g}" for k, v in r.items() if isinstance(v, float)), flush=True)

    keys = ["epoch_seconds", "end_to_end_seconds", "accuracy", "macro_f1", "peak_rss_mb",
            "predict_seconds", "predict_rows_per_second", "predict_pass_rows_per_second", "predict_process_seconds", "predict_peak_rss_mb"]
    mean = lambda values: statistics.mean(values) if values else float("nan")
    summary = {c: {k: mean([r[k] for r in rs if r[k] is not None]) for k in keys} for c, rs in results.items() if rs}
    print("\n| contender | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for c, s in summary.items():
        print(f"| {c} | " + " | ".join(f"{s[k]:.4g}" for k in keys) + " |")
    best = {c: min(r["epoch_seconds"] for r in rs) for c, rs in results.items() if rs}
    for base_name in ["notebook", "peer", "peer-b128"]:
        if base_name in best:
            print(f"\nbest epoch time ratio to {base_name} (min over rounds, each side): " +
                  ", ".join(f"{c} {t / best[base_name]:.3f}" for c, t in best.items() if c != base_name))
    if "notebook" in summary:
        base = summary["notebook"]
        print("\nratios to the notebook (pipe / notebook):")
        for c, s in summary.items():
            if c != "notebook":
                print(f"  {c}: epoch time {s['epoch_seconds'] / base['epoch_seconds']:.3f}, end to end "
                      f"{s['end_to_end_seconds'] / base['end_to_end_seconds']:.3f}, predict peak RSS "
                      f"{s['predict_peak_rss_mb'] / base['predict_peak_rss_mb']:.3f}, predict throughput "
                      f"{s['predict_rows_per_second'] / base['predict_rows_per_second']:.2f}x (stage), "
                      f"{s['predict_pass_rows_per_second'] / base['predict_pass_rows_per_second']:.2f}x (pass)")
        # The machines' speed drifts: each round's own ratio shows how far the mean can be trusted.
        print("epoch time ratio per round (same round and seed as the notebook's):")
        for c, rs in results.items():
            if c != "notebook":
                pairs = [(r, b) for r in rs for b in results["notebook"] if (b["round"], b["seed"]) == (r["round"], r["seed"])]
                print(f"  {c}: " + ", ".join(f"round {r['round']} seed {r['seed']} {r['epoch_seconds'] / b['epoch_seconds']:.3f}" for r, b in pairs))
        print("prediction throughput ratio per round, stage / pass:")
        for c, rs in results.items():
            if c != "notebook" and not c.startswith("floor"):
                pairs = [(r, b) for r in rs for b in results["notebook"] if (b["round"], b["seed"]) == (r["round"], r["seed"])]
                print(f"  {c}: " + ", ".join(f"round {r['round']} seed {r['seed']} {r['predict_rows_per_second'] / b['predict_rows_per_second']:.2f}x / "
                                             f"{r['predict_pass_rows_per_second'] / b['predict_pass_rows_per_second']:.2f}x" for r, b in pairs))
    if a.json:
        json.dump({"args": vars(a), "machine": host, "results": results, "summary": summary}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
