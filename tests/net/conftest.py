"""Fixtures of the net suite: ecrfs-ctl (the ECR client's CLI) run against
the session emulator (tests/conftest.py), faults and knobs reset per test."""
import uuid

import pytest

import ecrclient
from ctlhelp import Ctl


@pytest.fixture
def emu(emulator):
    """The session emulator with faults, knobs and the request log reset."""
    with emulator.pristine(reset_log=True) as e:
        yield e


@pytest.fixture
def ctl(emu):
    return Ctl(emu)


@pytest.fixture
def repo(emu):
    """A fresh, created repository in 111111111111/us-east-1."""
    name = f"net/{uuid.uuid4().hex[:10]}"
    ecrclient.create_repository(emu, name)
    return name


def pytest_terminal_summary(terminalreporter):
    import ctlhelp
    if ctlhelp.MEASURED:
        terminalreporter.section("measured (net)")
        for line in ctlhelp.MEASURED:
            terminalreporter.write_line(line)
