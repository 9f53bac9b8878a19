"""The server side of NTLM over HTTP, as a Windows server does it ([MS-NLMP]).

  * A request without credentials gets 401 with "WWW-Authenticate: NTLM".
  * "Authorization: NTLM <NEGOTIATE_MESSAGE>" (type 1) gets 401 with
    "WWW-Authenticate: NTLM <CHALLENGE_MESSAGE>" (type 2): a fresh 8-byte server challenge
    and the target information (AV pairs) a domain member sends; a client that receives
    target information answers with NTLMv2.
  * "Authorization: NTLM <AUTHENTICATE_MESSAGE>" (type 3) on the same connection is checked
    with NTLMv2 ([MS-NLMP] 3.3.2): NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)),
    UTF-16LE(upper(user) + domain)), NTProofStr = HMAC-MD5(NTOWFv2, server challenge +
    blob).  An NTLMv1 response (24 bytes) is refused, as a server at LmCompatibilityLevel 5
    refuses it; so are an anonymous one and a type 3 with no challenge pending on the
    connection.

NTLM authenticates a connection, not a request: the handshake's state lives in the
connection's dict (core.Request.conn), and a type 3 is only good against the challenge
sent on that connection.

Python's hashlib has no MD4 under OpenSSL 3 (it is in the legacy provider), so md4() is
RFC 1320 written out.
"""
import base64
import hmac
import os
import struct
import time

SIGNATURE = b"NTLMSSP\0"

NEGOTIATE_UNICODE = 0x00000001
NEGOTIATE_OEM = 0x00000002
REQUEST_TARGET = 0x00000004
NEGOTIATE_NTLM = 0x00000200
NEGOTIATE_ALWAYS_SIGN = 0x00008000
TARGET_TYPE_DOMAIN = 0x00010000
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NEGOTIATE_TARGET_INFO = 0x00800000
NEGOTIATE_VERSION = 0x02000000
NEGOTIATE_128 = 0x20000000
NEGOTIATE_56 = 0x80000000

AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN, AV_TIMESTAMP = 0, 1, 2, 3, 4, 7

# Windows Server 2019 (10.0.17763), NTLM revision 15
VERSION = struct.pack("<BBH3xB", 10, 0, 17763, 15)
EPOCH_1601 = 11644473600      # seconds from 1601-01-01 to 1970-01-01


class NtlmError(ValueError):
    """A malformed NTLM message."""


# ------------------------------------------------------------------ MD4 (RFC 1320)

def _rotl(x, n):
    x &= 0xFFFFFFFF
    return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF


def md4(data):
    """The MD4 digest of data (RFC 1320, section 3)."""
    msg = bytes(data)
    bit_len = (8 * len(msg)) & 0xFFFFFFFFFFFFFFFF
    msg += b"\x80" + b"\0" * ((55 - len(msg)) % 64) + struct.pack("<Q", bit_len)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off:off + 64])
        aa, bb, cc, dd = a, b, c, d

        def f(u, v, w):
            return (u & v) | (~u & w)

        def g(u, v, w):
            return (u & v) | (u & w) | (v & w)

        def h(u, v, w):
            return u ^ v ^ w

        for i in range(16):                                   # round 1
            k, s = i, (3, 7, 11, 19)[i % 4]
            a = _rotl(a + f(b, c, d) + x[k], s)
            a, b, c, d = d, a, b, c
        for i in range(16):                                   # round 2
            k, s = (i % 4) * 4 + i // 4, (3, 5, 9, 13)[i % 4]
            a = _rotl(a + g(b, c, d) + x[k] + 0x5A827999, s)
            a, b, c, d = d, a, b, c
        for i in range(16):                                   # round 3
            k = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)[i]
            s = (3, 9, 11, 15)[i % 4]
            a = _rotl(a + h(b, c, d) + x[k] + 0x6ED9EBA1, s)
            a, b, c, d = d, a, b, c
        a, b = (a + aa) & 0xFFFFFFFF, (b + bb) & 0xFFFFFFFF
        c, d = (c + cc) & 0xFFFFFFFF, (d + dd) & 0xFFFFFFFF
    return struct.pack("<4I", a, b, c, d)


# ------------------------------------------------------------------ NTLMv2

def _utf16(s):
    return s.encode("utf-16-le")


def nt_hash(password):
    return md4(_utf16(password))


def ntowf_v2(password, user, domain):
    return hmac.new(nt_hash(password), _utf16(user.upper() + domain), "md5").digest()


def nt_proof(password, user, domain, server_challenge, blob):
    return hmac.new(ntowf_v2(password, user, domain), server_challenge + blob, "md5").digest()


# ------------------------------------------------------------------ messages

def _field(msg, at):
    """The bytes a security buffer (len u16, maxlen u16, offset u32) at `at` points to."""
    if len(msg) < at + 8:
        raise NtlmError("truncated message")
    length, _, offset = struct.unpack_from("<HHI", msg, at)
    if offset + length > len(msg):
        raise NtlmError("a field points past the message")
    return msg[offset:offset + length]


def decode(header_value):
    """(message type, raw bytes) of the token in an "NTLM <base64>" header value, or
    (0, b"") for a bare "NTLM"."""
    parts = header_value.split(None, 1)
    if not parts or parts[0].upper() != "NTLM":
        raise NtlmError("not an NTLM header")
    if len(parts) == 1:
        return 0, b""
    try:
        raw = base64.b64decode(parts[1].strip(), validate=True)
    except ValueError:
        raise NtlmError("the token is not base64") from None
    if len(raw) < 12 or raw[:8] != SIGNATURE:
        raise NtlmError("no NTLMSSP signature")
    return struct.unpack_from("<I", raw, 8)[0], raw


def _av_pairs(pairs):
    out = b""
    for av_id, value in pairs:
        out += struct.pack("<HH", av_id, len(value)) + value
    return out + struct.pack("<HH", AV_EOL, 0)


def challenge(negotiate, domain, computer, dns_domain, server_challenge=None):
    """(CHALLENGE_MESSAGE bytes, server challenge) answering a NEGOTIATE_MESSAGE."""
    if len(negotiate) < 16:
        raise NtlmError("truncated NEGOTIATE_MESSAGE")
    asked = struct.unpack_from("<I", negotiate, 12)[0]
    server_challenge = server_challenge or os.urandom(8)
    unicode = bool(asked & NEGOTIATE_UNICODE)
    flags = (NEGOTIATE_UNICODE if unicode else NEGOTIATE_OEM) | REQUEST_TARGET | NEGOTIATE_NTLM \
        | NEGOTIATE_ALWAYS_SIGN | TARGET_TYPE_DOMAIN | NEGOTIATE_TARGET_INFO | NEGOTIATE_VERSION \
        | (asked & (NEGOTIATE_EXTENDED_SESSIONSECURITY | NEGOTIATE_128 | NEGOTIATE_56))
    target = _utf16(domain) if unicode else domain.encode("ascii")
    stamp = int((time.time() + EPOCH_1601) * 10_000_000)
    info = _av_pairs([(AV_NB_DOMAIN, _utf16(domain)), (AV_NB_COMPUTER, _utf16(computer)),
                      (AV_DNS_DOMAIN, _utf16(dns_domain)),
                      (AV_DNS_COMPUTER, _utf16(computer.lower() + "." + dns_domain)),
                      (AV_TIMESTAMP, struct.pack("<Q", stamp))])
    head = 56
    msg = SIGNATURE + struct.pack("<I", 2) + struct.pack("<HHI", len(target), len(target), head) \
        + struct.pack("<I", flags) + server_challenge + b"\0" * 8 \
        + struct.pack("<HHI", len(info), len(info), head + len(target)) + VERSION
    return msg + target + info, server_challenge


def authenticate_fields(msg):
    """{domain, user, workstation, nt_response, flags} of an AUTHENTICATE_MESSAGE."""
    if len(msg) < 64:
        raise NtlmError("truncated AUTHENTICATE_MESSAGE")
    flags = struct.unpack_from("<I", msg, 60)[0]

    def text(at):
        raw = _field(msg, at)
        try:
            return raw.decode("utf-16-le") if flags & NEGOTIATE_UNICODE else raw.decode("latin-1")
        except UnicodeDecodeError:
            raise NtlmError("a name is not UTF-16") from None

    return {"nt_response": _field(msg, 20), "domain": text(28), "user": text(36),
            "workstation": text(44), "flags": flags}


def verify(fields, server_challenge, password):
    """True when the AUTHENTICATE_MESSAGE's NTLMv2 response proves `password`."""
    nt = fields["nt_response"]
    if len(nt) <= 24 or nt[16:18] != b"\x01\x01" or not fields["user"]:
        return False          # NTLMv1, anonymous, or not a blob of version 1
    expected = nt_proof(password, fields["user"], fields["domain"], server_challenge, nt[16:])
    return hmac.compare_digest(expected, nt[:16])


def header(msg=None):
    return "NTLM" if msg is None else "NTLM " + base64.b64encode(msg).decode("ascii")
