import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from qfleet.wire import Array, decode_array, encode_array


@given(
    arrays(
        np.float64,
        array_shapes(min_dims=0, max_dims=4, max_side=5),
        elements=st.floats(allow_nan=True, allow_infinity=True),
    )
)
def test_array_round_trip_is_bit_exact(values: np.ndarray) -> None:
    wire = Array.model_validate_json(encode_array(values).model_dump_json())
    back = decode_array(wire)
    assert back.shape == values.shape
    assert back.tobytes() == values.astype("<f8").tobytes()


@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=1, max_size=6))
def test_json_lists_decode_like_numpy(rows: list[list[float]]) -> None:
    assert np.array_equal(decode_array(rows), np.asarray(rows, dtype=float))


def test_big_endian_input_is_sent_little_endian() -> None:
    values = np.arange(6, dtype=">f8").reshape(2, 3)
    assert np.array_equal(decode_array(encode_array(values)), values)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"dtype": "float64", "shape": [3], "data": "AAAA"}, "needs 24"),
        ({"dtype": "float64", "shape": [1], "data": "not base64!"}, "base64"),
        ([[1.0, 2.0], [3.0]], "rectangular"),
    ],
)
def test_bad_arrays_say_what_is_wrong(payload: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_array(payload)  # type: ignore[arg-type]
