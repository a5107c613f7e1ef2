"""Codecs: request bodies to rows, predictions to response bodies.

The model server decodes every ``/invocations`` body into rows (a 2-D numpy array, or a pandas
DataFrame for column-named input) and encodes predictions for the caller's Accept type:

====================== ================================================================
media type             rows it decodes
====================== ================================================================
application/json       ``[[..], [..]]``, a single row ``[1, 2]``, ``{"instances": ..}``,
                       ``{"inputs": ..}``, ``{"data": ..}``, MLflow ``dataframe_split`` and
                       ``dataframe_records`` (a DataFrame); rows that are objects make a
                       DataFrame too
text/csv               SageMaker's convention: no header, one row per line; numeric bodies
                       become float64 (empty fields NaN), others an object array
application/jsonlines  one row per line: an array, a scalar, or an object holding
                       ``features``, ``instances`` or ``data``; aliases application/jsonl,
                       application/x-jsonlines
application/x-npy      ``numpy.save`` output; 1-D is one row
====================== ================================================================

A missing Content-Type (or ``application/octet-stream``) means JSON when the body starts with
``[`` or ``{``. Numeric JSON keeps numpy's inference (ints stay int64, mixed become float64).

Decoding is the hot path of the model server, so numeric bodies never go through a Python loop
per value: JSON is parsed by orjson, and a numeric CSV body is rewritten into a JSON array of
rows and parsed the same way, which is several times faster than numpy's own text parsers.
Encoding serializes contiguous numeric arrays with orjson directly. Parsed media types are
cached, since the same few header values repeat on every request.

Failures raise :class:`~shipway.serving.errors.BadInput` (the body does not decode),
:class:`~shipway.serving.errors.UnsupportedContentType` or
:class:`~shipway.serving.errors.NotAcceptable`.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from numpy.typing import NDArray

from shipway.serving.errors import BadInput, NotAcceptable, UnsupportedContentType

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUPPORTED", "decode", "encode", "negotiate"]

JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"

SUPPORTED: tuple[str, ...] = (JSON, CSV, JSONLINES, NPY)
"""The media types :func:`decode` reads and :func:`encode` writes."""

_ALIASES: dict[str, str] = {
    JSON: JSON,
    CSV: CSV,
    JSONLINES: JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    NPY: NPY,
}
_SNIFF = ("", "application/octet-stream")
_ROW_KEYS = ("instances", "inputs", "data")
_LINE_KEYS = ("features", "instances", "data")
_NUMERIC_KINDS = "biuf"
_CSV_NUMERIC_BYTES = b"0123456789.,-+eE \t\r\n"
_FIRST_CHAR = re.compile(rb"\s*(\S)")
_SUPPORTED_TEXT = ", ".join(SUPPORTED)


# --------------------------------------------------------------------------- media types


@functools.lru_cache(maxsize=64)
def _media_type(header: str) -> str | None:
    """The canonical supported media type a Content-Type names, ``""`` to sniff, None if unknown."""
    base = header.split(";", 1)[0].strip().lower()
    if base in _SNIFF:
        return ""
    return _ALIASES.get(base)


@functools.lru_cache(maxsize=64)
def _negotiate(accept: str, default: str) -> str | None:
    """The best supported type an Accept header allows, or None when it allows none."""
    ranges: list[tuple[float, int, str]] = []
    refused: set[str] = set()
    for position, item in enumerate(accept.split(",")):
        media, *params = item.split(";")
        media = media.strip().lower()
        if not media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 1.0
        if quality > 0:
            ranges.append((-quality, position, media))
        else:
            refused.add(_ALIASES.get(media, media))
    if not ranges:
        return None if refused else default
    for _, _, media in sorted(ranges):
        if media == "*" or media.endswith("/*"):
            prefix = "" if media in ("*", "*/*") else media[:-1]
            candidates = (default, *SUPPORTED)
            for candidate in candidates:
                if candidate.startswith(prefix) and candidate not in refused:
                    return candidate
            continue
        found = _ALIASES.get(media)
        if found is not None:
            return found
    return None


def negotiate(accept: str | None, default: str = JSON) -> str:
    """The media type :func:`encode` answers with for an Accept header.

    Quality values order the choices (``text/csv;q=0.5, application/json`` picks JSON);
    ``*/*``, ``type/*``, an empty header or None pick ``default`` when it fits. Raises
    :class:`NotAcceptable` when no supported type is allowed.
    """
    canonical_default = _media_type(default) or ""
    if not canonical_default:
        raise ValueError(f"default media type {default!r} is not one of {_SUPPORTED_TEXT}")
    if not accept or not accept.strip():
        return canonical_default
    chosen = _negotiate(accept, canonical_default)
    if chosen is None:
        raise NotAcceptable(
            f"Accept '{accept}' allows none of the supported response types: {_SUPPORTED_TEXT}."
        )
    return chosen


# --------------------------------------------------------------------------- decoding


def decode(body: bytes, content_type: str | None) -> NDArray[Any] | pd.DataFrame:
    """Decode a request body into rows: a 2-D array (rows x features) or a DataFrame."""
    media = _media_type(content_type or "")
    if media is None:
        raise UnsupportedContentType(
            f"Content-Type '{content_type}' is not supported. Use one of: {_SUPPORTED_TEXT}."
        )
    if not body or not body.strip():
        raise BadInput("The request body is empty.")
    if media == "":
        match = _FIRST_CHAR.match(body)
        if match is None or match.group(1) not in (b"[", b"{"):
            raise BadInput(
                "Cannot tell the format of the request body: set a Content-Type header, one of: "
                f"{_SUPPORTED_TEXT}."
            )
        media = JSON
    if media == JSON:
        return _decode_json(body)
    if media == CSV:
        return _decode_csv(body)
    if media == JSONLINES:
        return _decode_jsonlines(body)
    return _decode_npy(body)


def _loads(data: bytes, where: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{where} is not valid JSON: {exc}") from exc


def _decode_json(body: bytes) -> NDArray[Any] | pd.DataFrame:
    payload = _loads(body, "The request body")
    if isinstance(payload, dict):
        return _decode_json_object(payload)
    if isinstance(payload, list):
        return _rows(payload)
    raise BadInput(
        "A JSON body must be a list of rows, one row, or an object with 'instances', 'inputs', "
        f"'data', 'dataframe_split' or 'dataframe_records'; got {type(payload).__name__}."
    )


def _decode_json_object(payload: dict[str, Any]) -> NDArray[Any] | pd.DataFrame:
    if "dataframe_split" in payload:
        split = payload["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise BadInput("'dataframe_split' must be an object with 'columns' and 'data' lists.")
        return _dataframe(split["data"], columns=split.get("columns"), index=split.get("index"))
    if "dataframe_records" in payload:
        records = payload["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadInput("'dataframe_records' must be a list of objects, one per row.")
        return _dataframe(records)
    for key in _ROW_KEYS:
        if key in payload:
            value = payload[key]
            if isinstance(value, list):
                return _rows(value)
            if isinstance(value, dict):
                return _dataframe(value)
            raise BadInput(f"'{key}' must be a list of rows; got {type(value).__name__}.")
    raise BadInput(
        "A JSON object body must hold the rows under 'instances', 'inputs', 'data', "
        "'dataframe_split' or 'dataframe_records'; got keys: "
        + (", ".join(sorted(payload)) or "none")
        + "."
    )


def _dataframe(data: Any, columns: Any = None, index: Any = None) -> pd.DataFrame:
    try:
        import pandas as pd
    except ImportError as exc:
        raise BadInput(
            "This model server cannot read named columns (pandas is not installed); "
            "send the rows as lists instead."
        ) from exc
    try:
        frame = pd.DataFrame(data, columns=columns, index=index)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"The rows do not make a table: {exc}") from exc
    if frame.shape[0] == 0:
        raise BadInput("The request holds no rows.")
    return frame


def _rows(payload: list[Any]) -> NDArray[Any] | pd.DataFrame:
    """Rows from a parsed JSON list: a list of rows; a flat list of numbers is one row, a flat
    list of strings is one text sample per string (what a text pipeline's ``predict`` takes)."""
    if not payload:
        raise BadInput("The request holds no rows.")
    first = payload[0]
    if isinstance(first, dict):
        if not all(isinstance(row, dict) for row in payload):
            raise BadInput("Rows must all be objects (named columns) or all be lists.")
        return _dataframe(payload)
    array = _array(payload)
    if array.ndim == 1 and not all(isinstance(value, str) for value in payload):
        array = array.reshape(1, -1)
    if array.size == 0:
        raise BadInput("The request holds no values.")
    return array


def _array(payload: list[Any]) -> NDArray[Any]:
    """np.asarray with clear errors; strings make an object array, None becomes NaN."""
    try:
        array = np.asarray(payload)
    except ValueError as exc:
        raise BadInput(_ragged_message(payload, "row")) from exc
    kind = array.dtype.kind
    if kind in _NUMERIC_KINDS:
        return array
    if kind in "US":
        return np.array(payload, dtype=object)
    if kind == "O" and _numbers_or_none(array.flat):
        return array.astype(np.float64)
    return array


def _numbers_or_none(values: Iterable[Any]) -> bool:
    return all(v is None or isinstance(v, int | float) for v in values)


def _ragged_message(rows: Sequence[Any], unit: str, numbers: Sequence[int] | None = None) -> str:
    """Name the first row whose length differs from the first row's."""

    def size(row: Any) -> int | None:
        return len(row) if isinstance(row, list) else None

    def label(i: int) -> str:
        return f"{unit} {numbers[i] if numbers is not None else i + 1}"

    expected = size(rows[0])
    for i, row in enumerate(rows):
        found = size(row)
        if found != expected:
            if found is None or expected is None:
                return (
                    f"{label(i)} is {'a single value' if found is None else 'a list'}, "
                    f"{label(0)} is {'a single value' if expected is None else 'a list'}: "
                    "rows must all have the same shape."
                )
            return f"{label(i)} has {found} values, {label(0)} has {expected}."
    return "The rows do not all have the same nested shape."


def _decode_csv(body: bytes) -> NDArray[Any]:
    if not body.translate(None, _CSV_NUMERIC_BYTES):
        # Only digits, signs, dots, exponents, commas and whitespace: the body is JSON numbers
        # once each line is bracketed, and orjson parses it far faster than any CSV parser.
        text = (body.replace(b"\r", b"") if b"\r" in body else body).strip()
        rows = _csv_as_json(text)
        if rows is None:  # blank lines inside make empty rows: drop them and retry once
            kept = b"\n".join(line for line in text.split(b"\n") if line.strip())
            rows = _csv_as_json(kept) if kept != text else None
        if rows is not None:
            return rows
    return _decode_csv_slow(body)


def _csv_as_json(text: bytes) -> NDArray[Any] | None:
    """Numeric CSV parsed as JSON rows; None when it is not JSON-shaped or rows are ragged.

    None sends the body to the csv module, which also reads empty fields (NaN), ``+1``, ``.5``
    and ``1.``, and names the offending line when rows are ragged.
    """
    try:
        return np.array(orjson.loads(b"[[" + text.replace(b"\n", b"],[") + b"]]"), np.float64)
    except (orjson.JSONDecodeError, ValueError):
        return None


def _decode_csv_slow(body: bytes) -> NDArray[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"The CSV body is not UTF-8: {exc}") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if rows and len(row) != len(rows[0]):
                raise BadInput(
                    f"CSV line {reader.line_num} has {len(row)} values, "
                    f"line {lines[0]} has {len(rows[0])}."
                )
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise BadInput(f"CSV line {reader.line_num} does not parse: {exc}") from exc
    if not rows:
        raise BadInput("The request holds no rows.")
    strings = np.array(rows, dtype=np.str_)
    filled = np.where(np.char.strip(strings) == "", "nan", strings)
    try:
        return filled.astype(np.float64)
    except ValueError:
        pass
    table = np.array(rows, dtype=object)
    for column in range(filled.shape[1]):
        try:
            numbers = filled[:, column].astype(np.float64)
        except ValueError:
            continue
        table[:, column] = numbers.tolist()
    return table


def _decode_jsonlines(body: bytes) -> NDArray[Any] | pd.DataFrame:
    rows: list[Any] = []
    numbers: list[int] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        value = _loads(line, f"JSON Lines line {number}")
        if isinstance(value, dict):
            key = next((k for k in _LINE_KEYS if k in value), None)
            if key is not None:
                value = value[key]
                if isinstance(value, list) and value and isinstance(value[0], list):
                    rows.extend(value)
                    numbers.extend([number] * len(value))
                    continue
        rows.append(value)
        numbers.append(number)
    if not rows:
        raise BadInput("The request holds no rows.")
    if isinstance(rows[0], dict):
        if not all(isinstance(row, dict) for row in rows):
            raise BadInput("JSON Lines rows must all be objects (named columns) or all be lists.")
        return _dataframe(rows)
    try:
        array = _array(rows)
    except BadInput as exc:
        raise BadInput(_ragged_message(rows, "line", numbers)) from exc
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.size == 0:
        raise BadInput("The request holds no values.")
    return array


def _decode_npy(body: bytes) -> NDArray[Any]:
    try:
        loaded: Any = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise BadInput(f"The body is not a .npy array (object arrays are refused): {exc}") from exc
    if not isinstance(loaded, np.ndarray):
        raise BadInput("The body must be a single .npy array, not an .npz archive.")
    array: NDArray[Any] = loaded
    if array.ndim < 2:
        array = array.reshape(1, -1)
    if array.size == 0:
        raise BadInput("The request holds no values.")
    return array


# --------------------------------------------------------------------------- encoding


def encode(predictions: Any, accept: str | None, default: str = JSON) -> tuple[bytes, str]:
    """Encode predictions for an Accept header: ``(body, media_type)``.

    ``predictions`` is a numpy array, or anything ``numpy.asarray`` takes, or a pandas
    DataFrame/Series. JSON answers a flat list for 1-D predictions and a list of lists for 2-D;
    CSV and JSON Lines answer one line per prediction; NPY answers ``numpy.save`` bytes. NaN and
    infinity become ``null`` in JSON.
    """
    media = negotiate(accept, default)
    array = _as_array(predictions)
    if media == JSON:
        return _dumps(array), JSON
    if media == CSV:
        return _encode_csv(array), CSV
    if media == JSONLINES:
        return _encode_jsonlines(array), JSONLINES
    return _encode_npy(array), NPY


def _as_array(predictions: Any) -> NDArray[Any]:
    if isinstance(predictions, np.ndarray):
        return predictions
    to_numpy = getattr(predictions, "to_numpy", None)
    if callable(to_numpy):
        return np.asarray(to_numpy())
    return np.asarray(predictions)


def _orjson_ready(array: NDArray[Any]) -> NDArray[Any] | None:
    """The array in a form orjson serializes natively, or None when it needs ``tolist``."""
    if array.ndim == 0 or array.dtype.kind not in _NUMERIC_KINDS or not array.dtype.isnative:
        return None
    return np.ascontiguousarray(array)


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


def _dumps(array: NDArray[Any]) -> bytes:
    ready = _orjson_ready(array)
    value: Any = ready if ready is not None else array.tolist()
    return orjson.dumps(value, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _line_rows(array: NDArray[Any]) -> NDArray[Any]:
    """Predictions as rows of values: scalars become one row, >2-D rows are flattened."""
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(-1, 1)
    return array.reshape(array.shape[0], -1)


def _encode_csv(array: NDArray[Any]) -> bytes:
    rows = _line_rows(array)
    if rows.size == 0:
        return b""
    ready = _orjson_ready(rows)
    if ready is not None and (ready.dtype.kind != "f" or np.isfinite(ready).all()):
        text = orjson.dumps(ready, option=orjson.OPT_SERIALIZE_NUMPY)
        return text[2:-2].replace(b"],[", b"\n") + b"\n"
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([_text(v) for v in row] for row in rows.tolist())
    return out.getvalue().encode("utf-8")


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _encode_jsonlines(array: NDArray[Any]) -> bytes:
    if array.ndim == 0:
        return _dumps(array) + b"\n"
    if array.shape[0] == 0:
        return b""
    ready = _orjson_ready(array)
    if ready is not None and ready.ndim <= 2 and ready.size:
        text = orjson.dumps(ready, option=orjson.OPT_SERIALIZE_NUMPY)
        if ready.ndim == 1:
            return text[1:-1].replace(b",", b"\n") + b"\n"
        return text[1:-1].replace(b"],[", b"]\n[") + b"\n"
    return b"".join(_dumps(np.asarray(row)) + b"\n" for row in array)


def _encode_npy(array: NDArray[Any]) -> bytes:
    if array.dtype.kind == "O":
        array = np.asarray(array.tolist())
        if array.dtype.kind == "O":
            raise NotAcceptable(
                "The predictions hold Python objects, which application/x-npy cannot carry; "
                "ask for application/json instead."
            )
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()
