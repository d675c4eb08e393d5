"""selfsup says which xcb libraries are missing (or that there is no screen) and exits 2,
instead of letting Qt abort with its generic platform-plugin message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import app.__main__ as app_main
from app import platform_check
from app.platform_check import XCB_LIBRARIES, needed_sonames, platform_problem, uses_xcb

NEEDED = ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
          "libxcb-image.so.0", "libxcb-shape.so.0", "libxkbcommon-x11.so.0",
          "libstdc++.so.6", "libQt6Core.so.6"]
DESKTOP = {"DISPLAY": ":0"}


def loads_all_but(*missing: str):
    return lambda soname: soname not in missing


def test_all_libraries_present_gives_no_message() -> None:
    assert platform_problem(DESKTOP, "linux", NEEDED, loads_all_but()) is None


def test_missing_libraries_are_named_with_the_install_commands() -> None:
    msg = platform_problem(DESKTOP, "linux", NEEDED,
                           loads_all_but("libxcb-icccm.so.4", "libxcb-shape.so.0"))
    assert msg is not None
    assert "libxcb-icccm.so.4" in msg and "libxcb-shape.so.0" in msg
    assert "libxcb-cursor.so.0" not in msg
    apt = next(line for line in msg.splitlines() if "apt-get install" in line)
    assert apt.split("apt-get install -y ")[1].split() == ["libxcb-icccm4", "libxcb-shape0"]
    dnf = next(line for line in msg.splitlines() if "dnf install" in line)
    assert dnf.split("dnf install -y ")[1].split() == ["xcb-util-wm", "libxcb"]
    assert "no screen" not in msg


def test_libraries_outside_the_table_are_not_checked() -> None:
    # libstdc++ and Qt's own libraries are not X11 packages to install
    assert platform_problem(DESKTOP, "linux", NEEDED,
                            loads_all_but("libstdc++.so.6", "libQt6Core.so.6")) is None


@pytest.mark.parametrize("env", [
    {"QT_QPA_PLATFORM": "offscreen"},
    {"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "wayland-0"},
    {"QT_QPA_PLATFORM": "minimal"},
    {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"},
])
def test_platforms_other_than_xcb_are_not_checked(env: dict[str, str]) -> None:
    assert not uses_xcb(env)
    assert platform_problem(env, "linux", NEEDED, loads_all_but(*NEEDED)) is None


@pytest.mark.parametrize("system", ["darwin", "win32"])
def test_other_systems_are_not_checked(system: str) -> None:
    assert platform_problem({}, system, NEEDED, loads_all_but(*NEEDED)) is None


def test_xcb_is_the_default_and_can_be_asked_for() -> None:
    assert uses_xcb({})
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"})
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb:nograb", "XDG_SESSION_TYPE": "wayland"})
    assert uses_xcb({"XDG_SESSION_TYPE": "x11"})


def test_no_display_says_there_is_no_screen() -> None:
    msg = platform_problem({}, "linux", NEEDED, loads_all_but())
    assert msg is not None
    assert "no screen" in msg and "DISPLAY" in msg
    assert "QT_QPA_PLATFORM=offscreen" in msg and "xvfb-run" in msg
    assert "apt-get" not in msg
    assert platform_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", NEEDED,
                            loads_all_but()) is None


def test_needed_sonames_reads_the_plugins_needed_entries(tmp_path: Path) -> None:
    elf = tmp_path / "libqxcb.so"
    elf.write_bytes(b"\x7fELF\0libxcb-cursor.so.0\0libQt6Gui.so.6\0libxcb.so.1\0junk")
    assert needed_sonames([elf, tmp_path / "absent.so"]) == ["libxcb-cursor.so.0",
                                                            "libxcb.so.1"]
    assert needed_sonames([tmp_path / "absent.so"]) == list(XCB_LIBRARIES)


def test_loader_finds_a_system_library_and_not_a_made_up_one() -> None:
    can_load = platform_check.loader(None)
    assert not can_load("libselfsup-no-such-library.so.7")
    if sys.platform.startswith("linux"):
        assert can_load("libc.so.6")


def test_main_prints_the_message_and_exits_2_before_qt(monkeypatch, capsys,
                                                       tmp_path: Path) -> None:
    plugins, qt_lib = tmp_path / "plugins", tmp_path / "lib"
    plugins.mkdir()
    qt_lib.mkdir()
    (plugins / "libqxcb.so").write_bytes(b"\0" + b"\0".join(s.encode() for s in NEEDED)
                                         + b"\0")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform_check, "qt_dirs", lambda: (plugins, qt_lib))
    monkeypatch.setattr(platform_check, "loader",
                        lambda _lib: loads_all_but("libxcb-cursor.so.0"))
    # reaching Qt at all fails the test (ImportError) instead of letting Qt abort pytest
    monkeypatch.setitem(sys.modules, "PySide6.QtCore", None)
    monkeypatch.setitem(sys.modules, "PySide6.QtWidgets", None)
    # the check runs only while no QApplication exists (pytest-qt may have made one)
    monkeypatch.delitem(sys.modules, "PySide6.QtGui", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        app_main.main([])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "libxcb-cursor.so.0" in err and "libxcb-icccm.so.4" not in err
    assert "sudo apt-get install -y libxcb-cursor0\n" in err
    assert "dnf install -y xcb-util-cursor\n" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the check is Linux-only")
def test_selfsup_without_a_screen_exits_2_with_a_message() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
    proc = subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "no screen" in proc.stderr and "QT_QPA_PLATFORM=offscreen" in proc.stderr
