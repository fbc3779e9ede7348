#include "cpu.h"

#include "apic.h"
#include "console.h"
#include "io.h"
#include "kit.h"
#include "kstring.h"

struct tss {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

struct idt_entry {
	uint16_t offset0;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset1;
	uint32_t offset2;
	uint32_t reserved;
} __attribute__((packed));

struct dtr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

static uint64_t gdt[8] __attribute__((aligned(16))) = {
    0,
    0,
    0x00af9b000000ffffull, /* 0x10 kernel code: 64-bit, DPL 0 */
    0x00cf93000000ffffull, /* 0x18 kernel data */
    0x00cff3000000ffffull, /* 0x20 user data: DPL 3 */
    0x00affb000000ffffull, /* 0x28 user code: 64-bit, DPL 3 */
    0,			   /* 0x30 TSS, filled in by cpu_init_bsp */
    0,
};

static struct tss tss __attribute__((aligned(16)));
static struct idt_entry idt[256] __attribute__((aligned(16)));
static intr_handler_t handlers[256];

extern char isr_stubs[]; /* isr.S: 256 stubs, 16 bytes apart */

static void load_gdt(void)
{
	struct dtr d = {.limit = sizeof(gdt) - 1, .base = (uint64_t)(uintptr_t)gdt};
	__asm__ volatile("lgdt %0\n\t"
			 "pushq $0x10\n\t"
			 "leaq 1f(%%rip), %%rax\n\t"
			 "pushq %%rax\n\t"
			 "lretq\n"
			 "1:\n\t"
			 "movl $0x18, %%eax\n\t"
			 "movl %%eax, %%ds\n\t"
			 "movl %%eax, %%es\n\t"
			 "movl %%eax, %%ss\n\t"
			 "movl %%eax, %%fs\n\t"
			 "movl %%eax, %%gs\n\t"
			 :
			 : "m"(d)
			 : "rax", "memory");
}

static void load_idt(void)
{
	struct dtr d = {.limit = sizeof(idt) - 1, .base = (uint64_t)(uintptr_t)idt};
	__asm__ volatile("lidt %0" : : "m"(d) : "memory");
}

static void set_gate(unsigned vec, uint64_t addr, unsigned dpl)
{
	struct idt_entry *e = &idt[vec & 0xff];
	e->offset0 = (uint16_t)addr;
	e->selector = SEL_KCODE;
	e->ist = 0;
	e->type_attr = (uint8_t)(0x8e | ((dpl & 3) << 5)); /* present 64-bit interrupt gate */
	e->offset1 = (uint16_t)(addr >> 16);
	e->offset2 = (uint32_t)(addr >> 32);
	e->reserved = 0;
}

void cpu_init_bsp(void)
{
	uint64_t base = (uint64_t)(uintptr_t)&tss;
	uint64_t limit = sizeof(tss) - 1;
	tss.iomap_base = sizeof(tss); /* no I/O bitmap: IOPL alone decides */
	gdt[6] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
		 (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[7] = base >> 32;
	load_gdt();
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));

	for (unsigned v = 0; v < 256; v++)
		set_gate(v, (uint64_t)(uintptr_t)isr_stubs + 16 * v, 0);
	load_idt();
}

void cpu_init_ap(void)
{
	load_gdt();
	load_idt();
}

void idt_set_handler(unsigned vec, intr_handler_t fn)
{
	handlers[vec & 0xff] = fn;
}

void idt_set_entry(unsigned vec, void (*entry)(void), unsigned dpl)
{
	set_gate(vec, (uint64_t)(uintptr_t)entry, dpl);
}

void idt_load_empty(void)
{
	struct dtr d = {.limit = 0, .base = 0};
	__asm__ volatile("lidt %0" : : "m"(d) : "memory");
}

void cpu_set_rsp0(uint64_t rsp0)
{
	tss.rsp[0] = rsp0;
}

const char *exception_name(unsigned vec)
{
	static const char *const names[32] = {
	    "#DE divide error",
	    "#DB debug",
	    "NMI",
	    "#BP breakpoint",
	    "#OF overflow",
	    "#BR bound range",
	    "#UD invalid opcode",
	    "#NM device not available",
	    "#DF double fault",
	    "coprocessor segment overrun",
	    "#TS invalid TSS",
	    "#NP segment not present",
	    "#SS stack fault",
	    "#GP general protection",
	    "#PF page fault",
	    "reserved 15",
	    "#MF x87 error",
	    "#AC alignment check",
	    "#MC machine check",
	    "#XM SIMD error",
	    "#VE virtualization",
	    "#CP control protection",
	    "reserved 22",
	    "reserved 23",
	    "reserved 24",
	    "reserved 25",
	    "reserved 26",
	    "reserved 27",
	    "#HV hypervisor injection",
	    "#VC VMM communication",
	    "#SX security",
	    "reserved 31",
	};
	return vec < 32 ? names[vec] : "interrupt";
}

void intr_report_and_exit(struct intr_frame *f)
{
	unsigned v = (unsigned)(f->vector & 0xff);
	if (v < 32)
		printf_unlocked("EXCEPTION %u at 0x%lx err 0x%lx\n", v, f->rip, f->error);
	else
		printf_unlocked("INTERRUPT %u unexpected at 0x%lx\n", v, f->rip);
	printf_unlocked("  %s: cpu %u cpl %lu rsp 0x%lx rflags 0x%lx", exception_name(v),
			lapic_id(), f->cs & 3, f->rsp, f->rflags);
	if (v == 14)
		printf_unlocked(" cr2 0x%lx", read_cr2());
	printf_unlocked("\n");
	debug_exit(KIT_EXIT_EXCEPTION);
}

/* Called by isr_common (isr.S) with interrupts off. */
void intr_dispatch(struct intr_frame *f);
void intr_dispatch(struct intr_frame *f)
{
	unsigned v = (unsigned)(f->vector & 0xff);
	if (handlers[v]) {
		handlers[v](f);
		return;
	}
	if (v == LAPIC_SPURIOUS_VECTOR)
		return;
	intr_report_and_exit(f);
}
