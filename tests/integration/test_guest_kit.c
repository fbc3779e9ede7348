/* The guest kit's virtio driver paths that the device suites do not take: indirect
 * descriptor tables and event-index notification, end to end through kvmini's virtio-pci
 * transport and virtio-rng (tests/guests/virtio-rng.c, ring 3, polling). */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

static void kit_rng(const char *append, struct harness_result *r)
{
	const char *argv[] = {"kvmini",	  "run",
			      "--kernel", harness_guest("virtio-rng"),
			      "--rng",	  append ? "--append" : NULL,
			      append,	  NULL};
	struct harness_opts o = {.timeout_s = 30};
	cr_assert_eq(harness_run(argv, &o, r), 0, "cannot run %s", harness_kvmini());
	cr_assert_not(r->timed_out, "virtio-rng did not finish:\n%s\n%s", r->out, r->err);
	cr_assert(r->exited, "kvmini died of signal %d:\n%s", r->term_signal, r->err);
}

TestSuite(guest_kit, .timeout = 60);

/* Each request is one INDIRECT descriptor whose table holds two writable halves: the device
 * fills both (64 bytes in one request) and the two reads differ. */
Test(guest_kit, rng_through_indirect_descriptor_tables)
{
	struct harness_result r;
	kit_rng("indirect", &r);
	cr_assert_eq(r.exit_status, 0, "exit %d:\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "accepted 0x110000000\n"), "INDIRECT_DESC not accepted:\n%s",
		  r.out);
	cr_assert(strstr(r.out, "read 1: 64 bytes in 1 requests"), "%s", r.out);
	cr_assert(strstr(r.out, "read 2: 64 bytes in 1 requests"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-rng: OK\n"), "%s", r.out);
	harness_result_free(&r);
}

/* With VIRTIO_F_EVENT_IDX the driver notifies only as avail_event asks and the device still
 * answers every request (a device that never updated avail_event would get no notification
 * for the second read and the guest would time out). */
Test(guest_kit, rng_with_event_index_notifications)
{
	struct harness_result r;
	kit_rng("event_idx indirect", &r);
	cr_assert_eq(r.exit_status, 0, "exit %d:\n%s\n%s", r.exit_status, r.out, r.err);
	cr_assert(strstr(r.out, "accepted 0x130000000\n"), "%s", r.out);
	cr_assert(strstr(r.out, "virtio-rng: OK\n"), "%s", r.out);
	harness_result_free(&r);
}

/* No device: the guest says so and exits with its documented status. */
Test(guest_kit, rng_guest_without_a_device_fails_cleanly)
{
	const char *argv[] = {"kvmini", "run", "--kernel", harness_guest("virtio-rng"), NULL};
	struct harness_opts o = {.timeout_s = 30};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0);
	cr_assert_eq(r.exit_status, 23, "exit %d:\n%s", r.exit_status, r.out);
	cr_assert(strstr(r.out, "virtio-rng: FAIL find: no virtio-pci device 4"), "%s", r.out);
	harness_result_free(&r);
}
