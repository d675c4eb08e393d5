"""Check, before Qt starts, that it can open a window on Linux.

Without its xcb system libraries, or without a screen, Qt prints a generic "could not
load the Qt platform plugin" message and aborts the process. This module finds those
cases first, so ``selfsup`` can say what is missing and how to install it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

# soname -> (Debian/Ubuntu package, Fedora package): the system libraries that Qt 6's
# xcb platform plugin (libqxcb.so and libQt6XcbQpa.so.6) links against. Only those the
# installed plugin really names are checked (see needed_sonames).
XCB_LIBRARIES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
}

OFFSCREEN_HINT = ("For use without a screen (screenshots, tests), set "
                  "QT_QPA_PLATFORM=offscreen, e.g. QT_QPA_PLATFORM=offscreen selfsup ...")


def uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt will pick its xcb plugin, the one that needs the X11 libraries.

    Mirrors Qt: QT_QPA_PLATFORM wins; unset, a Wayland session (XDG_SESSION_TYPE) gets
    the wayland plugin and anything else gets xcb.
    """
    platform = env.get("QT_QPA_PLATFORM", "").strip()
    if platform:
        return platform.startswith("xcb")
    return env.get("XDG_SESSION_TYPE", "").strip().lower() != "wayland"


def platform_problem(env: Mapping[str, str], system: str, needed: Iterable[str],
                     can_load: Callable[[str], bool]) -> str | None:
    """The message to show instead of letting Qt abort, or None when Qt can start.

    Pure (no loading, no environment of its own) so each case can be tested:
    ``needed`` are the sonames the xcb plugin links against, ``can_load`` says whether
    one can be loaded on this machine.
    """
    if not system.startswith("linux") or not uses_xcb(env):
        return None
    parts: list[str] = []
    missing = [s for s in dict.fromkeys(needed) if s in XCB_LIBRARIES and not can_load(s)]
    if missing:
        debian = list(dict.fromkeys(XCB_LIBRARIES[s][0] for s in missing))
        fedora = list(dict.fromkeys(XCB_LIBRARIES[s][1] for s in missing))
        parts += [
            "selfsup: Qt cannot open a window: its xcb platform plugin needs system "
            "libraries that are not installed:",
            *(f"  {s}  (package {XCB_LIBRARIES[s][0]})" for s in missing),
            "Install them, then start selfsup again:",
            f"  Debian/Ubuntu:  sudo apt-get install -y {' '.join(debian)}",
            f"  Fedora:         sudo dnf install -y {' '.join(fedora)}",
        ]
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        parts += [
            "selfsup: there is no screen to open the window on (neither DISPLAY nor "
            "WAYLAND_DISPLAY is set).",
            "Start selfsup from a desktop session (over ssh: ssh -X), or under a virtual "
            "X server: xvfb-run selfsup ...",
        ]
    if not parts:
        return None
    return "\n".join([*parts, OFFSCREEN_HINT])


def qt_dirs() -> tuple[Path, Path] | None:
    """PySide6's Qt folder as (platform plugin folder, Qt lib folder); None if not found.

    Found without importing PySide6, so nothing of Qt is loaded yet.
    """
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    qt = Path(next(iter(spec.submodule_search_locations))) / "Qt"
    return qt / "plugins" / "platforms", qt / "lib"


def needed_sonames(binaries: Iterable[Path]) -> list[str]:
    """The sonames of XCB_LIBRARIES that these ELF files name (their NEEDED entries).

    A soname sits NUL-delimited in the file's string table, so a byte search is enough
    and keeps the check to what this Qt version really links against. If no file can
    be read, every library in the table is assumed needed.
    """
    data = b""
    for path in binaries:
        try:
            data += path.read_bytes()
        except OSError:
            continue
    if not data:
        return list(XCB_LIBRARIES)
    return [s for s in XCB_LIBRARIES if b"\0" + s.encode() + b"\0" in data]


def loader(qt_lib: Path | None) -> Callable[[str], bool]:
    """A can-load callable: dlopen the soname as the plugin would find it.

    The plugin looks in Qt's own lib folder (its RUNPATH) and then the system paths, so
    a copy bundled with Qt counts too.
    """

    def can_load(soname: str) -> bool:
        candidates = [str(qt_lib / soname)] if qt_lib and (qt_lib / soname).exists() else []
        for name in [*candidates, soname]:
            try:
                ctypes.CDLL(name)
            except OSError:
                continue
            return True
        return False

    return can_load


def check_platform() -> str | None:
    """The problem Qt would abort on here (see platform_problem), or None.

    Skipped when a Qt application already exists: its platform is loaded and working.
    """
    gui = sys.modules.get("PySide6.QtGui")
    if gui is not None and gui.QGuiApplication.instance() is not None:
        return None
    if not sys.platform.startswith("linux") or not uses_xcb(os.environ):
        return None
    dirs = qt_dirs()
    needed: list[str] = []
    qt_lib: Path | None = None
    if dirs is not None and (dirs[0] / "libqxcb.so").exists():
        plugins, qt_lib = dirs
        needed = needed_sonames([plugins / "libqxcb.so", qt_lib / "libQt6XcbQpa.so.6"])
    return platform_problem(os.environ, sys.platform, needed, loader(qt_lib))
