/* The guest's own GDT (kernel and user segments, a TSS), the IDT with one stub per vector,
 * interrupt dispatch to C handlers, and ring 3.
 *
 * GDT: 0x10 kernel code (64-bit, as the Linux boot GDT), 0x18 kernel data, 0x20 user data,
 * 0x28 user code (64-bit), 0x30 the BSP's TSS (RSP0 for ring-3 interrupts). The IDT sends
 * every vector to intr_dispatch(); a vector without a handler is reported as
 * "EXCEPTION <vec> at <rip> err <code>" (or "INTERRUPT <vec> unexpected at <rip>") and the
 * guest debug-exits with KIT_EXIT_EXCEPTION (0x7f). Vector 0xff (LAPIC spurious) is ignored. */
#ifndef KIT_CPU_H
#define KIT_CPU_H

#include <stdbool.h>
#include <stdint.h>

#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UDATA 0x23 /* 0x20 | RPL 3 */
#define SEL_UCODE 0x2b /* 0x28 | RPL 3 */
#define SEL_TSS	  0x30

#define LAPIC_SPURIOUS_VECTOR 0xff

/* What the stubs push, lowest address first. */
struct intr_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error; /* error is 0 for vectors without an error code */
	uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*intr_handler_t)(struct intr_frame *f);

/* BSP: loads the GDT (reloading every segment register), the TSS and the IDT. */
void cpu_init_bsp(void);
/* AP: loads the same GDT and IDT (no TSS: APs stay in ring 0). */
void cpu_init_ap(void);
/* Routes vector vec to fn (NULL: back to the reporter). Handlers run with interrupts off. */
void idt_set_handler(unsigned vec, intr_handler_t fn);
/* Points vector vec straight at an assembly entry, with the given gate DPL (0 or 3). */
void idt_set_entry(unsigned vec, void (*entry)(void), unsigned dpl);
/* Loads an IDT with limit 0: any exception after this triple-faults. */
void idt_load_empty(void);
/* The TSS's RSP0: the stack interrupts from ring 3 land on. */
void cpu_set_rsp0(uint64_t rsp0);
/* "#GP general protection" etc. for vectors 0-31, "interrupt" above. */
const char *exception_name(unsigned vec);
/* What happens to a vector without a handler: prints "EXCEPTION <vec> at <rip> err <code>"
 * (or "INTERRUPT <vec> unexpected at <rip>") and a line of detail, then debug-exits 0x7f.
 * Handlers that only deal with some cases call it for the rest. */
__attribute__((noreturn)) void intr_report_and_exit(struct intr_frame *f);

/* Ring 3. user_init() builds page tables identity-mapping the first 4 GiB with 2 MiB pages
 * and the U bit set (3-4 GiB uncached), loads them into CR3, sets TSS.RSP0 to a dedicated
 * ring-0 stack, and installs its #UD entry (ring 3 ends a user_call with a ud2 at a known
 * address: on PVM hosts `int $n` from ring 3 raises #UD, only exceptions are reliable) and
 * a #GP handler that performs port I/O (in/out) for ring 3. Idempotent; BSP only.
 * user_call() runs fn(arg) in ring 3 (CS 0x2b, SS 0x23, RFLAGS.IOPL 3, IF as the caller had
 * it) on a 64 KiB user stack, and returns fn's result in ring 0 once fn returns. fn may also
 * never return (e.g. call poweroff()). Not reentrant.
 * Port I/O from ring 3 works in two ways: natively through IOPL 3 where the hypervisor
 * honours it, and otherwise (PVM hosts run guest ring 3 natively with IOPL 0, so `out`
 * raises #GP) by the #GP handler, which decodes in/out at the faulting RIP, does the access
 * in ring 0 and steps over the instruction. CLI/STI/HLT are not emulated: do not use them
 * in ring 3 (the console lock does not). */
void user_init(void);
uint64_t user_call(uint64_t (*fn)(uint64_t arg), uint64_t arg);
/* Makes [addr, addr + len) above 4 GiB reachable (e.g. a 64-bit BAR placed high): adds
 * uncached, U-bit 1 GiB windows of 2 MiB pages to the user_init page tables (up to 8
 * windows, below 512 GiB). Below 4 GiB it does nothing (already mapped). In ring 0 it calls
 * user_init first (so ring 0 switches to the kit's tables); ring 3 may call it too. False
 * if the range cannot be mapped. */
bool kit_map_mmio(uint64_t addr, uint64_t len);
/* How many ring-3 in/out instructions the #GP handler has performed so far (0 where the
 * host honours IOPL 3). */
uint64_t user_io_emulated(void);

#endif
