"""A permessage-deflate client for tests/socket_clients.rs: Python `websockets` (which offers
permessage-deflate and compresses what it sends). Connects to ws://127.0.0.1:PORT/socket, INITs
to USER_ID, prints `EXTENSIONS <header>` and `READY`, then prints the first PRESENCE_UPDATE's
JSON as `UPDATE <json>`."""

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(port: int, user_id: str) -> None:
    async with connect(f"ws://127.0.0.1:{port}/socket", compression="deflate", max_size=None) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        print("EXTENSIONS", ext, flush=True)
        hello = json.loads(await ws.recv())
        assert hello["op"] == 1, hello
        await ws.send(json.dumps({"op": 2, "d": {"user_id": user_id}}))
        ack = json.loads(await ws.recv())
        assert ack["t"] == "INIT_ACK", ack
        print("READY", flush=True)
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg["t"] == "PRESENCE_UPDATE":
                print("UPDATE", json.dumps(msg), flush=True)
                return


asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
