#include "core/irq.h"

#include <errno.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

void irq_line_init(struct irq_line *line, int vm_fd, unsigned gsi)
{
	line->vm_fd = vm_fd;
	line->gsi = gsi;
	line->level = false;
	line->edges = 0;
}

int irq_line_set(struct irq_line *line, bool level)
{
	if (level && !line->level)
		line->edges++;
	line->level = level;
	if (line->vm_fd < 0)
		return 0;
	struct kvm_irq_level irq = {.irq = line->gsi, .level = level};
	if (ioctl(line->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}
