/* The guest kit's PCI and virtio drivers (tests/guests/lib/pci.c, virtio.c) against kvmini's
 * PCI host bridge and virtio-pci transport: the pci-probe guest enumerates bus 0 from ring 3,
 * virtio-rng reads entropy from ring 3 by polling, msix takes an MSI-X interrupt in ring 0.
 * What the guests print is what a driver sees, so the assertions are on those lines. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Boots guest with kvmini options opts (NULL-terminated, may be NULL) and the command line
 * append (NULL: none); fills r. */
static void kit_run(const char *guest, const char *const opts[], const char *append,
		    struct harness_result *r)
{
	const char *argv[32] = {"kvmini", "run", "--kernel", harness_guest(guest)};
	unsigned n = 4;
	for (unsigned i = 0; opts && opts[i] && n < 29; i++)
		argv[n++] = opts[i];
	if (append) {
		argv[n++] = "--append";
		argv[n++] = append;
	}
	argv[n] = NULL;
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, r), 0, "cannot run %s", harness_kvmini());
	cr_assert_not(r->timed_out, "%s did not finish:\nstdout:\n%s\nstderr:\n%s", guest, r->out,
		      r->err);
	cr_assert(r->exited, "kvmini died of signal %d:\n%s", r->term_signal, r->err);
}

/* The line of out that starts with prefix, copied into buf (without the newline). */
static bool line_starting(const char *out, const char *prefix, char *buf, size_t len)
{
	for (const char *p = out; p && *p;) {
		const char *end = strchr(p, '\n');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		if (!strncmp(p, prefix, strlen(prefix))) {
			snprintf(buf, len, "%.*s", (int)l, p);
			return true;
		}
		p = end ? end + 1 : NULL;
	}
	return false;
}

TestSuite(guest_kit, .timeout = 60);

Test(guest_kit, pci_probe_enumerates_the_host_bridge_and_the_rng)
{
	struct harness_result r;
	kit_run("pci-probe", (const char *[]){"--rng", NULL}, NULL, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d:\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "pci-probe: access ecam at 0xe0000000 (acpi mcfg)\n"),
		  "ECAM not found through the MCFG table at 0xe0000000:\n%s", r.out);
	cr_assert(strstr(r.out, "pci 00:00.0 8086:29c0 class=060000 "), "no host bridge:\n%s",
		  r.out);
	cr_assert(strstr(r.out, "pci-probe: 2 functions\n"), "%s", r.out);

	char line[512];
	cr_assert(line_starting(r.out, "pci 00:01.0 1af4:1044 ", line, sizeof(line)),
		  "no modern virtio-rng (1af4:1044) at 00:01.0:\n%s", r.out);
	cr_assert(strstr(line, " hdr=00 "), "%s", line);
	cr_assert(strstr(line, " sub=1af4:0004"), "subsystem id is not the device type: %s", line);
	/* every memory BAR is in kvmini's 32-bit window, naturally aligned, a power of two */
	unsigned bars = 0;
	for (const char *p = strstr(line, " bar"); p; p = strstr(p + 1, " bar")) {
		unsigned idx;
		char type[16];
		uint64_t addr, size;
		cr_assert_eq(sscanf(p, " bar%u=%15[a-z0-9]:0x%" SCNx64 "+0x%" SCNx64, &idx, type,
				    &addr, &size),
			     4, "unparsable BAR in %s", line);
		cr_assert(size && !(size & (size - 1)), "BAR %u size 0x%" PRIx64, idx, size);
		cr_assert_eq(addr & (size - 1), 0, "BAR %u at 0x%" PRIx64 " not aligned", idx,
			     addr);
		cr_assert(addr >= 0xc0000000u && addr + size <= 0xe0000000u,
			  "BAR %u at 0x%" PRIx64 " outside the PCI window", idx, addr);
		bars++;
	}
	cr_assert_geq(bars, 1, "no BAR: %s", line);
	/* the capability list holds the virtio structures and MSI-X */
	const char *caps = strstr(line, " caps=");
	cr_assert(caps && strstr(caps, "09") && strstr(caps, "11"), "caps: %s", line);
	cr_assert(strstr(line, " msix="), "%s", line);
	for (unsigned type = 1; type <= 3; type++) {
		char want[32];
		snprintf(want, sizeof(want), " type=%u bar=", type);
		bool found = false;
		for (const char *p = strstr(r.out, "vcap 00:01.0 "); p;
		     p = strstr(p + 1, "vcap 00:01.0 ")) {
			const char *nl = strchr(p, '\n');
			const char *t = strstr(p, want);
			if (t && (!nl || t < nl))
				found = true;
		}
		cr_assert(found, "no virtio capability of type %u:\n%s", type, r.out);
	}
	cr_assert(line_starting(r.out, "msix 00:01.0 entries=", line, sizeof(line)), "%s", r.out);
	cr_assert(strstr(line, " enabled=0 fmask=0"), "MSI-X not off at power-on: %s", line);
	cr_assert(strstr(r.out, "pci-probe: OK\n"), "%s", r.out);
	harness_result_free(&r);
}

Test(guest_kit, pci_config_mechanism_1_and_ecam_see_the_same_functions)
{
	struct harness_result a, b;
	kit_run("pci-probe", (const char *[]){"--rng", NULL}, "pci=ecam", &a);
	kit_run("pci-probe", (const char *[]){"--rng", NULL}, "pci=cf8", &b);
	cr_assert_eq(a.exit_status, 0, "%s", a.out);
	cr_assert_eq(b.exit_status, 0, "%s", b.out);
	cr_assert(strstr(b.out, "pci-probe: access cf8\n"), "%s", b.out);
	/* everything after the access line is the same bytes */
	const char *ra = strchr(a.out, '\n'), *rb = strchr(b.out, '\n');
	cr_assert(ra && rb);
	cr_assert_str_eq(ra, rb, "ECAM and mechanism #1 disagree");
	harness_result_free(&a);
	harness_result_free(&b);
}

Test(guest_kit, pci_probe_without_devices_finds_only_the_host_bridge)
{
	struct harness_result r;
	kit_run("pci-probe", NULL, NULL, &r);
	cr_assert_eq(r.exit_status, 0, "%s\n%s", r.out, r.err);
	cr_assert(strstr(r.out, "pci-probe: 1 functions\n"), "%s", r.out);
	cr_assert_eq(harness_count(r.out, "pci 00:"), 1, "%s", r.out);
	harness_result_free(&r);
}

Test(guest_kit, virtio_rng_from_ring3_reads_bytes_that_differ)
{
	const char *spellings[][3] = {{"--rng", NULL}, {"-device", "virtio-rng-pci", NULL}};
	for (unsigned s = 0; s < 2; s++) {
		struct harness_result r;
		kit_run("virtio-rng", spellings[s], NULL, &r);
		cr_assert_eq(r.exit_status, 0, "%s: exit %d:\n%s\n%s", spellings[s][0],
			     r.exit_status, r.out, r.err);
		cr_assert(strstr(r.out, "virtio-rng: pci 00:01.0 device 4\n"), "%s", r.out);
		cr_assert(strstr(r.out, "accepted 0x100000000\n"), "VERSION_1 only:\n%s", r.out);
		char l1[256], l2[256];
		cr_assert(line_starting(r.out, "virtio-rng: read 1: 64 bytes", l1, sizeof(l1)),
			  "%s", r.out);
		cr_assert(line_starting(r.out, "virtio-rng: read 2: 64 bytes", l2, sizeof(l2)),
			  "%s", r.out);
		cr_assert_str_neq(strrchr(l1, ' '), strrchr(l2, ' '), "same bytes twice");
		cr_assert(strstr(r.out, "virtio-rng: OK\n"), "%s", r.out);
		harness_result_free(&r);
	}
}

Test(guest_kit, virtio_rng_without_a_device_fails_cleanly)
{
	struct harness_result r;
	kit_run("virtio-rng", NULL, NULL, &r);
	cr_assert_eq(r.exit_status, 23, "exit %d:\n%s", r.exit_status, r.out);
	cr_assert(strstr(r.out, "virtio-rng: FAIL find: no virtio-pci device 4"), "%s", r.out);
	harness_result_free(&r);
}

Test(guest_kit, msix_vector_of_the_rng_queue_reaches_the_guest_handler)
{
	struct harness_result r;
	kit_run("msix", (const char *[]){"--rng", NULL}, NULL, &r);
	cr_assert_eq(r.exit_status, 0, "exit %d:\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "msix: interrupts 1, used len 16\n"), "%s", r.out);
	cr_assert(strstr(r.out, "msix: OK\n"), "%s", r.out);
	harness_result_free(&r);
}
