"""Piece geometry: how a file of a given length is cut into pieces.

Newer Dragonfly sizes pieces as next_pow2(length / 500) clamped to 4..64 MiB, so
a task has at most ~500 pieces (bounded scheduler state). dfly clamps to
1..64 MiB instead: a piece can be served onward only once it is whole, so on a
100 Mbit/s link a 4 MiB piece holds every hop back 0.34 s, and a 64 MiB file
cut in 16 such pieces spreads through a swarm much later than in 64 pieces of
1 MiB (bench/testbed.py). Files of 1 GiB and more are cut as before. A file
of unknown length (a chunked source) uses the minimum size; its piece count is
known once the source ends.

Each piece is also cut into blocks (protocol v2), so a peer can check and pass
on a piece block by block while it arrives (cut-through): a sixteenth of the
piece within 64 KiB..256 KiB (BLOCK_SIZE), larger in the largest pieces so
that a piece has at most MAX_BLOCKS. A relay is one block behind its source,
and in the scheduler's fan-out a 16-peer swarm takes in 16 streams at a
sixteenth of a link each, so one block of lag is 16 blocks' time on a link:
0.34 s with 256 KiB blocks at 100 Mbit/s, paid as the swarm starts and again
as it ends, 0.085 s with 64 KiB (bench/swarm_sim.py: 6.20 -> 5.94 s;
bench/testbed.py, 16 daemons, with relays woken per piece: 13.39-14.09 ->
12.85-13.58 s at 50 Mbit/s, 6.70 -> 6.635 s at 100 where the shared CPU
blurs it; BENCHMARKS.md "Sixteenth session"). Files under ~500 MiB have 1 MiB
pieces, so 64 KiB blocks; from 1 GiB (4 MiB pieces) blocks stay 256 KiB, as a
single large get reads one block per call. The order names its block_size,
so a peer of before takes these blocks as they are.

A block's digest is the sha256 of the piece up to the block's end (protocol
v3; v2 hashed each block alone), so the last block's is the piece's own sha256,
and one running hash gives them all: the supernode hashes each byte once as it
cuts (v2 hashed it twice, for the piece and for its block), and a peer checks
block K by the same running hash it checked blocks 0..K-1 with, and so the
piece, with no second hash. A flat list per piece, not
a Merkle tree: with at most 64 blocks the list is at most 4 KiB of hex, and a
tree's only gain, proving one block without the others, is of no use to a peer
that takes a piece's blocks in order, from its first byte, with the whole list
in its assignment.
"""
import hashlib
from typing import List, Optional, Tuple

MIN_PIECE_SIZE = 1 * 1024 * 1024
MAX_PIECE_SIZE = 64 * 1024 * 1024
TARGET_PIECE_COUNT = 500
MIN_BLOCK_SIZE = 64 * 1024
BLOCK_SIZE = 256 * 1024
PIECE_BLOCKS = 16
MAX_BLOCKS = 64


def piece_size_for(length: Optional[int]) -> int:
    """The piece size for a file of `length` bytes (None: unknown)."""
    if not length or length <= 0:
        return MIN_PIECE_SIZE
    wanted = -(-length // TARGET_PIECE_COUNT)
    size = 1 << max(0, (wanted - 1).bit_length())
    return max(MIN_PIECE_SIZE, min(MAX_PIECE_SIZE, size))


def piece_count(length: int, piece_size: int) -> int:
    """How many pieces a file of `length` bytes has (an empty file has none)."""
    return -(-length // piece_size)


def piece_range(num: int, length: int, piece_size: int) -> Tuple[int, int]:
    """(start, size) of piece `num`; ValueError when it lies outside the file."""
    if num < 0 or num >= piece_count(length, piece_size):
        raise ValueError("piece %d outside a file of %d bytes" % (num, length))
    start = num * piece_size
    return start, min(piece_size, length - start)


def block_size_for(piece_size: int) -> int:
    """The block size of pieces of `piece_size` bytes: a PIECE_BLOCKS-th of the
    piece within MIN_BLOCK_SIZE..BLOCK_SIZE, or more so that a piece has at most
    MAX_BLOCKS blocks (1 MiB pieces: 64 KiB; 4-16 MiB: 256 KiB; 64 MiB: 1 MiB)."""
    return max(MIN_BLOCK_SIZE, min(BLOCK_SIZE, piece_size // PIECE_BLOCKS), -(-piece_size // MAX_BLOCKS))


def block_spans(size: int, block_size: int) -> List[Tuple[int, int]]:
    """(offset within the piece, size) of each block of a piece of `size` bytes."""
    return [(at, min(block_size, size - at)) for at in range(0, size, block_size)]


def block_digests(data, block_size: int) -> List[str]:
    """The digest (hex) of each block of one piece's bytes: the sha256 of the piece up
    to that block's end (the last one is the piece's sha256)."""
    prefixes = PrefixHasher(block_size)
    prefixes.feed(data)
    return prefixes.done()


class PrefixHasher:
    """One piece's running sha256, fed its bytes in order however they are split,
    with its digest taken at each block's end: the piece's block digests, hashing
    each byte once (hexdigest reads the state without ending it)."""

    def __init__(self, block_size: int):
        self.block_size = block_size
        self.hasher = hashlib.sha256()
        self.filled = 0   # bytes of the current block
        self.digests: List[str] = []

    def feed(self, data) -> None:
        view = memoryview(data)
        while view:
            room = self.block_size - self.filled
            part, view = view[:room], view[room:]
            self.hasher.update(part)
            self.filled += len(part)
            if self.filled == self.block_size:
                self.digests.append(self.hasher.hexdigest())
                self.filled = 0

    def done(self) -> List[str]:
        """The block digests of the piece fed (the last one its sha256); the hasher
        starts the next piece."""
        if self.filled:   # a short last block
            self.digests.append(self.hasher.hexdigest())
        digests = self.digests
        self.hasher, self.filled, self.digests = hashlib.sha256(), 0, []
        return digests
