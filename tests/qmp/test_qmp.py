#!/usr/bin/env python3
"""QMP conformance suite for kvmini's control socket (--qmp), driven by a client written
with the standard library only (socket + json). It runs the real binary ($KVMINI, default
build/kvmini) against the test guests ($KVMINI_GUESTS, default build/guests): the count
guest for pause/resume, hello for a guest shutdown. Ends with 'qmp: N passed, N failed,
N skipped' for scripts/test-all."""
import json
import re
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

KVMINI = os.environ.get("KVMINI", "build/kvmini")
GUESTS = os.environ.get("KVMINI_GUESTS", "build/guests")
TIMEOUT = 20.0


class VM:
    """kvmini with a QMP socket; its stdout (the guest's console) collected in the
    background."""

    def __init__(self, guest="count.elf", extra=(), qmp_opts=None, wait_socket=True):
        self.dir = tempfile.mkdtemp(prefix="kvmini-qmp-")
        self.path = os.path.join(self.dir, "qmp.sock")
        if qmp_opts is None:
            qmp_opts = ["--qmp", "unix:%s,server,wait=off" % self.path]
        else:
            qmp_opts = [o.replace("PATH", self.path) for o in qmp_opts]
        self.proc = subprocess.Popen(
            [KVMINI, "run", "--kernel", os.path.join(GUESTS, guest)] + qmp_opts + list(extra),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait_socket:
            deadline = time.time() + TIMEOUT
            while not os.path.exists(self.path):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("kvmini did not create its QMP socket: %r" %
                                         self.proc.stderr.read())
                time.sleep(0.01)

    def _read(self):
        while True:
            b = self.proc.stdout.read1(4096)
            if not b:
                return
            with self.lock:
                self.out += b

    def output(self):
        with self.lock:
            return self.out.decode(errors="replace")

    def wait_output(self, text, timeout=TIMEOUT):
        self.wait_match(re.escape(text), timeout)

    def wait_match(self, pattern, timeout=TIMEOUT):
        """Waits until the output matches the regular expression; returns the match."""
        deadline = time.time() + timeout
        while True:
            m = re.search(pattern, self.output())
            if m:
                return m
            if time.time() > deadline:
                raise AssertionError("no match for %r in the guest's output: %r"
                                     % (pattern, self.output()))
            time.sleep(0.02)

    def ticks(self):
        return self.output().count("count: tick")

    def client(self, negotiate=True):
        return Client(self.path, negotiate)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)


class Client:
    def __init__(self, path, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.greeting = self.read()
        if negotiate:
            r = self.cmd("qmp_capabilities")
            assert r == {"return": {}}, r

    def read(self):
        while b"\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError("the server closed the connection")
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send_raw(self, data):
        self.sock.sendall(data)

    def reply(self):
        """The next reply (return or error); events on the way are kept."""
        while True:
            m = self.read()
            if "event" in m:
                self.events.append(m)
                continue
            return m

    def cmd(self, name, args=None, id=None):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        if id is not None:
            req["id"] = id
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.reply()

    def ok(self, name, args=None):
        r = self.cmd(name, args)
        assert "return" in r, (name, r)
        return r["return"]

    def event(self, name, timeout=TIMEOUT):
        for i, e in enumerate(self.events):
            if e["event"] == name:
                return self.events.pop(i)
        self.sock.settimeout(timeout)
        try:
            while True:
                m = self.read()
                if "event" not in m:
                    raise AssertionError("a reply where an event was expected: %r" % m)
                if m["event"] == name:
                    return m
                self.events.append(m)
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self):
        self.sock.close()


def error_class(r):
    assert "error" in r, r
    assert set(r["error"]) >= {"class", "desc"}, r
    assert isinstance(r["error"]["desc"], str) and r["error"]["desc"], r
    return r["error"]["class"]


class QmpBase(unittest.TestCase):
    guest = "count.elf"
    extra = ()

    def setUp(self):
        self.vm = VM(self.guest, self.extra)
        self.addCleanup(self.vm.close)

    def client(self, negotiate=True):
        c = self.vm.client(negotiate)
        self.addCleanup(c.close)
        return c


class Greeting(QmpBase):
    def test_greeting_shape(self):
        c = self.client(negotiate=False)
        g = c.greeting
        self.assertEqual(set(g), {"QMP"})
        self.assertEqual(g["QMP"]["capabilities"], [])
        v = g["QMP"]["version"]
        self.assertEqual(set(v["qemu"]), {"major", "minor", "micro"})
        self.assertTrue(all(isinstance(x, int) for x in v["qemu"].values()))
        self.assertTrue(v["package"].startswith("kvmini"))

    def test_commands_refused_before_negotiation(self):
        c = self.client(negotiate=False)
        r = c.cmd("query-status", id="a1")
        self.assertEqual(error_class(r), "CommandNotFound")
        self.assertEqual(r["id"], "a1")
        self.assertEqual(c.cmd("qmp_capabilities", id=7), {"return": {}, "id": 7})
        self.assertIn("return", c.cmd("query-status"))

    def test_capabilities_twice_is_an_error(self):
        c = self.client()
        self.assertEqual(error_class(c.cmd("qmp_capabilities")), "CommandNotFound")
        self.assertIn("return", c.cmd("query-status"))

    def test_unknown_capability_refused(self):
        c = self.client(negotiate=False)
        self.assertEqual(error_class(c.cmd("qmp_capabilities", {"enable": ["oob"]})),
                         "GenericError")

    def test_id_echoed_any_type(self):
        c = self.client()
        for id in ("x", 12, {"a": [1, 2]}, [3]):
            r = c.cmd("query-kvm", id=id)
            self.assertEqual(r["id"], id)
            r = c.cmd("no-such-command", id=id)
            self.assertEqual(r["id"], id)


class Commands(QmpBase):
    extra = ("--name", "qmp-test", "--cpus", "2", "-device", "virtio-rng-pci")

    def test_query_status(self):
        c = self.client()
        r = c.ok("query-status")
        self.assertEqual(r, {"running": True, "singlestep": False, "status": "running"})

    def test_query_version_and_kvm_and_name(self):
        c = self.client()
        self.assertEqual(c.ok("query-version"), c.greeting["QMP"]["version"])
        self.assertEqual(c.ok("query-kvm"), {"enabled": True, "present": True})
        self.assertEqual(c.ok("query-name"), {"name": "qmp-test"})

    def test_query_commands_lists_every_command(self):
        c = self.client()
        names = {x["name"] for x in c.ok("query-commands")}
        for n in ("qmp_capabilities", "query-status", "stop", "cont", "system_reset",
                  "system_powerdown", "quit", "query-version", "query-commands",
                  "query-name", "query-kvm", "query-cpus-fast", "query-stats",
                  "query-chardev", "query-block", "query-pci", "human-monitor-command",
                  "migrate", "migrate-incoming", "query-migrate", "query-vm-generation-id",
                  "query-blockstats", "x-query-virtio-stats"):
            self.assertIn(n, names)

    def test_query_cpus_fast_thread_ids_are_kvmini_threads(self):
        self.vm.wait_output("count: counters at")
        c = self.client()
        cpus = c.ok("query-cpus-fast")
        self.assertEqual([x["cpu-index"] for x in cpus], [0, 1])
        for x in cpus:
            self.assertEqual(x["target"], "x86_64")
            self.assertTrue(x["qom-path"].startswith("/machine/"))
            self.assertIn("core-id", x["props"])
            tid = x["thread-id"]
            comm = open("/proc/%d/task/%d/comm" % (self.vm.proc.pid, tid)).read().strip()
            self.assertEqual(comm, "vcpu %d" % x["cpu-index"])

    def test_query_stats_vcpu_and_vm(self):
        self.vm.wait_output("count: tick 1")
        c = self.client()
        r = c.ok("query-stats", {"target": "vcpu"})
        self.assertEqual(len(r), 2)
        for v in r:
            self.assertTrue(v["qom-path"].startswith("/machine/"))
            provs = {p["provider"]: {s["name"]: s["value"] for s in p["stats"]}
                     for p in v["providers"]}
            self.assertIn("kvmini", provs)
            self.assertIn("exits", provs["kvmini"])
            if "kvm" in provs:  # KVM_GET_STATS_FD: the same names as debugfs
                self.assertIn("exits", provs["kvm"])
                self.assertIn("halt_exits", provs["kvm"])
        # The BSP prints ticks through the UART: kvmini counts its port exits.
        bsp = {p["provider"]: {s["name"]: s["value"] for s in p["stats"]}
               for p in r[0]["providers"]}["kvmini"]
        self.assertGreater(bsp["io_exits"], 0)
        self.assertGreaterEqual(bsp["exits"], bsp["io_exits"])
        one = c.ok("query-stats", {"target": "vcpu",
                                   "vcpus": ["/machine/unattached/device[1]"]})
        self.assertEqual([v["qom-path"] for v in one], ["/machine/unattached/device[1]"])
        vm = c.ok("query-stats", {"target": "vm"})
        self.assertIsInstance(vm, list)
        for e in vm:
            self.assertEqual(e["providers"][0]["provider"], "kvm")
        self.assertEqual(error_class(c.cmd("query-stats", {"target": "disk"})),
                         "GenericError")

    def test_query_chardev_block_pci_migrate(self):
        c = self.client()
        labels = {x["label"]: x["filename"] for x in c.ok("query-chardev")}
        self.assertEqual(labels["serial0"], "stdio")
        self.assertIn(self.vm.path, labels["qmp"])
        self.assertEqual(c.ok("query-block"), [])  # no -drive here; see Blocks
        buses = c.ok("query-pci")
        self.assertEqual([b["bus"] for b in buses], [0])
        devs = buses[0]["devices"]
        # The host bridge at 00:00.0 (8086:29c0, class 0x0600), and the virtio-rng function.
        self.assertEqual((devs[0]["slot"], devs[0]["id"]["vendor"], devs[0]["id"]["device"],
                          devs[0]["class_info"]["class"]), (0, 0x8086, 0x29c0, 0x0600))
        rng = [d for d in devs if d["id"]["vendor"] == 0x1af4]
        self.assertEqual(len(rng), 1, devs)
        self.assertEqual(rng[0]["id"]["device"], 0x1044)  # modern virtio-rng
        self.assertTrue(rng[0]["regions"] and rng[0]["regions"][0]["size"] > 0)
        self.assertEqual(c.ok("query-migrate"), {})

    def test_migrate_to_file_writes_a_snapshot_that_restores(self):
        c = self.client()
        self.assertEqual(error_class(c.cmd("migrate")), "GenericError")  # uri missing
        self.assertIn("uri", c.cmd("migrate")["error"]["desc"])
        r = c.cmd("migrate", {"uri": "tcp:127.0.0.1:4444"})
        self.assertIn("only file:", r["error"]["desc"])
        self.vm.wait_output("count: tick 2")
        path = os.path.join(self.vm.dir, "snap.kvmini")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        self.assertEqual(c.ok("migrate", {"uri": "file:" + path}), {})
        self.assertEqual(c.ok("query-migrate")["status"], "completed")
        self.assertEqual(c.ok("query-status")["status"], "running", "resumed after the save")
        saved = self.vm.ticks()
        self.assertTrue(os.path.getsize(path) > 0)
        # The snapshot restores in a new process and the guest goes on counting from there.
        proc = subprocess.Popen([KVMINI, "run", "--restore", path, "--kernel",
                                 os.path.join(GUESTS, "count.elf")] + list(self.extra),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out = b""
            deadline = time.time() + TIMEOUT
            # A whole tick line: the guest's output may arrive a few bytes at a time.
            while not re.search(rb"count: tick \d+\n", out) and time.time() < deadline:
                b = proc.stdout.read1(4096)
                if not b:
                    break
                out += b
        finally:
            proc.kill()
            proc.wait()
            err = proc.stderr.read().decode(errors="replace")
            proc.stdout.close()
            proc.stderr.close()
        text = out.decode(errors="replace")
        self.assertIn("count: tick", text, "restore printed nothing; stderr: %r" % err)
        self.assertNotIn("counters at", text, "a restore does not boot again")
        first = int(text.split("count: tick ")[1].split()[0])
        self.assertGreaterEqual(first, 2, text)
        self.assertLessEqual(first, saved + 1, text)
        # Not started with -incoming defer: migrate-incoming is refused.
        r = c.cmd("migrate-incoming", {"uri": "file:" + path})
        self.assertEqual(error_class(r), "GenericError")
        self.assertIn("-incoming defer", r["error"]["desc"])
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_system_powerdown_ignored_by_a_guest_without_acpi_keeps_it_running(self):
        # count never enables PWRBTN_EN: the press is announced and nothing stops.
        self.vm.wait_output("count: tick 1")
        c = self.client()
        self.assertEqual(c.ok("system_powerdown"), {})
        e = c.event("POWERDOWN")
        self.assertNotIn("data", e)
        self.assertEqual(set(e["timestamp"]), {"seconds", "microseconds"})
        ticks = self.vm.ticks()
        self.vm.wait_output("count: tick %d\n" % (ticks + 1))
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_human_monitor_command(self):
        self.vm.wait_output("count: counters at")
        c = self.client()
        hmp = lambda line: c.ok("human-monitor-command", {"command-line": line})
        self.assertEqual(hmp("info status"), "VM status: running\n")
        cpus = hmp("info cpus")
        self.assertIn("CPU #0: thread_id=", cpus)
        self.assertIn("CPU #1: thread_id=", cpus)
        self.assertIn("enabled", hmp("info kvm"))
        regs = hmp("info registers")
        self.assertIn("CPU#0", regs)
        self.assertIn("CPU#1", regs)
        self.assertIn("RIP=", regs)
        self.assertIn("CR3=", regs)
        # info registers pauses for the read and resumes after.
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertIn("unknown command", hmp("frobnicate"))
        hmp("stop")
        self.assertEqual(hmp("info status"), "VM status: paused\n")
        hmp("cont")
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertEqual(error_class(c.cmd("human-monitor-command")), "GenericError")


class Blocks(unittest.TestCase):
    def test_query_block_lists_the_disks(self):
        fd, disk = tempfile.mkstemp(prefix="kvmini-qmp-disk-")
        os.ftruncate(fd, 1 << 20)
        os.close(fd)
        self.addCleanup(os.unlink, disk)
        vm = VM("count.elf", extra=["--disk", disk + ",ro,id=d0"])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        blocks = c.ok("query-block")
        self.assertEqual(len(blocks), 1, blocks)
        ins = blocks[0]["inserted"]
        self.assertEqual((ins["file"], ins["ro"], ins["drv"]), (disk, True, "raw"))
        self.assertEqual(ins["image"]["virtual-size"], 1 << 20)


def make_disk(test, size=1 << 20):
    fd, disk = tempfile.mkstemp(prefix="kvmini-qmp-disk-")
    os.ftruncate(fd, size)
    os.close(fd)
    test.addCleanup(os.unlink, disk)
    return disk


class DeviceCounters(unittest.TestCase):
    """query-blockstats (QEMU's BlockStats), x-query-virtio-stats (kvmini's) and HMP's
    info blockstats / info virtio-stats, against the virtio-blk and virtio-rng guests,
    which do a known set of requests and then hold (spin) so the counters can be read."""

    def vm(self, guest, append, extra, wait_for):
        vm = VM(guest, extra=["--append", append] + extra)
        self.addCleanup(vm.close)
        vm.wait_output(wait_for, timeout=60)
        c = vm.client()
        self.addCleanup(c.close)
        return vm, c

    # What BlockDeviceStats (qapi/block-core.json) requires.
    BLOCK_FIELDS = {
        "rd_bytes", "wr_bytes", "unmap_bytes", "rd_operations", "wr_operations",
        "flush_operations", "unmap_operations", "rd_total_time_ns", "wr_total_time_ns",
        "flush_total_time_ns", "unmap_total_time_ns", "wr_highest_offset", "rd_merged",
        "wr_merged", "unmap_merged", "failed_rd_operations", "failed_wr_operations",
        "failed_flush_operations", "failed_unmap_operations", "invalid_rd_operations",
        "invalid_wr_operations", "invalid_flush_operations", "invalid_unmap_operations",
        "account_invalid", "account_failed", "timed_stats"}

    def test_blockstats_count_what_the_guest_did(self):
        # blk=rw: one 4 KiB write at sector 8, a flush, one 4 KiB read, one read past
        # the end (refused before any I/O: invalid), GET_ID.
        disk = make_disk(self)
        vm, c = self.vm("virtio-blk.elf", "blk=rw hold", ["--disk", disk + ",id=d0"],
                        "virtio-blk: OK")
        stats = c.ok("query-blockstats")
        self.assertEqual(len(stats), 1, stats)
        b = stats[0]
        self.assertEqual(b["device"], "d0")
        self.assertTrue(b["qdev"].endswith("/virtio-backend"), b)
        st = b["stats"]
        self.assertLessEqual(self.BLOCK_FIELDS, set(st), sorted(self.BLOCK_FIELDS - set(st)))
        want = {"rd_bytes": 4096, "wr_bytes": 4096, "rd_operations": 1, "wr_operations": 1,
                "flush_operations": 1, "unmap_operations": 0, "unmap_bytes": 0,
                "failed_rd_operations": 0, "failed_wr_operations": 0,
                "invalid_rd_operations": 1, "invalid_wr_operations": 0,
                "wr_highest_offset": 8 * 512 + 4096}
        self.assertEqual({k: st[k] for k in want}, want)
        self.assertEqual(c.ok("query-blockstats", {"query-nodes": False}), stats)
        hmp = c.ok("human-monitor-command", {"command-line": "info blockstats"})
        self.assertTrue(hmp.startswith("d0: rd_bytes=4096 wr_bytes=4096 unmap_bytes=0 "
                                       "rd_operations=1 wr_operations=1 flush_operations=1 "),
                        hmp)
        self.assertIn(" invalid_rd_operations=1 ", hmp)
        self.assertIn(" wr_highest_offset=8192\n", hmp)
        self.assertEqual(hmp.count("\n"), 1, hmp)

    def test_read_only_write_and_discard_counted(self):
        # blk=ro: the write is refused (invalid), the read works.
        disk = make_disk(self)
        vm, c = self.vm("virtio-blk.elf", "blk=ro hold",
                        ["-drive", "file=%s,format=raw,if=none,id=ro0,readonly=on" % disk,
                         "-device", "virtio-blk-pci,drive=ro0,id=vblk"], "virtio-blk: OK")
        b = c.ok("query-blockstats")[0]
        self.assertEqual((b["device"], b["qdev"]),
                         ("ro0", "/machine/peripheral/vblk/virtio-backend"))
        st = b["stats"]
        self.assertEqual((st["invalid_wr_operations"], st["wr_operations"], st["wr_bytes"],
                          st["rd_operations"], st["rd_bytes"]), (1, 0, 0, 1, 4096), st)
        # blk=discard over MMIO: 1024 sectors unmapped.
        disk2 = make_disk(self)
        vm2, c2 = self.vm("virtio-blk.elf", "blk=discard hold",
                          ["--disk", disk2, "--virtio-transport", "mmio"], "virtio-blk: OK")
        st = c2.ok("query-blockstats")[0]["stats"]
        self.assertEqual((st["unmap_operations"], st["unmap_bytes"]), (1, 1024 * 512), st)
        v = c2.ok("x-query-virtio-stats")
        self.assertEqual([(x["name"], x["transport"], x["address"]) for x in v],
                         [("virtio-blk", "mmio", "0xfe000000")])
        self.assertEqual((v[0]["stats"]["discards"], v[0]["stats"]["discard_bytes"]),
                         (1, 1024 * 512))

    def test_virtio_stats_for_rng_and_an_idle_disk(self):
        # virtio-rng: two reads of 64 bytes, one request each. The disk is not used.
        disk = make_disk(self)
        vm, c = self.vm("virtio-rng.elf", "hold", ["--rng", "--disk", disk],
                        "virtio-rng: OK")
        v = c.ok("x-query-virtio-stats")
        by_name = {x["name"]: x for x in v}
        self.assertEqual(set(by_name), {"virtio-rng", "virtio-blk"}, v)
        rng = by_name["virtio-rng"]
        self.assertEqual(rng["transport"], "pci")
        self.assertRegex(rng["address"], r"^00:0[0-9a-f]\.0$")
        self.assertEqual(rng["stats"], {"requests": 2, "bytes": 128})
        blk = by_name["virtio-blk"]["stats"]
        self.assertEqual((blk["requests"], blk["errors"], blk["rd_bytes"]), (0, 0, 0), blk)
        hmp = c.ok("human-monitor-command", {"command-line": "info virtio-stats"})
        self.assertIn("virtio-rng pci %s: requests=2 bytes=128\n" % rng["address"], hmp)
        self.assertEqual(c.ok("query-blockstats")[0]["stats"]["rd_operations"], 0)

    def test_no_devices_empty_lists(self):
        vm = VM("count.elf")
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        self.assertEqual(c.ok("query-blockstats"), [])
        self.assertEqual(c.ok("x-query-virtio-stats"), [])
        self.assertEqual(error_class(c.cmd("query-blockstats", {"bogus": 1})), "GenericError")


class Errors(QmpBase):
    def assert_alive(self, c):
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertIsNone(self.vm.proc.poll())

    def test_malformed_json(self):
        c = self.client()
        c.send_raw(b'{"execute": "query-status", ]\n')
        self.assertEqual(error_class(c.reply()), "GenericError")
        c.send_raw(b'{"execute": tru}\n')
        self.assertEqual(error_class(c.reply()), "GenericError")
        self.assert_alive(c)

    def test_non_object_requests(self):
        c = self.client()
        for raw in (b"[1, 2]\n", b"3\n", b'"query-status"\n', b"null\n", b"}\n"):
            c.send_raw(raw)
            self.assertEqual(error_class(c.reply()), "GenericError", raw)
        self.assert_alive(c)

    def test_bad_members(self):
        c = self.client()
        cases = [{"arguments": {}}, {"execute": 3}, {"execute": "query-status", "arguments": []},
                 {"execute": "query-status", "bogus": 1}]
        for req in cases:
            c.send_raw(json.dumps(req).encode() + b"\n")
            self.assertEqual(error_class(c.reply()), "GenericError", req)
        self.assert_alive(c)

    def test_unknown_command(self):
        c = self.client()
        r = c.cmd("no-such-command")
        self.assertEqual(error_class(r), "CommandNotFound")
        self.assertIn("no-such-command", r["error"]["desc"])

    def test_argument_errors(self):
        c = self.client()
        r = c.cmd("human-monitor-command", {"command-line": 5})
        self.assertEqual(error_class(r), "GenericError")
        self.assertIn("command-line", r["error"]["desc"])
        r = c.cmd("query-status", {"verbose": True})
        self.assertEqual(error_class(r), "GenericError")
        self.assertIn("verbose", r["error"]["desc"])
        r = c.cmd("query-stats", {"target": "vcpu", "vcpus": "all"})
        self.assertEqual(error_class(r), "GenericError")
        self.assert_alive(c)

    def test_oversized_message(self):
        c = self.client()
        big = b'{"execute": "query-status", "id": "' + b"x" * (2 << 20) + b'"}\n'
        c.send_raw(big)
        r = c.reply()
        self.assertEqual(error_class(r), "GenericError")
        self.assertIn("too large", r["error"]["desc"])
        self.assert_alive(c)

    def test_disconnect_mid_message(self):
        c = self.client()
        c.send_raw(b'{"execute": "qu')
        c.close()
        d = self.client()
        self.assert_alive(d)
        e = self.client(negotiate=False)
        e.send_raw(b'{"execute": "qmp_capabilities"}{"execute": "sto')
        self.assertEqual(e.reply(), {"return": {}})
        e.close()
        self.assert_alive(d)

    def test_two_messages_in_one_write_and_split_across_writes(self):
        c = self.client()
        c.send_raw(b'{"execute":"query-kvm","id":1}{"execute":"query-name","id":2}')
        self.assertEqual(c.reply()["id"], 1)
        self.assertEqual(c.reply()["id"], 2)
        for b in b'{"execute": "query-kvm", "id": "s"}':
            c.send_raw(bytes([b]))
        self.assertEqual(c.reply(), {"return": {"enabled": True, "present": True}, "id": "s"})

    def test_client_that_does_not_read_is_dropped(self):
        watcher = self.client()
        slow = self.client()
        req = b'{"execute": "query-stats", "arguments": {"target": "vcpu"}}\n'
        slow.sock.settimeout(10)
        try:
            for _ in range(3000):
                slow.send_raw(req)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        # The loop never waited for it: the VM and the other client go on.
        self.assert_alive(watcher)
        self.vm.wait_output("count: tick 2")


class Events(QmpBase):
    def test_stop_cont_events_and_status(self):
        c = self.client()
        self.assertEqual(c.ok("stop"), {})
        e = c.event("STOP")
        self.assertEqual(set(e["timestamp"]), {"seconds", "microseconds"})
        self.assertAlmostEqual(e["timestamp"]["seconds"], time.time(), delta=5)
        self.assertEqual(c.ok("query-status"),
                         {"running": False, "singlestep": False, "status": "paused"})
        self.assertEqual(c.ok("cont"), {})
        c.event("RESUME")
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_two_clients_both_get_events(self):
        a, b = self.client(), self.client()
        unneg = self.client(negotiate=False)
        a.ok("stop")
        a.event("STOP")
        b.event("STOP")
        b.ok("cont")
        a.event("RESUME")
        b.event("RESUME")
        # A client still negotiating gets no events.
        unneg.sock.settimeout(0.3)
        with self.assertRaises(socket.timeout):
            unneg.read()

    def test_system_reset_reboots_with_reset_event(self):
        self.vm.wait_output("count: counters at")
        c = self.client()
        self.assertEqual(c.ok("system_reset"), {})
        e = c.event("RESET")
        self.assertEqual(e["data"], {"guest": False, "reason": "host-qmp-system-reset"})
        deadline = time.time() + TIMEOUT
        while self.vm.output().count("count: counters at") < 2:
            self.assertLess(time.time(), deadline, self.vm.output())
            time.sleep(0.05)
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_quit_sends_shutdown_and_exits_0(self):
        c = self.client()
        other = self.client()
        self.assertEqual(c.ok("quit"), {})
        e = c.event("SHUTDOWN")
        self.assertEqual(e["data"], {"guest": False, "reason": "host-qmp-quit"})
        other.event("SHUTDOWN")
        self.assertEqual(self.vm.proc.wait(TIMEOUT), 0)
        self.assertFalse(os.path.exists(self.vm.path))

    def test_pause_two_seconds_no_tick_then_continues(self):
        self.vm.wait_output("count: tick 2")
        c = self.client()
        c.ok("stop")
        c.event("STOP")
        time.sleep(0.1)  # a line already in the UART's buffer may still arrive
        before = self.vm.ticks()
        time.sleep(2)
        self.assertEqual(self.vm.ticks(), before, "the guest ticked while paused")
        c.ok("cont")
        c.event("RESUME")
        self.vm.wait_output("count: tick %d\n" % (before + 2))


class NoReboot(QmpBase):
    extra = ("-no-reboot",)

    def test_system_reset_with_no_reboot_shuts_down(self):
        c = self.client()
        c.ok("system_reset")
        e = c.event("SHUTDOWN")
        self.assertEqual(e["data"], {"guest": False, "reason": "host-qmp-system-reset"})
        self.assertEqual(self.vm.proc.wait(TIMEOUT), 0)


class GuestShutdown(QmpBase):
    guest = "hello.elf"
    extra = ("-S",)

    def test_guest_poweroff_sends_shutdown(self):
        c = self.client()
        self.assertEqual(c.ok("query-status")["status"], "prelaunch")
        c.ok("cont")
        e = c.event("SHUTDOWN")
        self.assertEqual(e["data"], {"guest": True, "reason": "guest-shutdown"})
        self.assertEqual(self.vm.proc.wait(TIMEOUT), 0)


class PowerButton(QmpBase):
    guest = "powerbtn.elf"

    def press(self, how):
        self.vm.wait_output("powerbtn: ready\n")
        c = self.client()
        if how == "qmp":
            self.assertEqual(c.ok("system_powerdown"), {})
        else:
            self.assertEqual(c.ok("human-monitor-command",
                                  {"command-line": "system_powerdown"}), "")
        e = c.event("POWERDOWN")
        self.assertAlmostEqual(e["timestamp"]["seconds"], time.time(), delta=5)
        e = c.event("SHUTDOWN")
        self.assertEqual(e["data"], {"guest": True, "reason": "guest-shutdown"})
        self.assertEqual(self.vm.proc.wait(TIMEOUT), 0, self.vm.output())
        self.vm.reader.join(5)
        out = self.vm.output()
        self.assertIn("powerbtn: pm1a_evt 0x600 len 4 pm1a_cnt 0x604 sci 9 gpe0 0x620 len 4\n",
                      out)
        self.assertIn("powerbtn: PWRBTN_STS set, sci pending in the local APIC 1\n", out)
        self.assertRegex(out, r"powerbtn: interrupts [12], status in the handler 0x100, "
                              r"status after 0x0\n")
        self.assertIn("powerbtn: OK\n", out)

    def test_system_powerdown_reaches_the_guest_through_pwrbtn_and_the_sci(self):
        self.press("qmp")

    def test_hmp_system_powerdown(self):
        self.press("hmp")


class VmGenerationId(unittest.TestCase):
    def vm(self, *extra):
        vm = VM("vmgenid.elf", extra)
        self.addCleanup(vm.close)
        return vm

    def test_given_guid_is_what_the_guest_reads_and_qmp_reports(self):
        guid = "12345678-9abc-4def-8123-456789abcdef"
        vm = self.vm("-device", "vmgenid,guid=" + guid)
        vm.wait_output("vmgenid: ready\n")
        self.assertIn("vmgenid: addr 0xef000 gpe0 0x620 len 4\n", vm.output())
        self.assertIn("vmgenid: guid %s\n" % guid, vm.output())
        c = vm.client()
        self.assertEqual(c.ok("query-vm-generation-id"), {"guid": guid})
        c.close()

    def test_restored_clones_each_get_a_new_generation(self):
        vm = self.vm()
        vm.wait_output("vmgenid: ready\n")
        orig = re.search(r"vmgenid: guid ([0-9a-f-]{36})\n", vm.output()).group(1)
        c = vm.client()
        self.addCleanup(c.close)
        self.assertEqual(c.ok("query-vm-generation-id"), {"guid": orig})
        path = os.path.join(vm.dir, "snap.kvmini")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        self.assertEqual(c.ok("migrate", {"uri": "file:" + path}), {})
        seen = []
        for i in range(2):
            clone = self.vm("--restore", path)
            clone.wait_output("vmgenid: new generation 1 ")
            clone.wait_output(" after 0x0 sci ")
            deadline = time.time() + TIMEOUT  # the rest of the line ("1\n" or "0\n")
            while (not re.search(r" after 0x0 sci \d\n", clone.output()) and
                   time.time() < deadline):
                time.sleep(0.01)
            out = clone.output()
            self.assertNotIn("vmgenid: ready", out, "a restore does not boot again")
            m = re.search(r"vmgenid: new generation 1 guid ([0-9a-f-]{36}) gpe0_sts 0x1 "
                          r"after 0x0 sci 1\n", out)
            self.assertIsNotNone(m, out)
            cc = clone.client()
            self.assertEqual(cc.ok("query-vm-generation-id"), {"guid": m.group(1)})
            cc.close()
            seen.append(m.group(1))
        self.assertNotEqual(seen[0], seen[1], "two clones share a generation ID")
        self.assertNotIn(orig, seen, "a clone kept the original's generation ID")
        # The original is not a new generation: same GUID, no notification.
        self.assertEqual(c.ok("query-vm-generation-id"), {"guid": orig})
        self.assertNotIn("new generation", vm.output())

    def test_bad_guid_is_one_clear_error(self):
        r = subprocess.run([KVMINI, "run", "-device", "vmgenid,guid=nope"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("guid must be auto or a UUID", r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)


class StartPaused(QmpBase):
    extra = ("-S",)

    def test_minus_S_then_cont_starts_the_guest(self):
        c = self.client()
        time.sleep(0.5)
        self.assertNotIn("count:", self.vm.output())
        self.assertEqual(c.ok("query-status"),
                         {"running": False, "singlestep": False, "status": "prelaunch"})
        hmp = lambda line: c.ok("human-monitor-command", {"command-line": line})
        self.assertEqual(hmp("info status"), "VM status: paused (prelaunch)\n")
        # A stop before the first cont changes nothing: the guest has still never run.
        c.ok("stop")
        self.assertEqual(c.ok("query-status")["status"], "prelaunch")
        c.ok("cont")
        c.event("RESUME")
        self.assertEqual(c.ok("query-status"),
                         {"running": True, "singlestep": False, "status": "running"})
        self.vm.wait_output("count: tick 1")
        c.ok("stop")
        c.event("STOP")
        self.assertEqual(c.ok("query-status"),
                         {"running": False, "singlestep": False, "status": "paused"})
        self.assertEqual(hmp("info status"), "VM status: paused\n")


class Spellings(unittest.TestCase):
    def run_with(self, opts):
        vm = VM("count.elf", qmp_opts=opts)
        try:
            c = vm.client()
            self.assertEqual(c.ok("query-status")["status"], "running")
            c.ok("quit")
            self.assertEqual(vm.proc.wait(TIMEOUT), 0)
            c.close()
        finally:
            vm.close()

    def test_qemu_qmp_nowait(self):
        self.run_with(["-qmp", "unix:PATH,server,nowait"])

    def test_qemu_qmp_server_on_wait_off(self):
        self.run_with(["-qmp", "unix:PATH,server=on,wait=off"])

    def test_chardev_and_mon_control(self):
        self.run_with(["-chardev", "socket,id=mon0,path=PATH,server=on,wait=off",
                       "-mon", "chardev=mon0,mode=control"])

    def test_wait_holds_the_guest_until_a_client_connects(self):
        vm = VM("count.elf", qmp_opts=["--qmp", "unix:PATH,server"])
        try:
            time.sleep(0.5)
            self.assertNotIn("count:", vm.output())
            c = vm.client()
            vm.wait_output("count: tick 1")
            c.ok("quit")
            vm.proc.wait(TIMEOUT)
            c.close()
        finally:
            vm.close()

    def test_mon_control_needs_a_server_socket(self):
        r = subprocess.run([KVMINI, "run", "-chardev", "null,id=n", "-mon",
                            "chardev=n,mode=control"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("QMP needs a listening unix socket", r.stderr)


class Ctl(QmpBase):
    def ctl(self, *args, stdin=None):
        return subprocess.run([KVMINI, "ctl"] + list(args), input=stdin, capture_output=True,
                              text=True, timeout=TIMEOUT)

    def test_ctl_return_error_usage(self):
        r = self.ctl(self.vm.path, "query-status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "running")
        r = self.ctl(self.vm.path, "human-monitor-command", '{"command-line": "info status"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("VM status: running", json.loads(r.stdout))
        r = self.ctl("--raw", self.vm.path, "no-such-command")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(json.loads(r.stdout)["error"]["class"], "CommandNotFound")
        self.assertEqual(self.ctl().returncode, 2)
        self.assertEqual(self.ctl(self.vm.path, "query-status", "[1]").returncode, 2)
        r = self.ctl("/nonexistent/sock", "query-status")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect", r.stderr)

    def test_ctl_stdin_commands(self):
        r = self.ctl(self.vm.path, stdin='stop\nquery-status\n{"execute":"cont"}\n'
                     'query-status\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        statuses = re.findall(r'"status":\s*"(\w+)"', r.stdout)
        self.assertEqual(statuses, ["paused", "running"])
        self.assertIn('"STOP"', r.stderr)
        r = self.ctl(self.vm.path, stdin="query-kvm\nbogus\n")
        self.assertEqual(r.returncode, 1)


STEP_RE = re.compile(r"^checksum: step (\d+) (0x[0-9a-f]+)$")


def checksum_reference():
    """The checksum guest's lines from one uninterrupted run: {step: value}."""
    if not hasattr(checksum_reference, "steps"):
        r = subprocess.run([KVMINI, "run", "--kernel", os.path.join(GUESTS, "checksum.elf")],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        steps = {}
        for line in r.stdout.splitlines():
            m = STEP_RE.match(line)
            if m:
                steps[int(m.group(1))] = m.group(2)
        assert sorted(steps) == list(range(1, 201)), r.stdout[-500:]
        checksum_reference.steps = steps
    return checksum_reference.steps


def full_steps(text):
    """(step, value) of every whole 'checksum: step' line in text (ended by a newline: the
    text may stop in the middle of one), in order."""
    out = []
    for line in text.split("\n")[:-1]:
        m = STEP_RE.match(line.strip("\r"))
        if m:
            out.append((int(m.group(1)), m.group(2)))
    return out


class NamedSnapshots(unittest.TestCase):
    """HMP savevm/loadvm/delvm/info snapshots in --snapshot-dir."""

    def vm(self, guest="checksum.elf", extra=None):
        self.snapdir = tempfile.mkdtemp(prefix="kvmini-snapdir-")

        def clean(d=self.snapdir):
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
        self.addCleanup(clean)
        if extra is None:
            extra = ["--snapshot-dir", "SNAPDIR"]
        vm = VM(guest, [a.replace("SNAPDIR", self.snapdir) for a in extra])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        return vm, c, lambda line: c.ok("human-monitor-command", {"command-line": line})

    def quiet_point(self, vm, c):
        """Stops the VM and waits for its output to settle; returns the output's length."""
        c.ok("stop")
        last = None
        while last != len(vm.output()):
            last = len(vm.output())
            time.sleep(0.3)
        return last

    def test_loadvm_goes_back_to_the_saved_point_and_the_checksum_continues(self):
        ref = checksum_reference()
        vm, c, hmp = self.vm()
        vm.wait_output("checksum: step 20 ")
        at_save = self.quiet_point(vm, c)
        saved = full_steps(vm.output())[-1][0]
        self.assertEqual(hmp("savevm mid"), "")
        self.assertTrue(os.path.exists(os.path.join(self.snapdir, "mid.kvmini")))
        c.ok("cont")
        vm.wait_output("checksum: step %d " % (saved + 40))
        self.assertEqual(c.ok("query-status")["status"], "running")
        at_load = self.quiet_point(vm, c)
        before = vm.output()[:at_load]
        # Everything printed before loadvm is the uninterrupted run's.
        for n, v in full_steps(before):
            self.assertEqual(v, ref[n], "step %d before loadvm" % n)
        self.assertEqual(hmp("loadvm mid"), "")
        # loadvm on a paused VM leaves it paused (QEMU does too); cont runs it from there.
        self.assertEqual(c.ok("query-status")["status"], "paused")
        c.ok("cont")
        self.assertEqual(vm.proc.wait(TIMEOUT), 0, "the guest powers off after step 200")
        vm.reader.join(5)
        after = vm.output()[at_load:]
        # The first line after the junction is the rest of the line the guest was in when
        # saved; from the next one on, the lines are the uninterrupted run's, from there.
        steps = full_steps(after.split("\n", 1)[1])
        self.assertIn(steps[0][0], (saved + 1, saved + 2), after[:300])
        self.assertEqual([n for n, _ in steps], list(range(steps[0][0], 201)))
        for n, v in steps:
            self.assertEqual(v, ref[n], "step %d after loadvm" % n)
        self.assertNotIn("checksum: start", after, "loadvm does not boot the guest again")
        self.assertLess(at_save, at_load)

    def test_loadvm_of_a_running_vm_runs_on(self):
        vm, c, hmp = self.vm("count.elf")
        vm.wait_output("count: tick 2\n")
        self.quiet_point(vm, c)
        saved = self.ticks_seen(vm)[-1]
        self.assertEqual(hmp("savevm early"), "")
        c.ok("cont")
        self.wait_last_tick(vm, saved + 4)
        c.events.clear()
        self.assertEqual(hmp("loadvm early"), "")
        c.event("STOP")
        c.event("RESUME")
        self.assertEqual(c.ok("query-status")["status"], "running")
        # The ticks go back: the first after the drop is the snapshot's next one.
        self.assertEqual(self.wait_drops(vm, 1), [saved + 1])
        # Its RAM is now mapped from early.kvmini: saving over that file and deleting it
        # while mapped both work (the mapping keeps the old file), and loadvm again too.
        self.wait_last_tick(vm, saved + 3)
        self.quiet_point(vm, c)
        again = self.ticks_seen(vm)[-1]
        self.assertEqual(hmp("savevm early"), "")
        self.assertEqual(hmp("savevm later"), "")
        self.assertEqual(hmp("delvm early"), "")
        c.ok("cont")
        self.wait_last_tick(vm, again + 3)
        self.assertEqual(hmp("loadvm later"), "")
        self.assertEqual(self.wait_drops(vm, 2), [saved + 1, again + 1])

    def wait_last_tick(self, vm, n):
        """Waits until the latest tick is at least n (earlier text may hold n already: the
        ticks go back at each loadvm)."""
        deadline = time.time() + TIMEOUT
        while not self.ticks_seen(vm) or self.ticks_seen(vm)[-1] < n:
            self.assertLess(time.time(), deadline, "no tick %d: %r" % (n, self.ticks_seen(vm)))
            time.sleep(0.02)

    def ticks_seen(self, vm):
        return [int(n) for n in re.findall(r"count: tick (\d+)\n", vm.output())]

    def wait_drops(self, vm, count):
        """Waits until the tick numbers have gone down count times; returns the tick after
        each drop."""
        deadline = time.time() + TIMEOUT
        while True:
            t = self.ticks_seen(vm)
            drops = [t[i + 1] for i in range(len(t) - 1) if t[i + 1] <= t[i]]
            if len(drops) >= count:
                return drops
            self.assertLess(time.time(), deadline, "%d drops of %d in %r" %
                            (len(drops), count, t))
            time.sleep(0.02)

    def test_loadvm_with_virtio_blk_reads_in_flight_finishes_every_read(self):
        # The device has up to 32 reads in flight at savevm and at loadvm: the reset stops
        # its worker after them, the load restarts it at the saved queue positions.
        d = tempfile.mkdtemp(prefix="kvmini-blk-")
        disk = os.path.join(d, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(64 << 20)

        def clean():
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
        self.addCleanup(clean)
        vm, c, hmp = self.vm("virtio-blk.elf", extra=[
            "--disk", disk + ",ro", "--mem", "64M", "--append", "blk=bench n=1500000 qd=32"])
        vm.wait_output("virtio-blk: pci ")
        time.sleep(0.2)
        self.assertEqual(hmp("savevm blk"), "")  # in the first directory: the disk's
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(disk), "blk.kvmini")))
        time.sleep(0.3)
        self.assertNotIn("reads of 4096 bytes", vm.output(), "the bench ended before loadvm")
        self.assertEqual(hmp("loadvm blk"), "")
        self.assertEqual(vm.proc.wait(60), 0, vm.output())
        vm.reader.join(5)
        self.assertIn("virtio-blk: bench qd 32: 1500000 reads", vm.output())
        self.assertIn("virtio-blk: OK", vm.output())

    def test_loadvm_with_virtio_console_keeps_the_posted_receive_buffer(self):
        # The guest posts one receive buffer on hvc0 and waits for a line. savevm, then
        # loadvm: the console's queues come back at their saved positions, so the line
        # sent after loadvm lands in that buffer and the guest echoes it.
        sockdir = tempfile.mkdtemp(prefix="kvmini-hvc0-")
        port = os.path.join(sockdir, "hvc0.sock")
        self.addCleanup(os.rmdir, sockdir)
        self.addCleanup(lambda: os.path.exists(port) and os.unlink(port))
        vm, c, hmp = self.vm("virtio-console.elf", extra=[
            "--snapshot-dir", "SNAPDIR", "-serial", "stdio",
            "-chardev", "socket,id=c1,path=%s,server=on,wait=off" % port,
            "-device", "virtio-serial-pci", "-device", "virtconsole,chardev=c1"])

        def recv_until(marker):
            got = b""
            while marker not in got:
                b = con.recv(4096)
                self.assertTrue(b, "the console closed: %r / %s" % (got, vm.output()))
                got += b
            return got
        # The console's socket listens once its device exists, after the QMP socket.
        con = socket.socket(socket.AF_UNIX)
        self.addCleanup(con.close)
        deadline = time.time() + TIMEOUT
        while True:
            try:
                con.connect(port)
                break
            except OSError:
                self.assertLess(time.time(), deadline, "no console socket: " + vm.output())
                time.sleep(0.01)
        con.settimeout(TIMEOUT)
        self.assertIn(b"hvc0: hello from the guest", recv_until(b"virtio-console: ready\n"))
        self.assertEqual(hmp("savevm con"), "")
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertEqual(hmp("loadvm con"), "")
        self.assertEqual(c.ok("query-status")["status"], "running")
        con.sendall(b"after loadvm\n")
        recv_until(b"hvc0 echo: after loadvm")
        self.assertEqual(vm.proc.wait(TIMEOUT), 0, vm.output())
        vm.reader.join(5)
        self.assertIn("virtio-console: echoed 13 bytes", vm.output())
        self.assertIn("virtio-console: OK", vm.output())
        self.assertEqual(vm.output().count("virtio-console: pci "), 1,
                         "loadvm does not boot the guest again")

    def test_info_snapshots_savevm_replaces_and_delvm_removes(self):
        vm, c, hmp = self.vm("count.elf")
        self.assertEqual(hmp("info snapshots"), "There is no snapshot available.\n")
        vm.wait_output("count: tick 1\n")
        self.assertEqual(hmp("savevm one"), "")
        vm.wait_output("count: tick 3\n")
        self.assertEqual(hmp("savevm two"), "")
        out = hmp("info snapshots")
        lines = out.splitlines()
        self.assertEqual(lines[0], "List of snapshots present in %s:" % self.snapdir)
        self.assertEqual(lines[1].split(), ["ID", "TAG", "VM", "SIZE", "DATE", "VM", "CLOCK",
                                            "ICOUNT"])
        rows = [l.split() for l in lines[2:]]
        self.assertEqual([r[1] for r in rows], ["one", "two"], out)
        self.assertEqual([r[0] for r in rows], ["1", "2"], out)
        for r in rows:
            self.assertRegex(" ".join(r[2:4]), r"^[0-9.]+ (B|KiB|MiB|GiB)$", out)
            self.assertRegex(r[4], r"^\d{4}-\d\d-\d\d$", out)
            self.assertRegex(r[5], r"^\d\d:\d\d:\d\d$", out)
            self.assertRegex(r[6], r"^\d\d:\d\d:\d\d\.\d{3}$", out)
        clock = lambda r: sum(float(x) * m for x, m in zip(r[6].split(":"), (3600, 60, 1)))
        self.assertGreater(clock(rows[1]), clock(rows[0]), "VM clock grows between saves")
        # savevm of an existing tag replaces it (still two rows).
        self.assertEqual(hmp("savevm one"), "")
        rows = [l.split() for l in hmp("info snapshots").splitlines()[2:]]
        self.assertEqual(sorted(r[1] for r in rows), ["one", "two"])
        self.assertEqual(hmp("delvm one"), "")
        self.assertFalse(os.path.exists(os.path.join(self.snapdir, "one.kvmini")))
        self.assertTrue(os.path.exists(os.path.join(self.snapdir, "two.kvmini")))
        rows = [l.split() for l in hmp("info snapshots").splitlines()[2:]]
        self.assertEqual([r[1] for r in rows], ["two"])
        self.assertIn("does not exist", hmp("delvm one"))
        self.assertIn("does not exist", hmp("loadvm one"))
        # savevm without a tag names it from the date, as QEMU does.
        self.assertEqual(hmp("savevm"), "")
        self.assertTrue(any(re.match(r"^vm-\d{14}\.kvmini$", f)
                            for f in os.listdir(self.snapdir)), os.listdir(self.snapdir))
        helptext = hmp("help")
        self.assertIn("savevm [TAG] -- ", helptext)
        self.assertIn("loadvm TAG -- ", helptext)
        self.assertIn("delvm TAG -- ", helptext)
        self.assertIn("info snapshots -- ", hmp("info"))
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_bad_tags_are_refused_and_nothing_is_written(self):
        vm, c, hmp = self.vm("count.elf")
        parent = os.path.dirname(self.snapdir)
        before = set(os.listdir(parent))
        for cmd in ("savevm", "loadvm", "delvm"):
            for tag in ("../escape", "a/b", "..", ".hidden", "x" * 200):
                out = hmp("%s %s" % (cmd, tag))
                self.assertTrue(out.startswith("Error: "), (cmd, tag, out))
                self.assertEqual(out.count("\n"), 1, out)
        self.assertIn("needs a snapshot tag", hmp("loadvm"))
        self.assertIn("needs a snapshot tag", hmp("delvm"))
        self.assertEqual(os.listdir(self.snapdir), [])
        self.assertEqual(set(os.listdir(parent)) - before, set())
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_loadvm_of_a_corrupt_or_truncated_file_leaves_the_vm_running_unchanged(self):
        vm, c, hmp = self.vm("count.elf")
        vm.wait_output("count: tick 1\n")
        self.assertEqual(hmp("savevm good"), "")
        good = open(os.path.join(self.snapdir, "good.kvmini"), "rb").read()
        bad = bytearray(good)
        bad[200] ^= 0xff  # inside the first sections: a CRC catches it
        open(os.path.join(self.snapdir, "bad.kvmini"), "wb").write(bad)
        open(os.path.join(self.snapdir, "short.kvmini"), "wb").write(good[:1000])
        open(os.path.join(self.snapdir, "junk.kvmini"), "wb").write(b"not a snapshot" * 10)
        vm.wait_output("count: tick 4\n")
        c.event("RESUME")  # the savevm's pause
        c.events.clear()
        for tag in ("bad", "short", "junk"):
            ticks = vm.ticks()
            out = hmp("loadvm " + tag)
            self.assertTrue(out.startswith("Error: loadvm %s: snapshot " % tag), out)
            self.assertEqual(out.count("\n"), 1, out)
            self.assertEqual(c.ok("query-status")["status"], "running")
            # Unchanged: it counts on from where it was, not from the good snapshot's tick.
            vm.wait_output("count: tick %d\n" % (ticks + 1))
        self.assertFalse([e for e in c.events if e["event"] in ("STOP", "RESUME")],
                         "a refused loadvm does not even pause the VM")
        # info snapshots lists the good one and names the others.
        out = hmp("info snapshots")
        rows = [l.split() for l in out.splitlines()[2:] if not "usable" in l]
        self.assertEqual([r[1] for r in rows], ["good"], out)
        for tag in ("bad", "short", "junk"):
            self.assertIn("%s.kvmini is not a usable snapshot: " % tag, out)

    def test_savevm_without_a_directory_or_disk_says_so(self):
        vm, c, hmp = self.vm("count.elf", extra=[])
        out = hmp("savevm t1")
        self.assertIn("--snapshot-dir", out)
        self.assertTrue(out.startswith("Error: savevm needs a snapshot directory"), out)
        self.assertIn("--snapshot-dir", hmp("info snapshots"))

    def test_the_default_directory_is_the_first_disks(self):
        d = tempfile.mkdtemp(prefix="kvmini-disk-")
        disk = os.path.join(d, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(1 << 20)

        def clean():
            for f in os.listdir(d):
                os.unlink(os.path.join(d, f))
            os.rmdir(d)
        self.addCleanup(clean)
        vm, c, hmp = self.vm("count.elf", extra=["--disk", disk])
        vm.wait_output("count: tick 1\n")
        self.assertEqual(hmp("savevm t1"), "")
        self.assertTrue(os.path.exists(os.path.join(d, "t1.kvmini")), os.listdir(d))
        self.assertIn(" t1 ", hmp("info snapshots"))

    def test_a_snapshot_dir_that_is_not_a_directory_is_refused_at_start(self):
        r = subprocess.run([KVMINI, "run", "--snapshot-dir", "/nonexistent/dir"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 1)
        self.assertIn("--snapshot-dir /nonexistent/dir", r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)


class IncomingDefer(unittest.TestCase):
    def snapshot(self):
        """A snapshot of a count guest that has ticked at least twice: (path, ticks)."""
        src = VM("count.elf")
        self.addCleanup(src.close)
        src.wait_output("count: tick 2\n")
        c = src.client()
        path = os.path.join(src.dir, "snap.kvmini")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        c.ok("stop")
        self.assertEqual(c.ok("migrate", {"uri": "file:" + path}), {})
        c.close()
        return path, src.ticks()

    def test_defer_waits_in_inmigrate_then_migrate_incoming_runs_the_snapshot(self):
        path, saved = self.snapshot()
        vm = VM("count.elf", ["-incoming", "defer"])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        self.assertEqual(c.ok("query-status"),
                         {"running": False, "singlestep": False, "status": "inmigrate"})
        self.assertEqual(c.ok("human-monitor-command", {"command-line": "info status"}),
                         "VM status: paused (inmigrate)\n")
        self.assertEqual(c.ok("query-migrate"), {})
        time.sleep(0.5)
        self.assertNotIn("count:", vm.output(), "the guest must not run before the migration")
        # savevm / migrate have nothing to save yet.
        r = c.cmd("migrate", {"uri": "file:" + path + ".x"})
        self.assertIn("waiting for an incoming migration", r["error"]["desc"])
        for uri in ("tcp:127.0.0.1:4444", "file:", "exec:cat"):
            r = c.cmd("migrate-incoming", {"uri": uri})
            self.assertEqual(error_class(r), "GenericError", uri)
        self.assertEqual(error_class(c.cmd("migrate-incoming", {"uri": 5})), "GenericError")
        self.assertEqual(error_class(c.cmd("migrate-incoming")), "GenericError")
        r = c.cmd("migrate-incoming", {"uri": "file:/nonexistent/snap"})
        self.assertIn("cannot open snapshot", r["error"]["desc"])
        self.assertEqual(c.ok("query-migrate"), {"status": "failed"})
        self.assertEqual(c.ok("query-status")["status"], "inmigrate", "a failure changes nothing")
        self.assertEqual(c.ok("migrate-incoming", {"uri": "file:" + path}), {})
        c.event("RESUME")
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertEqual(c.ok("query-migrate"), {"status": "completed"})
        first = int(vm.wait_match(r"count: tick (\d+)\n").group(1))
        vm.wait_output("count: tick %d\n" % (first + 1))
        self.assertIn(first, (saved, saved + 1), vm.output())
        self.assertNotIn("counters at", vm.output(), "the snapshot runs, not a fresh boot")
        r = c.cmd("migrate-incoming", {"uri": "file:" + path})
        self.assertIn("-incoming defer", r["error"]["desc"])

    def test_defer_with_minus_S_stays_paused_until_cont(self):
        path, saved = self.snapshot()
        vm = VM("count.elf", ["-incoming", "defer", "-S"])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        self.assertEqual(c.ok("query-status")["status"], "inmigrate")
        self.assertEqual(c.ok("migrate-incoming", {"uri": "file:" + path}), {})
        self.assertEqual(c.ok("query-status")["status"], "paused")
        time.sleep(0.5)
        self.assertNotIn("count: tick", vm.output())
        c.ok("cont")
        vm.wait_output("count: tick")
        self.assertEqual(c.ok("query-status")["status"], "running")

    def test_cont_before_the_migration_makes_a_minus_S_vm_start_after_it(self):
        path, saved = self.snapshot()
        vm = VM("count.elf", ["-incoming", "defer", "-S"])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        c.ok("cont")  # QEMU: sets autostart, the VM still waits
        self.assertEqual(c.ok("query-status")["status"], "inmigrate")
        time.sleep(0.3)
        self.assertNotIn("count:", vm.output())
        self.assertEqual(c.ok("migrate-incoming", {"uri": "file:" + path}), {})
        self.assertEqual(c.ok("query-status")["status"], "running")
        vm.wait_output("count: tick")

    def test_hmp_migrate_incoming(self):
        path, saved = self.snapshot()
        vm = VM("count.elf", ["-incoming", "defer"])
        self.addCleanup(vm.close)
        c = vm.client()
        self.addCleanup(c.close)
        hmp = lambda line: c.ok("human-monitor-command", {"command-line": line})
        self.assertIn("needs file:PATH", hmp("migrate_incoming tcp:0:4444"))
        self.assertIn("cannot open snapshot", hmp("migrate_incoming file:/nonexistent"))
        self.assertEqual(c.ok("query-migrate"), {"status": "failed"}, "HMP and QMP agree")
        self.assertEqual(c.ok("query-status")["status"], "inmigrate")
        self.assertEqual(hmp("migrate_incoming file:" + path), "")
        self.assertEqual(c.ok("query-status")["status"], "running")
        self.assertEqual(c.ok("query-migrate"), {"status": "completed"})
        vm.wait_output("count: tick")
        self.assertIn("only allowed with -incoming defer", hmp("migrate_incoming file:" + path))

    def test_defer_and_restore_together_are_refused(self):
        r = subprocess.run([KVMINI, "run", "-incoming", "defer", "--restore", "/tmp/x"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(r.returncode, 2)
        self.assertIn("given twice", r.stderr)


class SnapshotCommand(QmpBase):
    def run_cmd(self, *args, cwd=None):
        return subprocess.run([os.path.abspath(KVMINI), "snapshot"] + list(args),
                              capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)

    def test_snapshot_writes_a_file_that_restores(self):
        self.vm.wait_output("count: tick 2\n")
        path = os.path.join(self.vm.dir, "cli.kvmini")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        r = self.run_cmd(self.vm.path, path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("\n"), 1, r.stdout)
        self.assertTrue(r.stdout.startswith("snapshot written to %s (" % path), r.stdout)
        self.assertEqual(r.stderr, "")
        c = self.client()
        self.assertEqual(c.ok("query-status")["status"], "running", "it runs on after")
        restored = VM("count.elf", ["--restore", path])
        self.addCleanup(restored.close)
        restored.wait_output("count: tick")
        self.assertNotIn("counters at", restored.output())

    def test_a_relative_path_is_the_callers(self):
        r = self.run_cmd(self.vm.path, "rel.kvmini", cwd=self.vm.dir)
        path = os.path.join(self.vm.dir, "rel.kvmini")
        self.addCleanup(lambda: os.path.exists(path) and os.unlink(path))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(path), r.stdout)
        self.assertIn(path, r.stdout)

    def test_errors_are_one_line(self):
        r = self.run_cmd("/nonexistent/sock", "/tmp/x.kvmini")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot connect to /nonexistent/sock", r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        r = self.run_cmd(self.vm.path, "/nonexistent/dir/x.kvmini")
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot create /nonexistent/dir/x.kvmini", r.stderr)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(self.run_cmd().returncode, 2)
        self.assertEqual(self.run_cmd(self.vm.path).returncode, 2)
        self.assertEqual(self.run_cmd("a", "b", "c").returncode, 2)
        r = self.run_cmd("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: kvmini snapshot SOCKET PATH", r.stdout)
        r = subprocess.run([KVMINI, "--help"], capture_output=True, text=True)
        self.assertIn("snapshot SOCKET PATH", r.stdout)
        self.assertEqual(self.client().ok("query-status")["status"], "running")


if __name__ == "__main__":
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("qmp: 0 passed, 0 failed, 1 skipped (no usable /dev/kvm)")
        sys.exit(0)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    result = runner.run(unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__]))
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("qmp: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(0 if failed == 0 else 1)
