"""Read the Point-BERT family's pickled data files (ModelNet ``.dat`` caches, few-shot ``.pkl``
folds) without running anything they contain.

A pickle is a program: unpickling one calls whatever global functions it names. These files are
written by other people's scripts and passed around, so :func:`load_data_pickle` lets a pickle
build only plain data: lists, tuples, dicts, sets, strings, bytes, numbers, booleans, None and
numpy arrays / scalars of numeric (or string) dtype. The only globals it may name are the ones
numpy and Python's pickle use to rebuild those (:data:`ALLOWED`). Any other global (``os.system``,
``builtins.eval``, ``subprocess.Popen``, a class of some package, ...) is refused before it is
looked up, in one line naming it; nothing the file names is imported or called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import TrainError


def _codecs_encode(text, encoding="utf-8", errors="strict"):
    """What protocol-2 pickles written by Python 3 use for ``bytes`` (``_codecs.encode(s, 'latin1')``);
    any other codec is refused."""
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str) or errors != "strict":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _dtype(*args):
    """``numpy.dtype(...)`` for data dtypes only (no object arrays: their items could be anything)."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object dtype")
    return dt


def _multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:
        from numpy.core import multiarray
    return multiarray


def _reconstruct(cls, shape, dtype_code):
    """numpy's ``_reconstruct(ndarray, (0,), b'b')``: an empty array that BUILD then fills from the
    file's own bytes (a non-empty shape here would allocate memory the file does not hold)."""
    if cls is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"numpy _reconstruct of {getattr(cls, '__name__', cls)!r} {shape!r}")
    return _multiarray()._reconstruct(np.ndarray, (0,), dtype_code)


def _scalar(dtype, *args):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar of an object dtype")
    return _multiarray().scalar(dtype, *args)


def _frombuffer(buf, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy buffer of an object dtype")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")
ALLOWED = {
    **{(m, "_reconstruct"): _reconstruct for m in _NUMPY_CORE},
    **{(m, "scalar"): _scalar for m in _NUMPY_CORE},
    **{(m, "_frombuffer"): _frombuffer for m in _NUMERIC},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("collections", "OrderedDict"): dict,
}


class Refused(pickle.UnpicklingError):
    """A global outside :data:`ALLOWED`."""


class DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids")


def loads_data(data: bytes):
    """The plain data pickled in ``data`` (see the module docstring); raises pickle.UnpicklingError
    (:class:`Refused` for a global that is not allowed) and the usual decoding errors."""
    return DataUnpickler(io.BytesIO(data)).load()


def load_data_pickle(path: str | Path, what: str = "pickle"):
    """The plain data pickled in file ``path``; a one-line TrainError for anything else: a pickle
    that names a global outside :data:`ALLOWED` (``"... refused: the pickle calls os.system, which
    could run code; only plain data (lists, dicts, numbers, strings, numpy arrays) is read"``), a
    truncated or non-pickle file, an unreadable file."""
    path = Path(path)
    try:
        fh = open(path, "rb")   # streamed: a 2 GB cache is not held twice
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    try:
        with fh:
            return DataUnpickler(fh).load()
    except OSError as exc:
        raise TrainError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    except Refused as exc:
        raise TrainError(f"{path}: refused: the {what} calls {exc}, which could run code; only plain data (lists, "
                         "dicts, numbers, strings, numpy arrays) is read from pickles") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, UnicodeDecodeError, OverflowError) as exc:
        detail = " ".join(str(exc).split())[:120] or exc.__class__.__name__
        raise TrainError(f"{path}: not a readable {what} ({detail})") from None
