"""What of a file still downloading may be sent: consecutive held pieces from
where the reader is, never the last piece (it waits for the whole-file check)."""
from dfly.peer.filling import servable_end

PIECE = 4


def test_nothing_is_servable_before_the_geometry_is_known():
    assert servable_end({0, 1}, None, PIECE, 0) == 0
    assert servable_end({0, 1}, 10, 0, 0) == 0


def test_consecutive_held_pieces_are_servable_up_to_the_first_gap():
    assert servable_end({0, 1, 3}, 20, PIECE, 0) == 8
    assert servable_end({0, 1, 3}, 20, PIECE, 5) == 8
    assert servable_end({1}, 20, PIECE, 0) == 0


def test_the_last_piece_is_never_servable_even_when_held():
    assert servable_end({0, 1, 2}, 10, PIECE, 0) == 8
    assert servable_end({0, 1, 2}, 12, PIECE, 9) == 9
    assert servable_end({0}, 3, PIECE, 0) == 0   # a one-piece file waits for its check


def test_a_reader_past_the_held_pieces_gets_nothing_new():
    assert servable_end({0}, 20, PIECE, 6) == 6
