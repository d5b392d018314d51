"""Prometheus remote write 1.0: samples to a snappy-compressed protobuf ``WriteRequest`` body.

Pure functions, no I/O (pipeline/metrics_stream.py sends the bodies). The four messages of
prometheus/prompb/remote.proto and types.proto that remote write 1.0 needs are encoded by hand:

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // milliseconds since the epoch

That is about thirty lines against a generated module and the protobuf runtime. Snappy is the
block format (not the framed one), compressed with a small pure-Python LZ77 of the same kind
as the reference encoder: a feed's bodies repeat the same label names and values in every
series, so they shrink several times over, at a few milliseconds per second of load.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CONTENT_TYPE = "application/x-protobuf"
REMOTE_WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": CONTENT_TYPE,
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "clinic-loadtest",
}
METRIC_NAME_LABEL = "__name__"
# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LENGTH_DELIMITED = 0, 1, 2


@dataclass(frozen=True)
class Sample:
    """One value of one series at one time: the metric name, its labels, the value."""

    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by name (see labelled)
    value: float
    timestamp_ms: int


def labelled(name: str, value: float, timestamp_ms: int, labels: Mapping[str, str]) -> Sample:
    """Return a sample with its labels sorted by name (remote write asks for them sorted)."""
    return Sample(name, tuple(sorted(labels.items())), float(value), int(timestamp_ms))


def encode_write_request(samples: Iterable[Sample]) -> bytes:
    """Return the protobuf WriteRequest of ``samples``: one TimeSeries per name and label set.

    A series' samples keep the order given, which must be oldest first.
    """
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[Sample]] = {}
    for sample in samples:
        series.setdefault((sample.name, sample.labels), []).append(sample)
    body = bytearray()
    for (name, labels), points in series.items():
        all_labels = sorted(((METRIC_NAME_LABEL, name), *labels))
        encoded = b"".join(
            _field(1, _LENGTH_DELIMITED, _label(label, value)) for label, value in all_labels
        ) + b"".join(_field(2, _LENGTH_DELIMITED, _sample(point)) for point in points)
        body += _field(1, _LENGTH_DELIMITED, encoded)
    return bytes(body)


def remote_write_body(samples: Iterable[Sample]) -> bytes:
    """Return the HTTP body of a remote write: the WriteRequest, snappy-compressed."""
    return snappy_compress(encode_write_request(samples))


def _label(name: str, value: str) -> bytes:
    return _field(1, _LENGTH_DELIMITED, name.encode()) + _field(
        2, _LENGTH_DELIMITED, value.encode()
    )


def _sample(sample: Sample) -> bytes:
    value = sample.value if math.isfinite(sample.value) or math.isnan(sample.value) else 0.0
    return (
        _key(1, _FIXED64)
        + struct.pack("<d", value)
        + _key(2, _VARINT)
        + _varint(sample.timestamp_ms & 0xFFFF_FFFF_FFFF_FFFF)  # int64: two's complement
    )


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _key(number, wire_type) + _varint(len(payload)) + payload


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# -- snappy, block format ------------------------------------------------------------------
_MIN_MATCH = 4
_MAX_OFFSET = 65_535  # copies with a 2-byte offset only
_MAX_COPY = 64  # one copy element carries at most 64 bytes


def snappy_compress(data: bytes) -> bytes:
    """Compress ``data`` in snappy's block format (what remote write's Content-Encoding means).

    Greedy LZ77 over a table of the last position of every 4-byte sequence; literals and
    2-byte-offset copies only, which every snappy decoder reads.
    """
    out = bytearray(_varint(len(data)))
    last_seen: dict[bytes, int] = {}
    literal_start = position = 0
    end = len(data) - _MIN_MATCH
    while position <= end:
        window = data[position : position + _MIN_MATCH]
        candidate = last_seen.get(window)
        last_seen[window] = position
        if candidate is None or position - candidate > _MAX_OFFSET:
            position += 1
            continue
        length = _MIN_MATCH
        while position + length < len(data) and data[candidate + length] == data[position + length]:
            length += 1
        _emit_literal(out, data[literal_start:position])
        _emit_copy(out, position - candidate, length)
        position += length
        literal_start = position
    _emit_literal(out, data[literal_start:])
    return bytes(out)


def _emit_literal(out: bytearray, literal: bytes) -> None:
    if not literal:
        return
    size = len(literal) - 1
    if size < 60:
        out.append(size << 2)
    else:
        width = (size.bit_length() + 7) // 8
        out.append((59 + width) << 2)
        out += size.to_bytes(width, "little")
    out += literal


def _emit_copy(out: bytearray, offset: int, length: int) -> None:
    while length > 0:
        chunk = min(length, _MAX_COPY)  # a 2-byte-offset copy carries 1..64 bytes
        out.append(((chunk - 1) << 2) | 0b10)
        out += offset.to_bytes(2, "little")
        length -= chunk
