#!/usr/bin/env python3
"""Whole-VM boot benchmark for Cove.

Boots the guest test kernel N times with `cove run` and prints:
  - wall time from exec to the end of kernel initialisation ("Run /init as init process"):
    median and spread (min, max, stdev);
  - the VMM's RSS beyond guest RAM, sampled at that moment from /proc/PID/smaps (total RSS minus
    the resident part of the guest-memory mapping);
  - instructions emulated by the host's KVM (KVM statistic insn_emulation, summed over vCPUs),
    so figures from different hosts can be compared.

Usage: bench/boot_bench.py [--runs N] [--cpus N] [--memory 256M] [--kernel PATH --initrd PATH]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT_LINE = b"Run /init as init process"


def parse_size(text):
    units = {"K": 10, "M": 20, "G": 30}
    return int(text[:-1]) << units[text[-1].upper()] if text[-1].upper() in units else int(text)


def guest_and_total_rss_kib(pid, guest_bytes):
    """(total RSS, RSS of mappings at least as large as guest RAM) in KiB."""
    total = guest = 0
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                size = end - start
            elif line.startswith("Rss:"):
                kib = int(line.split()[1])
                total += kib
                if size is not None and size >= guest_bytes:
                    guest += kib
    return total, guest


def one_boot(cove, args, guest_bytes):
    cmd = [cove, "run", "--kernel", args.kernel, "--initrd", args.initrd,
           "--append", "console=ttyS0 panic=-1", "--cpus", str(args.cpus),
           "--memory", args.memory, "--no-reboot", "--stats"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    result = {}
    stderr_chunks = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()))
    reader.start()
    buf = b""
    while True:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        buf += chunk
        if "init_s" not in result and INIT_LINE in buf:
            result["init_s"] = time.monotonic() - start
            try:
                total, guest = guest_and_total_rss_kib(proc.pid, guest_bytes)
                result["rss_total_kib"] = total
                result["rss_beyond_guest_kib"] = total - guest
            except OSError:
                pass
    proc.wait()
    reader.join()
    err = b"".join(stderr_chunks).decode(errors="replace")
    m = re.search(r"kvm_emulated_instructions=(\d+)", err)
    if m:
        result["emulated"] = int(m.group(1))
    if "init_s" not in result:
        sys.stderr.write(err[-3000:])
        raise SystemExit("boot did not reach init")
    return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--memory", default="256M")
    p.add_argument("--kernel")
    p.add_argument("--initrd")
    args = p.parse_args()
    if not args.kernel:
        kdir = subprocess.check_output(["bash", os.path.join(ROOT, "kernel/build-test-kernel.sh")],
                                       text=True).strip()
        pvm = os.path.isdir("/sys/module/kvm_pvm")
        args.kernel = os.path.join(kdir, "vmlinux" if pvm else "bzImage")
        args.initrd = os.path.join(kdir, "initramfs.cpio")
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "cove"], cwd=ROOT)
    cove = os.path.join(ROOT, "target/release/cove")
    guest_bytes = parse_size(args.memory)
    runs = []
    for i in range(args.runs):
        r = one_boot(cove, args, guest_bytes)
        runs.append(r)
        print(f"run {i + 1}: init at {r['init_s']:.2f} s, RSS beyond guest RAM "
              f"{r.get('rss_beyond_guest_kib', 0) / 1024:.1f} MiB, "
              f"emulated instructions {r.get('emulated', 0):,}", flush=True)
    times = [r["init_s"] for r in runs]
    print(f"\nkernel: {args.kernel}\nvCPUs: {args.cpus}, memory: {args.memory}, runs: {len(runs)}")
    print(f"boot to end of kernel init: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s, "
          f"stdev {statistics.stdev(times) if len(times) > 1 else 0:.2f} s")
    rss = [r["rss_beyond_guest_kib"] for r in runs if "rss_beyond_guest_kib" in r]
    if rss:
        print(f"VMM RSS beyond guest RAM: median {statistics.median(rss) / 1024:.1f} MiB")
    emu = [r["emulated"] for r in runs if "emulated" in r]
    if emu:
        print(f"KVM emulated instructions per boot (whole run): median {int(statistics.median(emu)):,}")


if __name__ == "__main__":
    main()
