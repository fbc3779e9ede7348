#include "vmm/vm.h"

#include "vmm/snapshot.h"

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
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/bzimage.h"
#include "arch/x86/cpu.h"
#include "arch/x86/emulate.h"
#include "arch/x86/layout.h"
#include "util/log.h"
#include "virtio/attach.h"
#include "virtio/mmio.h"
#include "virtio/stats.h"

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
	vm->ram_anonymous = true;
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

	return guest_mem_register_slots(&vm->mem, vm->vm_fd, e);
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

/* The host side of every serial port: backends open (a pty printed, a socket listening)
 * before the UART that writes into them exists. */
static int vm_open_consoles(struct vm *vm, struct errbuf *e)
{
	const struct vm_config *cfg = vm->cfg;
	for (unsigned i = 0; i < cfg->nserials; i++) {
		if (cfg->serial[i].backend == CHARDEV_NONE)
			continue;
		int ret = console_open(&vm->consoles[i], &cfg->serial[i], cfg->serial[i].id, e);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* ttyS0..3 at the PC's ports and IRQs, each in the device list. */
static int vm_create_serials(struct vm *vm, struct errbuf *e)
{
	const struct vm_config *cfg = vm->cfg;
	for (unsigned i = 0; i < cfg->nserials; i++) {
		if (cfg->serial[i].backend == CHARDEV_NONE)
			continue;
		struct serial *s = &vm->serials[i];
		irq_line_init(&vm->serial_irqs[i], vm->vm_fd, serial_port_irq(i));
		int ret = serial_init(s, &vm->serial_irqs[i], &vm->consoles[i].chr);
		if (ret < 0)
			return errf(e, ret, "cannot create ttyS%u: %s", i, strerror(-ret));
		if ((ret = device_list_add(&vm->devices, &serial_device_ops, s, i)) < 0) {
			serial_destroy(s);
			return errf(e, ret, "cannot create ttyS%u: %s", i, strerror(-ret));
		}
		vm->serial_present[i] = true;
		if ((ret = serial_attach(s, &vm->pio, serial_port_base(i))) < 0)
			return errf(e, ret, "cannot place ttyS%u at 0x%x: %s", i,
				    serial_port_base(i), strerror(-ret));
	}
	return 0;
}

static int vm_create_devices(struct vm *vm, struct errbuf *e)
{
	int ret;
	struct device_list *l = &vm->devices;
	vm->init_done = INIT_DEVICES;
	if ((ret = vm_create_serials(vm, e)) < 0)
		return ret;
	uint64_t below = guest_mem_end_below_4g(&vm->mem);
	if ((ret = i8042_create(l, &vm->pio, &vm->power)) < 0 ||
	    (ret = rtc_create(l, &vm->pio, below, vm->mem.ram_size - below, vm->cfg->ncpus)) < 0 ||
	    (ret = debug_exit_create(l, &vm->pio, &vm->power, vm->cfg->debug_exit_port,
				     vm->cfg->debug_exit_size)) < 0 ||
	    (ret = boot_marker_create(l, &vm->pio, &vm->start)) < 0 ||
	    (ret = pm_create(l, &vm->pio, &vm->power, vm->vm_fd, &vm->pm)) < 0)
		return errf(e, ret, "cannot create the legacy devices: %s", strerror(-ret));
	/* After pm: a restore loads it first, and the new generation's GPE lands on it. */
	if ((ret = vmgenid_create(l, &vm->mem, vm->pm,
				  vm->cfg->vmgenid_guid_set ? vm->cfg->vmgenid_guid : NULL,
				  &vm->vmgenid)) < 0)
		return errf(e, ret, "cannot create the VM generation ID: %s", strerror(-ret));
	/* The host bridge owns 0xcf8-0xcff, the reset control register at 0xcf9 included. */
	if ((ret = pci_host_create(&vm->pci, l, &vm->pio, &vm->mmio, &vm->power)) < 0)
		return errf(e, ret, "cannot create the PCI host bridge: %s", strerror(-ret));
	vm->pci_created = true;
	struct virtio_attach_env venv = {
	    .cfg = vm->cfg,
	    .mem = &vm->mem,
	    .loop = &vm->loop,
	    .power = &vm->power,
	    .devices = l,
	    .pci = &vm->pci,
	    .mmio = &vm->mmio,
	    .irq_router = &vm->irq_router,
	    .mmio_layout = &vm->mmio_layout,
	    .vm_fd = vm->vm_fd,
	    .default_transport =
		vm->cfg->virtio_mmio ? VIRTIO_TRANSPORT_MMIO : VIRTIO_TRANSPORT_PCI,
	};
	if ((ret = virtio_attach_devices(&venv, e)) < 0)
		return ret;
	/* Linux finds virtio-mmio devices only on its command line. */
	if (!(vm->cmdline = virtio_mmio_cmdline_extend(vm->cfg->cmdline, &vm->mmio_layout)))
		return errf(e, -ENOMEM, "out of memory");
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
	vm->vcpu_env = (struct vcpu_env){
	    &vm->pio, &vm->mmio, &vm->power, &vm->mem, vm->cfg->stats || vm->cfg->profile_path,
	    -1,	      0};
	if (vm->cfg->profile_path) {
		int fd = open(vm->cfg->profile_path,
			      O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0)
			return errf(e, -errno, "--profile: cannot create %s: %s",
				    vm->cfg->profile_path, strerror(errno));
		vm->vcpu_env.profile_fd = fd;
		vm->vcpu_env.profile_t0_ns =
		    (uint64_t)vm->start.tv_sec * 1000000000u + (uint64_t)vm->start.tv_nsec;
	}
	for (unsigned i = 0; i < vm->cfg->ncpus; i++) {
		ret = vcpu_create(&vm->vcpus[i], vm->vm_fd, i, (size_t)vm->kvm.vcpu_mmap_size,
				  &vm->vcpu_env, vm->cfg->cpu_affinity[i], e);
		if (ret < 0)
			return ret;
		vm->nvcpus = i + 1;
		int fd = vm->vcpus[i].fd;
		if ((ret = x86_vcpu_set_cpuid(fd, vm->supported_cpuid, i, vm->cfg->ncpus, e)) < 0 ||
		    (ret = x86_vcpu_set_msrs(fd, e)) < 0 ||
		    (ret = x86_vcpu_get_state(fd, &vm->reset_vcpu_state[i], e)) < 0)
			return ret;
	}
	if ((ret = x86_vm_get_state(vm->vm_fd, &vm->reset_vm_state, e)) < 0)
		return ret;
	/* Only the boot CPU gets entry state; the others wait for INIT/SIPI from the guest. */
	return x86_vcpu_set_boot_regs(vm->vcpus[0].fd, &vm->boot, e);
}

/* A PC reset, in the process: devices and interrupt controllers back to power-on state,
 * the kernel and boot tables loaded again, the boot CPU at the entry point and the others
 * waiting for INIT/SIPI. Guest RAM is not cleared, as on a PC. Every vCPU is parked. */
static int vm_reboot(struct vm *vm, struct errbuf *e)
{
	int ret;
	device_list_reset(&vm->devices);
	if ((ret = x86_vm_put_state(vm->vm_fd, &vm->reset_vm_state, e)) < 0 ||
	    (ret = x86_boot_load(&vm->mem, &vm->boot_args, &vm->boot, e)) < 0)
		return ret;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		int fd = vm->vcpus[i].fd;
		if ((ret = x86_vcpu_put_state(fd, &vm->reset_vcpu_state[i], e)) < 0 ||
		    (ret = x86_vcpu_set_msrs(fd, e)) < 0)
			return ret;
		x86_vcpu_clear_pv_msrs(fd);
	}
	return x86_vcpu_set_boot_regs(vm->vcpus[0].fd, &vm->boot, e);
}

static void vm_kick_vcpus(struct vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

int vm_pause(struct vm *vm)
{
	if (power_stop_requested(&vm->power))
		return -ESHUTDOWN;
	bool paused = power_user_pause(&vm->power);
	vm_kick_vcpus(vm);
	power_wait_parked(&vm->power);
	if (power_stop_requested(&vm->power))
		return -ESHUTDOWN;
	if (paused) {
		/* The devices go still after the vCPUs, which could otherwise kick them again. */
		device_list_pause(&vm->devices);
		vm->paused_clock_valid = ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->paused_clock) == 0;
		if (!vm->paused_clock_valid)
			log_debug("KVM_GET_CLOCK: %s (kvmclock runs on while paused)",
				  strerror(errno));
		if (vm->qmp_open)
			qmp_server_event(&vm->qmp, "STOP", NULL);
	}
	return 0;
}

int vm_resume(struct vm *vm)
{
	if (power_stop_requested(&vm->power))
		return -ESHUTDOWN;
	/* Only the loop thread (this one) pauses or resumes: one look is enough. */
	bool was_paused = power_is_user_paused(&vm->power);
	if (vm->paused_clock_valid && was_paused) {
		struct kvm_clock_data clock = {.clock = vm->paused_clock.clock};
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock) < 0)
			log_debug("KVM_SET_CLOCK: %s", strerror(errno));
		vm->paused_clock_valid = false;
	}
	vm->prelaunch = false;
	if (was_paused)
		device_list_resume(&vm->devices);
	if (power_user_resume(&vm->power) && vm->qmp_open)
		qmp_server_event(&vm->qmp, "RESUME", NULL);
	return 0;
}

/* On the loop thread, after a vCPU or the monitor asked for a reset. */
static void vm_handle_reset(struct vm *vm)
{
	if (!power_take_reset(&vm->power))
		return;
	bool by_host = vm->reset_by_host;
	vm->reset_by_host = false;
	if (vm->cfg->no_reboot) {
		log_info("guest reset: -no-reboot, stopping");
		vm->reset_stop_by_host = by_host;
		power_request_stop(&vm->power, STOP_RESET, 0);
		power_resume(&vm->power);
		return;
	}
	vm_kick_vcpus(vm);
	power_wait_parked(&vm->power);
	if (!power_stop_requested(&vm->power)) {
		struct errbuf e = {{0}};
		if (vm_reboot(vm, &e) < 0) {
			log_error("guest reset failed: %s", e.msg);
			power_request_stop(&vm->power, STOP_ERROR, 1);
		} else {
			log_info("guest reset: rebooted (boot %u)", vm->power.resets + 1);
			if (vm->qmp_open)
				qmp_server_event(
				    &vm->qmp, "RESET",
				    by_host ? "{\"guest\":false,\"reason\":"
					      "\"host-qmp-system-reset\"}"
					    : "{\"guest\":true,\"reason\":\"guest-reset\"}");
		}
	}
	power_resume(&vm->power);
}

/* Waiting for an incoming migration, stop and cont only decide whether the VM will run
 * once it has arrived (QEMU's autostart). */
static int vm_ctl_pause(void *opaque)
{
	struct vm *vm = opaque;
	if (vm->inmigrate) {
		vm->autostart = false;
		return 0;
	}
	return vm_pause(vm);
}

static int vm_ctl_resume(void *opaque)
{
	struct vm *vm = opaque;
	if (vm->inmigrate) {
		vm->autostart = true;
		return 0;
	}
	return vm_resume(vm);
}

static void vm_ctl_reset(void *opaque)
{
	struct vm *vm = opaque;
	vm->reset_by_host = true;
	power_request_reset(&vm->power);
}

/* The ACPI power button: the guest's OS sees the fixed event and shuts down on its own. */
static int vm_ctl_powerdown(void *opaque)
{
	struct vm *vm = opaque;
	if (!vm->pm)
		return -ENODEV;
	if (power_stop_requested(&vm->power))
		return -ESHUTDOWN;
	pm_power_button(vm->pm);
	if (vm->qmp_open)
		qmp_server_event(&vm->qmp, "POWERDOWN", NULL);
	return 0;
}

static int vm_ctl_generation_id(void *opaque, char out[37])
{
	struct vm *vm = opaque;
	if (!vm->vmgenid)
		return -ENODEV;
	uint8_t g[VMGENID_SIZE];
	vmgenid_get(vm->vmgenid, g);
	vmgenid_format(g, out);
	return 0;
}

static void vm_ctl_quit(void *opaque)
{
	struct vm *vm = opaque;
	power_request_stop(&vm->power, STOP_QUIT, 0);
}

static enum vm_run_status vm_ctl_status(void *opaque)
{
	struct vm *vm = opaque;
	if (power_stop_requested(&vm->power))
		return VM_STATUS_SHUTDOWN;
	if (vm->inmigrate)
		return VM_STATUS_INMIGRATE;
	if (!power_is_user_paused(&vm->power))
		return VM_STATUS_RUNNING;
	return vm->prelaunch ? VM_STATUS_PRELAUNCH : VM_STATUS_PAUSED;
}

static int vm_ctl_snapshot_save(void *opaque, const char *path, struct errbuf *e)
{
	struct vm *vm = opaque;
	if (vm->inmigrate)
		return errf(e, -EBUSY,
			    "the VM is waiting for an incoming migration: it has no "
			    "state to save yet");
	return vm_snapshot_save(vm, path, 0, e);
}

static int vm_ctl_snapshot_load(void *opaque, const char *path, struct errbuf *e)
{
	struct vm *vm = opaque;
	if (vm->inmigrate)
		return errf(e, -EBUSY,
			    "the VM is waiting for an incoming migration: use QMP "
			    "migrate-incoming");
	int ret = vm_snapshot_load(vm, path, 0, e);
	if (ret == 0)
		vm->prelaunch = false; /* the guest has a past now */
	return ret;
}

static int vm_ctl_incoming(void *opaque, const char *path, struct errbuf *e)
{
	struct vm *vm = opaque;
	if (!vm->inmigrate)
		return errf(e, -EBUSY,
			    "no incoming migration is expected: start kvmini with "
			    "-incoming defer");
	int ret = vm_snapshot_load(vm, path, SNAPSHOT_LEAVE_PAUSED, e);
	if (ret < 0)
		return ret;
	vm->inmigrate = false;
	vm->prelaunch = false;
	if (vm->autostart)
		vm_resume(vm);
	return 0;
}

static int vm_ctl_snapshot_clock(void *opaque, const char *path, uint64_t *clock_ns,
				 struct errbuf *e)
{
	struct snapshot_info info;
	int ret = vm_snapshot_info(path, &info, e);
	*clock_ns = info.vm_clock_ns;
	return ret;
}

static unsigned vm_ctl_device_stats(void *opaque, struct vm_device_stats *out, unsigned max)
{
	struct vm *vm = opaque;
	return virtio_collect_stats(&vm->devices, out, max);
}

static const struct vm_control_ops vm_control_ops = {
    .pause = vm_ctl_pause,
    .resume = vm_ctl_resume,
    .reset = vm_ctl_reset,
    .powerdown = vm_ctl_powerdown,
    .generation_id = vm_ctl_generation_id,
    .quit = vm_ctl_quit,
    .status = vm_ctl_status,
    .snapshot_save = vm_ctl_snapshot_save,
    .device_stats = vm_ctl_device_stats,
    .snapshot_load = vm_ctl_snapshot_load,
    .incoming = vm_ctl_incoming,
    .snapshot_clock = vm_ctl_snapshot_clock,
};

/* --snapshot-dir, else the first disk's directory (QEMU keeps savevm's state in the
 * first writable disk's image); NULL without either. */
static int vm_find_snapshot_dir(struct vm *vm, struct errbuf *e)
{
	const struct vm_config *cfg = vm->cfg;
	struct stat st;
	if (cfg->snapshot_dir) {
		if (stat(cfg->snapshot_dir, &st) < 0)
			return errf(e, -errno, "--snapshot-dir %s: %s", cfg->snapshot_dir,
				    strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return errf(e, -ENOTDIR, "--snapshot-dir %s: not a directory",
				    cfg->snapshot_dir);
		vm->snapshot_dir = strdup(cfg->snapshot_dir);
	} else {
		const char *file = NULL;
		for (unsigned i = 0; i < cfg->drives.n && !file; i++)
			file = keyed_get((struct keyed_opts *)&cfg->drives.items[i], "file");
		if (!file)
			return 0;
		const char *slash = strrchr(file, '/');
		vm->snapshot_dir =
		    slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
	}
	if (!vm->snapshot_dir)
		return errf(e, -ENOMEM, "out of memory");
	vm->control.snapshot_dir = vm->snapshot_dir;
	return 0;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, const struct timespec *start,
	      const uint8_t *kernel, size_t kernel_size, const char *kernel_name, int initrd_fd,
	      uint64_t initrd_size, struct errbuf *e)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = cfg;
	vm->start = *start;
	vm->vm_fd = -1;
	vm->signal_fd = -1;
	vm->vcpu_env.profile_fd = -1;
	vm->control =
	    (struct vm_control){.ops = &vm_control_ops, .opaque = vm, .migration = &vm->migration};
	device_list_init(&vm->devices);
	vm->reset_vcpu_state = calloc(cfg->ncpus, sizeof(*vm->reset_vcpu_state));
	vm->vcpus = calloc(cfg->ncpus, sizeof(*vm->vcpus));
	if (!vm->reset_vcpu_state || !vm->vcpus)
		return errf(e, -ENOMEM, "out of memory");

	if ((ret = vm_find_snapshot_dir(vm, e)) < 0)
		return ret;
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
	if ((ret = bus_init(&vm->pio, "pio")) < 0 || (ret = bus_init(&vm->mmio, "mmio")) < 0 ||
	    (ret = irq_router_init(&vm->irq_router, vm->vm_fd)) < 0)
		return errf(e, ret, "cannot create the I/O buses and the interrupt router");
	vm->init_done = INIT_BUSES;
	if ((ret = power_init(&vm->power)) < 0)
		return errf(e, ret, "eventfd: %s", strerror(-ret));
	vm->init_done = INIT_POWER;
	if ((ret = loop_init(&vm->loop)) < 0)
		return errf(e, ret, "cannot create the event loop: %s", strerror(-ret));
	vm->init_done = INIT_LOOP;
	vm->init_done = INIT_CONSOLE;
	if ((ret = vm_open_consoles(vm, e)) < 0)
		return ret;
	if (cfg->qmp.backend == CHARDEV_UNIX) {
		if ((ret = qmp_server_open(&vm->qmp, &cfg->qmp, e)) < 0)
			return ret;
		vm->qmp_open = true;
	}
	if ((ret = vm_create_devices(vm, e)) < 0)
		return ret;

	/* Linux on a host that emulates guest ring 0 needs a parameter (see emulate.h). The
	 * line is kept with the boot arguments: a reset loads it again. */
	struct bzimage_info bz;
	if (vm->kvm.ring0_emulated && bzimage_parse(kernel, kernel_size, &bz, NULL) == 0) {
		size_t len = strlen(vm->cmdline) + sizeof(X86_EMULATED_RING0_PARAMS) + 2;
		char *buf = malloc(len);
		if (!buf)
			return errf(e, -ENOMEM, "out of memory");
		const char *line = x86_cmdline_for_emulated_ring0(vm->cmdline, buf, len);
		if (line == buf) {
			free(vm->cmdline);
			vm->cmdline = buf;
			log_info("this host emulates guest ring 0: kernel command line gets \"%s\"",
				 X86_EMULATED_RING0_PARAMS);
		} else {
			free(buf);
		}
	}
	vm->boot_args = (struct x86_boot_args){
	    .kernel = kernel,
	    .kernel_size = kernel_size,
	    .kernel_name = kernel_name,
	    .initrd_fd = initrd_fd,
	    .initrd_size = initrd_size,
	    .cmdline = vm->cmdline,
	    .decompress = cfg->boot_decompress,
	    .ncpus = cfg->ncpus,
	};
	if ((ret = x86_boot_load(&vm->mem, &vm->boot_args, &vm->boot, e)) < 0)
		return ret;
	log_info("kernel: %s; entry 0x%llx", vm->boot.description,
		 (unsigned long long)vm->boot.entry);
	if (vm->boot.initrd_size)
		log_info("initrd: %llu bytes at 0x%llx", (unsigned long long)vm->boot.initrd_size,
			 (unsigned long long)vm->boot.initrd_addr);
	return vm_create_vcpus(vm, e);
}

/* A stop or a reset was requested (by a device, a vCPU, a signal or the monitor). */
static void vm_on_power(void *opaque, int fd, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;
	if (!power_stop_requested(&vm->power))
		vm_handle_reset(vm);
	if (power_stop_requested(&vm->power))
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

/* SHUTDOWN's data, with QEMU's reasons. */
static const char *qmp_shutdown_data(enum stop_reason why)
{
	switch (why) {
	case STOP_POWEROFF:
	case STOP_DEBUG_EXIT:
		return "{\"guest\":true,\"reason\":\"guest-shutdown\"}";
	case STOP_RESET:
		return "{\"guest\":true,\"reason\":\"guest-reset\"}";
	case STOP_QUIT:
		return "{\"guest\":false,\"reason\":\"host-qmp-quit\"}";
	case STOP_SIGNAL:
		return "{\"guest\":false,\"reason\":\"host-signal\"}";
	default:
		return "{\"guest\":false,\"reason\":\"host-error\"}";
	}
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
	    (ret = loop_add_fd(&vm->loop, vm->power.wake_fd, EPOLLIN, vm_on_power, vm)) < 0)
		return errf(e, ret, "cannot set up the event loop: %s", strerror(-ret));
	for (unsigned i = 0; i < KVMINI_MAX_SERIALS; i++) {
		if (!vm->serial_present[i])
			continue;
		ret = console_start(&vm->consoles[i], &vm->serials[i], &vm->loop, &vm->power,
				    &vm->control, e);
		if (ret < 0)
			return ret;
		vm->consoles[i].vcpus = vm->vcpus;
		vm->consoles[i].nvcpus = vm->nvcpus;
	}
	if (vm->qmp_open) {
		struct qmp_vm q = {.cfg = vm->cfg,
				   .control = &vm->control,
				   .power = &vm->power,
				   .vcpus = vm->vcpus,
				   .nvcpus = vm->nvcpus,
				   .vm_fd = vm->vm_fd,
				   .pci = vm->pci_created ? &vm->pci : NULL};
		if ((ret = qmp_server_start(&vm->qmp, &vm->loop, &q, e)) < 0)
			return ret;
	}
	/* --name is what ps and top show for the VM (the kernel keeps 15 bytes of it). */
	prctl(PR_SET_NAME, vm->cfg->name, 0, 0, 0);

	/* -S: the vCPUs park before their first instruction until the monitor's cont. */
	if (vm->cfg->start_paused) {
		vm->prelaunch = true;
		power_user_pause(&vm->power);
	}
	/* -incoming defer: parked until migrate-incoming; with -S it stays paused after. */
	if (vm->cfg->incoming_defer) {
		vm->inmigrate = true;
		vm->autostart = !vm->cfg->start_paused;
		power_user_pause(&vm->power);
	}
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
	vm_kick_vcpus(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_join(&vm->vcpus[i]);
	/* What the guest wrote before it stopped still reaches its reader (bounded wait). */
	for (unsigned i = 0; i < KVMINI_MAX_SERIALS; i++)
		console_close(&vm->consoles[i]);
	if (vm->cfg->stats)
		vcpu_print_stats(vm->vcpus, vm->nvcpus);

	int status = 0;
	enum stop_reason why = power_stop_reason(&vm->power, &status);
	log_info("guest stopped: %s", stop_reason_name(why));
	if (vm->qmp_open) {
		qmp_server_event(&vm->qmp, "SHUTDOWN",
				 why == STOP_RESET && vm->reset_stop_by_host
				     ? "{\"guest\":false,\"reason\":\"host-qmp-system-reset\"}"
				     : qmp_shutdown_data(why));
		qmp_server_close(&vm->qmp, 500);
		vm->qmp_open = false;
	}
	switch (why) {
	case STOP_POWEROFF:
	case STOP_RESET:
	case STOP_QUIT:
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
	if (vm->vcpu_env.profile_fd >= 0)
		close(vm->vcpu_env.profile_fd);
	vm->vcpu_env.profile_fd = -1;
	free(vm->supported_cpuid);
	vm->supported_cpuid = NULL;
	free(vm->reset_vcpu_state);
	vm->reset_vcpu_state = NULL;
	free(vm->vcpus);
	vm->vcpus = NULL;
	free(vm->cmdline);
	vm->cmdline = NULL;
	free(vm->snapshot_dir);
	vm->snapshot_dir = NULL;
	vm->control.snapshot_dir = NULL;
	if (vm->signal_fd >= 0)
		close(vm->signal_fd);
	vm->signal_fd = -1;
	if (vm->qmp_open)
		qmp_server_close(&vm->qmp, 0);
	vm->qmp_open = false;
	switch (vm->init_done) {
	case INIT_DEVICES:
		device_list_destroy(&vm->devices); /* before the bus its functions are on */
		if (vm->pci_created)
			pci_host_destroy(&vm->pci);
		vm->pci_created = false;
		/* fall through */
	case INIT_CONSOLE:
		device_list_destroy(&vm->devices); /* the UARTs too */
		for (unsigned i = 0; i < KVMINI_MAX_SERIALS; i++)
			console_close(&vm->consoles[i]);
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
		irq_router_destroy(&vm->irq_router);
		/* fall through */
	case INIT_RAM:
	case INIT_VM:
		guest_mem_destroy(&vm->mem);
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
