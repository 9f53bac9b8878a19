"""A small RFC 6455 WebSocket server side, Python standard library only.

qliksim serves the Qlik engine API (engine.py) on its HTTP listeners: a
request with `Upgrade: websocket` is answered `101` here and the connection
then carries frames.  Written from RFC 6455 so the client under test
(src/ws_*.c) talks to an independent implementation:

- client frames must be masked (§5.1) and use no reserved bits or opcodes;
- messages may come in fragments, with control frames between them (§5.4);
- a ping is answered with a pong carrying its payload (§5.5.2);
- a close is answered with a close, then the TCP connection ends (§5.5.1);
- a message over `max_message` bytes is refused with close 1009 (§7.4.1).

`WsConnection.send_text` can fragment a message and put a ping between the
fragments, for the client's tests.
"""
import base64
import hashlib
import os
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def upgrade_error(headers):
    """None when the request is a valid WebSocket upgrade (§4.2.1), else (status, why)."""
    if headers.get("Upgrade", "").lower() != "websocket":
        return 400, "not a WebSocket upgrade"
    tokens = [t.strip().lower() for t in headers.get("Connection", "").split(",")]
    if "upgrade" not in tokens:
        return 400, "Connection: Upgrade missing"
    if headers.get("Sec-WebSocket-Version", "") != "13":
        return 426, "Sec-WebSocket-Version must be 13"
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return 400, "bad Sec-WebSocket-Key"
    except ValueError:
        return 400, "bad Sec-WebSocket-Key"
    return None


def handshake_reply(headers):
    """The 101 reply's bytes for a valid upgrade request."""
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(headers['Sec-WebSocket-Key'])}\r\n\r\n").encode("ascii")


def encode_frame(opcode, payload, fin=True, mask=None):
    """One frame; mask (4 bytes) only for tests acting as a client."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head.append(m | n)
    elif n <= 0xFFFF:
        head.append(m | 126)
        head += struct.pack("!H", n)
    else:
        head.append(m | 127)
        head += struct.pack("!Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return bytes(head) + payload


class Closed(Exception):
    """The connection ended (close handshake done, or the peer went away)."""


class ProtocolError(Exception):
    def __init__(self, status, why):
        super().__init__(why)
        self.status = status


class WsConnection:
    """The server end of an upgraded connection over a handler's rfile/wfile."""

    def __init__(self, rfile, wfile, max_message=64 << 20):
        self.rfile, self.wfile = rfile, wfile
        self.max_message = max_message
        self.lock = threading.Lock()       # one frame at a time on the wire
        self.closed = False
        self.stats = {"frames": 0, "fragmented_messages": 0, "pings": 0, "pongs": 0,
                      "messages": 0, "close_code": None}
        self.last_pong = None

    # -- sending
    def send_frame(self, opcode, payload, fin=True):
        data = encode_frame(opcode, payload, fin)
        with self.lock:
            self.wfile.write(data)
            self.wfile.flush()

    def send_text(self, text, fragment=0, ping_between=None):
        """A text message, in frames of `fragment` bytes when > 0, with a ping
        (payload `ping_between`) after the first fragment when given."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        if not fragment or fragment >= len(data):
            self.send_frame(OP_TEXT, data)
            return
        pieces = [data[i:i + fragment] for i in range(0, len(data), fragment)]
        for i, piece in enumerate(pieces):
            self.send_frame(OP_TEXT if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
            if i == 0 and ping_between is not None:
                self.send_frame(OP_PING, ping_between)

    def close(self, status=1000, reason=""):
        if self.closed:
            return
        self.closed = True
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", status) + reason.encode("utf-8")[:123])
        except OSError:
            pass

    # -- receiving
    def _read(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise Closed()
        return data

    def read_frame(self):
        b0, b1 = self._read(2)
        fin, opcode, masked, n = b0 & 0x80, b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        if b0 & 0x70:
            raise ProtocolError(1002, "reserved bits set")
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
            raise ProtocolError(1002, "reserved opcode")
        if not masked:
            raise ProtocolError(1002, "client frames must be masked")
        if opcode >= 0x8 and (not fin or n > 125):
            raise ProtocolError(1002, "bad control frame")
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if n > self.max_message:
            raise ProtocolError(1009, "frame over the message cap")
        mask = self._read(4)
        payload = bytearray(self._read(n))
        for i in range(n):
            payload[i] ^= mask[i & 3]
        self.stats["frames"] += 1
        return bool(fin), opcode, bytes(payload)

    def receive(self):
        """The next data message as (opcode, bytes); control frames are
        handled on the way.  Raises Closed when the connection ends."""
        parts, opcode, size = [], None, 0
        try:
            while True:
                fin, op, payload = self.read_frame()
                if op == OP_PING:
                    self.stats["pings"] += 1
                    self.send_frame(OP_PONG, payload)
                    continue
                if op == OP_PONG:
                    self.stats["pongs"] += 1
                    self.last_pong = payload
                    continue
                if op == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.stats["close_code"] = code
                    if not self.closed:     # echo it, then the connection ends
                        self.closed = True
                        self.send_frame(OP_CLOSE, payload[:2])
                    raise Closed()
                if op == OP_CONT and opcode is None:
                    raise ProtocolError(1002, "continuation without a message")
                if op != OP_CONT and opcode is not None:
                    raise ProtocolError(1002, "new message inside a fragmented one")
                if op != OP_CONT:
                    opcode = op
                size += len(payload)
                if size > self.max_message:
                    raise ProtocolError(1009, "message over the cap")
                parts.append(payload)
                if fin:
                    if len(parts) > 1:
                        self.stats["fragmented_messages"] += 1
                    self.stats["messages"] += 1
                    data = b"".join(parts)
                    if opcode == OP_TEXT:
                        try:
                            data.decode("utf-8")
                        except UnicodeDecodeError:
                            raise ProtocolError(1007, "text that is not UTF-8") from None
                    return opcode, data
        except ProtocolError as err:
            self.close(err.status, str(err))
            raise Closed() from err
        except (OSError, ValueError):
            raise Closed() from None


def echo_session(ws):
    """The test endpoint /_ws/echo: echoes each message, and obeys commands
    (text starting with "!"):
      !frag N TEXT   TEXT back in N-byte fragments with a ping between them
      !ping DATA     a ping; the reply is "pong DATA" once the pong is in
      !big N         a message of N bytes ("x" * N)
      !close CODE    the server starts the closing handshake
      !stats         the frame counts as JSON
    """
    import json
    while True:
        try:
            opcode, data = ws.receive()
        except Closed:
            return
        text = data.decode("utf-8", "replace") if opcode == OP_TEXT else None
        if text is None or not text.startswith("!"):
            ws.send_frame(opcode, data)
            continue
        cmd, _, arg = text[1:].partition(" ")
        if cmd == "frag":
            n, _, rest = arg.partition(" ")
            ws.send_text(rest, fragment=int(n), ping_between=b"mid")
        elif cmd == "ping":
            ws.last_pong = None
            ws.send_frame(OP_PING, arg.encode())
            try:                                   # the pong arrives before the next message
                while ws.last_pong is None:
                    fin, op, payload = ws.read_frame()
                    if op == OP_PONG:
                        ws.stats["pongs"] += 1
                        ws.last_pong = payload
            except (Closed, ProtocolError):
                return
            ws.send_text("pong " + ws.last_pong.decode("utf-8", "replace"))
        elif cmd == "big":
            ws.send_text("x" * int(arg))
        elif cmd == "close":
            ws.close(int(arg or 1000), "server closing")
            try:                                   # wait for the client's close echo
                while True:
                    fin, op, payload = ws.read_frame()
                    if op == OP_CLOSE:
                        ws.stats["close_code"] = (struct.unpack("!H", payload[:2])[0]
                                                  if len(payload) >= 2 else 1005)
                        return
            except (Closed, ProtocolError):
                return
        elif cmd == "stats":
            ws.send_text(json.dumps(ws.stats))
        else:
            ws.send_text("unknown command " + cmd)


def random_mask():
    return os.urandom(4)
