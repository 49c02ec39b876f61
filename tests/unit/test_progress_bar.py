import io

from dfly.peer.downloader import ByteSplit
from dfly.peer.progress import ProgressBar, human_bytes


class ManualClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_bar_shows_percent_rate_eta_and_byte_split():
    out, clock = io.StringIO(), ManualClock()
    bar = ProgressBar(out, clock, width=10)
    clock.now += 2.0
    bar.update(50 << 20, 100 << 20, ByteSplit(source=0, supernode=10 << 20, peers=40 << 20))
    line = out.getvalue()
    assert "[#####.....]  50%" in line
    assert "25.0 MiB/s" in line
    assert "ETA 2s" in line
    assert "peers 40.0 MiB, supernode 10.0 MiB, source 0 B" in line


def test_progress_bar_redraws_at_most_ten_times_a_second_but_always_at_the_end():
    out, clock = io.StringIO(), ManualClock()
    bar = ProgressBar(out, clock)
    clock.now += 1.0
    bar.update(1, 10, ByteSplit())
    clock.now += 0.01
    bar.update(2, 10, ByteSplit())
    assert out.getvalue().count("\r") == 1
    bar.update(10, 10, ByteSplit())
    assert out.getvalue().count("\r") == 2


def test_human_bytes_uses_binary_units():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 << 30) == "3.0 GiB"
