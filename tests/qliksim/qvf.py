"""Simulated QVF file format used by qliksim.

A simulated QVF is:  MAGIC + compact JSON metadata (one line) + b"\\n" + payload.
The payload is deterministic filler bytes derived from a seed string, so a
multi-GiB app can be produced (and verified) without ever being stored.
"""
import hashlib
import json

MAGIC = b"QSIMQVF1\n"
_BLOCK = 64 * 1024


def header_bytes(meta: dict) -> bytes:
    """MAGIC + compact JSON of meta (no newlines inside) + newline."""
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return MAGIC + text.encode("utf-8") + b"\n"


def _block(seed: str) -> bytes:
    """A deterministic 64 KiB block: d1 + d2 + ... + d2048, d0 = sha256(seed) and
    d(i) = sha256(d(i-1)); a tight loop, as every download computes one."""
    sha256 = hashlib.sha256
    digest = sha256(seed.encode("utf-8")).digest()
    digests = []
    for _ in range(_BLOCK // 32):
        digest = sha256(digest).digest()
        digests.append(digest)
    return b"".join(digests)


def payload_chunks(seed: str, size: int, chunk=1 << 20):
    """Yield `size` deterministic bytes in pieces of at most `chunk` bytes."""
    block = _block(seed)
    # no more blocks than the payload needs (the pieces are the same)
    reps = max(1, min(chunk // _BLOCK, -(-size // _BLOCK)))
    big = block * reps
    remaining = size
    while remaining > 0:
        piece = big if remaining >= len(big) else big[:remaining]
        remaining -= len(piece)
        yield piece


def qvf_length(meta: dict, payload_size: int) -> int:
    return len(header_bytes(meta)) + payload_size


def qvf_chunks(meta: dict, payload_size: int, seed: str):
    """Header then payload."""
    yield header_bytes(meta)
    yield from payload_chunks(seed, payload_size)


def read_header(fileobj, limit=16 << 20):
    """Read the header from a binary file object.

    Returns (meta, header_len) where header_len counts MAGIC, JSON and the
    newline. Raises ValueError("not a QVF") on bad magic or JSON.
    """
    magic = fileobj.read(len(MAGIC))
    if magic != MAGIC:
        raise ValueError("not a QVF")
    line = fileobj.readline(limit) if hasattr(fileobj, "readline") else _readline(fileobj, limit)
    if not line.endswith(b"\n"):
        raise ValueError("not a QVF")
    try:
        meta = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a QVF") from None
    if not isinstance(meta, dict):
        raise ValueError("not a QVF")
    return meta, len(MAGIC) + len(line)


def _readline(fileobj, limit):
    buf = bytearray()
    while len(buf) < limit:
        b = fileobj.read(1)
        if not b:
            break
        buf += b
        if b == b"\n":
            break
    return bytes(buf)
