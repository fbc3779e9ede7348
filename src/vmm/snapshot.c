#include "vmm/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/snapfmt.h"
#include "util/log.h"
#include "vmm/vm.h"

#ifndef KVMINI_VERSION
#define KVMINI_VERSION "0.1.0"
#endif

static unsigned serial_mask(const struct vm *vm)
{
	unsigned m = 0;
	for (unsigned i = 0; i < KVMINI_MAX_SERIALS; i++)
		if (vm->serial_present[i])
			m |= 1u << i;
	return m;
}

static void put_config(struct vm *vm, struct state_writer *w)
{
	state_put_u64(w, vm->ram_size);
	state_put_u32(w, vm->nvcpus);
	state_put_u32(w, serial_mask(vm));
	state_put_u32(w, vm->devices.count);
	for (struct device *d = vm->devices.head; d; d = d->next) {
		size_t n = strlen(d->ops->name);
		state_put_u8(w, (uint8_t)n);
		state_put_bytes(w, d->ops->name, n);
		state_put_u32(w, d->instance);
	}
}

/* Names the first difference between the snapshot's configuration and this VM's. */
static int check_config(struct vm *vm, const struct snap_section *s, struct errbuf *e)
{
	struct state_reader r = {.buf = s->data, .len = s->len};
	uint64_t mem = state_get_u64(&r);
	uint32_t ncpus = state_get_u32(&r), serials = state_get_u32(&r);
	uint32_t ndev = state_get_u32(&r);
	if (r.err)
		return errf(e, -EINVAL, "the config section is malformed");
	if (mem != vm->ram_size)
		return errf(e, -EINVAL, "snapshot has %llu MiB of memory, this VM has %llu MiB",
			    (unsigned long long)(mem >> 20),
			    (unsigned long long)(vm->ram_size >> 20));
	if (ncpus != vm->nvcpus)
		return errf(e, -EINVAL, "snapshot has %u vCPU%s, this VM has %u", ncpus,
			    ncpus == 1 ? "" : "s", vm->nvcpus);
	unsigned mine = serial_mask(vm);
	for (unsigned i = 0; i < KVMINI_MAX_SERIALS; i++)
		if ((serials ^ mine) & (1u << i))
			return errf(e, -EINVAL, "snapshot %s serial port ttyS%u, this VM %s",
				    serials & (1u << i) ? "has" : "has no", i,
				    mine & (1u << i) ? "has" : "has none");
	struct device *d = vm->devices.head;
	for (uint32_t i = 0; i < ndev; i++, d = d ? d->next : NULL) {
		char name[256] = {0};
		uint8_t n = state_get_u8(&r);
		state_get_bytes(&r, name, n);
		uint32_t inst = state_get_u32(&r);
		if (r.err)
			return errf(e, -EINVAL, "the config section is malformed");
		if (!d)
			return errf(e, -EINVAL, "snapshot has device %s%u, this VM has not", name,
				    inst);
		if (strcmp(name, d->ops->name) || inst != d->instance)
			return errf(e, -EINVAL, "snapshot has device %s%u where this VM has %s%u",
				    name, inst, d->ops->name, d->instance);
	}
	if (d)
		return errf(e, -EINVAL, "this VM has device %s%u, the snapshot has not",
			    d->ops->name, d->instance);
	if (state_reader_finish(&r) < 0)
		return errf(e, -EINVAL, "the config section is malformed");
	return 0;
}

struct vm_section {
	struct x86_vm_state chips;
	struct kvm_clock_data clock;
};

static void put_vcpu(struct state_writer *w, const struct x86_vcpu_state *s,
		     const struct x86_vcpu_extra *x)
{
	state_put_bytes(w, &s->regs, sizeof(s->regs));
	state_put_bytes(w, &s->sregs, sizeof(s->sregs));
	state_put_bytes(w, &s->fpu, sizeof(s->fpu));
	state_put_bytes(w, &s->xcrs, sizeof(s->xcrs));
	state_put_u8(w, s->has_xcrs);
	state_put_bytes(w, &s->lapic, sizeof(s->lapic));
	state_put_bytes(w, &s->mp_state, sizeof(s->mp_state));
	state_put_bytes(w, &s->events, sizeof(s->events));
	state_put_bytes(w, &s->debugregs, sizeof(s->debugregs));
	state_put_u32(w, x->xsave_size);
	state_put_bytes(w, x->xsave, x->xsave_size);
	state_put_u32(w, x->nmsrs);
	for (uint32_t i = 0; i < x->nmsrs; i++) {
		state_put_u32(w, x->msrs[i].index);
		state_put_u64(w, x->msrs[i].data);
	}
	state_put_u32(w, x->tsc_khz);
}

/* xsave_min: the size this host's KVM_SET_XSAVE reads (the buffer is at least that). */
static int get_vcpu(const struct snap_section *sec, uint32_t xsave_min, struct x86_vcpu_state *s,
		    struct x86_vcpu_extra *x)
{
	struct state_reader r = {.buf = sec->data, .len = sec->len};
	memset(s, 0, sizeof(*s));
	memset(x, 0, sizeof(*x));
	state_get_bytes(&r, &s->regs, sizeof(s->regs));
	state_get_bytes(&r, &s->sregs, sizeof(s->sregs));
	state_get_bytes(&r, &s->fpu, sizeof(s->fpu));
	state_get_bytes(&r, &s->xcrs, sizeof(s->xcrs));
	s->has_xcrs = state_get_u8(&r) != 0;
	state_get_bytes(&r, &s->lapic, sizeof(s->lapic));
	state_get_bytes(&r, &s->mp_state, sizeof(s->mp_state));
	state_get_bytes(&r, &s->events, sizeof(s->events));
	state_get_bytes(&r, &s->debugregs, sizeof(s->debugregs));
	uint32_t xs = state_get_u32(&r);
	if (r.err || xs > r.len - r.pos || s->xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EINVAL;
	if (xs) {
		x->xsave_size = xs > xsave_min ? xs : xsave_min;
		if (!(x->xsave = calloc(1, x->xsave_size)))
			return -ENOMEM;
		state_get_bytes(&r, x->xsave, xs);
	}
	uint32_t n = state_get_u32(&r);
	if (r.err || n > (r.len - r.pos) / 12) {
		x86_vcpu_extra_free(x);
		return -EINVAL;
	}
	if (!(x->msrs = calloc(n + 1, sizeof(*x->msrs)))) {
		x86_vcpu_extra_free(x);
		return -ENOMEM;
	}
	x->nmsrs = n;
	for (uint32_t i = 0; i < n; i++) {
		x->msrs[i].index = state_get_u32(&r);
		x->msrs[i].data = state_get_u64(&r);
	}
	x->tsc_khz = state_get_u32(&r);
	if (state_reader_finish(&r) < 0) {
		x86_vcpu_extra_free(x);
		return -EINVAL;
	}
	return 0;
}

static uint32_t host_xsave_size(struct vm *vm)
{
	int n = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return n > 0 ? (uint32_t)n : 0;
}

static int write_vcpus(struct vm *vm, struct snap_writer *sw, struct errbuf *e)
{
	uint32_t *list = NULL, nlist = 0;
	int ret = x86_msr_index_list(vm->kvm.fd, &list, &nlist, e);
	if (ret < 0)
		return ret;
	uint32_t xsave = host_xsave_size(vm);
	for (unsigned i = 0; i < vm->nvcpus && ret == 0; i++) {
		struct x86_vcpu_state s;
		struct x86_vcpu_extra x;
		int fd = vm->vcpus[i].fd;
		if ((ret = x86_vcpu_get_state(fd, &s, e)) < 0 ||
		    (ret = x86_vcpu_get_extra(fd, xsave, list, nlist, &x, e)) < 0)
			break;
		struct state_writer w = {0};
		put_vcpu(&w, &s, &x);
		x86_vcpu_extra_free(&x);
		ret = w.err ? errf(e, w.err, "out of memory")
			    : snap_write_section(sw, SNAP_SEC_VCPU, i, w.buf, w.len, e);
		state_writer_free(&w);
	}
	free(list);
	return ret;
}

static int write_devices(struct vm *vm, struct snap_writer *sw, struct errbuf *e)
{
	for (struct device *d = vm->devices.head; d; d = d->next) {
		struct state_writer w = {0};
		size_t n = strlen(d->ops->name);
		state_put_u8(&w, (uint8_t)n);
		state_put_bytes(&w, d->ops->name, n);
		int ret = device_save(d, &w);
		if (ret < 0) {
			state_writer_free(&w);
			return errf(e, ret, "cannot save device %s%u: %s", d->ops->name,
				    d->instance, strerror(-ret));
		}
		ret = snap_write_section(sw, SNAP_SEC_DEVICE, d->instance, w.buf, w.len, e);
		state_writer_free(&w);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static int write_snapshot(struct vm *vm, int fd, struct errbuf *e)
{
	struct snap_writer sw = {.fd = fd};
	struct state_writer cfg = {0};
	struct vm_section vs;
	int ret;
	put_config(vm, &cfg);
	if (cfg.err)
		return errf(e, cfg.err, "out of memory");
	if ((ret = snap_write_header(&sw, KVMINI_VERSION, e)) < 0 ||
	    (ret = snap_write_section(&sw, SNAP_SEC_CONFIG, 0, cfg.buf, cfg.len, e)) < 0)
		goto out;
	if ((ret = x86_vm_get_state(vm->vm_fd, &vs.chips, e)) < 0 ||
	    (ret = x86_vm_get_clock(vm->vm_fd, &vs.clock, e)) < 0 ||
	    (ret = snap_write_section(&sw, SNAP_SEC_VM, 0, &vs, sizeof(vs), e)) < 0 ||
	    (ret = write_vcpus(vm, &sw, e)) < 0 || (ret = write_devices(vm, &sw, e)) < 0 ||
	    (ret = snap_write_memory(&sw, vm->ram, vm->ram_size, vm->ram_anonymous, e)) < 0 ||
	    (ret = snap_write_end(&sw, e)) < 0)
		goto out;
out:
	state_writer_free(&cfg);
	return ret;
}

int vm_snapshot_save(struct vm *vm, const char *path, unsigned flags, struct errbuf *e)
{
	if (power_stop_requested(&vm->power))
		return errf(e, -ESHUTDOWN, "the VM is shutting down");
	bool was_paused = power_is_user_paused(&vm->power);
	if (vm_pause(vm) < 0)
		return errf(e, -ESHUTDOWN, "the VM is shutting down");

	/* Written beside the target and renamed over it: a clone that maps the old file
	 * keeps its memory, and a failed save leaves no half file under the name. */
	char tmp[4096];
	int ret;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		ret = errf(e, -ENAMETOOLONG, "snapshot path too long");
		goto out;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = errf(e, -errno, "cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	ret = write_snapshot(vm, fd, e);
	if (close(fd) < 0 && ret == 0)
		ret = errf(e, -errno, "cannot write %s: %s", tmp, strerror(errno));
	if (ret == 0 && rename(tmp, path) < 0)
		ret = errf(e, -errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
	if (ret < 0)
		unlink(tmp);
out:
	if (!was_paused && !(flags & SNAPSHOT_LEAVE_PAUSED))
		vm_resume(vm);
	return ret;
}

/* Opens and checks path against vm; on success the caller owns fd and f. */
static int open_checked(struct vm *vm, const char *path, int *fd, struct snap_file *f,
			struct errbuf *e)
{
	struct errbuf inner = {{0}};
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return errf(e, -errno, "cannot open snapshot %s: %s", path, strerror(errno));
	int ret = snap_file_read(f, *fd, &inner);
	if (ret == 0) {
		const struct snap_section *c = snap_file_find(f, SNAP_SEC_CONFIG, 0);
		ret = c ? check_config(vm, c, &inner) : errf(&inner, -EINVAL, "no config section");
		if (ret == 0 && !snap_file_find(f, SNAP_SEC_VM, 0))
			ret = errf(&inner, -EINVAL, "no vm section");
		for (unsigned i = 0; ret == 0 && i < vm->nvcpus; i++)
			if (!snap_file_find(f, SNAP_SEC_VCPU, i))
				ret = errf(&inner, -EINVAL, "no state for vCPU %u", i);
		if (ret == 0 && f->mem_size != vm->ram_size)
			ret = errf(&inner, -EINVAL, "memory section size differs from the config");
		if (ret < 0)
			snap_file_free(f);
	}
	if (ret < 0) {
		close(*fd);
		*fd = -1;
		return errf(e, ret, "snapshot %s: %s", path, inner.msg);
	}
	return 0;
}

int vm_snapshot_restore_check(struct vm *vm, const char *path, struct errbuf *e)
{
	int fd;
	struct snap_file f;
	int ret = open_checked(vm, path, &fd, &f, e);
	if (ret == 0) {
		snap_file_free(&f);
		close(fd);
	}
	return ret;
}

static const struct snap_section *find_device(const struct snap_file *f, const struct device *d,
					      const uint8_t **blob, size_t *len)
{
	size_t n = strlen(d->ops->name);
	for (unsigned i = 0; i < f->nsec; i++) {
		const struct snap_section *s = &f->sec[i];
		if (s->type != SNAP_SEC_DEVICE || s->instance != d->instance || s->len < 1 ||
		    s->data[0] != n || s->len < 1 + n || memcmp(s->data + 1, d->ops->name, n))
			continue;
		*blob = s->data + 1 + n;
		*len = s->len - 1 - n;
		return s;
	}
	return NULL;
}

/* Everything a restore needs, decoded from a checked file before the VM is touched. */
struct restore_plan {
	int fd;
	struct snap_file f;
	struct x86_vcpu_state *vs;
	struct x86_vcpu_extra *vx;
	unsigned decoded;
	struct vm_section vms;
};

static void restore_plan_free(struct restore_plan *p)
{
	for (unsigned i = 0; i < p->decoded; i++)
		x86_vcpu_extra_free(&p->vx[i]);
	free(p->vs);
	free(p->vx);
	snap_file_free(&p->f);
	close(p->fd);
}

/* Checks and decodes the whole file; changes nothing. */
static int restore_prepare(struct vm *vm, const char *path, struct restore_plan *p,
			   struct errbuf *e)
{
	memset(p, 0, sizeof(*p));
	int ret = open_checked(vm, path, &p->fd, &p->f, e);
	if (ret < 0)
		return ret;
	p->vs = calloc(vm->nvcpus, sizeof(*p->vs));
	p->vx = calloc(vm->nvcpus, sizeof(*p->vx));
	if (!p->vs || !p->vx) {
		ret = errf(e, -ENOMEM, "out of memory");
		goto fail;
	}
	const struct snap_section *s = snap_file_find(&p->f, SNAP_SEC_VM, 0);
	if (s->len != sizeof(p->vms)) {
		ret = errf(e, -EINVAL, "snapshot %s: the vm section is malformed", path);
		goto fail;
	}
	memcpy(&p->vms, s->data, sizeof(p->vms));
	uint32_t xsave_min = host_xsave_size(vm);
	for (; p->decoded < vm->nvcpus; p->decoded++) {
		s = snap_file_find(&p->f, SNAP_SEC_VCPU, p->decoded);
		if ((ret = get_vcpu(s, xsave_min, &p->vs[p->decoded], &p->vx[p->decoded])) < 0) {
			errf(e, ret, "snapshot %s: the state of vCPU %u is malformed", path,
			     p->decoded);
			goto fail;
		}
	}
	for (struct device *d = vm->devices.head; d; d = d->next) {
		const uint8_t *blob;
		size_t len;
		if (!find_device(&p->f, d, &blob, &len)) {
			ret = errf(e, -EINVAL, "snapshot %s: no state for device %s%u", path,
				   d->ops->name, d->instance);
			goto fail;
		}
		/* The blob's version (its first u32) must be the device's: load would refuse
		 * it, after the VM had changed. */
		uint32_t ver = len >= 4 ? (uint32_t)blob[0] | (uint32_t)blob[1] << 8 |
					      (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24
					: 0;
		if (len < 4 || ver != d->ops->version) {
			ret = errf(e, -EINVAL,
				   "snapshot %s: device %s%u has state version %u, this kvmini "
				   "reads version %u",
				   path, d->ops->name, d->instance, ver, d->ops->version);
			goto fail;
		}
	}
	return 0;
fail:
	restore_plan_free(p);
	return ret;
}

/* Puts the plan into the VM, every vCPU parked (or not yet run). live: the VM has run in
 * this process, so its devices go back to power-on state first, as a fresh VM's are
 * (workers stopped, lines down). *changed tells whether the VM was touched. */
static int restore_apply(struct vm *vm, const char *path, struct restore_plan *p, bool live,
			 bool *changed, struct errbuf *e)
{
	int ret;
	*changed = true;
	if (live)
		device_list_reset(&vm->devices);
	/* Memory first: copy-on-write from the file, read only when the guest touches it. The
	 * mapping replaces the RAM at its address, so the KVM slots and every pointer into RAM
	 * stay valid (KVM drops its old translations through its MMU notifier). */
	void *m = mmap(vm->ram, vm->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
		       p->fd, (off_t)p->f.mem_offset);
	if (m == MAP_FAILED) {
		if (!live)
			*changed = false;
		return errf(e, -errno, "cannot map the memory of snapshot %s: %s", path,
			    strerror(errno));
	}
	vm->ram_anonymous = false; /* untouched pages now read from the file */
	madvise(vm->ram, vm->ram_size, MADV_DONTDUMP);
	if (vm->cfg->ksm)
		madvise(vm->ram, vm->ram_size, MADV_MERGEABLE);
	for (struct device *d = vm->devices.head; d; d = d->next) {
		const uint8_t *blob;
		size_t len;
		find_device(&p->f, d, &blob, &len);
		if ((ret = device_load(d, blob, len)) < 0)
			return errf(e, ret, "snapshot %s: the state of device %s%u is malformed",
				    path, d->ops->name, d->instance);
	}
	if ((ret = x86_vm_put_state(vm->vm_fd, &p->vms.chips, e)) < 0 ||
	    (ret = x86_vm_put_clock(vm->vm_fd, &p->vms.clock, e)) < 0)
		return ret;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		int vfd = vm->vcpus[i].fd;
		if ((ret = x86_vcpu_put_state(vfd, &p->vs[i], e)) < 0 ||
		    (ret = x86_vcpu_put_extra(vfd, &p->vx[i], e)) < 0)
			return ret;
	}
	/* The IOAPIC and local APICs now hold the snapshot's state, which knows nothing of a
	 * level raised since (a UART's pending interrupt, a virtio ISR, vmgenid's new
	 * generation on the SCI): every device drives its lines again, now that a delivery
	 * lands in the restored local APIC. */
	device_list_sync_irqs(&vm->devices);
	/* A cont after a pause holds kvmclock at the value it had when paused: that is now
	 * the snapshot's. */
	vm->paused_clock = p->vms.clock;
	vm->paused_clock_valid = true;
	log_info("restored snapshot %s (written by kvmini %s)", path, p->f.version);
	return 0;
}

int vm_snapshot_restore(struct vm *vm, const char *path, struct errbuf *e)
{
	struct restore_plan p;
	bool changed;
	int ret = restore_prepare(vm, path, &p, e);
	if (ret < 0)
		return ret;
	ret = restore_apply(vm, path, &p, false, &changed, e);
	restore_plan_free(&p);
	return ret;
}

int vm_snapshot_load(struct vm *vm, const char *path, unsigned flags, struct errbuf *e)
{
	struct restore_plan p;
	bool changed = false;
	/* Read and checked while the VM runs on: a bad file costs it nothing. */
	int ret = restore_prepare(vm, path, &p, e);
	if (ret < 0)
		return ret;
	if (power_stop_requested(&vm->power)) {
		restore_plan_free(&p);
		return errf(e, -ESHUTDOWN, "the VM is shutting down");
	}
	bool was_paused = power_is_user_paused(&vm->power);
	if (vm_pause(vm) < 0) {
		restore_plan_free(&p);
		return errf(e, -ESHUTDOWN, "the VM is shutting down");
	}
	ret = restore_apply(vm, path, &p, true, &changed, e);
	restore_plan_free(&p);
	if (ret < 0 && changed) {
		/* Half loaded: running it would run garbage. It stays paused, as QEMU's does. */
		size_t n = strlen(e->msg);
		snprintf(e->msg + n, sizeof(e->msg) - n,
			 "; the VM was partly loaded and stays paused");
		return ret;
	}
	if (!was_paused && !(flags & SNAPSHOT_LEAVE_PAUSED))
		vm_resume(vm);
	return ret;
}

int vm_snapshot_info(const char *path, struct snapshot_info *info, struct errbuf *e)
{
	memset(info, 0, sizeof(*info));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errf(e, -errno, "cannot open snapshot %s: %s", path, strerror(errno));
	struct snap_file f;
	struct errbuf inner = {{0}};
	int ret = snap_file_read(&f, fd, &inner);
	close(fd);
	if (ret < 0)
		return errf(e, ret, "snapshot %s: %s", path, inner.msg);
	const struct snap_section *s = snap_file_find(&f, SNAP_SEC_VM, 0);
	if (!s || s->len != sizeof(struct vm_section)) {
		snap_file_free(&f);
		return errf(e, -EINVAL, "snapshot %s: no valid vm section", path);
	}
	struct vm_section vms;
	memcpy(&vms, s->data, sizeof(vms));
	info->vm_clock_ns = vms.clock.clock;
	info->mem_size = f.mem_size;
	snprintf(info->version, sizeof(info->version), "%s", f.version);
	snap_file_free(&f);
	return 0;
}
