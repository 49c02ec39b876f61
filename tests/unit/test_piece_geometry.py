"""Piece geometry: next_pow2(length / 500) clamped to 1..64 MiB."""
import pytest

from dfly.protocol.pieces import MAX_PIECE_SIZE, MIN_PIECE_SIZE, piece_count, piece_range, piece_size_for

MiB = 1 << 20


def test_the_piece_size_bounds_are_1_and_64_mib():
    assert MIN_PIECE_SIZE == 1 * MiB
    assert MAX_PIECE_SIZE == 64 * MiB


@pytest.mark.parametrize("length", [None, 0, -1, 1, 4096, 64 * MiB, 500 * MiB])
def test_small_and_unknown_lengths_get_the_minimum_piece_size(length):
    assert piece_size_for(length) == 1 * MiB


@pytest.mark.parametrize("length, size", [
    (500 * MiB + 1, 2 * MiB),         # just over 500 pieces of 1 MiB
    (1000 * MiB, 2 * MiB),
    (1000 * MiB + 1, 4 * MiB),
    (2000 * MiB, 4 * MiB),            # from here on as Dragonfly cuts them
    (2000 * MiB + 1, 8 * MiB),
    (4000 * MiB, 8 * MiB),
    (4000 * MiB + 1, 16 * MiB),
    (5000 * MiB, 16 * MiB),           # 10 MiB wanted, rounded up to a power of two
    (16000 * MiB, 32 * MiB),
    (16000 * MiB + 1, 64 * MiB),
    (32000 * MiB, 64 * MiB),
])
def test_the_piece_size_is_the_next_power_of_two_of_a_500th_of_the_length(length, size):
    assert piece_size_for(length) == size


@pytest.mark.parametrize("length", [32000 * MiB + 1, 1 << 40, 1 << 50])
def test_huge_files_get_the_maximum_piece_size(length):
    assert piece_size_for(length) == 64 * MiB


@pytest.mark.parametrize("length", [1, 2000 * MiB, 4000 * MiB, 32000 * MiB, 1 << 40])
def test_files_up_to_32000_mib_have_at_most_500_pieces(length):
    count = piece_count(length, piece_size_for(length))
    assert 1 <= count
    if length <= 32000 * MiB:
        assert count <= 500
    else:
        assert count > 500


@pytest.mark.parametrize("length, count", [(0, 0), (1, 1), (4 * MiB, 1), (4 * MiB + 1, 2),
                                           (12 * MiB, 3), (12 * MiB - 1, 3)])
def test_piece_count_rounds_up(length, count):
    assert piece_count(length, 4 * MiB) == count


def test_piece_range_gives_start_and_size_with_a_short_last_piece():
    length = 10 * MiB + 5
    assert piece_range(0, length, 4 * MiB) == (0, 4 * MiB)
    assert piece_range(1, length, 4 * MiB) == (4 * MiB, 4 * MiB)
    assert piece_range(2, length, 4 * MiB) == (8 * MiB, 2 * MiB + 5)


def test_the_last_piece_of_an_exact_multiple_is_full():
    assert piece_range(2, 12 * MiB, 4 * MiB) == (8 * MiB, 4 * MiB)


@pytest.mark.parametrize("num, length", [(-1, 10 * MiB), (3, 12 * MiB), (99, 10 * MiB), (0, 0)])
def test_piece_range_refuses_pieces_outside_the_file(num, length):
    with pytest.raises(ValueError, match="piece %d outside" % num):
        piece_range(num, length, 4 * MiB)
