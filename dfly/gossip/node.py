"""The gossip member on real sockets: a thin adapter around the pure core.

One UDP socket and one TCP listener on the same address and port. One thread
(selectors) reads UDP packets and runs the core's timers; each TCP exchange
(a full-state push-pull: one framed packet each way) runs in a short thread of
its own, at most MAX_TCP at once and MAX_TCP_PER_HOST from one client host
(protocol/address.client_key: IPv6 hosts by the --client-ipv6-prefix the
other per-client limits of the program use),
each frame read within TCP_DEADLINE_S of its start (a peer trickling bytes
cannot hold a slot for good), so a slow or silent peer never stalls the
probes, nor one host every push-pull. Every core call happens under one lock; packets are sealed and opened
by dfly/gossip/wire.py (dropped packets are only counted: a forger learns
nothing). TCP frames: 4-byte big-endian length, then the sealed packet.
"""
import errno
import logging
import random
import selectors
import socket
import struct
import threading
import time
from typing import Callable, Dict, List, Tuple

from dfly.errors import CannotListen
from dfly.gossip.swim import Send, Swim, SwimConfig
from dfly.gossip.wire import MAX_PACKET_BYTES, Dropped, Keyring, Opener, Sealer
from dfly.protocol.address import CLIENT_IPV6_PREFIX, address_family, client_key, format_address, plain_ip

log = logging.getLogger("dfly.gossip")

MAX_TCP = 8
MAX_TCP_PER_HOST = 2
TCP_TIMEOUT_S = 5.0      # each read
TCP_DEADLINE_S = 30.0    # a whole frame (1 MiB at most: ~35 KB/s at the least)
UDP_MAX_BYTES = 65507
FRAME = struct.Struct(">I")


class GossipNode:
    tcp_deadline_s = TCP_DEADLINE_S

    def __init__(self, name: str, bind: Tuple[str, int], advertise_host: str, meta: Dict,
                 config: SwimConfig, keyring: Keyring, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, tls_client=None, tls_server=None,
                 client_ipv6_prefix: int = CLIENT_IPV6_PREFIX):
        self.clock, self.wall = clock, wall
        self._udp, self._tcp = _bind_pair(bind)
        port = self._udp.getsockname()[1]
        self.address = (advertise_host or self._udp.getsockname()[0], port)
        self.bind_host = self._udp.getsockname()[0]
        self._lock = threading.Lock()
        self.swim = Swim(name, self.address, meta, config, random.Random(), clock())
        self.keyring = keyring
        self._sealer = Sealer(keyring, wall())
        self.opener = Opener(keyring)
        self._tls_client, self._tls_server = tls_client, tls_server
        self._tcp_slots = threading.BoundedSemaphore(MAX_TCP)
        self._tcp_hosts: Dict[str, int] = {}   # client (address.client_key) -> push-pulls it has open here
        self.client_ipv6_prefix = client_ipv6_prefix
        self._hosts_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gossip", daemon=True)
        self.counters: Dict[str, int] = {}

    # lifecycle ----------------------------------------------------------------------
    def start(self, join: List[Tuple[str, int]]) -> "GossipNode":
        self._thread.start()
        with self._lock:
            sends = self.swim.join(join, self.clock())
        self._dispatch(sends)
        return self

    def stop(self, leave: bool = True) -> None:
        if leave and self._thread.is_alive():
            with self._lock:
                sends = self.swim.leave(self.clock())
            self._dispatch([s for s in sends if not s.reliable])
        self._stop.set()
        self._poke()
        if self._thread.ident is not None:   # stopped before it started: a failed start-up
            self._thread.join(5)
        for s in (self._udp, self._tcp, self._wake_r, self._wake_w):
            s.close()

    def rename(self, name: str) -> None:
        """Before start: the name others know this member by (its address by default)."""
        self.swim.name = self.swim.me.name = name
        self.swim.members = {name: self.swim.me}
        self.swim._by_addr = {self.swim.me.addr: name}

    def members(self) -> List[Dict]:
        with self._lock:
            view = self.swim.view()
        for m in view:
            m["addr"] = format_address(*m["addr"])
        return view

    def metas(self) -> List[Tuple[str, Dict]]:
        """(state, metadata) of every member: what the scheduler cluster asks on each
        registration, without building the formatted view."""
        with self._lock:
            return [(m.state, m.meta) for m in self.swim.members.values()]

    def stats(self) -> Dict[str, int]:
        with self._lock:
            counters = dict(self.swim.counters)
        counters.update({"dropped_" + k: v for k, v in self.opener.dropped.items()})
        counters.update(self.counters)
        return counters

    # the loop -----------------------------------------------------------------------
    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        sel.register(self._tcp, selectors.EVENT_READ, "tcp")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stop.is_set():
                with self._lock:   # a floor: a wakeup stuck in the past must not spin a core
                    wait = max(0.002, min(self.swim.next_wakeup() - self.clock(), 1.0))
                for key, _ in sel.select(wait):
                    if key.data == "udp":
                        self._read_udp()
                    elif key.data == "tcp":
                        self._accept()
                    else:
                        self._wake_r.recv(512)
                with self._lock:
                    sends = self.swim.tick(self.clock())
                self._dispatch(sends)
        except Exception:   # never silently: a dead gossip thread means a member others will call dead
            log.exception("gossip loop failed")
            raise
        finally:
            sel.close()

    def _read_udp(self) -> None:
        try:
            data, src = self._udp.recvfrom(UDP_MAX_BYTES)
        except OSError:
            return
        self._take(data, (plain_ip(src[0]), src[1]))

    def _take(self, data: bytes, src: Tuple[str, int]) -> List[Send]:
        try:
            msg = self.opener.open(data, self.wall())
        except Dropped as e:
            log.debug("gossip packet from %s dropped: %s", format_address(*src), e.reason)
            return []
        with self._lock:
            sends = self.swim.receive(msg, src, self.clock())
        back = [s for s in sends if s.reliable and tuple(s.addr) == src]
        self._dispatch([s for s in sends if s not in back])
        return back

    def _poke(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # sending --------------------------------------------------------------------------
    def _dispatch(self, sends: List[Send]) -> None:
        for send in sends:
            if send.reliable:
                self._tcp_exchange(send)
                continue
            try:
                self._udp.sendto(self._sealer.seal(send.msg, self.wall()), self._udp_target(send.addr))
            except OSError as e:   # unreachable, too big: the protocol copes with loss
                self._count("udp_send_failed")
                log.debug("gossip send to %s failed: %s", format_address(*send.addr), e)
        if sends:
            self._poke()   # the core's next wakeup may be sooner now

    def _udp_target(self, addr):
        """A dual-stack member (bound to `::`) reaches IPv4 members at their IPv4-mapped
        address: an AF_INET6 socket takes no IPv4 address as it is."""
        if self._udp.family == socket.AF_INET6 and address_family(addr[0]) == 4:
            return ("::ffff:" + addr[0], addr[1])
        return addr

    def _tcp_exchange(self, send: Send) -> None:
        if not self._tcp_slots.acquire(blocking=False):
            self._count("tcp_busy")
            return
        packet = self._sealer.seal(send.msg, self.wall())

        def run():
            try:
                with socket.create_connection(send.addr, timeout=TCP_TIMEOUT_S) as raw:
                    conn = self._wrap_client(raw, send.addr[0])
                    conn.sendall(FRAME.pack(len(packet)) + packet)
                    reply = _read_frame(conn, time.monotonic() + self.tcp_deadline_s)
                if reply:
                    self._dispatch(self._take(reply, tuple(send.addr)))
            except (OSError, ValueError) as e:
                self._count("tcp_failed")
                log.debug("gossip push-pull with %s failed: %s", format_address(*send.addr), e)
            finally:
                self._tcp_slots.release()
        threading.Thread(target=run, name="gossip-sync", daemon=True).start()

    def _accept(self) -> None:
        try:
            conn, src = self._tcp.accept()
        except OSError:
            return
        if not self._take_slot(src[0]):
            self._count("tcp_busy")
            conn.close()
            return

        def run():
            try:
                deadline = time.monotonic() + self.tcp_deadline_s
                conn.settimeout(TCP_TIMEOUT_S)
                wrapped = self._wrap_server(conn)
                data = _read_frame(wrapped, deadline)
                for send in self._take(data, (plain_ip(src[0]), src[1])) if data else []:
                    reply = self._sealer.seal(send.msg, self.wall())
                    wrapped.sendall(FRAME.pack(len(reply)) + reply)
            except (OSError, ValueError) as e:
                self._count("tcp_failed")
                log.debug("gossip push-pull from %s failed: %s", format_address(*src[:2]), e)
            finally:
                conn.close()
                self._give_slot(src[0])
        threading.Thread(target=run, name="gossip-sync-in", daemon=True).start()

    def _take_slot(self, host: str) -> bool:
        host = client_key(host, self.client_ipv6_prefix)
        with self._hosts_lock:
            if self._tcp_hosts.get(host, 0) >= MAX_TCP_PER_HOST:
                return False
            if not self._tcp_slots.acquire(blocking=False):
                return False
            self._tcp_hosts[host] = self._tcp_hosts.get(host, 0) + 1
            return True

    def _give_slot(self, host: str) -> None:
        host = client_key(host, self.client_ipv6_prefix)
        with self._hosts_lock:
            left = self._tcp_hosts.pop(host) - 1
            if left:
                self._tcp_hosts[host] = left
            self._tcp_slots.release()

    def _wrap_client(self, raw, host):
        return self._tls_client.wrap_socket(raw, server_hostname=host) if self._tls_client else raw

    def _wrap_server(self, conn):
        return self._tls_server.wrap_socket(conn, server_side=True) if self._tls_server else conn

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def _read_frame(conn, deadline: float) -> bytes:
    head = _read_exactly(conn, FRAME.size, deadline)
    (size,) = FRAME.unpack(head)
    if size > MAX_PACKET_BYTES:
        raise ValueError("frame of %d bytes" % size)
    return _read_exactly(conn, size, deadline)


def _read_exactly(conn, size: int, deadline: float) -> bytes:
    chunks, left = [], size
    while left:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ValueError("frame not read within its deadline")
        conn.settimeout(min(TCP_TIMEOUT_S, remaining))
        chunk = conn.recv(min(left, 65536))
        if not chunk:
            raise ValueError("connection closed mid-frame")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _bind_pair(bind: Tuple[str, int]):
    """A UDP socket and a TCP listener on one address and port (port 0: a free one).
    CannotListen (exit 2, as every listener says it) when the host cannot use it."""
    host, port = bind
    try:
        family, _, _, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM,
                                                   flags=socket.AI_PASSIVE)[0]
    except (OSError, IndexError) as e:
        raise CannotListen("cannot listen on %s: the name does not resolve (%s)"
                           % (format_address(host, port), e))
    for _ in range(20 if port == 0 else 1):
        try:
            return _bind_once(family, addr)
        except OSError as e:   # port 0: the UDP port's TCP twin may be taken; try another
            if port != 0 or e.errno != errno.EADDRINUSE:
                from dfly.httpd import cannot_listen
                raise CannotListen(cannot_listen((host, port), family, e))
    raise CannotListen("cannot listen on %s: no port free for both UDP and TCP"
                       % format_address(host or "0.0.0.0", port))


def _bind_once(family: int, addr):
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        tcp = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        udp.close()
        raise
    try:
        if family == socket.AF_INET6 and addr[0] == "::":   # dual stack, as httpd's listeners
            for sock in (udp, tcp):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        udp.bind(addr)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((addr[0], udp.getsockname()[1]) + tuple(addr[2:]))
        tcp.listen(64)
        return udp, tcp
    except OSError:
        udp.close()
        tcp.close()
        raise


DEFAULT_PORT = 7946


def read_keyring(path: str) -> Keyring:
    """The key file: one key a line (blank lines and #-comments skipped). ValueError
    naming the file when it is missing, empty or holds a short key."""
    if not path:
        raise ValueError("--gossip needs --gossip-key-file (the cluster's shared key)")
    try:
        with open(path, "rb") as f:
            lines = f.read(1 << 16).splitlines()
    except OSError as e:
        raise ValueError("--gossip-key-file %s: %s" % (path, e.strerror or e))
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith(b"#")]
    if not keys or any(len(k) < 16 for k in keys):
        raise ValueError("--gossip-key-file %s: each key must be at least 16 characters" % path)
    return Keyring(keys)


def resolve_joins(joins: List[str]) -> List[Tuple[str, int]]:
    """Every address each `--join` name resolves to (a DNS name of several members
    joins them all); one that does not resolve is skipped with a warning."""
    from dfly.protocol.address import parse_address
    out = []
    for text in joins:
        host, port = parse_address(text, DEFAULT_PORT)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as e:
            log.warning("gossip: --join %s does not resolve: %s", text, e)
            continue
        for info in infos:
            if (info[4][0], info[4][1]) not in out:
                out.append((info[4][0], info[4][1]))
    return out


def _advertised_host(text: str) -> str:
    """--advertise is a host for the daemon and HOST:PORT for the supernode."""
    from dfly.protocol.address import parse_address, parse_host
    try:
        return parse_host(text)
    except ValueError:
        return parse_address(text)[0]


def member_from_config(config, listen: Tuple[str, int], meta: Dict, tls=None) -> "GossipNode":
    """The daemon's (or supernode's) gossip member, bound but not started. ValueError
    (exit 2) for settings that cannot work."""
    from dfly.gossip.swim import PROFILES
    from dfly.protocol.address import WILDCARDS_V4, parse_address
    keyring = read_keyring(config.gossip_key_file)
    bind = (parse_address(config.gossip_listen, DEFAULT_PORT) if config.gossip_listen
            else (listen[0], DEFAULT_PORT))
    host = _advertised_host(config.advertise) if config.advertise else bind[0]
    if host in WILDCARDS_V4 or host == "::":
        raise ValueError("--gossip on every address needs --advertise: the address other members reach")
    node = GossipNode("", bind, host, meta, PROFILES[config.gossip_profile], keyring,
                      tls_client=tls.client_context() if tls is not None else None,
                      tls_server=tls.server_context() if tls is not None and tls.serves else None,
                      client_ipv6_prefix=config.client_ipv6_prefix)
    node.rename(format_address(*node.address))
    return node
