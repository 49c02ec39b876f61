"""The pure transforms of `dfly setup` on real-world configs (tests/data/runtimes/:
containerd 1.6's own `config default`, Debian's registries.conf, a site's files):
what they add, that a second pass changes nothing, that every other line stays,
and that what they cannot edit safely is refused with its line."""
import json
import os
import sys

import pytest

from dfly.setup import runtimes
from dfly.setup.runtimes import containerd_hosts_dir, docker_daemon_json, parse_registry, registries_conf
from dfly.setup.tomlscan import Entry, Header, TomlError, scan, string_value

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "runtimes")
DAEMON = "127.0.0.1:65001"
HUB = parse_registry("docker.io")


def data(name: str) -> str:
    with open(os.path.join(DATA, name)) as f:
        return f.read()


def entries(text: str) -> dict:
    """full dotted path -> raw value, as tomllib would see the keys (arrays of tables aside)."""
    return {i.table + i.key: i.raw for i in scan(text) if isinstance(i, Entry)}


def lines_kept(before: str, after: str) -> bool:
    """Every line of `before` is in `after`, in order: only insertions happened."""
    rest = iter(after.splitlines())
    return all(any(line == other for other in rest) for line in before.splitlines())


# the scanner ------------------------------------------------------------------------------

def test_scanner_reads_headers_dotted_keys_and_values_spanning_lines():
    text = ('a = 1\n[t."x.y".z]  # c\nk.l = "v # not a comment"\narr = [\n  "a", # c\n  \'b]\',\n]\n'
            '[[r]]\nm = """\nmulti = "line"\n"""\nq = \'lit\'\n')
    items = scan(text)
    assert [i.path for i in items if isinstance(i, Header)] == [("t", "x.y", "z"), ("r",)]
    found = {i.table + i.key: i for i in items if isinstance(i, Entry)}
    assert string_value(found[("t", "x.y", "z", "k", "l")]) == "v # not a comment"
    assert (found[("t", "x.y", "z", "arr")].line, found[("t", "x.y", "z", "arr")].end_line) == (4, 7)
    assert string_value(found[("r", "q")]) == "lit"
    assert ("r", "multi") not in found   # inside the multi-line string


@pytest.mark.parametrize("text,line", [('a = "open\n', 1), ("x = 1\n[t\n", 2), ("x = 1\ny\n", 2),
                                       ("x = 1\nz = [1,\n2\n", 2), ('a = 1 2\n', 1),
                                       ('a = """\nnever\n', 1), ('a = "\\q"\n', 1)])
def test_scanner_names_the_line_it_cannot_follow(text, line):
    with pytest.raises(TomlError) as e:
        scan(text)
    assert e.value.line == line


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib: Python 3.11+")
@pytest.mark.parametrize("name", ["containerd-1.6-default.toml", "containerd-config-path-set.toml",
                                  "containerd-no-registry.toml", "registries-with-others.conf"])
def test_scanner_agrees_with_tomllib_on_real_files_and_what_setup_makes_of_them(name):
    import tomllib
    text = data(name)
    for version in (text, _setup_text(name, text)):
        loaded = tomllib.loads(version)
        for path, raw in entries(version).items():
            if path[0] == "registry" or path[0] == "aliases":
                continue   # arrays of tables: tomllib nests them in lists
            value = loaded
            for part in path:
                value = value[part]
            if raw.startswith(('"', "'")):
                assert string_value(Entry(path[:-1], path[-1:], raw, 1, 1)) == value


def _setup_text(name: str, text: str) -> str:
    if name.startswith("containerd"):
        return containerd_hosts_dir(text)[0] or text
    return registries_conf(text, parse_registry("registry.example:5000"), DAEMON)


# containerd -------------------------------------------------------------------------------

def test_containerd_default_config_gets_its_empty_config_path_set_in_place():
    before = data("containerd-1.6-default.toml")
    after, hosts_dir = containerd_hosts_dir(before)
    assert hosts_dir == "/etc/containerd/certs.d"
    assert entries(after)[("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")] == \
        '"/etc/containerd/certs.d"'
    changed = [a for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert changed == ['      config_path = ""']
    assert containerd_hosts_dir(after) == (None, hosts_dir)


def test_containerd_config_path_already_set_is_used_as_is():
    assert containerd_hosts_dir(data("containerd-config-path-set.toml")) == (None, "/etc/containerd/certs.d")
    custom = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = \'/srv/hosts\'\n'
    assert containerd_hosts_dir(custom) == (None, "/srv/hosts")


def test_containerd_config_without_a_registry_table_gets_one_appended():
    before = data("containerd-no-registry.toml")
    after, hosts_dir = containerd_hosts_dir(before)
    assert after.startswith(before) and lines_kept(before, after)
    assert entries(after)[("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")] == \
        '"/etc/containerd/certs.d"'
    assert containerd_hosts_dir(after) == (None, hosts_dir)


def test_containerd_registry_table_without_config_path_gets_the_line_under_its_header():
    before = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  [x]\n'
    after, _ = containerd_hosts_dir(before)
    assert after.splitlines()[2].startswith('  config_path = "/etc/containerd/certs.d"')
    assert entries(after)[("plugins", "io.containerd.grpc.v1.cri", "registry", "config_path")]


def test_containerd_2_reads_certs_d_by_default_and_no_config_gets_a_version_2_file():
    assert containerd_hosts_dir('version = 3\n[plugins."io.containerd.cri.v1.images"]\n') == \
        (None, "/etc/containerd/certs.d")
    made, _ = containerd_hosts_dir(None)
    assert entries(made)[("version",)] == "2"
    assert containerd_hosts_dir(made)[0] is None


@pytest.mark.parametrize("text,line,words", [
    (data("containerd-mirrors.toml"), 2, "registry.mirrors"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  registry.configs = {}\n', 3, "dotted keys"),
    ("version = 7\n", 1, "unknown config version"),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = [1]\n', 3, "string"),
])
def test_containerd_configs_it_cannot_edit_safely_are_refused_with_their_line(text, line, words):
    with pytest.raises(ValueError) as e:
        containerd_hosts_dir(text)
    assert str(e.value).startswith("config.toml line %d: " % line) and words in str(e.value)


def test_hosts_toml_sends_pulls_to_the_daemon_first_and_names_the_real_registry():
    text = runtimes.hosts_toml(parse_registry("http://127.0.0.1:5000"), DAEMON)
    found = entries(text)
    assert found[("server",)] == '"http://127.0.0.1:5000"'
    assert found[("host", "http://127.0.0.1:65001", "capabilities")] == '["pull", "resolve"]'
    assert entries(runtimes.hosts_toml(HUB, DAEMON))[("server",)] == '"https://registry-1.docker.io"'


def test_default_hosts_toml_names_the_daemon_and_no_server_so_containerd_falls_back_to_each_registry():
    default = parse_registry("_default")
    found = entries(runtimes.hosts_toml(default, DAEMON))
    assert found == {("host", "http://127.0.0.1:65001", "capabilities"): '["pull", "resolve"]'}
    if sys.version_info >= (3, 11):
        import tomllib
        assert tomllib.loads(runtimes.hosts_toml(default, DAEMON)) == {
            "host": {"http://127.0.0.1:65001": {"capabilities": ["pull", "resolve"]}}}


# Docker -----------------------------------------------------------------------------------

def test_docker_daemon_json_gets_the_daemon_first_among_mirrors_and_keeps_every_other_key():
    before = json.loads(data("docker-daemon.json"))
    after = docker_daemon_json(data("docker-daemon.json"), HUB, DAEMON)
    merged = json.loads(after)
    assert merged["registry-mirrors"] == ["http://127.0.0.1:65001", "https://mirror.gcr.io"]
    assert {k: v for k, v in merged.items() if k != "registry-mirrors"} == \
        {k: v for k, v in before.items() if k != "registry-mirrors"}
    assert list(merged) == list(before)
    assert docker_daemon_json(after, HUB, DAEMON) is None
    assert json.loads(docker_daemon_json(None, HUB, DAEMON)) == {"registry-mirrors": ["http://127.0.0.1:65001"]}


@pytest.mark.parametrize("text,words", [('{\n  "a": 1,\n  "b": \n}\n', "line 4: not valid JSON"),
                                        ('{"a": 1, "a": 2}', "given twice"),
                                        ("[1]", "must hold a JSON object"),
                                        ('{\n"registry-mirrors": "x"}', "line 2: registry-mirrors")])
def test_docker_daemon_json_it_cannot_read_is_refused(text, words):
    with pytest.raises(ValueError) as e:
        docker_daemon_json(text, HUB, DAEMON)
    assert words in str(e.value)


def test_docker_takes_mirrors_for_docker_hub_only():
    with pytest.raises(ValueError, match="Docker Hub"):
        docker_daemon_json("{}", parse_registry("registry.example:5000"), DAEMON)


# registries.conf --------------------------------------------------------------------------

def test_registries_conf_of_debian_gets_a_registry_with_the_daemon_as_mirror_appended():
    before = data("registries-debian-default.conf")
    after = registries_conf(before, HUB, DAEMON)
    assert after.startswith(before)
    tail = after[len(before):]
    assert '[[registry]]\nlocation = "docker.io"\n\n[[registry.mirror]]\n' in tail
    assert 'location = "127.0.0.1:65001"\ninsecure = true\n' in tail
    assert registries_conf(after, HUB, DAEMON) is None


def test_registries_conf_registry_with_a_mirror_gets_the_daemon_before_it():
    before = data("registries-with-others.conf")
    after = registries_conf(before, HUB, DAEMON)
    assert lines_kept(before, after)
    mirrors = [line for line in after.splitlines() if line.startswith("location = ")]
    assert mirrors.index('location = "127.0.0.1:65001"') == mirrors.index(
        'location = "mirror.example.internal:5000"   # the site\'s own pull-through cache') - 1
    assert registries_conf(after, HUB, DAEMON) is None
    other = registries_conf(before, parse_registry("registry.example:5000"), DAEMON)
    assert other.startswith(before) and 'location = "registry.example:5000"' in other


def test_registries_conf_it_cannot_edit_safely_is_refused_with_its_line():
    with pytest.raises(ValueError, match=r"registries.conf line 19: .*inline list"):
        registries_conf(data("registries-with-others.conf"), parse_registry("ghcr.io"), DAEMON)
    with pytest.raises(ValueError, match=r"line 1: the old \(v1\) format"):
        registries_conf("[registries.search]\nregistries = []\n", HUB, DAEMON)
    with pytest.raises(ValueError, match=r"registries.conf line 2: "):
        registries_conf('[[registry]]\nlocation = "x\n', HUB, DAEMON)


@pytest.mark.parametrize("text", ["", "docker.io/library", "http:/x", "a b", 'x"y', "ftp://x", "-x"])
def test_bad_registry_names_are_refused(text):
    with pytest.raises(ValueError, match="--registry"):
        parse_registry(text)
