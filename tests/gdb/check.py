#!/usr/bin/env python3
"""Check tools/weft-gdb.py on gdb_target, in two parts, each a meson test:

  --part live  run gdb_target under gdb until it raises SIGTRAP, list its
               coroutines and backtrace each (meson test `gdb`);
  --part core  let it dump core (the kernel's core, RLIMIT_CORE raised, run
               in a temporary directory) and do the same on the core file,
               by coroutine id (meson test `gdb-core`).

gcore is not used: it drops every mapping it cannot read whole, and weft's
stack chunks hold guard pages, so its cores lack the coroutine stacks.

Each part exits 77 (skip), saying why, when it cannot run: gdb missing or
not allowed to trace (live); under a sanitizer build, B_SANITIZE not "none"
(ASan and TSan turn core dumps off: their shadow memory would make them tens
of TiB), or when kernel.core_pattern sends cores elsewhere (core).

usage: check.py GDB TARGET PLUGIN [B_SANITIZE] [--part live|core]
"""
import glob
import os
import re
import resource
import subprocess
import sys
import tempfile

SKIP = 77


def skip(why):
    print("SKIP: " + why)
    sys.exit(SKIP)


def gdb_run(gdb, plugin, args, cmds):
    argv = [gdb, "-nx", "-batch", "-ex", "set debuginfod enabled off",
            "-ex", "set pagination off", "-ex", "set confirm off", "-x", plugin]
    for c in cmds:
        argv += ["-ex", c]
    argv += args
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, text=True, timeout=100)
    return p.stdout


failures = []


def check(cond, what, out):
    if not cond:
        failures.append(what)
        print("FAIL: %s" % what)


def section(out, name):
    """The lines `weft bt NAME` printed: from its header to the next one."""
    m = re.search(r'^coroutine \d+ "%s":\n(.*?)(?=^coroutine \d+ "|^runtime |\Z)' % re.escape(name),
                  out, re.M | re.S)
    return m.group(1) if m else ""


def check_listing(out, label, core):
    lines = {}
    for m in re.finditer(r'^  coroutine (\d+) "([^"]*)": (.*)$', out, re.M):
        lines[m.group(2)] = (int(m.group(1)), m.group(3))
    for name in ("sleeper", "receiver", "joiner", "inner", "gdb-main"):
        check(name in lines, "%s: `weft coroutines` lists %s" % (label, name), out)
    if len(lines) < 5:
        return lines
    check(lines["sleeper"][1].startswith("parked, waiting for sleep"),
          "%s: sleeper parked in sleep: %s" % (label, lines["sleeper"][1]), out)
    check(lines["inner"][1].startswith("parked, waiting for sleep"),
          "%s: inner parked in sleep: %s" % (label, lines["inner"][1]), out)
    check(lines["receiver"][1].startswith("parked, waiting for channel recv"),
          "%s: receiver parked on the channel: %s" % (label, lines["receiver"][1]), out)
    check(lines["joiner"][1].startswith("parked, waiting for join of coroutine %d"
                                        % lines["inner"][0]),
          "%s: joiner parked joining inner: %s" % (label, lines["joiner"][1]), out)
    check(lines["gdb-main"][1].startswith("running on worker 0"),
          "%s: gdb-main running on worker 0: %s" % (label, lines["gdb-main"][1]), out)
    for name, (_, rest) in lines.items():
        check(re.search(r"high-water \d+ KiB", rest) is not None,
              "%s: %s has a stack high-water mark: %s" % (label, name, rest), out)
        check(("age " in rest) == (not core),
              "%s: %s shows an age only for a live process: %s" % (label, name, rest), out)
    return lines


def check_bts(out, label, keys):
    want = {"sleeper": ("gdb_sleeper", "weft_sleep"), "receiver": ("gdb_receiver",
            "weft_chan_recv"), "joiner": ("gdb_joiner", "weft_join"), "gdb-main": ("gdb_main",)}
    for name, funcs in want.items():
        bt = section(out, keys.get(name, name))
        for fn in funcs:
            check(re.search(r"^#\d+ +0x[0-9a-f]+ in %s\b" % fn, bt, re.M) is not None,
                  "%s: `weft bt %s` shows %s" % (label, keys.get(name, name), fn), out)


def kernel_core(target, tmp):
    """Run target in tmp until its SIGTRAP dumps core; the core's path or None
    when the system's core_pattern sends cores elsewhere."""
    def limits():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    if pattern.startswith("|") or "/" in pattern:
        return None
    p = subprocess.run([target], cwd=tmp, preexec_fn=limits, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != -5:   # SIGTRAP
        check(False, "gdb_target ended with %d, not SIGTRAP" % p.returncode, p.stdout)
        return None
    cores = [c for c in glob.glob(os.path.join(tmp, "*")) if os.path.isfile(c)]
    return cores[0] if cores else None


def live_part(gdb, target, plugin):
    live = gdb_run(gdb, plugin, [target], [
        "run", "weft coroutines", "weft bt sleeper", "weft bt receiver",
        "weft bt joiner", "weft bt gdb-main", "kill"])
    print("---- live process ----\n" + live)
    if "ptrace" in live and "not permitted" in live:
        skip("gdb may not trace processes here (ptrace not permitted)")
    if "SIGTRAP" not in live:
        print("FAIL: the program did not stop at its SIGTRAP under gdb")
        return 1
    lines = check_listing(live, "live", core=False)
    check_bts(live, "live", {})
    return 1 if len(lines) < 5 else 0


def core_part(gdb, target, plugin, sanitize):
    if sanitize not in ("", "none"):
        skip("core file not checked under -Db_sanitize=%s (its runtime turns core "
             "dumps off)" % sanitize)
    pattern = open("/proc/sys/kernel/core_pattern").read().strip()
    if pattern.startswith("|") or "/" in pattern:
        skip("kernel.core_pattern = %s sends cores elsewhere; no core file to check"
             % pattern)
    with tempfile.TemporaryDirectory(prefix="weft-gdb-") as tmp:
        core = kernel_core(target, tmp)
        if core is None:
            if failures:
                return 1
            skip("no core file written (kernel.core_pattern = %s, RLIMIT_CORE raised)"
                 % pattern)
        listing = gdb_run(gdb, plugin, [target, core], ["weft coroutines"])
        print("---- core file: listing ----\n" + listing)
        lines = check_listing(listing, "core", core=True)
        if len(lines) < 5:
            return 1
        # The backtraces by id this time, as a user reading a core would.
        ids = {n: str(lines[n][0]) for n in ("sleeper", "receiver", "joiner", "gdb-main")}
        dead = gdb_run(gdb, plugin, [target, core], ["weft bt " + ids[n] for n in ids])
        print("---- core file: backtraces ----\n" + dead)
        check_bts(dead, "core", {n: n for n in ids})
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    part = "live"
    if "--part" in args:
        i = args.index("--part")
        part = args[i + 1] if i + 1 < len(args) else ""
        del args[i:i + 2]
    if len(args) < 3 or part not in ("live", "core"):
        print(__doc__)
        return 2
    gdb, target, plugin = args[:3]
    sanitize = args[3] if len(args) > 3 else "none"
    if not gdb:
        skip("gdb is not installed (./dev test installs it when run as root: apt-get install gdb)")
    rc = live_part(gdb, target, plugin) if part == "live" else core_part(gdb, target, plugin, sanitize)
    if rc or failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
