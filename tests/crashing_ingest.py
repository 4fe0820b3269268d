"""``timeline`` with a SIGKILL at one commit point: ``python crashing_ingest.py before|after N ARGS…``.

The store's append is wrapped so that the process kills itself (SIGKILL: no
clean-up, as a power cut) just before or just after its Nth writing commit;
the rest is the real command line. A test tool, not a hook of the engine.
"""

from __future__ import annotations

import os
import signal
import sys

from timeline.cli.main import main
from timeline.store.sql import SqlEventStore

when, target = sys.argv[1], int(sys.argv[2])
sys.argv = ["timeline", *sys.argv[3:]]
append = SqlEventStore.append
commits = 0


def crashing_append(self, batch):  # type: ignore[no-untyped-def]
    global commits
    if not batch.events:
        return append(self, batch)
    commits += 1
    if when == "before" and commits == target:
        os.kill(os.getpid(), signal.SIGKILL)
    positions = append(self, batch)
    if when == "after" and commits == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return positions


SqlEventStore.append = crashing_append  # type: ignore[method-assign]
main()
