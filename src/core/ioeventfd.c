#include "core/ioeventfd.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

static void ioeventfd_on_loop(void *opaque, int fd, uint32_t events)
{
	struct ioeventfd *io = opaque;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return;
	io->fn(io->opaque, io->arg);
}

int ioeventfd_init(struct ioeventfd *io, int vm_fd, struct event_loop *loop, ioeventfd_fn fn,
		   void *opaque, unsigned arg, struct errbuf *e)
{
	memset(io, 0, sizeof(*io));
	io->vm_fd = vm_fd;
	io->loop = loop;
	io->fn = fn;
	io->opaque = opaque;
	io->arg = arg;
	io->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (io->fd < 0)
		return errf(e, -errno, "eventfd for a queue notification: %s", strerror(errno));
	int ret = loop ? loop_add_fd(loop, io->fd, EPOLLIN, ioeventfd_on_loop, io) : 0;
	if (ret < 0) {
		close(io->fd);
		io->fd = -1;
		return errf(e, ret, "cannot watch a queue notification eventfd: %s",
			    strerror(-ret));
	}
	return 0;
}

void ioeventfd_init_fd(struct ioeventfd *io, int vm_fd, int fd)
{
	memset(io, 0, sizeof(*io));
	io->vm_fd = vm_fd;
	io->fd = fd;
	io->borrowed = true;
}

static int ioeventfd_ioctl(struct ioeventfd *io, uint64_t addr, uint32_t len, bool deassign)
{
	struct kvm_ioeventfd req = {
	    .addr = addr,
	    .len = len,
	    .fd = io->fd,
	    .flags = deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0,
	    .datamatch = io->datamatch,
	};
	if (io->has_datamatch)
		req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	return ioctl(io->vm_fd, KVM_IOEVENTFD, &req) < 0 ? -errno : 0;
}

int ioeventfd_assign(struct ioeventfd *io, uint64_t addr, uint32_t len)
{
	ioeventfd_deassign(io);
	if (io->vm_fd < 0 || io->fd < 0)
		return -ENODEV;
	int ret = ioeventfd_ioctl(io, addr, 0, false);
	if (ret < 0 && len)
		ret = ioeventfd_ioctl(io, addr, len, false);
	else
		len = 0;
	if (ret < 0)
		return ret;
	io->addr = addr;
	io->len = len;
	io->assigned = true;
	return 0;
}

int ioeventfd_assign_datamatch(struct ioeventfd *io, uint64_t addr, uint32_t len, uint64_t value)
{
	ioeventfd_deassign(io);
	if (io->vm_fd < 0 || io->fd < 0)
		return -ENODEV;
	io->has_datamatch = true;
	io->datamatch = value;
	int ret = ioeventfd_ioctl(io, addr, len, false);
	if (ret < 0) {
		io->has_datamatch = false;
		return ret;
	}
	io->addr = addr;
	io->len = len;
	io->assigned = true;
	return 0;
}

void ioeventfd_deassign(struct ioeventfd *io)
{
	if (io->assigned)
		ioeventfd_ioctl(io, io->addr, io->len, true);
	io->assigned = false;
	io->has_datamatch = false;
}

void ioeventfd_destroy(struct ioeventfd *io)
{
	if (io->fd < 0)
		return;
	ioeventfd_deassign(io);
	if (io->loop)
		loop_del_fd(io->loop, io->fd);
	if (!io->borrowed)
		close(io->fd);
	io->fd = -1;
}
