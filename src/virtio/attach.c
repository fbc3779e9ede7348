#include "virtio/attach.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/mmio.h"
#include "virtio/pci.h"
#include "virtio/virtio.h"

enum virtio_transport_kind virtio_transport_for(const char *driver, enum virtio_transport_kind dflt)
{
	size_t n = strlen(driver);
	if (n > 4 && !strcmp(driver + n - 4, "-pci"))
		return VIRTIO_TRANSPORT_PCI;
	if (n > 7 && !strcmp(driver + n - 7, "-device"))
		return VIRTIO_TRANSPORT_MMIO;
	return dflt;
}

_Static_assert(CONFIG_VIRTIO_MAX_VECTORS == VIRTIO_PCI_MAX_VECTORS,
	       "the option's bound is the transport's");

static int attach_pci(const struct virtio_attach_env *env, struct virtio_dev *d, unsigned instance,
		      const struct keyed_opts *o, struct errbuf *e)
{
	struct virtio_pci_env penv = {
	    .host = env->pci,
	    .router = env->irq_router,
	    .loop = env->loop,
	    .vm_fd = env->vm_fd,
	};
	uint64_t vectors;
	if (keyed_get((struct keyed_opts *)o, "vectors")) {
		int ret = keyed_get_u64((struct keyed_opts *)o, "vectors", 0,
					VIRTIO_PCI_MAX_VECTORS, &vectors, e);
		if (ret < 0)
			return ret;
		penv.vectors_given = true;
		penv.vectors = (unsigned)vectors;
	}
	struct virtio_pci *t;
	if (!env->pci)
		return errf(e, -ENODEV, "-device '%s': this VM has no PCI bus", o->spec);
	int ret = virtio_pci_create(&penv, d, &t, e);
	if (ret < 0)
		return ret;
	/* After the device, so it is destroyed first (the list runs in reverse). */
	if ((ret = device_list_add(env->devices, &virtio_pci_device_ops, t, instance)) < 0) {
		virtio_pci_device_ops.destroy(t);
		return errf(e, ret, "out of memory");
	}
	return 0;
}

static int attach_mmio(const struct virtio_attach_env *env, struct virtio_dev *d, unsigned instance,
		       const struct keyed_opts *o, struct errbuf *e)
{
	struct virtio_mmio *t;
	if (!env->mmio_layout)
		return errf(e, -ENODEV, "-device '%s': this VM has no virtio-mmio windows",
			    o->spec);
	int ret = virtio_mmio_create(env->mmio_layout, d, env->mmio, env->vm_fd, env->loop, &t, e);
	if (ret < 0)
		return ret;
	/* After the device, so it is destroyed first (the list runs in reverse). */
	if ((ret = device_list_add(env->devices, &virtio_mmio_device_ops, t, instance)) < 0) {
		virtio_mmio_device_ops.destroy(t);
		return errf(e, ret, "out of memory");
	}
	return 0;
}

int virtio_attach_devices(const struct virtio_attach_env *env, struct errbuf *e)
{
	const struct keyed_list *l = &env->cfg->devices;
	struct virtio_create_ctx ctx = {
	    .mem = env->mem, .loop = env->loop, .power = env->power, .cfg = env->cfg};
	unsigned instance = 0, anon = 0;
	for (unsigned i = 0; i < l->n; i++) {
		struct keyed_opts *o = &l->items[i];
		/* QEMU numbers the -device entries without id= in order. */
		unsigned anon_index = o->id ? 0 : anon++;
		if (!o->type || strncmp(o->type, "virtio-", 7))
			continue;
		const struct virtio_dev_type *t = virtio_find_type(o->type);
		if (!t)
			return errf(e, -EINVAL, "invalid -device '%s': kvmini has no %s device",
				    o->spec, o->type);
		struct virtio_dev *d = NULL;
		int ret = t->create(&ctx, o, &d, e);
		if (ret < 0)
			return ret;
		if (o->id)
			snprintf(d->qdev, sizeof(d->qdev), "/machine/peripheral/%s/virtio-backend",
				 o->id);
		else
			snprintf(d->qdev, sizeof(d->qdev),
				 "/machine/peripheral-anon/device[%u]/virtio-backend", anon_index);
		if ((ret = device_list_add(env->devices, &virtio_dev_device_ops, d, instance)) <
		    0) {
			virtio_dev_destroy(d);
			free(d);
			return errf(e, ret, "out of memory");
		}
		switch (virtio_transport_for(o->type, env->default_transport)) {
		case VIRTIO_TRANSPORT_PCI:
			ret = attach_pci(env, d, instance, o, e);
			break;
		case VIRTIO_TRANSPORT_MMIO:
			ret = attach_mmio(env, d, instance, o, e);
			break;
		}
		if (ret < 0)
			return ret;
		instance++;
	}
	return 0;
}
