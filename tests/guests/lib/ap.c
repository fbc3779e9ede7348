#include "ap.h"

#include "apic.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "kstring.h"

struct tramp_params {
	uint32_t cr3;
	uint32_t efer;
	uint64_t stack;
	uint64_t entry;
};

extern const char ap_trampoline[], ap_trampoline_end[], ap_trampoline_params[];

static uint8_t ap_stacks[AP_MAX_APIC_ID + 1][AP_STACK_SIZE] __attribute__((aligned(16)));
static volatile ap_fn_t ap_fns[AP_MAX_APIC_ID + 1];
static volatile uint32_t ap_checkin = 0xffffffff; /* APIC ID of the last AP in C */
static bool trampoline_copied;

void ap_entry(void);
void ap_entry(void)
{
	cpu_init_ap();
	lapic_enable();
	uint32_t id = lapic_id();
	ap_fn_t fn = id <= AP_MAX_APIC_ID ? ap_fns[id] : 0;
	atomic_write32(&ap_checkin, id);
	if (fn)
		fn(id);
	halt_forever();
}

int ap_start(unsigned apic_id, ap_fn_t fn, uint64_t timeout_cycles)
{
	if (apic_id == 0 || apic_id > AP_MAX_APIC_ID)
		return -2;
	uint8_t *tramp = phys(AP_TRAMPOLINE_ADDR);
	if (!trampoline_copied) {
		memcpy(tramp, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
		trampoline_copied = true;
	}
	struct tramp_params *p = (void *)(tramp + (ap_trampoline_params - ap_trampoline));
	p->cr3 = (uint32_t)read_cr3();
	p->efer = (uint32_t)((rdmsr(MSR_EFER) & EFER_NXE) | EFER_LME);
	p->stack = (uint64_t)(uintptr_t)(ap_stacks[apic_id] + AP_STACK_SIZE);
	p->entry = (uint64_t)(uintptr_t)ap_entry;
	ap_fns[apic_id] = fn;
	atomic_write32(&ap_checkin, 0xffffffff);

	if (!lapic_send_ipi(apic_id, ICR_INIT))
		return -3;
	tsc_delay(10000); /* a few microseconds: the spec's 10 ms is for real hardware */
	uint64_t start = rdtsc();
	for (int sipi = 0; sipi < 2; sipi++) {
		if (!lapic_send_ipi(apic_id, ICR_STARTUP | (AP_TRAMPOLINE_ADDR >> 12)))
			return -3;
		/* The spec sends STARTUP twice; KVM ignores the second once the AP runs. Wait
		 * a little (an emulated real-mode start takes a while) before repeating. */
		uint64_t wait = sipi == 0 ? timeout_cycles / 8 : timeout_cycles;
		uint64_t t0 = rdtsc();
		while (rdtsc() - t0 < wait) {
			if (atomic_read32(&ap_checkin) == apic_id)
				return 0;
			if (rdtsc() - start > timeout_cycles)
				return -1;
			cpu_relax();
		}
	}
	return atomic_read32(&ap_checkin) == apic_id ? 0 : -1;
}
