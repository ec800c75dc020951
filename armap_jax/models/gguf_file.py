"""A small, fast GGUF (v2/v3, little-endian) reader: metadata + raw tensor bytes.

`gguf.GGUFReader` builds a numpy view per vocabulary string, which takes tens
of seconds for a 49k-token vocabulary; here metadata is parsed with `struct`
in one pass and tensors are memory-mapped slices. Dequantisation still uses
the `gguf` package (`gguf.quants.dequantize`).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import numpy as np

_SCALARS = {  # GGUF value type -> struct format
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32,
          5: np.int32, 6: np.float32, 7: np.bool_, 10: np.uint64, 11: np.int64,
          12: np.float64}
_STRING, _ARRAY = 8, 9
_DEFAULT_ALIGNMENT = 32


class GGUFFormatError(ValueError):
  """A file that is not a GGUF file this reader understands."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  name: str
  shape: tuple[int, ...]  # numpy order (GGUF's ne reversed): rows first.
  ggml_type: int
  data: np.ndarray  # uint8 bytes, shape (rows..., bytes per row).


class GGUFFile:
  """Parsed GGUF file: `metadata` dict and `tensors` list."""

  def __init__(self, path: str):
    self.path = path
    self._buf = np.memmap(path, dtype=np.uint8, mode="r")
    self._mv = memoryview(self._buf)
    self._pos = 0
    magic = bytes(self._mv[:4])
    if magic != b"GGUF":
      raise GGUFFormatError(f"{path}: not a GGUF file (magic {magic!r})")
    self._pos = 4
    version = self._scalar(4)
    if version not in (2, 3):
      raise GGUFFormatError(f"{path}: unsupported GGUF version {version}")
    n_tensors, n_kv = self._scalar(10), self._scalar(10)
    self.metadata: dict[str, Any] = {}
    for _ in range(n_kv):
      key = self._string()
      self.metadata[key] = self._value(self._scalar(4))
    infos = []
    for _ in range(n_tensors):
      name = self._string()
      n_dims = self._scalar(4)
      ne = [self._scalar(10) for _ in range(n_dims)]
      ggml_type = self._scalar(4)
      offset = self._scalar(10)
      infos.append((name, ne, ggml_type, offset))
    align = int(self.metadata.get("general.alignment", _DEFAULT_ALIGNMENT))
    start = -(-self._pos // align) * align
    self.tensors = [self._tensor(start, *info) for info in infos]

  def _scalar(self, vtype: int):
    fmt = _SCALARS[vtype]
    (value,) = struct.unpack_from(fmt, self._mv, self._pos)
    self._pos += struct.calcsize(fmt)
    return value

  def _string(self) -> str:
    n = self._scalar(10)
    s = bytes(self._mv[self._pos:self._pos + n]).decode("utf-8",
                                                        errors="replace")
    self._pos += n
    return s

  def _value(self, vtype: int):
    if vtype == _STRING:
      return self._string()
    if vtype == _ARRAY:
      elem, count = self._scalar(4), self._scalar(10)
      if elem in _NUMPY:
        dt = np.dtype(_NUMPY[elem]).newbyteorder("<")
        arr = np.frombuffer(self._mv, dtype=dt, count=count, offset=self._pos)
        self._pos += arr.nbytes
        return arr.tolist()
      return [self._value(elem) for _ in range(count)]
    if vtype not in _SCALARS:
      raise GGUFFormatError(f"{self.path}: unknown metadata value type {vtype} "
                            f"at byte {self._pos}")
    return self._scalar(vtype)

  def _tensor(self, start: int, name: str, ne: list[int], ggml_type: int,
              offset: int) -> TensorInfo:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
      block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (KeyError, ValueError) as e:
      raise GGUFFormatError(f"{self.path}: tensor {name!r} has unknown ggml "
                            f"type {ggml_type}") from e
    shape = tuple(int(d) for d in reversed(ne))
    row_bytes = shape[-1] // block * type_size
    rows = int(np.prod(shape[:-1], dtype=np.int64))
    begin = start + offset
    data = self._buf[begin:begin + rows * row_bytes]
    if data.size != rows * row_bytes:
      raise GGUFFormatError(f"{self.path}: tensor {name!r} runs past the end "
                            f"of the file")
    return TensorInfo(name, shape, ggml_type,
                      data.reshape(*shape[:-1], row_bytes))

  def dequantize(self, tensor: TensorInfo) -> np.ndarray:
    """float32 array of `tensor.shape`."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    arr = dequantize(np.asarray(tensor.data),
                     GGMLQuantizationType(tensor.ggml_type))
    return np.asarray(arr, dtype=np.float32).reshape(tensor.shape)
