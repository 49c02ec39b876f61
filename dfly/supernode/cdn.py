"""The supernode's CDN: fetch a task's source once into its cache folder.

Bytes are written in order while a sha256 runs per piece, read at each of its
blocks' ends (the block digests peers check a piece by as it arrives: each
byte is hashed once, docs/PROTOCOL.md "Pieces"); each piece is
announced to the task (and so to waiting peers) the moment its last byte is on
disk (every write checked: a short write is retried, never counted as done). A
complete cache is revalidated with If-None-Match / If-Modified-Since (also when
a finished task went stale while running), and served as it is while its
origin cannot be reached at all (outage mode; an origin that answers is
believed: 404 fails the task, a new version is fetched); a partial one is resumed with
Range + If-Range, from the last whole piece. Both keep the task's content
version; a full answer (200) starts a new one, so that no peer ever mixes the
pieces it holds with pieces of the new content (task.py). Any failure
(unreachable, HTTP error, an origin breaking the protocol, cut short, wrong
length or digest) fails the task with a message that reaches every waiting
peer at once; so does anything else the fetch raises, and so does the
supernode's watchdog when the fetch makes no progress (`task.progress_at`) for
the source timeout. A fetch the watchdog gave up on is abandoned: its task's
`fetch_gen` moved on, so it changes nothing any more, and its data file was
unlinked, so what it still writes lands in no later fetch's file.
"""
import errno
import hashlib
import http.client
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

from dfly import __version__
from dfly.errors import DigestMismatch, SourceDenied, SourceError, unreachable
from dfly.protocol.digest import mismatch, new_hasher, parse_digest
from dfly.protocol.pieces import PrefixHasher, block_digests, block_size_for, piece_range, piece_size_for
from dfly.protocol.ratelimit import TokenBucket
from dfly.protocol.redact import redact_url
from dfly.protocol.sourcepolicy import SourcePolicy
from dfly.protocol.units import received
from dfly.sources import open_source
from dfly.sources.config import SourceOptions
from dfly.supernode.task import DONE, FAILED, RUNNING, Task

log = logging.getLogger("dfly.supernode")

CHUNK = 1 << 20


class _Abandoned(Exception):
    """The watchdog gave up on this fetch: it must leave the task alone."""


class Fetch:
    """One run of the source into one task's cache."""

    def __init__(self, task: Task, timeout_s: float, bucket: Optional[TokenBucket],
                 clock: Callable[[], float] = time.monotonic, orphan_grace_s: float = 2.0,
                 stop: Optional[threading.Event] = None,
                 before_offer: Callable[[Task, int, str], None] = lambda task, num, sha: None,
                 policy: SourcePolicy = SourcePolicy(),
                 on_denied: Callable[[Task, SourceDenied], None] = lambda task, e: None,
                 sources: SourceOptions = SourceOptions(), opener: Callable = open_source):
        self.task = task
        self.opener = opener          # open_source, or the upstream cluster's (upstream.py)
        self.policy = policy          # which sources and addresses may be fetched
        self.sources = sources        # how non-http sources and https certificates are read
        self.on_denied = on_denied    # counts and logs a denial
        self.before_offer = before_offer   # e.g. copy the digest to the other cluster members
        self.adopting = task.adopted_at is not None   # taking over from a dead member
        self.orphan_grace_s = orphan_grace_s
        self.stop = stop or threading.Event()
        self.timeout_s = timeout_s
        self.bucket = bucket
        self.clock = clock
        self.gen = task.fetch_gen   # this fetch's turn; the watchdog moves it on
        self.timed_out = False      # it failed as the source sent nothing for timeout_s (metrics)

    def run(self) -> None:
        """Fetch; whatever goes wrong fails the task (one log line), never leaves it running."""
        task = self.task
        try:
            self._run()
        except _Abandoned:
            log.info("task %s: the fetch the watchdog gave up on ended", task.task_id[:12])
        except SourceDenied as e:
            if self._fail("SourceDenied", str(e)):
                self.on_denied(task, e)
        except (SourceError, DigestMismatch) as e:
            self.timed_out = _timed_out(e)
            if self._fail(type(e).__name__, str(e)):
                log.warning("task %s source failed: %s", task.task_id[:12], e)
        except OSError as e:   # our own disk: full, unwritable. Not the source's fault.
            if self._fail("LocalIOError", "supernode cache write failed: %s" % e, drop_data=True):
                log.error("task %s cache write failed: %s", task.task_id[:12], e)
        except Exception as e:   # a bug: say so, with its traceback, but fail the task
            if self._fail("InternalError", "supernode fetch failed: %s: %s" % (type(e).__name__, e)):
                log.exception("task %s fetch failed unexpectedly", task.task_id[:12])

    def _fail(self, kind: str, message: str, drop_data: bool = False) -> bool:
        """Fail the task if this fetch is still its own; False if the watchdog got there first."""
        task = self.task
        with task.cond:
            if task.fetch_gen != self.gen:
                return False
            task.fail(kind, message, self.clock())
            if drop_data:   # a half file that cannot be finished only keeps the disk full
                _remove(task.data_path)
        return True

    def _check_live(self) -> None:
        """Raise _Abandoned if the watchdog gave up on this fetch (callers may hold task.cond)."""
        if self.task.fetch_gen != self.gen:
            raise _Abandoned()

    def _progressed(self, ahead_s: float = 0.0) -> None:
        """Something moved (bytes arrived, a block hashed): the watchdog waits on."""
        if self.task.fetch_gen == self.gen:
            self.task.progress_at = self.clock() + ahead_s

    def _run(self) -> None:
        task = self.task
        os.makedirs(task.folder, exist_ok=True)
        if self.adopting:   # (after the folder is made: else its first pieces fail to be written)
            threading.Thread(target=self._fill_orphans, daemon=True,
                             name="orphans-" + task.task_id[:12]).start()
            meta = dict(task.replica(), data_size=len(task.digests) * task.piece_size)
            if meta["length"] is not None and meta["data_size"] >= meta["length"]:
                self._adopted_complete()
                return
        else:   # also after a reset: what is on disk is revalidated or resumed, not refetched
            meta = task.load_meta()
        # A meta file keeps no secrets, a replica keeps the URL whole: both compared redacted
        # (else a task whose URL has a query or user:password@ was never resumed, only refetched).
        if meta and redact_url(meta.get("url") or "") != redact_url(task.url) \
                and not (task.digest and meta.get("digest") == task.digest):
            meta = None   # (a content-addressed copy is the digest's bytes, from any URL)
        headers = dict(task.headers)
        resume_from = 0
        if meta and meta.get("complete") and meta["data_size"] == meta.get("length"):
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        elif meta and meta.get("length") and (meta.get("etag") or meta.get("last_modified")):
            resume_from = min(len(meta["digests"]) * meta["piece_size"], meta["data_size"])
            resume_from -= resume_from % meta["piece_size"]
            if resume_from:
                headers["Range"] = "bytes=%d-" % resume_from
                headers["If-Range"] = meta.get("etag") or meta["last_modified"]
        with task.cond:
            self._check_live()
            task.state = RUNNING   # the watchdog counts from here (not while queued for a thread)
            self._progressed()
            task.changed()
        response = self._open(headers, meta)
        if response is None:
            return
        with response:
            self._progressed()
            with task.cond:   # the watchdog may have given up while the origin kept us waiting
                self._check_live()
                start = self._begin(response, meta, resume_from)
            self._stream(response, start)

    def _open(self, headers: dict, meta: Optional[dict]):
        task = self.task
        headers.setdefault("User-Agent", "dfly-supernode/" + __version__)
        try:
            return self.opener(task.url, headers, self.timeout_s, self.policy, self.sources)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 304 and meta:
                with task.cond:
                    self._check_live()
                    self._restore(meta)
                return None
            raise SourceError("origin answered %d %s for %s" % (e.code, e.reason, task.url))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            log.info("task %s cannot reach origin for %s: %s", task.task_id[:12], task.url, reason)
            if _complete(meta) and isinstance(reason, BaseException) and unreachable(reason):
                # Outage mode: an origin that cannot be reached says nothing about our copy
                # (one that answers 404 or a new version does, and is believed).
                log.warning("task %s origin unreachable: its finished copy is served as it is "
                            "until the origin answers again", task.task_id[:12])
                with task.cond:
                    self._check_live()
                    self._restore(meta)
                return None
            # Not the reason: "refused", "reset" or what answered would tell any client
            # which ports are open on hosts only the supernode reaches. The log has it.
            raise SourceError("cannot reach origin for %s (%s; the supernode's log says why)"
                              % (task.url, _kind_of_failure(reason)))
        except http.client.HTTPException as e:   # a garbage status line, over 100 headers...
            log.info("task %s origin for %s: %s", task.task_id[:12], task.url, _describe(e))
            if isinstance(e, http.client.InvalidURL):
                raise SourceError("%s for %s" % (_failed_how(e), task.url))
            # Not what it sent, nor that it was not HTTP: the same words as for a closed
            # port, or a client could map which ports only the supernode reaches are open.
            raise SourceError("cannot reach origin for %s (%s; the supernode's log says why)"
                              % (task.url, NO_HTTP_ANSWER))

    def _restore(self, meta: dict) -> None:
        """The origin says our complete copy is current: serve it as is."""
        task = self.task
        with task.cond:
            task.length, task.piece_size = meta["length"], meta["piece_size"]
            task.geometry_known = True
            task.etag, task.last_modified = meta.get("etag", ""), meta.get("last_modified", "")
            task.content_version = _version_in(meta, task)
            task.digests = []
            for hexdigest, blocks in zip(meta["digests"], _blocks_in(meta)):
                task.piece_written(hexdigest, blocks)
            for num in meta.get("damaged", ()):   # found bad while idle: fetched again alone
                task.piece_damaged(num)
            task.state = DONE
            task.validated_at = self.clock()
            task.changed()
        log.info("task %s cache revalidated (304), %d bytes served from cache",
                 task.task_id[:12], task.length)

    def _begin(self, response, meta: Optional[dict], resume_from: int) -> int:
        """Set up length, piece size and validators; return the offset the body starts at."""
        task = self.task
        status = getattr(response, "status", 200)
        total = _content_length(response)
        if status == 206 and meta and resume_from:
            crange = response.headers.get("Content-Range", "")
            if crange.startswith("bytes %d-" % resume_from) and crange.endswith("/%d" % meta["length"]):
                with task.cond:
                    task.length, task.piece_size = meta["length"], meta["piece_size"]
                    task.geometry_known = True
                    task.etag, task.last_modified = meta.get("etag", ""), meta.get("last_modified", "")
                    task.content_version = _version_in(meta, task)
                    known = meta["digests"][:resume_from // meta["piece_size"]]
                    if self.adopting:   # peers hold these; we only know their digests
                        task.digests = list(known)
                        task.changed()
                    else:
                        task.digests = []
                        for hexdigest, blocks in zip(known, _blocks_in(meta)):
                            task.piece_written(hexdigest, blocks)
                log.info("task %s resuming source at byte %d", task.task_id[:12], resume_from)
                return resume_from
            raise SourceError("origin sent a range we did not ask for: %r" % crange)
        if status != 200:
            raise SourceError("origin answered %d for %s" % (status, task.url))
        self.adopting = False   # starting over: nothing peers hold is reused
        with task.cond:
            task.adopted_at = None
            task.length = total
            task.piece_size = piece_size_for(total)
            task.geometry_known = True
            task.etag = response.headers.get("ETag", "") or ""
            task.last_modified = _valid_date(response.headers.get("Last-Modified", ""))
            known = _digests_to_match(meta, task.etag, total, task.piece_size)
            if known:   # only the digests can tell these bytes from others: piece_cut compares
                task.new_version(meta["content_version"], known)
            else:
                task.new_version(content_version_for(task.etag, total, task.piece_size))
            # Before the data file is cut short: a crash must not leave old digests beside new bytes.
            task.save_meta()
            task.drop_blocks()
        if meta and meta.get("content_version") and meta["content_version"] != task.content_version:
            log.info("task %s source changed (200 to a conditional request): cut afresh as "
                     "content version %s", task.task_id[:12], task.content_version)
        return 0

    def _stream(self, response, start: int) -> None:
        task = self.task
        piece_size = task.piece_size
        # An adopted task's first pieces are with the peers, not here: no whole-file hash.
        whole = new_hasher(task.digest) if task.digest and not self.adopting else None
        mode = "r+b" if start and os.path.exists(task.data_path) else "w+b"
        with open(task.data_path, mode, buffering=0) as out:
            out.truncate(start)
            if whole is not None and start:
                _hash_prefix(out, start, whole, self._progressed)
            out.seek(start)
            offset = start
            self._piece = PrefixHasher(block_size_for(piece_size))
            buffer = memoryview(bytearray(CHUNK)) if _plain_body(response) else None
            while True:
                chunk = self._read(response, offset) if buffer is None \
                    else self._read_into(response, buffer, offset)
                if not chunk:
                    break
                self._check_live()
                self._throttle(len(chunk))
                _write_all(out, chunk)
                if whole is not None:
                    whole.update(chunk)
                offset = self._cut_pieces(chunk, offset, piece_size)
            if task.length is not None and offset != task.length:
                raise SourceError("origin sent %s for %s" % (received(offset, task.length), task.url))
            with task.cond:
                self._check_live()
                task.length = offset   # known only now for a chunked source; before the last piece
            if offset % piece_size:
                self._piece_done(self._piece.done())
        if whole is not None and whole.hexdigest() != parse_digest(task.digest)[1]:
            with task.cond:
                self._check_live()
                _remove(task.data_path)
            raise DigestMismatch(mismatch(task.digest, "%s:%s" % (whole.name, whole.hexdigest())))
        with task.cond:
            self._check_live()
            task.state = DONE
            task.validated_at = self.clock()
            task.save_meta()
            task.changed()
        log.info("task %s source done: %d bytes, %d pieces", task.task_id[:12], offset, len(task.digests))

    def _adopted_complete(self) -> None:
        """Every digest is known already: only pieces no peer holds need the source."""
        with self.task.cond:
            self._check_live()
            self.task.state = DONE
            self.task.validated_at = self.clock()
            self.task.changed()

    def _fill_orphans(self) -> None:
        """For an adopted task: fetch by Range each piece a peer still needs that
        no peer holds and we lack, after giving peers `orphan_grace_s` to
        re-announce. Runs until every piece is cached or the task is reset."""
        task = self.task
        while not self.stop.wait(self.orphan_grace_s):
            with task.cond:
                if task.adopted_at is None or task.state == FAILED:
                    return
                count = task.piece_count or 0
                if len(task.scheduler.supernode_pieces) >= count and task.state == DONE:
                    return
                known = min(count, len(task.digests))
                wanted = set()
                for peer in task.scheduler.peers.values():
                    wanted.update(n for n in range(known) if n not in peer.held)
                orphans = sorted(n for n in wanted
                                 if not task.is_cached(n) and not task.scheduler.holders_of(n))
            for num in orphans:
                try:
                    self._fetch_piece(num)
                except (SourceError, DigestMismatch, OSError) as e:
                    log.warning("task %s piece %d refetch failed: %s", task.task_id[:12], num, e)

    def _fetch_piece(self, num: int) -> None:
        task = self.task
        data = self.read_piece(num)
        with task.cond:
            store_piece(task, num, data)
            task.piece_cached(num)
            task.save_meta()
        log.info("task %s piece %d refetched from the source (no peer held it)", task.task_id[:12], num)

    def read_piece(self, num: int) -> bytes:
        """Piece `num` from the source, by Range, checked against its recorded digest.
        A source that ignores Range is read from the start up to the piece (logged).
        SourceError when it cannot be had; DigestMismatch when the source's bytes differ."""
        task = self.task
        start, size = piece_bounds(task, num)
        headers = dict(task.headers, Range="bytes=%d-%d" % (start, start + size - 1))
        response = self._open(headers, None)
        with response:
            status = getattr(response, "status", 200)
            if status == 200 and _content_length(response) in (None, task.length):
                log.warning("task %s origin ignores Range: reading %d bytes to reach piece %d",
                            task.task_id[:12], start, num)
                self._skip(response, start)
            elif status != 206:
                raise SourceError("origin answered %d to a Range request for piece %d" % (status, num))
            data = self._read_exactly(response, size + 1 if status == 206 else size, start)
        task.source_bytes += len(data)
        if len(data) != size:
            raise SourceError("origin sent %s of piece %d" % (received(len(data), size), num))
        if hashlib.sha256(data).hexdigest() != task.digests[num]:
            raise DigestMismatch("the origin's piece %d no longer matches the digest recorded "
                                 "for it" % num)
        return data

    def _skip(self, response, nbytes: int) -> None:
        while nbytes > 0:
            block = self._read_exactly(response, min(CHUNK, nbytes), 0)
            if not block:
                raise SourceError("origin ended before the piece asked for")
            self.task.source_bytes += len(block)
            nbytes -= len(block)

    def _read_exactly(self, response, nbytes: int, offset: int) -> bytes:
        parts, got = [], 0
        while got < nbytes:
            try:
                block = response.read(min(CHUNK, nbytes - got))
            except (OSError, ValueError) as e:
                raise SourceError("origin connection failed after %s: %s" % (received(offset + got, None), e))
            except Exception as e:   # http.client.IncompleteRead and friends
                raise SourceError("origin transfer broke after %s: %s" % (received(offset + got, None), e))
            if not block:
                break
            parts.append(block)
            got += len(block)
        return b"".join(parts)

    def _cut_pieces(self, chunk: bytes, offset: int, piece_size: int) -> int:
        """Feed `chunk` to the piece's running hash (its block digests, the last its
        own: one sha256 per byte); announce each piece it completes."""
        view = memoryview(chunk)
        while view:
            room = piece_size - offset % piece_size
            part, view = view[:room], view[room:]
            self._piece.feed(part)
            offset += len(part)
            if offset % piece_size == 0:
                self._piece_done(self._piece.done())
        return offset

    def _piece_done(self, blocks: list) -> None:
        task = self.task
        hexdigest = blocks[-1]   # the last block's digest is the piece's
        with task.cond:
            self._check_live()
            if task.piece_cut(hexdigest):
                log.info("task %s source changed: piece %d differs from the copy before; cut as "
                         "content version %s", task.task_id[:12], len(task.digests), task.content_version)
        num = len(task.digests)
        with task.cond:
            self._check_live()
            task.blocks[num] = blocks   # what the copy to other members carries (not offered yet)
            task.record_blocks(num, hexdigest, blocks)   # before the meta names the piece
        self.before_offer(task, num, hexdigest)
        with task.cond:
            self._check_live()
            task.piece_written(hexdigest, blocks)
            task.save_meta()

    def _read(self, response, offset: int) -> bytes:
        """Up to CHUNK bytes (b"" at the end). Read as they arrive, so a slow source
        shows progress to the watchdog; written in big blocks all the same."""
        parts, got = [], 0
        try:
            while got < CHUNK:
                part = response.read1(CHUNK - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
                self._progressed()
        except (OSError, socket.timeout, ValueError) as e:
            raise SourceError("origin connection failed after %s: %s" % (received(offset + got, None), e))
        except Exception as e:   # http.client.IncompleteRead and friends
            raise SourceError("origin transfer broke after %s: %s"
                              % (received(offset + got, None), _describe(e)))
        return b"".join(parts)

    def _read_into(self, response, buffer: memoryview, offset: int) -> memoryview:
        """As _read, into `buffer` (reused: a new object per read and the join of
        its parts, a copy more, took twice the page faults, 1383 against 641 a GiB),
        straight from the response's buffered socket reader; http.client is told
        the body is consumed once it is (its length: 0)."""
        got = 0
        try:
            while got < len(buffer) and response.length:
                n = response.fp.readinto1(buffer[got:got + min(len(buffer) - got, response.length)])
                if not n:
                    break
                got += n
                response.length -= n
                self._progressed()
        except (OSError, socket.timeout, ValueError) as e:
            raise SourceError("origin connection failed after %s: %s" % (received(offset + got, None), e))
        return buffer[:got]

    def _throttle(self, nbytes: int) -> None:
        self.task.source_bytes += nbytes
        if self.bucket is not None:
            delay = self.bucket.reserve(nbytes, self.clock())
            if delay > 0:
                self._progressed(ahead_s=delay)   # waiting on our own limit, not on the source
                time.sleep(delay)


def _plain_body(response) -> bool:
    """Is `response` an HTTP body of known length, not chunked (read by _read_into)?"""
    return isinstance(response, http.client.HTTPResponse) and not response.chunked \
        and response.length is not None and response.fp is not None


def _blocks_in(meta: dict) -> list:
    """The block digests of a meta's pieces, aligned with its digests (None: unknown)."""
    blocks = meta.get("blocks")
    blocks = list(blocks) if isinstance(blocks, list) else []
    count = len(meta["digests"])
    return (blocks + [None] * count)[:count]


def content_version_for(etag: str, length: Optional[int], piece_size: int) -> str:
    """The id of the content a source answered with. A strong ETag names the bytes
    (If-Range trusts it as much), so the same bytes cut again, by a restarted
    supernode or another member, are the same version and what peers hold stays
    good; without one every cut is a version of its own."""
    if not etag or etag.startswith("W/"):
        return os.urandom(8).hex()
    key = "%s\n%s\n%d" % (etag, length, piece_size)
    return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16]


def _digests_to_match(meta: Optional[dict], etag: str, length: Optional[int], piece_size: int) -> list:
    """The piece digests of the copy a cut from byte 0 replaces, when nothing but
    they can say whether the bytes are the same: no strong ETag, and the same length
    and piece size. Then the cut keeps that copy's version while it matches them
    (Task.piece_cut), so peers keep what they hold across a restart or a takeover
    on an origin that resumes nothing; [] when the cut is a version by itself."""
    if (etag and not etag.startswith("W/")) or not meta or not meta.get("content_version"):
        return []
    if length is None or meta.get("length") != length or meta.get("piece_size") != piece_size:
        return []
    lists = [d for d in (meta.get("digests"), meta.get("confirming"))
             if isinstance(d, list) and all(isinstance(x, str) for x in d)]
    return list(max(lists, key=len)) if lists else []


def _version_in(meta: dict, task: Task) -> str:
    """The content version of a copy the source confirmed (304 or 206); a copy
    written before versions existed gets one now."""
    return (meta.get("content_version") or task.content_version
            or content_version_for(meta.get("etag", ""), meta["length"], meta["piece_size"]))


NO_HTTP_ANSWER = "no HTTP answer: refused, reset, or the origin broke the HTTP protocol"


def _kind_of_failure(reason) -> str:
    """What a client may learn of a failed connection: whether the name resolved
    and whether time ran out (its timing says so anyway); not whether anything
    listens there."""
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return NO_HTTP_ANSWER


def _timed_out(error: BaseException) -> bool:
    """Was `error` raised for a socket timeout (connecting, or waiting for bytes)? Its
    kind stays SourceError for clients; the metrics count it as a timeout."""
    cause = error.__cause__ or error.__context__
    return isinstance(getattr(cause, "reason", cause), (socket.timeout, TimeoutError))


def _complete(meta: Optional[dict]) -> bool:
    """Is the cached copy `meta` describes whole (every piece cut, digests recorded)?"""
    return bool(meta and meta.get("complete") and meta.get("length") is not None
                and meta.get("data_size") == meta.get("length"))


def _content_length(response) -> Optional[int]:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None and int(value) >= 0 else None
    except ValueError:
        return None


def _valid_date(value: str) -> str:
    try:
        parsedate_to_datetime(value)
        return value
    except (TypeError, ValueError, IndexError):
        return ""


def _hash_prefix(f, length: int, hasher, progressed: Callable[[], None]) -> None:
    f.seek(0)
    left = length
    while left:
        block = f.read(min(CHUNK, left))
        if not block:
            break
        hasher.update(block)
        left -= len(block)
        progressed()


def _write_all(out, data: bytes) -> None:
    """Write all of `data` to an unbuffered file: a write may take only part of it
    (a disk nearly full), and the next one then says why (ENOSPC)."""
    view = memoryview(data)
    while view:
        written = out.write(view)
        if not written:
            raise OSError(errno.ENOSPC, "the disk took none of a %d-byte write" % len(view))
        view = view[written:]


def _failed_how(error: Exception) -> str:
    if isinstance(error, http.client.InvalidURL):   # a redirect to a host name http.client refuses
        return "cannot request the source"
    return "origin broke the HTTP protocol"


def _describe(error: Exception) -> str:
    """An exception as one line: http.client's are often bare (BadStatusLine's is the line)."""
    text = str(error).strip() or repr(error)
    return "%s: %s" % (type(error).__name__, text[:200])


def piece_bounds(task: Task, num: int):
    """(start, size) of a cut piece; while a chunked source still arrives (no length
    yet) every cut piece is whole: the last one is cut once the length is known."""
    if task.length is None:
        return num * task.piece_size, task.piece_size
    return piece_range(num, task.length, task.piece_size)


def store_piece(task: Task, num: int, data: bytes) -> None:
    """Write a verified piece at its offset in the task's cache file (the caller
    holds the task's lock, so no reset can slip between the check and the write).
    Its block digests are cut again from these bytes, which matched the piece
    digest: those a replica or the disk gave may be missing, or of other bytes
    (peers blamed us for them, hence this fetch; a piece's hash, on a rare path)."""
    blocks_cut_again(task, num, block_digests(data, block_size_for(task.piece_size)))
    start = num * task.piece_size
    fd = os.open(task.data_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, start)
            if not written:
                raise OSError(errno.ENOSPC, "the disk took none of a %d-byte write" % len(view))
            view, start = view[written:], start + written
    finally:
        os.close(fd)


def blocks_cut_again(task: Task, num: int, blocks: list) -> bool:
    """Piece `num`'s block digests are `blocks`, cut from bytes that matched its piece
    digest (the caller holds the task's lock): kept, and True if they differ from
    those known (then those were of other bytes, or missing)."""
    if task.blocks.get(num) == blocks:
        return False
    task.record_blocks(num, task.digests[num], blocks)
    task.blocks[num] = blocks
    return True


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
