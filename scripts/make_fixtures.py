#!/usr/bin/env python3
"""Writes the loader test fixtures with real numpy, joblib and scikit-learn,
plus expected.json: what Python itself sees in each file. The fixtures are
committed, so the Rust tests need no Python.

    scripts/make_fixtures.py crates/pipe-artifacts/tests/fixtures
"""
import collections, hashlib, json, os, pickle, sys

import joblib, numpy as np, pandas as pd, sklearn
from sklearn.preprocessing import LabelEncoder

out = sys.argv[1]
os.makedirs(os.path.join(out, "bad"), exist_ok=True)
expected = {"versions": {"numpy": np.__version__, "joblib": joblib.__version__, "sklearn": sklearn.__version__}, "files": {}}


def record(name, **facts):
    expected["files"][name] = facts


def path(name):
    return os.path.join(out, name)


# --- .npy arrays -------------------------------------------------------------
rng = np.random.default_rng(7)
X = rng.integers(0, 50, size=(5, 7))
X[:, 4:] = 0  # post-padding
for dtype in ["int64", "int32"]:
    for order in ["C", "F"]:
        name = f"x_{dtype}_{order}.npy"
        np.save(path(name), np.asarray(X, dtype=dtype, order=order))
        assert np.load(path(name)).flags["F_CONTIGUOUS" if order == "F" else "C_CONTIGUOUS"]
        record(name, kind="npy", shape=list(X.shape), values=X.astype("int64").ravel().tolist())
y = np.array([0, 2, 1, 2, 0])
np.save(path("y.npy"), y)
record("y.npy", kind="npy", shape=[5], values=y.tolist())
np.save(path("y_uint8.npy"), y.astype("uint8"))
record("y_uint8.npy", kind="npy", shape=[5], values=y.tolist())

# --- vocabularies ----------------------------------------------------------
words = ["<PAD>", "<UNK>", "the", "a", "of", "é", "naïve", "日本", "x,y", "'q'"] + [f"w{i}" for i in range(40)]
stoi = {w: i for i, w in enumerate(words)}
for proto in [2, 4, 5]:
    name = f"vocab_p{proto}.pkl"
    joblib.dump(stoi, path(name), protocol=proto)
    record(name, kind="vocab", tokens=words)
for compress in [3]:
    name = f"vocab_zlib{compress}.pkl"
    joblib.dump(stoi, path(name), compress=compress)
    record(name, kind="vocab", tokens=words)
joblib.dump(stoi, path("vocab_gzip.pkl"), compress=("gzip", 3))
record("vocab_gzip.pkl", kind="vocab", tokens=words)
joblib.dump(collections.OrderedDict(stoi), path("vocab_ordered.pkl"))
record("vocab_ordered.pkl", kind="vocab", tokens=words)
joblib.dump({w: np.int64(i) for w, i in stoi.items()}, path("vocab_numpy_ints.pkl"))
record("vocab_numpy_ints.pkl", kind="vocab", tokens=words)
dd = collections.defaultdict(int)
dd.update(stoi)
joblib.dump(dd, path("vocab_defaultdict.pkl"))
record("vocab_defaultdict.pkl", kind="vocab", tokens=words)

# --- label encoders ----------------------------------------------------------
names = ["noun.animal", "verb.motion", "adj.all", "noun.Tops", "noun.é", "x,\"y\""]
variants = {
    "unicode": LabelEncoder().fit(names),
    "object": LabelEncoder().fit(pd.Series(names, dtype=object)),
    "int": LabelEncoder().fit([30, 10, 20, 10]),
}
for label, le in variants.items():
    classes = [c.item() if hasattr(c, "item") else c for c in le.classes_]
    for proto in [2, 4, 5]:
        for compress in [0, 3, "gzip"]:
            name = f"le_{label}_p{proto}_{'gzip' if compress == 'gzip' else 'z' + str(compress)}.pkl"
            joblib.dump(le, path(name), protocol=proto, compress=("gzip", 3) if compress == "gzip" else compress)
            record(name, kind="label_encoder", dtype=str(le.classes_.dtype), classes=classes)

# --- test records ----------------------------------------------------------------
json.dump([{"Id": 10 + i, "Text": f"t{i}"} for i in range(5)], open(path("test_mini.json"), "w"))
record("test_mini.json", kind="records", ids=[10 + i for i in range(5)])

# --- bad inputs that need Python to write ---------------------------------------
bad = lambda n: os.path.join(out, "bad", n)
np.save(bad("x_3d.npy"), np.zeros((2, 3, 4), dtype="int64"))
np.save(bad("x_float.npy"), np.zeros((2, 3), dtype="float32"))
np.save(bad("x_empty.npy"), np.zeros((0, 7), dtype="int64"))
np.save(bad("y_2d.npy"), np.zeros((5, 1), dtype="int64"))
np.save(bad("y_4.npy"), np.zeros(4, dtype="int64"))
np.save(bad("y_out_of_range.npy"), np.array([0, 1, 2, 3, 9]))
np.save(bad("x_width6.npy"), np.zeros((5, 6), dtype="int64"))
np.save(bad("x_oov.npy"), np.full((5, 7), 999, dtype="int64"))
np.savez(bad("arrays.npz"), a=np.zeros(3))
joblib.dump({"a": 0, "b": 1}, bad("vocab_no_pad.pkl"))
joblib.dump({"<PAD>": 0, "a": 1, "b": 1}, bad("vocab_duplicate_ids.pkl"))
joblib.dump({"<PAD>": 0, 5: 1}, bad("vocab_int_key.pkl"))
joblib.dump({"<PAD>": 0, "a": 1.0}, bad("vocab_float_id.pkl"))
joblib.dump({"<PAD>": 0, "a": 7}, bad("vocab_id_gap.pkl"))
joblib.dump({}, bad("vocab_empty.pkl"))
joblib.dump(stoi, bad("vocab_bz2.pkl"), compress=("bz2", 3))
joblib.dump(stoi, bad("vocab_xz.pkl"), compress=("xz", 3))
joblib.dump(stoi, bad("vocab_lzma.pkl"), compress=("lzma", 3))
with open(bad("evil.pkl"), "wb") as f:
    pickle.dump(os.system, f, protocol=4)
joblib.dump(LabelEncoder(), bad("le_unfitted.pkl"))
joblib.dump([1, 2], bad("not_a_dict.pkl"))
json.dump({"Id": 1}, open(bad("records_not_array.json"), "w"))
json.dump([{"Text": "a"}], open(bad("records_no_id.json"), "w"))
json.dump([{"Id": i} for i in range(3)], open(bad("records_3.json"), "w"))
open(bad("records_broken.json"), "w").write('[{"Id": 1},')

json.dump(expected, open(path("expected.json"), "w"), indent=1, ensure_ascii=False)
print(f"wrote {len(expected['files'])} fixtures to {out}")
