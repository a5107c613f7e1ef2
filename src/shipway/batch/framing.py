"""Binary record framings of batch transform: how an input object with ``SplitType`` ``RecordIO``
or ``TFRecord`` splits into records.

A framing is the envelope each record sits in inside the object. Batch transform needs it both
ways: with ``BatchStrategy`` ``MultiRecord`` a request body is records *as framed in the file*
(header, data, padding or CRCs, concatenated, so the container parses them itself); with
``SingleRecord`` the envelope is stripped and the body is one record's data alone.

- **RecordIO** is MXNet's (dmlc-core's) format, the one SageMaker's built-in algorithms read as
  ``application/x-recordio-protobuf``. A record is ``magic`` (uint32 LE ``0xced7230a``),
  ``lrecord`` (uint32 LE: the lower 29 bits are the data's length, the upper 3 bits the
  continuation flag ``cflag``), the data, then zero padding to a 4-byte boundary. MXNet's writer
  never lets the magic appear at a 4-byte aligned offset of a record's data, so that a reader can
  find record starts by scanning: it cuts the data at each such occurrence, drops those 4 bytes,
  and writes the pieces as parts with ``cflag`` 1 (first), 2 (middle) and 3 (last); ``cflag`` 0
  is a record in one part. Reading joins the parts with the magic between them again. A split
  record is one logical record: it is one frame (all its parts) and one ``data()``.
- **TFRecord** is TensorFlow's: ``length`` (uint64 LE), the masked CRC-32C of those 8 bytes
  (uint32 LE), the data, the masked CRC-32C of the data (uint32 LE). The length's CRC is checked
  before anything is read on its strength, so a corrupt file fails with a clear error rather than
  an attempt to read a record of some absurd size. The data's CRC is written but not checked on
  reading: the standard library has no CRC-32C and a pure-Python one runs at a few MB/s, far too
  slow for whole records; the 8-byte length's costs a microsecond.

Reading streams: :meth:`Framing.frames` reads its reader in chunks (64 KiB or more) and holds
about one record at a time (twice a large one while its pieces are joined), never the object.
A truncated or corrupt object raises :class:`~shipway.domain.errors.ValidationError` naming the
byte offset and what is wrong there. An empty object has no records.

The writers (:func:`write_recordio`, :func:`write_tfrecord`) build objects in these formats, for
tests, benchmarks and round trips.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import IO, Final, Protocol

from shipway.domain.errors import ValidationError

__all__ = [
    "RECORDIO",
    "TFRECORD",
    "Framing",
    "RecordIOFraming",
    "TFRecordFraming",
    "framing_for",
    "write_recordio",
    "write_tfrecord",
]

# Reads ask for at least this much, so many small records cost one read call.
_CHUNK_BYTES: Final = 64 * 1024
# ... and at most this much, so a record's declared length is never allocated before its bytes
# have actually arrived.
_MAX_READ_BYTES: Final = 8 * 1024 * 1024


class Framing(Protocol):
    """How records are framed in an object of one ``SplitType``."""

    @property
    def split_type(self) -> str:
        """The ``SplitType`` this framing reads (``RecordIO``, ``TFRecord``)."""
        ...

    def frames(self, reader: IO[bytes]) -> Iterator[bytes]:
        """Each record of the object ``reader`` reads, in order, as framed in it: its complete
        frame, every part of a split RecordIO record, padding and CRCs included (the pieces of
        a ``MultiRecord`` body). Streams; raises ``ValidationError`` naming the object's first
        bad byte."""
        ...

    def frames_of(self, body: bytes) -> Iterator[bytes]:
        """The frames of records already in memory (a ``MultiRecord`` body), as :meth:`frames`."""
        ...

    def data(self, frame: bytes) -> bytes:
        """The record's data without its framing (the ``SingleRecord`` body) from one frame
        that :meth:`frames` yielded; byte offsets in its errors count from the frame's start."""
        ...


class _Chunks:
    """A reader's bytes, read in chunks, with a window ``buf[pos:]`` of those not yet handed out.

    ``base`` is the object offset of ``buf[0]``; ``base + pos`` is where the next record starts.
    Reads tolerate short answers (a raw stream, a network file): only ``b""`` is the end.
    """

    __slots__ = ("_ended", "_reader", "base", "buf", "pos")

    def __init__(self, reader: IO[bytes]) -> None:
        self._reader = reader
        self._ended = False
        self.buf = b""
        self.pos = 0
        self.base = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def have(self, count: int) -> bool:
        """Whether ``count`` bytes from ``pos`` are (made) available; false only if the object
        ends first, with what there was still in the window."""
        if len(self.buf) - self.pos >= count:
            return True
        if self._ended:
            return False
        pieces = [self.buf[self.pos :]]
        held = len(pieces[0])
        self.base += self.pos
        self.pos = 0
        while held < count:
            piece = self._reader.read(max(_CHUNK_BYTES, min(count - held, _MAX_READ_BYTES)))
            if not piece:
                self._ended = True
                break
            pieces.append(piece)
            held += len(piece)
        self.buf = b"".join(pieces)
        return held >= count

    def take(self, count: int) -> bytes:
        """Hand out the next ``count`` bytes (which :meth:`have` made available)."""
        start = self.pos
        self.pos = start + count
        return self.buf[start : self.pos]


# --- RecordIO ---------------------------------------------------------------------------------

_RECORDIO_MAGIC: Final = 0xCED7230A
_RECORDIO_MAGIC_BYTES: Final = struct.pack("<I", _RECORDIO_MAGIC)
_RECORDIO_HEADER: Final = struct.Struct("<II")
_RECORDIO_LENGTH_BITS: Final = 29
_RECORDIO_MAX_LENGTH: Final = (1 << _RECORDIO_LENGTH_BITS) - 1
_WHOLE, _FIRST, _MIDDLE, _LAST = 0, 1, 2, 3


def _padded(length: int) -> int:
    return (length + 3) & ~3


class RecordIOFraming:
    """MXNet RecordIO (``SplitType`` ``RecordIO``); see the module docstring for the format."""

    split_type = "RecordIO"

    def frames(self, reader: IO[bytes]) -> Iterator[bytes]:
        chunks = _Chunks(reader)
        header = _RECORDIO_HEADER
        while True:
            if not chunks.have(8):
                if chunks.remaining:
                    raise _ends_inside("RecordIO", chunks.offset, chunks.offset + chunks.remaining)
                return
            magic, lrecord = header.unpack_from(chunks.buf, chunks.pos)
            if magic != _RECORDIO_MAGIC:
                raise _bad_magic(magic, chunks.offset)
            if lrecord >> _RECORDIO_LENGTH_BITS == _WHOLE:
                span = 8 + _padded(lrecord & _RECORDIO_MAX_LENGTH)
            else:
                span = _split_record_span(chunks)
            if not chunks.have(span):
                raise _ends_inside("RecordIO", chunks.offset, chunks.offset + chunks.remaining)
            yield chunks.take(span)

    def frames_of(self, body: bytes) -> Iterator[bytes]:
        return self.frames(io.BytesIO(body))

    def data(self, frame: bytes) -> bytes:
        if len(frame) >= 8:
            magic, lrecord = _RECORDIO_HEADER.unpack_from(frame)
            length = lrecord & _RECORDIO_MAX_LENGTH
            # The common case, a record in one part, fast; the walk below does the rest.
            if magic == _RECORDIO_MAGIC and lrecord >> _RECORDIO_LENGTH_BITS == _WHOLE:
                if len(frame) != 8 + _padded(length):
                    raise ValidationError(
                        f"not one RecordIO record: {len(frame)} bytes, its header says "
                        f"{8 + _padded(length)}"
                    )
                return frame[8 : 8 + length]
        pieces: list[bytes] = []
        at = 0
        cflag = _WHOLE
        while at < len(frame):
            if at + 8 > len(frame):
                raise _ends_inside("RecordIO", at, len(frame))
            magic, lrecord = _RECORDIO_HEADER.unpack_from(frame, at)
            if magic != _RECORDIO_MAGIC:
                raise _bad_magic(magic, at)
            cflag = lrecord >> _RECORDIO_LENGTH_BITS
            _check_cflag(cflag, first=at == 0, at=at)
            length = lrecord & _RECORDIO_MAX_LENGTH
            if at + 8 + _padded(length) > len(frame):
                raise _ends_inside("RecordIO", at, len(frame))
            pieces.append(frame[at + 8 : at + 8 + length])
            at += 8 + _padded(length)
            if cflag in (_WHOLE, _LAST) and at != len(frame):
                raise ValidationError(f"not one RecordIO record: another starts at byte {at}")
        if not pieces or cflag not in (_WHOLE, _LAST):
            raise _ends_inside("RecordIO", 0, len(frame))
        return _RECORDIO_MAGIC_BYTES.join(pieces)


def _split_record_span(chunks: _Chunks) -> int:
    """The bytes of the record in parts that starts at the window's start: its parts are
    contiguous, so walk their headers, from the start to the part that ends it."""
    span = 0
    while True:
        if not chunks.have(span + 8):
            raise _ends_inside("RecordIO", chunks.offset, chunks.offset + chunks.remaining)
        magic, lrecord = _RECORDIO_HEADER.unpack_from(chunks.buf, chunks.pos + span)
        if magic != _RECORDIO_MAGIC:
            raise _bad_magic(magic, chunks.offset + span)
        cflag = lrecord >> _RECORDIO_LENGTH_BITS
        _check_cflag(cflag, first=span == 0, at=chunks.offset + span)
        span += 8 + _padded(lrecord & _RECORDIO_MAX_LENGTH)
        if cflag == _LAST:
            return span


def _check_cflag(cflag: int, *, first: bool, at: int) -> None:
    """A record's first part must be whole or a start; the parts after a start must continue
    it (middle or last)."""
    if cflag > _LAST:
        raise ValidationError(f"bad RecordIO continuation flag {cflag} at byte {at}")
    if first and cflag in (_MIDDLE, _LAST):
        raise ValidationError(
            f"RecordIO record part at byte {at} continues a record that was never started"
        )
    if not first and cflag in (_WHOLE, _FIRST):
        raise ValidationError(
            f"RecordIO record at byte {at} starts before the record it follows has ended"
        )


def _bad_magic(magic: int, at: int) -> ValidationError:
    return ValidationError(
        f"bad RecordIO magic at byte {at}: 0x{magic:08x}, not 0x{_RECORDIO_MAGIC:08x}"
    )


def _ends_inside(kind: str, start: int, end: int) -> ValidationError:
    return ValidationError(
        f"file ends inside a {kind} record at byte {end} (the record starts at byte {start})"
    )


def _recordio_part(cflag: int, piece: bytes) -> bytes:
    padding = b"\0" * (_padded(len(piece)) - len(piece))
    return _RECORDIO_HEADER.pack(_RECORDIO_MAGIC, cflag << _RECORDIO_LENGTH_BITS | len(piece)) + (
        piece + padding
    )


def write_recordio(records: Iterable[bytes], *, split_at_magic: bool = True) -> bytes:
    """An object of ``records`` in RecordIO.

    With ``split_at_magic`` (MXNet's writer), a record whose data holds the magic at a 4-byte
    aligned offset is written in parts cut there; without it (the SageMaker Python SDK's
    ``write_numpy_to_dense_tensor``), every record is one part. Readers read both the same.
    """
    out: list[bytes] = []
    for record in records:
        if len(record) > _RECORDIO_MAX_LENGTH:
            raise ValidationError(
                f"a RecordIO record holds at most {_RECORDIO_MAX_LENGTH} bytes, not {len(record)}"
            )
        cuts = _magic_offsets(record) if split_at_magic else []
        if not cuts:
            out.append(_recordio_part(_WHOLE, record))
            continue
        begin = 0
        for number, cut in enumerate(cuts):
            out.append(_recordio_part(_FIRST if number == 0 else _MIDDLE, record[begin:cut]))
            begin = cut + 4
        out.append(_recordio_part(_LAST, record[begin:]))
    return b"".join(out)


def _magic_offsets(record: bytes) -> list[int]:
    """Where the magic stands in ``record`` at offsets that are multiples of 4."""
    found = []
    at = record.find(_RECORDIO_MAGIC_BYTES)
    while at >= 0:
        if at % 4 == 0:
            found.append(at)
            at = record.find(_RECORDIO_MAGIC_BYTES, at + 4)
        else:
            at = record.find(_RECORDIO_MAGIC_BYTES, at + 1)
    return found


# --- TFRecord ---------------------------------------------------------------------------------

_TFRECORD_HEADER: Final = struct.Struct("<QI")
_CRC_MASK_DELTA: Final = 0xA282EAD8


def _crc32c_tables() -> list[list[int]]:
    """The eight lookup tables of slicing-by-8 CRC-32C (Castagnoli, reflected 0x82F63B78)."""
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(7):
        previous = tables[-1]
        tables.append([(entry >> 8) ^ first[entry & 0xFF] for entry in previous])
    return tables


_T0, _T1, _T2, _T3, _T4, _T5, _T6, _T7 = _crc32c_tables()


def _crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` in pure Python, eight bytes a step (about 1 µs per 8 bytes)."""
    crc = 0xFFFFFFFF
    whole = len(data) & ~7
    for at in range(0, whole, 8):
        low = crc ^ int.from_bytes(data[at : at + 4], "little")
        high = int.from_bytes(data[at + 4 : at + 8], "little")
        crc = (
            _T7[low & 0xFF]
            ^ _T6[(low >> 8) & 0xFF]
            ^ _T5[(low >> 16) & 0xFF]
            ^ _T4[low >> 24]
            ^ _T3[high & 0xFF]
            ^ _T2[(high >> 8) & 0xFF]
            ^ _T1[(high >> 16) & 0xFF]
            ^ _T0[high >> 24]
        )
    for byte in data[whole:]:
        crc = _T0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC of data
    that holds CRCs stays well distributed."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & 0xFFFFFFFF


@lru_cache(maxsize=4096)
def _length_crc(length: int) -> int:
    """The masked CRC of a length field; objects repeat record sizes, so it is memoised."""
    return _masked_crc32c(length.to_bytes(8, "little"))


class TFRecordFraming:
    """TensorFlow's TFRecord (``SplitType`` ``TFRecord``); see the module docstring."""

    split_type = "TFRecord"

    def frames(self, reader: IO[bytes]) -> Iterator[bytes]:
        chunks = _Chunks(reader)
        header = _TFRECORD_HEADER
        while True:
            if not chunks.have(12):
                if chunks.remaining:
                    raise _ends_inside("TFRecord", chunks.offset, chunks.offset + chunks.remaining)
                return
            length, length_crc = header.unpack_from(chunks.buf, chunks.pos)
            if _length_crc(length) != length_crc:
                raise ValidationError(
                    f"TFRecord length CRC mismatch at byte {chunks.offset}: the length field "
                    f"reads {length}, its CRC is 0x{length_crc:08x}, not "
                    f"0x{_length_crc(length):08x}"
                )
            if not chunks.have(16 + length):
                raise _ends_inside("TFRecord", chunks.offset, chunks.offset + chunks.remaining)
            yield chunks.take(16 + length)

    def frames_of(self, body: bytes) -> Iterator[bytes]:
        return self.frames(io.BytesIO(body))

    def data(self, frame: bytes) -> bytes:
        if len(frame) < 16:
            raise _ends_inside("TFRecord", 0, len(frame))
        length = int.from_bytes(frame[:8], "little")
        if len(frame) != 16 + length:
            raise ValidationError(
                f"not one TFRecord record: {len(frame)} bytes, its header says {16 + length}"
            )
        return frame[12 : 12 + length]


def write_tfrecord(records: Iterable[bytes]) -> bytes:
    """An object of ``records`` in TFRecord, with both CRCs (as ``tf.io.TFRecordWriter``)."""
    out: list[bytes] = []
    for record in records:
        length = len(record)
        out.append(_TFRECORD_HEADER.pack(length, _length_crc(length)))
        out.append(record)
        out.append(_masked_crc32c(record).to_bytes(4, "little"))
    return b"".join(out)


# --- By SplitType -----------------------------------------------------------------------------

RECORDIO: Final = RecordIOFraming()
TFRECORD: Final = TFRecordFraming()

_BY_SPLIT_TYPE: Final[dict[str, Framing]] = {
    RECORDIO.split_type: RECORDIO,
    TFRECORD.split_type: TFRECORD,
}


def framing_for(split_type: str) -> Framing:
    """The framing of a ``SplitType`` with binary records (``RecordIO``, ``TFRecord``)."""
    try:
        return _BY_SPLIT_TYPE[str(split_type)]
    except KeyError:
        raise ValidationError(
            f"SplitType {split_type!s} has no binary record framing; "
            f"those that do: {', '.join(_BY_SPLIT_TYPE)}"
        ) from None
