"""Text cleaning for pipelines/python_clean.yaml: a `kind: python` stage.

`pipe` calls `clean_records(train=..., test=..., **args)` with each input as
a pyarrow.Table and stores the dict it returns as the stage's two outputs.
Edit this file and `pipe run` reruns this stage and what depends on it.
"""

import html

import pandas as pd
import pyarrow as pa

MARKUP = r"<[^>]*>"
SPACES = r"\s+"


def clean_texts(texts: pd.Series, lowercase: bool) -> pd.Series:
    """Markup and HTML entities out, whitespace collapsed, optionally lower-cased."""
    texts = texts.fillna("").astype(str).map(html.unescape)
    texts = texts.str.replace(MARKUP, " ", regex=True).str.replace(SPACES, " ", regex=True).str.strip()
    return texts.str.lower() if lowercase else texts


def clean_records(
    train: pa.Table, test: pa.Table, text_field: str = "Text", lowercase: bool = True
) -> dict:
    """Both sets cleaned the same way; training records left empty are dropped
    (an empty text teaches the model nothing), test records all kept."""
    cleaned = {}
    for name, table in (("train", train), ("test", test)):
        frame = table.to_pandas()
        frame[text_field] = clean_texts(frame[text_field], lowercase)
        if name == "train":
            frame = frame[frame[text_field] != ""]
        cleaned[name] = frame.reset_index(drop=True)
    return cleaned
