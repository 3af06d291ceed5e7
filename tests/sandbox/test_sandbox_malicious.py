"""Hostile candidates: each must get the right verdict, leave no process behind, change nothing
outside its temp dir, and leave the harness working."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.sandbox.pool import Job, SandboxPool, SandboxSettings
from tests.sandbox.helpers import LOOPS, assert_idle, loop_pool, worker_trees


@pytest.fixture(scope="module", params=LOOPS)
def pool(request: pytest.FixtureRequest) -> Iterator[SandboxPool]:
    os.environ["CODESERVE_TEST_SECRET"] = "s3cr3t-" + uuid.uuid4().hex
    with loop_pool(request.param, workers=2) as p:
        yield p
    os.environ.pop("CODESERVE_TEST_SECRET", None)


def run(pool: SandboxPool, program: str, timeout: float = 2.0):
    result = pool.run(Job(program=program, timeout=timeout))
    assert_idle(pool)
    return result


def test_report_has_every_layer_on_this_machine(pool: SandboxPool) -> None:
    report = pool.report
    assert not report.inactive(), report.describe()


def test_fork_bomb(pool: SandboxPool) -> None:
    t = time.monotonic()
    r = run(
        pool,
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        timeout=1.5,
    )
    assert r.status == "timeout"
    assert time.monotonic() - t < 10


def test_fork_bomb_via_posix_spawn(pool: SandboxPool) -> None:
    bomb = "import os, sys\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = run(
        pool,
        "import os, sys\n"
        "while True:\n"
        "    try:\n"
        f"        os.posix_spawn(sys.executable, [sys.executable, '-c', {bomb!r}], {{}})\n"
        "    except OSError:\n"
        "        pass\n",
        timeout=1.5,
    )
    assert r.status == "timeout"


def test_infinite_loop(pool: SandboxPool) -> None:
    assert run(pool, "while True:\n    pass\n", timeout=1.0).status == "timeout"


def test_sigalrm_ignored_then_sleep(pool: SandboxPool) -> None:
    r = run(
        pool,
        "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
        "signal.alarm(1)\ntime.sleep(3600)\n",
        timeout=1.0,
    )
    assert r.status == "timeout"


def test_allocating_100_gb(pool: SandboxPool) -> None:
    r = run(pool, "x = bytearray(100 * 2**30)\n")
    assert r.status == "memory"


def test_filling_tmp() -> None:
    before = shutil.disk_usage("/tmp").used
    listing = set(os.listdir("/tmp"))
    with SandboxPool(SandboxSettings(workers=1, tmpfs_mb=32)) as pool:
        r = run(
            pool,
            "import os\nchunk = b'x' * 2**20\ni = 0\nwhile True:\n"
            "    with open(f'/tmp/fill-{i}', 'wb') as f:\n"
            "        f.write(chunk * 8)\n    i += 1\n",
            timeout=10.0,
        )
        assert r.status == "error" and "No space left" in r.detail, r
        # the next candidate gets an empty /tmp again
        assert (
            run(
                pool,
                "import os\nassert os.listdir('/tmp') == [os.path.basename(os.getcwd())], "
                "os.listdir('/tmp')\n",
            ).status
            == "passed"
        )
    assert not {n for n in set(os.listdir("/tmp")) - listing if n.startswith("fill-")}
    assert shutil.disk_usage("/tmp").used - before < 16 << 20


def test_killing_parent_and_process_group(pool: SandboxPool) -> None:
    # kill(-1) is only safe to try inside a PID namespace (the pool refuses to start without one)
    assert pool.report.is_active("pid namespace")
    workers = set(worker_trees(pool))
    r = run(
        pool,
        "import os, signal\n"
        "for target in (os.getppid(), 1, -1):\n"
        "    try:\n        os.kill(target, signal.SIGKILL)\n    except OSError:\n        pass\n"
        "os.killpg(0, signal.SIGKILL)\n",
    )
    assert r.status == "killed"
    assert set(worker_trees(pool)) == workers, "a worker had to be replaced"


@pytest.fixture
def fake_home() -> Iterator[Path]:
    # Outside /tmp (which the sandbox replaces with its own tmpfs), so the candidate can see it.
    root = Path(tempfile.mkdtemp(prefix="codeserve-fakehome-", dir="/var/tmp"))
    (root / "canary.txt").write_text("still here")
    (root / "sub").mkdir()
    (root / "sub" / "data").write_text("x")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_rmtree_of_home(pool: SandboxPool, fake_home: Path) -> None:
    r = run(
        pool,
        f"import os, shutil\nos.environ['HOME'] = {str(fake_home)!r}\n"
        "shutil.rmtree(os.path.expanduser('~'))\n",
    )
    # The private root does not show /var/tmp at all; without it, the tree is read-only.
    assert r.status == "error" and r.error_type in {
        "OSError",
        "PermissionError",
        "FileNotFoundError",
    }, r
    assert (fake_home / "canary.txt").read_text() == "still here"
    assert (fake_home / "sub" / "data").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a canary in /etc")
def test_writing_etc(pool: SandboxPool) -> None:
    canary = Path(f"/etc/codeserve-canary-{uuid.uuid4().hex}")
    fresh = Path(f"/etc/codeserve-new-{uuid.uuid4().hex}")
    canary.write_text("original")
    try:
        r = run(
            pool,
            f"import pathlib\nfor p in ({str(canary)!r}, {str(fresh)!r}):\n"
            "    try:\n        pathlib.Path(p).write_text('pwned')\n"
            "    except OSError:\n        pass\n"
            f"pathlib.Path({str(canary)!r}).unlink()\n",
        )
        assert r.status == "error", r
        assert canary.read_text() == "original"
        assert not fresh.exists()
    finally:
        canary.unlink(missing_ok=True)
        fresh.unlink(missing_ok=True)


def test_connect_to_outside_address(pool: SandboxPool) -> None:
    # Only attempted inside the sandbox's own network namespace (asserted first), where the
    # TEST-NET-1 address has no route: no packet can leave this machine.
    assert pool.report.is_active("network namespace")
    r = run(
        pool, "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('192.0.2.1', 80))\n"
    )
    assert r.status == "error" and "unreachable" in r.detail.lower(), r


def test_connect_to_local_listener(pool: SandboxPool) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        r = run(
            pool, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
        )
        thread.join()
    finally:
        server.close()
    assert r.status == "error", r
    assert accepted == []


def test_setsid_daemon_outliving_timeout(pool: SandboxPool) -> None:
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(3600)\n    os._exit(0)\n"
    )
    r = run(pool, daemon + "time.sleep(3600)\n", timeout=1.0)
    assert r.status == "timeout"
    # and when the candidate itself finishes first, its daemon still dies with it
    assert run(pool, daemon + "time.sleep(0.2)\n").status == "passed"


def test_one_gigabyte_to_stdout(pool: SandboxPool) -> None:
    r = run(
        pool,
        "import os, sys\nline = 'x' * 2**20\nfor _ in range(512):\n    print(line)\n"
        "for _ in range(512):\n    os.write(1, line.encode())\n"
        "sys.stderr.write('done')\nassert True\n",
        timeout=20.0,
    )
    assert r.status == "passed", r
    assert r.output is not None and len(r.output) <= pool.settings.output_cap_bytes


def test_reading_environment_secrets(pool: SandboxPool) -> None:
    secret = os.environ["CODESERVE_TEST_SECRET"]
    r = run(
        pool,
        "import os, glob\n"
        f"needle = {secret!r}.encode()\n"
        "assert needle.decode() not in str(dict(os.environ)), 'env leaked'\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n        data = open(path, 'rb').read()\n    except OSError:\n"
        "        continue\n"
        "    assert needle not in data, 'secret visible in ' + path\n",
    )
    assert r.status == "passed", r
