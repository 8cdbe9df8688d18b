"""Atomic writes: a file or a folder is built under a temporary name in the same
directory, then renamed onto its final name (`atomic_path`, `atomic_dir`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed, so a crash never leaves a
    half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; final files get the usual mode
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, existing: str = "replace",
               tag: str = "") -> Iterator[Path]:
    """Yield a new empty folder next to ``path``; on success it becomes ``path``.

    ``existing`` says what happens when ``path`` exists at that moment: ``"replace"`` (the
    old folder is renamed aside, the new one renamed in, the old one removed) or ``"keep"``
    (another process built it first: the new one is discarded). On any exception the
    temporary folder is removed, so no half-built folder ever has the final name. Its name,
    ``.tmp-NAME-TAG-PID-RANDOM``, lets a caller find leftovers of crashed builds
    (`stale_dirs`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if existing == "keep" and path.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if path.exists():
            old = tmp.with_name(tmp.name + ".old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def stale_dirs(path: str | os.PathLike, tag: str = "") -> list[Path]:
    """Temporary folders `atomic_dir` left for ``path`` (and ``tag``) when a process died."""
    path = Path(path)
    return sorted(path.parent.glob(f".tmp-{path.name}-{tag}-*"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def ensure_writable_dir(folder: str | os.PathLike, what: str, error=None) -> Path:
    """Create ``folder`` if needed and prove it writable, else raise ``error`` (a UserError).

    ``what`` names the setting in the message (e.g. ``"--out"``, ``"cache root"``), so the
    user learns which path is wrong and why, before any work starts.
    """
    from study.errors import UserError

    error = error or UserError
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-") as fh:
            fh.write(b"\0" * 65536)  # real bytes: a full disk fails here, not mid-study
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise error(f"{what} {folder}: not writable ({exc.strerror or exc}); "
                    f"choose another folder") from None
    return folder


def read_json_object(path: Path, error, fix: str, holds: str) -> dict:
    """Read a JSON file that must hold an object; else raise ``error`` naming ``path``.

    ``fix`` says what to do about invalid JSON, ``holds`` what the object should contain.
    """
    import json

    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        raise error(f"{path}: must hold a JSON object ({holds})")
    return meta
