#include "devices/legacy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RTC_SECONDS    0x00
#define RTC_MINUTES    0x02
#define RTC_HOURS      0x04
#define RTC_WEEKDAY    0x06
#define RTC_DAY	       0x07
#define RTC_MONTH      0x08
#define RTC_YEAR       0x09
#define RTC_STATUS_A   0x0a
#define RTC_STATUS_B   0x0b
#define RTC_STATUS_C   0x0c
#define RTC_STATUS_D   0x0d
#define RTC_CENTURY    0x32
#define RTC_INDEX_MASK 0x7f /* bit 7 of the index port masks NMI */

#define STATUS_A_UIP	 0x80
#define STATUS_A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz periodic rate */
#define STATUS_B_24H	 0x02
#define STATUS_B_BINARY	 0x04
#define STATUS_B_DEFAULT STATUS_B_24H
/* What the chip's RESET pin clears: periodic, alarm, update interrupts, square wave. */
#define STATUS_B_RESET_CLEARS 0x78
#define STATUS_D_VRT	      0x80 /* battery good */
#define HOUR_PM		      0x80

static uint8_t rtc_to_bcd(unsigned v)
{
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

static uint8_t rtc_format(const struct rtc *r, unsigned v)
{
	return (r->cmos[RTC_STATUS_B] & STATUS_B_BINARY) ? (uint8_t)v : rtc_to_bcd(v);
}

static bool rtc_is_clock_reg(uint8_t index)
{
	switch (index) {
	case RTC_SECONDS:
	case RTC_MINUTES:
	case RTC_HOURS:
	case RTC_WEEKDAY:
	case RTC_DAY:
	case RTC_MONTH:
	case RTC_YEAR:
	case RTC_CENTURY:
		return true;
	default:
		return false;
	}
}

/* Called with r->lock held. The clock is the host's, read afresh on every access, so there
 * is no update cycle to wait for (UIP stays clear). */
static uint8_t rtc_read_clock(const struct rtc *r, uint8_t index)
{
	time_t now = time(NULL);
	struct tm tm;

	if (!gmtime_r(&now, &tm))
		memset(&tm, 0, sizeof(tm));
	switch (index) {
	case RTC_SECONDS:
		return rtc_format(r, (unsigned)tm.tm_sec);
	case RTC_MINUTES:
		return rtc_format(r, (unsigned)tm.tm_min);
	case RTC_HOURS:
		if (r->cmos[RTC_STATUS_B] & STATUS_B_24H)
			return rtc_format(r, (unsigned)tm.tm_hour);
		unsigned h12 = (unsigned)tm.tm_hour % 12;
		return rtc_format(r, h12 ? h12 : 12) | (tm.tm_hour >= 12 ? HOUR_PM : 0);
	case RTC_WEEKDAY:
		return rtc_format(r, (unsigned)tm.tm_wday + 1);
	case RTC_DAY:
		return rtc_format(r, (unsigned)tm.tm_mday);
	case RTC_MONTH:
		return rtc_format(r, (unsigned)tm.tm_mon + 1);
	case RTC_YEAR:
		return rtc_format(r, (unsigned)(tm.tm_year + 1900) % 100);
	case RTC_CENTURY:
		return rtc_format(r, (unsigned)(tm.tm_year + 1900) / 100);
	}
	return 0;
}

static uint8_t rtc_read(struct rtc *r)
{
	uint8_t index = r->index;

	if (rtc_is_clock_reg(index))
		return rtc_read_clock(r, index);
	switch (index) {
	case RTC_STATUS_A:
		return r->cmos[RTC_STATUS_A] & (uint8_t)~STATUS_A_UIP;
	case RTC_STATUS_C:
		return 0; /* no interrupt flags: the RTC never interrupts */
	case RTC_STATUS_D:
		return STATUS_D_VRT;
	default:
		return r->cmos[index];
	}
}

static void rtc_write(struct rtc *r, uint8_t v)
{
	uint8_t index = r->index;

	/* The host clock is authoritative: a guest setting the time is not honoured. */
	if (rtc_is_clock_reg(index) || index == RTC_STATUS_C || index == RTC_STATUS_D)
		return;
	if (index == RTC_STATUS_A)
		v &= (uint8_t)~STATUS_A_UIP;
	r->cmos[index] = v;
}

static void rtc_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rtc *r = opaque;

	pthread_mutex_lock(&r->lock);
	/* The bus bounds offset + len by the 2-port range; a wide access is byte accesses. */
	for (uint32_t i = 0; i < len && offset + i < 2; i++) {
		bool index_port = offset + i == 0;
		if (is_write) {
			if (index_port)
				r->index = data[i] & RTC_INDEX_MASK;
			else
				rtc_write(r, data[i]);
		} else {
			/* The index port is write-only on a PC. */
			data[i] = index_port ? 0xff : rtc_read(r);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

int rtc_init(struct rtc *r)
{
	memset(r, 0, sizeof(*r));
	r->cmos[RTC_STATUS_A] = STATUS_A_DEFAULT;
	r->cmos[RTC_STATUS_B] = STATUS_B_DEFAULT;
	r->cmos[RTC_STATUS_D] = STATUS_D_VRT;
	return -pthread_mutex_init(&r->lock, NULL);
}

static void cmos_put16(struct rtc *r, unsigned index, uint64_t v)
{
	if (v > 0xffff)
		v = 0xffff;
	r->cmos[index] = (uint8_t)v;
	r->cmos[index + 1] = (uint8_t)(v >> 8);
}

void rtc_set_machine_info(struct rtc *r, uint64_t ram_below_4g, uint64_t ram_above_4g,
			  unsigned ncpus)
{
	/* The layout PC firmware (and QEMU/SeaBIOS) uses; guests without e820 read it. */
	uint64_t ext_kb = ram_below_4g > (1 << 20) ? (ram_below_4g - (1 << 20)) >> 10 : 0;
	uint64_t above_16m = ram_below_4g > (16 << 20) ? (ram_below_4g - (16 << 20)) >> 16 : 0;
	uint64_t high = ram_above_4g >> 16;
	pthread_mutex_lock(&r->lock);
	cmos_put16(r, 0x15, 640);	/* base memory, KiB */
	cmos_put16(r, 0x17, ext_kb);	/* memory above 1 MiB, KiB (capped) */
	cmos_put16(r, 0x30, ext_kb);	/* the same, second copy */
	cmos_put16(r, 0x34, above_16m); /* memory 16 MiB - 4 GiB, 64 KiB units */
	r->cmos[0x5b] = (uint8_t)high;	/* memory above 4 GiB, 64 KiB units, 24 bits */
	r->cmos[0x5c] = (uint8_t)(high >> 8);
	r->cmos[0x5d] = (uint8_t)(high >> 16);
	r->cmos[0x5f] = (uint8_t)(ncpus ? ncpus - 1 : 0); /* CPUs - 1 */
	pthread_mutex_unlock(&r->lock);
}

void rtc_destroy(struct rtc *r)
{
	pthread_mutex_destroy(&r->lock);
}

int rtc_attach(struct rtc *r, struct bus *pio)
{
	return bus_register(pio, RTC_INDEX_PORT, 2, rtc_io, r, "rtc");
}

static void rtc_dev_reset(void *dev)
{
	struct rtc *r = dev;
	pthread_mutex_lock(&r->lock);
	r->index = 0;
	r->cmos[RTC_STATUS_B] &= (uint8_t)~STATUS_B_RESET_CLEARS;
	pthread_mutex_unlock(&r->lock);
}

static int rtc_dev_save(void *dev, struct state_writer *w)
{
	struct rtc *r = dev;
	pthread_mutex_lock(&r->lock);
	state_put_u8(w, r->index);
	state_put_bytes(w, r->cmos, sizeof(r->cmos));
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static int rtc_dev_load(void *dev, struct state_reader *r)
{
	struct rtc *rtc = dev;
	uint8_t cmos[sizeof(rtc->cmos)];
	uint8_t index = state_get_u8(r);
	state_get_bytes(r, cmos, sizeof(cmos));
	if (state_reader_finish(r) < 0 || index > RTC_INDEX_MASK)
		return -EINVAL;
	pthread_mutex_lock(&rtc->lock);
	rtc->index = index;
	memcpy(rtc->cmos, cmos, sizeof(cmos));
	pthread_mutex_unlock(&rtc->lock);
	return 0;
}

static void rtc_dev_destroy(void *dev)
{
	rtc_destroy(dev);
	free(dev);
}

const struct device_ops rtc_device_ops = {
    .name = "rtc",
    .version = 1,
    .reset = rtc_dev_reset,
    .save = rtc_dev_save,
    .load = rtc_dev_load,
    .destroy = rtc_dev_destroy,
};

int rtc_create(struct device_list *l, struct bus *pio, uint64_t ram_below_4g, uint64_t ram_above_4g,
	       unsigned ncpus)
{
	struct rtc *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	int ret = rtc_init(r);
	if (ret < 0) {
		free(r);
		return ret;
	}
	if ((ret = device_list_add(l, &rtc_device_ops, r, 0)) < 0) {
		rtc_dev_destroy(r);
		return ret;
	}
	rtc_set_machine_info(r, ram_below_4g, ram_above_4g, ncpus);
	return rtc_attach(r, pio);
}
