/* PCI and virtio-pci seen from a guest: the kit's probe guests enumerate bus 0 through ECAM
 * and mechanism #1 from ring 3, read entropy from virtio-rng, and take an MSI-X vector and
 * the INTx line into their IDT handlers. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

TestSuite(pci, .timeout = 90);

static void pci_run(const char *const argv[], struct harness_result *r)
{
	struct harness_opts o = {.timeout_s = 60};
	cr_assert_eq(harness_run(argv, &o, r), 0, "cannot run %s", harness_kvmini());
	cr_assert_not(r->timed_out, "kvmini did not finish:\nstdout:\n%s\nstderr:\n%s", r->out,
		      r->err);
	cr_assert(r->exited, "kvmini died of signal %d:\n%s", r->term_signal, r->err);
}

/* The lines of out that start with prefix, concatenated (for comparing two runs). */
static char *pci_lines(const char *out, const char *prefix)
{
	size_t cap = strlen(out) + 1, n = 0;
	char *acc = calloc(1, cap);
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
		if (!strncmp(p, prefix, strlen(prefix))) {
			memcpy(acc + n, p, len);
			n += len;
		}
		p = nl ? nl + 1 : NULL;
	}
	return acc;
}

#define OUT_HAS(r, s) cr_assert(strstr((r).out, s), "no \"%s\" in:\n%s\n%s", s, (r).out, (r).err)

Test(pci, host_bridge_alone_without_devices)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "--kernel", harness_guest("pci-probe"), NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "pci-probe failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "pci-probe: access ecam");
	OUT_HAS(r, "pci 00:00.0 8086:29c0 class=060000 rev=00 hdr=00");
	OUT_HAS(r, "pci-probe: 1 functions");
	harness_result_free(&r);
}

/* --rng: a virtio-pci modern function at 00:01.0 with one 32-bit BAR of 32 KiB that kvmini
 * placed at the bottom of the 32-bit window, the four virtio structures and the access
 * window as vendor capabilities, and MSI-X with one vector per queue plus config. */
Test(pci, virtio_rng_function_through_ecam)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "--kernel", harness_guest("pci-probe"), "--rng", NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "pci-probe failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "pci 00:01.0 1af4:1044 class=ff0000 rev=01 hdr=00 sub=1af4:0004 "
		   "bar0=mem32:0xc0000000+0x8000 caps=09,09,09,09,11 msix=2");
	OUT_HAS(r, "vcap 00:01.0 @0x40 type=1 bar=0 off=0x0 len=0x1000");
	OUT_HAS(r, "vcap 00:01.0 @0x50 type=2 bar=0 off=0x3000 len=0x4");
	OUT_HAS(r, "vcap 00:01.0 @0x64 type=3 bar=0 off=0x1000 len=0x1000");
	OUT_HAS(r, "type=5 bar=0");
	OUT_HAS(r, "msix 00:01.0 entries=2 table=bar0+0x4000 pba=bar0+0x5000 enabled=0 fmask=0");
	OUT_HAS(r, "pci-probe: 2 functions");
	harness_result_free(&r);
}

/* Mechanism #1 (0xcf8/0xcfc) sees exactly what ECAM sees. */
Test(pci, mechanism_1_agrees_with_ecam)
{
	struct harness_result a, b;
	const char *ecam[] = {"kvmini", "--kernel", harness_guest("pci-probe"), "--rng", NULL};
	const char *cf8[] = {"kvmini",	"--kernel", harness_guest("pci-probe"), "--rng", "--append",
			     "pci=cf8", NULL};
	pci_run(ecam, &a);
	pci_run(cf8, &b);
	cr_assert_eq(b.exit_status, 0, "pci-probe (cf8) failed:\n%s\n%s", b.out, b.err);
	cr_assert(strstr(b.out, "pci-probe: access cf8"), "%s", b.out);
	char *la = pci_lines(a.out, "pci "), *lb = pci_lines(b.out, "pci ");
	cr_assert_str_eq(la, lb, "ECAM and mechanism #1 disagree");
	cr_assert(strstr(la, "1af4:1044"), "%s", la);
	free(la);
	free(lb);
	harness_result_free(&a);
	harness_result_free(&b);
}

/* QEMU's spelling: bytes arrive from the host and two reads differ. */
Test(pci, rng_bytes_arrive_and_differ)
{
	struct harness_result r;
	const char *argv[] = {"kvmini",
			      "--kernel",
			      harness_guest("virtio-rng"),
			      "-object",
			      "rng-random,id=r0,filename=/dev/urandom",
			      "-device",
			      "virtio-rng-pci,rng=r0",
			      NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "virtio-rng failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "virtio-rng: pci 00:01.0 device 4");
	OUT_HAS(r, "virtio-rng: OK");
	const char *r1 = strstr(r.out, "read 1: "), *r2 = strstr(r.out, "read 2: ");
	cr_assert(r1 && r2, "%s", r.out);
	r1 = strchr(r1, ':') + 1;
	r1 = strchr(r1, ':');
	r2 = strchr(r2, ':') + 1;
	r2 = strchr(r2, ':');
	cr_assert(r1 && r2, "%s", r.out);
	cr_assert_neq(strncmp(r1, r2, 33), 0, "two reads gave the same bytes:\n%s", r.out);
	harness_result_free(&r);
}

Test(pci, msix_vector_reaches_the_guest_handler)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "--kernel", harness_guest("msix"), "--rng", NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "msix failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "msix: interrupts 1, used len 16");
	OUT_HAS(r, "msix: OK");
	harness_result_free(&r);
}

Test(pci, intx_line_without_msix)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "--kernel", harness_guest("intx"), "--rng", NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "intx failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "intx: pci 00:01.0 line 17 pin 1");
	OUT_HAS(r, "isr 0x1, isr after 0x0, used len 16");
	OUT_HAS(r, "intx: OK");
	harness_result_free(&r);
}

/* vectors=0: the function has no MSI-X capability at all, and the device still
 * interrupts through INTx. */
Test(pci, vectors_0_no_msix_capability_and_intx_works)
{
	struct harness_result r;
	const char *probe[] = {
	    "kvmini", "--kernel", harness_guest("pci-probe"), "-device", "virtio-rng-pci,vectors=0",
	    NULL};
	pci_run(probe, &r);
	cr_assert_eq(r.exit_status, 0, "pci-probe failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "pci 00:01.0 1af4:1044 class=ff0000 rev=01 hdr=00 sub=1af4:0004 "
		   "bar0=mem32:0xc0000000+0x8000 caps=09,09,09,09\n");
	cr_assert_null(strstr(r.out, "msix "), "%s", r.out);
	harness_result_free(&r);

	const char *intx[] = {
	    "kvmini", "--kernel", harness_guest("intx"), "-device", "virtio-rng-pci,vectors=0",
	    NULL};
	pci_run(intx, &r);
	cr_assert_eq(r.exit_status, 0, "intx failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "intx: no msix capability");
	OUT_HAS(r, "intx: pci 00:01.0 line 17 pin 1");
	OUT_HAS(r, "isr 0x1, isr after 0x0, used len 16");
	OUT_HAS(r, "intx: OK");
	harness_result_free(&r);
}

/* vectors=N sizes the MSI-X table; the default is one per queue plus one. */
Test(pci, vectors_n_sizes_the_msix_table)
{
	struct harness_result r;
	const char *argv[] = {
	    "kvmini", "--kernel", harness_guest("pci-probe"), "-device", "virtio-rng-pci,vectors=5",
	    NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "pci-probe failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "caps=09,09,09,09,11 msix=5");
	OUT_HAS(r, "msix 00:01.0 entries=5 table=bar0+0x4000 pba=bar0+0x5000");
	harness_result_free(&r);
	/* A disk with vectors=0 still does its I/O (the guest polls; INTx is there). */
	char path[] = "/tmp/kvmini-vec-XXXXXX", drive[96];
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(drive, sizeof(drive), "if=none,id=d0,file=%s,format=raw", path);
	const char *blk[] = {"kvmini",	   "--kernel", harness_guest("virtio-blk"),
			     "-append",	   "blk=rw",   "-drive",
			     drive,	   "-device",  "virtio-blk-pci,drive=d0,vectors=0",
			     "-nographic", NULL};
	pci_run(blk, &r);
	unlink(path);
	cr_assert_eq(r.exit_status, 0, "virtio-blk failed:\n%s\n%s", r.out, r.err);
	OUT_HAS(r, "virtio-blk: OK");
	harness_result_free(&r);
}

static void refused(const char *dev, const char *msg)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "--kernel", harness_guest("hello"), "-device", dev, NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 2, "%s: exit %d\n%s", dev, r.exit_status, r.err);
	cr_assert(strstr(r.err, msg), "%s: %s", dev, r.err);
	cr_assert_eq(harness_count(r.err, "\n"), 1, "one line:\n%s", r.err);
	cr_assert_null(strstr(r.out, "Hello"), "the VM must not run");
	harness_result_free(&r);
}

Test(pci, silly_vectors_refused_in_one_line)
{
	refused("virtio-rng-pci,vectors=257", "vectors must be 0 (no MSI-X, INTx only) to 256");
	refused("virtio-rng-pci,vectors=-1", "vectors must be 0");
	refused("virtio-rng-pci,vectors=many", "vectors must be 0");
	refused("virtio-rng-device,vectors=2", "vectors= is a virtio-pci property");
}

/* The reset control register still answers at 0xcf9 next to CONFIG_ADDRESS. */
Test(pci, reset_register_shares_the_config_ports)
{
	struct harness_result r;
	const char *argv[] = {"kvmini",
			      "-v",
			      "--kernel",
			      harness_guest("portout"),
			      "-no-reboot",
			      "--append",
			      "port=0xcf9 value=0x06 width=1",
			      NULL};
	pci_run(argv, &r);
	cr_assert_eq(r.exit_status, 0, "%s\n%s", r.out, r.err);
	cr_assert(strstr(r.err, "reset control register"), "no reset:\n%s\n%s", r.out, r.err);
	cr_assert_null(strstr(r.out, "nothing stopped the VM"), "%s", r.out);
	harness_result_free(&r);
}

Test(pci, unknown_virtio_driver_refused)
{
	struct harness_result r;
	const char *argv[] = {"kvmini", "-device", "virtio-rng-pci,rng=nope", NULL};
	pci_run(argv, &r);
	cr_assert_neq(r.exit_status, 0);
	cr_assert(strstr(r.err, "rng=nope names no -object rng-random"), "%s", r.err);
	cr_assert_eq(harness_count(r.err, "kvmini:"), 1, "one line:\n%s", r.err);
	harness_result_free(&r);
}
