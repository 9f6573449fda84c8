"""Fixtures of the emulator's own tests."""
import uuid

import pytest

import ecrclient


@pytest.fixture
def emu(emulator):
    """The session emulator, with faults and knobs reset around the test."""
    with emulator.pristine() as e:
        yield e


@pytest.fixture
def repo(emu):
    """A fresh repository name (created) in 111111111111/us-east-1."""
    name = f"t/{uuid.uuid4().hex[:10]}"
    ecrclient.create_repository(emu, name)
    return name


@pytest.fixture
def client(emu):
    c = ecrclient.client_for(emu)
    yield c
    c.close()
