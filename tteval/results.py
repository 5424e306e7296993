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
from tteval.jsonl import json_object
from tteval.locking import LOCK_NAME, held

SAMPLE_FIELDS = ("task_id", "sample_index", "completion", "answer", "correct", "num_tokens", "logprob", "scores")


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


def read_json(path: Path) -> Any:
    """Read a JSON file, or raise a one-line TtevalError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TtevalError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TtevalError(f"malformed JSON in {path}: {exc}") from None
    except RecursionError:
        raise TtevalError(f"malformed JSON in {path}: nested too deeply") from None
    except OSError as exc:
        raise TtevalError(f"cannot read {path}: {exc.strerror or exc}") from None


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


@dataclass(frozen=True)
class SampleRules:
    """What a run's sample lines may hold: one of the run's task ids, and a sample_index in [0, n) once per problem."""

    task_ids: frozenset[str]
    n: int


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

    def recover_samples(self, rules: SampleRules | None = None,
                        on_warning: Callable[[str], None] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """Read the samples written so far; a half-written last line (a crash mid-write) is cut off the file.

        With `rules`, every line is checked: a known task id, a sample_index in [0, n), no (task, index) twice;
        anything else is a one-line error naming file:line (the file is left as it is)."""
        p = self.samples_path
        if not p.exists():
            return []
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise TtevalError(f"cannot read {p}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1
        if end < len(data):
            try:
                os.truncate(p, end)
            except OSError as exc:
                raise TtevalError(f"cannot repair {p} (a half-written last line): {exc.strerror or exc}") from None
            if on_warning:
                on_warning(f"{p}: cut off a half-written last line ({len(data) - end} bytes, a write torn by a crash);"
                           " its samples are generated again")  # fmt: skip
            data = data[:end]
        records = []
        seen: dict[tuple[str, int], int] = {}
        for lineno, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            record = json_object(line, f"{where}: malformed sample line")
            if not isinstance(record.get("task_id"), str):
                raise TtevalError(f"{where}: malformed sample line: no string 'task_id'")
            if rules is not None:
                _check_sample(record, where, rules, seen, lineno)
            records.append(record)
        return records

    def trim(self, keep: Callable[[list[dict[str, Any]]], int], rules: SampleRules | None = None,
             on_warning: Callable[[str], None] | None = None) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
        """Keep the first keep(records) samples of each problem (in sample order), rewriting the file if any go.

        Returns the kept samples per problem that has any: what a resumed run continues from."""
        records = self.recover_samples(rules, on_warning)
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            groups.setdefault(r["task_id"], []).append(r)
        kept: dict[str, list[dict[str, Any]]] = {}
        for task_id, group in groups.items():
            group.sort(key=lambda r: r.get("sample_index", 0))
            count = keep(group)
            if count > 0:
                kept[task_id] = group[:count]
                if rules is not None and [r["sample_index"] for r in kept[task_id]] != list(range(count)):
                    have = [r["sample_index"] for r in group[:count]]
                    raise TtevalError(f"{self.samples_path}: problem {task_id} has samples {have[:8]}, not 0..{count - 1}:"
                                      " lines are missing from the file")  # fmt: skip
        if sum(map(len, kept.values())) < len(records):
            ids = {id(r) for g in kept.values() for r in g}
            self.forget_metrics()
            write_atomic({self.samples_path: _jsonl(r for r in records if id(r) in ids)})
        return kept

    def forget_metrics(self) -> None:
        """Remove metrics.json before the samples it was computed from change (it is written again at the end)."""
        try:
            self.metrics_json.unlink(missing_ok=True)
        except OSError as exc:
            raise TtevalError(f"cannot remove {self.metrics_json}: {exc.strerror or exc}") from None

    def append_samples(self, records: Iterable[dict[str, Any]]) -> None:
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


def _jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, default=_json_default) + "\n" for r in records).encode("utf-8")


def _check_sample(record: dict[str, Any], where: str, rules: SampleRules, seen: dict[tuple[str, int], int],
                  lineno: int) -> None:  # fmt: skip
    """One sample line against the run: its task id, its sample_index, and no earlier line with the same pair."""
    task_id = record["task_id"]
    if task_id not in rules.task_ids:
        raise TtevalError(f"{where}: unknown task id '{task_id[:80]}': not one of this run's {len(rules.task_ids)} problems")
    index = record.get("sample_index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < rules.n:
        shown = json.dumps(index)[:40] if "sample_index" in record else "missing"
        raise TtevalError(f"{where}: sample_index must be a whole number in [0, {rules.n}) (n = {rules.n}), got {shown}")
    first = seen.setdefault((task_id, index), lineno)
    if first != lineno:
        raise TtevalError(f"{where}: duplicate sample: line {first} already holds problem {task_id[:80]} sample_index"
                          f" {index} (remove one of the two lines)")  # fmt: skip
