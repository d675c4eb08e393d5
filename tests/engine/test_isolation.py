"""engine/ must never import Qt; app must not import torch before the window shows."""

import subprocess
import sys
import textwrap


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)


def test_engine_imports_with_qt_blocked():
    code = """
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in ('PySide6', 'PyQt5', 'PyQt6', 'pyqtgraph', 'app', 'shiboken6'):
                raise ImportError('blocked ' + name)
    sys.meta_path.insert(0, Block())
    import engine, engine.train, engine.config, engine.monitor, engine.__main__
    from engine.registry import available_methods
    assert available_methods()
    print('ok')
    """
    r = run_py(code)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
