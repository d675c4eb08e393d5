"""The run folder's summary.json: concurrent updates from threads and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from engine.runs import RunFolder


def test_concurrent_summary_updates_lose_nothing(tmp_path):
    """Training and evaluation update the same summary at once; every change survives."""
    run = RunFolder.create(tmp_path, "simclr", "shapes")
    run.write_summary({"status": "running"})
    n = 150
    child = textwrap.dedent(f"""
        from engine.runs import RunFolder
        run = RunFolder({str(run.path)!r})
        for i in range({n}):
            run.update_summary(**{{f"process_{{i}}": i}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", child])

    def writer(name: str) -> None:
        for i in range(n):
            run.update_summary(**{f"{name}_{i}": i})

    threads = [threading.Thread(target=writer, args=(f"thread{t}",)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=120) == 0
    summary = run.read_summary()
    for prefix in ("thread0", "thread1", "process"):
        missing = [i for i in range(n) if f"{prefix}_{i}" not in summary]
        assert not missing, (prefix, missing[:10])
    assert summary["status"] == "running"
