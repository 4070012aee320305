"""Run ``pipe``'s pipelines and score texts with their models from Python.

The same Rust code as the ``pipe`` command, in this process, linked to the
libtorch that this environment's torch ships::

    import pipe

    report = pipe.run("pipelines/from_raw.yaml")
    model = pipe.TextClassifier.load("pipelines/from_raw.yaml")
    model.save("bundle/")                                     # ship it; TextClassifier.load("bundle/")
    model.predict(["a small songbird of the finch family"])   # ['noun.animal']
    model.predict_proba(["..."])                              # numpy [n, classes]
    model.predict_arrow(table, text_column="Text")            # pyarrow in, pyarrow out

The GIL is released while Rust works; one classifier can be shared by
threads (its calls then run one at a time).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

# The native module links libtorch 2.11.0 (tch 0.24 binds it exactly). Another
# torch in this process would fail at load with an undefined symbol; say why
# before that happens.
TORCH_VERSION = "2.11.0"

try:
    import torch as _torch
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"pipe needs torch=={TORCH_VERSION} (its native module links that libtorch): {e}") from e

if _torch.__version__.split("+")[0] != TORCH_VERSION:
    raise ImportError(
        f"pipe was built against torch {TORCH_VERSION}, but this environment has torch {_torch.__version__}; "
        f"install torch=={TORCH_VERSION} or rebuild pipe against the torch you have"
    )

from ._pipe import NativeClassifier as _NativeClassifier  # noqa: E402
from ._pipe import PipeError, __version__  # noqa: E402
from ._pipe import run as _run  # noqa: E402

__all__ = ["run", "TextClassifier", "PipeError", "__version__", "TORCH_VERSION"]

PathLike = Union[str, "os.PathLike[str]"]


def _override_args(overrides: Optional[Mapping[str, Any]]) -> list:
    # Values travel as JSON, which the pipeline's YAML parser reads back exactly.
    return [f"{key}={json.dumps(value)}" for key, value in (overrides or {}).items()]


def run(
    pipeline: PathLike,
    only: Optional[Sequence[str]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    force: bool = False,
    cache_dir: Optional[PathLike] = None,
) -> dict:
    """Run a pipeline as ``pipe run`` does and return its report.

    ``only`` runs just those stages (their inputs from the cache);
    ``overrides`` maps ``"stage.field"`` to a value, as ``--set``;
    ``cache_dir`` defaults to ``.pipe`` in the working directory.

    The report is a dict: ``{"pipeline": ..., "stages": [{"name", "kind",
    "outcome", "seconds", "outputs", "metrics"}, ...]}``. Raises
    :class:`PipeError` with ``pipe``'s message when a stage fails.
    """
    text = _run(
        os.fspath(pipeline),
        list(only or []),
        _override_args(overrides),
        force,
        None if cache_dir is None else os.fspath(cache_dir),
    )
    report = json.loads(text)
    report["pipeline_path"] = os.fspath(pipeline)
    report["overrides"] = dict(overrides or {})
    report["cache_dir"] = None if cache_dir is None else os.fspath(cache_dir)
    return report


class _ArrowBatch:
    """Hands Arrow C data interface capsules to ``pyarrow.record_batch``."""

    def __init__(self, schema: Any, array: Any) -> None:
        self._capsules = (schema, array)

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple:
        return self._capsules


class TextClassifier:
    """A trained classifier: the model, labels and vectorizer a pipeline's
    ``predict`` stage uses, scoring raw texts."""

    def __init__(self, native: _NativeClassifier) -> None:
        self._native = native

    @classmethod
    def load(
        cls,
        source: Union[PathLike, Mapping[str, Any]],
        overrides: Optional[Mapping[str, Any]] = None,
        cache_dir: Optional[PathLike] = None,
    ) -> "TextClassifier":
        """From a bundle directory (written by :meth:`save` or ``pipe
        bundle``), a pipeline file, or a report :func:`run` returned.

        A pipeline is run first (cached stages are reused, so after a
        ``pipe run`` this only loads). A bundle needs no pipeline or cache:
        it is what to ship to the machines that score.
        """
        if not isinstance(source, Mapping) and os.path.isdir(source):
            return cls(_NativeClassifier.from_bundle(os.fspath(source)))
        if isinstance(source, Mapping):
            overrides = source.get("overrides") if overrides is None else overrides
            cache_dir = source.get("cache_dir") if cache_dir is None else cache_dir
            source = source["pipeline_path"]
        native = _NativeClassifier.from_pipeline(
            os.fspath(source), _override_args(overrides), None if cache_dir is None else os.fspath(cache_dir)
        )
        return cls(native)

    def save(self, directory: PathLike) -> None:
        """Write this classifier as a self-contained bundle directory
        (vectorizer, model, labels) that :meth:`load` and ``pipe score``
        read on machines without the pipeline or its cache. Written under a
        temporary name and renamed into place; an existing bundle there is
        replaced, any other non-empty directory refused."""
        self._native.save(os.fspath(directory))

    @property
    def digest(self) -> str:
        """Identifies the model, labels and vectorizer: equal for a pipeline's
        classifier and a bundle of it (``pipe score`` writes it to its
        manifests)."""
        return self._native.digest

    @property
    def classes(self) -> list:
        """Class names, in the order of :meth:`predict_proba`'s columns."""
        return list(self._native.classes)

    @property
    def description(self) -> str:
        return self._native.description

    def predict(self, texts: Iterable[str]) -> list:
        """The predicted class name of each text."""
        return self._native.predict(_texts(texts))

    def predict_proba(self, texts: Iterable[str]) -> Any:
        """Class probabilities, a float32 numpy array ``[len(texts), len(classes)]``."""
        import numpy as np

        texts = _texts(texts)
        raw = self._native.predict_proba_bytes(texts)
        return np.frombuffer(raw, dtype=np.float32).reshape(len(texts), len(self.classes))

    def predict_arrow(self, data: Any, text_column: str = "Text", top_k: int = 1) -> Any:
        """Score a ``pyarrow.RecordBatch`` or ``Table``, a pandas or a polars
        DataFrame through the Arrow C data interface: the text column is
        read from Arrow's buffers in place.

        Returns the same kind of Arrow object (a ``RecordBatch`` for a batch, a
        ``Table`` otherwise) with ``Category`` and ``Probability`` columns
        (and ``Category_2``, ``Probability_2``, … up to ``top_k``), one row
        per input row, in order.
        """
        import pyarrow as pa

        if isinstance(data, pa.RecordBatch):
            return self._score_batch(data, text_column, top_k)
        if isinstance(data, pa.Table):
            table = data
        elif hasattr(data, "to_arrow"):  # polars
            table = data.to_arrow()
        elif type(data).__module__.startswith("pandas"):
            table = pa.Table.from_pandas(data, preserve_index=False)
        else:
            raise TypeError(f"expected a pyarrow RecordBatch or Table, or a pandas or polars DataFrame, not {type(data).__name__}")
        batches = [self._score_batch(batch, text_column, top_k) for batch in table.to_batches()]
        if not batches:
            empty = self._score_batch(pa.record_batch({text_column: pa.array([], pa.string())}), text_column, top_k)
            return pa.Table.from_batches([], schema=empty.schema)
        return pa.Table.from_batches(batches)

    def _score_batch(self, batch: Any, text_column: str, top_k: int) -> Any:
        import pyarrow as pa

        schema, array = batch.__arrow_c_array__()
        out_schema, out_array = self._native.predict_arrow_capsules(schema, array, text_column, top_k)
        return pa.record_batch(_ArrowBatch(out_schema, out_array))

    def __repr__(self) -> str:
        return f"TextClassifier({self.description}, {len(self.classes)} classes)"


def _texts(texts: Iterable[str]) -> list:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, not str")
    return texts
