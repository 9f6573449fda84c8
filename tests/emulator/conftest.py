"""Fixtures of the emulator's own tests."""
import uuid

import pytest

import ecrclient

DEFAULT_CONFIG = {"tiny_pages": 0, "sts_duration": None, "url_expires": 600,
                  "part_size": 10 * 1024 * 1024, "min_part_size": 5 * 1024 * 1024,
                  "max_parts": 4200}


@pytest.fixture
def emu(emulator):
    """The session emulator, with faults and knobs reset after the test."""
    emulator.clear_faults()
    try:
        yield emulator
    finally:
        emulator.clear_faults()
        emulator.config(**DEFAULT_CONFIG)


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
