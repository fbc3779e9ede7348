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

/* The boot page tables identity-map [0, 4 GiB) with 2 MiB pages; a 64-bit kernel's entry
 * point must lie below this, since that is all it can reach before it sets up its own. */
#define X86_IDENTITY_MAP_END 0x100000000ull

/* PCI (src/devices/pci.c): 32-bit memory BARs are placed by kvmini in
 * [X86_PCI_MMIO32_START, X86_PCI_MMIO32_END), where Linux keeps them; the ECAM window of bus 0
 * (1 MiB: 32 devices x 8 functions x 4 KiB) follows, reserved in e820 and announced in the
 * ACPI MCFG table. 64-bit BARs, if a device has one, go above the top of RAM and 4 GiB
 * (X86_PCI_MMIO64_ALIGN-aligned). */
#define X86_PCI_MMIO32_START 0xc0000000ull
#define X86_PCI_MMIO32_END   0xe0000000ull
#define X86_PCI_ECAM_BASE    0xe0000000ull
#define X86_PCI_ECAM_SIZE    0x100000ull /* bus 0 only */
#define X86_PCI_ECAM_BUSES   1
#define X86_PCI_MMIO64_ALIGN (1ull << 30)
/* virtio-mmio devices: 4 KiB each at X86_VIRTIO_MMIO_BASE + n * X86_VIRTIO_MMIO_STRIDE. */
#define X86_VIRTIO_MMIO_BASE   0xfe000000ull
#define X86_VIRTIO_MMIO_STRIDE 0x1000ull
#define X86_VIRTIO_MMIO_MAX    32
/* The IOAPIC at 0xfec00000 and the LAPIC at 0xfee00000 stay where a PC has them. */

#define X86_GDT_CODE_SEL 0x10 /* __BOOT_CS of the Linux boot protocol */
#define X86_GDT_DATA_SEL 0x18 /* __BOOT_DS */
#define X86_GDT_TSS_SEL	 0x20

#endif
