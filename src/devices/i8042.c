#include "devices/legacy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define STATUS_OBF	0x01 /* output buffer full */
#define STATUS_SYS	0x04 /* system flag: POST passed */
#define STATUS_UNLOCKED 0x10 /* keyboard not inhibited; Linux warns "Keylock active" if clear */

#define CTR_KBD_DISABLE 0x10
#define CTR_AUX_DISABLE 0x20
/* What a PC BIOS leaves: translation, system flag, keyboard interrupt. */
#define CTR_DEFAULT 0x45

#define CMD_READ_CTR	 0x20
#define CMD_WRITE_CTR	 0x60
#define CMD_AUX_DISABLE	 0xa7
#define CMD_AUX_ENABLE	 0xa8
#define CMD_AUX_TEST	 0xa9
#define CMD_SELF_TEST	 0xaa
#define CMD_KBD_TEST	 0xab
#define CMD_KBD_DISABLE	 0xad
#define CMD_KBD_ENABLE	 0xae
#define CMD_WRITE_OUTP	 0xd1
#define CMD_WRITE_KBD_OB 0xd2
#define CMD_AUX_LOOP	 0xd3
#define CMD_PULSE_FIRST	 0xf0

#define SELF_TEST_OK 0x55
/* "Clock line stuck low": Linux's AUX test then gives up on the AUX port at once. */
#define AUX_TEST_STUCK 0x01

static void i8042_output(struct i8042 *k, uint8_t v)
{
	k->out = v;
	k->out_full = true;
}

static void i8042_reset(struct i8042 *k, const char *why)
{
	log_info("i8042: %s: resetting", why);
	power_request_reset(k->power);
}

/* Called with k->lock held. */
static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	k->last_command = 0;
	switch (cmd) {
	case CMD_READ_CTR:
		i8042_output(k, k->command_byte);
		break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OB:
	case CMD_AUX_LOOP:
		k->last_command = cmd; /* the next data-port write is its argument */
		break;
	case CMD_AUX_DISABLE:
		k->command_byte |= CTR_AUX_DISABLE;
		break;
	case CMD_AUX_ENABLE:
		k->command_byte &= (uint8_t)~CTR_AUX_DISABLE;
		break;
	case CMD_AUX_TEST:
		i8042_output(k, AUX_TEST_STUCK);
		break;
	case CMD_SELF_TEST:
		i8042_output(k, SELF_TEST_OK);
		break;
	case CMD_KBD_TEST:
		i8042_output(k, 0x00);
		break;
	case CMD_KBD_DISABLE:
		k->command_byte |= CTR_KBD_DISABLE;
		break;
	case CMD_KBD_ENABLE:
		k->command_byte &= (uint8_t)~CTR_KBD_DISABLE;
		break;
	default:
		/* 0xf0-0xff pulse output-port lines low for each clear bit; bit 0 is the CPU
		 * reset line (0xfe is the classic reboot). */
		if (cmd >= CMD_PULSE_FIRST && !(cmd & 1))
			i8042_reset(k, "reset line pulsed");
		break;
	}
}

/* Called with k->lock held. */
static void i8042_data_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->last_command;

	k->last_command = 0;
	switch (cmd) {
	case CMD_WRITE_CTR:
		k->command_byte = v;
		break;
	case CMD_WRITE_OUTP:
		if (!(v & 1))
			i8042_reset(k, "output port reset line cleared");
		break;
	case CMD_WRITE_KBD_OB:
		i8042_output(k, v);
		break;
	case CMD_AUX_LOOP:
		/* There is no AUX port. Answering from the keyboard side (status without
		 * AUXDATA) makes Linux's loop test fail at once instead of timing out. */
		i8042_output(k, v);
		break;
	default:
		break; /* bytes for the (absent) keyboard */
	}
}

static void i8042_data_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct i8042 *k = opaque;

	pthread_mutex_lock(&k->lock);
	if (is_write) {
		i8042_data_write(k, data[0]);
	} else {
		memset(data, 0, len);
		data[0] = k->out;
		k->out_full = false;
	}
	pthread_mutex_unlock(&k->lock);
}

static void i8042_command_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	struct i8042 *k = opaque;

	pthread_mutex_lock(&k->lock);
	if (is_write) {
		i8042_command(k, data[0]);
	} else {
		memset(data, 0, len);
		data[0] = STATUS_SYS | STATUS_UNLOCKED | (k->out_full ? STATUS_OBF : 0);
	}
	pthread_mutex_unlock(&k->lock);
}

int i8042_init(struct i8042 *k, struct vm_power *power)
{
	memset(k, 0, sizeof(*k));
	k->power = power;
	k->command_byte = CTR_DEFAULT;
	return -pthread_mutex_init(&k->lock, NULL);
}

void i8042_destroy(struct i8042 *k)
{
	pthread_mutex_destroy(&k->lock);
}

int i8042_attach(struct i8042 *k, struct bus *pio)
{
	int ret = bus_register(pio, I8042_DATA_PORT, 1, i8042_data_io, k, "i8042-data");
	if (ret)
		return ret;
	ret = bus_register(pio, I8042_COMMAND_PORT, 1, i8042_command_io, k, "i8042-command");
	if (ret)
		bus_unregister(pio, I8042_DATA_PORT);
	return ret;
}

static void i8042_dev_reset(void *dev)
{
	struct i8042 *k = dev;
	pthread_mutex_lock(&k->lock);
	k->last_command = 0;
	k->command_byte = CTR_DEFAULT;
	k->out = 0;
	k->out_full = false;
	pthread_mutex_unlock(&k->lock);
}

static int i8042_dev_save(void *dev, struct state_writer *w)
{
	struct i8042 *k = dev;
	pthread_mutex_lock(&k->lock);
	state_put_u8(w, k->last_command);
	state_put_u8(w, k->command_byte);
	state_put_u8(w, k->out);
	state_put_u8(w, k->out_full);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static int i8042_dev_load(void *dev, struct state_reader *r)
{
	struct i8042 *k = dev;
	uint8_t last = state_get_u8(r), ctr = state_get_u8(r), out = state_get_u8(r);
	uint8_t full = state_get_u8(r);
	if (state_reader_finish(r) < 0 || full > 1)
		return -EINVAL;
	pthread_mutex_lock(&k->lock);
	k->last_command = last;
	k->command_byte = ctr;
	k->out = out;
	k->out_full = full;
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static void i8042_dev_destroy(void *dev)
{
	i8042_destroy(dev);
	free(dev);
}

const struct device_ops i8042_device_ops = {
    .name = "i8042",
    .version = 1,
    .reset = i8042_dev_reset,
    .save = i8042_dev_save,
    .load = i8042_dev_load,
    .destroy = i8042_dev_destroy,
};

int i8042_create(struct device_list *l, struct bus *pio, struct vm_power *power)
{
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	int ret = i8042_init(k, power);
	if (ret < 0) {
		free(k);
		return ret;
	}
	if ((ret = device_list_add(l, &i8042_device_ops, k, 0)) < 0) {
		i8042_dev_destroy(k);
		return ret;
	}
	return i8042_attach(k, pio);
}
