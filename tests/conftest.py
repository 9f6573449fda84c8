"""Shared pytest fixtures: tests/lib on sys.path, one emulator per session,
and small OCI layouts built with umoci."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

from emu import Emulator  # noqa: E402
import layouts  # noqa: E402


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    emu = Emulator(state_dir=str(tmp_path_factory.mktemp("emu")))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def oci_layout(tmp_path):
    """make(tag="v1", files=None, n_layers=1) -> (layout_dir, info) with
    info from layouts.make_image; several calls share one layout."""
    layout = str(tmp_path / "layout")

    def make(tag="v1", files=None, n_layers=1):
        return layout, layouts.make_image(layout, tag, files, n_layers)
    return make
