#include "devices/legacy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

enum { PM1_STS, PM1_EN, PM1_CNT, PM1_NREGS };

/* The SCI follows (PM1_STS & PM1_EN) over the fixed events kvmini has (the power button)
 * and (GPE0_STS & GPE0_EN). Called with pm->lock held. */
static void pm_update_sci(struct pm *pm)
{
	bool level = (pm->regs[PM1_STS] & pm->regs[PM1_EN] & PM1_STS_IMPLEMENTED) ||
		     (pm->gpe0_sts & pm->gpe0_en);
	int ret = level ? irq_raise(&pm->sci) : irq_lower(&pm->sci);
	if (ret < 0)
		log_warn("pm: cannot set the SCI (IRQ %u) to %d: %s", pm->sci.gsi, level,
			 strerror(-ret));
}

/* Merges the bytes of a write at offset into 16-bit registers: val gets the written bits,
 * mask which bits were written. */
static void merge16(uint64_t offset, const uint8_t *data, uint32_t len, unsigned nregs,
		    uint16_t *val, uint16_t *mask)
{
	for (uint32_t i = 0; i < len && offset + i < 2 * nregs; i++) {
		uint64_t at = offset + i;
		val[at / 2] |= (uint16_t)(data[i] << (8 * (at % 2)));
		mask[at / 2] |= (uint16_t)(0xff << (8 * (at % 2)));
	}
}

static void pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pm *pm = opaque;
	bool power_off = false;
	uint16_t cnt = 0;

	pthread_mutex_lock(&pm->lock);
	if (!is_write) {
		for (uint32_t i = 0; i < len; i++) {
			uint64_t at = offset + i;
			uint16_t reg = at < 2 * PM1_NREGS ? pm->regs[at / 2] : 0;
			if (at / 2 == PM1_CNT)
				reg |= PM1A_CNT_SCI_EN;
			data[i] = (uint8_t)(reg >> (8 * (at % 2)));
		}
		pthread_mutex_unlock(&pm->lock);
		return;
	}
	/* A byte write to 0x605 alone can set SLP_EN. */
	uint16_t val[PM1_NREGS] = {0}, mask[PM1_NREGS] = {0};
	merge16(offset, data, len, PM1_NREGS, val, mask);
	/* Status bits are cleared by writing 1. Every enable bit reads back what was written
	 * (ACPICA enables GBL_EN and checks it stuck); only PWRBTN_EN gates an event. */
	pm->regs[PM1_STS] &= (uint16_t) ~(val[PM1_STS] & mask[PM1_STS]);
	pm->regs[PM1_EN] = (uint16_t)((pm->regs[PM1_EN] & ~mask[PM1_EN]) | val[PM1_EN]);
	if (mask[PM1_CNT]) {
		cnt = (uint16_t)((pm->regs[PM1_CNT] & ~mask[PM1_CNT]) | val[PM1_CNT]);
		power_off = cnt & PM1A_CNT_SLP_EN;
		pm->regs[PM1_CNT] = cnt & (uint16_t)~PM1A_CNT_SLP_EN; /* SLP_EN is write-only */
	}
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	if (power_off) {
		log_info("pm: guest set SLP_EN (PM1a_CNT 0x%04x): powering off", cnt);
		power_request_stop(pm->power, STOP_POWEROFF, 0);
	}
}

/* GPE0: status (2 bytes, write 1 to clear) then enable (2 bytes). */
static void gpe0_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	uint16_t regs[2] = {pm->gpe0_sts, pm->gpe0_en};
	if (!is_write) {
		for (uint32_t i = 0; i < len; i++) {
			uint64_t at = offset + i;
			data[i] = at < 4 ? (uint8_t)(regs[at / 2] >> (8 * (at % 2))) : 0;
		}
		pthread_mutex_unlock(&pm->lock);
		return;
	}
	uint16_t val[2] = {0}, mask[2] = {0};
	merge16(offset, data, len, 2, val, mask);
	pm->gpe0_sts &= (uint16_t) ~(val[0] & mask[0]);
	pm->gpe0_en = (uint16_t)((pm->gpe0_en & ~mask[1]) | val[1]);
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

int pm_init(struct pm *pm, struct vm_power *power, int vm_fd)
{
	memset(pm->regs, 0, sizeof(pm->regs));
	pm->gpe0_sts = pm->gpe0_en = 0;
	pm->power = power;
	irq_init_line(&pm->sci, vm_fd, PM_SCI_IRQ);
	return -pthread_mutex_init(&pm->lock, NULL);
}

void pm_destroy(struct pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

int pm_attach(struct pm *pm, struct bus *pio)
{
	int ret = bus_register(pio, PM1A_EVT_PORT, 2 * PM1_NREGS, pm_io, pm, "acpi-pm1a");
	if (ret == 0)
		ret = bus_register(pio, PM_GPE0_PORT, PM_GPE0_LEN, gpe0_io, pm, "acpi-gpe0");
	return ret;
}

void pm_power_button(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->regs[PM1_STS] |= PM1_PWRBTN;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void pm_gpe0_raise(struct pm *pm, unsigned bit)
{
	if (bit >= 16)
		return;
	pthread_mutex_lock(&pm->lock);
	pm->gpe0_sts |= (uint16_t)(1u << bit);
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

void pm_sync_sci(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm_update_sci(pm);
	/* After a restore the interrupt controllers' state was replaced: drive the line to its
	 * level even if it was already up before (irq_raise would not raise it twice). */
	irq_resync(&pm->sci);
	pthread_mutex_unlock(&pm->lock);
}

bool pm_sci_level(struct pm *pm)
{
	return atomic_load(&pm->sci.level);
}

static void pm_dev_reset(void *dev)
{
	struct pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	memset(pm->regs, 0, sizeof(pm->regs));
	pm->gpe0_sts = pm->gpe0_en = 0;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

/* Version 2: PM1_STS, PM1_EN, PM1_CNT, GPE0_STS, GPE0_EN (version 1 had the first three). */
static int pm_dev_save(void *dev, struct state_writer *w)
{
	struct pm *pm = dev;
	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < PM1_NREGS; i++)
		state_put_u16(w, pm->regs[i]);
	state_put_u16(w, pm->gpe0_sts);
	state_put_u16(w, pm->gpe0_en);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static int pm_dev_load(void *dev, struct state_reader *r)
{
	struct pm *pm = dev;
	uint16_t regs[PM1_NREGS];
	for (unsigned i = 0; i < PM1_NREGS; i++)
		regs[i] = state_get_u16(r);
	uint16_t gsts = state_get_u16(r), gen = state_get_u16(r);
	if (state_reader_finish(r) < 0)
		return -EINVAL;
	pthread_mutex_lock(&pm->lock);
	memcpy(pm->regs, regs, sizeof(regs));
	pm->regs[PM1_STS] &= PM1_STS_IMPLEMENTED;
	pm->gpe0_sts = gsts;
	pm->gpe0_en = gen;
	pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static void pm_dev_destroy(void *dev)
{
	pm_destroy(dev);
	free(dev);
}

static void pm_sync_sci_op(void *dev)
{
	pm_sync_sci(dev);
}

const struct device_ops pm_device_ops = {
    .name = "acpi-pm",
    .version = 2,
    .reset = pm_dev_reset,
    .save = pm_dev_save,
    .load = pm_dev_load,
    .sync_irq = pm_sync_sci_op,
    .destroy = pm_dev_destroy,
};

int pm_create(struct device_list *l, struct bus *pio, struct vm_power *power, int vm_fd,
	      struct pm **out)
{
	struct pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return -ENOMEM;
	int ret = pm_init(pm, power, vm_fd);
	if (ret < 0) {
		free(pm);
		return ret;
	}
	if ((ret = device_list_add(l, &pm_device_ops, pm, 0)) < 0) {
		pm_dev_destroy(pm);
		return ret;
	}
	if (out)
		*out = pm;
	return pm_attach(pm, pio);
}

/* The reset control register: only RST_CPU matters (SYS_RST picks hard or soft reset,
 * which are the same here); reads return 0, as after a PC's reset. */
static void reset_control_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	if (!is_write) {
		memset(data, 0, len);
		return;
	}
	reset_control_write(opaque, data[0]);
}

void reset_control_write(struct vm_power *power, uint8_t value)
{
	if (value & 0x04) {
		log_info("reset control register: guest wrote 0x%02x: resetting", value);
		power_request_reset(power);
	}
}

static const struct device_ops reset_control_device_ops = {
    .name = "reset-control",
    .version = 1,
};

int reset_control_create(struct device_list *l, struct bus *pio, struct vm_power *power)
{
	int ret = device_list_add(l, &reset_control_device_ops, power, 0);
	if (ret < 0)
		return ret;
	return bus_register(pio, RESET_CONTROL_PORT, 1, reset_control_io, power, "reset-control");
}
