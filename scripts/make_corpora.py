#!/usr/bin/env python3
"""Builds labelled corpora from real text on a Debian machine, with shapes unlike
WordNet's, to check that a model or its settings hold beyond one corpus:

- `debian`: the one-line description of every package in Debian bookworm's
  main archive (apt's package list), labelled by its archive section
  (`libs`, `python`, `games`, …). Short technical texts, ~60k rows, ~58
  strongly imbalanced classes.
- `docstrings`: the docstrings of functions and classes in 41 packages of
  Python's standard library and the project venv (DOCSTRING_PACKAGES; read
  with `ast`, nothing imported), labelled by the integer id of their
  top-level package. Long texts, few rows per class (at most 250), integer
  classes. Package versions are not pinned, so the texts may drift a little.

Records are `{"Id", "Text", "Category"}` as in data/corpus; the split is a
stable hash of the text (80/20) and records come in hash order, so the first N
of either file are a fair sample. Duplicate texts are kept once (first label).

  python scripts/make_corpora.py OUT_ROOT [--only debian,docstrings]

then, for the notebook's artifacts:

  python scripts/make_artifacts.py OUT_ROOT/debian OUT_DIR --max-len 32
  python scripts/make_artifacts.py OUT_ROOT/docstrings OUT_DIR --max-len 96 --padding pre
"""
import argparse, ast, glob, hashlib, json, os, subprocess, sys

PACKAGE_LISTS = "/var/lib/apt/lists/*_debian_dists_bookworm_main_binary-*_Packages*"


def stable_hash(text):
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def write_split(records, out_dir):
    """80/20 by a stable hash of the text, each file in hash order; one record per text."""
    seen, unique = set(), []
    for text, category in records:
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            unique.append((stable_hash(text), text, category))
    unique.sort()
    train, test = [], []
    for i, (h, text, category) in enumerate(unique):
        record = {"Id": h, "Text": text, "Category": category}
        (test if int(h, 16) % 5 == 0 else train).append(record)
    os.makedirs(out_dir, exist_ok=True)
    for name, rows in (("train.json", train), ("test.json", test)):
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(rows, f)
    classes = len({r["Category"] for r in train})
    print(f"{out_dir}: {len(train)} train, {len(test)} test, {classes} classes")


def package_list_text():
    paths = sorted(glob.glob(PACKAGE_LISTS))
    if not paths:
        sys.exit(f"no Debian package list matches {PACKAGE_LISTS} (run `apt-get update` first)")
    path = paths[0]
    if path.endswith(".lz4"):
        # apt's own helper reads every compression apt writes.
        return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], check=True, capture_output=True, text=True).stdout
    return open(path).read()


def debian_records():
    records = []
    for stanza in package_list_text().split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line[:1].strip() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Description" in fields and "Section" in fields:
            # "contrib/net" and "net" are one section.
            records.append((fields["Description"], fields["Section"].split("/")[-1]))
    return records


def python_roots():
    import sysconfig
    roots = [sysconfig.get_paths()["stdlib"]]
    roots += [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    return roots


# The packages whose docstrings make the corpus: the standard library's and
# those scripts/requirements.txt installs into the project's venv (with their
# dependencies). Fixed, so that packages installed later do not add classes.
DOCSTRING_PACKAGES = (
    "asyncio click dask distributed distutils email filelock fsspec idlelib importlib jinja2 joblib "
    "lib2to3 logging mpmath multiprocessing narwhals networkx numpy packaging pandas pip pkg_resources "
    "polars psutil py4j pyarrow pygments pyspark scipy setuptools sklearn sortedcontainers sympy "
    "tkinter torch tornado triton turtle unittest xml"
).split()


def docstring_records(per_class=250, min_per_class=120):
    by_package = {}
    for root in python_roots():
        for path in sorted(glob.glob(os.path.join(root, "**", "*.py"), recursive=True)):
            rel = os.path.relpath(path, root)
            top = rel.split(os.sep)[0].removesuffix(".py")
            if top not in DOCSTRING_PACKAGES or "tests" in rel.split(os.sep):
                continue
            try:
                tree = ast.parse(open(path, encoding="utf-8").read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc.split()) >= 8:
                        by_package.setdefault(top, []).append(doc)
    # Many rows per package exist; keep a sample per package, chosen by hash so
    # the corpus does not depend on file order.
    kept = {p: sorted(docs, key=stable_hash)[:per_class] for p, docs in by_package.items() if len(docs) >= min_per_class}
    missing = sorted(set(DOCSTRING_PACKAGES) - set(kept))
    if missing:
        print(f"docstrings: warning: too few or no docstrings from {', '.join(missing)}: the corpus has fewer classes than the README's", file=sys.stderr)
    ids = {p: i for i, p in enumerate(sorted(kept))}
    print("docstrings: packages " + ", ".join(f"{i}={p}" for p, i in ids.items()))
    return [(doc, ids[p]) for p, docs in kept.items() for doc in docs]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_root")
    ap.add_argument("--only", default="debian,docstrings")
    a = ap.parse_args()
    wanted = a.only.split(",")
    if "debian" in wanted:
        write_split(debian_records(), os.path.join(a.out_root, "debian"))
    if "docstrings" in wanted:
        write_split(docstring_records(), os.path.join(a.out_root, "docstrings"))


if __name__ == "__main__":
    main()
