"""Read the Point-BERT family's pickled data files (ModelNet ``.dat`` caches, few-shot ``.pkl``
folds) without running anything they contain.

A pickle is a program: unpickling one calls whatever global functions it names and applies any
state to the objects it built. These files are written by other people's scripts and passed
around, so :func:`load_data_pickle` lets a pickle build only plain data: lists, tuples, dicts,
sets, strings, bytes, numbers, booleans, None, and numpy arrays and scalars of a plain dtype
(booleans, integers, floats, complex, fixed-length strings: no object, void, structured or
sub-array dtypes). It runs Python's own unpickling code with three things changed:

* a global is resolved only from :data:`ALLOWED` (numpy's array / scalar / dtype rebuilders and
  ``_codecs.encode`` for latin-1 bytes), each replaced by a checking stand-in; any other name
  (``os.system``, ``builtins.eval``, a class of some package) is refused before it is looked up;
* ``numpy.ndarray`` resolves to a marker that only ``_reconstruct`` accepts (it cannot be called);
* BUILD (``__setstate__``) is applied only to an ndarray or a dtype this unpickler made, with the
  state checked first: a dtype must come out plain, an array's bytes must be exactly its shape
  times its item size (nothing is allocated that the file does not hold).

Anything else ends the load with a one-line :class:`TrainError` naming the problem.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import TrainError

PLAIN_KINDS = "biufcSU"
MAX_DIMS = 32


class Refused(pickle.UnpicklingError):
    """A global outside :data:`ALLOWED`."""


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: accepted by ``_reconstruct`` only, never called."""


NDARRAY = _NdarrayMarker()


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    return multiarray


def plain_dtype(dt) -> bool:
    """A numpy dtype of one plain item: no object, void, fields or sub-array; its flags those of a
    fresh dtype of the same string."""
    if not isinstance(dt, np.dtype) or dt.kind not in PLAIN_KINDS or dt.fields is not None or dt.subdtype is not None:
        return False
    try:
        fresh = np.dtype(dt.str)
    except TypeError:
        return False
    return not dt.hasobject and dt.flags == fresh.flags and dt.itemsize == fresh.itemsize and dt.itemsize > 0


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """What protocol-0..2 pickles written by Python 3 use for ``bytes``; any other codec is refused."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str) or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _dtype(obj, align=False, copy=False):
    """``numpy.dtype(...)`` of a plain type code (a new instance, so BUILD cannot touch numpy's own)."""
    if not isinstance(obj, str):
        raise pickle.UnpicklingError(f"numpy dtype of {type(obj).__name__}")
    try:
        dt = np.dtype(obj)
    except TypeError as exc:
        raise pickle.UnpicklingError(f"numpy dtype {obj!r}: {exc}") from None
    if not plain_dtype(dt):
        raise pickle.UnpicklingError(f"numpy dtype {obj!r} (not a plain number or string type)")
    return np.dtype(obj, bool(align), True)


def _reconstruct(cls, shape, dtype_code):
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that BUILD then fills."""
    if cls is not NDARRAY or tuple(shape) != (0,):
        raise pickle.UnpicklingError("numpy _reconstruct of something other than an empty ndarray")
    return _multiarray()._reconstruct(np.ndarray, (0,), dtype_code)


def _scalar(dtype, data=None):
    if not plain_dtype(dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar that is not one plain item")
    return _multiarray().scalar(dtype, data)


def _frombuffer(buf, dtype, shape, order):
    if not plain_dtype(dtype) or not isinstance(shape, tuple) or len(shape) > MAX_DIMS or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy buffer that is not a plain array")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
ALLOWED = {
    **{(m, "_reconstruct"): _reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMERIC},
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
}


def _check_array_state(state) -> None:
    """An ndarray ``__setstate__`` state ``(version, shape, dtype, fortran, data)`` of a plain array whose
    bytes are exactly its size."""
    if not isinstance(state, tuple) or len(state) != 5:
        raise pickle.UnpicklingError("numpy array state of an unknown form")
    _, shape, dtype, fortran, data = state
    if not (isinstance(shape, tuple) and len(shape) <= MAX_DIMS and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise pickle.UnpicklingError("numpy array with a malformed shape")
    if not plain_dtype(dtype):
        raise pickle.UnpicklingError("numpy array of a dtype that is not plain")
    if not isinstance(data, (bytes, bytearray)) or len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise pickle.UnpicklingError("numpy array whose bytes do not match its shape")
    if not isinstance(fortran, bool):
        raise pickle.UnpicklingError("numpy array state of an unknown form")


class DataUnpickler(pickle._Unpickler):
    """Python's unpickler, restricted as the module docstring says."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids")

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray) and type(inst) is np.ndarray and inst.size == 0:
            _check_array_state(state)
            inst.__setstate__(state)
        elif isinstance(inst, np.dtype):
            inst.__setstate__(state)
            if not plain_dtype(inst):
                raise pickle.UnpicklingError("numpy dtype whose pickled state makes it not plain")
        else:
            raise pickle.UnpicklingError(f"state applied to a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build


def loads_data(data: bytes):
    """The plain data pickled in ``data`` (see the module docstring); raises pickle.UnpicklingError
    (:class:`Refused` for a global that is not allowed) and the usual decoding errors."""
    import io

    return DataUnpickler(io.BytesIO(data)).load()


def load_data_pickle(path: str | Path, what: str = "pickle"):
    """The plain data pickled in file ``path``; a one-line TrainError for anything else: a pickle
    that names a global outside :data:`ALLOWED` (``"... refused: the pickle calls os.system, which
    could run code; only plain data (lists, dicts, numbers, strings, numpy arrays) is read"``), data
    this reader does not build, a truncated or non-pickle file, an unreadable file."""
    path = Path(path)
    try:
        fh = open(path, "rb")   # streamed: a 2 GB cache is not held twice
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    try:
        with fh:
            return DataUnpickler(fh).load()
    except Refused as exc:
        raise TrainError(f"{path}: refused: the {what} calls {exc}, which could run code; only plain data (lists, "
                         "dicts, numbers, strings, numpy arrays) is read from pickles") from None
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    except MemoryError:
        raise TrainError(f"{path}: not a readable {what} (it asks for more memory than there is)") from None
    except RecursionError:
        raise TrainError(f"{path}: not a readable {what} (nested too deeply)") from None
    except Exception as exc:   # noqa: BLE001 - whatever a crafted file provokes inside unpickling: one line
        detail = " ".join(str(exc).split())[:120] or exc.__class__.__name__
        raise TrainError(f"{path}: not a readable {what} ({detail})") from None
