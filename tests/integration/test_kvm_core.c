/* The core services against a real /dev/kvm, without the kvmini binary: the dirty log of a
 * tiny real-mode guest merged with device writes, and interrupts through the GSI router and
 * irqfds into the in-kernel PIC/IOAPIC (observed with KVM_GET_IRQCHIP) and MSI messages
 * into a LAPIC (KVM_GET_LAPIC). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/chardev.h"
#include "core/device.h"
#include "core/guest_mem.h"
#include "core/irq.h"
#include "devices/serial.h"

#define KC_RAM_SIZE (64u << 10) /* 16 pages at guest-physical 0 */

struct kc_vm {
	int kvm_fd, vm_fd;
};

static void kc_open(struct kc_vm *v)
{
	v->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (v->kvm_fd < 0)
		cr_skip_test("/dev/kvm: %s", strerror(errno));
	v->vm_fd = ioctl(v->kvm_fd, KVM_CREATE_VM, 0);
	cr_assert_geq(v->vm_fd, 0, "KVM_CREATE_VM: %s", strerror(errno));
}

static void kc_close(struct kc_vm *v)
{
	close(v->vm_fd);
	close(v->kvm_fd);
}

Test(kvm_core, dirty_log_names_the_pages_the_guest_and_devices_wrote, .timeout = 60)
{
	struct kc_vm v;
	struct errbuf e;
	kc_open(&v);
	if (ioctl(v.kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_MMU) < 0)
		cr_skip_test("KVM_CHECK_EXTENSION failed: %s", strerror(errno));
	uint8_t *ram =
	    mmap(NULL, KC_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(ram, MAP_FAILED);
	struct guest_mem mem = {0};
	cr_assert_eq(guest_mem_add_region(&mem, 0, KC_RAM_SIZE, ram), 0);
	cr_assert_eq(guest_mem_register_slots(&mem, v.vm_fd, &e), 0, "%s", e.msg);

	/* Real mode at 0x1000: mov byte [0x3000], 1; mov byte [0x5000], 1; out 0x10, al. */
	static const uint8_t code[] = {0xc6, 0x06, 0x00, 0x30, 0x01, 0xc6, 0x06,
				       0x00, 0x50, 0x01, 0xe6, 0x10, 0xf4};
	cr_assert_eq(guest_mem_write(&mem, 0x1000, code, sizeof(code)), 0);

	/* Switch the slot to dirty logging (it is registered again with the flag). */
	int ret = guest_mem_dirty_log_start(&mem, v.vm_fd, &e);
	if (ret == -EINVAL || ret == -ENOTSUP || ret == -EOPNOTSUPP)
		cr_skip_test("this KVM refuses KVM_MEM_LOG_DIRTY_PAGES: %s", e.msg);
	cr_assert_eq(ret, 0, "%s", e.msg);
	uint64_t bm[1];
	cr_assert_eq(guest_mem_fetch_dirty(&mem, v.vm_fd, 0, bm, 1, &e), 0, "%s", e.msg);
	cr_assert_eq(bm[0], 0, "nothing is dirty before the guest runs (got %#llx)",
		     (unsigned long long)bm[0]);

	int vcpu = ioctl(v.vm_fd, KVM_CREATE_VCPU, 0);
	cr_assert_geq(vcpu, 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	int run_size = ioctl(v.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	cr_assert_neq(run, MAP_FAILED);
	struct kvm_sregs sregs;
	cr_assert_eq(ioctl(vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	cr_assert_eq(ioctl(vcpu, KVM_SET_SREGS, &sregs), 0);
	struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
	cr_assert_eq(ioctl(vcpu, KVM_SET_REGS, &regs), 0);
	for (;;) {
		cr_assert(ioctl(vcpu, KVM_RUN, 0) == 0 || errno == EINTR || errno == EAGAIN,
			  "KVM_RUN: %s", strerror(errno));
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10)
			break;
		cr_assert(run->exit_reason == KVM_EXIT_INTR, "unexpected exit %u",
			  run->exit_reason);
	}
	cr_assert_eq(ram[0x3000], 1);
	cr_assert_eq(ram[0x5000], 1);

	/* A device writes page 7 through the accessors; a raw read of page 9 marks nothing. */
	uint8_t byte = 0xaa;
	cr_assert_eq(guest_mem_write(&mem, 0x7004, &byte, 1), 0);
	cr_assert_eq(guest_mem_read(&mem, 0x9000, &byte, 1), 0);

	cr_assert_eq(guest_mem_fetch_dirty(&mem, v.vm_fd, 0, bm, 1, &e), 0, "%s", e.msg);
	uint64_t guest_pages = (1u << 3) | (1u << 5), device_pages = 1u << 7;
	if ((bm[0] & guest_pages) == 0)
		cr_skip_test("KVM accepted KVM_MEM_LOG_DIRTY_PAGES but KVM_GET_DIRTY_LOG reports "
			     "none of the guest's writes (bitmap %#llx): no dirty logging here",
			     (unsigned long long)bm[0]);
	cr_assert_eq(bm[0], guest_pages | device_pages,
		     "dirty pages %#llx, want exactly 3 and 5 (guest) and 7 (device)",
		     (unsigned long long)bm[0]);
	cr_assert_eq(guest_mem_fetch_dirty(&mem, v.vm_fd, 0, bm, 1, &e), 0, "%s", e.msg);
	cr_assert_eq(bm[0], 0, "a fetch clears both logs (got %#llx)", (unsigned long long)bm[0]);

	cr_assert_eq(guest_mem_dirty_log_stop(&mem, v.vm_fd, &e), 0, "%s", e.msg);
	munmap(run, run_size);
	close(vcpu);
	guest_mem_destroy(&mem);
	kc_close(&v);
	munmap(ram, KC_RAM_SIZE);
}

static void kc_irqchip(const struct kc_vm *v, unsigned chip, struct kvm_irqchip *out)
{
	memset(out, 0, sizeof(*out));
	out->chip_id = chip;
	cr_assert_eq(ioctl(v->vm_fd, KVM_GET_IRQCHIP, out), 0, "KVM_GET_IRQCHIP: %s",
		     strerror(errno));
}

/* Waits (irqfds inject from a kernel work item) until the IOAPIC's IRR bit for pin is
 * `want`; returns whether it got there. */
static bool kc_ioapic_irr_becomes(const struct kc_vm *v, unsigned pin, bool want)
{
	for (int i = 0; i < 1000; i++) {
		struct kvm_irqchip chip;
		kc_irqchip(v, KVM_IRQCHIP_IOAPIC, &chip);
		if (!!(chip.chip.ioapic.irr & (1u << pin)) == want)
			return true;
		usleep(1000);
	}
	return false;
}

Test(kvm_core, interrupts_reach_the_in_kernel_irqchip_through_routes_and_irqfds, .timeout = 60)
{
	struct kc_vm v;
	struct errbuf e;
	kc_open(&v);
	cr_assert_eq(ioctl(v.vm_fd, KVM_CREATE_IRQCHIP, 0), 0, "KVM_CREATE_IRQCHIP: %s",
		     strerror(errno));

	/* The router replaces KVM's table with the defaults plus an MSI route. */
	struct irq_router r;
	cr_assert_eq(irq_router_init(&r, v.vm_fd), 0);
	struct irq msi;
	cr_assert_eq(irq_init_msi_irqfd(&msi, &r, 0xfee00000, 0x0031, &e), 0, "%s", e.msg);
	cr_assert_eq(irq_router_commit(&r, &e), 0, "%s", e.msg);
	cr_assert_eq(r.commits, 1);
	cr_assert_eq(irq_trigger(&msi), 0, "an MSI irqfd is signalled");

	/* A level-triggered irqfd on GSI 5 (pin masked, as after reset, so IRR holds it): if
	 * the commit had dropped the default routes, nothing would reach the IOAPIC. */
	struct irq level;
	cr_assert_eq(irq_init_line_irqfd(&level, v.vm_fd, 5, true, &e), 0, "%s", e.msg);
	cr_assert(kc_ioapic_irr_becomes(&v, 5, false));
	cr_assert_eq(irq_raise(&level), 0);
	cr_assert(kc_ioapic_irr_becomes(&v, 5, true), "IOAPIC IRR bit 5 never set by the irqfd");

	/* KVM_IRQ_LINE on GSI 6: up and down. */
	struct irq line;
	cr_assert_eq(irq_init_line(&line, v.vm_fd, 6), 0);
	cr_assert_eq(irq_raise(&line), 0);
	cr_assert(kc_ioapic_irr_becomes(&v, 6, true), "IOAPIC IRR bit 6 not set by KVM_IRQ_LINE");
	cr_assert_eq(irq_lower(&line), 0);
	cr_assert(kc_ioapic_irr_becomes(&v, 6, false), "IOAPIC IRR bit 6 not cleared");

	/* An edge irqfd on GSI 9 pulses the line: the (edge-mode) slave PIC latches it. */
	struct irq edge;
	cr_assert_eq(irq_init_line_irqfd(&edge, v.vm_fd, 9, false, &e), 0, "%s", e.msg);
	cr_assert_eq(irq_trigger(&edge), 0);
	bool latched = false;
	for (int i = 0; i < 1000 && !latched; i++) {
		struct kvm_irqchip pic;
		kc_irqchip(&v, KVM_IRQCHIP_PIC_SLAVE, &pic);
		latched = pic.chip.pic.irr & (1u << 1);
		if (!latched)
			usleep(1000);
	}
	cr_assert(latched, "slave PIC IRR bit 1 (GSI 9) never set by the edge irqfd");

	irq_destroy(&edge);
	irq_destroy(&line);
	irq_destroy(&level);
	irq_destroy(&msi);
	cr_assert_eq(irq_router_commit(&r, &e), 0, "%s", e.msg);
	cr_assert_eq(r.commits, 2, "freeing the MSI route changed the table");
	irq_router_destroy(&r);
	kc_close(&v);
}

/* A device whose level lines are a KVM_IRQ_LINE irq and a resampled irqfd: its sync_irq
 * drives both again, as every device with level lines does after a restore. */
struct kc_levels {
	struct irq line, irqfd;
};

static void kc_levels_sync(void *dev)
{
	struct kc_levels *l = dev;
	irq_resync(&l->line);
	irq_resync(&l->irqfd);
}

static const struct device_ops kc_levels_ops = {.name = "levels", .sync_irq = kc_levels_sync};

/* A restore puts the snapshot's PIC/IOAPIC state after the devices are loaded: a level a
 * device raised since (a UART's pending interrupt) is lost from IRR, and
 * device_list_sync_irqs() drives it again. The IOAPIC's pins are masked (as after reset),
 * so IRR keeps what the lines say. */
Test(kvm_core, a_restored_irqchip_gets_every_asserted_level_line_again, .timeout = 60)
{
	struct kc_vm v;
	struct errbuf e;
	kc_open(&v);
	cr_assert_eq(ioctl(v.vm_fd, KVM_CREATE_IRQCHIP, 0), 0, "KVM_CREATE_IRQCHIP: %s",
		     strerror(errno));
	struct kvm_irqchip saved;
	kc_irqchip(&v, KVM_IRQCHIP_IOAPIC, &saved); /* "the snapshot's": nothing pending */

	/* ttyS0 on GSI 4 with its transmitter-empty interrupt enabled: the line goes up. */
	struct bus pio;
	struct irq_line com1_irq;
	struct serial com1;
	struct chardev chr;
	int pfd[2];
	cr_assert_eq(bus_init(&pio, "pio"), 0);
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	cr_assert_eq(chardev_open_fds(&chr, -1, pfd[1], "test", &e), 0, "%s", e.msg);
	irq_line_init(&com1_irq, v.vm_fd, 4);
	cr_assert_eq(serial_init(&com1, &com1_irq, &chr), 0);
	cr_assert_eq(serial_attach(&com1, &pio, 0x3f8), 0);
	struct device_list list;
	device_list_init(&list);
	cr_assert_eq(device_list_add(&list, &serial_device_ops, &com1, 0), 0);
	uint8_t b = 0x08; /* MCR.OUT2: the UART's IRQ reaches its pin */
	cr_assert(bus_dispatch(&pio, 0x3f8 + 4, &b, 1, true));
	b = 0x02; /* IER.ETBEI */
	cr_assert(bus_dispatch(&pio, 0x3f8 + 1, &b, 1, true));

	/* GSI 6 by KVM_IRQ_LINE and GSI 5 by a resampled irqfd, both asserted. */
	struct kc_levels lv;
	cr_assert_eq(irq_init_line(&lv.line, v.vm_fd, 6), 0);
	cr_assert_eq(irq_init_line_irqfd(&lv.irqfd, v.vm_fd, 5, true, &e), 0, "%s", e.msg);
	cr_assert_eq(device_list_add(&list, &kc_levels_ops, &lv, 0), 0);
	cr_assert_eq(irq_raise(&lv.line), 0);
	cr_assert_eq(irq_raise(&lv.irqfd), 0);
	for (unsigned pin = 4; pin <= 6; pin++)
		cr_assert(kc_ioapic_irr_becomes(&v, pin, true), "IRR bit %u never set", pin);

	/* The restore's KVM_SET_IRQCHIP: the levels are gone from IRR... */
	cr_assert_eq(ioctl(v.vm_fd, KVM_SET_IRQCHIP, &saved), 0, "KVM_SET_IRQCHIP: %s",
		     strerror(errno));
	struct kvm_irqchip now;
	kc_irqchip(&v, KVM_IRQCHIP_IOAPIC, &now);
	cr_assert_eq(now.chip.ioapic.irr & 0x70, 0, "IRR after SET_IRQCHIP: 0x%x",
		     now.chip.ioapic.irr);
	/* ...and the devices drive them again. */
	device_list_sync_irqs(&list);
	for (unsigned pin = 4; pin <= 6; pin++)
		cr_assert(kc_ioapic_irr_becomes(&v, pin, true), "IRR bit %u not driven again", pin);

	/* A line the device has lowered is driven low. */
	cr_assert_eq(irq_lower(&lv.line), 0);
	cr_assert_eq(ioctl(v.vm_fd, KVM_SET_IRQCHIP, &saved), 0);
	device_list_sync_irqs(&list);
	cr_assert(kc_ioapic_irr_becomes(&v, 4, true));
	cr_assert(kc_ioapic_irr_becomes(&v, 6, false), "a lowered line came back");

	/* The list's entries only: the devices are torn down one by one below. */
	for (struct device *d = list.head, *next; d; d = next) {
		next = d->next;
		free(d);
	}
	irq_destroy(&lv.irqfd);
	irq_destroy(&lv.line);
	serial_destroy(&com1);
	chardev_close(&chr);
	bus_destroy(&pio);
	close(pfd[0]);
	close(pfd[1]);
	kc_close(&v);
}

/* The LAPIC's IRR bit for vector (KVM_GET_LAPIC's register page: IRR at 0x200, one 32-bit
 * register per 16 bytes). */
static bool kc_lapic_irr(int vcpu, unsigned vector)
{
	struct kvm_lapic_state st;
	cr_assert_eq(ioctl(vcpu, KVM_GET_LAPIC, &st), 0, "KVM_GET_LAPIC: %s", strerror(errno));
	uint32_t reg;
	memcpy(&reg, st.regs + 0x200 + (vector / 32) * 0x10, 4);
	return reg & (1u << (vector % 32));
}

static bool kc_lapic_irr_becomes_set(int vcpu, unsigned vector)
{
	for (int i = 0; i < 1000; i++) {
		if (kc_lapic_irr(vcpu, vector))
			return true;
		usleep(1000);
	}
	return false;
}

Test(kvm_core, msi_messages_reach_the_lapic_directly_and_through_routes, .timeout = 60)
{
	struct kc_vm v;
	struct errbuf e;
	kc_open(&v);
	cr_assert_eq(ioctl(v.vm_fd, KVM_CREATE_IRQCHIP, 0), 0, "KVM_CREATE_IRQCHIP: %s",
		     strerror(errno));
	int vcpu = ioctl(v.vm_fd, KVM_CREATE_VCPU, 0);
	cr_assert_geq(vcpu, 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	/* A LAPIC accepts fixed interrupts only when software-enabled (SVR bit 8), which the
	 * guest would do first; the vCPU never runs. */
	struct kvm_lapic_state st;
	cr_assert_eq(ioctl(vcpu, KVM_GET_LAPIC, &st), 0);
	uint32_t svr = 0x1ff;
	memcpy(st.regs + 0xf0, &svr, 4);
	cr_assert_eq(ioctl(vcpu, KVM_SET_LAPIC, &st), 0, "KVM_SET_LAPIC: %s", strerror(errno));

	/* Fixed delivery, physical destination APIC ID 0: address 0xfee00000, data = vector. */
	struct irq direct;
	cr_assert_eq(irq_init_msi(&direct, v.vm_fd, 0xfee00000, 0x41), 0);
	cr_assert_eq(irq_raise(&direct), 0);
	cr_assert(kc_lapic_irr_becomes_set(vcpu, 0x41), "KVM_SIGNAL_MSI vector 0x41 not in IRR");

	struct irq_router r;
	cr_assert_eq(irq_router_init(&r, v.vm_fd), 0);
	struct irq routed;
	cr_assert_eq(irq_init_msi_irqfd(&routed, &r, 0xfee00000, 0x52, &e), 0, "%s", e.msg);
	cr_assert_eq(irq_router_commit(&r, &e), 0, "%s", e.msg);
	cr_assert_eq(irq_trigger(&routed), 0);
	cr_assert(kc_lapic_irr_becomes_set(vcpu, 0x52), "MSI irqfd vector 0x52 not in IRR");

	/* The guest rewrites the vector (an MSI-X table write): route updated, committed. */
	cr_assert_eq(irq_set_msi(&routed, 0xfee00000, 0x63), 0);
	cr_assert_eq(irq_router_commit(&r, &e), 0, "%s", e.msg);
	cr_assert_eq(irq_trigger(&routed), 0);
	cr_assert(kc_lapic_irr_becomes_set(vcpu, 0x63), "re-routed MSI vector 0x63 not in IRR");
	cr_assert_not(kc_lapic_irr(vcpu, 0x74), "an unsent vector is not pending");

	irq_destroy(&routed);
	irq_destroy(&direct);
	irq_router_destroy(&r);
	close(vcpu);
	kc_close(&v);
}
