/* Atomics and a spinlock, on the plain locked instructions (xchg, lock xadd, lock inc) that
 * every x86 emulator handles; never cmpxchg16b. */
#ifndef KIT_ATOMIC_H
#define KIT_ATOMIC_H

#include <stdint.h>

#include "io.h"

/* lock xadd: returns the old value. */
static inline uint32_t atomic_fetch_add32(volatile uint32_t *p, uint32_t v)
{
	__asm__ volatile("lock xaddl %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

/* lock incl. */
static inline void atomic_inc32(volatile uint32_t *p)
{
	__asm__ volatile("lock incl %0" : "+m"(*p) : : "memory");
}

static inline uint32_t atomic_read32(const volatile uint32_t *p)
{
	return *p;
}

static inline void atomic_write32(volatile uint32_t *p, uint32_t v)
{
	__asm__ volatile("movl %1, %0" : "=m"(*p) : "r"(v) : "memory");
}

struct spinlock {
	volatile uint32_t locked;
};

/* xchg (implicitly locked). */
static inline void spin_lock(struct spinlock *l)
{
	for (;;) {
		uint32_t v = 1;
		__asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(l->locked) : : "memory");
		if (v == 0)
			return;
		while (l->locked)
			cpu_relax();
	}
}

static inline void spin_unlock(struct spinlock *l)
{
	atomic_write32(&l->locked, 0);
}

/* Saves RFLAGS.IF and disables interrupts, then takes the lock. Only in ring 0: on a PVM
 * host ring 3 runs natively with the host's flags (PUSHF shows IF 1, IOPL 0, whatever the
 * guest's IRET set), so CLI there raises #GP; ring-3 code runs with interrupts off anyway. */
static inline uint64_t spin_lock_irqsave(struct spinlock *l)
{
	uint64_t flags = 0;
	if (cpl() == 0) {
		flags = read_rflags();
		if (flags & RFLAGS_IF)
			cli();
	}
	spin_lock(l);
	return flags;
}

static inline void spin_unlock_irqrestore(struct spinlock *l, uint64_t flags)
{
	spin_unlock(l);
	if (flags & RFLAGS_IF)
		sti();
}

#endif
