"""`user:` drops privileges after the listeners are bound and the spool is
locked: the daemon then runs as that user, and the spool (and the capture
directory) it created as root stay usable."""
import os
import pwd

import sylib
from sylib import queued_qid, simple_message


def uids_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(u) for u in line.split()[1:]]
    raise AssertionError("no Uid line for %d" % pid)


def test_runs_as_configured_user(switchyard):
    assert os.getuid() == 0, "the privilege test needs root (as CI runs)"
    nobody = pwd.getpwnam("nobody")
    sw = switchyard(overrides={"user": "nobody", "delivery": {"workers": 1}})
    # real, effective, saved and file-system uid: all nobody, no way back
    assert uids_of(sw.proc.pid) == [nobody.pw_uid] * 4

    with sw.lmtp() as c:
        r = c.transaction("a@example.org", ["b@example.net"], simple_message("privileges"))
        c.cmd("QUIT")
    qid = queued_qid(r[0])
    assert sw.msg(qid).get("sender") == "a@example.org"
    for sub in ("", "q", "tmp", "lock"):
        assert os.stat(os.path.join(sw.spool_dir, sub)).st_uid == nobody.pw_uid, sub
    # the worker, also running as nobody, delivered it into the capture dir
    eml = os.path.join(sw.capture_dir, "%s.0.eml" % qid)
    sylib.wait_for(lambda: os.path.exists(eml), 30, "capture of %s" % qid)
    assert os.stat(eml).st_uid == nobody.pw_uid
