"""conftest.py - fixtures for the switchyard integration tests (real peers).

Run (as root, Debian 12):
    SWITCHYARD_BIN=$PWD/build/asan/switchyard /usr/bin/python3 -m pytest -q tests/integration
or `make integration`.

Fixtures
  workdir      a fresh, short, world-traversable directory per test
  redis        private redis-server on a UNIX socket (persistence off) with
               stop()/start() on the same socket, pause()/resume() (SIGSTOP)
  switchyard   factory: switchyard(overrides={...}, port=None, unix=False,
               trusted_port=False, start=True) -> sylib.Switchyard (config
               from a dict, `serve -c FILE`, stderr to a log, waits for the
               listeners; kill()/stop()/start() on the same dirs; spool_dir,
               redis socket, log_text, redis_cli(*args))
  postfix      the session's private Postfix (default_transport and
               relay_transport lmtp:inet:127.0.0.1:<postfix.lmtp_port>): give
               that port to switchyard(port=postfix.lmtp_port). Queue cleared
               and log mark set per test; wait_log(regex), wait_empty(),
               flush(), swaks(...).
  free_port    sylib.free_port

Everything listens on 127.0.0.1 or UNIX sockets in temporary directories,
runs in its own process group and is stopped by PID in finalizers, also
when a test fails. A sanitizer report in switchyard's log, or a non-zero
exit after SIGTERM, fails the test that owned the daemon.
"""
import os
import shutil
import stat
import tempfile

import pytest

import sylib

REQUIRED_TOOLS = ("redis-server", "redis-cli", "postfix", "postconf", "postqueue",
                  "postsuper", "swaks")


def pytest_configure(config):
    b = os.environ.get("SWITCHYARD_BIN", "")
    if not b:
        raise pytest.UsageError(
            "SWITCHYARD_BIN is not set: point it at the switchyard binary, e.g. "
            "SWITCHYARD_BIN=$PWD/build/asan/switchyard (make integration does this)")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        raise pytest.UsageError("SWITCHYARD_BIN=%s: no such executable file (build it first: "
                                "make SAN=1 build/asan/switchyard)" % b)
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t, path=os.environ.get("PATH", "") +
                                                         ":/usr/sbin:/sbin") is None]
    if missing:
        raise pytest.UsageError("missing test peers: %s (run packaging/deps.sh)" % " ".join(missing))
    # postfix & co. live in /usr/sbin
    if "/usr/sbin" not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


@pytest.fixture(scope="session")
def switchyard_bin():
    return os.path.abspath(os.environ["SWITCHYARD_BIN"])


@pytest.fixture(scope="session")
def base_dir(request):
    # Short paths (UNIX socket names are limited to 107 bytes) that the
    # 'postfix' user can traverse (mkdtemp gives 0700).
    d = tempfile.mkdtemp(prefix="syit-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    if request.session.testsfailed == 0 and not os.environ.get("SY_KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)
    else:
        print("\nintegration test files kept in %s" % d)


_counter = [0]


@pytest.fixture
def workdir(base_dir, request):
    _counter[0] += 1
    d = os.path.join(base_dir, "t%03d" % _counter[0])
    os.makedirs(d)
    os.chmod(d, 0o755)
    with open(os.path.join(d, "TEST"), "w") as f:
        f.write(request.node.nodeid + "\n")
    return d


@pytest.fixture
def free_port():
    return sylib.free_port


@pytest.fixture
def redis(workdir):
    r = sylib.RedisServer(os.path.join(workdir, "redis"))
    r.start()
    yield r
    if r.paused:
        r.resume()
    sylib.stop_process(r.proc)


@pytest.fixture
def switchyard(switchyard_bin, workdir, redis):
    made = []

    def factory(overrides=None, port=None, unix=False, trusted_port=False, start=True, name="sw"):
        sw = sylib.Switchyard(switchyard_bin, os.path.join(workdir, name), redis,
                              overrides=overrides, port=port, unix=unix,
                              trusted_port=trusted_port)
        made.append(sw)
        if start:
            sw.start()
        return sw

    yield factory

    problems = []
    for sw in made:
        was_running = sw.running
        status = sw.stop()
        if was_running and status != 0:
            problems.append("switchyard (%s) exited %s after SIGTERM; log tail:\n%s"
                            % (sw.dir, status, sw.log_tail()))
        rep = sylib.sanitizer_report(sw.log_text)
        if rep:
            problems.append("sanitizer report in %s:\n%s" % (sw.log_path, rep))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture(scope="session")
def postfix_session(base_dir):
    if os.geteuid() != 0:
        pytest.fail("the Postfix tests must run as root (postfix start is reserved for the superuser)",
                    pytrace=False)
    d = os.path.join(base_dir, "pf")
    pf = sylib.PostfixInstance(d)
    pf.init()
    # Every component of the instance path must be traversable by 'postfix'.
    p = d
    while p not in ("/", ""):
        if os.stat(p).st_mode & stat.S_IXOTH == 0:
            os.chmod(p, os.stat(p).st_mode | 0o755)
        p = os.path.dirname(p)
    pf.start()
    yield pf
    pf.stop()


@pytest.fixture
def postfix(postfix_session):
    pf = postfix_session
    pf.clear()
    pf.mark()
    yield pf
    pf.clear()
