"""The seed's design, for the side-by-side benchmark: Flyte's webhook app as the seed page has it.

A FastAPI app that checks a static bearer key, then starts the run inside the request, as
`flyte.run(remote.Task.get(...), **inputs)` does: fetch the task (GetTaskDetails), then CreateRun,
and answer with the run's name and URL. No queue, no retries, no record.

Made as fast as that design allows, so the comparison is with its best version: one pooled
aiohttp session per process, opened at start-up (httpx's pool serialises under load: against the
schema-checking stand-in it did 178/s where aiohttp did ~670/s), and uvicorn with one worker
process per core
(`bench/run` starts it so). The benchmark points it at a canned Flyte that answers at a fixed
latency without checking anything (FLYTE_ENDPOINT), so the seed does not pay for the stand-in's
schema checks.

Run: uvicorn app:app --workers 2 --port 8000.
"""

import os
import secrets
from contextlib import asynccontextmanager

import aiohttp
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

WEBHOOK_API_KEY = os.getenv("WEBHOOK_API_KEY", "test-api-key")
FLYTE_ENDPOINT = os.getenv("FLYTE_ENDPOINT", "http://127.0.0.1:8090")
security = HTTPBearer()
flyte: aiohttp.ClientSession


@asynccontextmanager
async def lifespan(_: FastAPI):
    global flyte
    # No cap on the pool: the load's connections are the only bound, as in the seed.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(FLYTE_ENDPOINT, connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as flyte:
        yield


app = FastAPI(lifespan=lifespan)


async def verify_token(credentials: HTTPAuthorizationCredentials = Security(security)):
    if credentials.credentials != WEBHOOK_API_KEY:
        raise HTTPException(status_code=401, detail="Invalid API key")
    return credentials


async def rpc(method: str, body: dict) -> dict:
    async with flyte.post(f"/{method}", json=body, headers={"Connect-Protocol-Version": "1"}) as response:
        if response.status != 200:
            raise HTTPException(status_code=502, detail=await response.text())
        return await response.json()


def literal(value):
    if isinstance(value, bool):
        return {"scalar": {"primitive": {"boolean": value}}}
    if isinstance(value, int):
        return {"scalar": {"primitive": {"integer": str(value)}}}
    if isinstance(value, float):
        return {"scalar": {"primitive": {"floatValue": value}}}
    return {"scalar": {"primitive": {"stringValue": str(value)}}}


@app.post("/run-task/{project}/{domain}/{name}/{version}")
async def run_task(project: str, domain: str, name: str, version: str, request: Request,
                   _: HTTPAuthorizationCredentials = Depends(verify_token)):
    inputs = await request.json()
    task_id = {"project": project, "domain": domain, "name": name, "version": version}
    await rpc("flyteidl2.task.TaskService/GetTaskDetails", {"taskId": task_id})
    run_name = "r" + secrets.token_hex(10)
    await rpc("flyteidl2.workflow.RunService/CreateRun", {
        "runId": {"project": project, "domain": domain, "name": run_name},
        "taskId": task_id,
        "inputs": {"literals": [{"name": k, "value": literal(v)} for k, v in inputs.items()]},
    })
    return {"url": f"{FLYTE_ENDPOINT}/v2/domain/{domain}/project/{project}/runs/{run_name}", "name": run_name}
