"""`dfly setup containerd|docker|podman`: which files, what each should hold, what to restart.

Every path is the host's own path below --root (default /), so a test (or an
image build) can run it on a tree of its own. The steps: read the files, work
out their new text (runtimes.py, pure), then write them all or none
(writer.py), and say what changed and what must be restarted.
"""
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, TextIO, Union

from dfly.setup import runtimes, writer

RUNTIMES = ("containerd", "docker", "podman")
DEFAULT_DAEMON = "127.0.0.1:65001"   # the daemon's default --listen
DEFAULT_NOTE = ("note: _default sends every registry without a hosts.toml of its own to the "
                "daemon first: name each registry it should serve with its --mirror-registry "
                "(it answers 404 for the rest, and containerd then asks the registry itself); "
                "a daemon with only --registry-mirror serves every registry's pulls from that one")


@dataclass(frozen=True)
class Target:
    path: str   # below root
    transform: Callable[[Optional[str]], Optional[str]]   # text now -> text wanted (None: as is)


def under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


Registries = Union[runtimes.Registry, Sequence[runtimes.Registry]]


def targets(runtime: str, root: str, registry: Registries, daemon: str,
            hosts_only: bool = False) -> List[Target]:
    """The files to change, for one registry or several (the daemon mirrors each:
    its --mirror-registry). `hosts_only` (containerd): the hosts.toml files only,
    never config.toml (a pod cannot restart the node's containerd after changing it)."""
    registries = _listed(registry)
    if runtime != "containerd" and any(r.host == runtimes.DEFAULT_HOSTS for r in registries):
        raise ValueError("--registry %s is containerd's (certs.d/%s): for %s name each registry"
                         % ((runtimes.DEFAULT_HOSTS,) * 2 + (runtime,)))
    if runtime == "containerd":
        config = under(root, "/etc/containerd/config.toml")
        _, hosts_dir = runtimes.containerd_hosts_dir(_text(config))
        config_target = Target(config, lambda text: runtimes.containerd_hosts_dir(text)[0])
        return ([] if hosts_only else [config_target]) + [
            Target(under(root, os.path.join(hosts_dir, r.host, "hosts.toml")),
                   lambda text, r=r: _unless_same(text, runtimes.hosts_toml(r, daemon)))
            for r in registries]
    if runtime == "docker":
        if len(registries) != 1:
            raise ValueError("Docker sends only Docker Hub pulls to registry-mirrors: one "
                             "--registry for docker, not %d" % len(registries))
        hub = registries[0]
        return [Target(under(root, "/etc/docker/daemon.json"),
                       lambda text: runtimes.docker_daemon_json(text, hub, daemon))]
    return [Target(under(root, "/etc/containers/registries.conf"),
                   lambda text: _each(text, registries, daemon))]


def _listed(registry: Registries) -> List[runtimes.Registry]:
    return [registry] if isinstance(registry, runtimes.Registry) else list(registry)


def _each(text: Optional[str], registries: List[runtimes.Registry], daemon: str) -> Optional[str]:
    """registries.conf with every registry's mirror block (None: all there already)."""
    changed = False
    for registry in registries:
        after = runtimes.registries_conf(text, registry, daemon)
        if after is not None:
            text, changed = after, True
    return text if changed else None


def _unless_same(text: Optional[str], wanted: str) -> Optional[str]:
    return None if text == wanted else wanted


def _text(path: str) -> Optional[str]:
    return _decode(path, writer.read(path))


def _decode(path: str, data: Optional[bytes]) -> Optional[str]:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError("%s line %d: not UTF-8 text" % (path, line))


def restart_advice(runtime: str, changed: List[str]) -> str:
    if runtime == "containerd":
        if any(p.endswith("config.toml") for p in changed):
            return "restart containerd (config.toml changed): systemctl restart containerd"
        return "containerd reads hosts.toml at each pull: nothing to restart"
    if runtime == "docker":
        return "reload Docker (it rereads registry-mirrors on SIGHUP): systemctl reload docker"
    return ("podman and skopeo read registries.conf at each run: nothing to restart "
            "(CRI-O: systemctl reload crio)")


def setup(runtime: str, root: str, registry: Registries, daemon: str, out: TextIO,
          hosts_only: bool = False) -> int:
    changes = []
    if hosts_only and runtime == "containerd":
        config = under(root, "/etc/containerd/config.toml")
        if runtimes.containerd_hosts_dir(_text(config))[0] is not None:
            out.write("note: %s does not set the CRI registry's config_path: containerd 1.x "
                      "ignores certs.d until it does (dfly setup containerd without "
                      "--hosts-only sets it; then restart containerd)\n" % config)
    for target in targets(runtime, root, registry, daemon, hosts_only):
        if os.path.islink(target.path):   # a rename would replace the link, and undo not restore it
            raise ValueError("%s is a symbolic link (to %s): not edited; change its target by hand"
                             % (target.path, os.readlink(target.path)))
        before = writer.read(target.path)
        after = target.transform(_decode(target.path, before))
        if after is None:
            out.write("unchanged %s (already set up for %s)\n" % (target.path, daemon))
        else:
            changes.append(writer.Change(target.path, before, after.encode("utf-8")))
    writer.apply(changes)
    for change in changes:
        kept = ("backup %s" % (change.path + writer.BACKUP) if change.before is not None
                else "it did not exist")
        out.write("wrote %s (%s)\n" % (change.path, kept))
    if any(r.host == runtimes.DEFAULT_HOSTS for r in _listed(registry)) and runtime == "containerd":
        out.write(DEFAULT_NOTE + "\n")
    if changes:
        out.write(restart_advice(runtime, [c.path for c in changes]) + "\n")
        out.write("undo with: dfly setup %s --undo%s%s\n" % (runtime, " --hosts-only" if hosts_only else "",
                                                             _same_flags(root, registry, daemon)))
    else:
        out.write("nothing changed\n")
    return 0


def undo(runtime: str, root: str, registry: Registries, daemon: str, out: TextIO,
         hosts_only: bool = False) -> int:
    restores = [writer.Restore(t.path, _expected(t))
                for t in targets(runtime, root, registry, daemon, hosts_only)]
    paths = writer.plan_undo(restores)
    for line in writer.undo(paths):
        out.write(line + "\n")
    if paths:
        out.write(restart_advice(runtime, paths) + "\n")
    else:
        out.write("nothing to undo: dfly setup %s changed nothing here\n" % runtime)
    return 0


def _expected(target: Target) -> Callable[[Optional[bytes]], bytes]:
    def expected(original: Optional[bytes]) -> bytes:
        text = _decode(target.path, original)
        after = target.transform(text)
        return (after if after is not None else text or "").encode("utf-8")
    return expected


def _same_flags(root: str, registry: Registries, daemon: str) -> str:
    """The flags undo needs to recognise what setup wrote (those not at their defaults)."""
    registries = _listed(registry)
    flags = ""
    if [r.host for r in registries] != [runtimes.DOCKER_HUB]:
        flags = "".join(" --registry %s" % (r.server if r.server.startswith("http:") else r.host)
                        for r in registries)
    flags += "" if daemon == DEFAULT_DAEMON else " --daemon %s" % daemon
    return flags + ("" if root == "/" else " --root %s" % root)
