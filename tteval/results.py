"""Run folders on disk: append-only fsynced samples.jsonl, atomically replaced run.json and metrics.json.

Nothing on disk is ever left inconsistent: an append that fails (a full disk) is cut back off, files written
together are all written before any is renamed into place, and metrics.json is removed before the samples it was
computed from change. Sample lines are validated when read back; a write failure is one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tteval.errors import TtevalError
from tteval.locking import LOCK_NAME, held
from tteval.records import SampleLines, SampleRecord, SampleRules, group_by_problem, read_samples

def json_bytes(obj: Any) -> bytes:
    """`obj` as indented JSON text, numpy values and paths included."""
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode("utf-8")


def write_atomic(files: dict[Path, bytes]) -> None:
    """Write every file to a temp file beside it and fsync, then rename them into place in order.

    No file is replaced unless all were written: a full disk or a read-only folder leaves every file as it was."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            except OSError as exc:
                raise _write_error(path, exc) from None
            temps.append((tmp, path))
            try:
                os.fchmod(fd, _mode_of(path))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise _write_error(path, exc) from None
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise _write_error(path, exc) from None
    finally:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # only the temps not renamed are still there


def _mode_of(path: Path) -> int:
    """The permissions a replaced file keeps (a new one gets rw-r--r--, not mkstemp's private rw-------)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o644


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it, then rename over `path`."""
    write_atomic({path: json_bytes(obj)})


def _write_error(path: Path, exc: OSError) -> TtevalError:
    return TtevalError(f"cannot write {path}: {exc.strerror or exc}")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def describe_file_kind(st: os.stat_result) -> str:
    """'a regular file', 'a folder', 'a symbolic link', 'a character device', ... for an lstat result."""
    mode = st.st_mode
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return name
    return "not a file"


def check_output_file(path: Path, option: str = "--out") -> None:
    """Refuse an output path that exists and is not a regular file (a symlink, a device, a FIFO, a folder).

    Writing renames a new file over the path, which would replace such a thing itself (as root, /dev/null)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TtevalError(f"{option} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise TtevalError(f"{option} {path} is {describe_file_kind(st)}; give a regular file or a new path")


@dataclass
class RunDir:
    """One run's folder: `run.json` (config, versions, timings), `samples.jsonl`, `metrics.json`."""

    path: Path

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Create the folder if needed and hold its lock: a second process on the same folder fails at once."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise TtevalError(f"cannot create run folder {self.path}: a file is in the way") from None
        except OSError as exc:
            raise TtevalError(f"cannot create run folder {self.path}: {exc.strerror or exc}") from None
        with held(self.path / LOCK_NAME, f"run folder {self.path}"):
            yield

    def remove_if_unused(self) -> None:
        """Remove a folder that holds no samples (a run that failed before generating): run.json, lock, folder."""
        if self.samples_path.exists():
            return
        for p in (self.run_json, self.path / LOCK_NAME):
            with contextlib.suppress(OSError):
                p.unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()

    def read_samples(self, rules: SampleRules | None = None) -> list[SampleRecord]:
        """The samples written so far (`tteval.records.read_samples`); the file is not changed, and a torn last
        line (a crash mid-write) is left out."""
        return read_samples(self.samples_path, rules).records

    def recover_samples(self, rules: SampleRules | None = None,
                        on_warning: Callable[[str], None] | None = None) -> list[SampleRecord]:  # fmt: skip
        """Read the samples to resume from; a half-written last line (a crash mid-write) is cut off the file.

        With `rules`, every line is checked: a known task id, a sample_index in [0, n), no (task, index) twice;
        anything else is a one-line error naming file:line (the file is left as it is)."""
        return self._repaired(rules, on_warning).records

    def _repaired(self, rules: SampleRules | None, on_warning: Callable[[str], None] | None) -> SampleLines:
        p = self.samples_path
        lines = read_samples(p, rules)
        if lines.torn:
            try:
                os.truncate(p, os.path.getsize(p) - lines.torn)
            except OSError as exc:
                raise TtevalError(f"cannot repair {p} (a half-written last line): {exc.strerror or exc}") from None
            if on_warning:
                on_warning(f"{p}: cut off a half-written last line ({lines.torn} bytes, a write torn by a crash);"
                           " its samples are generated again")  # fmt: skip
        return lines

    def trim(self, keep: Callable[[list[SampleRecord]], int], rules: SampleRules | None = None,
             on_warning: Callable[[str], None] | None = None) -> dict[str, list[SampleRecord]]:  # fmt: skip
        """Keep the first keep(records) samples of each problem (in sample order), rewriting the file if any go
        (the kept lines byte for byte). Returns the kept samples per problem that has any: what a resumed run
        continues from."""
        lines = self._repaired(rules, on_warning)
        raw = {id(r): line for r, line in zip(lines.records, lines.raw)}
        kept: dict[str, list[SampleRecord]] = {}
        for task_id, group in group_by_problem(lines.records).items():
            count = keep(group)
            if count > 0:
                kept[task_id] = group[:count]
                if rules is not None and [r["sample_index"] for r in kept[task_id]] != list(range(count)):
                    have = [r["sample_index"] for r in group[:count]]
                    raise TtevalError(f"{self.samples_path}: problem {task_id} has samples {have[:8]}, not 0..{count - 1}:"
                                      " lines are missing from the file")  # fmt: skip
        if sum(map(len, kept.values())) < len(lines.records):
            ids = {id(r) for g in kept.values() for r in g}
            self.forget_metrics()
            write_atomic({self.samples_path: b"".join(raw[id(r)] for r in lines.records if id(r) in ids)})
        return kept

    def forget_metrics(self) -> None:
        """Remove metrics.json before the samples it was computed from change (it is written again at the end)."""
        try:
            self.metrics_json.unlink(missing_ok=True)
        except OSError as exc:
            raise TtevalError(f"cannot remove {self.metrics_json}: {exc.strerror or exc}") from None

    def append_samples(self, records: Iterable[dict[str, Any] | SampleRecord]) -> None:
        """Append one JSON line per record and fsync, so that a batch is either on disk or re-generated.

        A write that fails part-way (a full disk) is cut back off, so the file never ends mid-batch."""
        payload = _jsonl(records)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.samples_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _write_error(self.samples_path, exc) from None
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                    os.fsync(fd)
                raise _write_error(self.samples_path, exc) from None
        finally:
            os.close(fd)


def _jsonl(records: Iterable[dict[str, Any] | SampleRecord]) -> bytes:
    rows = (r.to_dict() if isinstance(r, SampleRecord) else r for r in records)
    return "".join(json.dumps(r, default=_json_default) + "\n" for r in rows).encode("utf-8")
