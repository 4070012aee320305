#!/usr/bin/env python3
"""Writes crates/pipe-linear/tests/fixtures/sklearn_wordnet.json: what
scikit-learn's TfidfVectorizer (word 1-2-grams, sublinear TF) + LinearSVC
(balanced class weights), and ComplementNB (alpha 0.3) on the same features,
compute on the first rows of data/wordnet, read as
`pipe` reads them (token ids back to their text through the vocabulary), for
the parity test in crates/pipe-linear/tests/sklearn_parity.rs.

    source scripts/env.sh && python scripts/make_linear_fixture.py [--train 6000] [--test 2000]
"""
import argparse, json, os

import joblib
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--data", default=os.path.join(ROOT, "data/wordnet"))
ap.add_argument("--train", type=int, default=6000)
ap.add_argument("--test", type=int, default=2000)
ap.add_argument("--out", default=os.path.join(ROOT, "crates/pipe-linear/tests/fixtures/sklearn_wordnet.json"))
a = ap.parse_args()
p = lambda f: os.path.join(a.data, f)

stoi = joblib.load(p("vocab_stoi.pkl"))
itos = {i: t for t, i in stoi.items()}
pad = stoi["<PAD>"]
le = joblib.load(p("label_encoder.pkl"))
x_train = np.load(p("X_train_seq.npy"))[: a.train]
y_train = np.load(p("y_train.npy"))[: a.train]
x_test = np.load(p("X_test_seq.npy"))[: a.test]
truth = pd.read_json(p("test_labels.json"), orient="records")["Category"].astype(str)[: a.test]
truth_ids = le.transform(truth)

text = lambda rows: [" ".join(itos[int(i)] for i in row if i != pad) for row in rows]
vectorizer = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, ngram_range=(1, 2), sublinear_tf=True, dtype=np.float64)
features = vectorizer.fit_transform(text(x_train))
svm = LinearSVC(C=1.0, class_weight="balanced").fit(features, y_train)
test_features = vectorizer.transform(text(x_test))
predicted = svm.predict(test_features)
NB_ALPHA = 0.3
nb = ComplementNB(alpha=NB_ALPHA).fit(features, y_train)
assert list(nb.classes_) == list(range(len(le.classes_))), "every class has training rows"
nb_predicted = nb.predict(test_features)

names = vectorizer.get_feature_names_out()
row0 = features[0].tocoo()
fixture = {
    "train_rows": a.train,
    "test_rows": a.test,
    "features": len(names),
    "row0_tfidf": {names[c]: float(v) for c, v in zip(row0.col, row0.data)},
    "idf_of": {names[c]: float(vectorizer.idf_[c]) for c in row0.col},
    "predictions": [int(c) for c in predicted],
    "truth": [int(c) for c in truth_ids],
    "macro_f1": float(f1_score(truth_ids, predicted, average="macro")),
    "accuracy": float((predicted == truth_ids).mean()),
    "complement_nb": {
        "alpha": NB_ALPHA,
        # The classes' scores (joint log-likelihoods) of the first test rows.
        "scores": nb._joint_log_likelihood(test_features[:5]).tolist(),
        "predictions": [int(c) for c in nb_predicted],
        "macro_f1": float(f1_score(truth_ids, nb_predicted, average="macro")),
    },
}
with open(a.out, "w") as f:
    json.dump(fixture, f)
print(f"{len(names)} features; scikit-learn macro-F1 {fixture['macro_f1']:.4f}, accuracy {fixture['accuracy']:.4f}; "
      f"ComplementNB macro-F1 {fixture['complement_nb']['macro_f1']:.4f}")
