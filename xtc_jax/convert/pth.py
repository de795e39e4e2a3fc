"""Reading PyTorch `.pth` files without torch, and without executing anything they name.

A `.pth` is a pickle, and a pickle can name any callable (`os.system`), which
the plain unpickler would call. `read_pth` unpickles with a restricted
unpickler that knows a short list of names: the containers a state_dict is
made of (`collections.OrderedDict`), torch's tensor-rebuild functions and its
storage and dtype names, each mapped to a NumPy stand-in here. Any other
global is refused, naming it; nothing in the file is ever called.

Both of torch's formats are read:
- the zip format (torch >= 1.6): `{archive}/data.pkl` plus one raw file per
  storage, `{archive}/data/{key}`, in the byte order `{archive}/byteorder`;
- the legacy format (before 1.6, what `torch.save(...,
  _use_new_zipfile_serialization=False)` still writes): pickles in a row (a
  magic number, the protocol version, system info, the object, the storage
  keys), then each storage as an int64 element count and its raw bytes.
Tensors come back as C-contiguous NumPy arrays, whatever device they were
saved from (a "cuda:0" location is only a tag here).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

from xtc_jax.errors import DataError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: torch's storage class names and the element type each holds.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}  # fmt: skip
#: torch dtype names (as `torch.float32` pickles) and their NumPy types.
TORCH_DTYPES = {
    "float64": np.float64, "float32": np.float32, "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "int64": np.int64, "int32": np.int32, "int16": np.int16,
    "int8": np.int8, "uint8": np.uint8, "bool": np.bool_,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _StorageType:
    dtype: Any


@dataclasses.dataclass
class _Storage:
    """One storage of the file; its bytes are attached once read (legacy: after the object)."""

    key: str
    dtype: Any
    data: np.ndarray | None = None


@dataclasses.dataclass
class _LazyTensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: Any = None  # set by _rebuild_tensor_v3 (the storage is untyped bytes there)

    def materialise(self, path: str) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise DataError(f"{path}: storage {self.storage.key} has no data; the file is cut.")
        if self.dtype is not None and self.dtype != data.dtype:
            data = data.view(self.dtype)
        if not self.size:
            return np.array(data[self.offset])
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if min(self.size) > 0 and needed >= data.size:
            raise DataError(f"{path}: a tensor reaches past the end of its storage; cut file?")
        base = data[self.offset :]
        strides = tuple(s * data.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(base, shape=self.size, strides=strides)
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None) -> _LazyTensor:  # fmt: skip
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride) -> _LazyTensor:
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None) -> _LazyTensor:  # fmt: skip
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride), dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state) -> Any:
    return data


#: (module, name) -> what the restricted unpickler gives for it. Nothing else is allowed.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(np.dtype(t)) for name, t in STORAGE_DTYPES.items()},
    ("torch.storage", "UntypedStorage"): _StorageType(np.dtype(np.uint8)),
    **{("torch", name): np.dtype(t) for name, t in TORCH_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names of `_ALLOWED`; storages are handed to `on_storage`."""

    def __init__(self, file, path: str, on_storage):
        super().__init__(file, encoding="latin1")
        self.path, self.on_storage = path, on_storage

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise DataError(
                f"{self.path} names the global {module}.{name}, which is not part of a "
                "state_dict; a .pth file is a pickle, and this one is refused rather than run."
            )
        return allowed

    def persistent_load(self, saved_id: Any) -> Any:
        if not isinstance(saved_id, tuple) or not saved_id or saved_id[0] not in ("storage",
                                                                               b"storage"):
            raise DataError(f"{self.path}: unknown persistent id {saved_id!r}; not a tensor file.")
        storage_type, key, _location, numel = saved_id[1:5]
        view = saved_id[5] if len(saved_id) > 5 else None
        if not isinstance(storage_type, _StorageType):
            raise DataError(f"{self.path}: storage of unknown type {storage_type!r}.")
        return self.on_storage(str(key), storage_type.dtype, int(numel), view)


def _materialise(obj: Any, path: str) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise(path)
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialise(v, path)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialise(v, path) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, path) for v in obj)
    return obj


def _read_zip(path: str, archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pickles) != 1:
        raise DataError(f"{path} is a zip file but not a torch checkpoint (no single data.pkl).")
    prefix = pickles[0][: -len("data.pkl")]
    order_name = f"{prefix}byteorder"
    big_endian = (order_name in archive.namelist()
                  and archive.read(order_name).strip() == b"big")  # fmt: skip
    storages: dict[str, _Storage] = {}

    def on_storage(key: str, dtype, numel: int, view) -> _Storage:
        if key not in storages:
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except KeyError:
                raise DataError(f"{path}: storage {key} is missing from the archive.") from None
            data = np.frombuffer(raw, np.dtype(dtype).newbyteorder(">" if big_endian else "<"))
            storages[key] = _Storage(key, dtype, data.astype(dtype))
        return storages[key]

    with archive.open(pickles[0]) as handle:
        return _RestrictedUnpickler(io.BytesIO(handle.read()), path, on_storage).load()


def _read_legacy(path: str, handle) -> Any:
    def load_plain(what: str) -> Any:
        try:
            return _RestrictedUnpickler(handle, path, _no_storage).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise DataError(f"{path}: not a PyTorch .pth file ({what}: {error}).") from error

    if load_plain("magic number") != LEGACY_MAGIC:
        raise DataError(f"{path}: not a PyTorch .pth file (wrong magic number).")
    if load_plain("protocol version") != LEGACY_PROTOCOL:
        raise DataError(f"{path}: unsupported legacy protocol version.")
    load_plain("system info")
    storages: dict[str, _Storage] = {}
    views: list[tuple[_Storage, str, int, int]] = []

    def on_storage(key: str, dtype, numel: int, view) -> _Storage:
        root = storages.setdefault(key, _Storage(key, dtype))
        if view is None:
            return root
        view_key, offset, size = str(view[0]), int(view[1]), int(view[2])
        piece = storages.setdefault(view_key, _Storage(view_key, dtype))
        views.append((piece, key, offset, size))
        return piece

    result = _RestrictedUnpickler(handle, path, on_storage).load()
    keys = load_plain("storage keys")
    for key in keys:
        header = handle.read(8)
        storage = storages.get(str(key))
        if len(header) < 8 or storage is None:
            raise DataError(f"{path} is truncated or corrupt at storage {key}.")
        (numel,) = struct.unpack("<q", header)
        itemsize = np.dtype(storage.dtype).itemsize
        raw = handle.read(numel * itemsize)
        if len(raw) < numel * itemsize:
            raise DataError(f"{path} is truncated: storage {key} has {len(raw)} of "
                            f"{numel * itemsize} bytes.")  # fmt: skip
        storage.data = np.frombuffer(raw, np.dtype(storage.dtype).newbyteorder("<")).astype(
            storage.dtype
        )
    for piece, root_key, offset, size in views:
        piece.data = storages[root_key].data[offset : offset + size]
    return result


def _no_storage(*_: Any) -> Any:
    raise DataError("a tensor where only plain values belong; not a PyTorch .pth file.")


def read_pth(path: str | os.PathLike) -> Any:
    """The object saved in a `.pth` file, tensors as NumPy arrays; DataError naming the file
    for anything that is not a torch checkpoint, is cut short, or names another global."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path} does not exist (or is not a file): pass a .pth file.")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                result = _read_zip(path, archive)
        except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as error:
            raise DataError(f"{path}: a broken torch zip checkpoint ({error}).") from error
    else:
        with open(path, "rb") as handle:
            result = _read_legacy(path, handle)
    return _materialise(result, path)
