#include "vmm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

const struct kvm_cap_desc kvm_caps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", true},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", true},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2", true},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", true},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", true},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", true},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR", false},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", false},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD", false},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", false},
    {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", false},
    {KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS", false},
};
const unsigned kvm_caps_count = sizeof(kvm_caps) / sizeof(kvm_caps[0]);

const char *kvm_device_path(void)
{
	const char *p = getenv("KVMINI_KVM_DEVICE");
	return p && *p ? p : "/dev/kvm";
}

static bool host_emulates_ring0(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0;
}

int kvm_host_open(struct kvm_host *h, struct errbuf *e)
{
	const char *path = kvm_device_path();
	memset(h, 0, sizeof(*h));
	h->fd = open(path, O_RDWR | O_CLOEXEC);
	if (h->fd < 0) {
		int err = errno;
		const char *hint = err == ENOENT   ? " (is KVM enabled in this kernel/BIOS?)"
				   : err == EACCES ? " (add yourself to the 'kvm' group)"
						   : "";
		return errf(e, -err, "cannot open %s: %s%s", path, strerror(err), hint);
	}
	h->api_version = ioctl(h->fd, KVM_GET_API_VERSION, 0);
	if (h->api_version != KVM_API_VERSION) {
		int v = h->api_version;
		kvm_host_close(h);
		return errf(e, -ENOTSUP, "%s: KVM API version %d, kvmini needs %d", path, v,
			    KVM_API_VERSION);
	}
	for (unsigned i = 0; i < kvm_caps_count; i++) {
		if (kvm_caps[i].required &&
		    ioctl(h->fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap) <= 0) {
			kvm_host_close(h);
			return errf(e, -ENOTSUP, "%s lacks %s, which kvmini needs", path,
				    kvm_caps[i].name);
		}
	}
	h->vcpu_mmap_size = ioctl(h->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (h->vcpu_mmap_size < (int)sizeof(struct kvm_run)) {
		kvm_host_close(h);
		return errf(e, -ENOTSUP, "%s: bad KVM_GET_VCPU_MMAP_SIZE", path);
	}
	h->ring0_emulated = host_emulates_ring0();
	return 0;
}

void kvm_host_close(struct kvm_host *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}

int kvm_host_print_info(FILE *out)
{
	struct kvm_host h;
	struct errbuf e;
	int ret = kvm_host_open(&h, &e);
	if (ret < 0 && h.fd < 0 && ret != -ENOTSUP) {
		fprintf(out, "KVM device:      %s: unavailable\n", kvm_device_path());
		fprintf(stderr, "kvmini: %s\n", e.msg);
		return ret;
	}
	/* Even when a required capability is missing, list them all. */
	int fd = h.fd >= 0 ? h.fd : open(kvm_device_path(), O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "kvmini: %s\n", e.msg);
		return ret;
	}
	fprintf(out, "KVM device:      %s\n", kvm_device_path());
	fprintf(out, "KVM API version: %d (kvmini needs %d)\n", ioctl(fd, KVM_GET_API_VERSION, 0),
		KVM_API_VERSION);
	int nr = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	int max = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	fprintf(out, "vCPUs:           %d recommended, %d maximum\n", nr, max);
	fprintf(out, "Capabilities:\n");
	for (unsigned i = 0; i < kvm_caps_count; i++) {
		int v = ioctl(fd, KVM_CHECK_EXTENSION, kvm_caps[i].cap);
		fprintf(out, "  %-32s %-8s %s\n", kvm_caps[i].name, v > 0 ? "present" : "MISSING",
			kvm_caps[i].required ? "(required)" : "(optional)");
	}
	bool pvm = host_emulates_ring0();
	fprintf(out, "Host kind:       %s\n",
		pvm ? "PVM (kvm_pvm): guest ring 0 is emulated (~1000x slower), ring 3 native; "
		      "CPUID not virtualized"
		    : "hardware-assisted (guest ring 0 runs natively)");
	if (fd != h.fd)
		close(fd);
	else
		kvm_host_close(&h);
	if (ret < 0)
		fprintf(stderr, "kvmini: %s\n", e.msg);
	return ret;
}
