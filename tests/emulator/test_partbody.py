"""The UploadLayerPart fast path (emu_partbody.py) decodes exactly what
json.loads + binascii.a2b_base64(strict_mode=True) decode, and refuses
exactly what they refuse."""
import base64
import binascii
import json
import os

import pytest

import emu_partbody


def reference(body):
    p = json.loads(bytes(body))
    return p, binascii.a2b_base64(p.get("layerPartBlob") or "", strict_mode=True)


def fast(body):
    p = emu_partbody.parse(bytearray(body))
    blob = emu_partbody.decode(p.get("layerPartBlob"))
    p = dict(p, layerPartBlob=None)
    return p, bytes(blob)


def body_with(text, before=b'{"registryId":"1","uploadId":"u","partFirstByte":0,', after=b"}"):
    return before + b'"layerPartBlob":' + text + after


def test_libcrypto_is_used():
    assert emu_partbody.DECODE is not None, "libcrypto not found: the fast path is off"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 1000, 1 << 20, (1 << 20) + 1])
def test_valid_parts_decode_the_same(n):
    data = os.urandom(n)
    body = body_with(b'"' + base64.b64encode(data) + b'"')
    p, blob = fast(body)
    assert blob == data
    ref_p, ref_blob = reference(body)
    assert ref_blob == data and p == dict(ref_p, layerPartBlob=None)
    # The blob is a Span of the body, not a str.
    assert isinstance(emu_partbody.parse(bytearray(body))["layerPartBlob"], emu_partbody.Span)


@pytest.mark.parametrize("text", [
    b'"QUJD="', b'"QU=D"', b'"Q==="', b'"QUJ"', b'" QUJD"', b'"QUJD "', b'"QU D"',
    b'"QU-D"', b'"QU_D"', b'"QUJD\\n"', b'"=QUJ"', b'"QQ=A"', b'"QUJDQQ==QUJD"', b'"\\u0051UJD"',
])
def test_invalid_or_odd_parts_are_judged_like_binascii(text):
    body = body_with(text)
    try:
        want = reference(body)[1]
    except binascii.Error:
        with pytest.raises(binascii.Error):
            fast(body)
        return
    assert fast(body)[1] == want


@pytest.mark.parametrize("body", [
    # nested: the top-level key is absent
    b'{"o":{"layerPartBlob":"QUJD"},"uploadId":"u"}',
    # a duplicate key: JSON's last one wins
    b'{"layerPartBlob":"QUJD","layerPartBlob":"REVG"}',
    # an escape before the key, spaces around the colon
    b'{"uploadId":"a\\"b", "layerPartBlob" : "QUJD"}',
    b'{ "layerPartBlob"\n:\t"QUJD" }',
    b'{"layerPartBlob":null}',
    b'{"layerPartBlob":123}',
])
def test_unusual_json_is_parsed_like_json_loads(body):
    p = emu_partbody.parse(bytearray(body))
    ref = json.loads(body)
    v = p.get("layerPartBlob")
    if isinstance(v, emu_partbody.Span):
        assert v.text().decode() == ref["layerPartBlob"]
        p = dict(p, layerPartBlob=ref["layerPartBlob"])
    assert p == ref


def test_malformed_json_raises():
    with pytest.raises(ValueError):
        emu_partbody.parse(bytearray(b'{"layerPartBlob":"QUJD",}'))
