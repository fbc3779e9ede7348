/* Where kvmini puts things in guest-physical memory on x86. One place, so loaders, tests
 * and docs agree. Everything here is below 1 MiB except the kernel and the initrd. */
#ifndef KVMINI_ARCH_X86_LAYOUT_H
#define KVMINI_ARCH_X86_LAYOUT_H

#define X86_GDT_ADDR	   0x500ull
#define X86_PVH_INFO_ADDR  0x6000ull /* hvm_start_info, module list, memory map */
#define X86_ZERO_PAGE_ADDR 0x7000ull /* struct boot_params */
#define X86_BOOT_STACK_TOP 0x8ff0ull /* initial RSP; the guest should set its own */
#define X86_PML4_ADDR	   0x9000ull
#define X86_PDPT_ADDR	   0xa000ull
#define X86_PD_ADDR	   0xb000ull /* 4 page directories: identity map of 4 GiB */
#define X86_CMDLINE_ADDR   0x20000ull
#define X86_CMDLINE_MAX	   0x10000ull
#define X86_EBDA_START	   0xa0000ull /* [0xa0000, 1 MiB) is not RAM in e820 */
#define X86_HIMEM_START	   0x100000ull
#define X86_BZIMAGE_LOAD   0x100000ull /* protected-mode kernel of a bzImage */

/* The 32-bit hole: RAM above 3 GiB moves to 4 GiB and up, leaving room for the LAPIC,
 * IOAPIC and the MMIO devices of later versions. */
#define X86_MMIO_HOLE_START 0xc0000000ull
#define X86_MMIO_HOLE_END   0x100000000ull
/* KVM_SET_TSS_ADDR needs three pages and KVM_SET_IDENTITY_MAP_ADDR one, in the hole, clear
 * of the IOAPIC and LAPIC pages and of RAM (the places QEMU and kvmtool use). */
#define X86_KVM_TSS_ADDR   0xfffbd000ull
#define X86_KVM_IDMAP_ADDR 0xfffbc000ull

/* virtio-mmio devices: 4 KiB each at 0xfe000000 + 4 KiB * n, below the IOAPIC. */
#define X86_VIRTIO_MMIO_BASE 0xfe000000ull
#define X86_VIRTIO_MMIO_SIZE 0x1000ull
#define X86_VIRTIO_MMIO_MAX  32u

#define X86_GDT_CODE_SEL 0x10 /* __BOOT_CS of the Linux boot protocol */
#define X86_GDT_DATA_SEL 0x18 /* __BOOT_DS */
#define X86_GDT_TSS_SEL	 0x20

#endif
