"""scripts/ensure-services (run by `make check`) against stand-ins for the system commands.

The stand-ins keep their state in files: whether PostgreSQL is installed (its tools on PATH),
whether its cluster exists and runs, which databases exist, whether the emoji font is there.
No real package manager or database is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ensure-services"
REAL_TOOLS = ["awk", "cut", "grep", "seq", "sleep", "sort", "tail", "cat", "touch", "rm", "cp"]

COMMON = {
    "id": 'echo "${FAKE_UID:-0}"',
    "ls": "echo 15",
    "pg_isready": '[ -e "$STATE/running" ]',
    "psql": 'log psql "$@"; cat "$STATE/databases"',
    "createdb": 'log createdb "$@"; echo "${@: -1}|postgres|UTF8" >> "$STATE/databases"',
    "dpkg-query": "[ -e \"$STATE/fonts\" ] && printf 'install ok installed' || exit 1",
    "apt-get": (
        'log apt-get "$@"\n'
        'if [[ " $* " == *" postgresql "* ]]; then\n'
        '  cp "$PG_SRC"/* "$PG_BIN"/; touch "$STATE/cluster" "$STATE/running"\n'
        "fi"
    ),
}
POSTGRES = {
    "pg_lsclusters": (
        'if [ -e "$STATE/cluster" ]; then\n'
        '  s=down; [ -e "$STATE/running" ] && s=online\n'
        '  echo "15 main 5432 $s postgres /var/lib/postgresql/15/main /var/log/pg.log"\n'
        "fi"
    ),
    "pg_ctlcluster": 'log pg_ctlcluster "$@"; [ "${@: -1}" = start ] && touch "$STATE/running"',
    "pg_createcluster": 'log pg_createcluster "$@"; touch "$STATE/cluster"',
    "pg_dropcluster": 'log pg_dropcluster "$@"; rm -f "$STATE/cluster" "$STATE/running"',
}


def _write(directory: Path, scripts: dict[str, str]) -> None:
    directory.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = directory / name
        path.write_text(
            '#!/bin/bash\nlog() { echo "$*" >> "$STATE/calls"; }\n' + body + "\n",
            encoding="utf-8",
        )
        path.chmod(0o755)


class Machine:
    def __init__(self, root: Path, *, installed: bool, cluster: bool, running: bool) -> None:
        self.state = root / "state"
        self.state.mkdir()
        self.pg_src, self.pg_bin, self.stubs, self.tools = (
            root / "pg_src",
            root / "pg_bin",
            root / "stubs",
            root / "tools",
        )
        _write(self.stubs, COMMON)
        _write(self.pg_src, POSTGRES)
        self.pg_bin.mkdir()
        if installed:
            _write(self.pg_bin, POSTGRES)
        self.tools.mkdir()
        for tool in REAL_TOOLS:
            real = shutil.which(tool)
            assert real is not None, tool
            (self.tools / tool).symlink_to(real)
        for flag, on in (("cluster", cluster), ("running", running), ("fonts", True)):
            if on:
                (self.state / flag).touch()
        (self.state / "databases").write_text("postgres|postgres|UTF8\ntest|postgres|UTF8\n")
        (self.state / "calls").touch()

    def run(self, uid: int = 0) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.pathsep.join(str(d) for d in (self.stubs, self.pg_bin, self.tools)),
            "STATE": str(self.state),
            "PG_SRC": str(self.pg_src),
            "PG_BIN": str(self.pg_bin),
            "FAKE_UID": str(uid),
        }
        bash = shutil.which("bash")
        assert bash is not None
        return subprocess.run(
            [bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    @property
    def calls(self) -> list[str]:
        return (self.state / "calls").read_text().splitlines()


def _calls(machine: Machine, command: str) -> list[str]:
    return [c for c in machine.calls if c.split()[0] == command]


def test_everything_present_is_left_alone_quietly(tmp_path: Path) -> None:
    m = Machine(tmp_path, installed=True, cluster=True, running=True)
    result = m.run()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert [c.split()[0] for c in m.calls] == ["psql"]  # no start, stop, install or createdb


def test_a_stopped_cluster_is_started_and_the_test_database_created(tmp_path: Path) -> None:
    m = Machine(tmp_path, installed=True, cluster=True, running=False)
    (m.state / "databases").write_text("postgres|postgres|UTF8\ntest_other|postgres|UTF8\n")
    result = m.run()
    assert result.returncode == 0, result.stderr
    assert _calls(m, "pg_ctlcluster") == ["pg_ctlcluster --skip-systemctl-redirect 15 main start"]
    assert _calls(m, "createdb") == ["createdb -h 127.0.0.1 -U postgres test"]
    assert not _calls(m, "apt-get") and not _calls(m, "pg_dropcluster")
    assert m.run().returncode == 0 and len(_calls(m, "createdb")) == 1  # idempotent


def test_missing_postgresql_is_installed_with_a_trust_cluster(tmp_path: Path) -> None:
    m = Machine(tmp_path, installed=False, cluster=False, running=False)
    result = m.run()
    assert result.returncode == 0, result.stderr
    installs = [c for c in _calls(m, "apt-get") if " install " in f" {c} "]
    assert len(installs) == 1 and installs[0].endswith(" postgresql")
    assert _calls(m, "pg_dropcluster") == ["pg_dropcluster --stop 15 main"]
    (created,) = _calls(m, "pg_createcluster")
    assert "15 main -- --auth-local=trust --auth-host=trust" in created
    assert _calls(m, "pg_ctlcluster")[-1].endswith("15 main start")
    assert (m.state / "running").exists()
    assert m.run().returncode == 0 and len(_calls(m, "pg_createcluster")) == 1


def test_missing_postgresql_without_root_is_a_clear_error(tmp_path: Path) -> None:
    m = Machine(tmp_path, installed=False, cluster=False, running=False)
    result = m.run(uid=1000)
    assert result.returncode == 1
    assert "PostgreSQL is missing: sudo apt-get install postgresql" in result.stderr
    assert not _calls(m, "apt-get")


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="checks the font alone")
def test_the_emoji_font_is_installed_when_missing(tmp_path: Path) -> None:
    m = Machine(tmp_path, installed=True, cluster=True, running=True)
    (m.state / "fonts").unlink()
    result = m.run(uid=1000)
    assert result.returncode == 0 and "fonts-noto-color-emoji" in result.stderr
    assert not _calls(m, "apt-get")
    assert m.run().returncode == 0
    (install,) = [c for c in _calls(m, "apt-get") if " install " in f" {c} "]
    assert install.endswith(" fonts-noto-color-emoji")
