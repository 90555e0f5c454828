"""Drives lanyard-py 2.0.1 (PyPI) against a lantern server, for tests/lanyard_clients.rs.

Each step prints one JSON line {"step": ..., ...}: what the client returned, or what it raised.
The Rust test checks every line against the server's own state.

    python lanyard_py.py rest BASE USER_ID TOKEN UNKNOWN_ID
    python lanyard_py.py ws BASE USER_ID [USER_ID...]   (then one line per event, until stdin closes)
"""
import asyncio
import json
import sys

from lanyard import LanyardClient
from lanyard.http import AiohttpProvider


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


async def outcome(step, call):
    try:
        emit(step, returned=await call)
    except Exception as e:  # the client's own exception types, reported by name
        emit(step, raised=type(e).__name__, status=getattr(e, "status_code", None), code=getattr(e, "code", None))


async def rest(base, user, token, unknown):
    async with LanyardClient(AiohttpProvider(), base_url=base, retry_attempts=1) as client:
        await outcome("get_user", client.get_user(user))
        await outcome("get_me", client.get_me(token=token))
        await outcome("get_unknown", client.get_user(unknown))
        await outcome("set_kv", client.set_kv(user, "py_song", "Take On Me", token=token))
        await outcome("update_kv", client.update_kv(user, {"a": "1", "b_2": "two"}, token=token))
        await outcome("delete_kv", client.delete_kv(user, "a", token=token))
        await outcome("set_kv_wrong_token", client.set_kv(user, "x", "y", token="not-a-key"))
        await outcome("get_after", client.get_user(user))


async def ws(base, users, all_users):
    ws_url = base.replace("http://", "ws://") + "/socket"
    async with LanyardClient(AiohttpProvider(), base_url=base, ws_url=ws_url) as client:
        stream = client.subscribe(*users, subscribe_to_all=all_users)
        async for data in stream:
            emit("event", data=data)


def main():
    mode = sys.argv[1]
    if mode == "rest":
        asyncio.run(rest(*sys.argv[2:6]))
    elif mode == "ws":
        asyncio.run(ws(sys.argv[2], sys.argv[3:], False))
    elif mode == "ws_all":
        asyncio.run(ws(sys.argv[2], [], True))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
