"""How long a relay waits for the next verified block of a piece it passes on
(dfly.peer.storage.relay_deadline, pure): a floor after the last block on a fast
link, longer where the blocks have come slowly (a slow link, or one of the
fan-out's 16 streams), and before the first block only the fetch's own
timeouts (a safety net here). And when its reader leaves it as lagging
(dfly.peer.piece_client.relay_lags, pure): far behind the download's fastest
recent fetches, not merely slow."""
from dfly.peer.piece_client import RELAY_JUDGED_AFTER_S, relay_lags
from dfly.peer.storage import FIRST_BLOCK_WAIT_S, RELAY_PACE_SLACK, relay_deadline

T0 = 1000.0


def test_blocks_at_100_mbit_s_get_the_floor():
    # a 64 KiB block every 0.084 s: four of those are far less than the floor
    assert relay_deadline(T0, 10, T0 + 0.84, 2.0) == T0 + 0.84 + 2.0


def test_blocks_that_came_slowly_are_waited_for_at_their_pace():
    # one of 16 streams at 6.25 Mbit/s: a block every 1.34 s
    assert relay_deadline(T0, 3, T0 + 4.02, 2.0) == T0 + 4.02 + RELAY_PACE_SLACK * 1.34


def test_before_the_first_block_the_fetch_bounds_the_wait():
    assert relay_deadline(T0, 0, T0, 2.0) == T0 + FIRST_BLOCK_WAIT_S


def test_a_relay_at_the_fan_outs_share_of_a_slow_link_does_not_lag():
    # one of 16 streams at 6.25 Mbit/s (49 KB/s) against a whole copy at all of it
    assert relay_lags(int(49e3 * 20), 20.0, 780e3) is False


def test_a_relay_far_behind_the_downloads_fastest_fetches_lags():
    # a peer reading 100 KB/s over four fetches, where the supernode gives 300 MB/s
    assert relay_lags(64 << 10, 2.6, 300e6) is True
    assert relay_lags(0, RELAY_JUDGED_AFTER_S / 2, 300e6) is False   # too soon to tell
    assert relay_lags(64 << 10, 2.6, 0.0) is False                   # nothing to judge it by
