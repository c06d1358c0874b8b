"""Drives a running Cove VM through its QMP socket with the stock qemu.qmp client.

Usage: drive_vm.py SOCKET

Pauses, checks the status, resumes, resets, requests power-down, queries CPUs and disks and
quits, checking the reply and the event of each step. Prints one line per step; exits non-zero
(with the reason) on the first surprise.
"""

import asyncio
import sys

from qemu.qmp import QMPClient

TIMEOUT = 60


async def next_event(qmp, name):
    """The next event, which must be `name`."""
    event = await asyncio.wait_for(qmp.events.get(), TIMEOUT)
    if event["event"] != name:
        raise AssertionError(f"expected event {name}, got {dict(event)}")
    if "timestamp" not in event or "seconds" not in event["timestamp"]:
        raise AssertionError(f"event without a timestamp: {dict(event)}")
    print(f"event {name} {dict(event).get('data', {})}", flush=True)
    return event


async def status(qmp, expected):
    reply = await qmp.execute("query-status")
    if reply["status"] != expected or reply["running"] != (expected == "running"):
        raise AssertionError(f"status {reply}, expected {expected}")
    print(f"status {expected}", flush=True)


async def main(path):
    qmp = QMPClient("cove-test")
    await qmp.connect(path)
    print(f"connected: {qmp.greeting.QMP.version['package']}", flush=True)

    await status(qmp, "running")
    await qmp.execute("stop")
    await next_event(qmp, "STOP")
    await status(qmp, "paused")
    await qmp.execute("cont")
    await next_event(qmp, "RESUME")
    await status(qmp, "running")

    await qmp.execute("system_reset")
    reset = await next_event(qmp, "RESET")
    if reset["data"] != {"guest": False, "reason": "host-qmp-system-reset"}:
        raise AssertionError(f"RESET data {reset['data']}")
    await status(qmp, "running")

    await qmp.execute("system_powerdown")
    await next_event(qmp, "POWERDOWN")

    cpus = await qmp.execute("query-cpus-fast")
    if len(cpus) != 1 or "thread-id" not in cpus[0]:
        raise AssertionError(f"query-cpus-fast {cpus}")
    print(f"cpus {len(cpus)} thread {cpus[0]['thread-id']}", flush=True)
    blocks = await qmp.execute("query-block")
    if [b["device"] for b in blocks] != ["disk0"] or blocks[0]["inserted"]["drv"] != "raw":
        raise AssertionError(f"query-block {blocks}")
    print(f"block {blocks[0]['inserted']['file']}", flush=True)
    commands = {c["name"] for c in await qmp.execute("query-commands")}
    if not {"stop", "cont", "quit", "query-status"} <= commands:
        raise AssertionError(f"query-commands {commands}")

    await qmp.execute("quit")
    shutdown = await next_event(qmp, "SHUTDOWN")
    if shutdown["data"] != {"guest": False, "reason": "host-qmp-quit"}:
        raise AssertionError(f"SHUTDOWN data {shutdown['data']}")
    # After quit the VM closes the socket (as QEMU does); the client may see that EOF before
    # it disconnects itself.
    try:
        await qmp.disconnect()
    except EOFError:
        pass
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
