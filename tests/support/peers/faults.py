"""A misbehaving HTTP/1.1 server for fetch tests, run as a separate process: `python -I faults.py ROOT`.

It prints its port on stdout once it listens on 127.0.0.1, then serves until killed. It owns the faults a
well-behaved server cannot be made to produce (RST, short bodies, stalls, huge bodies) and a small file server
that counts requests. Standard library only: it runs isolated (`-I`) from the tests' sys.path, where
`tests/support/peers/http.py` would otherwise shadow the stdlib `http` package.

Routes (a fault route may carry any prefix, `/<tag>/big` behaves like `/big`, so tests count their own paths):
    /reset                 read the request, close with RST (SO_LINGER 0)
    /truncated             Content-Length: 1000, 100 bytes of XML, then FIN
    /stall                 headers (Content-Length: 1000) and 10 bytes, then nothing until the client goes away
    /stall-headers         read the request, never answer, until the client goes away
    /big?bytes=N           well-formed XML of exactly N bytes (padding in a comment), with Content-Length
    /big-chunked?bytes=N   the same body, chunked, no Content-Length
    /slow?ms=M             wait M ms, then `<keys/>`
    /challenge             401 with `WWW-Authenticate: Basic` (no Authorization) or `<keys/>` (with one):
                           a server that would take credentials provd must not send it (see /requests)
    /file/<relpath>        a file under ROOT, with a strong ETag and Last-Modified; 304 on a match
    /count                 JSON {path: requests seen}, every path but /count and /requests
    /requests              JSON list of {method, target, path, headers} for every request but those two
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import socket
import struct
import sys
from collections import Counter
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BIG_HEAD = b"<keys><!-- "
BIG_TAIL = b" -->\n</keys>\n"
CHUNK = 64 * 1024


class Request:
    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        split = urlsplit(target)
        self.path = unquote(split.path)
        self.query = parse_qs(split.query)

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def int_header(self, name: str) -> int:
        value = self.headers.get(name, "0")
        return int(value) if value.isdigit() else 0

    def int_param(self, name: str) -> int | None:
        try:
            value = int(self.query[name][0])
        except (KeyError, ValueError):
            return None
        return value if value >= 0 else None


def parse_head(head: bytes) -> Request | None:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
    return Request(parts[0], parts[1], parts[2], headers)


def response_head(status: int, headers: list[tuple[str, str]], *, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             f"Date: {email.utils.formatdate(usegmt=True)}", "Server: provd-faults"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def big_body_chunks(total: int) -> list[bytes] | None:
    """`total` bytes of well-formed XML, as chunks of at most CHUNK bytes; None if `total` is too small."""
    padding = total - len(BIG_HEAD) - len(BIG_TAIL)
    if padding < 0:
        return None
    chunks = [BIG_HEAD]
    while padding > 0:
        size = min(padding, CHUNK)
        chunks.append(b"x" * size)
        padding -= size
    chunks.append(BIG_TAIL)
    return chunks


class FaultServer:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.counts: Counter[str] = Counter()
        self.requests: list[dict[str, Any]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                request = parse_head(head)
                if request is None:
                    await self.simple(writer, 400, b"bad request\n", keep_alive=False)
                    return
                length = request.int_header("content-length")
                if length:
                    await reader.readexactly(length)
                if request.path not in ("/count", "/requests"):
                    self.counts[request.path] += 1
                    self.requests.append({"method": request.method, "target": request.target,
                                          "path": request.path, "headers": request.headers})
                if not await self.route(request, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def route(self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection may serve another."""
        path = request.path
        if path == "/count":
            return await self.json(writer, dict(self.counts), request)
        if path == "/requests":
            return await self.json(writer, self.requests, request)
        if path.startswith("/file/"):
            return await self.file(writer, request, path.removeprefix("/file/"))
        fault = path.rstrip("/").rsplit("/", 1)[-1]
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            # l_onoff=1, l_linger=0: close() discards the send queue and sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "truncated":
            body = (b"<keys>" + b"<!-- truncated on purpose " + b"." * 100)[:100]
            writer.write(response_head(200, [("Content-Type", "application/xml"), ("Content-Length", "1000")],
                                       keep_alive=False) + body)
            await writer.drain()
            return False
        if fault == "stall":
            writer.write(response_head(200, [("Content-Type", "application/xml"), ("Content-Length", "1000")],
                                       keep_alive=True) + b"<keys>    ")
            await writer.drain()
            await until_eof(reader)
            return False
        if fault == "stall-headers":
            await until_eof(reader)
            return False
        if fault in ("big", "big-chunked"):
            total = request.int_param("bytes")
            chunks = big_body_chunks(total) if total is not None else None
            if chunks is None:
                minimum = len(BIG_HEAD) + len(BIG_TAIL)
                return await self.simple(writer, 400, f"bytes=N needs N >= {minimum}\n".encode(),
                                         keep_alive=request.keep_alive)
            return await self.big(writer, request, chunks, chunked=fault == "big-chunked")
        if fault == "challenge":
            if "authorization" in request.headers:
                return await self.simple(writer, 200, b"<keys/>", keep_alive=request.keep_alive,
                                         content_type="application/xml")
            return await self.simple(writer, 401, b"credentials, please\n", keep_alive=request.keep_alive,
                                     extra=[("WWW-Authenticate", 'Basic realm="faults"')])
        if fault == "slow":
            await asyncio.sleep((request.int_param("ms") or 0) / 1000)
            return await self.simple(writer, 200, b"<keys/>", keep_alive=request.keep_alive,
                                     content_type="application/xml")
        return await self.simple(writer, 404, b"not found\n", keep_alive=request.keep_alive)

    async def simple(self, writer: asyncio.StreamWriter, status: int, body: bytes, *, keep_alive: bool,
                     content_type: str = "text/plain", extra: list[tuple[str, str]] | None = None,
                     head_only: bool = False) -> bool:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *(extra or [])]
        writer.write(response_head(status, headers, keep_alive=keep_alive) + (b"" if head_only else body))
        await writer.drain()
        return keep_alive

    async def json(self, writer: asyncio.StreamWriter, value: object, request: Request) -> bool:
        return await self.simple(writer, 200, json.dumps(value, sort_keys=True).encode(),
                                 keep_alive=request.keep_alive, content_type="application/json")

    async def big(self, writer: asyncio.StreamWriter, request: Request, chunks: list[bytes], *,
                  chunked: bool) -> bool:
        framing = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(sum(map(len, chunks))))
        writer.write(response_head(200, [("Content-Type", "application/xml"), framing],
                                   keep_alive=request.keep_alive))
        for chunk in chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return request.keep_alive

    async def file(self, writer: asyncio.StreamWriter, request: Request, relpath: str) -> bool:
        target = (self.root / relpath).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            return await self.simple(writer, 404, b"not found\n", keep_alive=request.keep_alive)
        data = target.read_bytes()
        mtime = int(target.stat().st_mtime)
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        validators = [("ETag", etag), ("Last-Modified", email.utils.formatdate(mtime, usegmt=True))]
        if not_modified(request, etag, mtime):
            writer.write(response_head(304, validators, keep_alive=request.keep_alive))
            await writer.drain()
            return request.keep_alive
        content_type = "application/xml" if target.suffix == ".xml" else "application/octet-stream"
        return await self.simple(writer, 200, data, keep_alive=request.keep_alive, content_type=content_type,
                                 extra=validators, head_only=request.method == "HEAD")


def not_modified(request: Request, etag: str, mtime: int) -> bool:
    """RFC 9110 §13.2.2: If-None-Match, when present, decides alone; else If-Modified-Since."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or etag in tags
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        return mtime <= int(email.utils.parsedate_to_datetime(since).timestamp())
    except (TypeError, ValueError):
        return False


async def until_eof(reader: asyncio.StreamReader) -> None:
    """Wait until the client closes its side (or resets): the only way a stalled exchange ends."""
    try:
        while await reader.read(CHUNK):
            pass
    except ConnectionError:
        pass


async def main(root: Path) -> None:
    faults = FaultServer(root)
    server = await asyncio.start_server(faults.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
