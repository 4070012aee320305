#!/usr/bin/env python3
"""The baselines a user would try first (issue 7's table), on the raw corpus:
TF-IDF (1-2-grams) + LinearSVC with balanced class weights, and fastText
supervised with word bigrams for 25 epochs. Same records as
scripts/fixtures/make_artifacts.py (the first N train / test records; test
records with a class unknown to training left out), the same tokens
(lowercase, \\w+|[^\\w\\s]).

  python scripts/bench/baselines.py data/corpus [--train 30000] [--test 7500] [--only tfidf,fasttext]
                              [--fasttext-lr 0.1] [--json out.json]
  python scripts/bench/baselines.py data/wordnet --from-artifacts [...]

With --from-artifacts the folder holds the notebook's artifacts (and
test_labels.json) instead of a corpus: the baselines then see what pipe sees,
each row's ids turned back into its words through the vocabulary (so rows cut
at max_len, rare words as the unknown token).

TF-IDF needs scikit-learn (the pinned venv has it). fastText needs the
`fasttext` module, which the pinned venv does not carry; run that part from a
venv with `pip install fasttext-wheel 'numpy<2'`.
"""
import argparse, json, os, re, sys, tempfile, time


def tokens(text):
    return re.findall(r"\w+|[^\w\s]", text.lower())


def macro_f1(truth, pred):
    """sklearn's f1_score(average="macro"): the mean F1 over every label in truth or prediction."""
    f1s = []
    for c in sorted(set(truth) | set(pred)):
        tp = sum(1 for t, p in zip(truth, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred) if t == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def tfidf_svm(train, test):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC
    from sklearn.metrics import f1_score
    start = time.perf_counter()
    vec = TfidfVectorizer(ngram_range=(1, 2), tokenizer=tokens, token_pattern=None, lowercase=False)
    x = vec.fit_transform([r["Text"] for r in train])
    clf = LinearSVC(class_weight="balanced").fit(x, [r["Category"] for r in train])
    seconds = time.perf_counter() - start
    pred = clf.predict(vec.transform([r["Text"] for r in test]))
    truth = [r["Category"] for r in test]
    acc = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    return {"accuracy": acc, "macro_f1": f1_score(truth, pred, average="macro"), "train_seconds": seconds}


def fasttext_supervised(train, test, threads, lr):
    import fasttext
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for r in train:
            f.write(f"__label__{r['Category']} {' '.join(tokens(r['Text']))}\n")
        path = f.name
    start = time.perf_counter()
    model = fasttext.train_supervised(input=path, epoch=25, wordNgrams=2, lr=lr, thread=threads, verbose=0)
    seconds = time.perf_counter() - start
    os.unlink(path)
    pred = [model.predict(" ".join(tokens(r["Text"])))[0][0][len("__label__"):] for r in test]
    # fastText's labels are strings; integer classes are compared as their text.
    truth = [str(r["Category"]) for r in test]
    acc = sum(p == t for p, t in zip(pred, truth)) / len(truth)
    return {"accuracy": acc, "macro_f1": macro_f1(truth, pred), "train_seconds": seconds}


def artifact_records(folder):
    """Train and labelled test records rebuilt from a folder of the notebook's artifacts."""
    import joblib, numpy as np
    stoi = joblib.load(os.path.join(folder, "vocab_stoi.pkl"))
    words = {i: w for w, i in stoi.items()}
    pad = stoi.get("<PAD>", 0)
    encoder = joblib.load(os.path.join(folder, "label_encoder.pkl"))
    text = lambda row: " ".join(words[int(i)] for i in row if i != pad)
    x_train = np.load(os.path.join(folder, "X_train_seq.npy"))
    categories = encoder.inverse_transform(np.load(os.path.join(folder, "y_train.npy")))
    train = [{"Text": text(row), "Category": c.item() if hasattr(c, "item") else c} for row, c in zip(x_train, categories)]
    ids = [r["Id"] for r in json.load(open(os.path.join(folder, "test_mini.json")))]
    truth = {r["Id"]: r["Category"] for r in json.load(open(os.path.join(folder, "test_labels.json")))}
    x_test = np.load(os.path.join(folder, "X_test_seq.npy"))
    test = [{"Text": text(row), "Category": truth[i]} for i, row in zip(ids, x_test) if i in truth]
    return train, test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("--train", type=int, default=0)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--only", default="tfidf,fasttext")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fasttext-lr", type=float, default=0.1, help="fastText's own default")
    ap.add_argument("--json", default="")
    ap.add_argument("--from-artifacts", action="store_true", help="the folder holds the notebook's artifacts")
    a = ap.parse_args()
    if a.from_artifacts:
        train, test = artifact_records(a.corpus)
    else:
        train = json.load(open(os.path.join(a.corpus, "train.json")))
        test = json.load(open(os.path.join(a.corpus, "test.json")))
    if a.train:
        train = train[: a.train]
    if a.test:
        test = test[: a.test]
    known = {r["Category"] for r in train}
    test = [r for r in test if r["Category"] in known]
    results = {"train_rows": len(train), "test_rows": len(test)}
    for name in a.only.split(","):
        run = {"tfidf": lambda: tfidf_svm(train, test), "fasttext": lambda: fasttext_supervised(train, test, a.threads, a.fasttext_lr)}[name]
        results[name] = run()
        r = results[name]
        print(f"{name}: accuracy {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f} train {r['train_seconds']:.1f}s", flush=True)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
