#!/usr/bin/env python3
"""benches/soak/soak.sh's WebSocket and outbound traffic (standard library only).

  tunnels.py upstream PORT
      A WebSocket upstream: answers an upgrade with 101 and echoes bytes until
      the peer closes (nginx routes /ws here).
  tunnels.py drive INBOUND OUTBOUND TOKEN SECONDS
      For SECONDS: opens WebSocket tunnels through tokengate inbound (4 a
      second, each 5 echoed frames over 1 s; every 10th without a token, which
      must be refused with 401), and sends requests through tokengate outbound
      (Host inject.bench, 40 a second) whose token it renews. Prints RESULT.
"""
import asyncio
import base64
import hashlib
import os
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


async def upstream_conn(reader, writer):
    try:
        _, headers = await read_head(reader)
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def frame(payload):
    """A masked client text frame (RFC 6455 §5.2), payload < 126 bytes."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def tunnel(port, token, counts):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        writer.write(
            (
                f"GET /ws/echo HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{auth}\r\n"
            ).encode()
        )
        status, _ = await asyncio.wait_for(read_head(reader), 5)
        if not token:
            counts["refused" if " 401 " in status + " " else "unexpected"] += 1
            return
        if " 101 " not in status + " ":
            counts["unexpected"] += 1
            return
        for n in range(5):
            sent = frame(f"soak {n}".encode())
            writer.write(sent)
            await writer.drain()
            echoed = await asyncio.wait_for(reader.readexactly(len(sent)), 5)
            if echoed != sent:
                counts["unexpected"] += 1
                return
            await asyncio.sleep(0.2)
        counts["tunnels"] += 1
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        counts["failed"] += 1
    finally:
        writer.close()


async def outbound(port, seconds, counts):
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while loop.time() < end:
        try:
            writer.write(b"GET /egress HTTP/1.1\r\nHost: inject.bench\r\n\r\n")
            status, headers = await asyncio.wait_for(read_head(reader), 5)
            await reader.readexactly(int(headers.get("content-length", "0")))
            counts["outbound_ok" if " 200 " in status + " " else "outbound_other"] += 1
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            counts["outbound_failed"] += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(1 / 40)
    writer.close()


async def drive(inbound, outbound_port, token, seconds):
    counts = dict.fromkeys(
        ["tunnels", "refused", "failed", "unexpected", "outbound_ok", "outbound_other", "outbound_failed"], 0
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    out = asyncio.create_task(outbound(outbound_port, seconds, counts))
    running, n = set(), 0
    while loop.time() < end:
        n += 1
        task = asyncio.create_task(tunnel(inbound, None if n % 10 == 0 else token, counts))
        running.add(task)
        task.add_done_callback(running.discard)
        await asyncio.sleep(0.25)
    await asyncio.gather(out, *running)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


async def serve(port):
    server = await asyncio.start_server(upstream_conn, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["upstream"]:
        asyncio.run(serve(int(sys.argv[2])))
    elif sys.argv[1:2] == ["drive"]:
        inbound_port, outbound_port, token, seconds = sys.argv[2:6]
        asyncio.run(drive(int(inbound_port), int(outbound_port), token, float(seconds)))
    else:
        sys.exit(__doc__)
