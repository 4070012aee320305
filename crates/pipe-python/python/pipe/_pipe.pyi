"""Type stubs of the native module (crates/pipe-python/src/lib.rs)."""

from typing import Optional, Sequence

__version__: str
DEFAULT_BATCH_SIZE: int

class PipeError(Exception):
    """A pipeline, model or input problem, with the message `pipe` would print."""

def run(
    pipeline: str,
    only: Sequence[str] = ...,
    overrides: Sequence[str] = ...,
    force: bool = ...,
    cache_dir: Optional[str] = ...,
) -> str: ...
def _clean_up() -> None: ...
def _before_fork() -> None: ...
def _after_fork() -> None: ...

class NativeClassifier:
    classes: list[str]
    description: str
    digest: str
    @staticmethod
    def from_pipeline(pipeline: str, overrides: Sequence[str] = ..., cache_dir: Optional[str] = ...) -> NativeClassifier: ...
    @staticmethod
    def from_bundle(dir: str) -> NativeClassifier: ...
    def save(self, dir: str) -> None: ...
    def predict(self, texts: Sequence[str], batch_size: int = ...) -> list[str]: ...
    def predict_proba_bytes(self, texts: Sequence[str], batch_size: int = ...) -> bytearray: ...
    def predict_arrow_capsules(
        self,
        schema: object,
        array: object,
        text_column: str,
        top_k: int = ...,
        first_row: int = ...,
        batch_size: int = ...,
    ) -> tuple[object, object]: ...
