/* Loading a kernel into guest memory per the Linux x86 boot protocol
 * (Documentation/arch/x86/boot.rst) or Xen's PVH entry, and describing how to enter it.
 * Pure guest-memory work: no /dev/kvm here, so unit tests run it on fake memory. */
#ifndef KVMINI_ARCH_X86_BOOT_H
#define KVMINI_ARCH_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

#include <asm/bootparam.h>

#include "config.h"
#include "util/err.h"
#include "core/guest_mem.h"

enum x86_entry_mode {
	X86_ENTRY_LINUX64, /* 64-bit mode, paging on, RSI = boot_params */
	X86_ENTRY_PVH32,   /* 32-bit protected mode, paging off, EBX = hvm_start_info */
};

/* What x86_boot_load reads. Everything pointed to must stay valid for as long as the VM may
 * be reset: a reset calls x86_boot_load again with the same args and gets the same result
 * (the kernel image is only read, the initrd is read again from its fd with pread). */
struct x86_boot_args {
	const uint8_t *kernel; /* the whole image, e.g. a read-only mapping of the file */
	size_t kernel_size;
	const char *kernel_name; /* for messages */
	/* The initrd (none if initrd_size is 0): copied from initrd if that is set, else read
	 * from initrd_fd with pread straight into guest RAM at its final address. */
	const uint8_t *initrd;
	int initrd_fd;
	uint64_t initrd_size;
	const char *cmdline;
	enum boot_decompress decompress;
	unsigned ncpus;
};

struct x86_boot_setup {
	enum x86_entry_mode mode;
	uint64_t entry;			   /* RIP (EIP for PVH) */
	uint64_t boot_params;		   /* RSI for X86_ENTRY_LINUX64 */
	uint64_t start_info;		   /* EBX for X86_ENTRY_PVH32 */
	uint64_t kernel_start, kernel_end; /* guest-physical range the kernel may use */
	uint64_t initrd_addr, initrd_size;
	char description[160]; /* "bzImage, payload lz4, decompressed on the host (58 MiB ELF)" */
};

/* Loads the kernel, command line, initrd, boot_params (or hvm_start_info), e820, MP and
 * ACPI tables, identity page tables and GDT. Returns 0 or -errno with e saying what is wrong
 * with which input. */
int x86_boot_load(const struct guest_mem *mem, const struct x86_boot_args *args,
		  struct x86_boot_setup *out, struct errbuf *e);

/* The e820 map for this memory: RAM below 640 KiB, the BIOS area reserved, RAM from 1 MiB,
 * the PCI ECAM window reserved, RAM above 4 GiB. Returns the number of entries written (<= max). */
unsigned x86_build_e820(const struct guest_mem *mem, struct boot_e820_entry *out, unsigned max);

/* Places an initrd of size bytes: page aligned, as high as possible below min(max_addr,
 * end of RAM below 4 GiB), and not below min_addr. Returns 0 or -ENOSPC. */
int x86_place_initrd(const struct guest_mem *mem, uint64_t size, uint64_t min_addr,
		     uint64_t max_addr, uint64_t *addr);

#endif
