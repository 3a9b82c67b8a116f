"""RecordIO-protobuf, SageMaker's training format, without the SageMaker SDK.

Drop-in for the SDK 2.x functions ``write_numpy_to_dense_tensor`` and ``read_records``: the
writer produces the same bytes as sagemaker 2.257.7 (checked against vectors made with that
version, in tests/digits/data). The SDK 3.x no longer has these functions, and 1.x's do not
import with protobuf >= 4, hence this module.

Why by hand rather than with ``protobuf``: the schema (``aialgs.data.Record``) is small and
fixed, and encoding it directly needs no generated classes or protoc, and lets a dense row be
written straight from numpy's bytes. The format:

- framing, per record: ``uint32 0xCED7230A`` (little-endian), ``uint32`` payload length,
  the payload, zero padding to a multiple of 4;
- payload: ``Record { map<string, Value> features = 1; map<string, Value> label = 2; }``
  with the dense row under ``features["values"]`` and the label under ``label["values"]``;
- ``Value`` holds ``float32_tensor = 2``, ``float64_tensor = 3`` or ``int32_tensor = 7``,
  each a message whose ``values = 1`` is packed.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<II")

# Value's field number and the tensor's element encoding, per SDK type name.
_FLOAT32, _FLOAT64, _INT32 = 2, 3, 7
_WIRE_LENGTH = 2


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32 values are sign-extended to 64 bits, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _WIRE_LENGTH) + _varint(len(payload)) + payload


def _resolve_type(dtype: np.dtype) -> int:
    """As the SDK: any integer type → Int32, float64 → Float64, float32 → Float32."""
    if np.issubdtype(dtype, np.integer):
        return _INT32
    if dtype == np.float64:
        return _FLOAT64
    if dtype == np.float32:
        return _FLOAT32
    raise ValueError(f"Unsupported dtype {dtype} on array")


def _tensor(kind: int, values: np.ndarray) -> bytes:
    if kind == _FLOAT32:
        packed = np.asarray(values, dtype="<f4").tobytes()
    elif kind == _FLOAT64:
        packed = np.asarray(values, dtype="<f8").tobytes()
    else:
        packed = b"".join(_varint(int(np.int32(v))) for v in np.asarray(values).ravel())
    tensor = _field(1, packed) if len(packed) else b""
    return _field(kind, tensor)  # the Value message


def _map_entry(number: int, key: str, value: bytes) -> bytes:
    return _field(number, _field(1, key.encode()) + _field(2, value))


def encode_record(kind: int, vector: np.ndarray, label_kind: int | None = None, label=None) -> bytes:
    payload = _map_entry(1, "values", _tensor(kind, vector))
    if label_kind is not None:
        payload += _map_entry(2, "values", _tensor(label_kind, np.asarray([label])))
    return payload


def encode_label_map(labels: dict[str, np.ndarray | np.floating]) -> bytes:
    """A record with no features and one label tensor per key: the shape of the built-in
    algorithms' RecordIO answers (``{"closest_cluster": …, "distance_to_cluster": …}``)."""
    return b"".join(_map_entry(2, key, _tensor(_resolve_type(np.asarray(value).dtype), np.atleast_1d(value)))
                    for key, value in labels.items())


def write_recordio(file: BinaryIO, data: bytes) -> None:
    file.write(_HEADER.pack(MAGIC, len(data)))
    file.write(data)
    file.write(b"\x00" * (-len(data) % 4))


def write_numpy_to_dense_tensor(file: BinaryIO, array: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write each row of ``array`` (and its label) as one record, streaming row by row."""
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    label_kind = None
    if labels is not None:
        if labels.ndim != 1:
            raise ValueError("Labels must be a Vector")
        if labels.shape[0] not in array.shape:
            raise ValueError(f"Label shape {labels.shape} not compatible with array shape {array.shape}")
        label_kind = _resolve_type(labels.dtype)
    kind = _resolve_type(array.dtype)
    for index, vector in enumerate(array):
        label = labels[index] if labels is not None else None
        write_recordio(file, encode_record(kind, vector, label_kind, label))


# -- reading ---------------------------------------------------------------------------------------

@dataclass
class Record:
    """A decoded record: tensors by key, as numpy arrays (the SDK returns protobuf objects)."""

    features: dict[str, np.ndarray] = field(default_factory=dict)
    label: dict[str, np.ndarray] = field(default_factory=dict)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_LENGTH:
            length, pos = _read_varint(data, pos)
            yield number, data[pos:pos + length]
            pos += length
        elif wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _decode_value(data: bytes) -> np.ndarray:
    for kind, tensor in _fields(data):
        values = next((payload for number, payload in _fields(tensor) if number == 1), b"")
        if kind == _FLOAT32:
            return np.frombuffer(values, dtype="<f4")
        if kind == _FLOAT64:
            return np.frombuffer(values, dtype="<f8")
        if kind == _INT32:
            out, pos = [], 0
            while pos < len(values):
                raw, pos = _read_varint(values, pos)
                out.append(raw - (1 << 64) if raw >= 1 << 63 else raw)
            return np.asarray(out, dtype=np.int32)
    return np.asarray([])


def decode_record(payload: bytes) -> Record:
    record = Record()
    for number, entry in _fields(payload):
        if number not in (1, 2):
            continue
        parts = dict(_fields(entry))
        target = record.features if number == 1 else record.label
        target[parts.get(1, b"").decode()] = _decode_value(parts.get(2, b""))
    return record


def read_recordio(file: BinaryIO) -> Iterator[bytes]:
    while header := file.read(_HEADER.size):
        if len(header) < _HEADER.size:
            raise ValueError("truncated RecordIO header")
        magic, length = _HEADER.unpack(header)
        if magic != MAGIC:
            raise ValueError(f"not RecordIO: magic {magic:#x}")
        data = file.read(length)
        if len(data) < length:
            raise ValueError("truncated RecordIO record")
        file.read(-length % 4)
        yield data


def read_records(file: BinaryIO) -> list[Record]:
    """Every record of ``file``, decoded (``iter_records`` streams)."""
    return list(iter_records(file))


def iter_records(file: BinaryIO) -> Iterator[Record]:
    for payload in read_recordio(file):
        yield decode_record(payload)
