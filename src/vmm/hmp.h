/* The human monitor's commands (QEMU's HMP subset): one table that both the mon:stdio
 * monitor (vmm/console.c) and QMP's human-monitor-command (vmm/qmp.c) run. A command's
 * reply is text with "\n" line ends, collected in a bounded buffer. */
#ifndef KVMINI_VMM_HMP_H
#define KVMINI_VMM_HMP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/control.h"
#include "core/power.h"
#include "vmm/vcpu.h"

#define HMP_OUT_MAX 16384

struct hmp_env {
	const struct vm_control *control; /* may be NULL: no VM operations */
	struct vm_power *power;		  /* quit's fallback when control has no quit */
	struct vcpu *vcpus;		  /* info cpus / info registers; may be NULL */
	unsigned nvcpus;
};

struct hmp_out {
	char buf[HMP_OUT_MAX];
	size_t len;
};

/* Runs one command line; its reply is appended to out (cut at HMP_OUT_MAX). */
void hmp_run(const struct hmp_env *env, const char *line, struct hmp_out *out);

#endif
