"""Writes that survive a kill or a full disk: a reader sees the whole old set of files or the whole new one.

`atomic_folder(target)` yields an empty temporary folder beside `target` (same filesystem); when the block
ends, every file in it is fsynced and the folder takes `target`'s place in one step (Linux's
`renameat2(RENAME_EXCHANGE)`; elsewhere two renames, with the moved-aside old folder restored by the next
writer or reader if a kill falls between them). Entries of the old folder that the new one does not hold are
carried over (hard links, so it costs no space): saving a model into a Trainer's output folder keeps its
checkpoints. A failure, a kill included, leaves `target` untouched; the temporary folder is removed at once,
or by the next `atomic_folder` / `recover` of the same target.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

_NEW, _OLD = ".new-", ".old-"
_RENAME_EXCHANGE = 2


def _siblings(target: Path, kind: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}{kind}*"))


def recover(target: str | os.PathLike) -> None:
    """Finish what an interrupted `atomic_folder` left: put a moved-aside old folder back when `target` is
    missing (the swap did not happen), and remove temporary folders."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    old = _siblings(target, _OLD)
    if old and not target.exists():
        os.rename(old[-1], target)
        _fsync_dir(target.parent)
    for stale in _siblings(target, _NEW) + _siblings(target, _OLD):
        if not _writer_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)


def _writer_alive(folder: Path) -> bool:
    # temporary folders are named .<target>.new-<pid>-<random>: leave those of a writer still at work alone
    try:
        pid = int(folder.name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_folder(
    target: str | os.PathLike, carry: Callable[[str], bool] | None = None, keep_others: bool = True
) -> Iterator[Path]:
    """A temporary folder whose content replaces `target`'s in one step when the block ends without error.

    With `keep_others`, entries of the old `target` that the new folder lacks are carried over, except those
    for which `carry(name)` is False (e.g. stale weight shards)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder.")
    recover(target)
    tmp = target.parent / f".{target.name}{_NEW}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if keep_others and target.is_dir():
            _carry_over(target, tmp, carry)
        _fsync_tree(tmp)
        _swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_file_atomic(path: str | os.PathLike, data: bytes | str, durable: bool = True) -> None:
    """Replace one file in one step (temporary file beside it, fsync, rename). `durable=False` skips the fsyncs,
    for files in a folder that is itself swapped in (or thrown away) as a whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{_NEW}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with tmp.open("wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _carry_over(old: Path, new: Path, carry: Callable[[str], bool] | None) -> None:
    for entry in old.iterdir():
        if (new / entry.name).exists() or os.path.lexists(new / entry.name):
            continue
        if carry is not None and not carry(entry.name):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry), new / entry.name)
        elif entry.is_dir():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap_in(new: Path, target: Path) -> None:
    if not target.exists():
        os.rename(new, target)
    elif not _exchange(new, target):
        aside = target.parent / f".{target.name}{_OLD}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, aside)
        os.rename(new, target)
        new = aside
    _fsync_dir(target.parent)
    shutil.rmtree(new, ignore_errors=True)  # after an exchange, `new` holds the old content


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), f"Could not swap {a} into {b}: {os.strerror(ctypes.get_errno())}")


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)
