/* The polling virtio driver core and its two transports, virtio-pci (modern) and
 * virtio-mmio version 2 (see virtio.h). */
#include "virtio.h"

#include "console.h"
#include "io.h"
#include "kit.h"
#include "kstring.h"
#include "pci.h"

#define POOL_SIZE	 (512 * 1024)
#define RESET_TIMEOUT	 TSC_HZ_MAX /* at least 1 s */
#define GENERATION_TRIES 100
#define FOUR_GIB	 0x100000000ull

#define READ_ONCE(x)	 (*(volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile __typeof__(x) *)&(x) = (v))

static uint8_t pool[POOL_SIZE] __attribute__((aligned(4096)));
static size_t pool_used;

__attribute__((format(printf, 2, 3))) static int fail(struct virtio_dev *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	return -1;
}

void *virtio_alloc(size_t size, size_t align)
{
	size_t start = (pool_used + align - 1) & ~(align - 1);
	if (start > POOL_SIZE || size > POOL_SIZE - start)
		return NULL;
	pool_used = start + size;
	memset(pool + start, 0, size);
	return pool + start;
}

static uint64_t addr_of(const void *p)
{
	return (uint64_t)(uintptr_t)p;
}

/* ---- virtio-pci ---------------------------------------------------------------------- */

static uint8_t pci_get_status(struct virtio_dev *d)
{
	return mmio_read8(d->common + VPCI_STATUS);
}

static void pci_set_status(struct virtio_dev *d, uint8_t s)
{
	mmio_write8(d->common + VPCI_STATUS, s);
}

static uint64_t pci_get_features(struct virtio_dev *d)
{
	mmio_write32(d->common + VPCI_DFSELECT, 0);
	uint32_t lo = mmio_read32(d->common + VPCI_DF);
	mmio_write32(d->common + VPCI_DFSELECT, 1);
	uint32_t hi = mmio_read32(d->common + VPCI_DF);
	return (uint64_t)hi << 32 | lo;
}

static void pci_set_features(struct virtio_dev *d, uint64_t f)
{
	mmio_write32(d->common + VPCI_GFSELECT, 0);
	mmio_write32(d->common + VPCI_GF, (uint32_t)f);
	mmio_write32(d->common + VPCI_GFSELECT, 1);
	mmio_write32(d->common + VPCI_GF, (uint32_t)(f >> 32));
}

static uint32_t pci_generation(struct virtio_dev *d)
{
	return mmio_read8(d->common + VPCI_CFG_GENERATION);
}

static uint32_t mmio_read_sized(uint64_t a, unsigned size)
{
	return size == 1 ? mmio_read8(a) : size == 2 ? mmio_read16(a) : mmio_read32(a);
}

static void mmio_write_sized(uint64_t a, unsigned size, uint32_t v)
{
	if (size == 1)
		mmio_write8(a, (uint8_t)v);
	else if (size == 2)
		mmio_write16(a, (uint16_t)v);
	else
		mmio_write32(a, v);
}

static uint32_t pci_cfg_read(struct virtio_dev *d, uint32_t off, unsigned size)
{
	if (!d->device_cfg || off + size > d->device_cfg_len)
		return 0xffffffffu;
	return mmio_read_sized(d->device_cfg + off, size);
}

static void pci_cfg_write(struct virtio_dev *d, uint32_t off, unsigned size, uint32_t v)
{
	if (d->device_cfg && off + size <= d->device_cfg_len)
		mmio_write_sized(d->device_cfg + off, size, v);
}

static uint16_t pci_queue_max(struct virtio_dev *d, uint16_t idx)
{
	if (idx >= d->num_queues)
		return 0;
	mmio_write16(d->common + VPCI_Q_SELECT, idx);
	return mmio_read16(d->common + VPCI_Q_SIZE);
}

static void write64(uint64_t a, uint64_t v)
{
	mmio_write32(a, (uint32_t)v);
	mmio_write32(a + 4, (uint32_t)(v >> 32));
}

static int pci_queue_enable(struct virtio_dev *d, struct virtq *q, uint16_t vector)
{
	uint64_t c = d->common;
	mmio_write16(c + VPCI_Q_SELECT, q->index);
	mmio_write16(c + VPCI_Q_SIZE, q->size);
	mmio_write16(c + VPCI_Q_MSIX, vector);
	uint16_t got = mmio_read16(c + VPCI_Q_MSIX);
	if (got != vector)
		return fail(d, "queue %u: MSI-X vector %u reads back as %u", q->index, vector, got);
	write64(c + VPCI_Q_DESC, addr_of(q->desc));
	write64(c + VPCI_Q_DRIVER, addr_of(q->avail));
	write64(c + VPCI_Q_DEVICE, addr_of(q->used));
	uint16_t noff = mmio_read16(c + VPCI_Q_NOTIFY_OFF);
	q->notify_addr = d->notify + (uint64_t)noff * d->notify_mult;
	mmio_write16(c + VPCI_Q_ENABLE, 1);
	if (mmio_read16(c + VPCI_Q_ENABLE) != 1)
		return fail(d, "queue %u: queue_enable did not stick", q->index);
	return 0;
}

static void pci_notify(struct virtq *q)
{
	mmio_write16(q->notify_addr, q->index);
}

static uint8_t pci_isr(struct virtio_dev *d)
{
	return mmio_read8(d->isr);
}

static const struct virtio_ops pci_ops = {
    .name = "pci",
    .get_status = pci_get_status,
    .set_status = pci_set_status,
    .get_features = pci_get_features,
    .set_features = pci_set_features,
    .generation = pci_generation,
    .cfg_read = pci_cfg_read,
    .cfg_write = pci_cfg_write,
    .queue_max = pci_queue_max,
    .queue_enable = pci_queue_enable,
    .notify = pci_notify,
    .isr = pci_isr,
};

int virtio_pci_open(struct virtio_dev *d, uint16_t bdf)
{
	memset(d, 0, sizeof(*d));
	d->ops = &pci_ops;
	d->transport = VIRTIO_PCI;
	d->bdf = bdf;
	struct pci_func f;
	if (!pci_read_func(bdf, &f))
		return fail(d, "no PCI function at %02x:%02x.%x", PCI_BUS(bdf), PCI_DEV(bdf),
			    PCI_FN(bdf));
	if (f.vendor != VIRTIO_PCI_VENDOR)
		return fail(d, "%02x:%02x.%x is %04x:%04x, not a virtio device", PCI_BUS(bdf),
			    PCI_DEV(bdf), PCI_FN(bdf), f.vendor, f.device);
	d->device_id = f.device >= 0x1040 ? f.device - 0x1040u : f.subsys_id;
	if (!pci_enable(bdf))
		return fail(d, "no room to place the BARs of %02x:%02x.%x", PCI_BUS(bdf),
			    PCI_DEV(bdf), PCI_FN(bdf));

	unsigned n = 0;
	for (uint8_t off = pci_cap_find(bdf, PCI_CAP_ID_VENDOR, 0); off && n < 48;
	     off = pci_cap_find_after(bdf, PCI_CAP_ID_VENDOR, off), n++) {
		uint8_t type = pci_read8(bdf, off + 3), bar = pci_read8(bdf, off + 4);
		uint32_t offset = pci_read32(bdf, off + 8), length = pci_read32(bdf, off + 12);
		if (bar > 5 || type == VIRTIO_PCI_CAP_PCI_CFG)
			continue;
		uint64_t base = pci_bar_addr(bdf, bar);
		if (!base)
			continue;
		uint64_t a = base + offset;
		if (a + length > FOUR_GIB && !kit_map_mmio(a, length))
			return fail(d, "virtio structure type %u at 0x%lx cannot be mapped", type,
				    a);
		if (type == VIRTIO_PCI_CAP_COMMON && !d->common) {
			d->common = a;
		} else if (type == VIRTIO_PCI_CAP_NOTIFY && !d->notify) {
			d->notify = a;
			d->notify_mult = pci_read32(bdf, off + 16);
		} else if (type == VIRTIO_PCI_CAP_ISR && !d->isr) {
			d->isr = a;
		} else if (type == VIRTIO_PCI_CAP_DEVICE && !d->device_cfg) {
			d->device_cfg = a;
			d->device_cfg_len = length;
		}
	}
	if (!d->common || !d->notify || !d->isr)
		return fail(d, "virtio-pci %02x:%02x.%x lacks a capability:%s%s%s", PCI_BUS(bdf),
			    PCI_DEV(bdf), PCI_FN(bdf), d->common ? "" : " common",
			    d->notify ? "" : " notify", d->isr ? "" : " isr");
	d->num_queues = mmio_read16(d->common + VPCI_NUM_QUEUES);
	return 0;
}

uint16_t virtio_pci_set_config_vector(struct virtio_dev *d, uint16_t vector)
{
	if (d->transport != VIRTIO_PCI)
		return VIRTIO_NO_VECTOR;
	mmio_write16(d->common + VPCI_MSIX_CONFIG, vector);
	return mmio_read16(d->common + VPCI_MSIX_CONFIG);
}

/* ---- virtio-mmio --------------------------------------------------------------------- */

static uint32_t mr(struct virtio_dev *d, uint32_t reg)
{
	return mmio_read32(d->base + reg);
}

static void mw(struct virtio_dev *d, uint32_t reg, uint32_t v)
{
	mmio_write32(d->base + reg, v);
}

static uint8_t mmio_get_status(struct virtio_dev *d)
{
	return (uint8_t)mr(d, VMMIO_STATUS);
}

static void mmio_set_status(struct virtio_dev *d, uint8_t s)
{
	mw(d, VMMIO_STATUS, s);
}

static uint64_t mmio_get_features(struct virtio_dev *d)
{
	mw(d, VMMIO_DEVICE_FEATURES_SEL, 0);
	uint32_t lo = mr(d, VMMIO_DEVICE_FEATURES);
	mw(d, VMMIO_DEVICE_FEATURES_SEL, 1);
	uint32_t hi = mr(d, VMMIO_DEVICE_FEATURES);
	return (uint64_t)hi << 32 | lo;
}

static void mmio_set_features(struct virtio_dev *d, uint64_t f)
{
	mw(d, VMMIO_DRIVER_FEATURES_SEL, 0);
	mw(d, VMMIO_DRIVER_FEATURES, (uint32_t)f);
	mw(d, VMMIO_DRIVER_FEATURES_SEL, 1);
	mw(d, VMMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
}

static uint32_t mmio_generation(struct virtio_dev *d)
{
	return mr(d, VMMIO_CONFIG_GENERATION);
}

static uint32_t mmio_cfg_read(struct virtio_dev *d, uint32_t off, unsigned size)
{
	if (off + size > VIRTIO_MMIO_STRIDE - VMMIO_CONFIG)
		return 0xffffffffu;
	return mmio_read_sized(d->base + VMMIO_CONFIG + off, size);
}

static void mmio_cfg_write(struct virtio_dev *d, uint32_t off, unsigned size, uint32_t v)
{
	if (off + size <= VIRTIO_MMIO_STRIDE - VMMIO_CONFIG)
		mmio_write_sized(d->base + VMMIO_CONFIG + off, size, v);
}

static uint16_t mmio_queue_max(struct virtio_dev *d, uint16_t idx)
{
	mw(d, VMMIO_QUEUE_SEL, idx);
	uint32_t max = mr(d, VMMIO_QUEUE_NUM_MAX);
	return max > 0xffff ? 0xffff : (uint16_t)max;
}

static int mmio_queue_enable(struct virtio_dev *d, struct virtq *q, uint16_t vector)
{
	mw(d, VMMIO_QUEUE_SEL, q->index);
	if (mr(d, VMMIO_QUEUE_READY))
		return fail(d, "queue %u: QueueReady already set", q->index);
	mw(d, VMMIO_QUEUE_NUM, q->size);
	mw(d, VMMIO_QUEUE_DESC_LOW, (uint32_t)addr_of(q->desc));
	mw(d, VMMIO_QUEUE_DESC_HIGH, (uint32_t)(addr_of(q->desc) >> 32));
	mw(d, VMMIO_QUEUE_DRIVER_LOW, (uint32_t)addr_of(q->avail));
	mw(d, VMMIO_QUEUE_DRIVER_HIGH, (uint32_t)(addr_of(q->avail) >> 32));
	mw(d, VMMIO_QUEUE_DEVICE_LOW, (uint32_t)addr_of(q->used));
	mw(d, VMMIO_QUEUE_DEVICE_HIGH, (uint32_t)(addr_of(q->used) >> 32));
	mw(d, VMMIO_QUEUE_READY, 1);
	if (mr(d, VMMIO_QUEUE_READY) != 1)
		return fail(d, "queue %u: QueueReady did not stick", q->index);
	return 0;
}

static void mmio_notify(struct virtq *q)
{
	mmio_write32(q->dev->base + VMMIO_QUEUE_NOTIFY, q->index);
}

static uint8_t mmio_isr(struct virtio_dev *d)
{
	uint32_t s = mr(d, VMMIO_INTERRUPT_STATUS);
	if (s)
		mw(d, VMMIO_INTERRUPT_ACK, s);
	return (uint8_t)s;
}

static const struct virtio_ops mmio_ops = {
    .name = "mmio",
    .get_status = mmio_get_status,
    .set_status = mmio_set_status,
    .get_features = mmio_get_features,
    .set_features = mmio_set_features,
    .generation = mmio_generation,
    .cfg_read = mmio_cfg_read,
    .cfg_write = mmio_cfg_write,
    .queue_max = mmio_queue_max,
    .queue_enable = mmio_queue_enable,
    .notify = mmio_notify,
    .isr = mmio_isr,
};

int virtio_mmio_open(struct virtio_dev *d, uint64_t base)
{
	memset(d, 0, sizeof(*d));
	d->ops = &mmio_ops;
	d->transport = VIRTIO_MMIO;
	d->base = base;
	uint32_t magic = mr(d, VMMIO_MAGIC);
	if (magic != VIRTIO_MMIO_MAGIC)
		return fail(d, "no virtio-mmio device at 0x%lx (magic 0x%08x)", base, magic);
	uint32_t version = mr(d, VMMIO_VERSION);
	if (version != 2)
		return fail(d, "virtio-mmio at 0x%lx is version %u, not 2", base, version);
	d->device_id = mr(d, VMMIO_DEVICE_ID);
	if (!d->device_id)
		return fail(d, "virtio-mmio at 0x%lx has device id 0 (no device)", base);
	return 0;
}

/* ---- finding a device ---------------------------------------------------------------- */

static int find_mmio(struct virtio_dev *d, uint32_t device_id, const char *where)
{
	if (where[0] == '@') {
		uint64_t base = parse_u64(where + 1, NULL, false);
		if (virtio_mmio_open(d, base) < 0)
			return -1;
		if (d->device_id != device_id)
			return fail(d, "virtio-mmio at 0x%lx is device %u, not %u", base,
				    d->device_id, device_id);
		return 0;
	}
	for (unsigned n = 0; n < VIRTIO_MMIO_SLOTS; n++) {
		uint64_t base = VIRTIO_MMIO_BASE + n * VIRTIO_MMIO_STRIDE;
		if (virtio_mmio_open(d, base) == 0 && d->device_id == device_id)
			return 0;
	}
	return fail(d, "no virtio-mmio device %u in the %u slots at 0x%llx", device_id,
		    VIRTIO_MMIO_SLOTS, VIRTIO_MMIO_BASE);
}

/* The windows the VMM announced the way Linux's virtio_mmio module reads them:
 * `virtio_mmio.device=<size>@<addr>:<irq>` words. The first whose device is device_id is
 * opened; 1 found, 0 none announced, -1 some announced but none is device_id. */
static int find_announced_mmio(struct virtio_dev *d, uint32_t device_id, const char *cmdline)
{
	static const char key[] = "virtio_mmio.device=";
	unsigned announced = 0;
	for (const char *p = cmdline; (p = strstr(p, key)) != NULL; p += sizeof(key) - 1) {
		if (p != cmdline && p[-1] != ' ')
			continue;
		const char *at = p + sizeof(key) - 1;
		while (*at && *at != '@' && *at != ' ')
			at++;
		if (*at != '@')
			continue;
		const char *end;
		uint64_t base = parse_u64(at + 1, &end, false);
		if (end == at + 1 || *end != ':')
			continue;
		announced++;
		if (virtio_mmio_open(d, base) == 0 && d->device_id == device_id)
			return 1;
	}
	if (!announced)
		return 0;
	memset(d, 0, sizeof(*d));
	fail(d, "none of the %u announced virtio-mmio devices is device %u", announced, device_id);
	return -1;
}

int virtio_find(struct virtio_dev *d, uint32_t device_id, const char *cmdline)
{
	char v[40];
	if (cmdline && cmdline_get(cmdline, "virtio", v, sizeof(v))) {
		if (!strncmp(v, "mmio", 4))
			return find_mmio(d, device_id, v + 4);
		if (strcmp(v, "pci"))
			return fail(d, "virtio=%s: the transports are mmio[@ADDR] and pci", v);
	} else if (cmdline) {
		int r = find_announced_mmio(d, device_id, cmdline);
		if (r > 0)
			return 0;
		/* A device of another type on MMIO: this one may still be on PCI. */
	}

	struct pci_func all[64];
	unsigned n = pci_enumerate(all, 64);
	for (unsigned i = 0; i < n && i < 64; i++) {
		const struct pci_func *f = &all[i];
		if (f->vendor != VIRTIO_PCI_VENDOR)
			continue;
		if (f->device == VIRTIO_PCI_MODERN_DEVICE(device_id) ||
		    (f->device >= 0x1000 && f->device < 0x1040 && f->subsys_id == device_id))
			return virtio_pci_open(d, f->bdf);
	}
	memset(d, 0, sizeof(*d));
	return fail(d, "no virtio-pci device %u (%04x:%04x) on bus 0 (%s access, %u functions)",
		    device_id, VIRTIO_PCI_VENDOR, VIRTIO_PCI_MODERN_DEVICE(device_id),
		    pci_access_name(pci_access_mode()), n);
}

/* ---- the driver core ----------------------------------------------------------------- */

uint8_t virtio_get_status(struct virtio_dev *d)
{
	return d->ops->get_status(d);
}

void virtio_set_status(struct virtio_dev *d, uint8_t s)
{
	d->ops->set_status(d, s);
}

int virtio_reset(struct virtio_dev *d)
{
	d->ops->set_status(d, 0);
	uint64_t t0 = rdtsc();
	while (d->ops->get_status(d) != 0) {
		if (rdtsc() - t0 > RESET_TIMEOUT)
			return fail(d, "reset: status still 0x%x", d->ops->get_status(d));
		cpu_relax();
	}
	return 0;
}

int virtio_negotiate(struct virtio_dev *d, uint64_t wanted, uint64_t required, uint64_t *got)
{
	if (virtio_reset(d) < 0)
		return -1;
	uint8_t s = VIRTIO_STATUS_ACKNOWLEDGE;
	d->ops->set_status(d, s);
	s |= VIRTIO_STATUS_DRIVER;
	d->ops->set_status(d, s);
	d->device_features = d->ops->get_features(d);
	uint64_t missing = required & ~d->device_features;
	if (missing) {
		d->ops->set_status(d, s | VIRTIO_STATUS_FAILED);
		return fail(d, "device offers features 0x%lx, lacks required 0x%lx",
			    d->device_features, missing);
	}
	d->features = d->device_features & (wanted | required);
	d->ops->set_features(d, d->features);
	s |= VIRTIO_STATUS_FEATURES_OK;
	d->ops->set_status(d, s);
	uint8_t back = d->ops->get_status(d);
	if (!(back & VIRTIO_STATUS_FEATURES_OK)) {
		d->ops->set_status(d, s | VIRTIO_STATUS_FAILED);
		return fail(d, "FEATURES_OK did not stick for features 0x%lx (status 0x%x)",
			    d->features, back);
	}
	if (got)
		*got = d->features;
	return 0;
}

void virtio_driver_ok(struct virtio_dev *d)
{
	d->ops->set_status(d, d->ops->get_status(d) | VIRTIO_STATUS_DRIVER_OK);
}

uint8_t virtio_isr(struct virtio_dev *d)
{
	return d->ops->isr(d);
}

static void cfg_copy(struct virtio_dev *d, uint32_t off, uint8_t *p, uint32_t len)
{
	uint32_t i = 0;
	while (i < len) {
		uint32_t o = off + i;
		if (!(o & 3) && len - i >= 4) {
			uint32_t v = d->ops->cfg_read(d, o, 4);
			memcpy(p + i, &v, 4);
			i += 4;
		} else if (!(o & 1) && len - i >= 2) {
			uint16_t v = (uint16_t)d->ops->cfg_read(d, o, 2);
			memcpy(p + i, &v, 2);
			i += 2;
		} else {
			p[i++] = (uint8_t)d->ops->cfg_read(d, o, 1);
		}
	}
}

int virtio_cfg_read(struct virtio_dev *d, uint32_t off, void *buf, uint32_t len)
{
	for (unsigned t = 0; t < GENERATION_TRIES; t++) {
		uint32_t g0 = d->ops->generation(d);
		cfg_copy(d, off, buf, len);
		if (d->ops->generation(d) == g0)
			return 0;
	}
	return fail(d, "config generation kept changing over %u reads", GENERATION_TRIES);
}

void virtio_cfg_write(struct virtio_dev *d, uint32_t off, const void *buf, uint32_t len)
{
	const uint8_t *p = buf;
	for (uint32_t i = 0; i < len; i++)
		d->ops->cfg_write(d, off + i, 1, p[i]);
}

/* ---- virtqueues ---------------------------------------------------------------------- */

int virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t idx, uint16_t size, uint16_t vector)
{
	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->index = idx;
	uint16_t max = d->ops->queue_max(d, idx);
	if (!max)
		return fail(d, "queue %u does not exist", idx);
	if (!size)
		size = max < VIRTQ_MAX_SIZE ? max : VIRTQ_MAX_SIZE;
	if (size > max || size > VIRTQ_MAX_SIZE || (size & (size - 1)))
		return fail(d, "queue %u: size %u (device max %u, kit max %u, power of two)", idx,
			    size, max, VIRTQ_MAX_SIZE);
	q->size = size;
	q->desc = virtio_alloc(sizeof(struct virtq_desc) * size, 4096);
	q->avail = virtio_alloc(6 + 2u * size, 4096);
	q->used = virtio_alloc(6 + 8u * size, 4096);
	if (!q->desc || !q->avail || !q->used)
		return fail(d, "queue %u: the kit's ring pool is used up", idx);
	for (uint16_t i = 0; i < size; i++)
		q->desc[i].next = (uint16_t)(i + 1);
	q->free_head = 0;
	q->num_free = size;
	return d->ops->queue_enable(d, q, vector);
}

int virtq_add(struct virtq *q, const struct virtq_buf *bufs, unsigned n_out, unsigned n_in)
{
	unsigned n = n_out + n_in;
	if (n == 0 || n > q->num_free)
		return -1;
	uint16_t head = q->free_head, i = head, last = head;
	for (unsigned k = 0; k < n; k++) {
		struct virtq_desc *dsc = &q->desc[i];
		dsc->addr = addr_of(bufs[k].addr);
		dsc->len = bufs[k].len;
		dsc->flags = (uint16_t)((k >= n_out ? VIRTQ_DESC_F_WRITE : 0) |
					(k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		last = i;
		i = dsc->next;
	}
	q->free_head = q->desc[last].next;
	q->num_free = (uint16_t)(q->num_free - n);
	q->chain_len[head] = (uint16_t)n;
	WRITE_ONCE(q->avail->ring[q->avail_idx % q->size], head);
	q->avail_idx++;
	return head;
}

int virtq_add_indirect(struct virtq *q, const struct virtq_buf *bufs, unsigned n_out, unsigned n_in)
{
	unsigned n = n_out + n_in;
	if (!(q->dev->features & VIRTIO_F_INDIRECT_DESC) || n == 0 || n > VIRTQ_INDIRECT_MAX ||
	    !q->num_free)
		return -1;
	if (!q->indirect) {
		q->indirect =
		    virtio_alloc(sizeof(struct virtq_desc) * VIRTQ_INDIRECT_MAX * q->size, 16);
		if (!q->indirect)
			return -1;
	}
	uint16_t head = q->free_head;
	struct virtq_desc *t = &q->indirect[(unsigned)head * VIRTQ_INDIRECT_MAX];
	for (unsigned k = 0; k < n; k++) {
		t[k].addr = addr_of(bufs[k].addr);
		t[k].len = bufs[k].len;
		t[k].flags = (uint16_t)((k >= n_out ? VIRTQ_DESC_F_WRITE : 0) |
					(k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		t[k].next = (uint16_t)(k + 1 < n ? k + 1 : 0);
	}
	struct virtq_desc *dsc = &q->desc[head];
	q->free_head = dsc->next;
	dsc->addr = addr_of(t);
	dsc->len = (uint32_t)(n * sizeof(struct virtq_desc));
	dsc->flags = VIRTQ_DESC_F_INDIRECT;
	q->num_free--;
	q->chain_len[head] = 1;
	WRITE_ONCE(q->avail->ring[q->avail_idx % q->size], head);
	q->avail_idx++;
	return head;
}

void virtq_notify(struct virtq *q)
{
	q->kicks++;
	q->dev->ops->notify(q);
}

void virtq_kick(struct virtq *q)
{
	uint16_t old = READ_ONCE(q->avail->idx), now = q->avail_idx;
	barrier(); /* ring entries before the index (x86 keeps stores in order) */
	WRITE_ONCE(q->avail->idx, now);
	mb(); /* the index before reading the device's suppression state */
	bool need;
	if (q->dev->features & VIRTIO_F_EVENT_IDX) {
		uint16_t event = READ_ONCE(*(uint16_t *)&q->used->ring[q->size]);
		need = (uint16_t)(now - event - 1) < (uint16_t)(now - old);
	} else {
		need = !(READ_ONCE(q->used->flags) & VIRTQ_USED_F_NO_NOTIFY);
	}
	if (need)
		virtq_notify(q);
	else
		q->kicks_suppressed++;
}

int virtq_poll(struct virtq *q, uint32_t *len)
{
	uint16_t used_idx = READ_ONCE(q->used->idx);
	if (used_idx == q->last_used)
		return -1;
	barrier(); /* the index before the entry (x86 keeps loads in order) */
	struct virtq_used_elem e;
	e.id = READ_ONCE(q->used->ring[q->last_used % q->size].id);
	e.len = READ_ONCE(q->used->ring[q->last_used % q->size].len);
	if (e.id >= q->size || !q->chain_len[e.id]) {
		fail(q->dev, "queue %u: used entry %u names id %u, which is not outstanding",
		     q->index, q->last_used, e.id);
		return -2;
	}
	q->last_used++;
	uint16_t n = q->chain_len[e.id], i = (uint16_t)e.id;
	for (uint16_t k = 1; k < n; k++)
		i = q->desc[i].next;
	q->desc[i].next = q->free_head;
	q->free_head = (uint16_t)e.id;
	q->num_free = (uint16_t)(q->num_free + n);
	q->chain_len[e.id] = 0;
	if (q->dev->features & VIRTIO_F_EVENT_IDX)
		WRITE_ONCE(q->avail->ring[q->size], q->last_used);
	if (len)
		*len = e.len;
	return (int)e.id;
}

int virtq_wait(struct virtq *q, uint64_t timeout_cycles, uint32_t *len)
{
	uint64_t t0 = rdtsc();
	for (;;) {
		int id = virtq_poll(q, len);
		if (id >= 0)
			return id;
		if (id == -2)
			return -1;
		if (rdtsc() - t0 > timeout_cycles)
			return fail(q->dev,
				    "queue %u: no used entry after %lu TSC cycles (used idx %u, "
				    "avail idx %u, status 0x%x)",
				    q->index, timeout_cycles, READ_ONCE(q->used->idx), q->avail_idx,
				    q->dev->ops->get_status(q->dev));
		cpu_relax();
	}
}

void virtq_set_no_interrupt(struct virtq *q, bool on)
{
	uint16_t f = READ_ONCE(q->avail->flags);
	WRITE_ONCE(q->avail->flags, on ? (uint16_t)(f | VIRTQ_AVAIL_F_NO_INTERRUPT)
				       : (uint16_t)(f & ~VIRTQ_AVAIL_F_NO_INTERRUPT));
}
