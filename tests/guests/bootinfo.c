/* bootinfo: prints what kvmini passed in boot_params and checks it.
 *
 * Expected output (addresses depend on --mem and the initrd):
 *   e820: 0x0000000000000000 - 0x00000000000a0000 type 1
 *   e820: 0x00000000000f0000 - 0x0000000000100000 type 2
 *   e820: 0x0000000000100000 - 0x0000000008000000 type 1
 *   ram: 131008 KiB usable
 *   cmdline: <the command line, exactly>
 *   initrd: addr 0x0000000007fff000 size 4096        (or "initrd: none")
 *   initrd: fnv1a 0x1234abcd                         (only with an initrd)
 *   cpus: 2                                          (processor entries of the MP table)
 *   bootinfo: OK
 * e820 ranges are printed as start - end with the end EXCLUSIVE (start + size).
 * Exit: power-off (kvmini exits 0) if every check passes; otherwise a line
 * "bootinfo: FAIL <why>" per failed check and debug-exit 2 (kvmini exits 5).
 *
 * Checks made always: 1..128 e820 entries, sorted and not overlapping, RAM at 1 MiB; an
 * initrd (if any) page-aligned, below 4 GiB and inside one type-1 range, not overlapping
 * this guest's image.
 * Checks requested on the command line (each word optional):
 *   expect_mem_mb=N        total type-1 RAM T satisfies N MiB - 1 MiB <= T <= N MiB
 *   expect_initrd_size=N   the initrd is exactly N bytes
 *   expect_initrd_sum=HEX  32-bit FNV-1a of the initrd bytes (offset basis 0x811c9dc5,
 *                          prime 0x01000193; for each byte: h ^= byte; h *= prime) equals
 *                          HEX (with or without 0x)
 *   expect_no_initrd       there is no initrd (address and size 0)
 *   expect_cmdline_len=N   strlen(command line) == N (catches truncation)
 *   expect_cpus=N          the MP table lists N enabled processors
 * The checksum runs in ring 3 (natively on a PVM host), so large initrds are cheap. */
#include "kit.h"

#define MiB ((uint64_t)1024 * 1024)

extern char __image_start[], __image_end[];

static unsigned failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	char buf[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	printf("bootinfo: FAIL %s\n", buf);
	failures++;
}

struct span {
	uint64_t addr, size;
};

static uint64_t fnv1a_user(uint64_t arg)
{
	const struct span *s = (const struct span *)(uintptr_t)arg;
	const volatile uint8_t *p = phys(s->addr);
	uint32_t h = 0x811c9dc5u;
	for (uint64_t i = 0; i < s->size; i++) {
		h ^= p[i];
		h *= 0x01000193u;
	}
	return h;
}

int guest_main(const struct boot_params *bp)
{
	/* e820 */
	unsigned n = bp_e820_count(bp);
	uint64_t prev_end = 0;
	bool ram_at_1m = false;
	for (unsigned i = 0; i < n; i++) {
		struct e820_entry e = bp_e820_entry(bp, i);
		printf("e820: 0x%016lx - 0x%016lx type %u\n", e.addr, e.addr + e.size, e.type);
		if (e.addr < prev_end)
			fail("e820 entry %u (0x%lx) overlaps or is out of order", i, e.addr);
		if (e.size == 0)
			fail("e820 entry %u is empty", i);
		prev_end = e.addr + e.size;
		if (e.type == E820_RAM && e.addr <= 0x100000 && e.addr + e.size > 0x100000)
			ram_at_1m = true;
	}
	if (n == 0)
		fail("no e820 entries");
	if (!ram_at_1m)
		fail("no RAM entry covers 1 MiB");
	uint64_t ram = bp_ram_bytes(bp);
	printf("ram: %lu KiB usable\n", ram >> 10);

	/* command line */
	const char *cmdline = bp_cmdline(bp);
	printf("cmdline: %s\n", cmdline);

	/* initrd */
	uint64_t ird = bp_initrd_addr(bp), irs = bp_initrd_size(bp);
	uint32_t sum = 0;
	if (irs == 0 && ird == 0) {
		puts("initrd: none");
	} else {
		printf("initrd: addr 0x%016lx size %lu\n", ird, irs);
		bool inside = false;
		for (unsigned i = 0; i < n; i++) {
			struct e820_entry e = bp_e820_entry(bp, i);
			if (e.type == E820_RAM && ird >= e.addr && ird + irs <= e.addr + e.size)
				inside = true;
		}
		if (ird & 0xfff)
			fail("initrd at 0x%lx is not page aligned", ird);
		if (ird + irs > 0x100000000ull)
			fail("initrd [0x%lx, 0x%lx) is not below 4 GiB", ird, ird + irs);
		if (!inside)
			fail("initrd [0x%lx, 0x%lx) is not inside one RAM range", ird, ird + irs);
		if (ird < (uint64_t)(uintptr_t)__image_end &&
		    ird + irs > (uint64_t)(uintptr_t)__image_start)
			fail("initrd overlaps the guest image [0x%lx, 0x%lx)",
			     (uint64_t)(uintptr_t)__image_start, (uint64_t)(uintptr_t)__image_end);
		if (irs && ird + irs <= 0x100000000ull) {
			struct span s = {.addr = ird, .size = irs};
			sum = (uint32_t)user_call(fnv1a_user, (uint64_t)(uintptr_t)&s);
			printf("initrd: fnv1a 0x%08x\n", sum);
		}
	}

	/* CPUs */
	struct mp_info mp;
	const char *why;
	if (mp_read(&mp, &why))
		printf("cpus: %u\n", mp.ncpus);
	else
		printf("cpus: unknown (%s)\n", why);

	/* requested checks */
	uint64_t v;
	if (cmdline_get_u64(cmdline, "expect_mem_mb", &v)) {
		if (ram > v * MiB || ram + MiB < v * MiB)
			fail(
			    "usable RAM %lu KiB is not within [%lu, %lu] KiB for expect_mem_mb=%lu",
			    ram >> 10, (v * MiB - MiB) >> 10, (v * MiB) >> 10, v);
	}
	if (cmdline_get_u64(cmdline, "expect_initrd_size", &v) && irs != v)
		fail("initrd size %lu, expected %lu", irs, v);
	char hex[24];
	if (cmdline_get(cmdline, "expect_initrd_sum", hex, sizeof(hex))) {
		const char *end;
		uint64_t want = parse_u64(hex, &end, true);
		if (*end || !hex[0])
			fail("expect_initrd_sum=%s is not a hex number", hex);
		else if (irs == 0)
			fail("expect_initrd_sum given but there is no initrd");
		else if (sum != (uint32_t)want)
			fail("initrd fnv1a 0x%08x, expected 0x%08x", sum, (uint32_t)want);
	}
	if (cmdline_has_word(cmdline, "expect_no_initrd") && (irs || ird))
		fail("an initrd is present (addr 0x%lx size %lu), expected none", ird, irs);
	if (cmdline_get_u64(cmdline, "expect_cmdline_len", &v) && strlen(cmdline) != v)
		fail("command line is %lu bytes, expected %lu", (uint64_t)strlen(cmdline), v);
	if (cmdline_get_u64(cmdline, "expect_cpus", &v) && (!mp.found || mp.ncpus != v))
		fail("MP table lists %u cpus, expected %lu", mp.found ? mp.ncpus : 0, v);

	if (failures)
		return 2;
	puts("bootinfo: OK");
	return 0;
}
