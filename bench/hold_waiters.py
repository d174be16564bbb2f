"""Helpers of `bench/profile waiters`, standard library only.

hold_waiters.py INGRESS_URL KEY COUNT SIM_URL INGRESS_PID RUNS_BEFORE
    Waits until flyte-sim has RUNS_BEFORE runs (the warm-up's), holds COUNT run-and-wait
    requests open (one connection each, paced at 200/s so the ingress under valgrind keeps up),
    waits until flyte-sim has a run for every one, then interrupts the ingress (DHAT writes its
    profile when the process ends) and lets the connections go. Fails after a minute, or as
    soon as a held request is answered.

hold_waiters.py --report DHAT_JSON
    The heap at its peak (t-gmax), by the first frame of each allocation's stack that is not an
    allocator, sorted by size.
"""

import asyncio
import json
import os
import signal
import sys
import urllib.parse
import urllib.request
from collections import defaultdict

TASK = "flytesnacks/development/hello.main/v1"


def runs_created(sim_url):
    with urllib.request.urlopen(f"{sim_url}/_sim/stats") as answer:
        return json.load(answer)["runs_created"]


async def runs_reach(sim_url, count, connections, deadline):
    loop = asyncio.get_running_loop()
    while runs_created(sim_url) < count:
        for reader, _ in connections:
            answer = await peek(reader)
            if reader.at_eof() or answer:
                answer += await reader.read(200)
                sys.exit(f"a run-and-wait request was answered before its run ended: {answer!r}")
        if loop.time() > deadline:
            sys.exit(f"flyte-sim did not reach {count} runs within a minute")
        await asyncio.sleep(0.5)


async def peek(reader):
    try:
        return await asyncio.wait_for(reader.read(1), 0.001)
    except TimeoutError:
        return b""


async def hold(ingress_url, key, count, sim_url, ingress_pid, runs_before):
    url = urllib.parse.urlsplit(ingress_url)
    loop = asyncio.get_running_loop()
    await runs_reach(sim_url, runs_before, [], loop.time() + 60)
    connections = []
    for n in range(count):
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        body = json.dumps({"name": f"waiter-{n}"}).encode()
        writer.write(
            (
                f"POST /run-task-and-wait/{TASK}?wait=300s HTTP/1.1\r\n"
                f"Host: {url.netloc}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await writer.drain()
        connections.append((reader, writer))
        await asyncio.sleep(1 / 200)
    await runs_reach(sim_url, runs_before + count, connections, loop.time() + 60)
    print(f"{count} run-and-wait requests held", flush=True)
    os.kill(ingress_pid, signal.SIGINT)
    for _, writer in connections:
        writer.close()


def report(path):
    with open(path) as file:
        profile = json.load(file)
    frames = profile["ftbl"]
    allocator = ("alloc::", "__rust", "__rdl", "malloc", "calloc", "realloc", "<alloc::", "hashbrown::raw", "bytes::bytes_mut::BytesMut::reserve")
    by_site = defaultdict(lambda: [0, 0])
    for point in profile["pps"]:
        site = "?"
        for index in point["fs"]:
            name = frames[index].split(": ", 1)[-1]
            if not name.startswith(allocator) and "vg_replace_malloc" not in name:
                site = name[:150]
                break
        by_site[site][0] += point.get("gb", 0)
        by_site[site][1] += point.get("gbk", 0)
    total = sum(bytes_ for bytes_, _ in by_site.values())
    print(f"heap at its peak: {total / 2**20:.1f} MiB")
    for site, (bytes_, blocks) in sorted(by_site.items(), key=lambda item: -item[1][0])[:25]:
        print(f"{bytes_ / 2**20:8.2f} MiB {blocks:8d} blocks  {site}")


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2])
    else:
        ingress_url, key, count, sim_url, pid, before = sys.argv[1:7]
        asyncio.run(hold(ingress_url, key, int(count), sim_url, int(pid), int(before)))
