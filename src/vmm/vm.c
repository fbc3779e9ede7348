#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/cpu.h"
#include "arch/x86/emulate.h"
#include "arch/x86/layout.h"
#include "util/log.h"

#define HUGEPAGE_SIZE (2ull << 20)

/* Steps of vm_create, so vm_destroy undoes exactly what was done. */
enum {
	INIT_KVM = 1,
	INIT_VM,
	INIT_RAM,
	INIT_BUSES,
	INIT_POWER,
	INIT_LOOP,
	INIT_CONSOLE,
	INIT_DEVICES,
};

/* The 2 MiB pool specifically: the default huge-page size may be 1 GiB on some hosts. */
#define HUGEPAGES_2M_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"

static uint64_t hugepages_free_bytes(void)
{
	FILE *f = fopen(HUGEPAGES_2M_DIR "/free_hugepages", "re");
	unsigned long long free_pages = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%llu", &free_pages) != 1)
		free_pages = 0;
	fclose(f);
	return free_pages * HUGEPAGE_SIZE;
}

static int vm_alloc_ram(struct vm *vm, struct errbuf *e)
{
	const struct vm_config *cfg = vm->cfg;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS;

	if (cfg->hugepages) {
		if (cfg->mem_size % HUGEPAGE_SIZE)
			return errf(e, -EINVAL,
				    "--hugepages needs --mem to be a multiple of 2 MiB");
		uint64_t avail = hugepages_free_bytes();
		if (avail < cfg->mem_size)
			return errf(
			    e, -ENOMEM,
			    "--hugepages: %llu MiB of free 2 MiB huge pages, the guest needs "
			    "%llu MiB (reserve them with: echo %llu > " HUGEPAGES_2M_DIR
			    "/nr_hugepages)",
			    (unsigned long long)(avail >> 20),
			    (unsigned long long)(cfg->mem_size >> 20),
			    (unsigned long long)(cfg->mem_size / HUGEPAGE_SIZE));
		flags |= MAP_HUGETLB | MAP_HUGE_2MB;
	} else if (!cfg->mem_prealloc) {
		/* Pages are allocated when the guest touches them. */
		flags |= MAP_NORESERVE;
	}
	if (cfg->mem_prealloc)
		flags |= MAP_POPULATE;

	void *p = mmap(NULL, cfg->mem_size, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (p == MAP_FAILED)
		return errf(e, -errno, "cannot allocate %llu MiB of guest memory%s: %s",
			    (unsigned long long)(cfg->mem_size >> 20),
			    cfg->hugepages ? " from huge pages" : "", strerror(errno));
	vm->ram = p;
	vm->ram_size = cfg->mem_size;
	if (cfg->ksm && madvise(p, cfg->mem_size, MADV_MERGEABLE) < 0)
		return errf(e, -errno, "--ksm: madvise(MADV_MERGEABLE) failed: %s%s",
			    strerror(errno),
			    errno == EINVAL ? " (is CONFIG_KSM enabled in the host kernel?)" : "");
	/* Guest memory never belongs in a core dump of kvmini. */
	madvise(p, cfg->mem_size, MADV_DONTDUMP);

	uint64_t low = cfg->mem_size < X86_MMIO_HOLE_START ? cfg->mem_size : X86_MMIO_HOLE_START;
	guest_mem_add_region(&vm->mem, 0, low, vm->ram);
	if (cfg->mem_size > low)
		guest_mem_add_region(&vm->mem, X86_MMIO_HOLE_END, cfg->mem_size - low,
				     vm->ram + low);

	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct guest_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region region = {
		    .slot = i,
		    .guest_phys_addr = r->gpa,
		    .memory_size = r->size,
		    .userspace_addr = (uint64_t)(uintptr_t)r->hva,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
			return errf(e, -errno,
				    "KVM_SET_USER_MEMORY_REGION (slot %u, %llu MiB) failed: %s", i,
				    (unsigned long long)(r->size >> 20), strerror(errno));
	}
	return 0;
}

/* Interrupt controllers and timer in the kernel. Memory is registered first: each memory
 * slot added after the irqchip exists waits for an SRCU grace period. */
static int vm_create_irqchip(struct vm *vm, struct errbuf *e)
{
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)X86_KVM_TSS_ADDR) < 0)
		return errf(e, -errno, "KVM_SET_TSS_ADDR failed: %s", strerror(errno));
	uint64_t idmap = X86_KVM_IDMAP_ADDR;
	if (ioctl(vm->kvm.fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		return errf(e, -errno, "KVM_SET_IDENTITY_MAP_ADDR failed: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return errf(e, -errno, "KVM_CREATE_IRQCHIP failed: %s", strerror(errno));
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return errf(e, -errno, "KVM_CREATE_PIT2 failed: %s", strerror(errno));
	return 0;
}

static int vm_create_devices(struct vm *vm, struct errbuf *e)
{
	int ret;
	irq_line_init(&vm->serial_irq, vm->vm_fd, SERIAL_COM1_IRQ);
	if ((ret = serial_init(&vm->serial, &vm->serial_irq, vm->console.out_fd)) < 0 ||
	    (ret = i8042_init(&vm->i8042, &vm->power)) < 0 || (ret = rtc_init(&vm->rtc)) < 0 ||
	    (ret = boot_marker_init(&vm->boot_marker, &vm->start)) < 0 ||
	    (ret = pm_init(&vm->pm, &vm->power)) < 0)
		return errf(e, ret, "cannot create the legacy devices: %s", strerror(-ret));
	vm->init_done = INIT_DEVICES;
	uint64_t below = guest_mem_end_below_4g(&vm->mem);
	rtc_set_machine_info(&vm->rtc, below, vm->mem.ram_size - below, vm->cfg->ncpus);
	if ((ret = serial_attach(&vm->serial, &vm->pio, SERIAL_COM1_BASE)) < 0 ||
	    (ret = i8042_attach(&vm->i8042, &vm->pio)) < 0 ||
	    (ret = rtc_attach(&vm->rtc, &vm->pio)) < 0 ||
	    (ret = debug_exit_attach(&vm->power, &vm->pio)) < 0 ||
	    (ret = boot_marker_attach(&vm->boot_marker, &vm->pio)) < 0 ||
	    (ret = pm_attach(&vm->pm, &vm->pio)) < 0)
		return errf(e, ret, "cannot place the legacy devices on the I/O bus: %s",
			    strerror(-ret));
	return 0;
}

static void *vm_fetch_cpuid(void *arg)
{
	struct vm *vm = arg;
	vm->cpuid_ret = x86_get_supported_cpuid(vm->kvm.fd, &vm->supported_cpuid, &vm->cpuid_err);
	return NULL;
}

static int vm_join_cpuid(struct vm *vm)
{
	if (!vm->cpuid_thread_started)
		return vm->cpuid_ret;
	pthread_join(vm->cpuid_thread, NULL);
	vm->cpuid_thread_started = false;
	return vm->cpuid_ret;
}

static int vm_create_vcpus(struct vm *vm, struct errbuf *e)
{
	int ret = vm_join_cpuid(vm);
	if (ret < 0)
		return errf(e, ret, "%s", vm->cpuid_err.msg);
	vm->vcpu_env = (struct vcpu_env){&vm->pio, &vm->mmio, &vm->power, &vm->mem, vm->cfg->stats};
	for (unsigned i = 0; i < vm->cfg->ncpus; i++) {
		ret = vcpu_create(&vm->vcpus[i], vm->vm_fd, i, (size_t)vm->kvm.vcpu_mmap_size,
				  &vm->vcpu_env, vm->cfg->cpu_affinity[i], e);
		if (ret < 0)
			return ret;
		vm->nvcpus = i + 1;
		int fd = vm->vcpus[i].fd;
		if ((ret = x86_vcpu_set_cpuid(fd, vm->supported_cpuid, i, vm->cfg->ncpus, e)) < 0 ||
		    (ret = x86_vcpu_set_msrs(fd, e)) < 0)
			return ret;
	}
	/* Only the boot CPU gets entry state; the others wait for INIT/SIPI from the guest. */
	return x86_vcpu_set_boot_regs(vm->vcpus[0].fd, &vm->boot, e);
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct timespec *start,
	      const uint8_t *kernel, size_t kernel_size, const char *kernel_name,
	      const uint8_t *initrd, size_t initrd_size, struct errbuf *e)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->start = *start;
	vm->vm_fd = -1;
	vm->signal_fd = -1;

	if ((ret = kvm_host_open(&vm->kvm, e)) < 0)
		return ret;
	vm->init_done = INIT_KVM;
	if (pthread_create(&vm->cpuid_thread, NULL, vm_fetch_cpuid, vm) == 0)
		vm->cpuid_thread_started = true;
	else
		vm_fetch_cpuid(vm);
	vm->vm_fd = ioctl(vm->kvm.fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return errf(e, -errno, "KVM_CREATE_VM failed: %s", strerror(errno));
	vm->init_done = INIT_VM;
	if ((ret = vm_alloc_ram(vm, e)) < 0)
		return ret;
	vm->init_done = INIT_RAM;
	if ((ret = vm_create_irqchip(vm, e)) < 0)
		return ret;
	if ((ret = bus_init(&vm->pio, "pio")) < 0 || (ret = bus_init(&vm->mmio, "mmio")) < 0)
		return errf(e, ret, "cannot create the I/O buses");
	vm->init_done = INIT_BUSES;
	if ((ret = power_init(&vm->power)) < 0)
		return errf(e, ret, "eventfd: %s", strerror(-ret));
	vm->init_done = INIT_POWER;
	if ((ret = loop_init(&vm->loop)) < 0)
		return errf(e, ret, "cannot create the event loop: %s", strerror(-ret));
	vm->init_done = INIT_LOOP;
	if ((ret = console_open(&vm->console, cfg, e)) < 0)
		return ret;
	vm->init_done = INIT_CONSOLE;
	if ((ret = vm_create_devices(vm, e)) < 0)
		return ret;

	/* Linux on a host that emulates guest ring 0 needs a parameter (see emulate.h). */
	char cmdline_buf[4096];
	const char *cmdline = cfg->cmdline;
	struct bzimage_info bz;
	if (vm->kvm.ring0_emulated && bzimage_parse(kernel, kernel_size, &bz, NULL) == 0) {
		cmdline =
		    x86_cmdline_for_emulated_ring0(cfg->cmdline, cmdline_buf, sizeof(cmdline_buf));
		if (!cmdline)
			return errf(e, -E2BIG, "the kernel command line is too long");
		if (cmdline != cfg->cmdline)
			log_info("this host emulates guest ring 0: kernel command line gets \"%s\"",
				 X86_EMULATED_RING0_PARAMS);
	}
	struct x86_boot_args args = {
	    .kernel = kernel,
	    .kernel_size = kernel_size,
	    .kernel_name = kernel_name,
	    .initrd = initrd,
	    .initrd_size = initrd_size,
	    .cmdline = cmdline,
	    .decompress = cfg->boot_decompress,
	    .ncpus = cfg->ncpus,
	};
	if ((ret = x86_boot_load(&vm->mem, &args, &vm->boot, e)) < 0)
		return ret;
	log_info("kernel: %s; entry 0x%llx", vm->boot.description,
		 (unsigned long long)vm->boot.entry);
	if (vm->boot.initrd_size)
		log_info("initrd: %llu bytes at 0x%llx", (unsigned long long)vm->boot.initrd_size,
			 (unsigned long long)vm->boot.initrd_addr);
	return vm_create_vcpus(vm, e);
}

static void vm_on_stop(void *opaque, int fd, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	loop_stop(&vm->loop);
}

static void vm_on_signal(void *opaque, int fd, uint32_t events)
{
	struct vm *vm = opaque;
	struct signalfd_siginfo si;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_warn("terminating on signal %u", si.ssi_signo);
	power_request_stop(&vm->power, STOP_SIGNAL, 128 + (int)si.ssi_signo);
}

int vm_run(struct vm *vm, int *exit_status, struct errbuf *e)
{
	int ret;
	sigset_t set;

	/* Stop signals arrive through the loop; the kick signal only in vCPU threads. */
	sigemptyset(&set);
	/* Every signal that would otherwise kill kvmini with the terminal still raw. */
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGUSR1);
	vm->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (vm->signal_fd < 0)
		return errf(e, -errno, "signalfd: %s", strerror(errno));
	if ((ret = vcpu_signals_init()) < 0 ||
	    (ret = loop_add_fd(&vm->loop, vm->signal_fd, EPOLLIN, vm_on_signal, vm)) < 0 ||
	    (ret = loop_add_fd(&vm->loop, vm->power.wake_fd, EPOLLIN, vm_on_stop, vm)) < 0)
		return errf(e, ret, "cannot set up the event loop: %s", strerror(-ret));
	if ((ret = console_start(&vm->console, &vm->serial, &vm->loop, &vm->power, e)) < 0)
		return ret;
	/* --name is what ps and top show for the VM (the kernel keeps 15 bytes of it). */
	prctl(PR_SET_NAME, vm->cfg->name, 0, 0, 0);

	for (unsigned i = 0; i < vm->nvcpus; i++) {
		if ((ret = vcpu_start(&vm->vcpus[i], e)) < 0) {
			power_request_stop(&vm->power, STOP_ERROR, 1);
			break;
		}
	}
	if (ret == 0) {
		ret = loop_run(&vm->loop);
		if (ret < 0)
			errf(e, ret, "event loop failed: %s", strerror(-ret));
	}
	power_request_stop(&vm->power, STOP_ERROR, 1); /* no-op if a stop is already recorded */
	serial_stop_output(&vm->serial);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_join(&vm->vcpus[i]);
	console_close(&vm->console);
	if (vm->cfg->stats)
		vcpu_print_stats(vm->vcpus, vm->nvcpus);

	int status = 0;
	enum stop_reason why = power_stop_reason(&vm->power, &status);
	log_info("guest stopped: %s", stop_reason_name(why));
	switch (why) {
	case STOP_POWEROFF:
	case STOP_RESET:
		*exit_status = 0;
		break;
	case STOP_DEBUG_EXIT:
	case STOP_SIGNAL:
		*exit_status = status;
		break;
	default:
		*exit_status = 1;
		break;
	}
	return ret;
}

void vm_destroy(struct vm *vm)
{
	vm_join_cpuid(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	vm->nvcpus = 0;
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	vm->signal_fd = -1;
	switch (vm->init_done) {
	case INIT_DEVICES:
		serial_destroy(&vm->serial);
		i8042_destroy(&vm->i8042);
		rtc_destroy(&vm->rtc);
		boot_marker_destroy(&vm->boot_marker);
		pm_destroy(&vm->pm);
		/* fall through */
	case INIT_CONSOLE:
		console_close(&vm->console);
		/* fall through */
	case INIT_LOOP:
		loop_destroy(&vm->loop);
		/* fall through */
	case INIT_POWER:
		power_destroy(&vm->power);
		/* fall through */
	case INIT_BUSES:
		bus_destroy(&vm->pio);
		bus_destroy(&vm->mmio);
		/* fall through */
	case INIT_RAM:
	case INIT_VM:
		if (vm->ram)
			munmap(vm->ram, vm->ram_size);
		vm->ram = NULL;
		if (vm->vm_fd >= 0)
			close(vm->vm_fd);
		vm->vm_fd = -1;
		/* fall through */
	case INIT_KVM:
		kvm_host_close(&vm->kvm);
	}
	vm->init_done = 0;
}
