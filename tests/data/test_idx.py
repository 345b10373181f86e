from __future__ import annotations

import contextlib
import gzip

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convnet.data.idx import IdxError, encode_idx, parse_idx, read_idx


def test_round_trip_raw_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = encode_idx(array)
    assert raw[:4] == bytes([0, 0, 0x08, 3])
    np.testing.assert_array_equal(parse_idx(raw), array)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(raw))
    assert read_idx(path).tolist() == array.tolist()


def test_big_endian_types_decode_to_native_values():
    array = np.array([1, -2, 300000], dtype=np.int32)
    assert read_idx_bytes(encode_idx(array)).tolist() == [1, -2, 300000]


def read_idx_bytes(raw: bytes):
    return parse_idx(raw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "too short"),
        (b"\x01\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x05", "bad magic"),
        (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x05", "unknown IDX data type"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x03\x00\x00", "ends inside"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01\x02", "truncated"),
        (b"\x00\x00\x08\x01" + b"\x00\x00\x00\x01" + b"\x01\x02", "trailing bytes"),
        (b"\x00\x00\x08\x02" + b"\xff\xff\xff\xff" * 2, "refusing"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_broken_files_name_the_problem(tmp_path, raw, problem):
    path = tmp_path / "broken-idx"
    path.write_bytes(raw)
    with pytest.raises(IdxError, match=problem) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(IdxError, match="cannot read"):
        read_idx(tmp_path / "absent")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_either_parse_or_raise_idx_error(raw):
    with contextlib.suppress(IdxError):
        parse_idx(raw)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4),
    st.sampled_from(["u1", "i2", "i4", "f4", "f8"]),
)
def test_encode_parse_round_trip(shape, dtype):
    array = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
    np.testing.assert_array_equal(parse_idx(encode_idx(array)), array)


@pytest.mark.parametrize(
    "trailing",
    [b"\x00", b"junk" * 100, gzip.compress(b"\x00")],
    ids=["one zero byte", "400 bytes of junk", "a second gzip member"],
)
def test_trailing_bytes_are_refused_after_gzip_as_after_raw_data(tmp_path, trailing):
    raw = encode_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    for name, content in [
        ("raw-idx", raw + trailing),
        ("gz-idx.gz", gzip.compress(raw) + trailing),
    ]:
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(IdxError, match="trailing bytes") as error:
            read_idx(path)
        assert str(path) in str(error.value)


def test_gzip_bomb_is_refused(monkeypatch):
    import convnet.data.idx as idx_module

    monkeypatch.setattr(idx_module, "MAX_IDX_BYTES", 1000)
    with pytest.raises(IdxError, match="expands past"):
        parse_idx(gzip.compress(b"\x00" * 5000), "bomb.gz")


# --- what tools/fuzz.py found: each was a crash (an exception other than a clean refusal) ---


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07" + bytes(20), "gzip stream is corrupt"),
        (
            bytes([0, 0, 8, 255]) + b"\xff" * 4 * 255,
            "refusing",
        ),  # 2**8000 bytes: a float overflowed
        (bytes([0, 0, 8, 3]) + bytes(4) + b"\xff" * 8, "unusable"),  # no data, yet unindexable
    ],
)
def test_idx_headers_the_fuzzer_found(raw, problem):
    from convnet.data.idx import IdxError, parse_idx

    with pytest.raises(IdxError, match=problem):
        parse_idx(raw, "fuzzed")
