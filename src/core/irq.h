/* An interrupt line into the in-kernel interrupt controllers (PIC + IOAPIC). Devices hold
 * a struct irq_line and know nothing of the VM. A line with vm_fd < 0 records its level
 * only, which is what unit tests observe. */
#ifndef KVMINI_CORE_IRQ_H
#define KVMINI_CORE_IRQ_H

#include <stdbool.h>

struct irq_line {
	int vm_fd;
	unsigned gsi;
	bool level;	/* last level set */
	unsigned edges; /* count of 0->1 transitions, for tests and statistics */
};

void irq_line_init(struct irq_line *line, int vm_fd, unsigned gsi);
/* Sets the line's level (KVM_IRQ_LINE). Returns 0 or -errno. */
int irq_line_set(struct irq_line *line, bool level);

#endif
