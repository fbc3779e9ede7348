"""Shared pieces of bench/snapshot and bench/net-tap: how kvmini and QEMU 7.2 are started
on the same test guest, a QMP client (standard library only), and figures.

Both VMMs run a test guest from build/guests: kvmini through its own entry, QEMU -M q35
through the guest's multiboot header (as bench/blk-randread does). QEMU gets
`-cpu host,-arch-capabilities`: with plain `-cpu host` QEMU 7.2 aborts on this PVM host
("failed to set MSR 0x10a"), the ARCH_CAPABILITIES MSR the host's KVM does not take."""
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KVMINI = os.environ.get("KVMINI", os.path.join(ROOT, "build/kvmini"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")
GUESTS = os.environ.get("GUESTS", os.path.join(ROOT, "build/guests"))
QEMU_CPU = "host,-arch-capabilities"


def now_ms():
    return time.monotonic() * 1000.0


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    """Nearest rank."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, -(-len(s) * 9 // 10) - 1)]


def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")


def kvmini_argv(guest, mem_mib, append, qmp=None, restore=None, extra=()):
    a = [KVMINI, "run", "--kernel", os.path.join(GUESTS, guest), "--mem", "%dM" % mem_mib,
         "--console", "stdio", "--append", append]
    if qmp:
        a += ["--qmp", "unix:%s,server,wait=off" % qmp]
    if restore:
        a += ["--restore", restore]
    return a + list(extra)


def qemu_argv(guest, mem_mib, append, qmp=None, incoming=None, extra=()):
    a = [QEMU, "-M", "q35", "-accel", "kvm", "-cpu", QEMU_CPU, "-m", str(mem_mib),
         "-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
         "-kernel", os.path.join(GUESTS, guest), "-append", append]
    if qmp:
        a += ["-qmp", "unix:%s,server=on,wait=off" % qmp]
    if incoming:
        a += ["-incoming", incoming]
    return a + list(extra)


def have_qemu():
    from shutil import which
    return which(QEMU) is not None


class VM:
    """A running VMM whose stdout (the guest's serial console) is drained in the
    background, so the guest never blocks on a full pipe."""

    def __init__(self, argv, qmp_path=None, netns=None):
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.qmp_path = qmp_path
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = b""
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        while True:
            b = self.proc.stdout.read1(65536)
            if not b:
                return
            with self.lock:
                self.out += b

    def output(self):
        with self.lock:
            return self.out.decode(errors="replace").replace("\r", "")

    def wait_output(self, text, timeout=60.0, count=1):
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            if self.proc.poll() is not None:
                raise RuntimeError("VMM exited (%d) before %r: %s" %
                                   (self.proc.returncode, text,
                                    self.proc.stderr.read().decode(errors="replace")[-500:]))
            if time.monotonic() > deadline:
                raise RuntimeError("no %r within %.0f s: %r" % (text, timeout,
                                                                self.output()[-300:]))
            time.sleep(0.005)

    def qmp(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.qmp_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("no QMP socket %s" % self.qmp_path)
            time.sleep(0.005)
        return QMP(self.qmp_path)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.t.join(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        if self.qmp_path:
            try:
                os.unlink(self.qmp_path)
            except FileNotFoundError:
                pass


class QMP:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(120)
        for _ in range(200):
            try:
                self.sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                time.sleep(0.01)
        else:
            self.sock.connect(path)
        self.buf = b""
        self.events = []  # (time_ms, message)
        greeting = self.read()
        assert "QMP" in greeting, greeting
        r = self.cmd("qmp_capabilities")
        assert "return" in r, r

    def read(self):
        while b"\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError("QMP connection closed")
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, name, args=None):
        m = {"execute": name}
        if args is not None:
            m["arguments"] = args
        self.sock.sendall(json.dumps(m).encode() + b"\r\n")

    def reply(self):
        while True:
            m = self.read()
            if "event" in m:
                self.events.append((now_ms(), m))
                continue
            return m

    def cmd(self, name, args=None):
        self.send(name, args)
        return self.reply()

    def wait_event(self, name, timeout=10.0):
        """Time (ms) the event arrived; it may have come before the reply."""
        for t, m in self.events:
            if m["event"] == name:
                self.events.remove((t, m))
                return t
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while time.monotonic() < deadline:
            m = self.read()
            if "event" in m:
                if m["event"] == name:
                    return now_ms()
                self.events.append((now_ms(), m))
        raise RuntimeError("no %s event" % name)

    def close(self):
        self.sock.close()


def spawn_timed(argv, netns=None):
    """posix_spawn with stdout a pipe (stdin /dev/null); returns (pid, read fd)."""
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv
    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    pid = os.posix_spawnp(argv[0], argv, os.environ,
                          file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                                        (os.POSIX_SPAWN_DUP2, w, 1),
                                        (os.POSIX_SPAWN_CLOSE, r)])
    os.close(w)
    os.close(null)
    return pid, r


def until_output(runs, timeout=60.0):
    """runs: list of (pid, fd, t0_ms). Reads every fd until it has shown its first byte
    and its first newline; kills each process as soon as it has (so it stops competing
    for the CPU) and reaps it. Returns [(first_byte_ms, first_line_ms, text)] after each
    run's own t0, or None for a run that ended or timed out without a line."""
    sel = selectors.DefaultSelector()
    res = {}
    for i, (pid, fd, t0) in enumerate(runs):
        sel.register(fd, selectors.EVENT_READ, i)
        res[i] = [None, None, b""]
    left = len(runs)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            i = key.data
            pid, fd, t0 = runs[i]
            b = os.read(fd, 65536)
            t = now_ms()
            r = res[i]
            if not b:
                sel.unregister(fd)
                left -= 1
                continue
            if r[0] is None:
                r[0] = t - t0
            r[2] += b
            if b"\n" in b and r[1] is None:
                r[1] = t - t0
                sel.unregister(fd)
                left -= 1
                os.kill(pid, signal.SIGKILL)
    out = []
    for i, (pid, fd, t0) in enumerate(runs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
        r = res[i]
        out.append((r[0], r[1], r[2].decode(errors="replace")) if r[1] is not None else None)
    return out
