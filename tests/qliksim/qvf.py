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
    """A deterministic 64 KiB block derived from sha256(seed)."""
    out = bytearray()
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    while len(out) < _BLOCK:
        digest = hashlib.sha256(digest).digest()
        out += digest
    return bytes(out[:_BLOCK])


def payload_chunks(seed: str, size: int, chunk=1 << 20):
    """Yield `size` deterministic bytes in pieces of at most `chunk` bytes."""
    block = _block(seed)
    reps = max(1, chunk // _BLOCK)
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
