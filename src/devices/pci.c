#include "devices/pci.h"

#include <errno.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "devices/legacy.h"
#include "util/log.h"

#define PCI_HOST_VENDOR 0x8086
#define PCI_HOST_DEVICE 0x29c0 /* the Q35 (ICH9-era) DRAM controller / host bridge */
#define PCI_CLASS_HOST	0x060000

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void pci_function_init(struct pci_function *f, uint16_t vendor, uint16_t device,
		       uint32_t class_code, uint8_t revision, uint16_t subsys_vendor,
		       uint16_t subsys_id)
{
	memset(f, 0, sizeof(*f));
	put16(f->cfg + PCI_REG_VENDOR_ID, vendor);
	put16(f->cfg + PCI_REG_DEVICE_ID, device);
	f->cfg[PCI_REG_REVISION] = revision;
	f->cfg[PCI_REG_CLASS_PROG] = (uint8_t)class_code;
	f->cfg[PCI_REG_CLASS_PROG + 1] = (uint8_t)(class_code >> 8);
	f->cfg[PCI_REG_CLASS_PROG + 2] = (uint8_t)(class_code >> 16);
	f->cfg[PCI_REG_HEADER_TYPE] = 0;
	put16(f->cfg + PCI_REG_SUBSYS_VENDOR, subsys_vendor);
	put16(f->cfg + PCI_REG_SUBSYS_ID, subsys_id);
	/* Command: I/O, memory, bus master, INTx disable; the rest reads as 0. */
	put16(f->wmask + PCI_REG_COMMAND,
	      PCI_CMD_IO | PCI_CMD_MEMORY | PCI_CMD_MASTER | PCI_CMD_INTX_DISABLE);
	f->wmask[PCI_REG_INTERRUPT_LINE] = 0xff;
	f->wmask[0x0c] = 0xff; /* cache line size: scratch, as on real devices */
	f->wmask[0x0d] = 0xff; /* latency timer */
	f->cap_end = 0x40;
}

int pci_function_set_bar(struct pci_function *f, unsigned n, uint64_t size, bool is_64,
			 bus_handler_fn fn, void *opaque, const char *name)
{
	if (n >= PCI_MAX_BARS || (is_64 && n + 1 >= PCI_MAX_BARS) || size < 16 ||
	    (size & (size - 1)) || (!is_64 && size > (1ull << 31)))
		return -EINVAL;
	struct pci_bar *b = &f->bars[n];
	*b = (struct pci_bar){
	    .size = size, .is_64 = is_64, .fn = fn, .opaque = opaque, .name = name};
	uint32_t flags = is_64 ? PCI_BAR_MEM_64 : 0;
	put32(f->cfg + PCI_REG_BAR0 + 4 * n, flags);
	/* The address bits above the size are writable; the low bits read back 0, which is
	 * how the guest's all-ones write reads back the size mask. */
	put32(f->wmask + PCI_REG_BAR0 + 4 * n, (uint32_t) ~(size - 1) & ~0xfu);
	if (is_64)
		put32(f->wmask + PCI_REG_BAR0 + 4 * (n + 1), (uint32_t)(~(size - 1) >> 32));
	return 0;
}

int pci_function_add_cap(struct pci_function *f, const void *data, uint32_t len,
			 const void *wmask_bytes)
{
	uint32_t at = (f->cap_end + 3) & ~3u;
	if (len < 2 || at + len > 256)
		return -ENOSPC;
	memcpy(f->cfg + at, data, len);
	if (wmask_bytes)
		memcpy(f->wmask + at, wmask_bytes, len);
	f->wmask[at] = f->wmask[at + 1] = 0; /* id and next pointer are read-only */
	f->cfg[at + 1] = 0;
	if (f->cap_last)
		f->cfg[f->cap_last + 1] = (uint8_t)at;
	else
		f->cfg[PCI_REG_CAP_PTR] = (uint8_t)at;
	put16(f->cfg + PCI_REG_STATUS, pci_cfg_get16(f, PCI_REG_STATUS) | PCI_STATUS_CAP_LIST);
	f->cap_last = (uint8_t)at;
	f->cap_end = at + len;
	return (int)at;
}

void pci_function_set_intx(struct pci_function *f, uint8_t gsi)
{
	f->cfg[PCI_REG_INTERRUPT_LINE] = gsi;
	f->cfg[PCI_REG_INTERRUPT_PIN] = 1;
}

/* The BAR's address as the config space holds it now. */
static uint64_t bar_addr(const struct pci_function *f, unsigned n)
{
	uint64_t a = pci_cfg_get32(f, PCI_REG_BAR0 + 4 * n) & ~0xfull;
	if (f->bars[n].is_64)
		a |= (uint64_t)pci_cfg_get32(f, PCI_REG_BAR0 + 4 * (n + 1)) << 32;
	return a & ~(f->bars[n].size - 1);
}

/* Places BAR n where the config space says, or takes it off the bus: mapped only while
 * memory decode is on and the range is sane (not 0, not overflowing, not the sizing
 * pattern). A range that collides with another stays unmapped, as decoding conflicts are
 * the guest's problem, not kvmini's. */
static void bar_update(struct pci_function *f, unsigned n)
{
	struct pci_bar *b = &f->bars[n];
	struct bus *mmio = f->host ? f->host->mmio : NULL;
	if (!b->size)
		return;
	uint64_t addr = bar_addr(f, n);
	bool decode = pci_cfg_get16(f, PCI_REG_COMMAND) & PCI_CMD_MEMORY;
	bool want = decode && f->added && addr != 0 && addr + b->size > addr &&
		    addr + b->size <= (b->is_64 ? (1ull << 52) : (1ull << 32));
	if (b->mapped && want && addr == b->addr)
		return;
	int ret = 0;
	if (b->mapped && want) {
		ret = mmio ? bus_move(mmio, b->addr, addr) : 0;
		if (ret == 0) {
			b->addr = addr;
			if (f->ops && f->ops->bar_moved)
				f->ops->bar_moved(f, n, addr, true);
			return;
		}
	}
	if (b->mapped) {
		if (mmio)
			bus_unregister(mmio, b->addr);
		b->mapped = false;
		if (f->ops && f->ops->bar_moved)
			f->ops->bar_moved(f, n, b->addr, false);
	}
	if (!want)
		return;
	ret = mmio ? bus_register(mmio, addr, b->size, b->fn, b->opaque, b->name) : 0;
	if (ret < 0) {
		log_debug("pci %02x.%u: BAR%u at 0x%llx collides (%d): left unmapped",
			  f->devfn >> 3, f->devfn & 7, n, (unsigned long long)addr, ret);
		return;
	}
	b->addr = addr;
	b->mapped = true;
	if (f->ops && f->ops->bar_moved)
		f->ops->bar_moved(f, n, addr, true);
}

static void bars_update(struct pci_function *f)
{
	for (unsigned n = 0; n < PCI_MAX_BARS; n++)
		bar_update(f, n);
}

/* One access inside one dword of f's config space. */
static void fn_read(struct pci_function *f, uint32_t off, uint8_t *data, uint32_t len)
{
	memcpy(data, f->cfg + off, len);
	if (f->ops && f->ops->cfg_read)
		f->ops->cfg_read(f, off, data, len);
}

static void fn_write(struct pci_function *f, uint32_t off, const uint8_t *data, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		f->cfg[off + i] = (uint8_t)((f->cfg[off + i] & ~f->wmask[off + i]) |
					    (data[i] & f->wmask[off + i]));
	/* A BAR or the command register changed: the placement follows. */
	if ((off < PCI_REG_BAR0 + 4 * PCI_MAX_BARS && off + len > PCI_REG_BAR0) ||
	    (off < PCI_REG_COMMAND + 2 && off + len > PCI_REG_COMMAND))
		bars_update(f);
	if (f->ops && f->ops->cfg_write)
		f->ops->cfg_write(f, off, data, len);
}

static struct pci_function *host_fn(struct pci_host *h, unsigned bus, unsigned devfn)
{
	if (bus != 0 || devfn >= 256 || (devfn & 7))
		return NULL;
	return h->fns[devfn >> 3];
}

/* Splits [off, off+len) into pieces that stay inside one dword. */
void pci_host_cfg_read(struct pci_host *h, unsigned bus, unsigned devfn, uint32_t off,
		       uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&h->lock);
	struct pci_function *f = host_fn(h, bus, devfn);
	while (len) {
		uint32_t n = 4 - (off & 3);
		if (n > len)
			n = len;
		if (!f || off >= PCI_CFG_SIZE)
			memset(data, 0xff, n);
		else
			fn_read(f, off, data, n);
		off += n, data += n, len -= n;
	}
	pthread_mutex_unlock(&h->lock);
}

void pci_host_cfg_write(struct pci_host *h, unsigned bus, unsigned devfn, uint32_t off,
			const uint8_t *data, uint32_t len)
{
	pthread_mutex_lock(&h->lock);
	struct pci_function *f = host_fn(h, bus, devfn);
	while (len) {
		uint32_t n = 4 - (off & 3);
		if (n > len)
			n = len;
		if (f && off < PCI_CFG_SIZE)
			fn_write(f, off, data, n);
		off += n, data += n, len -= n;
	}
	pthread_mutex_unlock(&h->lock);
}

#define CONFIG_ADDRESS_ENABLE 0x80000000u
/* Bits 30:24 are reserved, 1:0 read as 0 (bits 27:24 are AMD's extended-register bits,
 * which kvmini does not decode: ECAM reaches the extended space). */
#define CONFIG_ADDRESS_MASK 0x80fffffcu

void pci_host_pio(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;
	if (offset < 4) {
		if (offset == 0 && len == 4) {
			pthread_mutex_lock(&h->lock);
			if (is_write)
				h->config_address =
				    (uint32_t)(data[0] | data[1] << 8 | data[2] << 16 |
					       (uint32_t)data[3] << 24) &
				    CONFIG_ADDRESS_MASK;
			else
				put32(data, h->config_address);
			pthread_mutex_unlock(&h->lock);
			return;
		}
		/* Not CONFIG_ADDRESS: a byte at 0xcf9 is the reset control register. */
		if (offset == 1 && len == 1 && h->power) {
			if (is_write)
				reset_control_write(h->power, data[0]);
			else
				data[0] = 0;
			return;
		}
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	uint32_t reg = (uint32_t)offset - 4;
	if (reg + len > 4) { /* crosses 0xcff: the part past it goes nowhere */
		if (!is_write)
			memset(data, 0xff, len);
		len = 4 - reg;
	}
	pthread_mutex_lock(&h->lock);
	uint32_t a = h->config_address;
	pthread_mutex_unlock(&h->lock);
	if (!(a & CONFIG_ADDRESS_ENABLE)) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	unsigned bus = (a >> 16) & 0xff, devfn = (a >> 8) & 0xff;
	uint32_t off = (a & 0xfc) + reg;
	if (is_write)
		pci_host_cfg_write(h, bus, devfn, off, data, len);
	else
		pci_host_cfg_read(h, bus, devfn, off, data, len);
}

void pci_host_ecam(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pci_host *h = opaque;
	unsigned bus = (unsigned)(offset >> 20), devfn = (unsigned)(offset >> 12) & 0xff;
	uint32_t off = (uint32_t)offset & 0xfff;
	if (off + len > PCI_CFG_SIZE) { /* an 8-byte access across the page: clip it */
		if (!is_write)
			memset(data, 0xff, len);
		len = PCI_CFG_SIZE - off;
	}
	if (is_write)
		pci_host_cfg_write(h, bus, devfn, off, data, len);
	else
		pci_host_cfg_read(h, bus, devfn, off, data, len);
}

/* A BAR's place in the 32-bit window: naturally aligned, one after another. */
static int host_assign_bars(struct pci_host *h, struct pci_function *f)
{
	for (unsigned n = 0; n < PCI_MAX_BARS; n++) {
		struct pci_bar *b = &f->bars[n];
		if (!b->size)
			continue;
		uint64_t a = (h->mmio32_next + b->size - 1) & ~(b->size - 1);
		if (a + b->size > X86_PCI_MMIO32_END)
			return -ENOSPC;
		h->mmio32_next = a + b->size;
		uint32_t lo = (uint32_t)a | (b->is_64 ? PCI_BAR_MEM_64 : 0);
		put32(f->cfg + PCI_REG_BAR0 + 4 * n, lo);
		if (b->is_64) {
			put32(f->cfg + PCI_REG_BAR0 + 4 * (n + 1), (uint32_t)(a >> 32));
			n++;
		}
	}
	return 0;
}

int pci_host_add(struct pci_host *h, struct pci_function *f)
{
	pthread_mutex_lock(&h->lock);
	int ret = -ENOSPC;
	unsigned slot;
	for (slot = 0; slot < PCI_MAX_DEVICES && h->fns[slot]; slot++)
		;
	if (slot < PCI_MAX_DEVICES && (ret = host_assign_bars(h, f)) == 0) {
		f->host = h;
		f->devfn = slot << 3;
		f->added = true;
		memcpy(f->reset_cfg, f->cfg, sizeof(f->cfg));
		h->fns[slot] = f;
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

void pci_host_remove(struct pci_host *h, struct pci_function *f)
{
	pthread_mutex_lock(&h->lock);
	if (f->added && h->fns[f->devfn >> 3] == f) {
		f->added = false;
		bars_update(f);
		h->fns[f->devfn >> 3] = NULL;
	}
	pthread_mutex_unlock(&h->lock);
}

/* VM reset: every function's config space back to power-on (BARs where kvmini put them,
 * decode off), CONFIG_ADDRESS cleared. */
static void pci_host_reset(void *dev)
{
	struct pci_host *h = dev;
	pthread_mutex_lock(&h->lock);
	h->config_address = 0;
	for (unsigned s = 0; s < PCI_MAX_DEVICES; s++) {
		struct pci_function *f = h->fns[s];
		if (!f)
			continue;
		memcpy(f->cfg, f->reset_cfg, sizeof(f->cfg));
		bars_update(f);
		if (f->ops && f->ops->reset)
			f->ops->reset(f);
	}
	pthread_mutex_unlock(&h->lock);
}

static int pci_host_save(void *dev, struct state_writer *w)
{
	struct pci_host *h = dev;
	pthread_mutex_lock(&h->lock);
	state_put_u32(w, h->config_address);
	pthread_mutex_unlock(&h->lock);
	return w->err;
}

static int pci_host_load(void *dev, struct state_reader *r)
{
	struct pci_host *h = dev;
	uint32_t a = state_get_u32(r);
	if (state_reader_finish(r) < 0)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	h->config_address = a & CONFIG_ADDRESS_MASK;
	pthread_mutex_unlock(&h->lock);
	return 0;
}

static const struct device_ops pci_host_device_ops = {
    .name = "pci-host",
    .version = 1,
    .reset = pci_host_reset,
    .save = pci_host_save,
    .load = pci_host_load,
};

int pci_host_create(struct pci_host *h, struct device_list *l, struct bus *pio, struct bus *mmio,
		    struct vm_power *power)
{
	memset(h, 0, sizeof(*h));
	h->pio = pio;
	h->mmio = mmio;
	h->power = power;
	h->mmio32_next = X86_PCI_MMIO32_START;
	int ret = -pthread_mutex_init(&h->lock, NULL);
	if (ret)
		return ret;
	pci_function_init(&h->bridge, PCI_HOST_VENDOR, PCI_HOST_DEVICE, PCI_CLASS_HOST, 0,
			  PCI_HOST_VENDOR, PCI_HOST_DEVICE);
	if ((ret = pci_host_add(h, &h->bridge)) < 0)
		goto fail;
	if (pio && (ret = bus_register(pio, PCI_CONFIG_ADDRESS_PORT, 8, pci_host_pio, h,
				       "pci-config")) < 0)
		goto fail;
	if (mmio && (ret = bus_register(mmio, X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, pci_host_ecam,
					h, "pci-ecam")) < 0) {
		bus_unregister(pio, PCI_CONFIG_ADDRESS_PORT);
		goto fail;
	}
	if (l && (ret = device_list_add(l, &pci_host_device_ops, h, 0)) < 0) {
		if (pio)
			bus_unregister(pio, PCI_CONFIG_ADDRESS_PORT);
		if (mmio)
			bus_unregister(mmio, X86_PCI_ECAM_BASE);
		goto fail;
	}
	return 0;
fail:
	pthread_mutex_destroy(&h->lock);
	return ret;
}

void pci_host_destroy(struct pci_host *h)
{
	pthread_mutex_destroy(&h->lock);
}
