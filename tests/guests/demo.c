/* demo: the guest kvmini boots when no --kernel is given (embedded in the kvmini binary).
 *
 * Expected output (with --mem 128M --cpus 2 --append "hello"), lines ending in "\r\n"
 * because the user's terminal may be in raw mode; e820 ranges here are inclusive:
 *
 *   (an empty line)
 *   kvmini demo guest
 *   =================
 *   A 64-bit guest booted by kvmini through the Linux boot protocol.
 *
 *   Memory map (e820)
 *     0x0000000000000000-0x000000000009ffff    640 KiB  RAM
 *     0x00000000000e0000-0x00000000000fffff    128 KiB  reserved
 *     0x0000000000100000-0x0000000007ffffff    127 MiB  RAM
 *   Usable RAM: 127.6 MiB
 *
 *   CPUs: 2 (MP table), IOAPIC at 0xfec00000
 *     cpu 0: hello from the boot processor
 *     cpu 1: hello
 *
 *   Command line: hello
 *
 *   All done: powering off.
 *   To boot Linux instead: kvmini run --kernel bzImage --append "console=ttyS0"
 *
 * Exit: power-off (kvmini exits 0). The APs are started one at a time so their lines come
 * in order; an AP that does not start is reported on its line and the demo carries on. */
#include "kit.h"

#define KiB ((uint64_t)1024)
#define MiB ((uint64_t)1024 * KiB)
#define GiB ((uint64_t)1024 * MiB)

static volatile uint32_t said_hello;

/* "640 KiB", "127 MiB", "1.5 GiB": whole units where exact, else one decimal. */
static void format_size(char *buf, size_t len, uint64_t bytes)
{
	uint64_t unit = bytes >= GiB ? GiB : bytes >= MiB ? MiB : KiB;
	const char *name = unit == GiB ? "GiB" : unit == MiB ? "MiB" : "KiB";
	uint64_t whole = bytes / unit, tenth = (bytes % unit) * 10 / unit;
	if (tenth)
		snprintf(buf, len, "%lu.%lu %s", whole, tenth, name);
	else
		snprintf(buf, len, "%lu %s", whole, name);
}

static void ap_hello(unsigned apic_id)
{
	printf("  cpu %u: hello\n", apic_id);
	atomic_fetch_add32(&said_hello, 1);
}

int guest_main(const struct boot_params *bp)
{
	console_set_crlf(true);
	puts("");
	puts("kvmini demo guest");
	puts("=================");
	puts("A 64-bit guest booted by kvmini through the Linux boot protocol.");
	puts("");

	puts("Memory map (e820)");
	char size[32];
	for (unsigned i = 0; i < bp_e820_count(bp); i++) {
		struct e820_entry e = bp_e820_entry(bp, i);
		format_size(size, sizeof(size), e.size);
		printf("  0x%016lx-0x%016lx  %9s  %s\n", e.addr, e.addr + e.size - 1, size,
		       e820_type_name(e.type));
	}
	format_size(size, sizeof(size), bp_ram_bytes(bp));
	printf("Usable RAM: %s\n", size);
	puts("");

	struct mp_info mp;
	const char *why;
	if (!mp_read(&mp, &why)) {
		printf("CPUs: 1 (no MP table: %s)\n", why);
	} else {
		printf("CPUs: %u (MP table), IOAPIC at 0x%08x\n", mp.ncpus, mp.ioapic_addr);
		lapic_enable();
		uint32_t self = lapic_id();
		printf("  cpu %u: hello from the boot processor\n", self);
		for (unsigned i = 0; i < mp.ncpus; i++) {
			unsigned id = mp.apic_id[i];
			if (id == self)
				continue;
			uint32_t before = atomic_read32(&said_hello);
			if (ap_start(id, ap_hello, 2 * TSC_HZ_MAX) != 0) {
				printf("  cpu %u: did not start\n", id);
				continue;
			}
			/* wait for its line, so the output stays in order */
			uint64_t t0 = rdtsc();
			while (atomic_read32(&said_hello) == before && rdtsc() - t0 < TSC_HZ_MAX)
				cpu_relax();
		}
	}
	puts("");

	const char *cmdline = bp_cmdline(bp);
	printf("Command line: %s\n", cmdline[0] ? cmdline : "(empty)");
	uint64_t irs = bp_initrd_size(bp);
	if (irs) {
		format_size(size, sizeof(size), irs);
		printf("Initrd: %s at 0x%lx\n", size, bp_initrd_addr(bp));
	}
	puts("");
	puts("All done: powering off.");
	puts("To boot Linux instead: kvmini run --kernel bzImage --append \"console=ttyS0\"");
	return 0;
}
