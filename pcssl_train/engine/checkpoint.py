"""Checkpoints with everything needed for an exact resume; written atomically (tmp + rename).

Every file is read by ``load_untrusted``: ``torch.load(weights_only=True)`` with the few numpy types
our checkpoints' RNG state needs allow-listed, so a crafted file cannot run code. That holds for a
run's own resume checkpoint too, and for anything given to ``eval``, ``export`` or ``pretrain --init``
(exports, run checkpoints, official checkpoints)."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj, path: Path) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it over ``path``. A failure (no
    permission, a full disk) is a TrainError naming ``path``, and leaves no temporary file."""
    from ..errors import TrainError

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "PytorchStreamWriter" not in str(e) and "open file" not in str(e):
            raise
        try:
            tmp.unlink()
        except OSError:
            pass
        import re

        if isinstance(e, FileExistsError):
            why = f"{e.filename} is a file, not a folder"
        elif isinstance(e, OSError) and e.strerror:
            why = e.strerror
        else:
            found = re.search(r"strerror: (.+)$", str(e).splitlines()[0] if str(e) else "")
            why = found.group(1) if found else (str(e).splitlines() or [""])[0][:160]
        raise TrainError(f"{path}: cannot write it ({why})") from None


def _numpy_globals() -> list:
    """What ``np.random.get_state()`` pickles to: arrays of plain numbers and their dtypes."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy < 1.25
        from numpy.core.multiarray import _reconstruct
    names = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
    dtypes = [type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.int32, np.bool_)]
    from torch.torch_version import TorchVersion   # a str; older files of ours store torch.__version__ as one

    return [(_reconstruct, n) for n in names] + [np.ndarray, np.dtype, TorchVersion] + dtypes


def _global_names(entries) -> set[str]:
    return {e[1] if isinstance(e, tuple) else f"{e.__module__}.{e.__qualname__}" for e in entries}


def load_untrusted(path: Path, map_location="cpu"):
    """A file someone handed us, read with ``weights_only=True``: tensors, containers, numbers,
    strings and numpy number arrays only. A file that needs anything else (arbitrary unpickling) is
    refused with a one-line TrainError naming what it asked for; nothing in it runs."""
    from ..errors import TrainError

    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a checkpoint file")
    _check_intact(path)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        try:
            wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001 - not a zip checkpoint: fall back to torch's message
            wanted = []
        allowed = _global_names(_numpy_globals())
        wanted = [w for w in wanted if w not in allowed] or [_unsupported_global(str(e))]
        raise TrainError(f"{path}: refused, loading it would need arbitrary unpickling ({', '.join(wanted)}); "
                         f"checkpoint files may hold only weights, numbers and strings") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on a bad file
        import zipfile

        why = ("not a zip archive as torch.save writes" if not zipfile.is_zipfile(path)
               else f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}")
        raise TrainError(f"{path}: not a readable torch checkpoint ({why})") from None


def _check_intact(path: Path) -> None:
    """torch reads a zip checkpoint without checking the CRCs of its records, so a file damaged after it
    was written (bytes changed, not cut) would load as wrong weights: check them first (a CRC pass over
    the file, about a second per GB)."""
    import zipfile

    from ..errors import TrainError

    try:
        archive = zipfile.ZipFile(path)
    except Exception:  # noqa: BLE001 - not a zip archive (or an unreadable one): torch.load says what it is
        return
    try:
        with archive:
            bad = archive.testzip()
    except Exception:  # noqa: BLE001 - zipfile raises BadZipFile, zlib and struct errors on a damaged record
        bad = "a record"
    if bad is not None:
        raise TrainError(f"{path}: damaged, {bad} inside fails its CRC check (the file changed after it was "
                         f"written); not a readable torch checkpoint")


def _unsupported_global(message: str) -> str:
    import re

    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", message) or re.search(r"GLOBAL ([\w.]+)", message)
    return found.group(1) if found else "a non-tensor object"
