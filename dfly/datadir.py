"""Where dfly keeps its data when no --data-dir is given: the per-user data dir
(XDG_DATA_HOME/dfly, else ~/.local/share/dfly), never the current directory."""
import os
from typing import Mapping


def default_data_dir(environ: Mapping[str, str]) -> str:
    if environ.get("DFLY_DATA_DIR"):
        return environ["DFLY_DATA_DIR"]
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "dfly")


def make_data_dir(path: str) -> str:
    """`path` made if missing (absolute); LocalIOError, one line, when it cannot be,
    before anything is started."""
    from dfly.errors import LocalIOError

    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise LocalIOError("cannot use data dir %s: %s" % (path, e.strerror or e))
    if not os.access(path, os.W_OK | os.X_OK):
        raise LocalIOError("cannot use data dir %s: not writable" % path)
    return path
