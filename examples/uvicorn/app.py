"""A minimal ASGI app for keepup's uvicorn recipe (no framework needed)."""
import asyncio
import json
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        # A request that takes 2 s; the marker lets a test know it is in progress.
        open(os.path.join(os.path.dirname(__file__), "slow.started"), "w").close()
        await asyncio.sleep(2)
        body = {"msg": "slow done"}
    else:
        body = {"msg": "running"}
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
