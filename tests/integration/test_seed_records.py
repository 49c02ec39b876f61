"""The daemon's seed records keep a URL whole (its query may be a signed URL's secret),
so only the daemon's user may read them."""
import os
import stat

from dfly.peer.seeds import Seed, SeedBook


def test_a_seed_record_is_readable_by_its_user_only(tmp_path):
    book = SeedBook(str(tmp_path / "seeds"))
    old = os.umask(0o022)   # a usual umask: files would be world-readable
    try:
        book.put("task-1", Seed(url="http://h/f?X-Amz-Signature=secret", piece_size=4096))
    finally:
        os.umask(old)
    path = tmp_path / "seeds" / os.listdir(str(tmp_path / "seeds"))[0]
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    assert book.get("task-1").url.endswith("secret")
