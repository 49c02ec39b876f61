"""Where dfly keeps its data when no --data-dir is given: the per-user data dir
(XDG_DATA_HOME/dfly, else ~/.local/share/dfly), never the current directory."""
import os
from typing import Mapping


def default_data_dir(environ: Mapping[str, str]) -> str:
    if environ.get("DFLY_DATA_DIR"):
        return environ["DFLY_DATA_DIR"]
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "dfly")
