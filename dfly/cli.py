"""The command line: the only module that reads argv and the environment.

Each command's flags come from its component's config dataclass (options.py);
a --config FILE (JSON, or TOML on Python 3.11+) fills what the flags leave out.
"""
import argparse
import gc
import json
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import List, Optional

from dfly import __version__, errors, options
from dfly.datadir import default_data_dir, make_data_dir
from dfly.errors import EXIT_CODES
from dfly.protocol.redact import redact_urls_in

log = logging.getLogger("dfly")
PROCESS_START = time.monotonic()   # (about) when this process started: `get --trace` counts from it


def main(argv: Optional[List[str]] = None) -> int:
    started = time.monotonic()   # what `get --timeout` counts from
    argv = sys.argv[1:] if argv is None else argv
    named = next((a for a in argv if not a.startswith("-")), None)
    with_file = any(a == "--config" or a.startswith("--config=") for a in argv)
    # No command named (--version, --help) or one that is not: no command's options are
    # needed, and building every one imported every program's settings (178 ms).
    parser = build_parser(only=named if named in COMMANDS else "", with_file=with_file)
    args = parser.parse_args(argv)
    args.started = started
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # What is loaded by now lives as long as the process: keep the collector from
    # walking it again and again. A piece transfer allocates many short-lived
    # containers (headers, JSON), so collect young objects less often too (and
    # the older generations a little less often: the setting that was measured).
    gc.freeze()
    gc.set_threshold(10000, 20, 20)
    try:
        return args.run(args)
    except errors.DflyError as e:   # the URL's secrets (a signed query) stay out of logs
        sys.stderr.write("dfly: error: %s\n" % redact_urls_in(str(e)))
        return e.exit_code
    except ValueError as e:   # bad settings: options.build names the flag
        sys.stderr.write("dfly: error: %s\n" % redact_urls_in(str(e)))
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("dfly: interrupted\n")
        return 130
    except OSError as e:   # what the host refused that no earlier check named: still one line
        return _host_refused(e)


def _host_refused(e: OSError) -> int:
    """What the host refused that no earlier check named (a listen address is checked by
    httpd: CannotListen): one line, the local I/O error's exit code."""
    where = " %s" % e.filename if e.filename else ""
    sys.stderr.write("dfly: error: the host refused%s: %s\n" % (where, e.strerror or e))
    return errors.LocalIOError.exit_code


def build_parser(only: Optional[str] = None, with_file: bool = False) -> argparse.ArgumentParser:
    """Every command; with `only`, the others are listed without their options, so
    a command imports no other command's settings (a short `get` starts sooner);
    `only=""`: every command without its options (--version, the top-level help).
    `with_file`: a --config file may give what the flags must otherwise (checked later)."""
    parser = argparse.ArgumentParser(
        prog="dfly", description="Peer-to-peer file distribution: one origin fetch, many hosts.",
        epilog=_exit_codes(EXIT_CODES))
    parser.add_argument("--version", action="version", version="dfly " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, fill) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:]
                                  + ".", epilog=_exit_codes(COMMAND_EXIT_CODES.get(name, {})))
        if only in (None, name):
            fill(sub)
            for action in sub._actions if with_file else ():
                if action.dest != "output":   # settings the file can give
                    action.required = False
    return parser


def _exit_codes(codes) -> Optional[str]:
    """The epilog listing `codes`; None for a command that writes its own."""
    return "exit codes: " + "; ".join("%d %s" % kv for kv in codes.items()) if codes else None


def _supernode_options(sn: argparse.ArgumentParser) -> None:
    from dfly.supernode.config import SupernodeConfig
    options.add_arguments(sn, SupernodeConfig)
    sn.add_argument("--config", metavar="FILE", help="settings file (JSON; TOML on Python 3.11+)")
    sn.set_defaults(run=run_supernode)


def _get_options(get: argparse.ArgumentParser) -> None:
    from dfly.peer.config import PeerConfig
    get.add_argument("url", metavar="URL", help="source URL: http, https, ftp, ftps, s3, or file "
                     "(under a --source-file-root)")
    get.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write; - for stdout")
    get.add_argument("--digest", metavar="sha256:HEX", help="expected digest of the whole file")
    get.add_argument("--header", action="append", default=[], metavar="'K: V'",
                     help="header passed to the source (repeatable)")
    get.add_argument("--filter", action="append", default=[], metavar="NAME",
                     help="query parameter left out of the task identity (repeatable, or a&b)")
    get.add_argument("--identifier", metavar="TEXT",
                     help="extra task identity, for URLs that serve different content")
    get.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    get.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    get.add_argument("--config", metavar="FILE", help="settings file (JSON; TOML on Python 3.11+)")
    get.add_argument("--daemon", default="127.0.0.1:65001", metavar="HOST:PORT",
                     help="hand the download to the dfly daemon here when one runs (default: %(default)s)")
    get.add_argument("--daemon-token", metavar="FILE", help="the daemon's hand-off token file "
                     "(default: daemon/handoff.token in the data dir); a daemon whose token cannot be "
                     "read here is not used")
    get.add_argument("--no-daemon", action="store_true", help="download in this process even if a "
                     "daemon runs")
    get.add_argument("--trace", metavar="FILE", help="write a JSON record of the download to FILE "
                     "(registration, every schedule call and piece, the digest check); downloads "
                     "in this process, never through a daemon")
    options.add_arguments(get, PeerConfig)
    get.set_defaults(run=run_get)


def _demo_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--peers", type=_positive_int, default=5, metavar="N",
                      help="how many peers, 1 or more (default: 5)")
    demo.add_argument("--size", default="64M", metavar="SIZE", help="file size (default: 64M)")
    demo.add_argument("--data-dir", metavar="DIR",
                      help="where the demo's files go (default: a temporary folder)")
    demo.set_defaults(run=run_demo)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number, 1 or more: %r" % text)
    return value


def _daemon_options(daemon: argparse.ArgumentParser) -> None:
    from dfly.peer.daemon_config import DaemonConfig
    options.add_arguments(daemon, DaemonConfig)
    daemon.add_argument("--config", metavar="FILE", help="settings file (JSON; TOML on Python 3.11+)")
    daemon.set_defaults(run=run_daemon)


def _bench_options(bench: argparse.ArgumentParser) -> None:
    from dfly.bench.config import BenchConfig
    bench.add_argument("url", metavar="URL", help="source URL every simulated peer downloads "
                       "(any scheme the supernode reads)")
    bench.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    bench.add_argument("--config", metavar="FILE", help="settings file (JSON; TOML on Python 3.11+)")
    options.add_arguments(bench, BenchConfig)
    bench.set_defaults(run=run_bench)


def _scrub_options(scrub: argparse.ArgumentParser) -> None:
    from dfly.scrub import ScrubConfig
    scrub.epilog = ("exit codes: 0 no damage; 8 damage found (repaired what it could: each piece "
                    "is listed); 2 no cache in the data dir, or a supernode or daemon runs on it")
    options.add_arguments(scrub, ScrubConfig)
    scrub.set_defaults(run=run_scrub)


def _seeders_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--data-dir", metavar="DIR",
                     help="the data dir whose seeder to ask (default: per-user data dir)")
    cmd.add_argument("--stop", action="store_true",
                     help="stop it: it leaves its tasks and removes its copies")
    cmd.add_argument("--json", action="store_true", help="print what it serves as JSON on stdout")
    cmd.set_defaults(run=run_seeders)


def _setup_options(cmd: argparse.ArgumentParser) -> None:
    from dfly.setup.app import DEFAULT_DAEMON, RUNTIMES
    cmd.add_argument("runtime", choices=RUNTIMES, help="the container runtime to point at the daemon")
    cmd.add_argument("--registry", action="append", metavar="HOST",
                     help="the registry whose pulls go through the daemon: HOST[:PORT], or "
                          "http://HOST[:PORT] for a plain-HTTP one; repeat for several (the "
                          "daemon's --mirror-registry); containerd: _default for every registry "
                          "without a hosts.toml of its own (default: docker.io)")
    cmd.add_argument("--daemon", default=DEFAULT_DAEMON, metavar="HOST:PORT",
                     help="the daemon's --listen address (default: %(default)s)")
    cmd.add_argument("--root", default="/", metavar="DIR",
                     help="edit the files below DIR instead of / (default: %(default)s)")
    cmd.add_argument("--undo", action="store_true",
                     help="put back the files as they were before dfly setup changed them")
    cmd.add_argument("--hosts-only", action="store_true",
                     help="containerd: write only certs.d/HOST/hosts.toml, never config.toml "
                          "(for a pod that cannot restart containerd)")
    cmd.set_defaults(run=run_setup)


def _job_options(cmd: argparse.ArgumentParser, verb: str, where: str, header_help: str) -> None:
    """What `preheat` and `publish` share: a preheat job run on a supernode (a publish is
    one with scope all_peers)."""
    from dfly.tls import TLSOptions
    cmd.add_argument("target", metavar="IMAGE|URL", help="an image (REGISTRY/REPOSITORY[:TAG][@DIGEST]) "
                     "or its manifest URL; any other URL is %s as a file" % verb)
    cmd.add_argument("--supernode", required=True, metavar="HOST:PORT",
                     help="the supernode (any cluster member) %s" % where)
    cmd.add_argument("--token-file", metavar="FILE", required=True,
                     help="the supernode's preheat token (its --preheat-token-file)")
    cmd.add_argument("--header", action="append", default=[], metavar="'K: V'", help=header_help)
    cmd.add_argument("--platform", action="append", default=[], metavar="OS/ARCH",
                     help="only this platform of a multi-platform image (repeatable; default: all)")
    cmd.add_argument("--plain-http", action="store_true", help="the registry of IMAGE speaks http")
    cmd.add_argument("--timeout", default="30m", metavar="DURATION",
                     help="stop waiting after this long (default: %(default)s)")
    cmd.add_argument("--json", action="store_true", help="print the finished job as JSON on stdout")
    options.add_arguments(cmd, TLSOptions)   # a supernode speaking TLS is dialled with it


def _preheat_options(cmd: argparse.ArgumentParser) -> None:
    from dfly.preheat import EXIT_CODES as PREHEAT_EXIT_CODES
    _job_options(cmd, "preheated", "that runs the job",
                 "header sent to the registry or origin, e.g. its Authorization (repeatable)")
    cmd.add_argument("--scope", default="", choices=("", "single_seed_peer", "all_seed_peers", "all_peers"),
                     help="Dragonfly 2's scope: every scope fills the supernode cluster's cache; "
                          "all_peers also publishes to the subscribed daemons (as dfly publish)")
    cmd.epilog = _exit_codes(PREHEAT_EXIT_CODES)
    cmd.set_defaults(run=run_preheat)


def _publish_options(cmd: argparse.ArgumentParser) -> None:
    from dfly.publish import EXIT_CODES as PUBLISH_EXIT_CODES
    _job_options(cmd, "published", "to publish on",
                 "header sent to the registry or origin by the supernode (not logged, not "
                 "sent to the daemons; repeatable)")
    cmd.epilog = _exit_codes(PUBLISH_EXIT_CODES)
    cmd.set_defaults(run=run_publish)


def _validate_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("files", nargs="+", metavar="FILE", help="settings file (JSON; TOML on "
                     "Python 3.11+) as --config takes it")
    cmd.add_argument("--kind", choices=("supernode", "daemon", "get"),
                     help="the program the files are for (default: told by their keys or names)")
    cmd.add_argument("--live", action="store_true", help="also bind each listen address and ask "
                     "each supernode's /healthz and the upstream registry's /v2/")
    cmd.set_defaults(run=run_validate)


def _export_options(cmd: argparse.ArgumentParser) -> None:
    from dfly.export import EXIT_CODES as EXPORT_EXIT_CODES
    from dfly.peer.config import PeerConfig
    cmd.add_argument("targets", nargs="+", metavar="IMAGE|URL", help="an image (REGISTRY/REPOSITORY"
                     "[:TAG][@DIGEST]) or its manifest URL; any other URL is exported as a file")
    cmd.add_argument("-o", "--output", required=True, metavar="FILE",
                     help="the archive (with --part-size: FILE.000, FILE.001, ...)")
    cmd.add_argument("--part-size", default="0", metavar="SIZE",
                     help="cut the archive into parts of this many bytes (e.g. 4G; default: one file)")
    cmd.add_argument("--header", action="append", default=[], metavar="'K: V'",
                     help="header sent to the registry or origin, e.g. its Authorization (repeatable)")
    cmd.add_argument("--platform", action="append", default=[], metavar="OS/ARCH",
                     help="only this platform of a multi-platform image (repeatable; default: all)")
    cmd.add_argument("--plain-http", action="store_true", help="the registry of IMAGE speaks http")
    cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    options.add_arguments(cmd, PeerConfig)
    cmd.epilog = _exit_codes(EXPORT_EXIT_CODES)
    cmd.set_defaults(run=run_export)


def _import_options(cmd: argparse.ArgumentParser) -> None:
    from dfly.importer import EXIT_CODES as IMPORT_EXIT_CODES
    cmd.add_argument("archive", nargs="+", metavar="FILE", help="the archive `dfly export` wrote, "
                     "or its first part FILE.000 (the others are read after it), or every part "
                     "in order")
    cmd.add_argument("--data-dir", required=True, metavar="DIR",
                     help="the stopped daemon's or supernode's --data-dir")
    cmd.add_argument("--into", choices=("daemon", "supernode"), default="",
                     help="whose cache DIR is (default: told by what DIR holds)")
    cmd.add_argument("--manifests-only", action="store_true",
                     help="a daemon: keep only the images' manifests (their blobs were imported "
                          "into the supernode, and come through the cluster); files are skipped")
    cmd.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    cmd.epilog = _exit_codes(IMPORT_EXIT_CODES)
    cmd.set_defaults(run=run_import)


COMMANDS = {
    "supernode": ("run a supernode: tracker, scheduler and CDN", _supernode_options),
    "get": ("download a URL through the P2P network", _get_options),
    "demo": ("distribute a generated file among local peers and show where the bytes came from",
             _demo_options),
    "daemon": ("run this host's long-lived peer: registry mirror, HTTP proxy and shared cache",
               _daemon_options),
    "seeders": ("show what the detached seeder of `get` still serves to peers, or stop it",
                _seeders_options),
    "bench": ("measure a running supernode: many simulated peers download a URL at once or in "
              "waves", _bench_options),
    "scrub": ("check a stopped supernode's or daemon's cache against its digests once, repairing "
              "what it can", _scrub_options),
    "setup": ("point containerd, Docker or podman at this host's daemon (backups kept; --undo)",
              _setup_options),
    "preheat": ("fill the supernode cluster's cache with an image's blobs or a file before it is "
                "needed", _preheat_options),
    "validate": ("check settings files before a rollout: one line per problem, as a compiler "
                 "prints them", _validate_options),
    "export": ("write images and files to one archive (an OCI image layout in a tar) for an "
               "air-gapped site", _export_options),
    "import": ("seed a stopped daemon's or supernode's cache from an export archive, every digest "
               "checked", _import_options),
    "publish": ("deliver an image or a file to every daemon subscribed to it (--subscribe)",
                _publish_options),
}


_SERVER_EXIT_CODES = {0: "stopped by SIGINT or SIGTERM", 1: EXIT_CODES[1],
                      2: "usage error, a listen address this host cannot use, or a data dir "
                         "another live process holds",
                      6: "the data dir cannot be created or written"}
COMMAND_EXIT_CODES = {
    "supernode": _SERVER_EXIT_CODES,
    "get": EXIT_CODES,
    "demo": {0: "success", 1: EXIT_CODES[1], 2: EXIT_CODES[2], 6: _SERVER_EXIT_CODES[6]},
    "daemon": _SERVER_EXIT_CODES,
    "seeders": {0: "success (also when none runs)", 2: EXIT_CODES[2]},
    "bench": {0: "every simulated peer finished", 1: "some did not, or another error",
              2: EXIT_CODES[2], 6: "--data-dir cannot be created or written"},
    "setup": {0: "done, or nothing to change", 2: "usage error, or a file it cannot edit safely "
              "(named with its line; nothing changed)", 6: "a file cannot be written (nothing "
              "changed)"},
    "validate": {0: "no errors (warnings only)", 1: "an error in a file", 2: EXIT_CODES[2]},
}


def _file_values(args, kind: str = "") -> dict:
    """The --config file's settings; for `kind` checked first as `dfly validate` does."""
    if not getattr(args, "config", None):
        return {}
    if kind:
        from dfly import validate
        return validate.at_start(args.config, kind, args)
    return options.load_file(args.config)


def run_supernode(args) -> int:
    from dfly.supernode import app
    from dfly.supernode.config import SupernodeConfig

    config = options.build(SupernodeConfig, _file_values(args, "supernode"), args)
    check_sources(config)
    data_dir = config.data_dir or os.path.join(default_data_dir(os.environ), "supernode")
    return app.run(config, make_data_dir(data_dir), notifier=_notifier())


def check_sources(config) -> None:
    """Source settings that cannot work (a --source-cert without its key...): exit 2."""
    from dfly.sources.config import check
    check(config)


KUBERNETES_TIMEOUT_S = 10.0


def located(config, environ):
    """`config` with --location from the Kubernetes node's labels when
    --location-from-kubernetes asks (nodelocation.py); ValueError (exit 2) when the
    node cannot be read. The pod's environment and service account are read here."""
    if not config.location_from_kubernetes:
        return config
    if config.location:
        raise ValueError("--location and --location-from-kubernetes contradict each other")
    from dataclasses import replace

    from dfly import nodelocation
    api = nodelocation.in_cluster(environ, config.kubernetes_account_dir)
    return replace(config, location=nodelocation.node_location(api, config.kubernetes_rack_label,
                                                              KUBERNETES_TIMEOUT_S))


def check_supernodes(addresses) -> None:
    """Every --supernode is HOST:PORT (protocol/address.py), checked before any work: a
    typo must not quietly send every download to the source (ValueError: exit 2)."""
    from dfly.protocol.address import WILDCARDS_V4, parse_address
    for text in addresses:
        try:
            host, port = parse_address(text)   # no default port: it must be written
        except ValueError as e:
            raise ValueError("bad value for --supernode: %s" % e)
        if host in WILDCARDS_V4 or host == "::" or not port:
            raise ValueError("bad value for --supernode: %r is not HOST:PORT of a supernode "
                             "(as in 10.0.0.5:8002)" % text)


def parse_header(text: str):
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c in text for c in "\r\n"):
        raise ValueError("--header must look like 'Name: value', got %r" % text)
    return name.strip(), value.strip()


def run_get(args) -> int:
    try:
        return _get(args)
    except errors.DownloadTimeout as e:   # one wording on every path, naming the limit
        raise errors.DownloadTimeout(_naming_the_limit(str(e), getattr(args, "limit_s", 0.0)))


def _naming_the_limit(text: str, limit_s: float) -> str:
    """"download timed out after X" -> "download timed out (--timeout 2s) after X"."""
    from dfly.peer.progress import human_duration
    if not limit_s or "(--timeout " in text:
        return text
    return text.replace("download timed out", "download timed out (--timeout %s)"
                        % human_duration(limit_s), 1)


def _get(args) -> int:
    from dfly.client import Client
    from dfly.lifecycle import RedactUrls
    from dfly.peer import output, seeders
    from dfly.peer.config import PeerConfig
    from dfly.peer.progress import ProgressBar
    from dfly.peer.seeder import Spare, detach, hand_to_running
    from dfly.protocol.urls import normalize_url
    from dfly.sources.config import SourceOptions, source_options_of

    args.url = normalize_url(args.url)   # a URL that cannot be made valid: exit 2, nothing started
    if not args.output:
        raise ValueError("-o needs a file name, or - for stdout")
    if output.descriptor_of(args.output) == 1:   # -o /dev/stdout is -o -: the pipe, not a file
        args.output = "-"
    if args.output != "-":
        output.resolve(args.output)   # a directory: one line, nothing started
    config = options.build(PeerConfig, _file_values(args, "get"), args)
    data_dir = config.data_dir or default_data_dir(os.environ)
    config = options.build(PeerConfig, None, None, **dict(vars(config), data_dir=data_dir))
    args.limit_s = config.timeout_s
    check_sources(config)
    config = located(config, os.environ)
    _check_daemon_address(args)
    check_supernodes(config.supernode)
    headers = dict(parse_header(h) for h in args.header)
    logging.basicConfig(level=logging.WARNING, format="dfly: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactUrls())
    to_stdout = args.output == "-"
    if config.supernode or to_stdout:   # where pieces are kept to seed, or streamed through
        make_data_dir(data_dir)
    bar = None
    if not args.quiet and not args.json and sys.stderr.isatty():
        bar = ProgressBar(sys.stderr)
    if not to_stdout:
        _check_output(os.path.abspath(args.output))
    trace = _trace_for(args, config)
    deadline = _Deadline(config.timeout_s, bar, args.started) if config.timeout_s > 0 else None
    # Source settings on this command line are this process's: a daemon reads sources its own way.
    own_sources = source_options_of(config) != SourceOptions()
    # (a descriptor named by its path, /dev/fd/63, is ours: the daemon has its own)
    in_process = (to_stdout or args.no_daemon or own_sources or trace is not None
                  or output.descriptor_of(args.output) is not None)
    handed = None if in_process else _hand_off(args, config, headers, deadline)
    if handed is not None:
        if deadline:
            deadline.met()
        if bar:   # the daemon did the work: its outcome, where the bytes came from
            bar.update(handed.length, handed.length, _split_of(handed), cache=handed.bytes_from_cache)
            bar.finish()
        return _summary(args, handed, to_stdout)
    # No spare when a seeder runs for this data dir already: it takes our files over.
    seeding = config.seed_for_s > 0 and bool(config.supernode)
    spare = None
    if seeding and not seeders.call(data_dir, {"op": "ping"}, _within(deadline, 2.0)):
        spare = Spare.fork(data_dir)
    if deadline:
        deadline.arm()
    seeder_pid = 0
    client = Client(config=config)
    try:
        kwargs = dict(digest=args.digest, headers=headers, filters=args.filter,
                      identifier=args.identifier, progress=_progress(bar, deadline, client))
        if trace is not None:
            kwargs["trace"] = trace
            trace.described(url=args.url, output=args.output, peer_id=client.peer_id,
                            supernodes=list(config.supernode))
        with _traced(trace, args.trace):
            if to_stdout:
                result = _stream_to_stdout(client, args.url, kwargs)
                result.path = "-"
            else:
                result = client.download(args.url, args.output, **kwargs)
            if trace is not None:
                trace.event("finished", via=result.via, task_id=result.task_id, length=result.length,
                            bytes_from_source=result.bytes_from_source,
                            bytes_from_supernode=result.bytes_from_supernode,
                            bytes_from_peers=result.bytes_from_peers)
        if deadline:
            deadline.met()
        if bar:
            bar.finish()
        handoff = client.detach_listener() if config.seed_for_s > 0 else None
        if handoff:
            listener, uploader, tasks = handoff
            more = dict(supernodes=config.supernode,
                        registrations={t: client.registration(t) for t in tasks}, tls=client.tls,
                        secrets=client.secrets)
            seeder_pid = hand_to_running(listener, uploader, tasks, client.peer_id, config.seed_for_s,
                                         client.data_dir, **more)
            if not seeder_pid:
                seeder_pid = detach(listener, uploader, tasks, client.peer_id, config.seed_for_s,
                                    client.data_dir, spare=spare, log_format=config.log_format,
                                    **more)
                spare = None
    finally:
        client.close()
        if spare is not None:
            spare.close()
    _summary(args, result, to_stdout)
    if seeder_pid and not args.quiet and not args.json and sys.stderr.isatty():
        from dfly.peer.progress import human_duration
        sys.stderr.write("dfly: still serving to peers for %s; --seed-for 0 to stop (`dfly seeders` "
                         "lists what is served, `dfly seeders --stop` ends it)\n"
                         % human_duration(config.seed_for_s))
    return 0


def _trace_for(args, config):
    """--trace FILE: its Trace, after checking FILE can be written (LocalIOError, exit 6,
    before anything is downloaded); None without --trace."""
    if not args.trace:
        return None
    from dfly.peer.trace import Trace, check_trace_path
    args.trace = check_trace_path(args.trace)
    return Trace(started=PROCESS_START)


@contextmanager
def _traced(trace, path: Optional[str]):
    """Write the trace once the download ended, whether it succeeded or not."""
    if trace is None:
        yield
        return
    from dfly.peer.trace import write_trace
    try:
        yield
    except BaseException as e:
        trace.event("failed", error=type(e).__name__, message=redact_urls_in(str(e))[:300])
        try:
            write_trace(trace, path)
        except errors.DflyError as unwritten:   # the download's own error is the one to report
            sys.stderr.write("dfly: %s\n" % unwritten)
        raise
    write_trace(trace, path)


def _check_daemon_address(args) -> None:
    """--daemon, checked before anything is started (ValueError: exit 2)."""
    from dfly.protocol.address import parse_address
    try:
        parse_address(args.daemon, 65001)
    except ValueError as e:
        raise ValueError("bad value for --daemon: %s" % e)


def _check_output(output: str) -> None:
    """Before any download: a missing output folder is the user's to create (and a
    clear error now, not after the whole file came)."""
    folder = os.path.dirname(output)
    if not os.path.isdir(folder):
        raise errors.LocalIOError("output directory %s does not exist" % folder)
    if os.path.isdir(output):
        raise errors.LocalIOError("output %s is a directory" % output)


class _Deadline:
    """--timeout bounds the whole command: past the limit, and a moment's grace for the
    download's own timeout to end it cleanly, the process exits 5 whatever it still waits
    on (a slow piece in flight, a supernode, the daemon), its partial files removed first."""
    GRACE_S = 0.3

    def __init__(self, limit_s: float, bar, started: float) -> None:
        self.limit_s, self.bar = limit_s, bar
        self.started = started   # the user counts from the command, not from here
        self.client = None
        self.done, self.total = 0, None
        self._lock = threading.Lock()
        self._met = False
        self._timer: Optional[threading.Timer] = None

    def arm(self) -> None:
        """Start watching (counted from the start all the same). Not at once: a thread
        running would keep the seeder spare from being forked."""
        if self._timer is None:
            left = self.started + self.limit_s + self.GRACE_S - time.monotonic()
            self._timer = threading.Timer(max(0.0, left), self._expired)
            self._timer.name, self._timer.daemon = "get-deadline", True
            self._timer.start()

    def left_s(self) -> float:
        return self.started + self.limit_s - time.monotonic()

    def progress(self, done: int, total: Optional[int]) -> None:
        self.done, self.total = done, total

    def met(self) -> None:
        """The download ended in time: nothing to cut short."""
        with self._lock:
            self._met = True
        if self._timer is not None:
            self._timer.cancel()

    def _expired(self) -> None:
        from dfly.peer.progress import human_duration, received
        with self._lock:
            if self._met:
                return
            if self.client is not None:
                self.client.abandon()
            sys.stderr.write("%sdfly: error: download timed out (--timeout %s) after %s\n" % (
                "\n" if self.bar else "", human_duration(self.limit_s), received(self.done, self.total)))
            sys.stderr.flush()
            os._exit(errors.DownloadTimeout.exit_code)


def _within(deadline: Optional[_Deadline], wait_s: float) -> float:
    """`wait_s`, or less when --timeout ends sooner: a wait before the deadline is armed
    (a daemon or seeder that accepts and never answers) must not outlast it."""
    if deadline is None:
        return wait_s
    return min(wait_s, max(0.01, deadline.left_s()))


def _progress(bar, deadline: Optional[_Deadline], client):
    """The one progress callback: the bar draws it, the deadline remembers it."""
    if deadline is not None:
        deadline.client = client
    if bar is None and deadline is None:
        return None

    def report(done: int, total: Optional[int], split) -> None:
        if deadline is not None:
            deadline.progress(done, total)
        if bar is not None:
            bar.update(done, total, split)
    return report


def _split_of(result):
    from dfly.peer.downloader import ByteSplit
    return ByteSplit(source=result.bytes_from_source, supernode=result.bytes_from_supernode,
                     peers=result.bytes_from_peers)


def _hand_off(args, config, headers, deadline: Optional[_Deadline]):
    """The result of the running daemon's download, or None when no daemon answers
    (or one answers that cannot prove it knows the token we read)."""
    from dfly.peer import daemon_client
    from dfly.protocol.handoff import TOKEN_FILE, HandoffRequest
    from dfly.tls import TLS

    token_file = args.daemon_token or os.path.join(config.data_dir, TOKEN_FILE)
    daemon = daemon_client.DaemonClient(args.daemon, TLS.from_config(config),
                                        daemon_client.read_token(token_file))
    found = daemon.probe(_within(deadline, daemon_client.PROBE_TIMEOUT_S))
    if found == daemon_client.ABSENT:
        return None
    if found == daemon_client.UNPROVEN:
        if not args.quiet:
            sys.stderr.write("dfly: a daemon answers at %s but %s: downloading in this process\n" % (
                args.daemon, "it does not know the token in %s" % token_file if daemon.token
                else "its token file %s cannot be read here" % token_file))
        return None
    # What is left of --timeout: the daemon answers (saying how far it got) before our
    # own deadline ends the process.
    request = HandoffRequest(args.url, os.path.abspath(args.output), args.digest, headers,
                             args.filter, args.identifier, _within(deadline, config.timeout_s) or None)
    wait_s = config.timeout_s + 30 if config.timeout_s > 0 else 24 * 3600.0
    if deadline:
        deadline.arm()
    return daemon.download(request, wait_s)


def _summary(args, result, to_stdout: bool) -> int:
    from dfly.peer.progress import human_bytes

    if args.json:   # with -o - the data owns stdout, so the summary goes to stderr
        (sys.stderr if to_stdout else sys.stdout).write(json.dumps(result.to_json()) + "\n")
    elif not args.quiet:
        discarded = result.bytes_discarded
        sys.stderr.write("dfly: %s in %.2fs (%s/s): %s from source, %s from supernode, %s from peers, "
                         "%s from local cache%s\n" % (
                             human_bytes(result.length), result.elapsed_s,
                             human_bytes(result.length / max(result.elapsed_s, 1e-6)),
                             human_bytes(result.bytes_from_source),
                             human_bytes(result.bytes_from_supernode),
                             human_bytes(result.bytes_from_peers), human_bytes(result.bytes_from_cache),
                             "; %s discarded (failed checks, replaced copies)" % human_bytes(discarded)
                             if discarded else ""))
    return 0


def _stream_to_stdout(client, url: str, kwargs: dict):
    out = sys.stdout.buffer
    stream = client.stream(url, **kwargs)
    try:
        for chunk in stream:
            out.write(chunk)
        out.flush()
    except BrokenPipeError:
        _drop_stdout()
        raise errors.LocalIOError("stdout closed before the download finished")
    except OSError as e:   # a full disk under a redirect
        _drop_stdout()
        raise errors.LocalIOError("cannot write to stdout: %s" % (e.strerror or e))
    return client.last_result


def _drop_stdout() -> None:
    """After stdout failed, point it at /dev/null so the interpreter's own flush at exit
    does not print a second error about the bytes still buffered."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def run_daemon(args) -> int:
    from dfly.peer import daemon
    from dfly.peer.daemon_config import DaemonConfig

    config = options.build(DaemonConfig, _file_values(args, "daemon"), args)
    check_supernodes(config.supernode)
    config = located(config, os.environ)
    data_dir = config.data_dir or default_data_dir(os.environ)
    return daemon.run(config, make_data_dir(data_dir), notifier=_notifier())


def _notifier():
    """systemd's $NOTIFY_SOCKET (and $WATCHDOG_USEC), read here: the one reader of the
    environment. Taken out of it so no process this one starts reports as this one."""
    from dfly.notify import Notifier
    notifier = Notifier.from_environ(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)
    return notifier


def run_demo(args) -> int:
    from dfly.demo import run

    data_dir = make_data_dir(args.data_dir) if args.data_dir else None
    return run(peers=args.peers, size=options.parse_size(args.size), data_dir=data_dir,
               out=sys.stdout)


def run_bench(args) -> int:
    from dfly.bench import app
    from dfly.bench.config import BenchConfig
    from dfly.bench.report import render

    config = options.build(BenchConfig, _file_values(args), args)
    check_supernodes([config.supernode] if config.supernode else [])
    _check_bench_start(config)
    logging.basicConfig(level=logging.ERROR, format="dfly: %(message)s")
    summary = app.run(config, args.url)
    if args.json:
        sys.stdout.write(json.dumps(dict(summary, url=args.url)) + "\n")
    else:
        sys.stdout.write(render(summary, args.url))
    return 0 if summary["failed"] == 0 else 1


def _check_bench_start(config) -> None:
    """A data dir that cannot be made (exit 6) or an upload address this host cannot
    listen on (exit 2) is one line before any simulated peer starts, not a failure
    counted against the supernode for each of them."""
    from dfly.httpd import check_can_listen
    from dfly.protocol.address import upload_address

    if config.data_dir:
        make_data_dir(config.data_dir)
    check_can_listen(upload_address(config.upload_listen, ""))


def run_scrub(args) -> int:
    from dfly import scrub

    config = options.build(scrub.ScrubConfig, None, args)
    data_dir = config.data_dir or default_data_dir(os.environ)
    logging.basicConfig(level=logging.WARNING, format="dfly: %(message)s")
    return scrub.run(os.path.abspath(data_dir), config.scrub_rate, config.source_timeout_s,
                     sys.stdout)


def run_setup(args) -> int:
    from dfly.setup import app, runtimes

    registry = [runtimes.parse_registry(r) for r in args.registry or ["docker.io"]]
    daemon = runtimes.check_daemon_address(args.daemon)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise ValueError("--root %s is not a folder" % args.root)
    if args.hosts_only and args.runtime != "containerd":
        raise ValueError("--hosts-only is for containerd only")
    act = app.undo if args.undo else app.setup
    return act(args.runtime, root, registry, daemon, sys.stdout, hosts_only=args.hosts_only)


def run_validate(args) -> int:
    from dfly import validate
    return validate.run(args.files, args.kind, args.live, sys.stdout)


def run_seeders(args) -> int:
    from dfly.peer import seeders
    from dfly.peer.progress import human_bytes, human_duration

    data_dir = os.path.abspath(args.data_dir or default_data_dir(os.environ))
    listing = seeders.call(data_dir, {"op": "stop" if args.stop else "list"})
    if args.json:
        sys.stdout.write(json.dumps(listing) + "\n")
    elif listing is None:
        sys.stdout.write("no seeder runs for %s\n" % data_dir)
    elif args.stop:
        sys.stdout.write("stopped the seeder (pid %s) of %s\n" % (listing.get("pid"), data_dir))
    else:
        tasks = listing.get("tasks") or []
        sys.stdout.write("seeder pid %s on port %s serves %d file%s until idle for %s (idle %ss):\n"
                         % (listing.get("pid"), listing.get("port"), len(tasks),
                            "" if len(tasks) == 1 else "s",
                            human_duration(listing.get("seed_for_s") or 0), listing.get("idle_s")))
        for task in tasks:
            sys.stdout.write("  %s  %10s  %s\n" % (task.get("task_id", "")[:12],
                                                    human_bytes(task.get("length") or 0),
                                                    task.get("file", "")))
    return 0


def run_preheat(args) -> int:
    from dfly import preheat
    from dfly.options import parse_duration
    from dfly.supernode.client import SupernodeClient
    from dfly.tls import TLS, TLSOptions

    check_supernodes([args.supernode])
    token = preheat.read_token(args.token_file)
    body = preheat.job_body(args.target, dict(parse_header(h) for h in args.header),
                            args.platform, args.scope, args.plain_http)
    timeout_s = parse_duration(args.timeout)
    client = SupernodeClient(args.supernode, timeout_s=30,
                             tls=TLS.from_config(options.build(TLSOptions, None, args)))
    try:
        job = preheat.run(client, body, token, timeout_s, sys.stderr, tty=sys.stderr.isatty())
    finally:
        client.close()
    if args.json:
        sys.stdout.write(json.dumps(job) + "\n")
    return 0


def run_export(args) -> int:
    from dfly import export
    from dfly.client import Client
    from dfly.options import parse_size
    from dfly.peer.config import PeerConfig

    try:
        part_size = parse_size(args.part_size)
    except ValueError as e:   # named as every other flag's bad value is
        raise ValueError("bad value for --part-size: %s" % e)
    config = options.build(PeerConfig, None, args)
    data_dir = config.data_dir or default_data_dir(os.environ)
    config = options.build(PeerConfig, None, None, **dict(vars(config), data_dir=data_dir,
                                                           seed_for_s=0))
    check_sources(config)
    check_supernodes(config.supernode)
    headers = dict(parse_header(h) for h in args.header)
    logging.basicConfig(level=logging.WARNING, format="dfly: %(message)s")
    make_data_dir(data_dir)
    log = None if args.quiet else sys.stderr
    with Client(config=config) as client:
        summary = export.export(args.targets, args.output, client, part_size, headers,
                                args.platform, args.plain_http, log)
    if log is not None:
        log.write(export.describe(summary) + "\n")
    return 0


def run_import(args) -> int:
    from dfly import importer
    importer.import_archive(args.archive[0], args.data_dir, args.into,
                            None if args.quiet else sys.stderr, args.manifests_only,
                            args.archive[1:])
    return 0


def run_publish(args) -> int:
    from dfly import preheat, publish
    from dfly.options import parse_duration
    from dfly.supernode.client import SupernodeClient
    from dfly.tls import TLS, TLSOptions

    check_supernodes([args.supernode])
    token = preheat.read_token(args.token_file)
    body = publish.publish_body(args.target, dict(parse_header(h) for h in args.header),
                                args.platform, args.plain_http)
    timeout_s = parse_duration(args.timeout)
    client = SupernodeClient(args.supernode, timeout_s=30,
                             tls=TLS.from_config(options.build(TLSOptions, None, args)))
    try:
        job = publish.run(client, body, token, timeout_s, sys.stderr, tty=sys.stderr.isatty())
    finally:
        client.close()
    if args.json:
        sys.stdout.write(json.dumps(job) + "\n")
    return 0
