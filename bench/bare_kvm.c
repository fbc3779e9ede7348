/* bare_kvm: the floor for the kvmini benchmark. It does what any VMM must do to run the
 * benchmark guest and nothing else: no option parsing, no device model beyond "bytes to
 * port 0x3f8 go to stdout" and "a write to port 0xf4 ends the run", no threads, no event
 * loop. Whatever kvmini spends above this is kvmini's own overhead.
 *
 * usage: bare_kvm [--cpuid] GUEST.elf
 *        bare_kvm --notify N guest-notify.elf
 * --notify is the floor of a device notification: 0xd0000000 is a KVM ioeventfd, a second
 * thread blocks on it and answers each signal by bumping a word of guest memory that the
 * guest (guest/notify.S, entered in 64-bit mode at CPL 3 like a test guest's ring-3 driver)
 * polls; the guest times N such round trips with rdtsc, and this prints
 * "notify: N round trips in C cycles".
 * --cpuid adds KVM_GET_SUPPORTED_CPUID and KVM_SET_CPUID2, which a correct VMM also needs
 * (the guest must not see features KVM cannot virtualize) but the baseline leaves
 * out; the benchmark reports both, since on the PVM hosts the first ioctl alone costs
 * ~0.5 ms (the host executes cpuid for every leaf, and each one traps).
 * Exit status: (v << 1) | 1 for a write of v to port 0xf4 (as kvmini and QEMU's
 * isa-debug-exit), 0 on hlt or shutdown, 2 on errors. */
#include <elf.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The same guest size as the kvmini and QEMU runs, so the kernel's per-VM costs (memslot
 * set-up, page tables for touched pages) are the same. */
#define MEM_SIZE (128ull << 20)

/* Three pages for KVM_SET_TSS_ADDR, above guest RAM and below the IOAPIC, as kvmini. */
#define TSS_ADDR 0xfffbd000ull

/* hvm_start_info (Xen's PVH ABI) goes where kvmini puts it; the benchmark guest ignores
 * it, but EBX must point at a valid one for this to be a PVH entry. */
#define START_INFO_ADDR		 0x6000ull
#define START_INFO_MAGIC	 0x336ec578u
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* guest/notify.S's addresses. */
#define NOTIFY_GPA   0xd0000000ull
#define NOTIFY_N     0x2000
#define NOTIFY_TSC   0x3000
#define NOTIFY_REPLY 0x4000

#define PORT_COM1_THR	0x3f8
#define PORT_DEBUG_EXIT 0xf4

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bare_kvm: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static int xioctl(int fd, unsigned long req, void *arg, const char *name)
{
	int r = ioctl(fd, req, arg);
	if (r < 0)
		die("%s: %s", name, strerror(errno));
	return r;
}

static uint32_t find_pvh_entry(const uint8_t *img, size_t len, const Elf32_Phdr *ph)
{
	size_t off = ph->p_offset, end = off + ph->p_filesz;
	if (end > len || end < off)
		return 0;
	while (end - off >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, img + off, 4);
		memcpy(&descsz, img + off + 4, 4);
		memcpy(&type, img + off + 8, 4);
		size_t desc = off + 12 + ((namesz + 3) & ~3u);
		size_t next = desc + ((descsz + 3) & ~3u);
		if (next > end)
			return 0;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(img + off + 12, "Xen", 4) == 0 && descsz >= 4) {
			uint32_t entry;
			memcpy(&entry, img + desc, 4);
			return entry;
		}
		off = next;
	}
	return 0;
}

/* Copies the PT_LOAD segments into guest RAM; returns the PVH entry point. Only ELF32 is
 * handled: the benchmark guest is one. */
static uint32_t load_elf(const char *path, uint8_t *ram)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		die("%s: %s", path, strerror(errno));
	size_t len = (size_t)st.st_size;
	uint8_t *img = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (img == MAP_FAILED)
		die("mmap %s: %s", path, strerror(errno));
	close(fd);

	Elf32_Ehdr eh;
	if (len < sizeof(eh) || memcmp(img, ELFMAG, SELFMAG) != 0 || img[EI_CLASS] != ELFCLASS32)
		die("%s: not an ELF32 file", path);
	memcpy(&eh, img, sizeof(eh));
	uint32_t entry = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf32_Phdr ph;
		size_t off = eh.e_phoff + (size_t)i * sizeof(ph);
		if (off + sizeof(ph) > len)
			die("%s: program header %u outside the file", path, i);
		memcpy(&ph, img + off, sizeof(ph));
		if (ph.p_type == PT_NOTE && !entry)
			entry = find_pvh_entry(img, len, &ph);
		if (ph.p_type != PT_LOAD)
			continue;
		if ((uint64_t)ph.p_paddr + ph.p_memsz > MEM_SIZE || ph.p_filesz > ph.p_memsz ||
		    (uint64_t)ph.p_offset + ph.p_filesz > len)
			die("%s: segment %u does not fit", path, i);
		memcpy(ram + ph.p_paddr, img + ph.p_offset, ph.p_filesz);
		/* Anonymous memory is already zero: the BSS needs no memset (which would touch
		 * its pages and inflate the RSS figure). */
	}
	munmap(img, len);
	if (!entry)
		die("%s: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)", path);
	return entry;
}

static void write_start_info(uint8_t *ram)
{
	/* struct hvm_start_info: magic, version, flags, nr_modules, then addresses; all
	 * zero past the version means "no modules, no command line, no memory map". */
	uint32_t head[2] = {START_INFO_MAGIC, 1};
	memcpy(ram + START_INFO_ADDR, head, sizeof(head));
}

static struct kvm_segment flat_segment(uint16_t sel, uint8_t type)
{
	return (struct kvm_segment){.base = 0,
				    .limit = 0xffffffff,
				    .selector = sel,
				    .type = type,
				    .present = 1,
				    .dpl = 0,
				    .db = 1,
				    .s = 1,
				    .l = 0,
				    .g = 1};
}

static void enter_pvh(int vcpu, uint32_t entry)
{
	struct kvm_sregs sregs;
	xioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	/* The PVH ABI: flat 4 GiB code and data segments, protected mode, paging off. The
	 * guest never reloads a selector, so no GDT needs to exist in its memory; the
	 * selectors are those of the Linux boot protocol, as kvmini uses. */
	sregs.cs = flat_segment(0x10, 0xb);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(0x18, 0x3);
	sregs.tr = (struct kvm_segment){.selector = 0x20, .limit = 0x67, .type = 0xb, .present = 1};
	sregs.cr0 = 0x11; /* PE | ET */
	sregs.cr3 = 0;
	sregs.cr4 = 0;
	sregs.efer = 0;
	xioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");

	struct kvm_regs regs = {.rflags = 0x2, .rip = entry, .rbx = START_INFO_ADDR};
	xioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

/* --notify: 64-bit mode at CPL 3 from the first instruction, on identity page tables of
 * 2 MiB user pages over the low 4 GiB (at 0x10000), so the guest's loop runs natively and
 * its notify write traps from user mode, as a test guest's driver's does. No GDT or IDT:
 * the guest never loads a selector and ends with hlt (#GP, then a triple fault). */
#define PT_ADDR 0x10000ull
static void enter_user64(int vcpu, uint8_t *ram, uint32_t entry)
{
	uint64_t *pml4 = (uint64_t *)(ram + PT_ADDR), *pdpt = pml4 + 512, *pd = pdpt + 512;
	pml4[0] = (PT_ADDR + 0x1000) | 7;
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (PT_ADDR + 0x2000 + 0x1000ull * i) | 7;
	for (unsigned i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x87 | (i >= 3 * 512 ? 0x18 : 0); /* P RW US PS */
	struct kvm_sregs sregs;
	xioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
	struct kvm_segment code = flat_segment(0x2b, 0xb), data = flat_segment(0x23, 0x3);
	code.dpl = data.dpl = 3;
	code.l = 1;
	code.db = 0;
	sregs.cs = code;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	sregs.tr = (struct kvm_segment){.selector = 0x30, .limit = 0x67, .type = 0xb, .present = 1};
	sregs.cr3 = PT_ADDR;
	sregs.cr4 = 0x20;	/* PAE */
	sregs.cr0 = 0x80010011; /* PG | WP | ET | PE */
	sregs.efer = 0x500;	/* LME | LMA */
	xioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
	struct kvm_regs regs = {.rflags = 0x2, .rip = entry, .rsp = 0x8000};
	xioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

static void set_cpuid(int kvm, int vcpu)
{
	/* 256 is KVM_MAX_CPUID_ENTRIES: one call, since on E2BIG the kernel has already done (and
	 * thrown away) the whole, slow, enumeration. */
	for (unsigned nent = 256;; nent *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			die("out of memory");
		c->nent = nent;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			xioctl(vcpu, KVM_SET_CPUID2, c, "KVM_SET_CPUID2");
			free(c);
			return;
		}
		if (errno != E2BIG || nent >= 4096)
			die("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
	}
}

struct responder {
	int efd;
	uint32_t *reply;
};

/* The "device": each ioeventfd signal is answered at once, from another thread, as a
 * VMM's queue worker would. */
static void *respond(void *arg)
{
	struct responder *r = arg;
	uint64_t n;
	while (read(r->efd, &n, sizeof(n)) == sizeof(n))
		__atomic_fetch_add(r->reply, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void start_responder(int vm, uint8_t *ram, unsigned long rounds)
{
	static struct responder r;
	r.efd = eventfd(0, EFD_CLOEXEC);
	if (r.efd < 0)
		die("eventfd: %s", strerror(errno));
	struct kvm_ioeventfd io = {.addr = NOTIFY_GPA, .len = 4, .fd = r.efd};
	xioctl(vm, KVM_IOEVENTFD, &io, "KVM_IOEVENTFD");
	uint32_t n = (uint32_t)rounds;
	memcpy(ram + NOTIFY_N, &n, 4);
	r.reply = (uint32_t *)(ram + NOTIFY_REPLY);
	pthread_t t;
	if (pthread_create(&t, NULL, respond, &r))
		die("pthread_create failed");
	pthread_detach(t);
}

int main(int argc, char **argv)
{
	bool cpuid = argc == 3 && strcmp(argv[1], "--cpuid") == 0;
	unsigned long rounds = 0;
	if (argc == 4 && strcmp(argv[1], "--notify") == 0) {
		char *end;
		rounds = strtoul(argv[2], &end, 10);
		if (*end || rounds == 0 || rounds > 0xffffffffu)
			die("--notify N: N is a count of round trips, 1 or more");
	} else if (argc != 2 && !cpuid) {
		fputs("usage: bare_kvm [--cpuid] GUEST.elf | --notify N guest-notify.elf\n",
		      stderr);
		return 2;
	}
	const char *guest = argv[argc - 1];
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("/dev/kvm: %s", strerror(errno));
	int vm = xioctl(kvm, KVM_CREATE_VM, 0, "KVM_CREATE_VM");

	uint8_t *ram = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap guest RAM: %s", strerror(errno));
	/* Memory before the irqchip: once it exists, each memslot change waits for an SRCU
	 * grace period (~9 ms on the PVM hosts). */
	struct kvm_userspace_memory_region region = {.slot = 0,
						     .guest_phys_addr = 0,
						     .memory_size = MEM_SIZE,
						     .userspace_addr = (uintptr_t)ram};
	xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");
	xioctl(vm, KVM_SET_TSS_ADDR, (void *)(uintptr_t)TSS_ADDR, "KVM_SET_TSS_ADDR");
	xioctl(vm, KVM_CREATE_IRQCHIP, 0, "KVM_CREATE_IRQCHIP");
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	xioctl(vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");

	int vcpu = xioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU");
	int run_size = xioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE");
	struct kvm_run *run =
	    mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));

	if (cpuid)
		set_cpuid(kvm, vcpu);
	uint32_t entry = load_elf(guest, ram);
	write_start_info(ram);
	if (rounds) {
		enter_user64(vcpu, ram, entry);
		start_responder(vm, ram, rounds);
	} else {
		enter_pvh(vcpu, entry);
	}

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN: %s", strerror(errno));
		}
		switch (run->exit_reason) {
		case KVM_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + run->io.data_offset;
			if (run->io.direction != KVM_EXIT_IO_OUT)
				break; /* reads see whatever is in the buffer: nothing polls */
			if (run->io.port == PORT_COM1_THR) {
				/* Unbuffered, a byte (or a string I/O batch) per write(2), as
				 * a serial console must be. */
				ssize_t w = write(STDOUT_FILENO, data,
						  (size_t)run->io.size * run->io.count);
				(void)w;
			} else if (run->io.port == PORT_DEBUG_EXIT) {
				return (data[0] << 1) | 1;
			}
			break;
		}
		case KVM_EXIT_HLT:
		case KVM_EXIT_SHUTDOWN:
			if (rounds) {
				uint64_t t[2];
				memcpy(t, ram + NOTIFY_TSC, sizeof(t));
				if (!t[1]) {
					struct kvm_regs r;
					ioctl(vcpu, KVM_GET_REGS, &r);
					die("the notify guest ended before its last round trip "
					    "(exit %u, rip 0x%llx, start tsc %llu)",
					    run->exit_reason, (unsigned long long)r.rip,
					    (unsigned long long)t[0]);
				}
				printf("notify: %lu round trips in %llu cycles\n", rounds,
				       (unsigned long long)(t[1] - t[0]));
			}
			return 0;
		default:
			die("unexpected exit reason %u", run->exit_reason);
		}
	}
}
