#include "core/ioeventfd.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

static int ioeventfd_ioctl(struct ioeventfd *io, bool assign)
{
	struct kvm_ioeventfd req = {
	    .datamatch = io->datamatch,
	    .addr = io->addr,
	    .len = io->len,
	    .fd = io->fd,
	};
	if (io->has_datamatch)
		req.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
	if (io->pio)
		req.flags |= KVM_IOEVENTFD_FLAG_PIO;
	if (!assign)
		req.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
	return ioctl(io->vm_fd, KVM_IOEVENTFD, &req) < 0 ? -errno : 0;
}

static void ioeventfd_ready(void *opaque, int fd, uint32_t events)
{
	struct ioeventfd *io = opaque;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) == sizeof(v))
		io->fn(io->opaque);
}

int ioeventfd_init(struct ioeventfd *io, int vm_fd, struct event_loop *loop, uint64_t addr,
		   uint32_t len, bool pio, bool has_datamatch, uint64_t datamatch, ioeventfd_fn fn,
		   void *opaque, struct errbuf *e)
{
	*io = (struct ioeventfd){
	    .vm_fd = vm_fd,
	    .fd = -1,
	    .loop = loop,
	    .addr = addr,
	    .len = len,
	    .pio = pio,
	    .has_datamatch = has_datamatch,
	    .datamatch = datamatch,
	    .fn = fn,
	    .opaque = opaque,
	};
	if (vm_fd < 0 || !loop)
		return errf(e, -ENODEV, "no VM to assign an ioeventfd in");
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return errf(e, -errno, "eventfd for the ioeventfd at 0x%llx: %s",
			    (unsigned long long)addr, strerror(errno));
	io->fd = fd;
	int ret = ioeventfd_ioctl(io, true);
	if (ret < 0) {
		close(fd);
		io->fd = -1;
		return errf(e, ret, "KVM_IOEVENTFD at 0x%llx failed: %s", (unsigned long long)addr,
			    strerror(-ret));
	}
	ret = loop_add_fd(loop, fd, EPOLLIN, ioeventfd_ready, io);
	if (ret < 0) {
		ioeventfd_ioctl(io, false);
		close(fd);
		io->fd = -1;
		return errf(e, ret, "cannot watch the ioeventfd at 0x%llx: %s",
			    (unsigned long long)addr, strerror(-ret));
	}
	return 0;
}

void ioeventfd_destroy(struct ioeventfd *io)
{
	if (io->fd < 0)
		return;
	loop_del_fd(io->loop, io->fd);
	ioeventfd_ioctl(io, false);
	close(io->fd);
	io->fd = -1;
}
