/* The interrupt interface (lines, MSI messages, irqfds) and the GSI router, recording only
 * (vm_fd < 0): no /dev/kvm. */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "core/irq.h"

/* The eventfd's counter (0 if nothing was written), which resets it. */
static uint64_t irq_drain(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0;
	return v;
}

Test(irq_router, keeps_the_default_pic_and_ioapic_routes)
{
	struct irq_router r;
	cr_assert_eq(irq_router_init(&r, -1), 0);
	struct kvm_irq_routing_entry e;
	for (unsigned gsi = 0; gsi < 24; gsi++) {
		cr_assert_eq(irq_router_lookup(&r, gsi, &e), 0, "GSI %u", gsi);
		cr_assert_eq(e.type, KVM_IRQ_ROUTING_IRQCHIP);
		cr_assert_eq(e.u.irqchip.irqchip, KVM_IRQCHIP_IOAPIC);
		cr_assert_eq(e.u.irqchip.pin, gsi);
	}
	/* GSIs 0-15 also reach the PIC: master pins for 0-7, slave pins for 8-15. */
	unsigned pic = 0;
	for (unsigned i = 0; i < r.nentries; i++) {
		const struct kvm_irq_routing_entry *x = &r.entries[i];
		if (x->type == KVM_IRQ_ROUTING_IRQCHIP &&
		    x->u.irqchip.irqchip != KVM_IRQCHIP_IOAPIC) {
			cr_assert_lt(x->gsi, 16);
			cr_assert_eq(x->u.irqchip.irqchip,
				     x->gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE);
			cr_assert_eq(x->u.irqchip.pin, x->gsi % 8);
			pic++;
		}
	}
	cr_assert_eq(pic, 16);
	cr_assert_eq(irq_router_lookup(&r, 24, &e), -ENOENT);
	irq_router_destroy(&r);
}

Test(irq_router, allocates_changes_and_frees_msi_routes)
{
	struct irq_router r;
	struct errbuf err;
	cr_assert_eq(irq_router_init(&r, -1), 0);
	unsigned base = r.nentries, g1, g2;
	cr_assert_eq(irq_router_alloc_msi(&r, 0xfee00000, 0x4031, &g1), 0);
	cr_assert_eq(irq_router_alloc_msi(&r, 0x1fee01000ull, 0x4032, &g2), 0);
	cr_assert_geq(g1, 24);
	cr_assert_neq(g1, g2);
	struct kvm_irq_routing_entry e;
	cr_assert_eq(irq_router_lookup(&r, g2, &e), 0);
	cr_assert_eq(e.type, KVM_IRQ_ROUTING_MSI);
	cr_assert_eq(e.u.msi.address_lo, 0xfee01000);
	cr_assert_eq(e.u.msi.address_hi, 1);
	cr_assert_eq(e.u.msi.data, 0x4032);
	cr_assert_eq(r.nentries, base + 2, "the defaults stay in the table");

	cr_assert_eq(irq_router_commit(&r, &err), 0);
	cr_assert_eq(r.commits, 1);
	cr_assert_eq(irq_router_commit(&r, &err), 0);
	cr_assert_eq(r.commits, 1, "an unchanged table is not installed again");
	cr_assert_eq(irq_router_set_msi(&r, g1, 0xfee00000, 0x4041), 0);
	cr_assert_eq(irq_router_set_msi(&r, 5, 0xfee00000, 0x4041), -ENOENT,
		     "a default route is not an MSI route");
	cr_assert_eq(irq_router_commit(&r, &err), 0);
	cr_assert_eq(r.commits, 2);

	irq_router_free_msi(&r, g1);
	cr_assert_eq(irq_router_lookup(&r, g1, &e), -ENOENT);
	unsigned g3;
	cr_assert_eq(irq_router_alloc_msi(&r, 0xfee00000, 0x4051, &g3), 0);
	cr_assert_eq(g3, g1, "a freed GSI is reused");
	/* The GSI space is finite. */
	unsigned g, n = 0;
	while (irq_router_alloc_msi(&r, 0xfee00000, 0, &g) == 0)
		n++;
	cr_assert_eq(n + 2, IRQ_ROUTER_MAX_GSI - IRQ_ROUTER_IOAPIC_PINS);
	cr_assert_eq(irq_router_alloc_msi(&r, 0xfee00000, 0, &g), -ENOSPC);
	irq_router_destroy(&r);
}

Test(irq, a_line_records_level_and_edges)
{
	struct irq i;
	cr_assert_eq(irq_init_line(&i, -1, 4), 0);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert(atomic_load(&i.level));
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(atomic_load(&i.raises), 1, "raising a raised line is not a new edge");
	cr_assert_eq(irq_lower(&i), 0);
	cr_assert_not(atomic_load(&i.level));
	cr_assert_eq(irq_trigger(&i), 0);
	cr_assert_eq(atomic_load(&i.raises), 2);
	cr_assert_not(atomic_load(&i.level), "a trigger leaves the line low");
	cr_assert_eq(irq_set_msi(&i, 0xfee00000, 0), -EINVAL);
	irq_destroy(&i);
}

Test(irq, an_msi_sends_a_message_per_raise)
{
	struct irq i;
	cr_assert_eq(irq_init_msi(&i, -1, 0xfee00000, 0x4021), 0);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(irq_lower(&i), 0);
	cr_assert_eq(irq_trigger(&i), 0);
	cr_assert_eq(atomic_load(&i.raises), 3);
	cr_assert_eq(irq_set_msi(&i, 0xfee01000, 0x4022), 0);
	cr_assert_eq(i.msi_addr, 0xfee01000);
	cr_assert_eq(i.msi_data, 0x4022);
	irq_destroy(&i);
}

Test(irq, an_msi_irqfd_signals_its_eventfd_and_owns_a_route)
{
	struct irq_router r;
	struct irq i;
	struct errbuf e;
	cr_assert_eq(irq_router_init(&r, -1), 0);
	cr_assert_eq(irq_init_msi_irqfd(&i, &r, 0xfee00000, 0x4025, &e), 0, "%s", e.msg);
	cr_assert_geq(i.fd, 0);
	struct kvm_irq_routing_entry route;
	cr_assert_eq(irq_router_lookup(&r, i.gsi, &route), 0);
	cr_assert_eq(route.u.msi.data, 0x4025);
	cr_assert_eq(irq_trigger(&i), 0);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 2);
	cr_assert_eq(irq_lower(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 0, "lowering a message sends nothing");
	cr_assert_eq(irq_set_msi(&i, 0xfee02000, 0x4026), 0);
	cr_assert_eq(irq_router_lookup(&r, i.gsi, &route), 0);
	cr_assert_eq(route.u.msi.address_lo, 0xfee02000);
	cr_assert(r.dirty, "a changed message needs a commit");
	unsigned gsi = i.gsi;
	irq_destroy(&i);
	cr_assert_eq(irq_router_lookup(&r, gsi, &route), -ENOENT, "the route goes with the irq");
	irq_router_destroy(&r);
}

Test(irq, a_level_irqfd_is_raised_again_at_resample_while_asserted)
{
	struct irq i;
	struct errbuf e;
	cr_assert_eq(irq_init_line_irqfd(&i, -1, 10, true, &e), 0, "%s", e.msg);
	cr_assert_geq(i.resample_fd, 0);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 1);
	/* KVM signals the resample fd at the guest's EOI; the device still asserts. */
	uint64_t one = 1;
	cr_assert_eq(write(i.resample_fd, &one, sizeof(one)), sizeof(one));
	cr_assert_eq(irq_resample(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 1, "a line still asserted at EOI is raised again");
	cr_assert_eq(irq_drain(i.resample_fd), 0, "resample consumed the notification");
	cr_assert_eq(irq_lower(&i), 0);
	cr_assert_eq(write(i.resample_fd, &one, sizeof(one)), sizeof(one));
	cr_assert_eq(irq_resample(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 0, "a lowered line stays down");
	irq_destroy(&i);
	cr_assert_eq(i.fd, -1);

	/* An edge irqfd has no resample fd; raise is a trigger. */
	cr_assert_eq(irq_init_line_irqfd(&i, -1, 11, false, &e), 0);
	cr_assert_eq(i.resample_fd, -1);
	cr_assert_eq(irq_raise(&i), 0);
	cr_assert_eq(irq_drain(i.fd), 1);
	cr_assert_eq(irq_resample(&i), -EINVAL);
	irq_destroy(&i);
}
