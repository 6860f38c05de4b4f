# weft-gdb.py: gdb commands for programs using weft (a live process or a core
# file). Load with `source tools/weft-gdb.py` or `gdb -x tools/weft-gdb.py`.
#
#   weft coroutines      every live coroutine of every runtime: id, name,
#                        state (running on worker N / runnable / parked), what
#                        it waits for, age (live process only), stack in use
#                        and high-water mark
#   weft bt <id|name>    the backtrace of one coroutine: a parked or runnable
#                        one is unwound from its saved context; a running one
#                        is the backtrace of the worker thread running it
#
# How `weft bt` unwinds a switched-out coroutine. Its registers are not in any
# thread: the context switch (src/ctx/switch_*.S) pushed the callee-saved
# registers and the resume pc on the coroutine's own stack and stored the stack
# pointer in task->ctx.sp (frame layout: src/ctx/ctx_frame.h). Rather than
# writing $rsp/$rip/$rbp into a thread (impossible in a core file, and risky in
# a live process), we install a Python frame unwinder that claims the selected
# thread's innermost frame and says its caller has the saved registers: pc =
# the resume pc, sp = ctx.sp + frame size, callee-saved registers from the
# frame. gdb's own DWARF unwinder then walks the coroutine's stack from there.
# Nothing in the inferior changes, so it works the same on a live process and
# on a core file. Frame #0 of that walk is the real thread's and is not shown.
#
# Needs debug info for libweft (the default debugoptimized build has it):
# the commands read internal structures (src/sched/task.h, worker.h, rt.h, introspect.c).
# x86-64 and AArch64.

import sys
import time

import gdb

try:
    from gdb.unwinder import Unwinder, register_unwinder
except ImportError:  # gdb built without the unwinder API
    Unwinder = None

CLOCK_MONOTONIC_COARSE = 6  # Linux; what weft__coarse_now() reads (task->born)

STATES = {0: "runnable", 1: "running", 2: "runnable (woken while running)", 3: "parked"}


def _arch():
    name = gdb.selected_inferior().architecture().name()
    if "aarch64" in name:
        return "aarch64"
    if "x86-64" in name or "x86_64" in name:
        return "x86-64"
    raise gdb.GdbError("weft: unsupported architecture %s (x86-64 and AArch64 only)" % name)


def _rts_head():
    """The first runtime of weft_dump's list (static `rts` in introspect.c)."""
    syms = []
    if hasattr(gdb, "lookup_static_symbols"):
        syms = [s for s in gdb.lookup_static_symbols("rts")
                if s.symtab is not None and s.symtab.filename.endswith("introspect.c")]
    if not syms:
        try:
            return gdb.parse_and_eval("'introspect.c'::rts")
        except gdb.error:
            raise gdb.GdbError("weft: no debug info for libweft (symbol rts in introspect.c "
                               "not found); build with -g")
    return syms[0].value()


def _u(v):
    return int(v)


def _is_live():
    inf = gdb.selected_inferior()
    conn = getattr(inf, "connection", None)
    if conn is not None:
        return conn.type != "core"
    return inf.pid > 0 and "core" not in gdb.execute("info target", to_string=True).split("\n")[0]


def runtimes():
    rt = _rts_head()
    n = 0
    while _u(rt) != 0 and n < 1024:
        yield rt
        rt = rt["next_rt"]
        n += 1


def tasks(rt):
    """(task value, task address) for every live task record of rt."""
    sl = rt["slabs"]
    guard = 0
    while _u(sl) != 0 and guard < 1 << 20:
        for i in range(_u(sl["n"])):
            t = sl["tasks"][i]
            if _u(t["alive"]) != 0:
                yield t, _u(t.address)
        sl = sl["next"]
        guard += 1


def _running_on(rt):
    """task address -> worker index, for tasks some worker is running now."""
    on = {}
    for k in range(_u(rt["nworkers"])):
        cur = _u(rt["workers"][k]["running"])
        if cur:
            on[cur] = k
    return on


def _stack_figures(t, parked):
    """(in-use bytes or None, size, high-water bytes or None, users)."""
    s = t["stack"]
    if _u(s) == 0:
        return None
    lo, size = _u(s["lo"]), _u(s["size"])
    top = lo + size
    users = _u(s["users"]) if "users" in [f.name for f in s.dereference().type.fields()] else 0
    inuse = top - _u(t["ctx"]["sp"]) if parked else None
    inf = gdb.selected_inferior()
    hw = None
    page = 4096
    try:
        # first non-zero word from the low end, as weft_dump does (it also
        # skips pages the kernel never committed; memory reads here see those
        # as zeros)
        at = lo
        while at < top and hw is None:
            n = min(page, top - at)
            buf = bytes(inf.read_memory(at, n))
            if buf.count(0) != n:
                for off in range(0, n, 8):
                    if buf[off:off + 8] != b"\0" * 8:
                        hw = top - (at + off)
                        break
            at += n
    except gdb.MemoryError:
        hw = None
    return inuse, size, hw, users


def describe(rt, t, addr, on, now):
    tid = _u(t["id"])
    name = t["name"].string(errors="replace")
    state = _u(t["state"])
    if addr in on:
        st = "running on worker %d" % on[addr]
    else:
        st = STATES.get(state, "state %d" % state)
    line = 'coroutine %d "%s": %s' % (tid, name, st)
    waiting = _u(t["wait"]) & 1
    if waiting and addr not in on:
        what = t["wait_what"]
        what = what.string() if _u(what) else "an event"
        line += ", waiting for %s" % what
        obj = t["wait_obj"]
        if _u(obj) and what == "join of coroutine":
            # a task record (as weft_dump prints it): its id
            line += " %d" % _u(obj.cast(t.type.pointer())["id"])
        elif _u(obj):
            line += " 0x%x" % _u(obj)
        if _u(t["timer"]["heap"]):
            dl = _u(t["timer"]["deadline"])
            if now is not None:
                line += " (deadline in %.3f ms)" % ((dl - now) / 1e6)
            else:
                line += " (deadline at %d ns)" % dl
    if now is not None:
        line += ", age %.3f s" % ((time.clock_gettime_ns(CLOCK_MONOTONIC_COARSE)
                                   - _u(t["born"])) / 1e9)
    figs = _stack_figures(t, st.startswith("parked") or st.startswith("runnable"))
    if figs:
        inuse, size, hw, users = figs
        if inuse is not None:
            line += ", stack %d/%d KiB in use" % ((inuse + 1023) // 1024, size // 1024)
        if hw is not None:
            line += ", high-water %d KiB" % ((hw + 1023) // 1024)
            if users > 1:
                line += " (deepest of %d users of this stack)" % users
            else:
                line += " (own)"
    return line


class WeftPrefix(gdb.Command):
    """Commands for weft coroutines: weft coroutines, weft bt <id|name>."""

    def __init__(self):
        super().__init__("weft", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class WeftCoroutines(gdb.Command):
    """List every live weft coroutine: id, name, state, what it waits for, age,
stack in use and high-water mark."""

    def __init__(self):
        super().__init__("weft coroutines", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        live = _is_live()
        # the inferior's CLOCK_MONOTONIC is ours only for a live process
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) if live else None
        found = False
        for rt in runtimes():
            found = True
            gdb.write("runtime 0x%x: %d workers\n" % (_u(rt), _u(rt["nworkers"])))
            on = _running_on(rt)
            for t, addr in tasks(rt):
                gdb.write("  " + describe(rt, t, addr, on, now) + "\n")
        if not found:
            gdb.write("weft: no runtime\n")


def find_task(key):
    for rt in runtimes():
        for t, addr in tasks(rt):
            if (key.isdigit() and _u(t["id"]) == int(key)) or \
               t["name"].string(errors="replace") == key:
                return rt, t, addr
    return None


class _FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


if Unwinder is not None:
    class CoroutineUnwinder(Unwinder):
        """Active only during `weft bt`: the innermost frame's caller gets the
        coroutine's saved registers."""

        def __init__(self):
            super().__init__("weft-coroutine")
            self.regs = None

        def __call__(self, pending):
            if self.regs is None or pending.level() != 0:
                return None
            sp_name, pc_name = ("rsp", "rip") if _arch() == "x86-64" else ("sp", "pc")
            sp = gdb.Value(16).cast(pending.read_register(sp_name).type)
            # The id's stack address is ours to choose: gdb stops a walk whose
            # caller frame looks inner to (below) its callee, and the
            # coroutine's stack may lie anywhere relative to the thread's. The
            # lowest aligned address keeps every coroutine frame outer to it.
            info = pending.create_unwind_info(_FrameId(sp, pending.read_register(pc_name)))
            for reg, val in self.regs.items():
                ty = pending.read_register(reg).type
                info.add_saved_register(reg, gdb.Value(val).cast(ty))
            return info

    _unwinder = CoroutineUnwinder()
    register_unwinder(None, _unwinder, replace=True)
else:
    _unwinder = None


def saved_registers(sp):
    """Registers of a switched-out context from its saved frame (ctx_frame.h)."""
    inf = gdb.selected_inferior()
    if _arch() == "x86-64":
        raw = bytes(inf.read_memory(sp, 0x40))
        q = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 0x40, 8)]
        return {"r15": q[1], "r14": q[2], "r13": q[3], "r12": q[4], "rbx": q[5],
                "rbp": q[6], "rip": q[7], "rsp": sp + 0x40}
    raw = bytes(inf.read_memory(sp, 0xb0))
    q = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 0xb0, 8)]
    regs = {"x%d" % (19 + i): q[8 + i] for i in range(10)}
    regs.update({"x29": q[18], "x30": q[19], "pc": q[19], "sp": sp + 0xb0})
    return regs


def print_frames(first, limit=64):
    f, n = first, 0
    while f is not None and n < limit:
        sal = f.find_sal()
        where = ""
        if sal.symtab is not None:
            where = " at %s:%d" % (sal.symtab.filename, sal.line)
        gdb.write("#%-3d 0x%016x in %s%s\n" % (n, f.pc(), f.name() or "??", where))
        try:
            older = f.older()
        except gdb.error as e:
            gdb.write("(unwinding stopped: %s)\n" % e)
            break
        if older is None and f.unwind_stop_reason() not in (gdb.FRAME_UNWIND_NO_REASON,
                                                            gdb.FRAME_UNWIND_OUTERMOST):
            gdb.write("(unwinding stopped: %s)\n"
                      % gdb.frame_stop_reason_string(f.unwind_stop_reason()))
        f = older
        n += 1


class WeftBt(gdb.Command):
    """weft bt <id|name>: backtrace of a weft coroutine (parked or runnable: from
its saved context; running: the backtrace of its worker thread)."""

    def __init__(self):
        super().__init__("weft bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        key = arg.strip()
        if not key:
            raise gdb.GdbError("usage: weft bt <id|name>")
        found = find_task(key)
        if not found:
            raise gdb.GdbError("weft: no live coroutine with id or name %s" % key)
        rt, t, addr = found
        on = _running_on(rt)
        gdb.write('coroutine %d "%s":\n' % (_u(t["id"]), t["name"].string(errors="replace")))
        if addr in on:
            self.running(rt, on[addr])
            return
        if _unwinder is None:
            raise gdb.GdbError("weft: this gdb has no Python unwinder API (gdb >= 7.10)")
        regs = saved_registers(_u(t["ctx"]["sp"]))
        thread = gdb.selected_thread()
        if thread is None:
            raise gdb.GdbError("weft: no thread selected")
        _unwinder.regs = regs
        gdb.invalidate_cached_frames()
        try:
            print_frames(gdb.newest_frame().older())
        finally:
            _unwinder.regs = None
            gdb.invalidate_cached_frames()
            gdb.newest_frame().select()

    def running(self, rt, k):
        want = _u(rt["workers"][k]["thread"])
        orig = gdb.selected_thread()
        for th in gdb.selected_inferior().threads():
            try:
                h = int.from_bytes(th.handle(), sys.byteorder)
            except (gdb.error, AttributeError):
                continue
            if h == want:
                gdb.write("running on worker %d (gdb thread %d):\n" % (k, th.num))
                th.switch()
                try:
                    print_frames(gdb.newest_frame())
                finally:
                    orig.switch()
                return
        gdb.write("running on worker %d; its thread was not found here (try `thread apply "
                  "all bt`)\n" % k)


WeftPrefix()
WeftCoroutines()
WeftBt()
