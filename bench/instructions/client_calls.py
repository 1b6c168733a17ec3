"""N requests through one upstream client of the transport seam (the body of
``bench/instructions/client``, which runs this under callgrind twice and divides the
difference by the difference of N), against ``--serve``'s upstream in another process.

    python client_calls.py --serve PORT            # the upstream (not measured)
    python client_calls.py CLIENT MODE N URL       # CLIENT: aiohttp, pyreqwest; MODE: json, stream

The upstream answers any request with Azure's shapes: ``json``, a 0.9 KB chat completion with
its length; ``stream``, 24 SSE events, each its own chunk (chunked encoding). Requests are
sent one at a time on one kept-alive connection, read whole (``json``) or chunk by chunk
(``stream``), as the relay reads them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

import uvloop

from keyguard.core.transport import UpstreamClient
from keyguard.proxy.aiohttp_client import new_upstream_session
from keyguard.proxy.pyreqwest_client import new_pyreqwest_upstream

JSON = (
    b'{"id":"chatcmpl-1","object":"chat.completion","usage":{"prompt_tokens":9}' + b" " * 860 + b"}"
)
EVENT = b'data: {"choices":[{"delta":{"content":"word "},"index":0}]}' + b" " * 180 + b"\n\n"
HEADERS = {"Content-Type": "application/json", "api-key": "k", "Accept-Encoding": "identity"}


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buffer = cast(asyncio.Transport, transport), b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            if b"stream" in head.split(b"\r\n")[0]:
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for _ in range(24):
                    self.transport.write(b"%x\r\n%s\r\n" % (len(EVENT), EVENT))
                self.transport.write(b"0\r\n\r\n")
            else:
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(JSON), JSON)
                )


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def calls(client_name: str, mode: str, n: int, url: str) -> None:
    make = {"aiohttp": new_upstream_session, "pyreqwest": new_pyreqwest_upstream}[client_name]
    client: UpstreamClient = make(connect_timeout=5, read_timeout=30, max_connections=16)
    target = f"{url}/{mode}"
    try:
        for _ in range(n):
            answer = await client.send("POST", target, HEADERS, b'{"messages":[]}', True)
            async with answer:
                if mode == "json":
                    assert len(await answer.read_all()) == len(JSON)
                else:
                    got = 0
                    while chunk := await answer.read_chunk():
                        got += len(chunk)
                    assert got == 24 * len(EVENT)
    finally:
        await client.close()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        uvloop.run(serve(int(sys.argv[2])))
    else:
        uvloop.run(calls(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
