"""README's "Sources" examples, one per scheme: every line parses with the real
command-line parser into a real config and a URL dfly accepts, and the file://
and ftp:// ones run as written against a real supernode (their placeholder
hosts and paths replaced by loopback ones)."""
import hashlib
import os
import re
import shlex

import pytest
from ftpserver import FtpOrigin
from helpers import content, sha256_file

from dfly import options
from dfly.cli import build_parser
from dfly.peer.config import PeerConfig
from dfly.protocol.urls import normalize_url
from dfly.supernode.config import SupernodeConfig

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "README.md")


def _examples():
    with open(README) as f:
        text = f.read()
    section = text.split("#### Sources: http, https, ftp, ftps, file, s3", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = [line for line in block.replace("\\\n", " ").splitlines()
             if line.strip() and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


def _command(words):
    """(command, its argv) with env assignments and `python3 dfly.pyz` dropped."""
    words = [w for w in words if "=" not in w or w.startswith("-")]
    assert words[:2] == ["python3", "dfly.pyz"], words
    return words[2], words[3:]


def test_every_scheme_has_an_example_and_each_parses_into_a_config():
    schemes = set()
    for words in _examples():
        command, argv = _command(words)
        args = build_parser(only=command).parse_args([command] + argv)
        config = options.build(SupernodeConfig if command == "supernode" else PeerConfig, None, args)
        if command == "get":
            schemes.add(normalize_url(args.url).split(":", 1)[0])
        else:
            assert config.source_file_root or config.source_ca_file or config.s3_endpoint \
                or config.s3_region, argv
    assert schemes == {"https", "ftp", "file", "s3"}


@pytest.mark.time_limit(60)
def test_the_file_and_ftp_examples_run_as_written(tmp_path, supernode_factory, client_factory):
    examples = [_command(w) for w in _examples()]
    root = tmp_path / "mnt" / "nfs" / "images"
    root.mkdir(parents=True)
    data = content(400_000, seed=81)
    (root / "big.iso").write_bytes(data)
    ftp = FtpOrigin(str(tmp_path / "ftp"))
    try:
        ftp.add("big.iso", data)
        served = {"/mnt/nfs/images": str(root),
                  "ftp://mirror:secret@ftp.example.com/pub/big.iso": ftp.url("big.iso")}
        supernode_argv = next(argv for cmd, argv in examples
                              if cmd == "supernode" and "--source-file-root" in argv)
        args = build_parser(only="supernode").parse_args(
            ["supernode"] + [served.get(w, w) for w in supernode_argv])
        settings = {k: v for k, v in vars(args).items()
                    if v is not None and k in SupernodeConfig.__dataclass_fields__}
        supernode = supernode_factory(**settings)
        for cmd, argv in examples:
            if cmd != "get" or not argv[0].startswith(("file:", "ftp:")):
                continue
            url = served.get(argv[0], argv[0].replace("/mnt/nfs/images", str(root)))
            target = str(tmp_path / ("out-" + url.split(":")[0]))
            client_factory([supernode.address]).download(url, target)
            assert sha256_file(target) == hashlib.sha256(data).hexdigest()
    finally:
        ftp.stop()
