"""Checks with the stock qemu.qmp client that Cove's `stop` and `cont` are synchronous.

Usage: stop_sync.py SOCKET   (the VM started with wait=on, so it boots once this connects)

At several moments from start to well into boot, sends `stop` and then `query-status` at
once: the status must be `paused`, and the STOP event must already be in the client's event
listener when `stop` returns (QEMU sends it before the reply). `cont` must likewise return
with the VM running and RESUME received. Rounds: right after connecting, 0.2, 1 and 3 s after
it, once the test says the guest printed "Linux version" (a line on stdin), and right after a
`system_reset` (the machine being rebuilt). Then quits the VM. Prints one line per round and
"done"; exits non-zero with the reason on the first surprise.
"""

import asyncio
import sys
import time

from qemu.qmp import QMPClient


async def status(qmp, expected, label):
    reply = await qmp.execute("query-status")
    if reply["status"] != expected or reply["running"] != (expected == "running"):
        raise AssertionError(f"{label}: status {reply}, expected {expected}")


async def command(qmp, name, event, expected, label):
    """Runs `name`; its `event` must already be received when it returns, and the status
    straight after must be `expected`."""
    qmp.events.clear()
    await qmp.execute(name)
    received = [e["event"] for e in qmp.events.clear()]
    if event not in received:
        raise AssertionError(
            f"{label}: {name} returned before its {event} event (received: {received})"
        )
    await status(qmp, expected, label)


async def round_trip(qmp, label):
    await command(qmp, "stop", "STOP", "paused", label)
    await command(qmp, "cont", "RESUME", "running", label)
    print(f"{label}: paused, then running", flush=True)


async def main(path):
    qmp = QMPClient("cove-stop-sync")
    await qmp.connect(path)
    start = time.monotonic()
    await round_trip(qmp, "at connect")
    for delay in (0.2, 1, 3):
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        await round_trip(qmp, f"at {delay} s")

    print("waiting for Linux version", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise AssertionError("the test closed stdin")
    await round_trip(qmp, "after Linux version")

    # During a reset: the stop reaches the VM while its machine is being rebuilt.
    await qmp.execute("system_reset")
    await round_trip(qmp, "during reset")

    await qmp.execute("quit")
    try:
        await qmp.disconnect()
    except EOFError:
        pass
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
