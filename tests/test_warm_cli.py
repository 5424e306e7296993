"""The tests' warm CLI (tests/warm_cli.py, behind helpers.tteval) answers as a fresh `python -m tteval.cli` does: the
same exit status, output and error line; the call's own working directory, PYTHONPATH, argv and environment; and a
call past its timeout is killed, as `subprocess.run` does."""

import json
import subprocess

import pytest
from helpers import tteval

PROBE = '''import json, os, sys
print("PROBE " + json.dumps({"path": sys.path, "argv0": os.path.basename(sys.argv[0]), "cwd": os.getcwd(),
      "main": sys.modules["__main__"].__file__, "env": os.environ.get("PROBE_VALUE")}), file=sys.stderr)
def make(*args, **kwargs):
    raise SystemExit(3)
'''


@pytest.mark.parametrize("args", [("--help",), ("run", "--task", "nope"), ("run", "--limit", "0"), ("tasks",)])
def test_warm_and_fresh_calls_agree(args):
    warm, fresh = tteval(*args), tteval(*args, fresh=True)
    assert (warm.returncode, warm.stdout, warm.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)


def test_the_call_has_its_own_directory_path_argv_and_environment(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    args = ("run", "--backend", "probe:make", "--limit", "1", "--out", str(tmp_path / "out"))
    seen = []
    for fresh in (False, True):
        r = tteval(*args, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PROBE_VALUE": "x"}, fresh=fresh)
        assert r.returncode == 3, r.stderr
        (line,) = [line for line in r.stderr.splitlines() if line.startswith("PROBE ")]
        seen.append(json.loads(line[len("PROBE "):]))
    assert seen[0] == seen[1]
    assert seen[0]["cwd"] == str(tmp_path) and seen[0]["path"][:2] == [str(tmp_path), str(tmp_path)]
    assert seen[0]["argv0"] == "cli.py" and seen[0]["env"] == "x"


def test_a_call_past_its_timeout_is_killed(tmp_path, fake_backend):
    with pytest.raises(subprocess.TimeoutExpired):
        tteval("run", "--backend", fake_backend, "--model-args", "delay_s=5", "--limit", "2", "--no-cache",
               "--out", tmp_path, timeout=2)  # fmt: skip
    again = tteval("run", "--task", "nope")  # the server still serves
    assert again.returncode != 0 and "unknown task 'nope'" in again.stderr
