"""The RecordIO and TFRecord framings of batch transform: objects built byte by byte from each
format's specification (not only by our writers) read back as the right frames and data, split
RecordIO records are one record, reading streams through short reads without holding the object,
and truncated or corrupt objects fail naming the byte where they go wrong."""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable
from typing import IO, cast

import pytest

from shipway.batch import framing
from shipway.batch.framing import (
    RECORDIO,
    TFRECORD,
    Framing,
    framing_for,
    write_recordio,
    write_tfrecord,
)
from shipway.domain.errors import ValidationError
from shipway.domain.transform_job import SplitType

MAGIC = b"\x0a\x23\xd7\xce"  # 0xced7230a, little endian

Write = Callable[[Iterable[bytes]], bytes]


def recordio_part(cflag: int, data: bytes) -> bytes:
    """One RecordIO part by the format: magic, lrecord (cflag in the top 3 bits), data, zeros to
    a multiple of 4."""
    return MAGIC + struct.pack("<I", cflag << 29 | len(data)) + data + b"\0" * (-len(data) % 4)


def crc32c(data: bytes) -> int:
    """CRC-32C bit by bit (reflected polynomial 0x82F63B78): slow, obviously right."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord by the format: length, masked CRC-32C of the length, data, masked CRC of it."""
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked(crc32c(length)))
        + data
        + struct.pack("<I", masked(crc32c(data)))
    )


class ShortReads(io.RawIOBase):
    """A raw stream that answers every read with at most ``step`` bytes, and counts how far it
    has been read."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self._data = data
        self._step = step
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        piece = self._data[self.position : self.position + min(self._step, len(buffer))]
        buffer[: len(piece)] = piece
        self.position += len(piece)
        return len(piece)


def read_all(framing_: Framing, data: bytes) -> list[bytes]:
    return list(framing_.frames(io.BytesIO(data)))


RECORDS = [b"", b"a", b"ab", b"abc", b"abcd", b"abcde", bytes(range(256)), b"\0" * 9]


# --- RecordIO ---------------------------------------------------------------------------------


def test_recordio_reads_a_file_built_by_the_format() -> None:
    parts = [recordio_part(0, record) for record in RECORDS]
    frames = read_all(RECORDIO, b"".join(parts))
    assert frames == parts
    assert [RECORDIO.data(frame) for frame in frames] == RECORDS


def test_recordio_writer_writes_the_format_and_reads_back() -> None:
    written = write_recordio(RECORDS)
    assert written == b"".join(recordio_part(0, record) for record in RECORDS)
    assert [RECORDIO.data(frame) for frame in read_all(RECORDIO, written)] == RECORDS


def test_recordio_padding_is_in_the_frame_and_stripped_by_data() -> None:
    (frame,) = read_all(RECORDIO, write_recordio([b"abcde"]))
    assert frame == MAGIC + b"\x05\0\0\0" + b"abcde\0\0\0"
    assert RECORDIO.data(frame) == b"abcde"


def test_a_recordio_record_in_parts_is_one_frame_whose_data_joins_them_with_the_magic() -> None:
    # MXNet's writer drops the magic where it cuts a record; reading puts it back.
    parts = recordio_part(1, b"abcd") + recordio_part(2, b"") + recordio_part(3, b"efg")
    after = recordio_part(0, b"next")
    frames = read_all(RECORDIO, parts + after)
    assert frames == [parts, after]
    assert RECORDIO.data(parts) == b"abcd" + MAGIC + MAGIC + b"efg"


def test_the_recordio_writer_cuts_records_at_the_magic_at_aligned_offsets() -> None:
    record = b"abcd" + MAGIC + MAGIC + b"efg"
    assert write_recordio([record]) == (
        recordio_part(1, b"abcd") + recordio_part(2, b"") + recordio_part(3, b"efg")
    )
    # Not at a multiple of 4: no reader scanning for record starts would look there.
    unaligned = b"ab" + MAGIC + b"cd"
    assert write_recordio([unaligned]) == recordio_part(0, unaligned)
    # Without cutting (the SageMaker Python SDK's writer), one part that reads the same.
    assert write_recordio([record], split_at_magic=False) == recordio_part(0, record)


@pytest.mark.parametrize(
    "record",
    [MAGIC, MAGIC + MAGIC, b"abcd" + MAGIC, MAGIC + b"xyz", b"1234" + MAGIC + b"5678" + MAGIC],
)
def test_recordio_records_holding_the_magic_round_trip(record: bytes) -> None:
    for split in (True, False):
        written = write_recordio([b"x", record, b"y"], split_at_magic=split)
        frames = read_all(RECORDIO, written)
        assert [RECORDIO.data(frame) for frame in frames] == [b"x", record, b"y"]
        assert b"".join(frames) == written


# --- TFRecord ---------------------------------------------------------------------------------


def test_the_crc32c_of_these_tests_is_crc32c() -> None:
    # RFC 3720 (iSCSI) B.4 and the usual check value: the oracle the TFRecord tests trust.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


def test_tfrecord_writer_writes_the_format() -> None:
    record = b"hello, tfrecord"
    expected = (
        b"\x0f\0\0\0\0\0\0\0"
        + struct.pack("<I", masked(crc32c(b"\x0f\0\0\0\0\0\0\0")))
        + record
        + struct.pack("<I", masked(crc32c(record)))
    )
    assert write_tfrecord([record]) == expected
    long_records = [bytes(range(256)) * 3, b"x" * 17]
    assert write_tfrecord(long_records) == b"".join(tfrecord(r) for r in long_records)


def test_tfrecord_reads_a_file_built_by_the_format() -> None:
    built = [tfrecord(record) for record in RECORDS]
    frames = read_all(TFRECORD, b"".join(built))
    assert frames == built
    assert [TFRECORD.data(frame) for frame in frames] == RECORDS


# --- Both -------------------------------------------------------------------------------------

FRAMINGS = [
    pytest.param(RECORDIO, write_recordio, id="RecordIO"),
    pytest.param(TFRECORD, write_tfrecord, id="TFRecord"),
]


@pytest.mark.parametrize(("framing_", "write"), FRAMINGS)
def test_an_empty_object_has_no_records(framing_: Framing, write: Write) -> None:
    assert read_all(framing_, b"") == []


@pytest.mark.parametrize(("framing_", "write"), FRAMINGS)
def test_frames_stream_through_short_reads(framing_: Framing, write: Write) -> None:
    records = [*RECORDS, MAGIC * 3, bytes(range(256)) * 1000]  # one record over a chunk
    data = write(records)
    for reader in (ShortReads(data), io.BufferedReader(ShortReads(data), buffer_size=16)):
        frames = list(framing_.frames(cast(IO[bytes], reader)))
        assert b"".join(frames) == data
        assert [framing_.data(frame) for frame in frames] == records


@pytest.mark.parametrize(("framing_", "write"), FRAMINGS)
def test_frames_do_not_read_the_whole_object_first(framing_: Framing, write: Write) -> None:
    data = write([bytes(1000)] * 500)  # 500 kB
    reader = ShortReads(data, step=1 << 20)
    first = next(framing_.frames(cast(IO[bytes], reader)))
    assert framing_.data(first) == bytes(1000)
    assert reader.position <= 128 * 1024


@pytest.mark.parametrize(("framing_", "write"), FRAMINGS)
def test_frames_of_a_body_in_memory(framing_: Framing, write: Write) -> None:
    records = [b"one", MAGIC * 2, b""]
    body = write(records)
    assert [framing_.data(frame) for frame in framing_.frames_of(body)] == records
    assert b"".join(framing_.frames_of(body)) == body


def test_framing_for_a_split_type() -> None:
    assert framing_for("RecordIO") is RECORDIO
    assert framing_for(SplitType.TF_RECORD) is TFRECORD
    with pytest.raises(ValidationError, match="SplitType Line has no binary record framing"):
        framing_for(SplitType.LINE)


def test_the_public_names() -> None:
    assert set(framing.__all__) == {
        "RECORDIO",
        "TFRECORD",
        "Framing",
        "RecordIOFraming",
        "TFRecordFraming",
        "framing_for",
        "write_recordio",
        "write_tfrecord",
    }


# --- Corrupt and truncated objects --------------------------------------------------------------


def fails(framing_: Framing, data: bytes, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        read_all(framing_, data)


def test_bad_recordio_magic_names_its_byte() -> None:
    good = write_recordio([b"0123456789ab"])  # 20 bytes
    fails(RECORDIO, good + b"\0\0\0\0" + good[4:], r"bad RecordIO magic at byte 20: 0x00000000")
    fails(RECORDIO, b"not recordio", r"bad RecordIO magic at byte 0")


def test_truncated_recordio_names_where_the_file_ends() -> None:
    data = write_recordio([b"first", b"second!"])  # 16 + 16 bytes
    fails(RECORDIO, data[:20], r"file ends inside a RecordIO record at byte 20 \(.*byte 16\)")
    fails(RECORDIO, data[:30], r"file ends inside a RecordIO record at byte 30")
    fails(RECORDIO, data[:-1], r"at byte 31")  # the last record's padding is missing
    parts = write_recordio([b"abcd" + MAGIC + b"efgh"])
    fails(RECORDIO, parts[:12], r"file ends inside a RecordIO record at byte 12 \(.*byte 0\)")


def test_recordio_parts_out_of_order_are_refused() -> None:
    fails(RECORDIO, recordio_part(3, b"end"), r"part at byte 0 continues a record .*never started")
    fails(RECORDIO, recordio_part(2, b""), r"part at byte 0 continues")
    fails(
        RECORDIO,
        recordio_part(1, b"abcd") + recordio_part(0, b"x"),
        r"RecordIO record at byte 12 starts before the record it follows has ended",
    )
    fails(RECORDIO, recordio_part(5, b"x"), r"bad RecordIO continuation flag 5 at byte 0")


def test_recordio_data_refuses_what_is_not_one_frame() -> None:
    two = write_recordio([b"a", b"b"])
    with pytest.raises(ValidationError, match="not one RecordIO record"):
        RECORDIO.data(two)
    with pytest.raises(ValidationError, match="not one RecordIO record: another starts at byte"):
        RECORDIO.data(recordio_part(1, b"abcd") + recordio_part(3, b"") + recordio_part(0, b""))
    with pytest.raises(ValidationError, match="file ends inside a RecordIO record"):
        RECORDIO.data(recordio_part(1, b"abcd"))


def test_a_corrupt_tfrecord_length_fails_on_its_crc_before_any_allocation() -> None:
    data = write_tfrecord([b"first", b"second"])  # 21 bytes, then 22
    corrupt = bytearray(data)
    corrupt[21 + 7] = 0x40  # the second length becomes 2**62 + 6
    fails(  # a 4 EiB allocation would fail with MemoryError, not this
        TFRECORD, bytes(corrupt), r"TFRecord length CRC mismatch at byte 21: .* 4611686018427387910"
    )


def test_truncated_tfrecord_names_where_the_file_ends() -> None:
    data = write_tfrecord([b"first", b"second"])  # 21 + 22 bytes
    fails(TFRECORD, data[:25], r"file ends inside a TFRecord record at byte 25 \(.*byte 21\)")
    fails(TFRECORD, data[:-1], r"file ends inside a TFRecord record at byte 42")
    with pytest.raises(ValidationError, match="not one TFRecord record"):
        TFRECORD.data(data)
