"""A minimal gRPC unary client written straight onto HTTP/2 frames, for the
Create load: grpcio's clients spent 200 to 700 µs of CPU a call here, on the two
cores the service shares, and h2load (about 30 µs a call) cannot vary the body.

One connection, one call at a time, as h2load's clients do. The request's
header block is encoded once (HPACK literals, never indexed, so it needs no
table of ours); the response's headers are not decoded at all: a success is a
response that carried a message before its END_STREAM, a gRPC error carries
none (the server answers an error trailers-only), and the benchmark checks
the rows written besides.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from typing import cast

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_ENABLE_PUSH = 0x4, 0x2
OUR_WINDOW = 1 << 30  # what the server may send before we acknowledge it
_FRAME_HEAD = struct.Struct(">I B I")  # length << 8 | type, flags, stream id


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _FRAME_HEAD.pack(len(payload) << 8 | kind, flags, stream) + payload


def _hpack_int(value: int, prefix_bits: int, high: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((high | value,))
    out = [high | limit]
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_str(text: str) -> bytes:
    raw = text.encode()
    return _hpack_int(len(raw), 7, 0) + raw  # not Huffman-coded


def header_block(authority: str, path: str, metadata: dict[str, str]) -> bytes:
    """A gRPC request's headers: indexed where the static table has the whole
    field, else literals without indexing (RFC 7541 6.1, 6.2.2)."""
    static_names = {":authority": 1, ":path": 4, "authorization": 23, "content-type": 31}
    fields = {
        ":authority": authority,
        ":path": path,
        "content-type": "application/grpc",
        "te": "trailers",
        **metadata,
    }
    block = b"\x83\x86"  # :method POST, :scheme http
    for name, value in fields.items():
        index = static_names.get(name)
        head = _hpack_int(index, 4, 0) if index else b"\x00" + _hpack_str(name)
        block += head + _hpack_str(value)
    return block


class Refused(Exception):
    """The server reset the call or closed the connection."""


class GrpcConnection(asyncio.Protocol):
    """One HTTP/2 connection making unary calls one after another."""

    def __init__(self, authority: str, path: str, metadata: dict[str, str]) -> None:
        self._headers = header_block(authority, path, metadata)
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._stream = -1
        self._next_stream = 1
        self._got_message = False
        self._answer: asyncio.Future[bool] | None = None
        self._send_window = 65535  # the connection's, until the server grants more
        self._window_opened: asyncio.Future[None] | None = None
        self._unacknowledged = 0
        self._closed: BaseException | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, metadata: dict[str, str], *, tls: bool = False
    ) -> GrpcConnection:
        """tls: over TLS (HTTP/2 by ALPN), the server's certificate not checked (the bench's own)."""
        loop = asyncio.get_running_loop()
        context = None
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
        _, conn = await loop.create_connection(
            lambda: cls(f"{host}:{port}", path, metadata), host, port, ssl=context
        )
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast("asyncio.Transport", transport)  # a stream transport
        settings = struct.pack(">HIHI", SETTINGS_ENABLE_PUSH, 0, SETTINGS_INITIAL_WINDOW_SIZE, OUR_WINDOW)
        transport.write(
            PREFACE
            + frame(SETTINGS, 0, 0, settings)
            + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", OUR_WINDOW - 65535))
        )

    async def call(self, message: bytes) -> bool:
        """Send one request message; True when a response message came back."""
        if self._closed is not None:
            raise Refused(str(self._closed))
        body = b"\x00" + len(message).to_bytes(4, "big") + message
        while self._send_window < len(body):
            self._window_opened = asyncio.get_running_loop().create_future()
            await self._window_opened
        self._send_window -= len(body)
        self._stream, self._next_stream = self._next_stream, self._next_stream + 2
        self._got_message = False
        self._answer = asyncio.get_running_loop().create_future()
        assert self._transport is not None
        self._transport.write(
            frame(HEADERS, END_HEADERS, self._stream, self._headers)
            + frame(DATA, END_STREAM, self._stream, body)
        )
        return await self._answer

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset, size = 0, len(buffer)
        while size - offset >= 9:
            head, flags, stream = _FRAME_HEAD.unpack_from(buffer, offset)
            length, kind = head >> 8, head & 0xFF
            if size - offset - 9 < length:
                break
            start = offset + 9
            offset = start + length
            self._on_frame(kind, flags, stream & 0x7FFFFFFF, buffer, start, length)
        self._buffer = buffer[offset:]

    def _on_frame(self, kind: int, flags: int, stream: int, buffer: bytes, start: int, length: int) -> None:
        if kind == DATA:
            self._unacknowledged += length
            if self._unacknowledged > OUR_WINDOW // 2:
                self._write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacknowledged)))
                self._unacknowledged = 0
            if stream == self._stream and length > 0:
                self._got_message = True
            if flags & END_STREAM:
                self._finish(stream, self._got_message)
        elif kind == HEADERS:
            if flags & END_STREAM:
                self._finish(stream, self._got_message)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._write(frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if not flags & ACK:
                self._write(frame(PING, ACK, 0, buffer[start : start + length]))
        elif kind == WINDOW_UPDATE:
            if stream == 0:
                self._send_window += struct.unpack_from(">I", buffer, start)[0] & 0x7FFFFFFF
                if self._window_opened is not None and not self._window_opened.done():
                    self._window_opened.set_result(None)
        elif kind == RST_STREAM:
            if stream == self._stream and self._answer is not None and not self._answer.done():
                self._answer.set_exception(Refused(f"stream reset, code {buffer[start : start + 4].hex()}"))
        elif kind == GOAWAY:
            self._fail(Refused("the server sent GOAWAY"))

    def _finish(self, stream: int, ok: bool) -> None:
        if stream == self._stream and self._answer is not None and not self._answer.done():
            self._answer.set_result(ok)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _fail(self, exc: BaseException) -> None:
        self._closed = exc
        for waiter in (self._answer, self._window_opened):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or Refused("connection closed"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
