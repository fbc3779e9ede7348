/* The host's /dev/kvm: open it, check the API version and the capabilities kvmini needs. */
#ifndef KVMINI_VMM_KVM_H
#define KVMINI_VMM_KVM_H

#include <stdbool.h>
#include <stdio.h>

#include "util/err.h"

struct kvm_host {
	int fd;
	int api_version;
	int vcpu_mmap_size;
	bool ring0_emulated; /* PVM: guest ring 0 emulated, ring 3 native */
};

struct kvm_cap_desc {
	int cap;
	const char *name;
	bool required; /* false: used by later features or only when available */
};
extern const struct kvm_cap_desc kvm_caps[];
extern const unsigned kvm_caps_count;

/* Path of the KVM device: /dev/kvm, or $KVMINI_KVM_DEVICE (for tests of a missing device). */
const char *kvm_device_path(void);
/* Opens the device and checks the API version and every required capability; the error
 * names what is missing. */
int kvm_host_open(struct kvm_host *h, struct errbuf *e);
void kvm_host_close(struct kvm_host *h);
/* `kvmini info`: prints the API version, each capability and the host's kind. */
int kvm_host_print_info(FILE *out);

#endif
