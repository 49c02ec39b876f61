"""Sizes as a user reads them in messages (protocol/units.py)."""
from dfly.protocol.units import human_bytes, received

KiB, MiB, TiB = 1024, 1024 ** 2, 1024 ** 4


def test_bytes_are_whole_below_a_kib_and_units_step_at_1024():
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, MiB - 1, MiB)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "1024.0 KiB", "1.0 MiB"]
    assert human_bytes(-2048) == "-2.0 KiB"


def test_tib_is_the_largest_unit():
    assert human_bytes(5 * TiB) == "5.0 TiB" and human_bytes(4096 * TiB) == "4096.0 TiB"


def test_received_names_the_total_when_known():
    assert received(4 * MiB, 64 * MiB) == "4.0 MiB of 64.0 MiB"
    assert received(4 * MiB, None) == received(4 * MiB, 0) == "4.0 MiB"
