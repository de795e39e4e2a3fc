"""Writing a state_dict as a PyTorch `.pth` file without torch (torch's zip format).

`torch.load` (and the original repository's `load_state_dict`) reads the
result as an `OrderedDict` of float tensors. The layout is what `torch.save`
writes: a zip archive `{name}/data.pkl` (the pickled OrderedDict, each tensor
`torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False,
OrderedDict())` with its storage as a persistent id `("storage",
torch.FloatStorage, key, "cpu", numel)`), one raw little-endian file per
storage `{name}/data/{key}`, `{name}/byteorder` and `{name}/version` (3).
The pickle names torch's globals by text (GLOBAL opcodes), so torch need not
be importable here.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Mapping

import numpy as np

from xtc_jax.infra import atomic

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
                  np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage",
                  np.dtype(np.bool_): "BoolStorage"}  # fmt: skip


class _Global:
    """A torch global, pickled by name (`module.name`) without importing its module."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants a callable in a reduce tuple; never called
        raise TypeError(f"{self.module}.{self.name} is only a name in a pickle here")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_ORDERED_DICT = _Global("collections", "OrderedDict")


class _Tensor:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Pickler(pickle._Pickler):  # the Python pickler: it can be taught to write a name
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            memo = self.memo.get(id(obj))
            if memo is not None:
                self.write(self.get(memo[0]))
                return
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            self.memoize(obj)
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _Tensor):
            storage = _Global("torch", _STORAGE_NAMES[obj.array.dtype])
            return ("storage", storage, obj.key, "cpu", int(obj.array.size))
        return None


def _tensor_reduce(tensor: _Tensor, stride: tuple[int, ...]):
    return (_REBUILD, (tensor, 0, tuple(tensor.array.shape), stride, False,
                       _EmptyOrderedDict()))  # fmt: skip


class _EmptyOrderedDict:
    def __reduce__(self):
        return (_ORDERED_DICT, ())


class _Rebuilt:
    """One tensor of the state_dict: pickles as the rebuild call over its storage."""

    def __init__(self, tensor: _Tensor):
        self.tensor = tensor

    def __reduce__(self):
        array = self.tensor.array
        stride = tuple(s // array.itemsize for s in array.strides) if array.ndim else ()
        return _tensor_reduce(self.tensor, stride)


class _StateDict:
    def __init__(self, items):
        self.items = items

    def __reduce__(self):
        return (_ORDERED_DICT, (), None, None, iter(self.items))


def write_pth(path: str | os.PathLike, state: Mapping[str, np.ndarray]) -> str:
    """Writes `state` ({key: array}) to `path` in torch's zip format, atomically."""
    path = os.fspath(path)
    archive_name = os.path.splitext(os.path.basename(path))[0] or "archive"
    tensors = collections.OrderedDict()
    for index, (key, value) in enumerate(state.items()):
        array = np.array(value, order="C", copy=None)  # (ascontiguousarray makes 0-d 1-d)
        if array.dtype not in _STORAGE_NAMES:
            array = array.astype(np.float32)
        tensors[key] = _Tensor(str(index), array.astype(array.dtype.newbyteorder("<")))
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(_StateDict([(k, _Rebuilt(t)) for k, t in tensors.items()]))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{archive_name}/data.pkl", buffer.getvalue())
        archive.writestr(f"{archive_name}/byteorder", "little")
        for tensor in tensors.values():
            archive.writestr(f"{archive_name}/data/{tensor.key}", tensor.array.tobytes())
        archive.writestr(f"{archive_name}/version", "3\n")
    return atomic.write_bytes(path, out.getvalue())
