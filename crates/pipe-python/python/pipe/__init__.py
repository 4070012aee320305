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

Ctrl-C stops :func:`run` (and :meth:`TextClassifier.load` of a pipeline) as
it stops ``pipe run``: the running ``exec`` commands are killed, scratch
directories removed, nothing of the interrupted stage is cached, and
``KeyboardInterrupt`` is raised.

Forked processes (``os.fork``, multiprocessing's ``fork`` start method) may
use a classifier loaded before the fork: a fork waits for the classifier
calls in flight in other threads to end, and in the child torch runs on one
thread (torch's OpenMP thread pool does not survive a fork).
"""

from __future__ import annotations

import contextlib
import json
import numbers
import os
import signal
import threading
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

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

from ._pipe import DEFAULT_BATCH_SIZE  # noqa: E402
from ._pipe import NativeClassifier as _NativeClassifier  # noqa: E402
from ._pipe import PipeError, __version__  # noqa: E402
from ._pipe import _after_fork, _before_fork, _clean_up  # noqa: E402
from ._pipe import run as _run  # noqa: E402

__all__ = ["run", "TextClassifier", "PipeError", "__version__", "TORCH_VERSION"]

PathLike = Union[str, "os.PathLike[str]"]


def _after_fork_in_child() -> None:
    _after_fork()
    # GNU OpenMP's worker threads (torch's intra-op pool) are not in the
    # child: with more than one thread, torch's next parallel operation
    # would wait for them forever.
    _torch.set_num_threads(1)


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork_in_child)


def _override_args(overrides: Optional[Mapping[str, Any]]) -> list:
    # Values travel as JSON, which the pipeline's YAML parser reads back exactly.
    return [f"{key}={json.dumps(value)}" for key, value in (overrides or {}).items()]


@contextlib.contextmanager
def _torch_rng_kept() -> Iterator[None]:
    """Restores torch's global random generators after a run: a pipeline
    seeds them (``seed:``) and must not change what the caller's torch code
    draws next."""
    cpu = _torch.get_rng_state()
    cuda = _torch.cuda.get_rng_state_all() if _torch.cuda.is_available() and _torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        _torch.set_rng_state(cpu)
        if cuda is not None:
            _torch.cuda.set_rng_state_all(cuda)


@contextlib.contextmanager
def _clean_up_on_sigterm() -> Iterator[None]:
    """While a run goes on in the main thread: on SIGTERM, kill the running
    ``exec`` commands and remove scratch directories, then let the signal do
    what it did before (end the process, or call the previous handler).
    Elsewhere Python cannot handle signals; an ignored SIGTERM stays ignored,
    and a handler set outside Python is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        _clean_up()
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL: end the process, as SIGTERM would have
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is on_sigterm:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _running() -> Iterator[None]:
    with _torch_rng_kept(), _clean_up_on_sigterm():
        yield


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

    A ``kind: python`` stage's function runs in a worker process of this
    interpreter (``sys.executable``) unless the stage's ``python:`` or
    ``$PIPE_PYTHON`` names another.

    Ctrl-C raises ``KeyboardInterrupt`` within about a second: the
    running ``exec`` commands and Python stage workers are killed, scratch removed, and nothing of the
    interrupted stage is cached. SIGTERM, during a run in the main thread,
    does the same clean-up before it ends the process (or calls the handler
    that was set). torch's global random state is left as it was.
    """
    with _running():
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

    #: Texts encoded and scored at a time: bounds the memory a call uses
    #: beyond its input and output, whatever their length.
    batch_size: int = DEFAULT_BATCH_SIZE

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
        ``pipe run`` this only loads; Ctrl-C stops it as it stops
        :func:`run`). A bundle needs no pipeline or cache: it is what to ship
        to the machines that score.
        """
        if not isinstance(source, Mapping) and os.path.isdir(source):
            return cls(_NativeClassifier.from_bundle(os.fspath(source)))
        if isinstance(source, Mapping):
            overrides = source.get("overrides") if overrides is None else overrides
            cache_dir = source.get("cache_dir") if cache_dir is None else cache_dir
            source = source["pipeline_path"]
        with _running():
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
        """The predicted class name of each text.

        ``texts`` is a list (or any iterable) of ``str``, a pandas or polars
        Series of strings (categorical ones too), or a pyarrow array of
        strings. A single ``str`` is refused: wrap it in a list.
        """
        return self._native.predict(_texts(texts), self.batch_size)

    def predict_proba(self, texts: Iterable[str]) -> Any:
        """Class probabilities, a writable float32 numpy array
        ``[len(texts), len(classes)]``; ``texts`` as for :meth:`predict`."""
        import numpy as np

        texts = _texts(texts)
        raw = self._native.predict_proba_bytes(texts, self.batch_size)
        return np.frombuffer(raw, dtype=np.float32).reshape(len(texts), len(self.classes))

    def predict_arrow(self, data: Any, text_column: str = "Text", top_k: int = 1) -> Any:
        """Score a ``pyarrow.RecordBatch`` or ``Table``, a pandas or a polars
        DataFrame through the Arrow C data interface: the text column is
        read from Arrow's buffers in place (a dictionary-encoded one, such as
        a categorical column, is decoded first). A pandas or polars Series or
        a pyarrow array is scored as the text column.

        Returns the same kind of Arrow object (a ``RecordBatch`` for a batch, a
        ``Table`` otherwise) with ``Category`` and ``Probability`` columns
        (and ``Category_2``, ``Probability_2``, … up to ``top_k``), one row
        per input row, in order. A missing, null or malformed text raises
        :class:`PipeError` naming the column and the row (counted from the
        table's first row); a ``top_k`` outside 1 to ``len(classes)``
        raises ``ValueError``.
        """
        import pyarrow as pa

        top_k = _check_top_k(top_k, len(self._native.classes))
        if isinstance(data, pa.RecordBatch):
            return self._score_batch(_decoded_batch(data, text_column), text_column, top_k, 0)
        table = _decoded_table(_arrow_table(data, text_column), text_column)
        batches = table.to_batches()
        if not batches:
            # Scored all the same, so that the column is checked and the
            # result has its columns.
            batches = [pa.RecordBatch.from_pylist([], schema=table.schema)]
        scored, first_row = [], 0
        for batch in batches:
            scored.append(self._score_batch(batch, text_column, top_k, first_row))
            first_row += batch.num_rows
        return pa.Table.from_batches(scored)

    def _score_batch(self, batch: Any, text_column: str, top_k: int, first_row: int) -> Any:
        import pyarrow as pa

        _check_text_buffers(batch, text_column, first_row)
        schema, array = batch.__arrow_c_array__()
        out_schema, out_array = self._native.predict_arrow_capsules(schema, array, text_column, top_k, first_row, self.batch_size)
        return pa.record_batch(_ArrowBatch(out_schema, out_array))

    def __repr__(self) -> str:
        return f"TextClassifier({self.description}, {len(self.classes)} classes)"


def _check_top_k(top_k: Any, classes: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral):
        raise TypeError(f"top_k must be an int, not {type(top_k).__name__}")
    if not 1 <= top_k <= classes:
        raise ValueError(f"top_k must be between 1 and the model's {classes} classes, not {top_k}")
    return int(top_k)


def _module_of(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def _is_series(value: Any) -> bool:
    """A pandas or polars Series, or a pyarrow Array or ChunkedArray."""
    import sys

    if _module_of(value) in ("pandas", "polars"):
        return type(value).__name__ == "Series"
    pa = sys.modules.get("pyarrow")
    return pa is not None and isinstance(value, (pa.Array, pa.ChunkedArray))


def _series_as_list(series: Any) -> list:
    """The values of a Series or pyarrow array, categorical ones as their strings."""
    module = _module_of(series)
    if module == "pandas":
        if str(series.dtype) == "category":
            series = series.astype(object)
        return series.tolist()
    if module == "polars":
        import polars as pl

        if isinstance(series.dtype, (pl.Categorical, pl.Enum)):
            series = series.cast(pl.String)
        return series.to_list()
    return series.to_pylist()


def _texts(texts: Any) -> list:
    if isinstance(texts, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"texts must be a list of str, not one {type(texts).__name__}: to score one text, pass [text]")
    texts = _series_as_list(texts) if _is_series(texts) else list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            missing = t is None or (isinstance(t, float) and t != t)
            raise TypeError(f"text {i} is {'missing (' + repr(t) + ')' if missing else type(t).__name__}, not str")
    return texts


def _arrow_table(data: Any, text_column: str) -> Any:
    """``data`` as a pyarrow Table: a Series as its one text column."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if _is_series(data):
        module = _module_of(data)
        if module == "pandas":
            column = pa.Array.from_pandas(data)
        elif module == "polars":
            column = data.to_arrow()
        else:
            column = data
        return pa.table({text_column: column})
    if _module_of(data) == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    if _module_of(data) == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(
        f"expected a pyarrow RecordBatch or Table, a pandas or polars DataFrame or Series, or a pyarrow array, not {type(data).__name__}"
    )


def _check_text_buffers(batch: Any, text_column: str, first_row: int) -> None:
    """pyarrow knows how long its buffers are, which the C data interface
    does not tell the native side: it checks, as bytes, that the text
    column's offsets or views stay inside them. (UTF-8 is checked natively,
    which names the row; so are missing and non-text columns.)"""
    import pyarrow as pa

    i = batch.schema.get_field_index(text_column)
    if i < 0:
        return
    column = batch.column(i)
    as_bytes = {pa.string(): pa.binary(), pa.large_string(): pa.large_binary(), pa.string_view(): pa.binary_view()}.get(column.type)
    if as_bytes is None:
        return
    try:
        column.view(as_bytes).validate(full=True)
    except pa.ArrowInvalid as e:
        last = first_row + max(batch.num_rows - 1, 0)
        raise PipeError(f"column `{text_column}` (rows {first_row} to {last}) is not a well-formed Arrow array: {e}") from None


def _decoded_table(table: Any, text_column: str) -> Any:
    """``table`` with a dictionary-encoded (categorical) text column decoded to strings."""
    import pyarrow as pa

    i = table.schema.get_field_index(text_column)
    if i < 0 or not pa.types.is_dictionary(table.schema.field(i).type):
        return table
    return table.set_column(i, text_column, table.column(i).cast(table.schema.field(i).type.value_type))


def _decoded_batch(batch: Any, text_column: str) -> Any:
    import pyarrow as pa

    i = batch.schema.get_field_index(text_column)
    if i < 0 or not pa.types.is_dictionary(batch.schema.field(i).type):
        return batch
    columns = list(batch.columns)
    columns[i] = columns[i].dictionary_decode()
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
