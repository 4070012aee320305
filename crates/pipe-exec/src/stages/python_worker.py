"""The worker behind a `kind: python` stage: `pipe` runs it in a fresh
interpreter as `python -u python_worker.py SPEC.json`.

SPEC names the function to call, its inputs (each an artifact directory as
`pipe` saved it, with its type), each output's directory and declared type,
and keyword arguments. The worker loads each input into the form Python users
work with, calls the function, checks what it returned against the declared
outputs and writes each in the files `pipe` loads back. Any failure writes
ERROR.json beside SPEC (what went wrong, and the traceback for the user's
own code) and exits with status 1.
"""

import importlib
import importlib.util
import json
import os
import sys
import traceback


class Contract(Exception):
    """The function or what it returned does not match the stage's declaration."""


# Each type's file, as the Rust side's `Artifact::save` writes it.
FRAME_FILE = "frame.parquet"
ARRAY_FILE = "array.npy"
JSON_FILES = {
    "json": "doc.json",
    "table": "table.json",
    "label_set": "labels.json",
    "vocabulary": "vocabulary.json",
}


def plain_type(t):
    """`t` with Arrow's view types (which `pipe` writes strings as) made the
    large types every Arrow library reads; other types as they are."""
    import pyarrow as pa

    if pa.types.is_string_view(t):
        return pa.large_string()
    if pa.types.is_binary_view(t):
        return pa.large_binary()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.large_list(plain_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(plain_type(f.type)) for f in t])
    return t


def load(kind, directory):
    """An input artifact, as Python sees it."""
    if kind == "frame":
        import pyarrow as pa
        import pyarrow.parquet as pq

        # Memory-mapped, columns cast as whole buffers: pandas (`to_pandas`)
        # and polars (`polars.from_arrow`) take them without a copy per row.
        table = pq.read_table(os.path.join(directory, FRAME_FILE), memory_map=True)
        schema = pa.schema([f.with_type(plain_type(f.type)) for f in table.schema])
        return table if schema == table.schema else table.cast(schema)
    if kind == "int_array":
        import numpy as np

        return np.load(os.path.join(directory, ARRAY_FILE), allow_pickle=False)
    if kind == "files":
        files = {}
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), "rb") as f:
                files[name] = f.read()
        return files
    with open(os.path.join(directory, JSON_FILES[kind]), encoding="utf-8") as f:
        doc = json.load(f)
    if kind == "table":
        return {column["name"]: column["values"] for column in doc["columns"]}
    if kind == "label_set":
        return doc["values"]
    return doc


def unsupported(t):
    """Why pipe's frames cannot hold an Arrow type, or None: they hold
    strings, numbers, booleans, binary, and lists, structs and dictionaries
    of those."""
    import pyarrow as pa

    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_temporal(t):
        return "a date or time"
    if pa.types.is_float16(t):
        return "float16"
    if pa.types.is_fixed_size_list(t):
        return "a fixed-size list"
    if isinstance(t, pa.ExtensionType):
        return "an extension type"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return unsupported(t.value_type)
    if pa.types.is_struct(t):
        return next((why for why in (unsupported(f.type) for f in t) if why), None)
    if pa.types.is_dictionary(t):
        return unsupported(t.value_type)
    return None


def checked_types(port, table):
    for field in table.schema:
        why = unsupported(field.type)
        if why:
            raise Contract(
                f"output `{port}`: column `{field.name}` is {field.type} ({why}), which a frame "
                "cannot hold; cast it first (to a string, an integer or a float)"
            )
    return table


def arrow_table(port, value):
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return checked_types(port, value)
    module = type(value).__module__.split(".")[0]
    if module == "pandas" and type(value).__name__ == "DataFrame":
        # A named or multi-level index (a groupby's keys) becomes columns, as
        # pandas' own to_parquet does; the default 0..n-1 index is left out.
        return checked_types(port, pa.Table.from_pandas(value, preserve_index=None))
    if module == "polars" and type(value).__name__ == "DataFrame":
        return checked_types(port, value.to_arrow())
    if isinstance(value, dict):
        try:
            return checked_types(port, pa.table(value))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise Contract(f"output `{port}` is declared `frame`: its dict is not a table of columns: {e}")
    raise Contract(
        f"output `{port}` is declared `frame`: return a pyarrow.Table, a pandas or polars "
        f"DataFrame or a dict of columns, not {type(value).__module__}.{type(value).__name__}"
    )


def write_json(port, kind, value, directory):
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise Contract(f"output `{port}` is declared `{kind}` but is not JSON: {e}")
    with open(os.path.join(directory, JSON_FILES[kind]), "w", encoding="utf-8") as f:
        f.write(text)


def save(port, kind, value, directory):
    """Writes one returned value as the declared type's files."""
    if kind == "frame":
        import pyarrow.parquet as pq

        pq.write_table(arrow_table(port, value), os.path.join(directory, FRAME_FILE))
    elif kind == "int_array":
        import numpy as np

        array = np.asarray(value)
        if array.dtype.kind not in "iub":
            raise Contract(
                f"output `{port}` is declared `int_array` but is an array of {array.dtype}"
            )
        if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise Contract(f"output `{port}`: a value is past int64's range ({array.max()})")
        np.save(os.path.join(directory, ARRAY_FILE), np.ascontiguousarray(array, dtype=np.int64))
    elif kind == "files":
        if not isinstance(value, dict):
            raise Contract(f"output `{port}` is declared `files`: return a dict of file name to bytes or str")
        for name, content in value.items():
            if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
                raise Contract(f"output `{port}`: {name!r} is not a plain file name")
            data = content.encode("utf-8") if isinstance(content, str) else content
            if not isinstance(data, (bytes, bytearray)):
                raise Contract(f"output `{port}`: file {name!r} is {type(content).__name__}, not bytes or str")
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
    elif kind == "table":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise Contract(f"output `{port}` is declared `table`: return a dict of column name to list")
        for name, values in value.items():
            if not isinstance(values, (list, tuple)):
                raise Contract(
                    f"output `{port}`: column `{name}` is a {type(values).__name__}, not a list"
                )
        columns = [{"name": name, "values": list(values)} for name, values in value.items()]
        if len({len(c["values"]) for c in columns}) > 1:
            raise Contract(f"output `{port}` is declared `table` but its columns differ in length")
        write_json(port, kind, {"columns": columns}, directory)
    elif kind == "label_set":
        values = list(value) if isinstance(value, (list, tuple)) else None
        if values is not None and all(isinstance(v, str) for v in values):
            write_json(port, kind, {"dtype": "strings", "values": values}, directory)
        elif values is not None and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            write_json(port, kind, {"dtype": "integers", "values": values}, directory)
        else:
            raise Contract(f"output `{port}` is declared `label_set`: return a list of str or of int")
    else:
        write_json(port, kind, value, directory)


def resolve(spec):
    """The function SPEC names, imported as Python would."""
    sys.path[:0] = spec["python_path"]
    module_name, name = spec["module"], spec["name"]
    try:
        if spec.get("file"):
            found = importlib.util.spec_from_file_location(module_name, spec["file"])
            module = importlib.util.module_from_spec(found)
            sys.modules[module_name] = module
            found.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise Contract(f"cannot import `{module_name}`: no such module under {spec['python_path']}")
        raise
    loaded = os.path.realpath(getattr(module, "__file__", None) or "")
    if loaded != os.path.realpath(spec["source"]):
        raise Contract(
            f"`{module_name}` imports {loaded or 'a built-in module'}, not {spec['source']} "
            "(a module of that name comes first: the standard library's, or one already "
            "imported); rename your module"
        )
    function = getattr(module, name, None)
    if function is None:
        raise Contract(f"`{module_name}` has no attribute `{name}`")
    if not callable(function):
        raise Contract(f"`{module_name}.{name}` is a {type(function).__name__}, not a function")
    return function


def outputs_of(spec, result):
    """Each declared output's value from what the function returned: the
    value itself for one output, a dict with exactly their names for more."""
    outputs = spec["outputs"]
    if len(outputs) == 1:
        return {next(iter(outputs)): result}
    if not isinstance(result, dict):
        raise Contract(
            f"the stage declares {len(outputs)} outputs ({', '.join(outputs)}): "
            f"return a dict with those keys, not {type(result).__name__}"
        )
    missing = [p for p in outputs if p not in result]
    extra = [p for p in result if p not in outputs]
    if missing or extra:
        raise Contract(
            "the returned dict's keys do not match the declared outputs: "
            + "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"not declared {', '.join(map(str, extra))}" if extra else "",
                )
                if part
            )
        )
    return result


def main(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    error_path = os.path.join(os.path.dirname(spec_path), "ERROR.json")
    stage = "importing the function"
    try:
        function = resolve(spec)
        stage = "reading the inputs"
        inputs = {port: load(i["type"], i["dir"]) for port, i in spec["inputs"].items()}
        stage = "calling the function"
        result = function(**inputs, **spec["args"])
        stage = "writing the outputs"
        for port, value in outputs_of(spec, result).items():
            output = spec["outputs"][port]
            save(port, output["type"], value, output["dir"])
        with open(os.path.join(os.path.dirname(spec_path), "DONE"), "w") as f:
            f.write("done")
    except Contract as e:
        report(error_path, "contract", str(e), None)
    except BaseException as e:  # the user's code: its traceback is the message
        report(error_path, "exception", f"{stage}: {type(e).__name__}: {e}", user_traceback(e))


def user_traceback(error):
    """The traceback from the user's code on: the worker's own frames and
    importlib's are not the user's concern."""
    machinery = os.path.dirname(importlib.__file__)
    tb = error.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__
        or tb.tb_frame.f_code.co_filename.startswith("<frozen importlib")
        or tb.tb_frame.f_code.co_filename.startswith(machinery)
    ):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(error), error, tb))


def report(path, kind, message, trace):
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "message": message, "traceback": trace}, f)
    leave(1)


def leave(status):
    """Ends the worker now: threads the function left running (not daemons)
    would otherwise hold the interpreter, and the stage, open."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv[1])
    leave(0)
