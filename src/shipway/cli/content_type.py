"""What ``shipway invoke`` sends a body as when ``--content-type`` is not given: the file's
extension says it (``.csv`` is text/csv...), else the body does (valid JSON is
application/json, lines of comma-separated numbers text/csv, lines of JSON
application/jsonlines, ``numpy.save`` output application/x-npy, and anything else that starts
with ``[`` or ``{`` application/json, as the model server reads it). A body that says nothing
clearly gets no guess: the caller asks for ``--content-type`` rather than send it as JSON and
have the model answer "not valid JSON".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EXTENSIONS", "Inferred", "infer"]

JSON = "application/json"
CSV = "text/csv"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"

EXTENSIONS: dict[str, str] = {
    ".json": JSON,
    ".csv": CSV,
    ".jsonl": JSONLINES,
    ".jsonlines": JSONLINES,
    ".ndjson": JSONLINES,
    ".npy": NPY,
    ".libsvm": "text/libsvm",
    ".parquet": "application/x-parquet",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
"""A file's extension (lower case) and the media type it means."""

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Inferred:
    """The media type a body is sent as, and why (for the line ``shipway invoke`` prints)."""

    content_type: str
    reason: str
    lines: int | None = None
    """How many rows a line-per-row body holds (CSV, JSON lines); None for the others."""

    def describe(self, size: int) -> str:
        """``sent 2 lines as text/csv (the body is comma-separated numbers)``."""
        what = f"{self.lines} line{'s' * (self.lines != 1)}" if self.lines else f"{size} bytes"
        return f"sent {what} as {self.content_type} ({self.reason})"


def infer(body: bytes, file: Path | None = None) -> Inferred | None:
    """The media type of ``body`` (read from ``file`` when given), or None if unclear."""
    if file is not None:
        media = EXTENSIONS.get(file.suffix.lower())
        if media is not None:
            return Inferred(media, f"from the extension {file.suffix}", _lines(body, media))
    if body.startswith(NPY_MAGIC):
        return Inferred(NPY, "the body is a numpy .npy array")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _is_json(text):
        return Inferred(JSON, "the body is valid JSON")
    rows = [line for line in text.splitlines() if line.strip()]
    if rows and all(_numeric_row(row) for row in rows):
        return Inferred(CSV, "the body is comma-separated numbers", len(rows))
    if rows and all(_is_json(row) for row in rows):
        return Inferred(JSONLINES, "each line of the body is JSON", len(rows))
    if text.lstrip().startswith(("[", "{")):
        # broken JSON: the model's "not valid JSON: ..." says best what is wrong with it
        return Inferred(JSON, "the body starts as JSON does")
    return None


def _lines(body: bytes, media: str) -> int | None:
    if media not in (CSV, JSONLINES):
        return None
    return sum(1 for line in body.splitlines() if line.strip())


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _numeric_row(row: str) -> bool:
    """A CSV row of numbers as SageMaker's CSV reads it: no header, empty fields allowed."""
    for field in row.split(","):
        field = field.strip()
        if not field:
            continue
        try:
            float(field)
        except ValueError:
            return False
    return True
