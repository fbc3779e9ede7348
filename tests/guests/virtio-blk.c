/* virtio-blk: drives a virtio block device from ring 3 with polling.
 *
 * Finds the device (PCI vendor 0x1af4 device 0x1042, or virtio-mmio with virtio=mmio),
 * negotiates VERSION_1 (+ FLUSH, DISCARD, WRITE_ZEROES, RO, BLK_SIZE, SEG_MAX), reads the
 * configuration, then runs the scenario the command line names (blk=...):
 *   rw       write a pattern at sector 8 (8 sectors), FLUSH, read it back and compare;
 *            read one sector past the end (must be IOERR); GET_ID
 *   ro       (a read-only disk) a write must fail with IOERR, a read must work
 *   discard  DISCARD sectors [256, 256 + 1024)
 *   mq       (negotiates MQ) queue i writes block i + 1 (sector 8 + 8i) with the pattern
 *            xor i and flushes; each block is read back on queue i + 1 (mod N) and compared;
 *            prints "virtio-blk: mq N queues used"
 *   flushed  write the pattern, FLUSH, print "flushed", then spin (the test kills kvmini)
 *   bench    n=N (default 20000) random 4 KiB reads at queue depth 1, then at 32 (or only
 *            at qd=D, up to 64); prints
 *            "bench qd D: N reads of 4096 bytes in C cycles" (TSC cycles)
 *   getid    n=N (default 2000) GET_ID requests one at a time: the cost of one notification
 *            round trip through the device (no disk I/O); kick=always writes the notify
 *            register for each even when the device asked for no kicks; prints
 *            "getid: N requests in C cycles (K notifications)"
 *   writer   rounds=R (default 100) blocks=K (default 256): each round writes 4 KiB blocks
 *            0..K-1 at queue depth 32 (block k of round r: byte i = (i*13 + k*7 + r*31) &
 *            0xff), FLUSHes, reads them all back at depth 32 and checks them, and prints
 *            "virtio-blk: round r ok": a snapshot taken meanwhile has writes in flight
 * With `hold` on the command line the guest spins after "OK" instead of powering off.
 * Pattern byte i of the 4 KiB block: (i * 13 + 7) & 0xff.
 *
 * Output:
 *   virtio-blk: pci 00:0N.0 capacity C blk_size B seg_max S features 0x...
 *   virtio-blk: <step> status N    for each request
 *   virtio-blk: id <serial>
 *   virtio-blk: OK
 * Failure: "virtio-blk: FAIL <why>", debug-exit 11 (kvmini exits 23). */
#include "kit.h"
#include "pci.h"
#include "virtio.h"

#define T_IN	       0
#define T_OUT	       1
#define T_FLUSH	       4
#define T_GET_ID       8
#define T_DISCARD      11
#define F_RO	       (1ull << 5)
#define F_BLK_SIZE     (1ull << 6)
#define F_SEG_MAX      (1ull << 2)
#define F_FLUSH	       (1ull << 9)
#define F_DISCARD      (1ull << 13)
#define F_WRITE_ZEROES (1ull << 14)
#define F_MQ	       (1ull << 12)
#define TIMEOUT	       (5 * TSC_HZ_MAX)
#define BLOCK	       4096u

static const char *cmdline;
static struct virtio_dev dev;
#define MAXQ 8
static struct virtq queues[MAXQ];
static struct virtq *vq = &queues[0]; /* the queue request() uses */

struct blk_hdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

static struct blk_hdr *hdr;
static uint8_t *status, *data, *data2;

static uint64_t failed(const char *what)
{
	printf("virtio-blk: FAIL %s: %s\n", what, dev.err);
	return 11;
}

/* One request; returns its status byte (0xff if none came back). */
static int request(const char *step, uint32_t type, uint64_t sector, void *buf, uint32_t len,
		   bool device_writes, uint32_t *used_len)
{
	hdr->type = type;
	hdr->ioprio = 0;
	hdr->sector = sector;
	*status = 0xff;
	struct virtq_buf b[3] = {{hdr, sizeof(*hdr)}, {buf, len}, {status, 1}};
	int head;
	if (!len) {
		b[1] = b[2];
		head = virtq_add(vq, b, 1, 1);
	} else if (device_writes) {
		head = virtq_add(vq, b, 1, 2);
	} else {
		head = virtq_add(vq, b, 2, 1);
	}
	if (head < 0) {
		printf("virtio-blk: FAIL %s: queue full\n", step);
		return -1;
	}
	virtq_kick(vq);
	uint32_t l = 0;
	int id = virtq_wait(vq, TIMEOUT, &l);
	if (id != head) {
		printf("virtio-blk: FAIL %s: no answer (%d): %s\n", step, id, dev.err);
		return -1;
	}
	if (used_len)
		*used_len = l;
	printf("virtio-blk: %s status %u\n", step, *status);
	return *status;
}

static void fill_pattern(uint8_t *p)
{
	for (unsigned i = 0; i < BLOCK; i++)
		p[i] = (uint8_t)((i * 13 + 7) & 0xff);
}

/* blk=bench: n random 4 KiB reads at queue depth `depth`, polling; completions are reaped
 * in batches and their slots refilled with one kick. */
#define BENCH_MAX_DEPTH 64
static uint64_t bench_rng = 0x9e3779b97f4a7c15ull;

static uint64_t bench_sector(uint64_t capacity)
{
	bench_rng ^= bench_rng << 13;
	bench_rng ^= bench_rng >> 7;
	bench_rng ^= bench_rng << 17;
	return (bench_rng % (capacity / 8)) * 8;
}

static int bench(unsigned depth, uint64_t n, uint64_t capacity)
{
	static struct blk_hdr *hdrs;
	static uint8_t *sts, *bufs;
	static int8_t slot_of_head[VIRTQ_MAX_SIZE];
	if (!hdrs) {
		hdrs = virtio_alloc(sizeof(*hdrs) * BENCH_MAX_DEPTH, 16);
		sts = virtio_alloc(BENCH_MAX_DEPTH, 1);
		bufs = virtio_alloc(BLOCK * BENCH_MAX_DEPTH, 4096);
		if (!hdrs || !sts || !bufs) {
			puts("virtio-blk: FAIL bench: pool used up");
			return -1;
		}
	}
	uint64_t submitted = 0, done = 0, kicks = 0;
	virtq_set_no_interrupt(vq, true); /* it polls, as a polling driver tells the device */
	/* For the host's CPU figure: bench/blk-randread reads the VMM's CPU time here. */
	printf("virtio-blk: bench qd %u: start\n", depth);
	uint64_t t0 = rdtsc();
	for (unsigned s = 0; s < depth && submitted < n; s++, submitted++) {
		hdrs[s] = (struct blk_hdr){T_IN, 0, bench_sector(capacity)};
		sts[s] = 0xff;
		struct virtq_buf b[3] = {
		    {&hdrs[s], sizeof(hdrs[s])}, {bufs + s * BLOCK, BLOCK}, {&sts[s], 1}};
		int head = virtq_add(vq, b, 1, 2);
		if (head < 0)
			return -1;
		slot_of_head[head] = (int8_t)s;
	}
	virtq_kick(vq);
	kicks++;
	uint64_t deadline = rdtsc() + 10 * TSC_HZ_MAX;
	while (done < n) {
		unsigned refill[BENCH_MAX_DEPTH], nrefill = 0;
		uint32_t len;
		int id;
		while ((id = virtq_poll(vq, &len)) >= 0) {
			unsigned s = (unsigned)slot_of_head[id];
			if (sts[s] != 0) {
				printf("virtio-blk: FAIL bench: status %u\n", sts[s]);
				return -1;
			}
			done++;
			if (submitted < n) {
				refill[nrefill++] = s;
				submitted++;
			}
		}
		if (id == -2 || rdtsc() > deadline) {
			printf("virtio-blk: FAIL bench: %lu of %lu done: %s\n", done, n, dev.err);
			return -1;
		}
		for (unsigned i = 0; i < nrefill; i++) {
			unsigned s = refill[i];
			hdrs[s].sector = bench_sector(capacity);
			sts[s] = 0xff;
			struct virtq_buf b[3] = {
			    {&hdrs[s], sizeof(hdrs[s])}, {bufs + s * BLOCK, BLOCK}, {&sts[s], 1}};
			int head = virtq_add(vq, b, 1, 2);
			if (head < 0)
				return -1;
			slot_of_head[head] = (int8_t)s;
		}
		if (nrefill) {
			virtq_kick(vq);
			kicks++;
		}
	}
	uint64_t t1 = rdtsc();
	printf("virtio-blk: bench qd %u: %lu reads of 4096 bytes in %lu cycles (%lu kick calls, "
	       "%lu notifications)\n",
	       depth, n, t1 - t0, kicks, vq->kicks);
	return 0;
}

/* blk=getid: one request at a time, each kicked (when the device wants kicks) and polled. */
static int getid_loop(uint64_t n, bool always)
{
	char *idbuf = virtio_alloc(20, 1);
	if (!idbuf)
		return -1;
	uint64_t kicks0 = vq->kicks, t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		hdr->type = T_GET_ID;
		hdr->ioprio = 0;
		hdr->sector = 0;
		*status = 0xff;
		struct virtq_buf b[3] = {{hdr, sizeof(*hdr)}, {idbuf, 20}, {status, 1}};
		int head = virtq_add(vq, b, 1, 2);
		if (head < 0)
			return -1;
		uint64_t k = vq->kicks;
		virtq_kick(vq); /* publishes the chain; notifies unless the device said not to */
		if (always && vq->kicks == k)
			virtq_notify(vq); /* kick=always: the notify register every time */
		uint32_t l;
		if (virtq_wait(vq, TIMEOUT, &l) != head || *status != 0) {
			printf("virtio-blk: FAIL getid %lu: %s\n", i, dev.err);
			return -1;
		}
	}
	uint64_t t1 = rdtsc();
	printf("virtio-blk: getid: %lu requests in %lu cycles (%lu notifications)\n", n, t1 - t0,
	       vq->kicks - kicks0);
	return 0;
}

/* blk=writer */
#define WRITER_DEPTH 32u

static uint8_t writer_byte(unsigned i, uint64_t k, uint64_t r)
{
	return (uint8_t)((i * 13 + k * 7 + r * 31) & 0xff);
}

/* Blocks 0..nblocks-1 of round r written (type T_OUT) or read and checked (T_IN), up to
 * WRITER_DEPTH requests in flight. */
static int writer_pass(uint32_t type, uint64_t nblocks, uint64_t r)
{
	static struct blk_hdr *hdrs;
	static uint8_t *sts, *bufs;
	static uint64_t block_of_slot[WRITER_DEPTH];
	static int8_t slot_of_head[VIRTQ_MAX_SIZE];
	if (!hdrs) {
		hdrs = virtio_alloc(sizeof(*hdrs) * WRITER_DEPTH, 16);
		sts = virtio_alloc(WRITER_DEPTH, 1);
		bufs = virtio_alloc(BLOCK * WRITER_DEPTH, 4096);
		if (!hdrs || !sts || !bufs) {
			puts("virtio-blk: FAIL writer: pool used up");
			return -1;
		}
	}
	uint64_t next = 0, done = 0;
	unsigned free_slots[WRITER_DEPTH], nfree = WRITER_DEPTH;
	for (unsigned i = 0; i < WRITER_DEPTH; i++)
		free_slots[i] = WRITER_DEPTH - 1 - i;
	uint64_t deadline = rdtsc() + 20 * TSC_HZ_MAX;
	while (done < nblocks) {
		bool added = false;
		while (nfree && next < nblocks) {
			unsigned sl = free_slots[--nfree];
			uint8_t *buf = bufs + sl * BLOCK;
			block_of_slot[sl] = next;
			hdrs[sl] = (struct blk_hdr){type, 0, next * (BLOCK / 512)};
			sts[sl] = 0xff;
			if (type == T_OUT)
				for (unsigned i = 0; i < BLOCK; i++)
					buf[i] = writer_byte(i, next, r);
			struct virtq_buf b[3] = {
			    {&hdrs[sl], sizeof(hdrs[sl])}, {buf, BLOCK}, {&sts[sl], 1}};
			int head = type == T_OUT ? virtq_add(vq, b, 2, 1) : virtq_add(vq, b, 1, 2);
			if (head < 0) {
				puts("virtio-blk: FAIL writer: queue full");
				return -1;
			}
			slot_of_head[head] = (int8_t)sl;
			next++;
			added = true;
		}
		if (added)
			virtq_kick(vq);
		uint32_t len;
		int id;
		while ((id = virtq_poll(vq, &len)) >= 0) {
			unsigned sl = (unsigned)slot_of_head[id];
			if (sts[sl] != 0) {
				printf("virtio-blk: FAIL writer: round %lu block %lu status %u\n",
				       r, block_of_slot[sl], sts[sl]);
				return -1;
			}
			if (type == T_IN)
				for (unsigned i = 0; i < BLOCK; i++)
					if (bufs[sl * BLOCK + i] !=
					    writer_byte(i, block_of_slot[sl], r)) {
						printf(
						    "virtio-blk: FAIL writer: round %lu block %lu "
						    "byte %u reads back 0x%x\n",
						    r, block_of_slot[sl], i, bufs[sl * BLOCK + i]);
						return -1;
					}
			free_slots[nfree++] = sl;
			done++;
		}
		if (id == -2 || rdtsc() > deadline) {
			printf("virtio-blk: FAIL writer: %lu of %lu done: %s\n", done, nblocks,
			       dev.err);
			return -1;
		}
	}
	return 0;
}

static int writer(uint64_t rounds, uint64_t nblocks, uint64_t capacity)
{
	if (nblocks * (BLOCK / 512) > capacity) {
		puts("virtio-blk: FAIL writer: the disk is smaller than blocks=");
		return -1;
	}
	for (uint64_t r = 1; r <= rounds; r++) {
		if (writer_pass(T_OUT, nblocks, r) < 0 ||
		    request("writer-flush", T_FLUSH, 0, NULL, 0, false, NULL) != 0 ||
		    writer_pass(T_IN, nblocks, r) < 0)
			return -1;
		printf("virtio-blk: round %lu ok\n", r);
	}
	return 0;
}

static uint64_t blk_main(uint64_t arg)
{
	char mode[16] = "rw";
	cmdline_get(cmdline, "blk", mode, sizeof(mode));
	pci_init(pci_access_from_cmdline(cmdline));
	if (virtio_find(&dev, VIRTIO_ID_BLOCK, cmdline) < 0)
		return failed("find");
	uint64_t got;
	if (virtio_negotiate(&dev,
			     F_RO | F_BLK_SIZE | F_SEG_MAX | F_FLUSH | F_DISCARD | F_WRITE_ZEROES |
				 (!strcmp(mode, "mq") ? F_MQ : 0),
			     VIRTIO_F_VERSION_1, &got) < 0)
		return failed("negotiate");
	uint64_t capacity = 0;
	uint32_t seg_max = 0, blk_size = 0;
	virtio_cfg_read(&dev, 0, &capacity, 8);
	virtio_cfg_read(&dev, 12, &seg_max, 4);
	virtio_cfg_read(&dev, 20, &blk_size, 4);
	if (dev.transport == VIRTIO_PCI)
		printf("virtio-blk: pci %02x:%02x.%x", PCI_BUS(dev.bdf), PCI_DEV(dev.bdf),
		       PCI_FN(dev.bdf));
	else
		printf("virtio-blk: mmio 0x%lx", dev.base);
	printf(" capacity %lu blk_size %u seg_max %u features 0x%lx\n", capacity, blk_size, seg_max,
	       got);
	uint16_t nq = 1;
	if (got & F_MQ) {
		virtio_cfg_read(&dev, 34, &nq, 2);
		printf("virtio-blk: num_queues %u\n", nq);
		if (nq < 1 || nq > MAXQ) {
			printf("virtio-blk: FAIL num_queues %u (the guest takes 1 to %u)\n", nq,
			       MAXQ);
			return 11;
		}
	}
	for (uint16_t i = 0; i < nq; i++)
		if (virtq_setup(&dev, &queues[i], i, 0, VIRTIO_NO_VECTOR) < 0)
			return failed("queue");
	virtio_driver_ok(&dev);
	hdr = virtio_alloc(sizeof(*hdr), 16);
	status = virtio_alloc(1, 1);
	data = virtio_alloc(BLOCK, 4096);
	data2 = virtio_alloc(BLOCK, 4096);
	if (!hdr || !status || !data || !data2)
		return failed("alloc");

	if (!strcmp(mode, "rw") || !strcmp(mode, "flushed")) {
		fill_pattern(data);
		if (request("write", T_OUT, 8, data, BLOCK, false, NULL) != 0)
			return 11;
		if (request("flush", T_FLUSH, 0, NULL, 0, false, NULL) != 0)
			return 11;
		if (!strcmp(mode, "flushed")) {
			puts("virtio-blk: flushed");
			for (;;)
				__asm__ volatile("pause");
		}
		memset(data2, 0, BLOCK);
		uint32_t l = 0;
		if (request("read", T_IN, 8, data2, BLOCK, true, &l) != 0)
			return 11;
		if (l != BLOCK + 1 || memcmp(data, data2, BLOCK)) {
			printf("virtio-blk: FAIL read back differs (used len %u)\n", l);
			return 11;
		}
		if (request("read-past-end", T_IN, capacity, data2, 512, true, NULL) != 1)
			return 11;
		static char id[21];
		char *idbuf = virtio_alloc(20, 1);
		if (request("get-id", T_GET_ID, 0, idbuf, 20, true, NULL) != 0)
			return 11;
		memcpy(id, idbuf, 20);
		printf("virtio-blk: id %s\n", id);
	} else if (!strcmp(mode, "mq")) {
		/* Queue i writes block i + 1 (sectors 8 + 8i) with the pattern xor i, flushes;
		 * then every block is read back through a different queue than wrote it. */
		if (!(got & F_MQ) || nq < 2) {
			puts("virtio-blk: FAIL the device offers no second queue (MQ)");
			return 11;
		}
		for (uint16_t i = 0; i < nq; i++) {
			vq = &queues[i];
			fill_pattern(data);
			for (unsigned k = 0; k < BLOCK; k++)
				data[k] ^= (uint8_t)i;
			if (request("mq-write", T_OUT, 8 + 8ull * i, data, BLOCK, false, NULL) !=
				0 ||
			    request("mq-flush", T_FLUSH, 0, NULL, 0, false, NULL) != 0)
				return 11;
		}
		for (uint16_t i = 0; i < nq; i++) {
			vq = &queues[(i + 1) % nq];
			fill_pattern(data);
			for (unsigned k = 0; k < BLOCK; k++)
				data[k] ^= (uint8_t)i;
			memset(data2, 0, BLOCK);
			if (request("mq-read", T_IN, 8 + 8ull * i, data2, BLOCK, true, NULL) != 0)
				return 11;
			if (memcmp(data, data2, BLOCK)) {
				printf("virtio-blk: FAIL block %u read on queue %u differs\n", i,
				       (i + 1) % nq);
				return 11;
			}
		}
		for (uint16_t i = 0; i < nq; i++)
			if (!queues[i].kicks) {
				printf("virtio-blk: FAIL queue %u was never used\n", i);
				return 11;
			}
		printf("virtio-blk: mq %u queues used\n", nq);
	} else if (!strcmp(mode, "ro")) {
		if (!(got & F_RO)) {
			puts("virtio-blk: FAIL the device does not say read-only");
			return 11;
		}
		fill_pattern(data);
		if (request("write", T_OUT, 8, data, BLOCK, false, NULL) != 1)
			return 11;
		if (request("read", T_IN, 8, data2, BLOCK, true, NULL) != 0)
			return 11;
	} else if (!strcmp(mode, "discard")) {
		static struct {
			uint64_t sector;
			uint32_t num, flags;
		} * dz;
		dz = virtio_alloc(sizeof(*dz), 16);
		dz->sector = 256;
		dz->num = 1024;
		dz->flags = 0;
		if (request("discard", T_DISCARD, 0, dz, sizeof(*dz), false, NULL) != 0)
			return 11;
	} else if (!strcmp(mode, "bench")) {
		uint64_t n = 20000;
		cmdline_get_u64(cmdline, "n", &n);
		uint64_t qd = 0;
		cmdline_get_u64(cmdline, "qd", &qd);
		if (qd > BENCH_MAX_DEPTH) {
			puts("virtio-blk: FAIL qd above 64");
			return 11;
		}
		if (qd ? bench((unsigned)qd, n, capacity) < 0
		       : bench(1, n, capacity) < 0 || bench(32, n, capacity) < 0)
			return 11;
	} else if (!strcmp(mode, "getid")) {
		uint64_t n = 2000;
		cmdline_get_u64(cmdline, "n", &n);
		char kick[16] = "";
		cmdline_get(cmdline, "kick", kick, sizeof(kick));
		if (getid_loop(n, !strcmp(kick, "always")) < 0)
			return 11;
	} else if (!strcmp(mode, "writer")) {
		uint64_t rounds = 100, nblocks = 256;
		cmdline_get_u64(cmdline, "rounds", &rounds);
		cmdline_get_u64(cmdline, "blocks", &nblocks);
		if (writer(rounds, nblocks, capacity) < 0)
			return 11;
	} else {
		printf("virtio-blk: FAIL unknown blk=%s\n", mode);
		return 11;
	}
	uint8_t s = virtio_get_status(&dev);
	if (s & (VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED)) {
		printf("virtio-blk: FAIL device status 0x%x\n", s);
		return 11;
	}
	virtio_reset(&dev);
	puts("virtio-blk: OK");
	/* hold: stay up (spinning in ring 3) for a monitor to look at the device. */
	if (cmdline_has_word(cmdline, "hold"))
		for (;;)
			__asm__ volatile("pause");
	return 0;
}

int guest_main(const struct boot_params *bp)
{
	cmdline = bp_cmdline(bp);
	return (int)user_call(blk_main, 0);
}
