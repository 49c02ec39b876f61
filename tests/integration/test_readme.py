"""The README's Python SDK example runs as written, against a real supernode
and origin: only its placeholder addresses and paths are replaced."""
import os
import re

import pytest
from helpers import MiB, content, sha256_file

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "README.md")


def _sdk_example() -> str:
    with open(README) as f:
        text = f.read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    examples = [b for b in blocks if "from dfly import Client" in b]
    assert examples, "README.md has no ```python block with `from dfly import Client`"
    return examples[0]


def test_the_minimal_sdk_example_runs(origin, supernode, tmp_path, capsys):
    src = origin.add("big.iso", content(6 * MiB, seed=50))
    SN, D, URL, PATH = supernode.address, str(tmp_path / "dfly"), src.url, str(tmp_path / "big.iso")

    from dfly import Client
    with Client(supernodes=[SN], data_dir=D) as c: r = c.download(URL, PATH); print(r.bytes_from_peers)  # noqa: E701,E702

    assert capsys.readouterr().out == "0\n"
    assert sha256_file(PATH) == src.sha256


@pytest.mark.time_limit(30)
def test_the_readme_sdk_example_runs_as_written(origin, supernode, tmp_path, capsys):
    big = origin.add("big.iso", content(6 * MiB, seed=51))
    other = origin.add("other.bin", content(2 * MiB, seed=52))
    target = str(tmp_path / "big.iso")
    code = _sdk_example()
    placeholders = {'"10.0.0.5:8002"': repr(supernode.address),
                    '"/var/lib/dfly"': repr(str(tmp_path / "dfly")),
                    '"http://origin/big.iso"': repr(big.url),
                    '"/tmp/big.iso"': repr(target),
                    '"sha256:9f86d0..."': repr(big.digest),
                    '"http://origin/other.bin"': repr(other.url)}
    for placeholder, value in placeholders.items():
        assert placeholder in code, "the README example no longer uses %s" % placeholder
        code = code.replace(placeholder, value)

    exec(compile(code, README + ":sdk-example", "exec"), {"__name__": "readme_example"})

    assert sha256_file(target) == big.sha256
    printed = [int(n) for n in capsys.readouterr().out.split()]
    assert sum(printed) == big.size
    assert origin.served("big.iso")[0].headers.get("Authorization") == "Bearer t"
    assert origin.requests("other.bin") == 1
