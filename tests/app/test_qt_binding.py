"""Guard against a Qt binding that corrupts Python's reference counts while painting.

PySide6 6.12.0 releases a reference to ``None`` on each call of a void ``QPainter``
method; on Python 3.11 ``None`` is not immortal, so a few minutes of live plotting
deallocate it and the process aborts. pyproject.toml excludes that release; this test
fails if a binding with the same defect is installed.
"""

import sys

from PySide6.QtCore import QPointF
from PySide6.QtGui import QImage, QPainter, QPen


def test_painting_does_not_leak_references_to_none(qapp):
    img = QImage(64, 64, QImage.Format.Format_ARGB32)
    painter = QPainter(img)
    try:
        before = sys.getrefcount(None)
        for _ in range(2000):
            painter.setPen(QPen())
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.drawLine(QPointF(0, 0), QPointF(10, 10))
        after = sys.getrefcount(None)
    finally:
        painter.end()
    assert after - before > -100, f"None lost {before - after} references while painting"
